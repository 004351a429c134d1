"""Transitions from a bag's sensor topics, the raw way (``async-naf bag convert --method raw``).

What ``ros2 bag record`` gives on any ros2_control arm is enough: per robot namespace ``joint_states``
(sensor_msgs/JointState), ``forward_velocity_controller/commands`` (std_msgs/Float64MultiArray, 7 rad/s),
``door/imu`` (sensor_msgs/Imu, door tasks) and ``task/goal`` (async_naf.goal.v1; a bag without goals:
``RawConfig.episode_steps`` and ``RawConfig.goal``). Every topic name can be remapped.

Rules (times are the bag's receive times, ns; the policy's own clock is never needed):

- Each command is a step. Its state is the newest joint state received at or before the command, never a
  later one; one older than ``max_state_age_s`` drops the step (``stale_joint_state``). A command on the
  same joint state as the step before it (a lockstep re-send, or two commands per state) is no new step
  (``repeated_state``).
- The IMU stream goes through the same :class:`~async_naf.sensing.door_angle.DoorAngleEstimator` as the
  live ``door_angle`` node (any configuration: a new estimator setting can be tried on old data). The
  step's door state is the estimate after the newest IMU message received at or before the command; older
  than ``max_door_age_s``: dropped (``stale_door``). At each episode start the estimator is zeroed (the
  collector's ``door_angle/zero`` after the reset) and, as the live policy does, the door counts as closed
  (angle ``closed_angle_rad``, velocity 0) until an IMU message received after the goal.
- The step (joint state, FK end-effector position, door state, observation from the task code, the
  command as the action) goes through the collector's own
  :class:`~async_naf.collecting.collector.EpisodeAssembler`: the same pairing, reward, success, terminal
  and time limit as live training. A dropped step leaves a hole in the step count, so no transition spans
  it. Ground truth (``ground_truth/door_state`` at the joint state's stamp) only with ``use_ground_truth``.
- Episodes: an active goal with a new episode number (or active again) starts one, an inactive goal ends
  it; commands between episodes are counted (``between_episodes``). Without goals, the commands are cut
  into episodes of ``episode_steps`` steps under the fixed ``goal`` (the estimator zeroed only at the
  start: the door must be closed when the bag starts).

Bad input is a counted drop (joint states without the arm's joint names, sizes that do not match, NaN/Inf,
stamps going back, commands of another size or outside the task's action bounds) or a clear error (a
missing topic, a topic of another type, an unreadable bag, a bag where nothing is usable).
"""
from __future__ import annotations

import dataclasses
import math
import re
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import repeat
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from async_naf.common.bags import read_errors
from async_naf.common.checks import numbers
from async_naf.common.stamps import StampGuard
from async_naf.recording.info import BagError
from async_naf.wire.cdr import cdr_body, cdr_doubles, cdr_string, cdr_u32

JS_TYPE = "sensor_msgs/msg/JointState"
F64_TYPE = "std_msgs/msg/Float64MultiArray"
IMU_TYPE = "sensor_msgs/msg/Imu"
# topic key -> (default name relative to the robot namespace, message type)
TOPICS: dict[str, tuple[str, str]] = {
    "joint_states": ("joint_states", JS_TYPE),
    "commands": ("forward_velocity_controller/commands", F64_TYPE),
    "imu": ("door/imu", IMU_TYPE),
    "goal": ("task/goal", F64_TYPE),
    "ground_truth": ("ground_truth/door_state", JS_TYPE),
}
# accepted spellings of the keys in --topic KEY:=NAME (the relative default names too)
TOPIC_ALIASES = {**{k: k for k in TOPICS}, **{v[0]: k for k, v in TOPICS.items()}}


@dataclass
class RawConfig:
    """How the raw conversion pairs sensor messages with commands (units: s, rad/s).

    Attributes:
        max_state_age_s: a command's joint state may be at most this old (receive times), s.
        max_door_age_s: a command's door estimate (its IMU message) may be at most this old, s.
        zero_door_on_episode: zero the door estimator at each episode start (the collector's
            ``door_angle/zero`` after the reset).
        use_ground_truth: reward and success from ``ground_truth/door_state`` (simulation bags only).
        episode_steps: steps per episode; 0 = the recorded run's collector setting, else the task's default.
            Required for a bag without ``task/goal``.
        goal: the goal vector for a bag without ``task/goal`` (task goal size).
        action_tolerance: a command beyond the task's action bounds by more than this is dropped, rad/s.
        time_jump_reset_s: an IMU stamp this far behind or ahead of the newest accepted one is a glitch
            (``imu:stamp_glitch``), unless the stamps after it go on from it: then, behind (a simulation
            restarted within the bag, bags joined), the estimate restarts (door closed, calibration kept), as the
            door_angle node does, instead of dropping everything after it as out of order; ahead, a gap, s.
    """

    max_state_age_s: float = 0.1
    max_door_age_s: float = 0.1
    zero_door_on_episode: bool = True
    use_ground_truth: bool = False
    episode_steps: int = 0
    goal: tuple[float, ...] | None = None
    action_tolerance: float = 1e-6
    time_jump_reset_s: float = 1.0

    def __post_init__(self) -> None:
        numbers(self, ("max_state_age_s", "max_door_age_s", "time_jump_reset_s"), 0.0, low_open=True)
        numbers(self, ("action_tolerance",), 0.0)
        if not isinstance(self.episode_steps, int) or self.episode_steps < 0:
            raise ValueError(f"episode_steps must be an integer >= 0, got {self.episode_steps!r}")
        if self.goal is not None:
            self.goal = tuple(float(v) for v in self.goal)
            if not all(math.isfinite(v) for v in self.goal):
                raise ValueError(f"goal must be finite, got {self.goal}")


class Event(NamedTuple):
    """One decoded message of a robot, in receive order: ``t_ns`` receive time, ``kind`` (a TOPICS key).
    (A plain ``(t_ns, kind, data)`` tuple does as well where many are made: :data:`Events`.)"""

    t_ns: int
    kind: str
    data: Any


Events = Sequence[tuple[int, str, Any]]  # Event records, or plain tuples of the same three fields


class RawRobot:
    """The raw rules for one robot (module docstring), fed decoded events in receive order. ROS-free.

    Args:
        task: the task object.  collector: the CollectorConfig of the EpisodeAssembler.
        config: the RawConfig.  estimator: a DoorAngleEstimator (door tasks) or None.
        kinematics: an object with ``ee_position(q)`` and ``ee_positions(q)`` (default: the URDF's ArmKinematics).
        truth: ground truth by joint-state stamp (ns), used when the collector config says so.
        joint_names: the arm's joint names, in the observation's order.
    """

    def __init__(self, task: Any, collector: Any, config: RawConfig, estimator: Any = None,
                 kinematics: Any = None, truth: dict[int, Any] | None = None,
                 joint_names: tuple[str, ...] | None = None) -> None:
        from async_naf.collecting.collector import EpisodeAssembler
        from async_naf.task.kinematics import ARM_JOINTS

        if kinematics is None:
            from async_naf.task.kinematics import ArmKinematics

            kinematics = ArmKinematics()
        self.task, self.config, self.kin = task, config, kinematics
        self._asm = EpisodeAssembler(collector, task)
        # steps not yet given to the assembler (columns; with goals they go in together, see `asm`)
        self._steps: list[list[Any]] = [[] for _ in range(10)]
        self.estimator = estimator if task.is_door else None
        self.truth = truth if (truth is not None and collector.use_ground_truth) else None
        self.names = tuple(joint_names or ARM_JOINTS)
        self.drops: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.episodes = 0
        self._index: dict[tuple[str, ...], np.ndarray | None] = {}
        self._js: tuple[int, int, np.ndarray, np.ndarray] | None = None  # t_ns, stamp_ns, q, qd
        self._door: tuple[int, float, float] | None = None  # t_ns, angle, velocity
        self._door_prior_t: int | None = None
        self._imu_stamps = StampGuard(config.time_jump_reset_s)  # the IMU's clock: glitches and jumps
        from async_naf.sensing.door_angle import update_guarded  # the estimator fed as the node feeds it

        self._update_guarded = update_guarded
        self._episode_on = False
        self._goal_episode: int | None = None
        self._step = 0
        self._last_js_stamp: int | None = None
        self._low = np.asarray(task.action_low, np.float64) - config.action_tolerance
        self._high = np.asarray(task.action_high, np.float64) + config.action_tolerance
        self._closed = float(estimator.config.closed_angle_rad) if estimator is not None else 0.0
        self._fixed_goal = None if config.goal is None else np.asarray(config.goal, np.float64)
        from async_naf.task.tasks import TaskState
        from async_naf.wire.layouts import PolicyStep

        self._types = (TaskState, PolicyStep)
        self._handlers = {kind: getattr(self, "_on_" + kind) for kind in TOPICS}

    @property
    def asm(self) -> Any:
        """The collector's EpisodeAssembler, with every step fed so far in it.

        With goals the steps of an episode go into it together (:meth:`EpisodeAssembler.add_steps`: the same
        rules and rows as one :meth:`~EpisodeAssembler.add_step` per step, the reward computed for all at
        once); this property, and the next episode's start, hand over the steps still held."""
        self._flush()
        return self._asm

    def _flush(self) -> None:
        cols = self._steps
        if not cols[0]:
            return
        from async_naf.wire.layouts import PolicySteps

        stamp, episode, step, action, q, qd, angle, velocity, hinge, handle = cols
        joint_pos, joint_vel = np.array(q, np.float64), np.array(qd, np.float64)
        door, rate = np.array(angle, np.float64), np.array(velocity, np.float64)
        ee = self.kin.ee_positions(joint_pos)
        obs = self.task.observations(joint_pos, joint_vel, ee, self._asm.goal, door, rate)
        steps = PolicySteps(np.array(stamp, np.float64), np.array(episode, np.int64), np.array(step, np.int64),
                            obs.astype(np.float64), np.array(action, np.float64), joint_pos, joint_vel, ee, door, rate)
        if self.truth is not None:
            self._asm.add_steps(steps, np.array(hinge, np.float64), np.array(handle, np.float64))
        else:
            self._asm.add_steps(steps)
        for col in cols:
            col.clear()

    # ------------------------------------------------------------------------------------------ events
    def feed(self, ev: Event) -> None:
        self._handlers[ev.kind](ev.t_ns, ev.data)

    def feed_all(self, events: Events) -> None:
        """:meth:`feed` each of ``events``, in order."""
        handlers = self._handlers
        for t, kind, data in events:
            handlers[kind](t, data)

    def _drop(self, reason: str) -> None:
        self.drops[reason] += 1

    def _on_goal(self, t: int, goal: Any) -> None:
        if not goal.active:
            self._episode_on = False
            return
        if self._episode_on and goal.episode == self._goal_episode:
            return  # the same goal again (re-published)
        self._start(t, goal.episode, goal.goal)

    def _start(self, t: int, episode: int, goal: np.ndarray) -> None:
        self.asm.episode = episode - 1
        try:
            self.asm.start_episode(goal)
        except ValueError:
            self._drop("goal:invalid")
            self._episode_on = False
            return
        self._episode_on, self._goal_episode, self._step = True, episode, 0
        self._last_js_stamp = None
        self.episodes += 1
        # without goals nothing tells when the door was reset: closed only at the start of the bag
        if self.estimator is not None and (self._fixed_goal is None or self.episodes == 1):
            if self.config.zero_door_on_episode:
                self.estimator.zero()
            self._door_prior_t = t

    def _on_joint_states(self, t: int, msg: Any) -> None:
        names, stamp, pos, vel = msg
        index = self._index.get(names)
        if index is None and names not in self._index:
            try:
                index = np.array([names.index(n) for n in self.names])
            except ValueError:
                index = None
            self._index[names] = index
        if index is None:
            self._drop("joint_state:joint_names")
            return
        if pos.size != len(names) or vel.size != len(names):
            self._drop("joint_state:sizes")
            return
        q, qd = pos[index], vel[index]
        if not math.isfinite(float(q.sum() + qd.sum())):
            self._drop("joint_state:non_finite")
            return
        if self._js is not None and stamp < self._js[1]:
            self._drop("joint_state:out_of_order")
            return
        self.counts["joint_states"] += 1
        self._js = (t, stamp, q, qd)

    def _on_imu(self, t: int, sample: Any) -> None:
        """``sample``: an ImuSample, or the arguments of ``DoorAngleEstimator.update_values`` (a tuple)."""
        est = self.estimator
        if est is None:
            return
        verdict, state = self._update_guarded(est, self._imu_stamps, sample)
        if verdict == StampGuard.DROP:
            self._drop("imu:stamp_glitch")
            return
        if verdict == StampGuard.JUMP:
            self.counts["imu_time_resets"] += 1
        if state is None:
            return  # counted by the estimator (its drops are reported as imu:<reason>)
        self.counts["imu"] += 1
        if self._door_prior_t is not None and t > self._door_prior_t:
            self._door_prior_t = None
        self._door = (t, float(state.angle), float(state.velocity))

    def _on_ground_truth(self, t: int, msg: Any) -> None:
        return  # looked up by stamp (self.truth), gathered while reading

    def _on_commands(self, t: int, action: np.ndarray) -> None:
        TaskState, PolicyStep = self._types
        self.counts["commands"] += 1
        if not self._episode_on:
            if self._fixed_goal is None:
                self._drop("between_episodes")
                return
            self._start(t, self.asm.episode + 1, self._fixed_goal)  # no goals: cut every episode_steps
            if not self._episode_on:
                return
        if action.shape != (self.task.act_dim,):
            self._drop("command:wrong_size")
            self._step += 1
            return
        if not ((action >= self._low).all() and (action <= self._high).all()):  # NaN fails both
            self._drop("command:non_finite" if not np.isfinite(action).all() else "command:out_of_bounds")
            self._step += 1
            return
        js = self._js
        if js is None or t - js[0] > self.config.max_state_age_s * 1e9:
            self._drop("stale_joint_state")
            self._step += 1
            return
        if self._last_js_stamp is not None and js[1] <= self._last_js_stamp:
            self._drop("repeated_state")
            return
        angle, velocity = 0.0, 0.0
        if self.estimator is not None:
            if self._door_prior_t is not None:
                ref_t, angle, velocity = self._door_prior_t, self._closed, 0.0
            elif self._door is not None:
                ref_t, angle, velocity = self._door
            else:
                ref_t = None
            if ref_t is None or t - ref_t > self.config.max_door_age_s * 1e9:
                self._drop("stale_door")
                self._step += 1
                return
        _, stamp, q, qd = js
        self._last_js_stamp = stamp
        truth = None
        if self.truth is not None:
            truth = self.truth.get(stamp)
            if truth is None:
                self._drop("truth_missing")
                self._step += 1
                return
        episode = self._goal_episode if self._goal_episode is not None else 0
        self.counts["steps"] += 1
        if self._fixed_goal is None:  # held for the assembler (see `asm`)
            hinge, handle = (None, None) if truth is None else (truth.hinge_angle, truth.handle_angle)
            for col, value in zip(self._steps, (stamp * 1e-9, episode, self._step, action, q, qd, angle, velocity,
                                                hinge, handle)):
                col.append(value)
            self._step += 1
            return
        ee = self.kin.ee_position(q)
        obs = self.task.observation(TaskState(q, qd, ee, angle, velocity), self._asm.goal)
        self._asm.add_step(PolicyStep(stamp * 1e-9, episode, self._step, obs, action, q, qd, ee, angle, velocity),
                           truth)
        self._step += 1
        if not self._asm.in_episode:
            self._episode_on = False  # the next command starts the next episode

    # ------------------------------------------------------------------------------------------ results
    def all_drops(self) -> Counter[str]:
        out = Counter(self.drops)
        out.update({f"step:{k}": v for k, v in self.asm.dropped.items()})
        if self.estimator is not None:
            out.update({f"imu:{k}": v for k, v in self.estimator.dropped.items() if v})
        return out


@dataclass
class RawSource:
    """Where a robot's streams are in the bag: topic per TOPICS key (absent keys: not in the bag)."""

    ns: str
    topics: dict[str, str] = field(default_factory=dict)


def resolve_topics(ns: str, remaps: dict[str, str]) -> dict[str, str]:
    """Absolute topic per TOPICS key for namespace ``ns`` ('' = the root): the default relative name or the
    remapped one (absolute names as given, relative ones under ``ns``)."""
    out = {}
    for key, (rel, _) in TOPICS.items():
        name = remaps.get(key, rel)
        out[key] = name if name.startswith("/") else f"{ns}/{name}"
    return out


def parse_remaps(items: list[str]) -> dict[str, str]:
    """``KEY:=NAME`` items (KEY: a TOPICS key or its default relative name) as {key: name}.

    Raises:
        ValueError: malformed item or unknown key.
    """
    out: dict[str, str] = {}
    for item in items:
        key, sep, name = item.partition(":=")
        key, name = key.strip().strip("/"), name.strip()
        if not sep or not name:
            raise ValueError(f"--topic expects KEY:=NAME, got {item!r}")
        if key not in TOPIC_ALIASES:
            raise ValueError(f"--topic {item!r}: unknown stream {key!r}; one of {sorted(TOPIC_ALIASES)}")
        out[TOPIC_ALIASES[key]] = name
    return out


_STAMP = struct.Struct("<iI")


def _doubles(body: memoryview, pos: int) -> tuple[np.ndarray, int]:
    at, n, end = cdr_doubles(body, pos)
    return (np.frombuffer(body, np.float64, n, at) if n else np.zeros(0)), end


def fast_joint_state(raw: bytes | memoryview) -> tuple[tuple[str, ...], int, np.ndarray, np.ndarray]:
    """sensor_msgs/JointState CDR (little endian) -> (names, stamp ns, position, velocity), without the
    generic deserialiser (the raw conversion's hot path; :func:`_joint_state` is the reference)."""
    body = cdr_body(raw)
    sec, nsec = _STAMP.unpack_from(body, 0)
    _, pos = cdr_string(body, 8)
    count, pos = cdr_u32(body, pos)
    names = []
    for _ in range(count):
        name, pos = cdr_string(body, pos)
        names.append(name)
    position, pos = _doubles(body, pos)
    velocity, pos = _doubles(body, pos)
    return tuple(names), sec * 1_000_000_000 + nsec, position, velocity


def _cov(values: np.ndarray) -> np.ndarray | None:
    return None if values[0] == -1.0 or not values.any() else values.reshape(3, 3)


def fast_imu(raw: bytes | memoryview) -> Any:
    """sensor_msgs/Imu CDR (little endian) -> ImuSample, as :func:`~async_naf.wire.imu.
    imu_msg_to_sample` makes it from a deserialised message (the raw conversion's hot path)."""
    from async_naf.wire.imu import ImuSample

    body = cdr_body(raw)
    sec, nsec = _STAMP.unpack_from(body, 0)
    _, pos = cdr_string(body, 8)
    pos = (pos + 7) & ~7
    if pos + 37 * 8 > len(body):
        raise ValueError("Imu message too short")
    v = np.frombuffer(body, np.float64, 37, pos)  # orientation 4, cov 9, gyro 3, cov 9, accel 3, cov 9
    return ImuSample(sec * 1_000_000_000 + nsec, v[13:16].copy(), v[25:28].copy(), _cov(v[16:25]), _cov(v[28:37]))


def fast_f64_data(raw: bytes | memoryview) -> np.ndarray:
    """std_msgs/Float64MultiArray CDR (little endian) -> its data (layout skipped: a command's)."""
    body = cdr_body(raw)
    dims, pos = cdr_u32(body, 0)
    for _ in range(dims):
        _, pos = cdr_string(body, pos)
        pos = ((pos + 3) & ~3) + 8  # size, stride
    pos = ((pos + 3) & ~3) + 4  # data_offset
    data, _ = _doubles(body, pos)
    return data


def _joint_state(msg: Any) -> tuple[tuple[str, ...], int, np.ndarray, np.ndarray]:
    st = msg.header.stamp
    return (tuple(msg.name), int(st.sec) * 1_000_000_000 + int(st.nanosec),
            np.asarray(msg.position, np.float64), np.asarray(msg.velocity, np.float64))


def _door_config(bag: Path, ns: str, door_values: dict[str, Any] | None) -> Any:
    """The estimator's configuration: the recorded run's (``../params/<ns>.door_angle.yaml``) if there,
    then ``door_values`` (already validated names) on top."""
    import yaml

    from async_naf.run.graph import config_from_params, yaml_number
    from async_naf.sensing.door_angle import DoorAngleConfig

    values: dict[str, Any] = {}
    params = bag.parent / "params" / f"{ns.strip('/')}.door_angle.yaml"
    if params.is_file():
        doc: dict[str, Any] = yaml.safe_load(params.read_text()) or {}
        node: dict[str, Any] = next(iter(doc.values()), {})
        names = {f.name for f in dataclasses.fields(DoorAngleConfig)}
        values = {k: (None if v == [] else yaml_number(v))
                  for k, v in dict(node.get("ros__parameters", {})).items() if k in names}
    values.update(door_values or {})
    return config_from_params(DoorAngleConfig, values, "door_angle")


FAST = {"joint_states": fast_joint_state, "imu": fast_imu, "commands": fast_f64_data}


def _plan(bag: Path, types: dict[str, str], task: str, need: list[str], remaps: dict[str, str],
          robots: list[str] | None) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """The robot namespaces to convert and the streams to read, {topic: (namespace, TOPICS key)}, from the
    bag's {topic: message type}. Raises BagError: no robot, a missing topic, a topic of another type."""
    if robots:
        namespaces = ["" if r.strip("/") == "" else "/" + r.strip("/") for r in robots]
    else:
        cmd_rel = remaps.get("commands", TOPICS["commands"][0])
        if cmd_rel.startswith("/"):
            namespaces = [""]
        else:
            pat = re.compile(r"^(.*)/" + re.escape(cmd_rel) + "$")
            namespaces = sorted(m.group(1) for m in map(pat.match, types) if m)
    if not namespaces:
        raise BagError(f"{bag}: no {remaps.get('commands', TOPICS['commands'][0])} topic: no robot to "
                       f"convert (topics: {sorted(types)}; remap with --topic commands:=NAME)")
    by_topic: dict[str, tuple[str, str]] = {}
    for ns in namespaces:
        topics = resolve_topics(ns, remaps)
        missing = [topics[k] for k in need if topics[k] not in types]
        if missing:
            hints = ["remap with --topic KEY:=NAME"]
            if "goal" in need and topics["goal"] in missing:
                hints.append("a bag without goals: --episode-steps N --goal V,V,...")
            if not ns and not robots:
                hints.append("the robot is / because --topic commands:= names an absolute topic; --robot NS "
                             "reads NS's relative names")
            raise BagError(f"{bag}: robot {ns or '/'} lacks {', '.join(missing)} for the raw conversion "
                           f"of {task!r} ({'; '.join(hints)})")
        for key in need:
            want, got = TOPICS[key][1], types[topics[key]]
            if got != want:
                raise BagError(f"{bag}: {topics[key]} is {got}, the raw conversion needs {want}")
            if topics[key] in by_topic:
                raise BagError(f"{bag}: {topics[key]} serves two robots; give --robot")
            by_topic[topics[key]] = (ns, key)
    return namespaces, by_topic


def _decoder(goal_dim: int, drops: Counter[str]) -> Callable[[str, bytes | memoryview, Callable[[], Any]], Any]:
    """``decode(kind, raw, deserialize)``: one message of stream ``kind`` as its event's data (ground truth:
    (stamp ns, GroundTruth)), or None when it is dropped (counted in ``drops``). The fast CDR decoder first,
    ``deserialize()`` (rosbags) where that one refuses (not plain little-endian CDR, damaged)."""
    from rosbags.serde import SerdeError

    from async_naf.collecting.collector import GroundTruth
    from async_naf.wire import layouts
    from async_naf.wire.imu import imu_msg_to_sample

    def decode(kind: str, raw: bytes | memoryview, deserialize: Callable[[], Any]) -> Any:
        try:
            fast = FAST.get(kind)
            if fast is not None:
                try:
                    return fast(raw)
                except (ValueError, struct.error, UnicodeDecodeError):
                    pass  # not plain little-endian CDR, or damaged: the generic deserialiser decides
            msg: Any = deserialize()
            if kind == "joint_states":
                return _joint_state(msg)
            if kind == "commands":
                return np.asarray(msg.data, np.float64)
            if kind == "imu":
                return imu_msg_to_sample(msg)
            if kind == "goal":
                return layouts.decode_goal(layouts.array_msg_of(msg), goal_dim=goal_dim)
            names = list(msg.name)
            i, j = names.index("door_hinge"), names.index("door_handle")
            stamp_key = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
            vel = float(msg.velocity[i]) if len(msg.velocity) > i else 0.0
            return stamp_key, GroundTruth(float(msg.position[i]), vel, float(msg.position[j]))
        except layouts.LayoutError:
            drops[f"{kind}:layout"] += 1
        except (SerdeError, ValueError, IndexError, KeyError, AttributeError, AssertionError, TypeError):
            drops[f"{kind}:undecodable"] += 1
        return None

    return decode


def _noise_variances(cov: np.ndarray) -> list[float | None]:
    """Per-axis noise variance of each row of (k, 9) sensor_msgs covariances, as the estimator takes it from
    one message (:func:`~async_naf.wire.imu.imu_msg_to_sample`, then its ``_noise_var``): the diagonal's
    mean, None where a diagonal element is not > 0 or their sum is not finite (this covers "unknown": -1
    first, or all zeros)."""
    d0, d1, d2 = cov[:, 0], cov[:, 4], cov[:, 8]
    with np.errstate(invalid="ignore", over="ignore"):
        total = d0 + d1 + d2
        ok = (d0 > 0.0) & (d1 > 0.0) & (d2 > 0.0) & np.isfinite(total)
        var = (total / 3.0).tolist()
    return [v if good else None for v, good in zip(var, ok.tolist())]


def _topic_types_generic(bag: Path) -> dict[str, str]:
    """{topic: message type} of any bag rosbags reads (empty where it cannot)."""
    from rosbags.highlevel import AnyReader

    try:
        with AnyReader([bag]) as reader:
            return {c.topic: c.msgtype for c in reader.connections}
    except read_errors():
        return {}


def _read_indexed(bag: Path, by_topic: dict[str, tuple[str, str]], goal_dim: int, counts: Counter[str],
                  drops: Counter[str]) -> tuple[Mapping[str, Events], dict[str, dict[int, Any]]] | None:
    """Events and ground truth per robot namespace from an indexed MCAP bag, decoded a topic at a time
    (:mod:`async_naf.recording.indexed`, :mod:`async_naf.recording.cdr`); None where that does not apply.

    Messages of one layout (frame id, joint names, sizes) are decoded as one table; every other message
    goes through the per-message decoder (:func:`_decoder`), so events, truth and drops are those of the
    message-by-message read. The events of a robot are merged in the order rosbags yields them
    (``TopicPayloads.order``)."""
    from rosbags.typesys import Stores, get_typestore

    from async_naf.collecting.collector import GroundTruth
    from async_naf.recording.cdr import imu_groups, joint_state_groups, multiarray_groups
    from async_naf.recording.indexed import read_indexed

    payloads = read_indexed(bag, by_topic)
    if payloads is None:
        return None
    store = get_typestore(Stores.ROS2_JAZZY)
    decode = _decoder(goal_dim, drops)
    placed: dict[str, tuple[list[np.ndarray], list[tuple[int, str, Any]]]] = {}
    truth: dict[str, dict[int, Any]] = {}
    for topic in sorted(payloads):
        p, (ns, kind) = payloads[topic], by_topic[topic]
        assert p.order is not None
        n = len(p.log_time)
        counts[kind] += n
        data: list[Any] = [None] * n  # each message's event data; None: dropped
        rest: Any = np.arange(n)
        if kind == "imu":
            imu, rest = imu_groups(p.buf, p.start, p.length)
            for ig in imu:
                stamps = (ig.stamp_sec * 1_000_000_000 + ig.stamp_nanosec).tolist()
                v = ig.values
                _place(data, ig.messages, zip(stamps, *v[:, 13:16].T.tolist(), *v[:, 25:28].T.tolist(),
                                             _noise_variances(v[:, 16:25]), _noise_variances(v[:, 28:37])))
        elif kind in ("joint_states", "ground_truth"):
            js, rest = joint_state_groups(p.buf, p.start, p.length)
            for g in js:
                stamps = (g.stamp_sec * 1_000_000_000 + g.stamp_nanosec).tolist()
                if kind == "joint_states":
                    _place(data, g.messages, zip(repeat(g.names), stamps, g.position, g.velocity))
                elif "door_hinge" in g.names and "door_handle" in g.names:
                    i, j = g.names.index("door_hinge"), g.names.index("door_handle")
                    vel = g.velocity[:, i].tolist() if g.velocity.shape[1] > i else [0.0] * len(stamps)
                    _place(data, g.messages, zip(stamps, map(GroundTruth, g.position[:, i].tolist(), vel,
                                                             g.position[:, j].tolist())))
                else:
                    rest = np.concatenate((rest, g.messages))  # each then fails as one message would
        elif kind == "commands":
            arrays, rest = multiarray_groups(p.buf, p.start, p.length)
            for a in arrays:
                _place(data, a.messages, a.data)
        msgtype = TOPICS[kind][1]
        for i in np.sort(rest).tolist():
            raw = p.payload(i)
            data[i] = decode(kind, raw, partial(store.deserialize_cdr, raw, msgtype))
        if kind == "ground_truth":
            robot_truth = truth.setdefault(ns, {})
            for d in data:
                if d is not None:
                    robot_truth[d[0]] = d[1]
            continue
        times = p.log_time.tolist()
        orders, events = placed.setdefault(ns, ([], []))
        if any(d is None for d in data):
            keep = [i for i, d in enumerate(data) if d is not None]
            orders.append(p.order[keep])
            events += [(times[i], kind, data[i]) for i in keep]
        else:
            orders.append(p.order)
            events += zip(times, repeat(kind), data)
    out: dict[str, Events] = {}
    for ns, (orders, events) in placed.items():
        order = np.argsort(np.concatenate(orders), kind="stable").tolist()
        out[ns] = itemgetter(*order)(events) if len(order) > 1 else events
    return out, truth


def _place(data: list[Any], messages: np.ndarray, values: Iterable[Any]) -> None:
    """``data[m] = value`` for the (sorted) message indices ``messages`` and their values, in order."""
    if len(messages) == len(data):  # sorted, distinct and all of them: 0, 1, ..., n - 1
        data[:] = values
    else:
        for m, value in zip(messages.tolist(), values):
            data[m] = value


def _read_generic(bag: Path, task: str, need: list[str], remaps: dict[str, str], robots: list[str] | None,
                  goal_dim: int, counts: Counter[str], drops: Counter[str]
                  ) -> tuple[list[str], Mapping[str, Events], dict[str, dict[int, Any]]]:
    """The robots, their events and ground truth, message by message through rosbags' AnyReader."""
    from rosbags.highlevel import AnyReader, AnyReaderError
    from rosbags.typesys import Stores, get_typestore

    from async_naf.run.convert import check_counts

    try:
        with AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_JAZZY)) as reader:
            types = {c.topic: c.msgtype for c in reader.connections}
            namespaces, by_topic = _plan(bag, types, task, need, remaps, robots)
            events: dict[str, list[Event]] = {ns: [] for ns in namespaces}
            truth: dict[str, dict[int, Any]] = {ns: {} for ns in namespaces}
            conns = [c for c in reader.connections if c.topic in by_topic]
            decode = _decoder(goal_dim, drops)
            seen: Counter[str] = Counter()
            for conn, t_ns, raw in reader.messages(connections=conns):
                ns, kind = by_topic[conn.topic]
                counts[kind] += 1
                seen[conn.topic] += 1
                try:
                    data = decode(kind, raw, partial(reader.deserialize, raw, conn.msgtype))
                except AnyReaderError:
                    drops[f"{kind}:undecodable"] += 1
                    continue
                if data is None:
                    continue
                if kind == "ground_truth":
                    truth[ns][data[0]] = data[1]
                else:
                    events[ns].append(Event(t_ns, kind, data))
            check_counts(bag, conns, seen)
    except BagError:  # this module's own (a topic missing, ...): not a damaged bag
        raise
    except read_errors() as exc:  # whatever a damaged bag makes rosbags raise
        raise BagError(f"{bag}: not a readable rosbag2 bag: {type(exc).__name__}: {exc}") from exc
    return namespaces, events, truth


def convert_raw(bag: str | Path, task: str, config: RawConfig | None = None, *,
                door_values: dict[str, Any] | None = None, remaps: dict[str, str] | None = None,
                robots: list[str] | None = None, vectorised: bool = True) -> Any:
    """Rebuild transitions from sensor topics (module docstring); returns a
    :class:`~async_naf.run.convert.Converted` (``method`` raw).

    Args:
        bag: rosbag2 directory.  task: task name.  config: the RawConfig.
        door_values: estimator parameters over the recorded run's / the defaults (``--set door_angle.X=V``).
        remaps: {TOPICS key: topic name} (relative names under each robot namespace).
        robots: robot namespaces (``/robot_0``; ``/`` for the root); default: every namespace that has the
            commands topic.
        vectorised: read an indexed MCAP bag's streams a topic at a time, messages of one layout as tables
            (the same result); False: message by message through rosbags, as for any other bag.

    Raises:
        BagError: unreadable bag, missing topics, topics of another type, no robot found.
        ValueError: bad configuration.
    """
    from async_naf.learning.replay import Batch
    from async_naf.recording.indexed import topic_types
    from async_naf.run.convert import Converted, _collector_config
    from async_naf.sensing.door_angle import DoorAngleEstimator
    from async_naf.task.tasks import make_task
    from async_naf.wire import layouts

    bag = Path(bag)
    config = config or RawConfig()
    remaps = remaps or {}
    task_obj = make_task(task)
    need = ["joint_states", "commands"] + (["imu"] if task_obj.is_door else [])
    if config.goal is None:
        need.append("goal")
    elif len(config.goal) != task_obj.goal_dim:
        raise ValueError(f"--goal needs {task_obj.goal_dim} values for {task}, got {len(config.goal)}")
    elif config.episode_steps <= 0:
        raise ValueError("a fixed goal (a bag without task/goal) needs --episode-steps")
    if config.use_ground_truth:
        need.append("ground_truth")
    counts: Counter[str] = Counter()
    drops: Counter[str] = Counter()
    types = topic_types(bag) if vectorised else None
    fast = None
    if types is not None:
        namespaces, by_topic = _plan(bag, types, task, need, remaps, robots)
        fast = _read_indexed(bag, by_topic, task_obj.goal_dim, counts, drops)
    if fast is None:
        counts.clear()
        drops.clear()
        namespaces, events, truth = _read_generic(bag, task, need, remaps, robots, task_obj.goal_dim, counts, drops)
    else:
        events = {ns: fast[0].get(ns, []) for ns in namespaces}
        truth = {ns: fast[1].get(ns, {}) for ns in namespaces}
    out = Converted(Batch(*(np.zeros((0,) + s, np.float32) for s in
                            ((task_obj.obs_dim,), (task_obj.act_dim,), (), (task_obj.obs_dim,), ()))),
                    [ns or "/" for ns in namespaces], counts=counts, drops=drops, method="raw")
    if config.goal is not None:  # a fixed goal over a bag that has its own goals: said, not silently replaced
        known = types if types is not None else _topic_types_generic(bag)
        over = [ns or "/" for ns in namespaces if resolve_topics(ns, remaps)["goal"] in known]
        if over:
            out.extra["fixed_goal_over_recorded_goals"] = over
    parts: list[layouts.TransitionBatch] = []
    from async_naf.task.kinematics import ArmKinematics

    kin = ArmKinematics()
    for index, ns in enumerate(namespaces):
        digits = re.search(r"(\d+)$", ns)
        overrides: dict[str, Any] = {"use_ground_truth": config.use_ground_truth}
        if config.episode_steps:
            overrides["episode_steps"] = config.episode_steps
        cfg = _collector_config(bag, ns or "/root", task, int(digits.group(1)) if digits else index, overrides)
        out.configs[ns or "/"] = dataclasses.asdict(cfg)
        est = None
        if task_obj.is_door:
            door_cfg = _door_config(bag, ns or "/root", door_values)
            out.door_configs[ns or "/"] = dataclasses.asdict(door_cfg)
            est = DoorAngleEstimator(door_cfg)
        robot = RawRobot(task_obj, cfg, config, est, kin, truth[ns])
        robot.feed_all(events[ns])
        out.episodes += robot.episodes
        drops.update(robot.all_drops())
        counts.update({f"used:{k}": v for k, v in robot.counts.items()})
        while robot.asm.pending:
            batch = robot.asm.pop_batch(max_rows=100_000)
            if batch is not None:
                parts.append(batch)
    out.set_parts(parts)
    return out
