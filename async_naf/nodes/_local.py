"""Intra-process delivery between the nodes of a composed robot (``composition: robot``).

rclcpp's component containers deliver messages between nodes of one process without serialising them
(``use_intra_process_comms``) and still publish to DDS for subscribers in other processes; rclpy has no such
thing, so every message between a robot's four nodes was serialised, written to DDS, taken and deserialised
again: about half of a composed robot's CPU (docs/benchmarks.md, "Graph overhead"). This module is that
mechanism for rclpy, used by the nodes for the robot's own streams (joint states, door IMU, door state,
commands, policy steps, goals, ground truth):

- :func:`create_publisher` / :func:`create_subscription` return plain rclpy entities when no bus is
  installed (a node in a process of its own: nothing changes). In a composed robot the container installs a
  :class:`LocalBus` before it builds the nodes.
- A message published on a topic with subscribers of the same message type in this process is handed to
  them as the very Python object (publishers here always build a new message per publish and never touch it
  again), queued per subscription with the subscription's KEEP_LAST depth, and delivered by a task on the
  process's executor, never inside ``publish``: callbacks run one at a time, in publication order, as DDS
  would run them.
- It is still published to DDS when a subscriber outside the process is matched (a recorder, ``ros2 topic
  echo``, a ros2_control controller), and always on transient-local topics (late joiners get the latched
  value), so nothing outside the process can tell the difference: same topics, types and QoS.
- A subscription whose topic has a publisher in this process takes its messages from the bus only (no DDS
  reader, so no duplicates); one whose topic has none (``/trainer/weights``, a real arm's ``joint_states``)
  keeps its DDS reader. A publisher created later moves the topic's subscriptions onto the bus.

- **Type adaptation** (what REP 2007 gives rclcpp: ``rclcpp::TypeAdapter``): a publisher or subscription
  created with a :class:`TypeAdapter` speaks a custom in-process type (an ``ImuSample``, a ``PolicyStep``)
  instead of the ROS message. Between an adapted publisher and a subscription with the same adapter class
  the value itself is handed over (no message is built or read); every other reader gets the ROS message,
  built once per publish by ``adapter.to_ros`` (DDS, unadapted local subscriptions), and an adapted
  subscription fed a ROS message (over DDS, or from an unadapted publisher) gets ``adapter.from_ros(msg)``;
  a message it cannot convert (``ValueError``) goes to the subscription's ``on_invalid`` instead of its
  callback. Without a bus the same calls convert on every publish and receive, so a node's code is the same
  in every layout.

An exception in a callback delivered by the bus is kept and re-raised by :meth:`LocalBus.raise_pending` in
the container's spin loop (rclpy's EventsExecutor would crash the process on an exception inside a task).
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile

# rounds of delivery per executor task: a round delivers what was queued before it, so the messages a callback
# publishes go out in the next round of the same task (fewer executor wake-ups), up to this many rounds and
# while the task has run less than DRAIN_BUDGET_S (wall time): then it yields, so the executor's timers and
# DDS callbacks wait at most about that long behind a lockstep robot's never-ending cycle. Each return to the
# executor cost a composed robot about 60 us of CPU (docs/benchmarks.md, "Sixth round")
DRAIN_ROUNDS = 64
DRAIN_BUDGET_S = 0.005
TAP_MAX_BYTES = 262_144  # a recorded run's tap sends a bundle once this many bytes are collected ...
TAP_MAX_AGE_S = 0.1  # ... or its oldest message is this old, s
TAP_HOLD_MAX_BYTES = 64 * 1024 * 1024  # until the recorder is matched the tap holds at most this much, bytes
_BUS: LocalBus | None = None


class TypeAdapter(Protocol):
    """A custom in-process type for one ROS message type (REP 2007's ``rclcpp::TypeAdapter``, for rclpy).

    Adapters of one class must convert alike: the bus hands a value from an adapted publisher to a
    subscription whose adapter has the same class without converting it.
    """

    ros_type: type

    def to_ros(self, value: Any) -> Any:
        """The ROS message for ``value`` (a new message each call)."""

    def from_ros(self, msg: Any) -> Any:
        """The value for a received ROS message; raises ``ValueError`` if it cannot be converted."""

    # optional: ``to_cdr(value) -> bytes``, the exact CDR of ``to_ros(value)`` (RecordTap uses it when present)


def _same_kind(a: TypeAdapter | None, b: TypeAdapter | None) -> bool:
    return a is not None and b is not None and type(a) is type(b)


class AdaptedPublisher:
    """An rclpy publisher that takes an adapter's values (a node in a process of its own: no bus)."""

    def __init__(self, ros: Any, adapter: TypeAdapter) -> None:
        self.ros = ros
        self.adapter = adapter

    @property
    def topic_name(self) -> str:
        return str(self.ros.topic_name)

    def get_subscription_count(self) -> int:
        return int(self.ros.get_subscription_count())

    def publish(self, value: Any) -> None:
        self.ros.publish(self.adapter.to_ros(value))

    def wait_for_all_acked(self, timeout: Any) -> bool:
        return bool(self.ros.wait_for_all_acked(timeout))


def adapted_callback(adapter: TypeAdapter, callback: Callable[[Any], None],
                     on_invalid: Callable[[ValueError], None] | None) -> Callable[[Any], None]:
    """A message callback that converts with ``adapter.from_ros`` and calls ``callback`` with the value (a
    message it cannot convert goes to ``on_invalid``; without one the ``ValueError`` propagates)."""
    def receive(msg: Any) -> None:
        try:
            value = adapter.from_ros(msg)
        except ValueError as exc:
            if on_invalid is None:
                raise
            on_invalid(exc)
            return
        callback(value)
    return receive


def install(bus: LocalBus | None) -> None:
    """Make ``bus`` the process's bus for nodes created from now on (``None``: plain rclpy entities)."""
    global _BUS
    _BUS = bus


def current() -> LocalBus | None:
    """The process's bus, or None outside a composed robot."""
    return _BUS


class LocalPublisher:
    """An rclpy publisher whose messages also reach this process's subscriptions through the bus."""

    def __init__(self, bus: LocalBus, ros: Any, key: tuple[str, type], latched: bool,
                 adapter: TypeAdapter | None = None) -> None:
        self.ros = ros
        self.key = key
        self.adapter = adapter
        self._bus = bus
        self._latched = latched
        # an adapter's own CDR encoder (optional: ``to_cdr(value) -> bytes``, the exact CDR of ``to_ros(value)``)
        self._to_cdr: Callable[[Any], bytes] | None = getattr(adapter, "to_cdr", None)
        self.published_local = 0  # messages handed to subscriptions in this process
        self.published_dds = 0  # messages also written to DDS (a subscriber elsewhere, or latched)

    @property
    def topic_name(self) -> str:
        return str(self.ros.topic_name)

    def get_subscription_count(self) -> int:
        """Subscriptions matched over DDS plus those of this process on the bus (the recorder's tap counts
        as one)."""
        return (int(self.ros.get_subscription_count()) + self._bus.local_subscriptions(self.key)
                + self._bus.tapped(self.key[0]))

    def publish(self, msg: Any) -> None:
        """Queue ``msg`` (the adapter's value for an adapted publisher) for this process's subscriptions;
        hand it to the recorder's tap if its topic is tapped; write it to DDS if anyone else listens."""
        bus = self._bus
        if bus.deliver(self.key, msg, self.adapter):
            self.published_local += 1
        self.record(msg)
        if self._latched or self.ros.get_subscription_count() > 0:
            self.ros.publish(msg if self.adapter is None else bus.as_ros(msg, self.adapter))
            self.published_dds += 1

    def record(self, msg: Any) -> None:
        """Hand ``msg`` to the recorder's tap if this topic is tapped (else nothing). :meth:`publish` does;
        alone it is for a message this process's subscriptions skip but the bag keeps (a coalesced estimate)."""
        tap = self._bus.tap
        if tap is not None and self.key[0] in tap.index:
            if self._to_cdr is not None:  # the adapter encodes its value itself: no message object
                tap.add_cdr(self.key[0], self._to_cdr(msg))
            else:
                tap.add(self.key[0], msg if self.adapter is None else self._bus.as_ros(msg, self.adapter))

    def wait_for_all_acked(self, timeout: Any) -> bool:
        """What was written to DDS acknowledged (``Publisher.wait_for_all_acked``); the bus needs none."""
        return bool(self.ros.wait_for_all_acked(timeout))

    def destroy(self, node: Any) -> None:
        self._bus.remove_publisher(self)
        node.destroy_publisher(self.ros)


class LocalSubscription:
    """A subscription fed by the bus while its topic has a publisher in this process, else by DDS."""

    def __init__(self, bus: LocalBus, node: Any, key: tuple[str, type], callback: Callable[[Any], None],
                 qos: QoSProfile, adapter: TypeAdapter | None = None,
                 on_invalid: Callable[[ValueError], None] | None = None) -> None:
        self.key = key
        self.callback = callback
        self.adapter = adapter
        # what a ROS message goes to (from DDS, or from an unadapted publisher here): converted if adapted
        self.on_message = callback if adapter is None else adapted_callback(adapter, callback, on_invalid)
        self.node = node
        self.qos = qos
        depth = int(qos.depth) if qos.history == HistoryPolicy.KEEP_LAST else 0
        # (payload, is_value): an adapter's value, or a ROS message (converted on delivery if adapted)
        self.queue: deque[tuple[Any, bool]] = deque(maxlen=depth if depth > 0 else None)
        self.ros: Any = None  # the DDS reader while the topic has no publisher here
        self.overwritten = 0  # messages dropped by the KEEP_LAST depth before delivery
        self._bus = bus

    @property
    def topic_name(self) -> str:
        return self.key[0]

    def receive(self, payload: Any, is_value: bool) -> None:
        """Run the callback on one queued payload (converting a ROS message for an adapted subscription)."""
        (self.callback if is_value else self.on_message)(payload)

    def destroy(self, node: Any) -> None:
        self._bus.remove_subscription(self)
        if self.ros is not None:
            node.destroy_subscription(self.ros)
            self.ros = None


class LocalBus:
    """The queues and the delivery task of one process (see the module docstring)."""

    def __init__(self) -> None:
        self._pubs: dict[tuple[str, type], list[LocalPublisher]] = {}
        self._subs: dict[tuple[str, type], list[LocalSubscription]] = {}
        self._order: deque[LocalSubscription] = deque()  # one entry per queued message, publication order
        self._executor: Any = None
        self._scheduled = False
        self._error: BaseException | None = None
        self._last_ros: tuple[Any, TypeAdapter, Any] | None = None
        self.tap: RecordTap | None = None  # a recorded run's tap (see RecordTap)

    def set_tap(self, tap: RecordTap | None) -> None:
        """Hand every message published here on ``tap``'s topics to it (None: no tap)."""
        self.tap = tap

    def tapped(self, topic: str) -> int:
        """1 if ``topic``'s messages go to the recorder's tap, else 0."""
        return int(self.tap is not None and topic in self.tap.index)

    # ------------------------------------------------------------------------------ wiring
    def add_publisher(self, node: Any, msg_type: type, topic: str, qos: QoSProfile,
                      adapter: TypeAdapter | None = None) -> LocalPublisher:
        ros = node.create_publisher(msg_type, topic, qos)
        key = (str(ros.topic_name), msg_type)
        pub = LocalPublisher(self, ros, key, latched=qos.durability == DurabilityPolicy.TRANSIENT_LOCAL,
                             adapter=adapter)
        self._pubs.setdefault(key, []).append(pub)
        self._rewire(key)
        return pub

    def add_subscription(self, node: Any, msg_type: type, topic: str, callback: Callable[[Any], None],
                         qos: QoSProfile, adapter: TypeAdapter | None = None,
                         on_invalid: Callable[[ValueError], None] | None = None) -> LocalSubscription:
        key = (node.resolve_topic_name(topic), msg_type)
        sub = LocalSubscription(self, node, key, callback, qos, adapter, on_invalid)
        self._subs.setdefault(key, []).append(sub)
        self._rewire(key)
        return sub

    def remove_publisher(self, pub: LocalPublisher) -> None:
        pubs = self._pubs.get(pub.key, [])
        if pub in pubs:
            pubs.remove(pub)
        self._rewire(pub.key)

    def remove_subscription(self, sub: LocalSubscription) -> None:
        subs = self._subs.get(sub.key, [])
        if sub in subs:
            subs.remove(sub)
        sub.queue.clear()

    def local_subscriptions(self, key: tuple[str, type]) -> int:
        """Subscriptions of this process fed by the bus on ``key``."""
        return sum(1 for s in self._subs.get(key, []) if s.ros is None)

    def _rewire(self, key: tuple[str, type]) -> None:
        """Subscriptions of a topic with a local publisher read the bus only; the others read DDS."""
        local = bool(self._pubs.get(key))
        for sub in self._subs.get(key, []):
            if local and sub.ros is not None:
                sub.node.destroy_subscription(sub.ros)
                sub.ros = None
            elif not local and sub.ros is None:
                sub.ros = sub.node.create_subscription(key[1], key[0], sub.on_message, sub.qos)

    # ------------------------------------------------------------------------------ delivery
    def attach(self, executor: Any) -> None:
        """The executor whose thread delivers (the container's, once its nodes are built)."""
        self._executor = executor
        if self._order:
            self._schedule()

    def deliver(self, key: tuple[str, type], msg: Any, adapter: TypeAdapter | None = None) -> bool:
        """Queue ``msg`` (``adapter``'s value if given) for the bus-fed subscriptions on ``key``; True if there
        was one. A subscription with an adapter of the same class gets the value, any other the ROS message
        (built once)."""
        queued = False
        ros_msg = None
        for sub in self._subs.get(key, ()):
            if sub.ros is not None:
                continue
            if sub.queue.maxlen is not None and len(sub.queue) == sub.queue.maxlen:
                sub.overwritten += 1
            if adapter is None:
                sub.queue.append((msg, False))
            elif _same_kind(adapter, sub.adapter):
                sub.queue.append((msg, True))
            else:
                if ros_msg is None:
                    ros_msg = self.as_ros(msg, adapter)
                sub.queue.append((ros_msg, False))
            self._order.append(sub)
            queued = True
        if queued:
            self._schedule()
        return queued

    def as_ros(self, value: Any, adapter: TypeAdapter) -> Any:
        """``adapter.to_ros(value)``, built once per published value (the last one is remembered: a publish
        that goes both to this process and to DDS converts once)."""
        last = self._last_ros
        if last is not None and last[0] is value and last[1] is adapter:
            return last[2]
        msg = adapter.to_ros(value)
        self._last_ros = (value, adapter, msg)
        return msg

    def _schedule(self) -> None:
        if not self._scheduled and self._executor is not None and self._error is None:
            self._scheduled = True
            self._executor.create_task(self._drain)

    def _drain(self) -> None:
        """Deliver the messages queued so far, then those their callbacks published, for at most
        ``DRAIN_ROUNDS`` rounds and ``DRAIN_BUDGET_S`` (a round begun is finished); what is left waits for
        the next task, so timers and DDS callbacks run in between (a lockstep robot's messages go round in a
        cycle that never empties the queue)."""
        deadline = time.monotonic() + DRAIN_BUDGET_S
        try:
            for _ in range(DRAIN_ROUNDS):
                for _ in range(len(self._order)):
                    sub = self._order.popleft()
                    if sub.queue:  # empty: its oldest message was overwritten (KEEP_LAST) or it was destroyed
                        payload, is_value = sub.queue.popleft()
                        sub.receive(payload, is_value)
                if not self._order or time.monotonic() >= deadline:
                    break
        except BaseException as exc:  # noqa: BLE001 - re-raised by raise_pending in the spin loop
            self._error = exc  # and nothing more is scheduled (_schedule) until it is raised
        finally:
            self._scheduled = False
        if self.tap is not None:
            self.tap.poll()  # what these rounds published, to the recorder once enough is collected
        if self._order:
            self._schedule()

    def raise_pending(self) -> None:
        """Re-raise an exception a bus-delivered callback raised (call after each ``spin_once``)."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error


class RecordTap:
    """A recorded run's tap on a composed robot's bus (:mod:`async_naf.wire.record_bundle`).

    The recorder does not subscribe to the topics tapped here: each message published on them in this process
    is serialised (the CDR ``ros2 bag record`` stores) with the time it was published, and what was collected
    goes to the recorder as one bundle on ``publisher``'s topic, instead of one DDS message per message.
    :meth:`poll` (after each of the bus's delivery rounds, and from the collector's timer) sends a bundle once
    ``max_bytes`` are collected or the oldest message is ``max_age_s`` old; :meth:`flush` sends what there is
    and :meth:`close` (the collector's shutdown) also waits until the recorder has it. A DDS publish took
    160-230 us for 1.5-250 kB here (docs/benchmarks.md, "Recording"), so bundles are few and large.

    Args:
        topics: absolute names of the tapped topics.
        publisher: an rclpy publisher of ``std_msgs/UInt8MultiArray`` (the bundle is published as raw CDR).
        max_bytes: serialised bytes collected that make :meth:`poll` send a bundle.
        max_age_s: age of the oldest collected message that makes :meth:`poll` send a bundle, s (wall clock).

    Raises:
        ValueError: ``max_bytes`` or ``max_age_s`` not positive.
    """

    def __init__(self, topics: tuple[str, ...] | list[str], publisher: Any, max_bytes: int = TAP_MAX_BYTES,
                 max_age_s: float = TAP_MAX_AGE_S) -> None:
        from rclpy.serialization import serialize_message
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import Imu, JointState
        from std_msgs.msg import Float64MultiArray

        from async_naf.wire.record_bundle import (
            canonical_imu,
            canonical_joint_state,
            canonical_multiarray,
            clock_cdr,
            encode_bundle,
            encode_topics,
        )

        self.index = {topic: i for i, topic in enumerate(topics)}
        self._table = encode_topics(list(topics))
        self._publisher = publisher
        self._serialize, self._encode = serialize_message, encode_bundle
        # rmw's serialize_message leaves padding uninitialised and pads an empty float64 sequence at the end:
        # the types with padding get the exact CDR a DDS reader (ros2 bag record) stores, which rosbags reads
        self._canonical: dict[type, Callable[[bytes], bytes]] = {
            JointState: canonical_joint_state, Float64MultiArray: canonical_multiarray, Imu: canonical_imu}
        # a lockstep robot's clock, once per step: its CDR straight from the message, without rmw
        self._direct: dict[type, Callable[[Any], bytes]] = {Clock: lambda m: clock_cdr(m.clock.sec, m.clock.nanosec)}
        if not (max_bytes > 0 and max_age_s > 0):
            raise ValueError(f"max_bytes and max_age_s must be positive, got {max_bytes} and {max_age_s}")
        self.max_bytes = int(max_bytes)
        self.max_age_ns = int(max_age_s * 1e9)
        self._entries: list[tuple[int, int, bytes]] = []
        self._bytes = 0  # serialised bytes in _entries
        self.messages = 0  # messages tapped
        self.bundles = 0  # bundles published

    def add(self, topic: str, msg: Any) -> None:
        """Serialise ``msg`` (a ROS message of ``topic``) with the time now, for the next bundle."""
        direct = self._direct.get(type(msg))
        if direct is not None:
            self.add_cdr(topic, direct(msg))
            return
        raw = self._serialize(msg)
        canonical = self._canonical.get(type(msg))
        self.add_cdr(topic, raw if canonical is None else canonical(raw))

    def add_cdr(self, topic: str, raw: bytes) -> None:
        """Take a message of ``topic`` already serialised (its exact CDR), with the time now."""
        self._entries.append((self.index[topic], time.time_ns(), raw))
        self._bytes += len(raw)
        self.messages += 1

    def poll(self) -> None:
        """Publish a bundle if ``max_bytes`` are collected or the oldest message is ``max_age_s`` old, and
        the recorder's subscription is matched: what a robot publishes before the recorder has matched it
        (its first messages) waits for it, up to ``TAP_HOLD_MAX_BYTES`` (a bundle sent to nobody is lost)."""
        entries = self._entries
        due = entries and (self._bytes >= self.max_bytes or time.time_ns() - entries[0][1] >= self.max_age_ns)
        if due and (self._publisher.get_subscription_count() > 0 or self._bytes >= TAP_HOLD_MAX_BYTES):
            self.flush()

    def flush(self) -> None:
        """Publish what was collected since the last bundle as one bundle (nothing if nothing was)."""
        if not self._entries:
            return
        entries, self._entries, self._bytes = self._entries, [], 0
        self._publisher.publish(self._encode(self._table, entries))
        self.bundles += 1

    def close(self, timeout_s: float) -> bool:
        """:meth:`flush`, then wait until the recorder acknowledged every bundle (the robot's shutdown: DDS
        may drop what a publisher sent but no reader acknowledged yet when the publisher is destroyed).

        Args:
            timeout_s: longest wait for the acknowledgements, s.

        Returns:
            True when every bundle was acknowledged (or no recorder is matched), False on timeout.
        """
        from rclpy.duration import Duration

        self.flush()
        return bool(self._publisher.wait_for_all_acked(Duration(nanoseconds=int(timeout_s * 1e9))))


def create_publisher(node: Any, msg_type: type, topic: str, qos: QoSProfile,
                     adapter: TypeAdapter | None = None) -> Any:
    """``node.create_publisher``, through the process's bus when there is one. With ``adapter`` (its
    ``ros_type`` must be ``msg_type``) the publisher takes the adapter's values."""
    _check_adapter(adapter, msg_type)
    bus = _BUS
    if bus is not None:
        return bus.add_publisher(node, msg_type, topic, qos, adapter)
    ros = node.create_publisher(msg_type, topic, qos)
    return ros if adapter is None else AdaptedPublisher(ros, adapter)


def create_subscription(node: Any, msg_type: type, topic: str, callback: Callable[[Any], None],
                        qos: QoSProfile, adapter: TypeAdapter | None = None,
                        on_invalid: Callable[[ValueError], None] | None = None) -> Any:
    """``node.create_subscription``, through the process's bus when there is one. With ``adapter`` the
    callback gets the adapter's values; a message it cannot convert goes to ``on_invalid`` (see the module
    docstring)."""
    _check_adapter(adapter, msg_type)
    bus = _BUS
    if bus is not None:
        return bus.add_subscription(node, msg_type, topic, callback, qos, adapter, on_invalid)
    if adapter is not None:
        callback = adapted_callback(adapter, callback, on_invalid)
    return node.create_subscription(msg_type, topic, callback, qos)


def _check_adapter(adapter: TypeAdapter | None, msg_type: type) -> None:
    if adapter is not None and adapter.ros_type is not msg_type:
        raise ValueError(f"adapter {type(adapter).__name__} converts {adapter.ros_type.__name__}, "
                         f"not {msg_type.__name__}")


def more_queued(sub: Any) -> bool:
    """True if ``sub`` is fed by the bus and more messages wait in its queue (a burst: the sim publishes one
    control step's IMU samples together); always False for a DDS-fed subscription, which cannot know."""
    return isinstance(sub, LocalSubscription) and sub.ros is None and bool(sub.queue)


def heard_only_here(pub: Any) -> bool:
    """True if what ``pub`` publishes reaches this process's subscriptions only, and the recorder's tap: a bus
    publisher, not latched, with no DDS subscriber matched (no recorder subscribed to the topic, no
    ``ros2 topic echo``, no node elsewhere). A message such a publisher leaves out still goes to the tap with
    :meth:`LocalPublisher.record` (if :func:`recorded`), so the bag has what a process per node would have
    published."""
    return isinstance(pub, LocalPublisher) and not pub._latched and pub.ros.get_subscription_count() == 0


def recorded(pub: Any) -> bool:
    """True if ``pub`` is a bus publisher whose topic the recorder's tap takes."""
    return isinstance(pub, LocalPublisher) and bool(pub._bus.tapped(pub.key[0]))


def destroy_publisher(node: Any, pub: Any) -> None:
    """``node.destroy_publisher`` for what :func:`create_publisher` returned."""
    if isinstance(pub, LocalPublisher):
        pub.destroy(node)
    elif isinstance(pub, AdaptedPublisher):
        node.destroy_publisher(pub.ros)
    else:
        node.destroy_publisher(pub)


def destroy_subscription(node: Any, sub: Any) -> None:
    """``node.destroy_subscription`` for what :func:`create_subscription` returned."""
    if isinstance(sub, LocalSubscription):
        sub.destroy(node)
    else:
        node.destroy_subscription(sub)
