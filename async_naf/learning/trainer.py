"""The trainer core (ROS-free): replay buffer + NAF agent, updates in a thread of their own.

The trainer node (``nodes/trainer_node.py``) feeds it validated transition batches and episode statistics
from its subscriptions; everything else happens here, in the update thread, never in a ROS callback::

    trainer = Trainer(TrainerConfig(run_dir="runs/x", task="reach"), on_weights=publish)
    trainer.start()                      # update thread
    trainer.add_transitions(batch)       # from a subscription: validated rows -> replay buffer (thread-safe)
    trainer.record_episode(stats)        # queued: the update thread writes metrics.csv, TensorBoard, weights
    trainer.wait_finished(timeout)       # stop condition reached -> final checkpoint written
    trainer.stop()                       # (also on Ctrl-C) final checkpoint, join the thread

Outputs in ``run_dir`` (see the README): ``metrics.csv`` (one row per finished episode), ``tensorboard/``,
``checkpoints/`` (``step_<updates>.safetensors`` full agent checkpoints with ``replay_<updates>.npz`` and
``step_<updates>.json`` counters; ``final.*`` at the end; ``latest.json`` points at the newest) and
``weights/`` (``latest.safetensors``, rewritten with a weights publication at most once a second and at
each checkpoint, and ``final.safetensors``: policy weights for ``Policy.from_bytes``).

Counters: ``env_steps`` = transitions received (all robots, including resumed runs); ``updates`` = gradient
updates; ``wall_s`` in metrics = seconds since the first start (resumed runs continue the count). The stop
condition uses the total ``env_steps`` and this process's own wall time.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from async_naf.common.checks import integers, numbers

ALGORITHMS = ("naf", "linear_naf", "ddpg")
EXECUTORS = ("events", "single_threaded", "multi_threaded")


@dataclass
class TrainerConfig:
    """Parameters of the trainer node (one, global: ``/trainer``). Units: seconds, environment steps.

    Attributes:
        run_dir: output directory: metrics.csv, tensorboard/, checkpoints/, weights/.
        task: task name; defines obs_dim, act_dim and the action bounds of the agent.
        seed: seed of the agent's initialisation and of replay sampling.
        algorithm: ``naf`` (default), ``linear_naf`` or ``ddpg`` (async_naf.learning.agents.make_agent).
        resume: continue from the newest checkpoint in run_dir (or resume_from) if there is one.
        resume_from: run directory to resume from instead of run_dir (empty: run_dir).
        replay_capacity: replay buffer size, transitions.
        min_buffer_size: transitions in the buffer before the first update.
        batch_size: transitions per gradient update.
        updates_per_step: gradient updates per received environment step (all robots together); the
            update thread never runs ahead of updates_per_step * env_steps.
        max_updates_per_s: upper bound on the update rate, updates/s (0 = none).
        hidden_sizes: hidden layer widths of the networks.
        gamma: discount factor per step.
        tau: target-network soft-update rate per update.
        lr: Adam learning rate.
        grad_clip_norm: gradient-norm clip (0 = none).
        normalize_obs: normalise observations with running statistics inside the networks.
        action_limit: action bounds of the agent, +-value per joint in rad/s (7 values); empty = the
            task's default.
        weights_every_updates: publish policy weights every this many updates (and at episode ends).
        checkpoint_every_s: write a checkpoint this often, s (0 = only on request and at the end).
        save_buffer: include the replay buffer in checkpoints.
        max_env_steps: stop after this many received transitions, all robots (0 = no limit).
        max_wall_s: stop after this many seconds since start (0 = no limit), s.
        keep_checkpoints: periodic checkpoints kept on disk (older ones are deleted; final is always kept).
        tensorboard: write TensorBoard events to run_dir/tensorboard.
        log_every_updates: write training metrics (loss, q) to TensorBoard every this many updates.
        num_threads: torch CPU threads for the updates.
        executor: how the node spins its subscriptions and services: ``events`` (rclpy's EventsExecutor,
            C++ event queue, about 3x the message throughput; marked experimental in Jazzy),
            ``single_threaded`` or ``multi_threaded`` (a ~/save_checkpoint call does not pause the
            subscriptions).
    """

    run_dir: str = "runs/default"
    task: str = "reach"
    seed: int = 0
    algorithm: str = "naf"
    resume: bool = False
    resume_from: str = ""
    replay_capacity: int = 1_000_000
    min_buffer_size: int = 1_000
    batch_size: int = 64
    updates_per_step: float = 1.0
    max_updates_per_s: float = 0.0
    hidden_sizes: tuple[int, ...] = (100, 100)
    gamma: float = 0.98
    tau: float = 0.005
    lr: float = 1e-3
    grad_clip_norm: float = 0.0
    normalize_obs: bool = True
    action_limit: tuple[float, ...] = ()
    weights_every_updates: int = 100
    checkpoint_every_s: float = 300.0
    save_buffer: bool = True
    max_env_steps: int = 0
    max_wall_s: float = 0.0
    keep_checkpoints: int = 2
    tensorboard: bool = True
    log_every_updates: int = 100
    num_threads: int = 1
    executor: str = "events"

    def __post_init__(self) -> None:
        if not str(self.run_dir):
            raise ValueError("run_dir must not be empty")
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {self.executor!r}")
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        integers(self, ("replay_capacity", "batch_size", "weights_every_updates", "log_every_updates",
                        "keep_checkpoints", "num_threads"), 1)
        integers(self, ("min_buffer_size", "max_env_steps", "seed"), 0)
        numbers(self, ("updates_per_step", "max_updates_per_s", "grad_clip_norm", "checkpoint_every_s",
                       "max_wall_s"), 0.0)
        numbers(self, ("gamma", "tau"), 0.0, 1.0, low_open=True)
        numbers(self, ("lr",), 0.0, low_open=True)
        self.hidden_sizes = tuple(int(h) for h in self.hidden_sizes)
        if not self.hidden_sizes or any(h < 1 for h in self.hidden_sizes):
            raise ValueError(f"hidden_sizes must be one or more positive widths, got {self.hidden_sizes}")
        limits = tuple(float(v) for v in self.action_limit)
        if limits and (len(limits) != 7 or not all(math.isfinite(v) and v > 0 for v in limits)):
            raise ValueError(f"action_limit must be empty or 7 finite values > 0 (rad/s), got {limits}")
        self.action_limit = limits
        if self.batch_size > self.replay_capacity:
            raise ValueError("batch_size must not exceed replay_capacity")
        try:
            from async_naf.task.tasks import TASK_NAMES
        except ImportError:  # tasks not importable yet: checked when the trainer builds the task
            return
        if self.task not in TASK_NAMES:
            raise ValueError(f"unknown task {self.task!r}; choose one of {', '.join(TASK_NAMES)}")


LOG = logging.getLogger(__name__)
METRICS_HEADER = ("wall_s", "env_steps", "updates", "robot", "episode", "episode_return", "success")
CHECKPOINTS = "checkpoints"
WEIGHTS_DIR = "weights"
WEIGHTS_FILE_PERIOD_S = 1.0  # weights/latest.safetensors is rewritten at most this often (with a publish), s


@dataclass(frozen=True)
class CheckpointInfo:
    """Where one checkpoint lies and the counters at that moment.

    Attributes:
        agent: full agent checkpoint (safetensors).
        buffer: replay buffer (.npz) or None if not saved.
        updates, env_steps, episodes: counters.
        wall_s: seconds since the first start of the run.
    """

    agent: str
    buffer: str | None
    updates: int
    env_steps: int
    episodes: int
    wall_s: float


def _task_dims(task_name: str) -> tuple[int, int, Any, Any]:
    from async_naf.task.tasks import make_task

    task = make_task(task_name)
    return task.obs_dim, task.act_dim, task.action_low, task.action_high


def read_latest_checkpoint(run_dir: str | os.PathLike) -> CheckpointInfo | None:
    """The newest checkpoint recorded in ``run_dir/checkpoints/latest.json``, or None if there is none.

    Raises:
        ValueError: latest.json exists but is malformed or points at missing files.
    """
    ckpt_dir = Path(run_dir) / CHECKPOINTS
    pointer = ckpt_dir / "latest.json"
    if not pointer.exists():
        return None
    try:
        meta = json.loads(pointer.read_text())
        info = CheckpointInfo(
            agent=str(ckpt_dir / meta["agent"]),
            buffer=str(ckpt_dir / meta["buffer"]) if meta.get("buffer") else None,
            updates=int(meta["updates"]), env_steps=int(meta["env_steps"]), episodes=int(meta["episodes"]),
            wall_s=float(meta["wall_s"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{pointer}: malformed checkpoint pointer: {exc}") from exc
    if not Path(info.agent).exists() or (info.buffer and not Path(info.buffer).exists()):
        raise ValueError(f"{pointer}: points at missing files ({info.agent}, {info.buffer})")
    return info


class Trainer:
    """Replay buffer + agent + update thread + checkpoints + metrics (see the module docstring).

    Args:
        config: the TrainerConfig.
        on_weights: called from the update thread with (policy weights bytes, update count) every
            ``weights_every_updates`` updates, after episode ends (if the weights changed) and at start.
        on_finished: called once from the update thread when the stop condition was reached and the final
            checkpoint is written (argument: the reason).
        obs_dim, act_dim, action_low, action_high: override the task's dimensions/bounds (tests).

    Raises:
        ValueError: bad config or an unusable resume checkpoint.
    """

    def __init__(
        self,
        config: TrainerConfig,
        on_weights: Callable[[bytes, int], None] | None = None,
        on_finished: Callable[[str], None] | None = None,
        obs_dim: int | None = None,
        act_dim: int | None = None,
        action_low: Any = None,
        action_high: Any = None,
    ) -> None:
        import numpy as np
        import torch

        from async_naf.learning.agents import DDPGConfig, load_agent, make_agent
        from async_naf.learning.replay import ReplayBuffer

        self.config = config
        torch.set_num_threads(config.num_threads)
        t_obs, t_act, t_low, t_high = _task_dims(config.task)
        self.obs_dim = int(obs_dim or t_obs)
        self.act_dim = int(act_dim or t_act)
        if config.action_limit:
            high = np.asarray(config.action_limit, np.float32)
            low = -high
        else:
            low, high = t_low, t_high
        low = low if action_low is None else action_low
        high = high if action_high is None else action_high
        self.run_dir = Path(config.run_dir)
        self.ckpt_dir = self.run_dir / CHECKPOINTS
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / WEIGHTS_DIR).mkdir(parents=True, exist_ok=True)
        self._on_weights = on_weights
        self._on_finished = on_finished

        self.env_steps = 0
        self.updates = 0
        self.episodes = 0
        self.rejected_batches = 0
        self._wall_offset = 0.0
        resume_info = self._resume_source()
        if resume_info is not None:
            self.agent = load_agent(resume_info.agent)
            if (self.agent.obs_dim, self.agent.act_dim) != (self.obs_dim, self.act_dim):
                raise ValueError(f"{resume_info.agent}: agent dims ({self.agent.obs_dim}, {self.agent.act_dim}) "
                                 f"do not match task {config.task!r} ({self.obs_dim}, {self.act_dim})")
            if resume_info.buffer:
                self.buffer = ReplayBuffer.load(resume_info.buffer)
                if (self.buffer.obs_dim, self.buffer.act_dim) != (self.obs_dim, self.act_dim):
                    raise ValueError(f"{resume_info.buffer}: buffer dims do not match the task")
            else:
                self.buffer = ReplayBuffer(config.replay_capacity, self.obs_dim, self.act_dim, config.seed)
            self.updates = self.agent.update_count
            self.env_steps = resume_info.env_steps
            self.episodes = resume_info.episodes
            self._wall_offset = resume_info.wall_s
            LOG.info("resumed from %s: %d updates, %d env steps, buffer %d", resume_info.agent, self.updates,
                     self.env_steps, len(self.buffer))
        else:
            common = dict(obs_dim=self.obs_dim, act_dim=self.act_dim,
                          action_low=tuple(float(v) for v in np.broadcast_to(low, (self.act_dim,))),
                          action_high=tuple(float(v) for v in np.broadcast_to(high, (self.act_dim,))),
                          hidden_sizes=config.hidden_sizes, gamma=config.gamma, tau=config.tau,
                          batch_size=config.batch_size,
                          grad_clip_norm=config.grad_clip_norm or None, normalize_obs=config.normalize_obs,
                          seed=config.seed)
            if config.algorithm == "ddpg":  # actor 10x slower than the critic, as in Lillicrap et al.
                self.agent = make_agent(DDPGConfig(**common, critic_lr=config.lr, actor_lr=config.lr * 0.1))
            else:
                self.agent = make_agent(config.algorithm, **common, lr=config.lr)
            self.buffer = ReplayBuffer(config.replay_capacity, self.obs_dim, self.act_dim, config.seed)

        self._buffer_lock = threading.Lock()
        self._agent_lock = threading.RLock()
        self._ckpt_lock = threading.Lock()
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._finished = threading.Event()
        self.idle_passes = 0  # update-loop passes that found nothing to do (tests wait on it, not on sleeps)
        self._finish_reason = ""
        self._failure = ""
        self._weights_request = True  # publish the starting weights once
        self._last_weights_update = -1
        self._last_weights_file = -float("inf")
        self._thread: threading.Thread | None = None
        self._t_start = time.monotonic()
        self._last_ckpt = time.monotonic()
        self._last_metrics: dict[str, float] = {}
        self._ckpt_history: list[str] = []
        self._metrics_file = None
        self._metrics_writer: Any = None
        self._metrics_lock = threading.Lock()
        # finished episodes waiting to be written: (wall_s, env_steps, updates, EpisodeStats) at receipt
        self._episode_rows: deque[tuple[float, int, int, Any]] = deque()
        self.unwritten_episode_rows = 0  # rows that arrived after close(): dropped (logged)
        self._open_metrics()
        self._tb: Any = None
        if config.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"), purge_step=None)
            except ImportError as exc:  # tensorboard missing: metrics.csv still has the curve
                LOG.warning("TensorBoard disabled: %s", exc)

    # ------------------------------------------------------------------------------ resume
    def _resume_source(self) -> CheckpointInfo | None:
        if not self.config.resume and not self.config.resume_from:
            return None
        src = Path(self.config.resume_from or self.config.run_dir)
        info = read_latest_checkpoint(src)
        if info is None:
            if self.config.resume_from:
                raise ValueError(f"resume_from={src}: no checkpoint (checkpoints/latest.json) there")
            LOG.info("resume: no checkpoint in %s yet; starting fresh", src)
        return info

    # ------------------------------------------------------------------------------ inputs
    def add_transitions(self, batch: Any) -> int:
        """Add a validated batch (replay.Batch or layouts.TransitionBatch) to the buffer; thread-safe.

        Returns:
            rows added.

        Raises:
            ValueError: wrong dims or invalid values (nothing is added; counted in ``rejected_batches``).
        """
        if hasattr(batch, "to_batch"):
            batch = batch.to_batch()
        with self._buffer_lock:
            try:
                n = self.buffer.add_batch(batch)
            except ValueError:
                self.rejected_batches += 1
                raise
            self.env_steps += n
        if n:
            with self._wake:
                self._wake.notify()
        return n

    def record_episode(self, stats: Any) -> None:
        """One finished episode (layouts.EpisodeStats); cheap, for a subscription callback.

        Counts it and queues its metrics.csv row (with wall_s, env_steps and updates as of now); the update
        thread writes the row (flushed) and the TensorBoard scalars on its next pass and then publishes the
        weights if they changed. :meth:`close` (and so :meth:`stop`) writes rows still queued.
        """
        self.episodes += 1
        self._episode_rows.append((self.wall_s, self.env_steps, self.updates, stats))
        with self._wake:
            self._wake.notify()

    def _write_episode_rows(self) -> int:
        """Write the queued episode rows to metrics.csv (flushed) and TensorBoard; return how many."""
        n = dropped = 0
        with self._metrics_lock:  # also keeps rows in order when close() drains from another thread
            while self._episode_rows:
                wall, env_steps, updates, stats = self._episode_rows.popleft()
                n += 1
                if self._metrics_writer is None:  # closed: nowhere to write
                    dropped += 1
                    continue
                self._metrics_writer.writerow((f"{wall:.3f}", env_steps, updates, stats.robot, stats.episode,
                                               f"{stats.episode_return:.6g}", int(bool(stats.success))))
                if self._tb is not None:
                    self._tb.add_scalar("episode/return", stats.episode_return, env_steps)
                    self._tb.add_scalar("episode/success", float(bool(stats.success)), env_steps)
                    self._tb.add_scalar("episode/length", stats.length, env_steps)
            if n and self._metrics_file is not None:
                self._metrics_file.flush()
        if dropped:
            self.unwritten_episode_rows += dropped
            LOG.warning("%d episode rows arrived after the metrics were closed and were dropped (%d so far)",
                        dropped, self.unwritten_episode_rows)
        return n

    # ------------------------------------------------------------------------------ control
    @property
    def wall_s(self) -> float:
        """Seconds since the first start of this run (resumed runs continue), s."""
        return self._wall_offset + (time.monotonic() - self._t_start)

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    @property
    def finished(self) -> bool:
        """The stop condition was reached and the final checkpoint is written."""
        return self._finished.is_set()

    @property
    def failure(self) -> str:
        """Non-empty if the update thread died with an exception (the node then exits non-zero)."""
        return self._failure

    @property
    def finish_reason(self) -> str:
        return self._finish_reason

    def set_paused(self, paused: bool) -> None:
        """Pause (no updates; transitions are still buffered) or resume the update thread."""
        if paused:
            self._paused.set()
        else:
            self._paused.clear()
        with self._wake:
            self._wake.notify()

    def start(self) -> None:
        """Start the update thread."""
        if self._thread is not None:
            raise RuntimeError("trainer already started")
        self._t_start = time.monotonic()
        self._last_ckpt = self._t_start
        self._thread = threading.Thread(target=self._run, name="trainer-updates", daemon=True)
        self._thread.start()

    def wait_finished(self, timeout: float | None = None) -> bool:
        """Block until the stop condition was reached (True) or ``timeout`` s passed (False)."""
        return self._finished.wait(timeout)

    def stop(self, final_checkpoint: bool = True) -> None:
        """Stop the update thread; write the final checkpoint (if not written yet); close the metrics.

        After a failure of the update thread (:attr:`failure`) no final checkpoint is written: the agent
        may be half-updated or non-finite; the last periodic checkpoint stays the newest. The metrics are
        closed even if writing the final checkpoint raises.
        """
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        try:
            if final_checkpoint and not self._finished.is_set():
                if self._failure:
                    LOG.error("no final checkpoint: %s", self._failure)
                else:
                    self._finish("stopped")
        finally:
            self.close()

    def close(self) -> None:
        """Write queued episode rows, then close metrics.csv and TensorBoard."""
        self._write_episode_rows()
        with self._metrics_lock:
            if self._metrics_file is not None:
                self._metrics_file.close()
                self._metrics_file = None
                self._metrics_writer = None
            if self._tb is not None:
                self._tb.close()
                self._tb = None

    def stats(self) -> dict[str, float]:
        """Counters for diagnostics: env_steps, updates, buffer size, episodes, paused, rejected batches,
        skipped updates (non-finite gradients), wall_s and the latest training metrics (loss, q_mean, ...)."""
        out: dict[str, float] = {
            "env_steps": self.env_steps, "updates": self.updates, "buffer_size": len(self.buffer),
            "episodes": self.episodes, "paused": float(self.paused), "rejected_batches": self.rejected_batches,
            "skipped_updates": self.agent.skipped_updates,
            "wall_s": round(self.wall_s, 3),
        }
        out.update({f"train_{k}": v for k, v in self._last_metrics.items()})
        return out

    # ------------------------------------------------------------------------------ update thread
    def _stop_reason(self) -> str:
        cfg = self.config
        if cfg.max_env_steps and self.env_steps >= cfg.max_env_steps:
            return f"max_env_steps={cfg.max_env_steps} reached"
        if cfg.max_wall_s and time.monotonic() - self._t_start >= cfg.max_wall_s:
            return f"max_wall_s={cfg.max_wall_s:g} reached"
        return ""

    def _update_allowed(self) -> bool:
        cfg = self.config
        if self._paused.is_set() or len(self.buffer) < max(cfg.min_buffer_size, 1):
            return False
        if self.updates >= cfg.updates_per_step * self.env_steps:
            return False
        if cfg.max_updates_per_s:
            return self.updates_this_run < cfg.max_updates_per_s * (time.monotonic() - self._t_start)
        return True

    def _run(self) -> None:
        self._start_updates = self.updates
        try:
            while not self._stop.is_set():
                if self._episode_rows and self._write_episode_rows():
                    self._weights_request = True  # episode boundary: publish the weights if they changed
                reason = self._stop_reason()
                if reason:
                    self._finish(reason)
                    return
                # take the request before publishing: one made while publishing is kept for the next pass
                request, self._weights_request = self._weights_request, False
                if request and self._last_weights_update != self.updates:
                    self._publish_weights()
                if self.config.checkpoint_every_s and \
                        time.monotonic() - self._last_ckpt >= self.config.checkpoint_every_s:
                    self.save_checkpoint()
                if self._update_allowed():
                    self._update_once()
                    continue
                self.idle_passes += 1
                with self._wake:
                    self._wake.wait(0.05)
        except Exception as exc:  # the node must learn that training died: logged, reported by `failed`
            LOG.exception("trainer update thread failed")
            self._failure = f"update thread failed: {exc!r}"

    @property
    def updates_this_run(self) -> int:
        return self.updates - getattr(self, "_start_updates", self.updates)

    def _update_once(self) -> None:
        with self._buffer_lock:
            batch = self.buffer.sample(self.config.batch_size)
        with self._agent_lock:
            metrics = self.agent.update(batch)
            self.updates = self.agent.update_count
        if metrics.get("skipped"):  # non-finite gradient: no weights changed, counted by the agent
            skipped = self.agent.skipped_updates
            if skipped & (skipped - 1) == 0:  # log the 1st, 2nd, 4th, 8th, ... skip
                LOG.warning("update skipped: non-finite gradient (grad_norm=%s; %d skipped so far)",
                            metrics.get("grad_norm"), skipped)
            return
        if self.updates % self.config.log_every_updates == 0:
            self._last_metrics = {k: float(v) for k, v in metrics.items()}
            if self._tb is not None:
                with self._metrics_lock:
                    for key, value in self._last_metrics.items():
                        self._tb.add_scalar(f"train/{key}", value, self.updates)
        if self.updates % self.config.weights_every_updates == 0:
            self._publish_weights()

    def policy_weights(self) -> bytes:
        """Current policy weights (safetensors bytes)."""
        with self._agent_lock:
            return self.agent.policy_weights()

    def _publish_weights(self) -> None:
        data = self.policy_weights()
        self._last_weights_update = self.updates
        now = time.monotonic()
        if now - self._last_weights_file >= WEIGHTS_FILE_PERIOD_S:  # for periodic greedy evaluations
            from async_naf.wire.checkpoint import write_file

            write_file(self.run_dir / WEIGHTS_DIR / "latest.safetensors", data)
            self._last_weights_file = now
        if self._on_weights is not None:
            self._on_weights(data, self.updates)

    # ------------------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, tag: str | None = None) -> CheckpointInfo:
        """Write a checkpoint now (agent, buffer if save_buffer, counters, policy weights); thread-safe.

        Args:
            tag: file stem; None = ``step_<updates:09d>`` (periodic; older ones beyond keep_checkpoints are
                deleted). ``"final"`` is written at the end.

        Returns:
            the CheckpointInfo (also recorded in checkpoints/latest.json).
        """
        with self._ckpt_lock:  # the service thread and the update thread may both ask for one
            return self._save_checkpoint(tag)

    def _save_checkpoint(self, tag: str | None) -> CheckpointInfo:
        from async_naf.wire.checkpoint import write_file

        with self._agent_lock:
            stem = tag or f"step_{self.updates:09d}"
            agent_path = self.ckpt_dir / f"{stem}.safetensors"
            self.agent.save(agent_path)
            weights = self.agent.policy_weights()
            updates = self.updates
        buffer_name = None
        if self.config.save_buffer:
            from async_naf.learning.replay import write_snapshot

            buffer_name = f"replay_{stem.removeprefix('step_')}.npz"
            with self._buffer_lock:  # copy only; the subscriptions' add_transitions wait for the copy, not the disk
                snapshot = self.buffer.snapshot()
                env_steps = self.env_steps
            write_snapshot(self.ckpt_dir / buffer_name, snapshot)
        else:
            env_steps = self.env_steps
        info = CheckpointInfo(str(agent_path), str(self.ckpt_dir / buffer_name) if buffer_name else None,
                              updates, env_steps, self.episodes, self.wall_s)
        meta = {"agent": agent_path.name, "buffer": buffer_name, "updates": updates, "env_steps": env_steps,
                "episodes": info.episodes, "wall_s": info.wall_s, "task": self.config.task,
                "algorithm": self.config.algorithm, "obs_dim": self.obs_dim, "act_dim": self.act_dim}
        write_file(self.run_dir / WEIGHTS_DIR / "latest.safetensors", weights)
        if stem == "final":
            write_file(self.run_dir / WEIGHTS_DIR / "final.safetensors", weights)
        _write_json(self.ckpt_dir / f"{stem}.json", meta)
        _write_json(self.ckpt_dir / "latest.json", meta)
        self._last_ckpt = time.monotonic()
        if tag is None and stem not in self._ckpt_history:  # same update count again: same files
            self._ckpt_history.append(stem)
            self._prune()
        LOG.info("checkpoint %s: %d updates, %d env steps", agent_path, updates, env_steps)
        return info

    def _prune(self) -> None:
        while len(self._ckpt_history) > self.config.keep_checkpoints:
            old = self._ckpt_history.pop(0)
            for path in (self.ckpt_dir / f"{old}.safetensors", self.ckpt_dir / f"{old}.json",
                         self.ckpt_dir / f"replay_{old.removeprefix('step_')}.npz"):
                path.unlink(missing_ok=True)

    def _finish(self, reason: str) -> None:
        if self._finished.is_set():
            return
        self._finish_reason = reason
        self.save_checkpoint("final")
        LOG.info("training finished: %s", reason)
        self._finished.set()
        if self._on_finished is not None:
            self._on_finished(reason)

    # ------------------------------------------------------------------------------ metrics
    def _open_metrics(self) -> None:
        path = self.run_dir / "metrics.csv"
        new = not path.exists() or path.stat().st_size == 0
        self._metrics_file = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._metrics_writer = csv.writer(self._metrics_file)
        if new:
            self._metrics_writer.writerow(METRICS_HEADER)
            self._metrics_file.flush()


def _write_json(path: Path, data: dict) -> None:
    from async_naf.wire.checkpoint import write_file

    write_file(path, json.dumps(data, indent=1).encode("utf-8"))
