"""Helpers shared by the NAF maths and update tests: random batches, perturbed agents, relative errors."""
from __future__ import annotations

import numpy as np
import torch

from async_naf.learning.agents import NAFAgent, NAFConfig
from async_naf.learning.replay import Batch

OBS, ACT = 6, 3


def _batch(rng: np.random.Generator, n: int = 32, obs: int = OBS, act: int = ACT, scale: float = 1.0) -> Batch:
    return Batch(
        (scale * rng.standard_normal((n, obs)) + 0.5).astype(np.float32),
        rng.uniform(-1, 1, (n, act)).astype(np.float32),
        rng.standard_normal(n).astype(np.float32),
        (scale * rng.standard_normal((n, obs)) + 0.5).astype(np.float32),
        (rng.random(n) < 0.3).astype(np.float32),
    )


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def _perturbed_agent(cfg: NAFConfig, seed: int = 1) -> NAFAgent:
    """An agent whose head is not near zero (so P, mu, V all vary with x)."""
    agent = NAFAgent(cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        agent.theta[0] += 0.3 * torch.randn(agent.num_params, generator=gen)
        agent.theta[1] = agent.theta[0] + 0.05 * torch.randn(agent.num_params, generator=gen)
    return agent
