"""EpisodeAssembler.add_steps (many steps at once, bag conversion) against a plain step-by-step model of the
collector's pairing, and Task.rewards against the task's per-step reward (ROS-free, fixed seeds)."""
from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from async_naf.collecting.collector import CollectorConfig, EpisodeAssembler, GroundTruth
from async_naf.task.tasks import TaskState, make_task
from async_naf.wire.layouts import PolicyStep, PolicySteps


def _model(config: CollectorConfig, goal: np.ndarray, episode: int, steps: list[PolicyStep],
           truths: list[GroundTruth | None]) -> tuple[list[np.ndarray], dict[str, int], list[tuple], int]:
    """The collector's rules one step at a time, written out plainly (the reference for add_steps):
    rows, drops, (episode, return, length, success) of ended episodes, late steps."""
    task = make_task(config.task)
    rows: list[np.ndarray] = []
    drops: dict[str, int] = {}
    ends: list[tuple] = []
    late = 0
    prev: PolicyStep | None = None
    in_episode, ret, length, success = True, 0.0, 0, False
    limit = config.episode_steps or task.episode_steps
    for step, truth in zip(steps, truths):
        if not in_episode and step.episode == episode:
            late += 1
            continue
        if not in_episode or step.episode != episode:
            drops["other_episode"] = drops.get("other_episode", 0) + 1
            continue
        arrays = (step.obs, step.action, step.joint_pos, step.joint_vel, step.ee_pos)
        if not all(np.isfinite(a).all() for a in arrays) or not math.isfinite(step.stamp_s):
            drops["non_finite"] = drops.get("non_finite", 0) + 1
            prev = None
            continue
        if np.any(step.action < task.action_low - 1e-6) or np.any(step.action > task.action_high + 1e-6):
            drops["out_of_bounds"] = drops.get("out_of_bounds", 0) + 1
            prev = None
            continue
        if prev is not None and step.step == prev.step:  # the previous step again: dropped, the previous stays
            drops["duplicate"] = drops.get("duplicate", 0) + 1
            continue
        p, prev = prev, step
        if p is None:
            continue
        if step.step != p.step + 1:
            drops["gap"] = drops.get("gap", 0) + 1
            continue
        if step.stamp_s < p.stamp_s:
            drops["out_of_order"] = drops.get("out_of_order", 0) + 1
            prev = None
            continue
        if step.stamp_s - p.stamp_s > config.step_timeout_s:  # not the next step in time: pairing goes on from it
            drops["stamp_jump"] = drops.get("stamp_jump", 0) + 1
            continue
        state = TaskState(step.joint_pos, step.joint_vel, step.ee_pos, step.door_angle, step.door_velocity)
        reward = task.reward(state, p.action, goal, truth)
        ok = task.success(state, goal, truth)
        terminal = ok and config.terminate_on_success
        rows.append(np.concatenate((p.obs, p.action, (reward,), step.obs,
                                    (float(terminal), config.robot_id, episode, p.step))).astype(np.float32))
        ret, length, success = ret + reward, length + 1, ok
        if terminal or length >= limit:
            in_episode, prev = False, None
            ends.append((episode, ret, length, success))
    return rows, drops, ends, late


def _steps(task_name: str, events: list[str], seed: int) -> list[PolicyStep]:
    """Policy steps of episode 0 with the given disturbances (door angles around the success angle)."""
    task = make_task(task_name)
    rng = np.random.default_rng(seed)
    goal = task.sample_goal(np.random.default_rng(0))
    steps, index, t = [], 0, 0.0
    for event in events:
        t += 0.05
        q, qd, ee = rng.normal(size=7), rng.normal(size=7), rng.uniform(0.2, 0.9, 3)
        door = float(rng.uniform(-0.1, 1.2)) if task.is_door else 0.0
        if event == "near_goal":
            ee = handle_or_target(task, goal, door) + rng.normal(scale=0.02, size=3)
        obs = task.observation(TaskState(q, qd, ee, door, 0.1), goal).astype(np.float64)
        action = rng.uniform(-0.5, 0.5, 7)
        episode, i, stamp = 0, index, t
        if event == "other_episode":
            episode = 1
        elif event == "gap":
            index += 1
            i = index
        elif event == "out_of_order":
            stamp = t - 0.2
        elif event == "far_ahead":  # one stamp far ahead (a glitch); the next is then out of order
            stamp = t + 1e12
        elif event == "pause":  # the clock moves on 10 s: this step and all after it
            t += 10.0
            stamp = t
        elif event == "nan":
            obs = obs.copy()
            obs[3] = np.nan
        elif event == "duplicate":  # the previous step's index again, with another action
            i = index - 1
        elif event == "oob":  # beyond the task's action bounds: no policy sends that
            action = action.copy()
            action[2] = 1.5 * task.action_high[2] * (1 if rng.random() < 0.5 else -1)
        steps.append(PolicyStep(stamp, episode, i, obs, action, q, qd, ee, door, 0.1))
        index += event not in ("other_episode", "duplicate")  # interleaved or repeated: this episode goes on
    return steps


def handle_or_target(task, goal: np.ndarray, door: float) -> np.ndarray:
    from async_naf.task.tasks import handle_point

    return handle_point(goal, door) if task.is_door else np.asarray(goal, float)


EVENTS = st.lists(st.sampled_from(["ok"] * 6 + ["near_goal", "other_episode", "gap", "out_of_order", "nan", "oob",
                                    "duplicate", "far_ahead", "pause"]),
                  min_size=1, max_size=60)


@settings(max_examples=60, deadline=None)
@given(events=EVENTS, task_name=st.sampled_from(["reach", "door_pull"]), terminate=st.booleans(),
       with_truth=st.booleans(), cuts=st.lists(st.integers(0, 60), max_size=4), seed=st.integers(0, 1000))
def test_add_steps_in_any_slices_equals_the_step_by_step_rules(events, task_name, terminate, with_truth, cuts, seed):
    config = CollectorConfig(task=task_name, robot_id=2, episode_steps=25, terminate_on_success=terminate,
                             batch_transitions=7)
    task = make_task(task_name)
    goal = task.sample_goal(np.random.default_rng(0))
    steps = _steps(task_name, events, seed)
    rng = np.random.default_rng(seed + 1)
    truths = [GroundTruth(float(rng.uniform(0, 1.2)), 0.0, float(rng.uniform(0, 0.5))) if with_truth and task.is_door
              else None for _ in steps]
    rows, drops, ends, late = _model(config, goal, 0, steps, truths)

    asm = EpisodeAssembler(config, task)
    asm.start_episode(goal)
    ended = []
    bounds = [0, *sorted(set(min(c, len(steps)) for c in cuts)), len(steps)]
    for lo, hi in pairwise(bounds):
        if lo == hi:
            continue
        part = steps[lo:hi]
        hinge = handle = None
        if truths[0] is not None:
            hinge = np.array([t.hinge_angle for t in truths[lo:hi]])
            handle = np.array([t.handle_angle for t in truths[lo:hi]])
        ended += asm.add_steps(PolicySteps.from_steps(part), hinge, handle)
    got = []
    while (batch := asm.pop_batch()) is not None:
        got.append(np.column_stack((batch.obs, batch.action, batch.reward, batch.next_obs, batch.terminal,
                                    batch.robot_id, batch.episode, batch.step)).astype(np.float32))
    table = np.concatenate(got) if got else np.zeros((0, 2 * task.obs_dim + task.act_dim + 5), np.float32)
    expected = np.stack(rows) if rows else table[:0]
    assert table.shape == expected.shape
    assert np.array_equal(table, expected)  # bit for bit: the same float32 rows
    assert dict(asm.dropped) == drops
    assert asm.late_steps == late
    assert [(s.episode, s.episode_return, s.length, s.success) for s in ended] == ends

    one = EpisodeAssembler(config, task)  # the live collector's way: one step at a time
    one.start_episode(goal)
    ended_one = [e for step, truth in zip(steps, truths) if (e := one.add_step(step, truth)) is not None]
    batch = one.pop_batch(max_rows=10_000)
    single = (np.column_stack((batch.obs, batch.action, batch.reward, batch.next_obs, batch.terminal, batch.robot_id,
                               batch.episode, batch.step)).astype(np.float32) if batch is not None else table[:0])
    assert np.array_equal(single, expected)
    assert (dict(one.dropped), one.late_steps, ended_one) == (drops, late, ended)


def test_rewards_of_many_steps_equal_the_per_step_reward_bit_for_bit() -> None:
    """Task.rewards (bag conversion) against Task.reward / success / distance (the live collector), every row,
    door angles exactly at the success and open thresholds included."""
    rng = np.random.default_rng(7)
    for name in ("reach", "door_pull", "door_push"):
        task = make_task(name)
        goal = task.sample_goal(rng)
        n = 3000
        ee, action = rng.uniform(0.2, 0.9, (n, 3)), rng.uniform(-0.5, 0.5, (n, 7))
        door, handle = rng.uniform(-0.2, 1.5, n), rng.uniform(-0.1, 0.6, n)
        door[:2] = task.config.success_angle, task.config.open_angle
        if not task.is_door:  # some hook tips within the success distance
            ee[:300] = goal + rng.normal(scale=0.03, size=(300, 3))
        dist = task.distances(ee, goal, door)
        for truth in (False, True):
            r, ok = task.rewards(ee, action, goal, door, handle if truth and task.is_door else None)
            assert 0 < ok.sum() < n
            for i in range(n):
                t = GroundTruth(door[i], 0.0, handle[i]) if truth and task.is_door else None
                state = TaskState(np.zeros(7), np.zeros(7), ee[i], door[i], 0.0)
                assert r[i] == task.reward(state, action[i], goal, t)
                assert bool(ok[i]) == task.success(state, goal, t)
                assert dist[i] == task.distance(state, goal, GroundTruth(door[i], 0.0, 0.0) if task.is_door else None)


def test_observations_of_many_states_equal_the_per_step_observation_bit_for_bit() -> None:
    """Task.observations (bag conversion) against Task.observation (the live policy), every row, with and
    without the handle sensor."""
    from async_naf.task.tasks import TaskConfig

    rng = np.random.default_rng(8)
    for name in ("reach", "door_pull", "door_push"):
        for handle_sensor in (False, True) if name != "reach" else (False,):
            task = make_task(name, TaskConfig(handle_sensor=handle_sensor))
            goal = task.sample_goal(rng)
            n = 500
            q, qd, ee = rng.uniform(-1, 1, (n, 7)), rng.normal(size=(n, 7)), rng.uniform(0.2, 0.9, (n, 3))
            door, rate = rng.uniform(-0.2, 1.5, n), rng.normal(size=n)
            obs = task.observations(q, qd, ee, goal, door, rate)
            assert obs.dtype == np.float32 and obs.shape == (n, task.obs_dim)
            for i in range(n):
                assert np.array_equal(obs[i], task.observation(TaskState(q[i], qd[i], ee[i], door[i], rate[i]), goal))

