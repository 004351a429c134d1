"""``async-naf experiment workers|algorithms|stability``: the same task with 1, 2, 4 ... workers, or with
several algorithms, compared in plots; or whether greedy success holds once reached, over several seeds.

``algorithms`` (Gu et al. 2017 compare NAF with other network types and algorithms on the door tasks):
NAF, DDPG and Linear-NAF trained through the ROS graph (``async-naf train --set trainer.algorithm=...``)
and, with ``--peers``, Stable-Baselines3 SAC and TD3 on the same gymnasium environment in one process
(:mod:`async_naf.run.peers`), each for the same environment-step budget and seeds, per task; then
``OUT/<task>.png`` (greedy success against environment steps and against wall time, mean over seeds with
each seed thin), ``OUT/algorithms.json`` and ``OUT/algorithms.md`` (the table). A graph run keeps a checkpoint
every ``--eval-every`` s and they are evaluated once it has ended (:func:`train_command`), so the evaluations do
not share the cores with the run they measure; the peers stop for theirs every tenth of the budget.

Gu et al. 2017 (Fig. 4) show that more robots collecting in parallel reach the door-opening success
threshold sooner in wall time. This command runs ``async-naf train`` once per worker count (sequentially,
each in ``OUT/workers_<N>``, each with greedy evaluations of its checkpoints every ``--eval-every`` s),
then writes ``OUT/workers.png`` (greedy success rate against wall time, one line per worker count) and
``OUT/workers.json`` (time to threshold per worker count, plus each run's summary).
Use ``--realtime`` so every simulated robot is paced like a real one; otherwise the robots share this
machine's cores and more workers do not mean more experience per second.

``stability`` (issue 14's goal: once a run first reaches ``--threshold`` greedy success, every later
evaluation stays at or above it): one ``async-naf train`` per seed, one after the other (runs side by side
share the cores, and a trainer that falls behind its robots makes fewer updates per environment step than
configured: a different experiment), each evaluated every ``--eval-every`` s; then ``OUT/stability.json``
and ``OUT/stability.md``: per seed and criterion when it first reached the threshold, how many later
evaluations fell below it and the lowest, the evaluation episodes failed after the first (a per-episode
failure rate), and the updates per environment step the run made. ``--analyze`` reads runs already in
``OUT`` instead of running.
"""
from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

TASKS = ("reach", "door_pull", "door_push")
ALGORITHMS = ("naf", "ddpg", "linear_naf")
# trainer.keep_checkpoints of an algorithms run whose checkpoints are evaluated after it: every one
KEEP_ALL_CHECKPOINTS = 1_000_000
# seconds a run gets after SIGINT to stop its nodes (the trainer's final checkpoint) before SIGTERM
RUN_STOP_TIMEOUT_S = 120.0

HELP = ("compare worker counts (workers), algorithms and peers (algorithms), or check that success holds after "
        "the threshold (stability)")
DESCRIPTION = """Run `async-naf train` once per worker count and compare them (Gu et al. 2017, Fig. 4).

Writes OUT/workers_<N>/ (a full run directory each), OUT/workers.png (greedy evaluation success rate
against wall time, one line per worker count) and OUT/workers.json (time to --threshold per worker count,
speed-up relative to the fewest workers, and each run's summary).

algorithms: one run per task x algorithm x seed, OUT/<task>/<algorithm>_s<seed>/ (a run directory each;
the peers' hold eval.csv and summary.json), OUT/<task>.png, OUT/algorithms.json, OUT/algorithms.md.

stability: one run per seed, one after the other, OUT/<task>/s<seed>/; OUT/stability.json and
OUT/stability.md: after the first evaluation >= --threshold, how many later ones fell below it (both
criteria), the evaluation episodes failed after it, the updates per environment step of each run.

Example:
  async-naf experiment algorithms --tasks reach door_pull door_push --algorithms naf ddpg linear_naf \
      --peers sac td3 --seeds 0 1 2 --steps 30000 --minutes 30 --out runs/algorithms
  async-naf experiment workers --task door_pull --workers 1 2 4 --realtime --minutes 60 --out runs/workers
  async-naf experiment workers --task reach --workers 1 2 --realtime --minutes 10 --out runs/workers_reach
  async-naf experiment stability --task door_pull --seeds 0 1 2 --minutes 30 --out runs/stability
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiment", choices=("workers", "algorithms", "stability"),
                        help="workers: 1 vs 2 vs 4 robots; algorithms: NAF vs DDPG vs Linear-NAF (and --peers); "
                             "stability: does greedy success hold once reached (one run per seed)")
    parser.add_argument("--task", choices=TASKS, default="door_pull", help="task (workers, stability)")
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="worker counts (workers; default: 1 2 4) or the one worker count of every run "
                             "(algorithms, stability; default: 2)")
    parser.add_argument("--tasks", choices=TASKS, nargs="+", default=list(TASKS), help="tasks (algorithms)")
    parser.add_argument("--algorithms", choices=ALGORITHMS, nargs="+", default=list(ALGORITHMS),
                        help="algorithms trained through the graph (algorithms; default: all)")
    parser.add_argument("--peers", choices=("sac", "td3"), nargs="*", default=[],
                        help="Stable-Baselines3 peers trained in one process on the same environment (algorithms)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="seeds (algorithms, stability; default: 0 1 2)")
    parser.add_argument("--steps", type=int, default=0,
                        help="environment-step budget of every run (algorithms: required; workers: 0 = none)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="wall-time budget per run, minutes (required unless stability --analyze)")
    parser.add_argument("--realtime", action="store_true", help="pace each simulated robot like a real one")
    parser.add_argument("--seed", type=int, default=0, help="base seed, the same for every run (default: 0)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--threshold", type=float, default=0.9,
                        help="success rate for the time-to-threshold comparison (default: %(default)s)")
    parser.add_argument("--criterion", choices=("strict", "success"), default="strict",
                        help="the evaluation figure compared and plotted: strict (door open >= 1.0 rad and held) "
                             "or success (door past 0.35 rad at the end) (default: %(default)s)")
    parser.add_argument("--eval-every", type=float, default=60.0, metavar="S",
                        help="greedy evaluation every S seconds in each run; algorithms: the graph runs keep a "
                             "checkpoint every S s, evaluated after the run (default: %(default)s)")
    parser.add_argument("--eval-episodes", type=int, default=20,
                        help="episodes per evaluation (default: 20; stability --analyze: for eval.csv rows that do "
                             "not give theirs)")
    parser.add_argument("--stop-at-threshold", action="store_true",
                        help="end each run as soon as it reaches the threshold (saves time; curves end there)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the runs of an earlier experiment in --out (default: refuse)")
    parser.add_argument("--analyze", action="store_true",
                        help="stability: run nothing, read the runs already in --out (OUT/<task>/s<seed>/)")
    parser.add_argument("--config", default=None, help="parameter overrides file passed to every run")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="NODE.PARAM=VALUE",
                        help="parameter override passed to every run (repeatable)")


def train_command(args: argparse.Namespace, workers: int, run_dir: Path, task: str | None = None,
                  seed: int | None = None, algorithm: str | None = None) -> list[str]:
    """The ``async-naf train`` command line of one run (``task``/``seed`` default to ``args``'; ``algorithm``
    sets the trainer's).

    An algorithms run (``algorithm`` given) without ``--stop-at-threshold`` is not evaluated while it runs: its
    trainer keeps a checkpoint every ``--eval-every`` s (weights only, all of them) and
    :func:`evaluate_after` evaluates them once the run has ended. A 30,000-step graph run lasts seconds on a
    fast machine, and evaluations beside it would take the cores from its robots and trainer; the trainers
    that fall behind (DDPG, Linear-NAF) would then make fewer updates than the comparison means to give them.
    """
    after = after_run_evaluation(args, algorithm)
    cmd = [sys.executable, "-m", "async_naf.run.cli", "train", "--task", task or args.task, "--workers", str(workers),
           "--seed", str(args.seed if seed is None else seed), "--run-dir", str(run_dir),
           "--minutes", str(args.minutes),
           "--eval-every", "0" if after else str(args.eval_every), "--eval-episodes", str(args.eval_episodes),
           "--threshold", str(args.threshold), "--criterion", args.criterion]
    if after:  # before the user's --set, which win
        cmd += ["--set", f"trainer.checkpoint_every_s={args.eval_every}",
                "--set", f"trainer.keep_checkpoints={KEEP_ALL_CHECKPOINTS}", "--set", "trainer.save_buffer=false"]
    if args.realtime:
        cmd.append("--realtime")
    if args.stop_at_threshold:
        cmd += ["--stop-at-success", str(args.threshold)]
    if getattr(args, "overwrite", False):
        cmd.append("--overwrite")
    if getattr(args, "steps", 0):
        cmd += ["--steps", str(args.steps)]
    if args.config:
        cmd += ["--config", args.config]
    for item in args.sets:
        cmd += ["--set", item]
    if algorithm is not None:
        cmd += ["--set", f"trainer.algorithm={algorithm}"]
    return cmd


def after_run_evaluation(args: argparse.Namespace, algorithm: str | None) -> bool:
    """Whether a run's checkpoints are evaluated after it ends instead of while it runs (see
    :func:`train_command`): algorithms runs with periodic evaluations and no stop at the threshold (a stop
    needs the evaluations during the run; they pause the trainer then)."""
    return algorithm is not None and args.eval_every > 0 and not args.stop_at_threshold


def evaluate_after(run_dir: Path, task: str, seed: int, episodes: int) -> int:
    """Evaluate an ended algorithms run's kept checkpoints into its ``eval.csv``; returns how many."""
    from async_naf.run.commands.train import evaluate_saved_checkpoints

    rows = evaluate_saved_checkpoints(run_dir, task, episodes, seed)
    print(f"evaluated {len(rows)} checkpoint(s) of {run_dir} after the run", file=sys.stderr, flush=True)
    return len(rows)


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
    if args.analyze and args.experiment != "stability":
        print("error: --analyze is for the stability experiment", file=sys.stderr)
        return 2
    if args.experiment == "stability" and args.analyze:
        return run_stability(args, out)
    if args.minutes is None:
        print("error: --minutes is required (the wall-time budget of every run)", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    if args.experiment == "algorithms":
        return run_algorithms(args, out)
    if args.experiment == "stability":
        return run_stability(args, out)
    args.workers = args.workers or [1, 2, 4]
    if any(n < 1 for n in args.workers) or len(set(args.workers)) != len(args.workers):
        print("error: --workers must be distinct counts >= 1", file=sys.stderr)
        return 2
    if _earlier_runs([out / f"workers_{n}" for n in args.workers], args):
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


def _earlier_runs(run_dirs: list[Path], args: argparse.Namespace) -> bool:
    """Refuse (True, after saying so) where a run directory of this experiment already holds a run and
    ``--overwrite`` is not given: its child run would refuse, and the experiment then scored the earlier run
    as this one's."""
    if getattr(args, "overwrite", False):
        return False
    there = [str(d) for d in run_dirs if d.exists() and any(d.iterdir())]
    if there:
        print(f"error: earlier runs in {', '.join(there)}: --overwrite to replace them", file=sys.stderr)
    return bool(there)


# ------------------------------------------------------------------------------------------ algorithms
def algorithm_runs(args: argparse.Namespace, out: Path) -> list[tuple[str, str, int, Path]]:
    """(task, name, seed, run directory) of every run of the algorithms experiment, in the order they run;
    peers are named ``sb3_<peer>``."""
    names = [*args.algorithms, *(f"sb3_{p}" for p in args.peers)]
    return [(task, name, seed, out / task / f"{name}_s{seed}")
            for task in args.tasks for name in names for seed in args.seeds]


def run_algorithms(args: argparse.Namespace, out: Path) -> int:
    from async_naf.run.peers import train_peer

    workers = args.workers or [2]
    if len(workers) != 1 or workers[0] < 1:
        print("error: algorithms takes one --workers count (the robots of every graph run)", file=sys.stderr)
        return 2
    if args.steps < 1:
        print("error: algorithms needs --steps (the same environment-step budget for every run)", file=sys.stderr)
        return 2
    if _earlier_runs([run_dir for *_, run_dir in algorithm_runs(args, out)], args):
        return 2
    status = 0
    for task, name, seed, run_dir in algorithm_runs(args, out):
        print(f"=== {task} {name} seed {seed} -> {run_dir}", file=sys.stderr, flush=True)
        if name.startswith("sb3_"):
            try:
                train_peer(name[4:], task, seed, args.steps, run_dir, max(1, int(args.steps // 10)),
                           args.eval_episodes, final_episodes=args.eval_episodes, config_file=args.config)
            except ValueError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            continue
        try:
            rc = _run_child(train_command(args, workers[0], run_dir, task=task, seed=seed, algorithm=name))
        except _Interrupted as exc:
            return 128 + exc.signum
        if rc != 0:
            print(f"warning: {task} {name} seed {seed} exited with status {rc}", file=sys.stderr)
            status = 1
        if after_run_evaluation(args, name):
            evaluate_after(run_dir, task, seed, args.eval_episodes)
    result = compare_algorithms(out, args.tasks, [*args.algorithms, *(f"sb3_{p}" for p in args.peers)],
                                args.seeds, args.threshold, args.criterion)
    print((out / "algorithms.md").read_text(), file=sys.stderr)
    print(f"plots: {', '.join(str(out / f'{t}.png') for t in result['tasks'])}; numbers: {out / 'algorithms.json'}",
          file=sys.stderr)
    return status


def compare_algorithms(out: Path, tasks: list[str], names: list[str], seeds: list[int], threshold: float,
                       criterion: str = "strict") -> dict[str, Any]:
    """Read every run's eval.csv and summary.json; write ``<task>.png``, ``algorithms.json``, ``algorithms.md``.

    Per task and algorithm: the final held-out figures on both criteria (mean and per seed), the median final
    door angle, the environment steps and wall time to the first evaluation >= ``threshold`` on ``criterion``
    (per seed; None where never), and the wall time of the runs.
    """
    import json
    import math

    from async_naf.run.commands.train import CRITERIA
    from async_naf.run.results import plot_algorithms, read_eval, time_to_threshold, write_json

    key = CRITERIA[criterion]
    table: dict[str, dict[str, Any]] = {}
    for task in tasks:
        curves: dict[str, list[list[tuple[float, float, float]]]] = {}
        table[task] = {}
        for name in names:
            per_seed = []
            curves[name] = []
            for seed in seeds:
                run_dir = out / task / f"{name}_s{seed}"
                evals = read_eval(run_dir / "eval.csv")
                curves[name].append([(e["env_steps"], e["wall_s"], e[key]) for e in evals])
                path = run_dir / "summary.json"
                summary = json.loads(path.read_text()) if path.exists() else {}
                angles = summary.get("door_angle_final") or {}
                per_seed.append({
                    "seed": seed, "success": summary.get("eval_success_rate"),
                    "strict": summary.get("eval_strict_success_rate"), "door_angle_median": angles.get("median"),
                    "steps_to_threshold": time_to_threshold([(e["env_steps"], e[key]) for e in evals], threshold),
                    "wall_s_to_threshold": time_to_threshold([(e["wall_s"], e[key]) for e in evals], threshold),
                    "wall_s": summary.get("wall_s"), "env_steps": summary.get("env_steps")})

            def mean(field: str, rows: list[dict[str, Any]] = per_seed) -> float | None:
                vals = [r[field] for r in rows if isinstance(r[field], (int, float)) and math.isfinite(r[field])]
                return sum(vals) / len(vals) if vals else None

            table[task][name] = {"seeds": per_seed, "success": mean("success"), "strict": mean("strict"),
                                 "door_angle_median": mean("door_angle_median"), "wall_s": mean("wall_s"),
                                 "reached": sum(r["steps_to_threshold"] is not None for r in per_seed)}
        plot_algorithms(curves, out / f"{task}.png", threshold=threshold,
                        title=f"{task}: greedy {criterion} success ({len(seeds)} seeds)")
    result = {"tasks": tasks, "algorithms": names, "seeds": seeds, "threshold": threshold, "criterion": criterion,
              "table": table}
    write_json(out / "algorithms.json", result)
    (out / "algorithms.md").write_text(_algorithms_table(result))
    return result


def _pct(v: float | None) -> str:
    """A rate as a whole percentage, ``n/a`` where there is none."""
    return "n/a" if v is None else f"{v:.0%}"


def _algorithms_table(result: dict[str, Any]) -> str:
    n = len(result["seeds"])
    lines = [f"| task | algorithm | success (final, mean of {n}) | strict | door angle, median (rad) | "
             f"reached {result['threshold']:.0%} {result['criterion']} | steps to it (per seed) | wall min per run |",
             "|---|---|---:|---:|---:|---:|---|---:|"]
    for task, rows in result["table"].items():
        for name, row in rows.items():
            steps = ", ".join("-" if r["steps_to_threshold"] is None else f"{r['steps_to_threshold']:,.0f}"
                              for r in row["seeds"])
            angle = "n/a" if row["door_angle_median"] is None else f"{row['door_angle_median']:.2f}"
            wall = "n/a" if row["wall_s"] is None else f"{row['wall_s'] / 60:.1f}"
            lines.append(f"| {task} | {name} | {_pct(row['success'])} | {_pct(row['strict'])} | {angle} | "
                         f"{row['reached']}/{n} | {steps} | {wall} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- stability
def run_stability(args: argparse.Namespace, out: Path) -> int:
    """One run per seed, one after the other (or none with ``--analyze``), then :func:`compare_stability`."""
    workers = args.workers or [2]
    if len(workers) != 1 or workers[0] < 1:
        print("error: stability takes one --workers count (the robots of every run)", file=sys.stderr)
        return 2
    if args.stop_at_threshold:
        print("error: stability needs the evaluations after the threshold; drop --stop-at-threshold",
              file=sys.stderr)
        return 2
    if not args.analyze and not args.overwrite:  # never score an earlier experiment's run as this one's
        there = [s for s in args.seeds if (out / args.task / f"s{s}").exists()]
        if there:
            print(f"error: {out / args.task} already holds runs of seed(s) {', '.join(map(str, there))}: "
                  "--overwrite to replace them, --analyze to score them", file=sys.stderr)
            return 2
    status = 0
    for seed in [] if args.analyze else args.seeds:
        run_dir = out / args.task / f"s{seed}"
        print(f"=== {args.task} seed {seed} -> {run_dir}", file=sys.stderr, flush=True)
        try:
            rc = _run_child(train_command(args, workers[0], run_dir, seed=seed))
        except _Interrupted as exc:
            return 128 + exc.signum
        if rc != 0:
            print(f"warning: {args.task} seed {seed} exited with status {rc}", file=sys.stderr)
            status = 1
    missing = [s for s in args.seeds if not (out / args.task / f"s{s}" / "eval.csv").exists()]
    if missing:
        print(f"error: no eval.csv for seed(s) {', '.join(map(str, missing))} in {out / args.task}",
              file=sys.stderr)
        return 2
    compare_stability(out, args.task, args.seeds, args.threshold, args.eval_episodes)
    print((out / "stability.md").read_text(), file=sys.stderr)
    print(f"numbers: {out / 'stability.json'}", file=sys.stderr)
    return status


def compare_stability(out: Path, task: str, seeds: list[int], threshold: float,
                      eval_episodes: int) -> dict[str, Any]:
    """Read each seed's eval.csv and summary.json (``OUT/<task>/s<seed>/``); write ``stability.json`` and
    ``stability.md``: :func:`~async_naf.run.results.stability` of every run on both criteria, with the run's
    updates per environment step and its final held-out figures."""
    import json

    from async_naf.run.commands.train import CRITERIA
    from async_naf.run.results import read_eval, stability, write_json

    runs: list[dict[str, Any]] = []
    for seed in seeds:
        run_dir = out / task / f"s{seed}"
        evals = read_eval(run_dir / "eval.csv")
        path = run_dir / "summary.json"
        summary = json.loads(path.read_text()) if path.exists() else {}
        steps, updates = summary.get("env_steps"), summary.get("updates")
        runs.append({
            "seed": seed, "run_dir": str(run_dir),
            **{crit: stability(evals, key, threshold, eval_episodes) for crit, key in CRITERIA.items()},
            "updates_per_env_step": (updates / steps) if steps and isinstance(updates, (int, float)) else None,
            "final_success": summary.get("eval_success_rate"), "final_strict": summary.get("eval_strict_success_rate"),
            "final_strict_consecutive": summary.get("strict_consecutive"), "wall_s": summary.get("wall_s")})
    result = {"task": task, "seeds": seeds, "threshold": threshold, "eval_episodes": eval_episodes,
              "held": {crit: sum(bool(r[crit]["held"]) for r in runs) for crit in CRITERIA}, "runs": runs}
    write_json(out / "stability.json", result)
    (out / "stability.md").write_text(_stability_table(result))
    return result


def _stability_table(result: dict[str, Any]) -> str:
    thr = f"{result['threshold']:.0%}"
    lines = [f"{result['task']}: after the first greedy evaluation >= {thr}, every later one >= {thr}? "
             f"success: {result['held']['success']} of {len(result['runs'])} seeds, "
             f"strict: {result['held']['strict']} of {len(result['runs'])}",
             "",
             f"| seed | criterion | first >= {thr} (min, env steps) | later below {thr} | lowest later | "
             f"episodes failed after it | updates per env step | final success / strict (streak) |",
             "|---|---|---|---:|---:|---|---:|---|"]
    for r in result["runs"]:
        upd = "n/a" if r["updates_per_env_step"] is None else f"{r['updates_per_env_step']:.2f}"
        final = (f"{_pct(r['final_success'])} / {_pct(r['final_strict'])} "
                 f"({r['final_strict_consecutive'] if r['final_strict_consecutive'] is not None else 'n/a'})")
        for crit in ("success", "strict"):
            st = r[crit]
            first = ("never" if st["first_wall_s"] is None
                     else f"{st['first_wall_s'] / 60:.1f}, {st['first_env_steps']:,.0f}")
            failed = ("-" if st["later"] == 0 else
                      f"{st['failed_episodes_after']} of {st['later_episodes']} ({st['failure_rate_after']:.1%})")
            lowest = "-" if st["lowest_later"] is None else _pct(st["lowest_later"])
            lines.append(f"| {r['seed']} | {crit} | {first} | {st['later_below']} of {st['later']} | {lowest} | "
                         f"{failed} | {upd} | {final} |")
    return "\n".join(lines) + "\n"
