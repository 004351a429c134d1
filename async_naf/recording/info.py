"""What a rosbag2 bag holds, for training (ROS-free; reads with ``rosbags``).

:func:`bag_info` reports per topic the message count, rate, largest gap between receive times and, for
stamped messages, the lag of the header stamp behind the receive time (or, for stamps on a simulation's clock,
behind that clock's time at reception: the newest ``clock`` message of the robot's namespace, else ``/clock``,
received at or before it); the episodes found in
``task/goal`` per robot; and which tasks the bag can feed, the two ways ``async-naf bag convert`` builds
transitions (``exact``: the policy's own ``policy/step`` records; ``raw``: joint states, commands, the
door IMU and the goal, what ``ros2 bag record`` gives on any ros2_control arm), with what is missing, or why
not: a robot recorded running another task (a bag of ``async-naf train --record``: its collector's parameters
in ``RUN_DIR/params``, what the conversion refuses on), or, for the exact way, policy steps of other sizes
than the task's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from async_naf.common.bags import message_count, read_errors
from async_naf.recording.config import TASK_KEY
from async_naf.recording.ready import topic_namespace
from async_naf.task.tasks import TASK_NAMES, make_task
from async_naf.wire import layouts

# topics (relative to a robot namespace) each way of building transitions needs
EXACT_TOPICS = ("policy/step", "task/goal")
RAW_TOPICS = ("joint_states", "forward_velocity_controller/commands", "task/goal")
RAW_DOOR_TOPICS = ("door/imu",)
_STAMPED = {"sensor_msgs/msg/JointState", "sensor_msgs/msg/Imu", "diagnostic_msgs/msg/DiagnosticArray"}
_CLOCK = "rosgraph_msgs/msg/Clock"
STEP_DIM_TRIES = 10  # policy steps per robot decoded for their sizes before giving up (none decodes: no sizes)
SIM_STAMP_S = 86_400.0  # a stamp further than this from its receive time is on a simulation's clock, s


class BagError(ValueError):
    """The path is not a readable rosbag2 bag (missing, truncated, corrupt)."""


@dataclass
class TopicInfo:
    """One topic of a bag. Times in s (receive times), rate in Hz, lag in s.

    ``indexed``: the message count the bag's metadata gives the topic (-1: none); ``count`` below it means
    messages the reader could not get at (a damaged chunk that rosbags skips without an error).
    ``stamp_clock``: what the header stamps count (``system``: wall time, the lag is behind the receive time;
    ``sim``: a simulation's clock, the lag is behind that clock at reception; ``""``: no stamps; ``unknown``:
    sim-clock stamps without a clock topic to compare with, no lag).
    """

    name: str
    type: str
    count: int = 0
    indexed: int = -1
    first_s: float = math.nan
    last_s: float = math.nan
    max_gap_s: float = 0.0
    lag_mean_s: float = math.nan
    lag_max_s: float = math.nan
    stamp_clock: str = ""

    @property
    def rate_hz(self) -> float:
        span = self.last_s - self.first_s
        return (self.count - 1) / span if self.count > 1 and span > 0 else 0.0


@dataclass
class BagInfo:
    """What :func:`bag_info` found.

    Attributes:
        path: the bag.
        duration_s: last minus first receive time, s.
        topics: per topic.
        episodes: per robot namespace, the episode numbers started (active goals) in ``task/goal``.
        feeds: per task, per way (``exact``/``raw``), per robot namespace: the missing topics, and why else it
            cannot (``recorded running <task>``; ``policy/step obs <n>, act <m> (<task>: obs .., act ..)``);
            empty: it can.
        undecodable: messages that could not be decoded (counted, skipped).
        step_dims: per robot namespace, (obs, act) sizes of its first decodable ``policy/step``.
        recorded_tasks: per robot namespace, the task its collector ran (``../params/<robot>.collector.yaml``
            of a bag recorded with ``async-naf train --record``).
        params_errors: recorded parameter files that could not be read (the conversions refuse such a bag).
    """

    path: str
    duration_s: float = 0.0
    topics: dict[str, TopicInfo] = field(default_factory=dict)
    episodes: dict[str, list[int]] = field(default_factory=dict)
    feeds: dict[str, dict[str, dict[str, list[str]]]] = field(default_factory=dict)
    undecodable: int = 0
    step_dims: dict[str, tuple[int, int]] = field(default_factory=dict)
    recorded_tasks: dict[str, str] = field(default_factory=dict)
    params_errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able (NaN: None)."""
        def num(x: float) -> float | None:
            return None if math.isnan(x) else x

        return {
            "path": self.path, "duration_s": self.duration_s, "undecodable": self.undecodable,
            "topics": {n: {"type": t.type, "count": t.count, "rate_hz": t.rate_hz, "max_gap_s": t.max_gap_s,
                           "lag_mean_s": num(t.lag_mean_s), "lag_max_s": num(t.lag_max_s),
                           "stamp_clock": t.stamp_clock, "indexed": t.indexed}
                       for n, t in self.topics.items()},
            "episodes": {ns: len(eps) for ns, eps in self.episodes.items()},
            "feeds": self.feeds,
            "recorded_tasks": self.recorded_tasks, "params_errors": self.params_errors,
        }


def bag_info(path: str | Path) -> BagInfo:
    """Read the whole bag once and report (see the module docstring).

    Raises:
        BagError: not a readable bag.
    """
    from rosbags.highlevel import AnyReader, AnyReaderError
    from rosbags.serde import SerdeError
    from rosbags.typesys import Stores, get_typestore

    path = Path(path)
    info = BagInfo(str(path))
    store = get_typestore(Stores.ROS2_JAZZY)
    prev: dict[str, float] = {}
    lags: dict[str, list[float]] = {}
    clocks: dict[str, float] = {}  # clock topic -> its newest time, s
    step_tries: dict[str, int] = {}  # robot namespace -> policy steps tried for their sizes
    try:
        with AnyReader([path], default_typestore=store) as reader:
            for conn in reader.connections:
                if not (isinstance(conn.topic, str) and isinstance(conn.msgtype, str)):  # a damaged metadata.yaml
                    raise BagError(f"{path}: a topic named {conn.topic!r} of type {conn.msgtype!r}")
                topic_info = info.topics.setdefault(conn.topic, TopicInfo(conn.topic, conn.msgtype))
                if (n := message_count(conn)) is not None:
                    topic_info.indexed = max(topic_info.indexed, 0) + n
            for conn, t_ns, raw in reader.messages():
                topic = info.topics[conn.topic]
                t = t_ns * 1e-9
                topic.count += 1
                if topic.count == 1:
                    topic.first_s = t
                else:
                    topic.max_gap_s = max(topic.max_gap_s, t - prev[conn.topic])
                topic.last_s = prev[conn.topic] = t
                wants_goal = conn.topic.endswith("/task/goal")
                ns = topic_namespace(conn.topic)
                wants_step = (conn.topic.endswith("/policy/step") and ns not in info.step_dims
                              and step_tries.get(ns, 0) < STEP_DIM_TRIES)
                if wants_step:
                    step_tries[ns] = step_tries.get(ns, 0) + 1
                if conn.msgtype not in _STAMPED and not (wants_goal or wants_step) and conn.msgtype != _CLOCK:
                    continue
                try:
                    msg: Any = reader.deserialize(raw, conn.msgtype)
                    if wants_step:
                        step = layouts.decode_policy_step(layouts.array_msg_of(msg))
                        info.step_dims[ns] = (len(step.obs), len(step.action))
                    elif wants_goal:
                        goal = layouts.decode_goal(layouts.array_msg_of(msg))
                        eps = info.episodes.setdefault(ns or "/", [])
                        if goal.active and goal.episode not in eps:
                            eps.append(goal.episode)
                    elif conn.msgtype == _CLOCK:
                        clocks[conn.topic] = msg.clock.sec + 1e-9 * msg.clock.nanosec
                    else:
                        stamp = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
                        _add_lag(topic, lags, clocks, t, stamp)
                except (AnyReaderError, SerdeError, layouts.LayoutError, ValueError, AssertionError, IndexError,
                        KeyError, AttributeError):
                    info.undecodable += 1
    except BagError:
        raise
    except read_errors() as exc:  # whatever a damaged bag makes rosbags raise
        raise BagError(f"{path}: not a readable rosbag2 bag: {type(exc).__name__}: {exc}") from exc
    firsts = [t.first_s for t in info.topics.values() if t.count]
    lasts = [t.last_s for t in info.topics.values() if t.count]
    info.duration_s = max(lasts) - min(firsts) if firsts else 0.0
    for name, values in lags.items():
        info.topics[name].lag_mean_s = sum(values) / len(values)
        info.topics[name].lag_max_s = max(values)
    info.recorded_tasks = _recorded_tasks(info, path)
    info.feeds = _feeds(info)
    return info


def metadata_task(bag: Path) -> str:
    """The task the recorder wrote into the bag's metadata.yaml (``custom_data``, :data:`TASK_KEY`); "" where
    there is none (a bag of ``ros2 bag record``, an unreadable metadata.yaml: the reader reports that)."""
    import yaml

    try:
        doc = yaml.safe_load((Path(bag) / "metadata.yaml").read_text(encoding="utf-8")) or {}
        custom = doc["rosbag2_bagfile_information"].get("custom_data") or {}
        task = custom.get(TASK_KEY, "")
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return ""
    return task if isinstance(task, str) else ""


def recorded_collector_params(bag: Path, ns: str) -> dict[str, Any]:
    """The ROS parameters robot ``ns``'s collector ran with in the run that recorded ``bag``
    (``RUN_DIR/params/<robot>.collector.yaml`` beside ``RUN_DIR/bag`` of ``async-naf train --record``); empty
    where there is no such file, except the task the recorder wrote into the bag's metadata.yaml
    (:func:`metadata_task`: a bag copied out of its run directory).

    Raises:
        BagError: the file is there but cannot be read as a params file (unreadable, not UTF-8 or not YAML, not
            a mapping). An empty file, or one without ``ros__parameters``, gives no parameters (the defaults).
    """
    import yaml

    params = Path(bag).parent / "params" / f"{ns.strip('/')}.collector.yaml"
    if not params.is_file():  # a bag moved out of its run directory: the task its recorder wrote, if any
        task = metadata_task(bag)
        return {"task": task} if task else {}
    try:
        doc = yaml.safe_load(params.read_text(encoding="utf-8")) or {}
        if not isinstance(doc, dict):
            raise TypeError(f"a {type(doc).__name__}, not a mapping")
        node = next(iter(doc.values()), None) or {}
        values = node.get("ros__parameters", {}) if isinstance(node, dict) else None
        if not isinstance(values, dict):
            raise TypeError(f"the parameters are a {type(values).__name__}, not a mapping")
    except (OSError, UnicodeDecodeError, yaml.YAMLError, TypeError) as exc:
        text = " ".join(str(exc).split())  # a YAML error's message spans lines
        raise BagError(f"{params}: the recorded run's collector parameters are unreadable: {type(exc).__name__}: "
                       f"{text}") from exc
    return values


def _recorded_tasks(info: BagInfo, path: Path) -> dict[str, str]:
    """Per robot namespace of the bag: the task in its collector's recorded parameters, where there are some
    (an unreadable file is noted in ``info.params_errors``)."""
    out: dict[str, str] = {}
    for ns in sorted({topic_namespace(n) for n in info.topics} - {"", "/trainer", "/recorder"}):  # robots only
        try:
            task = recorded_collector_params(path, ns).get("task")
        except BagError as exc:
            info.params_errors.append(str(exc))
            continue
        if isinstance(task, str):
            out[ns] = task
    return out


def _add_lag(topic: TopicInfo, lags: dict[str, list[float]], clocks: dict[str, float], t: float,
             stamp: float) -> None:
    """The lag of one stamp received at ``t`` (both s): behind the receive time, or behind the simulation's
    clock for a stamp on it."""
    if abs(t - stamp) <= SIM_STAMP_S:
        topic.stamp_clock = "system"
        lags.setdefault(topic.name, []).append(t - stamp)
        return
    ns = topic_namespace(topic.name)
    now = clocks.get(f"{ns}/clock" if ns else "", clocks.get("/clock"))
    if now is None:
        topic.stamp_clock = topic.stamp_clock or "unknown"
        return
    topic.stamp_clock = "sim"
    lags.setdefault(topic.name, []).append(now - stamp)


def _feeds(info: BagInfo) -> dict[str, dict[str, dict[str, list[str]]]]:
    """Per task and way, per robot namespace found in the bag: the topics it lacks (messages, not just names)."""
    present = {n for n, t in info.topics.items() if t.count}
    robots = sorted({ns for n in present if (ns := topic_namespace(n)) and ns != "/trainer"})
    out: dict[str, dict[str, dict[str, list[str]]]] = {}
    for task_name in TASK_NAMES:
        task = make_task(task_name)
        ways = {"exact": EXACT_TOPICS, "raw": RAW_TOPICS + (RAW_DOOR_TOPICS if task.is_door else ())}
        out[task_name] = {way: {ns: [t for t in needed if f"{ns}/{t}" not in present] for ns in robots}
                          for way, needed in ways.items()}
        for ns in robots:
            recorded = info.recorded_tasks.get(ns, task_name)
            if recorded != task_name:
                for way in ways:
                    out[task_name][way][ns].append(f"recorded running {recorded}")
            dims = info.step_dims.get(ns)
            if dims is not None and dims != (task.obs_dim, task.act_dim):
                out[task_name]["exact"][ns].append(f"policy/step obs {dims[0]}, act {dims[1]} ({task_name}: obs "
                                                   f"{task.obs_dim}, act {task.act_dim})")
    return out


def format_info(info: BagInfo) -> str:
    """A human-readable report (what ``async-naf bag info`` prints)."""
    lines = [f"bag: {info.path}", f"duration: {info.duration_s:.1f} s, "
             f"{sum(t.count for t in info.topics.values())} messages, {len(info.topics)} topics"]
    lines.append(f"{'topic':48s} {'type':36s} {'count':>8s} {'rate Hz':>8s} {'max gap s':>9s} {'lag ms':>8s}")
    for name in sorted(info.topics):
        t = info.topics[name]
        lag = f"{1e3 * t.lag_mean_s:8.2f}" if not math.isnan(t.lag_mean_s) else f"{'-':>8s}"
        clock = {"sim": " (sim clock)", "unknown": " (sim-clock stamps, no clock topic)"}.get(t.stamp_clock, "")
        lines.append(f"{name:48s} {t.type:36s} {t.count:8d} {t.rate_hz:8.1f} {t.max_gap_s:9.3f} {lag}{clock}")
    for ns, eps in sorted(info.episodes.items()):
        lines.append(f"episodes {ns}: {len(eps)}" + (f" ({eps[0]}..{eps[-1]})" if eps else ""))
    for task_name, ways in info.feeds.items():
        for way, robots in ways.items():
            if not robots:
                lines.append(f"{task_name} {way}: no robot topics in the bag")
                continue
            missing = {ns: m for ns, m in robots.items() if m}
            verdict = "yes" if not missing else "no: " + "; ".join(f"{ns}: {', '.join(m)}"
                                                                  for ns, m in missing.items())
            lines.append(f"{task_name} {way}: {verdict}")
    if info.undecodable:
        lines.append(f"undecodable messages skipped: {info.undecodable}")
    lines.extend(f"UNREADABLE: {text} (the conversions refuse this bag)" for text in info.params_errors)
    for name, t in sorted(info.topics.items()):
        if t.count < t.indexed:
            lines.append(f"MISSING: {name}: read {t.count} of the {t.indexed} messages the bag's metadata counts "
                         "(a damaged chunk?)")
    return "\n".join(lines)
