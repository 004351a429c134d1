"""The collector node's episode state machine and batching (async_naf.collecting.loop), without rclpy.

Times are steady-clock seconds chosen by the test.
"""
from __future__ import annotations

import numpy as np

from async_naf.collecting.collector import CollectorConfig, GroundTruth
from async_naf.collecting.loop import BACKLOG_PER_TICK, RETRY_S, TICK_S, WAIT_RETRY_S, CollectorLoop
from async_naf.task.tasks import TaskState, make_task
from async_naf.wire.layouts import PolicyStep


def make_loop(**overrides) -> CollectorLoop:
    return CollectorLoop(CollectorConfig(**{"task": "reach", "seed": 0, **overrides}))


def step(loop: CollectorLoop, index: int, stamp: float, episode: int | None = None) -> PolicyStep:
    task = loop.asm.task
    rng = np.random.default_rng(index)
    q, qd, ee = rng.normal(size=7), rng.normal(size=7), rng.uniform(0.2, 0.6, size=3)
    obs = task.observation(TaskState(q, qd, ee, 0.0, 0.0), loop.asm.goal)
    return PolicyStep(stamp, loop.asm.episode if episode is None else episode, index, obs.astype(np.float64),
                      rng.uniform(-0.5, 0.5, size=7), q, qd, ee, 0.0, 0.0)


def start(loop: CollectorLoop, now: float = 0.0) -> None:
    """Reset and start an episode (reach: no zeroing)."""
    assert loop.tick(now).call == "reset"
    acts = loop.on_service_reply(True, "", now + 0.01)
    assert acts.goals and acts.goals[0].active and loop.phase == "running"


def test_waits_for_a_trainer_and_the_reset_service() -> None:
    loop = make_loop()
    acts = loop.tick(0.0, trainer_listening=False)
    assert acts.call is None and acts.log[0][1] == "wait_trainer" and loop.phase == "idle"
    assert not loop.tick(WAIT_RETRY_S / 2, trainer_listening=True)  # retried only after WAIT_RETRY_S
    acts = loop.tick(WAIT_RETRY_S, reset_ready=False)
    assert acts.call is None and acts.log[0][1] == "wait_reset"
    assert loop.tick(2 * WAIT_RETRY_S).call == "reset" and loop.phase == "resetting"
    assert not make_loop(wait_for_trainer=False).tick(0.0, trainer_listening=False).log


def test_an_episode_runs_from_reset_to_statistics() -> None:
    loop = make_loop(episode_steps=3, batch_transitions=100)
    start(loop)
    goal = loop.asm.goal.copy()
    outs = [loop.on_step(step(loop, i, 1.0 + 0.05 * i), 1.0 + 0.05 * i) for i in range(4)]
    assert not any(o.stats for o in outs[:3])
    end = outs[3]
    assert [g.active for g in end.goals] == [False]  # the policy is held
    np.testing.assert_array_equal(end.goals[0].goal, goal)
    assert [b.rows for b in end.batches] == [3] and len(end.stats) == 1
    assert end.stats[0].length == 3 and end.stats[0].episode == 0
    assert loop.phase == "idle" and loop.counts["episodes"] == 1 and loop.counts["transitions_sent"] == 3
    assert loop.tick(2.0).call == "reset"  # the next episode


def test_door_task_zeroes_the_estimator_between_reset_and_start() -> None:
    loop = make_loop(task="door_pull", use_ground_truth=False)
    assert loop.tick(0.0).call == "reset"
    acts = loop.on_service_reply(True, "", 0.1)
    assert acts.call == "zero" and loop.phase == "zeroing" and not acts.goals
    acts = loop.on_service_reply(False, "not at rest", 0.2)  # refused: logged, the episode starts anyway
    assert acts.goals[0].active and acts.log[0][1] == "zero_refused" and loop.phase == "running"
    loop2 = make_loop(task="door_pull", use_ground_truth=False)
    loop2.tick(0.0)
    assert loop2.on_service_reply(True, "", 0.1, zero_ready=False).goals[0].active  # no zero service


def test_reset_timeout_refusal_and_error_retry_later() -> None:
    loop = make_loop(reset_timeout_s=1.0)
    loop.tick(0.0)
    assert not loop.tick(0.9).cancel
    acts = loop.tick(1.1)
    assert acts.cancel and loop.phase == "idle" and loop.counts["reset_failures"] == 1
    assert loop.tick(1.1 + RETRY_S / 2).call is None
    assert loop.tick(1.1 + RETRY_S).call == "reset"
    loop.on_service_reply(False, "arm in fault", 2.2)
    assert loop.phase == "idle" and loop.counts["reset_failures"] == 2
    loop.tick(2.2 + RETRY_S)
    loop.on_service_error("RuntimeError('gone')", 3.3)
    assert loop.phase == "idle" and loop.counts["reset_failures"] == 3
    assert not loop.on_service_reply(True, "", 3.4)  # a late answer to a call given up starts nothing


def test_partial_batches_go_out_after_the_delay() -> None:
    loop = make_loop(episode_steps=100, batch_transitions=10, max_batch_delay_s=0.5)
    start(loop)
    for i in range(4):
        assert not loop.on_step(step(loop, i, 1.0 + 0.05 * i), 1.0 + 0.05 * i).batches
    assert not loop.tick(1.3).batches  # the first row was made at 1.05
    assert [b.rows for b in loop.tick(1.56).batches] == [3]
    for i in range(4, 15):
        acts = loop.on_step(step(loop, i, 1.0 + 0.05 * i), 1.6 + 0.01 * i)
    assert loop.counts["batches_sent"] == 2 and loop.asm.pending == 1 and not acts.stats  # a full batch at once


def test_a_stalled_episode_is_aborted() -> None:
    loop = make_loop(step_timeout_s=1.0)
    start(loop)
    loop.on_step(step(loop, 0, 1.0), 1.0)
    loop.on_step(step(loop, 1, 1.05), 1.05)
    assert not loop.tick(1.5).goals
    resend = loop.tick(2.0).goals  # no step for goal_resend_s: the running goal is re-sent (resynchronisation)
    assert [g.active for g in resend] == [True] and loop.counts["goal_resends"] == 1
    acts = loop.tick(2.1)
    assert [g.active for g in acts.goals] == [False] and [b.rows for b in acts.batches] == [1]
    assert loop.phase == "idle" and loop.counts["aborted_episodes"] == 1 and acts.log[0][1] == "aborted"


def test_max_episodes_finishes() -> None:
    loop = make_loop(episode_steps=1, max_episodes=1)
    start(loop)
    loop.on_step(step(loop, 0, 1.0), 1.0)
    assert loop.on_step(step(loop, 1, 1.05), 1.05).stats
    assert loop.tick(1.1).call is None and loop.phase == "finished" and loop.done


def test_steps_wait_for_ground_truth_and_are_dropped_without_it() -> None:
    loop = make_loop(task="door_pull", zero_door_on_reset=False, truth_wait_s=0.2, episode_steps=50)
    start(loop)
    truth = GroundTruth(0.1, 0.0, 0.0)
    loop.on_truth(0.5, truth, 0.5)  # truth is published: from now on steps wait for theirs
    assert not loop.on_step(step(loop, 0, 1.0), 1.0)
    loop.on_truth(1.0, truth, 1.01)
    loop.on_step(step(loop, 1, 1.05), 1.05)
    loop.on_truth(1.05, truth, 1.06)
    assert loop.asm.env_steps == 1  # steps 0 and 1 paired, with their truth
    loop.on_step(step(loop, 2, 1.10), 1.10)
    loop.tick(1.2)
    assert loop.drops["truth_missing"] == 0  # 0.1 s of the 0.2 s wait
    acts = loop.tick(1.31)
    assert loop.drops["truth_missing"] == 1 and acts.log[0][1] == "truth_missing"


def test_steps_of_another_episode_make_no_transitions() -> None:
    loop = make_loop(episode_steps=10)
    start(loop)
    loop.on_step(step(loop, 0, 1.0, episode=7), 1.0)
    loop.on_step(step(loop, 1, 1.05, episode=7), 1.05)
    assert loop.asm.env_steps == 0 and loop.asm.dropped["other_episode"] == 2


def test_shutdown_holds_the_policy_and_flushes() -> None:
    loop = make_loop(episode_steps=10, batch_transitions=100)
    start(loop)
    loop.on_step(step(loop, 0, 1.0), 1.0)
    loop.on_step(step(loop, 1, 1.05), 1.05)
    acts = loop.shutdown(1.1)
    assert [g.active for g in acts.goals] == [False] and [b.rows for b in acts.batches] == [1]


def test_the_initial_goal_is_inactive() -> None:
    loop = make_loop()
    goal = loop.initial_goal()
    assert not goal.active and goal.goal.shape == (make_task("reach").goal_dim,)


def _run_episode(loop: CollectorLoop, t: float, n: int, listening: bool) -> float:
    """Reset, start and finish one n-step episode from time t; returns the time after it."""
    assert loop.tick(t, trainer_listening=listening).call == "reset"
    loop.on_service_reply(True, "", t + 0.01)
    for i in range(n + 1):
        t += 0.05
        loop.on_step(step(loop, i, t), t)
    return t + 0.05


def test_a_trainer_gone_keeps_episodes_going_into_a_bounded_backlog() -> None:
    loop = make_loop(episode_steps=10, batch_transitions=1, backlog_transitions=25)
    t = _run_episode(loop, 0.0, 10, listening=True)
    assert loop.counts["transitions_sent"] == 10
    # the trainer dies: no subscriber; episodes go on (the policy acts with the last weights), rows are kept
    for _ in range(2):
        t = _run_episode(loop, t, 10, listening=False)
    assert loop.counts["episodes"] == 3 and loop.counts["transitions_sent"] == 10
    assert loop.counts["backlog_transitions"] == 20 and loop.counts["lost_transitions"] == 0
    t = _run_episode(loop, t, 10, listening=False)  # 30 > 25: the 5 oldest batches are dropped, counted
    assert loop.counts["backlog_transitions"] == 25 and loop.counts["lost_transitions"] == 5
    # a trainer again: the backlog goes out oldest first, BACKLOG_PER_TICK messages per tick
    acts = loop.tick(t, trainer_listening=True)
    assert len(acts.batches) + len(acts.stats) == BACKLOG_PER_TICK
    assert (acts.batches[0].episode[0], acts.batches[0].step[0]) == (1, 5)  # episode 1's steps 0-4 were lost
    while loop.counts["backlog_transitions"]:
        t += TICK_S
        more = loop.tick(t, trainer_listening=True)
        acts.batches += more.batches
        acts.stats += more.stats
    assert sum(b.rows for b in acts.batches) == 25 and [s.episode for s in acts.stats] == [1, 2, 3]
    assert loop.counts["transitions_sent"] == 35
    # sent directly again (the drain's ticks already asked for the next reset)
    assert loop.phase == "resetting"
    loop.on_service_reply(True, "", t)
    for i in range(11):
        t += 0.05
        loop.on_step(step(loop, i, t), t)
    assert loop.counts["transitions_sent"] == 45 and loop.counts["backlog_transitions"] == 0


def test_a_lockstep_robot_pauses_its_episodes_before_its_backlog_would_drop_anything() -> None:
    """pause_when_backlog_full (a lockstep sim): with the trainer gone, episodes go on only while a whole one still
    fits the backlog; then it pauses instead of dropping the oldest, and goes on once a trainer is back."""
    loop = make_loop(episode_steps=10, batch_transitions=1, backlog_transitions=25, pause_when_backlog_full=True)
    t = _run_episode(loop, 0.0, 10, listening=True)
    for _ in range(2):  # the trainer dies: 10, then 20 kept
        t = _run_episode(loop, t, 10, listening=False)
    assert loop.counts["backlog_transitions"] == 20
    acts = loop.tick(t, trainer_listening=False)  # 20 + 10 > 25: no third episode
    assert acts.call is None and acts.log[0][1] == "backlog_full" and loop.phase == "idle"
    assert "20 of 25 transitions kept" in acts.log[0][2]
    assert loop.counts["lost_transitions"] == 0 and loop.counts["episodes"] == 3
    # a trainer again: the backlog drains, then episodes go on
    while loop.counts["backlog_transitions"]:
        t += TICK_S
        loop.tick(t, trainer_listening=True)
    assert loop.counts["transitions_sent"] == 30 and loop.counts["lost_transitions"] == 0
    assert loop.phase == "resetting" or loop.tick(t + WAIT_RETRY_S, trainer_listening=True).call == "reset"
    # the same without the option drops the oldest (test_a_trainer_gone_keeps_episodes_going_into_a_bounded_backlog)
    other = make_loop(episode_steps=10, batch_transitions=1, backlog_transitions=25)
    t = _run_episode(other, 0.0, 10, listening=True)
    for _ in range(2):
        t = _run_episode(other, t, 10, listening=False)
    assert other.tick(t, trainer_listening=False).call == "reset"


def test_without_a_backlog_episodes_pause_and_what_is_made_is_counted_lost() -> None:
    loop = make_loop(episode_steps=10, batch_transitions=5, backlog_transitions=0)
    t = _run_episode(loop, 0.0, 10, listening=True)
    assert loop.tick(t, trainer_listening=True).call == "reset"
    loop.on_service_reply(True, "", t)
    for i in range(4):  # the trainer dies mid-episode
        t += 0.05
        loop.on_step(step(loop, i, t), t)
    loop.tick(t, trainer_listening=False)
    for i in range(4, 11):
        t += 0.05
        loop.on_step(step(loop, i, t), t)
    assert loop.counts["lost_transitions"] == 10 and loop.counts["lost_episode_stats"] == 1
    acts = loop.tick(t + 1.0, trainer_listening=False)
    assert acts.call is None and acts.log[0][1] == "wait_trainer"  # paused until a trainer is back


def test_before_the_first_trainer_nothing_is_collected() -> None:
    loop = make_loop(backlog_transitions=100)
    assert loop.tick(0.0, trainer_listening=False).call is None and loop.phase == "idle"


def test_shutdown_counts_the_backlog_it_cannot_send() -> None:
    loop = make_loop(episode_steps=10, batch_transitions=5)
    t = _run_episode(loop, 0.0, 10, listening=True)
    t = _run_episode(loop, t, 10, listening=False)
    acts = loop.shutdown(t)
    assert not acts.batches and loop.counts["unsent_at_exit_transitions"] == 10
    assert loop.counts["unsent_at_exit_episode_stats"] == 1 and loop.counts["lost_transitions"] == 0


def test_a_recorded_run_starts_its_first_episode_once_the_recorder_listens() -> None:
    """wait_for_recorder: no reset before the recorder is ready for this robot (it has matched the robot's
    publishers, or subscribes to policy/step in the graph's view; a composed robot finishes episodes before a
    late recorder's subscriptions match); only the first episode waits."""
    loop = make_loop(wait_for_recorder="/recorder", episode_steps=3)
    acts = loop.tick(0.0, recorder_ready=False)
    assert acts.call is None and acts.log[0][1] == "wait_recorder" and loop.phase == "idle"
    assert loop.tick(WAIT_RETRY_S, recorder_ready=True).call == "reset"
    loop.on_service_reply(True, "", WAIT_RETRY_S + 0.01)
    t = WAIT_RETRY_S + 0.01
    for i in range(4):
        t += 0.05
        loop.on_step(step(loop, i, t), t)
    assert loop.counts["episodes"] == 1 and loop.phase == "idle"
    assert loop.tick(t + 1.0, recorder_ready=False).call == "reset"  # a recorder gone later stops nothing
    assert make_loop().tick(0.0, recorder_ready=False).call == "reset"  # not configured: never waits
