"""``async-naf experiment workers``: the same task trained with 1, 2, 4 ... workers, compared in one plot.

Gu et al. 2017 (Fig. 4) show that more robots collecting in parallel reach the door-opening success
threshold sooner in wall time. This command runs ``async-naf train`` once per worker count (sequentially,
each in ``OUT/workers_<N>``, each with greedy evaluations of its checkpoints every ``--eval-every`` s),
then writes ``OUT/workers.png`` (greedy success rate against wall time, one line per worker count) and
``OUT/workers.json`` (time to threshold per worker count, plus each run's summary).
Use ``--realtime`` so every simulated robot is paced like a real one; otherwise the robots share this
machine's cores and more workers do not mean more experience per second.
"""
from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

# seconds a run gets after SIGINT to stop its nodes (the trainer's final checkpoint) before SIGTERM
RUN_STOP_TIMEOUT_S = 120.0

HELP = "compare training with different numbers of workers (success rate against wall time)"
DESCRIPTION = """Run `async-naf train` once per worker count and compare them (Gu et al. 2017, Fig. 4).

Writes OUT/workers_<N>/ (a full run directory each), OUT/workers.png (greedy evaluation success rate
against wall time, one line per worker count) and OUT/workers.json (time to --threshold per worker count,
speed-up relative to the fewest workers, and each run's summary).

Example:
  async-naf experiment workers --task door_pull --workers 1 2 4 --realtime --minutes 60 --out runs/workers
  async-naf experiment workers --task reach --workers 1 2 --realtime --minutes 10 --out runs/workers_reach
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiment", choices=("workers",), help="which experiment (workers: 1 vs 2 vs 4 robots)")
    parser.add_argument("--task", choices=("reach", "door_pull", "door_push"), default="door_pull", help="task")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="worker counts (default: 1 2 4)")
    parser.add_argument("--minutes", type=float, required=True, help="wall-time budget per run, minutes")
    parser.add_argument("--realtime", action="store_true", help="pace each simulated robot like a real one")
    parser.add_argument("--seed", type=int, default=0, help="base seed, the same for every run (default: 0)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--threshold", type=float, default=0.9,
                        help="success rate for the time-to-threshold comparison (default: %(default)s)")
    parser.add_argument("--criterion", choices=("strict", "success"), default="strict",
                        help="the evaluation figure compared and plotted: strict (door open >= 1.0 rad and held) "
                             "or success (door past 0.35 rad at the end) (default: %(default)s)")
    parser.add_argument("--eval-every", type=float, default=60.0, metavar="S",
                        help="greedy evaluation every S seconds in each run (default: %(default)s)")
    parser.add_argument("--eval-episodes", type=int, default=20, help="episodes per evaluation (default: 20)")
    parser.add_argument("--stop-at-threshold", action="store_true",
                        help="end each run as soon as it reaches the threshold (saves time; curves end there)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the runs of an earlier experiment in --out (default: refuse)")
    parser.add_argument("--config", default=None, help="parameter overrides file passed to every run")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="NODE.PARAM=VALUE",
                        help="parameter override passed to every run (repeatable)")


def train_command(args: argparse.Namespace, workers: int, run_dir: Path) -> list[str]:
    """The ``async-naf train`` command line of one run."""
    cmd = [sys.executable, "-m", "async_naf.run.cli", "train", "--task", args.task, "--workers", str(workers),
           "--seed", str(args.seed), "--run-dir", str(run_dir), "--minutes", str(args.minutes),
           "--eval-every", str(args.eval_every), "--eval-episodes", str(args.eval_episodes),
           "--threshold", str(args.threshold), "--criterion", args.criterion]
    if args.realtime:
        cmd.append("--realtime")
    if args.stop_at_threshold:
        cmd += ["--stop-at-success", str(args.threshold)]
    if getattr(args, "overwrite", False):
        cmd.append("--overwrite")
    if args.config:
        cmd += ["--config", args.config]
    for item in args.sets:
        cmd += ["--set", item]
    return cmd


def compare(out: Path, workers: list[int], threshold: float, task: str, criterion: str = "strict") -> dict[str, Any]:
    """Read each run's eval.csv and summary.json; write workers.png and workers.json (``criterion``: the
    evaluation figure compared, see ``async-naf train --criterion``)."""
    import json

    from async_naf.run.commands.train import CRITERIA
    from async_naf.run.results import plot_workers_comparison, read_eval, time_to_threshold, write_json

    key = CRITERIA[criterion]
    curves: dict[int, list[tuple[float, float]]] = {}
    runs: dict[str, Any] = {}
    for n in workers:
        run_dir = out / f"workers_{n}"
        evals = read_eval(run_dir / "eval.csv")
        curves[n] = [(e["wall_s"], e[key]) for e in evals]
        summary_path = run_dir / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
        runs[str(n)] = {"time_to_threshold_s": time_to_threshold(curves[n], threshold),
                        "evaluations": len(evals), "summary": summary}
    base = runs[str(min(workers))]["time_to_threshold_s"]
    for n in workers:
        t = runs[str(n)]["time_to_threshold_s"]
        runs[str(n)]["speedup_vs_fewest"] = (base / t) if (base and t) else None
    result = {"task": task, "threshold": threshold, "criterion": criterion, "workers": workers, "runs": runs}
    write_json(out / "workers.json", result)
    plot_workers_comparison(curves, out / "workers.png", threshold=threshold,
                            title=f"{task}: greedy {criterion} success rate vs wall time")
    return result


class _Interrupted(Exception):
    """This process got SIGINT, SIGTERM or SIGHUP (the current run has been stopped)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _run_child(cmd: list[str]) -> int:
    """Run one ``async-naf train`` to its end and return its exit status.

    The run is started like the launcher starts nodes (:func:`async_naf.run.launcher.start_child`): in its own
    process group, and killed by the kernel if this process dies, so it never outlives the experiment.
    SIGINT (Ctrl-C), SIGTERM or SIGHUP to this process is forwarded to the run as SIGINT (it stops its
    nodes, the trainer writes a final checkpoint), followed by SIGTERM and SIGKILL if it takes too long
    (:func:`async_naf.run.launcher.stop_child`). The handlers only record the signal, so one that arrives while
    the run is being started cannot lose track of it.

    Raises:
        _Interrupted: a signal stopped the run.
    """
    from async_naf.run.launcher import start_child, stop_child

    received: list[int] = []

    def record(signum: int, _frame: Any) -> None:
        received.append(signum)

    old = {sig: signal.signal(sig, record) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    child = None
    try:
        child = start_child(cmd)
        while not received:
            try:
                return child.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                continue  # the run goes on; look at the signals again
        print(f"interrupted ({signal.Signals(received[0]).name}): waiting for the current run to stop its nodes",
              file=sys.stderr, flush=True)
        stop_child(child, stop_timeout_s=RUN_STOP_TIMEOUT_S, term_timeout_s=10.0, name="async-naf train")
        raise _Interrupted(received[0])
    finally:
        if child is not None and child.poll() is None:  # any other way out: never leave the run behind
            stop_child(child, stop_timeout_s=RUN_STOP_TIMEOUT_S, term_timeout_s=10.0, name="async-naf train")
        for sig, handler in old.items():
            signal.signal(sig, handler)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if any(n < 1 for n in args.workers) or len(set(args.workers)) != len(args.workers):
        print("error: --workers must be distinct counts >= 1", file=sys.stderr)
        return 2
    status = 0
    for n in args.workers:
        run_dir = out / f"workers_{n}"
        cmd = train_command(args, n, run_dir)
        print(f"=== {n} worker(s): {' '.join(cmd[2:])}", file=sys.stderr, flush=True)
        try:
            rc = _run_child(cmd)
        except _Interrupted as exc:
            return 128 + exc.signum
        if rc != 0:
            print(f"warning: the run with {n} worker(s) exited with status {rc}", file=sys.stderr)
            status = 1
    result = compare(out, args.workers, args.threshold, args.task, args.criterion)
    for n in args.workers:
        r = result["runs"][str(n)]
        t = r["time_to_threshold_s"]
        print(f"{n} worker(s): time to {args.threshold:.0%} = {'not reached' if t is None else f'{t / 60:.1f} min'}"
              + (f" (speed-up {r['speedup_vs_fewest']:.2f}x)" if r["speedup_vs_fewest"] else ""), file=sys.stderr)
    print(f"plot: {out / 'workers.png'}; numbers: {out / 'workers.json'}", file=sys.stderr)
    return status
