"""Helpers for node tests: node processes (real, separate) and a probe node in the test process.

Waiting is event-driven: the probe spins its executor until a condition on received messages holds or a
timeout passes; nothing sleeps to synchronise.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class Processes:
    """Node processes started with ``python -m async_naf.nodes.<module> --ros-args ...``; always stopped."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, key: str, module: str, *ros_args: str, namespace: str | None = None) -> subprocess.Popen:
        args = [sys.executable, "-m", f"async_naf.nodes.{module}", "--ros-args"]
        if namespace:
            args += ["-r", f"__ns:={namespace}"]
        return self._popen(key, args + list(ros_args))

    def start_script(self, key: str, code: str) -> subprocess.Popen:
        """``python -c code`` (e.g. a foreign rclpy node), stopped like the node processes."""
        return self._popen(key, [sys.executable, "-c", code])

    def _popen(self, key: str, args: list[str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{key}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        proc._log = log  # type: ignore[attr-defined]
        self.procs[key] = proc
        return proc

    def log(self, key: str) -> str:
        return (self.log_dir / f"{key}.log").read_text(errors="replace")

    def interrupt(self, key: str, timeout: float = 30.0) -> int:
        """SIGINT one process and wait for it; returns its exit status (SIGKILL after ``timeout``)."""
        proc = self.procs[key]
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        proc._log.close()  # type: ignore[attr-defined]
        return proc.returncode

    def kill(self, key: str) -> None:
        proc = self.procs[key]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            proc._log.close()  # type: ignore[attr-defined]


class Probe:
    """An rclpy node in the test process (own context, the test's ROS_DOMAIN_ID)."""

    def __init__(self, env: dict[str, str], name: str = "probe") -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        self.context = Context()
        rclpy.init(context=self.context, domain_id=int(env["ROS_DOMAIN_ID"]))
        self.node = Node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.diagnostics: dict[str, dict[str, str]] = {}

    def watch_diagnostics(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        def on_diag(msg: DiagnosticArray) -> None:
            for status in msg.status:  # the status's own message under "_message"
                values = {kv.key: kv.value for kv in status.values}
                self.diagnostics[status.name] = values | {"_message": status.message}

        self.node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 50)

    def diag(self, name: str, key: str, default: float = -1.0) -> float:
        try:
            return float(self.diagnostics[name][key])
        except (KeyError, ValueError):
            return default

    def spin_until(self, pred: Callable[[], bool], timeout: float, what: str = "condition") -> None:
        end = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > end:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
            self.executor.spin_once(timeout_sec=0.05)

    def call(self, client: Any, request: Any, timeout: float = 20.0) -> Any:
        assert client.wait_for_service(timeout_sec=timeout), f"service {client.srv_name} not available"
        future = client.call_async(request)
        self.spin_until(future.done, timeout, f"response of {client.srv_name}")
        return future.result()

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
