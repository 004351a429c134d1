"""Policy node (``policy``, one per robot namespace): observations -> mu(x) + noise -> joint velocities.

A lifecycle node: it only commands the arm while *active* (``autostart:=true`` configures and activates it
at start, as the embedded simulation wants; a real arm uses ``autostart:=false`` and
``ros2 lifecycle set /robot_0/policy activate``). Between episodes (goal ``active`` = 0) it holds still.

Topics (relative to the robot namespace):
  sub joint_states                          sensor_msgs/JointState      sensor QoS (arm joints, by name)
  sub door/joint_states                     sensor_msgs/JointState      sensor QoS ('door_hinge', door tasks)
  sub task/goal                             std_msgs/Float64MultiArray  reliable + transient local (async_naf.goal.v1)
  sub /trainer/weights                      std_msgs/UInt8MultiArray    reliable + transient local
                                                                        (async_naf.weights.v1)
  pub forward_velocity_controller/commands  std_msgs/Float64MultiArray  reliable, depth 10 (7 rad/s)
  pub policy/step                           std_msgs/Float64MultiArray  reliable, depth 100 (async_naf.policy_step.v1)
  pub /diagnostics                          diagnostic_msgs/DiagnosticArray (counters)

When to act, on which state and what to send is decided by the ROS-free :class:`async_naf.acting.loop.PolicyLoop`
(lockstep, door wait, stall guard, episode starts; tested without rclpy); this node converts messages to
numpy, hands them to the loop with the steady-clock time, and publishes what it answers. Its timers run on
the steady clock (a lockstep sim's clock stands still while the graph waits), except the control timer of
``trigger=timer``, which follows ROS time (sim time in Gazebo). No learning happens here: the greedy policy
is a few small numpy matrix products, and this process never imports torch.
"""
from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, UInt8MultiArray

from async_naf.acting.config import PolicyNodeConfig
from async_naf.acting.loop import JointSample, Output, PolicyLoop
from async_naf.nodes import _local, _msgs
from async_naf.nodes._params import declare_from_dataclass, node_only, watch_parameters
from async_naf.nodes._watch import PublisherAlarm
from async_naf.wire import layouts
from async_naf.wire.joints import JointStates, joint_index, plausible
from async_naf.wire.layouts import LayoutError

DOOR_JOINT = "door_hinge"
DYNAMIC_PARAMS = {"eval_mode", "exploration_scale", "noise.scale", "noise.scale_final", "noise.anneal_steps",
                  "noise.kind", "noise.theta", "noise.dt"}


class PolicyNode(LifecycleNode):
    """See the module docstring."""

    def __init__(self) -> None:
        super().__init__("policy")
        self.cfg: PolicyNodeConfig = declare_from_dataclass(self, PolicyNodeConfig, dynamic=DYNAMIC_PARAMS)
        watch_parameters(self, lambda: self.cfg, self._on_params)
        node_only(self, "diagnostics_period_s", 1.0)
        self.loop: PolicyLoop | None = None
        self._joint_index: dict[tuple[str, ...], np.ndarray | None] = {}
        self._arm_names: tuple[str, ...] = ()
        self._weights_version = -1
        self._cmd_pub: Any = None
        self._door_timer: Any = None
        self._door_sub: Any = None
        self._entities: tuple[list, list, list] = ([], [], [])
        if self.cfg.autostart:
            self.trigger_configure()
            self.trigger_activate()

    @property
    def _core(self) -> PolicyLoop:
        """The loop, for callbacks: subscriptions and timers exist only once configured, so there is one."""
        assert self.loop is not None, "callback before configure"
        return self.loop

    @property
    def runner(self) -> Any:
        """The loop's PolicyRunner (None before configure)."""
        return self.loop.runner if self.loop is not None else None

    # ---------------------------------------------------------------------------------- lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        from async_naf.acting.runner import PolicyRunner
        from async_naf.task.kinematics import ARM_JOINTS  # ARM_JOINT_NAMES order, without the simulator

        try:
            runner = PolicyRunner(self.cfg)
        except ValueError as exc:
            self.get_logger().error(f"configuration failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self._arm_names = tuple(ARM_JOINTS)
        self.loop = PolicyLoop(self.cfg, runner, on_drop=self._log_drop, n_joints=len(self._arm_names))
        self._cmd_pub = _local.create_publisher(self, Float64MultiArray, "forward_velocity_controller/commands",
                                                _msgs.COMMANDS, adapter=_msgs.CommandAdapter())
        # PolicyStep values (type adaptation: the collector in this process gets them without a message)
        self._step_pub = _local.create_publisher(self, Float64MultiArray, "policy/step", _msgs.STREAM,
                                                 adapter=_msgs.PolicyStepAdapter(runner.task.obs_dim,
                                                                                 runner.task.act_dim))
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        joints = _msgs.JointStateAdapter()  # JointStates values: from the sim in this process without a message
        subs = [_local.create_subscription(self, JointState, "joint_states", self._on_joint_states, _msgs.SENSOR,
                                           adapter=joints),
                _local.create_subscription(self, Float64MultiArray, "task/goal", self._on_goal, _msgs.LATCHED),
                self.create_subscription(UInt8MultiArray, "/trainer/weights", self._on_weights, _msgs.LATCHED)]
        if runner.task.is_door:
            self._door_sub = _local.create_subscription(self, JointState, "door/joint_states", self._on_door,
                                                        _msgs.SENSOR, adapter=joints)
            subs.append(self._door_sub)
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        loop = self.loop
        timers = []
        if runner.task.is_door and self.cfg.door_wait_s > 0:
            # armed only while a joint state waits for its door estimate (see _arm_door_timer): a timer
            # ticking every door_wait_s / 4 all the time cost a quarter of the policy process's CPU
            self._door_timer = self.create_timer(max(self.cfg.door_wait_s / 4.0, 0.002), self._on_door_tick,
                                                 clock=steady)
            self._door_timer.cancel()
            timers.append(self._door_timer)
        if self.cfg.trigger == "timer":  # the control rate follows ROS time (sim time in Gazebo)
            timers.append(self.create_timer(self.cfg.control_period_s,
                                            lambda: self._publish(loop.on_control_tick(time.monotonic()))))
        if self.cfg.lockstep:
            timers.append(self.create_timer(self.cfg.stall_resend_s / 2.0,
                                            lambda: self._publish(loop.on_stall_tick(time.monotonic())),
                                            clock=steady))
        period = float(self.get_parameter("diagnostics_period_s").value)
        timers.append(self.create_timer(period, self._publish_diagnostics, clock=steady))
        self._entities = (subs, timers, [self._cmd_pub, self._step_pub, self._diag_pub])
        self.publisher_alarm = PublisherAlarm(self, "policy", self.cfg.publisher_watch)
        self.get_logger().info(f"configured: task={self.cfg.task} obs_dim={runner.task.obs_dim} "
                               f"trigger={self.cfg.trigger} lockstep={self.cfg.lockstep}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.loop is not None:
            self.loop.activate()
        self.get_logger().info("active: commanding the arm")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.loop is not None:
            self._publish(self.loop.deactivate())
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.loop is not None:
            self.loop.deactivate()
        subs, timers, pubs = self._entities
        for sub in subs:
            _local.destroy_subscription(self, sub)
        for timer in timers:
            self.destroy_timer(timer)
        for pub in pubs:
            _local.destroy_publisher(self, pub)
        self._cmd_pub = None
        self._door_timer = None
        self._door_sub = None
        self._entities = ([], [], [])
        return TransitionCallbackReturn.SUCCESS

    def shutdown_hook(self) -> None:
        """Process exit: stop the arm (zero velocity) if the node was commanding it, acknowledged by the
        command's subscribers (reliable QoS) within 1 s before the process goes."""
        if self.loop is not None and self.loop.active:
            self._publish(self.loop.stop())
            if self._cmd_pub is not None:
                self._cmd_pub.wait_for_all_acked(Duration(seconds=1.0))

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.loop is not None and self.loop.active:
            self._publish(self.loop.deactivate())
        return TransitionCallbackReturn.SUCCESS

    # ---------------------------------------------------------------------------------- parameters
    def _on_params(self, cfg: PolicyNodeConfig) -> None:
        if self.loop is not None:
            if cfg.noise != self.cfg.noise:
                self.loop.runner.set_noise_config(cfg.noise)
            self.loop.config = cfg
        self.cfg = cfg
        self.get_logger().info(f"eval_mode={cfg.eval_mode} exploration_scale={cfg.exploration_scale}")

    # ---------------------------------------------------------------------------------- message -> loop
    def _on_weights(self, msg: UInt8MultiArray) -> None:
        try:
            policy = self.runner.load_weights(layouts.decode_weights(_msgs.from_msg(msg)))
        except (LayoutError, ValueError) as exc:
            self._core.drop("weights", f"malformed weights dropped (keeping the last good ones): {exc}")
            return
        self._weights_version = policy.update_count
        self._core.counts["weights_loaded"] += 1

    def _on_goal(self, msg: Float64MultiArray) -> None:
        try:
            goal = layouts.decode_goal(_msgs.from_msg(msg), goal_dim=self.runner.task.goal_dim)
        except LayoutError as exc:
            self._core.drop("goal", f"malformed goal dropped: {exc}")
            return
        self._publish(self._core.on_goal(goal, time.monotonic()))

    def _on_joint_states(self, msg: JointStates) -> None:
        js = self._parse_joint_state(msg)
        if js is not None:
            self._publish(self._core.on_joint_state(js, js.received))

    def _arm_door_timer(self) -> None:
        """Door-wait timer ticking exactly while the loop waits for a door estimate (called after every
        loop event, from :meth:`_publish`: a goal, a joint state, a door estimate or a tick may start or end
        the wait)."""
        timer = self._door_timer
        if timer is None or self.loop is None:
            return
        if self.loop.awaiting_door:
            # a door estimate already queued on the bus (a composed robot: the door-angle node published it
            # in this round) is delivered next, and this runs again then: no timer to arm for it
            if timer.is_canceled() and not _local.more_queued(self._door_sub):
                timer.reset()
        elif not timer.is_canceled():
            timer.cancel()

    def _on_door_tick(self) -> None:
        self._publish(self._core.on_door_deadline(time.monotonic()))

    def _on_door(self, msg: JointStates) -> None:
        try:
            i = msg.name.index(DOOR_JOINT)
            angle, vel = float(msg.position[i]), float(msg.velocity[i]) if len(msg.velocity) > i else 0.0
        except (ValueError, IndexError):
            self._core.drop("door_state", f"door/joint_states without '{DOOR_JOINT}' position dropped")
            return
        if not (np.isfinite(angle) and np.isfinite(vel)):
            self._core.drop("door_state", "non-finite door estimate dropped")
            return
        self._publish(self._core.on_door(msg.stamp_s, angle, vel, time.monotonic()))

    # ---------------------------------------------------------------------------------- loop -> message
    def _publish(self, out: Output | None) -> None:
        self._arm_door_timer()
        if out is None or self._cmd_pub is None:
            return
        self._cmd_pub.publish(out.command)
        if out.step is not None:
            self._step_pub.publish(out.step)

    def _parse_joint_state(self, msg: JointStates) -> JointSample | None:
        names = msg.name
        index = self._joint_index.get(names)
        if index is None and names not in self._joint_index:
            index = joint_index(names, self._arm_names)  # None: an arm joint missing or named twice
            self._joint_index[names] = index
        if index is None:
            self._core.drop("joint_state", f"joint_states lacks arm joints {self._arm_names}, or names one twice")
            return None
        pos, vel = msg.position, msg.velocity
        if pos.size != len(names) or vel.size != len(names):
            self._core.drop("joint_state", "joint_states position/velocity sizes do not match the names")
            return None
        q, qd = pos[index], vel[index]
        if not (plausible(q) and plausible(qd)):  # NaN, Inf, or a corrupt 1e39
            self._core.drop("joint_state", "non-finite or absurd joint state dropped")
            return None
        return JointSample(msg.stamp_s, q, qd, time.monotonic())

    def _log_drop(self, reason: str, text: str) -> None:
        count = self._core.drops[reason]
        self.get_logger().warning(f"{text} [{reason}: {count} so far]", throttle_duration_sec=5.0)

    def _publish_diagnostics(self) -> None:
        loop = self._core
        values = {"weights_version": self._weights_version, "active": int(loop.active),
                  "episode": loop.goal.episode if loop.goal else -1, **loop.counts,
                  **{f"dropped_{k}": v for k, v in loop.drops.items()}}
        status = DiagnosticStatus(level=DiagnosticStatus.OK if not loop.drops else DiagnosticStatus.WARN,
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
