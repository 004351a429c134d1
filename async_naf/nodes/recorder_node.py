"""Recorder node (``recorder``, one per run): the run's topics, raw, into one rosbag2 bag.

What ``ros2 bag record`` does, for a machine without a ROS install: one raw subscription per topic the graph
description names (serialised CDR bytes; nothing is deserialised), each with a QoS compatible with what the
graph's publishers offer and a deep queue; the bytes and their receive time go to
:class:`async_naf.recording.writer.BagWriter`, which writes MCAP (metadata version 9, offered QoS profiles,
type hashes) from a thread of its own. The bag is closed (metadata.yaml written) when the node stops.

The receive time is the middleware's reception time of the sample (message info ``received_timestamp``,
system clock, as ``ros2 bag record`` stores it), not the time the callback ran: callbacks of different
topics run in the executor's order, so callback times could put a command after the joint state it caused
(a lockstep simulation steps within a millisecond of the command), which the raw conversion
(``async-naf bag convert --method raw``) pairs by receive time. Without a reception time (0, or more than
``RECEIVED_SANITY_S`` away from the wall clock) the callback's wall-clock time is used. With ``drain_queue``
(default) a callback also takes further messages waiting on its subscription (``take_message`` in a loop, at
most ``queue_depth`` and ``DRAIN_MAX_BYTES``: under a flood the executor must still get to the timers and to a
stop), which costs far less per message than an executor task each. What DDS reports lost on a subscription
(its ``message_lost`` event: samples the reader never completed, such as a best-effort sample or fragment
missed, or one the publisher overwrote before the reader had it) is counted per topic (``lost_in_dds``, in
``/diagnostics`` and the closing log line). Fast DDS does not report a sample overwritten in the recorder's
own keep-last queue (``queue_depth``) while the executor is behind: such a loss shows only as a gap in the bag
(``async-naf bag info``; the policy's step indices, ``gap`` drops of the exact conversion). What was taken but
could not be queued or written is counted as ``dropped`` (``max_pending`` messages or ``max_pending_bytes``
waiting for the writer).

Readiness: a best-effort publisher sends only to readers it has matched, and the graph can show the
recorder's subscriptions before the matching is done. Every ``READY_POLL_S`` until every robot namespace is
ready, the node compares each subscription's matched publishers with the graph's
(:mod:`async_naf.recording.ready`) and publishes the ready namespaces on ``~/ready`` when they change; a
recorded run's collectors start their first episode only once their namespace is named there. Once every
namespace is ready it re-publishes that message every ``READY_REFRESH_S``: the message is latched, but a
collector that misses the one sample (seen in 2 of 13 netns partition runs: a robot waited for
ever) must not depend on it. Only publishers of the recorded type count (one of another type never matches);
such a publisher is logged once as a warning and counted (``other_type_publishers``, a WARN on
``/diagnostics``: its messages are not in the bag), and the topics that still hold a robot back
``READY_WARN_S`` after the start are logged once.

Bundles: the topics in ``bundled`` are not subscribed to. A composed robot's collector taps them on the
robot's bus and sends them in bundles (:mod:`async_naf.wire.record_bundle`) on the topics in ``bundles``;
each message of a bundle is written under its own topic with the time the robot published it (a bundle is
checked and written whole, without Python per message: ``BagWriter.put_bundle``). A robot is
ready once its bundle's publisher is matched (and its other topics as above). A robot sends its last bundle
when it stops, which in a run is when the recorder stops: before closing the bag the recorder still takes
bundles until no robot's bundle publisher is matched, at most ``bundle_linger_s``.

Topics: those in the ``topics`` parameter (types in ``types``, QoS profile names in ``qos``).
  sub <robot>/recorder/bundle  std_msgs/UInt8MultiArray  reliable, ``queue_depth`` (async_naf.record_bundle.v2)
  pub /diagnostics   diagnostic_msgs/DiagnosticArray   received / written / dropped, per run and per topic
  pub ~/ready        std_msgs/String                   reliable + transient local (async_naf.recorder_ready.v1)
"""
from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String, UInt8MultiArray

from async_naf.common.publishers import UNNAMED, node_fqn
from async_naf.nodes import _msgs
from async_naf.nodes._params import declare_from_dataclass, node_only
from async_naf.recording.config import TASK_KEY, RecorderConfig
from async_naf.recording.ready import ready_namespaces, topic_namespace, waiting_topics
from async_naf.recording.writer import BagWriter, TopicSpec, qos_dict
from async_naf.wire.record_bundle import bundle_data, decode_bundle_records
from async_naf.wire.recorder import encode_ready

RECEIVED_SANITY_S = 10.0  # a reception time further than this from the wall clock is not trusted, s
READY_POLL_S = 0.02  # how often the matching is compared with the graph until every robot is ready, s
READY_REFRESH_S = 1.0  # then the readiness message is re-published this often, s
READY_WARN_S = 10.0  # a robot not ready this long after the start: the topics holding it back are logged, s
BUNDLE_TYPE = "std_msgs/msg/UInt8MultiArray"  # what a robot's recorder/bundle carries
RECORD_SPREAD_MAX_S = 60.0  # a bundled message received this far from its bundle's median time is corrupt, s
DRAIN_MAX_BYTES = 8 * 2**20  # a callback takes no further message once it took this many bytes (drain_queue)
LINGER_POLL_S = 0.01  # at stop, how often the last bundles are taken while robots still publish (bundle_linger_s), s


def _message_class(typename: str) -> type:
    """``sensor_msgs/msg/JointState`` -> the generated class (ValueError if the package is not installed)."""
    package, kind, name = typename.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot record {typename}: {exc}") from exc


def _subscription_qos(settings: dict, depth: int) -> QoSProfile:
    """Compatible with the offered profile (same reliability and durability), with a deep queue."""
    return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST,
                      reliability=(ReliabilityPolicy.RELIABLE if settings["reliability"] == "reliable"
                                   else ReliabilityPolicy.BEST_EFFORT),
                      durability=(DurabilityPolicy.TRANSIENT_LOCAL if settings["durability"] == "transient_local"
                                  else DurabilityPolicy.VOLATILE))


def _received(info: Any, now_ns: int) -> int:
    """The middleware's reception time of a message (message info ``received_timestamp``, ns), or ``now_ns``
    where it has none or one further than ``RECEIVED_SANITY_S`` from it."""
    received = int(info.get("received_timestamp", 0) or 0) if isinstance(info, dict) else 0
    return received if received and abs(received - now_ns) <= RECEIVED_SANITY_S * 1e9 else now_ns


def _waiting(sub: Any, limit: int, max_bytes: int = DRAIN_MAX_BYTES) -> Iterator[tuple[bytes, dict]]:
    """What else waits on the raw subscription ``sub`` (data, message info), taken here without one executor
    task each: at most ``limit`` messages, and none after ``max_bytes`` were taken (bounded: a flood never empties
    the queue, and the executor must get back to its timers and to a stop)."""
    taken_bytes = 0
    for _ in range(limit):
        if taken_bytes >= max_bytes:
            return
        with sub.handle:
            taken = sub.handle.take_message(sub.msg_type, True)
        if taken is None:
            return
        taken_bytes += len(taken[0])
        yield taken[0], taken[1]


class RecorderNode(Node):
    """See the module docstring."""

    def __init__(self) -> None:
        super().__init__("recorder")
        self.cfg: RecorderConfig = declare_from_dataclass(self, RecorderConfig)
        diag_period = node_only(self, "diagnostics_period_s", 1.0)
        if not self.cfg.bag_path:
            raise ValueError("bag_path must be set")
        classes = [_message_class(t) for t in self.cfg.types]
        specs = [TopicSpec(topic, typename, qos_dict(q))
                 for topic, typename, q in zip(self.cfg.topics, self.cfg.types, self.cfg.qos)]
        self.writer = BagWriter(self.cfg.bag_path, specs, self.cfg.storage, self.cfg.max_pending,
                                max_pending_bytes=self.cfg.max_pending_bytes,
                                custom_data={TASK_KEY: self.cfg.task} if self.cfg.task else None)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.lost_in_dds: dict[str, int] = {}  # per topic: what DDS reports lost before the recorder took it
        bundled = set(self.cfg.bundled)
        self._index = {spec.name: index for index, spec in enumerate(specs) if spec.name in bundled}
        self._subs = {index: self.create_subscription(
            cls, spec.name, partial(self._on_message, index), _subscription_qos(spec.qos, self.cfg.queue_depth),
            raw=True, event_callbacks=self._events(spec.name))
            for index, (spec, cls) in enumerate(zip(specs, classes)) if spec.name not in bundled}
        # composed robots' bundles (async_naf.wire.record_bundle): one subscription per robot for its tapped topics
        bundle_qos = QoSProfile(depth=self.cfg.queue_depth, history=HistoryPolicy.KEEP_LAST,
                                reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
        self._bundle_subs = {topic_namespace(topic): self.create_subscription(
            UInt8MultiArray, topic, partial(self._on_bundle, i), bundle_qos, raw=True,
            event_callbacks=self._events(topic))
            for i, topic in enumerate(self.cfg.bundles)}
        self.bundle_drops: dict[str, int] = {}
        self._other_types: set[tuple[str, str]] = set()  # (topic, type) of publishers not recorded, warned once
        self._started = time.monotonic()
        self._warned_waiting = False
        self.create_timer(diag_period, self._publish_diagnostics, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._ready_pub = self.create_publisher(String, "~/ready", _msgs.LATCHED)
        self._namespaces = {topic_namespace(spec.name) for spec in specs} - {""}
        self._ready: list[str] | None = None
        self._ready_timer = self.create_timer(READY_POLL_S, self._check_ready,
                                              clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(f"recording {len(specs)} topics into {self.cfg.bag_path} ({self.cfg.storage})")

    def _events(self, topic: str) -> SubscriptionEventCallbacks:
        """A subscription's event callbacks: DDS's lost messages counted per topic (rclpy's defaults beside)."""
        def lost(info: Any) -> None:
            n = self.lost_in_dds[topic] = self.lost_in_dds.get(topic, 0) + int(info.total_count_change)
            if n.bit_length() > (n - int(info.total_count_change)).bit_length():  # the 1st, 2nd, 4th, ...
                self.get_logger().warning(f"{topic}: {n} message(s) lost before the recorder took them (DDS)")
        return SubscriptionEventCallbacks(message_lost=lost)

    def _on_message(self, index: int, data: bytes, info: dict) -> None:
        now = time.time_ns()
        messages = [(index, _received(info, now), data)]
        if self.cfg.drain_queue:
            messages += [(index, _received(taken_info, now), taken)
                         for taken, taken_info in _waiting(self._subs[index], self.cfg.queue_depth)]
        self.writer.put_many(messages)  # one queue entry for what this callback took

    def _on_bundle(self, i: int, data: bytes, info: dict) -> None:
        self._put_bundle(data)
        sub = self._bundle_subs[topic_namespace(self.cfg.bundles[i])]
        for taken, _ in _waiting(sub, self.cfg.queue_depth):  # as drain_queue does
            self._put_bundle(taken)

    def _put_bundle(self, data: bytes) -> None:
        """Every message of one bundle into the bag, under its own topic, at the time the robot published it."""
        try:
            bundle = decode_bundle_records(bundle_data(data))
        except ValueError as exc:
            self._drop_bundle("malformed", f"malformed bundle dropped: {exc}")
            return
        keep = None
        if bundle.stamps.size:  # a bundle holds at most a few seconds: a record far from its median is corrupt
            stamps = bundle.stamps.astype(np.float64)  # (uint64 differences would wrap)
            near = np.abs(stamps - np.median(stamps)) <= RECORD_SPREAD_MAX_S * 1e9
            if not near.all():
                keep = near
                self._drop_bundle("record_time", "bundled message(s) dropped: receive times far from the rest of "
                                  f"their bundle (more than {RECORD_SPREAD_MAX_S:.0f} s)", int((~near).sum()))
        for topic, n in self.writer.put_bundle(bundle, self._index, keep).items():
            self._drop_bundle("other_topic", f"bundled message(s) of {topic} dropped: not a bundled topic", n)

    def _take_last_bundles(self) -> None:
        """Until no bundle publisher is matched (each robot sent its last bundle and went), at most
        ``bundle_linger_s``: take what arrives on the bundle subscriptions (the executor no longer spins)."""
        deadline = time.monotonic() + self.cfg.bundle_linger_s
        robots = sum(1 for sub in self._bundle_subs.values() if sub.get_publisher_count() > 0)
        if robots and self.cfg.bundle_linger_s > 0:
            self.get_logger().info(f"stopping: taking the last bundles of {robots} robot(s), "
                                   f"at most {self.cfg.bundle_linger_s:.1f} s")
        while True:
            gone = all(sub.get_publisher_count() == 0 for sub in self._bundle_subs.values())
            took = 0
            for sub in self._bundle_subs.values():
                for taken, _ in _waiting(sub, self.cfg.queue_depth):  # bounded per pass; passes until empty
                    self._put_bundle(taken)
                    took += 1
            # every robot gone: until a pass finds nothing (their queues are finite); else until the deadline
            if (gone and not took) or (not gone and time.monotonic() >= deadline):
                break
            if not took:
                time.sleep(LINGER_POLL_S)
        if not gone:
            self.get_logger().warning(f"bag closed with a robot's bundle publisher still matched after "
                                      f"{self.cfg.bundle_linger_s:.1f} s: its last bundle may be missing")

    def _drop_bundle(self, reason: str, text: str, count: int = 1) -> None:
        before = self.bundle_drops.get(reason, 0)
        n = self.bundle_drops[reason] = before + count
        if n.bit_length() > before.bit_length():  # past the 1st, 2nd, 4th, ... of a reason
            self.get_logger().warning(f"{text} ({n} so far)")

    def _check_ready(self) -> None:
        """Publish the robot namespaces whose publishers are all matched, when that changes; stop polling once
        every namespace is ready."""
        topics, matched, in_graph = [], [], []
        bundles: dict[str, tuple[int, int]] = {}
        for index, spec in enumerate(self.writer.topics):
            sub = self._subs.get(index)
            if sub is None:  # bundled: what counts is the bundle of its robot (asked once per poll)
                ns = topic_namespace(spec.name)
                bundle = self._bundle_subs.get(ns)
                if bundle is None:
                    count, graph = 0, 1
                else:
                    if ns not in bundles:
                        n = bundle.get_publisher_count()
                        bundles[ns] = n, max(1, self._graph_publishers(bundle.topic_name, BUNDLE_TYPE, n))
                    count, graph = bundles[ns]
            else:
                count = sub.get_publisher_count()
                graph = self._graph_publishers(spec.name, spec.type, count)
            topics.append(spec.name)
            matched.append(count)
            in_graph.append(graph)
        ready = ready_namespaces(topics, matched, in_graph)
        if not self._warned_waiting and time.monotonic() - self._started > READY_WARN_S:
            self._warned_waiting = True
            counts = dict(zip(topics, zip(matched, in_graph)))
            for ns, held in waiting_topics(topics, matched, in_graph).items():
                what = ", ".join(f"{t} (publishers matched {counts[t][0]} of {counts[t][1]} in the graph)"
                                 for t in held)
                self.get_logger().warning(f"{ns} not ready after {READY_WARN_S:.0f} s (its first episode waits): "
                                          f"{what}")
        if ready != self._ready:
            self._ready = ready
            self._ready_pub.publish(String(data=encode_ready(ready)))
            self.get_logger().info(f"publishers matched for: {' '.join(ready) or 'no robot yet'}")
        if set(ready) >= self._namespaces:
            self._ready_timer.cancel()
            self._ready_timer = self.create_timer(READY_REFRESH_S, self._refresh_ready,
                                                  clock=Clock(clock_type=ClockType.STEADY_TIME))

    def _graph_publishers(self, topic: str, typename: str, matched: int) -> int:
        """The publishers of ``typename`` the graph shows on ``topic``: ``count_publishers`` (0.06 ms for 18
        topics) where it is no more than the ``matched`` ones, else :meth:`_publishers_of` (0.3 ms)."""
        graph = self.count_publishers(topic)
        return graph if graph <= matched else self._publishers_of(topic, typename)

    def _publishers_of(self, topic: str, typename: str) -> int:
        """Publishers of ``typename`` the graph shows on ``topic``; one of another type (never matched, never
        recorded) is logged once and counted."""
        count = 0
        for info in self.get_publishers_info_by_topic(topic):
            if info.topic_type == typename:
                count += 1
            elif (topic, info.topic_type) not in self._other_types:
                self._other_types.add((topic, info.topic_type))
                node = node_fqn(info.node_name, info.node_namespace)
                by = "" if node == UNNAMED else f" ({node})"
                self.get_logger().warning(f"{topic}: a publisher of {info.topic_type}{by} is not recorded: the bag "
                                          f"records {typename} there")
        return count

    def _refresh_ready(self) -> None:
        """Every namespace is ready: say so again (for a collector that missed the latched sample), and warn of
        a publisher of another type that came since (0.3 ms for 18 topics)."""
        self._ready_pub.publish(String(data=encode_ready(self._ready or [])))
        for index in self._subs:
            self._publishers_of(self.writer.topics[index].name, self.writer.topics[index].type)
        for sub in self._bundle_subs.values():
            self._publishers_of(sub.topic_name, BUNDLE_TYPE)

    def _publish_diagnostics(self) -> None:
        w = self.writer
        values = dict(w.stats())
        values.update({f"dropped {spec.name}": n for spec, n in zip(w.topics, w.dropped) if n})
        values.update({f"dropped bundle:{reason}": n for reason, n in self.bundle_drops.items()})
        values["lost_in_dds"] = sum(self.lost_in_dds.values())
        values.update({f"lost_in_dds {topic}": n for topic, n in self.lost_in_dds.items()})
        values["other_type_publishers"] = len(self._other_types)
        dropped = (values["dropped"] or any(self.bundle_drops.values()) or values["lost_in_dds"]
                   or self._other_types)
        status = DiagnosticStatus(level=DiagnosticStatus.WARN if w.error or dropped else DiagnosticStatus.OK,
                                  name=self.get_fully_qualified_name(), message=w.error or "recording",
                                  hardware_id=self.cfg.bag_path,
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)

    def shutdown_hook(self) -> None:
        """Process exit: take the robots' last bundles (``bundle_linger_s``), write what is queued and close
        the bag."""
        self._take_last_bundles()
        self.writer.close()
        stats = self.writer.stats()
        dropped = int(stats["dropped"]) + sum(self.bundle_drops.values())  # not written, for whatever reason
        lost = sum(self.lost_in_dds.values())
        self.get_logger().info(f"bag closed: {stats['written']} messages written, {dropped} dropped"
                               + (f", {lost} lost before the recorder (DDS)" if lost else ""))


def main(args: list[str] | None = None) -> int:
    """Entry point (``recorder_node`` console script / ``python -m async_naf.nodes.recorder_node``)."""
    from async_naf.nodes._main import run_node

    # SingleThreadedExecutor: Jazzy's EventsExecutor raises SystemError ("null argument to internal routine")
    # on the first message of a subscription whose callback takes the message info (raw or not), and the
    # recorder needs the reception time
    return run_node(RecorderNode, "recorder", args)


if __name__ == "__main__":
    sys.exit(main())
