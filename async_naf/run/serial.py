"""Serial training in one process, no ROS: the trainer's agent and replay buffer on the embedded environment.

The same agent, buffer, noise, update ratio and training simulation (``config/train.yaml``'s ``sim`` section,
the task's ``config/train.<task>.yaml`` over it) as the graph (``async-naf train``), stepped one after the
other in one loop: act -> env step -> store -> ``updates_per_step`` updates, with the policy always current
(the graph's robots act with weights up to ``weights_every_updates`` behind). It is a diagnostic and a
reference, not the project's way of training: it answers "does this reward / these hyper-parameters learn
at all, and how fast in environment steps" in a fraction of the graph's wall time, and records what the
trainer alone cannot see together: greedy success on both criteria, Q values, TD error, the gradient norm,
the noise scale and the observation normaliser, at every evaluation.

    python -m async_naf.run.serial --task door_pull --steps 40000 --seed 0 --json out.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np


@dataclasses.dataclass
class SerialConfig:
    """One serial run. Units: environment steps (one control period each).

    Attributes:
        task: task name.
        steps: environment steps in all.
        seed: seeds the environment, the agent, the buffer and the noise.
        eval_every: greedy evaluation every this many steps.
        eval_episodes: episodes per evaluation (consecutive trials of one robot session).
        eval_seed: seed of the evaluation episodes (held out from training's).
    """

    task: str = "door_pull"
    steps: int = 30_000
    seed: int = 0
    eval_every: int = 5_000
    eval_episodes: int = 20
    eval_seed: int = 10_000

    def __post_init__(self) -> None:
        from async_naf.common.checks import integers

        integers(self, ("steps", "eval_every", "eval_episodes"), 1, 100_000_000)


def train_serial(config: SerialConfig, trainer: Any = None, noise: Any = None, task_config: Any = None,
                 log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Train and evaluate; returns one record per evaluation (env steps, wall s, both criteria, final door
    angles, and the agent's Q / TD-error / gradient-norm figures over the steps since the last evaluation).

    Args:
        trainer: :class:`async_naf.learning.config.TrainerConfig` (algorithm, ``naf.*``/``ddpg.*``,
            ``min_buffer_size``, ``updates_per_step``); default: the graph's (:func:`graph_settings`).
        noise: :class:`async_naf.common.noise.NoiseConfig` of the exploration (default: the graph's policy
            node's, :func:`graph_settings`).
        task_config: :class:`async_naf.task.tasks.TaskConfig` (default: the task's defaults).
    """
    import torch

    from async_naf.common.noise import make_noise
    from async_naf.learning.agents import make_agent
    from async_naf.learning.replay import ReplayBuffer
    from async_naf.run.commands.evaluate import evaluate_policy
    from async_naf.run.env import ArmDoorEnv
    from async_naf.run.graph import training_sim_config
    from async_naf.run.results import counts_text
    from async_naf.wire.weights import Policy

    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    if trainer is None or noise is None:
        graph_trainer, graph_noise = graph_settings(config.task, config.seed)
        trainer, noise = trainer or graph_trainer, noise or graph_noise
    torch.set_num_threads(trainer.num_threads)  # as the trainer node: small matrices, one thread
    # the robots' training simulation (config/train.yaml's sim section, and the task's file over it)
    env = ArmDoorEnv(config.task, sim_config=training_sim_config(config.task), seed=config.seed,
                     task_config=task_config)
    obs_dim, act_dim = env.task.obs_dim, env.task.act_dim
    agent = make_agent(trainer.agent_config(obs_dim, act_dim, env.task.action_low, env.task.action_high),
                       algorithm=trainer.algorithm)
    buffer = ReplayBuffer(min(trainer.replay_capacity, config.steps), obs_dim, act_dim, config.seed,
                          eviction=trainer.replay_eviction)
    explore = make_noise(noise, act_dim, seed=config.seed)
    records: list[dict[str, Any]] = []
    stats: list[dict[str, float]] = []
    owed = 0.0
    t0 = time.monotonic()
    obs, _ = env.reset(seed=config.seed)
    explore.reset()
    ep_return, returns = 0.0, []
    try:
        for step in range(1, config.steps + 1):
            action = np.clip(agent.act(obs) + explore.sample(), env.task.action_low, env.task.action_high)
            nobs, reward, terminated, truncated, _ = env.step(action)
            buffer.add(obs, action, reward, nobs, terminated)
            ep_return += reward
            obs = nobs
            if terminated or truncated:
                returns.append(ep_return)
                ep_return = 0.0
                obs, _ = env.reset()
                explore.reset()
            if len(buffer) >= trainer.min_buffer_size:
                owed += trainer.updates_per_step
                while owed >= 1.0:
                    owed -= 1.0
                    stats.append(agent.update(buffer.sample(trainer.agent_params.batch_size)))
            if step % config.eval_every == 0 or step == config.steps:
                policy = Policy.from_bytes(agent.policy_weights())
                result = evaluate_policy(policy, config.task, config.eval_episodes, seed=config.eval_seed,
                                         task_config=task_config)
                rec = {"env_steps": step, "wall_s": round(time.monotonic() - t0, 1), "updates": agent.update_count,
                       **result.eval_row(), "door_angle_final": result.door_angle_quantiles(),
                       "train_return_mean": float(np.mean(returns)) if returns else float("nan"),
                       **_summarise(stats), "noise_scale": explore.current_scale,
                       **_normaliser(agent), "failures": result.failure_counts()}
                records.append(rec)
                stats, returns = [], []
                log(f"[{rec['env_steps']:>7}] success {rec['success_rate']:4.0%} strict "
                    f"{rec['strict_success_rate']:4.0%} door median {rec['door_angle_median']:.2f} rad  "
                    f"q {rec.get('q_mean', float('nan')):7.2f}  td {rec.get('loss', float('nan')):7.3f}  "
                    f"|g| {rec.get('grad_norm', float('nan')):6.2f}  {rec['wall_s']:.0f} s  failed: "
                    + (counts_text(rec["failures"]) or "none"))
    finally:
        env.close()
    return records


def graph_settings(task: str, seed: int, config_file: str | None = None,
                   trainer_sets: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """The trainer's config and the policy's exploration noise as a graph run gets them: the dataclass
    defaults, then ``config/train.yaml`` with the task's ``config/train.<task>.yaml`` over it (or ``config_file``
    instead of both), then ``trainer_sets`` (``{"naf.lr": 3e-4}``)."""
    from async_naf.common.noise import NoiseConfig
    from async_naf.learning.config import TrainerConfig
    from async_naf.run.graph import config_overrides
    from async_naf.wire.params import build

    overrides = config_overrides(config_file, task=task)
    policy = overrides.get("/**/policy", {})
    noise = build(NoiseConfig, {k[len("noise."):]: v for k, v in policy.items() if k.startswith("noise.")})
    values = {**overrides.get("/trainer", {}), **(trainer_sets or {}), "task": task, "seed": seed}
    allowed = {k for k in values if k.split(".")[0] in TrainerConfig.__dataclass_fields__}
    unknown = sorted(set(trainer_sets or {}) - allowed)
    if unknown:  # config/train.yaml's node-only parameters are left out above; a --set never silently is
        raise ValueError(f"unknown trainer parameter(s) {', '.join(unknown)}: TrainerConfig has "
                         f"{', '.join(sorted(TrainerConfig.__dataclass_fields__))} (nested: naf.lr, ddpg.tau, ...)")
    return build(TrainerConfig, {k: values[k] for k in allowed}), noise


def _summarise(stats: list[dict[str, float]]) -> dict[str, float]:
    """Means of the agent's update metrics since the last evaluation."""
    if not stats:
        return {}
    keys = ("loss", "q_mean", "target_mean", "grad_norm")
    out = {k: float(np.mean([s[k] for s in stats if k in s])) for k in keys if any(k in s for s in stats)}
    out["skipped"] = float(sum(s.get("skipped", 0.0) for s in stats))
    return out


def _normaliser(agent: Any) -> dict[str, float]:
    """How far the observation normaliser has moved: mean |mean| and mean std over the inputs."""
    norm = getattr(agent, "normalizer", None)
    if norm is None:
        return {}
    mean, var = np.asarray(norm.mean, float), np.asarray(norm.var, float)
    return {"norm_mean_abs": float(np.mean(np.abs(mean))), "norm_std_mean": float(np.mean(np.sqrt(var))),
            "norm_count": float(norm.count)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m async_naf.run.serial", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="door_pull", choices=("reach", "door_pull", "door_push"))
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=5_000)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--algorithm", default="naf", choices=("naf", "linear_naf", "ddpg"))
    parser.add_argument("--task-set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a TaskConfig field (YAML value), e.g. w_door=3")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="PARAM=VALUE",
                        help="override a trainer parameter over config/train.yaml's, e.g. naf.lr=3e-4 "
                             "(as async-naf train --set trainer.PARAM=VALUE)")
    parser.add_argument("--noise-set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a NoiseConfig field over config/train.yaml's, e.g. scale=0.15 "
                             "(as async-naf train --set policy.noise.FIELD=VALUE)")
    parser.add_argument("--json", default=None, help="write the evaluation records here")
    args = parser.parse_args(argv)
    import yaml

    from async_naf.run.graph import yaml_number
    from async_naf.task.tasks import DEFAULT_TASK_CONFIGS

    def fields(items: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for item in items:
            key, _, raw = item.partition("=")
            value = yaml_number(yaml.safe_load(raw))  # YAML 1.1 reads 3e-4 as a string
            out[key.strip()] = tuple(value) if isinstance(value, list) else value
        return out

    try:
        task_config = dataclasses.replace(DEFAULT_TASK_CONFIGS[args.task], **fields(args.task_set))
        trainer, noise = graph_settings(args.task, args.seed, trainer_sets={"algorithm": args.algorithm,
                                                                             **fields(args.sets)})
        noise = dataclasses.replace(noise, **fields(args.noise_set))
    except (TypeError, ValueError) as exc:  # an unknown field or a bad value: said, never ignored
        parser.error(str(exc))
    config = SerialConfig(args.task, args.steps, args.seed, args.eval_every, args.eval_episodes)
    records = train_serial(config, trainer, noise, task_config=task_config)
    if args.json:
        from async_naf.run.results import write_json

        write_json(args.json, {"config": dataclasses.asdict(config), "task_config": dataclasses.asdict(task_config),
                               "trainer": dataclasses.asdict(trainer), "noise": dataclasses.asdict(noise),
                               "records": records})
    print(json.dumps(records[-1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
