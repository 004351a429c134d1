"""Episode assembly for the collector node (ROS-free): transitions from what the policy saw and did.

The policy publishes one :class:`~async_naf.wire.layouts.PolicyStep` per control step (the joint state it acted
on, the observation, the commanded action). The collector pairs consecutive steps of an episode into
transitions ``(x_t, u_t, r_t, x_t+1, terminal)``: ``r_t`` = ``task.reward(state_t+1, u_t, goal, truth_t+1)``
with the simulator's ground truth door state when available (None on a real robot). An episode ends after
``episode_steps`` transitions (a time limit: terminal = 0, the target bootstraps) or, with
``terminate_on_success``, when the task succeeds (terminal = 1).

Bad data never reaches the trainer: a step with a non-finite or wrong-sized observation/action/state, from
another episode, out of order, after a gap or stamped too long after the step before it is dropped and counted
by reason (``dropped``), and pairing restarts at the next good step.

    asm = EpisodeAssembler(CollectorConfig(task="reach", robot_id=0))
    goal = asm.start_episode()                 # samples the goal; publish it to the policy
    stats = asm.add_step(step, truth)          # EpisodeStats when the episode ended, else None
    ended = asm.add_steps(steps)               # many at once (bag conversion): the same rules, rows and drops
    batch = asm.pop_batch()                    # TransitionBatch of the pending rows (or None)
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from async_naf.common.checks import integers, numbers
from async_naf.task.tasks import TASK_NAMES
from async_naf.wire.joints import ARM_VALUE_MAX
from async_naf.wire.layouts import EpisodeStats, Goal, PolicyStep, PolicySteps, TransitionBatch

# the largest magnitude a step's values may have (rad, rad/s, m, and observations built from them): no arm reaches
# it, and below it the rewards and returns made from the values stay far inside float32, which the transitions
# and episode statistics are (an end effector at 3e38 m gave a return of -5e38: a batch refused whole, then a
# statistic the collector could not encode, and it died)
STEP_VALUE_MAX = ARM_VALUE_MAX
# an action beyond the task's bounds by more than this is no action the policy could have sent (it clamps to
# them: float32 bounds, float64 actions), rad/s; as bag convert --method raw's default action_tolerance
ACTION_TOLERANCE = 1e-6


@dataclass
class CollectorConfig:
    """Parameters of the collector node (one per robot namespace). Units: seconds, environment steps.

    Attributes:
        task: task name (``reach``, ``door_pull``, ``door_push``): reward, success, goals, episode length.
        seed: seed of the goal sampling.
        robot_id: robot index written into transitions and episode statistics.
        episode_steps: steps per episode (time limit); 0 = the task's default.
        batch_transitions: transitions per message to the trainer (more = fewer, larger messages).
        max_batch_delay_s: a partial batch is sent after this long (and always at the end of an episode), s.
        use_ground_truth: compute reward/success with the simulator's ground truth door state
            (ground_truth/door_state) when it is published; False: from the estimated door angle only.
        terminate_on_success: end the episode as terminal (no bootstrapping) when the task succeeds.
        reset_timeout_s: wait this long for the robot's reset service (sim/reset) per call, s.
        step_timeout_s: an episode with no policy step of its own for this long is cut off (partial batch
            sent, a new episode starts; steps of another episode count as none), s. By their stamps alike: a
            step stamped more than this after the step before it is not paired with it (``stamp_jump``; a
            stamp 10^12 s ahead made a transition), and pairing goes on from it.
        goal_resend_s: re-publish the current goal (the running episode's, else the inactive hold goal) when
            a policy step of another episode (or made for another goal) arrives, or while running no step of
            the episode arrived for this long; at most once per this interval (a lost or overwritten goal
            message resynchronises the policy); 0 = never, s.
        max_episodes: stop collecting after this many episodes; 0 = no limit.
        zero_door_on_reset: door tasks: after each reset (door closed) call door_angle/zero so the
            estimator starts the episode at the closed reference (skipped if the service is absent).
        truth_wait_s: with ground truth available, wait this long for the truth of a step's stamp before
            dropping the step (counted), s.
        wait_for_trainer: start episodes only while a trainer subscribes to /trainer/transitions
            (False: collect anyway, e.g. when recording with rosbag). Once a trainer was seen, episodes go on
            without it while backlog_transitions > 0.
        backlog_transitions: with wait_for_trainer, transitions kept while no trainer subscribes (a trainer
            restarting): sent when one is back; beyond this the oldest are dropped and counted
            (lost_transitions); 0 = nothing kept, episodes pause until a trainer is back.
        pause_when_backlog_full: with wait_for_trainer and no trainer subscribing, start no episode that could
            push the oldest kept transitions out of the backlog (kept + in flight + episode steps >
            backlog_transitions): episodes pause until a trainer is back. For a lockstep simulation, which loses
            nothing by waiting (``async-naf train`` sets it for the embedded sim in lockstep); false: a real or
            realtime arm acts on and the backlog keeps the newest.
        send_window: once a trainer acknowledges, at most this many transition batches, and as many episode
            statistics, are sent and not yet acknowledged; more wait in the backlog, in order, until
            acknowledgements come (the trainer acknowledges every ack_period_s, 0.25 s by default: 32 messages
            per 0.25 s = 128 messages/s). So a burst, the backlog sent to a restarted trainer, never overruns
            the streams' reliable keep-last queues (depth 100), which drop their oldest message silently
            when full, a gap the trainer would count and this collector would take as delivered. Statistics
            waiting for their window let the batches behind them go.
        wait_for_recorder: fully qualified node name of a recorder (``/recorder``) that must subscribe to
            this robot's ``policy/step`` before the first episode starts, so a recorded run's bag holds
            every episode from the first (a composed robot steps fast enough to finish episodes before a
            recorder's subscriptions are matched); empty = start without waiting. ``async-naf train
            --record`` sets it.
        recorder_ready_topic: with wait_for_recorder, a topic on which that recorder says which robot
            namespaces it has matched over DDS (std_msgs/String, ``async_naf.recorder_ready.v1``; async_naf's
            own recorder: ``/recorder/ready``); the first episode then waits until this robot's namespace is
            named there. Empty: the graph's view only (an external recorder such as ``ros2 bag record``),
            which can show a subscription before the publishers have matched it.
        record_bundle_topics: a recorded run with a composed robot (``async-naf train --record``, intra-process
            delivery): the absolute topics of this robot that the recorder gets in bundles from this process
            (:mod:`async_naf.wire.record_bundle`, on ``recorder/bundle``) instead of subscribing to them; the
            collector installs the tap on the process's bus. Empty = none (the recorder subscribes).
        counts_file: write this collector's counters (what its /diagnostics show: episodes, transitions sent,
            acknowledged, re-sent, lost by reason, drops by reason, whether a trainer was heard and listens now)
            as JSON to this file with every diagnostics message (``diagnostics_period_s``) and, final, at exit;
            empty = none. ``async-naf train`` sets ``<run_dir>/collectors/robot_<i>.json``, adds the final ones
            to summary.json, and a robots-only part reports from them while it runs.
    """

    task: str = "reach"
    seed: int = 0
    robot_id: int = 0
    episode_steps: int = 0
    batch_transitions: int = 50
    max_batch_delay_s: float = 1.0
    use_ground_truth: bool = True
    terminate_on_success: bool = False
    reset_timeout_s: float = 10.0
    step_timeout_s: float = 5.0
    goal_resend_s: float = 0.5
    max_episodes: int = 0
    zero_door_on_reset: bool = True
    truth_wait_s: float = 0.2
    wait_for_trainer: bool = True
    backlog_transitions: int = 20000
    pause_when_backlog_full: bool = False
    send_window: int = 32
    wait_for_recorder: str = ""
    recorder_ready_topic: str = ""
    record_bundle_topics: tuple[str, ...] = ()
    counts_file: str = ""

    def __post_init__(self) -> None:
        integers(self, ("robot_id", "episode_steps", "max_episodes", "backlog_transitions"), 0)
        integers(self, ("batch_transitions", "send_window"), 1)
        numbers(self, ("max_batch_delay_s", "reset_timeout_s", "step_timeout_s", "truth_wait_s"), 0.0, low_open=True)
        numbers(self, ("goal_resend_s",), 0.0)
        if self.task not in TASK_NAMES:
            raise ValueError(f"unknown task {self.task!r}; choose one of {', '.join(TASK_NAMES)}")
        self.record_bundle_topics = tuple(self.record_bundle_topics)
        if any(not t.startswith("/") for t in self.record_bundle_topics) or \
                len(set(self.record_bundle_topics)) != len(self.record_bundle_topics):
            raise ValueError(f"record_bundle_topics must be distinct absolute topic names, got "
                             f"{self.record_bundle_topics!r}")


class GroundTruth(NamedTuple):
    """Simulator ground truth of the door (what ``task.reward``/``task.success`` read as ``truth``).

    Attributes:
        hinge_angle: rad, + = opening.  hinge_velocity: rad/s.  handle_angle: rad.
    """

    hinge_angle: float
    hinge_velocity: float
    handle_angle: float


class EpisodeAssembler:
    """Pairs policy steps into transitions, runs the episode bookkeeping and batches rows (module doc).

    Args:
        config: the CollectorConfig.
        task: the task object (default ``make_task(config.task)``).

    Attributes:
        episode: index of the current (or last) episode, -1 before the first.
        env_steps: transitions produced so far.
        dropped: counts of dropped steps by reason.
    """

    def __init__(self, config: CollectorConfig, task: Any = None) -> None:
        if task is None:
            from async_naf.task.tasks import make_task

            task = make_task(config.task)
        self.config = config
        self.task = task
        self.episode_steps = config.episode_steps or int(task.episode_steps)
        self._act_low = np.asarray(task.action_low, np.float64) - ACTION_TOLERANCE
        self._act_high = np.asarray(task.action_high, np.float64) + ACTION_TOLERANCE
        # bounds symmetric about 0 (every task's): one test on the magnitudes _invalid has anyway
        self._act_sym = bool(np.array_equal(self._act_low, -self._act_high))
        self.rng = np.random.default_rng(config.seed)
        self.episode = -1
        self.env_steps = 0
        self.dropped: Counter[str] = Counter()
        self.late_steps = 0  # steps of an episode that already ended (expected: the policy runs on briefly)
        self.in_episode = False
        self._goal: np.ndarray = np.zeros(0)
        self._prev: PolicyStep | None = None  # the last usable step of the episode
        self._prev_key: tuple[int, float] | None = None  # its (step, stamp_s): the pairing rules' state
        self._blocks: list[np.ndarray] = []  # pending rows (float32 tables), oldest first
        self._pending = 0
        self._return = 0.0
        self._length = 0
        self._success = False

    # ------------------------------------------------------------------------------------ episodes
    def start_episode(self, goal: np.ndarray | None = None) -> Goal:
        """Begin the next episode (goal sampled from the task unless given); returns the Goal to publish."""
        g = self.task.sample_goal(self.rng) if goal is None else np.asarray(goal, dtype=np.float64)
        if np.shape(g) != (self.task.goal_dim,) or not np.isfinite(g).all():
            raise ValueError(f"goal must be {self.task.goal_dim} finite values, got {g!r}")
        self.episode += 1
        self.in_episode = True
        self._goal = np.asarray(g, dtype=np.float64)
        self._prev = self._prev_key = None
        self._return, self._length, self._success = 0.0, 0, False
        return Goal(self.episode, True, self._goal.copy())

    def abort_episode(self) -> None:
        """Give up the current episode (robot stalled / reset needed): rows already made stay pending."""
        self.in_episode = False
        self._prev = self._prev_key = None

    @property
    def goal(self) -> np.ndarray:
        return self._goal

    @property
    def episode_length(self) -> int:
        return self._length

    def _drop(self, reason: str) -> None:
        self.dropped[reason] += 1

    def _invalid(self, step: PolicyStep) -> str:
        """Why ``step`` cannot be used (``wrong_size``; ``non_finite``: NaN or Inf; ``out_of_range``: a value beyond
        :data:`STEP_VALUE_MAX`; ``out_of_bounds``: an action beyond the task's bounds, which no policy sends), or
        "" when it can."""
        t = self.task
        parts = ((step.obs, (t.obs_dim,)), (step.action, (t.act_dim,)), (step.joint_pos, (7,)),
                 (step.joint_vel, (7,)), (step.ee_pos, (3,)))
        for arr, shape in parts:
            if np.shape(arr) != shape:
                return "wrong_size"
        # one pass over all values (the max of an array holding NaN is NaN, which compares False)
        mags = np.abs(np.concatenate([arr for arr, _ in parts]))
        door, vel, stamp = step.door_angle, step.door_velocity, step.stamp_s
        if not (mags.max() <= STEP_VALUE_MAX and abs(door) <= STEP_VALUE_MAX and abs(vel) <= STEP_VALUE_MAX
                and math.isfinite(stamp)):
            finite = bool(np.isfinite(mags).all()) and math.isfinite(door + vel + stamp)  # inf - inf is nan
            return "out_of_range" if finite else "non_finite"
        if self._act_sym:
            inside = (mags[t.obs_dim:t.obs_dim + t.act_dim] <= self._act_high).all()
        else:
            inside = (step.action >= self._act_low).all() and (step.action <= self._act_high).all()
        return "" if inside else "out_of_bounds"

    # the pairing rules for one step (_advance): what became of it
    _SKIP, _RESTART, _KEEP, _PAIR = range(4)

    def _advance(self, episode: int, index: int, stamp: float, reason: str) -> int:
        """The collector's pairing rules for one step (its episode, index, stamp and why it is unusable, ""
        when usable), shared by :meth:`add_step` and :meth:`add_steps`. Returns ``_SKIP`` (not used, the
        previous step stays), ``_RESTART`` (not used, pairing restarts), ``_KEEP`` (the step is the new
        previous one, no transition) or ``_PAIR`` (a transition from the previous step to this one, which
        becomes the previous one; the caller then calls :meth:`_transition`)."""
        if not self.in_episode and episode == self.episode:
            self.late_steps += 1
            return self._SKIP
        if not self.in_episode or episode != self.episode:
            self._drop("other_episode")
            return self._SKIP
        if reason:
            self._drop(reason)
            self._prev_key = None
            return self._RESTART
        prev = self._prev_key
        if prev is not None and index == prev[0]:  # the step paired last, again (a re-send, a copy): not a gap
            self._drop("duplicate")
            return self._SKIP
        self._prev_key = (index, stamp)
        if prev is None:
            return self._KEEP
        if index != prev[0] + 1:
            self._drop("gap")
            return self._KEEP
        if stamp < prev[1]:
            self._drop("out_of_order")
            self._prev_key = None
            return self._RESTART
        if stamp - prev[1] > self.config.step_timeout_s:  # not the next step in time: live, a cut-off episode
            self._drop("stamp_jump")
            return self._KEEP
        return self._PAIR

    def _transition(self, reward: float, success: bool) -> tuple[bool, EpisodeStats | None] | None:
        """The bookkeeping of a transition :meth:`_advance` paired: None when its reward is not finite (dropped,
        pairing restarts), else (terminal, the episode's statistics when it ended here)."""
        if not math.isfinite(reward):
            self._drop("non_finite_reward")
            self._prev_key = None
            return None
        terminal = success and self.config.terminate_on_success
        self.env_steps += 1
        self._length += 1
        self._return += reward
        self._success = success
        if terminal or self._length >= self.episode_steps:
            self.in_episode = False
            self._prev_key = None
            return terminal, EpisodeStats(self.config.robot_id, self.episode, self._return, self._length,
                                          self._success, self.env_steps)
        return terminal, None

    def _append(self, prev_obs: np.ndarray, prev_action: np.ndarray, reward: np.ndarray, obs: np.ndarray,
                terminal: np.ndarray, prev_step: np.ndarray) -> None:
        """Pending rows (k of them) from their parts."""
        k = len(reward)
        table = np.column_stack((prev_obs, prev_action, reward, obs, terminal,
                                 np.full(k, self.config.robot_id, np.float64), np.full(k, self.episode, np.float64),
                                 prev_step)).astype(np.float32)
        self._blocks.append(table)
        self._pending += k

    def add_step(self, step: PolicyStep, truth: GroundTruth | None = None) -> EpisodeStats | None:
        """Feed one policy step; returns the episode's statistics when this step ended it.

        ``truth``: ground truth at the step's stamp (None: use the estimate, as on a real robot).
        """
        code = self._advance(step.episode, step.step, step.stamp_s, self._invalid(step))
        prev = self._prev
        if code != self._SKIP:
            self._prev = None if code == self._RESTART else step
        if code != self._PAIR:
            return None
        assert prev is not None
        from async_naf.task.tasks import TaskState

        state = TaskState(np.asarray(step.joint_pos), np.asarray(step.joint_vel), np.asarray(step.ee_pos),
                          float(step.door_angle), float(step.door_velocity))
        reward = float(self.task.reward(state, prev.action, self._goal, truth))
        done = self._transition(reward, bool(self.task.success(state, self._goal, truth)))
        if self._prev_key is None:
            self._prev = None
        if done is None:
            return None
        row = np.concatenate((prev.obs, prev.action, (reward,), step.obs,
                              (float(done[0]), self.config.robot_id, self.episode, prev.step))).astype(np.float32)
        self._blocks.append(row[None])
        self._pending += 1
        return done[1]

    def add_steps(self, steps: PolicySteps, truth_hinge: np.ndarray | None = None,
                  truth_handle: np.ndarray | None = None) -> list[EpisodeStats]:
        """Feed n policy steps in order: the same as n calls of :meth:`add_step` (same rules, rows, drops and
        episode ends), with the task's reward and success computed for all steps at once.

        Args:
            steps: the steps (n rows).
            truth_hinge, truth_handle: (n,) ground-truth door hinge and handle angles at each step's stamp,
                rad (both or neither: None uses the estimate, as on a real robot).

        Returns:
            the statistics of the episodes these steps ended, in order.
        """
        n = int(steps.stamp_s.shape[0])
        # as _invalid: NaN or Inf; a value beyond STEP_VALUE_MAX; an action beyond the bounds
        columns = (steps.obs, steps.action, steps.joint_pos, steps.joint_vel, steps.ee_pos,
                   steps.door_angle[:, None], steps.door_velocity[:, None])
        finite = np.isfinite(steps.stamp_s)
        in_range = finite.copy()
        for f in columns:
            finite &= np.isfinite(f).all(axis=1)
            in_range &= (np.abs(f) <= STEP_VALUE_MAX).all(axis=1)
        inside = ((steps.action >= self._act_low) & (steps.action <= self._act_high)).all(axis=1)
        theta = steps.door_angle if truth_hinge is None else np.asarray(truth_hinge, np.float64)
        handle = None if truth_handle is None or not self.task.is_door else np.asarray(truth_handle, np.float64)
        # each step's reward paired with the step before it (the usual pairing), and its success
        prev_action = np.concatenate((steps.action[:1], steps.action[:-1]))
        with np.errstate(over="ignore", invalid="ignore"):  # rows dropped below may hold anything
            rewards, success = self.task.rewards(steps.ee_pos, prev_action, self._goal, theta, handle)
        carried = self._prev  # the previous step from an earlier call (index -1 below)
        prev = -1 if carried is not None else -2  # index of the previous usable step; -2: none
        pairs: list[tuple[int, int, float, bool]] = []  # (previous, this step, reward, terminal)
        ended: list[EpisodeStats] = []
        episode, index, stamp = steps.episode.tolist(), steps.step.tolist(), steps.stamp_s.tolist()
        reasons = ["" if ok else "non_finite" if not f else "out_of_range" if not r else "out_of_bounds"
                   for ok, f, r in zip((in_range & inside).tolist(), finite.tolist(), in_range.tolist(), strict=True)]
        reward_list, success_list = rewards.tolist(), success.tolist()
        for i in range(n):
            code = self._advance(episode[i], index[i], stamp[i], reasons[i])
            p = prev
            if code == self._RESTART:
                prev = -2
            elif code != self._SKIP:
                prev = i
            if code != self._PAIR:
                continue
            reward = reward_list[i]
            if p != i - 1 or p < 0:  # paired across a skipped step, or with an earlier call's: its own action
                action = carried.action if p == -1 and carried is not None else steps.action[p]
                reward = float(self.task.rewards(steps.ee_pos[i:i + 1], np.asarray(action)[None], self._goal,
                                                 theta[i:i + 1], None if handle is None else handle[i:i + 1])[0][0])
            done = self._transition(reward, bool(success_list[i]))
            if self._prev_key is None:
                prev = -2
            if done is not None:
                pairs.append((p, i, reward, done[0]))
                if done[1] is not None:
                    ended.append(done[1])
        if pairs:
            p_idx = np.array([pair[0] for pair in pairs], np.int64)
            i_idx = np.array([pair[1] for pair in pairs], np.int64)
            first = carried if carried is not None else PolicyStep(0.0, 0, 0, steps.obs[0], steps.action[0],
                                                                   steps.joint_pos[0], steps.joint_vel[0],
                                                                   steps.ee_pos[0])
            # index -1 = the carried step: row 0 of these
            obs = np.concatenate((np.asarray(first.obs, np.float64)[None], steps.obs))
            act = np.concatenate((np.asarray(first.action, np.float64)[None], steps.action))
            idx = np.concatenate(([first.step], steps.step)).astype(np.float64)
            self._append(obs[p_idx + 1], act[p_idx + 1], np.array([pair[2] for pair in pairs]), steps.obs[i_idx],
                         np.array([float(pair[3]) for pair in pairs]), idx[p_idx + 1])
        if prev >= 0:
            self._prev = PolicyStep(stamp[prev], episode[prev], index[prev], steps.obs[prev], steps.action[prev],
                                    steps.joint_pos[prev], steps.joint_vel[prev], steps.ee_pos[prev],
                                    float(steps.door_angle[prev]), float(steps.door_velocity[prev]))
        elif prev == -2:
            self._prev = None
        return ended

    # ------------------------------------------------------------------------------------ batching
    @property
    def pending(self) -> int:
        """Transitions made but not yet taken by :meth:`pop_batch`."""
        return self._pending

    def pop_batch(self, max_rows: int | None = None) -> TransitionBatch | None:
        """The oldest pending rows (at most ``max_rows``, default batch_transitions) as a TransitionBatch."""
        if not self._pending:
            return None
        n = min(self._pending, max_rows or self.config.batch_transitions)
        table = self._blocks[0] if len(self._blocks) == 1 else np.concatenate(self._blocks)
        self._blocks = [table[n:]] if n < len(table) else []
        table = table[:n]
        self._pending -= n
        o, a = self.task.obs_dim, self.task.act_dim
        i = 0
        obs = table[:, i:i + o]; i += o  # noqa: E702
        act = table[:, i:i + a]; i += a  # noqa: E702
        rew = table[:, i]; i += 1  # noqa: E702
        nobs = table[:, i:i + o]; i += o  # noqa: E702
        return TransitionBatch(obs, act, rew, nobs, table[:, i], table[:, i + 1].astype(np.int64),
                               table[:, i + 2].astype(np.int64), table[:, i + 3].astype(np.int64))
