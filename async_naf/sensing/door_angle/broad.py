"""BROAD trials (real IMU with optical ground truth, HDF5) as door-IMU data: reading and rosbag2 conversion.

BROAD (Laidig, Caruso, Cereatti, Seel: "BROAD - A Benchmark for Robust Inertial Orientation Estimation",
Data 6(7), 2021; CC BY 4.0) holds trials of a myon aktos-t IMU moved by hand in a rig, with optical motion
capture. A trial file holds, at ``attrs['sampling_rate']`` (Hz): ``imu_gyr`` (rad/s, sensor frame),
``imu_acc`` (m/s^2, sensor frame), ``opt_quat`` (w, x, y, z: sensor -> ENU, NaN where the markers were
lost) and ``movement`` (bool). The IMU samples carry no time stamps: sample ``k`` is at ``k / rate``.

:func:`load_broad` reads a trial (``h5py`` is imported only here), :func:`broad_samples` turns sample ranges
of it into :class:`~async_naf.wire.imu.ImuSample` with stamps from the sampling rate (ranges are joined
back to back: one regular stream), and :func:`write_broad_bag` writes them as ``sensor_msgs/Imu`` to a
rosbag2 bag (MCAP by default) that ``async-naf door-angle`` reads. The covariances are written as unknown
(-1): the files do not give them, as many IMU drivers do not.

Command line (converter)::

    python -m async_naf.sensing.door_angle.broad TRIAL.hdf5 OUT_BAG [--start S] [--end S] [--topic /door/imu]
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from async_naf.wire.imu import ImuSample

DATA_ENV = "ASYNC_NAF_BROAD_DATA"  # where the BROAD trials are, for the benchmark and the real-data tests


def default_data_dir() -> Path:
    """The folder of the BROAD ``.hdf5`` trials: ``$ASYNC_NAF_BROAD_DATA``, else ``../shared/data/broad`` beside
    the repository (a source checkout)."""
    import os

    env = os.environ.get(DATA_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "broad"


STAMP0_NS = 1_700_000_000 * 10**9  # stamp of the first written sample (an arbitrary epoch, as a driver's clock)


@dataclass(frozen=True)
class BroadTrial:
    """One BROAD trial: IMU samples in the sensor frame and the optical truth, at a fixed sampling rate."""

    name: str  # file stem, e.g. '09_undisturbed_fast_rotation_with_breaks_B'
    rate_hz: float  # sampling rate (Hz)
    gyro: np.ndarray  # (N, 3) angular rate, rad/s, sensor frame
    accel: np.ndarray  # (N, 3) specific force, m/s^2, sensor frame
    opt_quat: np.ndarray  # (N, 4) w, x, y, z: sensor -> ENU world (z up); NaN where the markers were lost
    movement: np.ndarray  # (N,) bool, the trial's movement phase

    def __len__(self) -> int:
        return len(self.gyro)


def load_broad(path: str | Path) -> BroadTrial:
    """Read a BROAD trial HDF5 file (needs ``h5py``; raises ValueError for a file without the BROAD arrays)."""
    try:
        import h5py
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
        raise ModuleNotFoundError("reading BROAD HDF5 files needs h5py (pip install h5py)") from exc
    path = Path(path)
    with h5py.File(path, "r") as f:
        missing = [k for k in ("imu_gyr", "imu_acc", "opt_quat", "movement") if k not in f]
        if missing or "sampling_rate" not in f.attrs:
            raise ValueError(f"{path} is not a BROAD trial (missing {missing or ['sampling_rate']})")
        trial = BroadTrial(
            name=path.stem,
            rate_hz=float(f.attrs["sampling_rate"]),
            gyro=np.asarray(f["imu_gyr"], dtype=float),
            accel=np.asarray(f["imu_acc"], dtype=float),
            opt_quat=np.asarray(f["opt_quat"], dtype=float),
            movement=np.asarray(f["movement"], dtype=bool),
        )
    n = len(trial.gyro)
    if not (trial.rate_hz > 0.0 and trial.accel.shape == (n, 3) and trial.gyro.shape == (n, 3)
            and trial.opt_quat.shape == (n, 4)):
        raise ValueError(f"{path}: inconsistent BROAD arrays")
    return trial


def broad_samples(
    trial: BroadTrial, ranges: Sequence[tuple[int, int]] | None = None, stamp0_ns: int = STAMP0_NS
) -> Iterator[ImuSample]:
    """IMU samples of the sample ranges ``[i0, i1)`` (default: the whole trial), joined back to back.

    The k-th yielded sample is stamped ``stamp0_ns + round(k * 1e9 / rate_hz)``: the header stamps a driver
    sampling at the trial's rate would give, also across the join of two ranges.
    """
    period_ns = 1e9 / trial.rate_hz
    k = 0
    for i0, i1 in ranges if ranges is not None else [(0, len(trial))]:
        if not 0 <= i0 <= i1 <= len(trial):
            raise ValueError(f"sample range ({i0}, {i1}) outside the trial (0, {len(trial)})")
        for i in range(i0, i1):
            yield ImuSample(stamp0_ns + int(round(k * period_ns)), trial.gyro[i], trial.accel[i])
            k += 1


def write_broad_bag(
    trial: BroadTrial,
    path: str | Path,
    ranges: Sequence[tuple[int, int]] | None = None,
    topic: str = "/door/imu",
    storage: str = "mcap",
) -> int:
    """Write the sample ranges of a trial (default all) as sensor_msgs/Imu to a new bag; returns the count."""
    from async_naf.sensing.door_angle.bag import write_imu_bag

    return write_imu_bag(path, broad_samples(trial, ranges), topic=topic, storage=storage)


def main(argv: Sequence[str] | None = None) -> int:
    """Converter: a BROAD trial (or a time window of it) to a rosbag2 bag."""
    parser = argparse.ArgumentParser(description="Convert a BROAD trial (HDF5) to a rosbag2 bag of sensor_msgs/Imu.")
    parser.add_argument("trial", type=Path, help="BROAD trial file (.hdf5)")
    parser.add_argument("out", type=Path, help="bag directory to create (must not exist)")
    parser.add_argument("--start", type=float, default=0.0, help="first sample time (s from the trial start)")
    parser.add_argument("--end", type=float, default=None, help="end time (s; default: the trial end)")
    parser.add_argument("--topic", default="/door/imu")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    args = parser.parse_args(argv)
    try:
        trial = load_broad(args.trial)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    i0 = max(0, int(round(args.start * trial.rate_hz)))
    i1 = len(trial) if args.end is None else min(len(trial), int(round(args.end * trial.rate_hz)))
    if i1 <= i0:
        print("error: empty time window", file=sys.stderr)
        return 2
    if args.out.exists():
        print(f"error: {args.out} exists", file=sys.stderr)
        return 1
    count = write_broad_bag(trial, args.out, [(i0, i1)], topic=args.topic, storage=args.storage)
    print(f"{args.trial.name}: {count} samples at {trial.rate_hz:.3f} Hz -> {args.out} ({args.topic})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
