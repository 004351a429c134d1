"""IMU door-angle estimator: hinge angle from a gyro + accelerometer on the door leaf (ROS-free).

Why it is needed: the hinge is (nearly) vertical, so gravity is parallel to the rotation axis and the
accelerometer cannot see the angle; only the gyroscope can, and a MEMS gyro's bias drifts (warm-up, slow
random walk) by tenths of a degree per second, which integrates to tens of degrees in minutes.

Algorithm (per sample, O(1)):

1. Validate: non-finite samples and duplicate or out-of-order stamps are dropped and counted; steps
   longer than ``max_gap_s`` are counted as gaps (rest windows restart, variance inflated).
2. Hinge axis in the sensor frame: configured, or identified: first the gravity direction at rest (a
   hinge is near vertical), then the principal axis of the bias-corrected rates during swings (exact for
   any mounting and hinge tilt). The opening sign is fixed by the first swing away from the closed start.
3. Rest detection (see :mod:`.rest`): short-window gyro magnitude and variance, accelerometer variance,
   and the long-window mean rate relative to the bias estimate, so a slow steady swing is not rest. The
   limits widen with the bias uncertainty and with the time since the bias was last re-estimated.
4. At rest: zero-velocity update (the angle holds), the gyro bias is re-estimated (scalar-variance Kalman
   filter per axis, random-walk model) from samples older than ``rest_guard_s``; near the closed angle the
   estimate snaps to closed and its variance drops to ``closed_variance``.
5. In motion: trapezoidal integration of the bias-corrected rate about the axis; the variance grows with
   the gyro noise (from the message covariance when given) and the bias uncertainty; the angle is bounded
   by the closed position and the door stop.

Frames/units: sensor frame, rad, rad/s, m/s^2, stamps in ns. Angle positive opening, 0 (``closed_angle_rad``)
closed.
"""
from __future__ import annotations

import math
from collections import deque
from typing import NamedTuple

import numpy as np

from async_naf.sensing.door_angle.axis import SwingAxis
from async_naf.sensing.door_angle.config import DoorAngleConfig
from async_naf.sensing.door_angle.rest import RestWindows
from async_naf.wire.imu import ImuSample

DROP_REASONS = ("non_finite", "duplicate", "out_of_order", "invalid")


class DoorAngleState(NamedTuple):
    """Door-angle estimate at one IMU stamp."""

    stamp_ns: int  # IMU header stamp (ns)
    angle: float  # hinge angle (rad), + opening, closed_angle_rad when closed
    velocity: float  # hinge angular velocity (rad/s), 0 at rest
    variance: float  # variance of ``angle`` (rad^2)


def _noise_var(cov: object, default: float) -> float:
    """Per-axis variance from a 3x3 (or 9-element) covariance; ``default`` when unknown or invalid."""
    if cov is None:
        return default
    try:
        flat = np.asarray(cov, dtype=float).ravel()
    except (TypeError, ValueError):
        return default
    if flat.size != 9:
        return default
    d0, d1, d2 = float(flat[0]), float(flat[4]), float(flat[8])
    if not (d0 > 0.0 and d1 > 0.0 and d2 > 0.0 and math.isfinite(d0 + d1 + d2)):
        return default  # sensor_msgs convention: -1 or zeros mean "unknown"
    return (d0 + d1 + d2) / 3.0


class DoorAngleEstimator:
    """Door hinge angle from door-leaf IMU samples; see the module docstring for the algorithm.

    Construction is cheap (no allocation beyond a few small arrays). The door is assumed closed at
    construction and after :meth:`reset`; :meth:`zero` declares "closed now" without forgetting the
    learnt sensor calibration (bias, axis, opening sign).
    """

    def __init__(self, config: DoorAngleConfig | None = None) -> None:
        self.config = config if config is not None else DoorAngleConfig()
        self.dropped: dict[str, int] = {reason: 0 for reason in DROP_REASONS}
        self.gaps = 0  # time steps longer than max_gap_s
        self.snaps = 0  # snaps to the closed reference
        self.samples = 0  # accepted samples
        self._swing = SwingAxis(self.config.axis_rate_min, self.config.axis_min_energy)
        self._windows = RestWindows(self.config.rest_window_s, self.config.rest_mean_window_s)
        self._pending: deque[tuple[float, ...]] = deque()
        self._calibrated = False
        self._cov_cache: list[tuple[object, float] | None] = [None, None]
        self.reset(keep_calibration=False)

    # ------------------------------------------------------------------------------------------ control
    def reset(self, *, keep_calibration: bool = True, angle: float | None = None) -> None:
        """Start a new estimate: the door is at ``angle`` (default: closed) now.

        Args:
            keep_calibration: keep the learnt gyro bias, hinge axis and opening sign (they belong to the
                sensor and its mounting, not to the episode); ``False`` forgets them too.
            angle: hinge angle (rad) at the reset; ``None`` = ``closed_angle_rad``.
        Stamps restart: the next sample is accepted whatever its stamp.
        """
        cfg = self.config
        if not keep_calibration or not self._calibrated:
            self._bias = list(cfg.initial_bias) if cfg.initial_bias is not None else [0.0, 0.0, 0.0]
            self._bias_var = cfg.initial_bias_std**2
            self._bias_var_fix = self._bias_var  # variance right after the last re-estimate
            self._t_bias: float | None = None
            if cfg.hinge_axis is not None:
                self._axis: list[float] | None = list(cfg.hinge_axis)
                self._axis_source = "config"
                self._sign_known = True
            else:
                self._axis = None
                self._axis_source = "none"
                self._sign_known = False
            self._swing.reset()
            self._grav_sum = [0.0, 0.0, 0.0]
            self._grav_n = 0
            self._calibrated = True
        self._angle = cfg.closed_angle_rad if angle is None else float(angle)
        self._var = cfg.closed_variance
        self._velocity = 0.0
        self._at_rest = False
        self._rest_since = 0.0
        self._windows.clear()
        self._pending.clear()
        self._t0_ns: int | None = None
        self._last_ns: int | None = None
        self._last_t = 0.0
        self._g_prev: tuple[float, float, float] | None = None
        self._state = DoorAngleState(0, self._angle, 0.0, self._var)

    def zero(self) -> None:
        """Declare "the door is closed now": angle to ``closed_angle_rad``, variance to ``closed_variance``."""
        self._angle = self.config.closed_angle_rad
        self._var = self.config.closed_variance
        self._pending.clear()
        self._state = self._state._replace(angle=self._angle, variance=self._var)

    # ------------------------------------------------------------------------------------------ queries
    @property
    def state(self) -> DoorAngleState:
        """The latest estimate (the closed start before the first sample)."""
        return self._state

    @property
    def at_rest(self) -> bool:
        return self._at_rest

    @property
    def bias(self) -> np.ndarray:
        """Current gyro bias estimate (rad/s, sensor frame)."""
        return np.array(self._bias)

    @property
    def bias_std(self) -> float:
        """Standard deviation of each bias component (rad/s)."""
        return math.sqrt(self._bias_var)

    @property
    def axis(self) -> np.ndarray | None:
        """Current hinge axis estimate (unit, sensor frame; + rotation opens), None before any sample."""
        return None if self._axis is None else np.array(self._axis)

    @property
    def axis_source(self) -> str:
        """Where the axis comes from: 'none', 'accel' (provisional), 'gravity', 'swing' or 'config'."""
        return self._axis_source

    @property
    def sign_known(self) -> bool:
        """True once the opening direction is known (configured axis, or first swing seen)."""
        return self._sign_known

    # ------------------------------------------------------------------------------------------ update
    def update(self, sample: ImuSample) -> DoorAngleState | None:
        """Process one IMU sample; returns the estimate at its stamp, or None if it was dropped."""
        cfg = self.config
        try:
            stamp = int(sample.stamp_ns)
            gx, gy, gz = np.asarray(sample.gyro, dtype=float).reshape(3).tolist()
            ax, ay, az = np.asarray(sample.accel, dtype=float).reshape(3).tolist()
            finite = math.isfinite(gx + gy + gz + ax + ay + az)  # inf - inf is nan: still caught
            if sample.mag is not None:
                finite = finite and math.isfinite(sum(np.asarray(sample.mag, dtype=float).reshape(3).tolist()))
        except (TypeError, ValueError, AttributeError):
            self.dropped["invalid"] += 1
            return None
        if not finite:
            self.dropped["non_finite"] += 1
            return None
        if self._last_ns is not None and stamp <= self._last_ns:
            self.dropped["duplicate" if stamp == self._last_ns else "out_of_order"] += 1
            return None
        if self._t0_ns is None:
            self._t0_ns = stamp
        t = (stamp - self._t0_ns) * 1e-9
        dt = 0.0 if self._last_ns is None else t - self._last_t
        self._last_ns, self._last_t = stamp, t
        self.samples += 1
        g = (gx, gy, gz)
        a = (ax, ay, az)
        gvar = self._cached_var(0, sample.gyro_cov, cfg.gyro_noise_std**2)
        avar = self._cached_var(1, sample.accel_cov, cfg.accel_noise_std**2)

        if self._axis is None:  # provisional: along the specific force (a hinge is near vertical)
            n = math.sqrt(a[0] ** 2 + a[1] ** 2 + a[2] ** 2) or 1.0
            self._axis = [a[0] / n, a[1] / n, a[2] / n] if n > 1e-3 else [0.0, 0.0, 1.0]
            self._axis_source = "accel"
        if dt > cfg.max_gap_s:
            self.gaps += 1
            self._windows.clear()
            self._var += (cfg.gap_rate_std * dt) ** 2
        if cfg.estimate_bias and dt > 0.0:
            self._bias_var += cfg.bias_walk_std**2 * dt

        b, u = self._bias, self._axis
        w = (g[0] - b[0], g[1] - b[1], g[2] - b[2])
        wa = w[0] * u[0] + w[1] * u[1] + w[2] * u[2]
        if self._g_prev is None:
            wa_prev = wa
        else:
            gp = self._g_prev
            wa_prev = (gp[0] - b[0]) * u[0] + (gp[1] - b[1]) * u[1] + (gp[2] - b[2]) * u[2]
        self._g_prev = g
        dtheta = 0.5 * (wa + wa_prev) * dt
        dvar = gvar * dt * dt

        rest = self._rest_test(t, g, a, w, gvar, avar)
        if rest:
            self._on_rest(t, g, a, dtheta, dvar, gvar)
        else:
            self._on_motion(t, w, wa, dtheta, dvar, dt)
        self._state = DoorAngleState(stamp, self._angle, self._velocity, self._var)
        return self._state

    # ------------------------------------------------------------------------------------------ internals
    def _cached_var(self, slot: int, cov: object, default: float) -> float:
        """_noise_var, cached while the same covariance object keeps coming (sim, recordings).

        Callers that reuse one covariance array for every sample must not change it in place.
        """
        cached = self._cov_cache[slot]
        if cached is not None and cached[0] is cov:
            return cached[1]
        var = _noise_var(cov, default)
        self._cov_cache[slot] = (cov, var)
        return var

    def _rest_test(
        self,
        t: float,
        g: tuple[float, float, float],
        a: tuple[float, float, float],
        w: tuple[float, float, float],
        gvar: float,
        avar: float,
    ) -> bool:
        cfg = self.config
        # bias uncertainty: that of the last re-estimate plus the largest drift since (norm over 3 axes)
        sig_b = 3.0 * math.sqrt(3.0 * self._bias_var_fix)
        stale = 0.0
        if cfg.estimate_bias and self._t_bias is not None:
            stale = cfg.bias_drift_max * max(0.0, t - self._t_bias)
        gyro_lim = max(cfg.rest_gyro_max, 3.5 * math.sqrt(3.0 * gvar)) + sig_b + stale
        exceeded = w[0] * w[0] + w[1] * w[1] + w[2] * w[2] > gyro_lim * gyro_lim
        win = self._windows
        win.push(t, g, a, exceeded)
        # a window younger than rest_mean_window_s (after construction, reset or a gap) may already be
        # rest: its samples stay pending for rest_guard_s and are integrated if motion follows after all
        if win.long_count() < 10 or win.any_exceeded_long:
            return False
        if win.gyro_var() > max(cfg.rest_gyro_var_max, 6.0 * gvar):
            return False
        if win.accel_var() > max(cfg.rest_accel_var_max, 6.0 * avar):
            return False
        if cfg.use_mean_rate_test:
            m = win.long_mean()
            b = self._bias
            dev = math.sqrt((m[0] - b[0]) ** 2 + (m[1] - b[1]) ** 2 + (m[2] - b[2]) ** 2)
            lim = cfg.rest_mean_rate_max + sig_b + stale + 3.0 * math.sqrt(3.0 * gvar / win.long_count())
            if dev > lim:
                return False
        return True

    def _on_rest(self, t: float, g: tuple, a: tuple, dtheta: float, dvar: float, gvar: float) -> None:
        cfg = self.config
        if not self._at_rest:
            self._at_rest = True
            self._rest_since = t
        self._velocity = 0.0
        self._pending.append((t, g[0], g[1], g[2], a[0], a[1], a[2], dtheta, dvar, gvar))
        # before the first bias estimate there is no bias for the mean-rate test to keep independent of
        # the window: confirm as soon as the short window has vouched for a sample (a brief first rest counts)
        guard = cfg.rest_guard_s if self._t_bias is not None else min(cfg.rest_guard_s, cfg.rest_window_s)
        while self._pending and self._pending[0][0] <= t - guard:
            self._confirm(self._pending.popleft())
        if t - self._rest_since >= cfg.rest_guard_s and abs(self._angle - cfg.closed_angle_rad) < cfg.closed_snap_rad:
            if self._angle != cfg.closed_angle_rad or self._var > cfg.closed_variance:
                self.snaps += 1
            self._angle = cfg.closed_angle_rad
            self._var = min(self._var, cfg.closed_variance)

    def _confirm(self, entry: tuple) -> None:
        """A sample confirmed to be at rest: feeds the bias estimate and the gravity axis."""
        cfg = self.config
        t, gx, gy, gz, ax, ay, az = entry[:7]
        if cfg.estimate_bias:
            r = entry[9]
            k = self._bias_var / (self._bias_var + r)
            b = self._bias
            b[0] += k * (gx - b[0])
            b[1] += k * (gy - b[1])
            b[2] += k * (gz - b[2])
            self._bias_var *= 1.0 - k
            self._bias_var_fix = self._bias_var
            self._t_bias = t
        if self._axis_source in ("accel", "gravity"):
            s = self._grav_sum
            s[0] += ax
            s[1] += ay
            s[2] += az
            self._grav_n += 1
            n = math.sqrt(s[0] ** 2 + s[1] ** 2 + s[2] ** 2)
            if self._grav_n >= 20 and n > 0.0:
                axis = [s[0] / n, s[1] / n, s[2] / n]
                u = self._axis or axis
                if axis[0] * u[0] + axis[1] * u[1] + axis[2] * u[2] < 0.0:  # keep a decided sign
                    axis = [-axis[0], -axis[1], -axis[2]]
                self._axis = axis
                self._axis_source = "gravity"

    def _on_motion(
        self, t: float, w: tuple[float, float, float], wa: float, dtheta: float, dvar: float, dt: float
    ) -> None:
        cfg = self.config
        if self._at_rest:  # unconfirmed rest samples were motion after all: integrate them now
            for entry in self._pending:
                self._angle += entry[7]
                self._grow_var(entry[8], dt=0.0)
            self._pending.clear()
            self._at_rest = False
        self._angle += dtheta
        self._velocity = wa
        self._grow_var(dvar, dt)
        if self._axis_source != "config" and self._swing.add(w, dt) and self._swing.due():
            axis, quality = self._swing.solve(np.asarray(self._axis))
            if quality > 0.9:
                self._axis = [float(axis[0]), float(axis[1]), float(axis[2])]
                self._axis_source = "swing"
        closed = cfg.closed_angle_rad
        if not self._sign_known and abs(self._angle - closed) > cfg.sign_threshold_rad:
            if self._angle < closed:  # a closed door only opens: we integrated about -axis
                u = self._axis
                assert u is not None  # update() sets an axis before any motion
                self._axis = [-u[0], -u[1], -u[2]]
                self._angle = 2.0 * closed - self._angle
                self._velocity = -self._velocity
            self._sign_known = True
        if self._sign_known:
            if self._angle < closed:
                self._angle = closed
                self._velocity = max(self._velocity, 0.0)
            elif self._angle > cfg.stop_angle_rad:
                self._angle = cfg.stop_angle_rad
                self._velocity = min(self._velocity, 0.0)

    def _grow_var(self, dvar: float, dt: float) -> None:
        """Angle variance: white gyro noise plus a fully correlated bias error integrated over dt."""
        sd = math.sqrt(self._var) + math.sqrt(self._bias_var) * dt
        self._var = sd * sd + dvar
