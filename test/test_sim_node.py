"""sim_node over real rclpy, in a separate process: publishes, obeys commands, rejects bad ones, resets."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 Jazzy wheels) is not installed")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import Imu, JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from async_naf.sim import ARM_JOINT_NAMES  # noqa: E402

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parent.parent
NS = "/robot_0"
TIMEOUT = 30.0


class Probe:
    """A test-side node in its own context/domain: subscriptions that record, a command publisher."""

    def __init__(self, domain_id: int) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("sim_probe", context=self.context)
        self.lock = threading.Lock()
        self.joint_states: list[JointState] = []
        self.imu: list[Imu] = []
        self.truth: list[JointState] = []
        self.clock: list[Clock] = []
        self.diag: list[DiagnosticArray] = []
        n = self.node
        n.create_subscription(JointState, f"{NS}/joint_states", self._rec(self.joint_states), qos_profile_sensor_data)
        n.create_subscription(Imu, f"{NS}/door/imu", self._rec(self.imu), QoSProfile(depth=100,
                              reliability=ReliabilityPolicy.BEST_EFFORT))
        n.create_subscription(JointState, f"{NS}/ground_truth/door_state", self._rec(self.truth),
                              qos_profile_sensor_data)
        n.create_subscription(Clock, "/clock", self._rec(self.clock), QoSProfile(depth=10))
        n.create_subscription(DiagnosticArray, "/diagnostics", self._rec(self.diag), 10)
        self.cmd_pub = n.create_publisher(Float64MultiArray, f"{NS}/forward_velocity_controller/commands",
                                          QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        self.reset_client = n.create_client(Trigger, f"{NS}/sim/reset")
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(n)

    def _rec(self, store: list) -> Callable:
        def callback(msg) -> None:
            with self.lock:
                store.append(msg)
        return callback

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)
            if predicate():
                return
        raise AssertionError(f"timed out waiting for {what}")

    def command(self, values) -> None:
        self.cmd_pub.publish(Float64MultiArray(data=[float(v) for v in values]))

    def counters(self) -> dict[str, int]:
        for arr in reversed(self.diag):
            for status in arr.status:
                if status.name.startswith(f"{NS}/sim"):
                    return {kv.key: float(kv.value) for kv in status.values}
        return {}

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.fixture
def launch_sim(ros_env: dict[str, str]) -> Iterator[Callable[..., tuple[subprocess.Popen, Probe]]]:
    procs: list[subprocess.Popen] = []
    probes: list[Probe] = []

    def start(*params: str) -> tuple[subprocess.Popen, Probe]:
        args = [sys.executable, "-m", "async_naf.nodes.sim_node", "--ros-args", "-r", f"__ns:={NS}"]
        for p in params:
            args += ["-p", p]
        proc = subprocess.Popen(args, env=ros_env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        procs.append(proc)
        probe = Probe(int(ros_env["ROS_DOMAIN_ID"]))
        probes.append(probe)
        return proc, probe

    yield start
    for probe in probes:
        probe.close()
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def test_lockstep_publishes_obeys_rejects_and_resets(launch_sim) -> None:
    proc, probe = launch_sim("imu.rate_hz:=200.0", "task:=reach", "seed:=3")
    # while no command arrives the node re-publishes its state: the first observation
    probe.wait_for(lambda: len(probe.joint_states) >= 1 and probe.cmd_pub.get_subscription_count() >= 1,
                   "first joint_states")
    first = probe.joint_states[-1]
    assert list(first.name) == list(ARM_JOINT_NAMES) and len(first.position) == 7
    q0 = np.array(first.position)

    # good commands: one step each, joint 1 moves at 0.4 rad/s
    n_good = 10
    for k in range(n_good):
        probe.command([0.4, 0, 0, 0, 0, 0, 0])
        probe.wait_for(lambda k=k: len(probe.imu) >= 10 * (k + 1), f"IMU burst {k}")
    probe.wait_for(lambda: probe.joint_states[-1].header.stamp.sec * 1e9 + probe.joint_states[-1].header.stamp.nanosec
                   >= n_good * 0.05e9 - 1, "joint_states of the last step")
    js = probe.joint_states[-1]
    q = np.array(js.position)
    assert js.velocity[0] == pytest.approx(0.4, abs=0.03)
    assert q[0] - q0[0] == pytest.approx(0.4 * n_good * 0.05, abs=0.06)
    np.testing.assert_allclose(q[1:], q0[1:], atol=0.01)
    # IMU: frame, 200 Hz stamps in sim time, covariances, no orientation
    imu = probe.imu
    assert len(imu) == 10 * n_good
    assert {m.header.frame_id for m in imu} == {"door_imu_link"}
    stamps = np.array([m.header.stamp.sec * 1e9 + m.header.stamp.nanosec for m in imu])
    np.testing.assert_allclose(np.diff(stamps), 5e6, atol=2)
    assert imu[0].orientation_covariance[0] == -1.0
    assert imu[0].angular_velocity_covariance[0] > 0 and imu[0].angular_velocity_covariance[1] == 0
    assert abs(imu[-1].linear_acceleration.z - 9.81) < 0.6  # door at rest, upright IMU
    # ground truth and /clock follow sim time
    probe.wait_for(lambda: len(probe.truth) > 0 and len(probe.clock) > 0, "ground truth and clock")
    assert list(probe.truth[-1].name) == ["door_hinge", "door_handle"]
    assert abs(probe.truth[-1].position[0]) < 0.02
    clock = probe.clock[-1].clock
    assert clock.sec * 1e9 + clock.nanosec == pytest.approx(n_good * 0.05e9, abs=1e3)

    # bad commands: rejected and counted, never applied, the node keeps running
    n_imu = len(probe.imu)
    probe.command([1.0, 2.0, 3.0])
    probe.command([0.1] * 8)
    probe.command([float("nan")] + [0.0] * 6)
    probe.command([0.0, float("inf")] + [0.0] * 5)
    probe.wait_for(lambda: probe.counters().get("rejected_non_finite", 0) == 2
                   and probe.counters().get("rejected_wrong_length", 0) == 2, "rejection counters", timeout=15)
    counts = probe.counters()
    assert counts["applied"] == n_good and counts["steps"] == n_good and counts["received"] == n_good + 4
    assert len(probe.imu) == n_imu  # no step happened
    assert proc.poll() is None

    # ~/reset: back to the start pose (seeded noise), door closed; the node still steps afterwards
    assert probe.reset_client.wait_for_service(timeout_sec=TIMEOUT)
    future = probe.reset_client.call_async(Trigger.Request())
    probe.wait_for(future.done, "reset response")
    assert future.result().success
    n_js = len(probe.joint_states)
    probe.wait_for(lambda: len(probe.joint_states) > n_js, "state after reset")
    q_reset = np.array(probe.joint_states[-1].position)
    assert np.abs(q_reset - q0).max() < 0.07  # start pose +- start_noise (0.03 rad) each time
    assert abs(q_reset[0] - q[0]) > 0.1
    probe.command([0.0] * 7)
    probe.wait_for(lambda: len(probe.imu) > n_imu, "a step after the reset")

    proc.terminate()
    out, _ = proc.communicate(timeout=15)
    assert "command rejected" in out
    assert proc.returncode == 0, out


def test_realtime_mode_steps_on_its_own_and_stops_on_stale_commands(launch_sim) -> None:
    proc, probe = launch_sim("realtime:=true", "task:=reach", "command_timeout_s:=0.3", "imu.enabled:=false")
    probe.wait_for(lambda: len(probe.clock) >= 10, "clock ticking without commands")
    t_a = probe.clock[-1].clock
    probe.wait_for(lambda: len(probe.clock) >= 20, "more clock ticks")
    t_b = probe.clock[-1].clock
    assert (t_b.sec - t_a.sec) * 1e9 + (t_b.nanosec - t_a.nanosec) > 0
    # a command is applied until it goes stale
    start = np.array(probe.joint_states[-1].position)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # keep it fresh for about 1 s of wall time
        probe.command([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5])
        probe.executor.spin_once(timeout_sec=0.05)
    moved = np.array(probe.joint_states[-1].position)[6] - start[6]
    assert moved > 0.1
    n = len(probe.joint_states)
    probe.wait_for(lambda: len(probe.joint_states) > n + 20, "steps after the command stopped")
    assert abs(probe.joint_states[-1].velocity[6]) < 0.02  # stale -> zero velocity
    assert proc.poll() is None


def test_bad_configuration_exits_with_a_clear_error(ros_env: dict[str, str]) -> None:
    out = subprocess.run([sys.executable, "-m", "async_naf.nodes.sim_node", "--ros-args", "-p",
                          "control_period_s:=0.047"], env=ros_env, cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2
    assert "control_period_s" in out.stderr
