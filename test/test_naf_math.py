"""NAF maths: P, A, Q, the TD target, soft updates, bad configs, skipped steps.

The two update paths (hand-derived and autograd) are compared in test_naf_update.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from naf_testing import ACT, OBS, _batch, _perturbed_agent

from async_naf.learning.agents import DDPGAgent, DDPGConfig, LinearNAFAgent, NAFAgent, NAFConfig, naf_math
from async_naf.learning.normalizer import RunningNormalizer
from async_naf.learning.replay import Batch

torch.set_num_threads(1)



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


def test_a_separate_mu_network_is_trained_exported_and_saved(tmp_path) -> None:
    """naf.separate_mu: mu from hidden layers of its own (mu_l<i>, mu), V and L from the shared head; the
    exported policy computes the same mu, an update moves the mu layers, a checkpoint keeps them; the
    autograd step is taken."""
    agent = NAFAgent(NAFConfig(OBS, ACT, hidden_sizes=(16, 12), separate_mu=True, lr=1e-2, seed=1))
    assert agent._fast_step is None
    names = [n for n, _ in agent.layout]
    assert "mu_l0.weight" in names and "mu.bias" in names
    assert dict(agent.layout)["head.weight"] == (12, 1 + ACT * (ACT + 1) // 2)  # V and L only
    obs = np.random.default_rng(0).normal(size=OBS).astype(np.float32)
    np.testing.assert_allclose(agent.policy().act(obs), agent.act(obs), atol=1e-6)
    a, b, _ = agent._slices["mu_l0.weight"]
    before = agent.theta[0, a:b].clone()
    agent.update(_batch(np.random.default_rng(1), 32))
    assert not torch.equal(before, agent.theta[0, a:b])
    np.testing.assert_allclose(agent.policy().act(obs), agent.act(obs), atol=1e-6)
    agent.save(tmp_path / "s.safetensors")
    loaded = NAFAgent.load(tmp_path / "s.safetensors")
    np.testing.assert_array_equal(loaded.act(obs), agent.act(obs))


@pytest.mark.parametrize("fast", [True, False])
def test_targets_beyond_the_return_range_are_clipped(fast: bool, tmp_path) -> None:
    """target_clip: rewards in [-1, 1] seen so far, gamma 0.5 -> every return lies in [-2, 2]. A target
    network that says V'(x') = 100 gives y = r + 50, clipped to 2; V' = -100 gives -2; V' = 1 stays
    (y = r + 0.5). The reward range survives a checkpoint."""
    cfg = NAFConfig(OBS, ACT, gamma=0.5, normalize_obs=False, fast_update=fast)
    assert cfg.target_clip  # the default
    agent = NAFAgent(cfg)
    a, b, _ = agent._slices["head.weight"]
    ba, _, _ = agent._slices["head.bias"]
    rng = np.random.default_rng(3)
    obs, act, _, nobs, _ = _batch(rng, 16)
    rew = np.linspace(-1.0, 1.0, 16).astype(np.float32)
    zeros = np.zeros(16, np.float32)
    for v_next, want in ((100.0, 2.0), (-100.0, -2.0), (1.0, float(np.mean(rew)) + 0.5)):
        with torch.no_grad():
            agent.theta[1, a:b] = 0.0  # target head weights 0 -> V'(x') = head bias[0]
            agent.theta[1, ba] = v_next
        m = agent.update(Batch(obs, act, rew, nobs, zeros))
        assert m["target_mean"] == pytest.approx(want, abs=1e-5), v_next
    assert agent.reward_range == pytest.approx((-1.0, 1.0))
    agent.save(tmp_path / "c.safetensors")
    assert NAFAgent.load(tmp_path / "c.safetensors").reward_range == pytest.approx((-1.0, 1.0))
    # without the clip, the same target network gives the unclipped target
    plain = NAFAgent(NAFConfig(OBS, ACT, gamma=0.5, normalize_obs=False, fast_update=fast, target_clip=False))
    with torch.no_grad():
        plain.theta[1, a:b] = 0.0
        plain.theta[1, ba] = 100.0
    assert plain.update(Batch(obs, act, rew, nobs, zeros))["target_mean"] == pytest.approx(50.0, abs=1e-4)


@pytest.mark.parametrize("fast", [True, False])
def test_target_is_reward_plus_gamma_times_next_value(fast: bool) -> None:
    """V'(x') = 3 everywhere, gamma = 0.5, r = 1: y = 1 + 0.5 * 3 = 2.5 (gamma + V' would give 4.5)."""
    cfg = NAFConfig(OBS, ACT, gamma=0.5, normalize_obs=False, fast_update=fast, target_clip=False)
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
        {"obs_dim": 3, "act_dim": 2, "grad_clip_norm": -1.0},  # 0 = no clipping
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
