"""Peers: Stable-Baselines3 SAC and TD3 on the same gymnasium environment, in one process (no ROS).

What a user would pick instead of NAF, trained on :class:`async_naf.run.env.ArmDoorEnv` (the observation with
the door angle from the IMU estimator, the same reward, episode length and action bounds) and evaluated by
the same function as the project's runs (:func:`async_naf.run.commands.evaluate.evaluate_policy`, both
criteria), into a run directory with the same ``eval.csv`` and ``summary.json`` fields, so
``async-naf experiment algorithms`` compares them like its own runs. Hyper-parameters are SB3's defaults
except the network (two hidden layers of 100, as the project's), the discount (0.98), the batch (64) and
the start of learning (1,000 steps), which are the project's; TD3 explores with Gaussian noise of 0.1 in
SB3's normalised action units (the RL Baselines3 Zoo setting).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

PEERS = ("sac", "td3")
SB3_VERSION = "2.9.2"


class _GreedyPeer:
    """An SB3 model as the policy interface :func:`evaluate_policy` takes: ``act(obs)`` deterministic."""

    def __init__(self, model: Any, obs_dim: int, act_dim: int) -> None:
        self.model, self.obs_dim, self.act_dim = model, obs_dim, act_dim

    def act(self, obs: Any) -> Any:
        return self.model.predict(obs, deterministic=True)[0]


def train_peer(algo: str, task: str, seed: int, steps: int, run_dir: str | Path, eval_every: int,
               eval_episodes: int, final_episodes: int = 20, config_file: str | None = None) -> dict[str, Any]:
    """Train SB3 ``algo`` ('sac' or 'td3') for ``steps`` environment steps; evaluate greedily every
    ``eval_every`` steps on ``eval_episodes`` episodes (seeds 10000 + seed) into ``run_dir/eval.csv`` and at the
    end on ``final_episodes`` held-out episodes (seeds 20000 + seed) into ``run_dir/summary.json``, which it
    returns. It trains in the simulation a graph run's robots train in (:func:`~async_naf.run.graph.training_sim_config`
    of ``config_file``, or of ``config/train.yaml`` and the task's file when None).

    Raises:
        ValueError: unknown peer, or Stable-Baselines3 is not installed.
    """
    if algo not in PEERS:
        raise ValueError(f"unknown peer {algo!r}; known: {PEERS}")
    try:
        import stable_baselines3 as sb3
        from stable_baselines3.common.callbacks import BaseCallback
        from stable_baselines3.common.noise import NormalActionNoise
    except ImportError as exc:
        raise ValueError(f"peers need Stable-Baselines3: pip install stable-baselines3=={SB3_VERSION} "
                         f"({exc})") from exc
    import numpy as np
    import torch

    from async_naf.run.commands.evaluate import evaluate_policy
    from async_naf.run.env import ArmDoorEnv
    from async_naf.run.graph import training_sim_config
    from async_naf.run.results import EVAL_FIELDS, append_csv, write_json

    torch.set_num_threads(1)
    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.csv").unlink(missing_ok=True)
    # the graph robots' training simulation (the sim section of config_file, or of config/train.yaml + the task's)
    env = ArmDoorEnv(task, sim_config=training_sim_config(task, config_file), seed=seed)
    obs_dim, act_dim = env.task.obs_dim, env.task.act_dim
    common: dict[str, Any] = {"seed": seed, "verbose": 0, "device": "cpu", "gamma": 0.98, "batch_size": 64,
              "learning_starts": 1_000, "policy_kwargs": {"net_arch": [100, 100]}}
    model: Any
    if algo == "sac":
        model = sb3.SAC("MlpPolicy", env, **common)
    else:
        noise = NormalActionNoise(np.zeros(act_dim), 0.1 * np.ones(act_dim))
        model = sb3.TD3("MlpPolicy", env, action_noise=noise, **common)
    t0 = time.monotonic()

    def evaluate(episodes: int, eval_seed: int) -> Any:
        return evaluate_policy(_GreedyPeer(model, obs_dim, act_dim), task, episodes, seed=eval_seed)

    class _Evaluate(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % eval_every == 0:
                result = evaluate(eval_episodes, 10_000 + seed)
                append_csv(out / "eval.csv", EVAL_FIELDS, {
                    "wall_s": round(time.monotonic() - t0, 2), "env_steps": self.num_timesteps,
                    "updates": int(getattr(model, "_n_updates", 0)), **result.eval_row(),
                    "checkpoint": f"{algo}_{self.num_timesteps}"})
            return True

    try:
        model.learn(total_timesteps=steps, callback=_Evaluate())
        wall_s = time.monotonic() - t0
        final = evaluate(final_episodes, 20_000 + seed)
    finally:
        env.close()
    summary = {"task": task, "algorithm": f"sb3_{algo}", "seed": seed, "env_steps": int(model.num_timesteps),
               "updates": int(getattr(model, "_n_updates", 0)), "wall_s": round(wall_s, 1),
               **final.summary_fields(), "stable_baselines3": sb3.__version__}
    write_json(out / "summary.json", summary)
    return summary
