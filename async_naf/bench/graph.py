"""Benchmarks of the ROS graph (``async-naf bench``): policy latency and transition throughput over DDS.

Both start the real node as a separate process (``python -m async_naf.nodes.<node>``) on a private
``ROS_DOMAIN_ID`` with loopback-only discovery, and measure from this process through a probe node.
rclpy is imported inside the functions: this module stays importable without ROS.

- :func:`bench_policy_latency`: this process publishes ``joint_states`` (the observation) to a real
  ``policy_node`` (reach task, weights of a freshly initialised NAF agent, exploration off) and times until
  its ``forward_velocity_controller/commands`` message arrives back: one observation in flight at a time,
  so each sample is a full publish -> policy callback (forward kinematics, observation, mu(x), clamp) ->
  publish -> receive round trip across two processes. Goal: p99 <= 2 ms.
- :func:`bench_transitions`: this process plays the collector side, publishing transition batches
  (``async_naf.transitions.v2``, ``batch_transitions`` rows each, as the collector does) to a real
  ``trainer_node``, which validates every batch and adds it to its replay buffer. The rate is what the
  trainer reports in its diagnostics (rows in the buffer per second of its own clock). The publisher keeps at
  most 64 batches in flight (flow control from the trainer's 50 Hz diagnostics), so no row is overwritten
  unread in the reliable keep-last queue; sent and received counts are reported. Updates are held off
  (min_buffer_size above the run's size) so the figure is the transport + validation path, not learning
  competing for the same 2 cores. Goal: >= 20,000 transitions/s.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

# a domain of its own (override with ASYNC_NAF_BENCH_DOMAIN_ID), so concurrent runs and tests do not mix
_BENCH_DOMAIN = int(os.environ.get("ASYNC_NAF_BENCH_DOMAIN_ID", str(62 + os.getpid() % 40)))


def _env() -> dict[str, str]:
    from async_naf.common.ros_env import ros_environment

    return ros_environment(domain_id=_BENCH_DOMAIN)


def _start(module: str, *ros_args: str, log_path: str) -> subprocess.Popen:
    log = open(log_path, "wb")  # noqa: SIM115 - closed in _stop
    proc = subprocess.Popen([sys.executable, "-m", f"async_naf.nodes.{module}", "--ros-args", *ros_args],
                            env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    proc._log = log  # type: ignore[attr-defined]
    return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    proc._log.close()  # type: ignore[attr-defined]


def _tail(proc: subprocess.Popen, n: int = 3000) -> str:
    proc._log.flush()  # type: ignore[attr-defined]
    with open(proc._log.name, "rb") as f:  # type: ignore[attr-defined]
        return f.read()[-n:].decode(errors="replace")


class _Probe:
    def __init__(self) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        self.ctx = Context()
        rclpy.init(context=self.ctx, domain_id=_BENCH_DOMAIN)
        self.node = Node("bench_probe", context=self.ctx)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)

    def spin_until(self, pred: Any, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > end:
                raise RuntimeError(f"bench: timed out waiting for {what}")
            self.executor.spin_once(timeout_sec=0.01)

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.ctx)


def bench_policy_latency(quick: bool = False) -> dict[str, float]:
    """Observation published -> command received, across processes (see module docstring).

    Returns:
        ``policy_step_ms_p50``, ``policy_step_ms_p99``, ``policy_step_ms_max`` (ms) and ``policy_step_samples``.
    """
    import torch
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray, UInt8MultiArray

    from async_naf.learning.agents import NAFConfig, make_agent
    from async_naf.nodes import _msgs
    from async_naf.sim import ARM_JOINT_NAMES
    from async_naf.task.tasks import make_task
    from async_naf.wire import layouts

    torch.set_num_threads(1)
    n_samples, warmup = (300, 50) if quick else (3000, 200)
    task = make_task("reach")
    weights = make_agent(NAFConfig(obs_dim=task.obs_dim, act_dim=task.act_dim, action_low=tuple(task.action_low),
                                   action_high=tuple(task.action_high))).policy_weights()
    tmp = tempfile.mkdtemp(prefix="async_naf_bench_")
    ns = "/bench_robot"
    proc = _start("policy_node", "-r", f"__ns:={ns}", "-p", "task:=reach", "-p", "eval_mode:=true",
                  "-p", "publish_steps:=true", log_path=os.path.join(tmp, "policy.log"))
    probe = _Probe()
    try:
        node = probe.node
        received: list[float] = []
        node.create_subscription(Float64MultiArray, f"{ns}/forward_velocity_controller/commands",
                                 lambda m: received.append(time.perf_counter()), _msgs.COMMANDS)
        w_pub = node.create_publisher(UInt8MultiArray, "/trainer/weights", _msgs.LATCHED)
        w_pub.publish(_msgs.to_msg(layouts.encode_weights(weights), UInt8MultiArray))
        g_pub = node.create_publisher(Float64MultiArray, f"{ns}/task/goal", _msgs.LATCHED)
        g_pub.publish(_msgs.to_msg(layouts.encode_goal(layouts.Goal(0, True, np.array([0.45, 0.0, 0.5]))),
                                   Float64MultiArray))
        js_pub = node.create_publisher(JointState, f"{ns}/joint_states", _msgs.SENSOR)
        probe.spin_until(lambda: js_pub.get_subscription_count() > 0 and w_pub.get_subscription_count() > 0,
                         120, "the policy node")
        rng = np.random.default_rng(0)
        latencies: list[float] = []
        stamp_ns = 1_000_000_000
        while len(latencies) < n_samples + warmup:
            js = JointState(name=list(ARM_JOINT_NAMES), position=rng.uniform(-1, 1, 7).tolist(),
                            velocity=rng.uniform(-0.5, 0.5, 7).tolist())
            stamp_ns += 50_000_000
            js.header.stamp.sec, js.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            count = len(received)
            t0 = time.perf_counter()
            js_pub.publish(js)
            end = t0 + 1.0
            while len(received) == count and time.perf_counter() < end:
                probe.executor.spin_once(timeout_sec=0.05)
            if len(received) > count:
                latencies.append(received[-1] - t0)
            elif time.perf_counter() - t0 > 30 and not latencies:
                raise RuntimeError("bench: the policy node does not answer")
        ms = np.array(latencies[warmup:]) * 1e3
        return {"policy_step_ms_p50": round(float(np.percentile(ms, 50)), 3),
                "policy_step_ms_p99": round(float(np.percentile(ms, 99)), 3),
                "policy_step_ms_max": round(float(ms.max()), 3),
                "policy_step_samples": int(ms.size)}
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}; node log tail:\n{_tail(proc)}") from exc
    finally:
        probe.close()
        _stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def bench_transitions(quick: bool = False, batch_rows: int | None = None) -> dict[str, float]:
    """Collector-side publisher -> trainer node over DDS, validated into the replay buffer.

    Args:
        quick: shorter measurement.
        batch_rows: transitions per message (default: the collector's ``batch_transitions``).

    Returns:
        ``transitions_per_s`` (rows that reached the trainer's buffer per second), ``transitions_batch_rows``,
        ``transitions_sent``, ``transitions_received`` (equal unless rows were lost).
    """
    from diagnostic_msgs.msg import DiagnosticArray
    from std_msgs.msg import Float32MultiArray

    from async_naf.collecting.collector import CollectorConfig
    from async_naf.nodes import _msgs
    from async_naf.task.tasks import make_task
    from async_naf.wire import layouts

    rows = int(batch_rows or CollectorConfig().batch_transitions)
    duration = 4.0 if quick else 12.0
    task = make_task("reach")
    o, a = task.obs_dim, task.act_dim
    rng = np.random.default_rng(0)
    msgs = []
    for k in range(16):  # distinct pre-encoded batches, as a collector would send
        batch = layouts.TransitionBatch(
            rng.normal(size=(rows, o)).astype(np.float32), rng.uniform(-0.5, 0.5, (rows, a)).astype(np.float32),
            rng.normal(size=rows).astype(np.float32), rng.normal(size=(rows, o)).astype(np.float32),
            np.zeros(rows, np.float32), np.zeros(rows), np.full(rows, k), np.arange(rows))
        msgs.append(_msgs.to_msg(layouts.encode_transitions(batch), Float32MultiArray))
    tmp = tempfile.mkdtemp(prefix="async_naf_bench_")
    proc = _start("trainer_node", "-p", "task:=reach", "-p", f"run_dir:={tmp}/run", "-p", "tensorboard:=false",
                  "-p", "min_buffer_size:=100000000", "-p", "replay_capacity:=2000000",
                  "-p", "checkpoint_every_s:=0.0", "-p", "save_buffer:=false", "-p", "diagnostics_period_s:=0.005",
                  log_path=os.path.join(tmp, "trainer.log"))
    probe = _Probe()
    try:
        node = probe.node
        diag: list[tuple[float, float]] = []  # (trainer wall_s, env_steps)

        def on_diag(msg: DiagnosticArray) -> None:
            for status in msg.status:
                if status.name == "/trainer":
                    values = {kv.key: kv.value for kv in status.values}
                    diag.append((float(values["wall_s"]), float(values["env_steps"])))

        node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 50)
        pub = node.create_publisher(Float32MultiArray, "/trainer/transitions", _msgs.STREAM)
        probe.spin_until(lambda: pub.get_subscription_count() > 0 and diag, 120, "the trainer node")
        # flow control like a well-behaved collector: never more than `window` rows in flight (below the
        # subscription's reliable keep-last depth of 100 messages), so nothing is overwritten unread.
        # Acknowledgements are the trainer's diagnostics, every 5 ms: this caps the measurable rate at
        # window / 5 ms = 640,000 rows/s (at a 20 ms period the cap was 160,000/s and the bench hit it).
        window = 64 * rows
        sent = 0
        t_end = time.perf_counter() + duration
        i = 0
        while time.perf_counter() < t_end:
            if sent - diag[-1][1] < window:
                pub.publish(msgs[i % len(msgs)])
                i += 1
                sent += rows
                probe.executor.spin_once(timeout_sec=0.0)
            else:
                probe.executor.spin_once(timeout_sec=0.002)
        # wait until every row arrived or the count stops moving (reliable QoS keeps up unless overloaded)
        def settled() -> bool:
            return bool(diag) and (diag[-1][1] >= sent or (len(diag) >= 3 and diag[-1][1] == diag[-3][1]))

        probe.spin_until(settled, 30.0, "the trainer to take the last batches")
        received = diag[-1][1]
        # rate on the trainer's own clock: first report with rows -> first report with all of them
        first = next(d for d in diag if d[1] > 0)
        last = next(d for d in diag if d[1] >= received)
        rate = (last[1] - first[1]) / (last[0] - first[0]) if last[0] > first[0] else float("nan")
        return {"transitions_per_s": round(rate, 1), "transitions_batch_rows": rows,
                "transitions_sent": sent, "transitions_received": int(received)}
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}; node log tail:\n{_tail(proc)}") from exc
    finally:
        probe.close()
        _stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)

