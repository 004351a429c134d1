"""One IMU sample, as produced by the simulation and consumed by the door-angle estimator.

Frames and units: ``gyro`` is the angular velocity of the sensor frame in rad/s, ``accel`` the specific
force (what an accelerometer reads: +9.81 m/s^2 upward at rest) in m/s^2, ``mag`` the magnetic field in
tesla, all expressed in the IMU's own sensor frame. ``stamp_ns`` is the sample time in nanoseconds
(ROS header stamp convention). Covariances follow sensor_msgs/Imu: row-major 3x3, ``None`` = unknown.

:func:`imu_msg_to_sample` reads a deserialised ``sensor_msgs/msg/Imu`` (an rclpy message, or a rosbags one
from a bag) into an :class:`ImuSample`: the one conversion the door-angle node, the bag readers and the raw
bag conversion share.
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


def _covariance(values: object) -> np.ndarray | None:
    """sensor_msgs covariance (9 values, row-major) or None when unknown (-1 first, or all zeros).

    A stream repeats one covariance message after message: the last one's matrix is reused (read-only) while
    the values are the same, so a sample costs one comparison of 72 bytes instead of a conversion."""
    flat = np.asarray(values, dtype=float)
    key = flat.tobytes()
    cached = _COV_CACHE.get(key, _MISSING)
    if cached is not _MISSING:
        return cached  # type: ignore[return-value]
    cov: np.ndarray | None = flat.reshape(3, 3).copy()
    if cov[0, 0] == -1.0 or not cov.any():  # type: ignore[index,union-attr]
        cov = None
    else:
        cov.flags.writeable = False  # type: ignore[union-attr]
    if len(_COV_CACHE) >= 8:
        _COV_CACHE.clear()
    _COV_CACHE[key] = cov
    return cov


_MISSING = object()
_COV_CACHE: dict[bytes, np.ndarray | None] = {}  # the last few covariances seen (gyro, accel): bytes -> matrix


def imu_msg_to_sample(msg: object) -> ImuSample:
    """A deserialised sensor_msgs/msg/Imu (rosbags or rclpy class) as an :class:`ImuSample`.

    The stamp is the message header stamp (sensor time), never the bag's receive time.
    """
    stamp = msg.header.stamp  # type: ignore[attr-defined]
    g = msg.angular_velocity  # type: ignore[attr-defined]
    a = msg.linear_acceleration  # type: ignore[attr-defined]
    return ImuSample(
        stamp_ns=int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec),
        gyro=np.array([g.x, g.y, g.z], dtype=float),
        accel=np.array([a.x, a.y, a.z], dtype=float),
        gyro_cov=_covariance(msg.angular_velocity_covariance),  # type: ignore[attr-defined]
        accel_cov=_covariance(msg.linear_acceleration_covariance),  # type: ignore[attr-defined]
    )
