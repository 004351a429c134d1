"""ArmDoorSim: the embedded MuJoCo arm + latched door, stepped at the control rate with joint-velocity commands.

It behaves like a ros2_control robot with a forward velocity controller: ``step(cmd)`` holds seven joint
velocities (rad/s, clamped to the URDF velocity limits like the hardware) for one control period and returns
the door-leaf IMU samples produced meanwhile. Ground truth (door hinge and handle angles) is available from
:meth:`ArmDoorSim.door_state` for rewards and evaluation only.

Time: ``time_s`` is simulated time since construction; it never goes back (a reset keeps the clock running),
so IMU stamps and /clock stay monotonic across episodes.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import NamedTuple

import mujoco
import numpy as np

from async_naf.sim.config import DoorConfig, SimConfig
from async_naf.sim.imu_noise import ImuNoiseModel
from async_naf.sim.model import ARM_JOINT_NAMES, CompiledModel, build_model
from async_naf.task.latch import door_closer_torque, hinge_upper_limit, latch_next
from async_naf.task.tasks import door_goal, start_pose_target
from async_naf.wire.imu import ImuSample

# how far the servo's integrated position target may lead the measured joint angle, rad: a blocked joint
# then pushes with at most kp * this (and never more than its torque limit), like a following-error limit
MAX_SERVO_LEAD = 0.1
# constraint time constant of the hinge limits (frame, door stop, latch bolt), s: a stiff strike plate
HINGE_LIMIT_SOLREF = (0.01, 1.0)


class DoorState(NamedTuple):
    """Ground-truth door state.

    Attributes:
        hinge_angle: door opening angle, rad (0 = closed, + = opening).
        hinge_velocity: rad/s (+ = opening).
        handle_angle: lever angle, rad (0 = at rest, + = turned down toward unlatching).
    """

    hinge_angle: float
    hinge_velocity: float
    handle_angle: float


class ArmDoorSim:
    """The 7-DoF hook arm and the latched door (see module docstring).

    Args:
        config: simulation settings (default :class:`SimConfig`).
        seed: seeds every random draw (start pose, IMU errors, randomisation).
    """

    def __init__(self, config: SimConfig | None = None, seed: int = 0) -> None:
        self.config = config or SimConfig()
        self._time = 0.0
        self.seed(seed)
        self.control_period_s = self.config.control_period_s
        self._samples = self.config.samples_per_step
        self._substeps = self.config.substeps_per_sample
        self._door = self.config.door
        self._hinge_left = self.config.hinge_left
        self._start_cache: dict[tuple, np.ndarray] = {}
        self._kin_dirty = True  # until reset() runs mj_forward
        self._load(build_model(self.config))
        self.reset(randomize=False)

    def seed(self, seed: int) -> None:
        """Re-seed every random draw and power the IMU on again (new part errors, walks restarted, warm-up
        from now). The clock keeps running."""
        seeds = np.random.SeedSequence(seed).spawn(3)
        self._rng = np.random.default_rng(seeds[0])
        self._obs_rng = np.random.default_rng(seeds[1])
        self.imu_noise = ImuNoiseModel(self.config.imu, np.random.default_rng(seeds[2]))
        self._imu_power_on_s = self._time if not hasattr(self, "data") else float(self.data.time)

    # ------------------------------------------------------------------------------------------ model
    def _load(self, compiled: CompiledModel) -> None:
        self.compiled = compiled
        self.model = m = compiled.model
        self.data = mujoco.MjData(m)
        self.data.time = self._time
        self.velocity_limits = compiled.velocity_limits.copy()
        self.position_limits = compiled.position_limits.copy()
        self._arm_q = compiled.arm_qpos
        self._arm_v = compiled.arm_dof
        self._hq, self._hv = compiled.hinge_qpos, compiled.hinge_dof
        self._lq = compiled.handle_qpos
        self._hinge_jnt = compiled.hinge_joint
        m.jnt_solref[self._hinge_jnt] = HINGE_LIMIT_SOLREF
        self._max_open = float(m.jnt_range[self._hinge_jnt, 1])
        self._g = slice(compiled.gyro_adr, compiled.gyro_adr + 3)
        self._a = slice(compiled.accel_adr, compiled.accel_adr + 3)
        # nominal values that physics randomisation scales
        self._nominal = {
            "geom_friction": m.geom_friction.copy(),
            "dof_damping": m.dof_damping.copy(),
            "body_mass": m.body_mass.copy(),
            "body_inertia": m.body_inertia.copy(),
            "dof_frictionloss": m.dof_frictionloss.copy(),
            "jnt_stiffness": m.jnt_stiffness.copy(),
        }

    # --------------------------------------------------------------------------------- properties
    @property
    def time_s(self) -> float:
        """Simulated time since construction, s (monotonic across resets)."""
        return float(self.data.time)

    @property
    def joint_positions(self) -> np.ndarray:
        """Measured arm joint angles (7,), rad, ARM_JOINT_NAMES order (encoder noise if randomised)."""
        return self.data.qpos[self._arm_q] + self._q_noise

    @property
    def joint_velocities(self) -> np.ndarray:
        """Measured arm joint velocities (7,), rad/s (noise if randomised)."""
        return self.data.qvel[self._arm_v] + self._v_noise

    @property
    def latched(self) -> bool:
        """True while the latch bolt holds the door (ground truth)."""
        return self._latched

    def ee_position(self) -> np.ndarray:
        """Hook-tip position (3,) in the base frame, m (true kinematics of the current state)."""
        if self._kin_dirty:
            mujoco.mj_kinematics(self.model, self.data)
            self._kin_dirty = False
        return self.data.site_xpos[self.compiled.hook_site].copy()

    def door_state(self) -> DoorState:
        """Ground-truth door state (for rewards, success checks and evaluation only)."""
        d = self.data
        return DoorState(float(d.qpos[self._hq]), float(d.qvel[self._hv]), float(d.qpos[self._lq]))

    def door_goal(self) -> np.ndarray:
        """The door-task goal vector of the current door (see :func:`async_naf.task.tasks.door_goal`)."""
        return door_goal(self._door, self._hinge_left, self.config.door_opening)

    # -------------------------------------------------------------------------------------- reset
    def reset(self, randomize: bool = True) -> None:
        """Arm to the start pose (noisy when ``randomize``), door closed and latched, handle at rest.

        With ``randomize`` the enabled domain-randomisation hooks are also re-drawn.
        """
        rc = self.config.randomization
        if randomize and rc.door_geometry:
            self._randomize_door_geometry()
        if randomize and rc.physics:
            self._randomize_physics()
        m, d = self.model, self.data
        t = d.time
        mujoco.mj_resetData(m, d)  # also zeroes qfrc_applied: the closer's share with it
        self._closer_force = 0.0
        d.time = t
        q = self._start_pose()
        if randomize and self.config.start_noise > 0.0:
            q = q + self._rng.uniform(-self.config.start_noise, self.config.start_noise, 7)
        q = np.clip(q, self.position_limits[:, 0], self.position_limits[:, 1])
        d.qpos[self._arm_q] = q
        d.act[:] = q
        self._latched = True
        m.jnt_range[self._hinge_jnt, 1] = self._door.latch_play  # the door in use, as _update_latch
        mujoco.mj_forward(m, d)
        self._kin_dirty = False
        delay = int(self._rng.integers(0, rc.action_delay_max_steps + 1)) if randomize else 0
        self._delay = collections.deque([np.zeros(7)] * delay) if delay else None
        self._backlash = self._rng.uniform(0.0, rc.backlash_max, 7) if randomize and rc.backlash_max > 0 else None
        self._slack = np.zeros(7)
        self._q_noise = np.zeros(7)
        self._v_noise = np.zeros(7)
        self._refresh_observation_noise()
        self.steps_since_reset = 0

    def start_pose(self) -> np.ndarray:
        """The episode's start pose (7,) rad without noise: ``start_positions`` or the inverse kinematics of
        the task's start pose (what a ros2_control arm's reset node drives to)."""
        return self._start_pose()

    def _start_pose(self) -> np.ndarray:
        if self.config.start_positions:
            return np.array(self.config.start_positions, dtype=float)
        target = start_pose_target(self.config.task, self.door_goal())
        if target is None:  # a fixed joint-space pose
            from async_naf.task.tasks import REACH_START_POSE

            return np.array(REACH_START_POSE, dtype=float)
        key = tuple(np.round(target[0], 6)) + (self.config.task,)
        if key not in self._start_cache:
            self._start_cache[key] = self.solve_ik(target[0], target[1])
        return self._start_cache[key].copy()

    def solve_ik(self, position: np.ndarray, rotation: np.ndarray, q0: np.ndarray | None = None,
                 iterations: int = 300) -> np.ndarray:
        """Damped least-squares IK for the hook tip (position m, 3x3 rotation of the hook frame in the base
        frame) with a weak pull toward a comfortable posture; returns 7 joint angles (rad).

        Raises:
            ValueError: if the pose cannot be reached within 5 mm / 0.05 rad.
        """
        from async_naf.task.tasks import IK_SEED_POSE

        m = self.model
        d = mujoco.MjData(m)
        q_ref = np.array(IK_SEED_POSE if q0 is None else q0, dtype=float)
        q = q_ref.copy()
        lo, hi = self.position_limits[:, 0], self.position_limits[:, 1]
        site = self.compiled.hook_site
        jacp = np.zeros((3, m.nv))
        jacr = np.zeros((3, m.nv))
        err = np.zeros(6)
        for _ in range(iterations):
            d.qpos[self._arm_q] = q
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            R = d.site_xmat[site].reshape(3, 3)
            err[:3] = position - d.site_xpos[site]
            err[3:] = 0.5 * sum(np.cross(R[:, i], rotation[:, i]) for i in range(3))
            if np.linalg.norm(err[:3]) < 1e-4 and np.linalg.norm(err[3:]) < 1e-3:
                break
            mujoco.mj_jacSite(m, d, jacp, jacr, site)
            J = np.vstack([jacp[:, self._arm_v], jacr[:, self._arm_v]])
            JJt = J @ J.T + 1e-4 * np.eye(6)
            dq = J.T @ np.linalg.solve(JJt, err)
            null = np.eye(7) - J.T @ np.linalg.solve(JJt, J)
            dq += null @ (0.05 * (q_ref - q))
            q = np.clip(q + np.clip(dq, -0.2, 0.2), lo, hi)
        if np.linalg.norm(err[:3]) > 5e-3 or np.linalg.norm(err[3:]) > 0.05:
            raise ValueError(f"IK did not reach the start pose {position} (error {np.linalg.norm(err[:3]):.4f} m)")
        return q

    # ---------------------------------------------------------------------------------------- step
    def step(self, cmd: np.ndarray) -> list[ImuSample]:
        """Apply joint velocities ``cmd`` (7,) rad/s for one control period.

        The command is clamped to the velocity limits (like the hardware), then passes the randomised
        action delay and backlash if enabled.

        Returns:
            the door-leaf IMU samples generated during the period (``samples_per_step`` of them, in order).

        Raises:
            ValueError: if ``cmd`` is not 7 finite numbers (nothing is applied).
        """
        cmd = np.asarray(cmd, dtype=float)
        if cmd.shape != (7,) or not np.isfinite(cmd).all():
            raise ValueError(f"command must be 7 finite joint velocities (rad/s), got shape {cmd.shape}")
        cmd = np.clip(cmd, -self.velocity_limits, self.velocity_limits)
        if self._delay is not None:
            self._delay.append(cmd)
            cmd = self._delay.popleft()
        if self._backlash is not None:
            cmd = self._apply_backlash(cmd)
        m, d = self.model, self.data
        d.ctrl[:] = cmd
        n, sub = self._samples, self._substeps
        gyro = np.empty((n, 3))
        accel = np.empty((n, 3))
        stamps = np.empty(n)
        dt = m.opt.timestep
        lead = MAX_SERVO_LEAD
        arm_q = self._arm_q
        for k in range(n):
            self._update_latch()
            self._apply_door_closer()
            mujoco.mj_step(m, d, nstep=sub)
            # sensordata holds the state at the start of the last physics step
            gyro[k] = d.sensordata[self._g]
            accel[k] = d.sensordata[self._a]
            stamps[k] = d.time - dt
            q = d.qpos[arm_q]
            np.clip(d.act, q - lead, q + lead, out=d.act)
        self._kin_dirty = True
        self.steps_since_reset += 1
        self._refresh_observation_noise()
        g, a = self.imu_noise.apply(stamps - self._imu_power_on_s, gyro, accel)
        gcov, acov = self.imu_noise.gyro_cov, self.imu_noise.accel_cov
        return [ImuSample(int(round(stamps[k] * 1e9)), g[k], a[k], gcov, acov) for k in range(n)]

    door_closing = False  # set by the sim node's hardware mode: the door closer acts while True
    _closer_force = 0.0  # the closer's share of qfrc_applied on the hinge, N m

    def _apply_door_closer(self) -> None:
        """Hardware mode's door closer: a constant closing torque (``config.door_closer_torque``, N m) on the
        hinge while ``door_closing`` and the door is open beyond half the latch play; the door swings shut
        physically, so the door IMU sees it close (a teleported door would leave the estimator open)."""
        torque = self.config.door_closer_torque
        if torque <= 0.0:
            return  # no closer: qfrc_applied stays the caller's (tests push the door through it)
        force = door_closer_torque(torque, self.door_closing, float(self.data.qpos[self._hq]), self._door.latch_play)
        # add only the closer's own change: a force someone else applies to the hinge is kept
        self.data.qfrc_applied[self._hv] += force - self._closer_force
        self._closer_force = force

    def _update_latch(self) -> None:
        """The latch: a bolt on the leaf that engages the strike plate in the frame.

        Engaged, it limits the hinge to ``door.latch_play`` (the bolt's clearance): pulling or pushing the
        door then loads the hinge's limit constraint, which holds. Turning the handle past
        ``door.latch_threshold`` retracts the bolt: the hinge's upper limit becomes the door stop. The bolt
        re-engages only once the handle is back below the threshold while the door is within the play
        (i.e. closed); an open door never snaps shut. Called before every IMU sample period of physics.
        """
        d = self.data
        latched = latch_next(self._latched, float(d.qpos[self._lq]), float(d.qpos[self._hq]),
                             self._door.latch_threshold, self._door.latch_play)
        if latched != self._latched:  # the rule Gazebo's latch system applies too (async_naf.task.latch)
            self._latched = latched
            self.model.jnt_range[self._hinge_jnt, 1] = hinge_upper_limit(latched, self._door.latch_play,
                                                                         self._max_open)

    def _apply_backlash(self, cmd: np.ndarray) -> np.ndarray:
        """Gear backlash: motion is lost while the commanded travel crosses the dead band on a reversal."""
        assert self._backlash is not None  # called only when reset() drew a backlash
        half = 0.5 * self._backlash
        travel = cmd * self.control_period_s
        new_slack = np.clip(self._slack + travel, -half, half)
        out = (travel - (new_slack - self._slack)) / self.control_period_s
        self._slack = new_slack
        return out

    def _refresh_observation_noise(self) -> None:
        rc = self.config.randomization
        if rc.observation_noise:
            self._q_noise = self._obs_rng.normal(0.0, rc.joint_position_noise_std, 7)
            self._v_noise = self._obs_rng.normal(0.0, rc.joint_velocity_noise_std, 7)

    # ---------------------------------------------------------------------------- randomisation
    def _randomize_physics(self) -> None:
        rc, m, nom, rng = self.config.randomization, self.model, self._nominal, self._rng
        m.geom_friction[:] = nom["geom_friction"] * rng.uniform(*rc.friction_scale)
        m.dof_damping[:] = nom["dof_damping"]
        m.dof_damping[self._arm_v] = nom["dof_damping"][self._arm_v] * rng.uniform(*rc.damping_scale, 7)
        scale = rng.uniform(*rc.mass_scale, m.nbody)
        m.body_mass[:] = nom["body_mass"] * scale
        m.body_inertia[:] = nom["body_inertia"] * scale[:, None]
        m.dof_frictionloss[:] = nom["dof_frictionloss"]
        m.dof_frictionloss[self._hv] = nom["dof_frictionloss"][self._hv] * rng.uniform(*rc.hinge_friction_scale)
        handle_jnt = int(np.flatnonzero(m.jnt_qposadr == self._lq)[0])
        m.jnt_stiffness[:] = nom["jnt_stiffness"]
        m.jnt_stiffness[handle_jnt] = nom["jnt_stiffness"][handle_jnt] * rng.uniform(*rc.handle_spring_scale)
        mujoco.mj_setConst(m, self.data)

    def _randomize_door_geometry(self) -> None:
        rc, rng = self.config.randomization, self._rng
        door = dataclasses.replace(
            self.config.door,
            width=float(rng.uniform(*rc.door_width_range)),
            height=float(rng.uniform(*rc.door_height_range)),
            handle_height=float(rng.uniform(*rc.handle_height_range)),
        )
        hinge_left = bool(rng.integers(0, 2)) if rc.random_hinge_side else self.config.hinge_left
        self._door, self._hinge_left = door, hinge_left
        self._time = float(self.data.time)
        self._load(build_model(self.config, door=door, hinge_left=hinge_left))

    @property
    def door_config(self) -> DoorConfig:
        """The door geometry in use (differs from config.door under geometry randomisation)."""
        return self._door

    @property
    def hinge_left(self) -> bool:
        """Hinge side in use."""
        return self._hinge_left


__all__ = ["ARM_JOINT_NAMES", "ArmDoorSim", "DoorState"]
