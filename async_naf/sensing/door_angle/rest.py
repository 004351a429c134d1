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
        if self._a0 is None:
            self._a0 = a
        ac = (a[0] - self._a0[0], a[1] - self._a0[1], a[2] - self._a0[2])
        self._short.append((t, g[0], g[1], g[2], ac[0], ac[1], ac[2]))
        self._long.append((t, g[0], g[1], g[2], exceeded))
        for i in range(3):
            self._g[i] += g[i]
            self._gg[i] += g[i] * g[i]
            self._a[i] += ac[i]
            self._aa[i] += ac[i] * ac[i]
            self._lg[i] += g[i]
        self._long_exceeded += exceeded
        while self._short and self._short[0][0] < t - self.window_s:
            old = self._short.popleft()
            for i in range(3):
                self._g[i] -= old[1 + i]
                self._gg[i] -= old[1 + i] ** 2
                self._a[i] -= old[4 + i]
                self._aa[i] -= old[4 + i] ** 2
            self._pops += 1
        while self._long and self._long[0][0] < t - self.mean_window_s:
            old_l = self._long.popleft()
            for i in range(3):
                self._lg[i] -= old_l[1 + i]
            self._long_exceeded -= old_l[4]
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
        return max(0.0, sum(self._gg[i] - self._g[i] ** 2 / n for i in range(3)) / (n - 1))

    def accel_var(self) -> float:
        """Sum over axes of the accelerometer variance in the short window ((m/s^2)^2)."""
        n = len(self._short)
        if n < 2:
            return math.inf
        return max(0.0, sum(self._aa[i] - self._a[i] ** 2 / n for i in range(3)) / (n - 1))

    def long_mean(self) -> tuple[float, float, float]:
        """Mean raw gyro over the long window (rad/s, sensor frame)."""
        n = max(1, len(self._long))
        return (self._lg[0] / n, self._lg[1] / n, self._lg[2] / n)

    def long_count(self) -> int:
        return len(self._long)
