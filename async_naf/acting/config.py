"""Configuration of the policy node (``nodes/policy_node.py``): ROS-free, so launchers and tests can use it.

The policy node turns observations into joint-velocity commands: mu(x) of the newest weights from the
trainer plus exploration noise, clamped to the arm's velocity limits. Units: seconds, rad/s.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from async_naf.common.checks import numbers
from async_naf.common.noise import NoiseConfig
from async_naf.common.publishers import PublisherWatchConfig
from async_naf.task.tasks import TASK_NAMES

TRIGGERS = ("joint_states", "timer")
EXECUTORS = ("events", "single_threaded")


@dataclass
class PolicyNodeConfig:
    """Parameters of the policy node (one per robot namespace).

    Attributes:
        task: task name (``reach``, ``door_pull``, ``door_push``); defines the observation.
        seed: seed of the exploration noise.
        trigger: ``joint_states``: act once per received joint_states message (embedded sim, lockstep or
            realtime); ``timer``: act every control_period_s on the newest joint state (real arm whose
            joint_state_broadcaster publishes faster than the control rate).
        control_period_s: control period for trigger=timer, s. (Not the noise time step: see ``noise``.)
        lockstep: the sim steps once per command (sim_node realtime:=false). Enables the stall guard:
            the last command is re-sent when no new joint state arrived for stall_resend_s.
        stall_resend_s: lockstep only: re-send the last command after this long without a new joint state, s.
        joint_state_timeout_s: trigger=timer: a joint state older than this stops the arm (zero command), s.
        velocity_limits: per-joint velocity limits, rad/s (7 values, ARM_JOINT_NAMES order); empty = the
            arm model's limits. Commands are clamped to +-limit.
        eval_mode: greedy mu(x), no exploration noise (changeable at runtime).
        exploration_scale: multiplies the noise (changeable at runtime; 0 = greedy), dimensionless.
        noise: exploration noise settings (action units, rad/s). Default: OU with ``dt = 1.0`` and nothing
            sets dt from the control period, so one OU step is one control step and ``theta`` is a
            mean-reversion rate per control step (0.15: time constant of about 6.7 steps).
        explore_before_weights: before the first weights arrive, command noise only (True) or stand still.
        door_wait_s: door tasks: after a joint state, wait at most this long for a door-angle estimate at
            least as new (stamp >= joint stamp - door_stamp_tolerance_s), then act with the newest one, s.
        door_stamp_tolerance_s: a door estimate this much older than the joint state still counts as
            current, s (IMU samples and joint states are not sampled at the same instants).
        door_stale_s: a door estimate older than this (vs the joint state) is missing: command zero, s.
        time_jump_s: a joint state stamped this far behind or ahead of the last one is a glitch (dropped),
            unless ``JUMP_CONFIRM`` (:mod:`async_naf.common.stamps`) of them in a row go on from each other: then,
            behind, the arm's clock jumped back (a restarted simulation) and the policy starts timing afresh;
            ahead, the stream was away (a gap), s.
        autostart: configure and activate the lifecycle node at start (embedded sim); False: wait for
            ``ros2 lifecycle set`` (real arm: move only once activated).
        publish_steps: publish what the policy saw and did on policy/step (for the collector).
        executor: ``events``: rclpy's EventsExecutor (C++ event queue: lower, steadier latency; marked
            experimental in Jazzy) or ``single_threaded``: rclpy's SingleThreadedExecutor.
        publisher_watch: the unknown-publisher alarm on the goals (``task/goal``) and weights
            (``/trainer/weights``): ``/diagnostics`` ``<node>/publishers`` (:mod:`async_naf.common.publishers`).
    """

    task: str = "reach"
    seed: int = 0
    trigger: str = "joint_states"
    control_period_s: float = 0.05
    lockstep: bool = False
    stall_resend_s: float = 0.25
    joint_state_timeout_s: float = 0.25
    velocity_limits: tuple[float, ...] = ()
    eval_mode: bool = False
    exploration_scale: float = 1.0
    noise: NoiseConfig = field(default_factory=lambda: NoiseConfig(kind="ou", scale=0.3, theta=0.15, dt=1.0))
    explore_before_weights: bool = True
    door_wait_s: float = 0.02
    door_stamp_tolerance_s: float = 0.011
    door_stale_s: float = 0.5
    time_jump_s: float = 1.0
    autostart: bool = True
    publish_steps: bool = True
    executor: str = "events"
    publisher_watch: PublisherWatchConfig = field(default_factory=PublisherWatchConfig)

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {self.executor!r}")
        if self.trigger not in TRIGGERS:
            raise ValueError(f"trigger must be one of {TRIGGERS}, got {self.trigger!r}")
        numbers(self, ("control_period_s", "stall_resend_s", "joint_state_timeout_s", "door_stale_s",
                       "time_jump_s"), 0.0, low_open=True)
        numbers(self, ("door_wait_s", "door_stamp_tolerance_s", "exploration_scale"), 0.0)
        limits = tuple(float(v) for v in self.velocity_limits)
        if limits and (len(limits) != 7 or not all(math.isfinite(v) and v > 0 for v in limits)):
            raise ValueError(f"velocity_limits must be empty or 7 finite values > 0 (rad/s), got {limits}")
        self.velocity_limits = limits
        if isinstance(self.noise, dict):
            self.noise = NoiseConfig(**self.noise)
        if self.task not in TASK_NAMES:
            raise ValueError(f"unknown task {self.task!r}; choose one of {', '.join(TASK_NAMES)}")
