"""The door-leaf IMU and its noise model: statistics match the configured model (fixed seeds)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from async_naf.sim import ArmDoorSim, ImuNoiseConfig, SimConfig
from async_naf.sim.imu_noise import ImuNoiseModel

ONLY_NOTHING = dict(gyro_noise_density=0.0, gyro_bias_std=0.0, gyro_bias_walk=0.0, gyro_warmup_bias=0.0,
                    gyro_scale_error_std=0.0, accel_noise_density=0.0, accel_bias_std=0.0, accel_bias_walk=0.0,
                    accel_scale_error_std=0.0)


def _model(seed: int = 0, **only) -> ImuNoiseModel:
    return ImuNoiseModel(ImuNoiseConfig(**{**ONLY_NOTHING, **only}), np.random.default_rng(seed))


def _run(model: ImuNoiseModel, n: int, gyro=(0.0, 0.0, 0.0), accel=(0.0, 0.0, 9.81)):
    t = np.arange(n) / model.config.rate_hz
    return model.apply(t, np.tile(gyro, (n, 1)), np.tile(accel, (n, 1)))


def test_defaults_are_mpu6050_datasheet_values() -> None:
    c = ImuNoiseConfig()
    assert c.gyro_noise_density == pytest.approx(math.radians(0.005))  # 0.005 deg/s/sqrt(Hz)
    assert c.accel_noise_density == pytest.approx(400e-6 * 9.80665)  # 400 ug/sqrt(Hz)
    assert c.gyro_scale_error_std * 3 == pytest.approx(0.03)  # +-3 % sensitivity tolerance
    assert c.accel_bias_std * 3 == pytest.approx(0.05 * 9.80665)  # +-50 mg zero-g tolerance
    # 100 Hz: per-sample gyro std of about 0.05 deg/s, the datasheet's total RMS noise at 100 Hz bandwidth
    assert math.degrees(c.gyro_white_std) == pytest.approx(0.05, rel=0.01)


def test_white_noise_std_and_whiteness() -> None:
    model = _model(1, gyro_noise_density=1e-3, accel_noise_density=2e-2)
    g, a = _run(model, 40_000)
    g_std, a_std = 1e-3 * math.sqrt(100.0), 2e-2 * math.sqrt(100.0)
    np.testing.assert_allclose(g.std(axis=0), g_std, rtol=0.02)
    np.testing.assert_allclose((a - [0, 0, 9.81]).std(axis=0), a_std, rtol=0.02)
    np.testing.assert_allclose(g.mean(axis=0), 0.0, atol=4 * g_std / math.sqrt(40_000))
    lag1 = np.corrcoef(g[:-1, 0], g[1:, 0])[0, 1]
    assert abs(lag1) < 0.03
    np.testing.assert_allclose(model.gyro_cov, np.eye(3) * g_std**2)
    np.testing.assert_allclose(model.accel_cov, np.eye(3) * a_std**2)


def test_bias_random_walk_grows_as_sqrt_time() -> None:
    walk = 2e-3  # rad/s/sqrt(s)
    n, runs = 1000, 400  # 10 s at 100 Hz
    ends_half, ends = [], []
    for seed in range(runs):
        model = _model(seed, gyro_bias_walk=walk, accel_bias_walk=walk)
        g, a = _run(model, n)
        ends_half.append(g[n // 2 - 1])
        ends.append(g[-1])
        np.testing.assert_allclose(a[-1] - [0, 0, 9.81], model.accel_walk)
    var_half, var = np.var(ends_half, axis=0), np.var(ends, axis=0)
    np.testing.assert_allclose(var, walk**2 * 10.0, rtol=0.2)
    np.testing.assert_allclose(var_half, walk**2 * 5.0, rtol=0.2)
    # a walk, not white noise: neighbouring samples are almost equal
    model = _model(0, gyro_bias_walk=walk)
    g, _ = _run(model, 200)
    assert np.abs(np.diff(g[:, 0])).max() < 6 * walk * math.sqrt(0.01)


def test_constant_bias_and_scale_error() -> None:
    biases, scales = [], []
    for seed in range(1500):
        model = _model(seed, gyro_bias_std=0.01, gyro_scale_error_std=0.02, accel_bias_std=0.2)
        biases.append(model.gyro_bias_const)
        scales.append(model.gyro_scale)
        if seed < 5:  # exact model: scale * truth + constant bias, the same for every sample
            truth = np.array([0.5, -1.0, 2.0])
            g, a = _run(model, 10, gyro=truth)
            np.testing.assert_allclose(g, np.tile(model.gyro_scale * truth + model.gyro_bias_const, (10, 1)))
            np.testing.assert_allclose(a, np.tile([0, 0, 9.81] + model.accel_bias_const, (10, 1)))
    np.testing.assert_allclose(np.std(biases, axis=0), 0.01, rtol=0.08)
    np.testing.assert_allclose(np.std(scales, axis=0), 0.02, rtol=0.08)
    np.testing.assert_allclose(np.mean(scales, axis=0), 1.0, atol=0.003)


def test_warmup_drift_decays() -> None:
    model = _model(0, gyro_warmup_bias=0.02, gyro_warmup_tau_s=5.0)
    t = np.array([0.0, 5.0, 50.0])
    g, _ = model.apply(t, np.zeros((3, 3)), np.zeros((3, 3)))
    np.testing.assert_allclose(np.abs(g[0]), 0.02)
    np.testing.assert_allclose(g[1], g[0] * math.exp(-1.0))
    assert np.all(np.abs(g[2]) < 0.02 * 1e-4)
    np.testing.assert_allclose(model.gyro_bias(5.0), g[1])


def test_disabled_noise_gives_truth_from_the_sim() -> None:
    sim = ArmDoorSim(SimConfig(task="door_pull", imu={"enabled": False}), seed=0)
    samples = [s for _ in range(10) for s in sim.step(np.zeros(7))]
    g = np.array([s.gyro for s in samples])
    a = np.array([s.accel for s in samples])
    np.testing.assert_allclose(g, 0.0, atol=1e-5)  # the closed door settling against its stop: micro-rad/s
    np.testing.assert_allclose(a, np.tile([0.0, 0.0, 9.81], (len(samples), 1)), atol=1e-3)
    assert np.all(samples[0].gyro_cov == 0) and all(s.is_finite() for s in samples)


def test_sim_imu_at_rest_matches_model_and_is_seeded() -> None:
    cfg = SimConfig(task="reach")  # default MPU-6050 noise; the door stays closed
    sim = ArmDoorSim(cfg, seed=5)
    samples = [s for _ in range(400) for s in sim.step(np.zeros(7))]  # 20 s, 2000 samples
    g = np.array([s.gyro for s in samples])
    t = np.array([s.stamp_ns for s in samples]) * 1e-9
    model = sim.imu_noise
    # residual after removing the modelled bias (constant + warm-up; the walk is small over 20 s)
    warm = model.gyro_warmup[None, :] * np.exp(-t[:, None] / cfg.imu.gyro_warmup_tau_s)
    resid = g - model.gyro_bias_const - warm
    np.testing.assert_allclose(resid.std(axis=0), cfg.imu.gyro_white_std, rtol=0.15)
    np.testing.assert_allclose(resid.mean(axis=0), 0.0, atol=5 * cfg.imu.gyro_bias_walk * math.sqrt(20.0))
    np.testing.assert_allclose(samples[0].gyro_cov, np.eye(3) * cfg.imu.gyro_white_std**2)
    # same seed: identical samples; other seed: different
    again = ArmDoorSim(cfg, seed=5)
    np.testing.assert_array_equal(again.step(np.zeros(7))[0].gyro, samples[0].gyro)
    other = ArmDoorSim(cfg, seed=6)
    assert not np.allclose(other.step(np.zeros(7))[0].gyro, samples[0].gyro)


def test_config_validation() -> None:
    for bad in ({"rate_hz": 0.0}, {"gyro_noise_density": -1.0}, {"gyro_scale_error_std": 0.5},
                {"gyro_warmup_tau_s": 0.0}, {"accel_bias_std": float("nan")}):
        with pytest.raises(ValueError):
            ImuNoiseConfig(**bad)
