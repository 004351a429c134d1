"""Agents: NAF (Gu et al. 2016/2017) and the DDPG and Linear-NAF baselines, plus the greedy Policy.

All agents share one interface::

    agent = make_agent(NAFConfig(obs_dim=20, act_dim=7))          # or DDPGConfig / make_agent("linear_naf", ...)
    u = agent.act(obs, explore=True)                              # (act_dim,) float32, action units
    metrics = agent.update(buffer.sample(64))                     # one gradient step -> dict[str, float]
    data = agent.policy_weights(); policy = Policy.from_bytes(data); policy.act(obs)
    agent.save("ckpt.safetensors"); agent = load_agent("ckpt.safetensors")
"""
from __future__ import annotations

import os
from typing import Any

from async_naf.learning.agents.ddpg import DDPGAgent
from async_naf.learning.agents.linear_naf import LinearNAFAgent
from async_naf.learning.agents.naf import NAFAgent, checkpoint_bytes_algorithm
from async_naf.learning.config import ALGORITHMS, DDPGConfig, NAFConfig, config_from_dict
from async_naf.wire import checkpoint
from async_naf.wire.weights import Policy

Agent = NAFAgent | LinearNAFAgent | DDPGAgent


def make_agent(config: NAFConfig | DDPGConfig | str, algorithm: str | None = None, **kwargs: Any) -> Agent:
    """Build an agent.

    ``make_agent(NAFConfig(...))`` -> NAFAgent, ``make_agent(DDPGConfig(...))`` -> DDPGAgent,
    ``make_agent(NAFConfig(...), algorithm="linear_naf")`` -> LinearNAFAgent (both NAF variants take a
    NAFConfig, so a config alone cannot name Linear-NAF), or by name:
    ``make_agent("naf" | "linear_naf" | "ddpg", obs_dim=..., act_dim=..., **config_fields)``.

    Raises:
        ValueError: unknown algorithm name, a config that is not the algorithm's, or bad config.
    """
    if isinstance(config, str):
        if config not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {config!r}; choose one of {ALGORITHMS}")
        cfg_cls = DDPGConfig if config == "ddpg" else NAFConfig
        try:
            cfg = cfg_cls(**kwargs)
        except TypeError as exc:
            raise ValueError(f"bad {cfg_cls.__name__} fields: {exc}") from exc
        return {"naf": NAFAgent, "linear_naf": LinearNAFAgent, "ddpg": DDPGAgent}[config](cfg)
    if kwargs:
        raise ValueError("make_agent(config) takes no extra keyword arguments")
    if algorithm is not None and algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; choose one of {ALGORITHMS}")
    if isinstance(config, DDPGConfig):
        if algorithm not in (None, "ddpg"):
            raise ValueError(f"a DDPGConfig cannot build a {algorithm!r} agent")
        return DDPGAgent(config)
    if isinstance(config, NAFConfig):
        if algorithm == "ddpg":
            raise ValueError("a NAFConfig cannot build a 'ddpg' agent")
        return LinearNAFAgent(config) if algorithm == "linear_naf" else NAFAgent(config)
    raise ValueError(f"make_agent needs a NAFConfig, DDPGConfig or algorithm name, got {type(config).__name__}")


def config_from_yaml(
    path: str | os.PathLike, algorithm: str, obs_dim: int, act_dim: int, **overrides: Any
) -> NAFConfig | DDPGConfig:
    """Build a config from a params file like ``config/naf.yaml`` (section ``naf`` or ``ddpg``).

    ``algorithm`` is ``'naf'``/``'linear_naf'`` (section ``naf``) or ``'ddpg'``; ``overrides`` replace file values.

    Raises:
        ValueError: unknown algorithm, missing section, unknown fields or invalid values.
    """
    import yaml

    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; choose one of {ALGORITHMS}")
    section = "ddpg" if algorithm == "ddpg" else "naf"
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f) or {}
    try:
        params = dict(doc[section]["ros__parameters"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: no '{section}: ros__parameters:' section") from exc
    params.update(overrides)
    params.update(obs_dim=obs_dim, act_dim=act_dim)
    cls = DDPGConfig if section == "ddpg" else NAFConfig
    return config_from_dict(cls, params, str(path))


def load_agent(path: str | os.PathLike) -> Agent:
    """Load a full checkpoint of any algorithm (dispatches on the algorithm recorded in the file; the file
    is read once)."""
    data = checkpoint.read_file(path)
    algo = checkpoint_bytes_algorithm(data, str(path))
    classes: dict[str, type[Agent]] = {"naf": NAFAgent, "linear_naf": LinearNAFAgent, "ddpg": DDPGAgent}
    cls = classes.get(algo)
    if cls is None:
        raise ValueError(f"{path}: unknown algorithm {algo!r} in checkpoint")
    return cls.from_checkpoint_bytes(data, source=str(path))


__all__ = [
    "ALGORITHMS",
    "DDPGAgent",
    "DDPGConfig",
    "LinearNAFAgent",
    "NAFAgent",
    "NAFConfig",
    "Policy",
    "config_from_yaml",
    "load_agent",
    "make_agent",
]
