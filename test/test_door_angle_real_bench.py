"""The real-data benchmark's own rules (``async_naf.bench.door_angle_real``), on data made in the test.

- the truth is aligned to the IMU once per trial: the IMU's lag behind the optical truth is measured from the
  raw rates, and only outside the scored stretches;
- the convention floor: what deciding the opening direction costs a causal estimator that knew the heading.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from async_naf.bench.door_angle_real import _shifted_heading, imu_lag, opening_view
from async_naf.sensing.door_angle.broad import BroadTrial

RATE_HZ = 285.714
DEG = math.pi / 180.0


def _trial(lag_s: float, other_lag_s: float, other: tuple[int, int], seed: int = 3) -> tuple[BroadTrial, np.ndarray]:
    """A sensor turned about the vertical (a sum of swings, up to ~400 deg/s); its gyro samples are the
    rate ``lag_s`` earlier than their optical samples, except inside ``other`` (``other_lag_s``).
    Returns the trial and the heading (rad) at each optical sample."""
    rng = np.random.default_rng(seed)
    n = int(60.0 * RATE_HZ)
    t = np.arange(n) / RATE_HZ
    freqs, amps, phases = rng.uniform(0.2, 2.0, 6), rng.uniform(0.1, 0.5, 6), rng.uniform(0, math.tau, 6)

    def theta(x: np.ndarray) -> np.ndarray:
        return np.sum(amps[:, None] * np.sin(math.tau * freqs[:, None] * x[None, :] + phases[:, None]), axis=0)

    def rate(x: np.ndarray) -> np.ndarray:
        return np.sum(amps[:, None] * math.tau * freqs[:, None]
                      * np.cos(math.tau * freqs[:, None] * x[None, :] + phases[:, None]), axis=0)

    lag = np.full(n, lag_s)
    lag[other[0]:other[1]] = other_lag_s
    gyro = np.zeros((n, 3))
    gyro[:, 2] = rate(t - lag) + rng.normal(0.0, 0.003, n)
    gyro[:, :2] = rng.normal(0.0, 0.003, (n, 2))
    h = theta(t)
    quat = np.stack([np.cos(h / 2), np.zeros(n), np.zeros(n), np.sin(h / 2)], axis=1)
    quat[5000:5020] = np.nan  # lost markers
    accel = np.tile([0.0, 0.0, 9.81], (n, 1))
    return BroadTrial("synthetic", RATE_HZ, gyro, accel, quat, np.ones(n, bool)), h


def test_the_imu_lag_is_measured_outside_the_scored_stretches() -> None:
    """4.2 ms lag everywhere except in a 'scored' stretch that lags by -6 ms: measured 4.2 ms when the stretch
    is left out (and something else when it is not: the rule does what it says)."""
    scored = (int(20 * RATE_HZ), int(45 * RATE_HZ))
    trial, _ = _trial(0.0042, -0.006, scored)
    assert imu_lag(trial, [scored]) == pytest.approx(0.0042, abs=2e-4)
    assert abs(imu_lag(trial) - 0.0042) > 1e-3


def test_the_aligned_truth_is_the_heading_lag_earlier() -> None:
    """The truth at sample k is the optical heading ``lag`` earlier (interpolated), NaN next to lost markers."""
    trial, h = _trial(0.0, 0.0, (0, 0))
    i0, i1, lag = 1000, 9000, 0.0042
    shift = lag * RATE_HZ  # samples
    shifted = _shifted_heading(trial, i0, i1, 0, lag)
    ok = np.isfinite(shifted)
    assert ok.sum() > 0.99 * (i1 - i0) and not ok[5000 - i0 + 5]
    expect = np.interp(np.arange(i0, i1) - shift, np.arange(len(h)), h)  # h stays within +-pi here
    assert np.max(np.abs(h)) < math.pi
    assert np.max(np.abs(shifted[ok] - expect[ok])) < 0.05 * DEG
    unshifted = _shifted_heading(trial, i0, i1, 0, 0.0)
    both = ok & np.isfinite(unshifted)
    assert np.max(np.abs(unshifted - h[i0:i1])[both]) < 1e-9
    assert np.max(np.abs(unshifted - shifted)[both]) > 0.5 * DEG  # the shift matters at these rates


def test_the_convention_floor_of_a_wrong_way_start() -> None:
    """Turned 10 deg the wrong way, then 60 deg open: a causal door-angle estimator that knew the heading
    exactly shows 10 deg (its magnitude) during the wrong-way turn, then the opening."""
    dh = np.concatenate([np.linspace(0, -10, 50), np.linspace(-10, 60, 100), np.linspace(60, -40, 100)]) * DEG
    view, side = opening_view(dh)
    decided = int(np.argmax(np.abs(dh) > 15.0 * DEG))
    assert side == 1 and decided > 50
    assert np.allclose(view[:decided], np.abs(dh[:decided]))  # magnitude: the side is not known yet
    assert np.allclose(view[decided:], dh[decided:])  # decided (confirmed at 30 deg): -40 past closed reads -40
    dh2 = np.concatenate([np.linspace(0, -20, 50), np.linspace(-20, 25, 50), np.linspace(25, -50, 50)]) * DEG
    view2, side2 = opening_view(dh2)
    assert side2 == -1  # decided + at 15 deg (the -20 was decided - first, then revised) ...
    assert np.allclose(view2[-10:], -dh2[-10:])  # ... and revised again by -50 before confirming
