"""How the training graph's cost grows with the number of simulated workers, per process layout.

For each worker count and layout (``none``: one process per node; ``robot``: one per robot, messages between
its nodes handed over in the process; ``robot_dds``: one per robot, messages through DDS), runs the
door_pull graph in lockstep with the trainer at 1 update per step (:func:`async_naf.bench.graph_steps.
measure_graph`) and prints env steps/s and CPU ms per env step (every graph process) as a markdown table,
plus one JSON line per run. The two layouts are measured one after the other for each worker count, so
each group sees about the same machine load (printed beside it).

    PYTHONPATH=. python benchmarks/graph_scaling.py --workers 1 2 4 8 --steps 1500
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--compositions", nargs="+", default=["none", "robot_dds", "robot"],
                        help="process layouts: none, robot_dds, robot")
    parser.add_argument("--steps", type=int, default=1500, help="environment steps in each measured window")
    parser.add_argument("--warmup", type=int, default=1200, help="environment steps before the window")
    args = parser.parse_args()
    from async_naf.bench.graph_steps import measure_graph

    rows = []
    for workers in args.workers:
        for composition in args.compositions:
            load = os.getloadavg()[0]
            out = measure_graph(workers=workers, composition=composition, steps=args.steps,
                                warmup_steps=args.warmup)
            out["load_avg_1min_before"] = round(load, 2)
            print(json.dumps(out), flush=True)
            rows.append(out)
    print("\n| workers | composition | env steps/s | CPU ms / env step | load (1 min) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['graph_workers']} | {r['graph_composition']} | {r['graph_env_steps_per_s']:.1f} | "
              f"{r['graph_cpu_ms_per_step']:.2f} | {r['load_avg_1min_before']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
