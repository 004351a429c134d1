"""Exploration noise for continuous actions: Ornstein-Uhlenbeck and Gaussian, with an annealed scale.

Units: every sample is in *action units* (the units of the agent's action, e.g. rad/s for joint-velocity
commands). ``scale`` is the standard deviation of the returned noise: both processes are normalised so that
their stationary standard deviation is 1 before the scale is applied. The scale is annealed linearly from
``scale`` to ``scale_final`` over ``anneal_steps`` calls to :meth:`sample` (``anneal_steps = 0``: constant).

Example::

    from async_naf.common.noise import NoiseConfig, make_noise
    noise = make_noise(NoiseConfig(kind="ou", scale=0.3, scale_final=0.05, anneal_steps=100_000), act_dim=7, seed=0)
    action = np.clip(policy.act(obs) + noise.sample(), low, high)
    noise.reset()  # at the start of each episode (OU keeps a state)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from async_naf.common.checks import integers, numbers

NOISE_KINDS = ("ou", "gaussian", "none")


@dataclass
class NoiseConfig:
    """Exploration-noise settings.

    Attributes:
        kind: ``'ou'`` (Ornstein-Uhlenbeck, temporally correlated), ``'gaussian'`` (independent per step)
            or ``'none'``.
        scale: initial standard deviation of the noise, in action units.
        scale_final: standard deviation after ``anneal_steps`` samples, in action units.
        anneal_steps: number of :meth:`sample` calls over which the scale goes linearly from ``scale`` to
            ``scale_final``; 0 keeps ``scale`` constant.
        theta: OU mean-reversion rate, 1/s (time constant 1/theta s).
        dt: time between two samples, s (the control period); only the product ``theta * dt`` matters.
    """

    kind: str = "ou"
    scale: float = 0.3
    scale_final: float = 0.3
    anneal_steps: int = 0
    theta: float = 0.15
    dt: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in NOISE_KINDS:
            raise ValueError(f"NoiseConfig.kind must be one of {NOISE_KINDS}, got {self.kind!r}")
        numbers(self, ("scale", "scale_final"), 0.0, prefix="NoiseConfig.")
        integers(self, ("anneal_steps",), 0, prefix="NoiseConfig.")
        numbers(self, ("theta", "dt"), 0.0, low_open=True, prefix="NoiseConfig.")


class _AnnealedNoise:
    """Common part: the annealed scale and the step counter."""

    def __init__(self, config: NoiseConfig, act_dim: int, seed: int = 0) -> None:
        if int(act_dim) != act_dim or act_dim < 1:
            raise ValueError(f"act_dim must be a positive integer, got {act_dim!r}")
        self.config = config
        self.act_dim = int(act_dim)
        self.rng = np.random.default_rng(seed)
        self.step_count = 0

    @property
    def current_scale(self) -> float:
        """Standard deviation (action units) that the next :meth:`sample` will use."""
        cfg = self.config
        if cfg.anneal_steps == 0:
            return cfg.scale
        frac = min(self.step_count / cfg.anneal_steps, 1.0)
        return cfg.scale + frac * (cfg.scale_final - cfg.scale)

    def sample(self) -> np.ndarray:
        """One noise vector, shape ``(act_dim,)``, float32, already multiplied by the annealed scale."""
        scale = self.current_scale
        unit = self._unit_sample()
        self.step_count += 1
        return (scale * unit).astype(np.float32)

    def _unit_sample(self) -> np.ndarray:
        raise NotImplementedError

    def get_state(self) -> dict:
        """JSON-able state (step count, random generator, process state) for checkpoints."""
        state = {"step_count": self.step_count, "rng": self.rng.bit_generator.state}
        if hasattr(self, "state"):
            state["x"] = [float(v) for v in self.state]
        return state

    def set_state(self, state: dict) -> None:
        """Restore :meth:`get_state` output (ValueError if it does not fit this process)."""
        try:
            self.step_count = int(state["step_count"])
            self.rng.bit_generator.state = state["rng"]
            if hasattr(self, "state") and "x" in state:
                x = np.asarray(state["x"], np.float64)
                if x.shape != (self.act_dim,) or not np.all(np.isfinite(x)):
                    raise ValueError(f"noise state has shape {x.shape}, expected ({self.act_dim},)")
                self.state = x
        except (KeyError, TypeError) as exc:
            raise ValueError(f"bad noise state: {exc!r}") from exc

    def reset(self) -> None:
        """Start a new episode (clears any temporal state; the annealing step count is kept)."""


class GaussianNoise(_AnnealedNoise):
    """Independent zero-mean Gaussian noise, standard deviation = the annealed scale."""

    def _unit_sample(self) -> np.ndarray:
        return self.rng.standard_normal(self.act_dim)


class OrnsteinUhlenbeckNoise(_AnnealedNoise):
    """Ornstein-Uhlenbeck noise, discretised exactly and normalised to unit stationary variance.

    ``x[k+1] = a x[k] + sqrt(1 - a^2) n[k]`` with ``a = exp(-theta dt)`` and ``n ~ N(0, I)``; the state
    starts at 0 after :meth:`reset`. The returned sample is ``scale * x``.
    """

    def __init__(self, config: NoiseConfig, act_dim: int, seed: int = 0) -> None:
        super().__init__(config, act_dim, seed)
        self._a = math.exp(-config.theta * config.dt)
        self._b = math.sqrt(1.0 - self._a * self._a)
        self.state = np.zeros(self.act_dim)

    def _unit_sample(self) -> np.ndarray:
        self.state = self._a * self.state + self._b * self.rng.standard_normal(self.act_dim)
        return self.state

    def reset(self) -> None:
        self.state = np.zeros(self.act_dim)


class NoNoise(_AnnealedNoise):
    """No exploration noise (zeros); keeps the same interface."""

    def _unit_sample(self) -> np.ndarray:
        return np.zeros(self.act_dim)


def make_noise(config: NoiseConfig, act_dim: int, seed: int = 0) -> _AnnealedNoise:
    """Build the noise process named by ``config.kind`` for ``act_dim`` actions, seeded with ``seed``."""
    if config.kind == "ou":
        return OrnsteinUhlenbeckNoise(config, act_dim, seed)
    if config.kind == "gaussian":
        return GaussianNoise(config, act_dim, seed)
    return NoNoise(config, act_dim, seed)
