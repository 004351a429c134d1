"""The policy node's core (ROS-free): observation -> mu(x) + exploration noise -> clamped joint velocities.

Used by ``nodes/policy_node.py``; also usable on its own (a script driving an arm through another API)::

    runner = PolicyRunner(PolicyNodeConfig(task="reach"))
    runner.load_weights(weights_bytes)             # from the trainer (ValueError if malformed/mismatched)
    state = runner.state(q, qd, door_angle, door_velocity)
    obs, action = runner.act(state, goal, explore=True)

Units: joint angles rad, joint velocities and actions rad/s, positions m (arm base frame).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from async_naf.acting.config import PolicyNodeConfig
from async_naf.common.noise import make_noise


class PolicyRunner:
    """Observation building (shared task code), the greedy policy, noise and command limits.

    Args:
        config: the PolicyNodeConfig.
        kinematics: an object with ``ee_position(q) -> (3,)`` and ``velocity_limits`` (default: the URDF's
            :class:`async_naf.task.kinematics.ArmKinematics`).

    Attributes:
        task: the task (observation, goal size).
        policy: the current :class:`async_naf.learning.agents.Policy`, or None before the first weights.
        limits: (7,) velocity limits, rad/s: commands are clamped to [-limits, limits] and to the policy's
            action bounds.
    """

    def __init__(self, config: PolicyNodeConfig, kinematics: Any = None) -> None:
        from async_naf.task.tasks import make_task

        self.config = config
        self.task = make_task(config.task)
        if kinematics is None:
            from async_naf.task.kinematics import ArmKinematics

            kinematics = ArmKinematics()
        self.kinematics = kinematics
        if config.velocity_limits:
            limits = np.asarray(config.velocity_limits, dtype=np.float64)
        else:
            limits = np.asarray(kinematics.velocity_limits, dtype=np.float64)
        if limits.shape != (self.task.act_dim,) or not np.all(limits > 0):
            raise ValueError(f"velocity limits must be {self.task.act_dim} values > 0, got {limits}")
        self.limits = limits
        self.policy: Any = None
        self._low = np.maximum(-limits, np.asarray(self.task.action_low, np.float64))
        self._high = np.minimum(limits, np.asarray(self.task.action_high, np.float64))
        noise_cfg = config.noise
        self.noise = make_noise(noise_cfg, self.task.act_dim, config.seed)
        self._noise_cfg = noise_cfg

    # ------------------------------------------------------------------------------------------ weights
    def load_weights(self, data: bytes) -> Any:
        """Replace the policy with new weights; returns the new Policy.

        Raises:
            ValueError: malformed weights, or dimensions that do not match the task (the old policy stays).
        """
        from async_naf.wire.weights import Policy

        policy = Policy.from_bytes(data)
        if (policy.obs_dim, policy.act_dim) != (self.task.obs_dim, self.task.act_dim):
            raise ValueError(f"weights for obs_dim={policy.obs_dim}, act_dim={policy.act_dim}; task "
                             f"{self.task.name!r} needs ({self.task.obs_dim}, {self.task.act_dim})")
        self.policy = policy
        self._low = np.maximum(-self.limits, np.asarray(policy.action_low, np.float64))
        self._high = np.minimum(self.limits, np.asarray(policy.action_high, np.float64))
        return policy

    # ------------------------------------------------------------------------------------------ acting
    def state(self, joint_pos: np.ndarray, joint_vel: np.ndarray, door_angle: float = 0.0,
              door_velocity: float = 0.0) -> Any:
        """A TaskState from joint angles (7,) rad, velocities (7,) rad/s and the estimated door state."""
        from async_naf.task.tasks import TaskState

        q = np.asarray(joint_pos, dtype=np.float64)
        return TaskState(q, np.asarray(joint_vel, dtype=np.float64), self.kinematics.ee_position(q),
                         float(door_angle), float(door_velocity))

    def act(self, state: Any, goal: np.ndarray, explore: bool, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """(observation (obs_dim,) float32, command (7,) float64 rad/s).

        Greedy mu(x) (zero before the first weights), plus ``scale`` times the exploration noise when
        ``explore``; clamped to the velocity limits and the policy's action bounds.

        Raises:
            ValueError: the observation is not finite (e.g. NaN joint states): nothing is commanded.
        """
        obs = self.task.observation(state, goal)
        if not np.isfinite(obs).all():
            raise ValueError("observation holds NaN/Inf")
        if self.policy is not None:
            action = np.asarray(self.policy.act(obs), dtype=np.float64)
        else:
            action = 0.5 * (self._low + self._high)
        if explore and scale > 0.0:
            action = action + scale * self.noise.sample()
        # action is this call's own array (converted, a sum or built here): clipped in place
        np.maximum(action, self._low, out=action)
        return obs, np.minimum(action, self._high, out=action)

    def reset_noise(self) -> None:
        """Start a new noise trajectory (OU state back to 0); call at the start of each episode."""
        self.noise.reset()

    def set_noise_config(self, config: Any) -> None:
        """Use new noise settings (keeps the annealing step count)."""
        steps = self.noise.step_count
        self.noise = make_noise(config, self.task.act_dim, self.config.seed + steps)
        self.noise.step_count = steps
        self.config = replace(self.config, noise=config)
