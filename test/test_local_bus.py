"""The intra-process bus of a composed robot (async_naf.nodes._local), with real rclpy.

Two nodes of one context (one process's participant) exchange messages through the bus; a probe in a
context of its own plays "another process": it receives what is published only once it subscribes.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import rclpy
from nodes_harness import Probe
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Float64MultiArray

from async_naf.nodes import _local

DEPTH2 = QoSProfile(depth=2, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)
LATCHED = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


def msg(value: float) -> Float64MultiArray:
    out = Float64MultiArray()
    out.data = [value]
    return out


class Process:
    """Two nodes in one context with the bus installed, one executor (as in the container)."""

    def __init__(self, domain: int, executor: str = "single_threaded") -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.bus = _local.LocalBus()
        _local.install(self.bus)
        self.a = Node("a", namespace="/robot_9", context=self.context)
        self.b = Node("b", namespace="/robot_9", context=self.context)
        if executor == "events":
            from rclpy.experimental import EventsExecutor

            self.executor: Any = EventsExecutor(context=self.context)
        else:
            self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.a)
        self.executor.add_node(self.b)
        self.bus.attach(self.executor)

    def spin_until(self, pred: Callable[[], bool], timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while not pred():
            assert time.monotonic() < end, "timed out"
            self.executor.spin_once(timeout_sec=0.05)
            self.bus.raise_pending()

    def close(self) -> None:
        _local.install(None)
        self.executor.shutdown()
        self.a.destroy_node()
        self.b.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.fixture
def proc(ros_env: dict[str, str]) -> Iterator[Process]:
    p = Process(int(ros_env["ROS_DOMAIN_ID"]))
    try:
        yield p
    finally:
        p.close()


def test_messages_between_nodes_of_one_process_skip_dds_in_order(proc: Process) -> None:
    got: list[Float64MultiArray] = []
    sub = _local.create_subscription(proc.b, Float64MultiArray, "chatter", got.append, DEPTH2)
    pub = _local.create_publisher(proc.a, Float64MultiArray, "chatter", DEPTH2)
    assert sub.topic_name == pub.topic_name == "/robot_9/chatter"
    assert sub.ros is None  # a publisher in the process: no DDS reader, so no message arrives twice
    sent = [msg(1.0), msg(2.0)]
    for m in sent:
        pub.publish(m)
    assert got == []  # never delivered inside publish
    proc.spin_until(lambda: len(got) == 2)
    assert got[0] is sent[0] and got[1] is sent[1]  # the very objects, in publication order
    assert pub.published_local == 2 and pub.published_dds == 0  # nobody outside the process listens
    assert pub.get_subscription_count() == 1


def test_keep_last_depth_and_callbacks_that_publish(proc: Process) -> None:
    got: list[float] = []
    pub = _local.create_publisher(proc.a, Float64MultiArray, "chatter", DEPTH2)
    echo = _local.create_publisher(proc.b, Float64MultiArray, "echo", DEPTH2)
    _local.create_subscription(proc.b, Float64MultiArray, "chatter",
                               lambda m: echo.publish(msg(10 * m.data[0])), DEPTH2)
    echoed: list[float] = []
    _local.create_subscription(proc.a, Float64MultiArray, "echo", lambda m: echoed.append(m.data[0]), DEPTH2)
    sub = _local.create_subscription(proc.a, Float64MultiArray, "chatter", lambda m: got.append(m.data[0]), DEPTH2)
    for v in range(5):
        pub.publish(msg(float(v)))
    proc.spin_until(lambda: len(echoed) == 2)
    assert got == [3.0, 4.0] and sub.overwritten == 3  # KEEP_LAST 2: the three oldest were overwritten
    assert echoed == [30.0, 40.0]


def test_a_subscriber_in_another_process_gets_the_messages(proc: Process, ros_env: dict[str, str]) -> None:
    got: list[float] = []
    pub = _local.create_publisher(proc.a, Float64MultiArray, "chatter", DEPTH2)
    _local.create_subscription(proc.b, Float64MultiArray, "chatter", lambda m: got.append(m.data[0]), DEPTH2)
    probe = Probe(ros_env)
    outside: list[float] = []
    try:
        probe.node.create_subscription(Float64MultiArray, "/robot_9/chatter", lambda m: outside.append(m.data[0]),
                                       DEPTH2)
        proc.spin_until(lambda: pub.ros.get_subscription_count() == 1)  # matched over DDS: only the probe
        pub.publish(msg(7.0))
        proc.spin_until(lambda: got == [7.0])
        probe.spin_until(lambda: outside == [7.0], 10.0, "the message over DDS")
        assert pub.published_dds == 1 and pub.get_subscription_count() == 2
    finally:
        probe.close()


def test_latched_topics_always_reach_dds_and_late_joiners(proc: Process, ros_env: dict[str, str]) -> None:
    pub = _local.create_publisher(proc.a, Float64MultiArray, "goal", LATCHED)
    pub.publish(msg(3.0))
    assert pub.published_dds == 1 and pub.published_local == 0
    probe = Probe(ros_env)
    late: list[float] = []
    try:
        probe.node.create_subscription(Float64MultiArray, "/robot_9/goal", lambda m: late.append(m.data[0]), LATCHED)
        probe.spin_until(lambda: late == [3.0], 10.0, "the latched goal")
    finally:
        probe.close()


def test_a_topic_without_a_local_publisher_reads_dds_until_one_appears(proc: Process) -> None:
    got: list[float] = []
    sub = _local.create_subscription(proc.b, Float64MultiArray, "chatter", lambda m: got.append(m.data[0]), DEPTH2)
    assert sub.ros is not None  # nobody here publishes it (a real arm's joint_states): DDS
    pub = _local.create_publisher(proc.a, Float64MultiArray, "chatter", DEPTH2)
    assert sub.ros is None  # moved onto the bus
    pub.publish(msg(1.0))
    proc.spin_until(lambda: got == [1.0])
    _local.destroy_publisher(proc.a, pub)
    assert sub.ros is not None  # back to DDS
    _local.destroy_subscription(proc.b, sub)
    assert proc.bus.local_subscriptions(sub.key) == 0


def _ping_pong(proc: Process) -> list[str]:
    """Two subscriptions that answer each other for ever (a lockstep robot's cycle); the hops so far."""
    hops: list[str] = []
    ping = _local.create_publisher(proc.a, Float64MultiArray, "ping", DEPTH2)
    pong = _local.create_publisher(proc.b, Float64MultiArray, "pong", DEPTH2)
    _local.create_subscription(proc.b, Float64MultiArray, "ping",
                               lambda m: (hops.append("b"), pong.publish(msg(m.data[0] + 1))), DEPTH2)
    _local.create_subscription(proc.a, Float64MultiArray, "pong",
                               lambda m: (hops.append("a"), ping.publish(msg(m.data[0] + 1))), DEPTH2)
    ping.publish(msg(0.0))
    return hops


def test_a_cycle_of_callbacks_runs_in_rounds_and_still_lets_timers_run(proc: Process,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A lockstep robot's messages go round in a cycle (command -> state -> command ...): one executor task
    delivers DRAIN_ROUNDS rounds of it (fewer executor wake-ups than one task per hop), then yields, so a
    timer of the same process keeps running while the cycle never ends."""
    monkeypatch.setattr(_local, "DRAIN_BUDGET_S", 60.0)  # the round limit alone (a loaded machine is slow)
    hops = _ping_pong(proc)
    proc.executor.spin_once(timeout_sec=1.0)  # the one task the first publish scheduled
    assert hops == ["b", "a"] * (_local.DRAIN_ROUNDS // 2)  # each round delivers what the previous published
    proc.executor.spin_once(timeout_sec=1.0)
    assert len(hops) == 2 * _local.DRAIN_ROUNDS
    ticks: list[int] = []
    proc.a.create_timer(0.01, lambda: ticks.append(len(hops)))
    proc.spin_until(lambda: len(ticks) >= 3, 10.0)
    assert ticks[-1] > ticks[0]  # the cycle went on between the timer's runs


def test_a_task_yields_after_its_time_budget(proc: Process, monkeypatch: pytest.MonkeyPatch) -> None:
    """DRAIN_BUDGET_S bounds a task's wall time whatever the round limit: with no budget every task
    delivers one round, and the cycle goes on in the next task."""
    monkeypatch.setattr(_local, "DRAIN_BUDGET_S", 0.0)
    hops = _ping_pong(proc)
    proc.executor.spin_once(timeout_sec=1.0)
    assert hops == ["b"]
    proc.executor.spin_once(timeout_sec=1.0)
    assert hops == ["b", "a"]


def test_an_exception_in_a_delivered_callback_is_raised_in_the_spin_loop(proc: Process) -> None:
    def boom(m: Float64MultiArray) -> None:
        raise RuntimeError(f"bad {m.data[0]}")

    _local.create_subscription(proc.b, Float64MultiArray, "chatter", boom, DEPTH2)
    pub = _local.create_publisher(proc.a, Float64MultiArray, "chatter", DEPTH2)
    pub.publish(msg(5.0))
    with pytest.raises(RuntimeError, match=r"bad 5\.0"):
        proc.spin_until(lambda: False, 5.0)


def test_the_events_executor_delivers_too(ros_env: dict[str, str]) -> None:
    """The container's default executor (rclpy's EventsExecutor), which has no guard conditions and would
    crash on an exception escaping a task: the bus uses tasks and keeps exceptions for the spin loop."""
    p = Process(int(ros_env["ROS_DOMAIN_ID"]), executor="events")
    try:
        got: list[float] = []
        _local.create_subscription(p.b, Float64MultiArray, "chatter", lambda m: got.append(m.data[0]), DEPTH2)
        pub = _local.create_publisher(p.a, Float64MultiArray, "chatter", DEPTH2)
        pub.publish(msg(1.0))
        pub.publish(msg(2.0))
        p.spin_until(lambda: got == [1.0, 2.0])

        def boom(m: Float64MultiArray) -> None:
            raise RuntimeError("bad")

        _local.create_subscription(p.b, Float64MultiArray, "other", boom, DEPTH2)
        _local.create_publisher(p.a, Float64MultiArray, "other", DEPTH2).publish(msg(0.0))
        with pytest.raises(RuntimeError, match="bad"):
            p.spin_until(lambda: False, 5.0)
    finally:
        p.close()


def test_without_a_bus_the_helpers_are_plain_rclpy(ros_env: dict[str, str]) -> None:
    context = Context()
    rclpy.init(context=context, domain_id=int(ros_env["ROS_DOMAIN_ID"]))
    try:
        node = Node("plain", context=context)
        pub = _local.create_publisher(node, Float64MultiArray, "chatter", DEPTH2)
        sub = _local.create_subscription(node, Float64MultiArray, "chatter", lambda m: None, DEPTH2)
        assert type(pub).__name__ == "Publisher" and type(sub).__name__ == "Subscription"
        _local.destroy_subscription(node, sub)
        _local.destroy_publisher(node, pub)
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_a_foreign_publisher_does_not_reach_a_subscription_fed_by_the_bus(proc: Process,
                                                                         ros_env: dict[str, str]) -> None:
    """A topic published in the process (the collector's goals, the policy's commands) is read from the bus
    only: another participant's messages on it never reach the node."""
    got: list[float] = []
    pub = _local.create_publisher(proc.a, Float64MultiArray, "chatter", DEPTH2)
    _local.create_subscription(proc.b, Float64MultiArray, "chatter", lambda m: got.append(m.data[0]), DEPTH2)
    probe = Probe(ros_env)
    try:
        foreign = probe.node.create_publisher(Float64MultiArray, "/robot_9/chatter", DEPTH2)
        listener: list[float] = []  # a DDS reader in this process, to know when the foreign message is out
        proc.a.create_subscription(Float64MultiArray, "/robot_9/chatter", lambda m: listener.append(m.data[0]),
                                   DEPTH2)
        probe.spin_until(lambda: foreign.get_subscription_count() >= 1, 10.0, "a reader for the foreign publisher")
        foreign.publish(msg(99.0))
        proc.spin_until(lambda: 99.0 in listener)
        pub.publish(msg(1.0))
        proc.spin_until(lambda: 1.0 in got)
        assert got == [1.0]
    finally:
        probe.close()


def _imu(stamp_ns: int) -> Any:
    from sensor_msgs.msg import Imu

    m = Imu()
    m.header.stamp.sec, m.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    m.angular_velocity.z = 0.01
    m.linear_acceleration.z = 9.81
    return m


@contextmanager
def door_node(proc: Process) -> Iterator[tuple[Any, list, Any]]:
    """A door-angle node of ``/robot_9`` in ``proc``, what it sends to a subscriber on the bus, and an IMU
    publisher on the bus; the node removed afterwards."""
    from sensor_msgs.msg import Imu, JointState

    from async_naf.nodes._msgs import IMU, SENSOR
    from async_naf.nodes.door_angle_node import DoorAngleNode

    node = DoorAngleNode(context=proc.context, namespace="/robot_9")
    proc.executor.add_node(node)
    got: list[JointState] = []
    _local.create_subscription(proc.b, JointState, "door/joint_states", got.append, SENSOR)
    try:
        yield node, got, _local.create_publisher(proc.a, Imu, "door/imu", IMU)
    finally:
        proc.executor.remove_node(node)
        node.destroy_node()


def test_the_door_angle_node_sends_one_estimate_per_imu_burst_while_nobody_outside_listens(
        proc: Process, ros_env: dict[str, str]) -> None:
    """The sim hands one control step's IMU samples over together: every sample is integrated, the estimate
    of the burst's last one is sent (the others are counted as ``coalesced``); with a subscriber in another
    process (a recorder), every estimate is sent, as over DDS."""
    from sensor_msgs.msg import JointState

    from async_naf.nodes._msgs import SENSOR

    stamps = [1_000_000_000 + 10_000_000 * k for k in range(10)]
    with door_node(proc) as (node, got, imu):
        for s in stamps[:5]:
            imu.publish(_imu(s))
        proc.spin_until(lambda: node.estimator.samples == 5 and len(got) == 1)
        assert node.coalesced == 4
        assert got[0].header.stamp.nanosec == stamps[4] % 1_000_000_000  # the burst's last sample
        probe = Probe(ros_env)
        outside: list[JointState] = []
        try:
            probe.node.create_subscription(JointState, "/robot_9/door/joint_states", outside.append, SENSOR)
            proc.spin_until(lambda: node.joint_pub.ros.get_subscription_count() == 1)
            for s in stamps[5:]:
                imu.publish(_imu(s))
            proc.spin_until(lambda: node.estimator.samples == 10 and len(got) == 6)
            assert node.coalesced == 4  # a listener elsewhere: nothing coalesced
            assert [m.header.stamp.nanosec for m in got[1:]] == [s % 1_000_000_000 for s in stamps[5:]]
        finally:
            probe.close()


def test_a_recorded_run_s_tap_gets_every_estimate_while_the_policy_gets_one_per_burst(proc: Process) -> None:
    """With the recorder's tap on ``door/joint_states`` (a recorded composed run) the estimates are still
    coalesced for this process's subscribers (the policy does not pay for the recording), and every
    estimate still goes into the bundle (the bag has what a process per node would have published)."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import JointState

    from async_naf.wire.record_bundle import bundle_data, decode_bundle

    out = Sent()
    tap = _local.RecordTap(("/robot_9/door/joint_states",), out)
    proc.bus.set_tap(tap)
    stamps = [1_000_000_000 + 10_000_000 * k for k in range(5)]
    with door_node(proc) as (node, got, imu):
        assert _local.heard_only_here(node.joint_pub) and _local.recorded(node.joint_pub)
        for s in stamps:
            imu.publish(_imu(s))
        proc.spin_until(lambda: node.estimator.samples == 5 and len(got) == 1)
        assert node.coalesced == 4 and tap.messages == 5
        tap.flush()
        entries = decode_bundle(bundle_data(out.raw[0]))
        assert [deserialize_message(raw, JointState).header.stamp.nanosec for _, _, raw in entries] == \
            [s % 1_000_000_000 for s in stamps]
        assert {topic for topic, _, _ in entries} == {"/robot_9/door/joint_states"}


class FloatAdapter:
    """A test adapter: a Python float <-> Float64MultiArray with one value (counts its conversions)."""

    ros_type = Float64MultiArray

    def __init__(self) -> None:
        self.to_ros_calls = 0
        self.from_ros_calls = 0

    def to_ros(self, value: float) -> Float64MultiArray:
        self.to_ros_calls += 1
        return msg(value)

    def from_ros(self, m: Float64MultiArray) -> float:
        self.from_ros_calls += 1
        if len(m.data) != 1:
            raise ValueError(f"{len(m.data)} values, expected 1")
        return float(m.data[0])


def test_type_adaptation_hands_the_value_over_and_builds_a_message_only_for_those_who_need_one(
        proc: Process, ros_env: dict[str, str]) -> None:
    """REP 2007-style type adaptation on the bus: an adapted subscription gets the publisher's value itself,
    an unadapted one (and DDS, once someone outside listens) the message, built once per publish."""
    pub_adapter, sub_adapter = FloatAdapter(), FloatAdapter()
    values: list[float] = []
    messages: list[Float64MultiArray] = []
    pub = _local.create_publisher(proc.a, Float64MultiArray, "chatter", DEPTH2, adapter=pub_adapter)
    _local.create_subscription(proc.b, Float64MultiArray, "chatter", values.append, DEPTH2, adapter=sub_adapter)
    sent = 2.5
    pub.publish(sent)
    proc.spin_until(lambda: len(values) == 1)
    assert values[0] is sent  # the very object: nothing was converted
    assert pub_adapter.to_ros_calls == 0 and sub_adapter.from_ros_calls == 0 and pub.published_dds == 0
    _local.create_subscription(proc.a, Float64MultiArray, "chatter", messages.append, DEPTH2)  # unadapted
    probe = Probe(ros_env)
    outside: list[float] = []
    try:
        probe.node.create_subscription(Float64MultiArray, "/robot_9/chatter", lambda m: outside.append(m.data[0]),
                                       DEPTH2)
        proc.spin_until(lambda: pub.ros.get_subscription_count() == 1)
        pub.publish(4.0)
        proc.spin_until(lambda: len(values) == 2 and len(messages) == 1)
        probe.spin_until(lambda: outside == [4.0], 10.0, "the adapted value as a message over DDS")
        assert values[1] == 4.0 and list(messages[0].data) == [4.0]
        assert pub_adapter.to_ros_calls == 1  # one message for the local reader and DDS together
        assert sub_adapter.from_ros_calls == 0
    finally:
        probe.close()


def test_an_adapted_subscription_converts_messages_and_reports_the_ones_it_cannot(proc: Process) -> None:
    """Fed a plain message (an unadapted publisher here, or DDS): ``from_ros`` converts it in the delivery
    task; a message it cannot convert goes to ``on_invalid``, never to the callback."""
    adapter = FloatAdapter()
    values: list[float] = []
    invalid: list[str] = []
    _local.create_subscription(proc.b, Float64MultiArray, "chatter", values.append, DEPTH2, adapter=adapter,
                               on_invalid=lambda exc: invalid.append(str(exc)))
    pub = _local.create_publisher(proc.a, Float64MultiArray, "chatter", DEPTH2)
    bad = Float64MultiArray()
    bad.data = [1.0, 2.0]
    pub.publish(msg(1.5))
    pub.publish(bad)
    assert adapter.from_ros_calls == 0  # never inside publish
    proc.spin_until(lambda: len(values) + len(invalid) == 2)
    assert values == [1.5] and invalid == ["2 values, expected 1"]


def test_type_adaptation_without_a_bus_converts_on_both_ends(ros_env: dict[str, str]) -> None:
    """A node in a process of its own: the same calls publish and receive messages over DDS."""
    context = Context()
    rclpy.init(context=context, domain_id=int(ros_env["ROS_DOMAIN_ID"]))
    try:
        node = Node("plain", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        values: list[float] = []
        invalid: list[ValueError] = []
        pub = _local.create_publisher(node, Float64MultiArray, "chatter", DEPTH2, adapter=FloatAdapter())
        sub = _local.create_subscription(node, Float64MultiArray, "chatter", values.append, DEPTH2,
                                         adapter=FloatAdapter(), on_invalid=invalid.append)
        raw = node.create_publisher(Float64MultiArray, "chatter", DEPTH2)
        end = time.monotonic() + 10.0
        while pub.get_subscription_count() < 1 or raw.get_subscription_count() < 1:
            assert time.monotonic() < end, "no match"
            executor.spin_once(timeout_sec=0.05)
        pub.publish(3.0)
        raw.publish(Float64MultiArray())  # no values: invalid
        while len(values) + len(invalid) < 2:
            assert time.monotonic() < end, "timed out"
            executor.spin_once(timeout_sec=0.05)
        assert values == [3.0] and len(invalid) == 1 and "0 values" in str(invalid[0])
        with pytest.raises(ValueError, match="converts Float64MultiArray"):
            from sensor_msgs.msg import Imu

            _local.create_publisher(node, Imu, "imu", DEPTH2, adapter=FloatAdapter())
        _local.destroy_subscription(node, sub)
        _local.destroy_publisher(node, pub)
        executor.shutdown()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_the_node_adapters_round_trip() -> None:
    """The node adapters convert both ways without loss (IMU samples, policy steps, joint states, commands)."""
    import numpy as np

    from async_naf.nodes._msgs import ImuAdapter, PolicyStepAdapter
    from async_naf.wire.imu import ImuSample
    from async_naf.wire.layouts import LayoutError, PolicyStep

    cov = np.diag([1e-4, 2e-4, 3e-4])
    sample = ImuSample(12_345_678_901, np.array([0.1, -0.2, 0.3]), np.array([0.5, 0.0, 9.81]), cov, 2 * cov)
    imu = ImuAdapter("door_imu_link")
    m = imu.to_ros(sample)
    assert m.header.frame_id == "door_imu_link" and m.orientation_covariance[0] == -1.0
    back = imu.from_ros(m)
    assert back.stamp_ns == sample.stamp_ns
    np.testing.assert_array_equal(back.gyro, sample.gyro)
    np.testing.assert_array_equal(back.accel, sample.accel)
    np.testing.assert_array_equal(back.gyro_cov, cov)
    np.testing.assert_array_equal(back.accel_cov, 2 * cov)
    assert imu.from_ros(imu.to_ros(sample._replace(gyro_cov=None))).gyro_cov is None  # unknown stays unknown

    rng = np.random.default_rng(0)
    step = PolicyStep(12.5, 3, 7, rng.normal(size=25), rng.normal(size=7), rng.normal(size=7), rng.normal(size=7),
                      rng.normal(size=3), 0.25, -0.5)
    adapter = PolicyStepAdapter(25, 7)
    got = adapter.from_ros(adapter.to_ros(step))
    assert (got.stamp_s, got.episode, got.step, got.door_angle, got.door_velocity) == (12.5, 3, 7, 0.25, -0.5)
    for name in ("obs", "action", "joint_pos", "joint_vel", "ee_pos"):
        np.testing.assert_array_equal(getattr(got, name), getattr(step, name))
    with pytest.raises(LayoutError):
        PolicyStepAdapter(24, 7).from_ros(adapter.to_ros(step))  # another task's size

    from async_naf.nodes._msgs import CommandAdapter, JointStateAdapter
    from async_naf.wire.joints import JointStates

    js = JointStates(1_500_000_001, ("a", "b"), np.array([0.5, -1.0]), np.array([0.1, 0.2]), np.zeros(0))
    m = JointStateAdapter().to_ros(js)
    assert (m.header.stamp.sec, m.header.stamp.nanosec) == (1, 500_000_001) and list(m.name) == ["a", "b"]
    got_js = JointStateAdapter().from_ros(m)
    assert got_js.stamp_ns == js.stamp_ns and got_js.name == js.name and got_js.stamp_s == 1.500000001
    np.testing.assert_array_equal(got_js.position, js.position)
    np.testing.assert_array_equal(got_js.velocity, js.velocity)
    assert got_js.effort.size == 0
    cmd = np.array([0.1, -0.2, 0.3, 0.0, 0.0, 0.5, -0.5])
    np.testing.assert_array_equal(CommandAdapter().from_ros(CommandAdapter().to_ros(cmd)), cmd)


def test_the_adapters_cdr_is_the_exact_cdr_of_their_messages() -> None:
    """``to_cdr`` (a recorded run's tap, no message built) equals rmw's serialisation of ``to_ros`` made exact
    (canonical, itself byte for byte rosbags' serialisation: test_cdr_tables), for random values of every
    adapter: several frame ids, joint names and sizes, covariances known and unknown, empty sequences, values
    as float64, float32, big-endian, strided views and lists; and a lockstep robot's clock."""
    import numpy as np
    from rclpy.serialization import serialize_message
    from rosgraph_msgs.msg import Clock

    from async_naf.nodes._msgs import CommandAdapter, ImuAdapter, JointStateAdapter, PolicyStepAdapter
    from async_naf.wire.imu import ImuSample
    from async_naf.wire.joints import JointStates
    from async_naf.wire.layouts import PolicyStep
    from async_naf.wire.record_bundle import canonical_imu, canonical_joint_state, canonical_multiarray, clock_cdr

    rng = np.random.default_rng(4)
    forms = [lambda a: a, lambda a: a.astype(np.float32), lambda a: a.astype(">f8"),
             lambda a: np.repeat(a, 2)[::2], lambda a: a.tolist()]  # what a caller may hand over

    def vec(size: int, k: int) -> np.ndarray:
        return forms[k % len(forms)](rng.normal(size=size))  # type: ignore[no-any-return]

    for k in range(60):
        stamp = int(rng.integers(0, 2**31 - 1)) * 1_000_000_000 + int(rng.integers(0, 10**9))
        cov = np.diag(rng.uniform(1e-6, 1e-3, 3)) if k % 3 else None
        sample = ImuSample(stamp, vec(3, k), vec(3, k + 1), cov, None if k % 4 == 0 else cov)
        imu = ImuAdapter("f" * (k % 6))
        assert imu.to_cdr(sample) == canonical_imu(serialize_message(imu.to_ros(sample)))
        names = tuple(f"joint_{i}" + "x" * (k % 4) for i in range(k % 9))
        n = len(names)
        js = JointStates(stamp, names, vec(n, k), vec(n * (k % 2), k + 2), vec(n * (k % 3 == 0), k + 3))
        adapter = JointStateAdapter()
        assert adapter.to_cdr(js) == canonical_joint_state(serialize_message(adapter.to_ros(js)))
        obs_dim = 20 + k % 5
        step = PolicyStep(stamp * 1e-9, k, 3 * k, rng.normal(size=obs_dim), rng.normal(size=7), rng.normal(size=7),
                          rng.normal(size=7), rng.normal(size=3), float(rng.normal()), float(rng.normal()))
        steps = PolicyStepAdapter(obs_dim, 7)
        assert steps.to_cdr(step) == canonical_multiarray(serialize_message(steps.to_ros(step)))
        cmd = vec(k % 8, k)
        assert CommandAdapter().to_cdr(cmd) == canonical_multiarray(serialize_message(CommandAdapter().to_ros(cmd)))
        clock = Clock()
        clock.clock.sec, clock.clock.nanosec = divmod(stamp, 1_000_000_000)
        assert clock_cdr(clock.clock.sec, clock.clock.nanosec) == serialize_message(clock)


def test_the_policy_arms_no_door_timer_for_an_estimate_already_queued(proc: Process) -> None:
    """A composed robot: the door-angle node publishes its estimate in the same bus round in which the policy
    takes the joint state that waits for it; the policy then arms no door-wait timer (each arm and cancel
    woke the executor's timer thread), and arms it once nothing is queued while it still waits."""
    from types import SimpleNamespace

    from async_naf.nodes.policy_node import PolicyNode

    got: list[float] = []
    door_pub = _local.create_publisher(proc.a, Float64MultiArray, "door/joint_states", DEPTH2)
    door_sub = _local.create_subscription(proc.b, Float64MultiArray, "door/joint_states",
                                          lambda m: got.append(m.data[0]), DEPTH2)
    timer = proc.b.create_timer(0.005, lambda: None)
    timer.cancel()
    node = SimpleNamespace(_door_timer=timer, _door_sub=door_sub, loop=SimpleNamespace(awaiting_door=True))
    door_pub.publish(msg(0.3))  # queued for the next round
    PolicyNode._arm_door_timer(node)  # type: ignore[arg-type]
    assert timer.is_canceled()  # the queued estimate comes first
    proc.spin_until(lambda: got == [0.3])
    PolicyNode._arm_door_timer(node)  # type: ignore[arg-type]
    assert not timer.is_canceled()  # still waiting, nothing queued: the deadline needs the timer
    node.loop.awaiting_door = False
    PolicyNode._arm_door_timer(node)  # type: ignore[arg-type]
    assert timer.is_canceled()


def test_a_recorded_run_s_tap_sends_the_tapped_topics_in_bundles_and_nothing_else(
        proc: Process, ros_env: dict[str, str]) -> None:
    """The recorder's tap (RecordTap): messages on a tapped topic are serialised, in publication order, with
    their publish time, and reach a subscriber elsewhere as one bundle (here at the end of the delivery round,
    the tap's size threshold being 1 byte), without any DDS message on the topic itself; an untapped topic is
    untouched; a tapped topic counts as heard."""
    from rclpy.serialization import deserialize_message
    from std_msgs.msg import UInt8MultiArray

    from async_naf.wire.record_bundle import bundle_data, decode_bundle

    bundle_pub = proc.a.create_publisher(UInt8MultiArray, "recorder/bundle", DEPTH2)
    tap = _local.RecordTap(("/robot_9/tapped",), bundle_pub, max_bytes=1)
    proc.bus.set_tap(tap)
    tapped = _local.create_publisher(proc.a, Float64MultiArray, "tapped", DEPTH2)
    other = _local.create_publisher(proc.a, Float64MultiArray, "other", DEPTH2)
    got: list[float] = []
    _local.create_subscription(proc.b, Float64MultiArray, "tapped", lambda m: got.append(m.data[0]), DEPTH2)
    probe = Probe(ros_env)
    bundles: list[bytes] = []
    try:
        probe.node.create_subscription(UInt8MultiArray, "/robot_9/recorder/bundle", bundles.append, DEPTH2, raw=True)
        proc.spin_until(lambda: bundle_pub.get_subscription_count() == 1)
        assert _local.recorded(tapped) and not _local.recorded(other)
        assert tapped.get_subscription_count() == 2  # the local subscription and the tap
        t0 = time.time_ns()
        tapped.publish(msg(1.0))
        tapped.publish(msg(2.0))
        other.publish(msg(9.0))
        proc.spin_until(lambda: got == [1.0, 2.0] and tap.bundles == 1)  # flushed after the delivery round
        probe.spin_until(lambda: len(bundles) == 1, 10.0, "the bundle")
        entries = decode_bundle(bundle_data(bundles[0]))
        assert [(topic, list(deserialize_message(raw, Float64MultiArray).data)) for topic, _, raw in entries] == \
            [("/robot_9/tapped", [1.0]), ("/robot_9/tapped", [2.0])]
        assert t0 <= entries[0][1] <= entries[1][1] <= time.time_ns()
        assert tapped.published_dds == 0 and other.published_dds == 0 and tap.messages == 2
        tap.flush()  # nothing new: no empty bundle
        assert tap.bundles == 1
    finally:
        probe.close()


class Sent:
    """Where a RecordTap under test publishes (the bundles' DDS path is tested above)."""

    def __init__(self) -> None:
        self.raw: list[bytes] = []
        self.acked = True  # what wait_for_all_acked answers
        self.waited: list[float] = []  # its timeouts, s
        self.subscribers = 1  # what get_subscription_count answers (the recorder matched)

    def publish(self, raw: bytes) -> None:
        self.raw.append(raw)

    def get_subscription_count(self) -> int:
        return self.subscribers

    def wait_for_all_acked(self, timeout: Any) -> bool:
        self.waited.append(timeout.nanoseconds / 1e9)
        return self.acked


def test_the_tap_sends_a_bundle_once_enough_bytes_or_an_old_enough_message_wait() -> None:
    """RecordTap.poll sends nothing below both thresholds, a bundle at ``max_bytes`` and one once the oldest
    message is ``max_age_s`` old; flush sends what there is; every message in order, each exactly once."""
    from async_naf.wire.record_bundle import bundle_data, decode_bundle

    out = Sent()
    tap = _local.RecordTap(("/r/a", "/r/b"), out, max_bytes=100, max_age_s=3600.0)
    tap.add_cdr("/r/a", b"x" * 60)
    tap.poll()
    assert out.raw == []  # 60 bytes, a fresh message: wait
    tap.add_cdr("/r/b", b"y" * 40)
    tap.poll()
    assert len(out.raw) == 1  # 100 bytes
    tap.add_cdr("/r/a", b"z" * 10)
    tap.poll()
    assert len(out.raw) == 1
    tap.max_age_ns = 0  # the waiting message is now old enough
    tap.poll()
    assert len(out.raw) == 2
    tap.poll()
    assert len(out.raw) == 2  # nothing waits: no empty bundle
    tap.max_age_ns = 10**15
    tap.add_cdr("/r/b", b"w")
    tap.flush()
    got = [(topic, raw) for bundle in out.raw for topic, _, raw in decode_bundle(bundle_data(bundle))]
    assert got == [("/r/a", b"x" * 60), ("/r/b", b"y" * 40), ("/r/a", b"z" * 10), ("/r/b", b"w")]
    assert tap.bundles == 3 and tap.messages == 4
    tap.add_cdr("/r/a", b"v")
    out.acked = False
    assert tap.close(1.5) is False  # the shutdown: the last bundle sent, then the acknowledgements awaited
    assert len(out.raw) == 4 and out.waited == [1.5]


def test_the_tap_holds_its_bundles_until_the_recorder_is_matched() -> None:
    """What a robot publishes before the recorder's subscription is matched (its first messages) is not sent
    into the void: poll keeps it, due or not, and sends it all once the recorder is there."""
    from async_naf.wire.record_bundle import bundle_data, decode_bundle

    out = Sent()
    out.subscribers = 0
    tap = _local.RecordTap(("/r/a",), out, max_bytes=10, max_age_s=3600.0)
    for k in range(3):
        tap.add_cdr("/r/a", bytes([k]) * 20)  # each one over max_bytes: due at once
        tap.poll()
    assert out.raw == []
    out.subscribers = 1
    tap.poll()
    assert out.raw and [r for b in out.raw for _, _, r in decode_bundle(bundle_data(b))] == \
        [bytes([k]) * 20 for k in range(3)]


@pytest.mark.parametrize("kwargs", [{"max_bytes": 0}, {"max_age_s": 0.0}, {"max_age_s": -1.0}])
def test_the_tap_rejects_thresholds_that_are_not_positive(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="positive"):
        _local.RecordTap(("/r/a",), Sent(), **kwargs)  # type: ignore[arg-type]


def test_the_imu_cdr_refuses_vectors_of_the_wrong_size() -> None:
    from async_naf.wire.record_bundle import imu_cdr

    with pytest.raises(ValueError, match="gyro needs 3"):
        imu_cdr(0, [0.0, 1.0], [0.0, 0.0, 9.8], None, None)
    with pytest.raises(ValueError, match="accel_cov needs 9"):
        imu_cdr(0, [0.0, 1.0, 2.0], [0.0, 0.0, 9.8], None, [1.0] * 3)
