"""A composed robot's recorded messages, bundled for the recorder (``<ns>/recorder/bundle``).

In a recorded run every stream a composed robot hands over in-process (joint states, IMU, door state,
commands, goal, policy steps, ground truth, its clock: about 15 messages per control step) would also have to
be written to DDS for the recorder, one DDS message each: that cost the robot process about 90 us per message
and the recorder about 100 (docs/benchmarks.md, "Recording"). Instead the robot serialises each such message
itself (the CDR bytes ``ros2 bag record`` would store) and sends the recorder one bundle per round of its
bus; the recorder writes every message of it into the bag under its own topic, with the time the robot
published it as the receive time.

Wire format ``async_naf.record_bundle.v2``: a ``std_msgs/UInt8MultiArray`` whose layout has one dimension
labelled with the format name (size = stride = the byte count), and whose data is, little endian:

- ``u16`` topic count, then per topic ``u16`` byte length and the UTF-8 absolute topic name;
- ``u32`` message count n, then n ``u32``: where each message's record starts, counted from the first record;
- then, back to back to the end, one MCAP Message record per message (:data:`MCAP_MESSAGE`, the record a bag
  stores): opcode ``0x05``, ``u64`` record length (22 + the message's bytes), ``u16`` channel id = the topic's
  index in the table, ``u32`` sequence 0, ``u64`` log time and ``u64`` publish time = the time the robot
  published it (ns since the Unix epoch), the serialised message (CDR, with its 4-byte encapsulation header).

The records are what the recorder writes into the bag's MCAP chunk: it checks them all at once (numpy, no
Python per message: :func:`decode_bundle_records`), sets the channel ids to the bag's and writes them in one
piece (``async_naf.recording.writer``). (v1, before 2026-12-04, framed each message with a 14-byte head that the
recorder had to unpack and re-frame one by one: 3-5 us per message.)

:func:`encode_bundle` returns the whole ``UInt8MultiArray`` as CDR (published raw, no message object built);
:func:`decode_bundle` (a list, for tests and tools) and :func:`decode_bundle_records` take the data bytes of a
received one and check every length, index, offset and time. The messages
in a bundle are the exact CDR a DDS reader would get (``canonical_*``: rmw's ``serialize_message`` leaves
padding uninitialised and pads an empty float64 sequence at the end).
"""
from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from async_naf.wire.cdr import F8, U32_BE, cdr_doubles, cdr_string, cdr_u32, f8_bytes

RECORD_BUNDLE = "async_naf.record_bundle.v2"
BUNDLE_TOPIC = "recorder/bundle"  # a composed robot's bundles for the recorder, relative to its namespace
MAX_TOPICS = 1024
_IMU_VALUES = 37  # float64 after sensor_msgs/Imu's header (orientation, angular velocity, acceleration, covariances)

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
# an MCAP Message record's head (MCAP spec, "Message" op 0x05): opcode, record length (what follows these 9
# bytes), channel id, sequence, log time ns, publish time ns
MCAP_MESSAGE = struct.Struct("<BQHIQQ")
MCAP_MESSAGE_FIXED = MCAP_MESSAGE.size - 9  # bytes of a Message record's length that are not the message, 22
_MAX_TIME_NS = 2**63 - 1  # a receive time is ns since the epoch: at most int64
_LABEL = RECORD_BUNDLE.encode() + b"\0"
# UInt8MultiArray CDR up to the data: encapsulation (plain CDR, little endian), 1 dimension, its label (length
# with the NUL, bytes, padding to 4), then size and stride, data_offset, the data's length
_HEAD = b"\x00\x01\x00\x00" + struct.pack("<II", 1, len(_LABEL)) + _LABEL + b"\0" * (-len(_LABEL) % 4)


def encode_topics(topics: Sequence[str]) -> bytes:
    """The topic table of a bundle (computed once per publisher: its topics do not change)."""
    if len(topics) > MAX_TOPICS:
        raise ValueError(f"at most {MAX_TOPICS} topics in a bundle, got {len(topics)}")
    out = [_U16.pack(len(topics))]
    for topic in topics:
        name = topic.encode()
        if not topic.startswith("/") or len(name) > 0xFFFF:
            raise ValueError(f"bundle topics must be absolute names, got {topic!r}")
        out += [_U16.pack(len(name)), name]
    return b"".join(out)


def encode_bundle(table: bytes, entries: Sequence[tuple[int, int, bytes]]) -> bytes:
    """The CDR of a ``std_msgs/UInt8MultiArray`` holding ``entries`` ((topic index in ``table``, receive time
    ns, serialised message) each) after the topic ``table`` (:func:`encode_topics`).

    Raises:
        ValueError: a receive time outside 0 .. 2**63 - 1 ns, or more messages than a ``u32`` counts.
    """
    pack = MCAP_MESSAGE.pack
    try:
        records = [pack(5, MCAP_MESSAGE_FIXED + len(raw), index, 0, t_ns, t_ns) + raw for index, t_ns, raw in entries]
    except struct.error as exc:
        raise ValueError(f"a bundle's receive times are 0 .. 2**63 - 1 ns and its topic indices u16: {exc}") from exc
    if any(t_ns > _MAX_TIME_NS for _, t_ns, _ in entries):
        raise ValueError("a bundle's receive times are 0 .. 2**63 - 1 ns")
    ends = np.cumsum(np.fromiter(map(len, records), np.int64, len(records)))
    if ends.size and ends[-1] > 0xFFFFFFFF:
        raise ValueError("a bundle holds at most 4 GiB of records")
    offsets = np.concatenate(([0], ends[:-1])).astype("<u4").tobytes() if records else b""
    data = b"".join([table, _U32.pack(len(records)), offsets, *records])
    n = len(data)
    return b"".join((_HEAD, struct.pack("<IIII", n, n, 0, n), data))


class BundleRecords(NamedTuple):
    """A received bundle's messages (:func:`decode_bundle_records`), checked; arrays with one entry per message."""

    topics: list[str]          # the bundle's topic table
    records: np.ndarray        # uint8: the MCAP Message records back to back (a view of the received bytes)
    offsets: np.ndarray        # int64: where each record starts in ``records``
    topic: np.ndarray          # int64: each message's topic, its index in ``topics``
    stamps: np.ndarray         # uint64: each message's receive time, ns since the epoch
    sizes: np.ndarray          # int64: each message's serialised bytes (its record is 31 bytes longer)

    def message(self, i: int) -> bytes:
        """The serialised message (CDR) of message ``i``."""
        start = int(self.offsets[i]) + MCAP_MESSAGE.size
        return self.records[start:start + int(self.sizes[i])].tobytes()


_HEAD_DTYPE = np.dtype([("op", "u1"), ("length", "<u8"), ("channel", "<u2"), ("sequence", "<u4"), ("log", "<u8"),
                        ("publish", "<u8")])  # MCAP_MESSAGE as a packed numpy record, 31 bytes
_HEAD_BYTES = np.arange(MCAP_MESSAGE.size)


def decode_bundle_records(data: bytes | memoryview) -> BundleRecords:
    """A bundle's topic table and its records, checked at once (no Python per message): every offset in order
    and each record ending where the next starts (the last at the end), opcode 0x05, a topic index in the
    table, sequence 0, log time = publish time <= 2**63 - 1 ns.

    Raises:
        ValueError: a truncated or malformed bundle (as above; a topic name that is not absolute UTF-8).
    """
    view = memoryview(data)
    if not view.contiguous:
        raise ValueError(f"a {RECORD_BUNDLE} bundle must be contiguous bytes")
    view = view.cast("B") if view.format != "B" or view.ndim != 1 else view
    end = len(view)
    try:
        (n_topics,) = _U16.unpack_from(view, 0)
        pos = 2
        topics = []
        for _ in range(n_topics):
            (length,) = _U16.unpack_from(view, pos)
            pos += 2
            if pos + length > end:
                raise ValueError("a topic name runs past the end of the bundle")
            topic = bytes(view[pos:pos + length]).decode()
            if not topic.startswith("/"):
                raise ValueError(f"bundle topic {topic!r} is not absolute")
            topics.append(topic)
            pos += length
        (count,) = _U32.unpack_from(view, pos)
        pos += 4
    except (struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed {RECORD_BUNDLE} bundle: {exc}") from exc
    if pos + 4 * count > end:
        raise ValueError(f"malformed {RECORD_BUNDLE} bundle: {count} record offsets run past its end")
    offsets = np.frombuffer(view, "<u4", count, pos).astype(np.int64)
    records = np.frombuffer(view, np.uint8, end - pos - 4 * count, pos + 4 * count)
    if count == 0:
        if records.size:
            raise ValueError(f"malformed {RECORD_BUNDLE} bundle: bytes after an empty record table")
        empty = np.zeros(0, np.int64)
        return BundleRecords(topics, records, empty, empty, np.zeros(0, np.uint64), empty)
    if offsets[0] != 0 or np.any(offsets[1:] < offsets[:-1] + MCAP_MESSAGE.size) \
            or offsets[-1] + MCAP_MESSAGE.size > records.size:
        raise ValueError(f"malformed {RECORD_BUNDLE} bundle: record offsets out of order or past its end")
    head = records[offsets[:, None] + _HEAD_BYTES].view(_HEAD_DTYPE).reshape(-1)  # each record's 31-byte head
    ends = np.append(offsets[1:], records.size)
    if np.any(head["length"] != (ends - offsets - 9).astype(np.uint64)):
        raise ValueError(f"malformed {RECORD_BUNDLE} bundle: a record's length does not reach the next record")
    topic = head["channel"].astype(np.int64)
    log = head["log"]
    if np.any(head["op"] != 5) or np.any(head["sequence"] != 0):
        raise ValueError(f"malformed {RECORD_BUNDLE} bundle: not an MCAP Message record with sequence 0")
    if np.any(topic >= n_topics) or np.any(log != head["publish"]) or np.any(log > _MAX_TIME_NS):
        raise ValueError(f"malformed {RECORD_BUNDLE} bundle: a topic index or time does not fit")
    return BundleRecords(topics, records, offsets, topic, np.ascontiguousarray(log),
                         ends - offsets - MCAP_MESSAGE.size)


def decode_bundle(data: bytes | memoryview) -> list[tuple[str, int, bytes]]:
    """(topic, receive time ns, serialised message) of each message in a bundle's data bytes, in order
    (:func:`decode_bundle_records`, as a list).

    Raises:
        ValueError: a truncated or malformed bundle.
    """
    bundle = decode_bundle_records(data)
    return [(bundle.topics[int(k)], int(t), bundle.message(i))
            for i, (k, t) in enumerate(zip(bundle.topic, bundle.stamps))]


def bundle_data(raw: bytes | memoryview) -> memoryview:
    """The data bytes of a received bundle, the serialised ``std_msgs/UInt8MultiArray`` (CDR, little or big
    endian), after checking its layout names this format and version.

    Raises:
        ValueError: not a ``UInt8MultiArray`` of this format (another label or version, several dimensions),
            or truncated.
    """
    view = memoryview(raw)
    if len(view) < 8 or view[0] != 0 or view[1] not in (0, 1):
        raise ValueError("not a CDR-encoded message")
    body = view[4:]
    read_u32 = functools.partial(cdr_u32, body) if view[1] == 1 else functools.partial(cdr_u32, body, u32=U32_BE)
    n_dims, pos = read_u32(0)
    if n_dims != 1:
        raise ValueError(f"{RECORD_BUNDLE}: {n_dims} layout dimensions, expected 1")
    n, pos = read_u32(pos)
    label = bytes(body[pos:pos + n - 1]) if n else b""
    if label != RECORD_BUNDLE.encode():
        raise ValueError(f"not a {RECORD_BUNDLE} bundle (layout label {label[:60]!r})")
    pos += n
    for _ in range(3):  # size, stride, data_offset
        _, pos = read_u32(pos)
    count, pos = read_u32(pos)
    if pos + count > len(body):
        raise ValueError(f"{RECORD_BUNDLE}: data runs past the end of the message")
    return body[pos:pos + count]


# --- the exact CDR of the tapped message types --------------------------------------------------------------


def _align(body: memoryview, pos: int, n: int) -> int:
    """``pos`` aligned to ``n`` (a power of 2), the padding bytes skipped set to zero."""
    new = (pos + n - 1) & ~(n - 1)
    if new > len(body):
        raise ValueError("truncated")
    body[pos:new] = bytes(new - pos)
    return new


def _skip_u32(body: memoryview, pos: int) -> tuple[int, int]:
    return cdr_u32(body, _align(body, pos, 4))


def _skip_string(body: memoryview, pos: int) -> int:
    return cdr_string(body, _align(body, pos, 4))[1]


def _skip_doubles(body: memoryview, pos: int) -> int:
    pos = _align(body, pos, 4)
    at, _, end = cdr_doubles(body, pos)
    body[pos + 4:at] = bytes(at - pos - 4)  # the padding to 8 before the values
    return end


def _canonical(raw: bytes | memoryview, walk: Callable[[memoryview], int]) -> bytes:
    """``raw`` (CDR, little endian) cut where ``walk`` says its body ends, padding zeroed, options 0."""
    buf = bytearray(raw)
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 1:
        raise ValueError("not little-endian CDR")
    buf[2:4] = b"\0\0"
    end = walk(memoryview(buf)[4:])
    return bytes(buf[:4 + end])


def canonical_joint_state(raw: bytes | memoryview) -> bytes:
    """A ``sensor_msgs/JointState`` in CDR as rosbags (and a DDS reader) has it: rmw's ``serialize_message``
    leaves its padding bytes uninitialised and pads a message whose empty ``effort`` ends it to 8 bytes, which
    rosbags takes for a malformed message and this module's tables for another layout. ValueError if ``raw``
    is not one."""
    def walk(body: memoryview) -> int:
        pos = _skip_string(body, 8)  # frame_id, after the stamp
        count, pos = _skip_u32(body, pos)
        for _ in range(count):
            pos = _skip_string(body, pos)
        for _ in range(3):  # position, velocity, effort
            pos = _skip_doubles(body, pos)
        return pos
    return _canonical(raw, walk)


def canonical_multiarray(raw: bytes | memoryview) -> bytes:
    """A ``std_msgs/Float64MultiArray`` in CDR as rosbags has it (see :func:`canonical_joint_state`)."""
    def walk(body: memoryview) -> int:
        n_dims, pos = _skip_u32(body, 0)
        for _ in range(n_dims):
            pos = _skip_string(body, pos)
            _, pos = _skip_u32(body, pos)  # size
            _, pos = _skip_u32(body, pos)  # stride
        _, pos = _skip_u32(body, pos)  # data_offset
        return _skip_doubles(body, pos)
    return _canonical(raw, walk)


def canonical_imu(raw: bytes | memoryview) -> bytes:
    """A ``sensor_msgs/Imu`` in CDR as rosbags has it (see :func:`canonical_joint_state`)."""
    def walk(body: memoryview) -> int:
        pos = _align(body, _skip_string(body, 8), 8)
        if pos + 8 * _IMU_VALUES > len(body):
            raise ValueError("Imu message too short")
        return pos + 8 * _IMU_VALUES
    return _canonical(raw, walk)


# --- the same CDR straight from the in-process values (the tap's fast path) ---------------------------------
# Everything but the stamp and the values is the same from message to message of a stream: it is built once
# per layout (cached) and each message joins it with the stamp and the values' bytes (a float64 array's own
# buffer where it already is little-endian float64).

_ENCAPSULATION = b"\x00\x01\x00\x00"
_STAMP = struct.Struct("<iI")


def _string_cdr(text: str, pos: int) -> tuple[bytes, int]:
    """A CDR string at body position ``pos`` (padding to 4 first): its bytes and the position after it."""
    raw = text.encode() + b"\0"
    pad = -pos % 4
    return b"\0" * pad + struct.pack("<I", len(raw)) + raw, pos + pad + 4 + len(raw)


def _sequence_head(n: int, pos: int) -> tuple[bytes, int]:
    """What precedes ``n`` float64 values of a CDR sequence at body position ``pos``: padding to 4, the
    count, padding to 8 (only when there are values); and the position of the first value."""
    pad = -pos % 4
    out = b"\0" * pad + struct.pack("<I", n)
    pos += pad + 4
    if n:
        pad = -pos % 8
        out += b"\0" * pad
        pos += pad
    return out, pos


def _stamp(stamp_ns: int) -> bytes:
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return _STAMP.pack(sec, nanosec)


@functools.lru_cache(maxsize=64)
def _joint_state_parts(frame_id: str, names: tuple[str, ...], sizes: tuple[int, int, int]
                       ) -> tuple[bytes, bytes, bytes]:
    """A JointState's fixed parts for ``names`` and (position, velocity, effort) ``sizes``: what follows the
    stamp up to the first position, then up to the first velocity, then up to the first effort."""
    out, pos = _string_cdr(frame_id, 8)
    parts = [out, b"\0" * (-pos % 4) + struct.pack("<I", len(names))]
    pos += -pos % 4 + 4
    for name in names:
        raw, pos = _string_cdr(name, pos)
        parts.append(raw)
    heads = [b"".join(parts)]
    for n in sizes:
        head, pos = _sequence_head(n, pos)
        heads.append(head)
        pos += 8 * n
    return heads[0] + heads[1], heads[2], heads[3]


def joint_state_cdr(stamp_ns: int, names: tuple[str, ...], position: object, velocity: object, effort: object,
                    frame_id: str = "") -> bytes:
    """The canonical CDR of a ``sensor_msgs/JointState`` (what :func:`canonical_joint_state` makes of rmw's)."""
    p, v, e = f8_bytes(position), f8_bytes(velocity), f8_bytes(effort)
    head, before_v, before_e = _joint_state_parts(frame_id, tuple(names), (len(p) // 8, len(v) // 8, len(e) // 8))
    return b"".join((_ENCAPSULATION, _stamp(stamp_ns), head, p, before_v, v, before_e, e))


def clock_cdr(sec: int, nanosec: int) -> bytes:
    """The CDR of a ``rosgraph_msgs/Clock`` (its ``builtin_interfaces/Time``: int32 sec, uint32 nanosec)."""
    return _ENCAPSULATION + _STAMP.pack(sec, nanosec)


# the quaternion (x, y, z, w) and its covariance with [0] = -1: no orientation (REP 145)
_NO_ORIENTATION = np.array((0.0, 0.0, 0.0, 1.0, -1.0) + (0.0,) * 8, dtype=F8).tobytes()
_UNKNOWN_COVARIANCE = bytes(72)  # 9 zeros: "unknown"


@functools.lru_cache(maxsize=16)
def _imu_head(frame_id: str) -> bytes:
    raw, pos = _string_cdr(frame_id, 8)
    return raw + b"\0" * (-pos % 8) + _NO_ORIENTATION


def _f8_exactly(values: object, n: int, what: str) -> bytes:
    raw = f8_bytes(values)
    if len(raw) != 8 * n:
        raise ValueError(f"{what} needs {n} values, got {len(raw) // 8}")
    return raw


def imu_cdr(stamp_ns: int, gyro: object, accel: object, gyro_cov: object, accel_cov: object,
            frame_id: str = "") -> bytes:
    """The canonical CDR of a ``sensor_msgs/Imu`` without orientation (REP 145: covariance[0] -1), rates and
    accelerations with their covariances (None: all zeros, "unknown"), as ``ImuAdapter.to_ros`` builds it.

    Raises:
        ValueError: a vector without 3 values or a covariance without 9.
    """
    gc = _UNKNOWN_COVARIANCE if gyro_cov is None else _f8_exactly(gyro_cov, 9, "gyro_cov")
    ac = _UNKNOWN_COVARIANCE if accel_cov is None else _f8_exactly(accel_cov, 9, "accel_cov")
    return b"".join((_ENCAPSULATION, _stamp(stamp_ns), _imu_head(frame_id), _f8_exactly(gyro, 3, "gyro"), gc,
                     _f8_exactly(accel, 3, "accel"), ac))


@functools.lru_cache(maxsize=64)
def _multiarray_head(labels: tuple[str, ...], sizes: tuple[int, ...], strides: tuple[int, ...], data_offset: int,
                     n: int) -> bytes:
    """A Float64MultiArray's encapsulation, layout and data count, up to the first of ``n`` values."""
    parts = [_ENCAPSULATION, struct.pack("<I", len(labels))]
    pos = 4
    for label, size, stride in zip(labels, sizes, strides):
        raw, pos = _string_cdr(label, pos)
        pad = -pos % 4
        parts += [raw, b"\0" * pad + struct.pack("<II", size, stride)]
        pos += pad + 8
    pad = -pos % 4
    parts += [b"\0" * pad + struct.pack("<I", data_offset), _sequence_head(n, pos + pad + 4)[0]]
    return b"".join(parts)


def multiarray_cdr(labels: tuple[str, ...], sizes: tuple[int, ...], strides: tuple[int, ...], data: object,
                   data_offset: int = 0) -> bytes:
    """The canonical CDR of a ``std_msgs/Float64MultiArray`` (layout dimensions, data offset, the values)."""
    return multiarray_f8_cdr(labels, sizes, strides, f8_bytes(data), data_offset)


def multiarray_f8_cdr(labels: tuple[str, ...], sizes: tuple[int, ...], strides: tuple[int, ...], raw: bytes,
                      data_offset: int = 0) -> bytes:
    """:func:`multiarray_cdr` of values given as their little-endian float64 bytes ``raw`` (a ``bytes``
    object: its length counts bytes)."""
    if len(raw) % 8:
        raise ValueError(f"float64 data of {len(raw)} bytes")
    return _multiarray_head(tuple(labels), tuple(map(int, sizes)), tuple(map(int, strides)), int(data_offset),
                            len(raw) // 8) + raw
