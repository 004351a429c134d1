"""IMU error model: white noise, constant + random-walk bias, warm-up drift and scale-factor error.

Per axis, in the IMU frame, for a sample at sensor time ``t`` (seconds since power-on):

    gyro_meas  = (1 + s_g) * gyro_true  + b_g + w_g(t) + a_g * exp(-t / tau) + n_g
    accel_meas = (1 + s_a) * accel_true + b_a + w_a(t)                       + n_a

with ``s`` ~ N(0, scale_error_std^2) and ``b`` ~ N(0, bias_std^2) drawn once at power-on, ``a_g`` =
+-warmup_bias (random sign per axis), ``w`` a random walk with increments N(0, walk^2 * dt) per sample
(so its std grows as ``walk * sqrt(t)``), and ``n`` white noise with per-sample std ``density * sqrt(rate)``.
All parameters are in :class:`async_naf.sim.config.ImuNoiseConfig`; ``enabled=False`` returns the truth.
"""
from __future__ import annotations

import math

import numpy as np

from async_naf.sim.config import ImuNoiseConfig


class ImuNoiseModel:
    """Stateful error model of one 3-axis gyro + 3-axis accelerometer.

    Args:
        config: noise parameters.
        rng: random generator (the model owns the draws from it; seeded by the simulation).
    """

    def __init__(self, config: ImuNoiseConfig, rng: np.random.Generator) -> None:
        self.config = config
        self.rng = rng
        self.dt = 1.0 / config.rate_hz
        self.power_on()

    def power_on(self) -> None:
        """Draw the per-part errors (constant biases, scale errors, warm-up sign) and restart the walks."""
        c, rng = self.config, self.rng
        self.gyro_scale = 1.0 + rng.normal(0.0, c.gyro_scale_error_std, 3)
        self.accel_scale = 1.0 + rng.normal(0.0, c.accel_scale_error_std, 3)
        self.gyro_bias_const = rng.normal(0.0, c.gyro_bias_std, 3)
        self.accel_bias_const = rng.normal(0.0, c.accel_bias_std, 3)
        self.gyro_warmup = c.gyro_warmup_bias * rng.choice((-1.0, 1.0), 3)
        self.gyro_walk = np.zeros(3)
        self.accel_walk = np.zeros(3)
        g_std, a_std = c.gyro_white_std, c.accel_white_std
        self.gyro_cov = np.diag(np.full(3, g_std * g_std))
        self.accel_cov = np.diag(np.full(3, a_std * a_std))

    def gyro_bias(self, t: float) -> np.ndarray:
        """Current total gyro bias (constant + walk + warm-up) at sensor time ``t`` s, rad/s."""
        return self.gyro_bias_const + self.gyro_walk + self.gyro_warmup * math.exp(-t / self.config.gyro_warmup_tau_s)

    def apply(self, t: np.ndarray, gyro: np.ndarray, accel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Corrupt a block of ``n`` consecutive samples.

        Args:
            t: (n,) sensor times since power-on, s.
            gyro: (n, 3) true angular velocity, rad/s.
            accel: (n, 3) true specific force, m/s^2.

        Returns:
            (gyro_meas, accel_meas), each (n, 3).
        """
        c = self.config
        if not c.enabled:
            return gyro.copy(), accel.copy()
        n = gyro.shape[0]
        rng = self.rng
        sq = math.sqrt(self.dt)
        draws = rng.standard_normal((4, n, 3))
        g_walk = self.gyro_walk + np.cumsum(draws[0] * (c.gyro_bias_walk * sq), axis=0)
        a_walk = self.accel_walk + np.cumsum(draws[1] * (c.accel_bias_walk * sq), axis=0)
        self.gyro_walk = g_walk[-1].copy()
        self.accel_walk = a_walk[-1].copy()
        warm = self.gyro_warmup[None, :] * np.exp(-np.asarray(t)[:, None] / c.gyro_warmup_tau_s)
        g = gyro * self.gyro_scale + self.gyro_bias_const + g_walk + warm + draws[2] * c.gyro_white_std
        a = accel * self.accel_scale + self.accel_bias_const + a_walk + draws[3] * c.accel_white_std
        return g, a
