"""Learning tests (fixed seeds, one thread, a few seconds each).

- LQR: NAF on a discounted linear-quadratic problem recovers the optimal feedback gain K and the action
  curvature P* from the discrete algebraic Riccati equation (closed form).
- Point mass: NAF trained online beats a uniformly random policy (and doing nothing) by a clear margin.
- DDPG and Linear-NAF: update() reduces the loss and learns the optimal action of a contextual bandit.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from async_naf.common.noise import NoiseConfig
from async_naf.learning.agents import DDPGAgent, DDPGConfig, LinearNAFAgent, NAFAgent, NAFConfig, Policy
from async_naf.learning.replay import Batch, ReplayBuffer

torch.set_num_threads(1)

# LQR: x' = A x + B u, reward r = -(x^T Q x + u^T R u), discount gamma.
# With S from the DARE of (sqrt(gamma) A, sqrt(gamma) B, Q, R), V*(x) = -x^T S x and
# Q*(x, u) = r(x, u) + gamma V*(A x + B u), maximised at u = -K x with K = gamma (R + gamma B^T S B)^-1 B^T S A;
# in NAF's form Q* = V* - 1/2 (u + K x)^T P* (u + K x) with P* = 2 (R + gamma B^T S B), constant in x.
LQR_A = np.array([[1.0, 0.1, 0.0], [0.0, 1.0, 0.1], [0.1, 0.0, 0.9]])
LQR_B = np.array([[0.0, 0.2], [0.5, 0.0], [0.1, 0.4]])
LQR_Q = np.diag([1.0, 0.5, 0.8])
LQR_R = np.array([[0.5, 0.1], [0.1, 0.3]])
LQR_GAMMA = 0.9
K_TOLERANCE = 0.08  # relative Frobenius error of the fitted gain (measured: about 0.03)
P_TOLERANCE = 0.10  # relative Frobenius error of the mean P(x) (measured: about 0.01)


def lqr_solution() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g = np.sqrt(LQR_GAMMA)
    S = scipy.linalg.solve_discrete_are(g * LQR_A, g * LQR_B, LQR_Q, LQR_R)
    M = LQR_R + LQR_GAMMA * LQR_B.T @ S @ LQR_B
    K = LQR_GAMMA * np.linalg.solve(M, LQR_B.T @ S @ LQR_A)
    return S, K, 2.0 * M


def test_lqr_solution_is_a_fixed_point() -> None:
    """Sanity check of the closed form the learning test relies on (Bellman equation at random points)."""
    S, K, _ = lqr_solution()
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.standard_normal(3)
        u = -K @ x
        bellman = -(x @ LQR_Q @ x + u @ LQR_R @ u) - LQR_GAMMA * (LQR_A @ x + LQR_B @ u) @ S @ (LQR_A @ x + LQR_B @ u)
        assert bellman == pytest.approx(-x @ S @ x, rel=1e-8)


def test_naf_recovers_lqr_gain() -> None:
    _, K, P_star = lqr_solution()
    rng = np.random.default_rng(0)
    n = 20_000
    x = rng.uniform(-1, 1, (n, 3)).astype(np.float32)
    u = rng.uniform(-2, 2, (n, 2)).astype(np.float32)
    x_next = (x @ LQR_A.T + u @ LQR_B.T).astype(np.float32)
    r = -(np.einsum("ni,ij,nj->n", x, LQR_Q, x) + np.einsum("ni,ij,nj->n", u, LQR_R, u)).astype(np.float32)
    buf = ReplayBuffer(n, 3, 2, seed=0)
    buf.add_batch(Batch(x, u, r, x_next, np.zeros(n, np.float32)))
    agent = NAFAgent(
        NAFConfig(3, 2, action_low=-2.0, action_high=2.0, hidden_sizes=(64, 64), gamma=LQR_GAMMA, tau=0.02,
                  lr=1e-3, normalize_obs=False, seed=0)
    )
    for _ in range(6000):
        agent.update(buf.sample(64))
    xs = rng.uniform(-0.5, 0.5, (1000, 3)).astype(np.float32)
    out = agent.q_values(xs, np.zeros((1000, 2), np.float32))
    coef, *_ = np.linalg.lstsq(np.c_[xs, np.ones(1000)], out["mu"], rcond=None)
    K_hat = -coef[:3].T
    k_err = np.linalg.norm(K_hat - K) / np.linalg.norm(K)
    p_err = np.linalg.norm(out["p"].mean(0) - P_star) / np.linalg.norm(P_star)
    assert k_err < K_TOLERANCE, (K_hat, K, k_err)
    assert p_err < P_TOLERANCE, (out["p"].mean(0), P_star, p_err)
    # the greedy action of the exported policy is the same linear feedback
    policy = Policy.from_bytes(agent.policy_weights())
    assert np.allclose(policy.act(xs), out["mu"], atol=1e-5)


class PointMass:
    """1-D double integrator: state (position m, velocity m/s), action = acceleration in [-1, 1] m/s^2.

    dt = 0.1 s, 40 steps per episode, goal at the origin, reward -(p^2 + 0.1 v^2) per step.
    """

    dt, horizon = 0.1, 40

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def reset(self, p0: float | None = None) -> np.ndarray:
        self.p = self.rng.uniform(-1, 1) if p0 is None else p0
        self.v, self.t = 0.0, 0
        return np.array([self.p, self.v], np.float32)

    def step(self, a: np.ndarray) -> tuple[np.ndarray, float, bool]:
        acc = float(np.clip(a[0], -1.0, 1.0))
        self.v += acc * self.dt
        self.p += self.v * self.dt
        self.t += 1
        return np.array([self.p, self.v], np.float32), -(self.p**2) - 0.1 * self.v**2, self.t >= self.horizon


def _mean_return(policy, starts) -> float:
    env = PointMass(0)
    total = 0.0
    for p0 in starts:
        o, done = env.reset(p0), False
        while not done:
            o, r, done = env.step(policy(o))
            total += r
    return total / len(starts)


def test_naf_beats_random_policy_on_point_mass() -> None:
    episodes = 50
    env = PointMass(0)
    noise = NoiseConfig(kind="ou", scale=0.5, scale_final=0.1, anneal_steps=episodes * PointMass.horizon, theta=0.3)
    agent = NAFAgent(NAFConfig(2, 1, hidden_sizes=(64, 64), gamma=0.95, tau=0.01, lr=1e-3, noise=noise, seed=0))
    buf = ReplayBuffer(10_000, 2, 1, seed=0)
    for _ in range(episodes):
        o, done = env.reset(), False
        agent.noise.reset()
        while not done:
            a = agent.act(o, explore=True)
            o2, r, done = env.step(a)
            buf.add(o, a, r, o2, False)  # time-limit ends are not terminal
            o = o2
            if len(buf) >= 256:
                agent.update(buf.sample(64))
    starts = np.linspace(-1, 1, 21)
    rng = np.random.default_rng(1)
    policy = Policy.from_bytes(agent.policy_weights())
    naf = _mean_return(policy.act, starts)
    random = _mean_return(lambda o: rng.uniform(-1, 1, 1), starts)
    idle = _mean_return(lambda o: np.zeros(1), starts)
    # measured: NAF about -3.3, random about -25, zero action about -14.7
    assert naf > 0.4 * idle, (naf, idle)
    assert naf > 0.25 * random, (naf, random)


def _bandit(n: int = 5000, seed: int = 0):
    """Contextual bandit: x in [-1, 1]^2, reward -(u - k.x)^2, best action u* = k.x (gamma = 0)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    u = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    k = np.array([0.6, -0.3], np.float32)
    r = -((u[:, 0] - x @ k) ** 2)
    buf = ReplayBuffer(n, 2, 1, seed=seed)
    buf.add_batch(Batch(x, u, r, x, np.zeros(n, np.float32)))
    return buf, k


@pytest.mark.parametrize(
    "make",
    [
        lambda: DDPGAgent(DDPGConfig(2, 1, gamma=0.0, hidden_sizes=(32, 32), actor_lr=1e-3, seed=0)),
        lambda: LinearNAFAgent(NAFConfig(2, 1, gamma=0.0, hidden_sizes=(32, 32), seed=0)),
    ],
    ids=["ddpg", "linear_naf"],
)
def test_baselines_reduce_loss_and_learn_bandit(make) -> None:
    agent = make()
    buf, k = _bandit()
    xs = np.random.default_rng(2).uniform(-1, 1, (200, 2)).astype(np.float32)
    err_before = np.abs(agent.policy().act(xs)[:, 0] - xs @ k).mean()
    losses = [agent.update(buf.sample(64))["loss"] for _ in range(800)]
    assert agent.update_count == 800
    assert np.mean(losses[-20:]) < 0.1 * np.mean(losses[:20])
    err_after = np.abs(agent.policy().act(xs)[:, 0] - xs @ k).mean()
    assert err_after < 0.1 < err_before, (err_before, err_after)
