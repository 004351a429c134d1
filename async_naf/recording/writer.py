"""Write serialised messages into a rosbag2 bag from a thread of its own (ROS-free; ``rosbags`` underneath).

    writer = BagWriter("runs/x/bag", [TopicSpec("/robot_0/joint_states", "sensor_msgs/msg/JointState",
                                                qos_dict("sensor"))])
    writer.put(0, time.time_ns(), cdr_bytes)      # from a subscription callback: O(1), never blocks
    writer.close()                                # drains the queue, writes metadata.yaml

Receive times are wall-clock nanoseconds (as ``ros2 bag record`` stores them). What cannot be queued
(``max_pending`` reached) or written is counted per topic, never silently lost.
"""
from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG = logging.getLogger(__name__)

# the wire's QoS profiles (async_naf.nodes._msgs) as rosbag2 offered-QoS entries
_PROFILES: dict[str, dict[str, Any]] = {
    "sensor": {"reliability": "best_effort", "durability": "volatile", "depth": 5},
    "imu": {"reliability": "best_effort", "durability": "volatile", "depth": 50},
    "commands": {"reliability": "reliable", "durability": "volatile", "depth": 10},
    "latched": {"reliability": "reliable", "durability": "transient_local", "depth": 1},
    "stream": {"reliability": "reliable", "durability": "volatile", "depth": 100},
    "diagnostics": {"reliability": "reliable", "durability": "volatile", "depth": 10},
    "clock": {"reliability": "reliable", "durability": "volatile", "depth": 1},
}


def qos_dict(profile: str) -> dict[str, Any]:
    """The settings of a QoS profile name (reliability, durability, depth; history keep_last)."""
    try:
        return dict(_PROFILES[profile], history="keep_last")
    except KeyError:
        raise ValueError(f"unknown QoS profile {profile!r}; choose one of {tuple(_PROFILES)}") from None


def _rosbags_qos(settings: dict[str, Any]) -> Any:
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    zero = QosTime(0, 0)
    return Qos(QosHistory[settings["history"].upper()], int(settings["depth"]),
               QosReliability[settings["reliability"].upper()], QosDurability[settings["durability"].upper()],
               zero, zero, QosLiveliness.AUTOMATIC, zero, False)


@dataclass(frozen=True)
class TopicSpec:
    """One recorded topic: absolute name, ROS type (``pkg/msg/Name``), offered QoS settings (:func:`qos_dict`)."""

    name: str
    type: str
    qos: dict[str, Any] = field(default_factory=lambda: qos_dict("stream"))


class BagWriter:
    """A rosbag2 bag being written (see the module docstring).

    Args:
        path: the bag directory (must not exist).
        topics: what will be recorded; ``put`` takes an index into this list.
        storage: ``mcap`` or ``sqlite3``.
        max_pending: queued messages before ``put`` drops (and counts) new ones.

    Attributes:
        received, written, dropped: counts per topic index.

    Raises:
        ValueError: the path exists, or a type the Jazzy type store does not know.
    """

    def __init__(self, path: str | Path, topics: Sequence[TopicSpec], storage: str = "mcap",
                 max_pending: int = 200_000) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore

        path = Path(path)
        if path.exists():
            raise ValueError(f"{path} exists: a bag is never written over")
        plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}.get(storage)
        if plugin is None:
            raise ValueError(f"storage must be 'mcap' or 'sqlite3', got {storage!r}")
        store = get_typestore(Stores.ROS2_JAZZY)
        unknown = [t.type for t in topics if t.type not in store.types]
        if unknown:
            raise ValueError(f"message types unknown to the Jazzy type store: {unknown}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.topics = list(topics)
        n = len(self.topics)
        self.received, self.written, self.dropped = [0] * n, [0] * n, [0] * n
        self.max_pending = int(max_pending)
        self._pending: collections.deque[tuple[int, int, bytes]] = collections.deque()
        self._wake = threading.Condition()
        self._closing = False
        self.error = ""
        # the bag is opened, written and closed by the writer thread alone: a sqlite3 connection may only be
        # used by the thread that made it
        self._open = (Writer, plugin, store)
        self._opened = threading.Event()
        self._open_error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="bag-writer", daemon=True)
        self._thread.start()
        self._opened.wait()
        if self._open_error is not None:
            self._thread.join()
            raise ValueError(f"{path}: cannot open the bag: {self._open_error!r}") from self._open_error

    def put(self, index: int, receive_ns: int, data: bytes) -> bool:
        """Queue one serialised message of topic ``index`` received at ``receive_ns`` (wall clock, ns);
        False (and counted in ``dropped``) if the queue is full, the writer failed or is closing."""
        self.received[index] += 1
        if self._closing or self.error or len(self._pending) >= self.max_pending:
            self.dropped[index] += 1
            return False
        self._pending.append((index, receive_ns, data))
        if len(self._pending) == 1:
            with self._wake:
                self._wake.notify()
        return True

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _run(self) -> None:
        writer_type, plugin, store = self._open
        try:
            writer = writer_type(self.path, version=9, storage_plugin=plugin)
            writer.open()
            conns = [writer.add_connection(t.name, t.type, typestore=store,
                                           offered_qos_profiles=[_rosbags_qos(t.qos)]) for t in self.topics]
        except Exception as exc:  # noqa: BLE001 - raised to the constructor's caller as a ValueError
            self._open_error = exc
            self._opened.set()
            return
        self._opened.set()
        try:
            self._drain(writer.write, conns)
        finally:
            try:
                writer.close()  # metadata.yaml
            except Exception as exc:  # noqa: BLE001 - a failing disk must not kill the node: logged
                self.error = self.error or f"bag writer failed to close the bag: {exc!r}"
                LOG.error("%s", self.error)

    def _drain(self, write: Any, conns: list[Any]) -> None:
        pending = self._pending
        while True:
            with self._wake:
                while not pending and not self._closing:
                    self._wake.wait(0.2)
            if not pending and self._closing:
                return
            try:
                while pending:
                    index, stamp, data = pending.popleft()
                    write(conns[index], stamp, data)
                    self.written[index] += 1
            except Exception as exc:  # noqa: BLE001 - a failing disk must not kill the node: counted, logged
                self.error = f"bag writer failed: {exc!r}"
                LOG.error("%s; %d queued messages dropped", self.error, len(pending))
                for index, _, _ in pending:
                    self.dropped[index] += 1
                pending.clear()
                return

    def close(self) -> None:
        """Write what is queued, then close the bag (metadata.yaml). Idempotent."""
        if self._thread.is_alive():
            with self._wake:
                self._closing = True
                self._wake.notify()
            self._thread.join()
        self._closing = True

    def stats(self) -> dict[str, int]:
        """Totals: received, written, dropped, pending."""
        return {"received": sum(self.received), "written": sum(self.written), "dropped": sum(self.dropped),
                "pending": self.pending}
