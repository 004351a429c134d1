"""The trainer's learning curve (ROS-free): ``metrics.csv`` (one row per finished episode) and TensorBoard.

Rows are queued from any thread (a subscription callback: cheap) and written, flushed, by the update thread
(:meth:`MetricsLog.write_queued`); :meth:`MetricsLog.close` writes what is still queued. Columns of
metrics.csv: ``wall_s`` (s since the run's first start), ``env_steps``, ``updates`` (as of the episode's
receipt), ``robot``, ``episode``, ``episode_return``, ``success`` (0/1), ``demo_share`` (share of
demonstration rows in the update batches since the previous row; 0 without demonstrations) and
``demo_buffer_size`` (rows in the demonstration buffer). A run resumed into a metrics.csv of an older
version (without the demo columns) keeps that file's columns.
"""
from __future__ import annotations

import csv
import logging
import threading
from collections import deque
from pathlib import Path
from typing import Any

LOG = logging.getLogger(__name__)
METRICS_HEADER = ("wall_s", "env_steps", "updates", "robot", "episode", "episode_return", "success",
                  "demo_share", "demo_buffer_size")
BASE_COLUMNS = 7  # the columns of metrics.csv before the demo columns


class MetricsLog:
    """metrics.csv and TensorBoard of one run.

    Args:
        run_dir: the run directory (metrics.csv is appended to; a new one gets the header).
        tensorboard: also write TensorBoard events to ``run_dir/tensorboard`` (a missing tensorboard package
            is a warning: metrics.csv still has the curve).

    Attributes:
        unwritten_episode_rows: rows that arrived after :meth:`close` (dropped, logged).
    """

    def __init__(self, run_dir: str | Path, tensorboard: bool = True) -> None:
        path = Path(run_dir) / "metrics.csv"
        new = not path.exists() or path.stat().st_size == 0
        self._columns = len(METRICS_HEADER)
        if not new:  # appending (a resumed run): keep the file's own columns
            with open(path, encoding="utf-8") as f:
                header = f.readline().strip().split(",")
            self._columns = len(METRICS_HEADER) if header == list(METRICS_HEADER) else BASE_COLUMNS
        self._lock = threading.Lock()  # keeps rows in order when close() drains from another thread
        self._rows: deque[tuple[float, int, int, Any, tuple[float, int]]] = deque()
        self.unwritten_episode_rows = 0
        self._file: Any = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._writer: Any = csv.writer(self._file)
        if new:
            self._writer.writerow(METRICS_HEADER)
            self._file.flush()
        self._tb: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"), purge_step=None)
            except ImportError as exc:
                LOG.warning("TensorBoard disabled: %s", exc)

    @property
    def closed(self) -> bool:
        return self._file is None

    @property
    def queued(self) -> int:
        """Episode rows waiting to be written."""
        return len(self._rows)

    def queue_episode(self, wall_s: float, env_steps: int, updates: int, stats: Any,
                      demo: tuple[float, int] = (0.0, 0)) -> None:
        """One finished episode (layouts.EpisodeStats) with the counters at its receipt and ``demo`` =
        (demo_share, demo_buffer_size); cheap, any thread."""
        self._rows.append((wall_s, env_steps, updates, stats, demo))

    def write_queued(self) -> int:
        """Write the queued episode rows to metrics.csv (flushed) and TensorBoard; return how many."""
        n = dropped = 0
        with self._lock:
            while self._rows:
                wall, env_steps, updates, stats, demo = self._rows.popleft()
                n += 1
                if self._writer is None:  # closed: nowhere to write
                    dropped += 1
                    continue
                row = (f"{wall:.3f}", env_steps, updates, stats.robot, stats.episode,
                       f"{stats.episode_return:.6g}", int(bool(stats.success)), f"{demo[0]:.4g}", demo[1])
                self._writer.writerow(row[: self._columns])
                if self._tb is not None:
                    self._tb.add_scalar("episode/return", stats.episode_return, env_steps)
                    self._tb.add_scalar("episode/success", float(bool(stats.success)), env_steps)
                    self._tb.add_scalar("episode/length", stats.length, env_steps)
                    if demo[1]:
                        self._tb.add_scalar("demos/share", demo[0], env_steps)
            if n and self._file is not None:
                self._file.flush()
        if dropped:
            self.unwritten_episode_rows += dropped
            LOG.warning("%d episode rows arrived after the metrics were closed and were dropped (%d so far)",
                        dropped, self.unwritten_episode_rows)
        return n

    def add_training(self, metrics: dict[str, float], updates: int) -> None:
        """Training scalars (loss, q_mean, ...) at an update count, as ``train/<name>`` in TensorBoard."""
        if self._tb is None:
            return
        with self._lock:
            for key, value in metrics.items():
                self._tb.add_scalar(f"train/{key}", value, updates)

    def close(self) -> None:
        """Write queued rows, then close metrics.csv and TensorBoard (idempotent)."""
        self.write_queued()
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
                self._writer = None
            if self._tb is not None:
                self._tb.close()
                self._tb = None
