"""NAF maths: P, A, Q, the TD target, soft updates, and the fast update against autograd/torch.optim.Adam."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from async_naf.learning.agents import DDPGAgent, DDPGConfig, LinearNAFAgent, NAFAgent, NAFConfig, naf_math
from async_naf.learning.normalizer import RunningNormalizer
from async_naf.learning.replay import Batch

torch.set_num_threads(1)

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


def test_p_symmetric_positive_definite_and_l_lower_triangular() -> None:
    gen = torch.Generator().manual_seed(0)
    lvals = 3.0 * torch.randn(200, ACT * (ACT + 1) // 2, generator=gen)
    L = naf_math.lower_triangular(lvals, ACT)
    assert torch.all(torch.triu(L, diagonal=1) == 0)
    assert torch.all(torch.diagonal(L, dim1=-2, dim2=-1) > 0)
    P = naf_math.precision_matrix(lvals.double(), ACT)
    assert torch.allclose(P, P.transpose(-1, -2))
    assert torch.all(torch.linalg.eigvalsh(P) > 0)
    torch.linalg.cholesky(P)  # raises if not positive definite


def test_advantage_nonpositive_and_q_maximised_at_mu() -> None:
    agent = _perturbed_agent(NAFConfig(OBS, ACT, action_low=-2.0, action_high=[1.0, 2.0, 3.0]))
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((50, OBS)).astype(np.float32)
    at_mu = agent.q_values(obs, np.zeros((50, ACT), np.float32))
    mu = at_mu["mu"]
    assert np.all(mu >= agent.action_low) and np.all(mu <= agent.action_high)
    best = agent.q_values(obs, mu)
    assert np.allclose(best["a"], 0.0, atol=1e-6)
    assert np.allclose(best["q"], best["v"], atol=1e-6)
    for _ in range(20):
        u = mu + rng.normal(0, 0.5, mu.shape).astype(np.float32)
        other = agent.q_values(obs, u)
        assert np.all(other["a"] <= 0.0)
        assert np.all(other["q"] <= best["q"] + 1e-6)
    # and the advantage is exactly the quadratic form with P
    d = (u - mu)[..., None]
    expected = -0.5 * (np.swapaxes(d, -1, -2) @ other["p"] @ d)[:, 0, 0]
    assert np.allclose(other["a"], expected, rtol=1e-4, atol=1e-5)


def test_greedy_action_is_mu_and_within_bounds() -> None:
    agent = _perturbed_agent(NAFConfig(OBS, ACT, action_low=-0.5, action_high=0.5), seed=3)
    rng = np.random.default_rng(1)
    obs = (100 * rng.standard_normal(OBS)).astype(np.float32)
    mu = agent.q_values(obs[None], np.zeros((1, ACT), np.float32))["mu"][0]
    a = agent.act(obs)
    assert a.dtype == np.float32 and a.shape == (ACT,)
    assert np.allclose(a, mu, atol=1e-6)
    for _ in range(50):
        e = agent.act(obs, explore=True)
        assert np.all(e >= -0.5) and np.all(e <= 0.5)
    with pytest.raises(ValueError):
        agent.act(np.full(OBS, np.nan, np.float32))
    with pytest.raises(ValueError):
        agent.act(np.zeros(OBS + 1, np.float32))


@pytest.mark.parametrize("fast", [True, False])
def test_target_is_reward_plus_gamma_times_next_value(fast: bool) -> None:
    """V'(x') = 3 everywhere, gamma = 0.5, r = 1: y = 1 + 0.5 * 3 = 2.5 (gamma + V' would give 4.5)."""
    cfg = NAFConfig(OBS, ACT, gamma=0.5, normalize_obs=False, fast_update=fast)
    agent = NAFAgent(cfg)
    a, b, _ = agent._slices["head.weight"]
    ba, _, _ = agent._slices["head.bias"]
    with torch.no_grad():
        agent.theta[1, a:b] = 0.0  # target head weights 0 -> V'(x') = head bias[0]
        agent.theta[1, ba] = 3.0
    rng = np.random.default_rng(2)
    obs, act, _, nobs, _ = _batch(rng, 16)
    rew = np.ones(16, np.float32)
    m = agent.update(Batch(obs, act, rew, nobs, np.zeros(16, np.float32)))
    assert m["target_mean"] == pytest.approx(2.5, abs=1e-5)
    assert m["target_mean"] != pytest.approx(1.0 + (0.5 + 3.0), abs=0.1)
    m = agent.update(Batch(obs, act, rew, nobs, np.ones(16, np.float32)))  # terminal: no bootstrap
    assert m["target_mean"] == pytest.approx(1.0, abs=1e-6)
    assert naf_math.td_target(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([3.0]), 0.5).item() == 2.5


@pytest.mark.parametrize("fast", [True, False])
def test_soft_update_moves_target_by_exactly_tau(fast: bool) -> None:
    tau = 0.1
    agent = _perturbed_agent(NAFConfig(OBS, ACT, tau=tau, fast_update=fast))
    before = agent.theta[1].clone()
    agent.update(_batch(np.random.default_rng(3)))
    online = agent.theta[0]
    expected = before + tau * (online - before)
    assert torch.allclose(agent.theta[1], expected, atol=1e-6, rtol=0)  # float32 rounding
    moved = (agent.theta[1] - before).abs().sum() / (online - before).abs().sum()
    assert moved.item() == pytest.approx(tau, rel=1e-4)


def _reference_loss(agent: NAFAgent, flat: torch.Tensor, X: torch.Tensor, act, rew, term, gamma):
    """NAF loss written independently of the agent's code paths (explicit L matrix via a Python loop)."""
    p = agent.params(flat)
    tp = agent.params(1)

    def net(params, x):
        h = x
        for i in range(len(agent.config.hidden_sizes)):
            h = h @ params[f"l{i}.weight"] + params[f"l{i}.bias"]
            h = torch.relu(h) if agent.config.activation == "relu" else torch.tanh(h)
        return h @ params["head.weight"] + params["head.bias"]

    A = agent.act_dim
    out = net(p, X[0])
    with torch.no_grad():
        v_next = net(tp, X[1])[:, 0]
    y = rew + gamma * (1 - term) * v_next
    mu = agent._center + agent._half * torch.tanh(out[:, 1 : 1 + A])
    L = torch.zeros(out.shape[0], A, A, dtype=out.dtype)
    k = 0
    for i in range(A):
        for j in range(i + 1):
            L[:, i, j] = torch.exp(out[:, 1 + A + k]) if i == j else out[:, 1 + A + k]
            k += 1
    P = L @ L.transpose(1, 2)
    d = act - mu
    q = out[:, 0] - 0.5 * torch.einsum("bi,bij,bj->b", d, P, d)
    return ((q - y) ** 2).mean()


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_fast_gradient_matches_autograd(activation: str) -> None:
    cfg = NAFConfig(OBS, ACT, activation=activation, hidden_sizes=(16, 12), action_low=-2.0, action_high=1.0,
                    normalize_obs=False)
    agent = _perturbed_agent(cfg)
    rng = np.random.default_rng(4)
    batch = _batch(rng, 40)
    obs, act, rew, nobs, term = (torch.from_numpy(x) for x in batch)
    flat = agent.theta[0].detach().clone().requires_grad_(True)
    loss = _reference_loss(agent, flat, torch.stack((obs, nobs)), act, rew, term, cfg.gamma)
    (g_ref,) = torch.autograd.grad(loss, flat)
    m = agent.update(batch)  # fast path: leaves the raw gradient in agent.grad (no clipping configured)
    assert _rel(agent.grad, g_ref) < 1e-5
    assert m["loss"] == pytest.approx(loss.item(), rel=1e-5)
    # every parameter group got a gradient (no block silently left at zero)
    for name, (a, b, _) in agent._slices.items():
        assert g_ref[a:b].abs().max() > 0, name
        assert _rel(agent.grad[a:b], g_ref[a:b]) < 1e-4, name


@pytest.mark.parametrize("clip", [None, 0.05])
@pytest.mark.parametrize("normalize", [False, True])
def test_fast_steps_equal_reference_steps(clip, normalize) -> None:
    """Three fast steps == three steps of autograd + torch.optim.Adam + clip_grad_norm_ + lerp (float64 ref)."""
    cfg = NAFConfig(OBS, ACT, hidden_sizes=(16, 12), lr=1e-2, tau=0.2, grad_clip_norm=clip, normalize_obs=normalize)
    agent = _perturbed_agent(cfg)
    ref_online = agent.theta[0].detach().clone().double().requires_grad_(True)
    ref_target = agent.theta[1].detach().clone().double()
    opt = torch.optim.Adam([ref_online], lr=cfg.lr, betas=cfg.adam_betas, eps=cfg.adam_eps)
    ref_norm = RunningNormalizer(OBS, cfg.obs_clip)
    rng = np.random.default_rng(5)
    for _ in range(3):
        batch = _batch(rng, 24, scale=3.0)
        metrics = agent.update(batch)
        obs, act, rew, nobs, term = (torch.from_numpy(x).double() for x in batch)
        X = torch.stack((obs, nobs))
        if normalize:  # reference statistics straight from numpy over all rows seen
            ref_norm.update(obs.float())
            X = ((X - ref_norm.mean.double()) / torch.sqrt(ref_norm.var.double() + 1e-8)).clamp(-10, 10)
        shadow = NAFAgent(cfg)  # only for parameter views / bounds in double
        shadow.theta = torch.stack((ref_online.detach(), ref_target)).double()
        shadow._center, shadow._half = shadow._center.double(), shadow._half.double()
        loss = _reference_loss(shadow, ref_online, X, act, rew, term, cfg.gamma)
        opt.zero_grad()
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_([ref_online], clip)
        opt.step()
        with torch.no_grad():
            ref_target.lerp_(ref_online, cfg.tau)
        assert metrics["loss"] == pytest.approx(loss.item(), rel=1e-4)
    assert _rel(agent.theta[0].double(), ref_online.detach()) < 1e-5
    assert _rel(agent.theta[1].double(), ref_target) < 1e-5
    assert _rel(agent.optim.m.double(), opt.state[ref_online]["exp_avg"]) < 1e-4
    assert agent.update_count == 3 and agent.optim.step_count == 3


def test_fast_and_autograd_paths_agree_over_many_steps() -> None:
    rng = np.random.default_rng(6)
    a = NAFAgent(NAFConfig(OBS, ACT, hidden_sizes=(32, 32), grad_clip_norm=1.0))
    b = NAFAgent(NAFConfig(OBS, ACT, hidden_sizes=(32, 32), grad_clip_norm=1.0, fast_update=False))
    for _ in range(30):
        batch = _batch(rng, 32)
        ma, mb = a.update(batch), b.update(batch)
        assert ma.keys() == mb.keys()
        for k in ma:
            assert ma[k] == pytest.approx(mb[k], rel=1e-4, abs=1e-6), k
    assert _rel(a.theta, b.theta) < 1e-5
    assert torch.allclose(a.normalizer.mean, b.normalizer.mean, atol=1e-6)


def test_running_normalizer_matches_numpy() -> None:
    rng = np.random.default_rng(7)
    norm = RunningNormalizer(4)
    rows = []
    for n in (1, 5, 64, 17):
        x = (rng.standard_normal((n, 4)) * [1, 10, 0.01, 3] + [100, -5, 0, 2]).astype(np.float32)
        rows.append(x)
        norm.update(torch.from_numpy(x))
    allx = np.concatenate(rows).astype(np.float64)
    assert norm.count == len(allx)
    assert np.allclose(norm.mean.numpy(), allx.mean(0), rtol=1e-5, atol=1e-5)
    assert np.allclose(norm.var.numpy(), allx.var(0), rtol=1e-3, atol=1e-7)


def test_update_rejects_mismatched_batch() -> None:
    agent = NAFAgent(NAFConfig(OBS, ACT))
    b = _batch(np.random.default_rng(8))
    with pytest.raises(ValueError):
        agent.update(Batch(b.obs[:, :-1], *b[1:]))
    with pytest.raises(ValueError):
        agent.update(Batch(b.obs, b.action, b.reward[:-1], b.next_obs, b.terminal))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"obs_dim": 0, "act_dim": 2},
        {"obs_dim": 3, "act_dim": 2, "gamma": 1.5},
        {"obs_dim": 3, "act_dim": 2, "tau": 0.0},
        {"obs_dim": 3, "act_dim": 2, "lr": -1.0},
        {"obs_dim": 3, "act_dim": 2, "action_low": 1.0, "action_high": -1.0},
        {"obs_dim": 3, "act_dim": 2, "action_low": [-1, -1, -1]},
        {"obs_dim": 3, "act_dim": 2, "hidden_sizes": (10, 0)},
        {"obs_dim": 3, "act_dim": 2, "grad_clip_norm": 0.0},
        {"obs_dim": 3, "act_dim": 2, "activation": "gelu"},
        {"obs_dim": 3, "act_dim": 2, "batch_size": 0},
    ],
)
def test_bad_config_raises(kwargs) -> None:
    with pytest.raises(ValueError):
        NAFConfig(**kwargs)


def _agent_state(agent) -> list[torch.Tensor]:
    """Every tensor an update may change: weights of all networks and the Adam moments."""
    if isinstance(agent, NAFAgent):
        return [agent.theta.clone(), agent.optim.m.clone(), agent.optim.v.clone()]
    nets = (agent.actor, agent.critic, agent.actor_target, agent.critic_target)
    out = [p.detach().clone() for net in nets for p in net.parameters()]
    for opt in (agent.actor_opt, agent.critic_opt):
        for st in opt.state.values():
            out += [st["exp_avg"].clone(), st["exp_avg_sq"].clone()]
    return out


@pytest.mark.parametrize("make", [
    lambda: NAFAgent(NAFConfig(OBS, ACT, fast_update=True)),
    lambda: NAFAgent(NAFConfig(OBS, ACT, fast_update=False, grad_clip_norm=1.0)),
    lambda: LinearNAFAgent(NAFConfig(OBS, ACT)),
    lambda: DDPGAgent(DDPGConfig(OBS, ACT)),
    lambda: DDPGAgent(DDPGConfig(OBS, ACT, grad_clip_norm=1.0)),
], ids=["naf_fast", "naf_autograd_clip", "linear_naf", "ddpg", "ddpg_clip"])
def test_non_finite_gradient_skips_the_step(make) -> None:
    """Rewards near the float32 maximum make the loss gradient overflow to inf: no weight, no Adam moment
    and no target may change; the skip is counted and reported, and the next finite batch trains as usual."""
    agent = make()
    rng = np.random.default_rng(5)
    agent.update(_batch(rng))  # Adam moments exist (torch.optim creates them on the first step)
    before = _agent_state(agent)
    bad = _batch(rng)
    bad = bad._replace(reward=np.full_like(bad.reward, 3.0e38), terminal=np.zeros_like(bad.terminal))
    metrics = agent.update(bad)
    assert not np.isfinite(metrics["grad_norm"])
    assert metrics["skipped"] == 1.0 and metrics["skipped_updates"] == 1.0
    assert agent.skipped_updates == 1 and agent.update_count == 1
    for a, b in zip(_agent_state(agent), before, strict=True):
        assert torch.equal(a, b)
    metrics = agent.update(_batch(rng))
    assert metrics["skipped"] == 0.0 and np.isfinite(metrics["grad_norm"])
    assert agent.update_count == 2 and agent.skipped_updates == 1
    assert all(torch.isfinite(t).all() for t in _agent_state(agent))
