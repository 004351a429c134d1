"""The collector node's episode state machine and batching (ROS-free): when to reset, start, end and send.

:class:`CollectorLoop` owns an :class:`~async_naf.collecting.collector.EpisodeAssembler` and runs the
episodes of one robot: ``idle -> resetting -> zeroing -> running -> idle`` (``finished`` after
``max_episodes``). The node feeds it decoded messages and the answers of its service calls, each with the
steady-clock time ``now`` (s), ticks it every ``TICK_S``, and carries out what it answers (:class:`Actions`)::

    loop = CollectorLoop(config)
    acts = loop.tick(now, trainer_listening=..., reset_ready=...)
    acts = loop.on_step(step, now)                     # a decoded policy/step
    acts = loop.on_truth(stamp_s, truth, now)          # ground truth (simulation only)
    acts = loop.on_service_reply(success, message, now) / loop.on_service_error(text, now)
    # the node then publishes acts.goals, acts.batches, acts.stats, calls acts.call ('reset' | 'zero')
    # or cancels the call in flight (acts.cancel), and logs acts.log

Rules (units: s):

- A reset is requested when idle, a trainer listens (``wait_for_trainer``) and the reset service is ready;
  otherwise it is retried 0.2 s later. No answer within ``reset_timeout_s`` (zeroing: at most 2 s), a failed
  call or a refusal counts a ``reset_failures`` and retries after ``RETRY_S``.
- After the reset (and the door estimator's zeroing, door tasks), a new goal starts the episode.
- Steps whose ground truth is wanted wait up to ``truth_wait_s`` for it (matched by stamp), else are dropped
  (``truth_missing``).
- Full batches are sent at once; a partial one after ``max_batch_delay_s``.
- Trainer gone (``wait_for_trainer`` and no subscriber to /trainer/transitions after one was seen: a trainer
  restarting): episodes go on (the policy acts with the last weights); batches and episode statistics are
  kept in a backlog of at most ``backlog_transitions`` transitions (the oldest dropped beyond it, counted as
  ``lost_transitions`` / ``lost_episode_stats``) and sent, oldest first, ``BACKLOG_PER_TICK`` per tick once a
  trainer listens again. With ``backlog_transitions`` 0 episodes pause and what is made meanwhile is counted
  as lost.
- Acknowledgements (:meth:`CollectorLoop.on_ack`, the trainer's ``/trainer/acks``): batches carry this
  collector's ``session`` and row index (``first``). Once a trainer has acknowledged anything, sent batches
  stay *in flight* until acknowledged (in flight + backlog <= ``backlog_transitions``; beyond it the oldest in
  flight are forgotten, counted ``unconfirmed_transitions``). At most ``send_window`` messages are in flight;
  what comes beyond it waits in the backlog, so a burst never overruns the streams' keep-last queues. When
  the trainer is gone, what is in flight goes back to the front of the backlog and is sent again (the
  trainer drops copies by session and row). A new trainer (another id in the acknowledgement) says which of
  this session's rows it started with (``restored``, from its checkpoint): the rows the previous one had
  acknowledged beyond that died with it, counted ``lost_with_trainer``; what is in flight and it does not hold
  is re-sent.
- Episode statistics are acknowledged by their own numbers: each carries the session, its number ``seq``
  (1, 2, ...) and ``base`` (every statistic numbered ``<= base`` is settled here: acknowledged, or given up
  and counted), and stays in flight, in order with the batches, until an acknowledgement's ``stats`` for the
  session reaches its number (the trainer holds every one up to it, written to metrics.csv). Statistics have a
  ``send_window`` of their own: those beyond it wait (parked) and the batches behind them go, so statistics a
  trainer never takes do not hold up the rows. Statistics still in flight when the trainer goes (or another
  trainer answers) go back into the backlog and are sent again; so are those a trainer that keeps
  acknowledging has not acknowledged ``STATS_RESEND_S`` after they were sent (lost on their topic: its mark
  stops below them), each further time after twice as long, at most ``STATS_RESEND_MAX_S``, with one warning
  once one has gone ``STATS_RESEND_WARN`` times (``resent_episode_stats``; the trainer drops copies by number,
  and by robot, episode and return), unless the trainer that answers acknowledges them; forgotten in flight
  by the bound they are counted
  ``unconfirmed_episode_stats``, dropped from the backlog ``lost_episode_stats``. (Before the statistics had
  numbers the acknowledgement of an episode's rows stood for them: a trainer that took the rows, published
  an acknowledgement and died before it took the statistics sent just after them lost them uncounted.)
- The episode ends at its time limit or on success (``terminate_on_success``): the policy is held (inactive
  goal), pending rows are sent, then the episode's statistics. No step of the episode for ``step_timeout_s``
  aborts it (steps of another episode count as none).
- Resynchronisation (a goal message lost, or overwritten in the policy's keep-last-1 queue by another
  publisher): a step of another episode, or one whose observation was made for another goal
  (``goal_mismatch``), or while running no step of the episode for ``goal_resend_s``, re-publishes the
  current goal (``goal_resends``; at most once per ``goal_resend_s``). Re-sending is idempotent for a policy
  that already has the goal. So a disagreement resolves after one ``goal_resend_s`` once the goal gets
  through, and at the latest by the abort after ``step_timeout_s`` and the next episode's goal.
"""
from __future__ import annotations

import math
import secrets
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field, replace

import numpy as np

from async_naf.collecting.collector import CollectorConfig, EpisodeAssembler, GroundTruth
from async_naf.task.tasks import TaskState
from async_naf.wire.layouts import MAX_SESSION, EpisodeStats, Goal, PolicyStep, TransitionAck, TransitionBatch

TICK_S = 0.02  # the node ticks the loop at 50 Hz, s
TRUTH_KEEP = 256  # ground-truth samples kept for matching by stamp
RETRY_S = 1.0  # after a failed reset, s
WAIT_RETRY_S = 0.2  # while waiting for a trainer or the reset service, s
# a trainer that acknowledged before and sends nothing for this long is gone, whatever the graph shows (the
# trainer re-publishes its acknowledgement at least once a second; through a discovery server a host cut off
# from it never saw the trainer's subscription leave), s
ACK_TIMEOUT_S = 10.0
# episode statistics not acknowledged this long after they were sent are sent again (lost on the way to a trainer
# that stays: its acknowledgement's mark stops below them); each further time twice as long, at most
# STATS_RESEND_MAX_S, so statistics a trainer never takes (another version, say) cost little, s
STATS_RESEND_S = 2.0
STATS_RESEND_MAX_S = 60.0
STATS_RESEND_WARN = 3  # re-sends of one statistic that make the collector warn (once)
ZERO_TIMEOUT_S = 2.0  # the door estimator's zeroing answers within this (or reset_timeout_s if smaller), s
BACKLOG_PER_TICK = 10  # backlog messages sent per tick once a trainer is back (the stream QoS keeps 100)
GOAL_OBS_TOL = 1e-4  # a step's observation vs the one recomputed with the collector's goal (float32 on the wire)


def _stamp_key(stamp_s: float) -> int:
    return int(round(stamp_s * 1e9))


@dataclass
class Actions:
    """What the node does after an event, in this order: publish ``goals`` (task/goal), send ``batches``
    (/trainer/transitions), publish ``stats`` (/trainer/episode_stats), cancel the service call in flight
    (``cancel``), start the service call ``call`` (``'reset'`` or ``'zero'``), log ``log`` entries
    (``(level, key, text)``: level ``'info'`` or ``'warning'``; the node throttles repeats per key)."""

    goals: list[Goal] = field(default_factory=list)
    batches: list[TransitionBatch] = field(default_factory=list)
    stats: list[EpisodeStats] = field(default_factory=list)
    call: str | None = None
    cancel: bool = False
    log: list[tuple[str, str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.goals or self.batches or self.stats or self.call or self.cancel or self.log)


@dataclass
class _Marked:
    """Episode statistics with the session's row mark at the episode's end (rows ``< mark`` sent before
    them), their number among the session's statistics, and whether they were sent before (a re-send is
    counted)."""

    mark: int
    stats: EpisodeStats
    seq: int
    sent: bool = False
    resends: int = 0  # times sent again because no acknowledgement covered it (STATS_RESEND_S)
    resend_t: float = math.inf  # when to send it again if no acknowledgement covers it (the loop's clock, s)


class CollectorLoop:
    """See the module docstring.

    Args:
        config: the collector's configuration.
        assembler: the episode assembler (default: one built from ``config``).

    Attributes:
        asm: the EpisodeAssembler (task, episode counter, transitions).
        phase: ``idle``, ``resetting``, ``zeroing``, ``running`` or ``finished``.
        counts: episodes, batches_sent, transitions_sent, aborted_episodes, reset_failures, goal_resends,
            backlog_transitions (kept now), lost_transitions, lost_episode_stats, the acknowledgement's
            counters (acked/inflight/resent/unconfirmed transitions, lost_with_trainer, trainers_seen) and
            inflight/resent/unconfirmed_episode_stats, unsent_at_exit_transitions/_episode_stats (the backlog
            at process exit with no trainer listening, e.g. after the trainer ended the run: what was made
            after it went, and what was sent before and not acknowledged, which the trainer may hold).
        drops: dropped inputs by reason (the assembler counts its own in ``asm.dropped``).
        goal: the goal last published (None before :meth:`initial_goal`).
    """

    def __init__(self, config: CollectorConfig, assembler: EpisodeAssembler | None = None,
                 session: int | None = None) -> None:
        self.config = config
        self.session = int(session) if session is not None else secrets.randbelow(MAX_SESSION - 1) + 1
        if not 1 <= self.session <= MAX_SESSION:
            raise ValueError(f"session must be in 1 .. {MAX_SESSION}, got {self.session}")
        self.asm = assembler or EpisodeAssembler(config)
        self.is_door = bool(self.asm.task.is_door)
        self.phase = "idle"
        self.counts: Counter[str] = Counter({"episodes": 0, "batches_sent": 0, "transitions_sent": 0,
                                             "aborted_episodes": 0, "reset_failures": 0,
                                             "goal_resends": 0, "backlog_transitions": 0,
                                             "lost_transitions": 0, "lost_episode_stats": 0,
                                             "acked_transitions": 0, "inflight_transitions": 0,
                                             "resent_transitions": 0, "lost_with_trainer": 0,
                                             "unconfirmed_transitions": 0, "trainers_seen": 0,
                                             "sequenced_transitions": 0, "inflight_episode_stats": 0,
                                             "resent_episode_stats": 0, "unconfirmed_episode_stats": 0,
                                             "unsent_at_exit_transitions": 0, "unsent_at_exit_episode_stats": 0})
        self._next_row = 0  # index of the next row of this session
        self._sent_rows = 0  # rows sent at least once (a batch ending at or below it is a re-send)
        self._inflight: deque[TransitionBatch | _Marked] = deque()  # in publication order
        self._trainer_id: int | None = None  # the trainer of the last acknowledgement
        self._acked = 0  # rows of this session that trainer holds
        self._listening = True
        self._trainer_seen = False
        self._now = 0.0  # the clock of the latest input, s (when a statistic was sent)
        self._last_ack_t: float | None = None  # when the last acknowledgement arrived (the loop's clock, s)
        # statistics in flight whose rows were acknowledged, not they themselves yet: still in flight; sent again
        # after STATS_RESEND_S, or if the trainer goes
        self._awaiting: deque[_Marked] = deque()
        # statistics waiting for the statistics' send window (send_window unacknowledged ones): batches go past
        self._parked: deque[_Marked] = deque()
        self._next_resend_t = math.inf  # no statistic in flight is due before this (a lower bound), s
        self._resend_warned = False
        self._stats_seq = 0  # the number of the session's last episode statistics
        self._open_stats: set[int] = set()  # numbers of statistics not settled (in flight or in the backlog)
        self._subscribed = False  # the last tick's view: a trainer subscribes to /trainer/transitions
        self._backlog: deque[TransitionBatch | _Marked] = deque()
        self.goal: Goal | None = None
        self._goal_t = -math.inf
        self.drops: Counter[str] = Counter()
        self._phase_t = 0.0
        self._last_step_t = 0.0
        self._first_pending_t: float | None = None
        self._retry_after = 0.0
        self._truth: OrderedDict[int, GroundTruth] = OrderedDict()
        self._truth_seen = False
        self._waiting: deque[tuple[PolicyStep, float]] = deque()

    @property
    def done(self) -> bool:
        """All requested episodes collected (max_episodes) and sent."""
        return self.phase == "finished" and self.asm.pending == 0

    @property
    def trainer_state(self) -> dict[str, int]:
        """Whether a trainer was ever seen subscribing to /trainer/transitions (``trainer_heard``) and whether one
        subscribed at the last tick (``trainer_listening``), as 0/1 for the counters file and /diagnostics."""
        return {"trainer_heard": int(self._trainer_seen), "trainer_listening": int(self._subscribed)}

    def initial_goal(self) -> Goal:
        """The inactive goal published at start (the policy holds still until the first episode)."""
        self.goal = Goal(max(self.asm.episode, 0), False, self.asm.task.sample_goal(self.asm.rng))
        return self.goal

    # ------------------------------------------------------------------------------------------ inputs
    def on_step(self, step: PolicyStep, now: float) -> Actions:
        """A decoded policy step."""
        acts = Actions()
        self._now = now
        if self._of_this_episode(step):
            if self._goal_matches(step):
                self._last_step_t = now
            else:
                self.drops["goal_mismatch"] += 1
                acts.log.append(("warning", "goal_mismatch", "a policy step made for another goal: dropped"))
                self._resend_goal(acts, now, "a policy step made for another goal")
                return acts
        else:
            self._resend_goal(acts, now, f"a policy step of episode {step.episode}")
        if self.is_door and self.config.use_ground_truth and self._truth_seen:
            self._waiting.append((step, now))
            self._drain_waiting(acts, now, expire=False)
        else:
            self._feed(acts, step, None, now)
        return acts

    def on_truth(self, stamp_s: float, truth: GroundTruth, now: float) -> Actions:
        """Ground truth of the door at a joint-state stamp (s)."""
        acts = Actions()
        self._now = now
        self._truth[_stamp_key(stamp_s)] = truth
        while len(self._truth) > TRUTH_KEEP:
            self._truth.popitem(last=False)
        self._truth_seen = True
        self._drain_waiting(acts, now, expire=False)
        return acts

    def on_ack(self, ack: TransitionAck, now: float) -> Actions:
        """A decoded acknowledgement of the trainer (what it holds of this session's rows and statistics),
        received at ``now`` (s, the loop's clock)."""
        acts = Actions()
        self._now = now
        self._last_ack_t = now
        key = (self.config.robot_id, self.session)
        restored, received = ack.entries.get(key, (0, 0))
        if ack.trainer != self._trainer_id:
            if self._trainer_id is not None:
                lost = max(0, self._acked - restored)
                self.counts["lost_with_trainer"] += lost
                acts.log.append(("warning", "new_trainer",
                                 f"a new trainer (id {ack.trainer}) holds {restored} of this collector's rows from "
                                 f"its checkpoint: {lost} acknowledged by the previous one died with it"))
                # what was sent since the last acknowledgement may have gone to a trainer that never answered (a
                # quick restart, or one that died before acknowledging the backlog): send again what this one lacks
                self._requeue_inflight(received)
            self.counts["trainers_seen"] += 1
            self._trainer_id, self._acked = ack.trainer, received
        self._acked = max(self._acked, received)
        self.counts["acked_transitions"] = self._acked
        held = ack.stats.get(key, 0)  # this trainer holds every statistic numbered <= held
        if held:
            self._inflight = self._confirm_held(self._inflight, held)
            self._awaiting = self._confirm_held(self._awaiting, held)
            if self._parked and any(m.seq <= held for m in self._parked):  # sent before, held after all
                self._open_stats.difference_update(m.seq for m in self._parked if m.seq <= held)
                self._parked = deque(m for m in self._parked if m.seq > held)
        while self._inflight and _end(self._inflight[0]) <= self._acked:
            item = self._inflight.popleft()
            if isinstance(item, _Marked):
                self._awaiting.append(item)  # its rows are held: it waits for its own number
            else:
                self._uncount_inflight(item)
        # the oldest batches of the backlog held already (re-queued from in flight): no need to re-send them.
        # Statistics sent before are sent again unless this trainer holds them (a new trainer holds rows from its
        # checkpoint, not the statistics its predecessor had only queued); the trainer drops a copy
        again: deque[TransitionBatch | _Marked] = deque()
        while self._backlog:
            head = self._backlog[0]
            if isinstance(head, _Marked):
                if head.seq <= held:
                    self._backlog.popleft()
                    self._open_stats.discard(head.seq)
                    continue
                if not head.sent:  # never sent: it waits its turn, and so does everything behind it
                    break
                again.append(self._backlog.popleft())
                continue
            if not head.sequenced or _end(head) > self._acked:
                break
            self._backlog.popleft()
            self.counts["backlog_transitions"] -= head.rows
        self._backlog.extendleft(reversed(again))
        return acts

    def tick(self, now: float, trainer_listening: bool = True, reset_ready: bool = True,
             recorder_ready: bool = True) -> Actions:
        """The periodic tick: late truth, partial batches, the episode's phase (start a reset, time out a
        call, abort a stalled episode). ``reset_ready``: the reset service answers; ``trainer_listening``:
        something subscribes to /trainer/transitions; ``recorder_ready``: the recorder named by
        ``wait_for_recorder`` subscribes to the policy's steps (only the first episode waits for it)."""
        acts = Actions()
        self._now = now
        quiet_s = 0.0 if self._last_ack_t is None else now - self._last_ack_t
        silent = quiet_s > ACK_TIMEOUT_S
        if trainer_listening and silent and self._listening and self.config.wait_for_trainer:
            acts.log.append(("warning", "trainer_silent", f"no acknowledgement for {quiet_s:.0f} s "
                                                          "although the trainer still shows: taken as gone "
                                                          "(unreachable?)"))
        trainer_listening = trainer_listening and not silent
        listening = trainer_listening or not self.config.wait_for_trainer
        if self._listening and not listening and (self._inflight or self._awaiting):
            acts.log.append(("warning", "trainer_gone", f"trainer gone: {self.counts['inflight_transitions']} "
                                                        "unacknowledged transitions and "
                                                        f"{self.counts['inflight_episode_stats']} episode "
                                                        "statistics kept to send again"))
            self._requeue_inflight(0)
        self._listening = listening
        self._trainer_seen |= trainer_listening
        self._subscribed = trainer_listening
        if self._listening:
            self._resend_stale(acts, now)
        if self._listening and (self._parked or self._backlog):
            self._drain_backlog(acts)
        if self._waiting:
            self._drain_waiting(acts, now, expire=True)
        if self._first_pending_t is not None and now - self._first_pending_t >= self.config.max_batch_delay_s:
            self._send_batch(acts, now)
        if self.phase == "idle" and now >= self._retry_after:
            self._begin_reset(acts, now, trainer_listening, reset_ready, recorder_ready)
        elif self.phase in ("resetting", "zeroing"):
            timeout = self._call_timeout()
            if now - self._phase_t > timeout:
                acts.cancel = True
                self._service_failed(acts, f"{self.phase}: no answer within {timeout:g} s", now)
        elif self.phase == "running" and now - self._last_step_t > self.config.step_timeout_s:
            acts.log.append(("warning", "aborted", f"no policy step for {self.config.step_timeout_s:g} s: episode "
                                        f"{self.asm.episode} aborted after {self.asm.episode_length} transitions"))
            self.counts["aborted_episodes"] += 1
            self.asm.abort_episode()
            self._publish(acts, self._hold_goal(), now)
            self._flush(acts, now)
            self.phase = "idle"
        elif self.phase == "running" and now - self._last_step_t >= self.config.goal_resend_s > 0.0:
            self._resend_goal(acts, now, f"no policy step for {now - self._last_step_t:.2f} s")
        return acts

    def on_service_reply(self, success: bool, message: str, now: float, zero_ready: bool = True) -> Actions:
        """The answer of the call in flight (``resetting``: sim/reset; ``zeroing``: door_angle/zero).
        ``zero_ready``: the door estimator's zero service answers (else the episode starts without it)."""
        acts = Actions()
        self._now = now
        if self.phase == "resetting":
            if not success:
                self._service_failed(acts, f"reset refused: {message}", now)
                return acts
            if self.is_door and self.config.zero_door_on_reset and zero_ready:
                acts.call = "zero"
                self.phase, self._phase_t = "zeroing", now
                return acts
        elif self.phase == "zeroing" and not success:
            acts.log.append(("warning", "zero_refused", f"door_angle/zero refused: {message}"))
        elif self.phase != "zeroing":
            return acts  # a late answer to a call already given up
        self._start_episode(acts, now)
        return acts

    def on_service_error(self, text: str, now: float) -> Actions:
        """The call in flight failed (an exception instead of an answer)."""
        acts = Actions()
        if self.phase in ("resetting", "zeroing"):
            self._service_failed(acts, f"{self.phase}: call failed: {text}", now)
        return acts

    def shutdown(self, now: float) -> Actions:
        """Process exit: hold the policy and send what is pending, and again what is in flight and not
        acknowledged (the trainer drops copies): the last chance for what was lost on the way."""
        acts = Actions()
        self._now = now
        self._publish(acts, self._hold_goal(), now)
        self._flush(acts, now)
        if self._listening:
            self._requeue_inflight(self._acked)  # the parked statistics too
        self._backlog.extendleft(reversed(self._parked))
        self._parked.clear()
        while self._backlog:  # all of it now while a trainer listens, else lost with the process
            item = self._backlog.popleft()
            if isinstance(item, TransitionBatch):
                self.counts["backlog_transitions"] -= item.rows
            if self._listening:
                self._send(acts, item)
            else:
                self._lose(item, "unsent_at_exit")
        return acts

    # ------------------------------------------------------------------------------------------ episodes
    def _call_timeout(self) -> float:
        if self.phase == "resetting":
            return self.config.reset_timeout_s
        return min(self.config.reset_timeout_s, ZERO_TIMEOUT_S)

    def _begin_reset(self, acts: Actions, now: float, trainer_listening: bool, reset_ready: bool,
                     recorder_ready: bool = True) -> None:
        if self.config.max_episodes and self.counts["episodes"] >= self.config.max_episodes:
            self._flush(acts, now)
            self.phase = "finished"
            return
        if self.config.wait_for_recorder and not recorder_ready and self.counts["episodes"] == 0:
            acts.log.append(("info", "wait_recorder", f"waiting for the recorder {self.config.wait_for_recorder} "
                                                      "to match this robot's topics"))
            self._retry_after = now + WAIT_RETRY_S
            return
        if self.config.wait_for_trainer and not trainer_listening and not self._trainer_seen:
            acts.log.append(("info", "wait_trainer", "waiting for a trainer (/trainer/transitions)"))
            self._retry_after = now + WAIT_RETRY_S
            return
        if self.config.wait_for_trainer and not trainer_listening and self.config.backlog_transitions == 0:
            acts.log.append(("warning", "wait_trainer", "no trainer (/trainer/transitions): episodes paused"))
            self._retry_after = now + WAIT_RETRY_S
            return
        held = self.counts["backlog_transitions"] + self.counts["inflight_transitions"]
        if (self.config.wait_for_trainer and self.config.pause_when_backlog_full
                and held + self.asm.episode_steps > self.config.backlog_transitions):
            # while the trainer is gone, and after it came back until what was kept has gone out
            acts.log.append(("warning", "backlog_full", f"{held} of {self.config.backlog_transitions} transitions "
                                                        "kept or unacknowledged: episodes paused until the "
                                                        "trainer has taken them"))
            self._retry_after = now + WAIT_RETRY_S
            return
        if not reset_ready:
            acts.log.append(("info", "wait_reset", "waiting for the reset service (sim/reset)"))
            self._retry_after = now + WAIT_RETRY_S
            return
        acts.call = "reset"
        self.phase, self._phase_t = "resetting", now

    def _service_failed(self, acts: Actions, text: str, now: float) -> None:
        self.counts["reset_failures"] += 1
        acts.log.append(("warning", "reset_failed", text))
        self.phase, self._retry_after = "idle", now + RETRY_S

    def _start_episode(self, acts: Actions, now: float) -> None:
        self._publish(acts, self.asm.start_episode(), now)
        self._waiting.clear()
        self.phase, self._last_step_t = "running", now

    def _end_episode(self, acts: Actions, stats: EpisodeStats, now: float) -> None:
        self._publish(acts, self._hold_goal(), now)
        self._flush(acts, now)
        self._stats_seq += 1
        self._open_stats.add(self._stats_seq)
        self._emit(acts, _Marked(self._next_row, stats, self._stats_seq))
        self.counts["episodes"] += 1
        self.phase = "idle"

    def _publish(self, acts: Actions, goal: Goal, now: float) -> None:
        acts.goals.append(goal)
        self.goal, self._goal_t = goal, now

    def _resend_goal(self, acts: Actions, now: float, why: str) -> None:
        """Re-publish the current goal (resynchronisation), at most once per goal_resend_s."""
        resend_s = self.config.goal_resend_s
        if self.goal is None or resend_s <= 0.0 or now - self._goal_t < resend_s:
            return
        self.counts["goal_resends"] += 1
        acts.log.append(("info", "goal_resend", f"{why}: goal of episode {self.goal.episode} "
                                                f"({'active' if self.goal.active else 'hold'}) re-sent"))
        self._publish(acts, self.goal, now)

    def _of_this_episode(self, step: PolicyStep) -> bool:
        """The step belongs to the running episode (a late step of the episode just ended does not)."""
        return self.phase == "running" and self.asm.in_episode and step.episode == self.asm.episode

    def _goal_matches(self, step: PolicyStep) -> bool:
        """The step's observation is the one the task makes from its state with this episode's goal (else
        the policy acted on a goal from another publisher with this episode's number). Steps the assembler
        will drop as malformed pass here."""
        task, asm = self.asm.task, self.asm
        try:
            state = TaskState(np.asarray(step.joint_pos), np.asarray(step.joint_vel), np.asarray(step.ee_pos),
                              float(step.door_angle), float(step.door_velocity))
            expected = np.asarray(task.observation(state, asm.goal), dtype=np.float32)
        except (ValueError, TypeError, IndexError):
            return True
        obs = np.asarray(step.obs, dtype=np.float32)
        if obs.shape != expected.shape or not (np.isfinite(obs).all() and np.isfinite(expected).all()):
            return True
        # np.allclose's test, without its Python-level overhead (both finite here)
        return bool((np.abs(obs - expected) <= GOAL_OBS_TOL + GOAL_OBS_TOL * np.abs(expected)).all())

    def _hold_goal(self) -> Goal:
        """An inactive goal: the policy stops acting (between episodes)."""
        asm = self.asm
        return Goal(max(asm.episode, 0), False, asm.goal if asm.goal.size else asm.task.sample_goal(asm.rng))

    # ------------------------------------------------------------------------------------------ steps
    def _drain_waiting(self, acts: Actions, now: float, expire: bool) -> None:
        """Feed waiting steps whose truth has arrived; with ``expire``, drop those that waited too long."""
        while self._waiting:
            step, t = self._waiting[0]
            truth = self._truth.get(_stamp_key(step.stamp_s))
            if truth is None:
                if not expire or now - t < self.config.truth_wait_s:
                    return
                self._waiting.popleft()
                self.drops["truth_missing"] += 1
                acts.log.append(("warning", "truth_missing", "no ground truth for a step's stamp: step dropped"))
                continue
            self._waiting.popleft()
            self._feed(acts, step, truth, now)

    def _feed(self, acts: Actions, step: PolicyStep, truth: GroundTruth | None, now: float) -> None:
        before = sum(self.asm.dropped.values())
        stats = self.asm.add_step(step, truth)
        if sum(self.asm.dropped.values()) != before:
            acts.log.append(("warning", "step_dropped", f"policy step dropped: {dict(self.asm.dropped)}"))
        if self.asm.pending and self._first_pending_t is None:
            self._first_pending_t = now
        while self.asm.pending >= self.config.batch_transitions:
            self._send_batch(acts, now)
        if stats is not None:
            self._end_episode(acts, stats, now)

    def _send_batch(self, acts: Actions, now: float) -> None:
        batch = self.asm.pop_batch()
        if batch is None:
            self._first_pending_t = None
            return
        batch = batch._replace(session=self.session, first=self._next_row)
        self._next_row += batch.rows
        self.counts["sequenced_transitions"] = self._next_row
        self._emit(acts, batch)
        self._first_pending_t = now if self.asm.pending else None

    # ------------------------------------------------------------------------------------------ backlog
    def _emit(self, acts: Actions, item: TransitionBatch | _Marked) -> None:
        """Send a batch or episode statistics now, or keep it while no trainer listens."""
        if self._listening and not self._backlog and self._window_open(item):
            self._send(acts, item)
            return
        if self._listening and not self._backlog and isinstance(item, _Marked):  # only its window is closed
            self._parked.append(item)
            return
        if self.config.backlog_transitions == 0:
            self._lose(item)
            return
        self._backlog.append(item)
        if isinstance(item, TransitionBatch):
            self.counts["backlog_transitions"] += item.rows
        self._bound()

    def _bound(self) -> None:
        """In flight + backlog <= backlog_transitions: forget the oldest in flight first (sent, never
        acknowledged: ``unconfirmed_transitions`` / ``unconfirmed_episode_stats``), then drop the oldest of the
        backlog (``lost_transitions`` / ``lost_episode_stats``)."""
        limit = self.config.backlog_transitions
        while self._inflight and self.counts["inflight_transitions"] + self.counts["backlog_transitions"] > limit:
            old = self._inflight.popleft()
            self._uncount_inflight(old)
            if isinstance(old, TransitionBatch):
                self.counts["unconfirmed_transitions"] += old.rows
            else:
                self.counts["unconfirmed_episode_stats"] += 1
                self._open_stats.discard(old.seq)
        while self._backlog and self.counts["backlog_transitions"] > limit:
            old = self._backlog.popleft()
            self._lose(old)
            if isinstance(old, TransitionBatch):
                self.counts["backlog_transitions"] -= old.rows

    def _requeue_inflight(self, held: int) -> None:
        """Unacknowledged batches (ending beyond ``held`` rows) and statistics (all, those awaiting their own
        acknowledgement first: see :meth:`on_ack`) back to the front of the backlog, in order, the parked
        statistics (sent after them, before the backlog) behind them."""
        self._backlog.extendleft(reversed(self._parked))
        self._parked.clear()
        while self._inflight:
            item = self._inflight.pop()
            self._uncount_inflight(item)
            if isinstance(item, _Marked) or _end(item) > held:
                self._backlog.appendleft(item)
                if isinstance(item, TransitionBatch):
                    self.counts["backlog_transitions"] += item.rows
        while self._awaiting:  # sent before everything in flight
            item = self._awaiting.pop()
            self._uncount_inflight(item)
            self._backlog.appendleft(item)
        self._bound()

    def _uncount_inflight(self, item: TransitionBatch | _Marked) -> None:
        if isinstance(item, TransitionBatch):
            self.counts["inflight_transitions"] -= item.rows
        else:
            self.counts["inflight_episode_stats"] -= 1

    def _confirm_held(self, items: deque, held: int) -> deque:
        """``items`` (in flight, or awaiting) less the statistics numbered ``<= held``, which are confirmed."""
        if not any(isinstance(i, _Marked) and i.seq <= held for i in items):
            return items
        kept: deque = deque()
        for item in items:
            if isinstance(item, _Marked) and item.seq <= held:
                self._uncount_inflight(item)
                self._open_stats.discard(item.seq)
            else:
                kept.append(item)
        return kept

    def _resend_stale(self, acts: Actions, now: float) -> None:
        """Statistics in flight not acknowledged STATS_RESEND_S after they were sent (twice as long after each
        re-send, at most STATS_RESEND_MAX_S) back to the front of the parked ones, in order: lost on the way to a
        trainer that stays (its mark stops below them; it drops a copy). Warns once when one has gone
        STATS_RESEND_WARN times."""
        if now < self._next_resend_t or self._last_ack_t is None or now - self._last_ack_t > STATS_RESEND_S:
            return  # nothing due, or the trainer silent (gone or cut off: ACK_TIMEOUT_S re-queues everything)
        flying = [*self._awaiting, *(i for i in self._inflight if isinstance(i, _Marked))]
        again = sorted((m for m in flying if now >= m.resend_t), key=lambda m: m.seq)
        self._next_resend_t = min((m.resend_t for m in flying if now < m.resend_t), default=math.inf)
        if not again:
            return
        due = {id(m) for m in again}
        self._awaiting = deque(m for m in self._awaiting if id(m) not in due)
        self._inflight = deque(i for i in self._inflight if id(i) not in due)
        for item in again:
            self._uncount_inflight(item)
            item.resends += 1
        self._parked.extendleft(reversed(again))  # older than any parked: sent first once their window opens
        worst = max(m.resends for m in again)
        if worst >= STATS_RESEND_WARN and not self._resend_warned:
            self._resend_warned = True
            acts.log.append(("warning", "stats_unacknowledged",
                             f"episode statistics sent {worst + 1} times without an acknowledgement of their number "
                             "while the trainer acknowledges rows: does it take /trainer/episode_stats (the same "
                             "async_naf version)?"))

    def _lose(self, item: TransitionBatch | _Marked, reason: str = "lost") -> None:
        if isinstance(item, TransitionBatch):
            self.counts[f"{reason}_transitions"] += item.rows
        else:
            self.counts[f"{reason}_episode_stats"] += 1
            self._open_stats.discard(item.seq)

    def _send(self, acts: Actions, item: TransitionBatch | _Marked) -> None:
        if isinstance(item, TransitionBatch):
            acts.batches.append(item._replace(base=self._held_from(item)) if item.sequenced else item)
            end = item.first + item.rows
            if item.sequenced and end <= self._sent_rows:
                self.counts["resent_transitions"] += item.rows
            else:
                self.counts["batches_sent"] += 1
                self.counts["transitions_sent"] += item.rows
                self._sent_rows = max(self._sent_rows, end)
            if self._trainer_id is not None and item.sequenced:  # acknowledgements come: keep until one does
                self._inflight.append(item)
                self.counts["inflight_transitions"] += item.rows
                self._bound()
            return
        # base: every statistic numbered below the oldest not settled here is, so the trainer need not wait for it
        base = min(self._open_stats, default=item.seq) - 1
        acts.stats.append(replace(item.stats, session=self.session, seq=item.seq, base=base))
        if item.sent:
            self.counts["resent_episode_stats"] += 1
        item.sent = True
        item.resend_t = self._now + min(STATS_RESEND_S * 2.0 ** item.resends, STATS_RESEND_MAX_S)
        if self._trainer_id is not None:  # kept until the trainer acknowledges them by their number
            self._inflight.append(item)
            self.counts["inflight_episode_stats"] += 1
            self._next_resend_t = min(self._next_resend_t, item.resend_t)
        else:  # no trainer has acknowledged anything yet: nothing will confirm them
            self._open_stats.discard(item.seq)

    def _held_from(self, item: TransitionBatch) -> int:
        """The oldest row this collector still holds to send again when ``item`` goes (the batch's ``base``):
        rows below it were acknowledged or given up (counted here), so a trainer lacking them need not wait.
        What is in flight was sent in row order and before the backlog, which is in row order too."""
        oldest = next((i for queue in (self._inflight, self._backlog) for i in queue
                       if isinstance(i, TransitionBatch) and i.sequenced), item)
        return min(oldest.first, item.first)

    def _window_open(self, item: TransitionBatch | _Marked) -> bool:
        """Fewer than ``send_window`` messages of ``item``'s kind sent and unacknowledged (none are tracked
        before a trainer first acknowledges). Batches and statistics have a window each, so statistics a
        trainer does not acknowledge never hold up the rows."""
        if self._trainer_id is None:
            return True
        stats_unacknowledged = self.counts["inflight_episode_stats"]  # in flight or awaiting their number
        if isinstance(item, _Marked):
            return stats_unacknowledged < self.config.send_window
        return len(self._inflight) - (stats_unacknowledged - len(self._awaiting)) < self.config.send_window

    def _drain_backlog(self, acts: Actions) -> None:
        """Parked statistics first while their window is open, then the backlog in order, at most
        BACKLOG_PER_TICK messages; statistics whose window is closed are parked, so the batches behind them go."""
        budget = BACKLOG_PER_TICK
        while budget and self._parked and self._window_open(self._parked[0]):
            self._send(acts, self._parked.popleft())
            budget -= 1
        while budget and self._backlog:
            item = self._backlog[0]
            if isinstance(item, _Marked) and not self._window_open(item):
                self._parked.append(item)
                self._backlog.popleft()
                continue
            if not self._window_open(item):
                break
            self._backlog.popleft()
            if isinstance(item, TransitionBatch):
                self.counts["backlog_transitions"] -= item.rows
            self._send(acts, item)
            budget -= 1

    def _flush(self, acts: Actions, now: float) -> None:
        while self.asm.pending:
            self._send_batch(acts, now)
        self._first_pending_t = None


def _end(item: TransitionBatch | _Marked) -> int:
    """Rows of the session an acknowledgement must hold for a batch to be confirmed, or for statistics to leave
    the in-flight order for the statistics awaiting their own number."""
    return item.mark if isinstance(item, _Marked) else item.first + item.rows
