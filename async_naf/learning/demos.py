"""Demonstrations for the trainer (ROS-free): datasets read and checked against the run, and update batches
that mix them with the online data at a fixed ratio (the RLPD / SERL recipe: Ball et al. 2023, Luo et al. 2024).

A dataset is a directory ``async-naf bag convert`` writes::

    DATASET/replay.npz      the project's replay-buffer file (async_naf.learning.replay)
    DATASET/manifest.json   format async_naf.dataset v1: task, obs_dim, act_dim, layouts, bag sha256, counts

:func:`read_dataset` refuses (``ValueError``) a dataset of another task, other dimensions or message layouts
this build does not read; rows with NaN/Inf or a terminal flag other than 0/1 are dropped and counted, never
added. :func:`load_demos` puts every dataset of a run into one buffer of its own (never overwritten: its
capacity is the rows it holds) and records each source's path and sha256, so a resumed trainer re-loads the
same data and refuses a dataset that changed.

Mixing (:class:`DemoMixer`), batch size ``B``, ratio ``r``:

- ``round(r * B)`` demonstration rows and ``B - round(r * B)`` online rows in every batch, exactly (not drawn
  at random per batch): ``B = 64, r = 0.5`` gives 32 + 32;
- before the online buffer holds ``min_online`` rows (the trainer's ``min_buffer_size``), the batches are all
  demonstrations: the updates start with the first received step instead of waiting for the online buffer,
  at the same pace (``updates_per_step`` per received step);
- ``r = 0`` (or no demonstrations): online rows only, as without demos; ``r = 1``: demonstrations only.

Example::

    demos, sources = load_demos(["data/reach_exact"], "reach", obs_dim=23, act_dim=7, seed=0)
    mixer = DemoMixer(demos, ratio=0.5, batch_size=64, min_online=1000)
    batch, n_demo = mixer.sample(online_buffer)   # n_demo == 32 once the online buffer holds 1000 rows
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from async_naf.learning.replay import REPLAY_FORMAT, Batch, ReplayBuffer, read_rows
from async_naf.wire import layouts
from async_naf.wire.batch import BATCH_FIELDS

DATASET_FORMAT = "async_naf.dataset"
DATASET_VERSION = 1
# the message layouts a dataset may have been built from (what this build's conversion reads)
KNOWN_LAYOUTS = frozenset({layouts.POLICY_STEP, layouts.GOAL})


@dataclass(frozen=True)
class DemoSource:
    """One dataset in the demonstration buffer.

    Attributes:
        path: the dataset directory (absolute).
        sha256: sha256 of its ``replay.npz``.
        rows: rows added to the demonstration buffer.
        dropped: rows dropped (NaN/Inf, terminal not 0/1).
        episodes: episodes in the dataset (manifest), -1 if unknown.
        bag_sha256: the source bag's sha256 (manifest), "" if unknown.
    """

    path: str
    sha256: str
    rows: int
    dropped: int
    episodes: int = -1
    bag_sha256: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """``DATASET/manifest.json`` as a dict.

    Raises:
        ValueError: no dataset directory there, or an unreadable / foreign manifest.
    """
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not path.is_dir() or not manifest_path.is_file() or not (path / "replay.npz").is_file():
        raise ValueError(f"{path}: not a dataset directory (manifest.json + replay.npz; async-naf bag convert)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{manifest_path}: unreadable manifest: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != DATASET_FORMAT:
        raise ValueError(f"{manifest_path}: not an async_naf dataset manifest (format {DATASET_FORMAT})")
    if manifest.get("version") != DATASET_VERSION:
        raise ValueError(f"{manifest_path}: dataset version {manifest.get('version')!r} is not supported "
                         f"(this build reads {DATASET_VERSION})")
    return manifest


def check_manifest(manifest: dict[str, Any], where: str, task: str, obs_dim: int, act_dim: int) -> None:
    """The dataset must be of the run's task, dimensions, message layouts and replay format.

    Raises:
        ValueError: naming every mismatch.
    """
    problems = []
    if manifest.get("task") != task:
        problems.append(f"task {manifest.get('task')!r}, the run's is {task!r}")
    if manifest.get("obs_dim") != obs_dim or manifest.get("act_dim") != act_dim:
        problems.append(f"obs/action dims ({manifest.get('obs_dim')}, {manifest.get('act_dim')}), "
                        f"the run's are ({obs_dim}, {act_dim})")
    recorded = manifest.get("layouts")
    if not isinstance(recorded, list) or not recorded:
        problems.append("no message layouts recorded")
    else:
        unknown = sorted(str(x) for x in recorded if not isinstance(x, str) or x not in KNOWN_LAYOUTS)
        if unknown:
            problems.append(f"message layouts {unknown} this build does not read (it reads {sorted(KNOWN_LAYOUTS)})")
    if manifest.get("replay_format", REPLAY_FORMAT) != REPLAY_FORMAT:
        problems.append(f"replay format {manifest.get('replay_format')!r}")
    if problems:
        raise ValueError(f"{where}: demonstrations do not fit this run: " + "; ".join(problems))


def read_dataset(path: str | os.PathLike, task: str, obs_dim: int, act_dim: int) -> tuple[Batch, DemoSource]:
    """The valid rows of one dataset and what it is (see the module docstring).

    Raises:
        ValueError: not a dataset, a dataset of another run kind (task, dims, layouts), an unreadable or
            inconsistent replay file, or no valid row.
    """
    path = Path(path).resolve()
    manifest = read_manifest(path)
    check_manifest(manifest, str(path), task, obs_dim, act_dim)
    replay = path / "replay.npz"
    meta, arrays = read_rows(replay)
    if (meta.get("obs_dim"), meta.get("act_dim")) != (obs_dim, act_dim):
        raise ValueError(f"{replay}: buffer dims ({meta.get('obs_dim')}, {meta.get('act_dim')}) do not match "
                         f"the run's ({obs_dim}, {act_dim})")
    try:
        n = int(meta.get("size", -1))
    except (TypeError, ValueError, OverflowError) as exc:  # int(Infinity): OverflowError
        raise ValueError(f"{replay}: bad row count {meta.get('size')!r}") from exc
    with np.errstate(over="ignore"):
        fields = [np.asarray(arrays[name], np.float32) for name in BATCH_FIELDS]
    shapes = ((n, obs_dim), (n, act_dim), (n,), (n, obs_dim), (n,))
    if any(a.shape != s for a, s in zip(fields, shapes)):
        raise ValueError(f"{replay}: field shapes {[a.shape for a in fields]} do not match {n} rows of "
                         f"obs {obs_dim}, action {act_dim}")
    good = np.ones(n, bool)
    for arr in fields:
        good &= np.isfinite(arr.reshape(n, -1)).all(axis=1)
    good &= (fields[4] == 0.0) | (fields[4] == 1.0)
    if not good.any():
        raise ValueError(f"{path}: no valid demonstration row ({n} rows, all non-finite or invalid)")
    batch = Batch(*(a[good] for a in fields))
    source = DemoSource(str(path), file_sha256(replay), int(good.sum()), int(n - good.sum()),
                        int(manifest.get("episodes", -1)), str(manifest.get("bag_sha256", "")))
    return batch, source


def load_demos(paths: list[str] | tuple[str, ...], task: str, obs_dim: int, act_dim: int, seed: int = 0,
               expected: dict[str, str] | None = None) -> tuple[ReplayBuffer, list[DemoSource]]:
    """Every dataset of ``paths`` in one demonstration buffer (capacity: exactly their valid rows).

    Args:
        expected: path -> sha256 of its replay.npz as recorded in a checkpoint (a resumed run): a dataset
            whose file changed since is refused.

    Raises:
        ValueError: see :func:`read_dataset`; no paths; a dataset listed twice; a changed dataset.
    """
    if not paths:
        raise ValueError("no demonstration datasets given")
    batches: list[Batch] = []
    sources: list[DemoSource] = []
    for p in paths:
        batch, source = read_dataset(p, task, obs_dim, act_dim)
        if any(s.path == source.path for s in sources):
            raise ValueError(f"{source.path}: demonstration dataset listed twice")
        want = (expected or {}).get(source.path)
        if want is not None and want != source.sha256:
            raise ValueError(f"{source.path}: the dataset changed since the run's checkpoint (replay.npz sha256 "
                             f"{source.sha256[:12]}..., the checkpoint recorded {want[:12]}...): a resumed run "
                             "trains on the demonstrations it started with")
        batches.append(batch)
        sources.append(source)
    rows = Batch(*(np.concatenate([getattr(b, f) for b in batches]) for f in BATCH_FIELDS))
    buf = ReplayBuffer(int(rows.obs.shape[0]), obs_dim, act_dim, seed=seed)
    buf.add_batch(rows)
    return buf, sources


def demo_rows(batch_size: int, ratio: float) -> int:
    """Demonstration rows of a full mixed batch: ``round(ratio * batch_size)``, halves rounded up."""
    return int(math.floor(ratio * batch_size + 0.5))


class DemoMixer:
    """Update batches of demonstration and online rows (see the module docstring).

    Args:
        demos: the demonstration buffer (None or empty: online rows only).
        ratio: share of demonstration rows per batch, 0..1.
        batch_size: rows per update batch.
        min_online: online rows before mixed batches (before: all demonstrations), >= 1.

    Attributes:
        demo_rows_sampled, rows_sampled: rows drawn so far (counters for metrics).
    """

    def __init__(self, demos: ReplayBuffer | None, ratio: float, batch_size: int, min_online: int) -> None:
        if not 0.0 <= float(ratio) <= 1.0 or not math.isfinite(float(ratio)):
            raise ValueError(f"demo ratio must be in [0, 1], got {ratio!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.demos = demos if demos is not None and len(demos) else None
        self.ratio = float(ratio)
        self.batch_size = int(batch_size)
        self.min_online = max(1, int(min_online))
        self.demo_rows_sampled = 0
        self.rows_sampled = 0

    @property
    def uses_demos(self) -> bool:
        return self.demos is not None and self.ratio > 0.0

    def counts(self, online_rows: int) -> tuple[int, int]:
        """(demonstration rows, online rows) of the next batch; (0, 0) when no batch can be drawn yet."""
        if not self.uses_demos:
            return (0, self.batch_size) if online_rows >= self.min_online else (0, 0)
        if online_rows < self.min_online:
            return self.batch_size, 0
        d = demo_rows(self.batch_size, self.ratio)
        return d, self.batch_size - d

    def ready(self, online_rows: int) -> bool:
        """Whether a batch can be drawn now."""
        return sum(self.counts(online_rows)) > 0

    def sample_demos(self) -> tuple[Batch, int]:
        """One batch of demonstration rows only, whatever the online buffer holds (the trainer's
        pre-training phase, ``demo_pretrain_updates``), and its row count.

        Raises:
            ValueError: no demonstrations.
        """
        if self.demos is None:
            raise ValueError("no demonstrations to sample")
        batch = self.demos.sample(self.batch_size)
        self.demo_rows_sampled += self.batch_size
        self.rows_sampled += self.batch_size
        return batch, self.batch_size

    def sample(self, online: ReplayBuffer) -> tuple[Batch, int]:
        """One update batch (demonstration rows first) and how many of its rows are demonstrations.

        Raises:
            ValueError: no batch can be drawn yet (:meth:`ready` is False).
        """
        n_demo, n_online = self.counts(len(online))
        if n_demo + n_online == 0:
            raise ValueError(f"no batch yet: {len(online)} online rows of the {self.min_online} needed")
        if n_demo == 0:
            batch = online.sample(n_online)
        elif n_online == 0:
            assert self.demos is not None
            batch = self.demos.sample(n_demo)
        else:
            assert self.demos is not None
            a, b = self.demos.sample(n_demo), online.sample(n_online)
            batch = Batch(*(np.concatenate([x, y]) for x, y in zip(a, b)))
        self.demo_rows_sampled += n_demo
        self.rows_sampled += n_demo + n_online
        return batch, n_demo
