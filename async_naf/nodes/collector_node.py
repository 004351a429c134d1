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
  pub /trainer/transitions       std_msgs/Float32MultiArray  reliable, depth 100 (async_naf.transitions.v2)
  pub /trainer/episode_stats     std_msgs/Float64MultiArray  reliable, depth 100 (async_naf.episode_stats.v2)
  sub /trainer/acks              std_msgs/Float64MultiArray  reliable + transient local (async_naf.transition_ack.v2)
  sub <recorder_ready_topic>     std_msgs/String             reliable + transient local (async_naf.recorder_ready.v1)
  pub /diagnostics               diagnostic_msgs/DiagnosticArray
  client sim/reset               std_srvs/Trigger
  client door_angle/zero         std_srvs/Trigger            (door tasks, zero_door_on_reset)

Everything is non-blocking: service calls are asynchronous and a 50 Hz steady-clock timer ticks the episode
state machine (idle -> resetting -> zeroing -> running -> idle), which lives in the ROS-free
:class:`async_naf.collecting.loop.CollectorLoop` (tested without rclpy); this node converts messages and
service answers for it and carries out the actions it answers.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float32MultiArray, Float64MultiArray, String, UInt8MultiArray
from std_srvs.srv import Trigger

from async_naf.collecting.collector import CollectorConfig, GroundTruth
from async_naf.collecting.loop import TICK_S, Actions, CollectorLoop
from async_naf.nodes import _local, _msgs
from async_naf.nodes._params import declare_from_dataclass, node_only
from async_naf.wire import layouts
from async_naf.wire.joints import JointStates
from async_naf.wire.layouts import LayoutError
from async_naf.wire.record_bundle import BUNDLE_TOPIC
from async_naf.wire.recorder import merge_ready

LOG_THROTTLE_S = 5.0  # the same kind of message at most this often, s
RECORD_POLL_S = 0.05  # a recorded run's tap checks this often whether a bundle is due (RecordTap.poll), s
TAP_ACK_WAIT_S = 2.0  # at shutdown, the longest wait for the recorder to acknowledge the last bundle, s


class CollectorNode(Node):
    """See the module docstring."""

    def __init__(self) -> None:
        super().__init__("collector")
        self.cfg: CollectorConfig = declare_from_dataclass(self, CollectorConfig)
        diag_period = node_only(self, "diagnostics_period_s", 1.0)
        self.loop = CollectorLoop(self.cfg)
        self.asm = self.loop.asm
        self.drops: dict[str, int] = {}
        self._future: Any = None
        self._recorder_seen = False
        self._logged: dict[str, float] = {}
        self._tap = self._install_record_tap() if self.cfg.record_bundle_topics else None
        self._goal_pub = _local.create_publisher(self, Float64MultiArray, "task/goal", _msgs.LATCHED)
        self._tr_pub = self.create_publisher(Float32MultiArray, "/trainer/transitions", _msgs.STREAM)
        self._stats_pub = self.create_publisher(Float64MultiArray, "/trainer/episode_stats", _msgs.STREAM)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # PolicyStep values (type adaptation: from the policy in this process without a message)
        task = self.asm.task
        _local.create_subscription(self, Float64MultiArray, "policy/step", self._on_step, _msgs.STREAM,
                                   adapter=_msgs.PolicyStepAdapter(task.obs_dim, task.act_dim),
                                   on_invalid=self._on_invalid_step)
        self.create_subscription(Float64MultiArray, "/trainer/acks", self._on_ack, _msgs.LATCHED)
        self._recorder_matched: frozenset[str] = frozenset()
        if self.cfg.wait_for_recorder and self.cfg.recorder_ready_topic:
            self.create_subscription(String, self.cfg.recorder_ready_topic, self._on_recorder_ready, _msgs.LATCHED)
        is_door = self.loop.is_door
        if is_door and self.cfg.use_ground_truth:
            _local.create_subscription(self, JointState, "ground_truth/door_state", self._on_truth, _msgs.SENSOR,
                                       adapter=_msgs.JointStateAdapter())
        self._trigger_clients = {"reset": self.create_client(Trigger, "sim/reset")}
        if is_door and self.cfg.zero_door_on_reset:
            self._trigger_clients["zero"] = self.create_client(Trigger, "door_angle/zero")
        # steady clock: with use_sim_time a lockstep sim's clock stands still between episodes
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(TICK_S, self._tick, clock=steady)
        self.create_timer(diag_period, self._publish_diagnostics, clock=steady)
        self._publish_goal(self.loop.initial_goal())
        self.get_logger().info(f"collector ready: task={self.cfg.task} robot_id={self.cfg.robot_id} "
                               f"episode_steps={self.asm.episode_steps}")

    def _install_record_tap(self) -> _local.RecordTap:
        """The recorder's tap on this robot's bus (record_bundle_topics), polled by the bus after each round
        of deliveries and by a timer (what a timer callback published outside them); flushed at shutdown."""
        bus = _local.current()
        if bus is None:
            raise ValueError("record_bundle_topics needs a composed robot with intra-process delivery "
                             "(the bus the tap sits on)")
        tap = _local.RecordTap(self.cfg.record_bundle_topics,
                               self.create_publisher(UInt8MultiArray, BUNDLE_TOPIC, _msgs.BUNDLE))
        bus.set_tap(tap)
        self.create_timer(RECORD_POLL_S, tap.poll, clock=Clock(clock_type=ClockType.STEADY_TIME))
        return tap

    @property
    def phase(self) -> str:
        return self.loop.phase

    @property
    def done(self) -> bool:
        """All requested episodes collected (max_episodes) and sent: the process exits."""
        return self.loop.done

    # ------------------------------------------------------------------------------ message -> loop
    def _on_step(self, step: layouts.PolicyStep) -> None:
        """One policy step (checked again, shapes and finiteness, by the episode assembler)."""
        self._do(self.loop.on_step(step, time.monotonic()))

    def _on_invalid_step(self, exc: ValueError) -> None:
        self._drop("step_layout", f"malformed policy step dropped: {exc}")

    def _on_recorder_ready(self, msg: String) -> None:
        try:
            self._recorder_matched = merge_ready(self._recorder_matched, msg.data)  # one per host: the union
        except ValueError as exc:
            self._drop("recorder_ready_layout", f"malformed recorder readiness dropped: {exc}")

    def _on_ack(self, msg: Float64MultiArray) -> None:
        try:
            ack = layouts.decode_transition_ack(_msgs.from_msg(msg))
        except LayoutError as exc:
            self._drop("ack_layout", f"malformed acknowledgement dropped: {exc}")
            return
        self._do(self.loop.on_ack(ack, time.monotonic()))

    def _on_truth(self, msg: JointStates) -> None:
        try:
            names = msg.name
            i, j = names.index("door_hinge"), names.index("door_handle")
            truth = GroundTruth(float(msg.position[i]), float(msg.velocity[i]) if len(msg.velocity) > i else 0.0,
                                float(msg.position[j]))
        except (ValueError, IndexError):
            self._drop("truth", "ground_truth/door_state without door_hinge/door_handle dropped")
            return
        self._do(self.loop.on_truth(msg.stamp_s, truth, time.monotonic()))

    def _tick(self) -> None:
        now = time.monotonic()
        future = self._future
        if future is not None and future.done():
            self._future = None
            try:
                response = future.result()
            except Exception as exc:  # noqa: BLE001 - a failed service call is reported and retried
                self._do(self.loop.on_service_error(repr(exc), now))
            else:
                zero = self._trigger_clients.get("zero")
                self._do(self.loop.on_service_reply(response.success, response.message, now,
                                                    zero_ready=zero is not None and zero.service_is_ready()))
        idle = self.loop.phase == "idle"  # the reset service and the recorder matter only to start a reset
        self._do(self.loop.tick(now, trainer_listening=self._tr_pub.get_subscription_count() > 0,
                                reset_ready=not idle or self._trigger_clients["reset"].service_is_ready(),
                                recorder_ready=not idle or self._recorder_ready()))

    def _recorder_ready(self) -> bool:
        """``wait_for_recorder`` (a node's fully qualified name) has matched this robot's publishers (it says so
        on ``recorder_ready_topic``) or, without that topic, subscribes to this robot's policy/step (the
        graph's view). Once seen, it stays ready."""
        name = self.cfg.wait_for_recorder
        if not name or self._recorder_seen:
            return True
        if self.cfg.recorder_ready_topic:
            self._recorder_seen = self.get_namespace() in self._recorder_matched
            return self._recorder_seen
        topic = self.resolve_topic_name("policy/step")
        subscribers = {f"{i.node_namespace.rstrip('/')}/{i.node_name}"
                       for i in self.get_subscriptions_info_by_topic(topic)}
        self._recorder_seen = name in subscribers
        return self._recorder_seen

    # ------------------------------------------------------------------------------ loop -> messages
    def _do(self, acts: Actions) -> None:
        for goal in acts.goals:
            self._publish_goal(goal)
        for batch in acts.batches:
            self._send_batch(batch)
        for stats in acts.stats:
            try:
                msg = layouts.encode_episode_stats(stats)
            except LayoutError as exc:  # cannot happen for validated steps; never die on what a receiver refuses
                self._drop("encode", f"episode statistics not sent: {exc}")
                continue
            self._stats_pub.publish(_msgs.to_msg(msg, Float64MultiArray))
        if acts.cancel and self._future is not None:
            self._future.cancel()
            self._future = None
        if acts.call is not None:
            self._future = self._trigger_clients[acts.call].call_async(Trigger.Request())
        for level, key, text in acts.log:
            self._log(level, key, text)

    def _publish_goal(self, goal: layouts.Goal) -> None:
        self._goal_pub.publish(_msgs.to_msg(layouts.encode_goal(goal), Float64MultiArray))

    def _send_batch(self, batch: layouts.TransitionBatch) -> None:
        try:
            msg = layouts.encode_transitions(batch)
        except LayoutError as exc:  # cannot happen for validated steps; never send what a receiver would refuse
            self.loop.counts["batches_sent"] -= 1
            self.loop.counts["transitions_sent"] -= batch.rows
            self._drop("encode", f"transition batch not sent: {exc}")
            return
        self._tr_pub.publish(_msgs.to_msg(msg, Float32MultiArray))

    # ------------------------------------------------------------------------------ helpers
    def _log(self, level: str, key: str, text: str) -> None:
        """Log the loop's messages, each kind at most once per LOG_THROTTLE_S (an aborted episode always)."""
        now = time.monotonic()
        if key != "aborted" and now - self._logged.get(key, float("-inf")) < LOG_THROTTLE_S:
            return
        self._logged[key] = now
        # one call site per severity: rclpy refuses a severity change between calls from the same place
        if level == "warning":
            self.get_logger().warning(text)
        else:
            self.get_logger().info(text)

    def _drop(self, reason: str, text: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1
        self.get_logger().warning(f"{text} [{reason}: {self.drops[reason]} so far]", throttle_duration_sec=5.0)

    def _values(self) -> dict[str, Any]:
        loop = self.loop
        drops = {**self.drops, **loop.drops, **self.asm.dropped}
        tap = {} if self._tap is None else {"recorded_messages": self._tap.messages,
                                            "recorded_bundles": self._tap.bundles}
        return {"phase": loop.phase, "session": loop.session, "episode": self.asm.episode,
                "env_steps": self.asm.env_steps, "late_steps": self.asm.late_steps, **loop.trainer_state,
                **loop.counts, **tap,
                **{f"dropped_{k}": v for k, v in drops.items()}}

    def _publish_diagnostics(self) -> None:
        values = self._values()
        drops = any(k.startswith("dropped_") for k in values)
        status = DiagnosticStatus(level=DiagnosticStatus.WARN if drops else DiagnosticStatus.OK,
                                  name=self.get_fully_qualified_name(), message="collector",
                                  hardware_id=self.get_namespace(),
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)
        self._write_counts(values)

    def _write_counts(self, values: dict[str, Any]) -> None:
        """The counters as JSON to counts_file (atomically: a reader never sees half a file); none if unset."""
        if not self.cfg.counts_file:
            return
        path = Path(self.cfg.counts_file)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps({"node": self.get_fully_qualified_name(), **values}, indent=1))
            tmp.replace(path)
        except OSError as exc:
            self.get_logger().error(f"counters not written to {path}: {exc}", throttle_duration_sec=60.0)

    def shutdown_hook(self) -> None:
        """Process exit: hold the policy, send what is pending (transitions; the recorder's last bundle: the
        graph composes the collector last, so what the others' shutdown hooks published is in it; waiting at
        most TAP_ACK_WAIT_S for the recorder to acknowledge it), write the final counters (counts_file)."""
        self._do(self.loop.shutdown(time.monotonic()))
        if self._tap is not None:
            try:
                acked = self._tap.close(TAP_ACK_WAIT_S)
            except RuntimeError as exc:  # rclpy's RCLError / InvalidHandle: the counters below still get written
                self.get_logger().warning(f"the last bundle for the recorder not sent or not confirmed: {exc}")
            else:
                if not acked:
                    self.get_logger().warning(f"the recorder did not acknowledge the last bundle within "
                                              f"{TAP_ACK_WAIT_S} s: the bag may miss the run's last messages")
        self._write_counts(self._values())


def main(args: list[str] | None = None) -> int:
    """Entry point (``collector_node`` console script / ``python -m async_naf.nodes.collector_node``)."""
    from async_naf.nodes._main import run_node

    return run_node(CollectorNode, "collector", args)


if __name__ == "__main__":
    sys.exit(main())
