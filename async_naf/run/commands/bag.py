"""``async-naf bag``: what a recorded rosbag2 bag holds for training."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RAW_DEFAULTS = (0.1, 0.1)  # RawConfig.max_state_age_s, max_door_age_s (kept in step by test_convert_raw)
HELP = "inspect rosbag2 bags recorded from a run (async-naf train --record) or with ros2 bag record"
DESCRIPTION = """Inspect a rosbag2 bag (MCAP or sqlite3; no ROS install needed).

  info   per topic: message count, rate, the largest gap between receive times and the mean lag of header
         stamps behind receive times; the episodes found in each robot's task/goal; and, per task, whether
         the bag can feed the exact conversion (the policy's own policy/step records) or the raw one
         (joint_states, forward_velocity_controller/commands, task/goal, and door/imu for door tasks),
         naming what is missing per robot.

  convert   transitions from the bag into a dataset directory (replay.npz + manifest.json), two ways:
         exact (default): the policy's own policy/step records with the collector's pairing, reward,
         success and time-limit code (on a bag recorded with --record: what the trainer received).
         raw: from sensor topics only (what ros2 bag record gives on any ros2_control arm): per robot
         joint_states, forward_velocity_controller/commands, door/imu (door tasks) and task/goal. Each
         command is a step on the newest joint state received at or before it (never a later one; older
         than --max-state-age: dropped); the IMU goes through the door-angle estimator (the recorded run's
         settings, or --door-angle-config / --set door_angle.NAME=VALUE); observation, reward and success
         from the task code, paired by the collector's own code. A bag without task/goal:
         --episode-steps N --goal V,V,... Topic names: --topic joint_states:=/my_arm/joint_states.
         --compare-exact also converts the exact way and reports the deviation per column.
         --format minari writes a Minari dataset instead (optional dependency: pip install minari==0.5.4):
         ROOT/DATASET_ID, ROOT = --out or MINARI_DATASETS_PATH or ~/.minari/datasets.

Examples:
  async-naf bag info runs/door_rec/bag
  async-naf bag info rosbag2_2026_12_01 --json
  async-naf bag convert runs/door_rec/bag --task door_pull --out data/door_pull_exact
  async-naf bag convert runs/door_expert/bag --task door_pull --out data/door_demos --successful-only --max-episodes 20
  async-naf bag convert runs/door_rec/bag --task door_pull --out data/door_pull_raw --method raw \
      --ground-truth --compare-exact
  async-naf bag convert runs/door_rec/bag --task door_pull --format minari --out data/minari \
      --dataset-id async_naf/door_pull-exact-v0
  async-naf bag convert rosbag2_arm --task reach --out data/reach_raw --method raw --episode-steps 50 \
      --goal 0.4,0.1,0.3 --topic joint_states:=/my_arm/joint_states --topic commands:=/my_arm/cmd
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
    conv.add_argument("--out", type=Path, default=None,
                      help="replay format: the dataset directory to create (must not exist; required); minari: the "
                           "datasets root the dataset goes under (default: MINARI_DATASETS_PATH, else "
                           "~/.minari/datasets)")
    conv.add_argument("--format", choices=("replay", "minari"), default="replay",
                      help="replay: replay.npz + manifest.json (default); minari: a Minari dataset ROOT/DATASET_ID "
                           "(optional dependency: pip install minari==0.5.4) for d3rlpy and other offline-RL "
                           "libraries")
    conv.add_argument("--dataset-id", default=None, metavar="ID",
                      help="minari: the dataset id, [namespace/]name-v<version> (default async_naf/<task>-<method>-v0)")
    conv.add_argument("--method", choices=("exact", "raw"), default="exact",
                      help="exact: from the policy's policy/step records (default); raw: from sensor topics")
    conv.add_argument("--episode-steps", type=int, default=None,
                      help="episode length in steps instead of the recorded run's (collector.episode_steps); "
                           "raw: required for a bag without task/goal")
    conv.add_argument("--compare-with", type=Path, default=None, metavar="REPLAY_NPZ",
                      help="also match the transitions against a trainer's replay buffer (checkpoints/"
                           "replay_final.npz of the recorded run) and report the largest difference")
    conv.add_argument("--successful-only", action="store_true",
                      help="keep only the episodes that ended with the task's success (demonstrations from a "
                           "trained policy's bag; an episode the bag cuts short is not kept)")
    conv.add_argument("--max-episodes", type=int, default=0, metavar="N",
                      help="keep at most N of the (selected) episodes, by robot, each robot's in order (0 = all)")
    conv.add_argument("--no-ground-truth", action="store_true",
                      help="exact: rewards from the recorded door-angle estimate even where the bag has ground truth")
    raw = conv.add_argument_group("raw conversion (--method raw)")
    raw.add_argument("--ground-truth", action="store_true",
                     help="reward and success from ground_truth/door_state (simulation bags; default: from the "
                          "estimated door angle, as on a real robot)")
    raw.add_argument("--topic", action="append", default=[], metavar="KEY:=NAME",
                     help="remap a stream (joint_states, commands, imu, goal, ground_truth, or their default "
                          "names such as forward_velocity_controller/commands); relative names are under each "
                          "robot's namespace; repeatable")
    raw.add_argument("--robot", action="append", default=[], metavar="NS",
                     help="convert only this robot namespace (/robot_0; / for the root); default: every "
                          "namespace with a commands topic; repeatable")
    raw.add_argument("--goal", default=None, metavar="V,V,...",
                     help="the goal vector for a bag without task/goal (with --episode-steps), task goal size")
    raw.add_argument("--max-state-age", type=float, default=None, metavar="S",
                     help=f"a command's joint state may be at most this old, s (default {RAW_DEFAULTS[0]})")
    raw.add_argument("--max-door-age", type=float, default=None, metavar="S",
                     help=f"a command's door estimate (IMU) may be at most this old, s (default {RAW_DEFAULTS[1]})")
    raw.add_argument("--door-angle-config", type=Path, default=None, metavar="YAML",
                     help="door-angle estimator parameters (ROS params-file format as config/door_angle.yaml, "
                          "or a plain mapping) over the recorded run's")
    raw.add_argument("--set", action="append", default=[], dest="sets", metavar="door_angle.NAME=VALUE",
                     help="one estimator parameter (door_angle.NAME=VALUE) or raw rule (raw.NAME=VALUE: "
                          "zero_door_on_episode, action_tolerance, ...); YAML value; repeatable")
    raw.add_argument("--compare-exact", action="store_true",
                     help="also convert the exact way (policy/step) and report the deviation per column "
                          "(obs, action, reward, next_obs, done); written into the manifest too")

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
        if args.format == "replay" and args.out is None:
            raise ValueError("--out DIR is required (the dataset directory to create)")
        if args.format == "replay" and args.dataset_id is not None:
            raise ValueError("--dataset-id names a Minari dataset: use it with --format minari")
        if args.format == "minari":
            from async_naf.run.convert_minari import minari_target

            args.dataset_id = args.dataset_id or f"async_naf/{args.task}-{args.method}-v0"
            minari_target(args.dataset_id, args.out)  # minari importable, a valid and new id: before converting
        if args.method == "exact":
            # raw-only options are refused, never ignored: the data would not be what was asked for
            given = [name for name, on in (
                ("--ground-truth", args.ground_truth), ("--topic", args.topic), ("--robot", args.robot),
                ("--goal", args.goal is not None), ("--max-state-age", args.max_state_age is not None),
                ("--max-door-age", args.max_door_age is not None),
                ("--door-angle-config", args.door_angle_config is not None), ("--set", args.sets),
                ("--compare-exact", args.compare_exact)) if on]
            if given:
                raise ValueError(f"{', '.join(given)}: option(s) of --method raw; the exact way reads every "
                                 "robot's policy/step records as the policy wrote them")
        if args.method == "raw":
            if args.successful_only or args.max_episodes:
                raise ValueError("--successful-only / --max-episodes select episodes of --method exact only")
            converted = _convert_raw(args)
        else:
            converted = convert_exact(args.bag, args.task, overrides, successful_only=args.successful_only,
                                      max_episodes=args.max_episodes)
        if args.format == "minari":
            from async_naf.run.convert import dataset_manifest
            from async_naf.run.convert_minari import write_minari

            out = write_minari(converted, args.bag, args.task, args.dataset_id, args.out,
                               manifest=dataset_manifest(converted, args.bag, args.task))
        else:
            out = write_dataset(converted, args.bag, args.task, args.out)
    except ValueError as exc:  # BagError is a ValueError
        print(f"async-naf bag convert: {exc}", file=sys.stderr)
        return 2
    print(f"{out}: {converted.counts['transitions']} transitions from {converted.episodes} episodes of "
          f"{len(converted.robots)} robot(s); dropped: {dict(converted.drops) or 'none'}"
          + (f"; selection: {converted.selection}" if converted.selection else ""))
    over = converted.extra.get("fixed_goal_over_recorded_goals")
    if over:
        print(f"note: {', '.join(over)}: the bag has task/goal, not used: --goal {args.goal} and --episode-steps "
              f"{args.episode_steps} replace the recorded goals and episodes (leave both out to use them)")
    late = int(converted.counts.get("steps_after_episode_end", 0))
    if late > 2 * max(converted.episodes, 1):  # more than the policy's usual step or two after each episode's end
        print(f"note: {late} policy steps came after their episode's end and made no transition"
              + (f" (--episode-steps {args.episode_steps} ends episodes before the recorded run did)"
                 if args.episode_steps is not None else ""))
    if "compare_exact" in converted.extra:
        from async_naf.run.convert import format_comparison

        print(format_comparison(converted.extra["compare_exact"]))
    if args.compare_with is not None:
        try:
            match = compare_with_buffer(converted.batch, args.compare_with)
        except (ValueError, OSError) as exc:
            print(f"async-naf bag convert: --compare-with: {exc}", file=sys.stderr)
            return 2
        print("against the trainer's buffer: " + ", ".join(f"{k} {v:g}" for k, v in match.items()))
    return 0


def _convert_raw(args: argparse.Namespace):
    """The raw conversion from the command line (raises ValueError / BagError)."""
    import dataclasses

    import yaml

    from async_naf.run.commands.door_angle import load_values
    from async_naf.run.convert import compare_conversions, convert_exact
    from async_naf.run.convert_raw import RawConfig, convert_raw, parse_remaps
    from async_naf.task.tasks import make_task

    raw_values: dict[str, object] = {}
    door_sets: list[str] = []
    for item in args.sets:
        name, sep, value = item.partition("=")
        group, dot, field = name.strip().partition(".")
        if not sep or not dot or group not in ("door_angle", "raw"):
            raise ValueError(f"--set expects door_angle.NAME=VALUE or raw.NAME=VALUE, got {item!r}")
        if group == "door_angle":
            door_sets.append(f"{field}={value}")
        else:
            try:
                raw_values[field] = yaml.safe_load(value)
            except yaml.YAMLError as exc:
                raise ValueError(f"--set {item!r}: not a YAML value: {exc}") from exc
    fields = {f.name for f in dataclasses.fields(RawConfig)}
    unknown = sorted(set(raw_values) - fields)
    if unknown:
        raise ValueError(f"--set raw.{unknown[0]}: unknown; one of {sorted(fields)}")
    if args.max_state_age is not None:
        raw_values["max_state_age_s"] = args.max_state_age
    if args.max_door_age is not None:
        raw_values["max_door_age_s"] = args.max_door_age
    if args.episode_steps is not None:
        raw_values["episode_steps"] = args.episode_steps
    if args.ground_truth:
        raw_values["use_ground_truth"] = True
    if args.goal is not None:
        try:
            raw_values["goal"] = tuple(float(v) for v in args.goal.replace(" ", "").split(",") if v)
        except ValueError as exc:
            raise ValueError(f"--goal expects comma-separated numbers, got {args.goal!r}") from exc
    try:
        config = RawConfig(**raw_values)  # type: ignore[arg-type]
    except TypeError as exc:
        raise ValueError(f"raw conversion settings: {exc}") from exc
    door_values = load_values(args.door_angle_config, door_sets)
    from async_naf.run.graph import config_from_params
    from async_naf.sensing.door_angle import DoorAngleConfig

    config_from_params(DoorAngleConfig, door_values, "door_angle")  # unknown names / bad values: an error now
    converted = convert_raw(args.bag, args.task, config, door_values=door_values,
                            remaps=parse_remaps(args.topic), robots=args.robot or None)
    converted.extra["raw_config"] = dataclasses.asdict(config)
    if args.compare_exact:
        exact = convert_exact(args.bag, args.task, {"use_ground_truth": config.use_ground_truth,
                                                     **({"episode_steps": args.episode_steps}
                                                        if args.episode_steps is not None else {})})
        converted.extra["compare_exact"] = compare_conversions(converted, exact, make_task(args.task).obs_layout)
    return converted
