"""Reset soak: the hardware backend's per-robot loop without ROS, faster than real time.

``async-naf train --backend hardware`` resets episodes with the reset node (joint space, no ground truth,
the door closed by a door closer that acts on a still arm) and passes every command through the guard.
A learning run needs hours of wall time to meet the states a half-trained policy leaves behind; this
harness meets them in minutes: the same cores the nodes wrap (:class:`~async_naf.sim.ArmDoorSim` stepped
like the sim node's hardware mode, :class:`~async_naf.acting.safety.SafetyFilter`,
:class:`~async_naf.acting.reset.ResetMotion`, :class:`~async_naf.sensing.door_angle.DoorAngleEstimator`,
the graph's start and retreat poses and parameters), driven by an exploring policy that is worse than
any trained one: OU noise (the policy node's default) around a per-episode constant action drawn in the
task's action bounds (a half-trained network that saturates some joints).

Every episode: the policy acts for the task's ``episode_steps``, then the reset runs (as the collector
calls it: a failed reset is retried after the collector's ``RETRY_S``), then the estimator is zeroed.
A robot whose resets fail ``stuck_after`` times in a row is stuck (what a run sees as a collector that
never starts another episode); the soak ends there for that seed.

    python -m async_naf.bench.reset_soak --task door_pull --episodes 200 --seeds 0 1 2

Reported per seed: episodes run, resets that failed, stuck or not, blocked legs, time spent resetting (s
of simulated time), the true door angle and the estimate when each reset ended, and the states that
failed (for the test that replays them).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from async_naf.acting.reset import ResetConfig, ResetMotion
from async_naf.acting.safety import SafetyConfig, SafetyFilter
from async_naf.collecting.loop import RETRY_S
from async_naf.run.graph import HARDWARE_DOOR_CLOSER_NM, HARDWARE_WATCHDOG_S, arm_reset_poses
from async_naf.sensing.door_angle import DoorAngleConfig, DoorAngleEstimator
from async_naf.sim.arm_door_sim import ArmDoorSim
from async_naf.sim.config import SimConfig
from async_naf.task.kinematics import ArmKinematics
from async_naf.task.latch import StillTimer
from async_naf.task.tasks import make_task

PERIOD_S = 0.05  # the control period, s


@dataclass
class SoakResult:
    """One seed's soak (see the module docstring); times in s of simulated time, angles in rad."""

    seed: int
    episodes: int = 0
    resets: int = 0
    reset_failures: int = 0
    stuck: bool = False
    blocked: int = 0
    retraced: int = 0
    cleared: int = 0
    reset_s: list[float] = field(default_factory=list)
    door_at_reset_end: list[float] = field(default_factory=list)
    door_at_episode_end: list[float] = field(default_factory=list)
    estimate_at_reset_end: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failed_states: list[dict[str, Any]] = field(default_factory=list)
    guard: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        rs = np.array(self.reset_s) if self.reset_s else np.zeros(1)
        door = np.abs(np.array(self.door_at_reset_end)) if self.door_at_reset_end else np.zeros(1)
        return {"seed": self.seed, "episodes": self.episodes, "resets": self.resets,
                "reset_failures": self.reset_failures, "stuck": self.stuck, "blocked": self.blocked,
                "retraced": self.retraced, "cleared": self.cleared,
                "reset_s_median": float(np.median(rs)), "reset_s_max": float(rs.max()),
                "door_at_reset_end_max_rad": float(door.max()),
                "episodes_door_open_0_35": int(np.sum(np.array(self.door_at_episode_end) > 0.35)),
                "errors": self.errors[:5], "guard": self.guard}


class HardwareArm:
    """The sim node in hardware mode, stepped in-process: the door closer acts once the arm has held still
    (zero command) for ``door_closer_delay_s``; the door IMU feeds the estimator the door_angle node runs."""

    def __init__(self, task: str, seed: int, closer_nm: float = HARDWARE_DOOR_CLOSER_NM) -> None:
        self.sim = ArmDoorSim(SimConfig(task=task, door_closer_torque=closer_nm), seed=seed)
        self.sim.reset(randomize=True)
        self.delay_s = self.sim.config.door_closer_delay_s
        door = self.sim.config.door
        self.estimator = DoorAngleEstimator(DoorAngleConfig(hinge_axis=(0.0, 0.0, 1.0),
                                                            stop_angle_rad=float(door.max_open)))
        self.t = 0.0
        self._still = StillTimer(self.delay_s, since=self.t)  # the sim node's rule

    def step(self, cmd: np.ndarray) -> None:
        self.sim.door_closing = self._still.update(self.t, not (cmd != 0.0).any())
        for sample in self.sim.step(cmd):
            self.estimator.update(sample)
        self.t += PERIOD_S

    @property
    def door_estimate(self) -> float:
        return float(self.estimator.state.angle)


class TrainedPolicy:
    """The policy node's core with trained weights and its default exploration noise; the door angle in the
    observation is the estimate, as in hardware mode."""

    def __init__(self, task: str, weights: bytes, seed: int, goal: np.ndarray, arm: HardwareArm) -> None:
        from async_naf.acting.config import PolicyNodeConfig
        from async_naf.acting.runner import PolicyRunner

        self.runner = PolicyRunner(PolicyNodeConfig(task=task, seed=seed))
        self.runner.load_weights(weights)
        self.goal, self.arm = goal, arm

    def new_episode(self) -> None:
        self.runner.reset_noise()

    def act(self) -> np.ndarray:
        est = self.arm.estimator.state
        state = self.runner.state(self.arm.sim.joint_positions, self.arm.sim.joint_velocities, est.angle,
                                  est.velocity)
        return self.runner.act(state, self.goal, explore=True)[1]


class SoakPolicy:
    """OU noise (the policy node's default: scale 0.3, theta 0.15, dt 1) around a per-episode constant
    action drawn uniformly in the task's action bounds, clipped to the bounds."""

    def __init__(self, low: np.ndarray, high: np.ndarray, rng: np.random.Generator) -> None:
        self.low, self.high, self.rng = low, high, rng
        self.mean = np.zeros(len(low))
        self.x = np.zeros(len(low))

    def new_episode(self) -> None:
        self.mean = self.rng.uniform(self.low, self.high)
        self.x = np.zeros(len(self.low))

    def act(self) -> np.ndarray:
        self.x += -0.15 * self.x + 0.3 * self.rng.normal(size=len(self.x))
        return np.clip(self.mean + self.x, self.low, self.high)


def soak(task: str = "door_pull", episodes: int = 100, seed: int = 0, stuck_after: int = 5,
         reset_overrides: dict[str, Any] | None = None, max_reset_tries_s: float = 600.0,
         weights: bytes | None = None) -> SoakResult:
    """Run one seed's soak (see the module docstring)."""
    result = SoakResult(seed=seed)
    arm = HardwareArm(task, seed)
    start, retreat, clear = arm_reset_poses(task, {})
    rcfg = ResetConfig(task=task, start_pose=tuple(start), retreat_pose=tuple(retreat), clear_pose=tuple(clear),
                       control_period_s=PERIOD_S)
    if reset_overrides:
        rcfg = replace(rcfg, **reset_overrides)
    motion = ResetMotion(rcfg)
    kin = ArmKinematics()
    guard = SafetyFilter(SafetyFilter.with_limits(
        SafetyConfig(control_period_s=PERIOD_S, command_timeout_s=HARDWARE_WATCHDOG_S,
                     state_timeout_s=HARDWARE_WATCHDOG_S), kin.lower, kin.upper, kin.velocity_limits),
        fk=kin.ee_position)
    spec = make_task(task)
    low = np.maximum(np.asarray(spec.action_low, float), -np.asarray(kin.velocity_limits))
    high = np.minimum(np.asarray(spec.action_high, float), np.asarray(kin.velocity_limits))
    policy: SoakPolicy | TrainedPolicy = SoakPolicy(low, high, np.random.default_rng(seed + 1000))
    if weights is not None:
        policy = TrainedPolicy(task, weights, seed, arm.sim.door_goal(), arm)

    def send(cmd: np.ndarray) -> None:
        q = arm.sim.joint_positions
        guard.on_joint_state(q, arm.t)
        motion.observe(q)  # the reset node's joint-state callback
        arm.step(guard.filter(cmd, arm.t))

    def run_reset() -> bool:
        """One reset as the collector calls it, with retries; False when the robot is stuck."""
        t0, failures = arm.t, 0
        while True:
            result.resets += 1
            motion.start(arm.t)
            phase = "moving"
            while phase not in ("done", "failed"):
                cmd, phase = motion.step(arm.t, arm.sim.joint_positions, arm.sim.joint_velocities,
                                         arm.door_estimate, 0.0)
                send(cmd)
                if arm.t - t0 > max_reset_tries_s:
                    motion.phase, motion.error, phase = "failed", "soak: reset retried too long", "failed"
            if phase == "done":
                arm.estimator.zero()  # the collector's door_angle/zero
                result.reset_s.append(arm.t - t0)
                result.door_at_reset_end.append(arm.sim.door_state().hinge_angle)
                result.estimate_at_reset_end.append(arm.door_estimate)
                return True
            failures += 1
            result.reset_failures += 1
            result.errors.append(motion.error)
            result.failed_states.append({"q": [float(v) for v in arm.sim.joint_positions],
                                         "door": arm.sim.door_state().hinge_angle, "estimate": arm.door_estimate,
                                         "error": motion.error})
            if failures >= stuck_after or arm.t - t0 > max_reset_tries_s:
                return False
            for _ in range(int(round(RETRY_S / PERIOD_S))):  # the collector retries after RETRY_S
                send(np.zeros(7))

    if not run_reset():  # the first episode starts from a reset, as in the graph
        result.stuck = True
        return result
    for _ in range(episodes):
        policy.new_episode()
        for _ in range(spec.config.episode_steps):
            send(policy.act())
        result.episodes += 1
        result.door_at_episode_end.append(arm.sim.door_state().hinge_angle)
        if not run_reset():
            result.stuck = True
            break
    result.blocked = motion.blocked
    result.retraced = motion.retraced
    result.cleared = motion.cleared
    result.guard = {k: int(v) for k, v in guard.counts.items()}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="door_pull", help="door_pull or door_push (reach has no door)")
    parser.add_argument("--episodes", type=int, default=100, help="episodes per seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (sim and policy)")
    parser.add_argument("--stuck-after", type=int, default=5, help="failed resets in a row that count as stuck")
    parser.add_argument("--weights", default="", help="policy weights (safetensors, e.g. RUN_DIR/weights/"
                        "final.safetensors) to explore with instead of the random policy")
    parser.add_argument("--out", default="", help="write the full results (JSON) here")
    args = parser.parse_args(argv)
    results = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        weights = Path(args.weights).read_bytes() if args.weights else None
        res = soak(args.task, args.episodes, seed, args.stuck_after, weights=weights)
        line = res.summary()
        line["wall_s"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(line), flush=True)
        results.append(res)
    if args.out:
        with open(args.out, "w") as f:
            json.dump([{**r.summary(), "failed_states": r.failed_states, "reset_s": r.reset_s,
                        "door_at_reset_end": r.door_at_reset_end,
                        "estimate_at_reset_end": r.estimate_at_reset_end} for r in results], f)
    return 0 if not any(r.stuck for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
