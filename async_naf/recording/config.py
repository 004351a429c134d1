"""Configuration of the recorder node (``recorder``): which topics, with which types and QoS, into which bag."""
from __future__ import annotations

import math
from dataclasses import dataclass

from async_naf.common.checks import integers

STORAGES = ("mcap", "sqlite3")
# QoS profile names of async_naf.nodes._msgs (the wire's QoS per stream) the recorder subscribes with
QOS_PROFILES = ("sensor", "imu", "commands", "latched", "stream", "diagnostics", "clock")


TASK_KEY = "async_naf.task"  # metadata.yaml custom_data: the task of the run that recorded the bag


@dataclass
class RecorderConfig:
    """Parameters of the recorder node.

    Attributes:
        bag_path: directory of the new bag (must not exist yet; its parent is created).
        storage: ``mcap`` (default; what ``ros2 bag record`` writes on Jazzy) or ``sqlite3``.
        topics: absolute topic names to record (``/robot_0/joint_states``, ...).
        types: one ROS type per topic (``sensor_msgs/msg/JointState``), in the same order.
        qos: one QoS profile name per topic (``sensor``, ``imu``, ``commands``, ``latched``, ``stream``,
            ``diagnostics``, ``clock``): the profile the graph's publishers offer; the recorder subscribes
            compatibly with a deep queue and writes the profile into the bag's metadata.
        queue_depth: subscription queue depth per topic, messages (deep, so bursts are not lost).
        max_pending: messages waiting for the writer thread before new ones are dropped (counted), messages.
        max_pending_bytes: serialised bytes waiting for the writer thread before new messages are dropped
            (counted), bytes (a flood of 1 MB messages outran the writer and took 5 GB before this limit; a
            recorded 2-worker run writes a few MB/s, the writer here about 100 MB/s).
        drain_queue: each callback also takes further messages already waiting on that subscription, at most
            ``queue_depth`` more and none once 8 MiB were taken (much cheaper per message than one executor
            callback each: keeps up with bursts on a busy machine; bounded, so that under a flood the executor
            still runs the timers and a stop);
            false: one executor callback per message, as rclpy does by default.
        bundles: topics of composed robots' bundles (``/robot_0/recorder/bundle``,
            :mod:`async_naf.wire.record_bundle`): the recorder subscribes to them and writes each message
            they carry into the bag under its own topic (one of ``bundled``), with the time the robot published
            it as the receive time.
        bundled: topics of ``topics`` that come in bundles only: the recorder does not subscribe to them (a
            bundle message on any other topic is dropped, counted).
        bundle_linger_s: when the recorder stops, at most this long it still takes bundles, until no robot's
            bundle publisher is left (every robot of the run stops at once: a robot sends its last bundle from
            its shutdown), s; 0: close at once.
        task: the run's task, written into the bag's metadata.yaml (``custom_data``: ``async_naf.task``), so a
            bag copied out of its run directory still says which task it feeds; empty = not written.
    """

    bag_path: str = ""
    storage: str = "mcap"
    topics: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    qos: tuple[str, ...] = ()
    queue_depth: int = 1000
    max_pending: int = 200_000
    max_pending_bytes: int = 2**28
    drain_queue: bool = True
    bundles: tuple[str, ...] = ()
    bundled: tuple[str, ...] = ()
    bundle_linger_s: float = 3.0
    task: str = ""

    def __post_init__(self) -> None:
        if self.storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, got {self.storage!r}")
        self.topics, self.types, self.qos = tuple(self.topics), tuple(self.types), tuple(self.qos)
        if not (len(self.topics) == len(self.types) == len(self.qos)):
            raise ValueError(f"topics, types and qos must have the same length, got {len(self.topics)}, "
                             f"{len(self.types)}, {len(self.qos)}")
        if len(set(self.topics)) != len(self.topics):
            raise ValueError("topics must not repeat")
        for topic, typename, qos in zip(self.topics, self.types, self.qos):
            if not topic.startswith("/"):
                raise ValueError(f"topic names must be absolute, got {topic!r}")
            if typename.count("/") != 2:
                raise ValueError(f"{topic}: type must look like pkg/msg/Name, got {typename!r}")
            if qos not in QOS_PROFILES:
                raise ValueError(f"{topic}: unknown QoS profile {qos!r}; choose one of {QOS_PROFILES}")
        integers(self, ("queue_depth", "max_pending", "max_pending_bytes"), 1)
        self.bundles, self.bundled = tuple(self.bundles), tuple(self.bundled)
        if any(not t.startswith("/") for t in self.bundles) or len(set(self.bundles)) != len(self.bundles):
            raise ValueError(f"bundles must be distinct absolute topic names, got {self.bundles!r}")
        missing = sorted(set(self.bundled) - set(self.topics))
        if missing:
            raise ValueError(f"bundled topics must be recorded topics; not in topics: {missing}")
        if not (self.bundle_linger_s >= 0.0 and math.isfinite(self.bundle_linger_s)):
            raise ValueError(f"bundle_linger_s must be a finite number >= 0, got {self.bundle_linger_s}")
        if self.bundled and not self.bundles:
            raise ValueError("bundled topics need the bundles that carry them")
