"""safetensors containers for policy weights and training checkpoints (never pickle).

Every file or byte string written here is a plain safetensors file whose header metadata (string -> string)
holds:

``format``          ``"async_naf"``
``format_version``  ``"1"`` (:data:`FORMAT_VERSION`)
``kind``            what the tensors are, e.g. ``"policy"`` or ``"agent_checkpoint"``
``meta``            a JSON object: dimensions, action bounds, update count, normalisation statistics
                    (as tensors), the agent config, optimiser settings, ...

Reading validates the header before touching tensors and turns every problem (truncated data, bad JSON,
unknown version, unexpected kind, non-finite weights, safetensors parse errors) into a ``ValueError`` with
a message that says what is wrong. Tensors come back as numpy arrays.
"""
from __future__ import annotations

import contextlib
import json
import os
import struct
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

FORMAT_NAME = "async_naf"
FORMAT_VERSION = 1
_MAX_HEADER = 100 * 1024 * 1024  # bytes; safetensors' own limit


def pack(tensors: Mapping[str, np.ndarray], kind: str, meta: Mapping[str, Any]) -> bytes:
    """Serialise ``tensors`` (name -> numpy array) with ``kind`` and the JSON-able ``meta`` to bytes."""
    from safetensors.numpy import save  # keeps `import async_naf` cheap

    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    for name, arr in arrays.items():
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise ValueError(f"refusing to save tensor {name!r}: it contains NaN or Inf")
    header = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "kind": kind,
        "meta": json.dumps(meta, sort_keys=True),
    }
    return save(arrays, metadata=header)


def safetensors_header(data: bytes, source: str = "data") -> dict[str, Any]:
    """The JSON header of safetensors bytes (framing only: 8-byte length, then a JSON object).

    Raises:
        ValueError: not bytes, truncated, a header length beyond the data, or a header that is not a JSON
            object.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"{source}: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < 8:
        raise ValueError(f"{source}: truncated: {len(data)} bytes cannot hold a safetensors header")
    (n,) = struct.unpack("<Q", data[:8])
    if n == 0 or n > _MAX_HEADER or 8 + n > len(data):
        raise ValueError(f"{source}: truncated or corrupt: header length {n} does not fit the {len(data)} bytes")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:  # RecursionError: "[[[[..." nested
        raise ValueError(f"{source}: corrupt safetensors header (not valid JSON): {exc!r}") from exc
    if not isinstance(header, dict):
        raise ValueError(f"{source}: corrupt safetensors header (not a JSON object)")
    return header


def read_header(data: bytes, source: str = "data") -> dict[str, Any]:
    """Parse and check the safetensors header of ``data``; return ``{'kind': str, 'meta': dict}``.

    Raises:
        ValueError: not a safetensors file, not an async_naf file, or an unsupported format version.
    """
    header = safetensors_header(data, source)
    md = header.get("__metadata__")
    if not isinstance(md, dict) or md.get("format") != FORMAT_NAME:
        raise ValueError(f"{source}: not an {FORMAT_NAME} weights/checkpoint file (no '{FORMAT_NAME}' metadata)")
    if md.get("format_version") != str(FORMAT_VERSION):
        raise ValueError(
            f"{source}: format version {md.get('format_version')!r} is not supported (this code reads {FORMAT_VERSION})"
        )
    raw = md.get("meta", "")
    if not isinstance(raw, str):  # safetensors metadata values are strings; a number here is a corrupt header
        raise ValueError(f"{source}: metadata 'meta' is a {type(raw).__name__}, not a JSON string")
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as exc:  # RecursionError: "[[[[..." nested too deep
        raise ValueError(f"{source}: corrupt metadata JSON: {exc!r}") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{source}: metadata 'meta' is not a JSON object")
    return {"kind": md.get("kind"), "meta": meta}


def unpack(
    data: bytes, kinds: Iterable[str] | str, source: str = "data"
) -> tuple[dict[str, np.ndarray], dict[str, Any], str]:
    """Inverse of :func:`pack`: return ``(tensors, meta, kind)``; ``kind`` must be one of ``kinds``.

    Raises:
        ValueError: see :func:`read_header`; also unexpected kind, safetensors parse errors and floating-point
            tensors that are not finite as float32 (NaN, Inf, or beyond float32's range).
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load

    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    head = read_header(data, source)
    if head["kind"] not in kinds:
        raise ValueError(f"{source}: holds {head['kind']!r}, expected {' or '.join(map(repr, kinds))}")
    try:
        tensors = load(bytes(data))
    except (SafetensorError, ValueError, TypeError) as exc:
        raise ValueError(f"{source}: corrupt safetensors data: {exc}") from exc
    for name, arr in tensors.items():
        # checked as float32, what every reader uses them as: a float64 1e300 passes isfinite but becomes inf
        if arr.dtype.kind == "f":
            with np.errstate(over="ignore"):
                finite = bool(np.all(np.isfinite(arr.astype(np.float32, copy=False))))
            if not finite:
                raise ValueError(f"{source}: tensor {name!r} contains NaN or Inf, or values beyond float32's range")
    return tensors, head["meta"], head["kind"]


def require(tensors: Mapping[str, np.ndarray], name: str, shape: tuple[int, ...], source: str = "data") -> np.ndarray:
    """A writable C-contiguous float32 copy of ``tensors[name]`` after checking it exists and has ``shape``.

    Raises:
        ValueError: the tensor is missing or has another shape.
    """
    if name not in tensors:
        raise ValueError(f"{source}: missing tensor {name!r}")
    arr = tensors[name]
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{source}: tensor {name!r} has shape {tuple(arr.shape)}, expected {tuple(shape)}")
    return np.array(arr, dtype=np.float32, order="C")


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """Binary file object whose content replaces ``path`` atomically when the ``with`` block ends.

    Writes ``<path>.tmp`` in the same directory, flushes and fsyncs it, then renames it over ``path``. If
    the block raises, the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_file(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path) as f:
        f.write(data)


def read_file(path: str | os.PathLike) -> bytes:
    """Read a whole file (``FileNotFoundError`` if absent)."""
    return Path(path).read_bytes()
