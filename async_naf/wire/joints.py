"""A ``sensor_msgs/JointState`` as arrays: what the sim, the door-angle node, the policy and the collector
hand each other inside a composed robot (type adaptation, :mod:`async_naf.nodes._local`), and what they read
from the message everywhere else.

Units follow the message: ``position`` rad (revolute joints), ``velocity`` rad/s, ``effort`` N m, one entry
per name, in the names' order (``effort`` may be empty). ``stamp_ns`` is the header stamp in nanoseconds
(sensor time: sim time in the simulation).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

NO_VALUES = np.zeros(0)  # a field left empty (no velocity or effort), shared read-only
NO_VALUES.flags.writeable = False
# the largest magnitude of a joint position (rad), velocity (rad/s) or command (rad/s), an end-effector
# position (m) or a door angle (rad) that a message may hold: no arm comes near it, and below it what is
# computed from these (rewards, their sums, float32 transitions) stays finite. Beyond it: a corrupt message
ARM_VALUE_MAX = 1.0e6
_ARM_VALUE_MAX2 = ARM_VALUE_MAX**2


def plausible(values: np.ndarray) -> bool:
    """``values`` finite, their Euclidean norm within :data:`ARM_VALUE_MAX` (a NaN makes the sum NaN, which
    compares False; a huge value makes it inf). One dot product: half the time of ``(abs(v) <= max).all()``."""
    return bool(np.vdot(values, values) <= _ARM_VALUE_MAX2)


def joint_index(names: tuple[str, ...], wanted: tuple[str, ...]) -> np.ndarray | None:
    """Where each of ``wanted`` is in ``names``; None when one is missing or named more than once (a malformed
    message: which of two values would be the joint's?)."""
    try:
        index = [names.index(n) for n in wanted]
    except ValueError:
        return None
    if any(names.count(n) != 1 for n in wanted):
        return None
    return np.array(index)


class JointStates(NamedTuple):
    """Joint names and their state at one stamp (see the module docstring for units)."""

    stamp_ns: int
    name: tuple[str, ...]
    position: np.ndarray  # (n,) rad
    velocity: np.ndarray  # (n,) or (0,) rad/s
    effort: np.ndarray  # (n,) or (0,) N m

    @property
    def stamp_s(self) -> float:
        """The stamp in seconds, as ``sec + 1e-9 * nanosec`` of the message (the same float either way)."""
        return stamp_ns_to_s(self.stamp_ns)


def stamp_ns_to_s(stamp_ns: int) -> float:
    """A header stamp in ns as seconds, computed as from the message's ``sec`` and ``nanosec`` fields."""
    sec, nsec = divmod(int(stamp_ns), 1_000_000_000)
    return float(sec) + 1e-9 * float(nsec)


def s_to_stamp_ns(t_s: float) -> int:
    """Seconds as a header stamp in ns (rounded to the nearest ns)."""
    return int(round(t_s * 1e9))
