"""Demonstrations against none (issue 10): door_pull, 2 workers, time to a greedy success rate.

1. ``async-naf bag convert EXPERT_BAG --successful-only --max-episodes 20`` (the exact way): 20 successful
   episodes of a trained policy (a run recorded with ``--record``, e.g. a trained run resumed with it).
2. Per seed, ``async-naf train --task door_pull --workers 2`` without and with ``--demos DATASET
   --demo-ratio R``, each stopping at the first greedy evaluation at or above ``--threshold`` on
   ``--criterion`` (or after ``--minutes``), evaluations every ``--eval-every`` s.
3. ``OUT/demos.json`` (time to threshold per run, medians, the ratio), ``OUT/demos.png`` (greedy success
   against wall time, one line per run).

    python benchmarks/demos_door_pull.py --expert-bag runs/door_expert/bag --seeds 0 1 2 --out runs/demos

Runs one after the other (each uses the whole machine). Wall times are the trainer's own (``wall_s`` of
``eval.csv``: when it had a policy that good), so they do not include process start-up.
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any


def _run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def _curve(run_dir: Path, column: str) -> list[tuple[float, float]]:
    path = run_dir / "eval.csv"
    if not path.exists():
        return []
    with path.open() as f:
        return [(float(r["wall_s"]), float(r[column])) for r in csv.DictReader(f)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--expert-bag", required=True, help="rosbag2 bag of a trained policy (--record)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=20, help="successful demonstration episodes")
    parser.add_argument("--demo-ratio", type=float, default=0.1)
    parser.add_argument("--pretrain-updates", type=int, default=None,
                        help="async-naf train --demo-pretrain (default: the parameter file's)")
    parser.add_argument("--conditions", nargs="+", choices=("none", "demos"), default=["none", "demos"],
                        help="which runs to make per seed (results already in --out are read, not rerun, "
                             "whatever settings made them: use a new --out for new settings)")
    parser.add_argument("--demos-set", action="append", default=[], metavar="NODE.PARAM=VALUE",
                        help="an async-naf train --set for the runs with demonstrations only (repeatable)")
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--criterion", choices=("success", "strict"), default="success")
    parser.add_argument("--eval-every", type=float, default=15.0, help="s")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=15.0, help="budget of each run, min")
    parser.add_argument("--milestones", type=float, nargs="*", default=[0.5],
                        help="lower success rates whose first time is reported beside the threshold's")
    parser.add_argument("--no-stop", action="store_true",
                        help="run every run for --minutes without --stop-at-success: every periodic checkpoint is "
                             "evaluated as it comes (when the trainer had it), the pre-trained policy's too (the "
                             "trainer checkpoints it when pre-training ends); with --stop-at-success evaluations "
                             "pause the trainer every --eval-every s instead, the first one period in")
    parser.add_argument("--out", default="runs/demos")
    parser.add_argument("--cli", default="async-naf", help="the async-naf command")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = out / "expert_demos"
    if not dataset.exists():
        _run([args.cli, "bag", "convert", args.expert_bag, "--task", "door_pull", "--out", str(dataset),
              "--successful-only", "--max-episodes", str(args.episodes)])
    column = {"success": "success_rate", "strict": "strict_success_rate"}[args.criterion]
    runs: dict[str, dict[int, dict[str, Any]]] = {"none": {}, "demos": {}}
    for seed in args.seeds:
        for cond in ("none", "demos"):
            run_dir = out / f"{cond}_s{seed}"
            if not (run_dir / "summary.json").exists():
                if cond not in args.conditions:
                    continue
                cmd = [args.cli, "train", "--task", "door_pull", "--workers", "2", "--seed", str(seed),
                       "--minutes", str(args.minutes), "--eval-every", str(args.eval_every),
                       "--eval-episodes", str(args.eval_episodes), "--threshold", str(args.threshold),
                       "--criterion", args.criterion, "--run-dir", str(run_dir), "--overwrite", "--quiet"]
                if not args.no_stop:
                    cmd += ["--stop-at-success", str(args.threshold)]
                if cond == "demos":
                    cmd += ["--demos", str(dataset), "--demo-ratio", str(args.demo_ratio)]
                    if args.pretrain_updates is not None:
                        cmd += ["--demo-pretrain", str(args.pretrain_updates)]
                    for item in args.demos_set:
                        cmd += ["--set", item]
                _run(cmd)
            summary = json.loads((run_dir / "summary.json").read_text())
            curve = _curve(run_dir, column)
            reached = next((t for t, rate in curve if rate >= args.threshold), None)
            firsts = {f"{m:g}": next((t for t, rate in curve if rate >= m), None) for m in args.milestones}
            runs[cond][seed] = {"time_to_threshold_s": reached, "time_to_s": firsts,
                                "env_steps": summary.get("env_steps"), "wall_s": summary.get("wall_s"), "curve": curve}
            print(f"{cond} seed {seed}: time to {args.threshold:.0%} = {reached} s", flush=True)

    def median_of(times: list[float | None]) -> float | None:
        reached = [t for t in times if t is not None]
        if not times or len(reached) < len(times):
            return None  # a run that never got there: no median to report
        return statistics.median(reached)

    def median(cond: str) -> float | None:
        return median_of([r["time_to_threshold_s"] for r in runs[cond].values()])

    def milestone_median(cond: str, m: float) -> float | None:
        return median_of([r["time_to_s"][f"{m:g}"] for r in runs[cond].values()])

    result = {"threshold": args.threshold, "criterion": args.criterion, "demo_ratio": args.demo_ratio,
              "stop_at_success": not args.no_stop, "eval_every_s": args.eval_every,
              "pretrain_updates": args.pretrain_updates, "demos_set": args.demos_set,
              "episodes": args.episodes, "seeds": args.seeds, "median_s": {c: median(c) for c in runs},
              "milestone_median_s": {f"{m:g}": {c: milestone_median(c, m) for c in runs} for m in args.milestones},
              "runs": {c: {str(s): {k: v for k, v in r.items() if k != "curve"} for s, r in rs.items()}
                       for c, rs in runs.items()}}
    none_m, demos_m = result["median_s"]["none"], result["median_s"]["demos"]
    result["ratio"] = demos_m / none_m if none_m and demos_m is not None else None
    (out / "demos.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("median_s", "ratio", "milestone_median_s")}))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for cond, color in (("none", "tab:gray"), ("demos", "tab:blue")):
        for seed, r in runs[cond].items():
            xs = [t / 60.0 for t, _ in r["curve"]]
            ys = [100.0 * rate for _, rate in r["curve"]]
            ax.plot(xs, ys, color=color, alpha=0.8, marker=".",
                    label=f"{'with' if cond == 'demos' else 'without'} demos" if seed == args.seeds[0] else None)
    ax.axhline(100.0 * args.threshold, color="k", lw=0.5, ls="--")
    ax.set_xlabel("trainer wall time (min)")
    ax.set_ylabel(f"greedy {args.criterion} rate (%)")
    ax.set_title(f"door_pull, 2 workers: {args.episodes} demonstrations (ratio {args.demo_ratio}) vs none")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "demos.png", dpi=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
