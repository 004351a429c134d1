"""Shared pieces of the agents: batches as tensors, flat Adam, gradient clipping, the checkpoint kind.

The agents' configs (hyper-parameters and their validation) live in :mod:`async_naf.learning.config`.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from async_naf.common.checks import bounds_array  # noqa: F401  (re-exported for the agents)
from async_naf.wire.batch import Batch

CHECKPOINT_KIND = "agent_checkpoint"

def batch_tensors(batch: Batch, obs_dim: int, act_dim: int) -> tuple[torch.Tensor, ...]:
    """``batch`` as float32 torch tensors (zero-copy for float32 numpy input); checks shapes only.

    Raises:
        ValueError: wrong shapes (validation of values happens when data enters the replay buffer).
    """
    out = []
    for x in batch:
        if isinstance(x, torch.Tensor):
            t = x if x.dtype == torch.float32 else x.float()
        else:
            t = torch.from_numpy(np.asarray(x, dtype=np.float32))
        out.append(t)
    obs, act, rew, nobs, term = out
    n = obs.shape[0] if obs.ndim == 2 else -1
    if (
        obs.shape != (n, obs_dim)
        or nobs.shape != (n, obs_dim)
        or act.shape != (n, act_dim)
        or rew.shape != (n,)
        or term.shape != (n,)
        or n < 1
    ):
        raise ValueError(
            f"batch shapes {[tuple(t.shape) for t in out]} do not match obs_dim={obs_dim}, act_dim={act_dim}"
        )
    return obs, act, rew, nobs, term


class FlatAdam:
    """Adam (Kingma & Ba; same arithmetic as ``torch.optim.Adam`` without weight decay) on one flat tensor.

    All parameters of a network live in one contiguous float32 vector, so a step is a handful of tensor
    operations regardless of how many layers there are.
    """

    def __init__(self, numel: int, lr: float, betas: tuple[float, float], eps: float) -> None:
        self.lr = float(lr)
        self.beta1, self.beta2 = float(betas[0]), float(betas[1])
        self.eps = float(eps)
        self.m = torch.zeros(numel)
        self.v = torch.zeros(numel)
        self._step = torch.zeros(())  # float step counter, as torch.optim.Adam keeps it
        self._one = torch.ones(())
        self._fused = hasattr(torch, "_fused_adam_")

    @property
    def step_count(self) -> int:
        """Adam steps taken (bias correction uses it)."""
        return int(self._step)

    @step_count.setter
    def step_count(self, value: int) -> None:
        self._step.fill_(float(value))

    @torch.no_grad()
    def step(self, param: torch.Tensor, grad: torch.Tensor) -> None:
        """One Adam step on ``param`` (in place) with gradient ``grad`` (same shape, flat).

        Uses PyTorch's fused CPU Adam kernel (what ``torch.optim.Adam(fused=True)`` calls: one pass over the
        vector) when available, else the same arithmetic as ``torch.optim.Adam``'s default implementation.
        """
        self._step.add_(self._one)
        if self._fused:
            torch._fused_adam_(
                [param], [grad], [self.m], [self.v], [], [self._step],
                lr=self.lr, beta1=self.beta1, beta2=self.beta2, weight_decay=0.0, eps=self.eps,
                amsgrad=False, maximize=False,
            )
            return
        t = float(self._step)
        bc1 = 1.0 - self.beta1**t
        bc2_sqrt = math.sqrt(1.0 - self.beta2**t)
        self.m.lerp_(grad, 1.0 - self.beta1)
        self.v.mul_(self.beta2).addcmul_(grad, grad, value=1.0 - self.beta2)
        denom = self.v.sqrt().div_(bc2_sqrt).add_(self.eps)
        param.addcdiv_(self.m, denom, value=-self.lr / bc1)


@torch.no_grad()
def clip_grad_norm_(grad: torch.Tensor, max_norm: float | None) -> torch.Tensor:
    """Scale the flat ``grad`` in place so its 2-norm is at most ``max_norm``; return the norm before clipping.

    Same rule as ``torch.nn.utils.clip_grad_norm_`` (factor ``max_norm / (norm + 1e-6)``, clamped to 1),
    without a Python-side branch.
    """
    norm = torch.linalg.vector_norm(grad)
    if max_norm is not None:
        grad.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0))
    return norm
