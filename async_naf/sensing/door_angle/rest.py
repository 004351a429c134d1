"""Rest detection for the door IMU: windowed gyro/accelerometer statistics in O(1) per sample.

A door is at rest when, at the same time,

- every bias-corrected gyro magnitude in the long window is small (no motion lately),
- the gyro variance in the short window is at noise level (no vibration or jerk),
- the accelerometer variance in the short window is at noise level (no one touching the leaf),
- the mean gyro rate over the long window, relative to the current bias estimate, is ~0.

The last test is what separates rest from a slow, steady swing: such a swing has a noise-level variance
and a small magnitude, but a persistent non-zero mean about the hinge axis.
"""
from __future__ import annotations

import math
from collections import deque


class RestWindows:
    """Running sums of IMU samples over a short and a long time window (sensor frame, SI units)."""

    _RECOMPUTE_EVERY = 4096  # pops between exact recomputation of the running sums (rounding hygiene)

    def __init__(self, window_s: float, mean_window_s: float) -> None:
        self.window_s = window_s
        self.mean_window_s = mean_window_s
        self.clear()

    def clear(self) -> None:
        """Forget all samples (after a gap, a reset or a zero)."""
        # short window entries: (t, gx, gy, gz, ax, ay, az); long window entries: (t, gx, gy, gz, exceeded)
        self._short: deque[tuple[float, float, float, float, float, float, float]] = deque()
        self._long: deque[tuple[float, float, float, float, bool]] = deque()
        self._g = [0.0, 0.0, 0.0]
        self._gg = [0.0, 0.0, 0.0]
        self._a = [0.0, 0.0, 0.0]
        self._aa = [0.0, 0.0, 0.0]
        self._a0: tuple[float, float, float] | None = None  # offset for well-conditioned accel sums
        self._long_exceeded = 0
        self._lg = [0.0, 0.0, 0.0]
        self._pops = 0

    def push(self, t: float, g: tuple[float, float, float], a: tuple[float, float, float], exceeded: bool) -> None:
        """Add one sample at time ``t`` (s); ``exceeded`` marks a bias-corrected rate above the limit."""
        # written out per axis: this runs for every IMU sample (about a fifth of the estimator's time)
        if self._a0 is None:
            self._a0 = a
        gx, gy, gz = g
        a0 = self._a0
        cx, cy, cz = a[0] - a0[0], a[1] - a0[1], a[2] - a0[2]
        self._short.append((t, gx, gy, gz, cx, cy, cz))
        self._long.append((t, gx, gy, gz, exceeded))
        sg, sgg, sa, saa, lg = self._g, self._gg, self._a, self._aa, self._lg
        sg[0] += gx
        sg[1] += gy
        sg[2] += gz
        sgg[0] += gx * gx
        sgg[1] += gy * gy
        sgg[2] += gz * gz
        sa[0] += cx
        sa[1] += cy
        sa[2] += cz
        saa[0] += cx * cx
        saa[1] += cy * cy
        saa[2] += cz * cz
        lg[0] += gx
        lg[1] += gy
        lg[2] += gz
        self._long_exceeded += exceeded
        short, cut = self._short, t - self.window_s
        while short[0][0] < cut:
            _, ox, oy, oz, px, py, pz = short.popleft()
            sg[0] -= ox
            sg[1] -= oy
            sg[2] -= oz
            sgg[0] -= ox**2
            sgg[1] -= oy**2
            sgg[2] -= oz**2
            sa[0] -= px
            sa[1] -= py
            sa[2] -= pz
            saa[0] -= px**2
            saa[1] -= py**2
            saa[2] -= pz**2
            self._pops += 1
        long, cut = self._long, t - self.mean_window_s
        while long[0][0] < cut:
            _, ox, oy, oz, old_exceeded = long.popleft()
            lg[0] -= ox
            lg[1] -= oy
            lg[2] -= oz
            self._long_exceeded -= old_exceeded
        if self._pops >= self._RECOMPUTE_EVERY:
            self._recompute()

    def _recompute(self) -> None:
        self._pops = 0
        self._g = [sum(e[1 + i] for e in self._short) for i in range(3)]
        self._gg = [sum(e[1 + i] ** 2 for e in self._short) for i in range(3)]
        self._a = [sum(e[4 + i] for e in self._short) for i in range(3)]
        self._aa = [sum(e[4 + i] ** 2 for e in self._short) for i in range(3)]
        self._lg = [sum(e[1 + i] for e in self._long) for i in range(3)]

    @property
    def any_exceeded_long(self) -> bool:
        """True if a sample in the long window exceeded the rate limit."""
        return self._long_exceeded > 0

    def gyro_var(self) -> float:
        """Sum over axes of the gyro variance in the short window ((rad/s)^2)."""
        n = len(self._short)
        if n < 2:
            return math.inf
        g, gg = self._g, self._gg
        return max(0.0, ((gg[0] - g[0] ** 2 / n) + (gg[1] - g[1] ** 2 / n) + (gg[2] - g[2] ** 2 / n)) / (n - 1))

    def accel_var(self) -> float:
        """Sum over axes of the accelerometer variance in the short window ((m/s^2)^2)."""
        n = len(self._short)
        if n < 2:
            return math.inf
        a, aa = self._a, self._aa
        return max(0.0, ((aa[0] - a[0] ** 2 / n) + (aa[1] - a[1] ** 2 / n) + (aa[2] - a[2] ** 2 / n)) / (n - 1))

    def long_mean(self) -> tuple[float, float, float]:
        """Mean raw gyro over the long window (rad/s, sensor frame)."""
        n = max(1, len(self._long))
        return (self._lg[0] / n, self._lg[1] / n, self._lg[2] / n)

    def long_count(self) -> int:
        return len(self._long)
