"""The safety layer every joint-velocity command passes before the arm (ROS-free; the ``guard`` node wraps it).

:class:`SafetyFilter` takes the command the policy wants, the newest joint state and the time (steady clock,
s), and answers with the command the arm may get. Units: s, rad, rad/s, rad/s^2, m.

Rules, in order (each intervention is counted in :attr:`SafetyFilter.counts`):

1. **E-stop** (latched): while set, zero. It stays set until :meth:`release` is called; a new command does
   not release it (``estop``).
2. **Watchdog**: no command for ``command_timeout_s`` or no joint state for ``state_timeout_s`` -> zero
   (``watchdog_command`` / ``watchdog_state``). The node calls :meth:`tick` every ``control_period_s / 4``,
   so the arm gets zero at most a quarter period after the timeout, whatever the policy does.
3. Non-finite or wrongly sized commands -> zero (``bad_command``).
4. **Velocity limits**: clamped to +-``velocity_limits`` (``velocity_clamped``).
5. **Position limits with braking distance**: a velocity ``v`` toward a limit at distance ``d`` (after
   ``position_margin``) is allowed only if the arm, holding ``v`` for one control period ``T`` and then
   braking at the acceleration limit ``a``, stops before the limit: ``v*T + v^2/(2a) <= d``, i.e.
   ``v <= a*(sqrt(T^2 + 2d/a) - T)``; at or past a limit only motion away from it is allowed
   (``position_limited``).
6. **Acceleration limits**: ``|v - v_prev| <= a*T`` against the previous output (``accel_limited``). Where
   the position rule leaves no acceleration-feasible value (a state the arm could only reach by not tracking
   its commands, e.g. after a collision), the position rule wins (``accel_override``).
7. **Workspace box** of the hook tip (forward kinematics ``fk``): the tip predicted one control period ahead,
   ``fk(q + v*T)``, must stay in the box; outside the box only commands that do not move the tip further out
   are passed (``workspace_scaled``). A command that would leave it is first changed as little as possible
   so that the tip slides along the box's face instead (the outward part of the tip's motion removed
   through the damped pseudo-inverse of the tip Jacobian, by finite differences of ``fk``; a linearised
   control-barrier safety filter), then held to rules 4-6 again; whatever still leaves the box is scaled
   down (bisection on ``s`` in [0, 1], zero included). Scaling alone stalls any motion that grazes a face,
   an arm driven back home along the way it came among them. Scaling toward zero can exceed the
   acceleration limit: counted as ``accel_override`` too (safety of position first).

E-stop and watchdog stops are immediate (a category-0 style stop at the command level): they ignore the
acceleration limit on purpose, as the issue asks for zero velocity within one control period.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from async_naf.common.checks import numbers
from async_naf.common.publishers import PublisherWatchConfig
from async_naf.wire.joints import plausible

N_JOINTS = 7
JACOBIAN_STEP_RAD = 1e-5  # finite-difference step of the tip Jacobian, rad
SLIDE_ITERS = 3  # Gauss-Newton steps that slide a command along the workspace box's face
SLIDE_DAMPING = 1e-6  # damping of the pseudo-inverse, m^2
SLIDE_MARGIN_M = 1e-4  # slide to this far inside the face, m


def _seven(name: str, values: tuple[float, ...], positive: bool) -> tuple[float, ...]:
    vals = tuple(float(v) for v in values)
    if vals and (len(vals) != N_JOINTS or not all(math.isfinite(v) and (v > 0 or not positive) for v in vals)):
        raise ValueError(f"{name} must be empty or {N_JOINTS} finite values{' > 0' if positive else ''}, got {vals}")
    return vals


@dataclass
class SafetyConfig:
    """Parameters of the safety layer (the ``guard`` node, one per robot namespace).

    Attributes:
        control_period_s: control period T: commands are assumed held this long, s.
        command_timeout_s: no command for this long -> zero velocity (watchdog), s.
        state_timeout_s: no joint state for this long -> zero velocity (watchdog), s.
        velocity_limits: per-joint velocity limits, rad/s (7 values, ARM_JOINT_NAMES order); empty = the
            URDF's limits.
        accel_limits: per-joint acceleration limits, rad/s^2 (7 values); also the braking deceleration.
        lower_limits: per-joint lower position limits, rad (7 values); empty = the URDF's limits.
        upper_limits: per-joint upper position limits, rad (7 values); empty = the URDF's limits.
        position_margin: stop this far inside each position limit, rad.
        workspace_min: hook-tip workspace box, lower corner (x, y, z) in the arm base frame, m.
        workspace_max: hook-tip workspace box, upper corner (x, y, z), m.
        workspace_check: predict the hook tip with forward kinematics and keep it in the box.
        estop_at_start: start e-stopped (a real arm: moves only after an explicit release).
        publisher_watch: the unknown-publisher alarm on the commands (``guard/commands_in``) (``/diagnostics``
            ``<node>/publishers``; :mod:`async_naf.common.publishers`).
    """

    control_period_s: float = 0.05
    command_timeout_s: float = 0.1
    state_timeout_s: float = 0.1
    velocity_limits: tuple[float, ...] = ()
    accel_limits: tuple[float, ...] = (10.0, 10.0, 10.0, 10.0, 15.0, 15.0, 20.0)
    lower_limits: tuple[float, ...] = ()
    upper_limits: tuple[float, ...] = ()
    position_margin: float = 0.02
    workspace_min: tuple[float, ...] = (0.1, -0.8, 0.05)  # the door cell: hook start at (0.85, -0.1, 0.63)
    workspace_max: tuple[float, ...] = (1.4, 0.8, 1.5)  # a pushed door's handle moves beyond x = 1.1
    workspace_check: bool = True
    estop_at_start: bool = False
    publisher_watch: PublisherWatchConfig = field(default_factory=PublisherWatchConfig)

    def __post_init__(self) -> None:
        numbers(self, ("control_period_s", "command_timeout_s", "state_timeout_s"), 0.0, low_open=True)
        numbers(self, ("position_margin",), 0.0)
        self.velocity_limits = _seven("velocity_limits", self.velocity_limits, True)
        self.accel_limits = _seven("accel_limits", self.accel_limits, True)
        if not self.accel_limits:
            raise ValueError("accel_limits must be 7 finite values > 0 (rad/s^2)")
        self.lower_limits = _seven("lower_limits", self.lower_limits, False)
        self.upper_limits = _seven("upper_limits", self.upper_limits, False)
        if self.lower_limits and self.upper_limits and not all(
                lo + 2 * self.position_margin < hi for lo, hi in zip(self.lower_limits, self.upper_limits)):
            raise ValueError("lower_limits + 2 * position_margin must be below upper_limits for every joint")
        lo_box = tuple(float(v) for v in self.workspace_min)
        hi_box = tuple(float(v) for v in self.workspace_max)
        if len(lo_box) != 3 or len(hi_box) != 3 or not all(
                math.isfinite(a) and math.isfinite(b) and a < b for a, b in zip(lo_box, hi_box)):
            raise ValueError(f"workspace_min < workspace_max must be 3 finite values each (m), got {lo_box}, {hi_box}")
        self.workspace_min, self.workspace_max = lo_box, hi_box


def braking_speed(distance: np.ndarray, accel: np.ndarray, period: float) -> np.ndarray:
    """Largest speed (>= 0) that, held for ``period`` and then braked at ``accel``, stops within ``distance``:
    ``v*T + v^2/(2a) <= d``; 0 where ``distance <= 0``."""
    d = np.maximum(distance, 0.0)
    return accel * (np.sqrt(period * period + 2.0 * d / accel) - period)


def box_excess(p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """How far (m, Euclidean) point ``p`` lies outside the box [lo, hi]; 0 inside."""
    return float(np.linalg.norm(np.maximum(lo - p, 0.0) + np.maximum(p - hi, 0.0)))


class SafetyFilter:
    """See the module docstring.

    Args:
        config: the limits (position and velocity limits must be filled in: see :meth:`with_limits`).
        fk: hook-tip position (3,) m for joint angles (7,) rad; None disables the workspace rule.

    Attributes:
        counts: interventions by rule (estop, watchdog_command, watchdog_state, bad_command, velocity_clamped,
            position_limited, accel_limited, accel_override, workspace_scaled), plus ``commands`` filtered.
        estopped: the e-stop is latched.
        last_output: the previous command sent to the arm (7,) rad/s.
    """

    WORKSPACE_ITERS = 12

    def __init__(self, config: SafetyConfig, fk: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        if not (config.velocity_limits and config.lower_limits and config.upper_limits):
            raise ValueError("SafetyFilter needs velocity_limits, lower_limits and upper_limits (7 values each)")
        self.config = config
        self.fk = fk if config.workspace_check else None
        self.vmax = np.array(config.velocity_limits)
        self.amax = np.array(config.accel_limits)
        self.lower = np.array(config.lower_limits) + config.position_margin
        self.upper = np.array(config.upper_limits) - config.position_margin
        self.box_lo = np.array(config.workspace_min)
        self.box_hi = np.array(config.workspace_max)
        self.counts: Counter[str] = Counter()
        self.estopped = bool(config.estop_at_start)
        self.last_output = np.zeros(N_JOINTS)
        self.q: np.ndarray | None = None
        self.state_time: float | None = None
        self.command_time: float | None = None

    @staticmethod
    def with_limits(config: SafetyConfig, lower: np.ndarray, upper: np.ndarray,
                    velocity: np.ndarray) -> SafetyConfig:
        """``config`` with its empty limits filled from the robot model (URDF)."""
        from dataclasses import replace

        return replace(config,
                       lower_limits=config.lower_limits or tuple(float(v) for v in lower),
                       upper_limits=config.upper_limits or tuple(float(v) for v in upper),
                       velocity_limits=config.velocity_limits or tuple(float(v) for v in velocity))

    # ------------------------------------------------------------------ e-stop
    def estop(self) -> np.ndarray:
        """Latch the e-stop; returns the zero command to send now."""
        if not self.estopped:
            self.counts["estop"] += 1
        self.estopped = True
        return self._zero()

    def release(self) -> None:
        """Release the e-stop (explicitly; nothing else does). The next command starts from rest."""
        self.estopped = False
        self.last_output = np.zeros(N_JOINTS)

    # ------------------------------------------------------------------ inputs
    def on_joint_state(self, q: np.ndarray, now: float) -> None:
        """A new joint state (7,) rad at steady time ``now``; non-finite ones, and ones beyond
        :data:`~async_naf.wire.joints.ARM_VALUE_MAX`, are ignored (the watchdog then trips when states stay
        missing)."""
        q = np.asarray(q, dtype=float)
        if q.shape == (N_JOINTS,) and plausible(q):  # finite, and no corrupt 1e300
            self.q = q.copy()
            self.state_time = now
        else:
            self.counts["bad_state"] += 1

    def _zero(self) -> np.ndarray:
        self.last_output = np.zeros(N_JOINTS)
        return self.last_output.copy()

    def _watchdog(self, now: float) -> str | None:
        cfg = self.config
        if self.state_time is None or now - self.state_time > cfg.state_timeout_s:
            return "watchdog_state"
        if self.command_time is None or now - self.command_time > cfg.command_timeout_s:
            return "watchdog_command"
        return None

    def stopped(self, now: float) -> bool:
        """The e-stop is latched or the watchdog would stop the arm at ``now`` (no side effects)."""
        return self.estopped or self._watchdog(now) is not None

    def tick(self, now: float) -> np.ndarray | None:
        """Watchdog check (call every ``control_period_s / 4`` at least): a zero command to send while the
        e-stop is latched or the policy or joint states are silent (re-sent on every tick: a lost message must
        not leave the arm moving; a trip is counted once per stop), None while all is well."""
        if self.estopped:
            return self._zero()
        trip = self._watchdog(now)
        if trip is None:
            return None
        if (self.last_output != 0.0).any():
            self.counts[trip] += 1
        return self._zero()

    def filter(self, command: np.ndarray, now: float) -> np.ndarray:
        """The command the arm may get for the policy's ``command`` (7,) rad/s received at ``now``."""
        self.counts["commands"] += 1
        self.command_time = now
        if self.estopped:
            return self._zero()
        trip = self._watchdog(now)
        if trip is not None:  # here only stale joint states (a command just arrived)
            self.counts[trip] += 1
            return self._zero()
        v = np.asarray(command, dtype=float)
        if v.shape != (N_JOINTS,) or not plausible(v):  # NaN, Inf, or a corrupt 1e39: zero, not the limit
            self.counts["bad_command"] += 1
            return self._zero()
        assert self.q is not None
        out = self.limit(self.q, v, self.last_output)
        self.last_output = out
        return out.copy()

    # ------------------------------------------------------------------ the limits (pure)
    def position_bounds(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-joint velocity interval [lo, hi] (rad/s) allowed by the velocity and braking rules at ``q``."""
        T = self.config.control_period_s
        hi = np.minimum(self.vmax, braking_speed(self.upper - q, self.amax, T))
        lo = -np.minimum(self.vmax, braking_speed(q - self.lower, self.amax, T))
        return lo, hi

    def limit(self, q: np.ndarray, v: np.ndarray, v_prev: np.ndarray) -> np.ndarray:
        """Apply rules 4-7 to command ``v`` at joint angles ``q`` after previous output ``v_prev``."""
        clamped = np.clip(v, -self.vmax, self.vmax)
        if (clamped != v).any():
            self.counts["velocity_clamped"] += 1
        lo, hi = self.position_bounds(q)
        out = np.clip(clamped, lo, hi)
        if (out != clamped).any():
            self.counts["position_limited"] += 1
        limited, empty = self._accel_window(out, v_prev, lo, hi)
        if np.any(empty):
            self.counts["accel_override"] += 1
        if (limited[~empty] != out[~empty]).any():
            self.counts["accel_limited"] += 1
        out = limited
        if self.fk is not None:
            out = self._workspace(q, out, v_prev, lo, hi)
        return out

    def _accel_window(self, v: np.ndarray, v_prev: np.ndarray, lo: np.ndarray,
                      hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rule 6 for ``v`` (already within the position bounds [lo, hi]): (the command, the joints where the
        position rule left no acceleration-feasible value and won: the safe value nearest the window)."""
        T = self.config.control_period_s
        a_lo, a_hi = v_prev - self.amax * T, v_prev + self.amax * T
        feasible_lo, feasible_hi = np.maximum(lo, a_lo), np.minimum(hi, a_hi)
        empty = feasible_lo > feasible_hi
        nearest = np.clip(np.where(a_lo > hi, hi, lo), lo, hi)
        return np.where(empty, nearest, np.clip(v, feasible_lo, feasible_hi)), empty

    def _slide(self, q: np.ndarray, p: np.ndarray, v: np.ndarray) -> np.ndarray:
        """``v`` with the part removed that carries the tip out of the box (see rule 7), rad/s."""
        assert self.fk is not None
        T = self.config.control_period_s
        # where each coordinate may go: the face, or where it is now if it is already outside
        lo_b, hi_b = np.minimum(self.box_lo, p) + SLIDE_MARGIN_M, np.maximum(self.box_hi, p) - SLIDE_MARGIN_M
        J = np.empty((3, N_JOINTS))
        for j in range(N_JOINTS):
            dq = np.zeros(N_JOINTS)
            dq[j] = JACOBIAN_STEP_RAD
            J[:, j] = (self.fk(q + dq) - p) / JACOBIAN_STEP_RAD
        w = v.copy()
        for _ in range(SLIDE_ITERS):
            p1 = self.fk(q + w * T)
            over = np.where(p1 < lo_b, p1 - lo_b, np.where(p1 > hi_b, p1 - hi_b, 0.0))
            rows = np.flatnonzero(over)
            if rows.size == 0:
                break
            Jr = J[rows]
            w = w - Jr.T @ np.linalg.solve(Jr @ Jr.T + SLIDE_DAMPING * np.eye(rows.size), over[rows]) / T
        return w

    def _workspace(self, q: np.ndarray, v: np.ndarray, v_prev: np.ndarray,
                   lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        assert self.fk is not None
        T = self.config.control_period_s
        p = self.fk(q)
        allowed = box_excess(p, self.box_lo, self.box_hi)

        def ok(s: float) -> bool:
            assert self.fk is not None
            return box_excess(self.fk(q + s * v * T), self.box_lo, self.box_hi) <= allowed + 1e-9

        if not np.any(v) or ok(1.0):
            return v
        slid = self._accel_window(np.clip(self._slide(q, p, v), lo, hi), v_prev, lo, hi)[0]  # rules 4-6 again
        if np.all(np.isfinite(slid)):
            v = slid  # the bisection below scales this one if it still leaves the box
            if ok(1.0):
                self.counts["workspace_scaled"] += 1
                return v
        good, bad = 0.0, 1.0
        for _ in range(self.WORKSPACE_ITERS):
            mid = 0.5 * (good + bad)
            if ok(mid):
                good = mid
            else:
                bad = mid
        self.counts["workspace_scaled"] += 1
        out = good * v
        if np.any(np.abs(out - v_prev) > self.amax * T + 1e-12):
            self.counts["accel_override"] += 1
        return out
