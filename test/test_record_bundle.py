"""The recorder's bundle format (async_naf.wire.record_bundle): round trips, and every malformed bundle a clear
ValueError (never another exception, never a wrong message)."""
from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import MultiArrayDimension, UInt8MultiArray

from async_naf.wire.record_bundle import (
    RECORD_BUNDLE,
    bundle_data,
    decode_bundle,
    decode_bundle_records,
    encode_bundle,
    encode_topics,
)


def test_a_bundle_round_trips_and_is_a_uint8_multi_array() -> None:
    table = encode_topics(["/robot_0/joint_states", "/robot_0/door/imu"])
    entries = [(1, 1_700_000_000_123_456_789, b"\x00\x01\x00\x00abc"), (0, 0, b""), (1, 5, bytes(range(256)))]
    raw = encode_bundle(table, entries)
    msg = deserialize_message(raw, UInt8MultiArray)  # what a subscriber gets: a valid message
    assert [d.label for d in msg.layout.dim] == [RECORD_BUNDLE] and msg.layout.dim[0].size == len(msg.data)
    assert bundle_data(raw) == bytes(msg.data)
    assert decode_bundle(bundle_data(raw)) == [("/robot_0/door/imu", 1_700_000_000_123_456_789,
                                                b"\x00\x01\x00\x00abc"), ("/robot_0/joint_states", 0, b""),
                                               ("/robot_0/door/imu", 5, bytes(range(256)))]
    assert decode_bundle(bundle_data(encode_bundle(table, []))) == []
    # the same message from another writer (rmw's serialiser: garbage in the padding) reads the same
    other = serialize_message(msg)
    assert decode_bundle(bundle_data(other)) == decode_bundle(bundle_data(raw))
    # and big-endian CDR (another DDS writer's choice): the same data bytes
    label = RECORD_BUNDLE.encode() + b"\0"
    data = bytes(msg.data)
    n = len(data)
    big = (b"\x00\x00\x00\x00" + struct.pack(">II", 1, len(label)) + label + b"\0" * (-len(label) % 4)
           + struct.pack(">IIII", n, n, 0, n) + data)
    assert bundle_data(big) == data
    with pytest.raises(ValueError):
        bundle_data(big[:-1])


def _records_part(data: bytes) -> tuple[bytes, int]:
    """A one-topic bundle's data split at its records: (the bytes before them, where they start)."""
    start = 2 + 2 + 2 + 4  # one topic "/a": count, length, name; the record count
    (count,) = struct.unpack_from("<I", data, start - 4)
    return data[:start + 4 * count], start + 4 * count


def test_a_bundle_s_records_are_the_mcap_message_records_a_bag_stores() -> None:
    table = encode_topics(["/a", "/b"])
    data = bytes(bundle_data(encode_bundle(table, [(1, 7, b"xyz"), (0, 2**63 - 1, b"")])))
    bundle = decode_bundle_records(data)
    assert bundle.topics == ["/a", "/b"] and bundle.topic.tolist() == [1, 0]
    assert bundle.stamps.tolist() == [7, 2**63 - 1] and bundle.sizes.tolist() == [3, 0]
    assert bundle.offsets.tolist() == [0, 34]
    # the MCAP spec's Message record: opcode 5, u64 length, u16 channel, u32 sequence, u64 log and publish time
    assert bundle.records[:34].tobytes() == struct.pack("<BQHIQQ", 5, 25, 1, 0, 7, 7) + b"xyz"
    assert bundle.message(0) == b"xyz" and bundle.message(1) == b""


def test_malformed_bundles_are_value_errors() -> None:
    table = encode_topics(["/a"])
    raw = encode_bundle(table, [(0, 1, b"xyz"), (0, 2, b"uv")])
    data = bytes(bundle_data(raw))
    head, start = _records_part(data)
    first = struct.pack("<BQHIQQ", 5, 25, 0, 0, 1, 1) + b"xyz"
    assert data[start:start + 34] == first

    def with_first(record: bytes) -> bytes:
        return head + record + data[start + 34:]

    bad = {
        "truncated": data[:-1],
        "cut in the table": data[:1],
        "offsets past the end": table + struct.pack("<I", 1000) + bytes(8),
        "topic index 1 of a table of 1": with_first(struct.pack("<BQHIQQ", 5, 25, 1, 0, 1, 1) + b"xyz"),
        "not a Message record": with_first(struct.pack("<BQHIQQ", 6, 25, 0, 0, 1, 1) + b"xyz"),
        "a record length past the next record": with_first(struct.pack("<BQHIQQ", 5, 26, 0, 0, 1, 1) + b"xyz"),
        "a sequence number": with_first(struct.pack("<BQHIQQ", 5, 25, 0, 3, 1, 1) + b"xyz"),
        "log time != publish time": with_first(struct.pack("<BQHIQQ", 5, 25, 0, 0, 1, 2) + b"xyz"),
        "a time past int64": with_first(struct.pack("<BQHIQQ", 5, 25, 0, 0, 2**63, 2**63) + b"xyz"),
        "offsets out of order": data[:start - 8] + struct.pack("<II", 34, 0) + data[start:],
        "an offset not at 0": data[:start - 8] + struct.pack("<II", 1, 34) + data[start:],
        "bytes after an empty table": table + struct.pack("<I", 0) + b"x",
        "a relative topic": b"\x01\x00\x01\x00a" + bytes(4),
        "not UTF-8": b"\x01\x00\x02\x00\xff\xfe" + bytes(4),
    }
    for what, bytes_ in bad.items():
        with pytest.raises(ValueError):
            decode_bundle(bytes_)
            pytest.fail(what)
    other = UInt8MultiArray(data=data)
    other.layout.dim = [MultiArrayDimension(label="async_naf.record_bundle.v1", size=len(data), stride=len(data))]
    with pytest.raises(ValueError, match="not a"):
        bundle_data(serialize_message(other))  # another version
    with pytest.raises(ValueError):
        bundle_data(raw[:30])  # truncated
    with pytest.raises(ValueError):
        bundle_data(b"\x01\x00")
    with pytest.raises(ValueError):
        encode_topics(["relative"])
    for t_ns in (-1, 2**63):
        with pytest.raises(ValueError):
            encode_bundle(table, [(0, t_ns, b"")])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_value_error(data: bytes) -> None:
    try:
        out = decode_bundle(data)
    except ValueError:
        return
    assert all(topic.startswith("/") for topic, _, _ in out)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2**63 - 1), st.binary(max_size=64)), max_size=20))
def test_any_bundle_round_trips(entries: list[tuple[int, int, bytes]]) -> None:
    topics = ["/r/a", "/r/b", "/r/ccc"]
    raw = encode_bundle(encode_topics(topics), entries)
    assert decode_bundle(bundle_data(raw)) == [(topics[i], t, b) for i, t, b in entries]
    assert np.frombuffer(bundle_data(raw), np.uint8).size == len(bytes(bundle_data(raw)))
