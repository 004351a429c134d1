"""A composed robot's recorded messages, bundled for the recorder (``<ns>/recorder/bundle``).

In a recorded run every stream a composed robot hands over in-process (joint states, IMU, door state,
commands, goal, policy steps, ground truth, its clock: about 15 messages per control step) would also have to
be written to DDS for the recorder, one DDS message each: that cost the robot process about 90 us per message
and the recorder about 100 (docs/benchmarks.md, "Recording"). Instead the robot serialises each such message
itself (the CDR bytes ``ros2 bag record`` would store) and sends the recorder one bundle per round of its
bus; the recorder writes every message of it into the bag under its own topic, with the time the robot
published it as the receive time.

Wire format ``async_naf.record_bundle.v1``: a ``std_msgs/UInt8MultiArray`` whose layout has one dimension
labelled with the format name (size = stride = the byte count), and whose data is, little endian:

- ``u16`` topic count, then per topic ``u16`` byte length and the UTF-8 absolute topic name;
- then, to the end, per message: ``u16`` topic index, ``i64`` receive time (ns since the Unix epoch),
  ``u32`` byte length, the serialised message (CDR, with its 4-byte encapsulation header).

:func:`encode_bundle` returns the whole ``UInt8MultiArray`` as CDR (published raw, no message object built);
:func:`decode_bundle` takes the data bytes of a received one and checks every length and index. The messages
in a bundle are the exact CDR a DDS reader would get (``canonical_*``: rmw's ``serialize_message`` leaves
padding uninitialised and pads an empty float64 sequence at the end).
"""
from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Sequence

import numpy as np

from async_naf.wire.cdr import F8, U32_BE, cdr_doubles, cdr_string, cdr_u32, f8_bytes

RECORD_BUNDLE = "async_naf.record_bundle.v1"
BUNDLE_TOPIC = "recorder/bundle"  # a composed robot's bundles for the recorder, relative to its namespace
MAX_TOPICS = 1024
_IMU_VALUES = 37  # float64 after sensor_msgs/Imu's header (orientation, angular velocity, acceleration, covariances)

_U16 = struct.Struct("<H")
_ENTRY = struct.Struct("<HqI")  # topic index, receive time ns, byte length
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
    ns, serialised message) each) after the topic ``table`` (:func:`encode_topics`)."""
    data = b"".join([table, *(_ENTRY.pack(index, t_ns, len(raw)) + raw for index, t_ns, raw in entries)])
    n = len(data)
    return b"".join((_HEAD, struct.pack("<IIII", n, n, 0, n), data))


def decode_bundle(data: bytes | memoryview) -> list[tuple[str, int, bytes]]:
    """(topic, receive time ns, serialised message) of each message in a bundle's data bytes, in order.

    Raises:
        ValueError: a truncated or malformed bundle (a length past the end, a topic index beyond the table,
            a topic name that is not absolute UTF-8).
    """
    view = memoryview(data)
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
        out = []
        while pos < end:
            index, t_ns, length = _ENTRY.unpack_from(view, pos)
            pos += _ENTRY.size
            if index >= n_topics or pos + length > end:
                raise ValueError("a message's topic index or length does not fit the bundle")
            out.append((topics[index], t_ns, bytes(view[pos:pos + length])))
            pos += length
    except (struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed {RECORD_BUNDLE} bundle: {exc}") from exc
    return out


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
