"""guard_node in a real, separate process over real rclpy: commands filtered, e-stop (service and latched
topic) and watchdog stop the arm, the policy's death leaves the arm at zero, interventions on /diagnostics."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("pinocchio")

from nodes_harness import Probe, Processes

NS = "/robot_2"
NODE = f"{NS}/guard"
PERIOD = 0.05
START = (0.0, 0.2, 0.0, -1.55, 0.0, 1.1, 0.0)  # reach start pose: tip well inside the default box


@pytest.mark.ros
def test_guard_filters_stops_on_estop_and_watchdog(ros_env: dict[str, str], tmp_path: Path) -> None:
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Bool, Float64MultiArray
    from std_srvs.srv import SetBool

    from async_naf.nodes import _msgs
    from async_naf.task.description import ARM_JOINT_NAMES

    procs = Processes(ros_env, tmp_path)
    probe = None
    try:
        procs.start("guard", "guard_node", "-p", f"control_period_s:={PERIOD}", "-p", "diagnostics_period_s:=0.2",
                    namespace=NS)
        probe = Probe(ros_env)
        probe.watch_diagnostics()
        node = probe.node
        out: list[tuple[float, np.ndarray]] = []
        node.create_subscription(Float64MultiArray, f"{NS}/forward_velocity_controller/commands",
                                 lambda m: out.append((time.monotonic(), np.array(m.data))), _msgs.COMMANDS)
        cmd_pub = node.create_publisher(Float64MultiArray, f"{NS}/guard/commands_in", _msgs.COMMANDS)
        js_pub = node.create_publisher(JointState, f"{NS}/joint_states", _msgs.SENSOR)
        estop_pub = node.create_publisher(Bool, f"{NS}/guard/estop", _msgs.LATCHED)
        estop_srv = node.create_client(SetBool, f"{NS}/guard/estop")
        probe.spin_until(lambda: cmd_pub.get_subscription_count() > 0 and js_pub.get_subscription_count() > 0,
                         60.0, "the guard's subscriptions")
        probe.spin_until(lambda: node.count_publishers(f"{NS}/forward_velocity_controller/commands") > 0, 30.0,
                         "the guard's command publisher")

        sending = {"cmd": True}
        want = np.full(7, 5.0)  # far over every velocity limit

        def stream() -> None:
            js = JointState(name=list(ARM_JOINT_NAMES), position=list(START), velocity=[0.0] * 7)
            js.header.stamp = node.get_clock().now().to_msg()
            js_pub.publish(js)
            if sending["cmd"]:
                cmd_pub.publish(Float64MultiArray(data=want.tolist()))

        node.create_timer(PERIOD, stream)
        # 1. filtered: nonzero, within the velocity limits and one acceleration step from the last output
        probe.spin_until(lambda: len([c for _, c in out if np.any(c != 0)]) >= 10, 30.0, "filtered commands")
        moving = [c for _, c in out if np.any(c != 0)]
        assert all(np.all(np.abs(c) <= 2.4) for c in moving)
        assert np.all(np.abs(moving[0]) <= np.array([10, 10, 10, 10, 15, 15, 20]) * PERIOD + 1e-9)
        probe.spin_until(lambda: probe.diag(NODE, "velocity_clamped") > 0, 10.0, "velocity_clamped on /diagnostics")

        # 2. e-stop by service: zero, latched while commands keep coming, released only explicitly
        res = probe.call(estop_srv, SetBool.Request(data=True))
        t_stop = time.monotonic()
        assert res.success and "latched" in res.message
        n = len(out)
        probe.spin_until(lambda: len(out) >= n + 10, 10.0, "commands after the e-stop")
        after = [c for t, c in out[n:] if t > t_stop + PERIOD]  # messages in flight at the call may still move
        assert after and all(np.all(c == 0) for c in after)
        first_zero = min(t for t, c in out[n - 3:] if np.all(c == 0))
        print(f"e-stop: first zero command {1e3 * (first_zero - t_stop):+.1f} ms after the service answered")
        probe.spin_until(lambda: probe.diag(NODE, "estopped") == 1 and probe.diag(NODE, "estop") == 1, 10.0,
                         "estop counted")
        probe.call(estop_srv, SetBool.Request(data=False))
        probe.spin_until(lambda: np.any(out[-1][1] != 0), 10.0, "motion after release")

        # 3. e-stop by the latched topic, release by the topic
        estop_pub.publish(Bool(data=True))
        probe.spin_until(lambda: probe.diag(NODE, "estop") == 2, 10.0, "second estop counted")
        n = len(out)
        probe.spin_until(lambda: len(out) >= n + 5, 10.0, "commands while stopped")
        assert all(np.all(c == 0) for _, c in out[n + 1:])
        estop_pub.publish(Bool(data=False))
        probe.spin_until(lambda: np.any(out[-1][1] != 0), 10.0, "motion after the topic release")

        # 4. the policy goes silent: the watchdog sends zero (ForwardCommandController would keep the last one)
        sending["cmd"] = False
        t_silent = time.monotonic()
        probe.spin_until(lambda: np.all(out[-1][1] == 0), 10.0, "zero after the policy went silent")
        print(f"watchdog: zero {1e3 * (out[-1][0] - t_silent):.1f} ms after the probe stopped sending (timeout 100 ms)")
        probe.spin_until(lambda: probe.diag(NODE, "watchdog_command") >= 1, 10.0, "watchdog_command counted")
        n = len(out)
        probe.spin_until(lambda: len(out) >= n + 8, 10.0, "zero re-sent on every tick")
        assert all(np.all(c == 0) for _, c in out[n:])

        # 5. Ctrl-C: a last zero, clean exit
        sending["cmd"] = True
        probe.spin_until(lambda: np.any(out[-1][1] != 0), 10.0, "motion again")
        assert procs.interrupt("guard") == 0, procs.log("guard")
        probe.spin_until(lambda: np.all(out[-1][1] == 0), 10.0, "the last zero on exit")
    finally:
        if probe is not None:
            probe.close()
        procs.stop_all()
