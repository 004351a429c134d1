"""ArmDoorEnv (gymnasium) over the sim, the task and the IMU door-angle estimator; the sim bench function."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from async_naf.run.env import ArmDoorEnv
from async_naf.sim import SimConfig
from async_naf.task.tasks import REACH_START_POSE


@pytest.mark.parametrize("name", ["reach", "door_pull", "door_push"])
def test_spaces_episode_length_and_determinism(name: str) -> None:
    env = ArmDoorEnv(name, seed=4)
    obs, info = env.reset(seed=4)
    assert env.observation_space.contains(obs)
    assert env.action_space.shape == (7,) and np.all(env.action_space.high == env.task.action_high)
    assert set(info) >= {"is_success", "door_state", "door_angle_estimate"}
    twin = ArmDoorEnv(name, seed=4)
    twin_obs, _ = twin.reset(seed=4)
    np.testing.assert_array_equal(obs, twin_obs)
    rng = np.random.default_rng(0)
    steps, truncated = 0, False
    while not truncated:
        action = rng.uniform(env.task.action_low, env.task.action_high)
        obs, reward, terminated, truncated, info = env.step(action)
        twin_obs, twin_reward, *_ = twin.step(action)
        steps += 1
        assert not terminated and np.isfinite(reward) and obs.dtype == np.float32
        assert np.all(np.isfinite(obs))
    np.testing.assert_array_equal(obs, twin_obs)
    assert reward == twin_reward
    assert steps == env.task.episode_steps


@pytest.mark.filterwarnings("ignore:.*Box observation space m..imum value is")  # unbounded obs: by design
def test_passes_gymnasium_env_checker() -> None:
    from gymnasium.utils.env_checker import check_env

    check_env(ArmDoorEnv("reach", seed=0), skip_render_check=True)


def test_door_angle_in_observation_is_the_imu_estimate() -> None:
    """Open the door with torques (arm held clear): the observed angle follows the truth through the
    estimator (not equal to it: noisy IMU) and equals info['door_angle_estimate']."""
    env = ArmDoorEnv("door_push", sim_config=SimConfig(task="door_push", start_positions=REACH_START_POSE), seed=2)
    env.reset()
    sl = env.task.obs_layout["door_angle"]
    sim = env.sim
    errors = []
    for k in range(60):
        sim.data.qfrc_applied[sim.compiled.handle_dof] = 2.0 if k < 20 else 0.0
        sim.data.qfrc_applied[sim.compiled.hinge_dof] = 8.0 if 5 <= k < 25 else 0.0
        obs, _, _, _, info = env.step(np.zeros(7))
        assert obs[sl][0] == pytest.approx(info["door_angle_estimate"], abs=1e-6)
        errors.append(obs[sl][0] - info["door_state"].hinge_angle)
    truth = info["door_state"].hinge_angle
    assert truth > 0.5 and info["is_success"]
    assert abs(errors[-1]) < 0.05
    assert np.max(np.abs(errors)) > 0.0  # an estimate, not a copy of the truth


def test_reach_succeeds_with_a_jacobian_controller() -> None:
    """The reach task is solvable within its episode at its action bound (sanity of targets and bounds)."""
    import pinocchio as pin

    env = ArmDoorEnv("reach", seed=11)
    kin = env.kinematics
    successes = 0
    for ep in range(5):
        obs, _ = env.reset(seed=100 + ep)
        for _ in range(env.task.episode_steps):
            q = obs[env.task.obs_layout["joint_pos"]].astype(float)
            err = obs[env.task.obs_layout["target_rel"]].astype(float)
            J = pin.computeFrameJacobian(kin.model, kin.data, q, kin._ee, pin.LOCAL_WORLD_ALIGNED)[:3]
            dq = J.T @ np.linalg.solve(J @ J.T + 1e-3 * np.eye(3), 3.0 * err)
            obs, _, _, _, info = env.step(np.clip(dq, env.task.action_low, env.task.action_high))
        successes += info["is_success"]
    assert successes == 5


def test_bench_function_reports_measured_figures() -> None:
    from async_naf.bench.sim import bench_sim_steps

    figures = bench_sim_steps(quick=True)
    assert figures["sim_steps_per_s"] > 0 and figures["env_steps_per_s"] > 0
    assert figures["sim_imu_samples_per_step"] == 5.0


def test_env_is_registered_style_constructible() -> None:
    env = ArmDoorEnv("door_pull", seed=0, randomize=False)
    assert isinstance(env, gym.Env)
    a, _ = env.reset()
    b, _ = env.reset()
    np.testing.assert_array_equal(a[:7], b[:7])  # randomize=False: same start pose each episode
