"""The trainer core (ROS-free): replay buffer + NAF agent, updates in a thread of their own.

The trainer node (``nodes/trainer_node.py``) feeds it validated transition batches and episode statistics
from its subscriptions; everything else happens here, in the update thread, never in a ROS callback::

    trainer = Trainer(TrainerConfig(run_dir="runs/x", task="reach"), on_weights=publish)
    trainer.start()                      # update thread
    trainer.add_transitions(batch)       # from a subscription: validated rows -> replay buffer (thread-safe)
    trainer.record_episode(stats)        # queued: the update thread writes metrics.csv, TensorBoard, weights
    trainer.wait_finished(timeout)       # stop condition reached -> final checkpoint written
    trainer.stop()                       # (also on Ctrl-C) final checkpoint, join the thread

The trainer is the scheduler; its other jobs each have a module of their own: the settings and the
hyper-parameters of the agent (:mod:`async_naf.learning.config`), the run directory's checkpoint layout
with resume and pruning (:mod:`async_naf.learning.checkpoints`) and the learning curve, metrics.csv and
TensorBoard (:mod:`async_naf.learning.metrics`). ``weights/latest.safetensors`` is rewritten with a weights
publication at most once a second and at each checkpoint.

Counters: ``env_steps`` = transitions received (all robots, including resumed runs); ``updates`` = gradient
updates; ``wall_s`` in metrics = seconds since the first start (resumed runs continue the count). The stop
condition uses the total ``env_steps``, this process's own wall time (``max_wall_s``) and the run's wall-clock
end (``deadline_unix``, the same for a restarted trainer).
"""
from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from async_naf.learning.checkpoints import (
    PRETRAINED,
    CheckpointInfo,
    CheckpointStore,
    newest_checkpoint,
    read_latest_checkpoint,
)
from async_naf.learning.config import TrainerConfig
from async_naf.learning.metrics import CLOSED, QUEUED, MetricsLog
from async_naf.learning.receipts import ReceiptLedger
from async_naf.wire.batch import validate_batch

__all__ = ["CheckpointInfo", "Trainer", "TrainerConfig", "read_latest_checkpoint"]

LOG = logging.getLogger(__name__)
WEIGHTS_FILE_PERIOD_S = 1.0  # weights/latest.safetensors is rewritten at most this often (with a publish), s


def _task_dims(task_name: str) -> tuple[int, int, Any, Any]:
    from async_naf.task.tasks import make_task

    task = make_task(task_name)
    return task.obs_dim, task.act_dim, task.action_low, task.action_high


class Trainer:
    """Replay buffer + agent + update thread + checkpoints + metrics (see the module docstring).

    Args:
        config: the TrainerConfig.
        on_weights: called from the update thread with (policy weights bytes, update count) every
            ``weights_every_updates`` updates, after episode ends (if the weights changed) and at start
            (after the pre-training phase, ``demo_pretrain_updates``, where there is one).
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
        instance_id: int | None = None,
    ) -> None:
        import numpy as np
        import torch

        from async_naf.learning.agents import load_agent, make_agent
        from async_naf.learning.agents.naf import NAFAgent
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
        self.store = CheckpointStore(self.run_dir, config.keep_checkpoints)
        self.ckpt_dir = self.store.ckpt_dir
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
                if self.buffer.eviction != config.replay_eviction:
                    LOG.warning("%s: the buffer evicts %s (as it was written); replay_eviction %s applies to "
                                "new runs only", resume_info.buffer, self.buffer.eviction, config.replay_eviction)
            else:
                self.buffer = self._new_buffer()
            self.updates = self.agent.update_count
            self.env_steps = resume_info.env_steps
            self.episodes = resume_info.episodes
            self._wall_offset = resume_info.wall_s
            LOG.info("resumed from %s: %d updates, %d env steps, buffer %d", resume_info.agent, self.updates,
                     self.env_steps, len(self.buffer))
        else:
            self.agent = make_agent(config.agent_config(
                self.obs_dim, self.act_dim, np.broadcast_to(low, (self.act_dim,)),
                np.broadcast_to(high, (self.act_dim,))), algorithm=config.algorithm)
            self.buffer = self._new_buffer()
        self._setup_demos()
        self._demo_bc = isinstance(self.agent, NAFAgent)  # NAF's update takes demo_rows (naf.demo_bc_weight)
        # updates of the pre-training phase (demonstrations only; outside updates_per_step), kept in checkpoints
        self.pretrain_updates = int(self.resume_meta.get("pretrain_updates", 0))
        # what the buffer holds of each collector session: the checkpoint's table when resumed
        self.instance_id = int(instance_id) if instance_id is not None else secrets.randbelow(2**31 - 2) + 1
        self.ledger = ReceiptLedger.from_table(self.instance_id, self.resume_meta.get("received"))

        self._buffer_lock = threading.Lock()
        self._agent_lock = threading.RLock()
        self._ckpt_lock = threading.Lock()
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._paused = threading.Event()
        # held from the pause check to the end of the update it allowed: set_paused(True) returns only once no
        # update is under way (an update that had passed the check landed after a pause and its checkpoint)
        self._update_gate = threading.Lock()
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
        self.metrics = MetricsLog(self.run_dir, config.tensorboard)
        # a restarted trainer: episodes its predecessor recorded in metrics.csv after the checkpoint count too
        self.episodes_after_checkpoint = 0
        if resume_info is not None and self.metrics.rows_at_open > self.episodes:
            self.episodes_after_checkpoint = self.metrics.rows_at_open - self.episodes
            self.episodes = self.metrics.rows_at_open

    # ------------------------------------------------------------------------------ resume
    def _resume_source(self) -> CheckpointInfo | None:
        """With ``resume``: run_dir's own newest usable checkpoint first (a restarted trainer continues its
        run, even one that began from ``resume_from``), else ``resume_from``'s; none there: fresh."""
        self.resume_meta: dict[str, Any] = {}
        if not self.config.resume and not self.config.resume_from:
            return None
        sources = [Path(self.config.run_dir)] if self.config.resume else []
        if self.config.resume_from:
            sources.append(Path(self.config.resume_from))
        for src in sources:
            found = newest_checkpoint(src)
            if found is not None:
                info, self.resume_meta = found
                return info
        if self.config.resume_from:
            raise ValueError(f"resume_from={self.config.resume_from}: no checkpoint (checkpoints/latest.json) there")
        LOG.info("resume: no checkpoint in %s yet; starting fresh", self.config.run_dir)
        return None

    def _new_buffer(self) -> Any:
        """An empty :class:`~async_naf.learning.replay.ReplayBuffer` as configured (capacity, eviction; its
        eviction draws seeded by the run's seed)."""
        from async_naf.learning.replay import ReplayBuffer

        cfg = self.config
        return ReplayBuffer(cfg.replay_capacity, self.obs_dim, self.act_dim, cfg.seed, eviction=cfg.replay_eviction)

    def _setup_demos(self) -> None:
        """The demonstration buffer and the batch mixer (:mod:`async_naf.learning.demos`).

        A resumed run re-loads its datasets from the paths its checkpoint records (when ``demos`` is empty)
        or from ``demos``; a recorded dataset whose replay.npz changed since is refused (ValueError). The
        demonstrations are not copied into checkpoints: they never change during a run.
        """
        from async_naf.learning.demos import DemoMixer, load_demos

        recorded = self.resume_meta.get("demos") or []
        expected = {str(d["path"]): str(d["sha256"]) for d in recorded if isinstance(d, dict) and "path" in d}
        paths = list(self.config.demos) or list(expected)
        self.demo_buffer = None
        self.demo_sources: list[Any] = []
        if paths:
            self.demo_buffer, self.demo_sources = load_demos(paths, self.config.task, self.obs_dim, self.act_dim,
                                                             seed=self.config.seed + 1, expected=expected)
            state = self.resume_meta.get("demo_rng_state")
            if state:
                self.demo_buffer.rng.bit_generator.state = state
            LOG.info("demonstrations: %d rows from %s, ratio %g", len(self.demo_buffer),
                     ", ".join(s.path for s in self.demo_sources), self.config.demo_ratio)
        self.mixer = DemoMixer(self.demo_buffer, self.config.demo_ratio, self.agent.config.batch_size,
                               self.config.min_buffer_size)
        self.mixer.demo_rows_sampled = int(self.resume_meta.get("demo_rows_sampled", 0))
        self.mixer.rows_sampled = int(self.resume_meta.get("rows_sampled", 0))
        self._rows_at_last_episode = (self.mixer.demo_rows_sampled, self.mixer.rows_sampled)
        self._last_demo_share = 0.0

    def demo_share_since_last_episode(self) -> float:
        """Share of demonstration rows in the update batches since the previous call (0 without updates)."""
        demo, total = self.mixer.demo_rows_sampled, self.mixer.rows_sampled
        last_demo, last_total = self._rows_at_last_episode
        self._rows_at_last_episode = (demo, total)
        return (demo - last_demo) / (total - last_total) if total > last_total else 0.0

    # ------------------------------------------------------------------------------ inputs
    def add_transitions(self, batch: Any) -> int:
        """Add a validated batch (replay.Batch or layouts.TransitionBatch) to the buffer; thread-safe.

        Returns:
            rows added.

        Raises:
            ValueError: wrong dims or invalid values (nothing is added; counted in ``rejected_batches``).
        """
        with self._buffer_lock:
            if not hasattr(batch, "sequenced"):
                n = self._add_rows(batch)
            else:  # None: every row a copy of rows already held (a collector re-sending), or held back
                try:  # what the buffer would refuse is refused before the ledger holds it back
                    validate_batch(batch.to_batch(), self.buffer.obs_dim, self.buffer.act_dim)
                except ValueError:
                    self.rejected_batches += 1
                    raise
                part = self.ledger.admit(batch, time.monotonic())
                n = self._add_rows(part) if part is not None else 0
                n += self._add_released()
        if n:
            with self._wake:
                self._wake.notify()
        return n

    def _add_rows(self, part: Any) -> int:
        """``part`` into the buffer and, if sequenced, the ledger; the caller holds the buffer lock."""
        rows: Any = part.to_batch() if hasattr(part, "to_batch") else part
        try:
            n = self.buffer.add_batch(rows)
        except ValueError:
            self.rejected_batches += 1
            raise
        if hasattr(part, "sequenced"):
            self.ledger.commit(part)
        self.env_steps += n
        return n

    def _add_released(self) -> int:
        """The batches the ledger held back that are due now (ReceiptLedger.release), into the buffer; the caller
        holds the buffer lock. (Each was checked against this buffer before it was held back.)"""
        n = 0
        while (part := self.ledger.release(time.monotonic())) is not None:
            n += self._add_rows(part)
        return n

    def ack(self) -> Any:
        """The acknowledgement to publish (layouts.TransitionAck): what the buffer holds per collector session,
        and the episode statistics held (``stats``).

        The ledger is read first, then the episode rows queued are written to metrics.csv (flushed): every
        statistic the acknowledgement counts as received was queued before it was read (:meth:`record_episode`),
        so a trainer killed right after publishing it has them in metrics.csv, not only queued for the update
        thread (which writes nothing while it saves a checkpoint). (The mark also covers the numbers a collector
        said it no longer waits for: its ``base``.)
        """
        with self._buffer_lock:
            released = self._add_released()  # batches held back that are due, so an idle collector's rows go too
            ack = self.ledger.ack()
        if released:
            with self._wake:
                self._wake.notify()
        if self.metrics.queued:
            self.metrics.write_queued()  # the update thread sees rows_written move: an episode boundary
        return ack

    def record_episode(self, stats: Any) -> bool:
        """One finished episode (layouts.EpisodeStats); cheap, for a subscription callback. False: a copy of
        an episode already recorded (``duplicate_episode_stats``; :mod:`async_naf.learning.metrics`; numbered
        statistics this trainer holds by number are copies too), or the metrics are closed.

        Counts it and queues its metrics.csv row (with wall_s, env_steps and updates as of now); the update
        thread writes the row (flushed) and the TensorBoard scalars on its next pass and then publishes the
        weights if they changed. :meth:`close` (and so :meth:`stop`) writes rows still queued. A numbered one
        (``seq``) then counts as held in the acknowledgements (a copy too: the original is held); not once
        the metrics are closed, when nothing more is written.
        """
        demo = (self.demo_share_since_last_episode(), len(self.demo_buffer) if self.demo_buffer is not None else 0)
        numbered = bool(getattr(stats, "seq", 0))
        if numbered:
            with self._buffer_lock:
                held = self.ledger.holds_stats(stats)
        result = self.metrics.queue_episode(self.wall_s, self.env_steps, self.updates, stats, demo,
                                            copy=numbered and held)
        if numbered and result != CLOSED:
            with self._buffer_lock:
                self.ledger.stats_received(stats)
        if result != QUEUED:
            return False  # a copy (a collector re-sending what it could not know arrived): counted, not recorded
        self.episodes += 1
        with self._wake:
            self._wake.notify()
        return True

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
        """Pause (no updates; transitions are still buffered) or resume the update thread. A pause returns once
        an update under way has finished: the weights do not change after it (a checkpoint taken then is what
        the run ends with if it stops paused)."""
        if paused:
            self._paused.set()
            with self._update_gate:  # wait for an update that passed the pause check before the pause
                pass
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
        self.metrics.close()

    def stats(self) -> dict[str, float]:
        """Counters for diagnostics: env_steps, updates, buffer size, episodes, paused, rejected batches,
        skipped updates (non-finite gradients), wall_s, the demonstrations (demo_buffer_size, demo_share of
        the last update batch, demo_rows_sampled of rows_sampled) and the latest training metrics (loss,
        q_mean, ...)."""
        out: dict[str, float] = {
            "env_steps": self.env_steps, "updates": self.updates, "buffer_size": len(self.buffer),
            "episodes": self.episodes, "paused": float(self.paused), "rejected_batches": self.rejected_batches,
            "skipped_updates": self.agent.skipped_updates,
            "wall_s": round(self.wall_s, 3), "instance_id": self.instance_id, **self.ledger.counts,
            "duplicate_episode_stats": self.metrics.duplicate_episodes,
            "episodes_after_checkpoint": self.episodes_after_checkpoint,
            "demo_buffer_size": len(self.demo_buffer) if self.demo_buffer is not None else 0,
            "demo_share": round(self._last_demo_share, 4), "demo_rows_sampled": self.mixer.demo_rows_sampled,
            "rows_sampled": self.mixer.rows_sampled,
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
        if cfg.deadline_unix and time.time() >= cfg.deadline_unix:
            return f"deadline_unix={cfg.deadline_unix:.1f} reached (the run's end)"
        return ""

    def _update_allowed(self) -> bool:
        cfg = self.config
        if self._paused.is_set() or not self.mixer.ready(len(self.buffer)):
            return False
        if self.updates - self.pretrain_updates >= cfg.updates_per_step * self.env_steps:
            return False
        if cfg.max_updates_per_s:
            return self.updates_this_run < cfg.max_updates_per_s * (time.monotonic() - self._t_start)
        return True

    def _pretrain(self) -> None:
        """The pre-training phase (``demo_pretrain_updates``): a run with demonstrations takes that many
        updates on demonstration-only batches before the first weights go out (a trainer restarted from a
        checkpoint written during the phase makes the rest of them). The robots meanwhile act as before any
        weights (``explore_before_weights``); their data waits in the buffer. The run's stop conditions and
        pauses hold during the phase too."""
        n = self.config.demo_pretrain_updates
        if n <= 0 or self.updates != self.pretrain_updates or self.pretrain_updates >= n:
            return  # off, done, or a run that went online (a resumed run never goes back to it)
        if not self.mixer.uses_demos:
            LOG.warning("demo_pretrain_updates=%d ignored: no demonstrations (demos, demo_ratio > 0)", n)
            return
        t0, start = time.monotonic(), self.updates
        attempts = n - start  # an update skipped for a non-finite gradient is not repeated
        while attempts > 0:
            while self._paused.is_set() and not self._stop.is_set() and not self._stop_reason():
                self._stop.wait(0.05)  # (a run's time limit ends it while paused too)
            if self._stop.is_set() or self._stop_reason():
                break
            with self._update_gate:
                if not self._paused.is_set():  # (a pause that came since: wait for the resume)
                    self._update_once(demos_only=True)
                    attempts -= 1
        LOG.info("pre-trained on the demonstrations: %d updates in %.1f s", self.updates - start,
                 time.monotonic() - t0)

    def _run(self) -> None:
        self._start_updates = self.updates
        try:
            self._pretrain()
            if self.updates > self._start_updates:
                if self.config.pause_after_pretrain:  # held until resumed: evaluated on exactly these weights
                    self.set_paused(True)
                    self._weights_request = True  # the robots get the pre-trained weights meanwhile
                if self.config.checkpoint_every_s:
                    # the pre-trained policy as a checkpoint of its own (kept: not a periodic one), evaluated
                    # like them (async-naf train's eval.csv: what the demonstrations gave before going online)
                    self.save_checkpoint(PRETRAINED)
            self._start_updates = self.updates  # max_updates_per_s paces the online updates only
            rows_seen = self.metrics.rows_written
            while not self._stop.is_set():
                if self.metrics.queued:
                    self.metrics.write_queued()
                if self.metrics.rows_written != rows_seen:  # written here or by ack(): an episode boundary
                    rows_seen = self.metrics.rows_written
                    self._weights_request = True  # publish the weights if they changed
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
                with self._update_gate:
                    allowed = self._update_allowed()
                    if allowed:
                        self._update_once()
                if allowed:
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

    def _update_once(self, demos_only: bool = False) -> None:
        if demos_only:
            batch, n_demo = self.mixer.sample_demos()
        else:
            with self._buffer_lock:
                batch, n_demo = self.mixer.sample(self.buffer)
        self._last_demo_share = n_demo / self.agent.config.batch_size
        with self._agent_lock:
            if n_demo and self._demo_bc:
                # pre-training clones every demonstration row: the filter y > V(x) is for the online phase
                metrics = self.agent.update(batch, demo_rows=n_demo,  # type: ignore[call-arg]
                                            demo_filter=False if demos_only else None)
            else:
                metrics = self.agent.update(batch)
            self.updates = self.agent.update_count
            if demos_only:  # under the lock: a checkpoint sees updates and pretrain_updates together
                self.pretrain_updates = self.updates
        if metrics.get("skipped"):  # non-finite gradient: no weights changed, counted by the agent
            skipped = self.agent.skipped_updates
            if skipped & (skipped - 1) == 0:  # log the 1st, 2nd, 4th, 8th, ... skip
                LOG.warning("update skipped: non-finite gradient (grad_norm=%s; %d skipped so far)",
                            metrics.get("grad_norm"), skipped)
            return
        if self.updates % self.config.log_every_updates == 0:
            self._last_metrics = {k: float(v) for k, v in metrics.items()}
            self.metrics.add_training(self._last_metrics, self.updates)
        if self.updates % self.config.weights_every_updates == 0 and not demos_only:
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
            self.store.write_weights(data)
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
        with self._agent_lock:
            stem = self.store.stem(self.updates, tag)
            self.agent.save(self.store.agent_path(stem))
            weights = self.agent.policy_weights()
            updates, pretrain_updates = self.updates, self.pretrain_updates
        if self.config.save_buffer:
            from async_naf.learning.replay import write_snapshot

            with self._buffer_lock:  # copy only; the subscriptions' add_transitions wait for the copy, not the disk
                snapshot = self.buffer.snapshot()
                env_steps = self.env_steps
                received = self.ledger.table()  # the same moment as the buffer: what a resumed trainer holds
            write_snapshot(self.store.buffer_path(stem), snapshot)
        else:
            env_steps = self.env_steps
            received = []  # no buffer in the checkpoint: a trainer resuming from it holds none of the rows
        # the episodes metrics.csv holds: a trainer resumed from this checkpoint counts from it, and an episode
        # still queued here (never written if the trainer dies) is sent again by its collector
        episodes = self.episodes
        episodes -= self.metrics.queued  # read after: a row queued in between is left out, not counted twice
        counters = {"updates": updates, "env_steps": env_steps, "episodes": episodes, "wall_s": self.wall_s,
                    "received": received, "task": self.config.task, "algorithm": self.config.algorithm,
                    "obs_dim": self.obs_dim, "act_dim": self.act_dim, "pretrain_updates": pretrain_updates,
                    **self._demo_counters()}
        info = self.store.commit(stem, weights, self.config.save_buffer, counters, periodic=tag is None)
        self._last_ckpt = time.monotonic()
        LOG.info("checkpoint %s: %d updates, %d env steps", info.agent, updates, env_steps)
        return info

    def _demo_counters(self) -> dict[str, Any]:
        """What a checkpoint records of the demonstrations: the datasets (path, sha256, rows; re-loaded on
        resume), the sampler's state and the rows drawn so far."""
        if self.demo_buffer is None:
            return {}
        return {"demos": [s.as_dict() for s in self.demo_sources], "demo_ratio": self.config.demo_ratio,
                "demo_rng_state": self.demo_buffer.rng.bit_generator.state,
                "demo_rows_sampled": self.mixer.demo_rows_sampled, "rows_sampled": self.mixer.rows_sampled}

    def _finish(self, reason: str) -> None:
        if self._finished.is_set():
            return
        self._finish_reason = reason
        self.save_checkpoint("final")
        LOG.info("training finished: %s", reason)
        self._finished.set()
        if self._on_finished is not None:
            self._on_finished(reason)
