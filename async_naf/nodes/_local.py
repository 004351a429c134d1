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

An exception in a callback delivered by the bus is kept and re-raised by :meth:`LocalBus.raise_pending` in
the container's spin loop (rclpy's EventsExecutor would crash the process on an exception inside a task).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile

_BUS: LocalBus | None = None


def install(bus: LocalBus | None) -> None:
    """Make ``bus`` the process's bus for nodes created from now on (``None``: plain rclpy entities)."""
    global _BUS
    _BUS = bus


def current() -> LocalBus | None:
    """The process's bus, or None outside a composed robot."""
    return _BUS


class LocalPublisher:
    """An rclpy publisher whose messages also reach this process's subscriptions through the bus."""

    def __init__(self, bus: LocalBus, ros: Any, key: tuple[str, type], latched: bool) -> None:
        self.ros = ros
        self.key = key
        self._bus = bus
        self._latched = latched
        self.published_local = 0  # messages handed to subscriptions in this process
        self.published_dds = 0  # messages also written to DDS (a subscriber elsewhere, or latched)

    @property
    def topic_name(self) -> str:
        return str(self.ros.topic_name)

    def get_subscription_count(self) -> int:
        """Subscriptions matched over DDS plus those of this process on the bus."""
        return int(self.ros.get_subscription_count()) + self._bus.local_subscriptions(self.key)

    def publish(self, msg: Any) -> None:
        """Queue ``msg`` for this process's subscriptions; write it to DDS if anyone else listens."""
        if self._bus.deliver(self.key, msg):
            self.published_local += 1
        if self._latched or self.ros.get_subscription_count() > 0:
            self.ros.publish(msg)
            self.published_dds += 1

    def wait_for_all_acked(self, timeout: Any) -> bool:
        """What was written to DDS acknowledged (``Publisher.wait_for_all_acked``); the bus needs none."""
        return bool(self.ros.wait_for_all_acked(timeout))

    def destroy(self, node: Any) -> None:
        self._bus.remove_publisher(self)
        node.destroy_publisher(self.ros)


class LocalSubscription:
    """A subscription fed by the bus while its topic has a publisher in this process, else by DDS."""

    def __init__(self, bus: LocalBus, node: Any, key: tuple[str, type], callback: Callable[[Any], None],
                 qos: QoSProfile) -> None:
        self.key = key
        self.callback = callback
        self.node = node
        self.qos = qos
        depth = int(qos.depth) if qos.history == HistoryPolicy.KEEP_LAST else 0
        self.queue: deque[Any] = deque(maxlen=depth if depth > 0 else None)
        self.ros: Any = None  # the DDS reader while the topic has no publisher here
        self.overwritten = 0  # messages dropped by the KEEP_LAST depth before delivery
        self._bus = bus

    @property
    def topic_name(self) -> str:
        return self.key[0]

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

    # ------------------------------------------------------------------------------ wiring
    def add_publisher(self, node: Any, msg_type: type, topic: str, qos: QoSProfile) -> LocalPublisher:
        ros = node.create_publisher(msg_type, topic, qos)
        key = (str(ros.topic_name), msg_type)
        pub = LocalPublisher(self, ros, key, latched=qos.durability == DurabilityPolicy.TRANSIENT_LOCAL)
        self._pubs.setdefault(key, []).append(pub)
        self._rewire(key)
        return pub

    def add_subscription(self, node: Any, msg_type: type, topic: str, callback: Callable[[Any], None],
                         qos: QoSProfile) -> LocalSubscription:
        key = (node.resolve_topic_name(topic), msg_type)
        sub = LocalSubscription(self, node, key, callback, qos)
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
                sub.ros = sub.node.create_subscription(key[1], key[0], sub.callback, sub.qos)

    # ------------------------------------------------------------------------------ delivery
    def attach(self, executor: Any) -> None:
        """The executor whose thread delivers (the container's, once its nodes are built)."""
        self._executor = executor
        if self._order:
            self._schedule()

    def deliver(self, key: tuple[str, type], msg: Any) -> bool:
        """Queue ``msg`` for the bus-fed subscriptions on ``key``; True if there was one."""
        queued = False
        for sub in self._subs.get(key, ()):
            if sub.ros is not None:
                continue
            if sub.queue.maxlen is not None and len(sub.queue) == sub.queue.maxlen:
                sub.overwritten += 1
            sub.queue.append(msg)
            self._order.append(sub)
            queued = True
        if queued:
            self._schedule()
        return queued

    def _schedule(self) -> None:
        if not self._scheduled and self._executor is not None and self._error is None:
            self._scheduled = True
            self._executor.create_task(self._drain)

    def _drain(self) -> None:
        """Deliver the messages queued so far (those their callbacks publish wait for the next task, so
        timers and DDS callbacks run in between, as they would between DDS deliveries)."""
        self._scheduled = False
        try:
            for _ in range(len(self._order)):
                sub = self._order.popleft()
                if sub.queue:  # empty: its oldest message was overwritten (KEEP_LAST) or it was destroyed
                    msg = sub.queue.popleft()
                    sub.callback(msg)
        except BaseException as exc:  # noqa: BLE001 - re-raised by raise_pending in the spin loop
            self._error = exc
            return
        if self._order:
            self._schedule()

    def raise_pending(self) -> None:
        """Re-raise an exception a bus-delivered callback raised (call after each ``spin_once``)."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def create_publisher(node: Any, msg_type: type, topic: str, qos: QoSProfile) -> Any:
    """``node.create_publisher``, through the process's bus when there is one."""
    bus = _BUS
    return node.create_publisher(msg_type, topic, qos) if bus is None else bus.add_publisher(node, msg_type, topic,
                                                                                           qos)


def create_subscription(node: Any, msg_type: type, topic: str, callback: Callable[[Any], None],
                        qos: QoSProfile) -> Any:
    """``node.create_subscription``, through the process's bus when there is one."""
    bus = _BUS
    if bus is None:
        return node.create_subscription(msg_type, topic, callback, qos)
    return bus.add_subscription(node, msg_type, topic, callback, qos)


def more_queued(sub: Any) -> bool:
    """True if ``sub`` is fed by the bus and more messages wait in its queue (a burst: the sim publishes one
    control step's IMU samples together); always False for a DDS-fed subscription, which cannot know."""
    return isinstance(sub, LocalSubscription) and sub.ros is None and bool(sub.queue)


def heard_only_here(pub: Any) -> bool:
    """True if what ``pub`` publishes reaches this process's subscriptions only: a bus publisher, not latched,
    with no DDS subscriber matched (no recorder, no ``ros2 topic echo``, no node elsewhere)."""
    return isinstance(pub, LocalPublisher) and not pub._latched and pub.ros.get_subscription_count() == 0


def destroy_publisher(node: Any, pub: Any) -> None:
    """``node.destroy_publisher`` for what :func:`create_publisher` returned."""
    if isinstance(pub, LocalPublisher):
        pub.destroy(node)
    else:
        node.destroy_publisher(pub)


def destroy_subscription(node: Any, sub: Any) -> None:
    """``node.destroy_subscription`` for what :func:`create_subscription` returned."""
    if isinstance(sub, LocalSubscription):
        sub.destroy(node)
    else:
        node.destroy_subscription(sub)
