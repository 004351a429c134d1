"""door_angle_node in a real, separate process over real rclpy: Imu in, door/joint_states out, ~/zero, diagnostics."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")

from nodes_harness import Probe, Processes

from async_naf.common.stamps import JUMP_CONFIRM
from async_naf.sensing.door_angle.synthetic import Segment, SyntheticConfig, simulate_recording

DEG = math.pi / 180.0
NS = "/robot_3"
NODE = f"{NS}/door_angle"


def _imu_msg(sample):
    from sensor_msgs.msg import Imu

    msg = Imu()
    msg.header.frame_id = "door_imu_link"
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(sample.stamp_ns), 1_000_000_000)
    msg.orientation_covariance[0] = -1.0
    g, a = sample.gyro, sample.accel
    msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z = (float(v) for v in g)
    msg.linear_acceleration.x, msg.linear_acceleration.y, msg.linear_acceleration.z = (float(v) for v in a)
    msg.angular_velocity_covariance = np.asarray(sample.gyro_cov, dtype=float).ravel().tolist()
    msg.linear_acceleration_covariance = np.asarray(sample.accel_cov, dtype=float).ravel().tolist()
    return msg


def _feed(probe: Probe, samples: list) -> tuple:
    """Publish ``samples`` to the node's door/imu once both directions are matched; returns the publisher and
    the door/joint_states replies received. Best effort both ways, paced by the replies (one in flight): a lost
    message or reply is skipped after a short wait; the first few may be lost while discovery completes on the
    node's side."""
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Imu, JointState

    received: list = []
    probe.node.create_subscription(JointState, f"{NS}/door/joint_states", received.append, qos_profile_sensor_data)
    pub = probe.node.create_publisher(Imu, f"{NS}/door/imu", qos_profile_sensor_data)
    probe.spin_until(lambda: pub.get_subscription_count() > 0, 30.0, "the node's door/imu subscription")
    # the node's publisher must be matched too before data flows back
    probe.spin_until(lambda: probe.node.count_publishers(f"{NS}/door/joint_states") > 0, 30.0, "door/joint_states")
    for s in samples:
        n = len(received)
        pub.publish(_imu_msg(s))
        try:
            probe.spin_until(lambda n=n: len(received) > n, 0.5, "a reply")
        except AssertionError:
            continue
    return pub, received


def test_node_publishes_door_joint_states_and_answers_zero(ros_env: dict[str, str], tmp_path: Path) -> None:
    from std_srvs.srv import Trigger

    # rest, a swing to 45 deg, a hold: what the node must report at the end is 45 deg
    profile = [Segment(2.0, 0.0), Segment(1.2, 45 * DEG), Segment(2.0, 45 * DEG)]
    rec = simulate_recording(5, SyntheticConfig(rate_hz=100.0, drop_prob=0.0, bus_gaps=0), profile)
    samples = list(rec.samples())
    truth_by_stamp = dict(zip(rec.stamps_ns.tolist(), rec.angle.tolist()))

    procs = Processes(ros_env, tmp_path)
    probe = None
    try:
        params = Path(__file__).resolve().parent.parent / "config" / "door_angle.yaml"
        procs.start("door_angle", "door_angle_node", "--params-file", str(params), "-p", "diagnostics_period_s:=0.2",
                    namespace=NS)
        probe = Probe(ros_env)
        probe.watch_diagnostics()
        pub, received = _feed(probe, samples)
        last_stamp = samples[-1].stamp_ns
        probe.spin_until(
            lambda: received and received[-1].header.stamp.sec * 1_000_000_000 + received[-1].header.stamp.nanosec
            == last_stamp, 10.0, "the reply to the last IMU message")

        assert len(received) >= 0.9 * len(samples), f"{len(received)} replies to {len(samples)} messages"
        first = received[0]
        assert list(first.name) == ["door_hinge"] and len(first.position) == 1 and len(first.velocity) == 1
        assert len(first.effort) == 0
        errors = []
        for msg in received:
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            assert stamp in truth_by_stamp  # header stamp = the IMU message's stamp
            errors.append(msg.position[0] - truth_by_stamp[stamp])
        assert abs(received[-1].position[0] - 45 * DEG) < 0.5 * DEG
        assert math.sqrt(float(np.mean(np.square(errors)))) < 0.5 * DEG

        # a NaN message is dropped and counted, and the node carries on
        bad = _imu_msg(samples[-1]._replace(stamp_ns=last_stamp + 10_000_000))
        bad.angular_velocity.x = float("nan")
        pub.publish(bad)
        probe.spin_until(lambda: probe.diag(f"{NODE}: estimator", "dropped_non_finite") >= 1, 10.0, "drop count")
        assert probe.diag(f"{NODE}: estimator", "samples") >= len(received)
        assert probe.diagnostics[f"{NODE}: estimator"]["hinge_axis_source"] == "swing"
        # the swings stayed within the stop and the opening direction was confirmed, never revised
        diag = probe.diagnostics[f"{NODE}: estimator"]
        assert (diag["beyond_stop"], diag["opening_sign_confirmed"],
                diag["opening_sign_revisions"]) == ("0", "True", "0")

        # ~/zero: the door is closed now
        client = probe.node.create_client(Trigger, f"{NODE}/zero")
        response = probe.call(client, Trigger.Request())
        assert response.success, response.message
        n = len(received)
        nxt = samples[-1]._replace(stamp_ns=last_stamp + 20_000_000)
        pub.publish(_imu_msg(nxt))
        probe.spin_until(lambda: len(received) > n, 10.0, "a reply after ~/zero")
        assert abs(received[-1].position[0]) < 1e-9

        # one message stamped far from the stream (a default-constructed Imu: stamp 0) is a glitch: dropped and
        # counted, nothing restarted (it restarted the estimate before: door assumed closed wherever it stood)
        pub.publish(_imu_msg(nxt._replace(stamp_ns=0)))
        probe.spin_until(lambda: probe.diag(f"{NODE}: estimator", "stamp_glitches") >= 1, 10.0, "stamp_glitches")
        assert probe.diag(f"{NODE}: estimator", "time_resets") == 0
        # the IMU clock jumping back (a looped bag, a restarted sim): once JUMP_CONFIRM stamps go on from there,
        # the estimate restarts instead of dropping everything after it as out of order
        n = len(received)
        back = samples[0].stamp_ns - 5_000_000_000
        for k in range(JUMP_CONFIRM):
            pub.publish(_imu_msg(samples[0]._replace(stamp_ns=back + k * 5_000_000)))
        probe.spin_until(lambda: len(received) > n, 10.0, "a reply after the time jump")
        probe.spin_until(lambda: probe.diag(f"{NODE}: estimator", "time_resets") >= 1, 10.0, "time_resets")
        assert probe.diag(f"{NODE}: estimator", "stamp_glitches") == 1 + JUMP_CONFIRM - 1
        assert procs.procs["door_angle"].poll() is None, procs.log("door_angle")
    finally:
        if probe is not None:
            probe.close()
        procs.stop_all()
    assert procs.procs["door_angle"].returncode == 0, procs.log("door_angle")


@pytest.mark.parametrize("bad", ["rest_window_s:=-1.0", "diagnostics_period_s:=-5.0", "time_jump_reset_s:=0"])
def test_node_rejects_a_bad_configuration(ros_env: dict[str, str], tmp_path: Path, bad: str) -> None:
    """A bad value exits with status 2 and names the parameter and the value: the estimator's, and the node's own
    (which said "diagnostics_period_s and time_jump_reset_s must be > 0", or StampGuard's "jump_s")."""
    procs = Processes(ros_env, tmp_path)
    try:
        proc = procs.start("door_angle", "door_angle_node", "-p", bad)
        proc.wait(60)
    finally:
        procs.stop_all()
    assert proc.returncode == 2
    name, value = bad.split(":=")
    log = procs.log("door_angle")
    assert name in log and value in log and "jump_s" not in log.replace("time_jump_reset_s", "")


def test_the_config_files_values_reach_a_node_in_a_robots_namespace(ros_env: dict[str, str], tmp_path: Path) -> None:
    """config/door_angle.yaml as the docs start the node (``-r __ns:=/robot_0 --params-file``): its values apply
    there. With the file's key ``door_angle:`` (before) rcl matched it to /door_angle only, and the node in
    /robot_0 ran on its defaults: the edited file's bad value below went unnoticed."""
    edited = tmp_path / "door_angle.yaml"
    text = (Path(__file__).resolve().parent.parent / "config" / "door_angle.yaml").read_text()
    assert "    rest_window_s: " in text
    edited.write_text(re.sub(r"(?m)^    rest_window_s: [^ #]+", "    rest_window_s: -1.0", text))
    procs = Processes(ros_env, tmp_path)
    try:
        proc = procs.start("door_angle", "door_angle_node", "--params-file", str(edited), namespace="/robot_0")
        proc.wait(60)
    finally:
        procs.stop_all()
    assert proc.returncode == 2, procs.log("door_angle")
    assert "rest_window_s" in procs.log("door_angle")


def test_the_diagnostics_message_names_every_cause_that_holds(ros_env: dict[str, str], tmp_path: Path) -> None:
    """A door swung past its (here 17 deg) stop, and one NaN message dropped: the status message says both. It
    named only the first cause in a fixed order, so one drop early on hid the door stop's warning for good."""

    profile = [Segment(2.0, 0.0), Segment(1.0, 45 * DEG), Segment(1.0, 45 * DEG)]
    samples = list(simulate_recording(3, SyntheticConfig(rate_hz=100.0, drop_prob=0.0, bus_gaps=0), profile).samples())
    procs = Processes(ros_env, tmp_path)
    probe = None
    name = f"{NODE}: estimator"
    try:
        procs.start("door_angle", "door_angle_node", "-p", "diagnostics_period_s:=0.2", "-p", "stop_angle_rad:=0.3",
                    namespace=NS)
        probe = Probe(ros_env)
        probe.watch_diagnostics()
        pub, _received = _feed(probe, samples)
        probe.spin_until(lambda: probe.diag(name, "beyond_stop") >= 1, 10.0, "an excursion beyond the stop")
        bad = _imu_msg(samples[-1]._replace(stamp_ns=samples[-1].stamp_ns + 10_000_000))
        bad.angular_velocity.x = float("nan")
        pub.publish(bad)
        probe.spin_until(lambda: probe.diag(name, "dropped_non_finite") >= 1, 10.0, "the NaN message dropped")
        probe.spin_until(lambda: "dropped" in probe.diagnostics[name]["_message"], 10.0, "a status after the drop")
        message = probe.diagnostics[name]["_message"]
        assert "1 IMU message(s) dropped" in message and "beyond the door stop" in message, message
    finally:
        if probe is not None:
            probe.close()
        procs.stop_all()
