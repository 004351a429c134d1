"""``async-naf door-angle``: door hinge angle from a recorded IMU topic in a rosbag2 bag, as CSV."""
from __future__ import annotations

import argparse
import csv
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported lazily at run time (the --help path stays light)
    from async_naf.sensing.door_angle import DoorAngleConfig, DoorAngleEstimator
    from async_naf.sensing.door_angle.bag import ImuBag

HELP = "estimate the door angle from an IMU topic in a rosbag2 bag (MCAP or sqlite3) and write CSV"
DESCRIPTION = """Run the IMU door-angle estimator over a recorded sensor_msgs/Imu topic and write one CSV row
per accepted IMU sample: stamp_ns (the message header stamp) and angle_rad (hinge angle, + opening,
0 closed). Reads MCAP and sqlite3 bags through the rosbags library; no ROS install needed. The door is
assumed closed at the start of the recording (as the door_angle node assumes at start-up). A summary on
stderr reports drops, gaps, the hinge axis, the gyro bias, readings beyond the door stop or past closed
(counted, never clipped) and the opening direction.

Two passes by default: a live estimator (the door_angle node) must show an angle before it knows which
way the door opens (a push into the frame before the first swing reads as an opening), and reads a door
just past closed as closed until it has seen that there is no frame. Offline, the whole recording is
known: the first pass finds the opening direction and whether there is a frame at closed, the second
estimates with both known from the start (`opening_direction`, `frame_at_closed`) and writes the rows.
--causal writes the one pass the node computes live: row for row the angles the robot saw.

A bag of a training run (async-naf train --record) holds episodes: beside <robot>/door/imu, the robot's
<robot>/task/goal. The collector zeroes the door estimate after each reset (a simulated door is put back
closed without the IMU seeing it turn), so the estimate is zeroed where each episode starts (an active goal
of a new episode), in both passes; --no-episodes reads the IMU as one recording.

Parameters are those of the door_angle node (config/door_angle.yaml); pass a params file and/or
single overrides to tune them on recorded data.

Examples:
  async-naf door-angle rosbag2_2026_11_24 --imu-topic /robot_0/door/imu --out door.csv
  async-naf door-angle run.mcap_dir --imu-topic /door/imu --out door.csv \\
      --params-file config/door_angle.yaml --param closed_snap_rad=0.03 --all-columns
"""


# parameters of the door_angle node that are not estimator parameters (ignored in a params file)
NODE_ONLY_PARAMS = frozenset({"diagnostics_period_s", "time_jump_reset_s", "use_sim_time"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", type=Path, help="rosbag2 directory (MCAP or sqlite3) or a single .mcap/.db3 file")
    parser.add_argument(
        "--imu-topic",
        help="sensor_msgs/Imu topic, e.g. /robot_0/door/imu (default: the bag's only IMU topic)",
    )
    parser.add_argument("--out", required=True, help="output CSV file ('-' for stdout)")
    parser.add_argument(
        "--params-file",
        type=Path,
        help="YAML with estimator parameters (ROS params-file format as config/door_angle.yaml, or a plain mapping)",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one estimator parameter (YAML value, e.g. hinge_axis=[0,0,1]); repeatable",
    )
    parser.add_argument(
        "--all-columns",
        action="store_true",
        help="also write velocity_rad_s, variance_rad2 and at_rest",
    )
    parser.add_argument(
        "--causal",
        action="store_true",
        help="one pass, as the door_angle node estimates live (default: the opening direction and a missing frame "
        "at closed from a first pass over the whole recording)",
    )
    parser.add_argument(
        "--no-episodes",
        action="store_true",
        help="do not zero the estimate where an episode starts on the robot's task/goal (default: zeroed there, "
        "as the collector does after each reset)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def load_config(params_file: Path | None, overrides: list[str]):
    """DoorAngleConfig from an optional params file and NAME=VALUE overrides (raises ValueError).

    Values are read as the door_angle node reads them (:func:`async_naf.run.graph.config_from_params`, the rules of
    :mod:`async_naf.wire.params`; ``1e-3`` is a number as in a ROS params file,
    :func:`async_naf.run.graph.yaml_number`);
    an empty array means "not set", as in a ROS params file.
    """
    from async_naf.run.graph import config_from_params
    from async_naf.sensing.door_angle import DoorAngleConfig

    return config_from_params(DoorAngleConfig, load_values(params_file, overrides), "estimator parameters")


def load_values(params_file: Path | None, overrides: list[str]) -> dict[str, object]:
    """The estimator parameters of an optional params file and NAME=VALUE overrides, as the door_angle node
    reads them (:func:`load_config`), not validated yet (raises ValueError for unreadable input)."""
    import yaml

    from async_naf.run.graph import yaml_number

    values: dict[str, object] = {}
    if params_file is not None:
        try:
            data = yaml.safe_load(params_file.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"cannot read params file {params_file}: {exc}") from exc
        if isinstance(data, dict) and len(data) == 1:  # ROS params file: {node: {ros__parameters: {...}}}
            (inner,) = data.values()
            if isinstance(inner, dict) and "ros__parameters" in inner:
                data = inner["ros__parameters"]
        if not isinstance(data, dict):
            raise ValueError(f"params file {params_file} must hold a mapping of parameters")
        values.update({str(k): v for k, v in data.items() if k not in NODE_ONLY_PARAMS})
    for item in overrides:
        name, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"--param expects NAME=VALUE, got {item!r}")
        try:
            values[name.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ValueError(f"--param {item!r}: not a YAML value: {exc}") from exc
    return {k: (None if v == [] else yaml_number(v)) for k, v in values.items()}


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from async_naf.common.stamps import IMU_JUMP_S, StampGuard
    from async_naf.sensing.door_angle import DoorAngleEstimator, update_guarded
    from async_naf.sensing.door_angle.bag import BagError, ImuBag

    try:
        config = load_config(args.params_file, args.param)
    except (ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    to_stdout = args.out == "-"
    out_path = Path(args.out)
    tmp_path = out_path.with_name(out_path.name + ".part")
    written = 0
    done = False
    try:
        est = DoorAngleEstimator(config)
        hindsight = "none (--causal: one pass, as the door_angle node)"
        with ImuBag(args.bag, args.imu_topic, episodes=not args.no_episodes) as bag:  # no --imu-topic: the only one
            info = bag.info()
            topic = info.topic
            episodes_note = _recorded_zeroing(bag, args.bag)
            if not args.causal:
                est, hindsight = first_pass(bag, est, args.no_progress)
            handle = sys.stdout if to_stdout else open(tmp_path, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed below
            try:
                writer = csv.writer(handle)
                header = ["stamp_ns", "angle_rad"]
                if args.all_columns:
                    header += ["velocity_rad_s", "variance_rad2", "at_rest"]
                writer.writerow(header)
                progress = tqdm(
                    bag.samples(), total=info.count, unit="msg", file=sys.stderr,
                    disable=True if args.no_progress else None, desc=f"door-angle {topic}",
                )
                stamps = StampGuard(IMU_JUMP_S)
                for sample in progress:
                    if sample is None:  # an episode starts: the collector zeroed the estimate after the reset
                        est.zero()
                        continue
                    _, state = update_guarded(est, stamps, sample)
                    if state is None:
                        continue
                    row = [state.stamp_ns, repr(state.angle)]
                    if args.all_columns:
                        row += [repr(state.velocity), repr(state.variance), int(est.at_rest)]
                    writer.writerow(row)
                    written += 1
            finally:
                if not to_stdout:
                    handle.close()
        if not to_stdout and written:  # no usable sample: no output file (the error is below)
            os.replace(tmp_path, out_path)
        done = bool(written)
    except BagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot write {args.out}: {exc}", file=sys.stderr)
        return 1
    finally:
        if not done and not to_stdout:  # an error or Ctrl-C: no half-written output is left behind
            tmp_path.unlink(missing_ok=True)
    dropped = ", ".join([f"{k}={v}" for k, v in est.dropped.items() if v]
                        + ([f"stamp_glitches={stamps.glitches}"] if stamps.glitches else [])) or "none"
    axis = est.axis
    axis_text = "none" if axis is None else "[" + ", ".join(f"{v:+.4f}" for v in axis) + "]"
    print(
        f"{topic}: {written} rows -> {args.out}; dropped: {dropped}; gaps: {est.gaps}; "
        f"hinge axis (sensor frame) {axis_text} from {est.axis_source}; "
        f"gyro bias [{', '.join(f'{math.degrees(b):+.3f}' for b in est.bias)}] deg/s",
        file=sys.stderr,
    )
    print(f"{topic}: {bounds_summary(est, config)}", file=sys.stderr)
    if stamps.jumps:
        print(f"{topic}: the stamps jumped back {stamps.jumps} time(s) (a looped or restarted recording): the "
              "estimate restarted there, as the door_angle node's does", file=sys.stderr)
    if 0 < written < 0.5 * info.count:
        print(f"{topic}: warning: only {written} of {info.count} IMU messages gave a row (dropped above)",
              file=sys.stderr)
    print(f"{topic}: from a first pass over the whole recording: {hindsight}", file=sys.stderr)
    if bag.goal_topic:
        bad = f"; {bag.bad_goals} goal message(s) undecodable, skipped" if bag.bad_goals else ""
        print(f"{topic}: zeroed at {bag.episode_starts} episode start(s) on {bag.goal_topic}, as the collector "
              f"does after each reset (--no-episodes: not){bad}", file=sys.stderr)
    if episodes_note:
        print(f"{topic}: {episodes_note}", file=sys.stderr)
    if written == 0:
        print(f"error: no usable IMU samples on {topic}", file=sys.stderr)
        return 1
    return 0


def _recorded_zeroing(bag: ImuBag, path: Path) -> str:
    """Where the run that recorded ``bag`` did not zero the door estimate at resets (its collector's
    ``zero_door_on_reset: false`` in ``RUN_DIR/params``), read the IMU as one recording, as that run did. Returns
    a line for the summary ("" when nothing to say)."""
    from async_naf.recording.info import BagError as InfoBagError
    from async_naf.recording.info import recorded_collector_params

    if not bag.goal_topic:
        return ""
    ns = bag.goal_topic.rsplit("/task/goal", 1)[0]
    try:
        params = recorded_collector_params(path if path.is_dir() else path.parent, ns)
    except InfoBagError as exc:
        return f"warning: {exc}; zeroed at episode starts (the default)"
    if params.get("zero_door_on_reset", True) is False:
        bag.ignore_episodes()
        return "not zeroed at episode starts: the recorded run's collector had zero_door_on_reset: false"
    return ""


def first_pass(bag: ImuBag, est: DoorAngleEstimator, no_progress: bool) -> tuple[DoorAngleEstimator, str]:
    """Run ``est`` over the whole IMU topic of the open ``bag`` (nothing written) and return the estimator for
    the pass that writes, configured with what the recording showed
    (:meth:`DoorAngleEstimator.hindsight_config`; ``est``'s own configuration if it showed nothing new), and a
    line for the summary. Raises BagError as the writing pass does."""
    from tqdm import tqdm

    from async_naf.common.stamps import IMU_JUMP_S, StampGuard
    from async_naf.sensing.door_angle import DoorAngleEstimator, update_guarded

    info = bag.info()
    stamps = StampGuard(IMU_JUMP_S)
    for sample in tqdm(bag.samples(), total=info.count, unit="msg", file=sys.stderr,
                       disable=True if no_progress else None, desc=f"door-angle {info.topic} (first pass)"):
        if sample is None:  # an episode starts (as in the writing pass)
            est.zero()
        else:
            update_guarded(est, stamps, sample)
    cfg, second = est.config, est.hindsight_config()
    if second is None:
        said = ["the opening direction was configured" if cfg.hinge_axis is not None or cfg.opening_direction
                else "no swing decided the opening direction",
                "no frame at closed was configured" if not cfg.frame_at_closed
                else "nothing showed that the door has no frame at closed"]
        return DoorAngleEstimator(cfg), f"nothing new ({'; '.join(said)}): written as one pass would"
    found = []
    if second.opening_direction != cfg.opening_direction:
        side = "counter-clockwise" if second.opening_direction > 0 else "clockwise"
        how = "confirmed" if est.sign_confirmed else "decided, not confirmed"
        found.append(f"opening direction {side} seen from above ({how}, {est.sign_revisions} revision(s))")
    if second.frame_at_closed != cfg.frame_at_closed:
        found.append(f"no frame at closed (the door went more than {math.degrees(cfg.closed_snap_rad):.1f} deg "
                     "past closed)")
    return DoorAngleEstimator(second), "; ".join(found) + ", used from the first sample"


def bounds_summary(est: DoorAngleEstimator, user_config: DoorAngleConfig | None = None) -> str:
    """One line on the door-specific evidence: readings beyond the stop or past closed, opening direction.
    ``user_config``: the configuration the user gave, when ``est`` runs with one a first pass completed."""
    cfg = est.config
    user = cfg if user_config is None else user_config
    deg = math.degrees
    if est.sign_confirmed:
        if user.hinge_axis is not None or user.opening_direction:
            direction = "configured"
        else:
            direction = "from the first pass" if cfg.opening_direction else "confirmed"
    else:
        direction = "decided, not yet confirmed" if est.sign_known else "not decided (no swing seen)"
    text = (
        f"angle range [{deg(est.min_angle):.1f}, {deg(est.max_angle):.1f}] deg; "
        f"beyond the door stop ({deg(cfg.stop_angle_rad):.1f} deg): {est.beyond_stop} excursion(s); "
        f"past closed by more than {deg(cfg.closed_snap_rad):.1f} deg: {est.past_closed}"
        f"{' (no frame at closed: readings past closed kept)' if est.frameless else ''}; "
        f"opening direction {direction}, {est.sign_revisions} revision(s)"
    )
    if est.beyond_stop:
        text += (" -- readings beyond the stop were kept, not clipped: check stop_angle_rad, the opening "
                 "direction and the sensor's mounting")
    return text
