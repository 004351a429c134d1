"""async_naf.learning.agents.naf_update: the hand-derived NAF step equals autograd, torch.optim.Adam and
clip_grad_norm_ (a network change that breaks one of the two paths fails here)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from naf_testing import ACT, OBS, _batch, _perturbed_agent, _rel

from async_naf.learning.agents import NAFAgent, NAFConfig
from async_naf.learning.normalizer import RunningNormalizer

torch.set_num_threads(1)


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


@pytest.mark.parametrize("filtered", [False, True])
@pytest.mark.parametrize("fast", [True, False])
def test_behaviour_cloning_terms_match_their_formula(fast: bool, filtered: bool) -> None:
    """bc_weight over the batch plus demo_bc_weight over its first demo_rows rows: both paths give the gradient
    of ``mse + bc_weight * mean_all(e^2) + demo_bc_weight * sum_demo(keep * e^2) / demo_rows``, e = (mu - u) /
    half_range, keep = 1 or (demo_bc_filter) y > V(x); and report each mean and the share kept."""
    cfg = NAFConfig(OBS, ACT, hidden_sizes=(16, 12), action_low=-2.0, action_high=1.0, normalize_obs=False,
                    bc_weight=0.3, demo_bc_weight=2.0, demo_bc_filter=filtered, target_clip=False,
                    fast_update=fast)
    agent = _perturbed_agent(cfg)
    assert (agent._fast_step is not None) == fast
    batch = _batch(np.random.default_rng(8), 40)
    obs, act, rew, nobs, term = (torch.from_numpy(x) for x in batch)
    flat = agent.theta[0].detach().clone().requires_grad_(True)
    mse = _reference_loss(agent, flat, torch.stack((obs, nobs)), act, rew, term, cfg.gamma)
    p, tp = agent.params(flat), agent.params(1)

    def head(params, x):
        h = torch.relu(x @ params["l0.weight"] + params["l0.bias"])
        h = torch.relu(h @ params["l1.weight"] + params["l1.bias"])
        return h @ params["head.weight"] + params["head.bias"]

    out = head(p, obs)
    with torch.no_grad():
        y = rew + cfg.gamma * (1 - term) * head(tp, nobs)[:, 0]
    mu = agent._center + agent._half * torch.tanh(out[:, 1 : 1 + ACT])
    e2 = ((mu - act) / agent._half) ** 2
    n = 10
    keep = (y[:n] > out[:n, 0].detach()).float() if filtered else torch.ones(n)
    if filtered:
        assert 0 < keep.sum() < n  # both cases are exercised
    loss = mse + 0.3 * e2.mean() + 2.0 * (keep[:, None] * e2[:n]).sum() / (n * ACT)
    (g_ref,) = torch.autograd.grad(loss, flat, retain_graph=True)
    m = agent.update(batch, demo_rows=n)
    assert _rel(agent.grad, g_ref) < 1e-5
    assert m["bc_loss"] == pytest.approx(e2.mean().item(), rel=1e-5)
    assert m["demo_bc_loss"] == pytest.approx(e2[:n].mean().item(), rel=1e-5)
    assert m["demo_bc_kept"] == pytest.approx(keep.mean().item())
    # the demonstration term moves the gradient (it is not lost below the TD term)
    (g_without,) = torch.autograd.grad(mse + 0.3 * e2.mean(), flat)
    assert _rel(g_without, g_ref) > 1e-3
    # without demonstration rows only the batch term is there
    m = agent.update(batch)
    assert "bc_loss" in m and "demo_bc_loss" not in m


@pytest.mark.parametrize("fast", [True, False])
def test_huber_td_loss_matches_torch_huber(fast: bool) -> None:
    """td_clip = c: the gradient is that of 2 * huber_loss(q, y, delta=c) (the squared error below c, each
    larger error's pull clipped to c), on both paths; the reported loss stays the mean squared TD error."""
    c = 1.0
    cfg = NAFConfig(OBS, ACT, hidden_sizes=(16, 12), action_low=-2.0, action_high=1.0, normalize_obs=False,
                    td_clip=c, fast_update=fast)
    agent = _perturbed_agent(cfg)
    batch = _batch(np.random.default_rng(7), 40)
    obs, act, rew, nobs, term = (torch.from_numpy(x) for x in batch)
    flat = agent.theta[0].detach().clone().requires_grad_(True)
    mse = _reference_loss(agent, flat, torch.stack((obs, nobs)), act, rew, term, cfg.gamma)
    # the same q and y, through torch's own Huber loss
    x = torch.stack((obs, nobs))
    with torch.no_grad():
        v_next, _, _ = agent.outputs(agent.params(1), x[1])
        y = rew + cfg.gamma * (1 - term) * v_next
    v, mu, lv = agent.outputs(agent.params(flat), x[0])
    from async_naf.learning.agents import naf_math

    q = v + naf_math.advantage(act, mu, naf_math.precision_matrix(lv, ACT))
    err = (q - y).detach()
    assert (err.abs() > c).sum() > 5 and (err.abs() <= c).sum() > 5  # both regimes are exercised
    (g_ref,) = torch.autograd.grad(2 * torch.nn.functional.huber_loss(q, y, delta=c), flat)
    m = agent.update(batch)
    assert _rel(agent.grad, g_ref) < 1e-5
    assert m["loss"] == pytest.approx(mse.item(), rel=1e-5)


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


@pytest.mark.parametrize("fast", [True, False])
def test_learning_rate_schedule_equals_torch_lambda_lr(fast: bool) -> None:
    """With ``lr_half_life`` each step uses ``lr_at(updates so far)``: the same weights as torch.optim.Adam driven
    by torch's own LambdaLR with that factor, on both update paths; ``lr`` is reported, the floor holds."""
    cfg = NAFConfig(OBS, ACT, hidden_sizes=(16, 12), lr=1e-2, lr_decay_start=2, lr_half_life=2, lr_min=2e-3,
                    normalize_obs=False, fast_update=fast)
    agent = _perturbed_agent(cfg)
    ref = agent.theta[0].detach().clone().double().requires_grad_(True)
    opt = torch.optim.Adam([ref], lr=cfg.lr, betas=cfg.adam_betas, eps=cfg.adam_eps)
    factor = (lambda k: 1.0 if k <= 2 else max(0.2, 0.5 ** ((k - 2) / 2)))  # noqa: E731 (the formula, written out)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    rng = np.random.default_rng(7)
    seen = []
    for _ in range(9):
        batch = _batch(rng, 24, scale=3.0)
        target = agent.theta[1].detach().clone().double()
        metrics = agent.update(batch)
        seen.append(metrics["lr"])
        obs, act, rew, nobs, term = (torch.from_numpy(x).double() for x in batch)
        shadow = NAFAgent(cfg)
        shadow.theta = torch.stack((ref.detach(), target)).double()
        shadow._center, shadow._half = shadow._center.double(), shadow._half.double()
        loss = _reference_loss(shadow, ref, torch.stack((obs, nobs)), act, rew, term, cfg.gamma)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    assert seen == pytest.approx([1e-2, 1e-2, 1e-2, 1e-2 * 0.5**0.5, 5e-3, 5e-3 * 0.5**0.5, 2.5e-3, 2e-3, 2e-3])
    assert _rel(agent.theta[0].double(), ref.detach()) < 1e-5


def test_learning_rate_schedule_is_off_by_default_and_checked() -> None:
    agent = NAFAgent(NAFConfig(OBS, ACT))
    assert "lr" not in agent.update(_batch(np.random.default_rng(8), 16))
    assert agent.optim.lr == agent.config.lr == agent.config.lr_at(10**9)
    for bad in ({"lr_min": 2e-3}, {"lr_min": -1e-4}, {"lr_half_life": -1}, {"lr_decay_start": 1.5}):
        with pytest.raises(ValueError, match="lr_"):
            NAFConfig(OBS, ACT, lr=1e-3, **bad)
