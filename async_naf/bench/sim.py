"""Speed of the embedded simulation without ROS, on one core (``async-naf bench --only sim_steps_per_s``).

- ``sim_steps_per_s``: ArmDoorSim control steps per second (one control period each: physics, latch,
  servo, IMU samples with the noise model), random joint-velocity commands, door_pull scene.
- ``env_steps_per_s``: ArmDoorEnv steps per second (the above plus the door-angle estimator fed with every
  IMU sample, pinocchio forward kinematics, the task's observation and reward).
"""
from __future__ import annotations

import os
import time

import numpy as np


def _rate(step, n: int, repeats: int) -> float:
    """Best of ``repeats`` runs of ``n`` calls of ``step``: calls per second (best = least disturbed by
    other processes on a shared machine)."""
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        best = max(best, n / (time.perf_counter() - t0))
    return best


def bench_sim_steps(quick: bool = False) -> dict[str, float]:
    """Measure ``sim_steps_per_s`` and ``env_steps_per_s`` (see module docstring)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from async_naf.run.env import ArmDoorEnv
    from async_naf.sim import ArmDoorSim, SimConfig

    n = 1000 if quick else 5000
    repeats = 2 if quick else 3
    rng = np.random.default_rng(0)

    sim = ArmDoorSim(SimConfig(task="door_pull"), seed=0)
    limits = sim.velocity_limits * 0.3
    actions = rng.uniform(-limits, limits, (256, 7))
    counter = {"i": 0}

    def sim_step() -> None:
        i = counter["i"] = counter["i"] + 1
        if i % 150 == 0:
            sim.reset()
        sim.step(actions[i % 256])

    sim_rate = _rate(sim_step, n, repeats)

    env = ArmDoorEnv("door_pull", seed=0)
    env.reset()
    env_actions = rng.uniform(env.task.action_low, env.task.action_high, (256, 7))

    def env_step() -> None:
        i = counter["i"] = counter["i"] + 1
        _, _, _, truncated, _ = env.step(env_actions[i % 256])
        if truncated:
            env.reset()

    env_rate = _rate(env_step, n // 2, repeats)
    return {
        "sim_steps_per_s": round(sim_rate, 1),
        "env_steps_per_s": round(env_rate, 1),
        "sim_imu_samples_per_step": float(sim.config.samples_per_step),
        "sim_physics_steps_per_step": float(sim.config.samples_per_step * sim.config.substeps_per_sample),
    }


if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(bench_sim_steps(quick=False)))
