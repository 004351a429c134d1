"""The policy node's timing and episode state machine (ROS-free): when to act, on which state, and what to send.

:class:`PolicyLoop` takes the policy node's events (a goal, a joint state, a door-angle estimate, the ticks of
its timers, lifecycle changes), each with the current steady-clock time ``now`` (s), and answers with an
:class:`Output` to publish, or None. The node only converts messages to numpy and back::

    loop = PolicyLoop(config, PolicyRunner(config), on_drop=log)
    out = loop.on_goal(goal, now)                      # an episode starts (or ends: a zero command)
    out = loop.on_joint_state(JointSample(stamp, q, qd, now), now)
    if out is not None:
        publish(out.command)                           # (7,) rad/s; zeros = hold still
        if out.step is not None:
            publish_step(out.step)                     # what the policy saw and did, for the collector

Rules (units: s, rad, rad/s):

- Acting needs the node active (lifecycle), an active goal and, for door tasks, a door-angle estimate.
- ``trigger=joint_states``: act once per new joint state. Door tasks first wait up to ``door_wait_s`` (the
  node's ``on_door_deadline`` tick) for an estimate at least as new as the joint state (stamp >= joint stamp
  - ``door_stamp_tolerance_s``), then act with the newest one (counted as ``door_late``).
- ``trigger=timer``: act every control period on the newest joint state; one older than
  ``joint_state_timeout_s`` stops the arm (a zero command, counted as ``joint_state_stale``).
- Lockstep (the sim steps once per command): a joint state with a stamp not newer than the last one acted
  on means the last command was lost: it is re-sent (``repeated_state``); and when nothing happened for
  ``stall_resend_s`` the stall tick acts on an unacted joint state or re-sends the last command
  (``stall_resends``).
- Episode start (a goal with a new episode number, or active again): new noise trajectory, step 0, the door
  taken as closed (angle 0) until an estimate stamped after the reset arrives; estimates stamped at or before
  the newest joint state seen at the reset describe the door before it and are ignored
  (``door_before_episode``). An estimate missing for longer than ``door_stale_s`` into the episode, or older
  than that against the joint state, stops the arm (``door_missing`` / ``door_stale``).
- Episode end (goal inactive) or deactivation: a zero command; a pending joint state is forgotten.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from async_naf.acting.config import PolicyNodeConfig
from async_naf.acting.runner import PolicyRunner
from async_naf.common.stamps import StampGuard
from async_naf.wire.layouts import Goal, PolicyStep


class JointSample:
    """One received joint state: header stamp (s), positions (7,) rad, velocities (7,) rad/s, receive time
    (steady clock, s) and whether the policy has acted on it."""

    __slots__ = ("stamp", "q", "qd", "received", "acted")

    def __init__(self, stamp: float, q: np.ndarray, qd: np.ndarray, received: float) -> None:
        self.stamp, self.q, self.qd, self.received, self.acted = stamp, q, qd, received, False


class Output(NamedTuple):
    """What to publish: a joint-velocity command (7,) rad/s (zeros = hold still) and, when the policy acted,
    the step record for ``policy/step``."""

    command: np.ndarray
    step: PolicyStep | None = None


class PolicyLoop:
    """See the module docstring.

    Args:
        config: the policy node's configuration (replace it at runtime through :attr:`config`).
        runner: observation -> action (weights, noise, limits).
        on_drop: called with (reason, text) for every dropped input or refused action (the node logs it).
        n_joints: command size.

    Attributes:
        counts: events counted for diagnostics (steps, door_late, repeated_state, stall_resends, ...).
        drops: dropped inputs by reason.
        goal: the newest goal, or None.
    """

    def __init__(self, config: PolicyNodeConfig, runner: PolicyRunner,
                 on_drop: Callable[[str, str], None] | None = None, n_joints: int = 7) -> None:
        self.config = config
        self.runner = runner
        self.counts: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()
        self.goal: Goal | None = None
        self._on_drop = on_drop
        self._zero = np.zeros(n_joints)
        self._active = False
        self._episode_active = False
        self._deactivated_at = 0.0
        self._step = 0
        self._js: JointSample | None = None
        self._pending: JointSample | None = None
        self._door: tuple[float, float, float] | None = None  # stamp s, angle rad, velocity rad/s
        self._door_prior = False
        self._episode_t0: float | None = None
        self._door_min_stamp: float | None = None
        self._last_cmd: np.ndarray | None = None
        self._last_act = 0.0
        self._last_stamp = -math.inf
        self._is_door = bool(runner.task.is_door)
        self._stamps = StampGuard(config.time_jump_s)  # the joint states' clock: glitches and jumps

    # ------------------------------------------------------------------------------------------ state
    @property
    def active(self) -> bool:
        """The lifecycle node is active: it may command the arm."""
        return self._active

    @property
    def awaiting_door(self) -> bool:
        """A joint state waits for a current door estimate (door tasks): the door-wait timer must tick."""
        return self._pending is not None

    @property
    def can_act(self) -> bool:
        return self._active and self._episode_active and self.goal is not None

    def stop(self) -> Output:
        """A zero-velocity command."""
        return Output(self._zero.copy())

    def activate(self) -> None:
        self._active = True

    def deactivate(self) -> Output:
        """Stop commanding; returns the zero command to send."""
        self._active = False
        return self.stop()

    def drop(self, reason: str, text: str) -> None:
        """Count a dropped input (and tell ``on_drop``)."""
        self.drops[reason] += 1
        if self._on_drop is not None:
            self._on_drop(reason, text)

    # ------------------------------------------------------------------------------------------ events
    def on_goal(self, goal: Goal, now: float) -> Output | None:
        starting = goal.active and (self.goal is None or goal.episode != self.goal.episode
                                    or not self._episode_active)
        self.goal, self._episode_active = goal, goal.active
        if starting:
            return self._start_episode(now)
        if not goal.active:
            self._pending = None
            self._deactivated_at = now
            return self.stop()
        return None

    def on_joint_state(self, js: JointSample, now: float) -> Output | None:
        """A new joint state (already validated: finite, in arm-joint order). One stamped far from the stream
        is a glitch, dropped; a confirmed jump of the stream's clock (a restarted simulation) restarts the timing."""
        stamp_ns = int(round(js.stamp * 1e9))
        verdict = self._stamps.check(stamp_ns)
        if verdict == StampGuard.DROP:
            self.drop("joint_state", f"joint state stamped {js.stamp:.3f} s, far from the stream's: dropped")
            return None
        if verdict == StampGuard.JUMP:
            self._on_time_jump()
        self._stamps.accept(stamp_ns)
        self._js = js
        if self.config.trigger == "joint_states":
            return self._on_new_joint_state(js, now)
        return None

    def on_door(self, stamp: float, angle: float, velocity: float, now: float) -> Output | None:
        """A door-angle estimate: stamp s, angle rad (+ = opening), velocity rad/s (finite)."""
        if self._door_min_stamp is not None and stamp <= self._door_min_stamp:
            self.counts["door_before_episode"] += 1  # an estimate from before the reset: not this episode's
            return None
        if self._door is not None and stamp < self._door[0]:  # delivered out of order: the held one is newer
            self.drop("door_state", f"door estimate stamped {stamp:.6f} s, older than the one held "
                                    f"({self._door[0]:.6f} s): dropped")
            return None
        self._door = (stamp, angle, velocity)
        self._door_prior = False
        pending = self._pending
        if pending is not None and stamp >= pending.stamp - self.config.door_stamp_tolerance_s:
            return self._act(pending, now)
        return None

    def on_door_deadline(self, now: float) -> Output | None:
        """Tick of the door-wait timer: act on a pending joint state whose wait is over."""
        pending = self._pending
        if pending is not None and now - pending.received >= self.config.door_wait_s:
            self.counts["door_late"] += 1
            return self._act(pending, now)
        return None

    def on_control_tick(self, now: float) -> Output | None:
        """Tick of the control timer (trigger=timer)."""
        js = self._js
        if not self.can_act:
            return None
        if js is None or now - js.received > self.config.joint_state_timeout_s:
            self.drop("joint_state_stale", "no fresh joint state: commanding zero velocity")
            return self.stop()
        return self._on_new_joint_state(js, now, allow_repeat=True)

    def on_stall_tick(self, now: float) -> Output | None:
        """Lockstep: the sim steps once per command; if a command or joint state was lost, nudge it."""
        if not self.can_act or now - self._last_act < self.config.stall_resend_s:
            return None
        js = self._js
        if js is not None and not js.acted:
            return self._on_new_joint_state(js, now)
        if self._last_cmd is not None:
            self.counts["stall_resends"] += 1
            self._last_act = now
            return Output(self._last_cmd)
        return None

    def _on_time_jump(self) -> None:
        """The joint states' clock jumped: nothing stamped on the old clock compares with the new stamps (the
        last command's stamp, the door estimate and the episode's start). The door counts as missing (zero
        command) until an estimate on the new clock arrives."""
        self.counts["time_jumps"] += 1
        self._last_stamp = -math.inf
        self._door, self._door_min_stamp, self._door_prior = None, None, False
        self._episode_t0 = -math.inf

    # ------------------------------------------------------------------------------------------ acting
    def _start_episode(self, now: float) -> Output | None:
        self.runner.reset_noise()
        self._step = 0
        self._last_cmd = None
        self._last_stamp = -math.inf
        self._door_prior = True  # after a reset the door is closed: angle 0 until the estimator says more
        self._episode_t0 = None
        js = self._js
        # door estimates stamped at or before the newest joint state seen at the reset describe the door
        # before the reset: ignored (they may still be in flight)
        self._door_min_stamp = js.stamp if js is not None else None
        self._door = None  # the previous episode's estimate is not this one's (the door was reset)
        self._last_act = now
        if self.config.lockstep and js is not None and not js.acted and js.received > self._deactivated_at:
            return self._on_new_joint_state(js, now)  # the reset's joint state came before the goal
        return None

    def _on_new_joint_state(self, js: JointSample, now: float, allow_repeat: bool = False) -> Output | None:
        if not self.can_act or (js.acted and not allow_repeat):
            return None
        if not allow_repeat and js.stamp <= self._last_stamp and self._last_cmd is not None:
            # the same state again (lockstep sim re-publishing while idle): the last command was lost
            js.acted = True
            self.counts["repeated_state"] += 1
            self._last_act = now
            return Output(self._last_cmd)
        if not self._is_door or self._door_fresh(js) or self.config.door_wait_s <= 0.0:
            return self._act(js, now)
        self._pending = js  # wait (bounded) for a door estimate at least as new as this joint state
        return None

    def _door_fresh(self, js: JointSample) -> bool:
        return self._door is not None and self._door[0] >= js.stamp - self.config.door_stamp_tolerance_s

    def _act(self, js: JointSample, now: float) -> Output | None:
        self._pending = None
        js.acted = True
        goal = self.goal
        if not self.can_act or goal is None:
            return None
        door_angle, door_vel = self._door_estimate(js)
        if door_angle is None:
            return self.stop()
        cfg, runner = self.config, self.runner
        explore = not cfg.eval_mode and (runner.policy is not None or cfg.explore_before_weights)
        if runner.policy is None and not explore:
            return None
        try:
            state = runner.state(js.q, js.qd, door_angle, door_vel)
            obs, action = runner.act(state, goal.goal, explore, cfg.exploration_scale)
        except ValueError as exc:
            self.drop("observation", f"cannot act: {exc}")
            return None
        self._last_cmd, self._last_act, self._last_stamp = action, now, js.stamp
        self.counts["steps"] += 1
        step = PolicyStep(js.stamp, goal.episode, self._step, obs, action, js.q, js.qd, state.ee_pos,
                          door_angle, door_vel) if cfg.publish_steps else None
        self._step += 1
        return Output(action, step)

    def _door_estimate(self, js: JointSample) -> tuple[float | None, float]:
        if not self._is_door:
            return 0.0, 0.0
        door = self._door
        if self._episode_t0 is None:
            self._episode_t0 = js.stamp
            self._door_min_stamp = max(js.stamp, self._door_min_stamp or -math.inf)
        if door is None or (self._door_prior and door[0] < js.stamp - self.config.door_stamp_tolerance_s):
            if js.stamp - self._episode_t0 <= self.config.door_stale_s:
                return 0.0, 0.0  # episode start: the door was just reset closed
            self.drop("door_missing", "no door-angle estimate (is door_angle running?): holding still")
            return None, 0.0
        if js.stamp - door[0] > self.config.door_stale_s:
            self.drop("door_stale", f"door estimate {js.stamp - door[0]:.3f} s older than the joint state")
            return None, 0.0
        return door[1], door[2]
