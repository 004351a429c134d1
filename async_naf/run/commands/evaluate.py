"""``async-naf evaluate``: greedy evaluation of a trained policy on the embedded simulation.

The policy runs with exploration off (mu(x)) on :class:`async_naf.run.env.ArmDoorEnv`, whose observation
carries the door angle from the IMU estimator (never simulator ground truth); success is the task's
criterion on ground truth. Reports the success rate and the longest run of consecutive successes, the
measure of Gu et al. 2017 ("100% success over 20 consecutive trials"), on the task's criterion and on the
strict one (door open wide and held at the end), and the distribution of the final door angles.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HELP = "evaluate a checkpoint greedily: success rate and consecutive successes"
DESCRIPTION = """Evaluate a trained policy with exploration off on the embedded MuJoCo simulation.

CHECKPOINT may be policy weights (RUN_DIR/weights/final.safetensors), a full trainer checkpoint
(RUN_DIR/checkpoints/final.safetensors or step_*.safetensors), or a run directory (its final policy is used).
The door angle in the observation comes from the IMU estimator, as on a real robot.

Examples:
  async-naf evaluate --checkpoint runs/door_pull_2w_s0 --task door_pull --episodes 20
  async-naf evaluate --checkpoint runs/reach_2w_s0/weights/final.safetensors --task reach --json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True,
                        help="policy weights, a trainer checkpoint (.safetensors) or a run directory")
    parser.add_argument("--task", required=True, choices=("reach", "door_pull", "door_push"), help="task")
    parser.add_argument("--episodes", type=int, default=20, help="evaluation episodes (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=12345, help="seed of goals and start poses (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


# ---------------------------------------------------------------------- checkpoints
def _newest(paths: list[Path]) -> Path | None:
    paths = [p for p in paths if p.is_file()]
    return max(paths, key=lambda p: (p.stat().st_mtime, p.name)) if paths else None


def newest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest policy of a running or finished run: weights/latest, else the newest checkpoints/step_*."""
    run_dir = Path(run_dir)
    weights = run_dir / "weights"
    if (weights / "latest.safetensors").is_file():
        return _newest([weights / "latest.safetensors", weights / "final.safetensors"])  # skips what is absent
    return _newest(list((run_dir / "checkpoints").glob("step_*.safetensors"))
                   + list((run_dir / "checkpoints").glob("final.safetensors")))


def final_checkpoint(run_dir: str | Path) -> Path | None:
    """The final policy of a run: weights/final, checkpoints/final, else the newest one there is."""
    run_dir = Path(run_dir)
    for candidate in (run_dir / "weights" / "final.safetensors", run_dir / "checkpoints" / "final.safetensors"):
        if candidate.is_file():
            return candidate
    return newest_checkpoint(run_dir)


def load_policy(path: str | Path) -> Any:
    """A greedy :class:`async_naf.learning.agents.Policy` from policy weights or a full checkpoint.

    Raises:
        ValueError: missing, malformed or unsupported file.
    """
    from async_naf.learning.agents import Policy, load_agent
    from async_naf.wire.checkpoint import read_header

    path = Path(path)
    if path.is_dir():
        found = final_checkpoint(path)
        if found is None:
            raise ValueError(f"{path}: no weights/ or checkpoints/ with a policy in it")
        path = found
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from exc
    kind = read_header(data, str(path))["kind"]
    if kind == "policy":
        return Policy.from_bytes(data)
    agent = load_agent(path)
    return Policy.from_bytes(agent.policy_weights())


# ---------------------------------------------------------------------- evaluation
def evaluate_policy(policy: Any, task: str, episodes: int, seed: int = 0, task_config: Any = None) -> Any:
    """Run ``episodes`` greedy episodes of ``task`` (``task_config``: its TaskConfig, default the task's
    defaults); returns :class:`async_naf.run.results.EvalResult`.

    The episodes are consecutive trials of one robot session, as on a real robot: ``env.reset(seed=seed)``
    before the first (a freshly powered IMU), ``env.reset()`` before the others (new start pose and goal;
    the door-angle estimator keeps its gyro calibration). Each runs ``policy.act(obs)`` until it ends (time
    limit or terminal); an episode is a success if the task's criterion (``info["is_success"]``, on ground truth)
    holds at its last step: reach - the hook tip is at the target at the end; doors - the door is still
    open past the success angle at the end. The strict criterion (``info["is_strict_success"]`` at the last
    step), the final door angle (ground truth) and why each episode failed the task's criterion
    (``EvalResult.failures``, :attr:`async_naf.task.tasks.EpisodeOutcome.failure`: handle not turned, door
    closed again by more than 0.1 rad from its widest, or left short) are recorded beside it.

    Raises:
        ValueError: if the policy's dimensions do not fit the task's.
    """
    import numpy as np

    from async_naf.run.env import ArmDoorEnv
    from async_naf.run.results import EvalResult

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    env = ArmDoorEnv(task=task, seed=seed, task_config=task_config)
    try:
        obs_dim = int(np.prod(env.observation_space.shape))
        act_dim = int(np.prod(env.action_space.shape))
        if policy.obs_dim != obs_dim or policy.act_dim != act_dim:
            raise ValueError(f"policy is for obs_dim={policy.obs_dim}, act_dim={policy.act_dim}; task {task} "
                             f"has obs_dim={obs_dim}, act_dim={act_dim}")
        successes, returns, strict, angles, failures = [], [], [], [], []
        for k in range(episodes):
            obs, info = env.reset(seed=seed if k == 0 else None)
            total, done = 0.0, False
            while not done:
                action = np.asarray(policy.act(obs), dtype=np.float32)
                obs, reward, terminated, truncated, info = env.step(action)
                total += float(reward)
                done = bool(terminated or truncated)
            successes.append(bool(info["is_success"]))
            strict.append(bool(info["is_strict_success"]))
            failures.append(env.outcome.failure)
            if env.task.is_door:
                angles.append(float(info["door_state"].hinge_angle))
            returns.append(total)
    finally:
        env.close()
    return EvalResult(tuple(successes), tuple(returns), tuple(strict), tuple(angles), tuple(failures))


def evaluate_checkpoint(path: str | Path, task: str, episodes: int, seed: int = 0) -> tuple[Any, dict]:
    """Load a policy (see :func:`load_policy`) and evaluate it; returns ``(EvalResult, meta)``."""
    policy = load_policy(path)
    meta = {"update_count": int(getattr(policy, "update_count", 0) or 0)}
    return evaluate_policy(policy, task, episodes, seed), meta


def run(args: argparse.Namespace) -> int:
    if args.episodes < 1:
        print("error: --episodes must be >= 1", file=sys.stderr)
        return 2
    try:
        result, meta = evaluate_checkpoint(args.checkpoint, args.task, args.episodes, seed=args.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = {"checkpoint": str(args.checkpoint), "task": args.task, "seed": args.seed,
           "updates": meta["update_count"], **result.to_dict()}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{args.task}: {result.success_rate:.0%} success over {result.episodes} episodes "
              f"({sum(result.successes)}/{result.episodes}); longest run of consecutive successes: "
              f"{result.consecutive_successes}; mean return {result.mean_return:.3f}")
        held = "door >= open_angle, held" if args.task != "reach" else "at the target, held"
        print(f"  strict ({held}): {result.strict_success_rate:.0%} "
              f"({sum(result.strict)}/{result.episodes}); longest run: {result.strict_consecutive}")
        print("episodes: " + "".join("S" if st else ("s" if s else ".")
                                     for s, st in zip(result.successes, result.strict, strict=True))
              + "   (S strict, s success only)")
        q = result.door_angle_quantiles()
        if q:
            print("final door angle, rad: " + ", ".join(f"{k} {v:.2f}" for k, v in q.items()))
        from async_naf.run.results import counts_text

        failed = result.failure_counts()
        if failed:
            print("failed episodes: " + counts_text(failed))
    return 0
