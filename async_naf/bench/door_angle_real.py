"""Door angle on real IMU data: BROAD trials, door-like stretches chosen by rule, three estimators compared.

Truth (the BROAD README's door-like truth): the heading of the sensor's x axis about the world vertical,
from the optical ``opt_quat`` (x axis projected on the horizontal plane, unwrapped), as a change since the
start of the scored part of a stretch. Samples where ``opt_quat`` is NaN are not scored.

Time alignment (by default; ``lag_s`` of :func:`evaluate_stretch`): the IMU samples of a trial lag its
optical samples by a constant ~4-5 ms (the IMU's filter delay and the two systems' synchronisation), a
property of the recording, not of any method. :func:`trial_lag` measures it once per trial, on the raw data
(the gyro magnitude against the optical rate magnitude, least squares over the shift) and only on samples
outside the trial's scored stretches, and the truth is then taken that much earlier for every method alike.
With ``lag_s`` = 0 the truth is scored as recorded.

Door-like stretches (automatic, :func:`find_stretches`; nothing chosen by hand):

1. Rests: samples where every gyro magnitude (relative to the median rate of the trial's first
   ``REST_BIAS_S``) within ``REST_WINDOW_S`` is below ``REST_RATE_MAX``; rests are runs of them lasting at
   least ``REST_MIN_S``. All four trials start with one.
2. "Up" in the sensor frame: the mean accelerometer direction over the trial's first rest. Tilt = angle
   between that axis, rotated by the optical orientation, and the world vertical (interpolated across lost
   markers for this purpose only).
3. Door-like runs: maximal runs of samples with tilt below ``TILT_MAX_DEG`` (rotation mostly about the
   vertical; the hand-held rig wobbles by up to ~25 deg while swinging), lasting at least ``RUN_MIN_S``, whose
   truth heading spans at least ``RANGE_MIN_DEG`` (swings, not a tremble).
4. Scored part and the rest in front of it (the estimator assumes a door at rest, closed, at its start):
   if a rest lies in the run and at least ``RUN_MIN_S`` of the run follow it, the last such rest and
   the run after it (real, contiguous data: ``spliced`` False); otherwise the run from its first sample
   where the sensor is nearly level and still (tilt below ``START_TILT_MAX_DEG``, gyro magnitude below
   ``START_RATE_MAX``: the closest a hand-held motion comes to a door at rest), preceded by the last
   ``SPLICE_REST_S`` of the trial's first rest (``spliced`` True: the samples in between, with motions no
   door makes, are left out; the stamps stay regular, as one recording).
5. Every method and the truth are referenced (zero) at the first scored sample.

Sign: the truth's opening side follows the estimator's documented convention (:func:`opening_side`, with the
default ``sign_threshold_rad`` and ``sign_confirm_rad``): the side of the first swing beyond the threshold,
unless the door then turns the other way past closed farther than it had opened, before it opened as far as
the confirmation angle. The rule is applied to the truth, and its final side is used for the whole stretch;
the estimator (+ = opening) decides from the IMU alone and is compared with the truth on that side, so a
wrong or late decision costs what it costs a user. ``plain`` and ``vqf`` measure
the heading change itself (counter-clockwise positive, no decision to make) and are compared with it
unsigned.

Methods, all given the same samples (rest, then the scored part):

- ``estimator``: :class:`~async_naf.sensing.door_angle.DoorAngleEstimator` with default parameters, one
  causal pass (what the door_angle node computes live), fed directly or through a rosbag2 bag and
  ``async-naf door-angle --causal`` (the real data path; same result);
- ``offline``: the same estimator over the whole stretch twice, the second time with what the first pass
  showed (the opening direction, a missing frame at closed:
  :meth:`~async_naf.sensing.door_angle.DoorAngleEstimator.hindsight_config`), what ``async-naf door-angle``
  does by default on a bag (also run through the bag: same result);
- ``plain``: gyro integration (trapezoid) about the fixed "up" axis of the rest in front (accelerometer
  mean), bias = mean gyro over that rest;
- ``vqf``: VQF 6D (``vqf`` package, default parameters), the heading change of the sensor's x axis.

``spread`` (not a method): RMSE between the truth and the heading of the sensor's y axis instead of x: how
far two reasonable door-angle definitions disagree on the stretch because of the wobble.

``convention_floor`` (not a method): RMSE of the truth itself as a causal door-angle estimator that knew it
exactly would have to report it (:func:`opening_view`: its magnitude until the opening side can be decided,
then the side decided so far). A stretch that starts turning the "wrong" way costs every door-angle
estimator at least this; ``plain`` and ``vqf`` do not pay it, because they decide nothing.
"""
from __future__ import annotations

import contextlib
import csv
import io
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from async_naf.sensing.door_angle import DoorAngleConfig
from async_naf.sensing.door_angle.broad import BroadTrial, broad_samples, load_broad, write_broad_bag

DEG = 180.0 / math.pi

REST_BIAS_S = 2.0  # s, the gyro median over the trial's first seconds is the bias for the rest test
REST_WINDOW_S = 0.5  # s
REST_RATE_MAX = math.radians(2.0)  # rad/s
REST_MIN_S = 2.0  # s
TILT_MAX_DEG = 30.0  # deg
RUN_MIN_S = 3.0  # s
RANGE_MIN_DEG = 45.0  # deg
START_TILT_MAX_DEG = 5.0  # deg
START_RATE_MAX = math.radians(40.0)  # rad/s
SPLICE_REST_S = 10.0  # s
LAG_MAX_S = 0.010  # s, the IMU-to-optical lag searched (+-)
METHODS = ("estimator", "offline", "estimator_axis", "plain", "vqf")


@dataclass(frozen=True)
class Stretch:
    """A door-like stretch of a trial: sample ranges ``[i0, i1)``."""

    trial: str
    rest: tuple[int, int]  # the rest fed first (the closed door)
    scored: tuple[int, int]  # the swings, scored
    spliced: bool  # the rest is not directly in front of the scored part (see module docstring)
    sign: int  # +1: the truth opens counter-clockwise (heading increases), -1 clockwise

    def label(self, rate_hz: float) -> str:
        return f"{self.trial[:2]} {self.scored[0] / rate_hz:6.1f}-{self.scored[1] / rate_hz:6.1f} s"


# ----------------------------------------------------------------------------------------------- truth
def _quat_matrices(q: np.ndarray) -> np.ndarray:
    """(N, 3, 3) rotation matrices of unit quaternions (w, x, y, z); NaN rows stay NaN."""
    w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def heading(rot: np.ndarray, axis: int = 0) -> np.ndarray:
    """Unwrapped heading (rad, counter-clockwise about world up) of a sensor axis; NaN where ``rot`` is."""
    v = rot[:, :, axis]
    h = np.arctan2(v[:, 1], v[:, 0])
    ok = np.isfinite(h)
    out = np.full(len(h), np.nan)
    out[ok] = np.unwrap(h[ok])
    return out


def _fill(x: np.ndarray) -> np.ndarray:
    """Linear interpolation across NaN (for stretch detection only, never for scoring)."""
    ok = np.isfinite(x)
    return np.interp(np.arange(len(x)), np.flatnonzero(ok), x[ok])


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def opening_view(dh: np.ndarray) -> tuple[np.ndarray, int]:
    """A heading change ``dh`` (rad, from closed) as a causal door-angle estimator that knew it exactly
    would report it under the estimator's convention with its default parameters: its magnitude until the
    first swing beyond ``sign_threshold_rad`` decides the opening side, then the opening on the side decided
    so far (revised by a larger turn the other way past closed until the door has opened
    ``sign_confirm_rad``). Returns that series (rad; NaN where ``dh`` is) and the final side (+1 or -1; +1
    if it never swings)."""
    cfg = DoorAngleConfig()
    sign, largest, confirmed = 0, 0.0, False
    out = np.full(len(dh), np.nan)
    for i, x in enumerate(dh):
        if not math.isfinite(x):
            continue
        if sign == 0:
            if abs(x) > cfg.sign_threshold_rad:
                sign, largest = (1 if x > 0.0 else -1), abs(x)
        elif not confirmed:
            largest = max(largest, sign * x)
            if largest >= cfg.sign_confirm_rad:
                confirmed = True
            elif -sign * x > max(largest, cfg.sign_threshold_rad):
                sign, largest = -sign, -sign * x
        out[i] = abs(x) if sign == 0 else sign * x
    return out, sign or 1


def opening_side(dh: np.ndarray) -> int:
    """+1 or -1: the final opening side of :func:`opening_view`."""
    return opening_view(dh)[1]


def find_rests(trial: BroadTrial) -> list[tuple[int, int]]:
    """Rests of a trial (see module docstring, rule 1)."""
    fs = trial.rate_hz
    b0 = np.median(trial.gyro[: max(1, int(REST_BIAS_S * fs))], axis=0)
    rate = np.linalg.norm(trial.gyro - b0, axis=1)
    from scipy.ndimage import maximum_filter1d

    quiet = maximum_filter1d(rate, max(1, int(REST_WINDOW_S * fs))) < REST_RATE_MAX
    return [(i0, i1) for i0, i1 in _runs(quiet) if i1 - i0 >= REST_MIN_S * fs]


def find_stretches(trial: BroadTrial) -> list[Stretch]:
    """Door-like stretches of a trial by the rules of the module docstring."""
    fs = trial.rate_hz
    rests = find_rests(trial)
    if not rests:
        return []
    first = rests[0]
    up = trial.accel[first[0]:first[1]].mean(axis=0)
    up /= np.linalg.norm(up)
    rot = _quat_matrices(trial.opt_quat)
    tilt = _fill(np.degrees(np.arccos(np.clip(rot[:, 2, :] @ up, -1.0, 1.0))))
    head = _fill(heading(rot))
    rate = np.linalg.norm(trial.gyro, axis=1)
    out = []
    for r0, r1 in _runs(tilt < TILT_MAX_DEG):
        inside = [r for r in rests if r0 <= r[0] and r[1] <= r1 and r1 - r[1] >= RUN_MIN_S * fs]
        if inside:
            rest, s0, spliced = inside[-1], inside[-1][1], False
        else:
            low = np.flatnonzero((tilt[r0:r1] < START_TILT_MAX_DEG) & (rate[r0:r1] < START_RATE_MAX))
            if low.size == 0:
                continue
            s0 = r0 + int(low[0])
            rest, spliced = (max(first[0], first[1] - int(SPLICE_REST_S * fs)), first[1]), True
        if r1 - s0 < RUN_MIN_S * fs:
            continue
        dh = head[s0:r1] - head[s0]
        if (dh.max() - dh.min()) * DEG < RANGE_MIN_DEG:
            continue
        sign = opening_side(dh)
        out.append(Stretch(trial.name, (int(rest[0]), int(rest[1])), (int(s0), int(r1)), spliced, sign))
    return out


# ------------------------------------------------------------------------------------------- time alignment
def optical_rate(trial: BroadTrial) -> np.ndarray:
    """Angular-rate magnitude (rad/s) from ``opt_quat`` by central differences (the rotation from sample
    k-1 to k+1 over two periods, so it belongs to sample k's instant); NaN where a marker was lost."""
    q = trial.opt_quat
    dot = np.abs(np.sum(q[:-2] * q[2:], axis=1))
    out = np.full(len(q), np.nan)
    out[1:-1] = 2.0 * np.arccos(np.clip(dot, -1.0, 1.0)) * trial.rate_hz / 2.0
    return out


def imu_lag(trial: BroadTrial, exclude: list[tuple[int, int]] | None = None) -> float:
    """How long (s) the IMU samples lag the optical truth in a trial: the shift of the optical rate
    magnitude (:func:`optical_rate`) that best matches the gyro magnitude (bias: median of the first
    ``REST_BIAS_S``), least squares on a 0.1 ms grid over +-``LAG_MAX_S``.

    A property of the recording (the IMU's filter delay and the two systems' clocks), not of any method:
    it is measured on the raw rates, never on a method's output, and on the samples outside ``exclude``
    (the scored stretches), so no scored sample takes part in it.
    """
    fs = trial.rate_hz
    b0 = np.median(trial.gyro[: max(1, int(REST_BIAS_S * fs))], axis=0)
    w_imu = np.linalg.norm(trial.gyro - b0, axis=1)
    w_opt = optical_rate(trial)
    k = np.arange(len(trial), dtype=float)
    use = np.isfinite(w_opt)
    margin = int(math.ceil(LAG_MAX_S * fs)) + 2
    use[:margin] = use[-margin:] = False
    for i0, i1 in exclude or []:
        use[max(0, i0 - margin):i1 + margin] = False
    best = (math.inf, 0.0)
    for lag in np.arange(-LAG_MAX_S, LAG_MAX_S + 1e-9, 1e-4):
        shifted = np.interp(k - lag * fs, k, w_opt)  # the optical rate ``lag`` earlier
        ok = use & np.isfinite(shifted)
        best = min(best, (float(np.mean((w_imu[ok] - shifted[ok]) ** 2)), float(lag)))
    return round(best[1], 4)


def trial_lag(trial: BroadTrial) -> float:
    """:func:`imu_lag` of a trial with all of its door-like stretches left out."""
    return imu_lag(trial, [st.scored for st in find_stretches(trial)])


def _shifted_heading(trial: BroadTrial, i0: int, i1: int, axis: int, lag_s: float) -> np.ndarray:
    """:func:`heading` of a sensor axis at samples ``[i0, i1)``, taken ``lag_s`` earlier (linear
    interpolation between optical samples; NaN next to a lost marker)."""
    if lag_s == 0.0:
        return heading(_quat_matrices(trial.opt_quat[i0:i1]), axis)
    m = int(math.ceil(abs(lag_s) * trial.rate_hz)) + 2
    j0, j1 = max(0, i0 - m), min(len(trial), i1 + m)
    h = heading(_quat_matrices(trial.opt_quat[j0:j1]), axis)
    k = np.arange(j0, j1, dtype=float)
    return np.interp(np.arange(i0, i1) - lag_s * trial.rate_hz, k, h, left=np.nan, right=np.nan)


# ------------------------------------------------------------------------------------------------ methods
def stretch_ranges(st: Stretch) -> list[tuple[int, int]]:
    """Sample ranges fed to every method: the rest, then the scored part (one range when contiguous)."""
    return [(st.rest[0], st.scored[1])] if not st.spliced else [st.rest, st.scored]


def run_estimator(trial: BroadTrial, st: Stretch, params: list[str] | None = None) -> tuple[np.ndarray, dict]:
    """Door angle (rad) at every fed sample from the estimator fed directly, and its counters.

    ``params``: ``NAME=VALUE`` overrides as ``async-naf door-angle --param`` takes them (default: none).
    """
    from async_naf.run.commands.door_angle import load_config
    from async_naf.sensing.door_angle import DoorAngleEstimator

    est = DoorAngleEstimator(load_config(None, params or []))
    out = _angles(est, trial, st)
    info = {
        "opening_side": (int(np.sign(est.axis @ trial.accel[st.rest[0]:st.rest[1]].mean(axis=0)))
                         if est.sign_known else 0),
        "sign_revisions": est.sign_revisions, "beyond_stop": est.beyond_stop, "past_closed": est.past_closed,
        "max_angle_deg": round(est.max_angle * DEG, 1),
    }
    return out, info


def _angles(est: Any, trial: BroadTrial, st: Stretch) -> np.ndarray:
    """``est``'s angle (rad) at every fed sample of the stretch (a dropped sample repeats the last)."""
    out: list[Any] = []
    for s in broad_samples(trial, stretch_ranges(st)):
        state = est.update(s)
        out.append(state.angle if state is not None else (out[-1] if out else 0.0))
    return np.asarray(out)


def run_offline(trial: BroadTrial, st: Stretch, params: list[str] | None = None) -> np.ndarray:
    """Door angle (rad) at every fed sample from two passes over the stretch: the second configured with what
    the first showed (:meth:`~async_naf.sensing.door_angle.DoorAngleEstimator.hindsight_config`; the default of
    ``async-naf door-angle``), the first pass alone when it showed nothing new."""
    from async_naf.run.commands.door_angle import load_config
    from async_naf.sensing.door_angle import DoorAngleEstimator

    first = DoorAngleEstimator(load_config(None, params or []))
    out = _angles(first, trial, st)
    second = first.hindsight_config()
    return out if second is None else _angles(DoorAngleEstimator(second), trial, st)


def run_estimator_bag(trial: BroadTrial, st: Stretch, params: list[str] | None = None,
                      causal: bool = True) -> np.ndarray:
    """The same through the real data path: a rosbag2 (MCAP) bag and ``async-naf door-angle`` (rad per row);
    ``causal``: with ``--causal`` (:func:`run_estimator`'s angles), else its default (:func:`run_offline`'s)."""
    from async_naf.run.cli import main as cli_main

    with tempfile.TemporaryDirectory(prefix="door_angle_real_") as tmp:
        bag, csv_path = Path(tmp) / "bag", Path(tmp) / "angle.csv"
        write_broad_bag(trial, bag, stretch_ranges(st))
        argv = ["door-angle", str(bag), "--out", str(csv_path), "--no-progress"] + (["--causal"] if causal else [])
        for p in params or []:
            argv += ["--param", p]
        log = io.StringIO()
        with contextlib.redirect_stderr(log):  # its summary line per stretch would clutter a table
            rc = cli_main(argv)
        if rc != 0:
            raise RuntimeError(f"async-naf door-angle failed with status {rc}: {log.getvalue()}")
        with open(csv_path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))[1:]
    return np.array([float(r[1]) for r in rows])


def _fed(trial: BroadTrial, st: Stretch) -> tuple[np.ndarray, np.ndarray, int]:
    """Gyro and accelerometer as fed, and the index of the first scored sample in them."""
    idx = np.concatenate([np.arange(a, b) for a, b in stretch_ranges(st)])
    return trial.gyro[idx], trial.accel[idx], len(idx) - (st.scored[1] - st.scored[0])


def run_plain(trial: BroadTrial, st: Stretch) -> np.ndarray:
    """Gyro integration about the rest's up axis, bias from that rest (rad at every fed sample)."""
    gyro, _, _ = _fed(trial, st)
    up = trial.accel[st.rest[0]:st.rest[1]].mean(axis=0)
    up /= np.linalg.norm(up)
    rate = (gyro - trial.gyro[st.rest[0]:st.rest[1]].mean(axis=0)) @ up
    return np.concatenate([[0.0], np.cumsum(0.5 * (rate[1:] + rate[:-1]) / trial.rate_hz)])


def run_vqf(trial: BroadTrial, st: Stretch) -> np.ndarray:
    """VQF 6D (default parameters): heading of the sensor's x axis (rad at every fed sample)."""
    from vqf import VQF

    gyro, acc, _ = _fed(trial, st)
    out = VQF(1.0 / trial.rate_hz).updateBatch(np.ascontiguousarray(gyro), np.ascontiguousarray(acc))
    return heading(_quat_matrices(out["quat6D"]))


# --------------------------------------------------------------------------------------------- evaluation
def evaluate_stretch(trial: BroadTrial, st: Stretch, via_bag: bool = False, params: list[str] | None = None,
                     lag_s: float = 0.0) -> dict:
    """RMSE and largest error (deg) of each method over the scored part of a stretch, and facts about it.

    ``via_bag``: also run the estimator through a bag and ``async-naf door-angle`` and report how far it is from
    the angles fed directly: ``--causal`` against ``estimator`` (``bag_max_diff_deg``), the default against
    ``offline`` (``bag_offline_max_diff_deg``). ``params``: estimator overrides (``NAME=VALUE``),
    for both ``estimator`` and ``estimator_axis`` (the same with the hinge axis configured: the rest's up
    direction, signed to open as the truth does, so no opening direction is to be decided). ``lag_s``: the
    truth is taken this much earlier (the trial's IMU lag, :func:`trial_lag`; 0: the samples as recorded),
    the same for every method.
    """
    fs = trial.rate_hz
    s0, s1 = st.scored
    hx, hy = _shifted_heading(trial, s0, s1, 0, lag_s), _shifted_heading(trial, s0, s1, 1, lag_s)
    ok = np.isfinite(hx)
    truth = hx - hx[ok][0]
    _, _, k0 = _fed(trial, st)
    row: dict = {
        "stretch": st.label(fs), "trial": st.trial, "scored_s": [round(s0 / fs, 2), round(s1 / fs, 2)],
        "duration_s": round((s1 - s0) / fs, 2), "rest_s": round((st.rest[1] - st.rest[0]) / fs, 2),
        "spliced": st.spliced, "sign": st.sign, "lag_ms": round(lag_s * 1e3, 2), "scored_samples": int(ok.sum()),
        "truth_min_deg": round(float(np.nanmin(truth)) * DEG, 1),
        "truth_max_deg": round(float(np.nanmax(truth)) * DEG, 1),
        "spread_deg": round(float(np.sqrt(np.mean(((hy - hy[ok][0]) - truth)[ok] ** 2))) * DEG, 3),
    }
    # what the convention costs a causal estimator that knew the heading exactly (see opening_view)
    ideal = st.sign * opening_view(truth)[0]
    row["convention_floor_deg"] = round(float(np.sqrt(np.mean((ideal - truth)[ok] ** 2))) * DEG, 3)
    est, info = run_estimator(trial, st, params)
    row.update(info)
    up = trial.accel[st.rest[0]:st.rest[1]].mean(axis=0)
    up = st.sign * up / np.linalg.norm(up)
    axis = [f"hinge_axis=[{float(up[0])!r},{float(up[1])!r},{float(up[2])!r}]"]
    angles = {
        "estimator": est,
        "offline": run_offline(trial, st, params),
        # the hinge axis fixes the direction: an opening_direction among the overrides would contradict it
        "estimator_axis": run_estimator(trial, st, [q for q in params or [] if not q.startswith("opening_direction")]
                                        + axis)[0],
        "plain": run_plain(trial, st),
        "vqf": run_vqf(trial, st),
    }
    if via_bag:
        row["bag_max_diff_deg"] = float(np.max(np.abs(run_estimator_bag(trial, st, params) - est))) * DEG
        row["bag_offline_max_diff_deg"] = float(np.max(np.abs(
            run_estimator_bag(trial, st, params, causal=False) - angles["offline"]))) * DEG
    for name in METHODS:
        a = angles[name][k0:]
        a = a - a[0]  # every method referenced at the first scored sample, as the truth
        if name.startswith("estimator") or name == "offline":
            a = st.sign * a  # + opening -> counter-clockwise, as the truth
        row[f"{name}_rmse_deg"] = round(float(np.sqrt(np.mean((a - truth)[ok] ** 2))) * DEG, 3)
        row[f"{name}_max_deg"] = round(float(np.max(np.abs(a - truth)[ok])) * DEG, 2)
    return row


def evaluate_file(path: str | Path, via_bag: bool = False, params: list[str] | None = None,
                  align: bool = True) -> list[dict]:
    """:func:`evaluate_stretch` for every door-like stretch of a BROAD trial file (truth aligned to the IMU
    by :func:`trial_lag` unless ``align`` is False)."""
    trial = load_broad(path)
    lag = trial_lag(trial) if align else 0.0
    return [evaluate_stretch(trial, st, via_bag, params, lag) for st in find_stretches(trial)]


def fit_delay(trials: list[BroadTrial], params: list[str] | None = None,
              grid_s: np.ndarray | None = None, align: bool = False) -> tuple[float, list[tuple[float, float]]]:
    """The ``imu_delay_s`` (s) that minimises the mean estimator RMSE over the stretches of ``trials``:
    the IMU's latency against the optical truth, measured like a sensor calibration (fit on some trials,
    used on the others). ``align``: against the truth aligned by :func:`trial_lag` (then it fits what is
    left of the lag). Returns it and the (delay, mean RMSE deg) grid."""
    grid = np.arange(0.0, 0.0081, 0.0002) if grid_s is None else grid_s
    lags = {tr.name: trial_lag(tr) if align else 0.0 for tr in trials}
    curve = []
    for d in grid:
        rmse = [evaluate_stretch(tr, st, False, list(params or []) + [f"imu_delay_s={float(d)!r}"],
                                 lags[tr.name])["estimator_rmse_deg"]
                for tr in trials for st in find_stretches(tr)]
        curve.append((float(d), float(np.mean(rmse))))
    return min(curve, key=lambda c: c[1])[0], curve
