"""Policy node (``policy``, one per robot namespace): observations -> mu(x) + noise -> joint velocities.

A lifecycle node: it only commands the arm while *active* (``autostart:=true`` configures and activates it
at start, as the embedded simulation wants; a real arm uses ``autostart:=false`` and
``ros2 lifecycle set /robot_0/policy activate``). Between episodes (goal ``active`` = 0) it holds still.

Topics (relative to the robot namespace):
  sub joint_states                          sensor_msgs/JointState      sensor QoS (arm joints, by name)
  sub door/joint_states                     sensor_msgs/JointState      sensor QoS ('door_hinge', door tasks)
  sub task/goal                             std_msgs/Float64MultiArray  reliable + transient local (async_naf.goal.v1)
  sub /trainer/weights                      std_msgs/UInt8MultiArray    reliable + transient local (async_naf.weights.v1)
  pub forward_velocity_controller/commands  std_msgs/Float64MultiArray  reliable, depth 10 (7 rad/s)
  pub policy/step                           std_msgs/Float64MultiArray  reliable, depth 100 (async_naf.policy_step.v1)
  pub /diagnostics                          diagnostic_msgs/DiagnosticArray (counters)

Acting: ``trigger=joint_states`` acts once per joint_states message (the embedded sim publishes one per
control step; in lockstep the sim steps once per command, so the two nodes drive each other); door tasks
first wait up to ``door_wait_s`` for a door-angle estimate as new as the joint state (a steady-clock timer; the
executor is never blocked) and then act with the newest one. ``trigger=timer`` acts every
``control_period_s`` on the newest joint state (real arms), commanding zero if it is stale.
No learning happens here: the greedy policy is a few small numpy matrix products.
"""
from __future__ import annotations

import array
import math
import sys
import time
from collections import Counter
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, UInt8MultiArray

from async_naf.wire import layouts
from async_naf.wire.layouts import LayoutError
from async_naf.nodes import _msgs
from async_naf.nodes._params import declare_from_dataclass, watch_parameters
from async_naf.acting.config import PolicyNodeConfig

DOOR_JOINT = "door_hinge"
DYNAMIC_PARAMS = {"eval_mode", "exploration_scale", "noise.scale", "noise.scale_final", "noise.anneal_steps",
                  "noise.kind", "noise.theta", "noise.dt"}


def _as_array(values: Any) -> np.ndarray:
    """A float64[] message field (array.array('d') from the middleware) as numpy, without a copy."""
    if isinstance(values, array.array) and values.typecode == "d":
        return np.frombuffer(values, dtype=np.float64) if len(values) else np.zeros(0)
    return np.asarray(values, dtype=np.float64)


class _JointSample:
    """One received joint state: stamp (s), positions (7,) rad, velocities (7,) rad/s, receive time."""

    __slots__ = ("stamp", "q", "qd", "received", "acted")

    def __init__(self, stamp: float, q: np.ndarray, qd: np.ndarray, received: float) -> None:
        self.stamp, self.q, self.qd, self.received, self.acted = stamp, q, qd, received, False


class PolicyNode(LifecycleNode):
    """See the module docstring."""

    def __init__(self) -> None:
        super().__init__("policy")
        self.cfg: PolicyNodeConfig = declare_from_dataclass(self, PolicyNodeConfig, dynamic=DYNAMIC_PARAMS)
        watch_parameters(self, lambda: self.cfg, self._on_params)
        self.declare_parameter("diagnostics_period_s", 1.0)
        self.drops: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.runner: Any = None
        self._active = False
        self._goal: layouts.Goal | None = None
        self._episode_active = False
        self._deactivated_at = 0.0
        self._step = 0
        self._js: _JointSample | None = None
        self._pending: _JointSample | None = None
        self._door: tuple[float, float, float] | None = None  # stamp s, angle rad, velocity rad/s
        self._door_prior = False
        self._episode_t0: float | None = None
        self._door_min_stamp: float | None = None
        self._last_cmd: Any = None
        self._last_act = 0.0
        self._last_stamp = -float("inf")
        self._joint_index: dict[tuple[str, ...], np.ndarray | None] = {}
        self._arm_names: tuple[str, ...] = ()
        self._weights_version = -1
        self._cmd_pub: Any = None
        self._entities: tuple[list, list, list] = ([], [], [])
        if self.cfg.autostart:
            self.trigger_configure()
            self.trigger_activate()

    # ---------------------------------------------------------------------------------- lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        from async_naf.task.kinematics import ARM_JOINTS  # ARM_JOINT_NAMES order, without importing the simulator
        from async_naf.acting.runner import PolicyRunner

        try:
            self.runner = PolicyRunner(self.cfg)
        except ValueError as exc:
            self.get_logger().error(f"configuration failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self._arm_names = tuple(ARM_JOINTS)
        self._cmd_pub = self.create_publisher(Float64MultiArray, "forward_velocity_controller/commands",
                                              _msgs.COMMANDS)
        self._step_pub = self.create_publisher(Float64MultiArray, "policy/step", _msgs.STREAM)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        subs = [self.create_subscription(JointState, "joint_states", self._on_joint_states, _msgs.SENSOR),
                self.create_subscription(Float64MultiArray, "task/goal", self._on_goal, _msgs.LATCHED),
                self.create_subscription(UInt8MultiArray, "/trainer/weights", self._on_weights, _msgs.LATCHED)]
        if self.runner.task.is_door:
            subs.append(self.create_subscription(JointState, "door/joint_states", self._on_door, _msgs.SENSOR))
        # guards run on the steady clock: with use_sim_time a lockstep sim's clock stands still while the
        # graph waits, so a sim-time timer would never fire exactly when it is needed
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        # a periodic check of the pending joint state's deadline (no one-shot timer cancel/reset: simpler
        # and robust with every executor)
        timers = [self.create_timer(max(self.cfg.door_wait_s / 4.0, 0.002), self._on_door_timeout, clock=steady)] \
            if self.runner.task.is_door and self.cfg.door_wait_s > 0 else []
        if self.cfg.trigger == "timer":  # the control rate follows ROS time (sim time in Gazebo)
            timers.append(self.create_timer(self.cfg.control_period_s, self._on_control_timer))
        if self.cfg.lockstep:
            timers.append(self.create_timer(self.cfg.stall_resend_s / 2.0, self._on_stall_guard, clock=steady))
        period = float(self.get_parameter("diagnostics_period_s").value)
        timers.append(self.create_timer(period, self._publish_diagnostics, clock=steady))
        self._entities = (subs, timers, [self._cmd_pub, self._step_pub, self._diag_pub])
        self.get_logger().info(f"configured: task={self.cfg.task} obs_dim={self.runner.task.obs_dim} "
                               f"trigger={self.cfg.trigger} lockstep={self.cfg.lockstep}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = True
        self.get_logger().info("active: commanding the arm")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._stop_arm()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        subs, timers, pubs = self._entities
        for sub in subs:
            self.destroy_subscription(sub)
        for timer in timers:
            self.destroy_timer(timer)
        for pub in pubs:
            self.destroy_publisher(pub)
        self._cmd_pub = None
        self._entities = ([], [], [])
        return TransitionCallbackReturn.SUCCESS

    def shutdown_hook(self) -> None:
        """Process exit: stop the arm (zero velocity) if the node was commanding it."""
        if self._active:
            self._stop_arm()

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._active:
            self._stop_arm()
        self._active = False
        return TransitionCallbackReturn.SUCCESS

    # ---------------------------------------------------------------------------------- parameters
    def _on_params(self, cfg: PolicyNodeConfig) -> None:
        if cfg.noise != self.cfg.noise and self.runner is not None:
            self.runner.set_noise_config(cfg.noise)
        self.cfg = cfg
        self.get_logger().info(f"eval_mode={cfg.eval_mode} exploration_scale={cfg.exploration_scale}")

    # ---------------------------------------------------------------------------------- inputs
    def _on_weights(self, msg: UInt8MultiArray) -> None:
        try:
            policy = self.runner.load_weights(layouts.decode_weights(_msgs.from_msg(msg)))
        except (LayoutError, ValueError) as exc:
            self._drop("weights", f"malformed weights dropped (keeping the last good ones): {exc}")
            return
        self._weights_version = policy.update_count
        self.counts["weights_loaded"] += 1

    def _on_goal(self, msg: Float64MultiArray) -> None:
        try:
            goal = layouts.decode_goal(_msgs.from_msg(msg), goal_dim=self.runner.task.goal_dim)
        except LayoutError as exc:
            self._drop("goal", f"malformed goal dropped: {exc}")
            return
        starting = goal.active and (self._goal is None or goal.episode != self._goal.episode
                                    or not self._episode_active)
        self._goal, self._episode_active = goal, goal.active
        if starting:
            self._start_episode()
        elif not goal.active:
            self._pending = None
            self._deactivated_at = time.monotonic()
            self._stop_arm()

    def _start_episode(self) -> None:
        self.runner.reset_noise()
        self._step = 0
        self._last_cmd = None
        self._last_stamp = -float("inf")
        self._door_prior = True  # after a reset the door is closed: angle 0 until the estimator says more
        self._episode_t0 = None
        js = self._js
        # door estimates stamped at or before the newest joint state seen at the reset describe the door
        # before the reset: ignored (they may still be in flight)
        self._door_min_stamp = js.stamp if js is not None else None
        self._door = None  # the previous episode's estimate is not this one's (the door was reset)
        self._last_act = time.monotonic()
        if self.cfg.lockstep and js is not None and not js.acted and js.received > self._deactivated_at:
            self._on_new_joint_state(js)  # the reset's joint state came before the goal

    def _on_joint_states(self, msg: JointState) -> None:
        js = self._parse_joint_state(msg)
        if js is None:
            return
        self._js = js
        if self.cfg.trigger == "joint_states":
            self._on_new_joint_state(js)

    def _on_door(self, msg: JointState) -> None:
        try:
            i = list(msg.name).index(DOOR_JOINT)
            angle, vel = float(msg.position[i]), float(msg.velocity[i]) if len(msg.velocity) > i else 0.0
        except (ValueError, IndexError):
            self._drop("door_state", f"door/joint_states without '{DOOR_JOINT}' position dropped")
            return
        if not (np.isfinite(angle) and np.isfinite(vel)):
            self._drop("door_state", "non-finite door estimate dropped")
            return
        stamp = _msgs.stamp_to_s(msg.header.stamp)
        if self._door_min_stamp is not None and stamp <= self._door_min_stamp:
            self.counts["door_before_episode"] += 1  # an estimate from before the reset: not this episode's
            return
        self._door = (stamp, angle, vel)
        self._door_prior = False
        pending = self._pending
        if pending is not None and self._door[0] >= pending.stamp - self.cfg.door_stamp_tolerance_s:
            self._act(pending)

    def _on_door_timeout(self) -> None:
        pending = self._pending
        if pending is not None and time.monotonic() - pending.received >= self.cfg.door_wait_s:
            self.counts["door_late"] += 1
            self._act(pending)

    def _on_control_timer(self) -> None:
        js = self._js
        if not self._can_act():
            return
        if js is None or time.monotonic() - js.received > self.cfg.joint_state_timeout_s:
            self._drop("joint_state_stale", "no fresh joint state: commanding zero velocity")
            self._stop_arm()
            return
        self._on_new_joint_state(js, allow_repeat=True)

    def _on_stall_guard(self) -> None:
        """Lockstep: the sim steps once per command; if a command or joint state was lost, nudge it."""
        if not self._can_act() or time.monotonic() - self._last_act < self.cfg.stall_resend_s:
            return
        js = self._js
        if js is not None and not js.acted:
            self._on_new_joint_state(js)
        elif self._last_cmd is not None:
            self.counts["stall_resends"] += 1
            self._last_act = time.monotonic()
            self._cmd_pub.publish(self._last_cmd)

    # ---------------------------------------------------------------------------------- acting
    def _can_act(self) -> bool:
        return self._active and self._episode_active and self._goal is not None

    def _on_new_joint_state(self, js: _JointSample, allow_repeat: bool = False) -> None:
        if not self._can_act() or (js.acted and not allow_repeat):
            return
        if not allow_repeat and js.stamp <= self._last_stamp and self._last_cmd is not None:
            # the same state again (lockstep sim re-publishing while idle): the last command was lost
            js.acted = True
            self.counts["repeated_state"] += 1
            self._last_act = time.monotonic()
            self._cmd_pub.publish(self._last_cmd)
            return
        if not self.runner.task.is_door or self._door_fresh(js):
            self._act(js)
            return
        if self.cfg.door_wait_s <= 0.0:
            self._act(js)
            return
        self._pending = js  # wait (bounded) for a door estimate at least as new as this joint state

    def _door_fresh(self, js: _JointSample) -> bool:
        return self._door is not None and self._door[0] >= js.stamp - self.cfg.door_stamp_tolerance_s

    def _act(self, js: _JointSample) -> None:
        self._pending = None
        js.acted = True
        if not self._can_act():
            return
        door_angle, door_vel = self._door_estimate(js)
        if door_angle is None:
            self._stop_arm()
            return
        cfg = self.cfg
        explore = not cfg.eval_mode and (self.runner.policy is not None or cfg.explore_before_weights)
        if self.runner.policy is None and not explore:
            return
        try:
            state = self.runner.state(js.q, js.qd, door_angle, door_vel)
            obs, action = self.runner.act(state, self._goal.goal, explore, cfg.exploration_scale)
        except ValueError as exc:
            self._drop("observation", f"cannot act: {exc}")
            return
        cmd = Float64MultiArray()
        cmd.data = action.tolist()
        self._cmd_pub.publish(cmd)
        self._last_cmd, self._last_act, self._last_stamp = cmd, time.monotonic(), js.stamp
        self.counts["steps"] += 1
        if cfg.publish_steps:
            step = layouts.PolicyStep(js.stamp, self._goal.episode, self._step, obs, action, js.q, js.qd,
                                      state.ee_pos, door_angle, door_vel)
            self._step_pub.publish(_msgs.to_msg(layouts.encode_policy_step(step), Float64MultiArray))
        self._step += 1

    def _door_estimate(self, js: _JointSample) -> tuple[float | None, float]:
        if not self.runner.task.is_door:
            return 0.0, 0.0
        door = self._door
        if self._episode_t0 is None:
            self._episode_t0 = js.stamp
            self._door_min_stamp = max(js.stamp, self._door_min_stamp or -math.inf)
        if door is None or (self._door_prior and door[0] < js.stamp - self.cfg.door_stamp_tolerance_s):
            if js.stamp - self._episode_t0 <= self.cfg.door_stale_s:
                return 0.0, 0.0  # episode start: the door was just reset closed
            self._drop("door_missing", "no door-angle estimate (is door_angle running?): holding still")
            return None, 0.0
        if js.stamp - door[0] > self.cfg.door_stale_s:
            self._drop("door_stale", f"door estimate {js.stamp - door[0]:.3f} s older than the joint state")
            return None, 0.0
        return door[1], door[2]

    def _stop_arm(self) -> None:
        if self._cmd_pub is None:
            return
        cmd = Float64MultiArray()
        cmd.data = [0.0] * len(self._arm_names or range(7))
        self._cmd_pub.publish(cmd)

    # ---------------------------------------------------------------------------------- helpers
    def _parse_joint_state(self, msg: JointState) -> _JointSample | None:
        names = tuple(msg.name)
        index = self._joint_index.get(names)
        if index is None and names not in self._joint_index:
            try:
                index = np.array([names.index(n) for n in self._arm_names])
            except ValueError:
                index = None
            self._joint_index[names] = index
        if index is None:
            self._drop("joint_state", f"joint_states lacks arm joints {self._arm_names}")
            return None
        pos, vel = _as_array(msg.position), _as_array(msg.velocity)
        if pos.size != len(names) or vel.size != len(names):
            self._drop("joint_state", "joint_states position/velocity sizes do not match the names")
            return None
        q, qd = pos[index], vel[index]
        if not math.isfinite(float(q.sum() + qd.sum())):  # any NaN/Inf makes the sum non-finite
            self._drop("joint_state", "non-finite joint state dropped")
            return None
        return _JointSample(_msgs.stamp_to_s(msg.header.stamp), q, qd, time.monotonic())

    def _drop(self, reason: str, text: str) -> None:
        self.drops[reason] += 1
        self.get_logger().warning(f"{text} [{reason}: {self.drops[reason]} so far]", throttle_duration_sec=5.0)

    def _publish_diagnostics(self) -> None:
        values = {"weights_version": self._weights_version, "active": int(self._active),
                  "episode": self._goal.episode if self._goal else -1, **self.counts,
                  **{f"dropped_{k}": v for k, v in self.drops.items()}}
        status = DiagnosticStatus(level=DiagnosticStatus.OK if not self.drops else DiagnosticStatus.WARN,
                                  name=self.get_fully_qualified_name(), message="policy",
                                  hardware_id=self.get_namespace(),
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    """Entry point (``policy_node`` console script / ``python -m async_naf.nodes.policy_node``)."""
    from async_naf.nodes._main import run_node

    def executor(node: PolicyNode) -> Any:
        if node.cfg.executor == "events":
            from rclpy.experimental import EventsExecutor

            return EventsExecutor()
        from rclpy.executors import SingleThreadedExecutor

        return SingleThreadedExecutor()

    return run_node(PolicyNode, "policy", args, executor_factory=executor)


if __name__ == "__main__":
    sys.exit(main())
