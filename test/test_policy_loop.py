"""The policy node's timing and episode state machine (async_naf.acting.loop), without rclpy.

Times are steady-clock seconds chosen by the test; stamps are joint-state header stamps (s).
"""
from __future__ import annotations

import numpy as np
import pytest

from async_naf.acting.config import PolicyNodeConfig
from async_naf.acting.loop import JointSample, PolicyLoop
from async_naf.acting.runner import PolicyRunner
from async_naf.common.noise import NoiseConfig
from async_naf.wire.layouts import Goal

Q0 = np.array([0.0, 0.3, 0.0, -1.2, 0.0, 1.0, 0.0])


@pytest.fixture(scope="module")
def kinematics():
    from async_naf.task.kinematics import ArmKinematics

    return ArmKinematics()


def make_loop(kinematics, **overrides) -> PolicyLoop:
    cfg = PolicyNodeConfig(**{"task": "door_pull", "seed": 0, **overrides})
    loop = PolicyLoop(cfg, PolicyRunner(cfg, kinematics=kinematics))
    loop.activate()
    return loop


def goal(loop: PolicyLoop, episode: int = 0, active: bool = True) -> Goal:
    return Goal(episode, active, np.full(loop.runner.task.goal_dim, 0.1))


def js(stamp: float, received: float, q: np.ndarray = Q0) -> JointSample:
    return JointSample(stamp, q.copy(), np.zeros(7), received)


def test_nothing_is_commanded_before_an_active_goal(kinematics) -> None:
    loop = make_loop(kinematics, task="reach")
    assert loop.on_joint_state(js(0.0, 0.0), 0.0) is None
    assert loop.counts["steps"] == 0


def test_reach_acts_once_per_joint_state_with_numbered_steps(kinematics) -> None:
    loop = make_loop(kinematics, task="reach")
    loop.on_goal(goal(loop, episode=3), 0.0)
    outs = [loop.on_joint_state(js(0.05 * i, 0.05 * i), 0.05 * i) for i in range(1, 4)]
    assert all(o is not None and o.command.shape == (7,) for o in outs)
    assert [o.step.step for o in outs] == [0, 1, 2]
    assert {o.step.episode for o in outs} == {3}
    assert np.all(np.abs(outs[0].command) <= loop.runner.limits)
    assert loop.counts["steps"] == 3


def test_door_task_waits_for_an_estimate_as_new_as_the_joint_state(kinematics) -> None:
    loop = make_loop(kinematics, door_wait_s=0.02, door_stamp_tolerance_s=0.011)
    loop.on_goal(goal(loop), 0.0)
    assert loop.on_joint_state(js(1.0, 1.0), 1.0) is None  # waits for the door
    assert loop.on_door(0.98, 0.3, 0.1, 1.001) is None  # too old for the joint state at 1.0
    out = loop.on_door(0.995, 0.4, 0.2, 1.002)  # within the stamp tolerance: act now, with it
    assert out is not None and out.step.door_angle == pytest.approx(0.4)
    assert out.step.door_velocity == pytest.approx(0.2)
    assert loop.counts["door_late"] == 0


def test_door_wait_is_bounded(kinematics) -> None:
    loop = make_loop(kinematics, door_wait_s=0.02)
    loop.on_goal(goal(loop), 0.0)
    assert loop.on_joint_state(js(1.0, 1.0), 1.0) is None  # waits for the door
    first = loop.on_door_deadline(1.021)  # no estimate within door_wait_s: acts with the door closed
    assert first is not None and first.step.door_angle == 0.0
    loop.on_door(1.01, 0.25, 0.0, 1.03)
    assert loop.on_joint_state(js(1.05, 1.05), 1.05) is None
    assert loop.on_door_deadline(1.06) is None  # 10 ms of the 20 ms wait
    out = loop.on_door_deadline(1.071)
    assert out is not None and loop.counts["door_late"] == 2
    assert out.step.door_angle == pytest.approx(0.25)  # the newest estimate


def test_awaiting_door_is_true_exactly_while_a_joint_state_waits(kinematics) -> None:
    """The node arms its door-wait timer only while ``awaiting_door`` (no timer wake-ups otherwise)."""
    loop = make_loop(kinematics, door_wait_s=0.02, door_stamp_tolerance_s=0.011)
    assert not loop.awaiting_door
    loop.on_goal(goal(loop), 0.0)
    loop.on_joint_state(js(1.0, 1.0), 1.0)
    assert loop.awaiting_door
    assert loop.on_door(1.0, 0.1, 0.0, 1.001) is not None
    assert not loop.awaiting_door  # answered by the estimate
    loop.on_joint_state(js(1.05, 1.05), 1.05)
    assert loop.awaiting_door
    assert loop.on_door_deadline(1.06) is None and loop.awaiting_door  # still within door_wait_s
    assert loop.on_door_deadline(1.071) is not None and not loop.awaiting_door  # the deadline acted
    reach = make_loop(kinematics, task="reach")
    reach.on_goal(goal(reach), 0.0)
    assert reach.on_joint_state(js(1.0, 1.0), 1.0) is not None and not reach.awaiting_door


def test_estimates_from_before_the_reset_are_ignored(kinematics) -> None:
    loop = make_loop(kinematics, door_wait_s=0.0)
    loop.on_goal(goal(loop, episode=0), 0.0)
    loop.on_joint_state(js(5.0, 5.0), 5.0)
    assert loop.on_door(5.0, 0.8, 0.0, 5.01) is None  # not newer than the episode's first joint state
    assert loop.counts["door_before_episode"] == 1
    loop.on_door(5.01, 0.8, 0.0, 5.02)
    loop.on_goal(goal(loop, episode=0, active=False), 5.1)
    loop.on_goal(goal(loop, episode=1), 5.2)  # reset: the newest joint state seen is stamped 5.0
    assert loop.on_door(4.99, 0.8, 0.0, 5.21) is None
    assert loop.counts["door_before_episode"] == 2
    out = loop.on_joint_state(js(5.3, 5.3), 5.3)
    assert out is not None and out.step.door_angle == 0.0  # closed prior, not the old 0.8
    assert out.step.step == 0 and out.step.episode == 1


def test_an_estimate_older_than_the_one_held_is_a_counted_drop(kinematics) -> None:
    """Delivered out of order, an older estimate must not replace the newer one the policy then acts on."""
    loop = make_loop(kinematics, door_wait_s=0.02, door_stamp_tolerance_s=0.011)
    loop.on_goal(goal(loop), 0.0)
    loop.on_joint_state(js(0.5, 0.5), 0.5)
    loop.on_door_deadline(0.521)  # the first step, with the closed prior
    loop.on_door(1.00, 0.40, 0.0, 0.53)
    assert loop.on_door(0.80, 0.05, 0.0, 0.54) is None
    assert loop.drops["door_state"] == 1
    assert loop.on_door(1.00, 0.41, 0.0, 0.55) is None and loop.drops["door_state"] == 1  # same stamp: kept
    out = loop.on_joint_state(js(1.0, 1.0), 1.0)  # the held estimate (stamp 1.00) is fresh: acts at once
    assert out is not None and out.step.door_angle == pytest.approx(0.41)


def test_a_joint_state_stamped_far_from_the_stream_is_dropped(kinematics) -> None:
    """One joint state stamped decades ahead made every later one a 'repeated state': the policy re-sent its
    last command until the next episode, without a drop."""
    loop = make_loop(kinematics, task="reach")
    loop.on_goal(goal(loop), 0.0)
    for i in range(1, 4):
        loop.on_joint_state(js(0.05 * i, 0.05 * i), 0.05 * i)
    assert loop.on_joint_state(js(2e9, 0.17), 0.17) is None
    assert loop.drops["joint_state"] == 1
    out = loop.on_joint_state(js(0.2, 0.2), 0.2)
    assert out is not None and out.step is not None and out.step.step == 3
    assert loop.counts["repeated_state"] == 0


def test_a_confirmed_jump_of_the_joint_states_clock_restarts_the_timing(kinematics) -> None:
    """A restarted simulation: its stamps start over. Once JUMP_CONFIRM of them go on from each other the policy
    times afresh: it holds still until a door estimate on the new clock arrives, then acts with it."""
    from async_naf.common.stamps import JUMP_CONFIRM

    loop = make_loop(kinematics, door_wait_s=0.0, door_stale_s=0.5)
    loop.on_goal(goal(loop), 0.0)
    loop.on_joint_state(js(100.0, 0.0), 0.0)
    loop.on_door(100.01, 0.3, 0.0, 0.01)
    assert loop.on_joint_state(js(100.05, 0.05), 0.05).step.door_angle == pytest.approx(0.3)
    outs = [loop.on_joint_state(js(0.05 * k, 0.1 + 0.05 * k), 0.1 + 0.05 * k) for k in range(JUMP_CONFIRM)]
    assert outs[:-1] == [None] * (JUMP_CONFIRM - 1) and loop.counts["time_jumps"] == 1
    assert outs[-1].step is None and not np.any(outs[-1].command) and loop.drops["door_missing"] == 1
    t = 0.05 * JUMP_CONFIRM
    loop.on_door(t, 0.1, 0.0, 0.1 + t)  # on the new clock: taken, not refused as older than the old estimate
    out = loop.on_joint_state(js(t, 0.1 + t), 0.1 + t)
    assert out.step is not None and out.step.door_angle == pytest.approx(0.1)
    assert loop.counts["repeated_state"] == 0


def test_a_missing_door_estimate_stops_the_arm(kinematics) -> None:
    loop = make_loop(kinematics, door_wait_s=0.0, door_stale_s=0.5)
    loop.on_goal(goal(loop), 0.0)
    assert loop.on_joint_state(js(0.0, 0.0), 0.0).step is not None
    assert loop.on_joint_state(js(0.4, 0.4), 0.4).step is not None  # still within door_stale_s of the start
    out = loop.on_joint_state(js(0.6, 0.6), 0.6)
    assert out is not None and out.step is None and not np.any(out.command)
    assert loop.drops["door_missing"] == 1


def test_a_stale_door_estimate_stops_the_arm(kinematics) -> None:
    loop = make_loop(kinematics, door_wait_s=0.0, door_stale_s=0.5)
    loop.on_goal(goal(loop), 0.0)
    loop.on_joint_state(js(0.0, 0.0), 0.0)
    loop.on_door(0.1, 0.2, 0.0, 0.1)
    assert loop.on_joint_state(js(0.5, 0.5), 0.5).step is not None
    out = loop.on_joint_state(js(0.7, 0.7), 0.7)
    assert out.step is None and not np.any(out.command) and loop.drops["door_stale"] == 1


def test_lockstep_resends_a_lost_command(kinematics) -> None:
    loop = make_loop(kinematics, task="reach", lockstep=True, stall_resend_s=0.25)
    loop.on_goal(goal(loop), 0.0)
    first = loop.on_joint_state(js(1.0, 1.0), 1.0)
    again = loop.on_joint_state(js(1.0, 1.01), 1.01)  # the same state re-published: the command was lost
    assert again is not None and again.step is None
    np.testing.assert_array_equal(again.command, first.command)
    assert loop.counts["repeated_state"] == 1
    assert loop.on_stall_tick(1.2) is None  # nothing for 0.19 s: not a stall yet
    stalled = loop.on_stall_tick(1.27)
    assert stalled is not None and loop.counts["stall_resends"] == 1
    np.testing.assert_array_equal(stalled.command, first.command)


def test_lockstep_acts_on_the_reset_state_that_came_before_the_goal(kinematics) -> None:
    loop = make_loop(kinematics, task="reach", lockstep=True)
    loop.on_goal(goal(loop, episode=0), 0.0)
    loop.on_joint_state(js(1.0, 1.0), 1.0)
    loop.on_goal(goal(loop, episode=0, active=False), 1.1)
    assert loop.on_joint_state(js(1.2, 1.2), 1.2) is None  # between episodes: no action
    out = loop.on_goal(goal(loop, episode=1), 1.3)  # the reset's joint state arrived first
    assert out is not None and out.step.episode == 1 and out.step.step == 0


def test_timer_trigger_acts_on_the_newest_state_and_stops_when_it_is_stale(kinematics) -> None:
    loop = make_loop(kinematics, task="reach", trigger="timer", joint_state_timeout_s=0.25)
    loop.on_goal(goal(loop), 0.0)
    assert loop.on_joint_state(js(1.0, 1.0), 1.0) is None  # the timer acts, not the joint state
    a = loop.on_control_tick(1.05)
    b = loop.on_control_tick(1.10)  # the same state again: a timer acts on it again
    assert a.step.step == 0 and b.step.step == 1
    stale = loop.on_control_tick(1.3)
    assert stale.step is None and not np.any(stale.command)
    assert loop.drops["joint_state_stale"] == 1


def test_episode_end_and_deactivation_stop_the_arm(kinematics) -> None:
    loop = make_loop(kinematics, door_wait_s=0.02)
    loop.on_goal(goal(loop), 0.0)
    loop.on_joint_state(js(1.0, 1.0), 1.0)
    assert loop.on_joint_state(js(1.05, 1.05), 1.05) is None  # pending on the door
    end = loop.on_goal(goal(loop, active=False), 1.06)
    assert end is not None and not np.any(end.command)
    assert loop.on_door_deadline(1.2) is None  # the pending state was forgotten
    loop.on_goal(goal(loop, episode=1), 1.3)
    assert not np.any(loop.deactivate().command)
    assert loop.on_joint_state(js(1.4, 1.4), 1.4) is None


def test_greedy_without_weights_commands_nothing_and_noise_before_weights(kinematics) -> None:
    greedy = make_loop(kinematics, task="reach", eval_mode=True)
    greedy.on_goal(goal(greedy), 0.0)
    assert greedy.on_joint_state(js(1.0, 1.0), 1.0) is None
    noisy = make_loop(kinematics, task="reach", noise=NoiseConfig(kind="gaussian", scale=0.3))
    noisy.on_goal(goal(noisy), 0.0)
    out = noisy.on_joint_state(js(1.0, 1.0), 1.0)
    assert out is not None and np.any(out.command != 0.0)


def test_a_non_finite_observation_is_a_counted_drop(kinematics) -> None:
    loop = make_loop(kinematics, task="reach")
    loop.on_goal(Goal(0, True, np.array([np.nan, 0.0, 0.0])), 0.0)
    assert loop.on_joint_state(js(1.0, 1.0), 1.0) is None
    assert loop.drops["observation"] == 1
