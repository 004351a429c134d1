"""NAF agent (Normalized Advantage Functions; Gu et al. 2016, asynchronous variant Gu et al. 2017).

Network: observation (normalised, optional) -> hidden layers (default 2 x 100, ReLU) -> one fused linear head
with ``1 + A + A(A+1)/2`` outputs: V(x), the pre-squash mu(x) and the lower-triangular entries of L(x)
(see :mod:`async_naf.learning.agents.naf_math`). mu is squashed with tanh into the action bounds.

Learning: ``loss = mean((Q(x, u) - y)^2)`` with ``y = r + gamma (1 - terminal) V'(x')`` from a target network
that follows the online one by soft updates ``theta' <- theta' + tau (theta - theta')`` after every step;
Adam; optional gradient-norm clipping.

Speed: all parameters of the online and the target network live in one tensor ``theta`` of shape (2, P)
(row 0 online, row 1 target); each layer's weight is a view into it. The default update
(``fast_update=True``) runs both networks' forward passes in one batched matmul per layer, computes the
gradient of the loss with a hand-derived backward pass (no autograd graph), and does Adam and the soft
update as a few operations on the flat vectors. ``fast_update=False`` uses torch.autograd on the plain NAF
formulas (P = L L^T built explicitly); tests check both give the same step.

Example::

    from async_naf.learning.agents import NAFAgent, NAFConfig
    from async_naf.learning.replay import ReplayBuffer
    agent = NAFAgent(NAFConfig(obs_dim=20, act_dim=7, action_low=-1.0, action_high=1.0))
    buf = ReplayBuffer(100_000, 20, 7)
    ...  # buf.add(...)
    metrics = agent.update(buf.sample(agent.config.batch_size))   # {'loss': ..., 'q_mean': ...}
    u = agent.act(obs, explore=True)
    weights = agent.policy_weights()        # bytes for Policy.from_bytes on a policy node
    agent.save("naf.safetensors"); agent = NAFAgent.load("naf.safetensors")
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch

from async_naf.common.noise import make_noise
from async_naf.learning.agents import naf_math, naf_update
from async_naf.learning.agents.common import (
    CHECKPOINT_KIND,
    FlatAdam,
    batch_tensors,
    bounds_array,
    clip_grad_norm_,
)
from async_naf.learning.config import NAFConfig
from async_naf.learning.normalizer import RunningNormalizer
from async_naf.learning.replay import Batch, ReplayBuffer
from async_naf.wire import checkpoint
from async_naf.wire.weights import policy_bytes

_F32_MAX = float(np.finfo(np.float32).max)


class NAFAgent:
    """NAF agent: ``act``, ``update``, ``policy_weights``, ``save``/``load``.

    Attributes:
        config: the :class:`NAFConfig`.
        update_count: gradient steps taken (skipped ones not included).
        skipped_updates: updates whose gradient was not finite; they changed no weights.
        theta: (2, P) float32 parameters, row 0 online network, row 1 target network.
        normalizer: running observation statistics (used when ``config.normalize_obs``).
        noise: exploration noise process.
    """

    algorithm = "naf"
    _supports_fast = True

    def __init__(self, config: NAFConfig) -> None:
        if not isinstance(config, NAFConfig):
            raise ValueError(f"{type(self).__name__} needs a NAFConfig, got {type(config).__name__}")
        self.config = config
        A = config.act_dim
        self.act_dim, self.obs_dim = A, config.obs_dim
        self.n_tril = A * (A + 1) // 2
        low, high = bounds_array("NAFConfig", config.action_low, config.action_high, A)
        self.action_low, self.action_high = low, high
        self._center = torch.from_numpy(0.5 * (high + low))
        self._half = torch.from_numpy(0.5 * (high - low))
        self.layout = self._build_layout()
        self._slices: dict[str, tuple[int, int, tuple[int, ...]]] = {}
        pos = 0
        for name, shape in self.layout:
            n = int(np.prod(shape))
            self._slices[name] = (pos, pos + n, shape)
            pos += n
        self.num_params = pos
        gen = torch.Generator().manual_seed(config.seed)
        self.theta = torch.zeros(2, pos)
        self._init_params(gen)
        self.theta[1].copy_(self.theta[0])
        self.grad = torch.zeros(pos)
        self.optim = FlatAdam(pos, config.lr, config.adam_betas, config.adam_eps)
        self.normalizer = RunningNormalizer(config.obs_dim, config.obs_clip)
        self.noise = make_noise(config.noise, A, config.seed)
        self.update_count = 0
        self.skipped_updates = 0
        self.reward_range = (math.inf, -math.inf)  # smallest and largest reward of the batches so far
        self._theta_online, self._theta_target = self.theta[0], self.theta[1]
        fast = config.fast_update and self._supports_fast and not config.separate_mu  # separate mu: autograd
        self._fast_step = naf_update.HandDerivedStep(self) if fast else None

    # ----- parameters -----------------------------------------------------------------------------------
    def _hidden_layout(self, prefix: str = "l") -> list[tuple[str, tuple[int, ...]]]:
        out, width = [], self.obs_dim
        for i, h in enumerate(self.config.hidden_sizes):
            out += [(f"{prefix}{i}.weight", (width, h)), (f"{prefix}{i}.bias", (h,))]
            width = h
        return out

    def _build_layout(self) -> list[tuple[str, tuple[int, ...]]]:
        """Names and shapes of the parameters, in flat-vector order (weights are (in, out))."""
        h = self.config.hidden_sizes[-1] if self.config.hidden_sizes else self.obs_dim
        if self.config.separate_mu:  # head: V and L; mu_l<i> + mu: mu
            n_out = 1 + self.n_tril
            return (self._hidden_layout() + [("head.weight", (h, n_out)), ("head.bias", (n_out,))]
                    + self._hidden_layout("mu_l") + [("mu.weight", (h, self.act_dim)), ("mu.bias", (self.act_dim,))])
        n_out = 1 + self.act_dim + self.n_tril
        return self._hidden_layout() + [("head.weight", (h, n_out)), ("head.bias", (n_out,))]

    def _init_params(self, gen: torch.Generator) -> None:
        """PyTorch's default Linear init for hidden layers; small uniform for output layers."""
        s = self.config.head_init_scale
        for name, (a, b, shape) in self._slices.items():
            fan_in = shape[0] if name.endswith(".weight") else self._slices[name[:-4] + "weight"][2][0]
            bound = s if name.startswith(("head.", "mu.")) else 1.0 / math.sqrt(fan_in)
            self.theta[0, a:b] = (torch.rand(b - a, generator=gen) * 2.0 - 1.0) * bound

    def params(self, which: int | torch.Tensor = 0) -> dict[str, torch.Tensor]:
        """Named views of the parameters: ``which`` = 0 online, 1 target, or a flat (P,) tensor."""
        flat = self.theta[which] if isinstance(which, int) else which
        return {name: flat[a:b].view(shape) for name, (a, b, shape) in self._slices.items()}

    # ----- forward (reference formulation, autograd-friendly) -------------------------------------------
    def _hidden(self, p: dict[str, torch.Tensor], x: torch.Tensor, prefix: str = "l") -> torch.Tensor:
        act = torch.relu if self.config.activation == "relu" else torch.tanh
        for i in range(len(self.config.hidden_sizes)):
            x = act(torch.addmm(p[f"{prefix}{i}.bias"], x, p[f"{prefix}{i}.weight"]))
        return x

    def outputs(self, p: dict[str, torch.Tensor], xn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(V (B,), mu (B, A) in action units, L entries (B, A(A+1)/2)) for normalised observations (B, obs)."""
        out = torch.addmm(p["head.bias"], self._hidden(p, xn), p["head.weight"])
        A = self.act_dim
        if self.config.separate_mu:
            pre = torch.addmm(p["mu.bias"], self._hidden(p, xn, "mu_l"), p["mu.weight"])
            return out[:, 0], naf_math.squash(pre, self._center, self._half), out[:, 1:]
        mu = naf_math.squash(out[:, 1 : 1 + A], self._center, self._half)
        return out[:, 0], mu, out[:, 1 + A :]

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """Normalised observations (identity when ``normalize_obs`` is off)."""
        return self.normalizer.normalize(obs) if self.config.normalize_obs else obs

    @torch.no_grad()
    def q_values(self, obs: np.ndarray, action: np.ndarray) -> dict[str, np.ndarray]:
        """Online network's Q, V, A, mu and P for a batch (numpy in, numpy out; for analysis and tests)."""
        x = self.normalize(torch.as_tensor(np.asarray(obs, np.float32)))
        u = torch.as_tensor(np.asarray(action, np.float32))
        v, mu, lv = self.outputs(self.params(0), x)
        P = naf_math.precision_matrix(lv, self.act_dim)
        adv = naf_math.advantage(u, mu, P)
        return {"q": (v + adv).numpy(), "v": v.numpy(), "a": adv.numpy(), "mu": mu.numpy(), "p": P.numpy()}

    # ----- acting ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: np.ndarray, explore: bool = False) -> np.ndarray:
        """Action (act_dim,) float32 in the bounds: mu(x), plus annealed exploration noise when ``explore``.

        Raises:
            ValueError: ``obs`` does not have shape (obs_dim,) or is not finite.
        """
        x = np.asarray(obs, np.float32)
        if x.shape != (self.obs_dim,) or not np.isfinite(x).all():
            raise ValueError(f"obs must be a finite ({self.obs_dim},) array, got shape {x.shape}")
        _, mu, _ = self.outputs(self.params(0), self.normalize(torch.from_numpy(x)[None]))
        u = mu[0].numpy()
        if explore:
            u = u + self.noise.sample()
        return np.clip(u, self.action_low, self.action_high).astype(np.float32)

    # ----- learning -------------------------------------------------------------------------------------
    def update(self, batch: Batch, demo_rows: int = 0, demo_filter: bool | None = None) -> dict[str, float]:
        """One gradient step on ``batch``; returns metrics: ``loss`` (mean squared TD error), ``q_mean``,
        ``target_mean`` (mean y), ``grad_norm`` (global gradient 2-norm before clipping), ``skipped``
        (1.0 if the step was skipped), ``skipped_updates`` (total skipped so far) and, with a learning-rate
        schedule (``lr_half_life``), ``lr``; with a behaviour-cloning
        term also ``bc_loss`` (``bc_weight``: over the batch) and ``demo_bc_loss`` (``demo_bc_weight``: over
        the demonstration rows), each the unweighted mean of ``((mu(x) - u) / half_range)^2``.

        ``demo_rows``: the first ``demo_rows`` rows of ``batch`` are demonstrations (the trainer's
        :class:`~async_naf.learning.demos.DemoMixer` puts them first). ``demo_filter``: clone them only
        where ``y > V(x)`` (None: ``demo_bc_filter``; the trainer's pre-training phase clones them all).

        Also folds ``batch.obs`` into the running observation statistics (when ``normalize_obs``), then
        soft-updates the target network. If the gradient is not finite (e.g. a loss that overflows float32),
        neither the Adam step nor the target update happens, ``update_count`` stays, and the step is
        counted in ``skipped_updates`` instead.

        Raises:
            ValueError: batch shapes do not match the agent's dimensions.
        """
        obs, act, rew, nobs, term = batch_tensors(batch, self.obs_dim, self.act_dim)
        bc = self._bc_coefficients(obs.shape[0], int(demo_rows), demo_filter)
        if self._fast_step is not None:
            stats = self._fast_step(obs, act, rew, nobs, term, bc)
        else:
            stats = naf_update.autograd_step(self, obs, act, rew, nobs, term, bc)
        if not stats["skipped"]:
            self.update_count += 1
        return stats

    def train_steps(self, buffer: ReplayBuffer, n: int | None = None) -> dict[str, float]:
        """``n`` (default ``updates_per_step``) updates on batches sampled from ``buffer``; last metrics."""
        stats: dict[str, float] = {}
        for _ in range(self.config.updates_per_step if n is None else n):
            stats = self.update(buffer.sample(self.config.batch_size))
        return stats

    def _bc_coefficients(self, B: int, demo_rows: int, demo_filter: bool | None = None) -> naf_update.BCTerms | None:
        """The behaviour-cloning terms of this update (:class:`~naf_update.BCTerms`); None when both are off
        (``bc_weight`` 0 and no demonstration rows or ``demo_bc_weight`` 0)."""
        cfg = self.config
        demo_rows = min(max(demo_rows, 0), B) if cfg.demo_bc_weight else 0
        if not cfg.bc_weight and not demo_rows:
            return None
        A = self.act_dim
        return naf_update.BCTerms(cfg.bc_weight / (B * A), cfg.demo_bc_weight / (max(demo_rows, 1) * A), demo_rows,
                                  cfg.demo_bc_filter if demo_filter is None else bool(demo_filter))

    def clip_target(self, y: torch.Tensor, rew: torch.Tensor) -> torch.Tensor:
        """``y`` clipped in place into the return range (``config.target_clip``; see :class:`NAFParams`),
        after folding the batch's rewards ``rew`` into :attr:`reward_range`. Returns ``y``."""
        gamma = self.config.gamma
        if not self.config.target_clip or gamma >= 1.0:
            return y
        lo, hi = torch.aminmax(rew)
        r_lo, r_hi = min(self.reward_range[0], float(lo)), max(self.reward_range[1], float(hi))
        self.reward_range = (r_lo, r_hi)
        big = _F32_MAX  # a bound beyond float32 (rewards near its limit) clips nothing
        return y.clamp_(max(-big, min(0.0, r_lo) / (1.0 - gamma)), min(big, max(0.0, r_hi) / (1.0 - gamma)))

    def _normalized_pair(self, obs: torch.Tensor, nobs: torch.Tensor) -> torch.Tensor:
        """Update the statistics with ``obs`` and return the normalised (2, B, obs_dim) stack [obs, next_obs]."""
        if not self.config.normalize_obs:
            return torch.stack((obs, nobs))
        nz = self.normalizer
        nz.update(obs)
        return nz.normalize(torch.stack((obs, nobs)))

    def _apply_gradient(self) -> dict[str, float]:
        """Clip ``self.grad`` (if configured), then take the Adam step and the soft target update.

        Called by both update paths inside their ``torch.no_grad`` scope (no decorator of its own: this is
        the hot path, and a second grad-mode switch per update is measurable).

        A non-finite gradient norm skips both (the weights and Adam moments stay as they were) and counts
        the update in ``skipped_updates``. With a learning-rate schedule (``lr_half_life``) the step uses
        ``lr_at(update_count)``. Returns ``grad_norm`` (before clipping, loss units per parameter unit),
        ``skipped`` (1.0 if this step was skipped, else 0.0), ``skipped_updates`` (total so far) and, with a
        schedule, ``lr`` (the rate of this update's Adam step, or of the last one taken).
        """
        norm = float(clip_grad_norm_(self.grad, self.config.clip_norm))
        skipped = not math.isfinite(norm)
        cfg = self.config
        if skipped:
            self.skipped_updates += 1
        else:
            if cfg.lr_half_life:
                self.optim.lr = cfg.lr_at(self.update_count)
            self.optim.step(self._theta_online, self.grad)
            self._theta_target.lerp_(self._theta_online, cfg.tau)
        stats = {"grad_norm": norm, "skipped": float(skipped), "skipped_updates": float(self.skipped_updates)}
        if cfg.lr_half_life:
            stats["lr"] = self.optim.lr
        return stats

    # ----- weights for policy nodes ---------------------------------------------------------------------
    def _policy_layers(self) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
        p = self.params(0)
        prefix = "mu_l" if self.config.separate_mu else "l"
        layers = [
            (p[f"{prefix}{i}.weight"].numpy().copy(), p[f"{prefix}{i}.bias"].numpy().copy())
            for i in range(len(self.config.hidden_sizes))
        ]
        A = self.act_dim
        if self.config.separate_mu:
            layers.append((p["mu.weight"].numpy().copy(), p["mu.bias"].numpy().copy()))
        else:
            layers.append((p["head.weight"][:, 1 : 1 + A].numpy().copy(), p["head.bias"][1 : 1 + A].numpy().copy()))
        return layers, "tanh"

    def policy_weights(self) -> bytes:
        """safetensors bytes of everything needed to compute mu(x) (see :class:`~async_naf.learning.agents.Policy`)."""
        layers, output = self._policy_layers()
        norm = self.config.normalize_obs
        return policy_bytes(
            layers,
            algorithm=self.algorithm,
            obs_dim=self.obs_dim,
            act_dim=self.act_dim,
            action_low=self.action_low,
            action_high=self.action_high,
            output=output,
            hidden_activation=self.config.activation,
            update_count=self.update_count,
            obs_mean=self.normalizer.mean.numpy() if norm else None,
            obs_inv_std=self.normalizer.inv_std().numpy() if norm else None,
            obs_clip=self.config.obs_clip,
        )

    def policy(self):
        """The current greedy policy as a :class:`~async_naf.learning.agents.Policy` (via :meth:`policy_weights`)."""
        from async_naf.wire.weights import Policy

        return Policy.from_bytes(self.policy_weights())

    # ----- checkpoints ----------------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, np.ndarray]:
        """Every tensor of a full checkpoint (online/target parameters, Adam moments, normaliser)."""
        tensors: dict[str, np.ndarray] = {}
        for name, (a, b, shape) in self._slices.items():
            tensors[f"online.{name}"] = self.theta[0, a:b].view(shape).numpy().copy()
            tensors[f"target.{name}"] = self.theta[1, a:b].view(shape).numpy().copy()
        tensors["adam.m"] = self.optim.m.numpy().copy()
        tensors["adam.v"] = self.optim.v.numpy().copy()
        for k, v in self.normalizer.state().items():
            tensors[f"obs_norm.{k}"] = v
        return tensors

    def checkpoint_bytes(self) -> bytes:
        """Full checkpoint as safetensors bytes (what :meth:`save` writes)."""
        meta = {
            "algorithm": self.algorithm,
            "config": self.config.to_dict(),
            "update_count": self.update_count,
            "adam_step": self.optim.step_count,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "layout": [[n, list(s)] for n, s in self.layout],
            "noise": self.noise.get_state(),
            "reward_range": list(self.reward_range) if math.isfinite(self.reward_range[0]) else None,
        }
        return checkpoint.pack(self.state_tensors(), CHECKPOINT_KIND, meta)

    def save(self, path: str | os.PathLike) -> None:
        """Write a full checkpoint (safetensors; atomic rename) for resuming training."""
        checkpoint.write_file(path, self.checkpoint_bytes())

    @classmethod
    def from_checkpoint_bytes(cls, data: bytes, source: str = "checkpoint") -> NAFAgent:
        """Rebuild an agent from :meth:`checkpoint_bytes` output; ValueError on malformed/mismatched data."""
        tensors, meta, _ = checkpoint.unpack(data, CHECKPOINT_KIND, source)
        if meta.get("algorithm") != cls.algorithm:
            raise ValueError(f"{source}: holds a {meta.get('algorithm')!r} agent, not {cls.algorithm!r}")
        agent = cls(NAFConfig.from_dict(meta.get("config")))
        if meta.get("layout") != [[n, list(s)] for n, s in agent.layout]:
            raise ValueError(f"{source}: parameter layout does not match the config")
        with torch.no_grad():
            for name, (a, b, shape) in agent._slices.items():
                for row, prefix in ((0, "online"), (1, "target")):
                    arr = checkpoint.require(tensors, f"{prefix}.{name}", shape, source)
                    agent.theta[row, a:b] = torch.from_numpy(arr.reshape(-1))
            P = agent.num_params
            agent.optim.m.copy_(torch.from_numpy(checkpoint.require(tensors, "adam.m", (P,), source)))
            agent.optim.v.copy_(torch.from_numpy(checkpoint.require(tensors, "adam.v", (P,), source)))
            if torch.any(agent.optim.v < 0):
                raise ValueError(f"{source}: negative Adam second moment")
        try:
            agent.normalizer.load_state(
                tensors["obs_norm.mean"], tensors["obs_norm.var"], tensors["obs_norm.count"]
            )
            agent.update_count = int(meta["update_count"])
            agent.optim.step_count = int(meta["adam_step"])
            if "noise" in meta:
                agent.noise.set_state(meta["noise"])
            if meta.get("reward_range") is not None:
                lo, hi = (float(x) for x in meta["reward_range"])
                if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                    raise ValueError(f"reward_range {meta['reward_range']!r}")
                agent.reward_range = (lo, hi)
        except (KeyError, TypeError, ValueError, OverflowError) as exc:  # int(Infinity): OverflowError
            raise ValueError(f"{source}: bad checkpoint state: {exc!r}") from exc
        return agent

    @classmethod
    def load(cls, path: str | os.PathLike) -> NAFAgent:
        """Read a full checkpoint written by :meth:`save` (never unpickles; ValueError if malformed)."""
        return cls.from_checkpoint_bytes(checkpoint.read_file(path), source=str(path))


def checkpoint_algorithm(path: str | os.PathLike) -> str:
    """The ``algorithm`` recorded in a checkpoint file (ValueError if it is not an agent checkpoint)."""
    return checkpoint_bytes_algorithm(checkpoint.read_file(path), str(path))


def checkpoint_bytes_algorithm(data: bytes, source: str = "checkpoint") -> str:
    """The ``algorithm`` recorded in checkpoint bytes (ValueError if they are not an agent checkpoint)."""
    head = checkpoint.read_header(data, source)
    if head["kind"] != CHECKPOINT_KIND:
        raise ValueError(f"{source}: holds {head['kind']!r}, not an agent checkpoint")
    return str(head["meta"].get("algorithm"))


__all__ = ["NAFConfig", "NAFAgent", "CHECKPOINT_KIND", "checkpoint_algorithm", "checkpoint_bytes_algorithm"]
