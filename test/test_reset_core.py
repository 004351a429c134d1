"""The reset motion (async_naf/acting/reset.py), ROS-free, with times chosen by the test: a kinematic arm
(q += command * T) is driven home within its limits; timeouts fail clearly; door tasks wait for a closed door."""
from __future__ import annotations

import numpy as np
import pytest

from async_naf.acting.reset import ResetConfig, ResetMotion
from async_naf.task.tasks import REACH_START_POSE

T = 0.05


def _drive(motion: ResetMotion, q: np.ndarray, steps: int, door=lambda t: 0.0, track: float = 1.0):
    """Run the motion on a kinematic arm that follows ``track`` * the command; returns (q, phases, cmds)."""
    motion.start(0.0)
    phases, cmds = [], []
    qd = np.zeros(7)
    for k in range(steps):
        now = k * T
        cmd, phase = motion.step(now, q, qd, door(now), 0.0)
        phases.append(phase)
        cmds.append(cmd)
        if phase in ("done", "failed"):
            break
        qd = track * cmd
        q = q + qd * T
    return q, phases, np.array(cmds)


def _open_door_sim(q: np.ndarray | tuple, door: float):
    """The embedded sim (door_pull, closer 2 N m) with the arm at ``q`` (rad) and the unlatched door open
    ``door`` rad (the handle was turned: the bolt is out, the door swings)."""
    import dataclasses

    import mujoco

    from async_naf.sim.arm_door_sim import ArmDoorSim
    from async_naf.sim.config import SimConfig
    from async_naf.task.latch import hinge_upper_limit

    sim = ArmDoorSim(dataclasses.replace(SimConfig(), task="door_pull", door_closer_torque=2.0), seed=0)
    sim.reset(randomize=False)
    m, d = sim.model, sim.data
    sim._latched = False
    m.jnt_range[sim._hinge_jnt, 1] = hinge_upper_limit(False, sim._door.latch_play, sim._max_open)
    d.qpos[sim._arm_q], d.qpos[sim._hq] = q, door
    d.act[:] = q
    mujoco.mj_forward(m, d)
    return sim


def _reset_in_sim(sim, motion: ResetMotion, t_max: float) -> tuple[str, float]:
    """Run ``motion`` on ``sim`` as the hardware-mode sim node steps it (the closer acts once the arm has held
    still 1 s) until done, failed or ``t_max`` s; returns (phase, door angle rad)."""
    d = sim.data
    t, still, phase = 0.0, None, "moving"
    motion.start(t)
    while t < t_max and phase not in ("done", "failed"):
        cmd, phase = motion.step(t, d.qpos[sim._arm_q].copy(), np.array(sim.joint_velocities),
                                 float(d.qpos[sim._hq]), 0.0)
        still = (still if still is not None else t) if not cmd.any() else None
        sim.door_closing = still is not None and t - still >= 1.0
        sim.step(cmd)
        t += 0.05
    return phase, float(d.qpos[sim._hq])


def test_drives_home_within_velocity_and_acceleration_limits() -> None:
    cfg = ResetConfig(task="reach", control_period_s=T)
    motion = ResetMotion(cfg)
    start = np.array(REACH_START_POSE) + np.array([0.8, -0.5, 0.3, 0.6, -1.0, 0.4, 1.2])
    q, phases, cmds = _drive(motion, start.copy(), 2000)
    assert phases[-1] == "done", motion.error
    assert np.all(np.abs(q - np.array(REACH_START_POSE)) <= cfg.position_tolerance)
    assert np.all(np.abs(cmds) <= cfg.max_velocity + 1e-12)
    assert np.all(np.abs(np.diff(cmds, axis=0, prepend=0.0)) <= cfg.max_accel * T + 1e-9)
    # no overshoot: every joint approaches its target from one side
    errs = np.array(REACH_START_POSE) - (start + np.cumsum(cmds * T, axis=0))
    assert np.all(errs * (np.array(REACH_START_POSE) - start) >= -cfg.position_tolerance)
    np.testing.assert_array_equal(cmds[-1], np.zeros(7))


def test_an_arm_that_does_not_move_fails_with_the_joints_named() -> None:
    motion = ResetMotion(ResetConfig(task="reach", control_period_s=T, move_timeout_s=2.0))
    start = np.array(REACH_START_POSE)
    start[3] += 0.5
    _, phases, cmds = _drive(motion, start, 1000, track=0.0)  # blocked arm
    assert phases[-1] == "failed"
    assert "move_timeout_s = 2 s" in motion.error and "joint 4: 0.500 rad" in motion.error
    assert len(phases) == int(2.0 / T) + 2
    np.testing.assert_array_equal(cmds[-1], np.zeros(7))


def test_no_joint_states_fails_after_the_timeout() -> None:
    motion = ResetMotion(ResetConfig(task="reach", move_timeout_s=1.0))
    motion.start(10.0)
    assert motion.step(10.5, None, None)[1] == "moving" and motion.waiting_for == "joint states"
    cmd, phase = motion.step(11.01, None, None)
    assert phase == "failed" and "no joint states" in motion.error and not np.any(cmd)


def test_door_task_waits_for_the_door_to_be_closed_and_stay_closed() -> None:
    pose = tuple(np.array(REACH_START_POSE) + 0.1)
    cfg = ResetConfig(task="door_pull", start_pose=pose, control_period_s=T, door_closed_hold_s=0.5)
    motion = ResetMotion(cfg)

    def door(t: float) -> float:  # open until 3 s, a bounce at 3.2 s, then closed
        return 0.4 if t < 3.0 else (0.05 if 3.2 <= t < 3.3 else 0.005)

    _, phases, cmds = _drive(motion, np.array(REACH_START_POSE), 1000, door=door)
    assert phases[-1] == "done"
    first_door = phases.index("door")
    assert all(not np.any(c) for c in cmds[first_door:])  # holds still while waiting
    done_at = (len(phases) - 1) * T
    assert 3.3 + cfg.door_closed_hold_s - 1e-9 <= done_at <= 3.3 + cfg.door_closed_hold_s + T + 1e-9


def test_door_wait_logs_what_it_waits_for_and_times_out() -> None:
    cfg = ResetConfig(task="door_push", start_pose=REACH_START_POSE, door_timeout_s=5.0)
    motion = ResetMotion(cfg)
    motion.start(0.0)
    q = np.array(REACH_START_POSE)
    assert motion.step(0.0, q, np.zeros(7), None)[1] == "door"
    assert "door-angle estimate" in motion.waiting_for
    motion.step(1.0, q, np.zeros(7), 0.3, door_age_s=0.01)
    assert "door to be closed" in motion.waiting_for and "0.300 rad" in motion.waiting_for
    motion.step(2.0, q, np.zeros(7), 0.0, door_age_s=2.0)  # stale estimate does not count
    assert "door-angle estimate" in motion.waiting_for
    _, phase = motion.step(5.01, q, np.zeros(7), 0.3)
    assert phase == "failed" and "door_timeout_s = 5 s" in motion.error


def test_door_task_needs_a_start_pose() -> None:
    with pytest.raises(ValueError, match="start_pose must be set"):
        ResetMotion(ResetConfig(task="door_pull"))


@pytest.mark.parametrize("kw", [dict(task="open"), dict(start_pose=(0.0,) * 6), dict(max_velocity=0.0),
                                dict(door_timeout_s=-1.0), dict(start_pose=(float("nan"),) * 7)])
def test_bad_config_is_refused(kw: dict) -> None:
    with pytest.raises(ValueError):
        ResetConfig(**kw)  # type: ignore[arg-type]


def test_door_task_retreats_waits_for_the_door_there_then_drives_to_the_start() -> None:
    start = np.array(REACH_START_POSE)
    retreat = start + np.array([0.0, -0.3, 0.0, 0.2, 0.0, 0.0, 0.0])
    cfg = ResetConfig(task="door_pull", start_pose=tuple(start), retreat_pose=tuple(retreat), control_period_s=T,
                      door_closed_hold_s=0.2)
    motion = ResetMotion(cfg)
    motion.start(0.0)
    q, door, t = start + 0.2, 0.5, 0.0
    seen = []
    while motion.phase not in ("done", "failed") and t < 60.0:
        cmd, phase = motion.step(t, q, np.zeros(7), door, 0.0)
        if phase == "door":
            np.testing.assert_allclose(q, retreat, atol=cfg.position_tolerance)  # waits at the retreat
            door = 0.0  # closes while the arm is clear
        seen.append(phase)
        q = q + cmd * T
        t += T
    assert motion.phase == "done", motion.error
    assert "door" in seen and seen.index("door") < len(seen) - 1 - seen[::-1].index("moving")  # moves after it
    np.testing.assert_allclose(q, start, atol=cfg.position_tolerance)


def test_a_blocked_arm_eases_off_holds_still_and_tries_again() -> None:
    """A joint pressed against an obstacle that goes away only while the arm holds still (a door closer
    acts on a still arm): after stall_s without progress the motion eases off, holds still, and tries again;
    without the hold it keeps pushing until move_timeout_s."""
    target = np.array(REACH_START_POSE)
    wall = target[3] - 0.3  # joint 4 cannot pass this while the obstacle is there

    def run(hold: float) -> tuple[ResetMotion, list[np.ndarray], list[str]]:
        cfg = ResetConfig(task="reach", control_period_s=T, move_timeout_s=20.0, blocked_hold_s=hold)
        motion = ResetMotion(cfg)
        q = target.copy()
        q[3] -= 0.6
        motion.start(0.0)
        cmds, waits, still_since, there = [], [], None, True
        for k in range(int(30.0 / T)):
            now = k * T
            cmd, phase = motion.step(now, q, np.zeros(7), None, 0.0)
            if phase in ("done", "failed"):
                break
            cmds.append(cmd)
            waits.append(motion.waiting_for)
            still_since = (still_since if still_since is not None else now) if not cmd.any() else None
            there = there and not (still_since is not None and now - still_since >= 1.0)
            q = q + cmd * T
            if there:
                q[3] = min(q[3], wall)
        return motion, cmds, waits

    motion, cmds, waits = run(hold=4.0)
    assert motion.phase == "done", motion.error
    assert motion.blocked == 1
    i = next(k for k, w in enumerate(waits) if "blocked (joint 4" in w)
    assert cmds[i][3] < 0.0 and np.all(np.abs(cmds[i]) <= 0.2 + 1e-12)  # eases off: back, slowly
    assert not np.any(cmds[i + int(0.5 / T) + 1])  # then holds still
    # the wall is reached within about 1.1 s (0.25 s to 0.5 rad/s, 0.6 s for 0.3 rad), then stall_s passes
    assert motion.config.stall_s + 0.5 < i * T < motion.config.stall_s + 1.5
    motion, _, _ = run(hold=0.0)
    assert motion.phase == "failed" and motion.blocked == 0 and "joint 4" in motion.error


def test_the_retreat_blocked_by_the_open_door_leaf_recovers_in_the_embedded_sim() -> None:
    """The deadlock of a hardware-mode run (issue 11): the hook retreated into a pull door left open 0.32 rad
    and the joint servo kept pressing it against the leaf, so neither the arm nor the door closer (it acts on
    a still arm) could move; every reset failed. With the ease-off and hold the door closes and the reset
    completes."""
    pytest.importorskip("mujoco")
    stuck = np.array([-0.901, 0.169, 0.783, -1.561, -0.915, -0.822, 0.789])  # the run's arm, rad
    start = (-0.3516, 0.5335, 0.2876, -1.2891, -0.4371, -0.2408, 0.2805)  # the graph's door_pull start pose
    retreat = (-0.9010, 0.1694, 0.7830, -1.5613, -0.9152, -0.1571, 0.7890)  # ... and its retreat
    outcomes = {}
    for hold in (0.0, 4.0):
        motion = ResetMotion(ResetConfig(task="door_pull", start_pose=start, retreat_pose=retreat,
                                         blocked_hold_s=hold))
        outcomes[hold] = _reset_in_sim(_open_door_sim(stuck, 0.319), motion, 40.0)
    assert outcomes[0.0][0] == "failed" and outcomes[0.0][1] > 0.25  # the run's deadlock
    assert outcomes[4.0][0] == "done" and abs(outcomes[4.0][1]) < 0.02  # door closed, arm at the start


def test_a_blocked_way_home_is_left_back_along_the_way_the_arm_came() -> None:
    """Retrace (``when_blocked``): an obstacle between the arm and home that the episode went around. The
    straight leg stalls; the reset drives back along the recorded way and arrives; with ``retrace: off`` it
    holds and retries into the obstacle until the timeout."""
    home = np.zeros(7)

    def blocked(q: np.ndarray) -> bool:  # a box in joints 1-2, on the straight line from (1, 0) to (0, 0)
        return abs(q[0] - 0.5) < 0.2 and abs(q[1]) < 0.2

    episode = [np.array([0.0, y, 0, 0, 0, 0, 0]) for y in np.linspace(0.0, 0.5, 11)]
    episode += [np.array([x, 0.5, 0, 0, 0, 0, 0]) for x in np.linspace(0.0, 1.0, 21)]
    episode += [np.array([1.0, y, 0, 0, 0, 0, 0]) for y in np.linspace(0.5, 0.0, 11)]

    def run(mode: str) -> ResetMotion:
        motion = ResetMotion(ResetConfig(task="reach", start_pose=tuple(home), control_period_s=T, retrace=mode))
        for q in episode:
            motion.observe(q)
        q, t = episode[-1].copy(), 0.0
        motion.start(t)
        while motion.phase not in ("done", "failed") and t < 60.0:
            cmd, _ = motion.step(t, q, np.zeros(7))
            nxt = q + cmd * T
            q = q if blocked(nxt) else nxt
            t += T
        return motion

    ok = run("when_blocked")
    assert ok.phase == "done", ok.error
    assert ok.blocked == 1 and ok.retraced >= 20 and not ok.path  # back along (1,0.5) and (0,0.5), then home
    off = run("off")
    assert off.phase == "failed" and off.blocked >= 2 and "joint 1" in off.error


def test_retrace_keeps_a_way_without_loops_and_only_between_resets() -> None:
    cfg = ResetConfig(task="reach", start_pose=(0.0,) * 7, control_period_s=T, retrace_spacing=0.1)
    motion = ResetMotion(cfg)
    for x in (0.0, 0.05, 0.1, 0.2, 0.3, 0.2, 0.15, 0.4):  # out to 0.3, back to 0.15 (a loop), on to 0.4
        motion.observe(np.array([x, 0, 0, 0, 0, 0, 0]))
    assert [round(float(p[0]), 2) for p in motion.path] == [0.0, 0.1, 0.2, 0.4]
    motion.observe(np.array([np.nan] * 7))  # not a state
    assert len(motion.path) == 4
    motion.start(0.0)
    motion.observe(np.array([2.0, 0, 0, 0, 0, 0, 0]))  # the reset's own motion is not an episode's way
    assert len(motion.path) == 4
    with pytest.raises(ValueError):
        ResetConfig(retrace="sometimes")


def test_a_door_resting_on_the_arm_at_the_retreat_closes_once_the_arm_moves_clear() -> None:
    """The second stuck state of the hardware-mode runs (issue 11), found again by ``async_naf.bench.reset_soak``
    with a trained policy: a pull door that swung wider than the hook pulled it rests on the forearm at the
    retreat pose (0.76 rad); the closer presses it there and the reset waits for ever. With ``clear_pose`` the
    arm moves out of the leaf's sweep, the door closes and the reset completes."""
    pytest.importorskip("mujoco")
    from async_naf.run.graph import arm_reset_poses

    start, retreat, clear = arm_reset_poses("door_pull", {})
    assert clear
    outcomes = {}
    for clear_pose in ((), tuple(clear)):
        motion = ResetMotion(ResetConfig(task="door_pull", start_pose=tuple(start), retreat_pose=tuple(retreat),
                                         clear_pose=clear_pose, door_timeout_s=30.0))
        # the soak's stuck state: the arm at the retreat, the leaf resting on it
        outcomes[bool(clear_pose)] = (*_reset_in_sim(_open_door_sim(retreat, 0.76), motion, 90.0), motion.cleared)
    assert outcomes[False][0] == "failed" and outcomes[False][1] > 0.5  # the leaf still rests on the arm
    assert outcomes[True][0] == "done" and abs(outcomes[True][1]) < 0.03 and outcomes[True][2] == 1


def test_the_reset_soak_keeps_episodes_coming() -> None:
    """``async_naf.bench.reset_soak`` (the hardware backend's loop without ROS): seed 1's exploring policy left
    the arm, after one episode, where the straight way home takes the hook tip out of the guard's workspace
    box; the guard scaled every command toward zero and every reset failed. The guard now slides commands
    along the box's faces (checked alone, with ``retrace: off``), and a blocked leg retraces the way the arm
    came (the default). Ten episodes each, every reset succeeds."""
    pytest.importorskip("mujoco")
    from async_naf.bench.reset_soak import soak

    for overrides in ({"retrace": "off"}, {}):
        result = soak("door_pull", episodes=10, seed=1, reset_overrides=overrides)
        assert not result.stuck and result.episodes == 10, (overrides, result.errors)
        assert result.reset_failures == 0 and result.resets == 11
        assert max(abs(a) for a in result.door_at_reset_end) < 0.05  # closed at every episode's start


def test_an_estimate_past_closed_counts_as_closed() -> None:
    """A door slammed shut by the closer left the estimate at -0.079 rad with the door closed (the reset soak
    with a greedy hardware-trained policy): the reset waited for ever. A door stops at its frame, so an
    estimate past closed is the estimator's error (the collector zeroes it after the reset)."""
    pose = REACH_START_POSE
    motion = ResetMotion(ResetConfig(task="door_pull", start_pose=pose, control_period_s=T, door_closed_hold_s=0.5))
    _, phases, _ = _drive(motion, np.array(pose), 200, door=lambda t: -0.079)
    assert phases[-1] == "done" and phases.count("door") == int(round(0.5 / T))  # closed from the first period


def test_no_current_door_estimate_does_not_move_the_arm_to_the_clear_pose() -> None:
    """The clear pose is for a door an estimate says is open; without a current estimate the arm stays at the
    retreat (what it waits for is logged), and a current open estimate moves it after door_clear_after_s."""
    start = np.array(REACH_START_POSE)
    retreat, clear = start + 0.1, start - 0.1
    cfg = ResetConfig(task="door_pull", start_pose=tuple(start), retreat_pose=tuple(retreat),
                      clear_pose=tuple(clear), control_period_s=T, door_clear_after_s=2.0)
    for door, age, moved in ((None, 0.0, False), (0.5, 5.0, False), (0.5, 0.0, True)):
        motion = ResetMotion(cfg)
        motion.start(0.0)
        assert motion.step(0.0, retreat, np.zeros(7), door, age)[1] == "door"
        motion.step(2.5, retreat, np.zeros(7), door, age)
        assert (motion.cleared == 1) is moved and (motion.phase == "moving") is moved
