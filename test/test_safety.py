"""The safety layer (async_naf/acting/safety.py), ROS-free: property tests (hypothesis) that every output
respects every limit for any state and any command, and e-stop / watchdog stops with times chosen by the test."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from async_naf.acting.safety import SafetyConfig, SafetyFilter, box_excess, braking_speed

LOWER = np.array([-2.9, -2.0, -2.9, -2.0, -2.9, -2.0, -3.0])
UPPER = -LOWER
VMAX = np.array([1.5, 1.5, 1.7, 1.3, 2.2, 2.3, 2.3])
T = 0.05
EPS = 1e-9


def _config(**kw: object) -> SafetyConfig:
    base = SafetyConfig(control_period_s=T, workspace_check=False)
    return SafetyFilter.with_limits(SafetyConfig(**{**base.__dict__, **kw}), LOWER, UPPER, VMAX)


def _fk(q: np.ndarray) -> np.ndarray:
    """A planar-ish 3-link chain standing in for the arm (fast; the URDF arm is tested below)."""
    a = np.cumsum(q[:3])
    r = 0.4 * np.cos(a[0]) + 0.3 * np.cos(a[1]) + 0.2 * np.cos(a[2])
    return np.array([r * np.cos(q[3]), r * np.sin(q[3]), 0.5 + 0.3 * np.sin(a[1]) + 0.1 * q[4]])


floats = st.floats(min_value=-1.0, max_value=1.0, allow_nan=False)
seven = st.lists(floats, min_size=7, max_size=7).map(np.array)
command = st.lists(st.floats(min_value=-50.0, max_value=50.0, allow_nan=False), min_size=7, max_size=7).map(np.array)


def _state(u: np.ndarray) -> np.ndarray:
    """Joint angles from u in [-1, 1]: within the limits and up to 0.1 rad past them."""
    return u * (UPPER + 0.1)


def _check_position(flt: SafetyFilter, q: np.ndarray, out: np.ndarray) -> None:
    a = flt.amax
    lower, upper = flt.lower, flt.upper
    # moving toward a limit: it can stop before it (hold for T, then brake at a)
    toward_up = out > 0
    travel = out * T + out * out / (2 * a)
    assert np.all(~toward_up | (q + travel <= upper + 1e-7)), (q, out)
    toward_lo = out < 0
    assert np.all(~toward_lo | (q + (out * T - out * out / (2 * a)) >= lower - 1e-7)), (q, out)


@settings(max_examples=400, deadline=None)
@given(u=seven, v=command, prev_u=seven)
def test_any_state_any_command_respects_velocity_position_and_acceleration_limits(
        u: np.ndarray, v: np.ndarray, prev_u: np.ndarray) -> None:
    flt = SafetyFilter(_config())
    q, v_prev = _state(u), prev_u * flt.vmax
    before = flt.counts["accel_override"]
    out = flt.limit(q, v, v_prev)
    assert out.shape == (7,) and np.all(np.isfinite(out))
    assert np.all(np.abs(out) <= flt.vmax + EPS)
    _check_position(flt, q, out)
    accel_ok = np.all(np.abs(out - v_prev) <= flt.amax * T + EPS)
    if not accel_ok:
        # only where no acceleration-feasible value was safe: the override is counted, and the output is
        # the safe bound nearest to the acceleration interval
        assert flt.counts["accel_override"] == before + 1
        lo, hi = flt.position_bounds(q)
        infeasible = (v_prev - flt.amax * T > hi + EPS) | (v_prev + flt.amax * T < lo - EPS)
        bad = np.abs(out - v_prev) > flt.amax * T + EPS
        assert np.all(infeasible[bad])


@settings(max_examples=300, deadline=None)
@given(u=seven, v=command)
def test_a_command_from_rest_inside_the_limits_is_only_acceleration_limited(u: np.ndarray, v: np.ndarray) -> None:
    """From rest, zero is always feasible: no override, acceleration limit always kept."""
    flt = SafetyFilter(_config())
    out = flt.limit(_state(u), v, np.zeros(7))
    assert np.all(np.abs(out) <= flt.amax * T + EPS)
    assert flt.counts["accel_override"] == 0


@settings(max_examples=300, deadline=None)
@given(u=seven, v=command, prev_u=seven)
def test_the_hook_tip_stays_in_the_workspace_box_or_does_not_move_further_out(
        u: np.ndarray, v: np.ndarray, prev_u: np.ndarray) -> None:
    cfg = _config(workspace_check=True, workspace_min=(0.0, -0.5, 0.3), workspace_max=(0.8, 0.5, 0.9))
    flt = SafetyFilter(cfg, fk=_fk)
    q = _state(u)
    out = flt.limit(q, v, prev_u * flt.vmax)
    lo, hi = np.array(cfg.workspace_min), np.array(cfg.workspace_max)
    now_out = box_excess(_fk(q), lo, hi)
    assert box_excess(_fk(q + out * T), lo, hi) <= now_out + 1e-8
    assert np.all(np.abs(out) <= flt.vmax + EPS)
    _check_position(flt, q, out)


def test_workspace_rule_scales_a_command_that_would_leave_the_box() -> None:
    cfg = _config(workspace_check=True, workspace_min=(0.0, -0.5, 0.3), workspace_max=(0.8, 0.5, 0.9),
                  accel_limits=(100.0,) * 7)
    flt = SafetyFilter(cfg, fk=_fk)
    q = np.zeros(7)  # straight: tip at x = 0.9 > 0.8
    q[1] = 0.7  # bend in: tip at x = 0.782, inside
    assert box_excess(_fk(q), np.array(cfg.workspace_min), np.array(cfg.workspace_max)) == 0.0
    v = np.zeros(7)
    v[1] = -1.5  # straighten: the tip would reach x = 0.806
    out = flt.limit(q, v, v)
    assert 0.0 <= out[1] / v[1] < 1.0 and flt.counts["workspace_scaled"] == 1
    assert box_excess(_fk(q + out * T), np.array(cfg.workspace_min), np.array(cfg.workspace_max)) <= 1e-9


def test_braking_speed_stops_exactly_at_the_distance() -> None:
    d, a = np.array([0.0, 0.01, 0.5, -0.3]), np.array([10.0, 10.0, 10.0, 10.0])
    v = braking_speed(d, a, T)
    assert v[0] == 0.0 and v[3] == 0.0
    np.testing.assert_allclose(v[1:3] * T + v[1:3] ** 2 / (2 * a[1:3]), d[1:3], rtol=1e-12)


def test_a_joint_at_its_limit_may_only_move_away() -> None:
    flt = SafetyFilter(_config())
    q = flt.upper.copy()
    out = flt.limit(q, np.full(7, 0.4), np.full(7, 0.4))
    assert np.all(out <= 0.0)
    out = flt.limit(q, np.full(7, -0.4), np.full(7, -0.4))
    np.testing.assert_allclose(out, -0.4)


def test_estop_is_latched_and_zero_from_the_next_control_instant() -> None:
    flt = SafetyFilter(_config())
    flt.on_joint_state(np.zeros(7), 0.0)
    assert np.any(flt.filter(np.full(7, 0.3), 0.0) != 0.0)
    np.testing.assert_array_equal(flt.estop(), np.zeros(7))  # the node publishes this at once
    for t in (0.01, 0.02, 0.05, 1.0, 10.0):  # commands keep coming: still zero, never released by them
        flt.on_joint_state(np.zeros(7), t)
        np.testing.assert_array_equal(flt.filter(np.full(7, 0.3), t), np.zeros(7))
        np.testing.assert_array_equal(flt.tick(t), np.zeros(7))
    assert flt.counts["estop"] == 1
    flt.release()
    flt.on_joint_state(np.zeros(7), 10.01)
    out = flt.filter(np.full(7, 0.3), 10.01)
    assert np.all(out > 0.0) and np.all(out <= flt.amax * T + EPS)  # from rest, acceleration limited


def test_estop_at_start_holds_until_released() -> None:
    flt = SafetyFilter(_config(estop_at_start=True))
    flt.on_joint_state(np.zeros(7), 0.0)
    np.testing.assert_array_equal(flt.filter(np.full(7, 0.3), 0.0), np.zeros(7))
    flt.release()
    assert np.any(flt.filter(np.full(7, 0.3), 0.01) != 0.0)


@pytest.mark.parametrize("silent", ["policy", "joint_states"])
def test_watchdog_zero_within_one_control_period_of_the_timeout(silent: str) -> None:
    """The node ticks every T/4: the first tick after the timeout sends zero; before it, nothing."""
    cfg = _config()
    flt = SafetyFilter(cfg)
    t = 0.0
    while t < 1.0:  # a healthy stream: commands and states every period
        flt.on_joint_state(np.zeros(7), t)
        assert np.any(flt.filter(np.full(7, 0.2), t) != 0.0)
        assert flt.tick(t + T / 4) is None
        t += T
    last = t - T
    ticks = [last + k * T / 4 for k in range(1, 20)]
    first_zero = None
    for now in ticks:
        if silent == "policy":
            flt.on_joint_state(np.zeros(7), now)  # states keep coming, commands stop
        out = flt.tick(now)
        if out is not None and first_zero is None:
            first_zero = now
            np.testing.assert_array_equal(out, np.zeros(7))
    timeout = cfg.command_timeout_s if silent == "policy" else cfg.state_timeout_s
    assert first_zero is not None
    assert timeout < first_zero - last <= timeout + T / 4 + 1e-12
    key = "watchdog_command" if silent == "policy" else "watchdog_state"
    assert flt.counts[key] == 1  # counted once per stop, zero re-sent on every tick


def test_commands_before_any_joint_state_and_bad_commands_are_zero() -> None:
    flt = SafetyFilter(_config())
    np.testing.assert_array_equal(flt.filter(np.full(7, 0.3), 0.0), np.zeros(7))
    assert flt.counts["watchdog_state"] == 1
    flt.on_joint_state(np.zeros(7), 0.0)
    np.testing.assert_array_equal(flt.filter(np.array([np.nan] * 7), 0.0), np.zeros(7))
    np.testing.assert_array_equal(flt.filter(np.zeros(3), 0.0), np.zeros(7))
    assert flt.counts["bad_command"] == 2
    flt.on_joint_state(np.array([np.inf] * 7), 0.01)
    assert flt.counts["bad_state"] == 1 and flt.state_time == 0.0
    # finite but absurd (a corrupt message): a command of 1e39 is stopped, not driven at the velocity limit;
    # a joint state of 1e300 rad is no state of the arm
    np.testing.assert_array_equal(flt.filter(np.full(7, 1e39), 0.0), np.zeros(7))
    np.testing.assert_array_equal(flt.filter(np.full(7, -1e300), 0.0), np.zeros(7))
    assert flt.counts["bad_command"] == 4 and flt.counts["velocity_clamped"] == 0
    flt.on_joint_state(np.array([0.0, 0.0, 0.0, 1e300, 0.0, 0.0, 0.0]), 0.02)
    assert flt.counts["bad_state"] == 2 and flt.state_time == 0.0


def test_joint_index_refuses_a_missing_or_twice_named_joint() -> None:
    """The arm joints of a JointState: a joint named twice (its copy NaN, or another angle) made the guard and
    the reset node read the first copy and the policy act on it."""
    from async_naf.wire.joints import joint_index

    arm = ("j1", "j2", "j3")
    np.testing.assert_array_equal(joint_index(("x", "j3", "j1", "j2"), arm), [2, 3, 1])
    assert joint_index(("j1", "j2"), arm) is None
    assert joint_index(("j1", "j2", "j3", "j1"), arm) is None
    assert joint_index(("j2", "j1", "j2", "j3"), arm) is None
    assert joint_index(("j1", "j2", "j3", "other", "other"), arm) is not None  # not an arm joint: not ours to judge


@pytest.mark.parametrize("kw", [dict(control_period_s=0.0), dict(accel_limits=(1.0,) * 6),
                                dict(accel_limits=()), dict(velocity_limits=(1.0, -1.0, 1, 1, 1, 1, 1)),
                                dict(workspace_min=(1.0, 0.0, 0.0), workspace_max=(0.5, 1.0, 1.0)),
                                dict(lower_limits=(0.0,) * 7, upper_limits=(0.01,) * 7)])
def test_bad_config_is_refused(kw: dict) -> None:
    with pytest.raises(ValueError):
        SafetyConfig(**kw)  # type: ignore[arg-type]


def test_filter_needs_the_limits() -> None:
    with pytest.raises(ValueError, match="limits"):
        SafetyFilter(SafetyConfig())


def test_with_the_urdf_arm_the_tip_stays_in_the_box() -> None:
    """The real forward kinematics (pinocchio on the project's URDF) from the reach start pose."""
    pytest.importorskip("pinocchio")
    from async_naf.task.kinematics import ArmKinematics
    from async_naf.task.tasks import REACH_START_POSE

    kin = ArmKinematics()
    cfg = SafetyFilter.with_limits(SafetyConfig(control_period_s=T, workspace_max=(0.56, 0.6, 1.2)),
                                   kin.lower, kin.upper, kin.velocity_limits)
    flt = SafetyFilter(cfg, fk=kin.ee_position)
    q = np.array(REACH_START_POSE)  # tip at x = 0.5535, 6.5 mm inside the box's x face
    rng = np.random.default_rng(0)
    lo, hi = np.array(cfg.workspace_min), np.array(cfg.workspace_max)
    prev = np.zeros(7)
    for _ in range(200):
        flt.on_joint_state(q, 0.0)
        out = flt.limit(q, rng.normal(0, 1.0, 7), prev)
        q = q + out * T
        prev = out
        assert box_excess(kin.ee_position(q), lo, hi) <= 1e-9
    assert flt.counts["workspace_scaled"] > 0


def test_a_command_grazing_the_box_face_slides_along_it_instead_of_stopping() -> None:
    """Rule 7 removes only the outward part: scaling the whole command stalled any motion along a face (the
    reset's way home among them); here the tip, 0.5 mm inside the x face, keeps almost all of its z motion."""
    cfg = _config(workspace_check=True, workspace_min=(0.0, -0.5, 0.3), workspace_max=(0.8, 0.5, 0.9),
                  accel_limits=(100.0,) * 7)
    flt = SafetyFilter(cfg, fk=_fk)
    lo_q, hi_q = 0.0, 0.7  # bend of joint 2: tip x = 0.9 straight, 0.782 at 0.7
    for _ in range(60):
        mid = 0.5 * (lo_q + hi_q)
        lo_q, hi_q = (mid, hi_q) if _fk(np.array([0, mid, 0, 0, 0, 0, 0.0]))[0] > 0.7995 else (lo_q, mid)
    q = np.array([0.0, hi_q, 0.0, 0.0, 0.0, 0.0, 0.0])
    v = np.zeros(7)
    v[1], v[4] = -1.5, 1.0  # straighten (tip out through x = 0.8) and raise the tip (z += 0.1 * q5)
    out = flt.limit(q, v, v)
    lo, hi = np.array(cfg.workspace_min), np.array(cfg.workspace_max)
    assert box_excess(_fk(q + out * T), lo, hi) <= 1e-9
    assert flt.counts["workspace_scaled"] == 1
    rise = _fk(q + out * T)[2] - _fk(q)[2]
    assert rise >= 0.5 * 0.1 * v[4] * T  # 3.2 mm of 5; scaling the whole command: -0.3 mm
    _check_position(flt, q, out)
