"""Reset node (``reset``, one per robot namespace): the ``sim/reset`` service the collector calls, for any
ros2_control arm (gazebo, real, and the embedded sim in hardware mode).

A call drives the arm to the episode's start pose through ``forward_velocity_controller/commands`` (the
graph remaps it to ``guard/commands_in``, so the reset's commands pass the safety layer too), velocity and
acceleration limited, with a timeout; door tasks then hold still until the door-angle estimate says the door
is closed, logging what they wait for (:class:`async_naf.acting.reset.ResetMotion`). The collector then zeroes
the estimator itself (``door_angle/zero``, its ``zero_door_on_reset``), as on the embedded sim. The answer
is ``success: false`` with the reason when the arm does not get home or the door stays open.

With ``use_moveit:=true`` the way home is planned collision-free by ``moveit_py`` (imported only then; it
needs a MoveIt config of this arm with a trajectory controller), then the joint-space motion corrects the rest.

Topics and services (relative to the robot namespace):
  srv sim/reset                             std_srvs/Trigger            (blocks until home and door closed; served
                                                                         by the helper node ``reset_service`` in
                                                                         the same process, its own thread)
  sub joint_states                          sensor_msgs/JointState      sensor QoS (arm joints, by name)
  sub door/joint_states                     sensor_msgs/JointState      sensor QoS ('door_hinge', door tasks)
  pub forward_velocity_controller/commands  std_msgs/Float64MultiArray  reliable, depth 10 (7 rad/s)
  pub /diagnostics                          diagnostic_msgs/DiagnosticArray (resets, failures, blocked, phase)
"""
from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, ShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from async_naf.acting.reset import ResetConfig, ResetMotion
from async_naf.nodes import _msgs
from async_naf.nodes._params import declare_from_dataclass, node_only
from async_naf.wire.joints import joint_index, plausible

DOOR_JOINT = "door_hinge"


def plan_home_with_moveit(node_name: str, group: str, start_pose: np.ndarray) -> bool:
    """Plan and execute a collision-free way to ``start_pose`` with moveit_py (Jazzy API: MoveItPy,
    PlanningComponent.set_goal_state(robot_state=...), plan(), MoveItPy.execute(trajectory, controllers=[])).
    Returns whether a plan was found and executed. ImportError where moveit_py is not installed."""
    from moveit.core.robot_state import RobotState  # type: ignore[import-not-found]  # lazy: use_moveit only
    from moveit.planning import MoveItPy  # type: ignore[import-not-found]

    robot = MoveItPy(node_name=node_name)
    arm = robot.get_planning_component(group)
    arm.set_start_state_to_current_state()
    goal = RobotState(robot.get_robot_model())
    goal.set_joint_group_positions(group, np.asarray(start_pose, dtype=float))
    arm.set_goal_state(robot_state=goal)
    result = arm.plan()
    if not result:
        return False
    robot.execute(result.trajectory, controllers=[])
    return True


class ResetNode(Node):
    """See the module docstring."""

    def __init__(self) -> None:
        super().__init__("reset")
        self.cfg: ResetConfig = declare_from_dataclass(self, ResetConfig, dynamic=())
        node_only(self, "diagnostics_period_s", 1.0)
        from async_naf.task.kinematics import ARM_JOINTS

        self.motion = ResetMotion(self.cfg)  # ValueError (exit 2) for a door task without start_pose
        self._arm_names = tuple(ARM_JOINTS)
        self._index: dict[tuple[str, ...], np.ndarray | None] = {}
        self._q: np.ndarray | None = None
        self._qd: np.ndarray | None = None
        self._q_rx_ns = -1  # when the middleware received the last joint state (system clock, ns)
        self._reset_t0 = float("inf")  # when the current reset began (steady, s)
        self._reset_t0_ns = 2**63  # the same on the system clock, ns (what received times compare with)
        self._door: tuple[float, float] | None = None  # (angle rad, receive time s)
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self._closing = False  # the process is stopping: no reset starts any more (under _lock)
        self.counts: Counter[str] = Counter()
        self._last_wait_log = 0.0
        self._cmd_pub = self.create_publisher(Float64MultiArray, "forward_velocity_controller/commands",
                                              _msgs.COMMANDS)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # a callback of two arguments gets the message info too (rclpy's Subscription; its annotation says one)
        self.create_subscription(JointState, "joint_states", self._on_joint_states,  # type: ignore[arg-type]
                                 _msgs.SENSOR)
        if self.cfg.is_door:
            self.create_subscription(JointState, "door/joint_states", self._on_door, _msgs.SENSOR)
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(self.cfg.control_period_s, self._on_tick, clock=steady)
        self.create_timer(float(self.get_parameter("diagnostics_period_s").value), self._publish_diagnostics,
                          clock=steady)
        # The service call blocks until the reset ends, so it is served by a node of its own on an executor and
        # thread of its own; this node's single-threaded executor keeps taking joint states and running the
        # control timer meanwhile. (One MultiThreadedExecutor with the call blocking one of its threads spun a
        # core at 100 % in rclpy and starved the control timer for seconds: CI failures of test_reset_node.)
        # its own name kept against the process's `-r __node:=reset` (the launcher's and launch_ros's rename
        # applies to every node of the process: two nodes named /robot_<i>/reset answered its parameter services
        # at random); a node's local remapping comes before the process's
        self._service_node = rclpy.create_node("reset_service", namespace=self.get_namespace(),
                                               context=self.context,
                                               cli_args=["--ros-args", "-r", "__node:=reset_service"])
        self._service_node.create_service(Trigger, "sim/reset", self._on_reset)
        self._service_executor = SingleThreadedExecutor(context=self.context)
        self._service_executor.add_node(self._service_node)
        self._service_thread = threading.Thread(target=self._serve, name="reset_service", daemon=True)
        self._service_thread.start()
        self.get_logger().info(f"reset service ready: task={self.cfg.task} start pose "
                               f"{np.round(self.motion.start_target, 3).tolist()} rad")

    def _serve(self) -> None:
        """The service node's executor (its own thread) until shutdown."""
        try:
            self._service_executor.spin()
        except (ExternalShutdownException, ShutdownException):
            return  # the process is shutting down: nothing left to serve

    # ------------------------------------------------------------------ inputs
    def _on_joint_states(self, msg: JointState, info: Any) -> None:
        names = tuple(msg.name)
        if names not in self._index:
            self._index[names] = joint_index(names, self._arm_names)
        index = self._index[names]
        pos, vel = np.asarray(msg.position, dtype=float), np.asarray(msg.velocity, dtype=float)
        if index is None or pos.size != len(names) or vel.size != len(names):
            self.counts["dropped_joint_state"] += 1
            return
        q, qd = pos[index], vel[index]
        if not (plausible(q) and plausible(qd)):  # NaN, Inf, or a corrupt 1e39 (a waypoint the arm cannot reach)
            self.counts["dropped_joint_state"] += 1
            return
        # the time the middleware received it, not when this callback runs: a state that waited in the queue
        # behind a busy executor is as old as it is (a stale one must not count for a reset begun meanwhile)
        received = int(info.get("received_timestamp", 0)) if isinstance(info, dict) else 0
        self._q, self._qd, self._q_rx_ns = q, qd, received if received > 0 else time.time_ns()
        with self._lock:
            self.motion.observe(q)  # the way back (retrace), between resets

    def _on_door(self, msg: JointState) -> None:
        index = joint_index(tuple(msg.name), (DOOR_JOINT,))
        if index is None or len(msg.position) != len(msg.name):
            self.counts["dropped_door_state"] += 1
            return
        angle = float(msg.position[int(index[0])])
        if plausible(np.array([angle])):
            self._door = (angle, time.monotonic())
        else:
            self.counts["dropped_door_state"] += 1

    # ------------------------------------------------------------------ the reset
    def _on_tick(self) -> None:
        with self._lock:
            if self.motion.phase not in ("moving", "door"):
                return
            now = time.monotonic()
            angle, age = (self._door[0], now - self._door[1]) if self._door else (None, 0.0)
            # only a joint state received since the reset began: one from before the request (the arm
            # moved or was moved since) must not make it answer "at the start pose"
            fresh = self._q_rx_ns >= self._reset_t0_ns
            cmd, phase = self.motion.step(now, self._q if fresh else None, self._qd if fresh else None, angle, age)
        self._send(cmd)  # zero while waiting for the door and once at the end
        if phase in ("done", "failed"):
            self._finished.set()
        elif now - self._last_wait_log >= self.cfg.wait_log_period_s and self.motion.waiting_for:
            self._last_wait_log = now
            self.get_logger().info(f"reset: waiting for {self.motion.waiting_for}")

    def _on_reset(self, request: Any, response: Any) -> Any:
        del request
        self.counts["resets"] += 1
        if self.cfg.use_moveit:
            try:
                if not plan_home_with_moveit(f"{self.get_name()}_moveit", "arm", self.motion.start_target):
                    self.get_logger().warning("moveit_py found no plan home: joint-space motion only")
            except ImportError as exc:
                self.get_logger().error(f"use_moveit: moveit_py is not installed ({exc}): joint-space motion only")
        with self._lock:
            if self._closing:  # a call that came in while the process stops: the control loop runs no more
                response.success, response.message = False, "reset failed: the reset node is shutting down"
                return response
            self._finished.clear()
            self._last_wait_log = self._reset_t0 = time.monotonic()
            self._reset_t0_ns = time.time_ns()
            self.motion.start(self._reset_t0)
        budget = self.cfg.move_timeout_s + (self.cfg.door_timeout_s if self.cfg.door_timeout_s > 0 else 1e9) + 5.0
        self._finished.wait(budget)
        with self._lock:
            ok = self.motion.phase == "done"
            response.success = ok
            response.message = "at the start pose" + (", door closed" if self.cfg.is_door else "") if ok else \
                f"reset failed: {self.motion.error or 'no answer in time'}"
            if not ok:
                self.counts["failures"] += 1
                self.motion.phase = "failed"
        if not ok:
            self.get_logger().error(response.message)
        return response

    # ------------------------------------------------------------------ outputs
    def _send(self, command: np.ndarray) -> None:
        msg = Float64MultiArray()
        msg.data = command.tolist()
        self._cmd_pub.publish(msg)

    def shutdown_hook(self) -> None:
        """Process exit while resetting: a last zero command, and a pending service call answers (failed)."""
        with self._lock:  # no reset starts from here on (a call in between waited for a loop that runs no more)
            self._closing = True
            if self.motion.phase in ("moving", "door"):
                self._send(np.zeros(len(self._arm_names)))
                self.motion.phase, self.motion.error = "failed", "the reset node is shutting down"
        self._finished.set()  # (a service call waiting for the reset answers now)
        self._service_executor.shutdown(timeout_sec=1.0)
        # the service thread must be out of rclpy before its node goes and the process exits: a thread left in
        # the executor's wait made every SIGINT and SIGTERM end in "terminate called without an active
        # exception" (status 134)
        self._service_thread.join(timeout=5.0)
        if self._service_thread.is_alive():
            self.get_logger().warning("the reset service's thread did not stop within 5 s")
        self._service_node.destroy_node()

    def _publish_diagnostics(self) -> None:
        values = {"phase": self.motion.phase, "waiting_for": self.motion.waiting_for, "blocked": self.motion.blocked,
                  "retraced": self.motion.retraced, "cleared": self.motion.cleared, "way_back": len(self.motion.path),
                  **{k: self.counts[k] for k in sorted(self.counts)}}
        level = DiagnosticStatus.WARN if self.counts["failures"] else DiagnosticStatus.OK
        status = DiagnosticStatus(level=level, name=self.get_fully_qualified_name(), message="reset",
                                  hardware_id=self.get_namespace(),
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    """Entry point (``reset_node`` console script / ``python -m async_naf.nodes.reset_node``)."""
    from async_naf.nodes._main import run_node

    return run_node(ResetNode, "reset", args)


if __name__ == "__main__":
    sys.exit(main())
