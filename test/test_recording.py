"""Recording: BagWriter and bag_info round trips without ROS, and the recorder node with real rclpy.

Bags are written with ``rosbags`` (the same library ``async-naf`` writes with) and read back with its
reader; metadata.yaml is checked for what ``ros2 bag info`` / ``ros2 bag play`` on Jazzy read.
"""
from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from bag_msgs import array_bytes

from async_naf.recording.config import TASK_KEY, RecorderConfig
from async_naf.recording.info import BagError, bag_info, format_info
from async_naf.recording.writer import BagWriter, TopicSpec, qos_dict
from async_naf.wire import layouts

JS, F64 = "sensor_msgs/msg/JointState", "std_msgs/msg/Float64MultiArray"


def _store():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_JAZZY)


def _joint_state(store, stamp_ns: int) -> bytes:
    t = store.types
    sec, nsec = divmod(stamp_ns, 1_000_000_000)
    msg = t[JS](header=t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec),
                                                 frame_id=""),
                name=[f"arm_joint_{i}" for i in range(1, 8)], position=np.zeros(7), velocity=np.zeros(7),
                effort=np.zeros(0))
    return store.serialize_cdr(msg, JS)


def _goal(store, episode: int, active: bool) -> bytes:
    t = store.types
    arr = layouts.encode_goal(layouts.Goal(episode, active, np.array([0.4, 0.0, 0.3])))
    dims = [t["std_msgs/msg/MultiArrayDimension"](label=lab, size=s, stride=st)
            for lab, s, st in zip(arr.labels, arr.sizes, arr.strides)]
    msg = t[F64](layout=t["std_msgs/msg/MultiArrayLayout"](dim=dims, data_offset=0),
                 data=np.asarray(arr.data, np.float64))
    return store.serialize_cdr(msg, F64)


def _write_reach_bag(path: Path, storage: str = "mcap") -> None:
    """One robot: joint states at 20 Hz for 2 s (received 3 ms after their stamps), 2 episodes of goals."""
    store = _store()
    writer = BagWriter(path, [TopicSpec("/robot_0/joint_states", JS, qos_dict("sensor")),
                              TopicSpec("/robot_0/task/goal", F64, qos_dict("latched"))], storage)
    t0 = 1_700_000_000_000_000_000
    for i in range(40):
        stamp = t0 + i * 50_000_000
        assert writer.put(0, stamp + 3_000_000, _joint_state(store, stamp))
    for k, (episode, active) in enumerate([(0, True), (0, False), (1, True), (1, False)]):
        writer.put(1, t0 + k * 500_000_000, _goal(store, episode, active))
    writer.close()
    assert writer.stats() == {"received": 44, "written": 44, "dropped": 0, "pending": 0, "pending_bytes": 0}


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_written_bag_reads_back_with_counts_rates_lag_and_episodes(tmp_path: Path, storage: str) -> None:
    bag = tmp_path / "bag"
    _write_reach_bag(bag, storage)  # sqlite3: opened, written and closed by the writer's one thread
    assert len(list(bag.glob("*.db3" if storage == "sqlite3" else "*.mcap"))) == 1
    info = bag_info(bag)
    js = info.topics["/robot_0/joint_states"]
    assert js.count == 40 and js.type == JS
    assert js.rate_hz == pytest.approx(20.0, rel=1e-6)
    assert js.max_gap_s == pytest.approx(0.05, abs=1e-6)
    assert js.lag_mean_s == pytest.approx(0.003, abs=1e-6)
    assert info.episodes == {"/robot_0": [0, 1]}
    assert info.undecodable == 0
    # reach from raw topics lacks the commands; nothing can feed the exact way (no policy/step)
    assert info.feeds["reach"]["raw"]["/robot_0"] == ["forward_velocity_controller/commands"]
    assert "policy/step" in info.feeds["reach"]["exact"]["/robot_0"]
    assert "door/imu" in info.feeds["door_pull"]["raw"]["/robot_0"]
    report = format_info(info)
    assert "/robot_0/joint_states" in report and "episodes /robot_0: 2" in report


def test_stamps_on_a_simulation_clock_lag_behind_that_clock(tmp_path: Path) -> None:
    """Joint states stamped on a simulation's clock (from 0 s) lag behind the robot's clock topic at reception,
    not behind the wall-clock receive time (which would read as decades); without a clock topic: no lag."""
    store = _store()
    t = store.types
    clock_type = "rosgraph_msgs/msg/Clock"
    bag = tmp_path / "bag"
    writer = BagWriter(bag, [TopicSpec("/robot_0/clock", clock_type, qos_dict("clock")),
                             TopicSpec("/robot_0/joint_states", JS, qos_dict("sensor")),
                             TopicSpec("/robot_1/joint_states", JS, qos_dict("sensor"))])
    wall = 1_700_000_000_000_000_000
    for i in range(10):  # sim time i * 50 ms; each joint state stamped 20 ms before the clock then received
        sim_ns = i * 50_000_000
        clock = t[clock_type](clock=t["builtin_interfaces/msg/Time"](sec=sim_ns // 10**9, nanosec=sim_ns % 10**9))
        writer.put(0, wall + i * 1000 + 1, store.serialize_cdr(clock, clock_type))
        writer.put(1, wall + i * 1000 + 2, _joint_state(store, max(sim_ns - 20_000_000, 0)))
        writer.put(2, wall + i * 1000 + 3, _joint_state(store, sim_ns))
    writer.close()
    info = bag_info(bag)
    js0, js1 = info.topics["/robot_0/joint_states"], info.topics["/robot_1/joint_states"]
    assert js0.stamp_clock == "sim" and js0.lag_mean_s == pytest.approx((9 * 0.02) / 10, abs=1e-9)
    assert js0.lag_max_s == pytest.approx(0.02, abs=1e-9)
    assert js1.stamp_clock == "unknown" and math.isnan(js1.lag_mean_s)
    assert "(sim clock)" in format_info(info)
    assert info.as_dict()["topics"]["/robot_0/joint_states"]["stamp_clock"] == "sim"


def test_metadata_is_version_9_with_offered_qos_and_type_hashes(tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    _write_reach_bag(bag)
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 9 and meta["storage_identifier"] == "mcap"
    topics = {t["topic_metadata"]["name"]: t for t in meta["topics_with_message_count"]}
    goal = topics["/robot_0/task/goal"]["topic_metadata"]
    assert goal["serialization_format"] == "cdr"
    assert goal["type_description_hash"].startswith("RIHS01_")
    qos = goal["offered_qos_profiles"][0]
    assert qos["durability"] == "transient_local" and qos["reliability"] == "reliable"
    assert topics["/robot_0/joint_states"]["topic_metadata"]["offered_qos_profiles"][0]["reliability"] == "best_effort"
    assert topics["/robot_0/joint_states"]["message_count"] == 40


def test_the_writer_never_overwrites_refuses_unknown_types_and_counts_late_messages(tmp_path: Path) -> None:
    (tmp_path / "exists").mkdir()
    with pytest.raises(ValueError, match="exists"):
        BagWriter(tmp_path / "exists", [TopicSpec("/a", JS)])
    with pytest.raises(ValueError, match="unknown"):
        BagWriter(tmp_path / "b1", [TopicSpec("/a", "my_msgs/msg/Nope")])
    writer = BagWriter(tmp_path / "b2", [TopicSpec("/a", JS, qos_dict("sensor"))])
    writer.close()
    assert writer.put(0, 1, b"late") is False
    assert writer.dropped == [1] and writer.received == [1]
    with pytest.raises(ValueError, match="QoS profile"):
        qos_dict("fast")


def _bundle(topics: list[str], messages: list[tuple[str, int, bytes]]) -> Any:
    """``messages`` ((topic, receive ns, data) each) as a robot's tap sends them, decoded as the recorder does."""
    from async_naf.wire.record_bundle import bundle_data, decode_bundle_records, encode_bundle, encode_topics

    at = {topic: i for i, topic in enumerate(topics)}
    raw = encode_bundle(encode_topics(topics), [(at[topic], t, data) for topic, t, data in messages])
    return decode_bundle_records(bundle_data(raw))


def test_every_way_of_writing_gives_rosbags_own_bytes(tmp_path: Path) -> None:
    """The writer thread appends MCAP records itself (one message, many, a robot's bundle in one piece); the
    file and metadata.yaml must be what rosbags' Writer.write makes of the same messages: over several 1 MiB
    chunks, with messages out of time order, and a bundle whose table lists topics in another order."""
    rng = np.random.default_rng(3)
    names = [f"/robot_{i % 2}/t{i}" for i in range(6)]
    specs = [TopicSpec(name, "std_msgs/msg/UInt8MultiArray", qos_dict("sensor")) for name in names]
    messages = [(int(rng.integers(6)), 1_700_000_000_000_000_000 + int(rng.integers(0, 10**9)),
                 rng.bytes(int(rng.integers(0, 3000)))) for _ in range(2500)]
    cuts = np.cumsum(rng.integers(1, 300, 40))

    def write(path: Path, fast: bool, how: str) -> tuple[bytes, str]:
        writer = BagWriter(path, specs, fast=fast)
        assert writer.fast is fast
        for part in np.split(np.arange(len(messages)), cuts[cuts < len(messages)]):
            batch = [messages[i] for i in part]
            if how == "one":
                assert all(writer.put(*m) for m in batch)
            elif how == "many":
                assert writer.put_many(batch) == len(batch)
            else:
                table = names[::-1] + ["/robot_9/never_sent"]
                bundle = _bundle(table, [(names[i], t, data) for i, t, data in batch])
                assert writer.put_bundle(bundle, {name: i for i, name in enumerate(names)}) == {}
        writer.close()
        assert writer.stats() == {"received": 2500, "written": 2500, "dropped": 0, "pending": 0, "pending_bytes": 0}
        return (path / f"{path.name}.mcap").read_bytes(), (path / "metadata.yaml").read_text()

    reference = write(tmp_path / "ref" / "bag", False, "one")  # same bag name: metadata names the file
    assert len(reference[0]) > 3 * 2**20  # several chunks
    for fast, how in ((True, "one"), (True, "many"), (True, "bundle"), (False, "bundle")):
        mcap, metadata = write(tmp_path / f"{how}_{fast}" / "bag", fast, how)
        assert mcap == reference[0], (fast, how)
        assert metadata == reference[1], (fast, how)


def test_a_bundle_s_unknown_topics_and_a_full_queue_are_counted_drops(tmp_path: Path) -> None:
    specs = [TopicSpec("/r/a", JS, qos_dict("sensor")), TopicSpec("/r/b", JS, qos_dict("sensor"))]
    store = _store()
    js = [bytes(_joint_state(store, 1_000 + k)) for k in range(6)]
    bundle = _bundle(["/r/x", "/r/b", "/r/a"], [("/r/a", 1, js[0]), ("/r/x", 2, js[1]), ("/r/b", 3, js[2]),
                                               ("/r/x", 4, js[3]), ("/r/a", 5, js[4])])
    writer = BagWriter(tmp_path / "bag", specs, max_pending=2)  # of the 3 known messages the first 2 fit
    assert writer.put_bundle(bundle, {"/r/a": 0, "/r/b": 1}) == {"/r/x": 2}  # the caller counts these
    writer.close()
    assert writer.received == [2, 1] and writer.dropped == [1, 0] and writer.written == [1, 1]
    from rosbags.highlevel import AnyReader

    with AnyReader([tmp_path / "bag"]) as reader:
        got = [(c.topic, t, bytes(raw)) for c, t, raw in reader.messages()]
    assert got == [("/r/a", 1, js[0]), ("/r/b", 3, js[2])]


def test_what_would_pass_the_byte_limit_is_a_counted_drop(tmp_path: Path) -> None:
    """A flood of 1 MB messages outran the writer and took 5 GB (max_pending counted messages only): what would
    take the queue past max_pending_bytes is dropped and counted, messages and a bundle's records alike."""
    from rosbags.highlevel import AnyReader

    specs = [TopicSpec("/r/a", JS, qos_dict("sensor")), TopicSpec("/r/b", JS, qos_dict("sensor"))]
    store = _store()
    js = [bytes(_joint_state(store, 1_000 + k)) for k in range(6)]
    size = len(js[0])
    writer = BagWriter(tmp_path / "many", specs, max_pending_bytes=2 * size + size // 2)
    assert writer.put_many([(0, 1 + k, js[k]) for k in range(5)]) == 2
    writer.close()
    assert writer.received == [5, 0] and writer.dropped == [3, 0] and writer.written == [2, 0]
    assert writer.pending == writer.pending_bytes == 0

    bundle = _bundle(["/r/a", "/r/b"], [("/r/a", 1, js[0]), ("/r/b", 2, js[1]), ("/r/a", 3, js[2])])
    two = int(bundle.offsets[2])  # the first two records, heads included
    writer = BagWriter(tmp_path / "bundle", specs, max_pending_bytes=two)
    assert writer.put_bundle(bundle, {"/r/a": 0, "/r/b": 1}) == {}
    writer.close()
    assert writer.received == [2, 1] and writer.dropped == [1, 0] and writer.written == [1, 1]
    with AnyReader([tmp_path / "bundle"]) as reader:
        assert [(c.topic, t) for c, t, _ in reader.messages()] == [("/r/a", 1), ("/r/b", 2)]
    with pytest.raises(ValueError, match="max_pending_bytes"):
        BagWriter(tmp_path / "zero", specs, max_pending_bytes=0)
    # a memoryview counts its bytes, not its elements (1000 float64 are 8000 bytes)
    u8 = [TopicSpec("/r/u", "std_msgs/msg/UInt8MultiArray")]
    writer = BagWriter(tmp_path / "view", u8, max_pending_bytes=1000)
    assert writer.put(0, 1, memoryview(np.zeros(1000))) is False
    writer.close()
    assert writer.dropped == [1]


@pytest.mark.parametrize("fast", [True, False])
def test_odd_inputs_to_the_writer_are_written_whole_or_refused(tmp_path: Path, fast: bool) -> None:
    """A memoryview of float64 is written as its bytes (not its element count); a bundle's table naming an
    unknown topic twice counts every message left out; put_records refuses indices outside the topics."""
    from rosbags.highlevel import AnyReader

    specs = [TopicSpec("/r/a", "std_msgs/msg/UInt8MultiArray"), TopicSpec("/r/b", "std_msgs/msg/UInt8MultiArray")]
    writer = BagWriter(tmp_path / "bag", specs, fast=fast)
    values = memoryview(np.arange(4, dtype=np.float64))
    assert writer.put(0, 5, values) and writer.put(1, 6, b"xyz")
    bundle = _bundle(["/x", "/r/b", "/x"], [("/x", 7, b"a"), ("/x", 8, b"b"), ("/x", 9, b"c"), ("/r/b", 10, b"d")])
    assert writer.put_bundle(bundle, {"/r/a": 0, "/r/b": 1}) == {"/x": 3}
    for bad in ([2], [-1]):
        with pytest.raises(ValueError, match="topic indices"):
            writer.put_records(np.array(bad), np.zeros(31, np.uint8), np.zeros(1), np.zeros(1))
    writer.close()
    with AnyReader([tmp_path / "bag"]) as reader:
        got = [(c.topic, t, bytes(raw)) for c, t, raw in reader.messages()]
    assert got == [("/r/a", 5, values.tobytes()), ("/r/b", 6, b"xyz"), ("/r/b", 10, b"d")]


def test_a_failing_writer_drops_and_counts_everything_after_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    """The disk fails on the second batch: that batch and every later one are dropped and counted, and per topic
    received = written + dropped, nothing left pending."""
    from async_naf.recording import writer as writer_module

    calls = []

    def failing(self: Any, batch: Any) -> None:
        calls.append(len(batch))
        if len(calls) == 2:
            raise OSError("disk full")
        original(self, batch)

    original = writer_module._McapAppend.write
    monkeypatch.setattr(writer_module._McapAppend, "write", failing)
    specs = [TopicSpec("/r/a", "std_msgs/msg/UInt8MultiArray"), TopicSpec("/r/b", "std_msgs/msg/UInt8MultiArray")]
    writer = BagWriter(tmp_path / "bag", specs)
    assert writer.put_many([(0, 1, b"a"), (1, 2, b"b")]) == 2
    writer.close()  # written: the first batch
    writer = BagWriter(tmp_path / "bag2", specs)
    calls.clear()
    writer.put_many([(0, 1, b"a")])
    for _ in range(200):
        writer.put_many([(0, 2, b"b"), (1, 3, b"c")])
    writer.close()
    assert "disk full" in writer.error and writer.pending == 0
    assert [r - w - d for r, w, d in zip(writer.received, writer.written, writer.dropped)] == [0, 0]
    assert writer.received == [201, 200] and sum(writer.dropped) >= 2


def _first_record(data: bytes, opcode: int) -> int:
    """File offset of the first top-level MCAP record with ``opcode`` (after the 8-byte magic)."""
    at = 8
    while at + 9 <= len(data):
        if data[at] == opcode:
            return at
        at += 9 + int.from_bytes(data[at + 1:at + 9], "little")
    raise AssertionError(f"no record 0x{opcode:02x}")


def _damage(bag: Path, damage: str) -> None:
    mcap = next(bag.glob("*.mcap"))
    data = bytearray(mcap.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 3]
    elif damage == "garbage":
        data = bytearray(b"\x00garbage" * 100)
    elif damage == "magic_only":  # rosbags: TypeError from ord() of an empty read
        data = data[:8]
    elif damage == "schema_length":  # a Schema record's length far beyond the file: MemoryError / OverflowError
        data[_first_record(data, 0x03) + 8] = 0xFF
    mcap.write_bytes(bytes(data))
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())
    if damage == "zstd_metadata":  # metadata.yaml says zstd file compression, the file is not: ZstdError
        meta["rosbag2_bagfile_information"].update(compression_mode="file", compression_format="zstd")
    elif damage == "files_not_a_list":  # rosbags' close: AttributeError ('str' object has no attribute 'clear')
        meta["rosbag2_bagfile_information"]["files"] = "x"
    (bag / "metadata.yaml").write_text(yaml.safe_dump(meta))


@pytest.mark.parametrize("damage", ["missing", "truncated", "garbage", "magic_only", "schema_length",
                                    "zstd_metadata", "files_not_a_list"])
def test_unreadable_bags_are_a_clear_error(tmp_path: Path, damage: str) -> None:
    """Whatever a damaged bag makes rosbags raise (TypeError, MemoryError, ZstdError... escaped as tracebacks
    from bag info, bag convert and door-angle before) is a BagError: one line, exit status 2, nothing written."""
    import contextlib
    import io

    from async_naf.run.cli import main

    bag = tmp_path / "bag"
    if damage != "missing":
        _write_reach_bag(bag)
        _damage(bag, damage)
    with pytest.raises(BagError, match="not a readable"):
        bag_info(bag)
    out = subprocess.run([sys.executable, "-m", "async_naf.run.cli", "bag", "info", str(bag)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "not a readable" in out.stderr and "Traceback" not in out.stderr
    for method in ("exact", "raw"):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = main(["bag", "convert", str(bag), "--task", "reach", "--method", method,
                       "--out", str(tmp_path / method)])
        assert rc == 2 and "not a readable" in err.getvalue(), (method, err.getvalue())
        assert not (tmp_path / method).exists()
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["door-angle", str(bag), "--out", str(tmp_path / "angle.csv")]) == 1
    assert not (tmp_path / "angle.csv").exists() and ("(corrupt" in err.getvalue()
                                                      or "no such bag" in err.getvalue()), err.getvalue()


def test_a_damaged_chunk_rosbags_skips_is_reported_not_silently_short(tmp_path: Path) -> None:
    """A damaged record inside a chunk makes rosbags skip the chunk without an error: bag info said nothing (0
    messages read of 200), a message-by-message conversion went on with what it got. Now bag info reports the
    topics short of their metadata counts and the conversions through rosbags refuse the bag."""
    from async_naf.bench.convert import write_door_bag
    from async_naf.run.convert import convert_exact
    from async_naf.run.convert_raw import convert_raw

    bag = tmp_path / "bag"
    write_door_bag(bag, 40, episode_steps=15)
    mcap = next(bag.glob("*.mcap"))
    data = bytearray(mcap.read_bytes())
    at = _first_record(data, 0x06) + 9 + 8 + 8 + 8 + 4  # a chunk's records: after its times, size, crc,
    at += 4 + int.from_bytes(data[at:at + 4], "little") + 8  # compression name and records length
    assert data[at] == 0x03  # the chunk's first record: a Schema
    data[at + 1] ^= 0xFF  # its length
    mcap.write_bytes(bytes(data))
    info = bag_info(bag)
    assert info.topics["/robot_0/door/imu"].count < info.topics["/robot_0/door/imu"].indexed == 200
    assert "MISSING: /robot_0/door/imu: read" in format_info(info)
    with pytest.raises(BagError, match="fewer messages than its metadata counts"):
        convert_exact(bag, "door_pull", vectorised=False)
    with pytest.raises(BagError, match="fewer messages than its metadata counts"):
        convert_raw(bag, "door_pull", vectorised=False)


def test_a_topic_metadata_yaml_names_wrongly_is_a_clear_error(tmp_path: Path) -> None:
    """A topic name or type that is not a string (a hand-edited metadata.yaml): bag info said so with a
    TypeError / ValueError traceback from sorting and formatting its table."""
    bag = tmp_path / "bag"
    _write_reach_bag(bag)
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())
    meta["rosbag2_bagfile_information"]["topics_with_message_count"][0]["topic_metadata"]["type"] = 5
    (bag / "metadata.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(BagError, match="of type 5"):
        bag_info(bag)


def test_recorder_config_validation() -> None:
    with pytest.raises(ValueError, match="same length"):
        RecorderConfig(bag_path="b", topics=("/a",), types=(), qos=())
    with pytest.raises(ValueError, match="absolute"):
        RecorderConfig(bag_path="b", topics=("a",), types=(JS,), qos=("sensor",))
    with pytest.raises(ValueError, match="QoS"):
        RecorderConfig(bag_path="b", topics=("/a",), types=(JS,), qos=("fast",))
    with pytest.raises(ValueError, match="storage"):
        RecorderConfig(storage="rosbag1")


@pytest.mark.ros
def test_the_recorder_node_records_what_is_published(tmp_path: Path, ros_env: dict[str, str]) -> None:
    """A real recorder process; a probe publishes joint states (reliable) and a latched goal."""
    pytest.importorskip("rclpy")
    from nodes_harness import Probe, Processes
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from async_naf.nodes import _msgs

    bag = tmp_path / "bag"
    procs = Processes(ros_env, tmp_path)
    probe = Probe(ros_env)
    try:
        goal_pub = probe.node.create_publisher(Float64MultiArray, "/robot_0/task/goal", _msgs.LATCHED)
        goal_pub.publish(_msgs.to_msg(layouts.encode_goal(layouts.Goal(0, True, np.zeros(3))), Float64MultiArray))
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        # reliable and as deep as the recorder's queue, so that a burst is not overwritten on the publisher's side
        js_pub = probe.node.create_publisher(JointState, "/robot_0/joint_states",
                                             QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))
        procs.start("recorder", "recorder_node", "-p", f"bag_path:={bag}",
                    "-p", "topics:=[/robot_0/joint_states, /robot_0/task/goal]",
                    "-p", f"types:=[{JS}, {F64}]", "-p", "qos:=[stream, latched]")
        probe.spin_until(lambda: js_pub.get_subscription_count() > 0, 30, "the recorder's subscription")
        probe.watch_diagnostics()
        for i in range(50):  # reliable: every message published after the match reaches the recorder
            msg = JointState(name=[f"arm_joint_{j}" for j in range(1, 8)], position=[0.0] * 7, velocity=[0.0] * 7)
            msg.header.stamp.sec, msg.header.stamp.nanosec = 200, i * 1_000_000
            js_pub.publish(msg)
            probe.executor.spin_once(timeout_sec=0.01)
        for i in range(500):  # a burst: the recorder takes what waits on a subscription in one callback
            msg = JointState(name=[f"arm_joint_{j}" for j in range(1, 8)], position=[0.0] * 7, velocity=[0.0] * 7)
            msg.header.stamp.sec, msg.header.stamp.nanosec = 201, i * 1_000_000
            js_pub.publish(msg)
        probe.spin_until(lambda: probe.diag("/recorder", "written") >= 551, 60, "551 messages written")
        assert procs.interrupt("recorder") == 0, procs.log("recorder")
    finally:
        probe.close()
        procs.stop_all()
    from rosbags.highlevel import AnyReader

    stamps = []
    with AnyReader([bag], default_typestore=_store()) as reader:
        conns = [c for c in reader.connections if c.topic == "/robot_0/joint_states"]
        stamps = [reader.deserialize(raw, JS).header.stamp for _, _, raw in reader.messages(connections=conns)]
    assert [s.sec for s in stamps].count(200) == 50  # every message published after the match, none lost
    burst = [s.nanosec for s in stamps if s.sec == 201]
    assert burst == [i * 1_000_000 for i in range(500)]  # the whole burst, once each, in order
    info = bag_info(bag)
    assert info.topics["/robot_0/task/goal"].count == 1  # the latched goal, published before the recorder
    assert info.episodes == {"/robot_0": [0]}


def test_the_recorder_writes_a_robot_s_bundles_under_their_own_topics(tmp_path: Path, ros_env: dict[str, str]
                                                                       ) -> None:
    """A real recorder process with bundled topics (a composed robot's tap): it does not subscribe to them,
    says the robot is ready once the bundle's publisher is matched, writes every bundled message under its
    own topic at the bundle's time, and drops (counted) a message of a topic not bundled and a malformed
    bundle. Stopped, it still takes a robot's last bundle, sent after the stop, until the robot's publisher
    goes."""
    pytest.importorskip("rclpy")
    from nodes_harness import Probe, Processes
    from rclpy.duration import Duration
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray, String, UInt8MultiArray

    from async_naf.nodes import _msgs
    from async_naf.wire.record_bundle import canonical_joint_state, canonical_multiarray, encode_bundle, encode_topics
    from async_naf.wire.recorder import decode_ready

    bag = tmp_path / "bag"
    procs = Processes(ros_env, tmp_path)
    probe = Probe(ros_env)
    ready: list[frozenset[str]] = []
    try:
        bundle_pub = probe.node.create_publisher(UInt8MultiArray, "/robot_0/recorder/bundle", _msgs.BUNDLE)
        goal_pub = probe.node.create_publisher(Float64MultiArray, "/robot_0/task/goal", _msgs.LATCHED)
        goal_pub.publish(_msgs.to_msg(layouts.encode_goal(layouts.Goal(0, True, np.zeros(3))), Float64MultiArray))
        probe.node.create_subscription(String, "/recorder/ready", lambda m: ready.append(decode_ready(m.data)),
                                       _msgs.LATCHED)
        procs.start("recorder", "recorder_node", "-p", f"bag_path:={bag}",
                    "-p", "topics:=[/robot_0/joint_states, /robot_0/policy/step, /robot_0/task/goal]",
                    "-p", f"types:=[{JS}, {F64}, {F64}]", "-p", "qos:=[sensor, stream, latched]",
                    "-p", "bundles:=[/robot_0/recorder/bundle]",
                    "-p", "bundled:=[/robot_0/joint_states, /robot_0/policy/step]")
        probe.spin_until(lambda: bool(ready) and "/robot_0" in ready[-1], 30, "/robot_0 ready")
        assert probe.node.count_subscribers("/robot_0/joint_states") == 0  # bundled: not subscribed
        probe.watch_diagnostics()
        table = encode_topics(["/robot_0/joint_states", "/robot_0/policy/step", "/robot_0/other"])
        for i in range(40):  # what the tap sends: rmw's serialisation made canonical
            msg = JointState(name=["a"], position=[float(i)], velocity=[0.0])
            step = Float64MultiArray(data=[float(i)])
            bundle_pub.publish(encode_bundle(table, [(0, 1_000_000_000 + 10 * i,
                                                      canonical_joint_state(serialize_message(msg))),
                                                     (1, 1_000_000_005 + 10 * i,
                                                      canonical_multiarray(serialize_message(step))),
                                                     (2, 1_000_000_006 + 10 * i, b"\x00\x01\x00\x00")]))
        bundle_pub.publish(b"not a bundle")
        # records stamped years away from the rest of their bundle: dropped (such a bag claimed to last 292 years)
        odd = canonical_joint_state(serialize_message(JointState(name=["a"], position=[100.0], velocity=[0.0])))
        bundle_pub.publish(encode_bundle(table, [(0, 1_000_000_400 + k, odd) for k in range(3)]
                                         + [(0, 10**17, odd),
                                            (1, 2**63 - 1, canonical_multiarray(serialize_message(step)))]))
        probe.spin_until(lambda: probe.diag("/recorder", "written") >= 84 and
                         probe.diag("/recorder", "dropped bundle:other_topic") >= 40 and
                         probe.diag("/recorder", "dropped bundle:malformed") >= 1 and
                         probe.diag("/recorder", "dropped bundle:record_time") >= 2, 60, "the bundles written")
        procs.procs["recorder"].send_signal(signal.SIGINT)
        probe.spin_until(lambda: "the last bundles of 1 robot" in procs.log("recorder"), 30, "the recorder stopping")
        last = JointState(name=["a"], position=[40.0], velocity=[0.0])  # the robot's shutdown flush
        bundle_pub.publish(encode_bundle(table, [(0, 2_000_000_000, canonical_joint_state(serialize_message(last)))]))
        # what the collector's shutdown does (RecordTap.close): DDS may drop what no reader acknowledged yet
        # when the publisher is destroyed (the last bundle was missing once in CI without this wait)
        assert bundle_pub.wait_for_all_acked(Duration(seconds=20))
        probe.node.destroy_publisher(bundle_pub)  # the robot goes
        assert procs.interrupt("recorder") == 0, procs.log("recorder")
        assert "still matched" not in procs.log("recorder")  # it went on once the robot was gone
    finally:
        probe.close()
        procs.stop_all()
    from rosbags.highlevel import AnyReader

    with AnyReader([bag], default_typestore=_store()) as reader:
        got = [(c.topic, t) for c, t, _ in reader.messages()]
        joints = [reader.deserialize(raw, JS).position[0] for c, _, raw in reader.messages()
                  if c.topic == "/robot_0/joint_states"]
    assert [t for topic, t in got if topic == "/robot_0/joint_states"] == \
        [1_000_000_000 + 10 * i for i in range(40)] + [1_000_000_400, 1_000_000_401, 1_000_000_402, 2_000_000_000]
    assert [t for topic, t in got if topic == "/robot_0/policy/step"] == [1_000_000_005 + 10 * i for i in range(40)]
    assert joints == [float(i) for i in range(40)] + [100.0] * 3 + [40.0]
    assert [topic for topic, _ in got].count("/robot_0/task/goal") == 1  # still subscribed: the latched goal


def test_a_robot_is_ready_for_the_recorder_only_when_every_publisher_is_matched() -> None:
    """The rule behind /recorder/ready: per robot namespace, every topic's subscription has matched as many
    publishers as the graph shows, and joint_states and policy/step at least one; topics without a
    namespace never hold anything back; the message round-trips and refuses other layouts."""
    from async_naf.recording.ready import ready_namespaces, topic_namespace
    from async_naf.wire.recorder import decode_ready, encode_ready

    topics = ["/robot_0/joint_states", "/robot_0/policy/step", "/robot_0/task/goal",
              "/robot_1/joint_states", "/robot_1/policy/step", "/diagnostics"]
    assert topic_namespace("/robot_0/door/imu") == "/robot_0" and topic_namespace("/diagnostics") == ""
    # the graph shows robot_0's publishers, the recorder has matched all of them; robot_1's joint states
    # publisher is in the graph but not matched yet (what the old graph-only check took as ready)
    assert ready_namespaces(topics, [1, 1, 1, 0, 1, 0], [1, 1, 1, 1, 1, 3]) == ["/robot_0"]
    assert ready_namespaces(topics, [1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 0]) == ["/robot_0", "/robot_1"]
    # nobody publishes the goal yet: nothing of it can be lost; but no policy/step publisher is not ready
    assert ready_namespaces(topics, [1, 1, 0, 1, 0, 0], [1, 1, 0, 1, 0, 0]) == ["/robot_0"]
    # two publishers of robot_0's commands in the graph, one matched: not ready
    assert ready_namespaces(topics[:3], [1, 1, 1], [1, 1, 2]) == []
    with pytest.raises(ValueError, match="length"):
        ready_namespaces(topics, [1], [1])
    text = encode_ready(["/robot_1", "/robot_0", "/robot_0"])
    assert text == "async_naf.recorder_ready.v1: /robot_0 /robot_1"
    assert decode_ready(text) == {"/robot_0", "/robot_1"} and decode_ready(encode_ready([])) == frozenset()
    for bad in ("/robot_0", "async_naf.recorder_ready.v2: /robot_0", "async_naf.recorder_ready.v1: robot_0"):
        with pytest.raises(ValueError):
            decode_ready(bad)
    with pytest.raises(ValueError, match="absolute"):
        encode_ready(["robot_0"])


def _listen_ready(probe: Any, qos: Any) -> list[frozenset[str]]:
    """What the probe hears on /recorder/ready with ``qos`` (decoded: the sets of ready namespaces), in order."""
    from std_msgs.msg import String

    from async_naf.wire.recorder import decode_ready

    heard: list[frozenset[str]] = []
    probe.node.create_subscription(String, "/recorder/ready", lambda m: heard.append(decode_ready(m.data)), qos)
    return heard


def _start_recorder(procs: Any, tmp_path: Path, topics: list[tuple[str, str, str]]) -> None:
    """A recorder process recording ``topics`` (name, type, QoS profile) into ``tmp_path/bag``."""
    names, types, qos = (", ".join(t[i] for t in topics) for i in range(3))
    procs.start("recorder", "recorder_node", "-p", f"bag_path:={tmp_path / 'bag'}", "-p", f"topics:=[{names}]",
                "-p", f"types:=[{types}]", "-p", f"qos:=[{qos}]")


@pytest.mark.ros
def test_the_recorder_says_which_robots_it_has_matched(tmp_path: Path, ros_env: dict[str, str]) -> None:
    """A real recorder process: /recorder/ready names no robot while robot_0 has no policy/step publisher,
    then /robot_0 once the recorder has matched both of robot_0's publishers; robot_1 never publishes."""
    pytest.importorskip("rclpy")
    from nodes_harness import Probe, Processes
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from async_naf.nodes import _msgs

    procs = Processes(ros_env, tmp_path)
    probe = Probe(ros_env)
    try:
        seen = _listen_ready(probe, _msgs.LATCHED)
        js_pub = probe.node.create_publisher(JointState, "/robot_0/joint_states", _msgs.SENSOR)
        _start_recorder(procs, tmp_path, [("/robot_0/joint_states", JS, "sensor"),
                                          ("/robot_0/policy/step", F64, "stream"),
                                          ("/robot_1/joint_states", JS, "sensor")])
        probe.spin_until(lambda: js_pub.get_subscription_count() > 0 and len(seen) > 0, 30,
                         "the recorder's subscription and its first readiness message")
        probe.spin_until(lambda: "publishers matched for: no robot yet" in procs.log("recorder"), 10,
                         "the recorder's log of no robot ready")
        assert seen[-1] == frozenset()  # joint states matched, but no policy/step publisher yet
        step_pub = probe.node.create_publisher(Float64MultiArray, "/robot_0/policy/step", _msgs.STREAM)
        probe.spin_until(lambda: bool(seen) and seen[-1] == {"/robot_0"}, 30, "robot_0 named ready")
        assert step_pub.get_subscription_count() == 1
        assert procs.interrupt("recorder") == 0, procs.log("recorder")
    finally:
        probe.close()
        procs.stop_all()


@pytest.mark.ros
def test_a_publisher_of_another_type_does_not_hold_a_robot_back(tmp_path: Path, ros_env: dict[str, str]) -> None:
    """A std_msgs/String publisher on /robot_0/door/imu (the bag records sensor_msgs/Imu there) never matches the
    recorder's subscription. Counted as a publisher of the topic, it held robot_0 back for ever (and its first
    episode with it), and nothing said why; now only publishers of the recorded type count, and it is logged."""
    pytest.importorskip("rclpy")
    from nodes_harness import Probe, Processes
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray, String

    from async_naf.nodes import _msgs

    procs = Processes(ros_env, tmp_path)
    probe = Probe(ros_env)
    try:
        seen = _listen_ready(probe, _msgs.LATCHED)
        probe.node.create_publisher(String, "/robot_0/door/imu", _msgs.IMU)
        js_pub = probe.node.create_publisher(JointState, "/robot_0/joint_states", _msgs.SENSOR)
        step_pub = probe.node.create_publisher(Float64MultiArray, "/robot_0/policy/step", _msgs.STREAM)
        _start_recorder(procs, tmp_path, [("/robot_0/joint_states", JS, "sensor"),
                                          ("/robot_0/policy/step", F64, "stream"),
                                          ("/robot_0/door/imu", "sensor_msgs/msg/Imu", "imu")])
        probe.spin_until(lambda: bool(seen) and seen[-1] == {"/robot_0"}, 30, "robot_0 named ready")
        assert js_pub.get_subscription_count() == 1 and step_pub.get_subscription_count() == 1
        probe.spin_until(lambda: "a publisher of std_msgs/msg/String" in procs.log("recorder"), 10,
                         "the recorder's warning about the String publisher")
        assert procs.interrupt("recorder") == 0, procs.log("recorder")
    finally:
        probe.close()
        procs.stop_all()


def test_a_callback_takes_at_most_one_queue_of_waiting_messages() -> None:
    """Under a flood the subscription's queue never empties: taking until it did kept the recorder's executor
    in one callback for as long as the flood lasted (5 GB taken, no /diagnostics, a SIGINT not honoured for
    16 s until killed). The drain now stops after ``limit`` messages or ``max_bytes``."""
    from types import SimpleNamespace

    from async_naf.nodes.recorder_node import _waiting

    class Handle:  # stands for rclpy's Subscription.handle, whose queue always holds another message (a flood)
        taken = 0

        def __enter__(self) -> Handle:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def take_message(self, msg_type: type, raw: bool) -> tuple[bytes, dict]:
            self.taken += 1
            return b"x", {}

    flooded = SimpleNamespace(handle=Handle(), msg_type=bytes)
    assert len(list(_waiting(flooded, 1000))) == 1000 and flooded.handle.taken == 1000
    assert len(list(_waiting(flooded, 1000, max_bytes=10))) == 10  # 1-byte messages: none after the 10th byte


def test_at_stop_every_bundle_left_by_robots_that_are_gone_is_taken() -> None:
    """At stop the drain bound still applies per pass, but passes go on until the queues of robots that are gone
    are empty: with one bounded pass, 580 of 1000 queued 20 kB bundles were left, neither written nor counted."""
    from types import SimpleNamespace

    from async_naf.nodes.recorder_node import RecorderNode

    class Handle:  # stands for rclpy's Subscription.handle: a queue of 1000 bundles, no publisher left
        queue = [bytes(20_000)] * 1000

        def __enter__(self) -> Handle:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def take_message(self, msg_type: type, raw: bool) -> tuple[bytes, dict] | None:
            return (self.queue.pop(), {}) if self.queue else None

    sub = SimpleNamespace(handle=Handle(), msg_type=bytes, get_publisher_count=lambda: 0)
    taken: list[bytes] = []
    node = SimpleNamespace(cfg=SimpleNamespace(bundle_linger_s=0.0, queue_depth=1000), _bundle_subs={"/robot_0": sub},
                           _put_bundle=taken.append, get_logger=lambda: SimpleNamespace(info=print, warning=print))
    RecorderNode._take_last_bundles(node)  # type: ignore[arg-type]
    assert len(taken) == 1000 and not sub.handle.queue


@pytest.mark.ros
def test_the_recorder_says_it_again_once_every_robot_is_ready(tmp_path: Path, ros_env: dict[str, str]) -> None:
    """Once every namespace is ready the recorder re-publishes its readiness (READY_REFRESH_S): a subscriber that
    did not get the latched sample (here one without transient local durability, joining later) still hears
    it. Before, the recorder fell silent, and a collector that missed the sample waited for ever."""
    pytest.importorskip("rclpy")
    from nodes_harness import Probe, Processes
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from async_naf.nodes import _msgs

    procs = Processes(ros_env, tmp_path)
    probe = Probe(ros_env)
    try:
        latched = _listen_ready(probe, _msgs.LATCHED)
        js_pub = probe.node.create_publisher(JointState, "/robot_0/joint_states", _msgs.SENSOR)
        step_pub = probe.node.create_publisher(Float64MultiArray, "/robot_0/policy/step", _msgs.STREAM)
        _start_recorder(procs, tmp_path, [("/robot_0/joint_states", JS, "sensor"),
                                          ("/robot_0/policy/step", F64, "stream")])
        probe.spin_until(lambda: bool(latched) and latched[-1] == {"/robot_0"}, 30, "robot_0 named ready")
        assert js_pub.get_subscription_count() == 1 and step_pub.get_subscription_count() == 1
        late = _listen_ready(probe, QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,  # volatile: only
                                               durability=DurabilityPolicy.VOLATILE))  # what comes after it matched
        probe.spin_until(lambda: bool(late), 15, "the readiness said again")
        assert late[-1] == {"/robot_0"}
        assert procs.interrupt("recorder") == 0, procs.log("recorder")
    finally:
        probe.close()
        procs.stop_all()


def test_the_graph_records_the_topics_the_issue_names() -> None:
    from async_naf.run.graph import GraphConfig, build_graph, record_topics

    config = GraphConfig(task="door_pull", workers=2, run_dir="/tmp/x", record=True)
    topics = {t: (ty, q) for t, ty, q in record_topics(config)}
    for ns in ("/robot_0", "/robot_1"):
        for rel in ("joint_states", "door/imu", "door/joint_states", "forward_velocity_controller/commands",
                    "task/goal", "policy/step", "ground_truth/door_state", "clock"):
            assert f"{ns}/{rel}" in topics, rel
    assert topics["/robot_0/task/goal"] == ("std_msgs/msg/Float64MultiArray", "latched")
    assert topics["/robot_1/door/imu"][1] == "imu"
    assert {"/trainer/weights", "/diagnostics"} <= set(topics)
    nodes = build_graph(config)
    recorder = next(n for n in nodes if n.role == "recorder")
    assert recorder.parameters["topics"] == list(topics) and recorder.parameters["bag_path"] == "/tmp/x/bag"
    assert not any(n.role == "recorder" for n in build_graph(GraphConfig(task="reach", workers=1)))
    reach = {t for t, _, _ in record_topics(GraphConfig(task="reach", workers=1))}
    assert "/clock" in reach and not any("door" in t for t in reach)


def test_collectors_wait_for_the_recorder_that_takes_the_run() -> None:
    """The graph's own /recorder (async-naf train --record) or rosbag2's (train.launch.py record:=true): the
    first episode of each robot waits until that node is ready for it (the graph's own recorder says when it
    has matched the robot's publishers; rosbag2's is seen subscribing); no recorder, no wait."""
    from async_naf.run.graph import ROSBAG2_RECORDER, GraphConfig, build_graph

    def waits(config: GraphConfig) -> set[str]:
        return {n.parameters["wait_for_recorder"] for n in build_graph(config) if n.role == "collector"}

    assert waits(GraphConfig(task="reach", workers=2, record=True)) == {"/recorder"}
    assert waits(GraphConfig(task="reach", workers=2, external_recorder=ROSBAG2_RECORDER)) == {"/rosbag2_recorder"}
    assert waits(GraphConfig(task="reach", workers=2)) == {""}
    # the graph's own recorder says when it has matched a robot's publishers; rosbag2's cannot
    ready_topics = {(n.parameters["wait_for_recorder"], n.parameters["recorder_ready_topic"])
                    for c in (GraphConfig(task="reach", workers=2, record=True),
                              GraphConfig(task="reach", workers=2, external_recorder=ROSBAG2_RECORDER))
                    for n in build_graph(c) if n.role == "collector"}
    assert ready_topics == {("/recorder", "/recorder/ready"), ("/rosbag2_recorder", "")}
    with pytest.raises(ValueError, match="fully qualified"):
        GraphConfig(task="reach", external_recorder="rosbag2_recorder")
    launch = (Path(__file__).resolve().parents[1] / "launch" / "train.launch.py").read_text()
    assert 'external_recorder=ROSBAG2_RECORDER if arg("record") == "true"' in launch


@pytest.mark.e2e
@pytest.mark.slow
def test_a_recorded_run_holds_every_step_the_trainer_got(tmp_path: Path, ros_env: dict[str, str]) -> None:
    """async-naf train --record: the bag holds the policy's steps and goals of every episode, nothing dropped,
    and can feed the exact conversion for the run's task."""
    import json

    run = tmp_path / "run"
    out = subprocess.run([sys.executable, "-m", "async_naf.run.cli", "train", "--task", "reach", "--workers", "1",
                          "--steps", "400", "--minutes", "3", "--eval-every", "0", "--eval-episodes", "1",
                          "--record", "--run-dir", str(run), "--quiet"],
                         env=ros_env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    info = bag_info(run / "bag")
    steps = info.topics["/robot_0/policy/step"].count
    episodes = len(info.episodes["/robot_0"])
    # every transition the trainer received pairs two recorded steps of one episode
    assert steps >= summary["env_steps"] + episodes - 1 > 0
    assert info.topics["/robot_0/joint_states"].count >= steps
    assert info.topics["/robot_0/forward_velocity_controller/commands"].count >= steps
    assert info.topics["/trainer/weights"].count >= 1
    assert info.feeds["reach"]["exact"] == {"/robot_0": []} and info.feeds["reach"]["raw"] == {"/robot_0": []}
    log = (run / "logs" / "recorder.log").read_text()
    assert ", 0 dropped" in log, log[-2000:]
    # the composed robot's tap (every robot topic but the latched goal): each message it took is in the bag,
    # its last bundle (sent from its shutdown) included
    tapped = json.loads((run / "collectors" / "robot_0.json").read_text())["recorded_messages"]
    assert tapped == sum(t.count for name, t in info.topics.items()
                         if name.startswith("/robot_0/") and name != "/robot_0/task/goal") > 0
    # the exact conversion reproduces what the trainer received (its final buffer), row for row
    from async_naf.run.convert import compare_with_buffer, convert_exact

    converted = convert_exact(run / "bag", "reach")
    match = compare_with_buffer(converted.batch, run / "checkpoints" / "replay_final.npz")
    assert match["buffer_rows"] == summary["env_steps"] > 0
    assert match["unmatched"] == 0 and match["max_abs_diff"] == 0.0, match
    # the raw conversion (sensor topics only) agrees with the exact one: reach has no door estimate, so a
    # matched row's observations are the same joint state's, bit for bit; a few steps may pair differently
    # (a command received after the joint state it caused, two commands on one state)
    from async_naf.run.convert import compare_conversions
    from async_naf.run.convert_raw import convert_raw
    from async_naf.task.tasks import make_task

    raw = convert_raw(run / "bag", "reach")
    cmp = compare_conversions(raw, converted, make_task("reach").obs_layout)
    assert cmp["matched"] >= 0.9 * converted.counts["transitions"], cmp
    assert cmp["obs"]["max_abs"] == 0.0 and cmp["done"]["max_abs"] == 0.0, cmp
    assert cmp["action"]["rows_over_tol"] <= 0.05 * cmp["matched"], cmp


# ------------------------------------------------------------------------------------------- conversion
def _synthetic_steps(task_name: str, episode: int, n: int, goal: np.ndarray, seed: int):
    from async_naf.task.tasks import TaskState, make_task

    task = make_task(task_name)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        q, qd, ee = rng.normal(size=7), rng.normal(size=7), rng.uniform(0.2, 0.6, size=3)
        obs = task.observation(TaskState(q, qd, ee, 0.0, 0.0), goal)
        out.append(layouts.PolicyStep(10.0 + episode + 0.05 * i, episode, i, obs.astype(np.float64),
                                      rng.uniform(-0.5, 0.5, size=7), q, qd, ee, 0.0, 0.0))
    return out


def _write_policy_bag(path: Path, extra: list[tuple[str, bytes]] = (), custom_data: dict | None = None) -> list:
    """Robot 0, reach: two episodes of 6 policy steps each, goals before their steps."""
    store = _store()
    writer = BagWriter(path, [TopicSpec("/robot_0/task/goal", F64, qos_dict("latched")),
                              TopicSpec("/robot_0/policy/step", F64, qos_dict("stream"))], custom_data=custom_data)
    t, episodes = 1_000_000_000, []
    for episode in range(2):
        goal = np.array([0.4, 0.1 * episode, 0.3])
        writer.put(0, t, _goal_bytes(store, episode, True, goal))
        t += 1000
        steps = _synthetic_steps("reach", episode, 6, goal, seed=episode)
        for step in steps:
            writer.put(1, t, array_bytes(store, layouts.encode_policy_step(step)))
            t += 1000
        for topic_index, data in extra:
            writer.put(1 if topic_index == "step" else 0, t, data)
            t += 1000
        writer.put(0, t, _goal_bytes(store, episode, False, goal))
        t += 1000
        episodes.append((goal, steps))
    writer.close()
    return episodes


def _goal_bytes(store, episode: int, active: bool, goal: np.ndarray) -> bytes:
    return array_bytes(store, layouts.encode_goal(layouts.Goal(episode, active, goal)))


def test_exact_conversion_equals_the_collector_on_the_same_steps(tmp_path: Path) -> None:
    from async_naf.collecting.collector import CollectorConfig, EpisodeAssembler
    from async_naf.run.convert import convert_exact, write_dataset

    bag = tmp_path / "bag"
    episodes = _write_policy_bag(bag)
    converted = convert_exact(bag, "reach", {"episode_steps": 4})
    # the same steps through a collector's assembler, live-style
    asm = EpisodeAssembler(CollectorConfig(task="reach", episode_steps=4, batch_transitions=1000))
    for goal, steps in episodes:
        asm.start_episode(goal)
        for step in steps:
            asm.add_step(step)
    expected = asm.pop_batch()
    assert converted.counts["transitions"] == 8 and converted.episodes == 2  # 4 per episode (time limit)
    for got, want in zip(converted.batch, (expected.obs, expected.action, expected.reward, expected.next_obs,
                                           expected.terminal)):
        np.testing.assert_array_equal(got, want)
    assert converted.drops["step:other_episode"] == 0
    out = write_dataset(converted, bag, "reach", tmp_path / "data")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["transitions"] == 8 and manifest["robots"] == ["/robot_0"] and len(manifest["bag_sha256"]) == 64
    from async_naf.learning.replay import ReplayBuffer

    assert len(ReplayBuffer.load(out / "replay.npz")) == 8
    with pytest.raises(ValueError, match="exists"):
        write_dataset(converted, bag, "reach", out)


def test_bad_messages_are_counted_and_other_tasks_refused(tmp_path: Path) -> None:
    from async_naf.run.convert import convert_exact, write_dataset

    store = _store()
    bad_step = array_bytes(store, layouts.ArrayMsg(("async_naf.policy_step.v1:obs=23,act=7",), (3,), (3,),
                                                    np.array([1.0, np.nan, 2.0])))
    bag = tmp_path / "bag"
    _write_policy_bag(bag, extra=[("step", bad_step), ("step", b"\x00\x01garbage")])
    converted = convert_exact(bag, "reach", {"episode_steps": 4})
    assert converted.counts["transitions"] == 8
    assert sum(v for k, v in converted.drops.items() if k.startswith("policy/step")) == 4  # 2 per episode
    # a bag of reach (obs 23) cannot feed door_pull (obs 22): every step is refused, nothing is written
    with pytest.raises(BagError, match="no robot"):
        convert_exact(bag, "door_pull")
    empty = convert_exact(bag, "reach", {"episode_steps": 4})
    empty.batch = type(empty.batch)(*(x[:0] for x in empty.batch))
    with pytest.raises(ValueError, match="no transitions"):
        write_dataset(empty, bag, "reach", tmp_path / "none")
    assert not (tmp_path / "none").exists() and not (tmp_path / "none.part").exists()


def test_a_bag_recorded_for_another_task_is_refused(tmp_path: Path) -> None:
    """door_pull and door_push have the same sizes: a door_pull run's bag converted as door_push gave 101,746
    transitions without a word (goals, observations and the door are the other task's). The recorded run's
    collector parameters (``RUN_DIR/params``) name its task; a conversion for another task is refused."""
    from async_naf.run.convert import convert_exact

    run = tmp_path / "run"
    _write_policy_bag(run / "bag")
    (run / "params").mkdir()
    params = run / "params" / "robot_0.collector.yaml"
    params.write_text("/robot_0/collector:\n  ros__parameters:\n    task: reach\n    episode_steps: 4\n")
    assert convert_exact(run / "bag", "reach").counts["transitions"] == 8  # its own task: the recorded parameters
    params.write_text("/robot_0/collector:\n  ros__parameters:\n    task: door_pull\n    episode_steps: 4\n")
    with pytest.raises(BagError, match=r"recorded running task 'door_pull'.*not 'reach'"):
        convert_exact(run / "bag", "reach")
    # bag info says so (it said "reach exact: yes", and "door_pull exact: yes" for a reach bag)
    info = bag_info(run / "bag")
    assert info.recorded_tasks == {"/robot_0": "door_pull"} and info.step_dims == {"/robot_0": (23, 7)}
    assert info.feeds["reach"]["exact"]["/robot_0"] == ["recorded running door_pull"]
    assert info.feeds["door_pull"]["exact"]["/robot_0"] == ["policy/step obs 23, act 7 (door_pull: obs 22, act 7)"]
    assert "reach exact: no: /robot_0: recorded running door_pull" in format_info(info)
    # a params file that is not YAML: a clear error from the conversion (a yaml ParserError traceback before),
    # a line in bag info, which still reports the bag
    for empty in ("", "{}\n", "/robot_0/collector: {}\n"):  # no parameters: the defaults, as before
        params.write_text(empty)
        assert convert_exact(run / "bag", "reach", {"episode_steps": 4}).counts["transitions"] == 8
    params.write_text("/robot_0/collector: [unclosed\n")
    with pytest.raises(BagError, match="collector parameters are unreadable: ParserError"):
        convert_exact(run / "bag", "reach")
    info = bag_info(run / "bag")
    assert info.recorded_tasks == {} and len(info.params_errors) == 1
    assert "UNREADABLE: " in format_info(info) and info.topics["/robot_0/policy/step"].count == 12


def test_a_bag_copied_out_of_its_run_still_says_its_task(tmp_path: Path) -> None:
    """The recorder writes the run's task into metadata.yaml (custom_data async_naf.task): a bag copied without
    its run directory's params/ is still refused for another task (a reviewer's door_pull bag, moved, converted
    as door_push without a word) and bag info names its task."""
    import yaml

    from async_naf.run.convert import convert_exact

    bag = tmp_path / "moved"
    _write_policy_bag(bag, custom_data={TASK_KEY: "door_pull"})
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["custom_data"] == {TASK_KEY: "door_pull"} and meta["version"] == 9
    with pytest.raises(BagError, match=r"recorded running task 'door_pull'.*not 'reach'"):
        convert_exact(bag, "reach", {"episode_steps": 4})
    assert bag_info(bag).recorded_tasks == {"/robot_0": "door_pull"}
    own = tmp_path / "own"
    _write_policy_bag(own, custom_data={TASK_KEY: "reach"})
    assert convert_exact(own, "reach", {"episode_steps": 4}).counts["transitions"] == 8
    plain = tmp_path / "plain"  # no custom data (ros2 bag record): the defaults, as before
    _write_policy_bag(plain)
    assert convert_exact(plain, "reach", {"episode_steps": 4}).counts["transitions"] == 8
    assert bag_info(plain).recorded_tasks == {}


def test_a_launched_rosbag2_recorder_writes_the_task_into_the_bag(tmp_path: Path) -> None:
    """train.launch.py record:=true runs `ros2 bag record` (not installable here). Its command carries the task as
    rosbag2's --custom-data KEY=VALUE (ros2bag's record verb: nargs '*', split at the first '='; checked against
    rosbag2's record.py), so the bag it writes names the task as the graph's own recorder does."""
    import argparse

    from async_naf.run.graph import GraphConfig, record_topics, rosbag2_record_command

    config = GraphConfig(task="door_pull", workers=2, run_dir=str(tmp_path / "run"))
    cmd = rosbag2_record_command(config)
    assert cmd[:3] == ["ros2", "bag", "record"]
    parser = argparse.ArgumentParser()  # the options of ros2bag's record verb this command uses
    parser.add_argument("-s", "--storage")
    parser.add_argument("-o", "--output")
    parser.add_argument("--custom-data", type=str, nargs="*")
    parser.add_argument("--topics", type=str, default=[], nargs="+")
    args = parser.parse_args(cmd[3:])
    assert args.storage == "mcap" and args.output == str((tmp_path / "run" / "bag").resolve())
    assert args.topics == [topic for topic, _, _ in record_topics(config)]
    custom_data = dict(entry.split("=", 1) for entry in args.custom_data)
    assert custom_data == {TASK_KEY: "door_pull"}
    bag = tmp_path / "launched"  # what rosbag2 then writes into metadata.yaml's custom_data
    _write_policy_bag(bag, custom_data=custom_data)
    assert bag_info(bag).recorded_tasks == {"/robot_0": "door_pull"}
    launch = (Path(__file__).resolve().parents[1] / "launch" / "train.launch.py").read_text()
    assert "ExecuteProcess(cmd=rosbag2_record_command(config)" in launch


def test_readiness_of_several_recorders_is_the_union_in_any_order() -> None:
    """A run split over three hosts (the partition test's lab) has three ``/recorder`` nodes on one readiness
    topic; what a collector learns must not depend on which message came last. Taking the last one alone left
    robot_0's collector waiting for ever in a netns run whose last message was the trainer host's."""
    from itertools import permutations

    from async_naf.wire.recorder import encode_ready, merge_ready

    messages = [encode_ready(["/trainer"]), encode_ready(["/robot_0", "/trainer"]),
                encode_ready(["/robot_1", "/trainer"])]
    for order in permutations(messages):
        known: frozenset[str] = frozenset()
        for text in order:
            known = merge_ready(known, text)
        assert known == {"/robot_0", "/robot_1", "/trainer"}
    with pytest.raises(ValueError):
        merge_ready(frozenset({"/robot_0"}), "async_naf.recorder_ready.v2: /robot_1")


def test_the_vectorised_conversion_equals_the_message_by_message_one(tmp_path: Path) -> None:
    """Two door robots, one with ground truth (some stamps missing), and every kind of bad message: the
    indexed-MCAP tables give the same transitions, keys, counts and drops as rosbags message by message."""
    from collections import Counter

    from async_naf.run import convert
    from async_naf.task.tasks import make_task

    store = _store()
    t = store.types
    task = make_task("door_pull")
    goal = task.sample_goal(np.random.default_rng(0))
    topics = [TopicSpec(f"/robot_{r}/{name}", kind, qos_dict(q)) for r in (0, 1) for name, kind, q in
              (("task/goal", F64, "latched"), ("policy/step", F64, "stream"),
               ("ground_truth/door_state", "sensor_msgs/msg/JointState", "sensor"))]
    writer = BagWriter(tmp_path / "bag", topics)
    rng = np.random.default_rng(1)
    now = 1_000_000_000
    bad = {0: "nan", 3: "nan", 7: "reach_dims", 11: "garbage", 15: "negative_episode"}
    for episode in range(4):
        for r in (0, 1):
            writer.put(3 * r, now, _goal_bytes(store, episode, True, goal))
            if episode == 2:
                writer.put(3 * r, now, _goal_bytes(store, episode, True, goal))  # re-published: one episode
        steps = _synthetic_steps("door_pull", episode, 40, goal, seed=episode)
        for i, step in enumerate(steps):
            door = float(rng.uniform(0.0, 1.2))
            step = layouts.PolicyStep(step.stamp_s, step.episode, step.step + (i >= 30), step.obs, step.action,
                                      step.joint_pos, step.joint_vel, step.ee_pos, door, 0.0)  # a gap at 30
            for r in (0, 1):
                now += 1000
                data = array_bytes(store, layouts.encode_policy_step(step))
                kind = bad.get(i) if r == 0 else None
                if kind == "nan":
                    arr = layouts.encode_policy_step(step)
                    values = arr.data.copy()
                    values[5] = np.nan
                    data = array_bytes(store, layouts.ArrayMsg(arr.labels, arr.sizes, arr.strides, values))
                elif kind == "reach_dims":
                    data = array_bytes(store, layouts.ArrayMsg(("async_naf.policy_step.v1:obs=23,act=7",), (47,),
                                                               (47,), np.zeros(47)))
                elif kind == "garbage":
                    data = b"\x00\x01garbage"
                elif kind == "negative_episode":
                    data = array_bytes(store, layouts.encode_policy_step(
                        layouts.PolicyStep(step.stamp_s, -1, 0, *(getattr(step, f) for f in
                                           ("obs", "action", "joint_pos", "joint_vel", "ee_pos")))))
                writer.put(3 * r + 1, now + (5000 if r == 1 and i == 20 else 0), data)  # one late receive
                if r == 1 and i % 9:  # robot 1's truth, missing at every ninth step
                    sec, nsec = divmod(int(round(step.stamp_s * 1e9)), 1_000_000_000)
                    js = t["sensor_msgs/msg/JointState"](
                        header=t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec),
                                                        frame_id=""),
                        name=["door_hinge", "door_handle"], position=np.array([door + 0.01, 0.4]),
                        velocity=np.zeros(2), effort=np.zeros(0))
                    writer.put(5, now, bytes(store.serialize_cdr(js, "sensor_msgs/msg/JointState")))
        orphan = _synthetic_steps("door_pull", 9, 1, goal, seed=9)[0]  # a step of an episode without a goal
        writer.put(1, now + 1, array_bytes(store, layouts.encode_policy_step(orphan)))
        now += 10_000_000
    writer.close()

    one_by_one = []
    decode_counted = convert._decode_counted

    def counted(kind, *args):
        one_by_one.append(kind)
        decode_counted(kind, *args)

    convert._decode_counted = counted
    try:
        assert convert._read_fast(tmp_path / "bag", task, Counter(), Counter()) is not None  # the tables apply
    finally:
        convert._decode_counted = decode_counted
    # one by one: the goals and the bad steps only (a bad first step does not send its stream that way)
    assert one_by_one.count("task/goal") == 10 and one_by_one.count("policy/step") == 4 * len(bad)
    assert "ground_truth/door_state" not in one_by_one
    fast = convert.convert_exact(tmp_path / "bag", "door_pull", {"episode_steps": 30})
    slow = convert.convert_exact(tmp_path / "bag", "door_pull", {"episode_steps": 30}, vectorised=False)
    for a, b in zip(fast.batch, slow.batch):
        assert np.array_equal(a, b)
    assert np.array_equal(fast.keys, slow.keys)
    assert (dict(fast.counts), dict(fast.drops), fast.episodes) == (dict(slow.counts), dict(slow.drops), slow.episodes)
    assert fast.counts["transitions"] > 150 and fast.drops["truth_missing"] > 0
    assert {"policy/step:layout", "policy/step:undecodable", "step:no_goal", "step:gap"} <= set(fast.drops)


def test_exact_steps_after_a_shortened_episode_end_are_counted_and_said(tmp_path: Path, capsys) -> None:
    """--episode-steps shorter than the recorded episodes: the steps after each episode's new end make no
    transition. They vanished with "dropped: none" (about 6,000 of 9,025 in a reviewer's run); now the
    manifest counts them (steps_after_episode_end) and the command says so."""
    from async_naf.run.cli import main

    bag = tmp_path / "bag"
    _write_policy_bag(bag)  # 2 episodes of 6 policy steps
    out = tmp_path / "short"
    assert main(["bag", "convert", str(bag), "--task", "reach", "--out", str(out), "--episode-steps", "2"]) == 0
    said = capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["transitions"] == 4 and manifest["counts"]["steps_after_episode_end"] == 6  # steps 3-5, twice
    assert "note: 6 policy steps came after their episode's end" in said and "--episode-steps 2" in said
    full = tmp_path / "full"
    assert main(["bag", "convert", str(bag), "--task", "reach", "--out", str(full), "--episode-steps", "5"]) == 0
    assert "note:" not in capsys.readouterr().out  # the policy's usual step after the time limit: nothing to say
    assert json.loads((full / "manifest.json").read_text())["counts"]["steps_after_episode_end"] == 0
