"""``async-naf bag``: what a recorded rosbag2 bag holds for training."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "inspect rosbag2 bags recorded from a run (async-naf train --record) or with ros2 bag record"
DESCRIPTION = """Inspect a rosbag2 bag (MCAP or sqlite3; no ROS install needed).

  info   per topic: message count, rate, the largest gap between receive times and the mean lag of header
         stamps behind receive times; the episodes found in each robot's task/goal; and, per task, whether
         the bag can feed the exact conversion (the policy's own policy/step records) or the raw one
         (joint_states, forward_velocity_controller/commands, task/goal, and door/imu for door tasks),
         naming what is missing per robot.

Examples:
  async-naf bag info runs/door_pull_2w/bag
  async-naf bag info rosbag2_2026_12_01 --json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bag_command", metavar="{info}")
    sub.required = True
    info = sub.add_parser("info", help="counts, rates, gaps, stamp lag, episodes, tasks the bag can feed")
    info.add_argument("bag", type=Path, help="rosbag2 directory (MCAP or sqlite3)")
    info.add_argument("--json", action="store_true", help="print one JSON object instead of the report")


def run(args: argparse.Namespace) -> int:
    from async_naf.recording.info import BagError, bag_info, format_info

    try:
        info = bag_info(args.bag)
    except BagError as exc:
        print(f"async-naf bag info: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(info.as_dict(), indent=1, allow_nan=False, default=str) if args.json else format_info(info))
    return 0
