"""The trainer's learning curve (ROS-free): ``metrics.csv`` (one row per finished episode) and TensorBoard.

Rows are queued from any thread (a subscription callback: cheap) and written, flushed, by the update thread
or by the trainer's acknowledgement (:meth:`MetricsLog.write_queued`, any thread, one at a time);
:meth:`MetricsLog.close` writes what is still queued. Columns of
metrics.csv: ``wall_s`` (s since the run's first start), ``env_steps``, ``updates`` (as of the episode's
receipt), ``robot``, ``episode``, ``episode_return``, ``success`` (0/1), ``demo_share`` (share of
demonstration rows in the update batches since the previous row; 0 without demonstrations) and
``demo_buffer_size`` (rows in the demonstration buffer). A run resumed into a metrics.csv of an older
version (without the demo columns) keeps that file's columns.

Copies: a collector re-sends the statistics the trainer had not acknowledged (by their numbers) when it went
away, or not within a while (``async_naf.collecting.loop``), so a trainer may get the same episode twice (it
had them, the acknowledgement had not come yet), or a restarted trainer one its predecessor wrote already. An
episode whose ``(robot, episode, return)`` is among the last :data:`RECENT_EPISODES` rows (those of the file
at open included), or that the caller knows to be a copy (the trainer's ledger holds its number), is a copy:
not written, counted in ``duplicate_episodes``; except where this process wrote that row for another collector
session (a restarted collector numbers its episodes from 0 again, and a return can repeat).
"""
from __future__ import annotations

import csv
import logging
import threading
from collections import Counter, deque
from pathlib import Path
from typing import Any

LOG = logging.getLogger(__name__)
METRICS_HEADER = ("wall_s", "env_steps", "updates", "robot", "episode", "episode_return", "success",
                  "demo_share", "demo_buffer_size")
BASE_COLUMNS = 7  # the columns of metrics.csv before the demo columns
RECENT_EPISODES = 4096  # rows remembered to recognise a re-sent episode
QUEUED, COPY, CLOSED = "queued", "copy", "closed"  # what queue_episode did with an episode


def _episode_key(robot: Any, episode: Any, episode_return: float | str) -> tuple[str, str, str]:
    ret = episode_return if isinstance(episode_return, str) else f"{episode_return:.6g}"
    return str(int(robot)), str(int(episode)), ret


class MetricsLog:
    """metrics.csv and TensorBoard of one run.

    Args:
        run_dir: the run directory (metrics.csv is appended to; a new one gets the header).
        tensorboard: also write TensorBoard events to ``run_dir/tensorboard`` (a missing tensorboard package
            is a warning: metrics.csv still has the curve).

    Attributes:
        unwritten_episode_rows: rows that arrived once :meth:`close` had begun (dropped, logged).
        rows_at_open: episode rows metrics.csv held when opened (a resumed run's earlier rows).
        rows_written: episode rows written (flushed) since opened.
        duplicate_episodes: episodes refused as copies (module docstring).
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
        self._closing = False  # close() has begun: queue_episode takes no more rows
        self._rows: deque[tuple[float, int, int, Any, tuple[float, int]]] = deque()
        self.unwritten_episode_rows = 0
        self.duplicate_episodes = 0
        self.rows_written = 0
        self._recent: deque[tuple[str, str, str]] = deque()
        self._recent_count: Counter[tuple[str, str, str]] = Counter()
        # the collector session of the newest row with a key, for rows this process wrote (metrics.csv has none)
        self._key_session: dict[tuple[str, str, str], int] = {}
        self.rows_at_open = 0 if new else self._read_recent(path)
        self._file: Any = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._writer: Any = csv.writer(self._file)
        if not new and not path.read_bytes().endswith(b"\n"):  # a torn last row (a trainer killed mid-write)
            self._file.write("\n")
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

    def _read_recent(self, path: Path) -> int:
        """Remember the last rows of an existing metrics.csv; return how many rows it has."""
        n = 0
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                try:
                    self._remember(_episode_key(row["robot"], row["episode"], row["episode_return"]))
                except (KeyError, TypeError, ValueError):
                    continue  # a torn last line (a trainer killed while writing) or a foreign header
                n += 1
        return n

    def _remember(self, key: tuple[str, str, str], session: int = 0) -> None:
        self._recent.append(key)
        self._recent_count[key] += 1
        if session:
            self._key_session[key] = session
        while len(self._recent) > RECENT_EPISODES:
            old = self._recent.popleft()
            self._recent_count[old] -= 1
            if self._recent_count[old] <= 0:
                del self._recent_count[old]
                self._key_session.pop(old, None)

    def queue_episode(self, wall_s: float, env_steps: int, updates: int, stats: Any,
                      demo: tuple[float, int] = (0.0, 0), copy: bool = False) -> str:
        """One finished episode (layouts.EpisodeStats) with the counters at its receipt and ``demo`` =
        (demo_share, demo_buffer_size); cheap, any thread.

        Returns:
            :data:`QUEUED` (written by the next :meth:`write_queued`, :meth:`close` at the latest), :data:`COPY`
            (``copy``, or an episode recorded already: counted in ``duplicate_episodes``) or :data:`CLOSED`
            (:meth:`close` has begun: nothing will be written; counted in ``unwritten_episode_rows``).
        """
        key = _episode_key(stats.robot, stats.episode, float(stats.episode_return))
        with self._lock:
            if self._closing:
                self.unwritten_episode_rows += 1
                LOG.warning("an episode row arrived after the metrics were closed and was dropped (%d so far)",
                            self.unwritten_episode_rows)
                return CLOSED
            session = int(getattr(stats, "session", 0) or 0)
            known = self._key_session.get(key)
            # the same key from another collector process (a restarted one numbers its episodes from 0 again,
            # and a return can repeat) is another episode; from the file, whose rows name no session, a copy
            if copy or (key in self._recent_count and not (session and known and known != session)):
                self.duplicate_episodes += 1
                return COPY
            self._remember(key, session)
            self._rows.append((wall_s, env_steps, updates, stats, demo))
        return QUEUED

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
            self.rows_written += n - dropped
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
        """Take no more rows, write those queued, then close metrics.csv and TensorBoard (idempotent)."""
        with self._lock:
            self._closing = True  # an episode queued from now on is refused (CLOSED), not left unwritten
        self.write_queued()
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
                self._writer = None
            if self._tb is not None:
                self._tb.close()
                self._tb = None
