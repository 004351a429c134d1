"""Collector node (``collector``, one per robot namespace): episodes, rewards, transitions -> trainer.

Runs the episodes of its robot: reset through ``sim/reset`` (std_srvs/Trigger; on a real robot any node
offering that service), zero the door estimator (``door_angle/zero``, door tasks), sample and publish the
goal, pair the policy's steps into transitions with the task's reward (ground truth when the simulator
publishes it), end the episode at its time limit (or on success with terminate_on_success), hold the policy
(goal inactive) and start over. Transitions stream to the trainer in batches.

Topics (relative to the robot namespace unless absolute):
  sub policy/step                std_msgs/Float64MultiArray  reliable, depth 100 (async_naf.policy_step.v1)
  sub ground_truth/door_state    sensor_msgs/JointState      sensor QoS (door tasks, use_ground_truth)
  pub task/goal                  std_msgs/Float64MultiArray  reliable + transient local (async_naf.goal.v1)
  pub /trainer/transitions       std_msgs/Float32MultiArray  reliable, depth 100 (async_naf.transitions.v1)
  pub /trainer/episode_stats     std_msgs/Float64MultiArray  reliable, depth 100 (async_naf.episode_stats.v1)
  pub /diagnostics               diagnostic_msgs/DiagnosticArray
  client sim/reset               std_srvs/Trigger
  client door_angle/zero         std_srvs/Trigger            (door tasks, zero_door_on_reset)

Everything is non-blocking: service calls are asynchronous and a 50 Hz timer advances the episode state
machine (idle -> resetting -> zeroing -> running -> idle).
"""
from __future__ import annotations

import sys
import time
from collections import OrderedDict, deque
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float32MultiArray, Float64MultiArray
from std_srvs.srv import Trigger

from async_naf.collecting.collector import CollectorConfig, EpisodeAssembler, GroundTruth
from async_naf.nodes import _msgs
from async_naf.nodes._params import declare_from_dataclass
from async_naf.wire import layouts
from async_naf.wire.layouts import LayoutError

TICK_S = 0.02
TRUTH_KEEP = 256
RETRY_S = 1.0


def _stamp_key(stamp_s: float) -> int:
    return int(round(stamp_s * 1e9))


class CollectorNode(Node):
    """See the module docstring."""

    def __init__(self) -> None:
        super().__init__("collector")
        self.cfg: CollectorConfig = declare_from_dataclass(self, CollectorConfig)
        diag_period = float(self.declare_parameter("diagnostics_period_s", 1.0).value)
        self.asm = EpisodeAssembler(self.cfg)
        self.is_door = bool(self.asm.task.is_door)
        self.drops: dict[str, int] = {}
        self.counts = {"episodes": 0, "batches_sent": 0, "transitions_sent": 0, "aborted_episodes": 0,
                       "reset_failures": 0}
        self.phase = "idle"
        self._future: Any = None
        self._phase_t = 0.0
        self._last_step_t = 0.0
        self._first_pending_t: float | None = None
        self._truth: OrderedDict[int, GroundTruth] = OrderedDict()
        self._truth_seen = False
        self._waiting: deque[tuple[layouts.PolicyStep, float]] = deque()
        self._retry_after = 0.0
        self._goal_pub = self.create_publisher(Float64MultiArray, "task/goal", _msgs.LATCHED)
        self._tr_pub = self.create_publisher(Float32MultiArray, "/trainer/transitions", _msgs.STREAM)
        self._stats_pub = self.create_publisher(Float64MultiArray, "/trainer/episode_stats", _msgs.STREAM)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(Float64MultiArray, "policy/step", self._on_step, _msgs.STREAM)
        if self.is_door and self.cfg.use_ground_truth:
            self.create_subscription(JointState, "ground_truth/door_state", self._on_truth, _msgs.SENSOR)
        self._reset_client = self.create_client(Trigger, "sim/reset")
        self._zero_client = self.create_client(Trigger, "door_angle/zero") \
            if self.is_door and self.cfg.zero_door_on_reset else None
        # steady clock: with use_sim_time a lockstep sim's clock stands still between episodes
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(TICK_S, self._tick, clock=steady)
        self.create_timer(diag_period, self._publish_diagnostics, clock=steady)
        self._publish_goal(layouts.Goal(max(self.asm.episode, 0), False, self.asm.task.sample_goal(self.asm.rng)))
        self.get_logger().info(f"collector ready: task={self.cfg.task} robot_id={self.cfg.robot_id} "
                               f"episode_steps={self.asm.episode_steps}")

    @property
    def done(self) -> bool:
        """All requested episodes collected (max_episodes) and sent: the process exits."""
        return self.phase == "finished" and self.asm.pending == 0

    # ------------------------------------------------------------------------------ inputs
    def _on_step(self, msg: Float64MultiArray) -> None:
        try:
            step = layouts.decode_policy_step(_msgs.from_msg(msg), self.asm.task.obs_dim, self.asm.task.act_dim)
        except LayoutError as exc:
            self._drop("step_layout", f"malformed policy step dropped: {exc}")
            return
        self._last_step_t = time.monotonic()
        if self._truth_wanted():
            self._waiting.append((step, time.monotonic()))
            self._drain_waiting()
        else:
            self._feed(step, None)

    def _on_truth(self, msg: JointState) -> None:
        try:
            names = list(msg.name)
            i, j = names.index("door_hinge"), names.index("door_handle")
            truth = GroundTruth(float(msg.position[i]), float(msg.velocity[i]) if len(msg.velocity) > i else 0.0,
                                float(msg.position[j]))
        except (ValueError, IndexError):
            self._drop("truth", "ground_truth/door_state without door_hinge/door_handle dropped")
            return
        self._truth[_stamp_key(_msgs.stamp_to_s(msg.header.stamp))] = truth
        while len(self._truth) > TRUTH_KEEP:
            self._truth.popitem(last=False)
        self._truth_seen = True
        self._drain_waiting()

    def _truth_wanted(self) -> bool:
        return self.is_door and self.cfg.use_ground_truth and self._truth_seen

    def _drain_waiting(self, now: float | None = None) -> None:
        while self._waiting:
            step, t = self._waiting[0]
            truth = self._truth.get(_stamp_key(step.stamp_s))
            if truth is None:
                if now is None or now - t < self.cfg.truth_wait_s:
                    return
                self._waiting.popleft()
                self._drop("truth_missing", "no ground truth for a step's stamp: step dropped")
                continue
            self._waiting.popleft()
            self._feed(step, truth)

    def _feed(self, step: layouts.PolicyStep, truth: GroundTruth | None) -> None:
        before = sum(self.asm.dropped.values())
        stats = self.asm.add_step(step, truth)
        if sum(self.asm.dropped.values()) != before:
            self.get_logger().warning(f"policy step dropped: {dict(self.asm.dropped)}", throttle_duration_sec=5.0)
        if self.asm.pending and self._first_pending_t is None:
            self._first_pending_t = time.monotonic()
        while self.asm.pending >= self.cfg.batch_transitions:
            self._send_batch()
        if stats is not None:
            self._end_episode(stats)

    # ------------------------------------------------------------------------------ episodes
    def _tick(self) -> None:
        now = time.monotonic()
        if self._waiting:
            self._drain_waiting(now)
        if self._first_pending_t is not None and now - self._first_pending_t >= self.cfg.max_batch_delay_s:
            self._send_batch()
        phase = self.phase
        if phase == "idle" and now >= self._retry_after:
            self._begin_reset(now)
        elif phase in ("resetting", "zeroing"):
            self._poll_service(now)
        elif phase == "running" and now - self._last_step_t > self.cfg.step_timeout_s:
            self.get_logger().warning(f"no policy step for {self.cfg.step_timeout_s:g} s: episode "
                                      f"{self.asm.episode} aborted after {self.asm.episode_length} transitions")
            self.counts["aborted_episodes"] += 1
            self.asm.abort_episode()
            self._hold()
            self._flush()
            self.phase = "idle"

    def _begin_reset(self, now: float) -> None:
        if self.cfg.max_episodes and self.counts["episodes"] >= self.cfg.max_episodes:
            self._flush()
            self.phase = "finished"
            return
        if self.cfg.wait_for_trainer and self._tr_pub.get_subscription_count() == 0:
            self.get_logger().info("waiting for a trainer (/trainer/transitions)", throttle_duration_sec=10.0)
            self._retry_after = now + 0.2
            return
        if not self._reset_client.service_is_ready():
            self.get_logger().info("waiting for the reset service (sim/reset)", throttle_duration_sec=10.0)
            self._retry_after = now + 0.2
            return
        self._future = self._reset_client.call_async(Trigger.Request())
        self.phase, self._phase_t = "resetting", now

    def _poll_service(self, now: float) -> None:
        timeout = self.cfg.reset_timeout_s if self.phase == "resetting" else min(self.cfg.reset_timeout_s, 2.0)
        if not self._future.done():
            if now - self._phase_t > timeout:
                self._future.cancel()
                self._service_failed(f"{self.phase}: no answer within {timeout:g} s", now)
            return
        try:
            response = self._future.result()
        except Exception as exc:  # noqa: BLE001 - a failed service call is reported and retried
            self._service_failed(f"{self.phase}: call failed: {exc!r}", now)
            return
        if self.phase == "resetting":
            if not response.success:
                self._service_failed(f"reset refused: {response.message}", now)
                return
            if self._zero_client is not None and self._zero_client.service_is_ready():
                self._future = self._zero_client.call_async(Trigger.Request())
                self.phase, self._phase_t = "zeroing", now
                return
        elif not response.success:
            self.get_logger().warning(f"door_angle/zero refused: {response.message}", throttle_duration_sec=10.0)
        self._start_episode(now)

    def _service_failed(self, text: str, now: float) -> None:
        self.counts["reset_failures"] += 1
        self.get_logger().warning(text, throttle_duration_sec=5.0)
        self.phase, self._retry_after = "idle", now + RETRY_S

    def _start_episode(self, now: float) -> None:
        goal = self.asm.start_episode()
        self._waiting.clear()
        self._publish_goal(goal)
        self.phase, self._last_step_t = "running", now

    def _end_episode(self, stats: layouts.EpisodeStats) -> None:
        self._hold()
        self._flush()
        self._stats_pub.publish(_msgs.to_msg(layouts.encode_episode_stats(stats), Float64MultiArray))
        self.counts["episodes"] += 1
        self.phase = "idle"

    def _hold(self) -> None:
        """Tell the policy to stop acting (between episodes)."""
        self._publish_goal(layouts.Goal(max(self.asm.episode, 0), False, self.asm.goal
                                        if self.asm.goal.size else self.asm.task.sample_goal(self.asm.rng)))

    def _publish_goal(self, goal: layouts.Goal) -> None:
        self._goal_pub.publish(_msgs.to_msg(layouts.encode_goal(goal), Float64MultiArray))

    # ------------------------------------------------------------------------------ batches
    def _send_batch(self) -> None:
        batch = self.asm.pop_batch()
        if batch is None:
            self._first_pending_t = None
            return
        try:
            msg = layouts.encode_transitions(batch)
        except LayoutError as exc:  # cannot happen for validated steps; never send what a receiver would refuse
            self._drop("encode", f"transition batch not sent: {exc}")
            return
        self._tr_pub.publish(_msgs.to_msg(msg, Float32MultiArray))
        self.counts["batches_sent"] += 1
        self.counts["transitions_sent"] += batch.rows
        self._first_pending_t = time.monotonic() if self.asm.pending else None

    def _flush(self) -> None:
        while self.asm.pending:
            self._send_batch()
        self._first_pending_t = None

    # ------------------------------------------------------------------------------ helpers
    def _drop(self, reason: str, text: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1
        self.get_logger().warning(f"{text} [{reason}: {self.drops[reason]} so far]", throttle_duration_sec=5.0)

    def _publish_diagnostics(self) -> None:
        drops = {**self.drops, **self.asm.dropped}
        values = {"phase": self.phase, "episode": self.asm.episode, "env_steps": self.asm.env_steps,
                  "late_steps": self.asm.late_steps, **self.counts, **{f"dropped_{k}": v for k, v in drops.items()}}
        status = DiagnosticStatus(level=DiagnosticStatus.WARN if drops else DiagnosticStatus.OK,
                                  name=self.get_fully_qualified_name(), message="collector",
                                  hardware_id=self.get_namespace(),
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)

    def shutdown_hook(self) -> None:
        """Process exit: hold the policy and send what is pending."""
        self._hold()
        self._flush()


def main(args: list[str] | None = None) -> int:
    """Entry point (``collector_node`` console script / ``python -m async_naf.nodes.collector_node``)."""
    from async_naf.nodes._main import run_node

    return run_node(CollectorNode, "collector", args)


if __name__ == "__main__":
    sys.exit(main())
