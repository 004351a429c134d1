"""Offline RL side by side: d3rlpy's CQL and TD3+BC beside ``async-naf train-offline`` on one converted dataset.

    python benchmarks/offline_d3rlpy.py DATASET [DATASET ...] --task door_pull --steps 50000 --out runs/offline_cmp
    python benchmarks/offline_d3rlpy.py data/door_exact --task door_pull --steps 300 --eval-episodes 3  # smoke

DATASET: a dataset directory of ``async-naf bag convert`` (replay.npz + manifest.json), the input
``async-naf train-offline`` takes. Each algorithm gets the same transitions and the same number of gradient
steps, and its final policy the same greedy evaluation in the embedded simulation
(:func:`async_naf.run.commands.evaluate.evaluate_policy`, the held-out seeds ``20000 + seed`` that
``train-offline``'s final evaluation uses; door angle from the IMU estimator, success on ground truth):

- ``naf``: ``async-naf train-offline DATASET --updates STEPS --eval-every 0`` (plain NAF), in a subprocess;
- ``naf_bc``: the same with ``--bc-weight`` (``--naf-bc-weight``, default 1.0; 0 leaves it out);
- ``cql``: ``d3rlpy.algos.CQLConfig`` (Kumar et al. 2020), d3rlpy's defaults but ``gamma`` and
  ``batch_size`` (the trainer's, ``config/train.yaml``);
- ``td3_plus_bc``: ``d3rlpy.algos.TD3PlusBCConfig`` (Fujimoto and Gu 2021), likewise.

For d3rlpy, actions are scaled to [-1, 1] with the task's bounds (``MinMaxActionScaler``) and observations
standardised (``StandardObservationScaler``, fitted on the dataset); the episodes are rebuilt from the rows
(a row starts a new episode where its ``obs`` is not the previous row's ``next_obs``, or after a terminal),
the same split as the Minari output (:func:`async_naf.run.convert_minari.minari_episodes`): a truncated
episode's final observation is kept as one more step with a zero action (d3rlpy's timeout step, never a
transition's start), so every row is one d3rlpy transition.

d3rlpy is an optional dependency and must not pull another torch: d3rlpy 2.8.1 pins gymnasium 1.0.0 (the
project pins 1.4.0), so install it beside the project's packages without its dependencies::

    SITE=$(python -c 'import site; print(site.getsitepackages()[0])')   # the project's .venv python
    python -m venv /tmp/d3_venv
    echo "import site; site.addsitedir('$SITE')" > /tmp/d3_venv/lib/python3.11/site-packages/project.pth
    /tmp/d3_venv/bin/pip install gym==0.26.2 click==8.5.1 structlog==26.1.0 colorama==0.4.6 \\
        dataclasses-json==0.6.7 scikit-learn==1.9.1 -c constraints.txt
    /tmp/d3_venv/bin/pip install --no-deps d3rlpy==2.8.1
    PYTHONPATH=. /tmp/d3_venv/bin/python benchmarks/offline_d3rlpy.py DATASET --task door_pull

(``site.addsitedir``, not a plain path line: the project's packages include ``.pth`` files of their own,
pinocchio's among them, which only a site directory processes.)

Output: one line per algorithm (success rate, strict success, mean return, wall time), ``OUT/results.json``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ALGORITHMS = ("naf", "naf_bc", "cql", "td3_plus_bc")


def load_rows(datasets: list[Path]) -> Any:
    """The datasets' transitions (a Batch), each in the order it was converted, one after the other."""
    from async_naf.learning.replay import Batch, ReplayBuffer

    parts = []
    for dataset in datasets:
        buf = ReplayBuffer.load(dataset / "replay.npz")
        n = len(buf)
        parts.append(Batch(buf.obs[:n], buf.action[:n], buf.reward[:n], buf.next_obs[:n], buf.terminal[:n]))
    return Batch(*(np.concatenate(column) for column in zip(*parts)))


def episode_keys(batch: Any) -> np.ndarray:
    """(robot 0, episode, step) keys from chaining rows: a new episode after a terminal or where a row's ``obs``
    is not the previous row's ``next_obs``."""
    n = len(batch.obs)
    starts = np.ones(n, bool)
    if n > 1:
        chained = np.all(batch.obs[1:] == batch.next_obs[:-1], axis=1) & (batch.terminal[:-1] < 0.5)
        starts[1:] = ~chained
    episode = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    step = np.arange(n) - first[episode]
    return np.column_stack([np.zeros(n, np.int64), episode, step])


def mdp_arrays(batch: Any) -> dict[str, np.ndarray]:
    """Observations, actions, rewards, terminals and timeouts for ``d3rlpy.dataset.MDPDataset`` (module
    docstring): per truncated episode one more step holding the final observation, a zero action, reward 0 and
    the timeout flag."""
    from async_naf.run.convert_minari import minari_episodes

    episodes, _ = minari_episodes(batch, episode_keys(batch))
    obs, act, rew, term, tout = [], [], [], [], []
    for e in episodes:
        n = len(e["actions"])
        terminated = bool(e["terminations"][-1])
        k = n if terminated else n + 1
        obs.append(e["observations"][:k])
        act.append(np.concatenate([e["actions"], np.zeros((k - n, e["actions"].shape[1]), np.float32)]))
        rew.append(np.concatenate([e["rewards"], np.zeros(k - n)]).astype(np.float32))
        t = np.zeros(k, np.float32)
        o = np.zeros(k, np.float32)
        if terminated:
            t[-1] = 1.0
        else:
            o[-1] = 1.0
        term.append(t)
        tout.append(o)
    return {"observations": np.concatenate(obs), "actions": np.concatenate(act), "rewards": np.concatenate(rew),
            "terminals": np.concatenate(term), "timeouts": np.concatenate(tout), "episodes": np.array(len(episodes))}


class _Greedy:
    """A d3rlpy algorithm as the policy ``evaluate_policy`` runs (``obs_dim``, ``act_dim``, ``act``)."""

    def __init__(self, algo: Any, obs_dim: int, act_dim: int) -> None:
        self.algo, self.obs_dim, self.act_dim = algo, obs_dim, act_dim

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.asarray(self.algo.predict(np.asarray(obs, np.float32)[None]))[0]


def run_d3rlpy(name: str, batch: Any, task: str, steps: int, seed: int, gamma: float, batch_size: int,
               eval_episodes: int) -> dict[str, Any]:
    """Train one d3rlpy algorithm on the rows and evaluate its final policy (module docstring)."""
    import d3rlpy
    import torch

    from async_naf.run.commands.evaluate import evaluate_policy
    from async_naf.task.tasks import make_task

    try:  # d3rlpy logs through structlog at debug level: warnings only
        import logging

        import structlog

        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    except ImportError:
        pass
    t = make_task(task)
    arrays = mdp_arrays(batch)
    dataset = d3rlpy.dataset.MDPDataset(arrays["observations"], arrays["actions"], arrays["rewards"],
                                        arrays["terminals"], arrays["timeouts"])
    d3rlpy.seed(seed)
    torch.set_num_threads(1)
    common = {"batch_size": batch_size, "gamma": gamma,
              "observation_scaler": d3rlpy.preprocessing.StandardObservationScaler(),
              "action_scaler": d3rlpy.preprocessing.MinMaxActionScaler(minimum=np.asarray(t.action_low),
                                                                        maximum=np.asarray(t.action_high))}
    config = (d3rlpy.algos.CQLConfig(**common) if name == "cql" else d3rlpy.algos.TD3PlusBCConfig(**common))
    algo = config.create(device="cpu:0")
    t0 = time.monotonic()
    history = algo.fit(dataset, n_steps=steps, n_steps_per_epoch=min(steps, 10_000),
                       logger_adapter=d3rlpy.logging.NoopAdapterFactory(), show_progress=False,
                       experiment_name=name, with_timestamp=False)
    wall = time.monotonic() - t0
    result = evaluate_policy(_Greedy(algo, t.obs_dim, t.act_dim), task, eval_episodes, seed=20_000 + seed)
    last = {k: float(v) for k, v in history[-1][1].items()} if history else {}
    return {"algorithm": name, "updates": steps, "train_wall_s": round(wall, 1), "episodes_in_data":
            int(arrays["episodes"]), "final_losses": last, **result.summary_fields()}


def run_naf(dataset: list[Path], out: Path, name: str, task: str, steps: int, seed: int, bc_weight: float,
            eval_episodes: int) -> dict[str, Any]:
    """``async-naf train-offline`` in a subprocess; its summary."""
    run_dir = out / name
    cmd = [sys.executable, "-m", "async_naf.run.cli", "train-offline", *map(str, dataset), "--task", task,
           "--run-dir", str(run_dir), "--updates", str(steps), "--eval-every", "0", "--eval-episodes",
           str(eval_episodes), "--seed", str(seed), "--bc-weight", str(bc_weight), "--quiet", "--overwrite"]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"train-offline failed ({proc.returncode}): {proc.stderr[-2000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    summary.update(algorithm=name, train_wall_s=summary.get("wall_s"), command_wall_s=round(time.monotonic() - t0, 1))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, nargs="+",
                        help="dataset directories of async-naf bag convert (replay.npz), used together")
    parser.add_argument("--task", required=True, choices=("reach", "door_pull", "door_push"))
    parser.add_argument("--steps", type=int, default=50_000, help="gradient steps per algorithm")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--naf-bc-weight", type=float, default=1.0, help="train-offline --bc-weight of naf_bc")
    parser.add_argument("--only", action="append", choices=ALGORITHMS, help="run only these (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("runs/offline_d3rlpy"), help="output directory")
    args = parser.parse_args(argv)
    missing = [str(d) for d in args.dataset if not (d / "replay.npz").is_file()]
    if missing:
        print(f"error: not a dataset directory (no replay.npz): {', '.join(missing)}", file=sys.stderr)
        return 2
    names = args.only or [a for a in ALGORITHMS if a != "naf_bc" or args.naf_bc_weight > 0]
    if {"cql", "td3_plus_bc"} & set(names):
        try:
            import d3rlpy  # noqa: F401
        except ImportError as exc:
            print(f"error: d3rlpy is not importable ({exc}); see this script's docstring for the install",
                  file=sys.stderr)
            return 2
    import torch

    from async_naf.run.commands.train_offline import trainer_config

    cfg = trainer_config(argparse.Namespace(config=None, sets=[], task=args.task, seed=args.seed, bc_weight=0.0),
                         args.out / "config")
    args.out.mkdir(parents=True, exist_ok=True)
    batch = load_rows(args.dataset)
    print(f"{' '.join(map(str, args.dataset))}: {len(batch.obs)} transitions; {args.steps} gradient steps each; torch "
          f"{torch.__version__}; evaluation: {args.eval_episodes} greedy episodes, seed {20_000 + args.seed}",
          flush=True)
    results = []
    for name in names:
        if name in ("naf", "naf_bc"):
            r = run_naf(args.dataset, args.out, name, args.task, args.steps, args.seed,
                        args.naf_bc_weight if name == "naf_bc" else 0.0, args.eval_episodes)
        else:
            r = run_d3rlpy(name, batch, args.task, args.steps, args.seed, cfg.naf.gamma, cfg.naf.batch_size,
                           args.eval_episodes)
        results.append(r)
        print(f"{name:12s} success {r['eval_success_rate']:5.0%}  strict {r['eval_strict_success_rate']:5.0%}  "
              f"mean return {r['eval_mean_return']:8.2f}  train {r['train_wall_s']} s", flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(f"results in {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
