"""Episode reset of a ros2_control arm (ROS-free; the ``reset`` node wraps it): drive the arm to the episode's
start pose in joint space, then wait until the door is closed.

:class:`ResetMotion` is a state machine driven by the reset node's timer with the newest joint state, door
estimate and the steady-clock time (s). Units: s, rad, rad/s, rad/s^2::

    motion = ResetMotion(config, start_pose)
    motion.start(now)                                     # the collector called sim/reset
    cmd, phase = motion.step(now, q, qd, door_angle)      # every control period
    # phase: "moving" (send cmd), "door" (cmd zero: waiting for the door), "done", "failed" (motion.error)

Moving: a proportional velocity toward the start pose, ``gain * (q_start - q)``, clamped to
``max_velocity`` and changed by at most ``max_accel * T`` per period (``T`` = ``control_period_s``), and
slowed so that every joint can still brake to zero at ``max_accel`` before it reaches its target (no
overshoot). The arm is home when every joint is within ``position_tolerance`` and slower than
``velocity_tolerance``; after ``move_timeout_s`` the reset fails with the joints still off, by how much.
A leg that makes no progress for ``stall_s`` (the largest joint error shrinks by less than half of
``position_tolerance``) is blocked: the arm ran into something, typically the open door leaf swung into the
hook's way home. It then eases off (``BACKOFF_SPEED`` against its last command for ``BACKOFF_S``), holds
still for the rest of ``blocked_hold_s`` (a door closer, which acts on a still arm, or a person can clear the
way; :attr:`waiting_for` says so) and tries again, within the same ``move_timeout_s``.

**Retrace** (``retrace``: ``always``, ``when_blocked`` (default) or ``off``). Between resets the node
feeds every joint state to :meth:`ResetMotion.observe`, which keeps the way the arm went since the last
completed reset as a stack of joint-space waypoints ``retrace_spacing`` apart (a loop is cut where the arm
comes back within ``retrace_spacing`` of an earlier waypoint). A reset (``always``), or a leg found blocked
(``when_blocked``, instead of the ease-off and hold above), drives back along it, newest waypoint first,
at ``max_velocity`` on the largest joint (acceleration limited), popping each waypoint once within
``retrace_tolerance``; ``move_timeout_s`` counts from the last waypoint reached. Every waypoint is a state
the arm was in under the guard (joint limits, the hook-tip workspace box) and clear of what it did not run
into, so the way back stays inside what the guard allows and clear of fixed obstacles; the door may have
moved since. ``when_blocked`` keeps resets short (a straight leg where it is free:
``async_naf.bench.reset_soak`` measured median resets of 8 s this way and 15 s retracing every time). A
reset that fails keeps the waypoints not yet reached: the next call goes on from there.

Door tasks with a ``retreat_pose`` first drive there (hook clear of the door: straight to the start pose
the hook could drag the lever or catch under it), wait there for the door, then drive to the start pose.
Door tasks then wait (zero command) until the door-angle estimate says closed, ``|angle| <=
door_closed_angle`` for ``door_closed_hold_s`` (a door closer, the robot or a person closes it: :attr:`waiting_for`
says what is awaited, for the node to log); after ``door_timeout_s`` (0 = wait forever) the reset fails.
An estimate past closed (below ``-door_closed_angle``) counts as closed too: a door stops at its frame, so
such a reading is the estimator's error, which the zeroing after the reset removes (a door slammed shut by
the closer left an estimate of -0.079 rad with the door at 0.000, and the reset waited for ever: found with
``async_naf.bench.reset_soak`` and a greedy hardware-trained policy).
If a current estimate still says open ``door_clear_after_s`` into the wait at the retreat, the arm may be
what holds it open: a pull door that swung wider than the hook pulled it comes to rest on the forearm, and
the closer presses it there for ever (found with ``async_naf.bench.reset_soak`` and a trained policy: 3 of 3
seeds stuck within 20 episodes). The arm then drives to ``clear_pose``, out of the leaf's sweep, waits there
for the door, and comes back through the retreat pose to the start pose.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from async_naf.common.checks import integers, numbers
from async_naf.task.tasks import REACH_START_POSE, TASK_NAMES

PHASES = ("idle", "moving", "door", "done", "failed")
RETRACE_MODES = ("always", "when_blocked", "off")
BACKOFF_SPEED = 0.2  # a blocked arm first eases off at this joint speed, rad/s ...
BACKOFF_S = 0.5  # ... for this long (at most half of blocked_hold_s), s


@dataclass
class ResetConfig:
    """Parameters of the reset node (one per robot namespace).

    Attributes:
        task: task name; door tasks wait for the door to be closed after the motion.
        start_pose: joint-space start pose, rad (7 values, ARM_JOINT_NAMES order); empty = reach's start pose
            (door tasks: the graph fills in the inverse kinematics of the task's start pose).
        retreat_pose: door tasks: first drive here (hook clear of the door), wait there for the door to
            close, then drive to start_pose, rad (7 values); empty = straight to start_pose (the graph fills
            in the inverse kinematics of the start pose moved back and up).
        control_period_s: command period, s.
        gain: proportional gain toward the start pose, 1/s.
        max_velocity: joint speed limit while resetting, rad/s (all joints).
        max_accel: joint acceleration limit while resetting, rad/s^2 (all joints).
        position_tolerance: home when every joint is this close to the start pose, rad.
        velocity_tolerance: ... and slower than this, rad/s.
        move_timeout_s: the motion fails after this long, s.
        stall_s: a leg whose largest joint error shrinks by less than half of position_tolerance for this
            long is blocked, s.
        blocked_hold_s: a blocked arm holds still this long (a door closer or a person may clear the way),
            then tries again, s (0 = no hold: it keeps pushing until move_timeout_s).
        door_closed_angle: the door counts as closed when the estimate is at most this, rad (an estimate past
            closed, below 0, is the estimator's error: a door stops at its frame).
        door_closed_hold_s: ... for this long without interruption, s.
        door_timeout_s: wait at most this long for the door to close, s (0 = forever, logging what it waits for).
        door_stale_s: a door estimate older than this does not count, s.
        wait_log_period_s: how often the node logs what it waits for, s.
        use_moveit: plan the way home with moveit_py (where installed) instead of the joint-space motion.
        clear_pose: door tasks: where the arm waits for the door when it does not close at the first leg's
            pose within door_clear_after_s (out of the door leaf's sweep: an arm in it can hold the door open),
            rad (7 values); empty = no such move (the graph fills in the retreat pose turned about joint 1
            away from the hinge until the hook is clear of the leaf's sweep).
        door_clear_after_s: see clear_pose, s (0 = never move there).
        retrace: drive back along the way the arm went since the last completed reset: ``always`` (first),
            ``when_blocked`` (once a leg is found blocked) or ``off``.
        retrace_spacing: waypoints of that way are this far apart (largest joint), rad.
        retrace_tolerance: a waypoint counts as reached this close (largest joint), rad.
        retrace_max_points: at most this many waypoints are kept (the oldest dropped first).
    """

    task: str = "reach"
    start_pose: tuple[float, ...] = ()
    retreat_pose: tuple[float, ...] = ()
    control_period_s: float = 0.05
    gain: float = 2.0
    max_velocity: float = 0.5
    max_accel: float = 2.0
    position_tolerance: float = 0.01
    velocity_tolerance: float = 0.05
    move_timeout_s: float = 20.0
    stall_s: float = 1.5
    blocked_hold_s: float = 4.0
    door_closed_angle: float = 0.02
    door_closed_hold_s: float = 0.5
    door_timeout_s: float = 0.0
    door_stale_s: float = 0.5
    wait_log_period_s: float = 5.0
    use_moveit: bool = False
    clear_pose: tuple[float, ...] = ()
    door_clear_after_s: float = 5.0
    retrace: str = "when_blocked"
    retrace_spacing: float = 0.05
    retrace_tolerance: float = 0.05
    retrace_max_points: int = 2000

    def __post_init__(self) -> None:
        if self.task not in TASK_NAMES:
            raise ValueError(f"unknown task {self.task!r}; choose one of {', '.join(TASK_NAMES)}")
        numbers(self, ("control_period_s", "gain", "max_velocity", "max_accel", "position_tolerance",
                       "velocity_tolerance", "move_timeout_s", "door_closed_angle", "door_stale_s",
                       "wait_log_period_s", "stall_s", "retrace_spacing", "retrace_tolerance"), 0.0,
                low_open=True)
        integers(self, ("retrace_max_points",), 1, 1_000_000)
        if self.retrace not in RETRACE_MODES:
            raise ValueError(f"retrace must be one of {', '.join(RETRACE_MODES)}, got {self.retrace!r}")
        numbers(self, ("door_closed_hold_s", "door_timeout_s", "blocked_hold_s", "door_clear_after_s"), 0.0)
        pose = tuple(float(v) for v in self.start_pose)
        if pose and (len(pose) != 7 or not all(math.isfinite(v) for v in pose)):
            raise ValueError(f"start_pose must be empty or 7 finite joint angles (rad), got {pose}")
        self.start_pose = pose
        retreat = tuple(float(v) for v in self.retreat_pose)
        if retreat and (len(retreat) != 7 or not all(math.isfinite(v) for v in retreat)):
            raise ValueError(f"retreat_pose must be empty or 7 finite joint angles (rad), got {retreat}")
        self.retreat_pose = retreat
        clear = tuple(float(v) for v in self.clear_pose)
        if clear and (len(clear) != 7 or not all(math.isfinite(v) for v in clear)):
            raise ValueError(f"clear_pose must be empty or 7 finite joint angles (rad), got {clear}")
        self.clear_pose = clear

    @property
    def is_door(self) -> bool:
        return self.task != "reach"

    def resolved_start_pose(self) -> np.ndarray:
        """The start pose (7,) rad. Raises ValueError for a door task without one."""
        if self.start_pose:
            return np.array(self.start_pose)
        if self.is_door:
            raise ValueError(f"task {self.task}: start_pose must be set (7 joint angles, rad; the training graph "
                             "fills in the inverse kinematics of the task's start pose)")
        return np.array(REACH_START_POSE)


class ResetMotion:
    """See the module docstring.

    Attributes:
        phase: one of :data:`PHASES`.
        error: why the reset failed (phase ``failed``), else "".
        waiting_for: what the reset waits for now, for the node to log.
    """

    def __init__(self, config: ResetConfig, start_pose: np.ndarray | None = None) -> None:
        self.config = config
        self.start_target = np.array(start_pose if start_pose is not None else config.resolved_start_pose(),
                                     dtype=float)
        if self.start_target.shape != (7,) or not np.all(np.isfinite(self.start_target)):
            raise ValueError("start pose must be 7 finite joint angles (rad)")
        legs = [np.array(config.retreat_pose)] if config.retreat_pose and config.is_door else []
        self._base_legs = [*legs, self.start_target]  # the door wait follows the first leg
        self.legs = list(self._base_legs)
        self._clear = np.array(config.clear_pose) if config.clear_pose and config.is_door else None
        self.cleared = 0  # door waits moved to the clear pose (counted across resets)
        self.target = self.legs[0]
        self._leg = 0
        self._door_done = False
        self.phase = "idle"
        self.error = ""
        self.waiting_for = ""
        self._t0 = 0.0
        self._door_t0 = 0.0
        self._closed_since: float | None = None
        self._last_cmd = np.zeros(7)
        self._best_err = math.inf  # the leg's smallest largest-joint error so far, rad
        self._progress_t = 0.0  # when it last shrank by half of position_tolerance, s
        self._hold_until: float | None = None  # blocked: holding still until then, s
        self.blocked = 0  # legs found blocked (counted across resets)
        self._backoff = np.zeros(7)  # blocked: the ease-off velocity, rad/s, until _backoff_until, s
        self._backoff_until = 0.0
        self.path: list[np.ndarray] = []  # the way back: waypoints since the last completed reset, rad
        self._retracing = False
        self.retraced = 0  # waypoints reached while retracing (counted across resets)

    def observe(self, q: np.ndarray) -> None:
        """A joint state (7,) rad between resets: extend the way back (see the module docstring)."""
        if self.config.retrace == "off" or self.phase in ("moving", "door"):
            return
        q = np.asarray(q, dtype=float)
        if q.shape != (7,) or not np.all(np.isfinite(q)):
            return
        spacing, path = self.config.retrace_spacing, self.path
        if path and float(np.max(np.abs(q - path[-1]))) < spacing:
            return
        for k, p in enumerate(path):  # back near an earlier waypoint: the loop since then is not needed
            if float(np.max(np.abs(q - p))) < spacing:
                del path[k + 1:]
                return
        path.append(q.copy())
        if len(path) > self.config.retrace_max_points:
            del path[0]

    def start(self, now: float) -> None:
        """Begin a reset (the service was called) at steady time ``now``."""
        self.phase, self.error, self._t0 = "moving", "", now
        self.legs = list(self._base_legs)
        self._leg, self.target, self._door_done = 0, self.legs[0], not self.config.is_door
        self._retracing = bool(self.path) and self.config.retrace == "always"
        if self._retracing:
            self.target = self.path[-1]
        self._last_cmd = np.zeros(7)
        self._closed_since = None
        self._watch_progress(now)
        self.waiting_for = "the arm to retrace its way back" if self._retracing else "the arm to reach the start pose"

    def _watch_progress(self, now: float) -> None:
        """A new leg, or a new try after holding still: progress is measured from here."""
        self._best_err, self._progress_t, self._hold_until = math.inf, now, None

    def _hold_command(self, now: float) -> np.ndarray:
        """The command while blocked: the ease-off, then zero."""
        return self._backoff.copy() if now < self._backoff_until else np.zeros(7)

    def _blocked(self, now: float, err: np.ndarray) -> bool:
        """Whether the arm holds still now because the leg is blocked (see the module docstring)."""
        cfg = self.config
        if self._hold_until is not None:
            if now < self._hold_until:
                return True
            self._watch_progress(now)  # held long enough: try again, accelerating from rest
            self._last_cmd = np.zeros(7)
        worst = float(np.max(np.abs(err)))
        if worst < self._best_err - 0.5 * cfg.position_tolerance:
            self._best_err, self._progress_t = worst, now
        elif now - self._progress_t > cfg.stall_s and not self._retracing and self.path and \
                cfg.retrace == "when_blocked":
            self.blocked += 1  # back the way it came instead (see the module docstring)
            self._retracing, self.target, self._t0 = True, self.path[-1], now
            self._watch_progress(now)
            self._last_cmd = np.zeros(7)
            self.waiting_for = "the arm to retrace its way back (the straight way was blocked)"
            return False
        elif now - self._progress_t > cfg.stall_s and cfg.blocked_hold_s > 0.0:
            self.blocked += 1
            self._hold_until = now + cfg.blocked_hold_s
            # first ease off what pressed into the obstacle (a joint servo keeps pushing at zero velocity
            # while its target is ahead of the joint), then hold still
            self._backoff = -np.sign(self._last_cmd) * min(BACKOFF_SPEED, cfg.max_velocity)
            self._backoff_until = now + min(BACKOFF_S, 0.5 * cfg.blocked_hold_s)
            self._last_cmd = np.zeros(7)
            joint = int(np.argmax(np.abs(err))) + 1
            self.waiting_for = (f"the way to be clear: the arm is blocked (joint {joint} {worst:.3f} rad off), "
                                f"holding still {cfg.blocked_hold_s:g} s (a door closer or a person may clear it)")
            return True
        return False

    def _next_leg(self, now: float) -> tuple[np.ndarray, str]:
        """At a leg's target (and past the door wait): on to the next leg (its own timeout), or done."""
        if self._leg + 1 < len(self.legs):
            self._leg += 1
            self.target, self._t0, self.phase = self.legs[self._leg], now, "moving"
            self._watch_progress(now)
            self.waiting_for = "the arm to reach the start pose"
        else:
            self.phase, self.waiting_for = "done", ""
            self.path.clear()  # the way back starts here again
        return np.zeros(7), self.phase

    def _retrace_step(self, now: float, q: np.ndarray) -> None:
        """Retracing: pop the waypoints reached; after the last one, on to the first leg."""
        cfg = self.config
        reach = max(cfg.retrace_tolerance, cfg.max_velocity * cfg.control_period_s)
        while self.path and float(np.max(np.abs(self.path[-1] - q))) <= reach:
            self.path.pop()
            self.retraced += 1
            self._t0 = now  # move_timeout_s counts from the last waypoint reached
            self._watch_progress(now)
        if self.path:
            self.target = self.path[-1]
        else:
            self._retracing, self.target = False, self.legs[self._leg]
            self.waiting_for = "the arm to reach the start pose"

    def _retrace_command(self, q: np.ndarray) -> np.ndarray:
        """Toward the next waypoint along a straight joint-space line, the largest joint at ``max_velocity``,
        acceleration limited."""
        cfg = self.config
        err = self.target - q
        v = err * (cfg.max_velocity / max(float(np.max(np.abs(err))), 1e-9))
        v = np.clip(v, self._last_cmd - cfg.max_accel * cfg.control_period_s,
                    self._last_cmd + cfg.max_accel * cfg.control_period_s)
        self._last_cmd = v
        return v.copy()

    def _fail(self, text: str) -> tuple[np.ndarray, str]:
        self.phase, self.error = "failed", text
        self._last_cmd = np.zeros(7)
        return np.zeros(7), self.phase

    def command(self, q: np.ndarray) -> np.ndarray:
        """The next joint velocity toward the start pose (velocity, acceleration and braking limited)."""
        cfg = self.config
        T, a = cfg.control_period_s, cfg.max_accel
        err = self.target - q
        v = np.clip(cfg.gain * err, -cfg.max_velocity, cfg.max_velocity)
        # brake in time: the speed toward the target may not exceed what stops within the remaining distance
        brake = a * (np.sqrt(T * T + 2.0 * np.abs(err) / a) - T)
        v = np.clip(v, -brake, brake)
        v = np.clip(v, self._last_cmd - a * T, self._last_cmd + a * T)
        self._last_cmd = v
        return v.copy()

    def step(self, now: float, q: np.ndarray | None, qd: np.ndarray | None,
             door_angle: float | None = None, door_age_s: float = 0.0) -> tuple[np.ndarray, str]:
        """One control period: (command (7,) rad/s, phase). ``q``/``qd`` None = no joint state yet;
        ``door_angle`` None = no estimate yet; ``door_age_s`` = age of the estimate, s."""
        cfg = self.config
        if self.phase in ("idle", "done", "failed"):
            return np.zeros(7), self.phase
        if self.phase == "moving":
            if now - self._t0 > cfg.move_timeout_s:
                if q is None:
                    return self._fail(f"no joint states within move_timeout_s = {cfg.move_timeout_s:g} s")
                off = np.abs(self.target - q)
                joints = ", ".join(f"joint {i + 1}: {off[i]:.3f} rad" for i in np.flatnonzero(
                    off > cfg.position_tolerance))
                off = joints or "still moving"
                if self._retracing:
                    off = f"retracing the way it came; its next waypoint: {off}"
                return self._fail(f"the arm did not reach the start pose within move_timeout_s = "
                                  f"{cfg.move_timeout_s:g} s ({off})")
            if q is None or qd is None:
                self.waiting_for = "joint states"
                return np.zeros(7), self.phase
            if self._retracing:
                self._retrace_step(now, q)
            if self._retracing:
                if self._blocked(now, self.target - q):
                    return self._hold_command(now), self.phase
                self.waiting_for = "the arm to retrace its way back"
                return self._retrace_command(q), self.phase
            if np.all(np.abs(self.target - q) <= cfg.position_tolerance) and \
                    np.all(np.abs(qd) <= cfg.velocity_tolerance):
                self._last_cmd = np.zeros(7)
                if self._door_done:
                    return self._next_leg(now)
                self.phase, self._door_t0 = "door", now  # and on to the door check below
            else:
                if self._blocked(now, self.target - q):
                    return self._hold_command(now), self.phase
                if self._retracing:  # blocked: back the way it came
                    return self._retrace_command(q), self.phase
                self.waiting_for = "the arm to reach the start pose"
                return self.command(q), self.phase
        # door: hold still until the door is closed
        if cfg.door_timeout_s > 0 and now - self._door_t0 > cfg.door_timeout_s:
            return self._fail(f"the door was not closed within door_timeout_s = {cfg.door_timeout_s:g} s "
                              f"(last estimate: {'none' if door_angle is None else f'{door_angle:.3f} rad'})")
        if self._clear is not None and cfg.door_clear_after_s > 0 and self._leg == 0 and \
                now - self._door_t0 > cfg.door_clear_after_s and door_angle is not None and \
                door_age_s <= cfg.door_stale_s and door_angle > cfg.door_closed_angle:
            # the door does not close here: the arm may hold it open (a leaf swung around the arm rests on
            # it). Wait out of the door's way, then come back through the first leg's pose.
            self.cleared += 1
            self.legs = [self.legs[0], self._clear, *self.legs]
            self._leg, self.target, self._t0, self.phase = 1, self._clear, now, "moving"
            self._watch_progress(now)
            self.waiting_for = "the arm to reach the clear pose (the door did not close at the retreat)"
            return np.zeros(7), self.phase
        if door_angle is None or door_age_s > cfg.door_stale_s:
            self._closed_since = None
            self.waiting_for = "a current door-angle estimate (door_angle node, door/joint_states)"
        elif door_angle > cfg.door_closed_angle:  # past closed counts as closed (the module docstring)
            self._closed_since = None
            self.waiting_for = (f"the door to be closed (estimate {door_angle:.3f} rad, closed within "
                                f"{cfg.door_closed_angle:g} rad): a door closer, the robot or a person")
        else:
            if self._closed_since is None:
                self._closed_since = now
            if now - self._closed_since >= cfg.door_closed_hold_s:
                self._door_done = True
                return self._next_leg(now)
            else:
                self.waiting_for = f"the door to stay closed for {cfg.door_closed_hold_s:g} s"
        return np.zeros(7), self.phase
