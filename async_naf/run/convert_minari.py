"""Converted transitions as a Minari dataset (``async-naf bag convert ... --format minari``).

Minari (https://minari.farama.org) is the Farama offline-RL dataset format that d3rlpy and others read. It is
an optional dependency (``pip install minari==0.5.4``, or the ``minari`` extra of this package): only this
module imports it, lazily; nothing in the core needs it.

Episodes: the rows of a conversion (:class:`async_naf.run.convert.Converted`) are grouped by robot and episode
and ordered by step; a Minari episode is a run of consecutive steps whose ``next_obs`` is the next row's
``obs``. An episode with a hole (a step the conversion dropped) becomes several Minari episodes, each but the
last truncated at the hole. The last step of a segment is ``terminations`` = the transition's terminal flag,
``truncations`` = not terminal (the time limit, the bag's end, or a hole); earlier steps are neither.
Observations: ``n + 1`` per episode of ``n`` steps (the last one the final ``next_obs``), float32; actions,
rewards as converted. Spaces from the task (the same as :class:`async_naf.run.env.ArmDoorEnv`'s).

Where the dataset goes: ``ROOT/<dataset_id>`` with ``ROOT`` = ``--out`` if given, else Minari's own datasets
directory (``MINARI_DATASETS_PATH``, else ``~/.minari/datasets``); load it with
``MINARI_DATASETS_PATH=ROOT`` and ``minari.load_dataset(dataset_id)``. It is written into a staging directory
under ``ROOT`` and moved into place at the end: an error never leaves a partial dataset, and an existing
dataset id is an error before anything is written. Beside Minari's ``data/`` the dataset directory holds
``manifest.json`` (the same manifest as the replay-buffer output, plus the episode split).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

MINARI_PIP = "pip install minari==0.5.4"


def _minari() -> Any:
    try:
        import minari
    except ImportError as exc:
        raise ValueError(f"--format minari needs the optional package minari, which is not importable here "
                         f"({exc}): {MINARI_PIP}") from exc
    return minari


def minari_episodes(batch: Any, keys: np.ndarray) -> tuple[list[dict[str, np.ndarray]], int]:
    """Episodes (dicts of ``observations``, ``actions``, ``rewards``, ``terminations``, ``truncations``) from
    transition rows and their ``(robot_id, episode, step)`` keys (see the module docstring); and how many
    holes split an episode."""
    obs, action = np.asarray(batch.obs, np.float32), np.asarray(batch.action, np.float32)
    reward, next_obs = np.asarray(batch.reward, np.float64), np.asarray(batch.next_obs, np.float32)
    terminal = np.asarray(batch.terminal) > 0.5
    keys = np.asarray(keys, np.int64)
    order = np.lexsort((keys[:, 2], keys[:, 1], keys[:, 0]))
    episodes: list[dict[str, np.ndarray]] = []
    holes = 0
    start = 0
    for j in range(1, len(order) + 1):
        if j < len(order):
            a, b = order[j - 1], order[j]
            same = keys[a, 0] == keys[b, 0] and keys[a, 1] == keys[b, 1]
            if same and keys[b, 2] == keys[a, 2] + 1 and not terminal[a] and np.array_equal(next_obs[a], obs[b]):
                continue
            holes += int(same)
        rows = order[start:j]
        last = rows[-1]
        n = len(rows)
        term = np.zeros(n, bool)
        trunc = np.zeros(n, bool)
        term[-1], trunc[-1] = bool(terminal[last]), not bool(terminal[last])
        episodes.append({"observations": np.concatenate([obs[rows], next_obs[last][None]]),
                         "actions": action[rows], "rewards": reward[rows], "terminations": term,
                         "truncations": trunc})
        start = j
    return episodes, holes


def _place(staging: Path, root: Path, dataset_id: str) -> None:
    """Move ``staging/<dataset_id>`` to ``root/<dataset_id>``, with the namespace metadata files Minari wrote
    for namespaces ``root`` does not have yet."""
    parts = dataset_id.split("/")
    for i in range(1, len(parts)):
        prefix = "/".join(parts[:i])
        target = root / prefix
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            (staging / prefix).rename(target)  # the whole namespace, the dataset with it
            return
        for meta in (staging / prefix).glob("*.json"):
            if not (target / meta.name).exists():
                shutil.copy2(meta, target / meta.name)
    (staging / dataset_id).rename(root / dataset_id)


def minari_target(dataset_id: str, root: str | Path | None = None) -> tuple[Path, Path]:
    """The datasets root and the dataset's directory, checked before anything is converted or written.

    Raises:
        ValueError: minari is not importable, ``dataset_id`` is not a Minari id or exists already.
    """
    _minari()
    from minari.namespace import validate_namespace
    from minari.storage.datasets_root_dir import get_dataset_path
    from minari.utils import parse_dataset_id

    try:
        namespace, _, _ = parse_dataset_id(dataset_id)
        if namespace is not None:
            validate_namespace(namespace)
    except (ValueError, AssertionError) as exc:
        raise ValueError(f"--dataset-id {dataset_id!r}: not a Minari dataset id "
                         f"([namespace/]name-v<version>): {exc}") from exc
    # MINARI_DATASETS_PATH or ~/.minari, absolute: a relative one was joined twice into the part's path
    root = Path(root if root is not None else get_dataset_path()).resolve()
    target = root / dataset_id
    if target.exists():
        raise ValueError(f"Minari dataset {dataset_id!r} exists in {root}: a dataset is never written over")
    return root, target


def write_minari(converted: Any, bag: str | Path, task: str, dataset_id: str, root: str | Path | None = None,
                 manifest: dict[str, Any] | None = None) -> Path:
    """Write ``converted`` as Minari dataset ``dataset_id`` under ``root`` (module docstring); its directory.

    Raises:
        ValueError: minari is not importable, a bad or existing dataset id, no transitions (nothing written).
    """
    minari = _minari()
    import gymnasium as gym
    from minari.data_collector import EpisodeBuffer

    from async_naf.task.tasks import make_task

    root, target = minari_target(dataset_id, root)
    b = converted.batch
    n = int(b.obs.shape[0])
    if n == 0:
        raise ValueError(f"no transitions: nothing to write (dropped: {dict(converted.drops)})")
    t = make_task(task)
    if b.obs.shape[1] != t.obs_dim or b.action.shape[1] != t.act_dim:
        raise ValueError(f"transitions of obs {b.obs.shape[1]} / act {b.action.shape[1]} are not {task}'s "
                         f"({t.obs_dim} / {t.act_dim})")
    episodes, holes = minari_episodes(b, converted.keys)
    buffers = [EpisodeBuffer(id=i, **e) for i, e in enumerate(episodes)]
    obs_space = gym.spaces.Box(-np.inf, np.inf, (t.obs_dim,), np.float32)
    act_space = gym.spaces.Box(t.action_low, t.action_high, dtype=np.float32)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".async_naf_minari_part_", dir=root))
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(staging)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "env_spec is None", UserWarning)  # no gymnasium registration
            # metadata a bag does not have (who, which code, which evaluation env): left unset, without four
            # warnings on every conversion; the manifest.json beside the dataset says where it came from
            for field in ("code_permalink", "author", "author_email", "eval_env"):
                warnings.filterwarnings("ignore", f"`{field}` is set to None", UserWarning)
            minari.create_dataset_from_buffers(
                dataset_id, buffers, observation_space=obs_space, action_space=act_space,
                algorithm_name=f"async_naf bag convert --method {converted.method}",
                description=f"async_naf {task}: {n} transitions in {len(episodes)} episodes converted from the "
                            f"rosbag2 bag {Path(bag).name} ({converted.method} conversion)",
                data_format="hdf5")
        info = dict(manifest or {})
        info.update({"format": "minari", "dataset_id": dataset_id, "task": task, "method": converted.method,
                     "transitions": n, "minari_episodes": len(episodes), "episodes_split_at_holes": holes,
                     "robots": converted.robots, "drops": dict(converted.drops),
                     "minari_version": minari.__version__})
        (staging / dataset_id / "manifest.json").write_text(json.dumps(info, indent=1, default=str) + "\n")
        if target.exists():  # written meanwhile by someone else
            raise ValueError(f"Minari dataset {dataset_id!r} appeared in {root} meanwhile: not written over")
        _place(staging, root, dataset_id)
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old
        shutil.rmtree(staging, ignore_errors=True)
    return target
