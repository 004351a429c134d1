"""The trainer's services, called from the ``async-naf train`` process (rclpy, imported lazily).

``--stop-at-success`` decides on the weights that end the run: before each evaluation the train process
pauses the trainer's updates (``/trainer/pause``), has it write a checkpoint (``/trainer/save_checkpoint``)
and evaluates that one. An evaluation that reaches the rate stops the graph with the trainer still paused,
so the final checkpoint holds the weights that were evaluated; otherwise the updates resume (the robots kept
collecting meanwhile, and the trainer catches up with ``updates_per_step``). Without it the periodic
checkpoints are evaluated while training goes on, and the run's final weights are those of a few thousand
updates later.

    control = TrainerControl(env)            # the graph's ROS environment (domain, discovery)
    path = control.pause_and_checkpoint()    # Path of the agent file, or None (no trainer answering yet)
    control.resume()
    control.close()
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

LOG = logging.getLogger("async_naf.train")
TRAINER = "/trainer"  # the trainer node's name (its private services: /trainer/pause, /trainer/save_checkpoint)
ROS_PREFIXES = ("ROS_", "RMW_", "FASTRTPS_", "FASTDDS_")  # what DDS reads at rclpy.init (domain, discovery)


class TrainerControl:
    """A small rclpy node in this process that calls the trainer's pause and checkpoint services.

    Args:
        env: the environment the graph's processes get (``ROS_DOMAIN_ID``, discovery settings): applied to
            this process before ``rclpy.init``, so the node finds the trainer where the graph runs.
        timeout_s: how long one service call may take, s.
    """

    def __init__(self, env: dict[str, str], timeout_s: float = 10.0) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.signals import SignalHandlerOptions
        from std_srvs.srv import SetBool, Trigger

        os.environ.update({k: v for k, v in env.items() if k.startswith(ROS_PREFIXES)})
        self.timeout_s = float(timeout_s)
        self.ctx = Context()
        # no rclpy signal handlers: Ctrl-C and SIGTERM stay the launcher's (it stops the graph in order)
        rclpy.init(context=self.ctx, domain_id=int(env.get("ROS_DOMAIN_ID", "0")),
                   signal_handler_options=SignalHandlerOptions.NO)
        self.node = Node("train_control", context=self.ctx)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self._pause = self.node.create_client(SetBool, f"{TRAINER}/pause")
        self._save = self.node.create_client(Trigger, f"{TRAINER}/save_checkpoint")
        self._set_bool, self._trigger = SetBool, Trigger
        self.paused = False

    def _call(self, client: Any, request: Any) -> Any:
        """The response, or None if the service is not there or does not answer within ``timeout_s``."""
        if not client.service_is_ready():
            return None
        future = client.call_async(request)
        end = time.monotonic() + self.timeout_s
        while not future.done() and time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.05)
        if not future.done():
            future.cancel()
            return None
        return future.result()

    def _spin_discovery(self) -> None:
        """Let the node see the trainer's services (discovery runs while the executor spins)."""
        end = time.monotonic() + min(self.timeout_s, 2.0)
        while not (self._pause.service_is_ready() and self._save.service_is_ready()) and time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.05)

    def pause(self, paused: bool) -> bool:
        """Pause (True) or resume (False) the trainer's updates; False if the trainer did not answer."""
        self._spin_discovery()
        response = self._call(self._pause, self._set_bool.Request(data=bool(paused)))
        ok = response is not None and bool(response.success)
        if ok:
            self.paused = bool(paused)
        return ok

    def pause_and_checkpoint(self) -> Path | None:
        """Pause the updates, then have the trainer write a checkpoint of the paused weights; the checkpoint's
        agent file as the trainer names it (join its ``.name`` with the run's ``checkpoints/``), or None (no
        trainer answering yet, or the checkpoint failed: the updates are resumed)."""
        if not self.pause(True):
            return None
        response = self._call(self._save, self._trigger.Request())
        if response is None or not response.success:
            LOG.warning("the trainer wrote no checkpoint to evaluate (%s): updates resumed",
                        "no answer" if response is None else response.message)
            self.resume()
            return None
        return Path(str(response.message))

    def resume(self) -> None:
        """Resume the updates (logged if the trainer does not answer: it stays paused until it does)."""
        if not self.pause(False):
            LOG.warning("the trainer did not answer the resume request: its updates may still be paused")

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.ctx)
