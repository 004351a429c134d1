"""Trainer node (``trainer``, global: ``/trainer``): replay buffer, NAF updates, weights, checkpoints.

The learning runs in the :class:`async_naf.learning.trainer.Trainer` update thread, never in a callback: the
subscriptions only validate (``async_naf.wire.layouts``) and hand rows to the thread-safe buffer.

Topics and services:
  sub ~/transitions        std_msgs/Float32MultiArray  reliable, depth 100 (async_naf.transitions.v2)
  sub ~/episode_stats      std_msgs/Float64MultiArray  reliable, depth 100 (async_naf.episode_stats.v2)
  pub ~/weights            std_msgs/UInt8MultiArray    reliable + transient local, depth 1 (async_naf.weights.v1)
  pub ~/acks               std_msgs/Float64MultiArray  reliable + transient local, depth 1
                           (async_naf.transition_ack.v2: rows, statistics held per collector session; ack_period_s)
  pub /diagnostics         diagnostic_msgs/DiagnosticArray (env steps, updates, buffer, dropped by reason)
  srv ~/save_checkpoint    std_srvs/Trigger            write a checkpoint now (message: its path)
  srv ~/pause              std_srvs/SetBool            true = pause updates (transitions are still buffered)

Malformed messages (LayoutError, wrong dims, NaN/Inf, ...) are dropped, counted by reason and logged
(throttled); they never reach the buffer. The process exits with status 0 when the stop condition
(max_env_steps / max_wall_s) is reached, after the final checkpoint; on SIGINT/SIGTERM it writes the final
checkpoint too. It exits 1 if the update thread fails. It spins rclpy's EventsExecutor by default
(parameter ``executor``).
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from std_msgs.msg import Float32MultiArray, Float64MultiArray, UInt8MultiArray
from std_srvs.srv import SetBool, Trigger

from async_naf.learning.config import TrainerConfig
from async_naf.learning.trainer import Trainer
from async_naf.nodes import _msgs
from async_naf.nodes._params import declare_from_dataclass, node_only
from async_naf.nodes._watch import PublisherAlarm
from async_naf.wire import layouts
from async_naf.wire.layouts import LayoutError

ACK_REFRESH_S = 1.0  # the acknowledgement is re-published at least this often, s


class TrainerNode(Node):
    """See the module docstring."""

    def __init__(self) -> None:
        super().__init__("trainer")
        self.cfg: TrainerConfig = declare_from_dataclass(self, TrainerConfig)
        diag_period = node_only(self, "diagnostics_period_s", 1.0)
        self.drops: dict[str, int] = {}
        self._drop_lock = threading.Lock()
        self.exit_code = 0
        self._weights_pub = self.create_publisher(UInt8MultiArray, "~/weights", _msgs.LATCHED)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._ack_pub = self.create_publisher(Float64MultiArray, "~/acks", _msgs.LATCHED)
        self._last_ack: tuple[Any, float] = (None, -1.0)
        self.trainer = Trainer(self.cfg, on_weights=self._publish_weights, on_finished=self._on_finished)
        self.obs_dim, self.act_dim = self.trainer.obs_dim, self.trainer.act_dim
        self.create_subscription(Float32MultiArray, "~/transitions", self._on_transitions, _msgs.STREAM)
        self.create_subscription(Float64MultiArray, "~/episode_stats", self._on_episode_stats, _msgs.STREAM)
        # with the multi-threaded executor a checkpoint on request does not hold up the subscriptions; with
        # the (default) events executor the subscriptions' reliable queues (100 batches) absorb the pause
        services = MutuallyExclusiveCallbackGroup()
        self.create_service(Trigger, "~/save_checkpoint", self._on_save, callback_group=services)
        self.create_service(SetBool, "~/pause", self._on_pause, callback_group=services)
        self.create_timer(diag_period, self._publish_diagnostics, callback_group=services,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.create_timer(self.cfg.ack_period_s, self._publish_ack, callback_group=services,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.publisher_alarm = PublisherAlarm(self, "trainer", self.cfg.publisher_watch, callback_group=services)
        self.trainer.start()
        self.get_logger().info(f"trainer ready: task={self.cfg.task} obs_dim={self.obs_dim} act_dim={self.act_dim} "
                               f"run_dir={self.cfg.run_dir} env_steps={self.trainer.env_steps} "
                               f"updates={self.trainer.updates}")

    @property
    def done(self) -> bool:
        """Stop condition reached (final checkpoint written) or the update thread failed."""
        if self.trainer.failure:
            self.exit_code = 1
            return True
        return self.trainer.finished

    # ------------------------------------------------------------------------------ subscriptions
    def _on_transitions(self, msg: Float32MultiArray) -> None:
        try:
            batch = layouts.decode_transitions(_msgs.from_msg(msg), self.obs_dim, self.act_dim)
            self.trainer.add_transitions(batch)
        except LayoutError as exc:
            self._drop("transitions_layout", f"malformed transition batch dropped: {exc}")
        except ValueError as exc:  # the buffer's own validation
            self._drop("transitions_invalid", f"invalid transition batch dropped: {exc}")

    def _on_episode_stats(self, msg: Float64MultiArray) -> None:
        try:
            stats = layouts.decode_episode_stats(_msgs.from_msg(msg))
        except LayoutError as exc:
            self._drop("episode_stats_layout", f"malformed episode statistics dropped: {exc}")
            return
        self.trainer.record_episode(stats)

    # ------------------------------------------------------------------------------ services
    def _on_save(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        del request
        try:
            info = self.trainer.save_checkpoint()
        except OSError as exc:
            response.success, response.message = False, f"checkpoint failed: {exc}"
            return response
        response.success, response.message = True, info.agent
        return response

    def _on_pause(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        self.trainer.set_paused(bool(request.data))
        response.success = True
        response.message = "paused" if request.data else "running"
        self.get_logger().info(f"updates {response.message}")
        return response

    # ------------------------------------------------------------------------------ outputs
    def _publish_weights(self, data: bytes, updates: int) -> None:
        """Called from the update thread (rclpy publishers are thread-safe)."""
        self._weights_pub.publish(_msgs.to_msg(layouts.encode_weights(data), UInt8MultiArray))

    def _publish_ack(self) -> None:
        """What the buffer holds per collector session, when it changed (and at least every second)."""
        ack = self.trainer.ack()
        now = time.monotonic()
        last, last_t = self._last_ack
        if ack == last and now - last_t < ACK_REFRESH_S:
            return
        self._last_ack = (ack, now)
        self._ack_pub.publish(_msgs.to_msg(layouts.encode_transition_ack(ack), Float64MultiArray))

    def _on_finished(self, reason: str) -> None:
        self.get_logger().info(f"training finished ({reason}); final checkpoint in {self.trainer.ckpt_dir}")

    def _drop(self, reason: str, text: str) -> None:
        with self._drop_lock:
            self.drops[reason] = self.drops.get(reason, 0) + 1
            count = self.drops[reason]
        self.get_logger().warning(f"{text} [{reason}: {count} so far]", throttle_duration_sec=5.0)

    def _publish_diagnostics(self) -> None:
        with self._drop_lock:  # subscriptions may add a reason meanwhile (multi-threaded executor)
            drops = dict(self.drops)
        values: dict[str, Any] = {**self.trainer.stats(), **{f"dropped_{k}": v for k, v in drops.items()}}
        status = DiagnosticStatus(level=DiagnosticStatus.WARN if drops else DiagnosticStatus.OK,
                                  name=self.get_fully_qualified_name(), message="trainer",
                                  hardware_id="trainer",
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)

    def shutdown_hook(self) -> None:
        """Process exit (stop condition or signal): final checkpoint, metrics closed."""
        self.trainer.stop(final_checkpoint=True)
        if self.trainer.failure:
            self.exit_code = 1


def main(args: list[str] | None = None) -> int:
    """Entry point (``trainer_node`` console script / ``python -m async_naf.nodes.trainer_node``)."""
    from async_naf.nodes._main import run_node

    def executor(node: TrainerNode) -> Any:
        if node.cfg.executor == "events":
            from rclpy.experimental import EventsExecutor

            return EventsExecutor()
        if node.cfg.executor == "single_threaded":
            from rclpy.executors import SingleThreadedExecutor

            return SingleThreadedExecutor()
        return MultiThreadedExecutor(num_threads=2)

    return run_node(TrainerNode, "trainer", args, executor_factory=executor)


if __name__ == "__main__":
    sys.exit(main())
