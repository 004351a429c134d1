"""The MCAP-index fast path (``async_naf.recording.indexed.read_indexed``) against rosbags' AnyReader.

For bags of the project's own writer (``BagWriter``, through ``write_door_bag``), of rosbags' writer with
zstd chunks and of the ``mcap`` library's writer (zstd, lz4 and uncompressed chunks, small chunks, receive
times out of file order with ties within and across chunks, a topic of two channels, several files), the
fast path yields per topic exactly the payloads and receive times, in the same order, that
``AnyReader([bag]).messages(connections=...)`` yields; where it does not apply it returns None (and raises
nothing): sqlite3 storage, MCAP without summary, chunk indexes or message indexes, truncated or corrupt files,
compressed bags, channels that do not match metadata.yaml. ``topic_types`` names each topic's one type.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import yaml
from mcap.writer import CompressionType, IndexType, Writer
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore

from async_naf.recording import indexed
from async_naf.recording.indexed import TopicPayloads, read_indexed, topic_types

Messages = dict[str, list[tuple[int, bytes]]]
Merged = list[tuple[str, int, bytes]]


def _anyreader_merged(bag: Path, topics: list[str]) -> Merged:
    """What rosbags yields for the connections of ``topics`` together: (topic, receive time ns, payload)."""
    with AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_JAZZY)) as reader:
        conns = [c for c in reader.connections if c.topic in topics]
        return [(conn.topic, stamp, bytes(data)) for conn, stamp, data in reader.messages(connections=conns)]


def _anyreader(bag: Path, topics: list[str]) -> Messages:
    """What rosbags yields for ``topics``, per topic: (receive time ns, payload) in its order."""
    out: Messages = {}
    for topic, stamp, data in _anyreader_merged(bag, topics):
        out.setdefault(topic, []).append((stamp, data))
    return out


def _fast_merged(bag: Path, topics: list[str]) -> Merged:
    """read_indexed's topics merged by their ``order``: must be a permutation of all messages."""
    got = read_indexed(bag, topics)
    assert got is not None
    total = sum(len(tp.log_time) for tp in got.values())
    merged: list[tuple[str, int, bytes] | None] = [None] * total
    for topic, tp in got.items():
        assert tp.order is not None and tp.order.dtype == np.int64 and len(tp.order) == len(tp.log_time)
        assert (np.diff(tp.order) > 0).all()  # each topic's own order is kept
        for i, place in enumerate(tp.order.tolist()):
            assert 0 <= place < total and merged[place] is None
            merged[place] = (topic, int(tp.log_time[i]), tp.payload(i))
    return [m for m in merged if m is not None]


def _fast(bag: Path, topics: list[str]) -> Messages | None:
    got = read_indexed(bag, topics)
    if got is None:
        return None
    out: Messages = {}
    for topic, tp in got.items():
        assert isinstance(tp, TopicPayloads) and topic in topics
        assert tp.log_time.dtype == np.int64 and tp.start.dtype == np.int64 and tp.length.dtype == np.int64
        assert tp.buf.dtype == np.uint8 and tp.buf.ndim == 1
        n = len(tp.log_time)
        assert len(tp.start) == len(tp.length) == n
        # the payloads lie back to back in message order
        assert np.array_equal(tp.start, np.concatenate([[0], np.cumsum(tp.length)[:-1]]).astype(np.int64)[:n])
        assert tp.buf.size == int(tp.length.sum())
        if n:  # an empty topic (present in the bag, no messages) is kept; rosbags yields nothing for it
            out[topic] = [(int(tp.log_time[i]), tp.payload(i)) for i in range(n)]
    return out


def _assert_same(bag: Path, topics: list[str]) -> Messages:
    expected = _anyreader(bag, topics)
    assert expected, "the comparison needs messages"
    got = _fast(bag, topics)
    assert got is not None, "the fast path should apply"
    assert got.keys() == expected.keys()
    for topic, msgs in expected.items():
        assert got[topic] == msgs, topic
    if len(expected) > 1:  # merging the topics by their order gives rosbags' merged order
        assert _fast_merged(bag, topics) == _anyreader_merged(bag, topics)
    return got


# --- the project's own writer ------------------------------------------------------------------------------

DOOR_TOPICS = ["/robot_0/joint_states", "/robot_0/door/imu", "/robot_0/forward_velocity_controller/commands",
               "/robot_0/task/goal", "/robot_0/policy/step"]


@pytest.fixture(scope="module")
def door_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from async_naf.bench.convert import write_door_bag

    bag = tmp_path_factory.mktemp("door") / "bag"
    write_door_bag(bag, 500)  # 1.4 MB: two chunks of rosbags' writer (it closes a chunk past 1 MiB)
    return bag


@pytest.mark.parametrize("topics", [DOOR_TOPICS, ["/robot_0/policy/step"], ["/robot_0/task/goal", "/robot_0/door/imu"]])
def test_a_door_bag_of_the_project_writer_reads_as_rosbags_reads_it(door_bag: Path, topics: list[str]) -> None:
    got = _assert_same(door_bag, topics)
    if "/robot_0/policy/step" in topics:
        assert len(got["/robot_0/policy/step"]) == 500
    assert read_indexed(door_bag, topics + ["/robot_0/not_recorded"]).keys() == set(topics)


def test_the_single_mcap_file_of_a_bag_reads_as_rosbags_reads_it(door_bag: Path) -> None:
    (path,) = door_bag.glob("*.mcap")
    _assert_same(path, ["/robot_0/policy/step", "/robot_0/joint_states"])


def test_topic_types_name_each_topic_s_one_type(door_bag: Path, tmp_path: Path) -> None:
    expected = {"/robot_0/joint_states": "sensor_msgs/msg/JointState", "/robot_0/door/imu": "sensor_msgs/msg/Imu",
                **{t: "std_msgs/msg/Float64MultiArray" for t in DOOR_TOPICS[2:]}}
    assert topic_types(door_bag) == expected
    (path,) = door_bag.glob("*.mcap")
    assert topic_types(path) == expected
    bag = _mcap_bag(tmp_path, n=20)
    assert topic_types(bag) is None  # /a has two types
    assert topic_types(bag / "bag_0.mcap") is None
    assert topic_types(tmp_path / "nothing") is None


def test_zstd_chunks_of_rosbags_writer(tmp_path: Path) -> None:
    from rosbags.rosbag2 import StoragePlugin
    from rosbags.rosbag2 import Writer as BagWriter2
    from rosbags.rosbag2.enums import CompressionFormat, CompressionMode

    store = get_typestore(Stores.ROS2_JAZZY)
    rng = np.random.default_rng(3)
    bag = tmp_path / "bag"
    writer = BagWriter2(bag, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    with writer:
        big = writer.add_connection("/big", "std_msgs/msg/String", typestore=store)
        small = writer.add_connection("/small", "std_msgs/msg/String", typestore=store)
        for i in range(300):  # ~3 MB of 10 kB messages: three chunks; receive times jump back and forth
            stamp = 1_000_000 + int(rng.integers(0, 50)) * 1000
            writer.write(big, stamp, struct.pack("<I", i) + rng.bytes(10_000))
            writer.write(small, stamp, struct.pack("<I", i) * int(rng.integers(1, 4)))
    assert yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"][
        "compression_mode"] == ""  # chunk compression is the storage's business: the fast path applies
    _assert_same(bag, ["/big", "/small"])
    _assert_same(bag, ["/small"])


# --- the mcap library's writer -----------------------------------------------------------------------------

QOS = [{"history": "keep_last", "depth": 10, "reliability": "reliable", "durability": "volatile",
        "deadline": {"sec": 0, "nsec": 0}, "lifespan": {"sec": 0, "nsec": 0}, "liveliness": "automatic",
        "liveliness_lease_duration": {"sec": 0, "nsec": 0}, "avoid_ros_namespace_conventions": False}]
DEFS = {"std_msgs/msg/String": "string data", "test_msgs/msg/Blob": "uint8[] data",
        "test_msgs/msg/Value": "float64 x"}
# (topic, type, offered QoS): /a has two channels of different types, /b none of QoS, /noise is never wanted,
# /empty has no messages
CHANNELS = [("/a", "std_msgs/msg/String", QOS), ("/a", "test_msgs/msg/Blob", QOS), ("/b", "test_msgs/msg/Value", []),
            ("/noise", "test_msgs/msg/Blob", QOS), ("/empty", "std_msgs/msg/String", QOS)]


def _messages(rng: np.random.Generator, n: int, t0: int = 1_000_000_000) -> list[tuple[int, int, bytes]]:
    """(channel index, receive time ns, payload): times out of order with many ties, payloads unique but for
    the empty ones; /b's payloads of three lengths (one of them 0), /a's of many."""
    out = []
    for i in range(n):
        ch = int(rng.choice([0, 1, 2, 3], p=[0.25, 0.15, 0.3, 0.3]))
        stamp = t0 + int(rng.integers(0, 40)) * 1000
        tag = struct.pack("<I", i)
        if ch == 2:
            data = [b"", tag * 2, tag * 4][int(rng.integers(0, 3))]
        else:
            data = tag + rng.bytes(int(rng.integers(0, 60)))
        out.append((ch, stamp, data))
    return out


def _write_mcap(path: Path, messages: list[tuple[int, int, bytes]], compression: CompressionType = CompressionType.ZSTD,
                chunk_size: int = 1500, channels: list[tuple[str, str, list]] = CHANNELS, profile: str = "ros2",
                **kwargs) -> None:
    with path.open("wb") as f:
        writer = Writer(f, chunk_size=chunk_size, compression=compression, **kwargs)
        writer.start(profile=profile, library="test_indexed_mcap")
        schemas: dict[str, int] = {}
        ids = []
        for topic, typ, qos in channels:
            if typ not in schemas:
                schemas[typ] = writer.register_schema(typ, "ros2msg", DEFS[typ].encode())
            meta = {"offered_qos_profiles": yaml.safe_dump(qos)} if qos else {}
            ids.append(writer.register_channel(topic, "cdr", schemas[typ], meta))
        for seq, (ch, stamp, data) in enumerate(messages):
            writer.add_message(ids[ch], stamp, data, publish_time=stamp + 7, sequence=seq)
        writer.finish()


def _write_metadata(bag: Path, files: list[str], messages: list[tuple[int, int, bytes]],
                    channels: list[tuple[str, str, list]] = CHANNELS, **extra) -> None:
    """metadata.yaml as rosbag2 (and rosbags' writer) writes it, version 9."""
    counts = [sum(1 for m in messages if m[0] == i) for i in range(len(channels))]
    stamps = [m[1] for m in messages]
    topics = []
    for (topic, typ, qos), count in zip(channels, counts):
        tm: dict = {"name": topic, "type": typ, "serialization_format": "cdr"}
        if qos:
            tm["offered_qos_profiles"] = qos
        topics.append({"topic_metadata": tm, "message_count": count})
    info = {"version": 9, "storage_identifier": "mcap", "relative_file_paths": files,
            "duration": {"nanoseconds": max(stamps) - min(stamps)},
            "starting_time": {"nanoseconds_since_epoch": min(stamps)}, "message_count": len(messages),
            "topics_with_message_count": topics, "compression_format": "", "compression_mode": "",
            "custom_data": None, "ros_distro": "jazzy"}
    info.update(extra)
    (bag / "metadata.yaml").write_text(yaml.safe_dump({"rosbag2_bagfile_information": info}))


def _mcap_bag(tmp_path: Path, compression: CompressionType = CompressionType.ZSTD, n: int = 600, seed: int = 0,
              **kwargs) -> Path:
    bag = tmp_path / "bag"
    bag.mkdir()
    msgs = _messages(np.random.default_rng(seed), n)
    _write_mcap(bag / "bag_0.mcap", msgs, compression, **kwargs)
    _write_metadata(bag, ["bag_0.mcap"], msgs)
    return bag


@pytest.mark.parametrize("compression", [CompressionType.ZSTD, CompressionType.LZ4, CompressionType.NONE])
def test_mcap_writer_bags_with_small_chunks_and_unordered_times(tmp_path: Path, compression: CompressionType) -> None:
    from mcap.reader import make_reader

    bag = _mcap_bag(tmp_path, compression)
    with (bag / "bag_0.mcap").open("rb") as f:
        chunks = make_reader(f).get_summary().chunk_indexes
    assert len(chunks) > 10
    got = _assert_same(bag, ["/a", "/b", "/noise"])
    times = [t for t, _ in got["/a"]]
    assert times == sorted(times) and len(set(times)) < len(times)  # ties: rosbags' tie-break decides
    _assert_same(bag, ["/b"])
    _assert_same(bag / "bag_0.mcap", ["/a", "/b"])
    # absent topics are absent; a topic with no messages is there, empty
    result = read_indexed(bag, ["/a", "/empty", "/missing"])
    assert result is not None and result.keys() == {"/a", "/empty"} and len(result["/empty"].log_time) == 0


def test_gathering_in_small_blocks_gives_the_same_payloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(indexed, "_GATHER_BLOCK", 64)
    _assert_same(_mcap_bag(tmp_path, seed=1, chunk_size=20_000), ["/a", "/b"])


def test_several_files_are_read_in_the_order_of_the_metadata(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    bag = tmp_path / "bag"
    bag.mkdir()
    first, second = _messages(rng, 300, t0=2_000_000_000), _messages(rng, 300, t0=1_000_000_000)
    _write_mcap(bag / "z.mcap", first, CompressionType.LZ4)
    _write_mcap(bag / "a.mcap", second, CompressionType.ZSTD)
    # rosbag2 lists the files relative to the bag's parent in older versions: only the name counts
    _write_metadata(bag, ["bag/z.mcap", "a.mcap"], first + second)
    got = _assert_same(bag, ["/a", "/b"])
    times = [t for t, _ in got["/b"]]
    assert times != sorted(times)  # file after file, not merged by time
    assert times[0] >= 2_000_000_000


# --- where the fast path does not apply --------------------------------------------------------------------


def _none_and_rosbags_reads(bag: Path, topics: list[str], rosbags_fails: bool = False) -> None:
    assert read_indexed(bag, topics) is None
    if rosbags_fails:
        with pytest.raises(Exception):  # noqa: B017 - rosbags' own error, whichever it is
            _anyreader(bag, topics)


def test_a_sqlite3_bag(tmp_path: Path) -> None:
    from rosbags.rosbag2 import StoragePlugin
    from rosbags.rosbag2 import Writer as BagWriter2

    bag = tmp_path / "bag"
    with BagWriter2(bag, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        conn = writer.add_connection("/a", "std_msgs/msg/String", typestore=get_typestore(Stores.ROS2_JAZZY))
        writer.write(conn, 1, b"\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00")
    assert read_indexed(bag, ["/a"]) is None and topic_types(bag) is None
    (db3,) = bag.glob("*.db3")
    assert read_indexed(db3, ["/a"]) is None
    assert len(_anyreader(bag, ["/a"])["/a"]) == 1


@pytest.mark.parametrize("kwargs", [
    {"use_chunking": False},  # messages in the data section, no chunk indexes
    {"index_types": IndexType.NONE},  # chunks, no chunk indexes
    {"index_types": IndexType.CHUNK},  # chunk indexes, no message indexes: a statistics count they miss
    {"index_types": IndexType.CHUNK, "use_statistics": False},  # ... and nothing that says what chunks hold
    {"index_types": IndexType.NONE, "use_statistics": False, "repeat_channels": False, "repeat_schemas": False,
     "use_summary_offsets": False},  # no summary section at all
], ids=["unchunked", "no-chunk-index", "no-message-index", "no-message-index-no-statistics", "no-summary"])
def test_mcap_files_without_the_indexes(tmp_path: Path, kwargs: dict) -> None:
    bag = _mcap_bag(tmp_path, n=100, **kwargs)
    _none_and_rosbags_reads(bag, ["/a", "/b"])
    assert read_indexed(bag / "bag_0.mcap", ["/a"]) is None


def test_truncated_and_corrupt_files(tmp_path: Path) -> None:
    bag = _mcap_bag(tmp_path, CompressionType.NONE, n=200)
    path = bag / "bag_0.mcap"
    data = path.read_bytes()
    path.write_bytes(data[:-100])  # the footer gone
    _none_and_rosbags_reads(bag, ["/a"], rosbags_fails=True)
    assert topic_types(path) is None
    path.write_bytes(data[:len(data) // 2] + data[-37:])  # the summary gone, the footer still there
    _none_and_rosbags_reads(bag, ["/a"], rosbags_fails=True)
    # a byte of a message's payload changed: its chunk's checksum no longer matches
    payload = next(m[2] for m in _messages(np.random.default_rng(0), 200) if len(m[2]) > 8 and m[0] in (0, 1))
    at = data.index(payload)
    path.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:])
    _none_and_rosbags_reads(bag, ["/a", "/b", "/noise"], rosbags_fails=True)
    path.write_bytes(b"")
    _none_and_rosbags_reads(bag, ["/a"], rosbags_fails=True)


def test_a_message_index_that_does_not_match_its_records(tmp_path: Path) -> None:
    from mcap.reader import make_reader

    bag = _mcap_bag(tmp_path, CompressionType.NONE, n=200)
    path = bag / "bag_0.mcap"
    data = path.read_bytes()
    with path.open("rb") as f:
        summary = make_reader(f).get_summary()
    a = {cid for cid, ch in summary.channels.items() if ch.topic == "/a"}
    chunk = next(ci for ci in summary.chunk_indexes if a & ci.message_index_offsets.keys())
    first = chunk.message_index_offsets[min(a & chunk.message_index_offsets.keys())] + 15  # its first entry
    for field in (0, 8):  # the entry's log time, its record offset (outside the chunk: no checksum covers it)
        bad = bytearray(data)
        struct.pack_into("<Q", bad, first + field, struct.unpack_from("<Q", data, first + field)[0] + 1)
        path.write_bytes(bad)
        assert read_indexed(bag, ["/a"]) is None
        assert read_indexed(bag, ["/b"]) is not None  # only the wanted channels' indexes are read
    path.write_bytes(data)
    _assert_same(bag, ["/a"])


def test_a_bag_rosbags_refuses_to_open_is_not_read_fast(door_bag: Path, tmp_path: Path) -> None:
    """A type hash in metadata.yaml that does not match the message definition: rosbags' AnyReader refuses the
    bag when it opens it; the fast path, which never opened it, converted it (37 transitions of a bag that bag
    info and the generic path refuse)."""
    import shutil

    bag = tmp_path / "bag"
    shutil.copytree(door_bag, bag)
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())
    for entry in meta["rosbag2_bagfile_information"]["topics_with_message_count"]:
        if entry["topic_metadata"]["type"] == "sensor_msgs/msg/JointState":
            entry["topic_metadata"]["type_description_hash"] = "RIHS01_" + "0" * 64
    (bag / "metadata.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(Exception, match="hash"):  # rosbags' own error
        _anyreader(bag, ["/robot_0/policy/step"])
    assert topic_types(bag) is None
    assert read_indexed(bag, ["/robot_0/policy/step"]) is None


def test_bags_the_fast_path_does_not_handle(tmp_path: Path) -> None:
    msgs = _messages(np.random.default_rng(5), 50)
    bag = tmp_path / "bag"
    bag.mkdir()
    _write_mcap(bag / "bag_0.mcap", msgs)
    _write_metadata(bag, ["bag_0.mcap"], msgs, compression_mode="message", compression_format="zstd")
    assert read_indexed(bag, ["/a"]) is None
    _write_metadata(bag, ["bag_0.mcap"], msgs, version=10)
    assert read_indexed(bag, ["/a"]) is None
    # a channel whose QoS differs from what metadata.yaml says of its topic: rosbags would skip it
    other = [(topic, typ, [dict(QOS[0], depth=1)] if topic == "/b" else qos) for topic, typ, qos in CHANNELS]
    _write_metadata(bag, ["bag_0.mcap"], msgs, channels=other)
    assert read_indexed(bag, ["/b"]) is None
    assert read_indexed(bag, ["/a"]) is not None  # only the wanted topics' channels must match
    _write_mcap(bag / "bag_0.mcap", msgs, profile="")  # rosbags refuses an MCAP file of another profile
    _write_metadata(bag, ["bag_0.mcap"], msgs)
    _none_and_rosbags_reads(bag, ["/a"], rosbags_fails=True)
    (bag / "metadata.yaml").write_text("rosbag2_bagfile_information: [")
    assert read_indexed(bag, ["/a"]) is None
    _write_metadata(bag, ["bag_0.mcap"], msgs, version=float("inf"))  # int(.inf): OverflowError before
    assert read_indexed(bag, ["/a"]) is None and topic_types(bag) is None
    (bag / "metadata.yaml").unlink()
    assert read_indexed(bag, ["/a"]) is None
    assert read_indexed(tmp_path / "nothing", ["/a"]) is None


def test_the_exact_conversion_of_a_sqlite3_bag_of_another_arm_is_a_clear_error(tmp_path: Path) -> None:
    """A sqlite3 bag as `ros2 bag record` gives on another arm (no /<ns>/task/goal or policy/step): the exact
    conversion read it through rosbags with no connection, which rosbags reads as every message, and ended in
    an AssertionError traceback; now it is the BagError every other bag without a robot gets."""
    from rosbags.rosbag2 import StoragePlugin
    from rosbags.rosbag2 import Writer as BagWriter2

    from async_naf.recording.info import BagError
    from async_naf.run.convert import convert_exact

    bag = tmp_path / "bag"
    with BagWriter2(bag, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        conn = writer.add_connection("/my_arm/velocity_cmd", "std_msgs/msg/String",
                                     typestore=get_typestore(Stores.ROS2_JAZZY))
        writer.write(conn, 1, b"\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00")
    with pytest.raises(BagError, match="no robot with both task/goal"):
        convert_exact(bag, "reach")
