"""reset_node in a real, separate process over real rclpy, against a kinematic arm in the test process (it
integrates the velocity commands into joint_states): sim/reset drives the arm home, door tasks wait for the
door estimate to say closed, an arm that does not move gets a clear failure; the moveit_py path is skipped here."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")

from nodes_harness import Probe, Processes

NS = "/robot_4"
MAX_DT_S = 0.1  # the test arm's longest integration step, s
START = np.array([0.0, 0.2, 0.0, -1.55, 0.0, 1.1, 0.0])


class _Arm:
    """Joint states from integrated commands (``moves`` False: a blocked arm; ``joints_silent``: no joint
    states), door angle from the test; ``ticks`` counts the control periods. The arm moves at the commanded
    velocity in wall time, as a real one does, whenever the test's executor gets to its timer (a tick that
    comes late moves it further, at most ``MAX_DT_S`` worth): under load the reset node's stall detection and
    move timeout (wall time) must not see an arm slowed down by the test process."""

    def __init__(self, probe: Probe, q0: np.ndarray, period: float = 0.02) -> None:
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray

        from async_naf.nodes import _msgs
        from async_naf.task.description import ARM_JOINT_NAMES

        self.q, self.v, self.moves, self.door = q0.copy(), np.zeros(7), True, 0.3
        self.joints_silent, self.ticks = False, 0
        self.commands: list[np.ndarray] = []
        node = probe.node

        def on_cmd(msg: Float64MultiArray) -> None:
            self.v = np.array(msg.data)
            self.commands.append(self.v)

        last = [time.monotonic()]

        def tick() -> None:
            self.ticks += 1
            now = time.monotonic()
            dt, last[0] = min(now - last[0], MAX_DT_S), now
            if self.moves:
                self.q = self.q + self.v * dt
            js = JointState(name=list(ARM_JOINT_NAMES), position=self.q.tolist(),
                            velocity=(self.v if self.moves else np.zeros(7)).tolist())
            js.header.stamp = node.get_clock().now().to_msg()
            if not self.joints_silent:
                self.js_pub.publish(js)
            door = JointState(name=["door_hinge"], position=[self.door], velocity=[0.0])
            door.header.stamp = js.header.stamp
            self.door_pub.publish(door)

        # every command, even while the probe spins late (the acceleration check compares consecutive ones):
        # the commands' own QoS with a deep history instead of keep-last 10
        seen_all = QoSProfile(depth=10_000, reliability=_msgs.COMMANDS.reliability,
                              durability=_msgs.COMMANDS.durability)
        self.cmd_sub = node.create_subscription(Float64MultiArray, f"{NS}/forward_velocity_controller/commands",
                                                on_cmd, seen_all)
        self.js_pub = node.create_publisher(JointState, f"{NS}/joint_states", _msgs.SENSOR)
        self.door_pub = node.create_publisher(JointState, f"{NS}/door/joint_states", _msgs.SENSOR)
        node.create_timer(period, tick)

    def matched(self) -> bool:
        """The reset node's endpoints are matched with ours (DDS discovers each topic on its own, and a
        service that answers says nothing about them): commands reach the arm, joint states the node."""
        return (self.cmd_sub.get_publisher_count() > 0 and self.js_pub.get_subscription_count() > 0
                and self.door_pub.get_subscription_count() > 0)


@pytest.mark.ros
def test_reset_drives_home_then_waits_for_the_closed_door(ros_env: dict[str, str], tmp_path: Path) -> None:
    from std_srvs.srv import Trigger

    procs = Processes(ros_env, tmp_path)
    probe = None
    try:
        pose = ",".join(f"{v}" for v in START)
        procs.start("reset", "reset_node", "-p", "task:=door_pull", "-p", f"start_pose:=[{pose}]",
                    "-p", "move_timeout_s:=6.0", "-p", "wait_log_period_s:=0.5", "-p", "door_closed_hold_s:=0.3",
                    namespace=NS)
        probe = Probe(ros_env)
        arm = _Arm(probe, START + np.array([0.3, -0.2, 0.1, 0.25, -0.3, 0.2, 0.4]))
        client = probe.node.create_client(Trigger, f"{NS}/sim/reset")
        assert client.wait_for_service(timeout_sec=60.0)
        probe.spin_until(arm.matched, 30.0, "the reset node's commands and joint-state subscriptions matched")
        future = client.call_async(Trigger.Request())
        # home first, then the door: the reset must not answer while the door is open
        probe.spin_until(lambda: np.all(np.abs(arm.q - START) < 0.011) and np.all(arm.v == 0), 30.0, "the arm home")
        probe.spin_until(lambda: "door to be closed" in procs.log("reset"), 10.0, "the log of what it waits for")
        assert not future.done()
        arm.door = 0.001  # somebody closed the door
        probe.spin_until(future.done, 10.0, "the reset's answer")
        res = future.result()
        assert res.success, res.message
        assert "door closed" in res.message
        assert max(np.max(np.abs(c)) for c in arm.commands) <= 0.5 + 1e-12  # max_velocity
        steps = np.diff(np.array(arm.commands), axis=0)
        assert np.max(np.abs(steps)) <= 2.0 * 0.05 + 1e-9  # max_accel * control period
        # a blocked arm: a clear failure after move_timeout_s
        arm.moves = False
        arm.q = START + 0.5
        res = probe.call(client, Trigger.Request(), timeout=30.0)
        assert not res.success and "did not reach the start pose within move_timeout_s = 6 s" in res.message
        assert np.all(arm.commands[-1] == 0)
        # a joint state received before the request never answers it: the arm seen at home, then no joint states
        # (the door closed, its estimate current): no "at the start pose" from the old state
        arm.moves, arm.q = True, START.copy()
        ticks = arm.ticks
        probe.spin_until(lambda: arm.ticks >= ticks + 10, 10.0, "joint states at the start pose")
        arm.joints_silent = True
        # the arm's last joint states may still be in flight (DDS, the node's executor): a state the node takes
        # after the request started counts as new, whenever it was sent. Ten more ticks of silence first.
        ticks = arm.ticks
        probe.spin_until(lambda: arm.ticks >= ticks + 10, 10.0, "ten ticks without joint states")
        res = probe.call(client, Trigger.Request(), timeout=30.0)
        assert not res.success and "no joint states within move_timeout_s = 6 s" in res.message, res.message
    finally:
        if probe is not None:
            probe.close()
        procs.stop_all()


def test_started_as_the_launcher_starts_it_one_node_is_named_reset_and_a_signal_ends_it_cleanly(
        ros_env: dict[str, str], tmp_path: Path) -> None:
    """The launcher (and launch_ros) pass `-r __node:=reset`, which renamed the service helper node too: two
    nodes named /robot_<i>/reset answered its parameter services at random (2 or 27 parameters). And every
    SIGINT or SIGTERM ended in "terminate called without an active exception" (status 134): the helper's thread
    was still in its executor when the process exited."""
    from rcl_interfaces.srv import ListParameters

    procs = Processes(ros_env, tmp_path)
    probe = None
    try:
        for sig_run in range(2):
            procs.start(f"reset{sig_run}", "reset_node", "-r", "__node:=reset", "-p", "task:=reach", namespace=NS)
        probe = Probe(ros_env)
        client = probe.node.create_client(ListParameters, f"{NS}/reset/list_parameters")
        assert client.wait_for_service(timeout_sec=60.0)

        def names() -> list[str]:
            return sorted(f"{ns.rstrip('/')}/{n}" for n, ns in probe.node.get_node_names_and_namespaces()
                          if ns == NS)

        probe.spin_until(lambda: len(names()) >= 4, 30.0, "both processes' nodes in the graph")
        assert names() == [f"{NS}/reset", f"{NS}/reset", f"{NS}/reset_service", f"{NS}/reset_service"]
        procs.interrupt("reset1")
        probe.spin_until(lambda: names() == [f"{NS}/reset", f"{NS}/reset_service"], 30.0, "one process left")
        counts = {len(probe.call(client, ListParameters.Request(), timeout=10.0).result.names) for _ in range(4)}
        assert len(counts) == 1 and counts.pop() > 10  # the reset node's own parameters, every time
        proc = procs.procs["reset0"]
        proc.send_signal(__import__("signal").SIGTERM)
        assert proc.wait(30) == 0, procs.log("reset0")
        assert procs.procs["reset1"].returncode == 0, procs.log("reset1")
        assert "terminate called" not in procs.log("reset0") + procs.log("reset1")
    finally:
        if probe is not None:
            probe.close()
        procs.stop_all()


def test_a_reset_asked_for_while_the_node_stops_fails_at_once(ros_env: dict[str, str]) -> None:
    """A sim/reset call served after shutdown_hook began started a motion no control loop would run any more:
    it waited its whole budget, and the service thread outlived the join."""
    import rclpy
    from std_srvs.srv import Trigger

    from async_naf.nodes.reset_node import ResetNode

    rclpy.init(args=["--ros-args", "-p", "task:=reach", "-p", "move_timeout_s:=1.0", "-p", "door_timeout_s:=1.0"],
               domain_id=int(ros_env["ROS_DOMAIN_ID"]))
    node = None
    try:
        node = ResetNode()
        node.shutdown_hook()
        response = node._on_reset(Trigger.Request(), Trigger.Response())
        assert not response.success and "shutting down" in response.message, response.message
        assert node.motion.phase != "moving"
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.shutdown()


def test_moveit_path() -> None:
    pytest.importorskip("moveit.planning", reason="moveit_py is not installable here (ROS 2 Jazzy apt package "
                        "ros-jazzy-moveit-py); the planned reset runs only on a MoveIt install")
    from async_naf.nodes.reset_node import plan_home_with_moveit

    assert callable(plan_home_with_moveit)
