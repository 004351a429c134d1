"""IMU door-angle estimator: hinge angle from a gyro + accelerometer on the door leaf (ROS-free).

Why it is needed: the hinge is (nearly) vertical, so gravity is parallel to the rotation axis and the
accelerometer cannot see the angle; only the gyroscope can, and a MEMS gyro's bias drifts (warm-up, slow
random walk) by tenths of a degree per second, which integrates to tens of degrees in minutes.

Algorithm (per sample, O(1)):

1. Validate: non-finite samples, readings beyond any IMU's range (``GYRO_RANGE_MAX``, ``ACCEL_RANGE_MAX``)
   and duplicate or out-of-order stamps are dropped and counted; steps
   longer than ``max_gap_s`` are counted as gaps (rest windows restart, variance inflated).
2. Orientation: VQF (Laidig & Seel 2023, the ``vqf`` package, 6D, its own bias estimation off: the bias is
   ours, step 7) integrates the bias-corrected rates (trapezoid: the mean of two samples, scaled to the
   sample's own time step, so irregular stamps are fine) and keeps the vertical with the accelerometer
   (a long ``tilt_tau_s``: on a swinging leaf the accelerometer also measures centripetal acceleration).
3. Angle increment: the change of heading of a sensor-fixed direction across the hinge (the sensor's x
   axis, else y, else z: the first at least 45 deg from the hinge axis, made perpendicular to it) about the
   hinge's direction in the earth frame. Both are re-anchored at every confirmed rest, from the current
   hinge-axis estimate, and held through motion. For a rigid door this is the hinge rotation exactly, for
   any mounting and hinge tilt. When the door or the sensor's mounting wobbles it remains a function of the
   orientation, so it does not drift with the wobble the way integrating the rate about an axis fixed in
   the sensor (or about the tracked gravity direction) does (coning).
4. Hinge axis (reported; the anchor of step 3): configured, or identified from gravity at rest and then
   the principal axis of the bias-corrected rates during swings.
5. Opening direction: given by a configured axis or ``opening_direction``, or decided by the first
   excursion from closed beyond ``sign_threshold_rad`` (until then the angle reported is the excursion's
   magnitude: a closed door can only open, and smaller excursions may be latch play or a push into the
   frame); confirmed once the door has opened ``sign_confirm_rad``; before that, a rotation the other way
   past closed farther than the largest opening so far revises the decision, and the angle is recovered
   (nothing was clipped).
6. Rest detection (see :mod:`.rest`): short-window gyro magnitude and variance, accelerometer variance,
   and the long-window mean rate relative to the bias estimate, so a slow steady swing is not rest. The
   limits widen with the bias uncertainty and with the time since the bias was last re-estimated.
7. At rest: zero-velocity update (the angle holds), the gyro bias is re-estimated (scalar-variance Kalman
   filter per axis, random-walk model) from samples older than ``rest_guard_s``; near the closed angle the
   estimate snaps to closed and its variance drops to ``closed_variance``.
8. In motion: the increments add up; the variance grows with the gyro noise (from the message covariance
   when given) and the bias uncertainty. Readings beyond the door stop, or more than ``closed_snap_rad``
   past closed, are reported as they are and counted (:attr:`DoorAngleEstimator.beyond_stop`,
   :attr:`~DoorAngleEstimator.past_closed`), never clipped; within ``closed_snap_rad`` past closed the
   estimate reads closed (a door stops at its frame), until the door has been seen farther past closed
   with its opening direction confirmed: then nothing stops it there (a double-acting door, or no door),
   and from then on it reads what it is (:attr:`~DoorAngleEstimator.frameless`). ``imu_delay_s``
   extrapolates the reported angle over a known sensor latency.

Frames/units: sensor frame, rad, rad/s, m/s^2, stamps in ns. Angle positive opening, 0 (``closed_angle_rad``)
closed.
"""
from __future__ import annotations

import dataclasses
import math
from collections import deque
from typing import Any, NamedTuple

import numpy as np
from vqf import VQF

from async_naf.common.stamps import StampGuard
from async_naf.sensing.door_angle.axis import SwingAxis
from async_naf.sensing.door_angle.config import DoorAngleConfig
from async_naf.sensing.door_angle.rest import RestWindows
from async_naf.wire.imu import ImuSample

DROP_REASONS = ("non_finite", "duplicate", "out_of_order", "invalid", "out_of_range")
# readings no IMU makes (a MEMS gyro's range ends at tens of rad/s, an accelerometer's at hundreds of g): a
# corrupt sample, dropped ("out_of_range"). Integrated, one gyro sample of 1e10 rad/s put a 60 s recording's
# angle 57 deg off; squared in the rest detector's running sums, 1e155 and more raise OverflowError.
GYRO_RANGE_MAX = 1.0e3  # rad/s, magnitude
# reported noise variances above these are no IMU's (std 1 rad/s, 10 m/s^2): the configured noise is used instead
GYRO_VAR_MAX = 1.0  # (rad/s)^2, per axis
ACCEL_VAR_MAX = 100.0  # (m/s^2)^2, per axis
ACCEL_RANGE_MAX = 1.0e4  # m/s^2, magnitude
_GYRO_MAX2, _ACCEL_MAX2 = GYRO_RANGE_MAX**2, ACCEL_RANGE_MAX**2
_RIGID_RAD = math.radians(2.0)  # see DoorAngleEstimator._reanchor


TS_STEPS = 20  # steps whose median sets VQF's effective step (_retune_tilt)

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


def _rotate(q: list[float], v: tuple[float, float, float] | list[float]) -> tuple[float, float, float]:
    """The sensor vector ``v`` in the earth frame, for the unit quaternion ``q`` (w, x, y, z; sensor -> earth)."""
    w, x, y, z = q
    return (
        (1.0 - 2.0 * (y * y + z * z)) * v[0] + 2.0 * (x * y - w * z) * v[1] + 2.0 * (x * z + w * y) * v[2],
        2.0 * (x * y + w * z) * v[0] + (1.0 - 2.0 * (x * x + z * z)) * v[1] + 2.0 * (y * z - w * x) * v[2],
        2.0 * (x * z - w * y) * v[0] + 2.0 * (y * z + w * x) * v[1] + (1.0 - 2.0 * (x * x + y * y)) * v[2],
    )


def _across(axis: tuple[float, float, float] | list[float]) -> tuple[float, float, float]:
    """The first of the unit vectors x, y, z at least 45 deg from ``axis`` (unit), made perpendicular to it."""
    e = next((e for e, c in zip(((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)), axis[:2]) if abs(c) < math.sqrt(0.5)),
             (0.0, 0.0, 1.0))
    d = e[0] * axis[0] + e[1] * axis[1] + e[2] * axis[2]
    r = (e[0] - d * axis[0], e[1] - d * axis[1], e[2] - d * axis[2])
    n = math.sqrt(r[0] * r[0] + r[1] * r[1] + r[2] * r[2])
    return (r[0] / n, r[1] / n, r[2] / n)


class DoorAngleEstimator:
    """Door hinge angle from door-leaf IMU samples; see the module docstring for the algorithm.

    Construction is cheap (no allocation beyond a few small arrays). The door is assumed closed at
    construction and after :meth:`reset`; :meth:`zero` declares "closed now" without forgetting the
    learnt sensor calibration (bias, axis, opening sign, orientation).

    Counters (since construction): ``dropped`` (by reason), ``gaps``, ``snaps`` (to closed), ``samples``,
    ``beyond_stop`` (excursions beyond ``stop_angle_rad``), ``past_closed`` (excursions more than
    ``closed_snap_rad`` past closed once the opening direction is known), ``sign_revisions``;
    ``max_angle`` / ``min_angle``: the largest / smallest angle reported (rad).
    """

    def __init__(self, config: DoorAngleConfig | None = None) -> None:
        self.config = config if config is not None else DoorAngleConfig()
        self.dropped: dict[str, int] = {reason: 0 for reason in DROP_REASONS}
        self.gaps = 0  # time steps longer than max_gap_s
        self.snaps = 0  # snaps to the closed reference
        self.samples = 0  # accepted samples
        self.covariances_ignored = 0  # samples whose reported noise variance no IMU has (configured noise used)
        self.beyond_stop = 0  # excursions beyond the door stop
        self.past_closed = 0  # excursions past closed (by more than closed_snap_rad), opening direction known
        self.sign_revisions = 0  # opening-direction decisions revised
        self.max_angle = self.config.closed_angle_rad  # largest angle reported (rad)
        self.min_angle = self.config.closed_angle_rad  # smallest angle reported (rad)
        self._swing = SwingAxis(self.config.axis_rate_min, self.config.axis_min_energy)
        self._windows = RestWindows(self.config.rest_window_s, self.config.rest_mean_window_s)
        self._pending: deque[tuple[Any, ...]] = deque()  # (t, gyro, accel, dtheta, dvar, gvar, q)
        self._calibrated = False
        self._cov_cache: list[tuple[object, float] | None] = [None, None]
        self.reset(keep_calibration=False)

    # ------------------------------------------------------------------------------------------ control
    def reset(self, *, keep_calibration: bool = True, angle: float | None = None) -> None:
        """Start a new estimate: the door is at ``angle`` (default: closed) now.

        Args:
            keep_calibration: keep the learnt gyro bias, hinge axis, opening direction and orientation
                (they belong to the sensor and its mounting, not to the episode); ``False`` forgets them.
            angle: hinge angle (rad) at the reset; ``None`` = ``closed_angle_rad``.
        Stamps restart: the next sample is accepted whatever its stamp.
        """
        cfg = self.config
        if not keep_calibration or not self._calibrated:
            self._bias = list(cfg.initial_bias) if cfg.initial_bias is not None else [0.0, 0.0, 0.0]
            self._bias_var = cfg.initial_bias_std**2
            self._bias_var_fix = self._bias_var  # variance right after the last re-estimate
            self._t_bias: float | None = None
            # hinge axis, kept pointing up (along the specific force at rest); the opening sign is separate
            self._axis: list[float] | None = None
            self._axis_source = "none"
            # +1: opening is counter-clockwise about up, -1: clockwise, 0: not decided
            self._sign = cfg.opening_direction
            self._sign_confirmed = bool(cfg.opening_direction)
            # no frame at closed: configured, or seen far past closed with the direction confirmed
            self._frameless = not cfg.frame_at_closed
            self._theta_lo = self._theta_hi = 0.0  # extremes of _theta since (for hindsight_config), rad
            self._swing.reset()
            self._grav_sum = [0.0, 0.0, 0.0]
            self._grav_n = 0
            self._gravity: list[float] = [0.0, 0.0, 1.0]  # up in the sensor frame: specific force at rest
            self._vqf: VQF | None = None
            self._gbuf, self._abuf = np.zeros(3), np.zeros(3)  # VQF input (reused: no allocation per sample)
            self._ts = 0.0  # VQF's nominal sampling time (s)
            self._first_dts: list[float] = []  # the first TS_STEPS steps (s): the stream's typical step
            self._ref: tuple[float, float, float] | None = None  # sensor direction whose heading is tracked
            self._basis = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0))  # earth-frame axes across the hinge (heading 0, 90 deg)
            self._psi = 0.0  # heading of the tracked direction at the latest orientation (rad)
            self._anchor_q: list[float] | None = None  # the orientation at the last anchor (see _reanchor)
            self._anchor_h: list[float] | None = None  # the axis estimate it was made with
            self._since_anchor = 0.0  # angle integrated since then (rad, counter-clockwise)
            self._q: list[float] | None = None  # the last orientation (VQF 6D quaternion w, x, y, z, sensor -> earth)
            self._calibrated = True
        # rotation about up since closed (rad, counter-clockwise): the angle is closed + sign * theta
        theta = 0.0 if angle is None else float(angle) - cfg.closed_angle_rad
        self._theta = theta * (self._sign or 1)
        self._theta_lo, self._theta_hi = min(self._theta_lo, self._theta), max(self._theta_hi, self._theta)
        self._max_open = max(0.0, theta)  # largest opening since the decision (rad)
        self._beyond = False
        self._past = False
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
        self._state = DoorAngleState(0, self._output(), 0.0, self._var)

    def zero(self) -> None:
        """Declare "the door is closed now": angle to ``closed_angle_rad``, variance to ``closed_variance``."""
        self._theta = 0.0
        self._max_open = 0.0
        self._var = self.config.closed_variance
        self._pending.clear()
        self._state = self._state._replace(angle=self._output(), variance=self._var)

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
        """Current hinge axis estimate (unit, sensor frame; + rotation opens once the direction is known,
        else pointing up), None before any sample."""
        if self._axis is None:
            return None
        return np.array(self._axis) * (-1.0 if self._sign < 0 else 1.0)

    @property
    def axis_source(self) -> str:
        """Where the axis comes from: 'none', 'accel' (provisional), 'gravity', 'swing' or 'config'."""
        return self._axis_source

    @property
    def sign_known(self) -> bool:
        """True once the opening direction is known (configured axis or ``opening_direction``, or first swing
        seen)."""
        return self._sign != 0

    @property
    def opening_direction(self) -> int:
        """The opening direction seen from above: +1 counter-clockwise about up, -1 clockwise, 0 not decided
        (configured, or decided by the swings so far; see ``DoorAngleConfig.opening_direction``)."""
        return self._sign

    def hindsight_config(self) -> DoorAngleConfig | None:
        """The configuration for a second pass over a recording this estimator has just run over whole: its
        own, with what the whole recording showed about the door set from the start.

        A live estimator must show an angle before it can know which way the door opens (until then it shows
        the excursion's magnitude, so a push into the frame before the first swing reads as an opening), and
        it reads a door within ``closed_snap_rad`` past closed as closed until it has seen, with the direction
        confirmed, that there is no frame there. An offline pass over a finished recording knows both from the
        rest of it. The second pass gets:

        - ``opening_direction``: the direction this pass ended with (unless one was configured). It is
          taken as known from the first sample, even if this pass had decided it without confirming it;
        - ``frame_at_closed=False``: if this pass found no frame (:attr:`frameless`), or if, with the new
          direction known from the start, the door went farther than ``closed_snap_rad`` past closed anywhere
          in the recording (a push before the first swing): the second pass would find it there, after the
          first degrees of that push were already read as closed.

        ``None`` when neither applies: a second pass would change nothing.
        """
        cfg = self.config
        changes: dict[str, Any] = {}
        if cfg.hinge_axis is None and not cfg.opening_direction and self._sign:
            changes["opening_direction"] = self._sign
        # the direction does not change the path of _theta (rotation about up since closed), only its reading
        new_sign = changes.get("opening_direction", 0)
        past = (self._theta_lo if new_sign > 0 else -self._theta_hi) <= -cfg.closed_snap_rad if new_sign else False
        if cfg.frame_at_closed and (self._frameless or past):
            changes["frame_at_closed"] = False
        return dataclasses.replace(cfg, **changes) if changes else None

    @property
    def sign_confirmed(self) -> bool:
        """True once the opening direction can no longer be revised (configured, or a large opening seen)."""
        return self._sign_confirmed

    @property
    def frameless(self) -> bool:
        """True once the door was seen more than ``closed_snap_rad`` past closed with its opening direction
        confirmed: no frame stops it at closed, so readings just past closed are no longer read as closed.
        Kept by ``reset(keep_calibration=True)`` (a property of the door)."""
        return self._frameless

    @property
    def reference_axis(self) -> np.ndarray | None:
        """The sensor direction whose heading about the vertical is the angle (unit, sensor frame)."""
        return None if self._ref is None else np.array(self._ref)

    # ------------------------------------------------------------------------------------------ update
    def update(self, sample: ImuSample) -> DoorAngleState | None:
        """Process one IMU sample; returns the estimate at its stamp, or None if it was dropped."""
        cfg = self.config
        try:
            stamp = int(sample.stamp_ns)
            gx, gy, gz = np.asarray(sample.gyro, dtype=float).reshape(3).tolist()
            ax, ay, az = np.asarray(sample.accel, dtype=float).reshape(3).tolist()
            mag = sample.mag
            if mag is not None and not math.isfinite(sum(np.asarray(mag, dtype=float).reshape(3).tolist())):
                self.dropped["non_finite"] += 1
                return None
        except (TypeError, ValueError, AttributeError):
            self.dropped["invalid"] += 1
            return None
        gvar = self._cached_var(0, sample.gyro_cov, cfg.gyro_noise_std**2)
        avar = self._cached_var(1, sample.accel_cov, cfg.accel_noise_std**2)
        return self.update_values(stamp, gx, gy, gz, ax, ay, az, gvar, avar)

    def update_values(self, stamp: int, gx: float, gy: float, gz: float, ax: float, ay: float, az: float,
                      gvar: float | None = None, avar: float | None = None) -> DoorAngleState | None:
        """:meth:`update` for one sample given as plain numbers (what a bag converter has after decoding a
        whole topic at once): the same result, without building an :class:`ImuSample`.

        Args:
            stamp: header stamp, ns.  gx, gy, gz: angular velocity, rad/s, sensor frame.
            ax, ay, az: specific force, m/s^2, sensor frame.
            gvar, avar: per-axis noise variance of the gyro ((rad/s)^2) and accelerometer ((m/s^2)^2),
                as :meth:`update` takes it from the message's covariance; None: the configured noise.
        """
        cfg = self.config
        # one test for both (NaN compares False; a square beyond float64 is inf): then which of the two
        if not (gx * gx + gy * gy + gz * gz <= _GYRO_MAX2 and ax * ax + ay * ay + az * az <= _ACCEL_MAX2):
            finite = math.isfinite(gx + gy + gz + ax + ay + az)  # inf - inf is nan: still caught
            self.dropped["out_of_range" if finite else "non_finite"] += 1
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
        if not (gvar is None or gvar <= GYRO_VAR_MAX) or not (avar is None or avar <= ACCEL_VAR_MAX):
            self.covariances_ignored += 1  # an absurd covariance (one kept the variance at 1e295 for good)
            gvar = None if not (gvar is None or gvar <= GYRO_VAR_MAX) else gvar
            avar = None if not (avar is None or avar <= ACCEL_VAR_MAX) else avar
        if gvar is None:
            gvar = cfg.gyro_noise_std**2
        if avar is None:
            avar = cfg.accel_noise_std**2

        if self._axis is None:  # provisional: along the specific force (a hinge is near vertical)
            n = math.sqrt(a[0] ** 2 + a[1] ** 2 + a[2] ** 2)
            self._axis = [a[0] / n, a[1] / n, a[2] / n] if n > 1e-3 else [0.0, 0.0, 1.0]
            self._gravity = self._axis
            self._axis_source = "accel"
            if cfg.hinge_axis is not None:  # configured: the opening direction is known from the start
                h = cfg.hinge_axis
                self._sign = -1 if h[0] * self._axis[0] + h[1] * self._axis[1] + h[2] * self._axis[2] < 0.0 else 1
                self._sign_confirmed = True
                self._axis = [self._sign * h[0], self._sign * h[1], self._sign * h[2]]
                self._axis_source = "config"
        if dt > cfg.max_gap_s:
            self.gaps += 1
            self._windows.clear()
            self._var += (cfg.gap_rate_std * dt) ** 2
        if cfg.estimate_bias and dt > 0.0:
            self._bias_var += cfg.bias_walk_std**2 * dt

        bx, by, bz = self._bias
        w = (gx - bx, gy - by, gz - bz)
        gp = self._g_prev
        self._g_prev = g
        dtheta = self._track(w, w if gp is None else (gp[0] - bx, gp[1] - by, gp[2] - bz), a, dt)
        rate = dtheta / dt if dt > 0.0 else 0.0  # of the measured angle, counter-clockwise (rad/s)
        dvar = gvar * dt * dt

        rest = self._rest_test(t, g, a, w, gvar, avar)
        if rest:
            self._on_rest(t, g, a, dtheta, dvar, gvar)
        else:
            self._on_motion(w, rate, dtheta, dvar, dt)
        self._watch_bounds()
        angle = self._output()
        velocity = self._velocity
        if cfg.imu_delay_s > 0.0:
            angle += velocity * cfg.imu_delay_s
        self._state = DoorAngleState(stamp, angle, velocity, self._var)
        return self._state

    # ------------------------------------------------------------------------------------------ internals
    def _output(self) -> float:
        """The reported angle: closed + the opening (its magnitude while the direction is not decided).

        Within ``closed_snap_rad`` past closed it reads closed (a door stops at its frame; this is where a
        closing swing's drift shows before the snap at rest); farther past closed it reads what it is. Once
        the door was seen farther past closed with its direction confirmed (:attr:`frameless`), there is no
        frame to stop it and it always reads what it is.
        """
        cfg = self.config
        if not self._sign:
            return cfg.closed_angle_rad + abs(self._theta)
        opening = self._sign * self._theta
        if opening < 0.0 and not self._past and not self._frameless:
            return cfg.closed_angle_rad
        return cfg.closed_angle_rad + opening

    def _track(self, w: tuple, w_prev: tuple, a: tuple, dt: float) -> float:
        """Advance the orientation (VQF) by one sample; returns the heading increment (rad, counter-clockwise)."""
        if self._vqf is None:
            if dt <= 0.0:
                return 0.0
            # VQF runs at a fixed sampling time: the first step's; rates are scaled to each actual step
            self._ts = min(max(dt, 1e-4), 0.1)
            self._vqf = VQF(self._ts, tauAcc=self.config.tilt_tau_s, motionBiasEstEnabled=False,
                            restBiasEstEnabled=False)
        if len(self._first_dts) < TS_STEPS:
            self._first_dts.append(dt)
            if len(self._first_dts) == TS_STEPS:
                self._retune_tilt()
        scale = 0.5 * dt / self._ts
        gb, ab = self._gbuf, self._abuf
        gb[0], gb[1], gb[2] = (w[0] + w_prev[0]) * scale, (w[1] + w_prev[1]) * scale, (w[2] + w_prev[2]) * scale
        ab[0], ab[1], ab[2] = a
        self._vqf.update(gb, ab)
        q = self._vqf.getQuat6D().tolist()
        first = self._q is None
        self._q = q
        if first:
            self._reanchor(q)
            return 0.0
        psi_prev, self._psi = self._psi, self._heading(q)
        return math.remainder(self._psi - psi_prev, math.tau)

    def _retune_tilt(self) -> None:
        """VQF's accelerometer filter is tuned for its fixed sampling time (the first step's), and each update
        counts as one such step: with a first step far from the stream's typical one (a driver starting up, a
        lost first message) the tilt time constant would be off by their ratio for the whole run (a first step
        of 100 ms on a 285.7 Hz stream: 0.13 deg RMS on a real recording). Once TS_STEPS steps are seen, the
        time constant is set so that it is ``tilt_tau_s`` at the median step; nothing changes when the first
        step was typical (within 5 %)."""
        assert self._vqf is not None
        typical = min(max(float(np.median(self._first_dts)), 1e-4), 0.1)
        if abs(typical / self._ts - 1.0) > 0.05:
            self._vqf.setTauAcc(self.config.tilt_tau_s * self._ts / typical)

    def _reanchor(self, q: list[float]) -> None:
        """Re-anchor the angle measurement at orientation ``q`` (at rest) to the current hinge axis estimate
        ``h`` (sensor frame): the tracked direction becomes the first sensor axis at least 45 deg from ``h``,
        made perpendicular to it, and its heading is measured about ``h``'s direction in the earth frame at
        ``q``. Done at confirmed rest only, so a swing is measured about one earth-fixed axis: for a rigid
        door that is the hinge, and the angle is exact for any mounting and hinge tilt; when the door or the
        mounting wobbles the angle stays a function of the orientation (no coning drift, unlike integrating
        the rate about an axis fixed in the sensor or about the gravity direction).

        The first swing is measured about the gravity axis (the hinge axis is identified during it). At
        the rest after a swing, if ``h`` points the same way in the earth frame as at the previous anchor
        (within ``_RIGID_RAD``: the motion between was a rotation about it, as a rigid door's), the angle
        integrated since then is re-measured about ``h``; a wobbling sensor's motion is left as measured.
        """
        h = self._axis
        assert h is not None  # anchored only once an axis is known
        k = _rotate(q, h)
        n = math.sqrt(k[0] * k[0] + k[1] * k[1] + k[2] * k[2])
        k = (k[0] / n, k[1] / n, k[2] / n)
        q_a, moved = self._anchor_q, self._since_anchor
        if q_a is not None and moved != 0.0 and h is not self._anchor_h:
            k_a = _rotate(q_a, h)
            norm_a = math.sqrt(k_a[0] ** 2 + k_a[1] ** 2 + k_a[2] ** 2)
            cos_dev = (k[0] * k_a[0] + k[1] * k_a[1] + k[2] * k_a[2]) / norm_a
            if cos_dev >= math.cos(_RIGID_RAD):
                self._set_reference(h, k)
                corr = math.remainder(self._heading(q) - self._heading(q_a) - moved, math.tau)
                if abs(corr) <= _RIGID_RAD:
                    self._theta += corr
        self._set_reference(h, k)
        self._anchor_q, self._anchor_h, self._since_anchor = q, h, 0.0
        if self._q is not None:
            self._psi = self._heading(self._q)  # the next increment is measured from the latest orientation

    def _set_reference(self, h: list[float], k: tuple[float, float, float]) -> None:
        """Tracked sensor direction across ``h`` (sensor frame) and the earth-frame basis across ``k``."""
        self._ref = _across(h)
        u = _across(k)
        self._basis = (u, (k[1] * u[2] - k[2] * u[1], k[2] * u[0] - k[0] * u[2], k[0] * u[1] - k[1] * u[0]))

    def _heading(self, q: list[float]) -> float:
        """Angle (rad) of the tracked sensor direction about the earth-frame hinge axis, for orientation ``q``."""
        assert self._ref is not None and self._basis is not None  # set by _set_reference before any heading
        e = _rotate(q, self._ref)
        u, v = self._basis
        return math.atan2(e[0] * v[0] + e[1] * v[1] + e[2] * v[2], e[0] * u[0] + e[1] * u[1] + e[2] * u[2])

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
        if win.any_exceeded_long or win.long_count() < 10:
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
        self._pending.append((t, g[0], g[1], g[2], a[0], a[1], a[2], dtheta, dvar, gvar, self._q))
        # before the first bias estimate there is no bias for the mean-rate test to keep independent of
        # the window: confirm as soon as the short window has vouched for a sample (a brief first rest counts)
        guard = cfg.rest_guard_s if self._t_bias is not None else min(cfg.rest_guard_s, cfg.rest_window_s)
        while self._pending and self._pending[0][0] <= t - guard:
            self._confirm(self._pending.popleft())
        if t - self._rest_since >= cfg.rest_guard_s and abs(self._theta) < cfg.closed_snap_rad:
            if self._theta != 0.0 or self._var > cfg.closed_variance:
                self.snaps += 1
            self._theta = 0.0
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
        if entry[10] is not None:
            self._reanchor(entry[10])
        s = self._grav_sum
        s[0] += ax
        s[1] += ay
        s[2] += az
        self._grav_n += 1
        n = math.sqrt(s[0] ** 2 + s[1] ** 2 + s[2] ** 2)
        if self._grav_n >= 20 and n > 0.0 and self._grav_n % 20 == 0:
            self._gravity = [s[0] / n, s[1] / n, s[2] / n]  # specific force at rest: up
            if self._axis_source in ("accel", "gravity"):
                self._axis = self._gravity
                self._axis_source = "gravity"

    def _on_motion(self, w: tuple[float, float, float], rate: float, dtheta: float, dvar: float, dt: float) -> None:
        if self._at_rest:  # unconfirmed rest samples were motion after all: integrate them now
            for entry in self._pending:
                self._theta += entry[7]
                self._since_anchor += entry[7]
                self._grow_var(entry[8], dt=0.0)
            self._pending.clear()
            self._at_rest = False
        self._theta += dtheta
        self._since_anchor += dtheta
        self._grow_var(dvar, dt)
        if self._axis_source not in ("config", "none") and self._swing.add(w, dt) and self._swing.due():
            axis, quality = self._swing.solve(np.asarray(self._gravity))
            if quality > 0.9:
                self._axis = [float(axis[0]), float(axis[1]), float(axis[2])]
                self._axis_source = "swing"
        self._decide_sign()
        self._velocity = self._sign * rate if self._sign else (rate if self._theta >= 0.0 else -rate)

    def _decide_sign(self) -> None:
        """Opening direction: decided by the first excursion beyond the threshold, revisable until confirmed."""
        cfg = self.config
        theta = self._theta
        if self._sign == 0:
            if abs(theta) > cfg.sign_threshold_rad:
                self._sign = 1 if theta > 0.0 else -1
                self._max_open = abs(theta)
            return
        opening = self._sign * theta
        if opening > self._max_open:
            self._max_open = opening
        if self._sign_confirmed:
            return
        if self._max_open >= cfg.sign_confirm_rad:
            self._sign_confirmed = True
        elif -opening > max(self._max_open, cfg.sign_threshold_rad):
            # far past closed the other way: the decision was wrong (a push into the frame, latch play)
            self._sign = -self._sign
            self._max_open = -opening
            self.sign_revisions += 1

    def _watch_bounds(self) -> None:
        """Count excursions beyond the door stop and farther than ``closed_snap_rad`` past closed (evidence:
        never clipped), and the extreme readings."""
        cfg = self.config
        theta = self._theta
        if theta < self._theta_lo:
            self._theta_lo = theta
        elif theta > self._theta_hi:
            self._theta_hi = theta
        opening = self._sign * theta if self._sign else abs(theta)
        angle = cfg.closed_angle_rad + opening
        if angle > self.max_angle:  # max() and min(), without the calls (this runs for every sample)
            self.max_angle = angle
        if angle < self.min_angle:
            self.min_angle = angle
        beyond = angle > cfg.stop_angle_rad
        if beyond and not self._beyond:
            self.beyond_stop += 1
        self._beyond = beyond or (self._beyond and angle > cfg.stop_angle_rad - cfg.closed_snap_rad)
        past = opening <= -cfg.closed_snap_rad
        if past and not self._past:
            self.past_closed += 1
            self._frameless = self._frameless or self._sign_confirmed
        self._past = past or (self._past and opening < 0.0)

    def _grow_var(self, dvar: float, dt: float) -> None:
        """Angle variance: white gyro noise plus a fully correlated bias error integrated over dt."""
        sd = math.sqrt(self._var) + math.sqrt(self._bias_var) * dt
        self._var = sd * sd + dvar


def update_guarded(est: DoorAngleEstimator, stamps: StampGuard,
                   sample: ImuSample | tuple) -> tuple[str, DoorAngleState | None]:
    """``est.update(sample)`` (a tuple: ``est.update_values(*sample)``) behind the IMU stream's stamp guard, as
    the door_angle node, ``async-naf door-angle`` and the raw bag conversion feed it: a stamp far from the
    stream's clock is dropped (``StampGuard.DROP``, counted in ``stamps.glitches``), a confirmed jump back
    restarts the estimate, calibration kept (``StampGuard.JUMP``). Returns the guard's verdict (the caller
    logs or counts it) and the estimate (None: dropped by the guard or the estimator)."""
    stamp = sample.stamp_ns if isinstance(sample, ImuSample) else sample[0]
    verdict = stamps.check(stamp)
    if verdict == StampGuard.DROP:
        return verdict, None
    if verdict == StampGuard.JUMP:
        est.reset(keep_calibration=True)
    state = est.update(sample) if isinstance(sample, ImuSample) else est.update_values(*sample)
    if state is not None:
        stamps.accept(stamp)
    return verdict, state
