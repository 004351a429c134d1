"""sim_node: the embedded MuJoCo arm + latched door behind ros2_control-style topics (one per robot namespace).

Node name ``sim``. Topics (relative: put the node in the robot's namespace, e.g. ``/robot_0``):

publishes
  joint_states                  sensor_msgs/JointState   arm joints (ARM_JOINT_NAMES order): position rad,
                                                         velocity rad/s, effort N m; sensor QoS
  door/imu                      sensor_msgs/Imu          door-leaf IMU, frame door_imu_link, one message per
                                                         sample (imu.rate_hz; a burst per control step),
                                                         covariances from the noise model, no orientation
                                                         (orientation_covariance[0] = -1); sensor QoS
  ground_truth/door_state       sensor_msgs/JointState   EVALUATION ONLY: ['door_hinge', 'door_handle']
                                                         position rad, velocity rad/s; sensor QoS
  <clock_topic> (/clock)        rosgraph_msgs/Clock      simulated time (for use_sim_time); reliable depth 1
  /diagnostics                  diagnostic_msgs/DiagnosticArray  command counters, 1 Hz wall time
subscribes
  forward_velocity_controller/commands  std_msgs/Float64MultiArray  7 joint velocities, rad/s; reliable
                                                         depth 10. Wrong length or non-finite values:
                                                         rejected, counted, logged, never applied.
services
  ~/reset                       std_srvs/Trigger         arm to its (randomised) start pose, door closed

Hardware mode (``hardware: true``, ``async-naf train --backend hardware``): only what a ros2_control arm
gives - joint_states, door/imu and the command topic; no ~/reset, no ground_truth/door_state, no clock -
paced to wall time; with ``door_closer_torque`` > 0 a door closer shuts the door once the arm has held still
(zero command) for ``door_closer_delay_s``. Episodes are then reset by the reset node, as on a real arm.

Stepping: ``realtime: false`` (lockstep) steps once per accepted command and then publishes; while no command
arrives it re-publishes the current state every 0.5 s (wall) so that a late-joining policy gets its first
observation. ``realtime: true`` steps on a wall timer at the control period with the latest command (zero
velocity when none arrived within ``command_timeout_s``). All header stamps are simulated time.

Parameters: every field of :class:`async_naf.sim.SimConfig` (nested with dots: ``imu.rate_hz``,
``door.width``, ``randomization.physics``, ...; see config/sim.yaml) plus ``seed`` (int).
"""
from __future__ import annotations

import sys
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from async_naf.nodes import _local
from async_naf.nodes._msgs import COMMANDS, IMU, SENSOR, CommandAdapter, ImuAdapter, JointStateAdapter
from async_naf.nodes._params import declare_from_dataclass
from async_naf.sim import ARM_JOINT_NAMES, ArmDoorSim, SimConfig
from async_naf.task.latch import StillTimer
from async_naf.wire.joints import NO_VALUES, JointStates, s_to_stamp_ns

DOOR_JOINT_NAMES = ("door_hinge", "door_handle")
IMU_FRAME = "door_imu_link"
IDLE_REPUBLISH_S = 0.5




class SimNode(Node):
    """ROS wrapper of :class:`ArmDoorSim` (see module docstring)."""

    def __init__(self) -> None:
        super().__init__("sim")
        # parameters
        self.config: SimConfig = declare_from_dataclass(self, SimConfig)
        seed = int(self.declare_parameter("seed", 0).value)
        # core objects
        self.sim = ArmDoorSim(self.config, seed=seed)
        self.sim.reset(randomize=True)
        self.counts = {"received": 0, "applied": 0, "rejected_wrong_length": 0, "rejected_non_finite": 0,
                       "steps": 0, "resets": 0}
        self._latest = np.zeros(7)
        self._latest_wall = -float("inf")
        self._last_publish_wall = time.monotonic()
        # publishers, subscriptions, services, timers
        # values, not messages (type adaptation): nodes in this process get them without a message built
        joints = JointStateAdapter()
        self.joint_pub = _local.create_publisher(self, JointState, "joint_states", SENSOR, adapter=joints)
        self.imu_pub = _local.create_publisher(self, Imu, "door/imu", IMU, adapter=ImuAdapter(IMU_FRAME))
        hardware = self.config.hardware  # plain hardware: no ground truth, no clock, no reset service
        self.truth_pub = None if hardware else _local.create_publisher(self, JointState, "ground_truth/door_state",
                                                                          SENSOR, adapter=joints)
        # through the bus: in a composed robot the clock reaches DDS only while someone listens (use_sim_time)
        self.clock_pub = (_local.create_publisher(self, ClockMsg, self.config.clock_topic,
                                                  QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
                          if self.config.clock_topic and not hardware else None)
        self._still = StillTimer(self.config.door_closer_delay_s, since=time.monotonic())  # hardware: the closer
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        _local.create_subscription(self, Float64MultiArray, "forward_velocity_controller/commands", self.on_command,
                                   COMMANDS, adapter=CommandAdapter())
        if not hardware:
            self.create_service(Trigger, "~/reset", self.on_reset)
        # steady clock: the node clock follows /clock under use_sim_time, and that is this node's own output
        # (it stands still until the sim steps): the pacing, idle and diagnostics timers run on wall time
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        if self.config.realtime:
            self.create_timer(self.config.control_period_s, self.on_realtime_tick, clock=steady)
        else:
            self.create_timer(IDLE_REPUBLISH_S, self.on_idle, clock=steady)
        self.create_timer(1.0, self.publish_diagnostics, clock=steady)
        self.publish_state([])
        self.get_logger().info(
            f"sim ready: task={self.config.task} realtime={self.config.realtime} "
            f"control_period={self.config.control_period_s}s imu={self.config.imu.rate_hz}Hz"
        )

    # ------------------------------------------------------------------------------------ callbacks
    def on_command(self, command: np.ndarray) -> None:
        """Validate a velocity command (rad/s, ARM_JOINT_NAMES order); lockstep: step once with it; realtime:
        keep it for the timer."""
        self.counts["received"] += 1
        cmd = np.asarray(command, dtype=float)
        if cmd.shape != (7,):
            self._reject("rejected_wrong_length", f"{cmd.size} values, expected 7 ({', '.join(ARM_JOINT_NAMES)})")
            return
        if not np.isfinite(cmd).all():
            self._reject("rejected_non_finite", "non-finite value(s)")
            return
        self.counts["applied"] += 1
        if self.config.realtime:
            self._latest, self._latest_wall = cmd, time.monotonic()
        else:
            self.step_and_publish(cmd)

    def on_realtime_tick(self) -> None:
        """Realtime mode: one control step with the latest command (zero if stale)."""
        now = time.monotonic()
        fresh = now - self._latest_wall <= self.config.command_timeout_s
        cmd = self._latest if fresh else np.zeros(7)
        if self.config.hardware and self.config.door_closer_torque > 0.0:
            closing = self._still.update(now, not (cmd != 0.0).any())
            if closing and not self.sim.door_closing:
                self.counts["door_closer"] = self.counts.get("door_closer", 0) + 1
            self.sim.door_closing = closing
        self.step_and_publish(cmd)

    def on_idle(self) -> None:
        """Lockstep mode: re-publish the state while no command arrives (first observation for late joiners)."""
        if time.monotonic() - self._last_publish_wall >= IDLE_REPUBLISH_S:
            self.publish_state([])

    def on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        """~/reset: arm to its start pose (randomised), door closed and latched; publishes the new state."""
        del request
        self.sim.reset(randomize=True)
        self.counts["resets"] += 1
        self._latest, self._latest_wall = np.zeros(7), -float("inf")
        self.publish_state([])
        response.success = True
        response.message = f"reset at sim time {self.sim.time_s:.3f} s"
        return response

    # -------------------------------------------------------------------------------------- helpers
    def _reject(self, reason: str, detail: str) -> None:
        self.counts[reason] += 1
        rejected = self.counts["rejected_wrong_length"] + self.counts["rejected_non_finite"]
        self.get_logger().warning(f"command rejected ({reason}): {detail}; {rejected} rejected so far",
                                  throttle_duration_sec=1.0)

    def step_and_publish(self, cmd: np.ndarray) -> None:
        samples = self.sim.step(cmd)
        self.counts["steps"] += 1
        self.publish_state(samples)

    def publish_state(self, imu_samples: list) -> None:
        """Publish IMU samples, joint states, ground truth and the clock at the current sim time."""
        t = self.sim.time_s
        for s in imu_samples:
            self.imu_pub.publish(s)
        stamp_ns = s_to_stamp_ns(t)
        sim = self.sim
        self.joint_pub.publish(JointStates(stamp_ns, ARM_JOINT_NAMES, sim.joint_positions, sim.joint_velocities,
                                           sim.data.actuator_force.copy()))
        if self.truth_pub is not None:
            truth = sim.door_state()
            self.truth_pub.publish(JointStates(
                stamp_ns, DOOR_JOINT_NAMES, np.array([truth.hinge_angle, truth.handle_angle]),
                np.array([truth.hinge_velocity, float(sim.data.qvel[sim.compiled.handle_dof])]), NO_VALUES))
        if self.clock_pub is not None and self.clock_pub.get_subscription_count() > 0:  # else nobody to tell
            clock = ClockMsg()
            clock.clock.sec, clock.clock.nanosec = divmod(stamp_ns, 1_000_000_000)
            self.clock_pub.publish(clock)
        self._last_publish_wall = time.monotonic()

    def publish_diagnostics(self) -> None:
        status = DiagnosticStatus()
        status.name = f"{self.get_fully_qualified_name()}: commands"
        status.hardware_id = "async_naf_embedded_sim"
        rejected = self.counts["rejected_wrong_length"] + self.counts["rejected_non_finite"]
        status.level = DiagnosticStatus.WARN if rejected else DiagnosticStatus.OK
        status.message = f"{rejected} command(s) rejected" if rejected else "ok"
        status.values = [KeyValue(key=k, value=str(v)) for k, v in self.counts.items()]
        status.values.append(KeyValue(key="sim_time_s", value=f"{self.sim.time_s:.3f}"))
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [status]
        self.diag_pub.publish(arr)


def main(args: list[str] | None = None) -> int:
    """Entry point (console script ``sim_node``; ``python -m async_naf.nodes.sim_node``).

    SIGINT and SIGTERM stop the node cleanly (exit status 0); an invalid parameter exits with status 2.
    """
    from async_naf.nodes._main import run_node

    return run_node(SimNode, "sim_node", args)


if __name__ == "__main__":
    sys.exit(main())
