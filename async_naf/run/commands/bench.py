"""``async-naf bench``: measured speed figures as one JSON object.

Each figure is produced by a function registered in ``FIGURES`` (``"module:function"``, imported lazily);
the function takes ``quick: bool`` and returns a dict of named, measured numbers. A figure whose component
does not exist yet is absent from the output, never invented.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time

HELP = "measure speed figures (updates/s, sim steps/s, latencies) and print them"
DESCRIPTION = """Measure the project's speed figures on this machine and print them.

Figures (each measured, never hard-coded):
  naf_updates_per_s     NAF gradient updates per second, one CPU thread (obs 20, act 7, 2x100, batch 64)
  sim_steps_per_s       embedded MuJoCo environment control steps per second without ROS, one core
  policy_step_ms_p99    observation published -> command received across processes (ms, p99)
  transitions_per_s     collector -> trainer over DDS, validated into the replay buffer
  graph_env_steps_per_s the whole training graph (door_pull, 2 workers, lockstep, 1 update per step): env
                        steps/s, CPU ms per env step (per process), graph_efficiency = its ratio to
                        env_steps_per_s, graph_cpu_ratio = CPU per step / (env step + NAF update) in-process
                        (ASYNC_NAF_BENCH_COMPOSITION: robot = a process per robot, intra-process,
                        the default; robot_dds = a process per robot via DDS; none = a process per node);
                        graph_cpu_ratio_contended: the same over env step + update measured with the
                        cores shared as in the graph (workers env processes + one updating, no ROS)
  raw_convert_steps_per_s  async-naf bag convert --method raw on a door_pull bag, one core: steps/s with
                        the bag read, the door-angle estimator, FK, observation, reward and pairing; beside
                        it exact_convert_transitions_per_s (--method exact on the same bag)
  recorder_msgs_per_s   the /recorder node in its own process fed the topic mix of a recorded 2-worker
                        door_pull run at increasing rates: the highest messages/s written with zero loss
                        (published = in the bag, per topic), per level the loss and CPU per message
  record_env_steps_ratio  env steps/s of the 2-worker door_pull graph with --record / without (same
                        window, alternating runs); whether each bag holds every policy/step of its run
  record_env_steps_ratio_realtime  the same with the sims paced as real robots (--realtime, 20 Hz each):
                        env steps/s and CPU per step with and without --record
  record_tap_us_per_step  CPU us a recorded run's tap costs a composed robot per env step (one robot's
                        15 messages encoded into bundles, in-process, no DDS)

Example:
  async-naf bench --json
  async-naf bench --only naf_updates_per_s --json
"""

# figure name -> "module:function"; function(quick: bool) -> dict[str, float | int | str]
FIGURES: dict[str, str] = {
    "naf_updates_per_s": "async_naf.bench.agents:bench_naf_updates",
    "sim_steps_per_s": "async_naf.bench.sim:bench_sim_steps",
    "policy_step_ms_p99": "async_naf.bench.graph:bench_policy_latency",
    "transitions_per_s": "async_naf.bench.graph:bench_transitions",
    "graph_env_steps_per_s": "async_naf.bench.graph_steps:bench_graph_steps",
    "raw_convert_steps_per_s": "async_naf.bench.convert:bench_convert",
    "recorder_msgs_per_s": "async_naf.bench.recorder:bench_recorder_rate",
    "record_env_steps_ratio": "async_naf.bench.recorder:bench_record_overhead",
    "record_env_steps_ratio_realtime": "async_naf.bench.recorder:bench_record_overhead_realtime",
    "record_tap_us_per_step": "async_naf.bench.recorder:bench_record_tap",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument(
        "--only", action="append", choices=sorted(FIGURES), help="measure only this figure (repeatable)"
    )
    parser.add_argument("--quick", action="store_true", help="shorter measurements (noisier)")


def _resolve(spec: str):
    module_name, func_name = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return None  # that component is not built yet: its figure is absent
        raise
    return getattr(module, func_name, None)


def run(args: argparse.Namespace) -> int:
    names = args.only or list(FIGURES)
    result: dict[str, object] = {}
    seen: set[str] = set()
    for name in names:
        func = _resolve(FIGURES[name])
        if func is None or FIGURES[name] in seen:
            continue
        seen.add(FIGURES[name])
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        figures = func(quick=args.quick)
        print(f"  done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        result.update(figures)
    if args.json:
        print(json.dumps(result, indent=None, sort_keys=True))
    else:
        for key, value in sorted(result.items()):
            print(f"{key:32s} {value}")
    return 0
