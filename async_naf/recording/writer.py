"""Write serialised messages into a rosbag2 bag from a thread of its own (ROS-free; ``rosbags`` underneath).

    writer = BagWriter("runs/x/bag", [TopicSpec("/robot_0/joint_states", "sensor_msgs/msg/JointState",
                                                qos_dict("sensor"))])
    writer.put(0, time.time_ns(), cdr_bytes)      # from a subscription callback: O(1), never blocks
    writer.put_many([(0, t_ns, cdr), ...])        # many at once (a robot's bundle): one queue entry
    writer.close()                                # drains the queue, writes metadata.yaml

Receive times are wall-clock nanoseconds (as ``ros2 bag record`` stores them). What cannot be queued
(``max_pending`` messages or ``max_pending_bytes`` reached: a writer behind a flood of large messages must not take
all memory) or written is counted per topic, never silently lost.

Writing MCAP, the writer thread appends the message records to rosbags' open chunk itself (:class:`_McapAppend`:
one ``struct`` pack per message instead of rosbags' ``Writer.write`` with a ``BytesIO`` per record, about
3.8 us a message; a robot's bundle, MCAP records already, in one piece: ``put_bundle``), with exactly rosbags'
bytes, chunking, indexes and counts; a test writes the same messages both ways and compares the files byte for
byte. Where rosbags' writer is not the one this was checked
against (``_McapAppend.usable``), every message goes through ``Writer.write``.
"""
from __future__ import annotations

import collections
import io
import logging
import struct
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from async_naf.wire.record_bundle import MCAP_MESSAGE, MCAP_MESSAGE_FIXED, BundleRecords

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


# a MessageIndex record's head: opcode 0x07, record length, channel id, bytes of (time, position) entries
_MCAP_INDEX_HEAD = struct.Struct("<BQHI")
_ROSBAGS_CHUNK_BYTES = 2**20  # rosbags' McapWriter closes its chunk once a message takes it past this


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
        max_pending_bytes: queued serialised bytes before ``put`` drops (and counts) new messages.
        fast: MCAP records appended by :class:`_McapAppend` where it is usable (the same bytes); False: every
            message through rosbags' ``Writer.write``.

    Attributes:
        received, written, dropped: counts per topic index.
        fast: whether the writer thread appends MCAP records itself (known once the constructor returns).

    Raises:
        ValueError: the path exists, a type the Jazzy type store does not know, or a limit below 1.
    """

    def __init__(self, path: str | Path, topics: Sequence[TopicSpec], storage: str = "mcap",
                 max_pending: int = 200_000, fast: bool = True, max_pending_bytes: int = 2**28,
                 custom_data: Mapping[str, str] | None = None) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore

        path = Path(path)
        if not (max_pending >= 1 and max_pending_bytes >= 1):
            raise ValueError(f"max_pending and max_pending_bytes must be >= 1, got {max_pending}, {max_pending_bytes}")
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
        self.custom_data = {str(k): str(v) for k, v in (custom_data or {}).items()}  # metadata.yaml's custom_data
        self.topics = list(topics)
        n = len(self.topics)
        self.received, self.written, self.dropped = [0] * n, [0] * n, [0] * n
        self.max_pending = int(max_pending)
        self.max_pending_bytes = int(max_pending_bytes)
        # batches of (topic index, receive ns, data); _queued(_bytes) are only written by the putting thread,
        # _taken(_bytes) only by the writer thread, so ``pending`` and ``pending_bytes`` need no lock
        self._pending: collections.deque[Sequence[tuple[int, int, bytes | memoryview]] | _Records] = collections.deque()
        self._queued = self._taken = self._queued_bytes = self._taken_bytes = 0
        self.fast = bool(fast)
        self._wake = threading.Condition()
        self._lock = threading.Lock()  # the queue's check and append against the writer thread's failure
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

    def put(self, index: int, receive_ns: int, data: bytes | memoryview) -> bool:
        """Queue one serialised message of topic ``index`` received at ``receive_ns`` (wall clock, ns);
        False (and counted in ``dropped``) if the queue is full, the writer failed or is closing."""
        return self.put_many(((index, receive_ns, data),)) == 1

    def put_many(self, messages: Sequence[tuple[int, int, bytes | memoryview]]) -> int:
        """Queue ``(topic index, receive time ns, serialised message)`` each, in order, as one queue entry: what
        fits below ``max_pending``, the rest dropped and counted per topic (so are all of them if the writer
        failed or is closing). Returns how many were queued. One thread puts (the node's executor)."""
        return self._queue(messages)

    def put_records(self, indices: np.ndarray, records: np.ndarray, offsets: np.ndarray, stamps: np.ndarray) -> int:
        """Queue MCAP Message records (a robot's bundle, :mod:`async_naf.wire.record_bundle`) as :meth:`put_many`
        does: record ``i`` of topic ``indices[i]`` starts at ``offsets[i]`` of ``records`` (uint8, back to back,
        checked by ``decode_bundle_records``) with log time ``stamps[i]`` ns; its channel id is set to the bag's
        when it is written. Returns how many were queued.

        Raises:
            ValueError: a topic index outside the topics, or arrays of different lengths.
        """
        batch = _Records(np.asarray(indices, np.int64), np.asarray(records, np.uint8), np.asarray(offsets, np.int64),
                         np.asarray(stamps, np.uint64))
        n = len(batch.indices)
        if not (len(batch.offsets) == len(batch.stamps) == n) or batch.records.ndim != 1:
            raise ValueError("put_records: one offset and stamp per index, records one byte array")
        if n and (batch.indices.min() < 0 or batch.indices.max() >= len(self.topics)):
            raise ValueError(f"put_records: topic indices must be 0 .. {len(self.topics) - 1}")
        return self._queue(batch)

    def put_bundle(self, bundle: BundleRecords, topic_index: Mapping[str, int],
                   keep: np.ndarray | None = None) -> dict[str, int]:
        """Queue a robot's decoded bundle (:func:`async_naf.wire.record_bundle.decode_bundle_records`), each
        message under ``topic_index[its topic]``, as :meth:`put_records`. ``keep``: a mask of the messages to
        write (None: all; the others are not queued, and counted by the caller). Returns the kept messages left
        out per topic ``topic_index`` does not have (not queued, not counted here: the caller counts them)."""
        mapped = np.array([topic_index.get(topic, -1) for topic in bundle.topics] or [-1], np.int64)
        indices = mapped[bundle.topic]
        unknown = indices < 0
        known = ~unknown if keep is None else ~unknown & keep
        if keep is not None:
            unknown &= keep
        records, offsets = bundle.records, bundle.offsets
        unmapped: dict[str, int] = {}
        if unknown.any():
            for k, n in zip(*np.unique(bundle.topic[unknown], return_counts=True)):
                name = bundle.topics[int(k)]  # a table may name a topic twice
                unmapped[name] = unmapped.get(name, 0) + int(n)
        if not known.all():
            rows = np.flatnonzero(known)
            ends = np.append(offsets[1:], records.size)
            pieces = [records[offsets[i]:ends[i]] for i in rows]
            records = np.concatenate(pieces) if pieces else records[:0]
            sizes = ends[rows] - offsets[rows]
            offsets = np.cumsum(sizes) - sizes
            indices = indices[rows]
        self.put_records(indices, records, offsets, bundle.stamps[known])
        return unmapped

    def _queue(self, batch: Sequence[tuple[int, int, bytes | memoryview]] | _Records) -> int:
        _count(self.received, batch)
        size = _size(batch)
        with self._lock:  # against a writer thread that fails meanwhile: it drops (and counts) what is queued
            room = 0 if self._closing or self.error else max(0, self.max_pending - self.pending)
            byte_room = self.max_pending_bytes - self.pending_bytes
            if size > byte_room:  # the first messages that fit in the bytes left
                room = min(room, int(np.searchsorted(np.cumsum(_sizes(batch)), byte_room, side="right")))
            if room < len(batch):
                _count(self.dropped, _tail(batch, room))
                batch = _head(batch, room)
                size = _size(batch)
            if not len(batch):
                return 0
            self._queued += len(batch)
            self._queued_bytes += size
            self._pending.append(batch)
        if len(self._pending) == 1:
            with self._wake:
                self._wake.notify()
        return len(batch)

    @property
    def pending(self) -> int:
        """Messages queued and not yet written (or dropped by a failed writer)."""
        return self._queued - self._taken

    @property
    def pending_bytes(self) -> int:
        """Serialised bytes of the messages queued and not yet written (or dropped by a failed writer)."""
        return self._queued_bytes - self._taken_bytes

    def _run(self) -> None:
        writer_type, plugin, store = self._open
        try:
            writer = writer_type(self.path, version=9, storage_plugin=plugin)
            writer.open()
            for key, value in self.custom_data.items():
                writer.set_custom_data(key, value)
            conns = [writer.add_connection(t.name, t.type, typestore=store,
                                           offered_qos_profiles=[_rosbags_qos(t.qos)]) for t in self.topics]
        except Exception as exc:  # noqa: BLE001 - raised to the constructor's caller as a ValueError
            self._open_error = exc
            self._opened.set()
            return
        self._opened.set()
        self.fast = self.fast and _McapAppend.usable(writer)
        write_batch = _McapAppend(writer, conns).write if self.fast else partial(_write_each, writer.write, conns)
        try:
            self._drain(write_batch)
        finally:
            try:
                writer.close()  # metadata.yaml
            except Exception as exc:  # noqa: BLE001 - a failing disk must not kill the node: logged
                self.error = self.error or f"bag writer failed to close the bag: {exc!r}"
                LOG.error("%s", self.error)

    def _drain(self, write_batch: Callable[[Any], None]) -> None:
        pending, written = self._pending, self.written
        while True:
            with self._wake:
                while not pending and not self._closing:
                    self._wake.wait(0.2)
            if not pending and self._closing:
                return
            try:
                while pending:
                    batch = pending[0]
                    write_batch(batch)
                    pending.popleft()
                    self._taken += len(batch)
                    self._taken_bytes += _size(batch)
                    _count(written, batch)
            except Exception as exc:  # noqa: BLE001 - a failing disk must not kill the node: counted, logged
                lost = 0
                with self._lock:
                    self.error = f"bag writer failed: {exc!r}"
                    while pending:  # the failed batch counts as dropped whole: a bag that failed mid-batch is suspect
                        batch = pending.popleft()
                        self._taken += len(batch)
                        self._taken_bytes += _size(batch)
                        lost += len(batch)
                        _count(self.dropped, batch)
                LOG.error("%s; %d queued messages dropped", self.error, lost)
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
        """Totals: received, written, dropped, pending (messages), pending_bytes."""
        return {"received": sum(self.received), "written": sum(self.written), "dropped": sum(self.dropped),
                "pending": self.pending, "pending_bytes": self.pending_bytes}


def _add_counts(counter: list[int], indices: np.ndarray) -> None:
    """Add one to ``counter`` (per topic index) per entry of ``indices``."""
    per_topic = np.bincount(indices, minlength=len(counter))
    for index in np.flatnonzero(per_topic):
        counter[int(index)] += int(per_topic[index])


def _count(counter: list[int], batch: Sequence[tuple[int, int, bytes | memoryview]] | _Records) -> None:
    """Add one per message of ``batch`` to ``counter`` (per topic index)."""
    if isinstance(batch, _Records):
        _add_counts(counter, batch.indices)
    else:
        for index, _, _ in batch:
            counter[index] += 1


def _size(batch: Sequence[tuple[int, int, bytes | memoryview]] | _Records) -> int:
    """Serialised bytes in a batch (a bundle's records with their MCAP heads)."""
    if isinstance(batch, _Records):
        return int(batch.records.size)
    return sum(data.nbytes if isinstance(data, memoryview) else len(data) for _, _, data in batch)


def _sizes(batch: Sequence[tuple[int, int, bytes | memoryview]] | _Records) -> np.ndarray:
    """Serialised bytes of each message of a batch."""
    if isinstance(batch, _Records):
        return np.diff(np.append(batch.offsets, batch.records.size))
    return np.fromiter((data.nbytes if isinstance(data, memoryview) else len(data) for _, _, data in batch), np.int64,
                       len(batch))


def _head(batch: Any, n: int) -> Any:
    """The first ``n`` messages of a batch."""
    if isinstance(batch, _Records):
        end = int(batch.offsets[n]) if n < len(batch) else batch.records.size
        return _Records(batch.indices[:n], batch.records[:end], batch.offsets[:n], batch.stamps[:n])
    return batch[:n]


def _tail(batch: Any, n: int) -> Any:
    """The messages of a batch after the first ``n`` (for counting)."""
    if isinstance(batch, _Records):
        return _Records(batch.indices[n:], batch.records[:0], batch.offsets[n:], batch.stamps[n:])
    return batch[n:]


def _write_each(write: Callable[[Any, int, bytes | memoryview], None], conns: list[Any],
                batch: Sequence[tuple[int, int, bytes | memoryview]] | _Records) -> None:
    """Every message of ``batch`` through rosbags' ``Writer.write``."""
    if isinstance(batch, _Records):
        ends = np.append(batch.offsets[1:], batch.records.size)
        for index, start, end, stamp in zip(batch.indices, batch.offsets, ends, batch.stamps):
            write(conns[int(index)], int(stamp), batch.records[int(start) + MCAP_MESSAGE.size:int(end)].tobytes())
        return
    for index, stamp, data in batch:
        write(conns[index], stamp, data)


class _Records(NamedTuple):
    """A queued piece of MCAP Message records (:meth:`BagWriter.put_records`)."""

    indices: np.ndarray   # int64 topic index of each record
    records: np.ndarray   # uint8, the records back to back
    offsets: np.ndarray   # int64 start of each record in ``records``
    stamps: np.ndarray    # uint64 log time of each record, ns

    def __len__(self) -> int:
        return len(self.indices)


class _McapAppend:
    """Writes messages into the open chunk of rosbags' ``McapWriter`` as its ``write`` does (the same Message
    record, chunk index entry, start and end times, counts; the chunk closed once a message takes it past
    1 MiB), and closes chunks as its ``close_chunk`` does (the same Chunk, MessageIndex and ChunkIndex records),
    with numpy over a whole batch instead of Python per message: :meth:`write_records` writes a robot's bundle
    (:mod:`async_naf.wire.record_bundle`, MCAP records already) in one piece. Written against rosbags 0.11.9
    (``requirements.txt`` pins it); ``test_recording`` writes the same messages both ways, over several chunks,
    and compares the files byte for byte."""

    def __init__(self, writer: Any, conns: list[Any]) -> None:
        self.writer, self.storage = writer, writer.storage
        self.ids = [conn.id for conn in conns]
        self.id_array = np.array(self.ids, np.int64)
        self._segments: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (channel, time, position) of records
        self.storage.close_chunk = self._close_chunk  # rosbags' close() closes the last chunk through it too

    @staticmethod
    def usable(writer: Any) -> bool:
        """Whether ``writer`` is rosbags' MCAP writer in the form this was checked against: version 0.11.9, no
        compression, the pending chunk's BytesIO and index, the counters."""
        from importlib.metadata import version

        from rosbags.rosbag2 import CompressionMode

        storage = getattr(writer, "storage", None)
        chunk = getattr(storage, "chunk", None)
        return (version("rosbags") == "0.11.9"
                and type(storage).__module__ == "rosbags.rosbag2.storage_mcap"
                and type(storage).__name__ == "McapWriter"
                and getattr(writer, "compression_mode", None) == CompressionMode.NONE
                and getattr(storage, "compression", None) == ""
                and all(hasattr(chunk, a) for a in ("bio", "msgs", "message_start_time", "message_end_time"))
                and all(hasattr(storage, a) for a in ("bio", "chunks", "channel_stats", "message_start_time",
                                                      "message_end_time"))
                and isinstance(getattr(writer, "counts", None), dict)
                and all(isinstance(getattr(writer, a, None), int) for a in ("min_timestamp", "max_timestamp")))

    def write(self, batch: Sequence[tuple[int, int, bytes | memoryview]] | _Records) -> None:
        """Append every message of ``batch``: (topic index, log time ns, serialised message) each, or records."""
        if isinstance(batch, _Records):
            self.write_records(batch)
            return
        storage, ids, pack = self.storage, self.ids, MCAP_MESSAGE.pack
        stats, counts = storage.channel_stats, self.writer.counts
        chunk = storage.chunk
        msgs, lo, hi = chunk.msgs, chunk.message_start_time, chunk.message_end_time
        pos = chunk.bio.tell()
        parts: list[bytes | memoryview] = []
        try:
            for index, stamp, data in batch:
                cid = ids[index]
                lo, hi = min(lo, stamp), max(hi, stamp)
                msgs[cid].append((stamp, pos))
                size = data.nbytes if isinstance(data, memoryview) else len(data)
                parts += (pack(5, MCAP_MESSAGE_FIXED + size, cid, 0, stamp, stamp), data)
                pos += MCAP_MESSAGE.size + size
                stats[cid] += 1
                counts[cid] += 1
                if pos > _ROSBAGS_CHUNK_BYTES:
                    self._written(chunk, parts, lo, hi)
                    self._close_chunk()
                    chunk = storage.chunk
                    msgs, lo, hi = chunk.msgs, chunk.message_start_time, chunk.message_end_time
                    pos = chunk.bio.tell()
        finally:
            self._written(chunk, parts, lo, hi)

    def write_records(self, batch: _Records) -> None:
        """Write MCAP Message records as they are, their channel ids set to the bag's."""
        n = len(batch)
        if n == 0:
            return
        cids = self.id_array[batch.indices]
        buf = batch.records.copy()
        offsets = batch.offsets
        buf[offsets + 9] = cids & 0xFF
        buf[offsets + 10] = cids >> 8
        ends = np.append(offsets[1:], buf.size)
        storage, stats, counts = self.storage, self.storage.channel_stats, self.writer.counts
        start = 0
        while start < n:
            chunk = storage.chunk
            base = chunk.bio.tell() - int(offsets[start])
            over = np.flatnonzero(base + ends[start:] > _ROSBAGS_CHUNK_BYTES)
            stop = start + int(over[0]) + 1 if over.size else n
            chunk.bio.write(buf[offsets[start]:ends[stop - 1]].data)
            part_cids, part_stamps = cids[start:stop], batch.stamps[start:stop]
            self._segments.append((part_cids, part_stamps, base + offsets[start:stop]))
            per_channel = np.bincount(part_cids)
            for cid in np.flatnonzero(per_channel):
                stats[int(cid)] += int(per_channel[cid])
                counts[int(cid)] += int(per_channel[cid])
            self._written(chunk, [], int(part_stamps.min()), int(part_stamps.max()))
            if over.size:
                self._close_chunk()
            start = stop

    def _written(self, chunk: Any, parts: list[bytes | memoryview], lo: int, hi: int) -> None:
        if parts:
            chunk.bio.write(b"".join(parts))
            parts.clear()
        storage, writer = self.storage, self.writer
        chunk.message_start_time = min(chunk.message_start_time, lo)
        chunk.message_end_time = max(chunk.message_end_time, hi)
        storage.message_start_time = min(storage.message_start_time, lo)
        storage.message_end_time = max(storage.message_end_time, hi)
        writer.min_timestamp = min(writer.min_timestamp, lo)  # metadata.yaml's start and duration
        writer.max_timestamp = max(writer.max_timestamp, hi)

    def _chunk_index(self, chunk: Any) -> list[tuple[int, bytes]]:
        """(channel id, its MessageIndex entries: log time and record position, u64 each) of the open chunk, the
        channels in the order of their first message, each channel's in the order written (rosbags' order)."""
        cid_parts, time_parts, pos_parts = [], [], []
        for cid, entries in chunk.msgs.items():
            if entries:
                pairs = np.array(entries, np.uint64).reshape(-1, 2)
                cid_parts.append(np.full(len(pairs), cid, np.int64))
                time_parts.append(pairs[:, 0])
                pos_parts.append(pairs[:, 1].astype(np.int64))
        for cid_array, stamps, positions in self._segments:
            cid_parts.append(cid_array)
            time_parts.append(stamps.astype(np.uint64))
            pos_parts.append(positions.astype(np.int64))
        self._segments = []
        if not cid_parts:
            return []
        cid, stamp, pos = np.concatenate(cid_parts), np.concatenate(time_parts), np.concatenate(pos_parts)
        channels, which = np.unique(cid, return_inverse=True)
        first = np.full(len(channels), np.iinfo(np.int64).max)
        np.minimum.at(first, which, pos)
        rank = np.empty(len(channels), np.int64)
        rank[np.argsort(first)] = np.arange(len(channels))
        order = np.lexsort((pos, rank[which]))
        table = np.empty((len(order), 2), "<u8")
        table[:, 0], table[:, 1] = stamp[order], pos[order]
        bounds = np.cumsum(np.bincount(rank[which], minlength=len(channels)))
        out, begin = [], 0
        for r, end in enumerate(bounds):
            out.append((int(channels[np.flatnonzero(rank == r)[0]]), table[begin:end].tobytes()))
            begin = int(end)
        return out

    def _close_chunk(self) -> None:
        """rosbags' ``McapWriter.close_chunk``, the same records and bytes (Chunk, one MessageIndex per channel,
        the ChunkIndex kept for the summary)."""
        from rosbags.rosbag2.storage_mcap import PendingChunk, write_record, write_string, write_uint32, write_uint64

        storage = self.storage
        chunk = storage.chunk
        size = chunk.bio.tell()
        rec = io.BytesIO()
        write_uint64(rec, chunk.message_start_time)
        write_uint64(rec, chunk.message_end_time)
        write_uint64(rec, size)
        write_uint32(rec, 0)
        data = chunk.bio.getvalue()  # no compression (``usable``)
        write_string(rec, storage.compression)
        write_uint64(rec, len(data))
        rec.write(data)
        out = storage.bio
        chunk_start = out.tell()
        write_record(out, 0x06, rec)
        chunk_end = out.tell()
        offsets: list[tuple[int, int]] = []
        for cid, entries in self._chunk_index(chunk):
            offsets.append((cid, out.tell()))
            out.write(_MCAP_INDEX_HEAD.pack(0x07, 6 + len(entries), cid, len(entries)))
            out.write(entries)
        rec = io.BytesIO()
        write_uint64(rec, chunk.message_start_time)
        write_uint64(rec, chunk.message_end_time)
        write_uint64(rec, chunk_start)
        write_uint64(rec, chunk_end - chunk_start)
        write_uint32(rec, len(offsets) * 10)
        for cid, offset in offsets:
            rec.write(struct.pack("<HQ", cid, offset))
        write_uint64(rec, out.tell() - chunk_end)
        write_string(rec, storage.compression)
        write_uint64(rec, len(data))
        write_uint64(rec, size)
        storage.chunks.append(rec)
        storage.chunk = PendingChunk(2**63 - 1, 0, io.BytesIO(), collections.defaultdict(list))
