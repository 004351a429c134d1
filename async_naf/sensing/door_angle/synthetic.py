"""Simulated door-leaf IMU recordings with ground truth, for benchmarks and tests (numpy only).

Physics: the world frame has z up. The door rotates about a hinge axis ``h`` (world frame) tilted from
vertical by up to ``hinge_tilt_max_deg`` in a random direction; the sensor sits on the leaf at a lever arm
of 0.3-0.8 m from the hinge, mounted at a uniformly random orientation. For a hinge angle theta(t):

- gyro (sensor frame)  = R_DS^T h * theta_dot  (+ bias(t) + white noise, quantised, saturated)
- accel (sensor frame) = R_DS^T R(h, theta)^T (a_lever + g_up)  (+ bias + white noise, quantised)
- mag (optional)       = R_DS^T R(h, theta)^T m_earth + hard iron + noise (+ optional disturbances)

with a_lever = theta_ddot h x p + theta_dot^2 h x (h x p) for the sensor position p.

Gyro bias: a static zero-rate offset (learnt at the first rest), a warm-up drift
``d (1 - exp(-t / tau))`` with |d| up to ``warmup_drift_max_dps`` deg/s and tau of 1-5 min, and a random
walk. Noise follows MPU-6050 datasheet densities (gyro 0.005 deg/s/sqrt(Hz), accel 400 ug/sqrt(Hz)) over the
Nyquist band, with the 16-bit quantisation of the +-500 deg/s and +-4 g ranges. Sample timing is irregular:
jittered periods, dropped samples and a few short bus gaps.

Door motion: a closed rest, then repeated episodes: a swing to 20-95 deg (min-jerk, peak 40-150 deg/s,
sometimes a slow steady swing of 1.5-6 deg/s), a hold (door still, or held by hand with a small wobble),
sometimes a second swing to another angle, a closing swing, and a closed rest.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import transforms3d

from async_naf.wire.imu import ImuSample

G = 9.80665  # m/s^2
DEG = math.pi / 180.0


@dataclass(frozen=True)
class Segment:
    """One piece of door motion: move from the previous target to ``target_rad`` over ``duration_s``.

    ``shape``: 'minjerk' (smooth swing), 'linear' (constant rate: a slow steady swing). A segment whose
    target equals the previous one is a hold; ``wobble_rad`` adds a hand-held wobble of that amplitude.
    """

    duration_s: float
    target_rad: float
    shape: str = "minjerk"
    wobble_rad: float = 0.0
    wobble_hz: float = 1.5


@dataclass
class SyntheticConfig:
    """Parameters of a simulated recording (units in the names or docstrings)."""

    duration_s: float = 600.0
    rate_hz: float = 200.0
    jitter_s: float = 3e-4  # standard deviation of the sample period
    drop_prob: float = 0.003  # probability that a sample is missing
    bus_gaps: int = 2  # gaps of 0.05-0.3 s without samples
    swing_min_deg: float = 20.0
    swing_max_deg: float = 95.0
    slow_swing_prob: float = 0.15
    hold_wobble_prob: float = 0.3
    hinge_tilt_max_deg: float = 1.5
    static_bias_std_dps: float = 2.0  # zero-rate offset per axis (deg/s)
    warmup_drift_max_dps: float = 0.5  # warm-up drift magnitude (deg/s), drawn in [0.6, 1] x this
    warmup_tau_s: tuple[float, float] = (60.0, 300.0)
    warmup_along_hinge: bool = False  # worst case: the whole warm-up drift about the hinge axis
    bias_walk_dps_rt_s: float = 0.002  # bias random walk (deg/s/sqrt(s))
    gyro_density_dps_rt_hz: float = 0.005  # MPU-6050 rate noise density
    accel_density_ug_rt_hz: float = 400.0  # MPU-6050 accel noise density (micro-g/sqrt(Hz))
    accel_bias_std: float = 0.2  # m/s^2 per axis
    gyro_scale_error_std: float = 0.0  # relative scale error per axis (MPU-6050 datasheet: up to 3 %)
    gyro_lsb_dps: float = 1.0 / 65.5  # +-500 deg/s range
    gyro_range_dps: float = 500.0
    accel_lsb: float = G / 8192.0  # +-4 g range
    with_mag: bool = False
    mag_noise_std: float = 0.3e-6  # T
    mag_disturbances: int = 0  # number of magnetic disturbance episodes
    with_covariance: bool = True  # ImuSample carries the noise covariances (as a driver would)


@dataclass
class Recording:
    """A simulated recording: IMU data (sensor frame) and ground truth at every sample."""

    stamps_ns: np.ndarray  # (N,) int64
    gyro: np.ndarray  # (N, 3) rad/s
    accel: np.ndarray  # (N, 3) m/s^2
    mag: np.ndarray | None  # (N, 3) T
    angle: np.ndarray  # (N,) true hinge angle, rad (+ opening)
    rate: np.ndarray  # (N,) true hinge rate, rad/s
    gyro_bias: np.ndarray  # (N, 3) true gyro bias, rad/s
    axis_sensor: np.ndarray  # (3,) true hinge axis in the sensor frame (+ rotation opens)
    gyro_noise_std: float  # rad/s per sample and axis
    accel_noise_std: float  # m/s^2
    info: dict = field(default_factory=dict)

    @property
    def t(self) -> np.ndarray:
        """Sample times relative to the first stamp (s)."""
        return (self.stamps_ns - self.stamps_ns[0]) * 1e-9

    def samples(self, with_covariance: bool = True) -> Iterator[ImuSample]:
        """The recording as ImuSample objects, in stamp order."""
        gcov = np.eye(3) * self.gyro_noise_std**2 if with_covariance else None
        acov = np.eye(3) * self.accel_noise_std**2 if with_covariance else None
        for i in range(len(self.stamps_ns)):
            yield ImuSample(
                int(self.stamps_ns[i]),
                self.gyro[i],
                self.accel[i],
                gcov,
                acov,
                None if self.mag is None else self.mag[i],
            )


def random_profile(rng: np.random.Generator, cfg: SyntheticConfig) -> list[Segment]:
    """A random door-use profile covering ``cfg.duration_s`` (starts and ends closed)."""
    segs: list[Segment] = [Segment(rng.uniform(3.0, 8.0), 0.0)]
    total = segs[0].duration_s
    while total < cfg.duration_s:
        episode: list[Segment] = []
        angle = 0.0
        for k in range(1 + int(rng.random() < 0.3)):
            target = rng.uniform(cfg.swing_min_deg, cfg.swing_max_deg) * DEG
            if k > 0 and abs(target - angle) < 10 * DEG:
                continue
            episode.append(_swing(rng, angle, target, cfg))
            angle = target
            wobble = rng.uniform(0.05, 0.3) * DEG if rng.random() < cfg.hold_wobble_prob else 0.0
            episode.append(Segment(rng.uniform(1.0, 20.0), angle, wobble_rad=wobble, wobble_hz=rng.uniform(0.5, 3)))
        episode.append(_swing(rng, angle, 0.0, cfg))
        episode.append(Segment(rng.uniform(2.0, 30.0), 0.0))
        segs.extend(episode)
        total += sum(s.duration_s for s in episode)
    return segs


def _swing(rng: np.random.Generator, start: float, target: float, cfg: SyntheticConfig) -> Segment:
    delta = abs(target - start)
    if rng.random() < cfg.slow_swing_prob:
        return Segment(delta / (rng.uniform(1.5, 6.0) * DEG), target, shape="linear")
    peak = rng.uniform(40.0, 150.0) * DEG
    return Segment(1.875 * delta / peak + 0.2, target)


def profile_truth(segs: Sequence[Segment], t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hinge angle (rad), rate (rad/s) and acceleration (rad/s^2) of a profile at times ``t`` (s)."""
    bounds = np.concatenate([[0.0], np.cumsum([s.duration_s for s in segs])])
    idx = np.clip(np.searchsorted(bounds, t, side="right") - 1, 0, len(segs) - 1)
    theta = np.zeros_like(t)
    rate = np.zeros_like(t)
    acc = np.zeros_like(t)
    prev = 0.0
    for k, seg in enumerate(segs):
        m = idx == k
        if np.any(m):
            T = seg.duration_s
            s = np.clip((t[m] - bounds[k]) / T, 0.0, 1.0)
            d = seg.target_rad - prev
            if seg.shape == "linear":
                theta[m] = prev + d * s
                rate[m] = d / T * ((s > 0) & (s < 1))
            else:
                theta[m] = prev + d * (10 * s**3 - 15 * s**4 + 6 * s**5)
                rate[m] = d / T * (30 * s**2 - 60 * s**3 + 30 * s**4)
                acc[m] = d / T**2 * (60 * s - 180 * s**2 + 120 * s**3)
            if seg.wobble_rad > 0.0:
                w = 2 * math.pi * seg.wobble_hz
                tau = t[m] - bounds[k]
                S, C = np.sin(w * tau), np.cos(w * tau)
                W, W1, W2 = (np.sin(math.pi * s) ** 2, math.pi / T * np.sin(2 * math.pi * s),
                             2 * math.pi**2 / T**2 * np.cos(2 * math.pi * s))
                A = seg.wobble_rad
                theta[m] += A * S * W
                rate[m] += A * (w * C * W + S * W1)
                acc[m] += A * (-(w**2) * S * W + 2 * w * C * W1 + S * W2)
        prev = seg.target_rad
    after = t >= bounds[-1]
    theta[after], rate[after], acc[after] = segs[-1].target_rad, 0.0, 0.0
    return theta, rate, acc


def _rotate(axis: np.ndarray, angle: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vectors ``v`` (N,3) about the unit ``axis`` by ``angle`` (N,) rad (Rodrigues)."""
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    return v * c + np.cross(axis, v) * s + axis[None, :] * (v @ axis)[:, None] * (1.0 - c)


def _sample_times(rng: np.random.Generator, cfg: SyntheticConfig, duration: float) -> np.ndarray:
    n = int(duration * cfg.rate_hz * 1.05) + 10
    periods = 1.0 / cfg.rate_hz + rng.normal(0.0, cfg.jitter_s, n)
    periods = np.clip(periods, 0.2 / cfg.rate_hz, None)
    t = np.cumsum(periods)
    t = t[t < duration]
    keep = rng.random(t.size) >= cfg.drop_prob
    for _ in range(cfg.bus_gaps):
        start = rng.uniform(0.1, 0.9) * duration
        keep &= ~((t > start) & (t < start + rng.uniform(0.05, 0.3)))
    return t[keep]


def simulate_recording(
    seed: int = 0,
    config: SyntheticConfig | None = None,
    profile: Sequence[Segment] | None = None,
    mounting: np.ndarray | None = None,
) -> Recording:
    """Simulate one door-leaf IMU recording.

    Args:
        seed: random seed (profile, geometry, sensor errors, noise).
        config: sensor and scenario parameters.
        profile: door motion; default :func:`random_profile` over ``config.duration_s``.
        mounting: sensor orientation on the leaf (3x3 rotation, sensor -> door frame); default uniform random.
    """
    cfg = config if config is not None else SyntheticConfig()
    rng = np.random.default_rng(seed)
    segs = list(profile) if profile is not None else random_profile(rng, cfg)
    duration = cfg.duration_s if profile is None else sum(s.duration_s for s in segs)
    t = _sample_times(rng, cfg, duration)
    theta, rate, acc = profile_truth(segs, t)
    n = t.size

    # geometry: hinge axis tilted from vertical, random mounting, lever arm perpendicular to the hinge
    tilt = rng.uniform(0.0, cfg.hinge_tilt_max_deg) * DEG
    az = rng.uniform(0.0, 2 * math.pi)
    h = np.array([math.sin(tilt) * math.cos(az), math.sin(tilt) * math.sin(az), math.cos(tilt)])
    if mounting is None:
        q = rng.normal(size=4)
        mounting = transforms3d.quaternions.quat2mat(q / np.linalg.norm(q))
    r_ds = np.asarray(mounting, dtype=float)
    lever_dir = np.cross(h, rng.normal(size=3))
    p0 = lever_dir / np.linalg.norm(lever_dir) * rng.uniform(0.3, 0.8)

    # kinematics (world), then into the sensor frame
    p = _rotate(h, theta, np.broadcast_to(p0, (n, 3)).copy())
    hxp = np.cross(h, p)
    a_world = acc[:, None] * hxp + (rate**2)[:, None] * np.cross(h, hxp)
    f_world = a_world + np.array([0.0, 0.0, G])
    f_door = _rotate(h, -theta, f_world)
    accel = f_door @ r_ds  # = (R_DS^T f_door^T)^T
    axis_s = r_ds.T @ h
    omega = rate[:, None] * axis_s[None, :]

    # gyro errors
    static = rng.normal(0.0, cfg.static_bias_std_dps * DEG, 3)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    if cfg.warmup_along_hinge:
        direction = axis_s * np.sign(direction @ axis_s)
    drift = direction * rng.uniform(0.6, 1.0) * cfg.warmup_drift_max_dps * DEG
    tau = rng.uniform(*cfg.warmup_tau_s)
    dts = np.diff(t, prepend=t[0])
    walk = np.cumsum(rng.normal(size=(n, 3)) * (cfg.bias_walk_dps_rt_s * DEG) * np.sqrt(dts)[:, None], axis=0)
    bias = static + drift * (1.0 - np.exp(-t / tau))[:, None] + walk
    scale = 1.0 + rng.normal(0.0, cfg.gyro_scale_error_std, 3)
    g_std = cfg.gyro_density_dps_rt_hz * DEG * math.sqrt(cfg.rate_hz / 2.0)
    a_std = cfg.accel_density_ug_rt_hz * 1e-6 * G * math.sqrt(cfg.rate_hz / 2.0)
    gyro = omega * scale + bias + rng.normal(0.0, g_std, (n, 3))
    lsb = cfg.gyro_lsb_dps * DEG
    gyro = np.clip(np.round(gyro / lsb) * lsb, -cfg.gyro_range_dps * DEG, cfg.gyro_range_dps * DEG)
    accel = accel + rng.normal(0.0, cfg.accel_bias_std, 3) + rng.normal(0.0, a_std, (n, 3))
    accel = np.round(accel / cfg.accel_lsb) * cfg.accel_lsb

    mag = None
    if cfg.with_mag:
        heading = rng.uniform(0.0, 2 * math.pi)
        m_world = np.array([20e-6 * math.cos(heading), 20e-6 * math.sin(heading), -45e-6])
        m_world = np.broadcast_to(m_world, (n, 3)).copy()
        for _ in range(cfg.mag_disturbances):
            start, length = rng.uniform(0, duration), rng.uniform(5.0, 30.0)
            m = (t > start) & (t < start + length)
            m_world[m] += rng.normal(0.0, 10e-6, 3)
        mag = _rotate(h, -theta, m_world) @ r_ds + rng.normal(0.0, 5e-6, 3) + rng.normal(0.0, cfg.mag_noise_std, (n, 3))

    stamps = (1_700_000_000 * 10**9 + np.round(t * 1e9)).astype(np.int64)
    info = {
        "seed": seed,
        "duration_s": float(duration),
        "samples": int(n),
        "tilt_deg": tilt / DEG,
        "warmup_drift_dps": float(np.linalg.norm(drift)) / DEG,
        "warmup_drift_about_hinge_dps": float(drift @ axis_s) / DEG,
        "warmup_tau_s": tau,
    }
    return Recording(stamps, gyro, accel, mag, theta, rate, bias, axis_s, g_std, a_std, info)
