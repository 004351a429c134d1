"""Running observation normalisation (mean/variance), kept as torch tensors and saved with the weights.

``normalize(x) = clip((x - mean) / sqrt(var + eps), -clip, clip)``, per observation dimension. The statistics
are the exact mean and population variance of every row passed to :meth:`RunningNormalizer.update`
(parallel-Welford combination, batch by batch). Agents update them from each training batch's observations,
so they track the distribution of the replay buffer.
"""
from __future__ import annotations

import numpy as np
import torch

NORM_EPS = 1e-8  # added to the variance before the square root (obs units^2)


class RunningNormalizer:
    """Per-dimension running mean and variance of ``dim``-sized observations.

    Args:
        dim: observation size.
        clip: normalised values are clipped to [-clip, clip] (standard deviations).
    """

    def __init__(self, dim: int, clip: float = 10.0) -> None:
        self.dim = int(dim)
        self.clip = float(clip)
        self.mean = torch.zeros(dim)
        self.var = torch.ones(dim)
        self.count = 0.0  # rows seen (float: it only enters weights)
        self._zero = torch.zeros(dim)
        self._eps = torch.full((dim,), NORM_EPS)
        self._s1 = torch.empty(1, dim)  # column sums (work buffers)
        self._s2 = torch.empty(1, dim)
        self._s1_row, self._s2_row = self._s1[0], self._s2[0]

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Fold the rows of ``x`` (B, dim) into the statistics (in place, a few tensor ops)."""
        if x.shape[0]:
            self.fold_centered(x - self.mean)

    @torch.no_grad()
    def fold_centered(self, xc: torch.Tensor, ones: torch.Tensor | None = None) -> torch.Tensor:
        """Fold rows given *relative to the current mean* (``xc = x - mean``, shape (B, dim)).

        Shifted-data formulas (exact for any B, numerically safe when the mean is large):
        ``delta = sum(xc) / N``, ``mean += delta``,
        ``var = (n var + sum(xc^2)) / N - delta^2`` with ``N = n + B``. ``ones`` is an optional (1, B) tensor of
        ones (the sums are matrix products with it). Returns ``delta`` (dim,).

        Written with tensor-tensor operations and scalar ``alpha``/``weight`` arguments only (no Python
        scalar operands, which cost an extra tensor copy each in eager PyTorch).
        """
        b = xc.shape[0]
        if ones is None:
            ones = torch.ones(1, b)
        tot = self.count + b
        torch.mm(ones, xc, out=self._s1)
        torch.mm(ones, torch.mul(xc, xc), out=self._s2)
        delta = torch.add(self._zero, self._s1_row, alpha=1.0 / tot)
        self.mean.add_(delta)
        # var * n / N == lerp(var, 0, B / N)
        self.var.lerp_(self._zero, b / tot).add_(self._s2_row, alpha=1.0 / tot).addcmul_(delta, delta, value=-1.0)
        self.var.relu_()
        self.count = float(tot)
        return delta

    def inv_std(self) -> torch.Tensor:
        """``1 / sqrt(var + eps)`` per dimension, 1 / obs units (a new tensor; no scalar operand)."""
        return torch.rsqrt(torch.add(self.var, self._eps))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised copy of ``x`` (any leading shape, last dimension ``dim``)."""
        return ((x - self.mean) * self.inv_std()).clamp_(-self.clip, self.clip)

    def state(self) -> dict[str, np.ndarray]:
        """Tensors to save: mean, var (float32) and count (float64, shape (1,))."""
        return {
            "mean": self.mean.numpy().copy(),
            "var": self.var.numpy().copy(),
            "count": np.array([self.count], np.float64),
        }

    def load_state(self, mean: np.ndarray, var: np.ndarray, count: np.ndarray) -> None:
        """Restore statistics from :meth:`state` arrays (ValueError on bad shapes or negative variance)."""
        mean = np.asarray(mean, np.float32)
        var = np.asarray(var, np.float32)
        count = np.asarray(count, np.float64).reshape(-1)
        if mean.shape != (self.dim,) or var.shape != (self.dim,) or count.shape != (1,):
            raise ValueError(
                f"normaliser state has shapes {mean.shape}, {var.shape}, {count.shape}; expected ({self.dim},) x2, (1,)"
            )
        if np.any(var < 0) or count[0] < 0:
            raise ValueError("normaliser state has a negative variance or count")
        self.mean.copy_(torch.from_numpy(mean))
        self.var.copy_(torch.from_numpy(var))
        self.count = float(count[0])
