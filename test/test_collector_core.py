"""async_naf.collecting.collector: episode assembly, rewards from the shared task code, drops, batching (ROS-free)."""
from __future__ import annotations

import dataclasses
from itertools import pairwise

import numpy as np
import pytest

from async_naf.collecting.collector import CollectorConfig, EpisodeAssembler, GroundTruth
from async_naf.task.tasks import TaskState, make_task
from async_naf.wire import layouts
from async_naf.wire.layouts import PolicyStep


class _Robot:
    """Synthetic policy steps: random joint states and actions; the observation from the task code."""

    def __init__(self, task, goal, seed=0):
        self.task, self.goal, self.rng = task, goal, np.random.default_rng(seed)
        self.t = 0.0

    def step(self, episode: int, index: int, door_angle: float = 0.0) -> PolicyStep:
        self.t += 0.05
        q, qd = self.rng.normal(size=7), self.rng.normal(size=7)
        ee = self.rng.uniform(0.2, 0.6, size=3)
        state = TaskState(q, qd, ee, door_angle, 0.0)
        obs = self.task.observation(state, self.goal)
        action = self.rng.uniform(-0.5, 0.5, size=7)
        return PolicyStep(self.t, episode, index, obs.astype(np.float64), action, q, qd, ee, door_angle, 0.0)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="batch_transitions"):
        CollectorConfig(batch_transitions=0)
    with pytest.raises(ValueError, match="task"):
        CollectorConfig(task="juggle")
    with pytest.raises(ValueError, match="step_timeout_s"):
        CollectorConfig(step_timeout_s=float("nan"))


def test_transitions_pair_consecutive_steps_with_task_rewards() -> None:
    task = make_task("reach")
    asm = EpisodeAssembler(CollectorConfig(task="reach", robot_id=3, episode_steps=5, batch_transitions=4, seed=1))
    goal = asm.start_episode()
    assert goal.active and goal.episode == 0 and goal.goal.shape == (3,)
    robot = _Robot(task, goal.goal)
    steps = [robot.step(0, i) for i in range(6)]
    results = [asm.add_step(s) for s in steps]
    assert results[:5] == [None] * 5
    stats = results[5]
    assert stats is not None and (stats.robot, stats.episode, stats.length, stats.env_steps) == (3, 0, 5, 5)
    first = asm.pop_batch()
    second = asm.pop_batch()
    assert first.rows == 4 and second.rows == 1 and asm.pop_batch() is None
    obs = np.concatenate([first.obs, second.obs])
    np.testing.assert_allclose(obs, np.stack([s.obs for s in steps[:5]]), rtol=1e-6)
    np.testing.assert_allclose(np.concatenate([first.next_obs, second.next_obs]),
                               np.stack([s.obs for s in steps[1:]]), rtol=1e-6)
    np.testing.assert_allclose(first.action, np.stack([s.action for s in steps[:4]]), rtol=1e-6)
    expected = [task.reward(TaskState(s.joint_pos, s.joint_vel, s.ee_pos), p.action, goal.goal)
                for p, s in pairwise(steps[:6])]
    rewards = np.concatenate([first.reward, second.reward])
    np.testing.assert_allclose(rewards, expected, rtol=1e-5)
    assert stats.episode_return == pytest.approx(sum(expected), rel=1e-6)
    assert np.all(first.terminal == 0)  # time limit: not terminal
    assert list(first.step) == [0, 1, 2, 3] and set(first.robot_id) == {3} and set(first.episode) == {0}
    layouts.decode_transitions(layouts.encode_transitions(first), task.obs_dim, task.act_dim)


def _feed(asm: EpisodeAssembler, steps: list[PolicyStep], batched: bool) -> None:
    """The steps all at once (add_steps, as the bag conversion) or one by one (add_step, as live)."""
    if batched:
        asm.add_steps(layouts.PolicySteps.from_steps(steps))
    else:
        for step in steps:
            asm.add_step(step)


def test_bad_steps_are_dropped_counted_and_never_paired() -> None:
    task = make_task("reach")
    asm = EpisodeAssembler(CollectorConfig(task="reach", episode_steps=50))
    goal = asm.start_episode()
    robot = _Robot(task, goal.goal)
    asm.add_step(robot.step(0, 0))
    nan_step = robot.step(0, 1)
    nan_step.obs[2] = np.nan
    assert asm.add_step(nan_step) is None
    # a NaN door angle beside finite arrays (Python's max(5.0, nan) is 5.0: a check by max() let it through)
    assert asm.add_step(dataclasses.replace(robot.step(0, 1), door_angle=float("nan"))) is None
    wrong = robot.step(0, 2)
    asm.add_step(PolicyStep(wrong.stamp_s, 0, 2, wrong.obs[:-1], wrong.action, wrong.joint_pos, wrong.joint_vel,
                            wrong.ee_pos))
    asm.add_step(robot.step(7, 3))  # another episode
    asm.add_step(robot.step(0, 4))  # pairing restarts here (no predecessor)
    asm.add_step(robot.step(0, 6))  # a gap: 4 -> 6
    asm.add_step(robot.step(0, 7))  # pairs with 6
    assert dict(asm.dropped) == {"non_finite": 2, "wrong_size": 1, "other_episode": 1, "gap": 1}
    batch = asm.pop_batch()
    assert batch.rows == 1 and list(batch.step) == [6]
    assert np.all(np.isfinite(batch.obs)) and np.all(np.isfinite(batch.next_obs))


@pytest.mark.parametrize("field, value", [("obs", 1e300), ("action", 1e300), ("joint_vel", 1e300),
                                          ("door_angle", 1e300), ("ee_pos", 3e38), ("joint_pos", 2e6)])
@pytest.mark.parametrize("batched", [False, True])
def test_values_no_arm_has_are_dropped_as_out_of_range(field, value, batched) -> None:
    """1e300 is finite as float64 but inf in a float32 transition; an end effector at 3e38 m is within float32
    but gives a reward of -5e38, whose return is not (the collector node died on its episode statistics). That
    step is dropped and counted, the others still pair."""
    task = make_task("door_pull")
    asm = EpisodeAssembler(CollectorConfig(task="door_pull", episode_steps=50))
    goal = asm.start_episode()
    robot = _Robot(task, goal.goal)
    steps = [robot.step(0, i) for i in range(6)]
    bad = steps[3]
    if field == "door_angle":
        steps[3] = dataclasses.replace(bad, door_angle=value)
    else:
        getattr(bad, field)[0] = value
    _feed(asm, steps, batched)
    assert dict(asm.dropped) == {"out_of_range": 1}
    batch = asm.pop_batch()
    assert list(batch.step) == [0, 1, 4]  # 2 -> 3 and 3 -> 4 are lost with the bad step
    for name in ("obs", "action", "reward", "next_obs"):
        assert np.all(np.isfinite(getattr(batch, name))), name


@pytest.mark.parametrize("batched", [False, True])
def test_an_action_beyond_the_task_bounds_is_dropped_as_out_of_bounds(batched) -> None:
    """No policy sends it (it clamps to the bounds): a step of a bag with one is bad input, dropped and counted
    (bag convert --method exact kept it, 1e6 times over the bound, where --method raw dropped the command)."""
    task = make_task("door_pull")
    asm = EpisodeAssembler(CollectorConfig(task="door_pull", episode_steps=50))
    goal = asm.start_episode()
    robot = _Robot(task, goal.goal)
    steps = [robot.step(0, i) for i in range(6)]
    steps[3].action[1] = task.action_high[1] + 1e-3
    steps[4].action[:] = task.action_low  # at the bounds: kept
    _feed(asm, steps, batched)
    assert dict(asm.dropped) == {"out_of_bounds": 1}
    assert list(asm.pop_batch().step) == [0, 1, 4]


def test_a_step_sent_twice_is_a_duplicate_and_the_first_one_pairs() -> None:
    """A second step 3 (another action) replaced the first: the transition 3 -> 4 went out with the copy's
    action, counted only as a gap."""
    task = make_task("reach")
    asm = EpisodeAssembler(CollectorConfig(task="reach", episode_steps=50))
    goal = asm.start_episode()
    robot = _Robot(task, goal.goal)
    steps = [robot.step(0, i) for i in range(5)]
    copy = dataclasses.replace(steps[3], action=np.full(7, 0.3))
    for step in steps[:4] + [copy, steps[4]]:
        asm.add_step(step)
    assert dict(asm.dropped) == {"duplicate": 1}
    batch = asm.pop_batch()
    assert list(batch.step) == [0, 1, 2, 3]
    np.testing.assert_allclose(batch.action[3], steps[3].action, rtol=1e-6)


@pytest.mark.parametrize("batched", [False, True])
def test_a_step_stamped_far_after_the_one_before_is_not_paired(batched) -> None:
    """A step stamped 10^12 s ahead was paired (a bag from another source; live, the policy no longer acts on
    such joint-state stamps). A step stamped more than step_timeout_s after the one before did not follow it in
    time: no transition, counted as stamp_jump; pairing goes on from it (the next step, stamped before it, is
    out of order). A real pause of 6 s loses only the transition across it."""
    task = make_task("reach")
    asm = EpisodeAssembler(CollectorConfig(task="reach", episode_steps=50, step_timeout_s=5.0))
    goal = asm.start_episode()
    robot = _Robot(task, goal.goal)
    steps = [robot.step(0, i) for i in range(9)]
    steps[3] = dataclasses.replace(steps[3], stamp_s=1e12)  # a glitch
    steps[6:] = [dataclasses.replace(s, stamp_s=s.stamp_s + 6.0) for s in steps[6:]]  # a 6 s pause before step 6
    _feed(asm, steps, batched)
    assert dict(asm.dropped) == {"stamp_jump": 2, "out_of_order": 1}
    assert list(asm.pop_batch().step) == [0, 1, 6, 7]


def test_late_steps_after_the_episode_are_ignored_not_counted_as_drops() -> None:
    task = make_task("reach")
    asm = EpisodeAssembler(CollectorConfig(task="reach", episode_steps=2))
    goal = asm.start_episode()
    robot = _Robot(task, goal.goal)
    assert [asm.add_step(robot.step(0, i)) is not None for i in range(3)] == [False, False, True]
    asm.add_step(robot.step(0, 3))
    assert asm.late_steps == 1 and not asm.dropped


def test_door_rewards_use_ground_truth_and_terminate_on_success() -> None:
    task = make_task("door_pull")
    asm = EpisodeAssembler(CollectorConfig(task="door_pull", terminate_on_success=True))
    goal = asm.start_episode()
    robot = _Robot(task, goal.goal)
    s0, s1 = robot.step(0, 0), robot.step(0, 1, door_angle=0.0)
    truth = GroundTruth(hinge_angle=0.5, hinge_velocity=0.0, handle_angle=0.4)  # estimate says closed
    asm.add_step(s0)
    stats = asm.add_step(s1, truth)
    assert stats is not None and stats.success and stats.length == 1
    batch = asm.pop_batch()
    assert batch.terminal[0] == 1.0
    expected = task.reward(TaskState(s1.joint_pos, s1.joint_vel, s1.ee_pos, 0.0, 0.0), s0.action, goal.goal, truth)
    assert batch.reward[0] == pytest.approx(expected, rel=1e-5)
    assert expected != pytest.approx(task.reward(TaskState(s1.joint_pos, s1.joint_vel, s1.ee_pos), s0.action,
                                                 goal.goal, None))


def test_goals_are_seeded_and_validated() -> None:
    a = EpisodeAssembler(CollectorConfig(task="reach", seed=5))
    b = EpisodeAssembler(CollectorConfig(task="reach", seed=5))
    np.testing.assert_array_equal(a.start_episode().goal, b.start_episode().goal)
    with pytest.raises(ValueError, match="goal"):
        a.start_episode(goal=np.array([np.nan, 0.0, 0.0]))
