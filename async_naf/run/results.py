"""Run results: the learning curve (``metrics.csv``), evaluations, ``summary.json``, plots, TensorBoard.

``metrics.csv`` is written by the trainer node, one row per finished training episode (any robot)::

    wall_s,env_steps,updates,robot,episode,episode_return,success,demo_share,demo_buffer_size

(the two demo columns: share of demonstration rows in the updates since the previous row and the demo
buffer's rows, :mod:`async_naf.learning.metrics`; files written before them lack them, and reading does not
need them). ``wall_s`` is seconds since the trainer started, ``env_steps`` the transitions received so far from all
robots, ``updates`` the NAF gradient updates done, ``success`` 0/1 (the task's success criterion on
simulator ground truth where available). ``eval.csv`` (written by ``async-naf train`` while it runs) holds
greedy evaluations of checkpoints::

    wall_s,env_steps,updates,episodes,success_rate,consecutive_successes,mean_return,checkpoint,
    strict_success_rate,strict_consecutive,door_angle_median

(``strict_*``: the strict criterion of :mod:`async_naf.task.tasks`, door open wide and held at the end;
``door_angle_median``: the median door angle at the episodes' ends, rad.)

This module is ROS-free; matplotlib is imported lazily with the Agg backend.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

METRICS_FIELDS = ("wall_s", "env_steps", "updates", "robot", "episode", "episode_return", "success")
EVAL_FIELDS = ("wall_s", "env_steps", "updates", "episodes", "success_rate", "consecutive_successes",
               "mean_return", "checkpoint", "strict_success_rate", "strict_consecutive", "door_angle_median",
               "failures")
# columns an eval.csv written before the strict criterion lacks: read as NaN
_EVAL_LATER_FIELDS = ("strict_success_rate", "strict_consecutive", "door_angle_median")
# text columns of eval.csv ("failures": why failed episodes failed, counts_text; "" in older files)
_EVAL_TEXT_FIELDS = ("checkpoint", "failures")


@dataclasses.dataclass(frozen=True)
class EpisodeRow:
    """One training episode from ``metrics.csv`` (units: s, steps, updates)."""

    wall_s: float
    env_steps: int
    updates: int
    robot: str
    episode: int
    episode_return: float
    success: bool


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Greedy evaluation: per-episode returns, successes, strict successes and final door angles, in order.

    ``consecutive_successes`` is the longest run of consecutive successful episodes (Gu et al. 2017 report
    "100% success over 20 consecutive trials"); ``strict_*`` the same on the strict criterion (door open at
    least ``open_angle`` and held over the episode's last steps; see :mod:`async_naf.task.tasks`).
    ``door_angles``: the door angle (ground truth) at each episode's end, rad; empty for reach.
    ``failures``: why each episode failed the task's criterion, "" where it did not
    (:attr:`async_naf.task.tasks.EpisodeOutcome.failure`); empty if not recorded.
    """

    successes: tuple[bool, ...]
    returns: tuple[float, ...]
    strict: tuple[bool, ...] = ()
    door_angles: tuple[float, ...] = ()
    failures: tuple[str, ...] = ()

    def failure_counts(self) -> dict[str, int]:
        """Failed episodes per reason (:data:`async_naf.task.tasks.FAILURES`), reasons that occurred only."""
        return dict(Counter(reason for reason in self.failures if reason))

    @property
    def episodes(self) -> int:
        return len(self.successes)

    @property
    def success_rate(self) -> float:
        return sum(self.successes) / len(self.successes) if self.successes else 0.0

    @property
    def consecutive_successes(self) -> int:
        return longest_streak(self.successes)

    @property
    def mean_return(self) -> float:
        return sum(self.returns) / len(self.returns) if self.returns else float("nan")

    @property
    def strict_success_rate(self) -> float:
        return sum(self.strict) / len(self.strict) if self.strict else 0.0

    @property
    def strict_consecutive(self) -> int:
        return longest_streak(self.strict)

    def door_angle_quantiles(self) -> dict[str, float]:
        """Distribution of the final door angles, rad: min, 10/50/90 % quantiles, max (empty for reach)."""
        if not self.door_angles:
            return {}
        import numpy as np

        a = np.asarray(self.door_angles, dtype=float)
        q10, q50, q90 = np.quantile(a, (0.1, 0.5, 0.9))
        return {"min": float(a.min()), "q10": float(q10), "median": float(q50), "q90": float(q90),
                "max": float(a.max())}

    def to_dict(self) -> dict[str, Any]:
        return {"episodes": self.episodes, "success_rate": self.success_rate,
                "consecutive_successes": self.consecutive_successes, "mean_return": self.mean_return,
                "strict_success_rate": self.strict_success_rate, "strict_consecutive": self.strict_consecutive,
                "door_angle_final": self.door_angle_quantiles(),
                "successes": [int(s) for s in self.successes], "strict": [int(s) for s in self.strict],
                "door_angles": [round(a, 4) for a in self.door_angles], "returns": list(self.returns),
                "failures": self.failure_counts()}

    def summary_fields(self) -> dict[str, Any]:
        """The final evaluation's fields of a run's ``summary.json`` (``async-naf train``, the peers)."""
        return {"eval_success_rate": self.success_rate, "eval_episodes": self.episodes,
                "consecutive_successes": self.consecutive_successes, "eval_mean_return": self.mean_return,
                "eval_successes": [int(s) for s in self.successes],
                "eval_strict_success_rate": self.strict_success_rate, "strict_consecutive": self.strict_consecutive,
                "eval_strict": [int(s) for s in self.strict], "door_angle_final": self.door_angle_quantiles(),
                "eval_failures": self.failure_counts()}

    def eval_row(self) -> dict[str, Any]:
        """The figures of one ``eval.csv`` row (the caller adds time, steps, updates and checkpoint)."""
        median = self.door_angle_quantiles().get("median", float("nan"))
        return {"episodes": self.episodes, "success_rate": self.success_rate,
                "consecutive_successes": self.consecutive_successes, "mean_return": round(self.mean_return, 4),
                "strict_success_rate": self.strict_success_rate, "strict_consecutive": self.strict_consecutive,
                "door_angle_median": round(median, 4), "failures": counts_text(self.failure_counts())}


def counts_text(counts: dict[str, int]) -> str:
    """``{"closed_again": 3, "too_little": 1}`` -> ``"closed_again 3, too_little 1"`` (log and CLI lines)."""
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def longest_streak(flags: Iterable[bool]) -> int:
    """Longest run of consecutive True values."""
    best = run = 0
    for flag in flags:
        run = run + 1 if flag else 0
        best = max(best, run)
    return best


def read_metrics(path: str | os.PathLike[str]) -> list[EpisodeRow]:
    """Read ``metrics.csv``; tolerant of a missing file and of a half-written last line (the trainer may be
    appending while we read). Rows with non-finite or unparsable numbers are skipped.

    Raises:
        ValueError: if the header lacks one of :data:`METRICS_FIELDS`.
    """
    path = Path(path)
    if not path.exists():
        return []
    rows: list[EpisodeRow] = []
    with open(path, newline="") as fh:
        text = fh.read()
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # drop a partial last line
    reader = csv.DictReader(text.splitlines())
    missing = [f for f in METRICS_FIELDS if f not in (reader.fieldnames or [])]
    if reader.fieldnames is not None and missing:
        raise ValueError(f"{path}: missing columns {missing}; header is {reader.fieldnames}")
    for rec in reader:
        try:
            row = EpisodeRow(
                wall_s=float(rec["wall_s"]), env_steps=int(float(rec["env_steps"])),
                updates=int(float(rec["updates"])), robot=str(rec["robot"]),
                episode=int(float(rec["episode"])), episode_return=float(rec["episode_return"]),
                success=str(rec["success"]).strip().lower() in ("1", "true", "1.0"),
            )
        except (TypeError, ValueError):
            continue
        if math.isfinite(row.wall_s) and math.isfinite(row.episode_return):
            rows.append(row)
    return rows


def rolling_success(rows: Sequence[EpisodeRow], window: int = 20) -> list[float]:
    """Success rate over the last ``window`` episodes, at each episode."""
    return _moving_average([float(row.success) for row in rows], window)


def append_csv(path: str | os.PathLike[str], fields: Sequence[str], row: dict[str, Any]) -> None:
    """Append one row (writing the header first if the file is new).

    A file that already has a header keeps its own columns (one written by an earlier version, continued by
    a resumed run): the row's values go under them, a column the file lacks is left out, never misaligned.
    """
    path = Path(path)
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        with open(path, newline="") as fh:
            header = next(csv.reader(fh), None)
        if header:
            fields = header
    with open(path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(fields))
        if new:
            writer.writeheader()
        writer.writerow({k: row.get(k, "") for k in fields})


def read_eval(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read ``eval.csv`` (numbers as floats, checkpoint as str)."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    with open(path, newline="") as fh:
        for rec in csv.DictReader(fh):
            for k in _EVAL_LATER_FIELDS:
                if rec.get(k) in (None, ""):
                    rec[k] = "nan"
            rec["failures"] = rec.get("failures") or ""
            try:
                out.append({k: (rec[k] if k in _EVAL_TEXT_FIELDS else float(rec[k])) for k in EVAL_FIELDS})
            except (KeyError, TypeError, ValueError):
                continue
    return out


def stability(evals: Sequence[Mapping[str, Any]], key: str, threshold: float, episodes: int) -> dict[str, Any]:
    """Whether greedy success held once reached: the first evaluation of ``evals`` (:func:`read_eval` rows, in
    order) whose ``key`` (``success_rate`` or ``strict_success_rate``) is >= ``threshold``, and what came after.

    Args:
        evals: the run's periodic evaluations.
        key: the rate compared.
        threshold: the success rate to reach and keep (0-1).
        episodes: episodes per evaluation where a row does not give its own (its ``episodes`` column, which
            ``async-naf train`` writes: the evaluation's episode count).

    Returns:
        ``first_index``, ``first_wall_s``, ``first_env_steps`` (None where never reached), ``later`` (evaluations
        after it), ``later_episodes`` (their episodes), ``later_below`` (of them below ``threshold``),
        ``lowest_later``, ``failed_episodes_after`` (the later evaluations' failed episodes,
        ``round((1 - rate) * episodes)`` each), ``failure_rate_after`` (per episode; None without later
        evaluations) and ``held`` (reached, at least one later evaluation, none below).
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")

    def count(e: Mapping[str, Any]) -> int:
        n = float(e.get("episodes", float("nan")))
        return int(n) if math.isfinite(n) and n >= 1 else episodes

    rates = [float(e[key]) for e in evals]
    first = next((i for i, v in enumerate(rates) if math.isfinite(v) and v >= threshold - 1e-12), None)
    later = [] if first is None else [(v, count(e)) for v, e in zip(rates[first + 1:], evals[first + 1:])
                                      if math.isfinite(v)]
    failed = sum(round((1.0 - v) * n) for v, n in later)
    total = sum(n for _, n in later)
    return {
        "first_index": first,
        "first_wall_s": None if first is None else float(evals[first]["wall_s"]),
        "first_env_steps": None if first is None else float(evals[first]["env_steps"]),
        "later": len(later), "later_episodes": total,
        "later_below": sum(v < threshold - 1e-12 for v, _ in later),
        "lowest_later": min(v for v, _ in later) if later else None, "failed_episodes_after": failed,
        "failure_rate_after": failed / total if later else None,
        "held": first is not None and bool(later) and all(v >= threshold - 1e-12 for v, _ in later),
    }


def time_to_threshold(points: Sequence[tuple[float, float]], threshold: float) -> float | None:
    """First x (wall time) at which y (success rate) >= threshold, or None if never."""
    for x, y in points:
        if y >= threshold - 1e-12:
            return x
    return None


def plot_learning_curve(run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
                        title: str = "", rows: Sequence[EpisodeRow] | None = None,
                        evals: Sequence[dict[str, Any]] | None = None) -> Path | None:
    """Plot ``metrics.csv`` (rolling training success, episode return) and ``eval.csv`` (greedy success)
    against wall time into ``learning_curve.png``. Returns the path, or None when there is nothing to plot.

    ``rows`` / ``evals``: what :func:`read_metrics` / :func:`read_eval` returned, if the caller has read them
    already (else the files in ``run_dir`` are read).
    """
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir / "metrics.csv") if rows is None else rows
    evals = read_eval(run_dir / "eval.csv") if evals is None else evals
    if not rows and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_s, ax_r) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True)
    if rows:
        t = [r.wall_s / 60 for r in rows]
        ax_s.plot(t, rolling_success(rows), label="training episodes (last 20, with exploration)", lw=1.2)
        ax_r.plot(t, [r.episode_return for r in rows], ".", ms=2, alpha=0.4, label="episode return")
        ret_avg = _moving_average([r.episode_return for r in rows], 20)
        ax_r.plot(t, ret_avg, lw=1.5, label="return (moving average of 20)")
    if evals:
        t_eval = [e["wall_s"] / 60 for e in evals]
        ax_s.plot(t_eval, [e["success_rate"] for e in evals], "o-",
                  label=f"greedy evaluation ({int(evals[-1]['episodes'])} episodes)")
        strict = [e["strict_success_rate"] for e in evals]
        if any(math.isfinite(v) for v in strict):
            ax_s.plot(t_eval, strict, "s--", ms=4, label="greedy, strict (door open wide and held)")
    ax_s.set_ylabel("success rate")
    ax_s.set_ylim(-0.03, 1.03)
    ax_s.grid(alpha=0.3)
    ax_s.legend(loc="lower right", fontsize=8)
    ax_r.set_ylabel("episode return")
    ax_r.set_xlabel("wall time (min)")
    ax_r.grid(alpha=0.3)
    ax_r.legend(loc="lower right", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_path = Path(out) if out is not None else run_dir / "learning_curve.png"
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path


def _moving_average(values: Sequence[float], n: int) -> list[float]:
    """Mean of the last ``n`` values (fewer at the start), at each value."""
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= n:
            acc -= values[i - n]
        out.append(acc / min(i + 1, n))
    return out


def plot_workers_comparison(curves: Mapping[int, Sequence[tuple[float, float]]], out: str | os.PathLike[str],
                            threshold: float | None = None, title: str = "") -> Path:
    """Success rate against wall time, one line per worker count (the paper's Fig. 4 style).

    Args:
        curves: workers -> [(wall_s, success_rate), ...].
        threshold: drawn as a dashed line if given.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for workers in sorted(curves):
        pts = curves[workers]
        ax.plot([p[0] / 60 for p in pts], [p[1] for p in pts], "o-", ms=3,
                label=f"{workers} worker{'s' if workers > 1 else ''}")
    if threshold is not None:
        ax.axhline(threshold, ls="--", color="grey", lw=1, label=f"threshold {threshold:.0%}")
    ax.set_xlabel("wall time (min)")
    ax.set_ylabel("success rate (greedy evaluation)")
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_algorithms(curves: Mapping[str, Sequence[Sequence[tuple[float, float, float]]]], out: str | os.PathLike[str],
                    threshold: float | None = None, title: str = "") -> Path:
    """Greedy success against environment steps (left) and wall time (right), one colour per algorithm: each
    seed thin, the mean over seeds (on the union of evaluation points, each seed held at its last value) bold.

    Args:
        curves: algorithm -> one list per seed of (env_steps, wall_s, success_rate) points.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for i, (name, seeds) in enumerate(curves.items()):
        color = f"C{i}"
        for axis, col, scale in ((axes[0], 0, 1.0), (axes[1], 1, 1 / 60)):
            runs = [[(p[col] * scale, p[2]) for p in pts if math.isfinite(p[2])] for pts in seeds]
            runs = [r for r in runs if r]
            for r in runs:
                axis.plot([p[0] for p in r], [p[1] for p in r], color=color, lw=0.7, alpha=0.35)
            if runs:
                grid = np.unique(np.concatenate([[p[0] for p in r] for r in runs]))
                mean = np.mean([np.interp(grid, [p[0] for p in r], [p[1] for p in r], left=0.0) for r in runs],
                               axis=0)
                axis.plot(grid, mean, "o-", ms=3, color=color, lw=1.8, label=f"{name} ({len(runs)} seeds)")
    for axis, label in ((axes[0], "environment steps (all robots)"), (axes[1], "wall time (min)")):
        if threshold is not None:
            axis.axhline(threshold, ls="--", color="grey", lw=1)
        axis.set_xlabel(label)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("greedy success rate")
    axes[0].set_ylim(-0.03, 1.03)
    axes[0].legend(fontsize=8, loc="upper left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def has_tensorboard_events(run_dir: str | os.PathLike[str]) -> bool:
    """True if any ``events.out.tfevents.*`` file exists under ``run_dir``."""
    return any(Path(run_dir).rglob("events.out.tfevents.*"))


def write_tensorboard(run_dir: str | os.PathLike[str], subdir: str = "tensorboard/curves",
                      rows: Sequence[EpisodeRow] | None = None,
                      evals: Sequence[dict[str, Any]] | None = None) -> Path | None:
    """Write ``metrics.csv`` and ``eval.csv`` as TensorBoard scalars (x axis: env steps; wall time kept).

    Used after a run; the trainer node may also log its losses live under ``<run_dir>/tensorboard``.
    ``rows`` / ``evals``: already read (as in :func:`plot_learning_curve`); else the files are read.
    """
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir / "metrics.csv") if rows is None else rows
    evals = read_eval(run_dir / "eval.csv") if evals is None else evals
    if not rows and not evals:
        return None
    from torch.utils.tensorboard import SummaryWriter

    logdir = run_dir / subdir
    writer = SummaryWriter(log_dir=str(logdir))
    try:
        roll = rolling_success(rows)
        t0 = time.time()
        for row, rs in zip(rows, roll, strict=True):
            wt = t0 + row.wall_s
            writer.add_scalar("train/episode_return", row.episode_return, row.env_steps, walltime=wt)
            writer.add_scalar("train/success_rate_last20", rs, row.env_steps, walltime=wt)
            writer.add_scalar("train/updates", row.updates, row.env_steps, walltime=wt)
        for ev in evals:
            wt = t0 + ev["wall_s"]
            writer.add_scalar("eval/success_rate", ev["success_rate"], int(ev["env_steps"]), walltime=wt)
            writer.add_scalar("eval/consecutive_successes", ev["consecutive_successes"], int(ev["env_steps"]),
                              walltime=wt)
            writer.add_scalar("eval/mean_return", ev["mean_return"], int(ev["env_steps"]), walltime=wt)
            for key in _EVAL_LATER_FIELDS:
                if math.isfinite(ev[key]):
                    writer.add_scalar(f"eval/{key}", ev[key], int(ev["env_steps"]), walltime=wt)
    finally:
        writer.close()
    return logdir


LOST_COUNTERS = ("lost_transitions", "unconfirmed_transitions", "lost_with_trainer", "unsent_at_exit_transitions",
                 "lost_episode_stats", "unconfirmed_episode_stats", "unsent_at_exit_episode_stats")
RESENT_COUNTERS = ("resent_transitions", "resent_episode_stats")


_TRANSITION_LOSSES = tuple(k for k in LOST_COUNTERS if "episode" not in k)


def _collector_files(run_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """``{robot_<i>: counters}`` of the collectors' counters files in ``<run_dir>/collectors``; a file that cannot
    be read (not written yet, being replaced, a collector killed while writing) is left out."""
    per: dict[str, Any] = {}
    for path in sorted(Path(run_dir, "collectors").glob("robot_*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            per[path.stem] = data
    return per


def collector_counts(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The collectors' final counters (``<run_dir>/collectors/robot_<i>.json``, each collector's ``counts_file``,
    rewritten every diagnostics period and at exit; one killed with SIGKILL leaves its last period's) for
    summary.json: ``{"collectors": {robot_<i>: {counter: value}}, "transitions_lost": {reason: total},
    "episode_stats_lost": {reason: total}, "resent": {counter: total}}`` (empty dicts when no collector wrote
    any). Unreadable files are skipped."""
    per = _collector_files(run_dir)

    def total(key: str) -> int:
        return int(sum(float(c.get(key, 0) or 0) for c in per.values()))
    return {"collectors": per,
            "transitions_lost": {k: total(k) for k in _TRANSITION_LOSSES} if per else {},
            "episode_stats_lost": {k: total(k) for k in LOST_COUNTERS if "episode" in k} if per else {},
            "resent": {k: total(k) for k in RESENT_COUNTERS} if per else {}}


class RobotsWatch:
    """What a robots-only part (``async-naf train --part robots``) tells its terminal while it runs, read from its
    collectors' counters files (``<run_dir>/collectors/robot_<i>.json``, rewritten with every diagnostics
    message): when a robot first hears a trainer, when the trainer goes and comes back, a warning if none was
    heard after ``no_trainer_warn_s`` seconds, and a progress line every ``progress_every_s`` seconds (0: none).

    Args:
        run_dir: the part's run directory.
        robots: the collectors' file stems, e.g. ``["robot_0", "robot_2"]``.
        hint: what to check if no trainer is heard (the domain and discovery settings), appended to the warning.
    """

    def __init__(self, run_dir: str | os.PathLike[str], robots: list[str], hint: str = "",
                 no_trainer_warn_s: float = 30.0, progress_every_s: float = 60.0, poll_s: float = 2.0) -> None:
        self.dir = Path(run_dir, "collectors")
        self.robots = list(robots)
        self.hint = hint
        self.no_trainer_warn_s = no_trainer_warn_s
        self.progress_every_s = progress_every_s
        self.poll_s = poll_s
        self._next_poll = 0.0
        self._next_progress = progress_every_s if progress_every_s > 0 else math.inf
        self._warned = False
        self._heard: dict[str, bool] = {}
        self._listening: dict[str, bool] = {}
        self.counts: dict[str, dict[str, Any]] = {}

    def _read(self) -> None:
        # a file not written yet (the first diagnostics period) or being replaced: its last good read stands
        self.counts.update((k, v) for k, v in _collector_files(self.dir.parent).items() if k in self.robots)

    def poll(self, elapsed: float) -> list[str]:
        """The lines to print now (``elapsed``: seconds since the part started); reads the files every poll_s."""
        if elapsed < self._next_poll:
            return []
        self._next_poll = elapsed + self.poll_s
        self._read()
        lines = []
        for robot in self.robots:
            c = self.counts.get(robot, {})
            heard, listening = bool(c.get("trainer_heard", 0)), bool(c.get("trainer_listening", 0))
            first = heard and not self._heard.get(robot, False)
            if first:
                lines.append(f"{robot}: trainer heard on /trainer/transitions; its episodes start")
            if heard and (first or self._listening.get(robot, False)) and not listening:  # gone, even at once
                lines.append(f"WARNING: {robot}: trainer gone; {_int(c, 'backlog_transitions')} transitions kept "
                             f"to send ({_lost(c)} lost so far)")
            elif heard and not first and not self._listening.get(robot, True) and listening:
                lines.append(f"{robot}: trainer back; {_int(c, 'backlog_transitions')} transitions still to send")
            self._heard[robot], self._listening[robot] = heard, listening
        if not self._warned and elapsed >= self.no_trainer_warn_s and not any(self._heard.values()):
            self._warned = True
            lines.append(f"WARNING: no trainer heard after {elapsed:.0f} s: the robots wait for one on "
                         f"/trainer/transitions{'; ' + self.hint if self.hint else ''}")
        if elapsed >= self._next_progress:
            self._next_progress = elapsed + self.progress_every_s
            lines.append(f"robots at {elapsed / 60:.1f} min: {self._totals()}")
        return lines

    def _totals(self) -> str:
        def total(key: str) -> int:
            return sum(_int(c, key) for c in self.counts.values())
        return (f"{total('episodes')} episodes, {total('transitions_sent')} transitions sent, "
                f"backlog {total('backlog_transitions')}, {sum(_lost(c) for c in self.counts.values())} lost")

    def final(self) -> list[str]:
        """The lines for the end of the part, from the final files: per robot its totals, and a warning if no
        robot ever heard a trainer or transitions were lost."""
        self._read()
        lines = []
        for robot in self.robots:
            c = self.counts.get(robot)
            if c is None:
                lines.append(f"  {robot}: no counters (its collector wrote none: {self.dir / (robot + '.json')})")
                continue
            lost = _lost(c)
            lines.append(f"  {robot}: {_int(c, 'episodes')} episodes, {_int(c, 'transitions_sent')} transitions "
                         f"sent, {lost} lost (by reason in summary.json: transitions_lost)")
        if self.counts and not any(_int(c, "trainer_heard") for c in self.counts.values()):
            lines.append(f"WARNING: no robot heard a trainer on /trainer/transitions: nothing was trained"
                         f"{'; ' + self.hint if self.hint else ''}")
        return lines


def _lost(counts: dict[str, Any]) -> int:
    """Transitions lost by every reason summary.json's ``transitions_lost`` counts (:data:`LOST_COUNTERS`): the
    same figure in a robots part's progress lines, warnings and closing lines."""
    return sum(_int(counts, k) for k in _TRANSITION_LOSSES)


def _int(counts: dict[str, Any], key: str) -> int:
    try:
        return int(float(counts.get(key, 0) or 0))
    except (TypeError, ValueError):
        return 0


def write_json(path: str | os.PathLike[str], data: dict[str, Any]) -> Path:
    """Write JSON atomically (temp file + rename), so a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")
    os.replace(tmp, path)
    return path


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
