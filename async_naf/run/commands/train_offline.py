"""``async-naf train-offline``: NAF trained from datasets or bags alone, no robot, with the usual run directory.

The datasets (``async-naf bag convert``) or bags (converted the exact way into ``RUN_DIR/demos/``) are checked
against the task and loaded into one replay buffer (:mod:`async_naf.learning.demos`); the agent takes
``--updates`` gradient steps on batches drawn from it, in this process, with the trainer's hyper-parameters
(``config/train.yaml``'s ``/trainer`` section, ``--set trainer.X=V``), and optionally a behaviour-cloning term
(``--bc-weight``, TD3+BC-style: ``naf.bc_weight``). Every ``--eval-every`` updates a checkpoint is written and
evaluated greedily in the embedded simulation (``eval.csv``); at the end the final checkpoint is evaluated on
held-out episodes (``summary.json``).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import Any

HELP = "train NAF offline from datasets or bags (no robot), with greedy evaluations in the embedded simulation"
DESCRIPTION = """Offline NAF: gradient steps on recorded transitions only, then greedy evaluation.

SOURCE: dataset directories (async-naf bag convert: replay.npz + manifest.json) or rosbag2 bags (converted
the exact way into RUN_DIR/demos/ first); each is checked against --task (task, dimensions, layouts).

Plain off-policy Q-learning overestimates actions the data never tried; --bc-weight W adds a behaviour-cloning
term to the NAF loss (W * mean(((mu(x) - u) / half_range)^2), TD3+BC-style, Fujimoto and Gu 2021) that keeps
mu(x) near the recorded actions.

Written to --run-dir:
  summary.json        task, datasets, rows, updates, wall_s, bc_weight, eval_success_rate, eval_episodes, ...
  eval.csv            greedy evaluation of each checkpoint (--eval-every updates): updates, success_rate, ...
                      (--eval-every 0: none; the final evaluation is in summary.json)
  learning_curve.png  greedy success against wall time (with eval.csv)
  tensorboard/        training scalars (train/loss, train/q_mean, train/bc_loss)
  checkpoints/, weights/   the trainer's layout (async-naf evaluate --checkpoint RUN_DIR)
  metrics.csv         the trainer's file; no training episodes offline, so only its header
  demos/              bags given as SOURCE, converted

Examples:
  async-naf train-offline data/door_pull_exact --task door_pull --run-dir runs/door_offline --updates 50000
  async-naf train-offline runs/door_rec/bag --task door_pull --run-dir runs/door_bc --bc-weight 1.0
"""
OUTPUTS = ("summary.json", "metrics.csv", "eval.csv", "learning_curve.png", "tensorboard", "checkpoints", "weights",
           "demos", "train.log")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", nargs="+", metavar="DATASET|BAG", help="dataset directories or rosbag2 bags")
    parser.add_argument("--task", required=True, choices=("reach", "door_pull", "door_push"), help="the data's task")
    parser.add_argument("--run-dir", required=True, help="output directory")
    parser.add_argument("--updates", type=int, default=20_000, help="gradient updates (default: %(default)s)")
    parser.add_argument("--bc-weight", type=float, default=0.0, metavar="W",
                        help="behaviour-cloning weight (naf.bc_weight; 0 = plain NAF) (default: %(default)s)")
    parser.add_argument("--eval-every", type=int, default=2_000, metavar="UPDATES",
                        help="write and evaluate a checkpoint every this many updates (0 = only the final one) "
                             "(default: %(default)s)")
    parser.add_argument("--eval-episodes", type=int, default=20,
                        help="episodes per evaluation, final one included (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the agent and the sampling (default: %(default)s)")
    parser.add_argument("--config", default=None,
                        help="parameter file whose /trainer section gives the hyper-parameters (default: "
                             "config/train.yaml, with config/train.<task>.yaml over it where the task has one)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="trainer.PARAM=VALUE",
                        help="override one trainer parameter, e.g. --set trainer.naf.lr=3e-4 (repeatable)")
    parser.add_argument("--overwrite", action="store_true", help="delete the results of an earlier run in --run-dir")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def trainer_config(args: argparse.Namespace, run_dir: Path) -> Any:
    """The TrainerConfig of an offline run: config file's /trainer values, --set, then the command line."""
    from async_naf.learning.config import TrainerConfig
    from async_naf.run.commands.train import parse_sets
    from async_naf.run.graph import config_overrides
    from async_naf.wire.params import build, param_specs

    known = {s.name for s in param_specs(TrainerConfig)}
    # the file's /trainer section also holds the trainer node's own parameters (not TrainerConfig's): left out.
    # A --set is checked: a misspelt name is an error naming the valid ones (build), never silently a default
    values: dict[str, Any] = {k: v for k, v in config_overrides(args.config, "--config", task=args.task)
                              .get("/trainer", {}).items() if k in known}
    for key, params in parse_sets(args.sets).items():
        if key != "/trainer":
            raise ValueError(f"--set: train-offline has only trainer parameters, got {key.strip('/*')}")
        values.update(params)
    values.update({"run_dir": str(run_dir), "task": args.task, "seed": args.seed, "tensorboard": True,
                   "naf.bc_weight": float(args.bc_weight)})
    cfg = build(TrainerConfig, values)
    if cfg.algorithm == "ddpg" and args.bc_weight:
        raise ValueError("--bc-weight is a NAF option (naf.bc_weight); algorithm is ddpg")
    return cfg


def run(args: argparse.Namespace) -> int:
    from async_naf.run.results import write_json

    if args.updates < 1 or args.eval_episodes < 1 or args.eval_every < 0:
        print("error: --updates and --eval-episodes must be >= 1, --eval-every >= 0", file=sys.stderr)
        return 2
    run_dir = Path(args.run_dir).resolve()
    earlier = [p for p in ("summary.json", "checkpoints", "eval.csv") if (run_dir / p).exists()]
    if earlier and not args.overwrite:
        print(f"error: {run_dir} holds an earlier run ({', '.join(earlier)}); --overwrite to start over, or "
              "another --run-dir", file=sys.stderr)
        return 2
    try:
        cfg = trainer_config(args, run_dir)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.overwrite:
        from async_naf.run.commands.train import remove_outputs

        remove_outputs(run_dir, OUTPUTS)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    from async_naf.run.commands.train import discard_run_dir
    from async_naf.run.demos import prepare_demos

    try:
        datasets = prepare_demos(args.sources, args.task, run_dir, log=not args.quiet, label="DATASET|BAG")
        summary = train_offline(cfg, datasets, args.updates, args.eval_every, args.eval_episodes, args.quiet)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if created:  # no half-made run directory left behind (a dataset that does not fit, a bag that does not convert)
            discard_run_dir(run_dir)
        return 2
    summary["command"] = shlex.join(["async-naf", *sys.argv[1:]])
    write_json(run_dir / "summary.json", summary)
    sr = summary.get("eval_success_rate")
    print(f"results in {run_dir}: {summary['updates']:,} updates on {summary['rows']:,} rows in "
          f"{summary['wall_s']:.0f} s; final greedy evaluation {'n/a' if sr is None else f'{sr:.0%}'} success "
          f"(strict {summary.get('eval_strict_success_rate', float('nan')):.0%}) over {summary['eval_episodes']} "
          "episodes", file=sys.stderr)
    return 0


def train_offline(cfg: Any, datasets: list[str], updates: int, eval_every: int, eval_episodes: int,
                  quiet: bool = True) -> dict[str, Any]:
    """Train ``cfg``'s agent on ``datasets`` for ``updates`` steps in this process (see the module docstring);
    return the summary's fields.

    Raises:
        ValueError: a dataset that does not fit the task.
    """
    import numpy as np
    import torch

    from async_naf.learning.agents import make_agent
    from async_naf.learning.checkpoints import CheckpointStore
    from async_naf.learning.demos import load_demos
    from async_naf.learning.metrics import MetricsLog
    from async_naf.run.commands.evaluate import evaluate_checkpoint
    from async_naf.run.results import EVAL_FIELDS, append_csv, plot_learning_curve, read_eval
    from async_naf.task.tasks import make_task

    torch.set_num_threads(cfg.num_threads)
    task = make_task(cfg.task)
    buffer, sources = load_demos(datasets, cfg.task, task.obs_dim, task.act_dim, seed=cfg.seed)
    if cfg.action_limit:
        high = np.asarray(cfg.action_limit, np.float32)
        low = -high
    else:
        low, high = task.action_low, task.action_high
    agent = make_agent(cfg.agent_config(task.obs_dim, task.act_dim, np.broadcast_to(low, (task.act_dim,)),
                                        np.broadcast_to(high, (task.act_dim,))), algorithm=cfg.algorithm)
    run_dir = Path(cfg.run_dir)
    store = CheckpointStore(run_dir, cfg.keep_checkpoints)
    metrics = MetricsLog(run_dir, tensorboard=cfg.tensorboard)
    batch_size = agent.config.batch_size
    t0 = time.monotonic()
    rows = len(buffer)

    def checkpoint(tag: str | None) -> Path:
        stem = store.stem(agent.update_count, tag)
        agent.save(store.agent_path(stem))
        counters = {"updates": agent.update_count, "env_steps": 0, "episodes": 0, "wall_s": time.monotonic() - t0,
                    "received": [], "task": cfg.task, "algorithm": cfg.algorithm, "obs_dim": task.obs_dim,
                    "act_dim": task.act_dim, "offline": True, "demos": [s.as_dict() for s in sources]}
        store.commit(stem, agent.policy_weights(), False, counters, periodic=tag is None)
        return store.agent_path(stem)

    def evaluate(path: Path, seed: int) -> Any:
        result, _ = evaluate_checkpoint(path, cfg.task, eval_episodes, seed=seed)
        return result

    last: dict[str, float] = {}
    try:
        for _ in range(updates):
            last = agent.update(buffer.sample(batch_size))
            if agent.update_count and agent.update_count % cfg.log_every_updates == 0:
                metrics.add_training({k: float(v) for k, v in last.items()}, agent.update_count)
            if eval_every and agent.update_count and agent.update_count % eval_every == 0 \
                    and agent.update_count < updates:
                path = checkpoint(None)
                result = evaluate(path, 10_000 + cfg.seed)
                append_csv(run_dir / "eval.csv", EVAL_FIELDS,
                           {"wall_s": round(time.monotonic() - t0, 2), "env_steps": 0, "updates": agent.update_count,
                            **result.eval_row(), "checkpoint": path.name})
                if not quiet:
                    print(f"[{time.monotonic() - t0:6.0f} s] updates {agent.update_count:>8,}  loss "
                          f"{last.get('loss', float('nan')):.4g}  eval {result.success_rate:4.0%} strict "
                          f"{result.strict_success_rate:4.0%} return {result.mean_return:.3g}", file=sys.stderr)
        final = checkpoint("final")
    finally:
        metrics.close()
    wall_s = time.monotonic() - t0
    result = evaluate(final, 20_000 + cfg.seed)
    evals = read_eval(run_dir / "eval.csv")
    with warnings.catch_warnings():  # no training episodes offline: the plot's episode legend is empty
        warnings.simplefilter("ignore", UserWarning)
        plot_learning_curve(run_dir, title=f"{cfg.task}, offline", rows=[], evals=evals)
    return {"task": cfg.task, "offline": True, "datasets": datasets, "rows": rows,
            "dropped": sum(s.dropped for s in sources), "updates": agent.update_count,
            "skipped_updates": agent.skipped_updates, "wall_s": round(wall_s, 1), "bc_weight": cfg.naf.bc_weight,
            "algorithm": cfg.algorithm, "seed": cfg.seed, "batch_size": batch_size, "evaluations": len(evals),
            "final_loss": last.get("loss"), "final_bc_loss": last.get("bc_loss"), "checkpoint": str(final),
            "trainer_config": json.loads(json.dumps(_config_dict(cfg), default=str)), **result.summary_fields()}


def _config_dict(cfg: Any) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(cfg)
