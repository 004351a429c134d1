"""DDPG baseline (Lillicrap et al. 2016) with the same buffer, API and file formats as NAF.

Actor mu(x): hidden layers -> tanh squashed into the action bounds. Critic Q(x, u): [x_norm, u] -> hidden
layers -> scalar. Critic target ``y = r + gamma (1 - terminal) Q'(x', mu'(x'))``; actor loss
``-mean Q(x, mu(x))``; soft target updates with ``tau`` after every step; Adam for both (torch.optim).
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch
from torch import nn

from async_naf.common.noise import make_noise
from async_naf.learning.agents.common import (
    CHECKPOINT_KIND,
    batch_tensors,
    bounds_array,
)
from async_naf.learning.config import DDPGConfig
from async_naf.learning.normalizer import RunningNormalizer
from async_naf.learning.replay import Batch, ReplayBuffer
from async_naf.wire import checkpoint
from async_naf.wire.weights import policy_bytes


def _grad_norm(net: nn.Module, max_norm: float | None) -> float:
    """Global 2-norm of ``net``'s gradients (before clipping); clips them to ``max_norm`` if it is set
    and the norm is finite (a non-finite norm is returned as is and the caller skips the step)."""
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    total = nn.utils.get_total_norm(grads, foreach=True)
    norm = float(total)
    if max_norm is not None and math.isfinite(norm):
        nn.utils.clip_grads_with_norm_(net.parameters(), max_norm, total, foreach=True)
    return norm


def _mlp(sizes: list[int], activation: str, head_scale: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU() if activation == "relu" else nn.Tanh())
    last = layers[-1]
    assert isinstance(last, nn.Linear)
    nn.init.uniform_(last.weight, -head_scale, head_scale)
    nn.init.uniform_(last.bias, -head_scale, head_scale)
    return nn.Sequential(*layers)


class DDPGAgent:
    """DDPG agent with the NAF agent's interface (``act``, ``update``, ``policy_weights``, ``save``/``load``)."""

    algorithm = "ddpg"

    def __init__(self, config: DDPGConfig) -> None:
        if not isinstance(config, DDPGConfig):
            raise ValueError(f"DDPGAgent needs a DDPGConfig, got {type(config).__name__}")
        self.config = config
        self.obs_dim, self.act_dim = config.obs_dim, config.act_dim
        low, high = bounds_array("DDPGConfig", config.action_low, config.action_high, config.act_dim)
        self.action_low, self.action_high = low, high
        self._center = torch.from_numpy(0.5 * (high + low))
        self._half = torch.from_numpy(0.5 * (high - low))
        hs = list(config.hidden_sizes)
        with torch.random.fork_rng(devices=[]):  # nn.Linear init draws from the global generator
            torch.manual_seed(config.seed)
            self.actor = _mlp([self.obs_dim, *hs, self.act_dim], config.activation, config.head_init_scale)
            self.critic = _mlp([self.obs_dim + self.act_dim, *hs, 1], config.activation, config.head_init_scale)
            self.actor_target = _mlp([self.obs_dim, *hs, self.act_dim], config.activation, config.head_init_scale)
            self.critic_target = _mlp([self.obs_dim + self.act_dim, *hs, 1], config.activation, config.head_init_scale)
        self.actor_target.load_state_dict(self.actor.state_dict())
        self.critic_target.load_state_dict(self.critic.state_dict())
        for p in list(self.actor_target.parameters()) + list(self.critic_target.parameters()):
            p.requires_grad_(False)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr, betas=config.adam_betas,
                                          eps=config.adam_eps, foreach=True)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr, betas=config.adam_betas,
                                           eps=config.adam_eps, foreach=True)
        self.normalizer = RunningNormalizer(self.obs_dim, config.obs_clip)
        self.noise = make_noise(config.noise, self.act_dim, config.seed)
        self.update_count = 0
        self.skipped_updates = 0  # updates whose gradient was not finite (they changed no weights)

    def _norm(self, obs: torch.Tensor) -> torch.Tensor:
        return self.normalizer.normalize(obs) if self.config.normalize_obs else obs

    def _mu(self, net: nn.Module, xn: torch.Tensor) -> torch.Tensor:
        return self._center + self._half * torch.tanh(net(xn))

    @torch.no_grad()
    def act(self, obs: np.ndarray, explore: bool = False) -> np.ndarray:
        """Action (act_dim,) float32 in the bounds: actor output, plus annealed noise when ``explore``."""
        x = np.asarray(obs, np.float32)
        if x.shape != (self.obs_dim,) or not np.isfinite(x).all():
            raise ValueError(f"obs must be a finite ({self.obs_dim},) array, got shape {x.shape}")
        u = self._mu(self.actor, self._norm(torch.from_numpy(x)[None]))[0].numpy()
        if explore:
            u = u + self.noise.sample()
        return np.clip(u, self.action_low, self.action_high).astype(np.float32)

    def update(self, batch: Batch) -> dict[str, float]:
        """One critic step and one actor step; metrics: loss (critic), actor_loss, q_mean, target_mean,
        grad_norm / actor_grad_norm (gradient 2-norms before clipping; actor_loss and actor_grad_norm are
        nan when the critic step was skipped), skipped (1.0 if a step was skipped) and skipped_updates
        (total so far).

        A non-finite critic gradient skips the whole update (no Adam step, no target update); a non-finite
        actor gradient skips the actor step and the target updates (the critic step stands). Either way
        ``update_count`` stays and ``skipped_updates`` goes up.
        """
        cfg = self.config
        obs, act, rew, nobs, term = batch_tensors(batch, self.obs_dim, self.act_dim)
        if cfg.normalize_obs:
            self.normalizer.update(obs)
        xn, xn2 = self._norm(obs), self._norm(nobs)
        with torch.no_grad():
            q_next = self.critic_target(torch.cat((xn2, self._mu(self.actor_target, xn2)), 1))[:, 0]
            y = rew + cfg.gamma * (1.0 - term) * q_next
        q = self.critic(torch.cat((xn, act), 1))[:, 0]
        critic_loss = torch.mean((q - y) ** 2)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        critic_norm = _grad_norm(self.critic, cfg.clip_norm)
        actor_norm = math.nan
        actor_loss = torch.tensor(math.nan)
        skipped = not math.isfinite(critic_norm)
        if not skipped:
            self.critic_opt.step()
            for p in self.critic.parameters():
                p.requires_grad_(False)
            actor_loss = -self.critic(torch.cat((xn, self._mu(self.actor, xn)), 1)).mean()
            self.actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            for p in self.critic.parameters():
                p.requires_grad_(True)
            actor_norm = _grad_norm(self.actor, cfg.clip_norm)
            skipped = not math.isfinite(actor_norm)
        if skipped:
            self.skipped_updates += 1
        else:
            self.actor_opt.step()
            with torch.no_grad():
                for net, tgt in ((self.actor, self.actor_target), (self.critic, self.critic_target)):
                    torch._foreach_lerp_(list(tgt.parameters()), list(net.parameters()), cfg.tau)
            self.update_count += 1
        vals = torch.stack((critic_loss.detach(), actor_loss.detach(), q.detach().mean(), y.mean())).tolist()
        metrics = dict(zip(("loss", "actor_loss", "q_mean", "target_mean"), vals))
        metrics.update(grad_norm=critic_norm, actor_grad_norm=actor_norm, skipped=float(skipped),
                       skipped_updates=float(self.skipped_updates))
        return metrics

    def train_steps(self, buffer: ReplayBuffer, n: int | None = None) -> dict[str, float]:
        """``n`` (default ``updates_per_step``) updates on batches sampled from ``buffer``; last metrics."""
        stats: dict[str, float] = {}
        for _ in range(self.config.updates_per_step if n is None else n):
            stats = self.update(buffer.sample(self.config.batch_size))
        return stats

    def policy_weights(self) -> bytes:
        """safetensors bytes of the actor (see :class:`~async_naf.learning.agents.Policy`)."""
        linears = [m for m in self.actor if isinstance(m, nn.Linear)]
        layers = [(m.weight.detach().t().numpy().copy(), m.bias.detach().numpy().copy()) for m in linears]
        norm = self.config.normalize_obs
        return policy_bytes(
            layers,
            algorithm=self.algorithm,
            obs_dim=self.obs_dim,
            act_dim=self.act_dim,
            action_low=self.action_low,
            action_high=self.action_high,
            output="tanh",
            hidden_activation=self.config.activation,
            update_count=self.update_count,
            obs_mean=self.normalizer.mean.numpy() if norm else None,
            obs_inv_std=self.normalizer.inv_std().numpy() if norm else None,
            obs_clip=self.config.obs_clip,
        )

    def policy(self):
        from async_naf.wire.weights import Policy

        return Policy.from_bytes(self.policy_weights())

    # ----- checkpoints ----------------------------------------------------------------------------------
    def _modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critic": self.critic,
                "actor_target": self.actor_target, "critic_target": self.critic_target}

    def checkpoint_bytes(self) -> bytes:
        tensors: dict[str, np.ndarray] = {}
        for prefix, mod in self._modules().items():
            for k, v in mod.state_dict().items():
                tensors[f"{prefix}.{k}"] = v.detach().numpy().copy()
        steps = {}
        for prefix, opt in (("actor_opt", self.actor_opt), ("critic_opt", self.critic_opt)):
            sd = opt.state_dict()
            for idx, st in sd["state"].items():
                tensors[f"{prefix}.{idx}.exp_avg"] = st["exp_avg"].numpy().copy()
                tensors[f"{prefix}.{idx}.exp_avg_sq"] = st["exp_avg_sq"].numpy().copy()
                steps[f"{prefix}.{idx}"] = float(st["step"])
        for k, v in self.normalizer.state().items():
            tensors[f"obs_norm.{k}"] = v
        meta = {
            "algorithm": self.algorithm,
            "config": self.config.to_dict(),
            "update_count": self.update_count,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "adam_steps": steps,
            "noise": self.noise.get_state(),
        }
        return checkpoint.pack(tensors, CHECKPOINT_KIND, meta)

    def save(self, path: str | os.PathLike) -> None:
        """Write a full checkpoint (safetensors, atomic rename)."""
        checkpoint.write_file(path, self.checkpoint_bytes())

    @classmethod
    def from_checkpoint_bytes(cls, data: bytes, source: str = "checkpoint") -> DDPGAgent:
        tensors, meta, _ = checkpoint.unpack(data, CHECKPOINT_KIND, source)
        if meta.get("algorithm") != cls.algorithm:
            raise ValueError(f"{source}: holds a {meta.get('algorithm')!r} agent, not {cls.algorithm!r}")
        agent = cls(DDPGConfig.from_dict(meta.get("config")))
        try:
            for prefix, mod in agent._modules().items():
                sd = {}
                for k, v in mod.state_dict().items():
                    arr = checkpoint.require(tensors, f"{prefix}.{k}", tuple(v.shape), source)
                    sd[k] = torch.from_numpy(arr)
                mod.load_state_dict(sd)
            steps = meta.get("adam_steps", {})
            for prefix, opt in (("actor_opt", agent.actor_opt), ("critic_opt", agent.critic_opt)):
                opt_sd = opt.state_dict()
                params = [p for g in opt.param_groups for p in g["params"]]
                state = {}
                for idx, p in enumerate(params):
                    key = f"{prefix}.{idx}"
                    if key not in steps:
                        continue
                    state[idx] = {
                        "step": torch.tensor(float(steps[key])),
                        "exp_avg": torch.from_numpy(
                            checkpoint.require(tensors, key + ".exp_avg", tuple(p.shape), source)),
                        "exp_avg_sq": torch.from_numpy(
                            checkpoint.require(tensors, key + ".exp_avg_sq", tuple(p.shape), source)),
                    }
                opt_sd["state"] = state
                opt.load_state_dict(opt_sd)
            agent.normalizer.load_state(tensors["obs_norm.mean"], tensors["obs_norm.var"], tensors["obs_norm.count"])
            agent.update_count = int(meta["update_count"])
            if "noise" in meta:
                agent.noise.set_state(meta["noise"])
        except (KeyError, TypeError, ValueError, OverflowError, RuntimeError) as exc:
            raise ValueError(f"{source}: bad DDPG checkpoint: {exc!r}") from exc
        return agent

    @classmethod
    def load(cls, path: str | os.PathLike) -> DDPGAgent:
        """Read a full checkpoint written by :meth:`save` (never unpickles; ValueError if malformed)."""
        return cls.from_checkpoint_bytes(checkpoint.read_file(path), source=str(path))
