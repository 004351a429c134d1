"""Configuration of the embedded simulation: one dataclass per part, nested in :class:`SimConfig`.

Units: metres, radians, seconds, kilograms, newton metres; rates in Hz. Frames: the arm's base frame
(``world`` in the URDF): x forward toward the door, y left, z up.

The ROS node declares one parameter per field (nested fields with dots: ``imu.gyro_noise_density``,
``door.width``, ``randomization.physics``), see ``nodes/sim_node.py`` and ``config/sim.yaml``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from async_naf.common.checks import number

TASK_DOOR_OPENING = {"reach": "pull", "door_pull": "pull", "door_push": "push"}

_DEG = math.pi / 180.0


def _range2(name: str, value: tuple[float, float], low: float | None = None) -> tuple[float, float]:
    """Validate a (min, max) pair."""
    vals = tuple(value)
    if len(vals) != 2:
        raise ValueError(f"{name} must be a (min, max) pair, got {value!r}")
    a = number(f"{name}[0]", vals[0], low)
    b = number(f"{name}[1]", vals[1], low)
    if a > b:
        raise ValueError(f"{name} must have min <= max, got {value!r}")
    return (a, b)


@dataclass
class ImuNoiseConfig:
    """Door-leaf IMU sampling and noise model (MPU-6050-class defaults).

    Each sample is ``meas = (1 + scale_error) * true + bias_const + bias_walk(t) + warmup(t) + white``,
    per axis, in the IMU frame. Defaults from the InvenSense MPU-6000/6050 product specification (rev 3.4):
    gyro rate-noise spectral density 0.005 deg/s/sqrt(Hz), accelerometer noise density 400 ug/sqrt(Hz),
    sensitivity scale-factor tolerance +-3 % (taken as 3 sigma), accelerometer zero-g initial tolerance
    +-50 mg (3 sigma). The datasheet's gyro zero-rate offset (+-20 deg/s) is for an uncalibrated part; the
    default constant bias here (0.5 deg/s, 1 sigma) models the residual after the usual power-on
    calibration, the warm-up term the settling of the temperature-dependent offset (the datasheet's
    +-20 deg/s over -40..85 C is about 0.16 deg/s per C; a few C of self-heating after power-on).

    Attributes:
        enabled: False = perfect samples (no noise, bias or scale error); covariances are then reported as 0.
        rate_hz: sample rate (Hz); control period x rate and rate x physics timestep must be whole numbers.
        gyro_noise_density: gyro white noise, rad/s/sqrt(Hz); per-sample std = density * sqrt(rate_hz).
        gyro_bias_std: std of the constant gyro bias drawn at power-on (sim construction), rad/s.
        gyro_bias_walk: gyro bias random walk, rad/s/sqrt(s) (bias std grows as walk * sqrt(t)).
        gyro_warmup_bias: extra gyro bias at power-on, rad/s; its sign per axis is random.
        gyro_warmup_tau_s: time constant of the warm-up bias's exponential decay, s.
        gyro_scale_error_std: std of the per-axis gyro scale-factor error (fraction; 0.01 = 1 %).
        accel_noise_density: accelerometer white noise, m/s^2/sqrt(Hz).
        accel_bias_std: std of the constant accelerometer bias, m/s^2.
        accel_bias_walk: accelerometer bias random walk, m/s^2/sqrt(s).
        accel_scale_error_std: std of the per-axis accelerometer scale-factor error (fraction).
    """

    enabled: bool = True
    rate_hz: float = 100.0
    gyro_noise_density: float = 0.005 * _DEG  # 8.73e-5 rad/s/sqrt(Hz)
    gyro_bias_std: float = 0.5 * _DEG  # 8.7e-3 rad/s
    gyro_bias_walk: float = 1.0e-4  # rad/s/sqrt(s)
    gyro_warmup_bias: float = 0.5 * _DEG  # rad/s
    gyro_warmup_tau_s: float = 60.0
    gyro_scale_error_std: float = 0.01
    accel_noise_density: float = 400e-6 * 9.80665  # 3.92e-3 m/s^2/sqrt(Hz)
    accel_bias_std: float = 0.05 * 9.80665 / 3.0  # 0.16 m/s^2
    accel_bias_walk: float = 1.0e-3  # m/s^2/sqrt(s)
    accel_scale_error_std: float = 0.01

    def __post_init__(self) -> None:
        self.enabled = bool(self.enabled)
        self.rate_hz = number("imu.rate_hz", self.rate_hz, 0.0, 10_000.0, low_open=True)
        self.gyro_warmup_tau_s = number("imu.gyro_warmup_tau_s", self.gyro_warmup_tau_s, 0.0, low_open=True)
        for name in ("gyro_noise_density", "gyro_bias_std", "gyro_bias_walk", "gyro_warmup_bias",
                     "gyro_scale_error_std", "accel_noise_density", "accel_bias_std", "accel_bias_walk",
                     "accel_scale_error_std"):
            setattr(self, name, number(f"imu.{name}", getattr(self, name), 0.0))
        for name in ("gyro_scale_error_std", "accel_scale_error_std"):
            if getattr(self, name) > 0.2:
                raise ValueError(f"imu.{name} must be <= 0.2 (a fraction), got {getattr(self, name)}")

    @property
    def gyro_white_std(self) -> float:
        """Per-sample std of the gyro white noise, rad/s (0 when disabled)."""
        return self.gyro_noise_density * math.sqrt(self.rate_hz) if self.enabled else 0.0

    @property
    def accel_white_std(self) -> float:
        """Per-sample std of the accelerometer white noise, m/s^2 (0 when disabled)."""
        return self.accel_noise_density * math.sqrt(self.rate_hz) if self.enabled else 0.0


@dataclass
class DoorConfig:
    """Nominal door geometry and dynamics (URDF xacro arguments; see urdf/door.xacro for the frames).

    Attributes:
        front_x: x of the leaf's robot-facing surface in the base frame, m.
        handle_y: y of the handle pivot of a door that opens toward the robot (pull), m.
        push_handle_y: y of the handle pivot of a door that opens away from the robot (push), m. Further to
            the right than a pull door's: a push door's leaf swings away, and with the handle at -0.02 m its
            hinge is 1.12 m from the arm's base, so the hook can no longer touch the leaf beyond about
            0.5 rad and only a throw opens it to the strict criterion's 1.0 rad. At -0.2 m the hook reaches
            the leaf up to the stop (docs/simulation.md, "Where the arm can push the door").
        handle_height: z of the handle pivot, m.
        width: leaf width, m.
        height: leaf height, m (its lower edge at z = 0).
        thickness: leaf thickness, m.
        hinge_side: 'left' (+y of the handle), 'right', or 'auto' (right for a pull door, left for a push
            door: the IMU then sits upright).
        opening: 'pull' (swings toward the robot), 'push', or 'auto' (from SimConfig.task).
        mass: leaf mass, kg.
        max_open: door stop, rad.
        hinge_damping: viscous hinge damping, N m s/rad.
        hinge_friction: dry hinge friction, N m.
        handle_damping: handle joint damping, N m s/rad.
        handle_spring: handle return-spring stiffness, N m/rad.
        handle_spring_ref: spring rest angle, rad (negative: preloaded against the rest stop at 0).
        handle_max: handle travel, rad.
        latch_threshold: handle angle beyond which the latch bolt is retracted, rad.
        latch_play: hinge travel the engaged latch allows (the bolt's clearance in the strike plate), rad.
    """

    front_x: float = 0.88
    handle_y: float = -0.02
    push_handle_y: float = -0.2
    handle_height: float = 0.55
    width: float = 0.75
    height: float = 1.0
    thickness: float = 0.04
    hinge_side: str = "auto"
    opening: str = "auto"
    mass: float = 8.0
    max_open: float = 1.4
    hinge_damping: float = 1.0
    hinge_friction: float = 0.3
    handle_damping: float = 0.05
    handle_spring: float = 1.5
    handle_spring_ref: float = -0.3
    handle_max: float = 0.9
    latch_threshold: float = 0.35
    latch_play: float = 0.01

    def __post_init__(self) -> None:
        if self.hinge_side not in ("left", "right", "auto"):
            raise ValueError(f"door.hinge_side must be 'left', 'right' or 'auto', got {self.hinge_side!r}")
        if self.opening not in ("pull", "push", "auto"):
            raise ValueError(f"door.opening must be 'pull', 'push' or 'auto', got {self.opening!r}")
        self.front_x = number("door.front_x", self.front_x, 0.2, 2.0)
        self.handle_y = number("door.handle_y", self.handle_y, -1.0, 1.0)
        self.push_handle_y = number("door.push_handle_y", self.push_handle_y, -1.0, 1.0)
        self.handle_height = number("door.handle_height", self.handle_height, 0.1, 1.5)
        self.width = number("door.width", self.width, 0.3, 1.5)
        self.height = number("door.height", self.height, 0.5, 2.5)
        self.thickness = number("door.thickness", self.thickness, 0.01, 0.1)
        if self.handle_height > self.height - 0.1:
            raise ValueError(f"door.handle_height ({self.handle_height}) must be at least 0.1 m below "
                             f"door.height ({self.height})")
        self.mass = number("door.mass", self.mass, 0.0, 100.0, low_open=True)
        self.max_open = number("door.max_open", self.max_open, 0.2, math.pi)
        for name in ("hinge_damping", "hinge_friction", "handle_damping", "handle_spring"):
            setattr(self, name, number(f"door.{name}", getattr(self, name), 0.0))
        self.handle_spring_ref = number("door.handle_spring_ref", self.handle_spring_ref, -1.5, 0.0)
        self.handle_max = number("door.handle_max", self.handle_max, 0.1, 1.6)
        self.latch_threshold = number("door.latch_threshold", self.latch_threshold, 0.0, self.handle_max,
                                       low_open=True)
        self.latch_play = number("door.latch_play", self.latch_play, 0.0, 0.1, low_open=True)


@dataclass
class RandomizationConfig:
    """Domain-randomisation hooks, all off by default. Scale ranges multiply the nominal value.

    Attributes:
        observation_noise: add white noise to the measured joint positions/velocities.
        joint_position_noise_std: joint encoder noise, rad.
        joint_velocity_noise_std: joint velocity noise, rad/s.
        physics: randomise friction, damping, masses, hinge friction and handle spring at each reset.
        friction_scale: contact friction scale range.
        damping_scale: arm joint damping scale range.
        mass_scale: link and leaf mass scale range.
        hinge_friction_scale: door hinge dry-friction scale range.
        handle_spring_scale: handle return-spring stiffness scale range.
        action_delay_max_steps: commands are delayed by a whole number of control periods drawn uniformly
            from 0..this at each reset (0 = no delay).
        backlash_max: per-joint backlash drawn uniformly from 0..this at each reset, rad.
        door_geometry: randomise door size, hinge side and handle height at each reset (rebuilds the model).
        door_width_range: leaf width range, m.
        door_height_range: leaf height range, m.
        handle_height_range: handle height range, m.
        random_hinge_side: draw the hinge side at random (otherwise the configured side).
    """

    observation_noise: bool = False
    joint_position_noise_std: float = 0.001
    joint_velocity_noise_std: float = 0.01
    physics: bool = False
    friction_scale: tuple[float, float] = (0.7, 1.3)
    damping_scale: tuple[float, float] = (0.5, 2.0)
    mass_scale: tuple[float, float] = (0.8, 1.2)
    hinge_friction_scale: tuple[float, float] = (0.5, 2.0)
    handle_spring_scale: tuple[float, float] = (0.7, 1.5)
    action_delay_max_steps: int = 0
    backlash_max: float = 0.0
    door_geometry: bool = False
    door_width_range: tuple[float, float] = (0.65, 0.9)
    door_height_range: tuple[float, float] = (0.9, 1.2)
    handle_height_range: tuple[float, float] = (0.5, 0.6)
    random_hinge_side: bool = False

    def __post_init__(self) -> None:
        for name in ("observation_noise", "physics", "door_geometry", "random_hinge_side"):
            setattr(self, name, bool(getattr(self, name)))
        self.joint_position_noise_std = number("randomization.joint_position_noise_std",
                                                self.joint_position_noise_std, 0.0, 1.0)
        self.joint_velocity_noise_std = number("randomization.joint_velocity_noise_std",
                                                self.joint_velocity_noise_std, 0.0, 10.0)
        for name in ("friction_scale", "damping_scale", "mass_scale", "hinge_friction_scale",
                     "handle_spring_scale"):
            setattr(self, name, _range2(f"randomization.{name}", getattr(self, name), 0.0))
        delay = self.action_delay_max_steps
        if int(delay) != delay or not 0 <= delay <= 20:
            raise ValueError("randomization.action_delay_max_steps must be an integer in 0..20, "
                             f"got {self.action_delay_max_steps!r}")
        self.action_delay_max_steps = int(self.action_delay_max_steps)
        self.backlash_max = number("randomization.backlash_max", self.backlash_max, 0.0, 0.1)
        self.door_width_range = _range2("randomization.door_width_range", self.door_width_range, 0.3)
        self.door_height_range = _range2("randomization.door_height_range", self.door_height_range, 0.5)
        self.handle_height_range = _range2("randomization.handle_height_range", self.handle_height_range, 0.1)
        if self.door_geometry and self.handle_height_range[1] > self.door_height_range[0] - 0.1:
            raise ValueError("randomization.handle_height_range must stay 0.1 m below door_height_range[0]")


@dataclass
class SimConfig:
    """The embedded MuJoCo arm + door simulation.

    Attributes:
        task: task the scene is set up for ('reach', 'door_pull', 'door_push'): picks the start pose and,
            with door.opening 'auto', the door's opening direction.
        control_period_s: one ``step()``: commands are held for this long, s (default 20 Hz).
        physics_timestep_s: MuJoCo integration step, s; must divide 1 / imu.rate_hz.
        realtime: sim_node only: False = lockstep (one step per received command), True = paced by a wall
            timer at the control period.
        start_positions: arm start pose, 7 values in rad; empty = the task's default pose.
        start_noise: uniform noise added to each start joint angle by ``reset(randomize=True)``, rad.
        command_timeout_s: sim_node realtime mode: a command older than this is stale (zero velocity), s.
        clock_topic: sim_node: topic for rosgraph_msgs/Clock ('' = do not publish).
        hardware: sim_node only: act as plain ros2_control hardware (``async-naf train --backend hardware``):
            joint_states, door/imu and the command topic only - no ~/reset service, no ground truth, no
            clock - paced to wall time (implies realtime).
        door_closer_torque: hardware mode: a door closer that pushes the door shut with this torque, N m,
            once the arm has held still for door_closer_delay_s (0 = no closer: somebody closes the door).
            Gazebo's description takes it too (its latch system's closer; 2.0 there unless this section sets it).
        door_closer_delay_s: hardware mode: the arm must hold still (zero command; in Gazebo every arm joint
            slower than 0.01 rad/s) this long before the door closer acts, s.
        door: door geometry and dynamics.
        imu: door-leaf IMU sampling and noise.
        randomization: domain-randomisation hooks (off by default).
    """

    task: str = "door_pull"
    control_period_s: float = 0.05
    physics_timestep_s: float = 0.005
    realtime: bool = False
    start_positions: tuple[float, ...] = ()
    start_noise: float = 0.03
    command_timeout_s: float = 0.5
    clock_topic: str = "/clock"
    hardware: bool = False
    door_closer_torque: float = 0.0
    door_closer_delay_s: float = 1.0
    door: DoorConfig = field(default_factory=DoorConfig)
    imu: ImuNoiseConfig = field(default_factory=ImuNoiseConfig)
    randomization: RandomizationConfig = field(default_factory=RandomizationConfig)

    def __post_init__(self) -> None:
        if self.task not in TASK_DOOR_OPENING:
            raise ValueError(f"task must be one of {tuple(TASK_DOOR_OPENING)}, got {self.task!r}")
        self.control_period_s = number("control_period_s", self.control_period_s, 0.001, 1.0)
        self.physics_timestep_s = number("physics_timestep_s", self.physics_timestep_s, 1e-4, 0.01)
        self.start_noise = number("start_noise", self.start_noise, 0.0, 0.5)
        self.command_timeout_s = number("command_timeout_s", self.command_timeout_s, 0.0, low_open=True)
        self.realtime = bool(self.realtime) or bool(self.hardware)
        self.door_closer_torque = number("door_closer_torque", self.door_closer_torque, 0.0, 20.0)
        self.door_closer_delay_s = number("door_closer_delay_s", self.door_closer_delay_s, 0.0)
        self.start_positions = tuple(float(v) for v in self.start_positions)
        if len(self.start_positions) not in (0, 7) or not all(math.isfinite(v) for v in self.start_positions):
            raise ValueError(f"start_positions must be empty or 7 finite angles (rad), got {self.start_positions!r}")
        if isinstance(self.door, dict):
            self.door = DoorConfig(**self.door)
        if isinstance(self.imu, dict):
            self.imu = ImuNoiseConfig(**self.imu)
        if isinstance(self.randomization, dict):
            self.randomization = RandomizationConfig(**self.randomization)
        # the three time bases must nest: control period = k * IMU period, IMU period = n * physics step
        self.samples_per_step  # noqa: B018 - validates
        self.substeps_per_sample  # noqa: B018

    @staticmethod
    def _ratio(name: str, a: float, b: float) -> int:
        r = a / b
        n = round(r)
        if n < 1 or abs(r - n) > 1e-6 * max(1.0, r):
            raise ValueError(f"{name} must be a whole number >= 1, got {r:.6g}")
        return int(n)

    @property
    def samples_per_step(self) -> int:
        """IMU samples per control period."""
        return self._ratio("control_period_s * imu.rate_hz", self.control_period_s, 1.0 / self.imu.rate_hz)

    @property
    def substeps_per_sample(self) -> int:
        """Physics steps per IMU sample period."""
        return self._ratio("1 / (imu.rate_hz * physics_timestep_s)", 1.0 / self.imu.rate_hz,
                           self.physics_timestep_s)

    @property
    def door_opening(self) -> str:
        """'pull' or 'push' after resolving 'auto' from the task."""
        return TASK_DOOR_OPENING[self.task] if self.door.opening == "auto" else self.door.opening

    @property
    def hinge_left(self) -> bool:
        """True when the hinge is on the robot's left (+y) side, after resolving 'auto'."""
        if self.door.hinge_side == "auto":
            return self.door_opening == "push"
        return self.door.hinge_side == "left"
