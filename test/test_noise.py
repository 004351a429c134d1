"""Exploration noise: statistics of OU and Gaussian processes, annealing, reset, config validation."""
from __future__ import annotations

import math

import numpy as np
import pytest

from async_naf.common.noise import GaussianNoise, NoiseConfig, OrnsteinUhlenbeckNoise, make_noise


def _samples(noise, n: int) -> np.ndarray:
    return np.stack([noise.sample() for _ in range(n)])


def test_gaussian_has_the_configured_std_and_no_memory() -> None:
    noise = make_noise(NoiseConfig(kind="gaussian", scale=0.3), act_dim=4, seed=0)
    assert isinstance(noise, GaussianNoise)
    x = _samples(noise, 20_000)
    assert x.shape == (20_000, 4) and x.dtype == np.float32
    assert np.allclose(x.std(0), 0.3, rtol=0.03)
    assert np.allclose(x.mean(0), 0.0, atol=0.01)
    lag1 = np.mean([np.corrcoef(x[:-1, i], x[1:, i])[0, 1] for i in range(4)])
    assert abs(lag1) < 0.03


def test_ou_is_stationary_with_configured_std_and_correlation() -> None:
    cfg = NoiseConfig(kind="ou", scale=0.5, theta=0.15, dt=1.0)
    noise = make_noise(cfg, act_dim=3, seed=1)
    assert isinstance(noise, OrnsteinUhlenbeckNoise)
    noise.state = noise.rng.standard_normal(3)  # start in the stationary distribution
    x = _samples(noise, 60_000)
    assert np.allclose(x.std(0), 0.5, rtol=0.08)
    expected_lag1 = math.exp(-cfg.theta * cfg.dt)  # 0.86
    lag1 = np.mean([np.corrcoef(x[:-1, i], x[1:, i])[0, 1] for i in range(3)])
    assert lag1 == pytest.approx(expected_lag1, abs=0.02)


def test_ou_reset_restarts_from_zero() -> None:
    noise = make_noise(NoiseConfig(kind="ou", scale=1.0, theta=0.01), act_dim=2, seed=2)
    for _ in range(50):
        noise.sample()
    assert np.any(noise.state != 0)
    noise.reset()
    assert np.all(noise.state == 0)
    # first sample after reset is small: sqrt(1 - exp(-2 theta dt)) ~ 0.14 per unit normal
    first = np.stack([(noise.reset(), noise.sample())[1] for _ in range(2000)])
    assert first.std() == pytest.approx(math.sqrt(1 - math.exp(-0.02)), rel=0.05)
    assert noise.step_count == 2050


def test_scale_anneals_linearly_then_stays() -> None:
    cfg = NoiseConfig(kind="gaussian", scale=1.0, scale_final=0.2, anneal_steps=100)
    noise = make_noise(cfg, act_dim=1, seed=3)
    assert noise.current_scale == pytest.approx(1.0)
    for _ in range(50):
        noise.sample()
    assert noise.current_scale == pytest.approx(0.6)
    for _ in range(50):
        noise.sample()
    assert noise.current_scale == pytest.approx(0.2)
    for _ in range(1000):
        noise.sample()
    assert noise.current_scale == pytest.approx(0.2)
    x = _samples(noise, 20_000)
    assert x.std() == pytest.approx(0.2, rel=0.05)
    assert noise.step_count == 21_100


def test_none_and_seeding() -> None:
    assert np.all(_samples(make_noise(NoiseConfig(kind="none"), 3), 10) == 0)
    a = _samples(make_noise(NoiseConfig(kind="ou"), 3, seed=5), 10)
    b = _samples(make_noise(NoiseConfig(kind="ou"), 3, seed=5), 10)
    c = _samples(make_noise(NoiseConfig(kind="ou"), 3, seed=6), 10)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_state_round_trip() -> None:
    n1 = make_noise(NoiseConfig(kind="ou"), 3, seed=5)
    _samples(n1, 7)
    n2 = make_noise(NoiseConfig(kind="ou"), 3, seed=0)
    n2.set_state(n1.get_state())
    assert np.array_equal(_samples(n1, 5), _samples(n2, 5))
    with pytest.raises(ValueError):
        n2.set_state({"step_count": 1, "rng": n1.get_state()["rng"], "x": [0.0]})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "pink"},
        {"scale": -0.1},
        {"scale_final": float("nan")},
        {"anneal_steps": -1},
        {"anneal_steps": 1.5},
        {"theta": 0.0},
        {"dt": -1.0},
    ],
)
def test_bad_config_raises(kwargs) -> None:
    with pytest.raises(ValueError):
        NoiseConfig(**kwargs)


def test_bad_act_dim_raises() -> None:
    with pytest.raises(ValueError):
        make_noise(NoiseConfig(), 0)
