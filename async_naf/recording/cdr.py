"""CDR (XCDR1, little endian) without the generic deserialiser: many messages of one type decoded at once
(numpy, no per-message Python), for bag conversion at 100,000 messages/s (the per-field readers are
:mod:`async_naf.wire.cdr`'s).

A stream of one wire layout (``policy/step``) repeats the same layout header (dimension labels, sizes,
strides, data offset, element count) in every message; only the values differ. So the messages of one byte
length are gathered into a (k, length) byte table, the header of the first is parsed, the rows whose header
bytes equal it are taken, and their values are viewed as float64: :func:`multiarray_groups`
(``std_msgs/msg/Float64MultiArray``); :func:`joint_state_groups` does the same for
``sensor_msgs/msg/JointState`` (same frame id and joint names: only the stamp and the values differ), and
:func:`imu_groups` for ``sensor_msgs/msg/Imu`` (same frame id).
Whatever does not fit (another header, big-endian CDR, a header that does not parse) is returned by index
for the per-message path (rosbags' deserialiser), which then decides, so the result never depends on which
path a message took.

CDR of Float64MultiArray, offsets relative to the byte after the 4-byte encapsulation header: ``uint32
ndim``, per dimension ``uint32 len, label bytes (NUL included), pad to 4, uint32 size, uint32 stride``;
``uint32 data_offset``; ``uint32 count``; pad to 8 (when count > 0); ``count`` float64.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, TypeVar

import numpy as np

from async_naf.wire.cdr import cdr_body, cdr_doubles, cdr_string, cdr_u32

_MAX_ROWS = 65_536  # messages gathered into one byte table at a time (bounds the memory of a large bag)
_MAX_HEADERS = 8  # distinct headers tried per message length; messages with others go one by one
_T = TypeVar("_T")


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
    try:
        body = cdr_body(raw)
        n_dims, pos = cdr_u32(body, 0)
        labels, sizes, strides = [], [], []
        for _ in range(n_dims):
            label, pos = cdr_string(body, pos)
            size, pos = cdr_u32(body, pos)
            stride, pos = cdr_u32(body, pos)
            labels.append(label)
            sizes.append(size)
            strides.append(stride)
        data_offset, pos = cdr_u32(body, pos)
        at, n, end = cdr_doubles(body, pos)
    except (ValueError, UnicodeDecodeError):
        return None
    if end != len(body):
        return None
    return _Header(tuple(labels), tuple(sizes), tuple(strides), data_offset, 4 + at, n)


def _tables(buf: np.ndarray, start: np.ndarray, length: np.ndarray, parse: Callable[[bytes], _T | None],
            fixed: Callable[[_T, int], np.ndarray]) -> tuple[list[tuple[np.ndarray, np.ndarray, _T]], np.ndarray]:
    """Messages ``buf[start[i]:start[i] + length[i]]`` gathered into byte tables: per length, a row is parsed
    (``parse``: None if it is not a message of the type) and the rows whose bytes at ``fixed(parsed, length)``
    (a bool mask: layout, not values) equal its bytes there share its layout; up to ``_MAX_HEADERS`` layouts
    per length. Returns (message indices, their rows, the parsed layout) per table, and the sorted indices of
    the messages left to the per-message path."""
    tables: list[tuple[np.ndarray, np.ndarray, _T]] = []
    rest: list[np.ndarray] = []
    start = np.asarray(start, np.int64)
    length = np.asarray(length, np.int64)
    for size in np.unique(length).tolist():
        idx_all = np.flatnonzero(length == size)
        for lo in range(0, len(idx_all), _MAX_ROWS):
            idx = idx_all[lo:lo + _MAX_ROWS]
            first = int(start[idx[0]])
            if size and (np.diff(start[idx]) == size).all() and first + len(idx) * size <= len(buf):
                rows = buf[first:first + len(idx) * size].reshape(len(idx), size)  # back to back: a view
            else:
                rows = buf[start[idx][:, None] + np.arange(size)]
            for _ in range(_MAX_HEADERS):  # the layouts of this length, the first row's each time
                parsed = parse(rows[0].tobytes())
                if parsed is None:  # that one goes one by one; the others may still share a layout
                    rest.append(idx[:1])
                    idx, rows = idx[1:], rows[1:]
                else:
                    mask = fixed(parsed, size)
                    same = (rows[:, mask] == rows[0, mask]).all(axis=1)
                    tables.append((idx[same], rows[same], parsed))
                    idx, rows = idx[~same], rows[~same]
                if not len(idx):
                    break
            rest.append(idx)
    left = np.sort(np.concatenate(rest)) if rest else np.zeros(0, np.int64)
    return tables, left


def _values(rows: np.ndarray, at: int, n: int) -> np.ndarray:
    """(k, n) float64 from the little-endian bytes ``rows[:, at:at + 8 n]``."""
    if not n:
        return np.zeros((len(rows), 0))
    return np.ascontiguousarray(rows[:, at:at + 8 * n]).view("<f8").astype(np.float64)


def multiarray_groups(buf: np.ndarray, start: np.ndarray, length: np.ndarray) -> tuple[list[ArrayGroup], np.ndarray]:
    """Decode the Float64MultiArray messages ``buf[start[i]:start[i] + length[i]]`` (module docstring): the
    messages of one length whose header bytes repeat form a table.

    Returns:
        the groups of messages decoded here (each in message order), and the (sorted) indices of the
        messages left to the per-message path.
    """
    def header_bytes(h: _Header, size: int) -> np.ndarray:
        mask = np.zeros(size, bool)
        mask[:h.data_start] = True
        return mask

    tables, rest = _tables(buf, start, length, parse_header, header_bytes)
    return [ArrayGroup(idx, h.labels, h.sizes, h.strides, h.data_offset, _values(rows, h.data_start, h.n_values))
            for idx, rows, h in tables], rest


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
    """Where the values of one JointState message (CDR little endian) lie (offsets in ``raw``), or None if
    ``raw`` is not one (header: ``int32 sec, uint32 nanosec, string frame_id``; then ``string[] name``,
    ``float64[] position, velocity, effort``)."""
    try:
        body = cdr_body(raw)
        _, pos = cdr_string(body, 8)  # frame_id, after the stamp
        count, pos = cdr_u32(body, pos)
        names = []
        for _ in range(count):
            name, pos = cdr_string(body, pos)
            names.append(name)
        p_at, p_n, pos = cdr_doubles(body, pos)
        v_at, v_n, pos = cdr_doubles(body, pos)
        _, _, pos = cdr_doubles(body, pos)  # effort
    except (ValueError, UnicodeDecodeError):
        return None
    if pos != len(body):
        return None
    return _JointStateLayout(tuple(names), (4 + p_at, p_n), (4 + v_at, v_n))


def joint_state_groups(buf: np.ndarray, start: np.ndarray, length: np.ndarray
                       ) -> tuple[list[JointStateGroup], np.ndarray]:
    """Decode the JointState messages ``buf[start[i]:start[i] + length[i]]`` as tables: per message length,
    the rows whose bytes other than the stamp and the values equal those of a parsed row (same frame id,
    names and sizes). Returns the groups and the sorted indices of the messages left to the per-message path."""
    def layout_bytes(layout: _JointStateLayout, size: int) -> np.ndarray:
        mask = np.ones(size, bool)  # all but the stamp and the values
        mask[4:12] = False
        for at, n in (layout.position, layout.velocity):
            mask[at:at + 8 * n] = False
        effort = layout.velocity[0] + 8 * layout.velocity[1]
        mask[effort + 4:] = False  # effort values (not read here; their count must repeat)
        return mask

    tables, rest = _tables(buf, start, length, parse_joint_state, layout_bytes)
    groups = []
    for idx, rows, layout in tables:
        sec, nanosec = _stamps(rows)
        groups.append(JointStateGroup(idx, layout.names, sec, nanosec, _values(rows, *layout.position),
                                      _values(rows, *layout.velocity)))
    return groups, rest


def _stamps(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sec, nanosec) int64 of the ``std_msgs/Header`` stamps that open the messages ``rows`` (int32, uint32)."""
    stamps = np.ascontiguousarray(rows[:, 4:12]).view("<u4").astype(np.int64)
    return np.where(stamps[:, 0] >= 2**31, stamps[:, 0] - 2**32, stamps[:, 0]), stamps[:, 1]


IMU_VALUES = 37  # float64 after sensor_msgs/Imu's header: orientation 4 + covariance 9, angular velocity 3 + 9,
# linear acceleration 3 + 9


class ImuGroup(NamedTuple):
    """``sensor_msgs/msg/Imu`` messages that share one frame id.

    Attributes:
        messages: (k,) the messages' indices.
        stamp_sec: (k,) int64 header stamp seconds.  stamp_nanosec: (k,) int64 its nanoseconds.
        values: (k, 37) float64: orientation (x, y, z, w) and its covariance (9, row major), angular velocity
            (rad/s) and its covariance, linear acceleration (m/s^2) and its covariance, sensor frame.
    """

    messages: np.ndarray
    stamp_sec: np.ndarray
    stamp_nanosec: np.ndarray
    values: np.ndarray


def parse_imu(raw: bytes) -> int | None:
    """Where the values of one Imu message (CDR little endian) start (offset in ``raw``), or None if ``raw``
    is not one that ends right after them (header: ``int32 sec, uint32 nanosec, string frame_id``)."""
    try:
        body = cdr_body(raw)
        _, pos = cdr_string(body, 8)
    except (ValueError, UnicodeDecodeError):
        return None
    pos = (pos + 7) & ~7
    if pos + 8 * IMU_VALUES != len(body):
        return None
    return 4 + pos


def imu_groups(buf: np.ndarray, start: np.ndarray, length: np.ndarray) -> tuple[list[ImuGroup], np.ndarray]:
    """Decode the Imu messages ``buf[start[i]:start[i] + length[i]]`` as tables: per message length, the rows
    whose bytes other than the stamp and the values equal those of a parsed row (the same frame id). Returns
    the groups and the sorted indices of the messages left to the per-message path."""
    def layout_bytes(at: int, size: int) -> np.ndarray:
        mask = np.ones(size, bool)
        mask[4:12] = False
        mask[at:] = False
        return mask

    tables, rest = _tables(buf, start, length, parse_imu, layout_bytes)
    groups = []
    for idx, rows, at in tables:
        sec, nanosec = _stamps(rows)
        groups.append(ImuGroup(idx, sec, nanosec, _values(rows, at, IMU_VALUES)))
    return groups, rest
