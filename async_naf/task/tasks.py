"""Tasks: observation, shaped reward, episode length and success criterion (plain code, no simulator).

Shared by the embedded simulation (``async_naf.run.env``), the collector node (real or simulated robot)
and offline training. Observations hold only what a real robot has: joint angles and velocities, the
end-effector (hook tip) position from forward kinematics of the URDF, the door angle from the IMU estimator
(never ground truth) and the goal. Ground truth (:class:`async_naf.sim.DoorState`) feeds rewards and
success checks only, and is optional: on a real robot ``truth=None`` and the estimate is used instead.

Tasks (Gu, Holly, Lillicrap, Levine, ICRA 2017 style rewards; units m, rad, rad/s):

``reach``       move the hook tip to a random target in a box in front of the robot.
                obs (23) = q (7) | qdot (7) | ee (3) | target (3) | target - ee (3)
                reward = -w_dist * |target - ee| - w_action * |a / a_max|^2 + w_success * [success]
                success: |target - ee| < 0.05 m.  Episode: 50 steps (2.5 s at 20 Hz).
``door_pull``   latched door that opens toward the robot: hook the lever, turn it past the latch
                threshold, pull the door open.
``door_push``   the same door opening away from the robot: turn the lever, push the door open.
                obs (22) = q (7) | qdot (7) | ee (3) | handle - ee (3) | door angle (1) | door velocity (1)
                (+ handle angle (1) when ``handle_sensor``), where ``handle`` is the lever's hooking point
                moved with the *estimated* door angle about the hinge (known door geometry: the goal).
                reward = -w_dist * |handle(theta) - ee| + w_handle * min(handle_angle / threshold, 1)
                         + w_door * clip(theta, 0, door_reward_cap) - w_action * |a / a_max|^2
                         + w_success * [theta >= success_angle] + w_open * [theta >= open_angle]
                (theta and handle_angle from ground truth when given; without it the handle term is 0)
                success: door angle >= 0.35 rad at the last step.  Episode: 150 steps (7.5 s at 20 Hz).

Two criteria are reported for every episode. ``success`` is the task's criterion at the last step (above).
``strict`` asks for more: doors - the door open at least ``open_angle`` (1.0 rad, 57 deg: wide enough to
walk through) at each of the last ``open_hold_steps`` steps (20: 1 s), i.e. opened wide and held there;
reach - the hook tip within ``success_distance`` of the target over the last ``open_hold_steps`` steps.

The door goal vector (6) = hook engagement point at rest (3, base frame, m) | hinge axis x, y (2, m) |
hinge axis sign (1: +1 = opening turns the leaf counter-clockwise seen from above).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np

from async_naf.common.checks import integers, numbers

TASK_NAMES: tuple[str, ...] = ("reach", "door_pull", "door_push")
ACT_DIM = 7

# door handle and hook geometry (must match urdf/door.xacro and urdf/arm.xacro)
LEVER_STANDOFF = 0.06  # lever axis in front of the leaf's robot-facing surface, m
HANDLE_EDGE_OFFSET = 0.07  # handle pivot from the leaf's free edge, m
GRIP_DISTANCE = 0.08  # hooking point along the lever from the pivot, m
LEVER_RADIUS = 0.01
HOOK_ROD_RADIUS = 0.01
# hook tip (inner corner of the hook) when engaged: finger hanging in the gap between lever and leaf,
# rod resting on the lever
HOOK_ENGAGE_OFFSET = np.array([0.035, 0.0, LEVER_RADIUS + HOOK_ROD_RADIUS])
# door tasks start with the hook tip this far above the engaged position (finger tip 1 cm above the lever)
DOOR_START_LIFT = 0.06
# hook orientation at the door start: rod (tool z) pointing at the door (+x), finger (tool x) pointing down
DOOR_START_ROTATION = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])

REACH_START_POSE = (0.0, 0.2, 0.0, -1.55, 0.0, 1.1, 0.0)  # rad: hook tip at about (0.55, 0, 0.45) m, pointing down
IK_SEED_POSE = (0.0, 0.6, 0.0, -1.5, 0.0, -0.5, 0.0)  # rad: elbow up, wrist toward the door


class TaskState(NamedTuple):
    """What a real robot knows at one control step (inputs of observation, reward and success).

    Attributes:
        joint_pos: (7,) arm joint angles, rad.
        joint_vel: (7,) arm joint velocities, rad/s.
        ee_pos: (3,) hook-tip position from forward kinematics, base frame, m.
        door_angle: estimated door angle (IMU estimator), rad, + = opening; 0 for reach.
        door_velocity: estimated door angular velocity, rad/s.
        handle_angle: handle angle from a handle sensor, rad, or None (no sensor: the usual case).
    """

    joint_pos: np.ndarray
    joint_vel: np.ndarray
    ee_pos: np.ndarray
    door_angle: float = 0.0
    door_velocity: float = 0.0
    handle_angle: float | None = None


@dataclass
class TaskConfig:
    """Task parameters (config/tasks.yaml). Distances m, angles rad, speeds rad/s.

    Attributes:
        episode_steps: control steps per episode (time limit; not a terminal state).
        max_joint_speed: action bound: each joint velocity command is in [-this, this], rad/s.
        success_distance: reach: success when the hook tip is within this of the target, m.
        success_angle: doors: success when the door is open at least this much, rad.
        open_angle: doors: the strict criterion's angle: the door open at least this much, rad.
        open_hold_steps: steps at the end of an episode over which the strict criterion must hold
            (doors: door >= open_angle; reach: at the target).
        w_dist: weight of the distance term, 1/m.
        w_action: weight of the squared normalised action.
        w_success: bonus per step while the success criterion holds (reach and doors).
        w_open: doors: bonus per step while the door is open at least open_angle (the strict criterion's
            angle): pays for opening wide and holding it there.
        w_handle: doors: weight of the handle-turn term (ground truth only).
        w_door: doors: weight of the door-angle term, 1/rad.
        door_reward_cap: doors: the door-angle term saturates at this angle, rad.
        latch_threshold: doors: handle angle that unlatches (for the handle term), rad.
        handle_sensor: doors: the robot has a handle-angle sensor; appends it to the observation.
        target_low: reach: lower corner of the target box (x, y, z), m.
        target_high: reach: upper corner of the target box, m.
        door_goal: doors: the nominal goal vector used where no simulator provides one (a real robot's
            calibrated door geometry; see module docstring), empty = the default simulated door.
    """

    episode_steps: int = 150
    max_joint_speed: float = 0.5
    success_distance: float = 0.05
    success_angle: float = 0.35
    open_angle: float = 1.0
    open_hold_steps: int = 20
    w_dist: float = 1.0
    w_action: float = 0.01
    w_success: float = 0.0
    w_open: float = 0.0
    w_handle: float = 0.25
    w_door: float = 2.0
    door_reward_cap: float = 0.6
    latch_threshold: float = 0.35
    handle_sensor: bool = False
    target_low: tuple[float, float, float] = (0.40, -0.30, 0.25)
    target_high: tuple[float, float, float] = (0.68, 0.30, 0.65)
    door_goal: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        integers(self, ("episode_steps",), 1, 100_000)
        integers(self, ("open_hold_steps",), 1, 100_000)
        numbers(self, ("max_joint_speed", "success_distance", "success_angle", "open_angle", "door_reward_cap",
                       "latch_threshold"), 0.0, low_open=True)
        numbers(self, ("w_dist", "w_action", "w_success", "w_open", "w_handle", "w_door"), 0.0)
        self.handle_sensor = bool(self.handle_sensor)
        lo, hi = tuple(map(float, self.target_low)), tuple(map(float, self.target_high))
        if len(lo) != 3 or len(hi) != 3 or any(a > b for a, b in zip(lo, hi)):
            raise ValueError(f"target_low/target_high must be 3 values each with low <= high, got {lo}, {hi}")
        self.target_low, self.target_high = lo, hi
        self.door_goal = tuple(float(v) for v in self.door_goal)
        if len(self.door_goal) not in (0, 6) or not all(math.isfinite(v) for v in self.door_goal):
            raise ValueError(f"door_goal must be empty or 6 finite numbers, got {self.door_goal!r}")


DEFAULT_TASK_CONFIGS: dict[str, TaskConfig] = {
    "reach": TaskConfig(episode_steps=50, max_joint_speed=0.6, w_success=0.1),
    "door_pull": TaskConfig(episode_steps=150, max_joint_speed=0.5, w_success=1.0, w_open=2.0, door_reward_cap=1.4),
    "door_push": TaskConfig(episode_steps=150, max_joint_speed=0.5, w_success=1.0, w_open=2.0, door_reward_cap=1.4),
}


# ------------------------------------------------------------------------------------- door geometry
def door_handle_y(door: Any, opening: str) -> float:
    """y of the handle pivot (m) of ``door`` (``handle_y``, ``push_handle_y``) when it opens this way
    ('pull' or 'push'): a push door sits further right, where the arm can push its leaf wide."""
    return float(door.push_handle_y if opening == "push" else door.handle_y)


def door_goal(door: Any, hinge_left: bool, opening: str) -> np.ndarray:
    """Door goal vector (6,) from a door description (an object with ``front_x, handle_y, push_handle_y,
    handle_height, width, thickness`` in m, e.g. :class:`async_naf.sim.config.DoorConfig`; the handle's y is
    ``push_handle_y`` for a push door).

    Layout: hook engagement point at rest (x, y, z) | hinge axis (x, y) | hinge axis sign (+1/-1).
    """
    if opening not in ("pull", "push"):
        raise ValueError(f"opening must be 'pull' or 'push', got {opening!r}")
    s = 1.0 if hinge_left else -1.0
    lever_x = door.front_x - LEVER_STANDOFF
    handle_y = door_handle_y(door, opening)
    grip = np.array([lever_x, handle_y + s * GRIP_DISTANCE, door.handle_height])
    engage = grip + HOOK_ENGAGE_OFFSET
    hinge_x = door.front_x + door.thickness / 2.0
    hinge_y = handle_y + s * (door.width - HANDLE_EDGE_OFFSET)
    axis_sign = -s if opening == "pull" else s
    return np.array([engage[0], engage[1], engage[2], hinge_x, hinge_y, axis_sign])


class _NominalDoor(NamedTuple):
    front_x: float = 0.88
    handle_y: float = -0.02
    push_handle_y: float = -0.2
    handle_height: float = 0.55
    width: float = 0.75
    thickness: float = 0.04


def handle_points(goal: np.ndarray, door_angle: np.ndarray) -> np.ndarray:
    """The hook engagement points (n, 3), base frame, m, with the door open by ``door_angle`` (n,) rad
    (rotated about the hinge). Element-wise only: row i does not depend on the other rows."""
    g = np.asarray(goal, dtype=np.float64)
    turn = g[5] * np.asarray(door_angle, dtype=np.float64).reshape(-1)
    c, s = np.cos(turn), np.sin(turn)
    rx, ry = g[0] - g[3], g[1] - g[4]
    out = np.empty((len(turn), 3))
    out[:, 0] = g[3] + c * rx - s * ry
    out[:, 1] = g[4] + s * rx + c * ry
    out[:, 2] = g[2]
    return out


def handle_point(goal: np.ndarray, door_angle: float) -> np.ndarray:
    """The hook engagement point (3,) with the door open by ``door_angle`` rad (rotated about the hinge); the
    same arithmetic, in the same order, as :func:`handle_points` (so the same bits)."""
    hx, hy, sign = float(goal[3]), float(goal[4]), float(goal[5])
    turn = sign * door_angle
    c, s = math.cos(turn), math.sin(turn)
    rx, ry = float(goal[0]) - hx, float(goal[1]) - hy
    return np.array([hx + c * rx - s * ry, hy + s * rx + c * ry, float(goal[2])])


def _sq_norms(v: np.ndarray) -> np.ndarray:
    """Squared Euclidean norm of each row of ``v`` (n, k), summed column by column: the same bits for a row
    whether it comes alone or among many (a reduction could sum in another order for other shapes)."""
    total = v[:, 0] * v[:, 0]
    for k in range(1, v.shape[1]):
        total = total + v[:, k] * v[:, k]
    return total


def start_pose_target(task: str, goal: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Hook-tip start pose (position m, rotation 3x3) for a door task, or None for a joint-space start."""
    if task == "reach":
        return None
    pos = np.asarray(goal[:3], dtype=float) + np.array([0.0, 0.0, DOOR_START_LIFT])
    return pos, DOOR_START_ROTATION.copy()


# ------------------------------------------------------------------------------------------- tasks
class Task:
    """One task: observation, reward, success, episode length (see module docstring).

    Attributes:
        name: task name.
        config: its :class:`TaskConfig`.
        obs_dim, act_dim, goal_dim, episode_steps: sizes.
        action_low, action_high: (7,) joint-velocity command bounds, rad/s.
        obs_layout: ``{field: slice}`` of the observation vector.
    """

    def __init__(self, name: str, config: TaskConfig | None = None) -> None:
        if name not in TASK_NAMES:
            raise ValueError(f"unknown task {name!r}; known: {TASK_NAMES}")
        self.name = name
        self.config = config if config is not None else replace(DEFAULT_TASK_CONFIGS[name])
        self.is_door = name != "reach"
        self.act_dim = ACT_DIM
        self.episode_steps = self.config.episode_steps
        self.action_high = np.full(ACT_DIM, self.config.max_joint_speed, dtype=np.float32)
        self.action_low = -self.action_high
        layout: list[tuple[str, int]] = [("joint_pos", 7), ("joint_vel", 7), ("ee_pos", 3)]
        if self.is_door:
            layout += [("handle_rel", 3), ("door_angle", 1), ("door_velocity", 1)]
            if self.config.handle_sensor:
                layout.append(("handle_angle", 1))
            self.goal_dim = 6
        else:
            layout += [("target", 3), ("target_rel", 3)]
            self.goal_dim = 3
        self.obs_layout: dict[str, slice] = {}
        i = 0
        for key, n in layout:
            self.obs_layout[key] = slice(i, i + n)
            i += n
        self.obs_dim = i

    def __repr__(self) -> str:
        return f"Task({self.name!r}, obs_dim={self.obs_dim}, episode_steps={self.episode_steps})"

    # -------------------------------------------------------------------------------------- goal
    def sample_goal(self, rng: np.random.Generator) -> np.ndarray:
        """reach: a target (3,) m uniformly in the target box. doors: the nominal door goal (6,) (the
        configured ``door_goal`` or the default simulated door; a simulator passes its own instead)."""
        if not self.is_door:
            return rng.uniform(self.config.target_low, self.config.target_high)
        if self.config.door_goal:
            return np.array(self.config.door_goal, dtype=float)
        opening = "push" if self.name == "door_push" else "pull"
        return door_goal(_NominalDoor(), hinge_left=opening == "push", opening=opening)

    def _check(self, state: TaskState, goal: np.ndarray) -> None:
        if np.shape(goal) != (self.goal_dim,):
            raise ValueError(f"{self.name}: goal must have shape ({self.goal_dim},), got {np.shape(goal)}")
        if np.shape(state.joint_pos) != (7,) or np.shape(state.joint_vel) != (7,) or np.shape(state.ee_pos) != (3,):
            raise ValueError("TaskState needs joint_pos (7,), joint_vel (7,), ee_pos (3,)")

    # ------------------------------------------------------------------------------- observation
    def observation(self, state: TaskState, goal: np.ndarray) -> np.ndarray:
        """The policy's input (obs_dim,) float32; layout in ``obs_layout``."""
        self._check(state, goal)
        parts: list[np.ndarray | list[float]] = [np.asarray(state.joint_pos, float), np.asarray(state.joint_vel, float),
                 np.asarray(state.ee_pos, float)]
        if self.is_door:
            handle = handle_point(goal, state.door_angle)
            parts += [handle - state.ee_pos, [state.door_angle, state.door_velocity]]
            if self.config.handle_sensor:
                parts.append([0.0 if state.handle_angle is None else state.handle_angle])
        else:
            parts += [goal, goal - state.ee_pos]
        return np.concatenate(parts).astype(np.float32)

    def observations(self, joint_pos: np.ndarray, joint_vel: np.ndarray, ee_pos: np.ndarray, goal: np.ndarray,
                     door_angle: np.ndarray | None = None, door_velocity: np.ndarray | None = None) -> np.ndarray:
        """:meth:`observation` of n states at once (bag conversion), (n, obs_dim) float32: each row has the
        bits :meth:`observation` gives for that state (element-wise arithmetic only; a test checks it).

        Args:
            joint_pos, joint_vel: (n, 7) rad, rad/s.  ee_pos: (n, 3) hook tip, base frame, m.
            goal: the episode's goal vector.
            door_angle, door_velocity: doors: (n,) estimated door angle (rad) and velocity (rad/s); the
                handle sensor's input reads 0 (no handle angle, as :meth:`observation` without one).
        """
        q = np.asarray(joint_pos, dtype=np.float64).reshape(-1, 7)
        n = len(q)
        g = np.asarray(goal, dtype=np.float64)
        ee = np.asarray(ee_pos, dtype=np.float64).reshape(n, 3)
        if np.shape(g) != (self.goal_dim,):
            raise ValueError(f"{self.name}: goal must have shape ({self.goal_dim},), got {np.shape(g)}")
        parts = [q, np.asarray(joint_vel, dtype=np.float64).reshape(n, 7), ee]
        if self.is_door:
            theta = np.zeros(n) if door_angle is None else np.asarray(door_angle, dtype=np.float64).reshape(n)
            rate = np.zeros(n) if door_velocity is None else np.asarray(door_velocity, dtype=np.float64).reshape(n)
            parts += [handle_points(g, theta) - ee, theta[:, None], rate[:, None]]
            if self.config.handle_sensor:
                parts.append(np.zeros((n, 1)))
        else:
            parts += [np.broadcast_to(g, (n, self.goal_dim)), g - ee]
        return np.concatenate(parts, axis=1).astype(np.float32)

    # ------------------------------------------------------------------------------------ reward
    def door_angle(self, state: TaskState, truth: Any = None) -> float:
        """The door angle, rad: ground truth where given (simulation), else the estimate in ``state``."""
        return float(truth.hinge_angle) if truth is not None else float(state.door_angle)

    def distances(self, ee_pos: np.ndarray, goal: np.ndarray, door_angle: np.ndarray | None = None) -> np.ndarray:
        """Hook tip to target (reach) or to the hook engagement point moved with the door (doors), m, for
        ``ee_pos`` (n, 3) m, base frame, and (doors) ``door_angle`` (n,) rad. Row by row element-wise."""
        ee = np.asarray(ee_pos, dtype=np.float64).reshape(-1, 3)
        g = np.asarray(goal, dtype=np.float64)
        if not self.is_door:
            target = np.broadcast_to(g, ee.shape)
        else:
            target = handle_points(g, np.zeros(len(ee)) if door_angle is None else door_angle)
        return np.sqrt(_sq_norms(target - ee))

    def distance(self, state: TaskState, goal: np.ndarray, truth: Any = None) -> float:
        """Hook tip to target (reach) or to the (moving) hook engagement point (doors), m (one step of
        :meth:`distances`, in plain floats: the same bits)."""
        target = handle_point(goal, self.door_angle(state, truth)) if self.is_door else goal
        e = state.ee_pos
        dx, dy, dz = float(target[0]) - float(e[0]), float(target[1]) - float(e[1]), float(target[2]) - float(e[2])
        return math.sqrt(dx * dx + dy * dy + dz * dz)

    def rewards(self, ee_pos: np.ndarray, action: np.ndarray, goal: np.ndarray, door_angle: np.ndarray | None = None,
                handle_angle: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Reward (n,) and success (n,) bool of n steps at once (bag conversion): element-wise arithmetic in
        the order :meth:`reward` and :meth:`success` use for one step, so each row has the same bits as
        those give (a test checks it).

        Args:
            ee_pos: (n, 3) hook tip after the step, base frame, m.
            action: (n, 7) the step's joint-velocity command, rad/s.
            goal: the episode's goal vector.
            door_angle: doors: (n,) door angle after the step, rad: ground truth where the caller has it,
                else the estimate.
            handle_angle: doors: (n,) ground-truth handle angle, rad, or None (no ground truth: no handle term).
        """
        c = self.config
        ee = np.asarray(ee_pos, dtype=np.float64).reshape(-1, 3)
        a = np.asarray(action, dtype=np.float64).reshape(-1, ACT_DIM) / c.max_joint_speed
        theta = np.zeros(len(ee)) if door_angle is None else np.asarray(door_angle, dtype=np.float64).reshape(-1)
        dist = self.distances(ee, goal, theta)
        r = -c.w_dist * dist - c.w_action * _sq_norms(a)
        if not self.is_door:
            success = dist < c.success_distance
            return r + np.where(success, c.w_success, 0.0), success
        if handle_angle is not None:
            h = np.asarray(handle_angle, dtype=np.float64).reshape(-1)
            r = r + c.w_handle * np.minimum(np.maximum(h, 0.0) / c.latch_threshold, 1.0)
        r = r + c.w_door * np.minimum(np.maximum(theta, 0.0), c.door_reward_cap)
        success = theta >= c.success_angle
        r = np.where(success, r + c.w_success, r)
        r = np.where(theta >= c.open_angle, r + c.w_open, r)
        return r, success

    def reward(self, state: TaskState, action: np.ndarray, goal: np.ndarray, truth: Any = None) -> float:
        """Shaped reward for taking ``action`` (7,) rad/s and arriving in ``state``.

        ``truth``: ground-truth DoorState (simulation) or None (real robot: estimated door angle, no
        handle term).
        """
        self._check(state, goal)
        c = self.config
        a = [float(x) / c.max_joint_speed for x in np.asarray(action, dtype=float).reshape(-1)]
        square = a[0] * a[0]
        for x in a[1:]:  # summed in order, as _sq_norms does for many steps
            square = square + x * x
        r = -c.w_dist * self.distance(state, goal, truth) - c.w_action * square
        if not self.is_door:
            return r + (c.w_success if self.success(state, goal, truth) else 0.0)
        theta = self.door_angle(state, truth)
        if truth is not None:
            r += c.w_handle * min(max(truth.handle_angle, 0.0) / c.latch_threshold, 1.0)
        r += c.w_door * min(max(theta, 0.0), c.door_reward_cap)
        if theta >= c.success_angle:
            r += c.w_success
        if theta >= c.open_angle:
            r += c.w_open
        return float(r)

    def success(self, state: TaskState, goal: np.ndarray, truth: Any = None) -> bool:
        """reach: within success_distance of the target; doors: door open >= success_angle rad."""
        if not self.is_door:
            return self.distance(state, goal) < self.config.success_distance
        return self.door_angle(state, truth) >= self.config.success_angle

    def strict_step(self, state: TaskState, goal: np.ndarray, truth: Any = None) -> bool:
        """One step of the strict criterion: doors - the door open >= open_angle rad; reach - at the target.
        An episode meets the strict criterion when this holds at each of its last ``open_hold_steps`` steps
        (:class:`EpisodeOutcome`)."""
        if not self.is_door:
            return self.distance(state, goal) < self.config.success_distance
        return self.door_angle(state, truth) >= self.config.open_angle


# why an episode failed (EpisodeOutcome.failure), in the order a door task gets through them
FAILURES = ("handle_not_turned", "too_little", "closed_again", "missed")
CLOSED_AGAIN_RAD = 0.1  # a failed door episode ending this much below its widest opening was closed again, rad


class EpisodeOutcome:
    """Both criteria of one episode, followed step by step (see the module docstring).

    Call :meth:`step` after every control step; the properties describe the episode so far, i.e. the
    outcome once its last step has been passed in.

    Attributes:
        success: the task's criterion at the last step.
        strict: the strict criterion held over the last ``open_hold_steps`` steps.
        door_angle: the door angle at the last step (ground truth where given), rad; 0 for reach.
        door_max: the largest door angle of the episode so far, rad; 0 for reach.
        handle_max: the largest handle angle so far (ground truth only), rad; None without ground truth.
    """

    def __init__(self, task: Task) -> None:
        self.task = task
        self.success = False
        self.door_angle = 0.0
        self.door_max = 0.0
        self.handle_max: float | None = None
        self._held = 0

    @property
    def strict(self) -> bool:
        return self._held >= self.task.config.open_hold_steps

    @property
    def failure(self) -> str:
        """Why the episode fails the task's criterion, "" if it does not (see :data:`FAILURES`).

        Doors: ``handle_not_turned`` - the handle never turned to ``latch_threshold`` (ground truth) and the
        door never opened to ``success_angle``; ``closed_again`` - the door ends more than
        :data:`CLOSED_AGAIN_RAD` below the widest it was opened (pushed back by the arm, or let go against a
        closer); ``too_little`` - it ends about as wide as it ever was, short of ``success_angle``.
        Reach: ``missed``.
        """
        if self.success:
            return ""
        if not self.task.is_door:
            return "missed"
        c = self.task.config
        if self.handle_max is not None and self.handle_max < c.latch_threshold and self.door_max < c.success_angle:
            return "handle_not_turned"
        return "closed_again" if self.door_angle < self.door_max - CLOSED_AGAIN_RAD else "too_little"

    def step(self, state: TaskState, goal: np.ndarray, truth: Any = None) -> None:
        """Account for one step: ``state`` reached, ``truth`` the simulator's DoorState or None."""
        self.success = self.task.success(state, goal, truth)
        self._held = self._held + 1 if self.task.strict_step(state, goal, truth) else 0
        if self.task.is_door:
            self.door_angle = self.task.door_angle(state, truth)
            self.door_max = max(self.door_max, self.door_angle)
            if truth is not None:
                handle = float(truth.handle_angle)
                self.handle_max = handle if self.handle_max is None else max(self.handle_max, handle)


def make_task(name: str, config: TaskConfig | None = None) -> Task:
    """Build a task by name ('reach', 'door_pull', 'door_push'); ``config`` overrides the defaults."""
    return Task(name, config)


def load_task_config(name: str, path: str | None = None) -> TaskConfig:
    """The TaskConfig of ``name`` from a YAML file (default: config/tasks.yaml), over the built-in defaults.

    File layout: ``{task_name: {field: value, ...}, ...}``.

    Raises:
        ValueError: unknown task, unknown field or invalid value.
    """
    import yaml

    if name not in TASK_NAMES:
        raise ValueError(f"unknown task {name!r}; known: {TASK_NAMES}")
    if path is None:
        from async_naf.common.resources import data_path

        path = str(data_path("config", "tasks.yaml"))
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    values = data.get(name, {}) or {}
    base = DEFAULT_TASK_CONFIGS[name]
    known = set(TaskConfig.__dataclass_fields__)
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown field(s) for task {name!r} in {path}: {sorted(unknown)}")
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return replace(base, **fields)


__all__ = ["TASK_NAMES", "EpisodeOutcome", "Task", "TaskConfig", "TaskState", "make_task", "load_task_config",
           "door_goal", "handle_point"]
