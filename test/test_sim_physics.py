"""ArmDoorSim physics: the latch, the door stop, velocity servos and limits, time, reset, randomisation."""
from __future__ import annotations

import dataclasses

import mujoco
import numpy as np
import pytest

from async_naf.sim import ARM_JOINT_NAMES, ArmDoorSim, DoorConfig, SimConfig
from async_naf.task.tasks import REACH_START_POSE, handle_point

QUIET = {"enabled": False}  # perfect IMU: these tests are about mechanics


def _sim(task: str = "door_pull", arm_clear: bool = False, **kw) -> ArmDoorSim:
    """A sim with a perfect IMU; ``arm_clear``: the arm starts away from the door (not in the leaf's way)."""
    kw.setdefault("imu", QUIET)
    if arm_clear:
        kw["start_positions"] = REACH_START_POSE
    sim = ArmDoorSim(SimConfig(task=task, **kw), seed=3)
    sim.reset(randomize=False)
    return sim


def _run(sim: ArmDoorSim, steps: int, hinge_torque: float = 0.0, handle_torque: float = 0.0) -> float:
    """Hold the arm still, apply torques (N m) to the hinge (+ = opening) and handle; return max hinge angle."""
    peak = -np.inf
    for _ in range(steps):
        sim.data.qfrc_applied[sim.compiled.hinge_dof] = hinge_torque
        sim.data.qfrc_applied[sim.compiled.handle_dof] = handle_torque
        sim.step(np.zeros(7))
        peak = max(peak, sim.door_state().hinge_angle)
    return peak


@pytest.mark.parametrize("task", ["door_pull", "door_push"])
def test_latch_holds_door_with_handle_at_rest(task: str) -> None:
    sim = _sim(task, arm_clear=True)
    # 60 N m on the hinge = about 90 N at the handle, pulling (pull door) or pushing (push door)
    peak = _run(sim, 40, hinge_torque=60.0)
    assert sim.latched
    assert peak < sim.config.door.latch_play + 0.01
    assert sim.door_state().handle_angle < 0.05  # the spring holds the handle at rest


@pytest.mark.parametrize("task", ["door_pull", "door_push"])
def test_turning_handle_past_threshold_unlatches(task: str) -> None:
    sim = _sim(task, arm_clear=True)
    # too little turn: the spring (1.5 N m/rad, preloaded to -0.3 rad) balances 0.6 N m plus the lever's own
    # weight (0.25 kg at 0.06 m: 0.15 N m) at about 0.2 rad < 0.35 rad
    assert _run(sim, 20, hinge_torque=10.0, handle_torque=0.6) < sim.config.door.latch_play + 0.01
    assert sim.latched and 0.1 < sim.door_state().handle_angle < sim.config.door.latch_threshold
    # past the threshold: the bolt retracts and the same pull opens the door
    _run(sim, 10, hinge_torque=0.0, handle_torque=2.0)
    assert sim.door_state().handle_angle > sim.config.door.latch_threshold
    assert not sim.latched
    peak = _run(sim, 20, hinge_torque=10.0, handle_torque=2.0)
    assert peak > 0.35
    # handle released while open: the door stays free (no snap shut), the handle springs back
    angle = sim.door_state().hinge_angle
    _run(sim, 10, hinge_torque=0.0, handle_torque=0.0)
    assert not sim.latched and sim.door_state().handle_angle < 0.05
    assert sim.door_state().hinge_angle > angle - 0.05


def test_door_stop_and_frame() -> None:
    sim = _sim(arm_clear=True)
    _run(sim, 5, handle_torque=2.0)
    _run(sim, 80, hinge_torque=30.0, handle_torque=2.0)
    assert sim.door_state().hinge_angle == pytest.approx(sim.config.door.max_open, abs=0.03)
    # pushed shut with the handle released: relatches at the frame (0), cannot go negative
    _run(sim, 80, hinge_torque=-30.0)
    assert sim.latched
    assert -0.01 < sim.door_state().hinge_angle < 0.01
    assert _run(sim, 20, hinge_torque=60.0) < sim.config.door.latch_play + 0.01


def test_hook_arm_opens_door_only_after_turning_handle() -> None:
    """End to end with the arm: a scripted Cartesian controller pulls on the handle. Without pressing the
    lever down the latch holds; pressing it down with the hook first, the pull opens the door."""

    def run(press: bool) -> tuple[float, float]:
        sim = _sim("door_pull")
        goal = sim.door_goal()
        m, d = sim.model, sim.data
        scratch = mujoco.MjData(m)
        rot0 = d.site_xmat[sim.compiled.hook_site].reshape(3, 3).copy()
        jacp, jacr = np.zeros((3, m.nv)), np.zeros((3, m.nv))
        max_handle = 0.0
        for k in range(120):
            angle = sim.door_state().hinge_angle
            target = handle_point(goal, angle) + [0.0, 0.0, -0.035 if press else 0.0]
            v = 2.0 * (target - sim.ee_position())
            if k >= 40:  # pull along the door's swing
                r = target[:2] - goal[3:5]
                v[:2] += 0.15 * goal[5] * np.array([-r[1], r[0]]) / np.linalg.norm(r)
            scratch.qpos[:] = d.qpos
            mujoco.mj_kinematics(m, scratch)
            mujoco.mj_comPos(m, scratch)
            mujoco.mj_jacSite(m, scratch, jacp, jacr, sim.compiled.hook_site)
            J = np.vstack([jacp, jacr])[:, sim.compiled.arm_dof]
            rot = scratch.site_xmat[sim.compiled.hook_site].reshape(3, 3)
            w = sum(np.cross(rot[:, i], rot0[:, i]) for i in range(3))
            dq = J.T @ np.linalg.solve(J @ J.T + 1e-4 * np.eye(6), np.r_[v, w])
            sim.step(np.clip(dq, -0.5, 0.5))
            max_handle = max(max_handle, sim.door_state().handle_angle)
        return sim.door_state().hinge_angle, max_handle

    angle, handle = run(press=False)
    assert angle < 0.03 and handle < 0.35
    angle, handle = run(press=True)
    assert handle > 0.35 and angle > 0.35


def test_velocity_commands_are_tracked_and_clamped() -> None:
    sim = _sim("reach")
    q0 = sim.joint_positions.copy()
    cmd = np.array([0.3, -0.2, 0.25, 0.2, -0.3, 0.4, -0.4])
    for _ in range(20):
        sim.step(cmd)
    np.testing.assert_allclose(sim.joint_velocities, cmd, atol=0.02)
    # position advanced by about cmd * 1 s (less the servo's initial lag)
    np.testing.assert_allclose(sim.joint_positions - q0, cmd * 1.0, atol=0.08)
    # an over-limit command moves the joint at its velocity limit, not faster
    big = np.full(7, 10.0) * np.array([1, -1, 1, 1, -1, -1, -1])  # directions away from the limits
    for _ in range(6):
        sim.step(big)
    assert np.all(np.abs(sim.joint_velocities) <= sim.velocity_limits * 1.02)
    assert np.all(np.abs(sim.joint_velocities) > sim.velocity_limits * 0.9)


def test_joint_position_limits_hold() -> None:
    sim = _sim("reach")
    for _ in range(60):  # 3 s at full speed drives several joints into their limits
        sim.step(sim.velocity_limits)
    q = sim.joint_positions
    assert np.all(q <= sim.position_limits[:, 1] + 0.02)
    assert np.any(q > sim.position_limits[:, 1] - 0.05)


def test_bad_commands_raise_and_are_not_applied() -> None:
    sim = _sim("reach")
    t, q = sim.time_s, sim.joint_positions.copy()
    for bad in (np.zeros(6), np.zeros(8), np.array([0, 0, np.nan, 0, 0, 0, 0]), np.full(7, np.inf)):
        with pytest.raises(ValueError):
            sim.step(bad)
    assert sim.time_s == t
    np.testing.assert_array_equal(sim.joint_positions, q)


def test_time_monotonic_and_imu_stamps() -> None:
    sim = _sim("door_pull", imu={"rate_hz": 200.0, "enabled": False})
    assert sim.config.samples_per_step == 10
    stamps = []
    for i in range(30):
        if i == 15:
            sim.reset()
        stamps += [s.stamp_ns for s in sim.step(np.zeros(7))]
    assert len(stamps) == 300
    diffs = np.diff(stamps)
    assert np.all(diffs > 0)
    np.testing.assert_allclose(diffs, 5_000_000, atol=2)  # 200 Hz, also across the reset
    assert sim.time_s == pytest.approx(30 * 0.05)


def test_reset_restores_start_pose_and_closed_door() -> None:
    sim = ArmDoorSim(SimConfig(task="door_pull", imu=QUIET), seed=0)
    start = sim.joint_positions.copy()
    hook_start = sim.ee_position()
    goal = sim.door_goal()
    # the door start pose has the hook tip DOOR_START_LIFT above the hooking point, rod pointing at the door
    np.testing.assert_allclose(sim.ee_position(), goal[:3] + [0, 0, 0.06], atol=2e-3)
    for _ in range(10):  # lift the hook out of the leaf's way, then open the door
        sim.step(np.array([0.0, -0.3, 0.0, 0.0, 0.0, 0.0, 0.0]))
    assert sim.ee_position()[2] > hook_start[2] + 0.05
    _run(sim, 5, handle_torque=2.0)
    _run(sim, 10, hinge_torque=20.0, handle_torque=2.0)
    assert sim.door_state().hinge_angle > 0.05
    sim.reset(randomize=False)
    np.testing.assert_allclose(sim.joint_positions, start, atol=1e-12)
    assert sim.door_state() == (0.0, 0.0, 0.0) and sim.latched
    sim.reset(randomize=True)
    dev = np.abs(sim.joint_positions - start)
    assert np.all(dev <= sim.config.start_noise + 1e-12) and np.any(dev > 1e-4)


def test_start_positions_override_and_config_validation() -> None:
    q = (0.1, 0.3, 0.0, -1.2, 0.0, 0.8, 0.0)
    sim = ArmDoorSim(SimConfig(task="reach", start_positions=q, imu=QUIET), seed=0)
    np.testing.assert_allclose(sim.joint_positions, q)
    for bad in ({"control_period_s": 0.047}, {"task": "fly"}, {"start_positions": (0.0,) * 6},
                {"imu": {"rate_hz": 130.0}}, {"physics_timestep_s": 0.003}, {"start_noise": -1.0}):
        with pytest.raises(ValueError):
            SimConfig(**bad)
    for bad_door in ({"hinge_side": "up"}, {"width": -1.0}, {"handle_height": 1.0, "height": 1.0},
                     {"latch_threshold": 2.0}):
        with pytest.raises(ValueError):
            DoorConfig(**bad_door)


def test_randomization_hooks_change_the_world() -> None:
    base = SimConfig(task="door_pull", imu=QUIET)
    sim0 = ArmDoorSim(base, seed=1)
    rnd = SimConfig(task="door_pull", imu=QUIET, start_noise=0.0, randomization={
        "physics": True, "observation_noise": True, "action_delay_max_steps": 3, "backlash_max": 0.02,
        "door_geometry": True, "random_hinge_side": True})
    sim = ArmDoorSim(rnd, seed=1)
    widths, sides, delays = set(), set(), set()
    for _ in range(8):
        sim.reset(randomize=True)
        widths.add(round(sim.door_config.width, 4))
        sides.add(sim.hinge_left)
        delays.add(0 if sim._delay is None else len(sim._delay))
        assert sim.latched and sim.door_state().hinge_angle == 0.0
        # the start pose follows the (moved) handle
        np.testing.assert_allclose(sim.ee_position(), sim.door_goal()[:3] + [0, 0, 0.06], atol=0.01)
    assert len(widths) == 8 and sides == {True, False} and len(delays) > 1
    m0, m = sim0.model, sim.model
    assert not np.allclose(m.body_mass[1:], m0.body_mass[1:])
    assert m.geom_friction[0, 0] != m0.geom_friction[0, 0]
    # observation noise: measured joints differ from the true ones
    true_q = sim.data.qpos[sim.compiled.arm_qpos]
    assert 0 < np.abs(sim.joint_positions - true_q).max() < 0.01
    # the door still latches and opens with randomised physics (arm out of the way)
    sim = ArmDoorSim(dataclasses.replace(rnd, start_positions=REACH_START_POSE), seed=2)
    sim.reset(randomize=True)
    assert _run(sim, 20, hinge_torque=40.0) < sim.config.door.latch_play + 0.01
    _run(sim, 8, handle_torque=3.0)
    assert _run(sim, 20, hinge_torque=15.0, handle_torque=3.0) > 0.3


def test_action_delay_and_backlash() -> None:
    cfg = SimConfig(task="reach", imu=QUIET, randomization={"action_delay_max_steps": 2})
    sim = ArmDoorSim(cfg, seed=0)
    for _ in range(20):
        sim.reset(randomize=True)
        if sim._delay is not None and len(sim._delay) == 2:
            break
    cmd = np.zeros(7)
    cmd[0] = 0.5
    sim.step(cmd)
    sim.step(cmd)
    assert abs(sim.joint_velocities[0]) < 1e-3  # still the queued zeros
    sim.step(cmd)
    assert sim.joint_velocities[0] > 0.2

    cfg = SimConfig(task="reach", imu=QUIET, randomization={"backlash_max": 0.05})
    sim = ArmDoorSim(cfg, seed=0)
    sim.reset(randomize=True)
    b = sim._backlash
    assert np.all((b >= 0) & (b <= 0.05)) and np.ptp(b) > 0
    dt = sim.control_period_s
    # starting from the middle of the dead band, 10 periods of +0.2 rad/s (0.1 rad) lose b/2 of travel ...
    forward = sum(sim._apply_backlash(np.full(7, 0.2)) * dt for _ in range(10))
    np.testing.assert_allclose(forward, 0.1 - b / 2, atol=1e-12)
    # ... and the reversal loses the whole dead band b
    backward = sum(sim._apply_backlash(np.full(7, -0.2)) * dt for _ in range(10))
    np.testing.assert_allclose(backward, -(0.1 - b), atol=1e-12)
    assert len(ARM_JOINT_NAMES) == 7


def test_hardware_mode_door_closer_swings_the_door_shut_and_leaves_other_forces_alone() -> None:
    """The door closer (hardware mode) closes an open door physically and re-latches it; without a closer
    configured, a force applied to the hinge by someone else is never overwritten."""
    import numpy as np

    from async_naf.sim import ArmDoorSim, SimConfig

    sim = ArmDoorSim(SimConfig(task="reach", hardware=True, door_closer_torque=2.0), seed=0)
    sim.reset(randomize=False)
    d = sim.data
    hq, lq = sim.compiled.hinge_qpos, sim.compiled.handle_qpos
    sim._latched = False  # as _update_latch does when the handle is turned: the door free up to its stop
    sim.model.jnt_range[sim.compiled.hinge_joint, 1] = sim._max_open
    d.qpos[hq] = 0.6  # the door open 0.6 rad, handle at rest
    d.qpos[lq] = 0.0
    sim.step(np.zeros(7))
    assert sim.door_state().hinge_angle > 0.5 and not sim.latched  # no closing while door_closing is False
    sim.door_closing = True
    for _ in range(100):  # 5 s
        sim.step(np.zeros(7))
    assert abs(sim.door_state().hinge_angle) <= sim.config.door.latch_play and sim.latched
    # no closer: an external hinge force stays
    other = ArmDoorSim(SimConfig(task="reach"), seed=0)
    other.reset(randomize=False)
    other.data.qfrc_applied[other.compiled.hinge_dof] = 1.5
    other.step(np.zeros(7))
    assert other.data.qfrc_applied[other.compiled.hinge_dof] == 1.5
