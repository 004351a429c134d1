"""Resynchronisation of the policy and collector cores (issue 13), without rclpy: goal messages are dropped
or overwritten on purpose between a real PolicyLoop and a real CollectorLoop, in simulated time.

The arm is a stand-in that publishes a joint state every ``DT_JS`` s; the collector is ticked every
``TICK_S`` and its reset service answers at once. What is checked: a lost goal (start or end of an episode)
or a goal overwritten by another publisher resolves within ``goal_resend_s`` plus one control period, always
within ``step_timeout_s``, and transitions of the episode flow again.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from async_naf.acting.config import PolicyNodeConfig
from async_naf.acting.loop import JointSample, PolicyLoop
from async_naf.acting.runner import PolicyRunner
from async_naf.collecting.collector import CollectorConfig
from async_naf.collecting.loop import TICK_S, Actions, CollectorLoop
from async_naf.wire.layouts import Goal

DT_JS = 0.05  # s between joint states (20 Hz control)
Q0 = np.array([0.0, 0.3, 0.0, -1.2, 0.0, 1.0, 0.0])


class Pair:
    """A policy core and a collector core wired together; ``drop(goal, now)`` decides which goals are lost."""

    def __init__(self, drop: Callable[[Goal, float], bool] = lambda g, t: False, reset_s: float = 0.0,
                 **collector: object) -> None:
        pcfg = PolicyNodeConfig(task="reach", seed=0)
        self.policy = PolicyLoop(pcfg, PolicyRunner(pcfg))
        self.policy.activate()
        self.collector = CollectorLoop(CollectorConfig(**{"task": "reach", "seed": 0, "episode_steps": 20,
                                                          "wait_for_trainer": False, **collector}))
        self.drop = drop
        self.reset_s = reset_s  # the reset service answers after this long
        self.reply_at: float | None = None
        self.now = 0.0
        self.stamp = 0.0
        self.next_js = 0.0
        self.sent: list[Goal] = []
        self.dropped: list[Goal] = []
        self.policy.on_goal(self.collector.initial_goal(), 0.0)

    def _do(self, acts: Actions) -> None:
        for goal in acts.goals:
            self.sent.append(goal)
            if self.drop(goal, self.now):
                self.dropped.append(goal)
            else:
                self.policy.on_goal(goal, self.now)
        if acts.call is not None:
            self.reply_at = self.now + self.reset_s

    def run(self, seconds: float, until: Callable[[], bool] = lambda: False) -> float:
        """Advance simulated time; returns the time at which ``until`` first held (or the end)."""
        end = self.now + seconds
        while self.now < end:
            if self.reply_at is not None and self.now >= self.reply_at:
                self.reply_at = None
                self._do(self.collector.on_service_reply(True, "", self.now))
            self._do(self.collector.tick(self.now))
            if self.now >= self.next_js:
                self.next_js += DT_JS
                self.stamp += DT_JS
                out = self.policy.on_joint_state(JointSample(self.stamp, Q0 + 0.01 * self.stamp, np.zeros(7),
                                                             self.now), self.now)
                if out is not None and out.step is not None:
                    self._do(self.collector.on_step(out.step, self.now))
            if until():
                return self.now
            self.now = round(self.now + TICK_S / 2, 6)
        return self.now

    @property
    def steps(self) -> int:
        return self.collector.asm.env_steps

    def in_sync(self) -> bool:
        g, c = self.policy.goal, self.collector
        return (g is not None and c.goal is not None and g.episode == c.goal.episode
                and g.active == c.goal.active and np.array_equal(g.goal, c.goal.goal))


def test_no_loss_no_resend() -> None:
    pair = Pair()
    pair.run(10.0)
    c = pair.collector
    assert c.counts["episodes"] >= 8 and c.counts["goal_resends"] == 0
    assert c.counts["aborted_episodes"] == 0 and not c.asm.dropped.get("other_episode")


@pytest.mark.parametrize("which", ["start", "end"])
def test_a_lost_goal_resolves_within_the_resend_interval(which: str) -> None:
    """Lose the goal that starts episode 2 (the policy acts on under episode 1's number / stays held) or the
    hold goal that ends episode 2 (the policy acts on through the reset, which takes 2 s here)."""
    lost: list[Goal] = []

    def drop(goal: Goal, now: float) -> bool:
        hit = goal.episode == 2 and goal.active == (which == "start") and not lost
        if hit:
            lost.append(goal)
        return hit

    pair = Pair(drop, reset_s=2.0, goal_resend_s=0.5, step_timeout_s=5.0)
    pair.run(30.0, until=lambda: bool(lost))
    t_lost = pair.now
    assert not pair.in_sync()
    t_sync = pair.run(10.0, until=pair.in_sync)
    assert t_sync - t_lost <= 0.5 + DT_JS + TICK_S, f"resynchronised after {t_sync - t_lost:.2f} s"
    episodes, steps = pair.collector.counts["episodes"], pair.steps
    pair.run(10.0)  # an episode: 1 s of steps + 2 s of reset
    assert pair.collector.counts["episodes"] >= episodes + 3 and pair.steps >= steps + 60
    assert pair.collector.counts["goal_resends"] >= 1
    assert pair.collector.counts["aborted_episodes"] == 0  # resolved well before step_timeout_s


def test_a_goal_overwritten_by_another_publisher_resolves() -> None:
    """Another participant's goal replaces the collector's in the policy (keep-last-1): an unknown episode
    number, or this episode's number with another goal (its steps are dropped as goal_mismatch)."""
    pair = Pair(goal_resend_s=0.5)
    for foreign in ("episode", "goal"):
        pair.run(3.3)
        cur = pair.collector.goal
        assert cur is not None and cur.active
        episode = cur.episode if foreign == "goal" else 9999
        pair.policy.on_goal(Goal(episode, True, cur.goal + 0.3), pair.now)
        t0 = pair.now
        t_sync = pair.run(10.0, until=pair.in_sync)
        assert t_sync - t0 <= 0.5 + DT_JS + TICK_S, f"{foreign}: resynchronised after {t_sync - t0:.2f} s"
    assert pair.collector.drops["goal_mismatch"] >= 1
    steps = pair.steps
    pair.run(3.0)
    assert pair.steps > steps + 40


def test_every_goal_lost_for_a_while_then_learning_resumes() -> None:
    """A flood: every goal lost for 10 s (and foreign goals injected); afterwards steps flow within
    step_timeout_s."""
    flood_end = 13.0
    pair = Pair(lambda g, t: 3.0 <= t < flood_end, goal_resend_s=0.5, step_timeout_s=2.0)
    rng = np.random.default_rng(0)
    pair.run(3.0)
    while pair.now < flood_end:
        pair.policy.on_goal(Goal(int(rng.integers(0, 10**6)), bool(rng.integers(0, 2)), rng.normal(size=3)),
                            pair.now)
        pair.run(0.3)
    steps = pair.steps
    t_back = pair.run(10.0, until=lambda: pair.steps > steps)
    assert t_back - flood_end <= 2.0, f"transitions again {t_back - flood_end:.2f} s after the flood"
    pair.run(5.0)
    assert pair.in_sync() and pair.steps > steps + 60


def test_no_resend_when_disabled() -> None:
    lost: list[Goal] = []

    def drop(goal: Goal, now: float) -> bool:
        hit = goal.episode == 1 and goal.active and not lost
        lost.append(goal) if hit else None
        return hit

    pair = Pair(drop, goal_resend_s=0.0, step_timeout_s=2.0)
    pair.run(15.0)
    c = pair.collector
    assert lost and c.counts["goal_resends"] == 0
    assert c.counts["aborted_episodes"] == 1  # only the step timeout resolved it
    assert c.counts["episodes"] >= 3


def test_goal_resend_s_is_validated() -> None:
    with pytest.raises(ValueError):
        CollectorConfig(goal_resend_s=-0.1)
