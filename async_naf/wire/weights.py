"""Greedy policy mu(x) for policy nodes: built from ``agent.policy_weights()`` bytes, pure numpy.

The bytes are a safetensors file (see :mod:`async_naf.wire.checkpoint`, kind ``"policy"``) holding:

- ``layer{i}.weight`` (in, out) float32 and ``layer{i}.bias`` (out,) float32 for ``i = 0 .. n_layers-1``:
  hidden layers use ``meta['hidden_activation']`` (``'relu'`` or ``'tanh'``), the last layer outputs the
  action pre-activation;
- ``obs_mean`` / ``obs_inv_std`` (obs_dim,) float32 when ``meta['normalize_obs']`` (normalised input is
  ``clip((obs - mean) * inv_std, -obs_clip, obs_clip)``);
- meta: ``algorithm``, ``obs_dim``, ``act_dim``, ``action_low``/``action_high`` (act_dim floats, action units),
  ``output`` (``'tanh'``: ``center + half_range * tanh(a)``; ``'clip'``: ``clip(a, low, high)``),
  ``n_layers``, ``update_count``, ``obs_clip``.

A Policy holds no optimiser and no torch state: ``act`` on one observation takes tens of microseconds.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from async_naf.common.checks import bounds_array, number
from async_naf.wire import checkpoint

POLICY_KIND = "policy"
OUTPUTS = ("tanh", "clip")


class Policy:
    """Deterministic policy ``mu(x)`` (greedy action of NAF / Linear-NAF, actor of DDPG).

    Attributes:
        obs_dim, act_dim: sizes.
        update_count: number of gradient updates of the agent that produced these weights.
        algorithm: ``'naf'``, ``'linear_naf'`` or ``'ddpg'``.
        action_low, action_high: (act_dim,) float32 bounds in action units.
    """

    def __init__(self, tensors: dict[str, np.ndarray], meta: dict[str, Any], source: str = "policy weights") -> None:
        try:
            self.obs_dim = int(meta["obs_dim"])
            self.act_dim = int(meta["act_dim"])
            n_layers = int(meta["n_layers"])
            self.update_count = int(meta.get("update_count", 0))
            self.algorithm = str(meta.get("algorithm", "unknown"))
            self.output = str(meta["output"])
            self.hidden_activation = str(meta.get("hidden_activation", "relu"))
            self.normalize_obs = bool(meta.get("normalize_obs", False))
            obs_clip = meta["obs_clip"]
            low = np.asarray(meta["action_low"], np.float64)
            high = np.asarray(meta["action_high"], np.float64)
        except (KeyError, TypeError, ValueError, OverflowError) as exc:  # int(Infinity): OverflowError
            raise ValueError(f"{source}: bad policy metadata: {exc!r}") from exc
        self.obs_clip = number(f"{source}: obs_clip", obs_clip, 0.0, low_open=True)
        if self.obs_dim < 1 or self.act_dim < 1 or n_layers < 1:
            raise ValueError(
                f"{source}: bad dimensions obs_dim={self.obs_dim} act_dim={self.act_dim} n_layers={n_layers}")
        if self.output not in OUTPUTS or self.hidden_activation not in ("relu", "tanh"):
            raise ValueError(f"{source}: unknown output {self.output!r} or activation {self.hidden_activation!r}")
        if low.shape != (self.act_dim,) or high.shape != (self.act_dim,):
            raise ValueError(f"{source}: action bounds must be {self.act_dim} pairs with low < high")
        low, high = bounds_array(source, low, high, self.act_dim)  # finite, low < high
        self.action_low, self.action_high = low, high
        self._center = (0.5 * (high + low)).astype(np.float32)
        self._half = (0.5 * (high - low)).astype(np.float32)
        self.layers: list[tuple[np.ndarray, np.ndarray]] = []
        width = self.obs_dim
        for i in range(n_layers):
            w = tensors.get(f"layer{i}.weight")
            b = tensors.get(f"layer{i}.bias")
            if w is None or b is None or w.ndim != 2 or w.shape[0] != width or b.shape != (w.shape[1],):
                raise ValueError(f"{source}: layer {i} missing or with inconsistent shapes")
            self.layers.append((np.ascontiguousarray(w, np.float32), np.ascontiguousarray(b, np.float32)))
            width = w.shape[1]
        if width != self.act_dim:
            raise ValueError(f"{source}: last layer outputs {width} values, act_dim is {self.act_dim}")
        if self.normalize_obs:
            mean = checkpoint.require(tensors, "obs_mean", (self.obs_dim,), source)
            inv = checkpoint.require(tensors, "obs_inv_std", (self.obs_dim,), source)
            self._mean, self._inv_std = mean, inv

    @classmethod
    def from_bytes(cls, data: bytes) -> Policy:
        """Build a policy from ``agent.policy_weights()`` bytes; ValueError on malformed/mismatched data."""
        tensors, meta, _ = checkpoint.unpack(data, POLICY_KIND, source="policy weights")
        return cls(tensors, meta)

    @classmethod
    def load(cls, path) -> Policy:
        """Read policy weights from a file written with ``open(path, 'wb').write(agent.policy_weights())``."""
        tensors, meta, _ = checkpoint.unpack(checkpoint.read_file(path), POLICY_KIND, source=str(path))
        return cls(tensors, meta, source=str(path))

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Greedy action for one observation (obs_dim,) -> (act_dim,) float32 within the bounds.

        Also accepts a batch (N, obs_dim) -> (N, act_dim).

        Raises:
            ValueError: wrong shape or non-finite observation.
        """
        x = np.asarray(obs, dtype=np.float32)
        if x.shape[-1:] != (self.obs_dim,) or x.ndim > 2:
            raise ValueError(f"observation must have shape ({self.obs_dim},) or (N, {self.obs_dim}), got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("observation contains NaN or Inf")
        if self.normalize_obs:
            x = (x - self._mean) * self._inv_std
            np.clip(x, -self.obs_clip, self.obs_clip, out=x)
        last = len(self.layers) - 1
        for i, (w, b) in enumerate(self.layers):
            x = x @ w
            x += b
            if i < last:
                if self.hidden_activation == "relu":
                    np.maximum(x, 0.0, out=x)
                else:
                    np.tanh(x, out=x)
        if self.output == "tanh":
            np.tanh(x, out=x)
            x *= self._half
            x += self._center
        # clip also after tanh: float rounding of center + half * tanh can leave the bounds by an ulp
        # (x is this call's own array: clipped in place, np.clip's Python wrapper costs more than the work)
        np.maximum(x, self.action_low, out=x)
        return np.minimum(x, self.action_high, out=x)


def policy_bytes(
    layers: list[tuple[np.ndarray, np.ndarray]],
    *,
    algorithm: str,
    obs_dim: int,
    act_dim: int,
    action_low: np.ndarray,
    action_high: np.ndarray,
    output: str,
    hidden_activation: str,
    update_count: int,
    obs_mean: np.ndarray | None,
    obs_inv_std: np.ndarray | None,
    obs_clip: float,
) -> bytes:
    """Serialise a policy (used by the agents' ``policy_weights``)."""
    tensors: dict[str, np.ndarray] = {}
    for i, (w, b) in enumerate(layers):
        tensors[f"layer{i}.weight"] = np.ascontiguousarray(w, np.float32)
        tensors[f"layer{i}.bias"] = np.ascontiguousarray(b, np.float32)
    normalize = obs_mean is not None
    if normalize:
        tensors["obs_mean"] = np.asarray(obs_mean, np.float32)
        tensors["obs_inv_std"] = np.asarray(obs_inv_std, np.float32)
    meta = {
        "algorithm": algorithm,
        "obs_dim": int(obs_dim),
        "act_dim": int(act_dim),
        "action_low": [float(v) for v in action_low],
        "action_high": [float(v) for v in action_high],
        "output": output,
        "hidden_activation": hidden_activation,
        "n_layers": len(layers),
        "update_count": int(update_count),
        "normalize_obs": normalize,
        "obs_clip": float(obs_clip),
    }
    return checkpoint.pack(tensors, POLICY_KIND, meta)
