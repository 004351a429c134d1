"""Configuration of the IMU door-angle estimator (all SI units: rad, rad/s, m/s^2, s)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from async_naf.common.checks import numbers


@dataclass
class DoorAngleConfig:
    """Parameters of :class:`~async_naf.sensing.door_angle.DoorAngleEstimator`.

    Frames: vectors are in the IMU's sensor frame. Angles are the door's hinge angle, positive opening,
    ``closed_angle_rad`` when closed. Thresholds that depend on sensor noise are the floor values; when
    the IMU message carries covariances the detector raises them to match the reported noise.
    The hinge is assumed near vertical (a door): the angle is measured about the vertical.

    Attributes:
        closed_angle_rad: Hinge angle of the closed door (rad); the estimator starts here and snaps to it at
            rest.
        stop_angle_rad: Door stop (rad). Readings beyond it are evidence (a stop farther than configured, a
            sensor that is not on a door), never clipped: they are counted and reported.
        closed_snap_rad: At rest within this distance of ``closed_angle_rad`` (rad) the door is taken as
            closed; readings farther than this past closed are counted (not clipped).
        hinge_axis: Known hinge axis in the sensor frame (unit vector; a right-hand rotation about it opens
            the door): fixes the opening direction from the start. ``None`` (default): the axis is
            identified (gravity at rest, then the dominant rotation axis of swings; reported) and the
            opening direction is that of the first swing (see ``sign_threshold_rad``).
        opening_direction: Which way the door opens, seen from above (about the up direction, opposite to
            gravity, whatever the sensor's mounting): +1 counter-clockwise, -1 clockwise, 0 (default)
            decided by the first swing (see ``sign_threshold_rad``). Set it when the door is known (a door
            hinged on the left that opens towards the viewer turns clockwise seen from above): there is
            then nothing to decide, and a push into the frame reads past closed (within ``closed_snap_rad``
            of closed it reads closed, see ``frame_at_closed``).
            The hinge axis is still identified. Not together with ``hinge_axis``, which fixes the
            direction itself.
        frame_at_closed: The door stops at a frame when it closes (default): within ``closed_snap_rad`` past
            closed the estimate reads closed, until the door has been seen farther past closed with its
            opening direction confirmed (then there is no frame: :attr:`DoorAngleEstimator.frameless`).
            False: no frame from the start (a double-acting or swing door): readings past closed are
            what they are.
        estimate_bias: Re-estimate the gyro bias whenever the door is at rest (disable only to study drift).
        initial_bias: Gyro bias known at start (rad/s, sensor frame); ``None``: zero with
            ``initial_bias_std``.
        initial_bias_std: Standard deviation of the initial bias, per axis (rad/s).
        bias_walk_std: Bias random walk (rad/s/sqrt(s)); sets how fast the bias estimate follows at rest.
        bias_drift_max: Largest plausible bias drift rate (rad/s^2, warm-up); widens the rest test the
            longer the bias has not been re-estimated, so a drifted bias cannot lock the detector out of
            rest.
        gyro_noise_std: Gyro white noise per sample and axis (rad/s) when the message has no covariance.
        accel_noise_std: Accelerometer white noise per sample and axis (m/s^2) when the message has no
            covariance.
        rest_window_s: Short window (s) over which gyro and accelerometer variance must be low.
        rest_mean_window_s: Long window (s) over which the mean rate relative to the bias estimate must be
            ~0; this is what tells a slow, steady swing from rest.
        rest_gyro_max: Every bias-corrected gyro magnitude in the long window below this (rad/s); raised to
            3.5 x the reported noise (norm of 3 axes) when that is larger.
        rest_gyro_var_max: Gyro variance (sum over axes) in the short window below this ((rad/s)^2).
        rest_accel_var_max: Accelerometer variance (sum over axes) in the short window below this
            ((m/s^2)^2).
        rest_mean_rate_max: Mean bias-corrected rate over the long window below this (rad/s).
        use_mean_rate_test: Apply the long-window mean-rate test (disable only to study slow swings taken
            for rest).
        rest_guard_s: Samples join the bias estimate only after this long (s) at rest, so the onset of a
            motion never leaks into the bias and the mean-rate test compares the latest samples with a bias
            estimated without them; at the end of a rest they are integrated instead. Before the first
            bias estimate ``rest_window_s`` is used, so that a brief first rest already calibrates.
        axis_rate_min: Bias-corrected rates above this (rad/s) feed the rotation-axis identification.
        axis_min_energy: Integrated squared rate (rad^2/s) needed before the swing axis replaces the gravity
            axis.
        sign_threshold_rad: Excursion from closed (rad) that decides the opening direction when the axis is
            not configured; smaller ones (latch play, a push into the frame) decide nothing. Until then
            the reported angle is the excursion's magnitude (a closed door can only open).
        sign_confirm_rad: An opening this large (rad) confirms the decision. Before that, a rotation the
            other way past closed by more than the largest opening so far (and ``sign_threshold_rad``)
            revises it: the opening direction flips and the angle is recovered (counted as a revision).
        tilt_tau_s: Time constant (s) of the accelerometer low-pass through which VQF keeps the vertical
            (its ``tauAcc``). Long on purpose: the gyro carries the vertical through swings, and on a door
            leaf the accelerometer also measures centripetal acceleration and its own bias, which turns with
            the leaf. In development runs, VQF's default of 3 s moved single simulated recordings by up to
            +-0.05 deg RMSE (slightly worse on average) and the real (BROAD) stretches by up to 0.25 deg.
        imu_delay_s: How long (s) the IMU's samples lag their header stamps (the sensor's low-pass group
            delay, transport): the reported angle is extrapolated over it with the current rate. 0: none.
        closed_variance: Angle variance after a snap to closed or ``zero()`` (rad^2).
        max_gap_s: A time step longer than this (s) is a gap: counted, rest windows restarted, variance
            inflated.
        gap_rate_std: Assumed rate uncertainty across a gap (rad/s), for the variance inflation.
    """

    # --- geometry ---------------------------------------------------------------------------------------
    closed_angle_rad: float = 0.0
    stop_angle_rad: float = math.radians(110.0)
    closed_snap_rad: float = math.radians(3.0)
    hinge_axis: tuple[float, float, float] | None = None
    opening_direction: int = 0
    frame_at_closed: bool = True

    # --- gyro bias ----------------------------------------------------------------------------------------
    estimate_bias: bool = True
    initial_bias: tuple[float, float, float] | None = None
    initial_bias_std: float = 0.1
    bias_walk_std: float = 1.2e-4
    bias_drift_max: float = 2.0e-4
    gyro_noise_std: float = 1.5e-3
    accel_noise_std: float = 0.04

    # --- rest detection -----------------------------------------------------------------------------------
    rest_window_s: float = 0.25
    rest_mean_window_s: float = 1.0
    rest_gyro_max: float = 0.005
    rest_gyro_var_max: float = 5.0e-6
    rest_accel_var_max: float = 0.01
    rest_mean_rate_max: float = 1.5e-3
    use_mean_rate_test: bool = True
    rest_guard_s: float = 1.0

    # --- axis identification -------------------------------------------------------------------------------
    axis_rate_min: float = 0.05
    axis_min_energy: float = 0.2
    sign_threshold_rad: float = math.radians(15.0)
    sign_confirm_rad: float = math.radians(30.0)

    # --- orientation tracking (VQF) and timing ---------------------------------------------------------------
    tilt_tau_s: float = 100.0
    imu_delay_s: float = 0.0

    # --- variance and timing --------------------------------------------------------------------------------
    closed_variance: float = math.radians(0.2) ** 2
    max_gap_s: float = 0.5
    gap_rate_std: float = 0.5

    def __post_init__(self) -> None:
        numbers(self, [f.name for f in dataclasses.fields(self) if f.type in ("float", float)
                       and f.name not in ("closed_angle_rad", "stop_angle_rad", "imu_delay_s")],
                0.0, low_open=True, prefix="DoorAngleConfig.")
        numbers(self, ("closed_angle_rad", "stop_angle_rad"), prefix="DoorAngleConfig.")
        numbers(self, ("imu_delay_s",), 0.0, 0.1, prefix="DoorAngleConfig.")
        if self.sign_confirm_rad < self.sign_threshold_rad:
            raise ValueError("sign_confirm_rad must be >= sign_threshold_rad")
        if self.stop_angle_rad <= self.closed_angle_rad + self.closed_snap_rad:
            raise ValueError(
                f"stop_angle_rad ({self.stop_angle_rad}) must exceed closed_angle_rad + closed_snap_rad "
                f"({self.closed_angle_rad + self.closed_snap_rad})"
            )
        if self.rest_mean_window_s < self.rest_window_s:
            raise ValueError("rest_mean_window_s must be >= rest_window_s")
        if self.hinge_axis is not None:
            axis = tuple(float(v) for v in self.hinge_axis)
            norm = math.sqrt(sum(v * v for v in axis))
            if len(axis) != 3 or not math.isfinite(norm) or norm < 1e-6:
                raise ValueError(f"hinge_axis must be a non-zero 3-vector, got {self.hinge_axis!r}")
            self.hinge_axis = (axis[0] / norm, axis[1] / norm, axis[2] / norm)
        if not isinstance(self.frame_at_closed, bool):
            raise ValueError(f"frame_at_closed must be a bool, got {self.frame_at_closed!r}")
        if isinstance(self.opening_direction, bool) or self.opening_direction not in (-1, 0, 1):
            raise ValueError(f"opening_direction must be -1, 0 or +1, got {self.opening_direction!r}")
        self.opening_direction = int(self.opening_direction)
        if self.opening_direction and self.hinge_axis is not None:
            raise ValueError("set hinge_axis or opening_direction, not both: a configured hinge axis fixes the "
                             "opening direction itself")
        if self.initial_bias is not None:
            bias = tuple(float(v) for v in self.initial_bias)
            if len(bias) != 3 or not all(math.isfinite(v) for v in bias):
                raise ValueError(f"initial_bias must be a finite 3-vector, got {self.initial_bias!r}")
            self.initial_bias = bias
