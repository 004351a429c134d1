"""Reference for the NAF speed goal: a straightforward PyTorch NAF update, written the common way.

This is the "straightforward PyTorch NAF update" the bench compares against (issue 2): an ``nn.Module``
with batch normalisation of the input, separate V / mu / L heads, the full ``A x A`` L matrix produced by a
linear layer and masked to lower-triangular (diagonal exponentiated), ``P = L L^T`` by ``bmm``, the advantage
by two more ``bmm``, autograd, ``torch.optim.Adam`` with its default (per-parameter) implementation and a
per-parameter soft copy into the target network. It is deliberately not optimised; it is correct NAF.

Run it alone: ``python benchmarks/naf_baseline.py`` (prints updates/s on one thread).
"""
from __future__ import annotations

import copy
import time

import numpy as np
import torch
from torch import nn


class BaselineNAFNet(nn.Module):
    tril_mask: torch.Tensor  # buffers, registered in __init__
    diag_mask: torch.Tensor

    """BatchNorm(input) -> 2 x (Linear, ReLU) -> heads V (1), mu (A, tanh), L (A*A, masked)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...] = (100, 100)) -> None:
        super().__init__()
        self.act_dim = act_dim
        self.bn = nn.BatchNorm1d(obs_dim)
        layers, width = [], obs_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.body = nn.Sequential(*layers)
        self.v = nn.Linear(width, 1)
        self.mu = nn.Linear(width, act_dim)
        self.l = nn.Linear(width, act_dim * act_dim)
        self.register_buffer("tril_mask", torch.tril(torch.ones(act_dim, act_dim), diagonal=-1))
        self.register_buffer("diag_mask", torch.eye(act_dim))

    def forward(self, x: torch.Tensor, u: torch.Tensor | None = None):
        h = self.body(self.bn(x))
        v = self.v(h)
        mu = torch.tanh(self.mu(h))
        if u is None:
            return v, mu, None
        lm = self.l(h).view(-1, self.act_dim, self.act_dim)
        L = lm * self.tril_mask + torch.exp(lm) * self.diag_mask
        P = torch.bmm(L, L.transpose(1, 2))
        d = (u - mu).unsqueeze(2)
        adv = -0.5 * torch.bmm(torch.bmm(d.transpose(1, 2), P), d).squeeze(2)
        return v, mu, v + adv


class BaselineNAF:
    """The straightforward update: one call = one gradient step + per-parameter soft target update."""

    def __init__(self, obs_dim: int, act_dim: int, hidden=(100, 100), gamma=0.98, tau=0.005, lr=1e-3, seed=0):
        torch.manual_seed(seed)
        self.net = BaselineNAFNet(obs_dim, act_dim, hidden)
        self.target = copy.deepcopy(self.net)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.gamma, self.tau = gamma, tau

    def update(self, obs, action, reward, next_obs, terminal) -> float:
        obs, action, reward, next_obs, terminal = (
            torch.as_tensor(x) for x in (obs, action, reward, next_obs, terminal))
        with torch.no_grad():
            self.target.eval()
            v_next, _, _ = self.target(next_obs)
            y = reward.unsqueeze(1) + self.gamma * (1.0 - terminal.unsqueeze(1)) * v_next
        self.net.train()
        _, _, q = self.net(obs, action)
        loss = nn.functional.mse_loss(q, y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            for p, tp in zip(self.net.parameters(), self.target.parameters()):
                tp.data.copy_(self.tau * p.data + (1.0 - self.tau) * tp.data)
            for b, tb in zip(self.net.buffers(), self.target.buffers()):
                tb.data.copy_(b.data)
        return loss.item()


def measure(buffer, n_updates: int, obs_dim: int = 20, act_dim: int = 7, batch: int = 64, seed: int = 0) -> float:
    """Updates per second of :class:`BaselineNAF`, each update including ``buffer.sample(batch)``."""
    agent = BaselineNAF(obs_dim, act_dim, seed=seed)
    for _ in range(max(10, n_updates // 20)):  # warm-up
        agent.update(*buffer.sample(batch))
    t0 = time.perf_counter()
    for _ in range(n_updates):
        agent.update(*buffer.sample(batch))
    return n_updates / (time.perf_counter() - t0)


if __name__ == "__main__":
    from async_naf.learning.replay import Batch, ReplayBuffer

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    buf = ReplayBuffer(10_000, 20, 7)
    n = 10_000
    buf.add_batch(
        Batch(
            rng.standard_normal((n, 20), np.float32),
            rng.uniform(-1, 1, (n, 7)).astype(np.float32),
            rng.standard_normal(n, np.float32),
            rng.standard_normal((n, 20), np.float32),
            (rng.random(n) < 0.05).astype(np.float32),
        )
    )
    print(f"baseline NAF: {measure(buf, 2000):.0f} updates/s")
