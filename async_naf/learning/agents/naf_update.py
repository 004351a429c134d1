"""The NAF gradient step, twice: the autograd reference and the hand-derived fast path (the speed).

Both compute one step of ``loss = mean((Q(x, u) - y)^2)`` (with ``td_clip`` > 0 the Huber form: each error's
gradient clipped to +-td_clip), ``Q = V + A``, ``A = -1/2 (u - mu)^T L L^T (u - mu)``,
``y = r + gamma (1 - terminal) V'(x')`` (clipped into the return range with ``target_clip``) on
:class:`async_naf.learning.agents.naf.NAFAgent`'s flat parameters, plus the behaviour-cloning terms
(:class:`BCTerms`: ``bc_weight``, ``demo_bc_weight``), then hand the gradient to the agent's Adam step and soft
target update (``_apply_gradient``):

- :func:`autograd_step`: the plain formulas (P = L L^T built explicitly) and ``torch.autograd``;
- :class:`HandDerivedStep`: both networks' forward passes in one batched matmul per layer and the backward
  pass written out (no autograd graph, preallocated buffers): about 5x the plain PyTorch update.

A change of the network (layers, head, activation, squashing) must be made in both, and in the agent's
``outputs`` (the reference forward pass): ``test/test_naf_update.py`` checks that the two give the same
gradient and the same steps (and that they equal ``torch.optim.Adam`` + ``clip_grad_norm_``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from async_naf.learning.agents import naf_math

if TYPE_CHECKING:
    from async_naf.learning.agents.naf import NAFAgent


class BCTerms(NamedTuple):
    """The behaviour-cloning terms of one update: the loss adds ``sum_i c_i sum_j ((mu_ij - u_ij) / half_j)^2``
    with ``c_i = per_row + per_demo_row * keep_i`` for the first ``demo_rows`` rows, ``per_row`` for the rest.

    Attributes:
        per_row: ``bc_weight / (B * A)`` (a mean over the batch and the joints).
        per_demo_row: ``demo_bc_weight / (demo_rows * A)`` (a mean over the demonstration rows and joints).
        demo_rows: the batch's first rows that are demonstrations.
        filtered: keep_i = 1 only where the demonstration did better than the current value says,
            ``y_i > V(x_i)`` (``demo_bc_filter``); else keep_i = 1.
    """

    per_row: float
    per_demo_row: float
    demo_rows: int
    filtered: bool


def _bc_row_weights(bc: BCTerms, y: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-row weights c (B,) of :class:`BCTerms` for targets ``y`` and values ``V(x)`` ``v`` (B,), and the
    demonstration rows' keep mask (None without demonstration rows)."""
    c = torch.full_like(y, bc.per_row)
    n = bc.demo_rows
    if not n:
        return c, None
    keep = (y[:n] > v[:n]).to(y.dtype) if bc.filtered else torch.ones_like(y[:n])
    c[:n].add_(keep, alpha=bc.per_demo_row)
    return c, keep


def _bc_metrics(metrics: dict[str, float], sq: torch.Tensor, bc: BCTerms, keep: torch.Tensor | None, weight: float,
                A: int) -> None:
    """``bc_loss`` / ``demo_bc_loss``: the mean of the per-row squared errors ``sq`` (B,) (summed over the
    ``A`` joints, in half-ranges) over all rows / the demonstration rows, per joint; ``demo_bc_kept``: the
    share of demonstration rows the filter kept."""
    if weight:
        metrics["bc_loss"] = float(sq.mean()) / A
    if keep is not None:
        metrics["demo_bc_loss"] = float(sq[: bc.demo_rows].mean()) / A
        metrics["demo_bc_kept"] = float(keep.mean())


def autograd_step(agent: NAFAgent, obs: torch.Tensor, act: torch.Tensor, rew: torch.Tensor, nobs: torch.Tensor,
                  term: torch.Tensor, bc: BCTerms | None = None) -> dict[str, float]:
    """Reference step: plain formulas (explicit P = L L^T, bmm) and torch.autograd. ``bc``: the
    behaviour-cloning terms, or None."""
    cfg = agent.config
    X = agent._normalized_pair(obs, nobs)
    with torch.no_grad():
        v_next, _, _ = agent.outputs(agent.params(1), X[1])
        y = agent.clip_target(naf_math.td_target(rew, term, v_next, cfg.gamma), rew)
    flat = agent.theta[0].detach().clone().requires_grad_(True)
    v, mu, lv = agent.outputs(agent.params(flat), X[0])
    q = v + naf_math.advantage(act, mu, naf_math.precision_matrix(lv, agent.act_dim))
    err = q - y
    c = cfg.td_clip
    sq = err**2
    # Huber, scaled to equal the squared error below c: gradient 2 * clamp(err, -c, c) / B
    loss = torch.mean(torch.where(err.abs() <= c, sq, 2 * c * err.abs() - c * c) if c > 0 else sq)
    bc_sq, keep = None, None
    if bc is not None:  # behaviour cloning: mu(x) towards the batch's action, in half-ranges
        w, keep = _bc_row_weights(bc, y, v.detach())
        bc_sq = (((mu - act) / agent._half) ** 2).sum(1)
        loss = loss + (w * bc_sq).sum()
    (g,) = torch.autograd.grad(loss, flat)
    with torch.no_grad():
        agent.grad.copy_(g)
        metrics = agent._apply_gradient()
        vals = torch.stack((sq.detach().mean(), q.detach().mean(), y.mean())).tolist()
    metrics.update(zip(("loss", "q_mean", "target_mean"), vals))
    if bc is not None and bc_sq is not None:
        _bc_metrics(metrics, bc_sq.detach(), bc, keep, cfg.bc_weight, agent.act_dim)
    return metrics


class HandDerivedStep:
    """The hand-derived NAF gradient step on ``agent`` (built once per agent; callable per batch)."""

    def __init__(self, agent: NAFAgent) -> None:
        """Constant tensors and views of ``agent``'s parameters and gradient used by the hand-derived step."""
        self.agent = agent
        A, T = self.agent.act_dim, self.agent.n_tril
        rows, cols = naf_math.tril_indices(A)
        si = torch.zeros(A, T)
        si[rows, torch.arange(T)] = 1.0  # (d @ si)[:, k] = d[:, rows[k]]
        sj = torch.zeros(A, T)
        sj[cols, torch.arange(T)] = 1.0  # (w @ sj.T)[:, j] = sum of w[:, k] with cols[k] = j
        self._si = si
        self._sj_t = sj.t().contiguous()  # (T, A)
        self._neg_sj = (-sj).contiguous()  # (A, T)
        self._si_t_half = (si.t() * self.agent._half[None, :]).contiguous()  # (T, A), columns times half-range
        self._diag = rows == cols
        self._diag_f = self._diag.float()
        self._offdiag_f = 1.0 - self._diag_f
        self._neg_one = torch.full((A,), -1.0)
        self._neg_half_col = torch.full((A, 1), -0.5)
        # (2, in, out) / (2, 1, out) views of every layer of both networks, online views, grad views
        n_hidden = len(self.agent.config.hidden_sizes)
        names = [f"l{i}" for i in range(n_hidden)] + ["head"]
        self._layers, self._w_online_t, self._grad_views = [], [], []
        for name in names:
            wa, wb, wshape = self.agent._slices[name + ".weight"]
            ba, bb, _ = self.agent._slices[name + ".bias"]
            w2 = self.agent.theta[:, wa:wb].view(2, *wshape)
            self._layers.append((w2, self.agent.theta[:, ba:bb].view(2, 1, wshape[1])))
            self._w_online_t.append(w2[0].t())
            self._grad_views.append((self.agent.grad[wa:wb].view(wshape), self.agent.grad[ba:bb].view(1, wshape[1])))
        self._workspaces: dict[int, dict[str, Any]] = {}

    def workspace(self, B: int) -> dict[str, Any]:
        """Preallocated activations/gradients for batch size ``B`` and their (static) views."""
        ws = self._workspaces.get(B)
        if ws is not None:
            return ws
        A = self.agent.act_dim
        widths = list(self.agent.config.hidden_sizes) + [1 + A + self.agent.n_tril]
        X = torch.empty(2, B, self.agent.obs_dim)
        hs = [torch.empty(2, B, w) for w in widths]
        out0 = hs[-1][0]
        dout = torch.empty(B, widths[-1])
        M = torch.empty(B, 3)  # q, err, err^2 (column sums give the metrics)
        stats = torch.empty(1, 3)
        ones = torch.ones(1, B)
        ws = {
            "X": X, "X0": X[0], "X1": X[1],
            "hs": hs,
            "inputs_online": [X[0]] + [h[0] for h in hs[:-1]],
            "inputs_online_t": [X[0].t()] + [h[0].t() for h in hs[:-1]],
            "v_col": out0[:, 0:1], "m": out0[:, 1 : 1 + A], "l": out0[:, 1 + A :], "v_next": hs[-1][1, :, 0],
            "dout": dout, "dv": dout[:, 0], "dv_col": dout[:, 0:1], "dm": dout[:, 1 : 1 + A], "dl": dout[:, 1 + A :],
            "M": M, "q": M[:, 0], "q_col": M[:, 0:1], "err": M[:, 1], "err2": M[:, 2], "stats": stats,
            "ones": ones, "two_over_b": torch.tensor(2.0 / B),
        }
        self._workspaces[B] = ws
        return ws

    @torch.no_grad()
    def __call__(self, obs: torch.Tensor, act: torch.Tensor, rew: torch.Tensor, nobs: torch.Tensor,
                 term: torch.Tensor, bc: BCTerms | None = None) -> dict[str, float]:
        """Hand-derived NAF gradient step (same maths as :func:`autograd_step`).

        With d = u - mu, z = L^T d (so A = -|z|^2 / 2), e = Q - y and g = 2 e / B:
        dLoss/dV = g; dLoss/dL_ij = -g z_j d_i (i >= j; times L_ii on the diagonal for the exp);
        dLoss/dmu = g L z, then times half_range (1 - tanh^2) for the squash. L is never built as a matrix:
        the A(A+1)/2 entries are gathered/scattered with two constant 0/1 matrices (si, sj). Both networks'
        forward passes share one batched matmul per layer; all buffers are preallocated per batch size.
        """
        cfg = self.agent.config
        ws = self.workspace(obs.shape[0])
        B = obs.shape[0]
        X = ws["X"]
        # observations: fold obs into the running statistics, normalise obs and next_obs
        if cfg.normalize_obs:
            nz = self.agent.normalizer
            torch.sub(obs, nz.mean, out=ws["X0"])
            torch.sub(nobs, nz.mean, out=ws["X1"])
            delta = nz.fold_centered(ws["X0"], ws["ones"])
            X.sub_(delta).mul_(nz.inv_std()).clamp_(-nz.clip, nz.clip)
        else:
            ws["X0"].copy_(obs)
            ws["X1"].copy_(nobs)
        # forward: online (index 0) and target (index 1) networks, one batched matmul per layer
        h = X
        hs = ws["hs"]
        relu = cfg.activation == "relu"
        last = len(self._layers) - 1
        for i, (w, b) in enumerate(self._layers):
            h = torch.baddbmm(b, h, w, out=hs[i])
            if i < last:
                if relu:
                    h.relu_()
                else:
                    h.tanh_()
        t = torch.tanh(ws["m"])
        d = act - torch.addcmul(self.agent._center, self.agent._half, t)
        lraw = ws["l"]
        el = torch.exp(lraw)
        lv = torch.where(self._diag, el, lraw)
        ds = torch.mm(d, self._si)  # (B, T): d[:, rows]
        z = torch.mm(ds * lv, self._sj_t)  # (B, A) = L^T d
        torch.addmm(ws["v_col"], z * z, self._neg_half_col, out=ws["q_col"])  # q = v - |z|^2 / 2
        q = ws["q"]
        v_next = ws["v_next"]
        y = self.agent.clip_target(torch.add(rew, v_next, alpha=cfg.gamma).addcmul_(term, v_next, value=-cfg.gamma),
                                   rew)
        err = torch.sub(q, y, out=ws["err"])
        # backward
        if cfg.td_clip > 0:  # Huber: each error's gradient clipped (the squared-error figures below stay)
            torch.mul(err.clamp(-cfg.td_clip, cfg.td_clip), ws["two_over_b"], out=ws["dv"])
        else:
            torch.mul(err, ws["two_over_b"], out=ws["dv"])
        dzs = torch.mm(z * ws["dv_col"], self._neg_sj)  # (B, T): dLoss/dz at [cols]
        torch.mul(dzs * ds, torch.addcmul(self._offdiag_f, el, self._diag_f), out=ws["dl"])
        t2m1 = torch.addcmul(self._neg_one, t, t)  # tanh' = 1 - t^2, negated
        torch.mul(torch.mm(dzs * lv, self._si_t_half), t2m1, out=ws["dm"])
        bc_sq, keep = None, None
        if bc is not None:  # sum_i c_i |(mu_i - u_i) / half|^2 with mu - u = -d: dLoss/dm = 2 c d (t^2 - 1) / half
            c, keep = _bc_row_weights(bc, y, ws["v_col"][:, 0])
            dh = d / self.agent._half
            bc_sq = (dh * dh).sum(1)
            ws["dm"].addcmul_(dh * (2.0 * c)[:, None], t2m1)
        dcur = ws["dout"]
        ones = ws["ones"]
        for i in range(last, -1, -1):
            gw, gb = self._grad_views[i]
            torch.mm(ws["inputs_online_t"][i], dcur, out=gw)
            torch.mm(ones, dcur, out=gb)
            if i > 0:
                dcur = torch.mm(dcur, self._w_online_t[i])
                hin = ws["inputs_online"][i]
                if relu:
                    dcur = torch.ops.aten.threshold_backward(dcur, hin, 0.0)
                else:
                    dcur = dcur * (1.0 - hin * hin)
        metrics = self.agent._apply_gradient()
        torch.mul(err, err, out=ws["err2"])
        q_sum, err_sum, sq_sum = torch.mm(ones, ws["M"], out=ws["stats"]).tolist()[0]
        inv_b = 1.0 / B
        metrics["loss"] = sq_sum * inv_b
        metrics["q_mean"] = q_sum * inv_b
        metrics["target_mean"] = (q_sum - err_sum) * inv_b
        if bc is not None and bc_sq is not None:
            _bc_metrics(metrics, bc_sq, bc, keep, cfg.bc_weight, self.agent.act_dim)
        return metrics
