"""Greedy evaluations of several run directories side by side (``eval.csv`` of ``async-naf train``).

    python benchmarks/compare_runs.py runs/door_hw runs/door_rt --labels "hardware" "usual, --realtime" \\
        --out docs/hardware_door_pull.png

One figure, two panels: success rate (the task's criterion, solid; strict, dotted) against environment steps
and against the trainer's wall time. Prints, per run, the first evaluation at or above ``--threshold`` and
the share of evaluations after it that stay at or above it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from async_naf.run.results import read_eval as read_eval_csv


def read_eval(run_dir: Path) -> list[dict]:
    """The run's eval.csv as the project reads it (numbers as floats; text columns such as failures kept)."""
    return read_eval_csv(run_dir / "eval.csv")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="run directories (eval.csv)")
    parser.add_argument("--labels", nargs="+", default=None, help="one label per run (default: the names)")
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--title", default="")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = parser.parse_args(argv)
    labels = args.labels or [r.name for r in args.runs]
    if len(labels) != len(args.runs):
        parser.error("--labels needs one label per run")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for run, label in zip(args.runs, labels):
        rows = read_eval(run)
        first = next((i for i, r in enumerate(rows) if r["success_rate"] >= args.threshold), None)
        if first is None:
            print(f"{label}: never at or above {args.threshold:.0%} in {len(rows)} evaluations")
        else:
            after = rows[first:]
            held = sum(r["success_rate"] >= args.threshold for r in after) / len(after)
            print(f"{label}: first >= {args.threshold:.0%} at {rows[first]['env_steps']:.0f} env steps, "
                  f"{rows[first]['wall_s'] / 60:.1f} min; {held:.0%} of the {len(after)} evaluations from "
                  f"then on at or above it; last {rows[-1]['success_rate']:.0%}")
        for ax, x, scale in ((axes[0], "env_steps", 1e3), (axes[1], "wall_s", 60.0)):
            xs = [r[x] / scale for r in rows]
            line, = ax.plot(xs, [100 * r["success_rate"] for r in rows], marker=".", label=label)
            ax.plot(xs, [100 * r["strict_success_rate"] for r in rows], ls=":", color=line.get_color())
    axes[0].set_xlabel("environment steps (thousands)")
    axes[1].set_xlabel("trainer wall time (min)")
    axes[0].set_ylabel("greedy success (%): solid task criterion, dotted strict")
    for ax in axes:
        ax.axhline(100 * args.threshold, color="k", lw=0.5, ls="--")
        ax.grid(alpha=0.3)
    axes[0].legend()
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
