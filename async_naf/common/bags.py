"""Reading rosbag2 bags through rosbags: what a damaged bag can raise, and the message counts its metadata gives
(ROS-free; rosbags and the compression libraries imported lazily).

rosbags reports a bag it cannot parse with its own errors (``AnyReaderError``, ``ReaderError``) only where it
checks: damaged bytes elsewhere surface from its parsers as whatever Python raised there. Fuzzing the project's
bag readers (truncations, byte flips in every MCAP record, metadata.yaml edits) gave, besides rosbags' errors,
``TypeError``, ``OverflowError``, ``MemoryError``, ``UnicodeDecodeError``, ``AttributeError`` and a zstd
module's ``ZstdError``. A reader catches :func:`read_errors` at its boundary with rosbags and raises its own
``BagError`` with the cause chained: a clear error, never a traceback.
"""
from __future__ import annotations

import importlib
import struct
from typing import Any


def read_errors() -> tuple[type[BaseException], ...]:
    """The exception types a damaged or malformed bag makes rosbags raise (see the module docstring)."""
    from rosbags.highlevel import AnyReaderError
    from rosbags.rosbag2 import ReaderError

    errors: list[type[BaseException]] = [
        AnyReaderError, ReaderError, OSError, EOFError, ValueError, TypeError, OverflowError, MemoryError,
        struct.error, KeyError, IndexError, AttributeError,
        RuntimeError,  # lz4.frame's error for a damaged lz4 chunk
    ]
    # zstd: rosbags decompresses a zstd-compressed bag file with PEP 784's module (Python 3.14's compression.zstd,
    # else its backport backports.zstd); the mcap library and the fast reader with zstandard
    for module in ("compression.zstd", "backports.zstd", "zstandard"):
        try:
            errors.append(importlib.import_module(module).ZstdError)
        except (ModuleNotFoundError, AttributeError):
            continue
    return tuple(errors)


def message_count(connection: Any) -> int | None:
    """A rosbags connection's message count from the bag's metadata, or None where it is not a count (a damaged
    metadata.yaml: ``message_count: x``)."""
    n = connection.msgcount
    return n if type(n) is int and n >= 0 else None  # bool is not a count
