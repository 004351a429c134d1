"""NAF quantities written plainly with torch (autograd-friendly); the reference for the fast update.

Gu, Lillicrap, Sutskever, Levine, "Continuous Deep Q-Learning with Model-based Acceleration", ICML 2016:

    Q(x, u) = V(x) + A(x, u),   A(x, u) = -1/2 (u - mu(x))^T P(x) (u - mu(x)),   P(x) = L(x) L(x)^T

with L lower-triangular and its diagonal exponentiated, so P is symmetric positive definite, A <= 0 and
Q(x, .) is maximised at u = mu(x), where Q = V.

The network's L output is the ``act_dim (act_dim + 1) / 2`` lower-triangular entries in row-major order
(:func:`tril_indices`).
"""
from __future__ import annotations

import torch


def tril_indices(act_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, cols) of the lower-triangular entries of an ``act_dim`` square matrix, row-major."""
    idx = torch.tril_indices(act_dim, act_dim)
    return idx[0], idx[1]


def lower_triangular(lvals: torch.Tensor, act_dim: int) -> torch.Tensor:
    """Build L (..., A, A) from the network's (..., A(A+1)/2) outputs; diagonal entries are exp()'d."""
    rows, cols = tril_indices(act_dim)
    diag = rows == cols
    vals = torch.where(diag, torch.exp(lvals), lvals)
    L = lvals.new_zeros(*lvals.shape[:-1], act_dim, act_dim)
    L[..., rows, cols] = vals
    return L


def precision_matrix(lvals: torch.Tensor, act_dim: int) -> torch.Tensor:
    """P = L L^T, shape (..., A, A): symmetric positive definite."""
    L = lower_triangular(lvals, act_dim)
    return L @ L.transpose(-1, -2)


def advantage(u: torch.Tensor, mu: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """A = -1/2 (u - mu)^T P (u - mu) per row; shapes (..., A), (..., A), (..., A, A) -> (...)."""
    d = (u - mu).unsqueeze(-1)
    return -0.5 * (d.transpose(-1, -2) @ P @ d).squeeze(-1).squeeze(-1)


def squash(pre: torch.Tensor, center: torch.Tensor, half_range: torch.Tensor) -> torch.Tensor:
    """mu = center + half_range * tanh(pre): maps R^A into the open box (low, high)."""
    return center + half_range * torch.tanh(pre)


def td_target(reward: torch.Tensor, terminal: torch.Tensor, next_v: torch.Tensor, gamma: float) -> torch.Tensor:
    """y = r + gamma * (1 - terminal) * V'(x')  (a product with gamma, not a sum)."""
    return reward + gamma * (1.0 - terminal) * next_v
