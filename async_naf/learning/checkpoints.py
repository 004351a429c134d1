"""The run directory's checkpoint layout (ROS-free): where the trainer's checkpoints and weights files go.

::

    run_dir/checkpoints/step_<updates:09d>.safetensors   full agent checkpoint (periodic; keep_checkpoints kept)
    run_dir/checkpoints/step_<updates:09d>.json          counters and what the run was (task, algorithm, dims)
    run_dir/checkpoints/replay_<updates:09d>.npz         the replay buffer (when save_buffer)
    run_dir/checkpoints/final.*                          the same at the end of the run (always kept)
    run_dir/checkpoints/latest.json                      points at the newest of them
    run_dir/weights/latest.safetensors                   policy weights (Policy.from_bytes), rewritten often
    run_dir/weights/final.safetensors                    policy weights at the end

Every file is written atomically (:func:`async_naf.wire.checkpoint.write_file`).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from async_naf.wire.checkpoint import write_file

LOG = logging.getLogger(__name__)
CHECKPOINTS = "checkpoints"
PRETRAINED = "pretrained"  # the checkpoint written when a pre-training phase ends (checkpoints/pretrained.*)
WEIGHTS_DIR = "weights"


@dataclass(frozen=True)
class CheckpointInfo:
    """Where one checkpoint lies and the counters at that moment.

    Attributes:
        agent: full agent checkpoint (safetensors).
        buffer: replay buffer (.npz) or None if not saved.
        updates, env_steps, episodes: counters.
        wall_s: seconds since the first start of the run.
    """

    agent: str
    buffer: str | None
    updates: int
    env_steps: int
    episodes: int
    wall_s: float


def read_latest_checkpoint(run_dir: str | os.PathLike) -> CheckpointInfo | None:
    """The newest checkpoint recorded in ``run_dir/checkpoints/latest.json``, or None if there is none.

    Raises:
        ValueError: latest.json exists but is malformed or points at missing files.
    """
    ckpt_dir = Path(run_dir) / CHECKPOINTS
    pointer = ckpt_dir / "latest.json"
    if not pointer.exists():
        return None
    try:
        meta = json.loads(pointer.read_text())
        info = CheckpointInfo(
            agent=str(ckpt_dir / meta["agent"]),
            buffer=str(ckpt_dir / meta["buffer"]) if meta.get("buffer") else None,
            updates=int(meta["updates"]), env_steps=int(meta["env_steps"]), episodes=int(meta["episodes"]),
            wall_s=float(meta["wall_s"]),
        )
    except (OSError, ValueError, KeyError, TypeError, OverflowError) as exc:  # int(Infinity): OverflowError
        raise ValueError(f"{pointer}: malformed checkpoint pointer: {exc}") from exc
    if not Path(info.agent).exists() or (info.buffer and not Path(info.buffer).exists()):
        raise ValueError(f"{pointer}: points at missing files ({info.agent}, {info.buffer})")
    return info


def _info_from(meta_path: Path) -> CheckpointInfo:
    meta = json.loads(meta_path.read_text())
    ckpt_dir = meta_path.parent
    info = CheckpointInfo(agent=str(ckpt_dir / meta["agent"]),
                          buffer=str(ckpt_dir / meta["buffer"]) if meta.get("buffer") else None,
                          updates=int(meta["updates"]), env_steps=int(meta["env_steps"]),
                          episodes=int(meta["episodes"]), wall_s=float(meta["wall_s"]))
    if not Path(info.agent).exists() or (info.buffer and not Path(info.buffer).exists()):
        raise ValueError(f"{meta_path}: points at missing files")
    return info


def newest_checkpoint(run_dir: str | os.PathLike) -> tuple[CheckpointInfo, dict[str, Any]] | None:
    """The checkpoint a restarted trainer resumes from: ``latest.json``'s, else (unreadable, or pointing at
    files that are gone) the newest readable ``step_*.json`` / ``final.json`` with its files present.

    Every file is replaced atomically, so a trainer killed while writing a checkpoint leaves the previous
    one complete; this fallback covers a pointer damaged otherwise (disk full, a file removed by hand).

    Returns:
        ``(info, meta)`` (meta: the whole json record), or None when there is no checkpoint record.

    Raises:
        ValueError: there are records, but none is usable (never silently a fresh start over a run).
    """
    ckpt_dir = Path(run_dir) / CHECKPOINTS
    candidates = [ckpt_dir / "latest.json"]
    others = [p for p in ckpt_dir.glob("*.json") if p.name != "latest.json"] if ckpt_dir.is_dir() else []
    candidates += sorted(others, key=_updates_of, reverse=True)
    errors = []
    for path in candidates:
        if not path.exists():
            continue
        try:
            return _info_from(path), json.loads(path.read_text())
        except (OSError, ValueError, KeyError, TypeError, OverflowError) as exc:
            LOG.warning("checkpoint record %s unusable (%s): trying an older one", path, exc)
            errors.append(f"{path.name}: {exc}")
    if errors:
        raise ValueError(f"{ckpt_dir}: no usable checkpoint (points at missing files or malformed): "
                         + "; ".join(errors))
    return None


def _updates_of(path: Path) -> tuple[int, float]:
    try:
        meta = json.loads(path.read_text())
        return int(meta["updates"]), path.stat().st_mtime
    except (OSError, ValueError, KeyError, TypeError, OverflowError):
        return -1, 0.0


class CheckpointStore:
    """Names, writes and prunes the files of the layout above.

    Args:
        run_dir: the run directory (created with its subdirectories).
        keep: periodic checkpoints kept on disk; older ones are deleted (``final`` is never deleted).
    """

    def __init__(self, run_dir: str | os.PathLike, keep: int) -> None:
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / CHECKPOINTS
        self.weights_dir = self.run_dir / WEIGHTS_DIR
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.weights_dir.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        # the usable periodic checkpoints on disk, oldest first: an earlier trainer's (a restart, --resume) too,
        # or each new process kept its predecessors' for ever (4 checkpoints and their buffers with keep 2 after
        # one restart). A record without its weights (a resume fell back past it) is no checkpoint: left alone,
        # so that it does not take the place of the usable one the resume came from.
        self._periodic: list[str] = sorted(
            (p.stem for p in self.ckpt_dir.glob("step_*.json")
             if p.stem.removeprefix("step_").isdigit() and self.agent_path(p.stem).is_file()),
            key=lambda stem: int(stem.removeprefix("step_")))

    @staticmethod
    def stem(updates: int, tag: str | None = None) -> str:
        """``tag`` or, for a periodic checkpoint, ``step_<updates:09d>``."""
        return tag or f"step_{updates:09d}"

    def agent_path(self, stem: str) -> Path:
        return self.ckpt_dir / f"{stem}.safetensors"

    def buffer_path(self, stem: str) -> Path:
        return self.ckpt_dir / f"replay_{stem.removeprefix('step_')}.npz"

    def write_weights(self, data: bytes, name: str = "latest") -> None:
        """Policy weights to ``weights/<name>.safetensors``."""
        write_file(self.weights_dir / f"{name}.safetensors", data)

    def commit(self, stem: str, weights: bytes, buffer_saved: bool, counters: dict[str, Any],
               periodic: bool) -> CheckpointInfo:
        """Finish a checkpoint whose agent file (and buffer, when ``buffer_saved``) is written: the weights
        files, ``<stem>.json`` and ``latest.json``; then prune the periodic ones beyond ``keep``.

        ``counters`` holds ``updates``, ``env_steps``, ``episodes``, ``wall_s`` and anything else worth
        recording (task, algorithm, dims).
        """
        buffer_name = self.buffer_path(stem).name if buffer_saved else None
        meta = {"agent": self.agent_path(stem).name, "buffer": buffer_name, **counters}
        self.write_weights(weights)
        if stem == "final":
            self.write_weights(weights, "final")
        _write_json(self.ckpt_dir / f"{stem}.json", meta)
        _write_json(self.ckpt_dir / "latest.json", meta)
        if periodic and stem not in self._periodic:  # same update count again: same files
            self._periodic.append(stem)
            self._prune()
        return CheckpointInfo(str(self.agent_path(stem)), str(self.buffer_path(stem)) if buffer_saved else None,
                              int(counters["updates"]), int(counters["env_steps"]), int(counters["episodes"]),
                              float(counters["wall_s"]))

    def _prune(self) -> None:
        while len(self._periodic) > self.keep:
            old = self._periodic.pop(0)
            for path in (self.agent_path(old), self.ckpt_dir / f"{old}.json", self.buffer_path(old)):
                path.unlink(missing_ok=True)


def _write_json(path: Path, data: dict) -> None:
    write_file(path, json.dumps(data, indent=1).encode("utf-8"))
