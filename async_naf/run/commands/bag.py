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

  convert   transitions from the bag into a dataset directory (replay.npz + manifest.json), the exact
         way: the policy's own policy/step records with the collector's pairing, reward, success and
         time-limit code (on a bag recorded with --record: what the trainer received). The raw way (from
         sensor topics) is not built yet.

Examples:
  async-naf bag info runs/door_pull_2w/bag
  async-naf bag info rosbag2_2026_12_01 --json
  async-naf bag convert runs/door_pull_2w/bag --task door_pull --out data/door_pull_exact
  async-naf bag convert runs/door_expert/bag --task door_pull --out data/door_demos --successful-only --max-episodes 20
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bag_command", metavar="{info,convert}")
    sub.required = True
    info = sub.add_parser("info", help="counts, rates, gaps, stamp lag, episodes, tasks the bag can feed")
    info.add_argument("bag", type=Path, help="rosbag2 directory (MCAP or sqlite3)")
    info.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    conv = sub.add_parser("convert", help="transitions from the bag into a dataset (replay.npz + manifest.json)")
    conv.add_argument("bag", type=Path, help="rosbag2 directory (MCAP or sqlite3)")
    conv.add_argument("--task", required=True, choices=("reach", "door_pull", "door_push"), help="the bag's task")
    conv.add_argument("--out", type=Path, required=True, help="dataset directory to create (must not exist)")
    conv.add_argument("--method", choices=("exact",), default="exact",
                      help="exact: from the policy's policy/step records (default; the only one built yet)")
    conv.add_argument("--episode-steps", type=int, default=None,
                      help="episode length in steps instead of the recorded run's (collector.episode_steps)")
    conv.add_argument("--compare-with", type=Path, default=None, metavar="REPLAY_NPZ",
                      help="also match the transitions against a trainer's replay buffer (checkpoints/"
                           "replay_final.npz of the recorded run) and report the largest difference")
    conv.add_argument("--successful-only", action="store_true",
                      help="keep only the episodes that ended with the task's success (demonstrations from a "
                           "trained policy's bag; an episode the bag cuts short is not kept)")
    conv.add_argument("--max-episodes", type=int, default=0, metavar="N",
                      help="keep at most N of the (selected) episodes, by robot, each robot's in order (0 = all)")
    conv.add_argument("--no-ground-truth", action="store_true",
                      help="rewards from the recorded door-angle estimate even where the bag has ground truth")


def run(args: argparse.Namespace) -> int:
    from async_naf.recording.info import BagError, bag_info, format_info

    if args.bag_command == "convert":
        return _convert(args)
    try:
        info = bag_info(args.bag)
    except BagError as exc:
        print(f"async-naf bag info: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(info.as_dict(), indent=1, allow_nan=False, default=str) if args.json else format_info(info))
    return 0


def _convert(args: argparse.Namespace) -> int:
    from async_naf.run.convert import compare_with_buffer, convert_exact, write_dataset

    overrides: dict[str, object] = {}
    if args.episode_steps is not None:
        overrides["episode_steps"] = args.episode_steps
    if args.no_ground_truth:
        overrides["use_ground_truth"] = False
    try:
        if args.max_episodes < 0:
            raise ValueError(f"--max-episodes must be >= 0, got {args.max_episodes}")
        converted = convert_exact(args.bag, args.task, overrides, successful_only=args.successful_only,
                                  max_episodes=args.max_episodes)
        out = write_dataset(converted, args.bag, args.task, args.out)
    except ValueError as exc:  # BagError is a ValueError
        print(f"async-naf bag convert: {exc}", file=sys.stderr)
        return 2
    print(f"{out}: {converted.counts['transitions']} transitions from {converted.episodes} episodes of "
          f"{len(converted.robots)} robot(s); dropped: {dict(converted.drops) or 'none'}"
          + (f"; selection: {converted.selection}" if converted.selection else ""))
    if args.compare_with is not None:
        try:
            match = compare_with_buffer(converted.batch, args.compare_with)
        except (ValueError, OSError) as exc:
            print(f"async-naf bag convert: --compare-with: {exc}", file=sys.stderr)
            return 2
        print("against the trainer's buffer: " + ", ".join(f"{k} {v:g}" for k, v in match.items()))
    return 0
