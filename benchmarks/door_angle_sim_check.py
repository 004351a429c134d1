"""Door-angle estimator on the embedded MuJoCo simulation's IMU (async_naf.sim), against its ground truth.

Episodes as the learning environment runs them (sim.reset(): door closed; ~7.5 s at a 0.05 s control
period), but with the door driven directly: its latch is released by turning the handle joint, and a PD
torque on the hinge (MuJoCo ``qfrc_applied``) follows a random profile: closed rest 0.3-1.5 s, a swing to
15-80 deg in 0.8-2 s, a hold, and in half the episodes a partial swing back. The arm holds its start pose
(zero joint velocities), so it is a passive obstacle. The IMU samples are the sim's (MPU-6050-class noise
model: constant bias, warm-up drift, random walk, 1 % scale-factor error).

Estimator set-ups compared (RMSE over each episode, hinge angle in deg):

- ``fresh_cfg_axis``: a new estimator per episode with the hinge axis configured as the IMU z axis
  (what ArmDoorEnv does);
- ``fresh_self_id``: a new estimator per episode, default config (self-identifying axis, unknown bias);
- ``kept_self_id``: one estimator for the whole run, ``reset(keep_calibration=True)`` at each episode
  start: the bias, axis and opening sign learnt in earlier episodes are kept;
- ``kept_cfg_axis``: the same with the configured axis.

Usage:
    python benchmarks/door_angle_sim_check.py [--episodes 20] [--seed 0]
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys

import numpy as np

from async_naf.sensing.door_angle import DoorAngleConfig, DoorAngleEstimator
from async_naf.sensing.door_angle.synthetic import Segment, profile_truth

DEG = math.pi / 180.0


def episode_profile(rng: np.random.Generator, duration: float) -> list[Segment]:
    rest = rng.uniform(0.3, 1.5)
    target = rng.uniform(15.0, 80.0) * DEG
    swing = rng.uniform(0.8, 2.0)
    segs = [Segment(rest, 0.0), Segment(swing, target)]
    if rng.random() < 0.5:
        segs += [Segment(rng.uniform(0.5, 2.0), target), Segment(rng.uniform(0.8, 1.5), target * rng.uniform(0.3, 0.8))]
    used = sum(s.duration_s for s in segs)
    segs.append(Segment(max(0.1, duration - used), segs[-1].target_rad))
    return segs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=150, help="control steps per episode")
    parser.add_argument(
        "--no-scale-error", action="store_true",
        help="sim IMU without its gyro scale-factor error (isolates what the estimator can correct)",
    )
    args = parser.parse_args(argv)

    from async_naf.sim import ArmDoorSim, SimConfig

    # the reach task's start pose keeps the hook clear of the door (door_pull's holds the handle)
    sim_config = SimConfig(task="reach")
    if args.no_scale_error:
        sim_config = dataclasses.replace(sim_config, imu=dataclasses.replace(sim_config.imu, gyro_scale_error_std=0.0))
    sim = ArmDoorSim(sim_config, seed=args.seed)
    print(f"sim IMU gyro scale factors: {np.round(sim.imu_noise.gyro_scale, 4)}")
    rng = np.random.default_rng(args.seed)
    stop = sim.config.door.max_open
    cfg_axis = DoorAngleConfig(hinge_axis=(0.0, 0.0, 1.0), stop_angle_rad=stop)
    cfg_self = DoorAngleConfig(stop_angle_rad=stop)
    kept = {"kept_self_id": DoorAngleEstimator(cfg_self), "kept_cfg_axis": DoorAngleEstimator(cfg_axis)}
    names = ["fresh_cfg_axis", "fresh_self_id", "kept_self_id", "kept_cfg_axis"]
    results: dict[str, list[float]] = {n: [] for n in names}
    d = sim.data
    hv, lq, hq = sim.compiled.hinge_dof, sim.compiled.handle_qpos, sim.compiled.hinge_qpos
    kp, kd = 40.0, 10.0
    print(f"{'ep':>3} {'max deg':>7} " + " ".join(f"{n:>15}" for n in names))
    for ep in range(args.episodes):
        sim.reset(randomize=True)
        duration = args.steps * sim.control_period_s
        segs = episode_profile(rng, duration)
        t0 = sim.time_s
        ests = {"fresh_cfg_axis": DoorAngleEstimator(cfg_axis), "fresh_self_id": DoorAngleEstimator(cfg_self)}
        for est in kept.values():
            est.reset(keep_calibration=True)
        ests.update(kept)
        errs: dict[str, list[float]] = {n: [] for n in names}
        peak = 0.0
        for _ in range(args.steps):
            t = np.array([sim.time_s - t0])
            ref, ref_rate, ref_acc = (float(x[0]) for x in profile_truth(segs, t))
            if ref > 0.0:
                d.qpos[lq] = max(d.qpos[lq], sim.config.door.latch_threshold + 0.05)  # hold the handle down
            theta, rate = float(d.qpos[hq]), float(d.qvel[hv])
            d.qfrc_applied[hv] = kp * (ref - theta) + kd * (ref_rate - rate) + 2.0 * ref_acc
            samples = sim.step(np.zeros(7))
            truth = sim.door_state().hinge_angle
            peak = max(peak, truth)
            for name, est in ests.items():
                for s in samples:
                    est.update(s)
                errs[name].append(est.state.angle - truth)
        d.qfrc_applied[hv] = 0.0
        row = []
        for name in names:
            rmse = math.sqrt(float(np.mean(np.square(errs[name])))) / DEG
            results[name].append(rmse)
            row.append(f"{rmse:15.3f}")
        print(f"{ep:>3} {peak / DEG:7.1f} " + " ".join(row), flush=True)
    print("RMSE over episodes (deg): " + ", ".join(
        f"{n} mean {np.mean(v):.3f} worst {np.max(v):.3f}" for n, v in results.items()))
    axis = kept["kept_self_id"].axis
    print(f"identified hinge axis (IMU frame): {np.round(axis, 4) if axis is not None else None} "
          f"({kept['kept_self_id'].axis_source})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
