"""Guard node (``guard``, one per robot namespace): the safety layer between the policy and the arm.

Every joint-velocity command passes :class:`async_naf.acting.safety.SafetyFilter` (velocity, position with
braking distance, acceleration, hook-tip workspace box, latched e-stop, watchdog) before it reaches
ros2_control's ``forward_velocity_controller``. The policy's output is remapped to ``guard/commands_in``.

Why a separate node and not a check inside the policy node: ForwardCommandController keeps the last velocity
forever when its publisher dies. A check inside the policy process dies with it; this node outlives the
policy and its watchdog timer (``control_period_s / 4``, steady clock) sends zero when the policy goes
silent, crashes or hangs, or when joint states go stale. The guard is then the only publisher on the
controller's topic, and on exit (SIGINT/SIGTERM) it sends a last zero. What it cannot cover is its own
SIGKILL or a crash of this process: that needs the hardware's own watchdog (most arm drivers stop without
fresh commands) — say so in the robot's safety case.

Topics and services (relative to the robot namespace):
  sub guard/commands_in                     std_msgs/Float64MultiArray  reliable, depth 10 (7 rad/s, from policy)
  sub joint_states                          sensor_msgs/JointState      sensor QoS (arm joints, by name)
  sub guard/estop                           std_msgs/Bool               reliable + transient local:
                                                                        true latches the e-stop, false releases
  srv guard/estop                           std_srvs/SetBool            true = e-stop, false = release
  pub forward_velocity_controller/commands  std_msgs/Float64MultiArray  reliable, depth 10 (7 rad/s)
  pub /diagnostics                          diagnostic_msgs/DiagnosticArray (every intervention counted)
"""
from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import SetBool

from async_naf.acting.safety import SafetyConfig, SafetyFilter
from async_naf.nodes import _msgs
from async_naf.nodes._params import declare_from_dataclass, node_only
from async_naf.nodes._watch import PublisherAlarm
from async_naf.wire.joints import joint_index


class GuardNode(Node):
    """See the module docstring."""

    def __init__(self) -> None:
        super().__init__("guard")
        cfg = declare_from_dataclass(self, SafetyConfig, dynamic=())
        node_only(self, "diagnostics_period_s", 1.0)
        from async_naf.task.kinematics import ARM_JOINTS, ArmKinematics  # pinocchio: URDF limits and FK

        kin = ArmKinematics()
        self.cfg = SafetyFilter.with_limits(cfg, kin.lower, kin.upper, kin.velocity_limits)
        self.safety = SafetyFilter(self.cfg, fk=kin.ee_position)
        self._arm_names = tuple(ARM_JOINTS)
        self._index: dict[tuple[str, ...], np.ndarray | None] = {}
        self.drops: dict[str, int] = {}
        self._cmd_pub = self.create_publisher(Float64MultiArray, "forward_velocity_controller/commands",
                                              _msgs.COMMANDS)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(Float64MultiArray, "guard/commands_in", self._on_command, _msgs.COMMANDS)
        self.create_subscription(JointState, "joint_states", self._on_joint_states, _msgs.SENSOR)
        self.create_subscription(Bool, "guard/estop", self._on_estop_topic, _msgs.LATCHED)
        self.publisher_alarm = PublisherAlarm(self, "guard", cfg.publisher_watch)
        self.create_service(SetBool, "guard/estop", self._on_estop_service)
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(self.cfg.control_period_s / 4.0, self._on_tick, clock=steady)
        period = float(self.get_parameter("diagnostics_period_s").value)
        self.create_timer(period, self._publish_diagnostics, clock=steady)
        self.get_logger().info(f"guarding: period {self.cfg.control_period_s} s, watchdog "
                               f"{self.cfg.command_timeout_s} s (commands) / {self.cfg.state_timeout_s} s "
                               f"(joint states), e-stop {'latched' if self.safety.estopped else 'released'}")

    # ------------------------------------------------------------------ inputs
    def _drop(self, reason: str, text: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1
        self.get_logger().warning(f"{text} [{reason}: {self.drops[reason]} so far]", throttle_duration_sec=5.0)

    def _on_command(self, msg: Float64MultiArray) -> None:
        v = np.asarray(msg.data, dtype=float)
        if v.shape != (len(self._arm_names),):
            self._drop("command", f"command of size {v.size} (not {len(self._arm_names)}): arm stopped")
        self._send(self.safety.filter(v, time.monotonic()))

    def _on_joint_states(self, msg: JointState) -> None:
        names = tuple(msg.name)
        if names not in self._index:
            self._index[names] = joint_index(names, self._arm_names)
        index = self._index[names]
        pos = np.asarray(msg.position, dtype=float)
        if index is None or pos.size != len(names):
            self._drop("joint_state", f"joint_states without the arm joints {self._arm_names} (or naming one "
                                      "twice) dropped")
            return
        self.safety.on_joint_state(pos[index], time.monotonic())

    def _set_estop(self, stop: bool, source: str) -> None:
        if stop:
            self._send(self.safety.estop())
            self.get_logger().warning(f"E-STOP latched ({source}): zero velocity until released")
        elif self.safety.estopped:
            self.safety.release()
            self.get_logger().warning(f"e-stop released ({source})")

    def _on_estop_topic(self, msg: Bool) -> None:
        self._set_estop(bool(msg.data), "guard/estop topic")

    def _on_estop_service(self, request: Any, response: Any) -> Any:
        self._set_estop(bool(request.data), "guard/estop service")
        response.success = True
        response.message = "e-stop latched" if self.safety.estopped else "e-stop released"
        return response

    def _on_tick(self) -> None:
        out = self.safety.tick(time.monotonic())
        if out is not None:
            self._send(out)

    # ------------------------------------------------------------------ outputs
    def _send(self, command: np.ndarray) -> None:
        msg = Float64MultiArray()
        msg.data = command.tolist()
        self._cmd_pub.publish(msg)

    def shutdown_hook(self) -> None:
        """Process exit: the last command the controller keeps is zero, acknowledged by the subscribers
        (reliable QoS) before the process goes, within 1 s: a writer destroyed right after ``publish`` can
        take an undelivered sample with it."""
        self._send(np.zeros(len(self._arm_names)))
        self._cmd_pub.wait_for_all_acked(Duration(seconds=1.0))

    def _publish_diagnostics(self) -> None:
        counts = self.safety.counts
        values = {"estopped": int(self.safety.estopped), **{k: counts[k] for k in sorted(counts)},
                  **{f"dropped_{k}": v for k, v in self.drops.items()}}
        stopped = self.safety.stopped(time.monotonic())
        status = DiagnosticStatus(level=DiagnosticStatus.WARN if stopped else DiagnosticStatus.OK,
                                  name=self.get_fully_qualified_name(),
                                  message="stopped" if stopped else "guarding",
                                  hardware_id=self.get_namespace(),
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    """Entry point (``guard_node`` console script / ``python -m async_naf.nodes.guard_node``)."""
    from async_naf.nodes._main import run_node

    return run_node(GuardNode, "guard", args)


if __name__ == "__main__":
    sys.exit(main())
