"""Many ``std_msgs/msg/Float64MultiArray`` messages decoded at once from their CDR bytes (numpy, no per-message
Python), for bag conversion at 100,000 messages/s.

A stream of one wire layout (``policy/step``) repeats the same layout header (dimension labels, sizes,
strides, data offset, element count) in every message; only the values differ. So the messages of one byte
length are gathered into a (k, length) byte table, the header of the first is parsed, the rows whose header
bytes equal it are taken, and their values are viewed as float64: :func:`multiarray_groups`. Whatever does
not fit (another header, big-endian CDR, a header that does not parse) is returned by index for the
per-message path (rosbags' deserialiser), which then decides, so the result never depends on which path
a message took.

CDR (XCDR1, little endian) of Float64MultiArray, offsets relative to the byte after the 4-byte
encapsulation header: ``uint32 ndim``, per dimension ``uint32 len, label bytes (NUL included), pad to 4,
uint32 size, uint32 stride``; ``uint32 data_offset``; ``uint32 count``; pad to 8; ``count`` float64.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np

_CDR_LE = b"\x00\x01"  # encapsulation kind CDR_LE (the options bytes after it are not looked at)
_MAX_ROWS = 65_536  # messages gathered into one byte table at a time (bounds the memory of a large bag)
_MAX_HEADERS = 8  # distinct headers tried per message length; messages with others go one by one


class ArrayGroup(NamedTuple):
    """Messages that share one layout header.

    Attributes:
        messages: (k,) the messages' indices in the :class:`~async_naf.recording.indexed.TopicPayloads`.
        labels, sizes, strides, data_offset: the layout (``MultiArrayLayout``) they all carry.
        data: (k, count) float64 values, one row per message.
    """

    messages: np.ndarray
    labels: tuple[str, ...]
    sizes: tuple[int, ...]
    strides: tuple[int, ...]
    data_offset: int
    data: np.ndarray


class _Header(NamedTuple):
    labels: tuple[str, ...]
    sizes: tuple[int, ...]
    strides: tuple[int, ...]
    data_offset: int
    data_start: int  # byte offset of the first float64 in the message
    n_values: int


def parse_header(raw: bytes) -> _Header | None:
    """The layout header of one Float64MultiArray message (CDR little endian), or None if ``raw`` is not one
    whose values end the message exactly."""
    if len(raw) < 12 or raw[:2] != _CDR_LE:
        return None
    pos = 4

    def u32() -> int:
        nonlocal pos
        pos += (-(pos - 4)) % 4
        if pos + 4 > len(raw):
            raise ValueError("truncated")
        (value,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        return int(value)

    try:
        labels, sizes, strides = [], [], []
        for _ in range(u32()):
            n = u32()
            if n < 1 or pos + n > len(raw) or raw[pos + n - 1] != 0:
                return None
            labels.append(raw[pos:pos + n - 1].decode())
            pos += n
            sizes.append(u32())
            strides.append(u32())
        data_offset = u32()
        count = u32()
    except (ValueError, UnicodeDecodeError):
        return None
    if count:  # no padding before an empty sequence's (absent) elements
        pos += (-(pos - 4)) % 8
    if pos + 8 * count != len(raw):
        return None
    return _Header(tuple(labels), tuple(sizes), tuple(strides), data_offset, pos, count)


def multiarray_groups(buf: np.ndarray, start: np.ndarray, length: np.ndarray) -> tuple[list[ArrayGroup], np.ndarray]:
    """Decode the messages ``buf[start[i]:start[i] + length[i]]`` (module docstring).

    Returns:
        the groups of messages decoded here (each in message order), and the (sorted) indices of the
        messages left to the per-message path.
    """
    groups: list[ArrayGroup] = []
    rest: list[np.ndarray] = []
    start = np.asarray(start, np.int64)
    length = np.asarray(length, np.int64)
    for size in np.unique(length).tolist():
        idx_all = np.flatnonzero(length == size)
        for lo in range(0, len(idx_all), _MAX_ROWS):
            idx = idx_all[lo:lo + _MAX_ROWS]
            rows = buf[start[idx][:, None] + np.arange(size)]
            for _ in range(_MAX_HEADERS):  # the headers of this length, the first row's each time
                header = parse_header(rows[0].tobytes())
                if header is None:  # that one goes one by one; the others may still share a header
                    rest.append(idx[:1])
                    idx, rows = idx[1:], rows[1:]
                    if not len(idx):
                        break
                    continue
                same = (rows[:, :header.data_start] == rows[0, :header.data_start]).all(axis=1)
                values = np.ascontiguousarray(rows[same, header.data_start:]).view("<f8").astype(np.float64)
                groups.append(ArrayGroup(idx[same], header.labels, header.sizes, header.strides,
                                         header.data_offset, values.reshape(len(values), header.n_values)))
                idx, rows = idx[~same], rows[~same]
                if not len(idx):
                    break
            rest.append(idx)
    left = np.sort(np.concatenate(rest)) if rest else np.zeros(0, np.int64)
    return groups, left


class JointStateGroup(NamedTuple):
    """``sensor_msgs/msg/JointState`` messages that share one frame id, joint names and array sizes.

    Attributes:
        messages: (k,) the messages' indices.
        names: the joint names they all carry.
        stamp_sec: (k,) int64 header stamp seconds.  stamp_nanosec: (k,) int64 its nanoseconds.
        position: (k, len(names)) rad (or m).  velocity: (k, n_velocity) rad/s; n_velocity may be 0.
    """

    messages: np.ndarray
    names: tuple[str, ...]
    stamp_sec: np.ndarray
    stamp_nanosec: np.ndarray
    position: np.ndarray
    velocity: np.ndarray


class _JointStateLayout(NamedTuple):
    names: tuple[str, ...]
    position: tuple[int, int]  # byte offset, count
    velocity: tuple[int, int]


def parse_joint_state(raw: bytes) -> _JointStateLayout | None:
    """Where the values of one JointState message (CDR little endian) lie, or None if ``raw`` is not one
    (header: ``int32 sec, uint32 nanosec, string frame_id``; then ``string[] name``, ``float64[] position,
    velocity, effort``)."""
    if len(raw) < 16 or raw[:2] != _CDR_LE:
        return None
    pos = 12

    def u32() -> int:
        nonlocal pos
        pos += (-(pos - 4)) % 4
        if pos + 4 > len(raw):
            raise ValueError("truncated")
        (value,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        return int(value)

    def text() -> str:
        nonlocal pos
        n = u32()
        if n < 1 or pos + n > len(raw) or raw[pos + n - 1] != 0:
            raise ValueError("bad string")
        pos += n
        return raw[pos - n:pos - 1].decode()

    def doubles() -> tuple[int, int]:
        nonlocal pos
        n = u32()
        if n:
            pos += (-(pos - 4)) % 8
        at = pos
        pos += 8 * n
        if pos > len(raw):
            raise ValueError("truncated")
        return at, n

    try:
        text()  # frame_id
        names = tuple(text() for _ in range(u32()))
        position, velocity = doubles(), doubles()
        doubles()  # effort
    except (ValueError, UnicodeDecodeError):
        return None
    if pos != len(raw):
        return None
    return _JointStateLayout(names, position, velocity)


def joint_state_groups(buf: np.ndarray, start: np.ndarray, length: np.ndarray
                       ) -> tuple[list[JointStateGroup], np.ndarray]:
    """Decode the JointState messages ``buf[start[i]:start[i] + length[i]]`` as tables: per message length,
    the rows whose bytes other than the stamp and the values equal those of a parsed row (same frame id,
    names and sizes). Returns the groups and the sorted indices of the messages left to the per-message path."""
    groups: list[JointStateGroup] = []
    rest: list[np.ndarray] = []
    start = np.asarray(start, np.int64)
    length = np.asarray(length, np.int64)
    for size in np.unique(length).tolist():
        idx = np.flatnonzero(length == size)
        for lo in range(0, len(idx), _MAX_ROWS):
            part = idx[lo:lo + _MAX_ROWS]
            rows = buf[start[part][:, None] + np.arange(size)]
            for _ in range(_MAX_HEADERS):
                layout = parse_joint_state(rows[0].tobytes())
                if layout is None:
                    rest.append(part[:1])
                    part, rows = part[1:], rows[1:]
                    if not len(part):
                        break
                    continue
                fixed = np.ones(size, bool)  # the bytes that must repeat: all but the stamp and the values
                fixed[4:12] = False
                for at, n in (layout.position, layout.velocity):
                    fixed[at:at + 8 * n] = False
                eff_at = layout.velocity[0] + 8 * layout.velocity[1]
                fixed[eff_at + 4:] = False  # effort values (not read here; their count must repeat)
                same = (rows[:, fixed] == rows[0, fixed]).all(axis=1)
                sel = rows[same]

                def values(at: int, n: int, sel: np.ndarray = sel) -> np.ndarray:
                    if not n:
                        return np.zeros((len(sel), 0))
                    return np.ascontiguousarray(sel[:, at:at + 8 * n]).view("<f8").astype(np.float64)

                stamps = np.ascontiguousarray(sel[:, 4:12]).view("<u4").astype(np.int64)
                sec = np.where(stamps[:, 0] >= 2**31, stamps[:, 0] - 2**32, stamps[:, 0])  # int32
                groups.append(JointStateGroup(part[same], layout.names, sec, stamps[:, 1],
                                              values(*layout.position), values(*layout.velocity)))
                part, rows = part[~same], rows[~same]
                if not len(part):
                    break
            rest.append(part)
    left = np.sort(np.concatenate(rest)) if rest else np.zeros(0, np.int64)
    return groups, left
