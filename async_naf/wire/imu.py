"""One IMU sample, as produced by the simulation and consumed by the door-angle estimator.

Frames and units: ``gyro`` is the angular velocity of the sensor frame in rad/s, ``accel`` the specific
force (what an accelerometer reads: +9.81 m/s^2 upward at rest) in m/s^2, ``mag`` the magnetic field in
tesla, all expressed in the IMU's own sensor frame. ``stamp_ns`` is the sample time in nanoseconds
(ROS header stamp convention). Covariances follow sensor_msgs/Imu: row-major 3x3, ``None`` = unknown.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class ImuSample(NamedTuple):
    """One IMU reading in the sensor frame (see module docstring for units)."""

    stamp_ns: int
    gyro: np.ndarray  # (3,) rad/s
    accel: np.ndarray  # (3,) m/s^2
    gyro_cov: np.ndarray | None = None  # (3, 3) (rad/s)^2
    accel_cov: np.ndarray | None = None  # (3, 3) (m/s^2)^2
    mag: np.ndarray | None = None  # (3,) T

    def is_finite(self) -> bool:
        """True when every present vector holds only finite numbers."""
        parts = [self.gyro, self.accel] + [p for p in (self.mag,) if p is not None]
        return all(np.all(np.isfinite(np.asarray(p, dtype=float))) for p in parts)
