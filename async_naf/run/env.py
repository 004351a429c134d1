"""ArmDoorEnv: a gymnasium environment over :class:`ArmDoorSim` and a task, usable without ROS.

The observation is the task's (``async_naf.task.tasks``): joint angles and velocities (as measured), the hook-tip
position from pinocchio forward kinematics of the measured joint angles, and, for door tasks, the door
angle and velocity from the IMU door-angle estimator fed with the simulated IMU samples - never the
simulator's ground truth, which only feeds the reward and the success flag (``info``).

    env = ArmDoorEnv("door_pull", seed=0)
    obs, info = env.reset()
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())

Actions are joint velocities in rad/s within ``task.action_low/high``. Episodes end by time limit only
(``truncated`` after ``task.episode_steps``; ``terminated`` is always False: success is not terminal).
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from async_naf.sensing.door_angle import DoorAngleConfig, DoorAngleEstimator
from async_naf.sim.arm_door_sim import ArmDoorSim
from async_naf.sim.config import SimConfig
from async_naf.task.kinematics import ArmKinematics
from async_naf.task.tasks import EpisodeOutcome, Task, TaskConfig, TaskState, make_task


class ArmDoorEnv(gym.Env):
    """Gymnasium environment: one task on the embedded arm + door simulation.

    Args:
        task: task name ('reach', 'door_pull', 'door_push') or a :class:`Task`.
        sim_config: simulation settings; its ``task`` field is set to the task's name.
        task_config: task settings (default: the task's defaults).
        estimator_config: door-angle estimator settings; default: hinge axis = the IMU's z axis (how the
            simulated IMU is mounted) and the door stop from the sim config.
        seed: seeds the simulation and the goal sampling (``reset(seed=...)`` re-seeds the goals).
        randomize: ``reset()`` randomises the start pose and the enabled domain-randomisation hooks.
    """

    metadata = {"render_modes": []}  # noqa: RUF012 - gymnasium.Env declares it a plain class attribute

    def __init__(
        self,
        task: str | Task = "door_pull",
        sim_config: SimConfig | None = None,
        task_config: TaskConfig | None = None,
        estimator_config: DoorAngleConfig | None = None,
        seed: int = 0,
        randomize: bool = True,
    ) -> None:
        super().__init__()
        self.task = task if isinstance(task, Task) else make_task(task, task_config)
        base = sim_config or SimConfig()
        if base.task != self.task.name:
            import dataclasses

            base = dataclasses.replace(base, task=self.task.name)
        self.sim = ArmDoorSim(base, seed=seed)
        self._kin_urdf = self.sim.compiled.urdf_xml
        self.kinematics = ArmKinematics(self._kin_urdf)
        self.estimator_config = estimator_config or DoorAngleConfig(
            hinge_axis=(0.0, 0.0, 1.0), stop_angle_rad=base.door.max_open
        )
        self.estimator = DoorAngleEstimator(self.estimator_config)
        self.randomize = randomize
        self.observation_space: gym.spaces.Box = gym.spaces.Box(-np.inf, np.inf, (self.task.obs_dim,), np.float32)
        self.action_space: gym.spaces.Box = gym.spaces.Box(self.task.action_low, self.task.action_high,
                                                           dtype=np.float32)
        self._goal_rng = np.random.default_rng(seed)
        self.goal = np.zeros(self.task.goal_dim)
        self._steps = 0
        self._door_angle = 0.0
        self._door_velocity = 0.0
        self.outcome = EpisodeOutcome(self.task)

    # ------------------------------------------------------------------------------------------ api
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start an episode: sim reset (door closed), estimator zeroed, new goal. Returns (obs, info).

        With ``seed`` everything is re-seeded (same seed, same episode), the simulated IMU is powered on
        again as a new part and the door-angle estimator starts uncalibrated. Without it the episode
        continues the same robot session: the estimator keeps its learnt gyro bias (what the door_angle
        node does between the episodes of a training run).
        """
        super().reset(seed=seed)
        if seed is not None:  # re-seed everything: same seed, same episode
            self._goal_rng = np.random.default_rng(seed)
            self.sim.seed(seed)
        self.sim.reset(randomize=self.randomize)
        if self.sim.compiled.urdf_xml is not self._kin_urdf:  # door geometry randomisation rebuilt it
            self._kin_urdf = self.sim.compiled.urdf_xml
            self.kinematics = ArmKinematics(self._kin_urdf)
        self.goal = self.sim.door_goal() if self.task.is_door else self.task.sample_goal(self._goal_rng)
        if seed is not None:  # a new IMU part (sim.seed powered it on): its calibration starts over
            self.estimator = DoorAngleEstimator(self.estimator_config)
        # "the door is closed now", as the collector tells the door_angle node after each reset; the
        # estimator keeps the gyro bias it learnt on this IMU, like the node between episodes
        self.estimator.zero()
        self._door_angle = 0.0
        self._door_velocity = 0.0
        self._steps = 0
        self.outcome = EpisodeOutcome(self.task)
        state = self.task_state()
        return self.task.observation(state, self.goal), self._info(state)

    def step(self, action: np.ndarray):
        """Apply ``action`` (7,) rad/s (clipped to the task's bounds) for one control period."""
        action = np.clip(np.asarray(action, dtype=np.float64), self.task.action_low, self.task.action_high)
        samples = self.sim.step(action)
        for sample in samples:
            est = self.estimator.update(sample)
            if est is not None:
                self._door_angle, self._door_velocity = float(est.angle), float(est.velocity)
        self._steps += 1
        state = self.task_state()
        truth = self.sim.door_state()
        reward = self.task.reward(state, action, self.goal, truth)
        self.outcome.step(state, self.goal, truth)
        info = self._info(state)
        truncated = self._steps >= self.task.episode_steps
        return self.task.observation(state, self.goal), float(reward), False, truncated, info

    # -------------------------------------------------------------------------------------- helpers
    def task_state(self) -> TaskState:
        """What the robot knows now: measured joints, FK hook tip, estimated door angle."""
        q = self.sim.joint_positions
        return TaskState(q, self.sim.joint_velocities, self.kinematics.ee_position(q),
                         self._door_angle, self._door_velocity)

    def _info(self, state: TaskState) -> dict[str, Any]:
        truth = self.sim.door_state()
        return {
            "is_success": bool(self.task.success(state, self.goal, truth)),
            # the strict criterion over the episode so far (door >= open_angle over the last open_hold_steps)
            "is_strict_success": self.outcome.strict,
            "door_state": truth,
            "door_angle_estimate": self._door_angle,
            "distance": self.task.distance(state, self.goal, truth),
            "latched": self.sim.latched,
        }
