"""Reading door-IMU messages from rosbag2 bags (MCAP or sqlite3) without ROS, through ``rosbags``.

``rosbags`` reads both storage formats and deserialises CDR with a Jazzy type store, so this works on a
laptop without a ROS install. Errors a user can cause (no such bag, a corrupt bag, a missing topic, a
topic of another type) raise :class:`BagError` with a message that says what to do.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from async_naf.common.bags import message_count, read_errors
from async_naf.wire.imu import ImuSample, imu_msg_to_sample

IMU_TYPE = "sensor_msgs/msg/Imu"
GOAL_TYPE = "std_msgs/msg/Float64MultiArray"
EPISODE_START = None  # what :meth:`ImuBag.samples` yields where an episode of the goal topic starts


class BagError(RuntimeError):
    """A bag that cannot be used: missing, corrupt, or without the requested IMU topic."""


@dataclass(frozen=True)
class ImuTopicInfo:
    """The IMU topic read from a bag: its name and message count."""

    topic: str
    count: int


def _typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_JAZZY)


def _open_reader(path: Path):
    """An opened rosbags AnyReader (raises BagError for a missing or unreadable bag)."""
    from rosbags.highlevel import AnyReader

    if not path.exists():
        raise BagError(f"no such bag: {path}")
    try:
        reader = AnyReader([path], default_typestore=_typestore())
        reader.open()
    except read_errors() as exc:  # whatever a damaged bag makes rosbags raise
        raise BagError(f"cannot open bag {path} (corrupt or not a rosbag2 bag?): {type(exc).__name__}: {exc}") from exc
    return reader


def _close(reader: Any, path: str | Path) -> None:
    """Close a rosbags reader; what a damaged bag makes that raise (rosbags' close of a bag whose metadata.yaml
    names its files wrongly: AttributeError) becomes a BagError."""
    try:
        reader.close()
    except read_errors() as exc:
        raise BagError(f"cannot close bag {path} (corrupt?): {type(exc).__name__}: {exc}") from exc


def list_topics(path: str | Path) -> dict[str, str]:
    """Topics of a bag and their message types (raises BagError for a missing or unreadable bag)."""
    reader = _open_reader(Path(path))
    try:
        return {c.topic: c.msgtype for c in reader.connections}
    finally:
        _close(reader, path)


def imu_topic(path: str | Path) -> str:
    """The bag's only sensor_msgs/msg/Imu topic (raises BagError if there is none or several)."""
    return _only_imu_topic(path, list_topics(path))


def _only_imu_topic(path: str | Path, topics: dict[str, str]) -> str:
    imu = sorted(t for t, m in topics.items() if m == IMU_TYPE)
    if not imu:
        raise BagError(f"bag {path} has no {IMU_TYPE} topic")
    if len(imu) > 1:
        raise BagError(f"bag {path} has several {IMU_TYPE} topics ({', '.join(imu)}): name one with --imu-topic")
    return imu[0]


class ImuBag:
    """An open rosbag2 bag, iterating the IMU samples of one topic in recorded order.

    Use as a context manager::

        with ImuBag("run.mcap_dir", "/robot_0/door/imu") as bag:
            for sample in bag.samples():
                ...

    ``topic=None``: the bag's only sensor_msgs/msg/Imu topic (BagError if there is none or several), found
    in the same opening of the bag; :attr:`topic` holds it once opened.

    ``episodes=True``: where the bag has the task goal of the IMU's robot (``<robot>/task/goal`` beside
    ``<robot>/door/imu``, a bag of ``async-naf train --record``), :meth:`samples` also yields
    :data:`EPISODE_START` (None) in recorded order where an episode starts (an active goal of a new episode):
    a live graph's collector zeroes the door estimate there after each reset, and a simulated door is reset
    without the IMU seeing it turn. :attr:`goal_topic` holds that topic ("" without one); goal messages that
    cannot be decoded are counted in :attr:`bad_goals`.
    """

    def __init__(self, path: str | Path, topic: str | None = None, episodes: bool = False) -> None:
        self.path = Path(path)
        self.topic = topic
        self.episodes = episodes
        self.goal_topic = ""
        self.episode_starts = 0
        self.bad_goals = 0
        self._reader = None
        self._connections: list = []
        self._goal_connections: list = []

    def __enter__(self) -> ImuBag:
        reader = _open_reader(self.path)
        topics = {c.topic: c.msgtype for c in reader.connections}
        if self.topic is None:
            try:
                self.topic = _only_imu_topic(self.path, topics)
            except BagError:
                _close(reader, self.path)
                raise
        if self.topic not in topics and "/" + self.topic in topics:
            self.topic = "/" + self.topic  # a relative name as typed by a user: bags store absolute names
        if self.topic not in topics:
            _close(reader, self.path)
            imu_topics = sorted(t for t, m in topics.items() if m == IMU_TYPE)
            hint = f"; IMU topics in it: {', '.join(imu_topics)}" if imu_topics else "; it has no IMU topic"
            raise BagError(f"topic {self.topic!r} is not in bag {self.path}{hint}")
        if topics[self.topic] != IMU_TYPE:
            _close(reader, self.path)
            raise BagError(f"topic {self.topic!r} in {self.path} has type {topics[self.topic]}, not {IMU_TYPE}")
        connections = [c for c in reader.connections if c.topic == self.topic]
        if any(message_count(c) is None for c in connections):  # a damaged metadata.yaml
            _close(reader, self.path)
            raise BagError(f"bag {self.path}: message counts {[c.msgcount for c in connections]!r} of {self.topic} "
                           "are not counts (corrupt?)")
        self._reader = reader
        self._connections = connections
        goal = self.topic.rsplit("/door/imu", 1)[0] + "/task/goal" if self.topic.endswith("/door/imu") else ""
        if self.episodes and goal and topics.get(goal) == GOAL_TYPE:
            self.goal_topic = goal
            self._goal_connections = [c for c in reader.connections if c.topic == goal]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._reader is not None:
            _close(self._reader, self.path)
            self._reader = None

    def ignore_episodes(self) -> None:
        """Read the IMU as one recording after all (no :data:`EPISODE_START`; :attr:`goal_topic` empty)."""
        self.goal_topic, self._goal_connections = "", []

    def info(self) -> ImuTopicInfo:
        """Topic name and message count of the opened bag."""
        return ImuTopicInfo(str(self.topic), sum(c.msgcount for c in self._connections))

    def samples(self) -> Iterator[ImuSample | None]:
        """IMU samples of the topic in recorded order, and :data:`EPISODE_START` where an episode starts when the
        bag was opened with ``episodes`` and has the goal topic.

        Raises:
            BagError: the data turned out corrupt while reading, or the bag ended before the message
                count its index promises (a damaged chunk that the reader skipped silently).
        """
        if self._reader is None:
            raise RuntimeError("ImuBag must be opened with 'with ImuBag(...) as bag:'")
        from async_naf.wire import layouts

        reader = self._reader
        expected = sum(c.msgcount for c in self._connections)
        count = 0
        self.episode_starts = self.bad_goals = 0
        episode: int | None = None  # the running episode (None: none)
        try:
            for connection, _timestamp, raw in reader.messages(connections=self._connections + self._goal_connections):
                if connection.topic == self.goal_topic:
                    try:
                        goal = layouts.decode_goal(layouts.array_msg_of(reader.deserialize(raw, connection.msgtype)))
                    except read_errors() + (layouts.LayoutError,):
                        self.bad_goals += 1
                        continue
                    if not goal.active:
                        episode = None
                    elif goal.episode != episode:  # a new episode (a re-published goal is not)
                        episode = goal.episode
                        self.episode_starts += 1
                        yield EPISODE_START
                    continue
                yield imu_msg_to_sample(reader.deserialize(raw, connection.msgtype))
                count += 1
        except GeneratorExit:
            raise
        except Exception as exc:  # a corrupt file can fail in any decoder; report, don't crash
            raise BagError(
                f"corrupt data in bag {self.path} after {count} of {expected} messages: {type(exc).__name__}: {exc}"
            ) from exc
        if count < expected:
            raise BagError(f"bag {self.path} ended after {count} of {expected} messages on {self.topic} (corrupt?)")


def write_imu_bag(
    path: str | Path,
    samples: Iterator[ImuSample] | list[ImuSample],
    topic: str = "/door/imu",
    storage: str = "mcap",
    frame_id: str = "door_imu_link",
    receive_ns: Sequence[int] | None = None,
) -> int:
    """Write IMU samples to a new rosbag2 bag (``storage``: 'mcap' or 'sqlite3'); returns the count.

    Receive times (the bag's order) equal the header stamps unless ``receive_ns`` gives one per sample (ns), as
    a recorder stamps what it receives: a stream whose header stamps go wrong keeps its place in the bag. Used
    by the tests and to turn simulated recordings into bags that ``async-naf door-angle`` (or ``ros2 bag
    play``) can read.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}.get(storage)
    if plugin is None:
        raise ValueError(f"storage must be 'mcap' or 'sqlite3', got {storage!r}")
    store = _typestore()
    Imu = store.types[IMU_TYPE]
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    Quaternion = store.types["geometry_msgs/msg/Quaternion"]
    Vector3 = store.types["geometry_msgs/msg/Vector3"]
    unknown = np.zeros(9)
    unknown[0] = -1.0
    count = 0
    with Writer(Path(path), version=9, storage_plugin=plugin) as writer:
        conn = writer.add_connection(topic, IMU_TYPE, typestore=store)
        for i, s in enumerate(samples):
            sec, nsec = divmod(int(s.stamp_ns), 1_000_000_000)
            g = np.asarray(s.gyro, dtype=float)
            a = np.asarray(s.accel, dtype=float)
            msg = Imu(
                header=Header(stamp=Time(sec=sec, nanosec=nsec), frame_id=frame_id),
                orientation=Quaternion(x=0.0, y=0.0, z=0.0, w=1.0),
                orientation_covariance=unknown.copy(),
                angular_velocity=Vector3(x=float(g[0]), y=float(g[1]), z=float(g[2])),
                angular_velocity_covariance=(
                    unknown.copy() if s.gyro_cov is None else np.asarray(s.gyro_cov, dtype=float).reshape(9)
                ),
                linear_acceleration=Vector3(x=float(a[0]), y=float(a[1]), z=float(a[2])),
                linear_acceleration_covariance=(
                    unknown.copy() if s.accel_cov is None else np.asarray(s.accel_cov, dtype=float).reshape(9)
                ),
            )
            t_ns = int(s.stamp_ns) if receive_ns is None else int(receive_ns[i])
            writer.write(conn, t_ns, store.serialize_cdr(msg, IMU_TYPE))
            count += 1
    return count
