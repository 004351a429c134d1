"""``async-naf door-angle BAG --imu-topic T --out F.csv`` on real rosbag2 bags written with the rosbags writer."""
from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags")

from async_naf.run.cli import main as cli_main
from async_naf.sensing.door_angle.bag import BagError, ImuBag, write_imu_bag
from async_naf.sensing.door_angle.synthetic import Recording, SyntheticConfig, simulate_recording

TOPIC = "/robot_0/door/imu"


@pytest.fixture(scope="module")
def recording() -> Recording:
    return simulate_recording(seed=7, config=SyntheticConfig(duration_s=40.0))


def _bag(tmp_path: Path, rec: Recording, storage: str, name: str = "bag") -> Path:
    path = tmp_path / f"{name}_{storage}"
    write_imu_bag(path, rec.samples(), topic=TOPIC, storage=storage)
    return path


def _read_csv(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    stamps = np.array([int(r[0]) for r in rows[1:]], dtype=np.int64)
    angles = np.array([float(r[1]) for r in rows[1:]])
    return rows[0], stamps, angles


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_tool_writes_the_angle_per_imu_sample(tmp_path: Path, recording: Recording, storage: str) -> None:
    bag = _bag(tmp_path, recording, storage)
    out = tmp_path / "door.csv"
    rc = cli_main(["door-angle", str(bag), "--imu-topic", TOPIC, "--out", str(out), "--no-progress"])
    assert rc == 0
    header, stamps, angles = _read_csv(out)
    assert header == ["stamp_ns", "angle_rad"]
    assert np.array_equal(stamps, recording.stamps_ns)  # header stamps, every sample, in order
    rmse_deg = math.degrees(float(np.sqrt(np.mean((angles - recording.angle) ** 2))))
    assert rmse_deg < 0.5
    assert not (tmp_path / "door.csv.part").exists()


def test_tool_reads_params_and_extra_columns(tmp_path: Path, recording: Recording) -> None:
    bag = _bag(tmp_path, recording, "mcap")
    out = tmp_path / "door.csv"
    params = Path(__file__).resolve().parent.parent / "config" / "door_angle.yaml"
    rc = cli_main([
        "door-angle", str(bag), "--out", str(out), "--no-progress", "--all-columns",  # only IMU topic: picked
        "--params-file", str(params), "--param", "hinge_axis=" + str(recording.axis_sensor.tolist()),
    ])
    assert rc == 0
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["stamp_ns", "angle_rad", "velocity_rad_s", "variance_rad2", "at_rest"]
    assert {r[4] for r in rows[1:]} == {"0", "1"}
    assert all(float(r[3]) > 0 for r in rows[1:])


def test_tool_reports_readings_beyond_the_door_stop(tmp_path: Path, recording: Recording,
                                                    capsys: pytest.CaptureFixture) -> None:
    """With a stop below the recorded swings the angles are written as they are (not clipped) and the
    summary says how many excursions went beyond the stop and how far."""
    bag = _bag(tmp_path, recording, "mcap")
    out = tmp_path / "door.csv"
    stop = 0.6  # rad; the recording swings to 20-95 deg (up to 1.66 rad)
    assert recording.angle.max() > stop + 0.2
    rc = cli_main(["door-angle", str(bag), "--out", str(out), "--no-progress", "--param", f"stop_angle_rad={stop}"])
    assert rc == 0
    _, _, angles = _read_csv(out)
    assert angles.max() == pytest.approx(recording.angle.max(), abs=math.radians(1.0))
    excursions = int(np.sum(np.diff((recording.angle > stop).astype(int)) == 1))
    err = capsys.readouterr().err
    assert f"beyond the door stop ({math.degrees(stop):.1f} deg): {excursions} excursion(s)" in err, err
    assert f", {math.degrees(angles.max()):.1f}] deg" in err and "not clipped" in err  # the angle range


def test_tool_takes_parameters_as_the_node_does(tmp_path: Path) -> None:
    """`--param` values are read like the door_angle node's parameters: 1e-3 is a number (ROS params-file
    rule), an empty array means "not set", an unknown or mistyped parameter is a clear error."""
    from async_naf.run.commands.door_angle import load_config

    cfg = load_config(None, ["closed_snap_rad=1e-3", "hinge_axis=[]", "rest_window_s=1"])
    assert cfg.closed_snap_rad == 1e-3 and cfg.hinge_axis is None and cfg.rest_window_s == 1.0
    with pytest.raises(ValueError, match="nope"):
        load_config(None, ["nope=1"])
    with pytest.raises(ValueError, match="closed_snap_rad"):
        load_config(None, ["closed_snap_rad=abc"])


def test_without_imu_topic_the_bag_is_opened_once(tmp_path: Path, recording: Recording,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from async_naf.sensing.door_angle import bag as bag_module

    bag = _bag(tmp_path, recording, "mcap")
    opened = []
    real_open = bag_module._open_reader
    monkeypatch.setattr(bag_module, "_open_reader", lambda path: opened.append(path) or real_open(path))
    rc = cli_main(["door-angle", str(bag), "--out", str(tmp_path / "door.csv"), "--no-progress"])
    assert rc == 0 and len(opened) == 1
    with ImuBag(bag) as reader:
        assert reader.topic == TOPIC and reader.info().count == len(recording.stamps_ns)


def test_ctrl_c_leaves_no_partial_output(tmp_path: Path, recording: Recording,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from async_naf.sensing.door_angle import DoorAngleEstimator

    bag = _bag(tmp_path, recording, "mcap")
    real_update = DoorAngleEstimator.update
    calls = []

    stop_at = len(recording.stamps_ns) + 100  # in the writing pass, after the first pass's read

    def update(self, sample):
        calls.append(1)
        if len(calls) == stop_at:
            raise KeyboardInterrupt
        return real_update(self, sample)

    monkeypatch.setattr(DoorAngleEstimator, "update", update)
    out = tmp_path / "door.csv"
    rc = cli_main(["door-angle", str(bag), "--imu-topic", TOPIC, "--out", str(out), "--no-progress"])
    assert rc == 130 and len(calls) == stop_at
    assert not out.exists() and not (tmp_path / "door.csv.part").exists()


def test_offline_the_opening_direction_comes_from_the_whole_recording(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    """A door pushed 10 deg into its frame before it opens 80 deg: by default the command finds the opening
    direction in a first pass and writes the push as it was (past closed); ``--causal`` writes what the live
    node shows (the push's magnitude, as an opening: it cannot know the side yet)."""
    from async_naf.sensing.door_angle.synthetic import Segment

    deg = math.pi / 180.0
    rec = simulate_recording(seed=29, config=SyntheticConfig(bus_gaps=0), profile=[
        Segment(4.0, 0.0), Segment(0.6, -10.0 * deg), Segment(0.8, -10.0 * deg), Segment(0.6, 0.0),
        Segment(0.5, 0.0), Segment(1.5, 80.0 * deg), Segment(5.0, 80.0 * deg), Segment(1.5, 0.0), Segment(4.0, 0.0)])
    bag = _bag(tmp_path, rec, "mcap")
    pushed = rec.angle < -0.5 * deg
    angles = {}
    for mode in ("default", "causal"):
        out = tmp_path / f"{mode}.csv"
        argv = ["door-angle", str(bag), "--out", str(out), "--no-progress"] + (["--causal"] if mode == "causal" else [])
        assert cli_main(argv) == 0
        _, stamps, angles[mode] = _read_csv(out)
        assert np.array_equal(stamps, rec.stamps_ns)
        err = capsys.readouterr().err
        if mode == "causal":
            assert "from a first pass over the whole recording: none (--causal" in err, err
        else:
            assert ("seen from above (confirmed, 0 revision(s)); no frame at closed (the door went more than "
                    "3.0 deg past closed), used from the first sample") in err, err
            assert "opening direction from the first pass, 0 revision(s)" in err, err
    worst = {m: math.degrees(float(np.max(np.abs(a[pushed] - rec.angle[pushed])))) for m, a in angles.items()}
    assert worst["default"] < 1.0 and worst["causal"] > 15.0, worst
    opened = rec.angle > 10.0 * deg  # once open, both agree with the truth
    for a in angles.values():
        assert math.degrees(float(np.sqrt(np.mean((a[opened] - rec.angle[opened]) ** 2)))) < 0.5


def test_a_bag_without_one_usable_sample_leaves_no_output(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Every IMU sample NaN: a clear error, exit status 1, and no CSV (not even a header) at --out."""
    from async_naf.wire.imu import ImuSample

    nan = np.full(3, np.nan)
    bag = tmp_path / "nan_bag"
    write_imu_bag(bag, [ImuSample(1_000_000 * (i + 1), nan, nan) for i in range(50)], topic=TOPIC)
    out = tmp_path / "door.csv"
    assert cli_main(["door-angle", str(bag), "--out", str(out), "--no-progress"]) == 1
    assert "error: no usable IMU samples" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "door.csv.part").exists()


def test_tool_reports_a_missing_topic(tmp_path: Path, recording: Recording, capsys: pytest.CaptureFixture) -> None:
    bag = _bag(tmp_path, recording, "sqlite3")
    out = tmp_path / "door.csv"
    rc = cli_main(["door-angle", str(bag), "--imu-topic", "/robot_9/door/imu", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc != 0
    assert "'/robot_9/door/imu' is not in bag" in err and TOPIC in err  # names what is there
    assert not out.exists()


def test_tool_reports_a_topic_of_another_type(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    String = store.types["std_msgs/msg/String"]
    bag = tmp_path / "strings"
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/door/imu", "std_msgs/msg/String", typestore=store)
        writer.write(conn, 1, store.serialize_cdr(String(data="not an imu"), "std_msgs/msg/String"))
    rc = cli_main(["door-angle", str(bag), "--imu-topic", "/door/imu", "--out", str(tmp_path / "x.csv")])
    assert rc != 0
    assert "std_msgs/msg/String, not sensor_msgs/msg/Imu" in capsys.readouterr().err


@pytest.mark.parametrize("passes", ["two", "causal"])  # the first pass finds it / the writing pass does
@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_tool_reports_a_corrupt_bag_in_a_real_process(tmp_path: Path, recording: Recording, storage: str,
                                                      passes: str) -> None:
    bag = _bag(tmp_path, recording, storage)
    (data_file,) = [p for p in bag.iterdir() if p.suffix in (".mcap", ".db3")]
    raw = bytearray(data_file.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 4096] = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    data_file.write_bytes(bytes(raw))
    out = tmp_path / "door.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "async_naf.run.cli", "door-angle", str(bag), "--imu-topic", TOPIC, "--out", str(out)]
        + (["--causal"] if passes == "causal" else []),
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.returncode != 0, proc.stderr
    assert "error:" in proc.stderr and "corrupt" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not (tmp_path / "door.csv.part").exists()


def test_a_truncated_mcap_chunk_is_not_silently_short(tmp_path: Path, recording: Recording) -> None:
    """rosbags stops quietly at some damaged MCAP chunks: the reader checks the promised message count."""
    bag = _bag(tmp_path, recording, "mcap")
    (data_file,) = bag.glob("*.mcap")
    raw = bytearray(data_file.read_bytes())
    start = int(len(raw) * 0.3)
    raw[start: start + 500] = bytes(500)
    data_file.write_bytes(bytes(raw))
    with pytest.raises(BagError, match="corrupt"), ImuBag(bag, TOPIC) as reader:
        for _ in reader.samples():
            pass


def test_tool_reports_a_missing_bag(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = cli_main(["door-angle", str(tmp_path / "nope"), "--imu-topic", TOPIC, "--out", str(tmp_path / "x.csv")])
    assert rc != 0 and "no such bag" in capsys.readouterr().err


def test_bag_round_trip_keeps_unknown_covariances_unknown(tmp_path: Path, recording: Recording) -> None:
    samples = [s._replace(gyro_cov=None, accel_cov=None) for s in list(recording.samples())[:20]]
    write_imu_bag(tmp_path / "b", samples, topic=TOPIC, storage="sqlite3")
    with ImuBag(tmp_path / "b", TOPIC) as bag:
        back = list(bag.samples())
    assert [s.stamp_ns for s in back] == [s.stamp_ns for s in samples]
    assert all(s.gyro_cov is None and s.accel_cov is None for s in back)
    np.testing.assert_array_equal(np.array([s.gyro for s in back]), np.array([s.gyro for s in samples]))


def _sim_run_bag(path: Path) -> None:
    """A door_pull training run's bag as the embedded sim records it: episode 0 opens the door 60 deg; the reset
    puts it back closed without the IMU seeing it turn (no rotation recorded); episode 1 opens it 30 deg. The
    goals on /robot_0/task/goal mark the episodes (a re-published goal in between)."""
    from bag_msgs import array_bytes
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    from async_naf.wire import layouts

    store = get_typestore(Stores.ROS2_JAZZY)
    t = store.types
    rate, dt = 200, 5_000_000
    rates = np.concatenate([np.zeros(2 * rate), np.full(rate, math.radians(60)), np.zeros(2 * rate),  # episode 0
                            np.zeros(rate), np.full(rate, math.radians(30)), np.zeros(2 * rate)])   # episode 1
    start1 = 5 * rate  # the sample from which episode 1 runs (its goal comes just before it)
    goals = {0: [(0, True)], start1: [(0, False), (1, True), (1, True)]}
    with Writer(path, version=9) as writer:
        imu = writer.add_connection(TOPIC, "sensor_msgs/msg/Imu", typestore=store)
        goal = writer.add_connection("/robot_0/task/goal", "std_msgs/msg/Float64MultiArray", typestore=store)
        for k, wz in enumerate(rates):
            stamp = 1_000_000_000 + k * dt
            for episode, active in goals.get(k, []):
                arr = layouts.encode_goal(layouts.Goal(episode, active, np.array([0.5, 0.2, 0.9])))
                writer.write(goal, stamp - 1000, array_bytes(store, arr))
            sec, nsec = divmod(stamp, 1_000_000_000)
            msg = t["sensor_msgs/msg/Imu"](
                header=t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec),
                                                frame_id="door_imu_link"),
                orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
                orientation_covariance=np.array([-1.0] + [0.0] * 8),
                angular_velocity=t["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=float(wz)),
                angular_velocity_covariance=np.zeros(9),
                linear_acceleration=t["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=9.81),
                linear_acceleration_covariance=np.zeros(9))
            writer.write(imu, stamp, store.serialize_cdr(msg, "sensor_msgs/msg/Imu"))


@pytest.mark.parametrize("causal", [False, True])
def test_a_training_run_s_bag_is_zeroed_where_each_episode_starts(tmp_path: Path, capsys, causal: bool) -> None:
    """On a bag of `async-naf train --record` the angle climbed across episodes (11,025 deg on a door_pull run):
    a simulated door is reset without the IMU seeing it turn, and the collector zeroes the estimate after each
    reset. The tool now does that where each episode starts on the robot's task/goal (--no-episodes: not)."""
    bag = tmp_path / "run_bag"
    _sim_run_bag(bag)
    extra = ["--causal"] if causal else []
    out = tmp_path / "zeroed.csv"
    assert cli_main(["door-angle", str(bag), "--imu-topic", TOPIC, "--out", str(out), "--no-progress", *extra]) == 0
    assert "zeroed at 2 episode start(s) on /robot_0/task/goal" in capsys.readouterr().err
    _, _, angles = _read_csv(out)
    assert math.degrees(angles[5 * 200 - 1]) == pytest.approx(60.0, abs=0.5)  # the end of episode 0
    assert math.degrees(angles[-1]) == pytest.approx(30.0, abs=0.5)
    plain = tmp_path / "plain.csv"
    assert cli_main(["door-angle", str(bag), "--imu-topic", TOPIC, "--out", str(plain), "--no-progress",
                     "--no-episodes", *extra]) == 0
    assert "episode start" not in capsys.readouterr().err
    assert math.degrees(_read_csv(plain)[2][-1]) == pytest.approx(90.0, abs=0.5)
    # a run whose collector did not zero at resets (its recorded parameters): read as that run did
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "robot_0.collector.yaml").write_text(
        "/robot_0/collector:\n  ros__parameters:\n    task: door_pull\n    zero_door_on_reset: false\n")
    kept = tmp_path / "kept.csv"
    assert cli_main(["door-angle", str(bag), "--imu-topic", TOPIC, "--out", str(kept), "--no-progress", *extra]) == 0
    assert "zero_door_on_reset: false" in capsys.readouterr().err
    assert math.degrees(_read_csv(kept)[2][-1]) == pytest.approx(90.0, abs=0.5)


@pytest.mark.parametrize("causal", [False, True])
def test_one_message_stamped_far_ahead_or_a_looped_recording_does_not_end_the_output(
        tmp_path: Path, recording: Recording, capsys: pytest.CaptureFixture, causal: bool) -> None:
    """The stream's stamp guard, as the node has it: one IMU message stamped a year ahead is dropped and counted
    (before, every later message was out of order: 2,001 of 5,143 rows on a reviewer's real bag, exit 0); a
    recording played twice (its stamps jump back) restarts the estimate there instead of dropping the rest."""
    from async_naf.common.stamps import IMU_JUMP_S
    from async_naf.run.docs import node_only_parameters

    assert node_only_parameters("door_angle")["time_jump_reset_s"] == IMU_JUMP_S  # the node's default, here too
    samples = list(recording.samples())
    n = len(samples)
    far = samples[: n // 2] + [samples[n // 2]._replace(stamp_ns=samples[n // 2].stamp_ns + 365 * 86_400 * 10**9)]
    far += samples[n // 2 + 1:]
    bag = tmp_path / "far"
    write_imu_bag(bag, far, topic=TOPIC, receive_ns=[x.stamp_ns for x in samples])  # received in order
    out = tmp_path / "far.csv"
    args = ["door-angle", str(bag), "--out", str(out), "--no-progress", *(["--causal"] if causal else [])]
    assert cli_main(args) == 0
    _, stamps, angles = _read_csv(out)
    assert len(stamps) == n - 1 and samples[n // 2].stamp_ns not in set(stamps.tolist())
    truth = np.delete(recording.angle, n // 2)
    assert math.degrees(float(np.sqrt(np.mean((angles - truth) ** 2)))) < 0.5
    assert "stamp_glitches=1" in capsys.readouterr().err
    looped = tmp_path / "looped"
    write_imu_bag(looped, samples + samples, topic=TOPIC, receive_ns=range(1, 2 * n + 1))
    out2 = tmp_path / "looped.csv"
    args = ["door-angle", str(looped), "--out", str(out2), "--no-progress", *(["--causal"] if causal else [])]
    assert cli_main(args) == 0
    _, stamps, angles = _read_csv(out2)
    err = capsys.readouterr().err
    assert "jumped back 1 time(s)" in err
    # the first few stamps of the second play confirm the jump (dropped until then); the rest are estimated
    assert 2 * n - 10 < len(stamps) <= 2 * n - 4
    second = angles[-(n // 2):]
    assert math.degrees(float(np.sqrt(np.mean((second - recording.angle[-(n // 2):]) ** 2)))) < 0.5
