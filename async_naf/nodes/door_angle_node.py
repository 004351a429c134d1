"""door_angle_node: door hinge angle from the door-leaf IMU (one per robot namespace).

Node name ``door_angle``. Topics (relative: put the node in the robot's namespace, e.g. ``/robot_0``):

subscribes
  door/imu             sensor_msgs/Imu          door-leaf IMU (gyro rad/s, accel m/s^2, covariances honoured;
                                                orientation ignored); sensor QoS (best effort)
publishes
  door/joint_states    sensor_msgs/JointState   name ['door_hinge'], position rad (+ opening, 0 closed),
                                                velocity rad/s, effort empty; header stamp = the IMU
                                                message's stamp; one per accepted IMU message; sensor QoS.
                                                In a composed robot, while nobody outside the process
                                                listens, one per burst of IMU samples handed over together
                                                (the sim's samples of one control step): the estimate of
                                                the burst's last sample, every sample still integrated
                                                (``coalesced`` on /diagnostics counts the ones not sent)
  /diagnostics         diagnostic_msgs/DiagnosticArray  samples, drops by reason, gaps, snaps, gyro bias,
                                                hinge axis, angle variance, opening direction (known,
                                                confirmed, revisions), excursions beyond the door stop
                                                and past closed (WARN beyond the stop: never clipped),
                                                extreme angles; every ``diagnostics_period_s``
                                                of wall time (steady clock, also under use_sim_time); "no IMU
                                                data" after 2 s of wall time without a message
services
  ~/zero               std_srvs/Trigger         "the door is closed now": angle to closed_angle_rad

Parameters: every field of :class:`async_naf.sensing.door_angle.DoorAngleConfig` (thresholds, closed angle, door
stop, optional known hinge axis; see config/door_angle.yaml), read-only, plus ``diagnostics_period_s``
(s) and ``time_jump_reset_s`` (s): IMU stamps this far behind or ahead of the last one are a glitch,
dropped and counted (``stamp_glitches``), unless ``JUMP_CONFIRM`` (:mod:`async_naf.common.stamps`) of them in a
row go on from each other. Then, behind, the clock jumped back (a replayed bag looping, a restarted simulation)
and the estimate restarts (door closed, calibration kept) instead of dropping everything that follows as out of
order; ahead, the stream was away (a gap, which the estimator handles).

Bad input (NaN/Inf, readings beyond any IMU's range, duplicate or out-of-order stamps, a stamp far from the
stream's) is dropped, counted and logged (throttled); it never stops the node.
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Imu, JointState
from std_srvs.srv import Trigger

from async_naf.common.stamps import StampGuard
from async_naf.nodes import _local
from async_naf.nodes._msgs import IMU, SENSOR, ImuAdapter, JointStateAdapter
from async_naf.nodes._params import declare_from_dataclass, node_only
from async_naf.sensing.door_angle import DoorAngleConfig, DoorAngleEstimator, DoorAngleState, update_guarded
from async_naf.wire.imu import ImuSample
from async_naf.wire.joints import NO_VALUES, JointStates

JOINT_NAME = "door_hinge"


class DoorAngleNode(Node):
    """IMU in, door hinge JointState out; see the module docstring."""

    def __init__(self, **kwargs) -> None:
        super().__init__("door_angle", **kwargs)
        # parameters
        self.config = declare_from_dataclass(self, DoorAngleConfig, dynamic=())
        diag_period = node_only(self, "diagnostics_period_s", 1.0)
        self.time_jump_reset_s = node_only(self, "time_jump_reset_s", 1.0)  # = IMU_JUMP_S (a test)
        # core
        self.estimator = DoorAngleEstimator(self.config)
        self.stamps = StampGuard(self.time_jump_reset_s)  # far stamps: a glitch, or (confirmed) a time jump
        self.coalesced = 0  # estimates not published: a newer IMU sample of the same burst followed (bus only)
        self._beyond_stop_logged = 0
        self._last_msg_wall_ns: int | None = None  # steady clock: "no IMU data" means none for 2 s of wall time
        # steady clock: with use_sim_time the node clock follows /clock, which stands still when the sim does
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        # pubs/subs/services/timers
        self.joint_pub = _local.create_publisher(self, JointState, "door/joint_states", SENSOR,
                                                 adapter=JointStateAdapter())
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", QoSProfile(depth=10))
        # ImuSample values (type adaptation: from the sim in this process without an Imu message)
        self.imu_sub = _local.create_subscription(self, Imu, "door/imu", self.on_imu, IMU, adapter=ImuAdapter(),
                                                  on_invalid=self._on_invalid_imu)
        self.zero_srv = self.create_service(Trigger, "~/zero", self.on_zero)
        self.diag_timer = self.create_timer(diag_period, self.publish_diagnostics, clock=self._steady)
        axis = "identified online" if self.config.hinge_axis is None else f"configured {self.config.hinge_axis}"
        self.get_logger().info(f"door angle from {self.imu_sub.topic_name}: hinge axis {axis}; door assumed closed")

    def on_imu(self, sample: ImuSample) -> None:
        """One IMU sample (header stamp in ns, sensor frame): estimate, then publish the door state."""
        last = self.stamps.newest_ns
        verdict, state = update_guarded(self.estimator, self.stamps, sample)
        if verdict == StampGuard.DROP:
            self.get_logger().warning(f"IMU stamp {sample.stamp_ns * 1e-9:.3f} s far from the stream's "
                                      f"({(last or 0) * 1e-9:.3f} s): dropped ({self.stamps.glitches} so far)",
                                      throttle_duration_sec=2.0)
            return
        if verdict == StampGuard.JUMP:
            self.get_logger().warning(f"IMU time jumped {(sample.stamp_ns - (last or 0)) * 1e-9:+.2f} s: "
                                      "estimate restarted (door assumed closed, calibration kept)")
        self._last_msg_wall_ns = time.monotonic_ns()  # the steady clock's (CLOCK_MONOTONIC), without an rclpy call
        if state is None:
            drops = ", ".join(f"{k}={v}" for k, v in self.estimator.dropped.items() if v)
            self.get_logger().warning(f"IMU message dropped ({drops} so far)", throttle_duration_sec=2.0)
            return
        if self.estimator.beyond_stop != self._beyond_stop_logged:
            self._beyond_stop_logged = self.estimator.beyond_stop
            self.get_logger().warning(
                f"door angle {state.angle:.3f} rad beyond the door stop {self.config.stop_angle_rad:.3f} rad "
                f"({self.estimator.beyond_stop} excursion(s)): kept, not clipped", throttle_duration_sec=5.0)
        if _local.more_queued(self.imu_sub) and _local.heard_only_here(self.joint_pub):
            self.coalesced += 1  # a newer sample of the same burst follows at once: only its estimate is sent
            if _local.recorded(self.joint_pub):  # a recorded run's bag still gets every estimate
                self.joint_pub.record(self._estimate(sample.stamp_ns, state))
            return
        self.joint_pub.publish(self._estimate(sample.stamp_ns, state))

    @staticmethod
    def _estimate(stamp_ns: int, state: DoorAngleState) -> JointStates:
        return JointStates(stamp_ns, (JOINT_NAME,), np.array([state.angle]), np.array([state.velocity]), NO_VALUES)

    def _on_invalid_imu(self, exc: ValueError) -> None:
        self.estimator.dropped["invalid"] += 1
        self.get_logger().warning(f"IMU message dropped: {exc}", throttle_duration_sec=2.0)

    def on_zero(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.estimator.zero()
        response.success = True
        response.message = f"door angle set to closed ({self.config.closed_angle_rad:.4f} rad)"
        self.get_logger().info(response.message)
        return response

    def publish_diagnostics(self) -> None:
        est = self.estimator
        status = DiagnosticStatus()
        status.name = f"{self.get_fully_qualified_name()}: estimator"
        status.hardware_id = "door_imu"
        now = time.monotonic_ns()
        stale = self._last_msg_wall_ns is None or now - self._last_msg_wall_ns > 2e9
        dropped = sum(est.dropped.values()) + self.stamps.glitches
        # every cause that holds, in this order (one drop early on used to hide the door stop's warning for good)
        causes = [text for on, text in (
            (stale, "no IMU data"),
            (not est.sign_known, "opening direction not known yet (no swing seen)"),
            (dropped, f"{dropped} IMU message(s) dropped"),
            (est.beyond_stop, f"{est.beyond_stop} excursion(s) beyond the door stop (largest {est.max_angle:.3f} rad "
                              f"> stop_angle_rad {self.config.stop_angle_rad:.3f}); not clipped")) if on]
        status.level = DiagnosticStatus.WARN if causes else DiagnosticStatus.OK
        status.message = "; ".join(causes) or "ok"
        state = est.state
        axis = est.axis
        values = {
            "samples": est.samples,
            "covariances_ignored": est.covariances_ignored,
            **{f"dropped_{k}": v for k, v in est.dropped.items()},
            "gaps": est.gaps,
            "snaps_to_closed": est.snaps,
            "time_resets": self.stamps.jumps,
            "stamp_glitches": self.stamps.glitches,
            "coalesced": self.coalesced,
            "angle_rad": f"{state.angle:.5f}",
            "angle_std_rad": f"{math.sqrt(state.variance):.5g}",
            "variance_rad2": f"{state.variance:.3e}",
            "at_rest": est.at_rest,
            "gyro_bias_rad_s": "[" + ", ".join(f"{b:.6f}" for b in est.bias) + "]",
            "gyro_bias_std_rad_s": f"{est.bias_std:.2e}",
            "hinge_axis_sensor": "none" if axis is None else "[" + ", ".join(f"{v:.5f}" for v in axis) + "]",
            "hinge_axis_source": est.axis_source,
            "opening_sign_known": est.sign_known,
            "opening_sign_confirmed": est.sign_confirmed,
            "opening_sign_revisions": est.sign_revisions,
            "beyond_stop": est.beyond_stop,
            "past_closed": est.past_closed,
            "frameless": est.frameless,
            "max_angle_rad": f"{est.max_angle:.5f}",
            "min_angle_rad": f"{est.min_angle:.5f}",
        }
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [status]
        self.diag_pub.publish(arr)


def main(args: list[str] | None = None) -> int:
    """Entry point (console script ``door_angle_node``; ``python -m async_naf.nodes.door_angle_node``).

    SIGINT and SIGTERM stop the node cleanly (exit status 0); an invalid parameter exits with status 2.
    """
    from async_naf.nodes._main import run_node

    return run_node(DoorAngleNode, "door_angle_node", args)


if __name__ == "__main__":
    sys.exit(main())
