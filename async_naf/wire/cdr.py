"""CDR (XCDR1, plain, little endian) primitives: the readers the rest of the project builds on, and
:func:`f8_bytes`, the float64 values a writer puts in.

:func:`cdr_body` checks the 4-byte encapsulation header and returns the body; positions are relative to the
body, where CDR aligns them. :func:`cdr_u32`, :func:`cdr_string` and :func:`cdr_doubles` read one field at a
position (aligning it first) and return where the next field starts; each raises ValueError for a field that
runs past the end. The bag conversion (:mod:`async_naf.recording.cdr`, ``async_naf.run.convert_raw``) reads
with them; :mod:`async_naf.wire.record_bundle` walks the messages it makes exact with them.
"""
from __future__ import annotations

import struct

import numpy as np

_U32 = struct.Struct("<I")
F8 = np.dtype("<f8")  # CDR's float64 here: little endian
U32_BE = struct.Struct(">I")  # cdr_u32's byte order for big-endian CDR


def cdr_body(raw: bytes | memoryview) -> memoryview:
    """The CDR body after the 4-byte encapsulation header; ValueError unless little-endian plain CDR.
    Positions below are relative to this body (CDR aligns relative to it)."""
    view = memoryview(raw)
    if len(view) < 4 or view[0] != 0 or view[1] != 1:
        raise ValueError("not little-endian CDR")
    return view[4:]


def cdr_u32(body: memoryview, pos: int, u32: struct.Struct = _U32) -> tuple[int, int]:
    """The uint32 at ``pos`` (aligned to 4) and the position after it; ValueError past the end. ``u32``: its
    byte order (little endian unless given: :data:`U32_BE` for a big-endian message)."""
    pos = (pos + 3) & ~3
    if pos + 4 > len(body):
        raise ValueError("truncated")
    (value,) = u32.unpack_from(body, pos)
    return int(value), pos + 4


def cdr_string(body: memoryview, pos: int) -> tuple[str, int]:
    """The string at ``pos`` (uint32 length with the NUL, bytes) and the position after it."""
    n, pos = cdr_u32(body, pos)
    if n == 0 or pos + n > len(body):
        raise ValueError("bad string")
    return bytes(body[pos:pos + n - 1]).decode(), pos + n


def cdr_doubles(body: memoryview, pos: int) -> tuple[int, int, int]:
    """The float64 sequence at ``pos``: (where its values start, their count, the position after them)."""
    n, pos = cdr_u32(body, pos)
    if n:
        pos = (pos + 7) & ~7
    end = pos + 8 * n
    if end > len(body):
        raise ValueError("sequence beyond the message")
    return pos, n, end


def f8_bytes(values: object) -> bytes:
    """``values`` as little-endian float64 bytes, flattened in C order (a little-endian float64 array's own
    buffer as it is; anything else converted)."""
    if type(values) is np.ndarray and values.dtype == F8:
        return values.tobytes()
    return np.asarray(values, dtype=F8).tobytes()
