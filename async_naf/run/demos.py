"""``--demos DATASET|BAG ...`` of ``async-naf train`` and ``demos:=`` of ``train.launch.py``: the datasets the
trainer's demonstration buffer is loaded from (:mod:`async_naf.learning.demos`), ready before the graph starts.

A dataset directory (``manifest.json`` + ``replay.npz``, ``async-naf bag convert``) is used where it is. A
rosbag2 bag (a directory with ``metadata.yaml``) is converted the exact way (:func:`async_naf.run.convert.
convert_exact`, the collector's own pairing, reward and time-limit code) into ``RUN_DIR/demos/<bag name>``;
a resumed run finds that dataset again and re-uses it when it was made from the same bag (its sha256).
Every dataset is then checked against the run (task, obs/action dimensions, message layouts) and its rows
read (NaN/Inf rows dropped and counted): a mismatch is a ``ValueError`` before any node starts.
"""
from __future__ import annotations

import json
from pathlib import Path

DEMOS_DIR = "demos"


def is_bag(path: Path) -> bool:
    """A rosbag2 bag directory (``metadata.yaml`` beside its MCAP or sqlite3 storage files)."""
    return path.is_dir() and (path / "metadata.yaml").is_file()


def _converted_from(dataset: Path, sha: str) -> bool:
    try:
        return json.loads((dataset / "manifest.json").read_text()).get("bag_sha256") == sha
    except (OSError, ValueError, AttributeError):
        return False


def prepare_demos(sources: list[str] | tuple[str, ...], task: str, run_dir: str | Path,
                  log: bool = True, label: str = "--demos") -> list[str]:
    """The absolute dataset paths for ``sources`` (datasets or bags), each checked against ``task``;
    ``label``: what the errors call a source (the option or argument that named it).

    Raises:
        ValueError: a source that is neither a dataset nor a bag, a bag that does not convert (BagError), a
            dataset that does not fit the task (see :func:`async_naf.learning.demos.read_dataset`), a
            source given twice, or ``RUN_DIR/demos/<name>`` holding a dataset of another bag.
    """
    import sys

    from async_naf.learning.demos import load_demos
    from async_naf.run.convert import _bag_sha256, convert_exact, write_dataset
    from async_naf.task.tasks import make_task

    if not sources:
        raise ValueError(f"{label}: no dataset or bag given")
    task_obj = make_task(task)
    out_dir = Path(run_dir).resolve() / DEMOS_DIR
    datasets: list[str] = []
    for raw in sources:
        src = Path(raw).expanduser().resolve()
        if (src / "manifest.json").is_file():
            datasets.append(str(src))
            continue
        if not src.exists():
            raise ValueError(f"{label} {raw}: no such dataset or bag")
        if not is_bag(src):
            raise ValueError(f"{label} {raw}: neither a dataset (manifest.json + replay.npz) nor a rosbag2 bag "
                             "(metadata.yaml)")
        sha = _bag_sha256(src)
        target = out_dir / src.name
        if target.exists() and not _converted_from(target, sha):
            target = out_dir / f"{target.name}_{sha[:8]}"
        if target.exists() and _converted_from(target, sha):
            if log:
                print(f"  demos: {raw} -> {target} (converted before)", file=sys.stderr)
        else:
            converted = convert_exact(src, task)  # BagError (a ValueError) when it cannot feed the task
            write_dataset(converted, src, task, target)
            if log:
                print(f"  demos: {raw} -> {target}: {converted.counts['transitions']} transitions from "
                      f"{converted.episodes} episodes (dropped: {dict(converted.drops) or 'none'})",
                      file=sys.stderr)
        datasets.append(str(target))
    _, found = load_demos(datasets, task, task_obj.obs_dim, task_obj.act_dim)  # the checks the trainer makes
    if log:
        for s in found:
            print(f"  demos: {s.path}: {s.rows} rows"
                  + (f", {s.dropped} dropped (NaN/Inf or bad terminal)" if s.dropped else ""), file=sys.stderr)
    return datasets
