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
