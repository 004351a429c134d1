"""The Batch of transitions: what the collector sends, the replay buffer stores and ``agent.update`` takes.

Shapes and dtypes (``B`` rows): ``obs`` (B, obs_dim) float32, ``action`` (B, act_dim) float32 in action
units (rad/s), ``reward`` (B,) float32, ``next_obs`` (B, obs_dim) float32, ``terminal`` (B,) float32 in
{0, 1} (1 = a true terminal state: the target does not bootstrap; a time-limit cut-off is *not* terminal).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

BATCH_FIELDS = ("obs", "action", "reward", "next_obs", "terminal")


class Batch(NamedTuple):
    """A batch of transitions (numpy arrays, or torch tensors of the same shapes)."""

    obs: np.ndarray  # (B, obs_dim) float32
    action: np.ndarray  # (B, act_dim) float32, action units
    reward: np.ndarray  # (B,) float32
    next_obs: np.ndarray  # (B, obs_dim) float32
    terminal: np.ndarray  # (B,) float32 in {0, 1}


def validate_batch(batch: Batch, obs_dim: int, act_dim: int) -> Batch:
    """Check shapes and values of ``batch``; return it as float32 numpy arrays.

    Raises:
        ValueError: wrong number of fields or shapes, inconsistent row counts, non-finite values (also after
            conversion to float32) or a terminal flag other than 0/1.
    """
    if len(batch) != len(BATCH_FIELDS):
        raise ValueError(f"a Batch has {len(BATCH_FIELDS)} fields {BATCH_FIELDS}, got {len(batch)}")
    try:
        with np.errstate(over="ignore"):  # float64 values beyond float32 become inf and are rejected below
            arrays = [np.asarray(x, dtype=np.float32) for x in batch]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"batch fields must be numeric arrays: {exc}") from exc
    obs, action, reward, next_obs, terminal = arrays
    if obs.ndim != 2:
        raise ValueError(f"obs must have shape (B, {obs_dim}), got {obs.shape}")
    n = obs.shape[0]
    expected = {
        "obs": (n, obs_dim),
        "action": (n, act_dim),
        "reward": (n,),
        "next_obs": (n, obs_dim),
        "terminal": (n,),
    }
    for name, arr in zip(BATCH_FIELDS, arrays):
        if arr.shape != expected[name]:
            raise ValueError(f"{name} must have shape {expected[name]}, got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or Inf (or a value too large for float32)")
    if not np.all((terminal == 0.0) | (terminal == 1.0)):
        raise ValueError("terminal must be 0 or 1")
    return Batch(obs, action, reward, next_obs, terminal)
