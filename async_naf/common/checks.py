"""Validation shared by the config dataclasses: a ``ValueError`` naming the field, raised at construction.

Every ``__post_init__`` in the project checks its numbers through these functions, so a bad value reads the
same wherever it comes from (a YAML file, a ROS parameter, Python code)::

    numbers(self, ("reset_timeout_s", "step_timeout_s"), 0.0, low_open=True)   # finite floats > 0
    integers(self, ("batch_size",), 1)                                          # ints >= 1
    self.rate_hz = number("imu.rate_hz", self.rate_hz, 0.0, 10_000.0, low_open=True)
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def _bounds(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return " and ".join(parts)


def number(name: str, value: Any, low: float | None = None, high: float | None = None, *,
           low_open: bool = False, high_open: bool = False) -> float:
    """``float(value)`` if it is a finite number within the bounds (``None`` = unbounded), else ValueError."""
    try:
        if isinstance(value, str):
            raise TypeError
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    bad = not math.isfinite(v)
    if low is not None:
        bad = bad or v < low or (low_open and v == low)
    if high is not None:
        bad = bad or v > high or (high_open and v == high)
    if bad:
        limits = _bounds(low, high, low_open, high_open)
        raise ValueError(f"{name} must be a finite number{' ' + limits if limits else ''}, got {value!r}")
    return v


def integer(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """``int(value)`` if it is an integral number (not a bool) within the bounds, else ValueError."""
    try:
        ok = not isinstance(value, (bool, str)) and int(value) == value
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok or (low is not None and value < low) or (high is not None and value > high):
        limits = _bounds(low, high, False, False)
        raise ValueError(f"{name} must be an integer{' ' + limits if limits else ''}, got {value!r}")
    return int(value)


def bounds_array(owner: str, low: Any, high: Any, n: int) -> tuple[Any, Any]:
    """Per-dimension float32 numpy arrays ``(low, high)`` of shape (n,) from a number or ``n`` numbers each
    (action units); ValueError unless both are finite (also as float32) with low < high everywhere."""
    import numpy as np  # importing this module stays cheap

    try:
        lo = np.asarray(low, np.float64)
        hi = np.asarray(high, np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: action_low/action_high must be numbers, got {low!r}, {high!r}") from None
    lo = np.broadcast_to(lo, (n,)) if lo.ndim == 0 else lo
    hi = np.broadcast_to(hi, (n,)) if hi.ndim == 0 else hi
    if lo.shape != (n,) or hi.shape != (n,):
        raise ValueError(f"{owner}: action_low/action_high must be a number or {n} numbers")
    with np.errstate(over="ignore"):  # beyond the float32 range becomes inf and is rejected below
        lo32, hi32 = lo.astype(np.float32), hi.astype(np.float32)
    if not (np.all(np.isfinite(lo32)) and np.all(np.isfinite(hi32)) and np.all(lo32 < hi32)):
        raise ValueError(f"{owner}: action bounds must be finite with action_low < action_high")
    return lo32, hi32


def numbers(obj: Any, names: Iterable[str], low: float | None = None, high: float | None = None, *,
            low_open: bool = False, high_open: bool = False, prefix: str = "") -> None:
    """Check the attributes ``names`` of ``obj`` with :func:`number` and store them back as floats."""
    for name in names:
        setattr(obj, name, number(prefix + name, getattr(obj, name), low, high,
                                  low_open=low_open, high_open=high_open))


def integers(obj: Any, names: Iterable[str], low: int | None = None, high: int | None = None, *,
             prefix: str = "") -> None:
    """Check the attributes ``names`` of ``obj`` with :func:`integer` and store them back as ints."""
    for name in names:
        setattr(obj, name, integer(prefix + name, getattr(obj, name), low, high))
