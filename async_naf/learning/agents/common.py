"""Shared pieces of the agents: config validation, action bounds, batches as tensors, flat Adam."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch

from async_naf.common.checks import bounds_array, number
from async_naf.common.noise import NoiseConfig
from async_naf.wire.batch import Batch

ACTIVATIONS = ("relu", "tanh")


def check_positive_int(owner: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{owner}.{name} must be a positive integer, got {value!r}")
    return int(value)


def normalize_bound(value: float | Sequence[float]) -> float | tuple[float, ...]:
    if np.ndim(value) == 0:
        return float(cast(float, value))
    return tuple(float(v) for v in cast(Sequence[float], value))


def validate_common(cfg: Any) -> None:
    """Validate the fields that NAFConfig and DDPGConfig share (raises ValueError)."""
    owner = type(cfg).__name__
    cfg.obs_dim = check_positive_int(owner, "obs_dim", cfg.obs_dim)
    cfg.act_dim = check_positive_int(owner, "act_dim", cfg.act_dim)
    cfg.action_low = normalize_bound(cfg.action_low)
    cfg.action_high = normalize_bound(cfg.action_high)
    bounds_array(owner, cfg.action_low, cfg.action_high, cfg.act_dim)
    hs = cfg.hidden_sizes
    if isinstance(hs, (int, np.integer)):
        hs = (hs,)
    cfg.hidden_sizes = tuple(check_positive_int(owner, "hidden_sizes[i]", h) for h in hs)
    if cfg.activation not in ACTIVATIONS:
        raise ValueError(f"{owner}.activation must be one of {ACTIVATIONS}, got {cfg.activation!r}")
    cfg.gamma = number(f"{owner}.gamma", cfg.gamma, 0.0, 1.0)
    cfg.tau = number(f"{owner}.tau", cfg.tau, 0.0, 1.0, low_open=True)
    cfg.batch_size = check_positive_int(owner, "batch_size", cfg.batch_size)
    cfg.updates_per_step = check_positive_int(owner, "updates_per_step", cfg.updates_per_step)
    if cfg.grad_clip_norm is not None:
        cfg.grad_clip_norm = number(f"{owner}.grad_clip_norm", cfg.grad_clip_norm, 0.0, low_open=True)
    cfg.obs_clip = number(f"{owner}.obs_clip", cfg.obs_clip, 0.0, low_open=True)
    cfg.normalize_obs = bool(cfg.normalize_obs)
    b1, b2 = cfg.adam_betas
    cfg.adam_betas = (number(f"{owner}.adam_betas[0]", b1, 0.0, 1.0, high_open=True),
                      number(f"{owner}.adam_betas[1]", b2, 0.0, 1.0, high_open=True))
    cfg.adam_eps = number(f"{owner}.adam_eps", cfg.adam_eps, 0.0, 1.0, low_open=True)
    if isinstance(cfg.noise, dict):
        cfg.noise = NoiseConfig(**cfg.noise)
    if not isinstance(cfg.noise, NoiseConfig):
        raise ValueError(f"{owner}.noise must be a NoiseConfig, got {type(cfg.noise).__name__}")
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, (int, np.integer)):
        raise ValueError(f"{owner}.seed must be an integer, got {cfg.seed!r}")
    cfg.seed = int(cfg.seed)


@dataclass
class AgentConfig:
    """Settings every agent shares (:class:`~async_naf.learning.agents.NAFConfig`,
    :class:`~async_naf.learning.agents.DDPGConfig`).

    Attributes:
        obs_dim: observation size.
        act_dim: action size.
        action_low, action_high: action bounds, one number for all dimensions or ``act_dim`` numbers, in
            action units (e.g. rad/s for joint velocities).
        hidden_sizes: widths of the hidden layers (default two layers of 100, as in Gu et al. 2017).
        activation: hidden activation, ``'relu'`` or ``'tanh'``.
        gamma: discount factor per step, in [0, 1].
        tau: soft target-update rate per gradient step, in (0, 1].
        batch_size: transitions per gradient step.
        grad_clip_norm: clip the global gradient 2-norm to this value; ``None`` = no clipping.
        updates_per_step: gradient steps per environment step (used by ``train_steps`` and the trainer).
        normalize_obs: normalise observations with running mean/variance (saved with the weights).
        obs_clip: normalised observations are clipped to [-obs_clip, obs_clip] (standard deviations).
        noise: exploration noise for ``act(obs, explore=True)``.
        seed: seed for weight initialisation and noise.
        adam_betas, adam_eps: Adam hyper-parameters.
        head_init_scale: output layers start with weights and biases uniform in [-s, s].
    """

    obs_dim: int
    act_dim: int
    action_low: float | Sequence[float] = -1.0
    action_high: float | Sequence[float] = 1.0
    hidden_sizes: tuple[int, ...] = (100, 100)
    activation: str = "relu"
    gamma: float = 0.98
    tau: float = 0.005
    batch_size: int = 64
    grad_clip_norm: float | None = None
    updates_per_step: int = 1
    normalize_obs: bool = True
    obs_clip: float = 10.0
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    seed: int = 0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    head_init_scale: float = 3e-3

    def __post_init__(self) -> None:
        validate_common(self)
        self.head_init_scale = number(f"{type(self).__name__}.head_init_scale", self.head_init_scale, 0.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (inverse: ``from_dict``)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Any:  # config_from_dict rejects what is not a dict
        return config_from_dict(cls, data, cls.__name__)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """JSON-able dict of a config dataclass (nested NoiseConfig as a dict, tuples as lists)."""
    return json_ready(dataclasses.asdict(cfg))


def json_ready(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj


def config_from_dict(cls: type, data: Any, source: str = "checkpoint") -> Any:
    """Rebuild a config dataclass from :func:`config_to_dict` output (ValueError if it does not fit)."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: config is not a JSON object")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{source}: unknown {cls.__name__} fields {sorted(unknown)}")
    try:  # lists from JSON become tuples in the config's own validation (validate_common)
        return cls(**data)
    except TypeError as exc:
        raise ValueError(f"{source}: bad {cls.__name__}: {exc}") from exc


def batch_tensors(batch: Batch, obs_dim: int, act_dim: int) -> tuple[torch.Tensor, ...]:
    """``batch`` as float32 torch tensors (zero-copy for float32 numpy input); checks shapes only.

    Raises:
        ValueError: wrong shapes (validation of values happens when data enters the replay buffer).
    """
    out = []
    for x in batch:
        if isinstance(x, torch.Tensor):
            t = x if x.dtype == torch.float32 else x.float()
        else:
            t = torch.from_numpy(np.asarray(x, dtype=np.float32))
        out.append(t)
    obs, act, rew, nobs, term = out
    n = obs.shape[0] if obs.ndim == 2 else -1
    if (
        obs.shape != (n, obs_dim)
        or nobs.shape != (n, obs_dim)
        or act.shape != (n, act_dim)
        or rew.shape != (n,)
        or term.shape != (n,)
        or n < 1
    ):
        raise ValueError(
            f"batch shapes {[tuple(t.shape) for t in out]} do not match obs_dim={obs_dim}, act_dim={act_dim}"
        )
    return obs, act, rew, nobs, term


class FlatAdam:
    """Adam (Kingma & Ba; same arithmetic as ``torch.optim.Adam`` without weight decay) on one flat tensor.

    All parameters of a network live in one contiguous float32 vector, so a step is a handful of tensor
    operations regardless of how many layers there are.
    """

    def __init__(self, numel: int, lr: float, betas: tuple[float, float], eps: float) -> None:
        self.lr = float(lr)
        self.beta1, self.beta2 = float(betas[0]), float(betas[1])
        self.eps = float(eps)
        self.m = torch.zeros(numel)
        self.v = torch.zeros(numel)
        self._step = torch.zeros(())  # float step counter, as torch.optim.Adam keeps it
        self._one = torch.ones(())
        self._fused = hasattr(torch, "_fused_adam_")

    @property
    def step_count(self) -> int:
        """Adam steps taken (bias correction uses it)."""
        return int(self._step)

    @step_count.setter
    def step_count(self, value: int) -> None:
        self._step.fill_(float(value))

    @torch.no_grad()
    def step(self, param: torch.Tensor, grad: torch.Tensor) -> None:
        """One Adam step on ``param`` (in place) with gradient ``grad`` (same shape, flat).

        Uses PyTorch's fused CPU Adam kernel (what ``torch.optim.Adam(fused=True)`` calls: one pass over the
        vector) when available, else the same arithmetic as ``torch.optim.Adam``'s default implementation.
        """
        self._step.add_(self._one)
        if self._fused:
            torch._fused_adam_(
                [param], [grad], [self.m], [self.v], [], [self._step],
                lr=self.lr, beta1=self.beta1, beta2=self.beta2, weight_decay=0.0, eps=self.eps,
                amsgrad=False, maximize=False,
            )
            return
        t = float(self._step)
        bc1 = 1.0 - self.beta1**t
        bc2_sqrt = math.sqrt(1.0 - self.beta2**t)
        self.m.lerp_(grad, 1.0 - self.beta1)
        self.v.mul_(self.beta2).addcmul_(grad, grad, value=1.0 - self.beta2)
        denom = self.v.sqrt().div_(bc2_sqrt).add_(self.eps)
        param.addcdiv_(self.m, denom, value=-self.lr / bc1)


@torch.no_grad()
def clip_grad_norm_(grad: torch.Tensor, max_norm: float | None) -> torch.Tensor:
    """Scale the flat ``grad`` in place so its 2-norm is at most ``max_norm``; return the norm before clipping.

    Same rule as ``torch.nn.utils.clip_grad_norm_`` (factor ``max_norm / (norm + 1e-6)``, clamped to 1),
    without a Python-side branch.
    """
    norm = torch.linalg.vector_norm(grad)
    if max_norm is not None:
        grad.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0))
    return norm
