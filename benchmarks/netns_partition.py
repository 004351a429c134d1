"""The graph split across hosts, one robot's link down and up again: learning curve with the partition marked.

A trainer host and one host per robot, each a Linux network namespace of its own on a private bridge
(:class:`async_naf.bench.netns.NetnsLab`: nothing reaches the machine's network), each starting its part of
the graph with ``async-naf train --part trainer|robots --discovery subnet`` (:mod:`async_naf.bench.partition`).
After ``--before`` s of training across them, robot ``--partitioned``'s link goes down for ``--partition`` s,
then up; the run goes on ``--after`` s after the trainer hears from that robot again.

Writes into --out: ``partition.json`` (figures: when the trainer heard the robot again, episodes it made
during the partition and the weights it acted with, its backlog, episodes and transitions lost),
``partition.png`` (learning curve, episodes per robot, backlog and weights version; partition shaded),
``timeline.json`` and every host's run directory (``trainer/``, ``robot_<i>/``: summary.json, logs, bag).

Needs root (network namespaces); prints why not otherwise. Usage:
    python benchmarks/netns_partition.py --out /tmp/netns_partition [--task reach] [--robots 2]
        [--before 90] [--partition 30] [--after 120] [--eval-every 30] [--domain-id 70] [--discovery-server]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--task", default="reach", choices=("reach", "door_pull", "door_push"))
    parser.add_argument("--robots", type=int, default=2, help="robots, one host each (default: %(default)s)")
    parser.add_argument("--partitioned", type=int, default=1, help="the robot whose link goes down")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--domain-id", type=int, default=70, help="ROS_DOMAIN_ID of every host")
    parser.add_argument("--before", type=float, default=90.0, help="s of training before the partition")
    parser.add_argument("--partition", type=float, default=30.0, help="s the link is down")
    parser.add_argument("--after", type=float, default=120.0, help="s of training after the robot is heard again")
    parser.add_argument("--eval-every", type=float, default=30.0, help="greedy evaluations on the trainer host, s")
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--discovery-server", action="store_true",
                        help="multicast dropped; every host uses a Fast DDS discovery server on the trainer host")
    args = parser.parse_args(argv)

    from async_naf.bench import netns
    from async_naf.bench.partition import PartitionConfig, analyse, plot, run_partition

    why = netns.unavailable()
    if why:
        print(f"cannot make network namespaces here: {why}", file=sys.stderr)
        return 2
    cfg = PartitionConfig(out_dir=args.out, task=args.task, robots=args.robots, partitioned=args.partitioned,
                          seed=args.seed, domain_id=args.domain_id, before_s=args.before,
                          partition_s=args.partition, after_s=args.after, eval_every_s=args.eval_every,
                          eval_episodes=args.eval_episodes, discovery_server=args.discovery_server)
    run_partition(cfg, log=lambda text: print(text, file=sys.stderr, flush=True))
    result = analyse(args.out)
    png = plot(args.out)
    print(json.dumps(result, indent=2))
    print(f"written: {args.out / 'partition.json'}, {png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
