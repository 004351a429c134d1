"""Fast raw reads of a few topics out of an indexed MCAP rosbag2 bag: chunk and message indexes, numpy.

Why this exists: speed. ``rosbags.highlevel.AnyReader(...).messages(connections=...)`` decompresses every
chunk that holds a wanted message and then parses *every* record of it in Python (a microsecond or more a
record), and a recorded bag has ~8 records per policy step of which a converter wants one or two.
:func:`read_indexed` instead reads, per chunk, only the Message Index records of the wanted channels (the
offsets of their messages in the decompressed chunk), then gathers the headers and payloads of just those
messages with numpy fancy indexing: no Python loop per message, memory the wanted payloads (plus one chunk at
a time), not the whole bag.

    got = read_indexed("runs/x/bag", ["/robot_0/policy/step"])
    if got is None:                      # not an indexed MCAP bag: read it with rosbags as before
        ...
    steps = got["/robot_0/policy/step"]  # TopicPayloads: log_time (ns), buf, start, length
    steps.payload(0)                     # the serialised CDR bytes of the first message

The result is exactly what ``AnyReader([bag]).messages(connections=<the topics' connections>)`` of rosbags
0.11.9 yields for one bag, topic by topic: the same payload bytes and receive times, in the same order:

- files in the order of metadata.yaml's ``relative_file_paths`` (rosbags' ``DirectoryReader.messages`` reads
  its storage files one after the other, never merging them);
- within a file by log time, ties by the start offset of the chunk in the file, then by position within the
  chunk (``McapReader.messages`` merges per-chunk streams of ``Msg(log_time, chunk_start_offset, ...)`` with
  ``heapq.merge``, each stream stably sorted by log time, i.e. in record order within equal times).

It returns None, and the caller then reads with rosbags (which raises its own clear error where the bag is
broken), when this fast path does not apply or cannot promise that equality: a storage other than MCAP (e.g.
sqlite3), file or message compression of the bag, an MCAP file without summary or chunk indexes ("fastwrite"
or streamed files), chunks without message indexes where the summary's statistics cannot rule out wanted
messages in them, an unknown chunk compression, a channel of a wanted topic that matches no topic of
metadata.yaml, a file the ``mcap`` library refuses (truncated, corrupt), or any inconsistency between the
indexes and the records they point at; and where rosbags refuses to open the bag (``AnyReader`` checks the
metadata, the summaries, the message definitions and type hashes when it opens a bag; :func:`topic_types` and
:func:`read_indexed` open it so, and serve no bag the reader they stand in for would refuse: 15-130 ms a bag
here). The payloads are never deserialised here. One difference is left on purpose: rosbags skips a chunk whose
records it cannot parse without an error (a damaged record length: no messages of that chunk); the indexes
still point at its messages, and this reads them. ``async-naf bag info`` reports such a topic as short of its
metadata count, and the conversions that read through rosbags refuse the bag.

No ROS imports: ``mcap`` reads the summary, the records are parsed with ``struct`` and numpy, chunks are
decompressed with the zstd and lz4 modules rosbags itself uses. On one core, the ``policy/step`` topic of a
10,000-step door_pull bag (27 MB, 80,000 records) reads at about a million messages/s, 8-10x AnyReader.
"""
from __future__ import annotations

import bisect
import functools
import logging
import os
import struct
import sys
import zlib
from collections.abc import Collection
from io import BufferedReader
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

if TYPE_CHECKING:
    from mcap.records import ChunkIndex
    from mcap.summary import Summary

LOG = logging.getLogger(__name__)

_MAGIC = b"\x89MCAP0\r\n"
_OP_HEADER, _OP_MESSAGE, _OP_CHUNK, _OP_MESSAGE_INDEX = 0x01, 0x05, 0x06, 0x07
_RECORD_HEAD = 9  # every record: opcode u8, content length u64
_MESSAGE_FIXED = 22  # Message content before the payload: channel_id u16, sequence u32, log_time u64, publish_time u64
_MESSAGE_HEAD = _RECORD_HEAD + _MESSAGE_FIXED  # 31: a payload starts 31 bytes after its record
# bytes 1..30 of a Message record, gathered for all wanted messages of a chunk at once and viewed as this
_MESSAGE_HEADER = np.dtype([("length", "<u8"), ("channel", "<u2"), ("sequence", "<u4"), ("log_time", "<u8"),
                            ("publish_time", "<u8")])
_CHUNK_FIXED = struct.Struct("<BQQQQII")  # opcode, length, start time, end time, uncompressed size, crc, len(compr.)
_INDEX_HEAD = struct.Struct("<BQHI")  # MessageIndex: opcode, length, channel_id, byte length of its (u64, u64) pairs
_GATHER_BLOCK = 1 << 22  # bytes gathered per numpy fancy-indexing call (its int64 index is 8x that)
_FEW_LENGTHS, _BYTES_PER_LENGTH = 16, 16384  # gather by message length while there are few lengths (_gather)
_I64_MAX = 2**63 - 1


class TopicPayloads(NamedTuple):
    """Serialised messages of one topic, in the order rosbags' AnyReader yields them.

    ``buf`` holds the payloads back to back in that order: ``start[i + 1] == start[i] + length[i]``.
    """

    log_time: np.ndarray  # (n,) int64, receive time (MCAP log_time), ns
    buf: np.ndarray  # (total,) uint8: the payloads, concatenated
    start: np.ndarray  # (n,) int64: offset of message i's payload in buf
    length: np.ndarray  # (n,) int64: its length in bytes
    # (n,) int64: each message's place among the messages of all topics of one read_indexed call, in the
    # order AnyReader.messages yields them for those topics' connections together (merging topics by it
    # gives that order)
    order: np.ndarray | None = None

    def payload(self, i: int) -> bytes:
        """The serialised (CDR) bytes of message ``i``."""
        s = int(self.start[i])
        return self.buf[s:s + int(self.length[i])].tobytes()


class _NotApplicable(Exception):
    """The fast path does not apply to this bag; the message says why (logged at debug level)."""


class _Part(NamedTuple):
    """Wanted messages of one topic out of one chunk, in record order."""

    log_time: np.ndarray  # (n,) uint64, ns
    chunk_start: int  # offset of the chunk record in its file
    offset: np.ndarray  # (n,) int64: record offsets in the decompressed chunk
    length: np.ndarray  # (n,) int64: payload lengths
    buf: np.ndarray  # the n payloads back to back, uint8


def read_indexed(bag: str | Path, topics: Collection[str]) -> dict[str, TopicPayloads] | None:
    """The serialised messages of ``topics`` in ``bag``, read through the MCAP indexes; None where that fast
    path does not apply (module docstring: the caller then reads with rosbags).

    Args:
        bag: a rosbag2 bag directory (metadata.yaml and its ``.mcap`` files) or a single ``.mcap`` file.
        topics: topic names; a topic the bag does not have is absent from the result (one the bag has
            but with no messages is there, empty).

    Returns:
        Topic name to its messages (:class:`TopicPayloads`, receive times in ns), each topic's channels
        merged in the order ``AnyReader.messages`` yields them; or None. Never raises for an odd or broken
        bag.
    """
    try:
        return _read(Path(bag), set(topics))
    except _NotApplicable as exc:
        LOG.debug("%s: no fast indexed read (%s); read it with rosbags", bag, exc)
    except OSError as exc:
        LOG.debug("%s: no fast indexed read (%r); read it with rosbags", bag, exc)
    return None


def topic_types(bag: str | Path) -> dict[str, str] | None:
    """Topic name -> message type (``pkg/msg/Name``) of every topic of ``bag``, for choosing what to pass to
    :func:`read_indexed` and how to decode it; None where the bag's layout already rules the fast path out
    (not an MCAP bag, unreadable metadata.yaml or MCAP summary) or where a topic has channels of several
    types (:class:`TopicPayloads` carries no type per message). Reads metadata.yaml of a bag directory, the
    MCAP summary of a single file; never raises for an odd bag."""
    try:
        path = Path(bag)
        files, meta = _layout(path)
        _rosbags_opens(path)
        if meta is not None:
            types = {topic: {typ for typ, _, _ in entries} for topic, entries in meta.items()}
        else:
            types = {}
            for topic, typ in _channel_types(files[0]):
                types.setdefault(topic, set()).add(typ)
    except _NotApplicable as exc:
        LOG.debug("%s: no topic types for a fast indexed read (%s)", bag, exc)
        return None
    except OSError as exc:
        LOG.debug("%s: no topic types for a fast indexed read (%r)", bag, exc)
        return None
    if any(len(t) != 1 for t in types.values()):
        LOG.debug("%s: a topic of several types: no fast indexed read", bag)
        return None
    return {topic: t.pop() for topic, t in sorted(types.items())}


def _read(bag: Path, topics: set[str]) -> dict[str, TopicPayloads]:
    files, meta = _layout(bag)
    _rosbags_opens(bag)
    found: set[str] = set() if meta is None else topics & meta.keys()
    per_topic: dict[str, list[tuple[np.ndarray, ...]]] = {}
    for number, path in enumerate(files):
        for topic, got in _read_file(path, topics, meta).items():
            found.add(topic)
            per_topic.setdefault(topic, []).append(got + (np.full(len(got[0]), number, np.int64),))
    merged: dict[str, list[np.ndarray]] = {}
    for topic in sorted(found):
        parts = per_topic.get(topic, [])
        if len(parts) == 1:
            merged[topic] = list(parts[0])
        else:  # log_time, buf, length, chunk, offset, file
            merged[topic] = [np.concatenate([p[k] for p in parts]) if parts else
                             np.zeros(0, np.uint8 if k == 1 else np.int64) for k in range(6)]
    # the place of every message among all topics': files one after the other, then rosbags' order in a file
    keys = [np.concatenate([merged[topic][k] for topic in merged]) if merged else np.zeros(0, np.int64)
            for k in (4, 3, 0, 5)]
    order = np.empty(len(keys[0]), np.int64)
    order[np.lexsort(keys)] = np.arange(len(keys[0]))
    out: dict[str, TopicPayloads] = {}
    at = 0
    for topic, (log_time, buf, length, *_) in merged.items():
        start = np.zeros(len(length), np.int64)
        np.cumsum(length[:-1], out=start[1:])
        out[topic] = TopicPayloads(log_time, buf, start, length, order[at:at + len(length)])
        at += len(length)
    return out


# --- bag layout --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _yaml_load(text: str) -> Any:
    """The parsed document (cached: metadata.yaml is read by topic_types and read_indexed, and channels repeat
    a few QoS strings; callers only read what it returns)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # a safe loader (C where built)
    except yaml.YAMLError as exc:
        raise _NotApplicable(f"unreadable YAML: {exc}") from None


def _qos(value: Any) -> Any:
    """Offered QoS profiles as rosbags compares them (list of dicts): from metadata.yaml (a list, or a YAML
    string before version 9) or from an MCAP channel's metadata (a YAML string); nothing -> []."""
    if not value:
        return []
    if isinstance(value, str):
        value = _yaml_load(value)
    if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
        raise _NotApplicable(f"offered_qos_profiles not a list of profiles: {value!r}")
    return value


_MetaTopics = dict[str, list[tuple[str, str, Any]]]  # topic -> [(type, serialization format, offered QoS)]


def _layout(bag: Path) -> tuple[list[Path], _MetaTopics | None]:
    """The bag's MCAP files in reading order and, for a bag directory, its topics from metadata.yaml (None for
    a single ``.mcap`` file: rosbags then yields every channel of a topic)."""
    if not bag.is_dir():
        if bag.suffix != ".mcap" or not bag.is_file():
            raise _NotApplicable("neither a bag directory nor a .mcap file")
        return [bag], None
    doc = _yaml_load((bag / "metadata.yaml").read_text())
    try:
        info = doc["rosbag2_bagfile_information"]
        if info["storage_identifier"] != "mcap":
            raise _NotApplicable(f"storage {info['storage_identifier']!r}, not mcap")
        if int(info["version"]) > 9:
            raise _NotApplicable(f"rosbag2 metadata version {info['version']}")
        mode = str(info.get("compression_mode") or "").lower()
        if mode not in ("", "none"):
            raise _NotApplicable(f"compression mode {mode!r}")
        if ("nanoseconds" not in info["duration"] or "nanoseconds_since_epoch" not in info["starting_time"]
                or "message_count" not in info):
            raise _NotApplicable("metadata.yaml lacks what rosbags' reader needs")
        # rosbags opens each file by its name in the bag directory
        files = [bag / PurePath(str(x)).name for x in info["relative_file_paths"]]
        meta: _MetaTopics = {}
        for entry in info["topics_with_message_count"]:
            tm = entry["topic_metadata"]
            if "message_count" not in entry:
                raise _NotApplicable("metadata.yaml: a topic without message_count")
            if tm["serialization_format"] != "cdr":  # rosbags refuses such a bag
                raise _NotApplicable(f"serialization format {tm['serialization_format']!r}")
            if not (isinstance(tm["name"], str) and isinstance(tm["type"], str)):
                raise _NotApplicable(f"metadata.yaml: a topic named {tm['name']!r} of type {tm['type']!r}")
            meta.setdefault(tm["name"], []).append((tm["type"], "cdr", _qos(tm.get("offered_qos_profiles", []))))
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:  # int(.inf): OverflowError
        raise _NotApplicable(f"metadata.yaml: {exc!r}") from None
    return files, meta


def _rosbags_opens(bag: Path) -> None:
    """_NotApplicable unless rosbags' ``AnyReader`` opens ``bag`` (what it checks then: module docstring)."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    from async_naf.common.bags import read_errors

    try:
        with AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_JAZZY)):
            pass
    except read_errors() as exc:
        raise _NotApplicable(f"rosbags refuses it: {type(exc).__name__}: {exc}") from None


# --- one MCAP file -----------------------------------------------------------------------------------------


def _read_file(path: Path, topics: set[str], meta: _MetaTopics | None
               ) -> dict[str, tuple[np.ndarray, ...]]:
    """Wanted topics of one file in rosbags' order: (log_time int64, payloads back to back, lengths int64,
    chunk offsets int64, record offsets in the chunk int64; see :func:`_in_order`)."""
    with path.open("rb") as f:
        summary = _summary(f, path.name)
        channels: dict[int, str] = {}  # wanted channel id -> its topic
        for ch in summary.channels.values():
            if ch.topic not in topics:
                continue
            if meta is not None:  # rosbags yields a channel only where it matches a topic of metadata.yaml
                key = (_schema_name(summary, ch.schema_id), ch.message_encoding,
                       _qos(ch.metadata.get("offered_qos_profiles", "")))
                if key not in meta.get(ch.topic, []):
                    raise _NotApplicable(f"{path.name}: channel {ch.id} of {ch.topic} matches no topic of "
                                         "metadata.yaml")
            channels[ch.id] = ch.topic
        if not channels:
            return {}

        file_size = os.fstat(f.fileno()).st_size
        todo: list[ChunkIndex] = []  # the chunks that hold wanted messages
        starts: set[int] = set()
        for ci in summary.chunk_indexes:
            if ci.chunk_start_offset in starts:
                raise _NotApplicable(f"{path.name}: two chunk indexes of one chunk")
            starts.add(ci.chunk_start_offset)
            if ci.chunk_start_offset + ci.chunk_length + ci.message_index_length > file_size:
                raise _NotApplicable(f"{path.name}: a chunk index points past the end of the file")
            if not ci.message_index_offsets and summary.statistics is None:
                raise _NotApplicable(f"{path.name}: a chunk without message indexes and no statistics")
            if any(cid in channels for cid in ci.message_index_offsets):
                todo.append(ci)
        # one buffer the chunks (and their message indexes) are read into, one after the other
        scratch = bytearray(max((ci.chunk_length + ci.message_index_length for ci in todo), default=0))
        parts: dict[str, list[_Part]] = {topic: [] for topic in channels.values()}
        indexed = dict.fromkeys(channels, 0)  # messages the message indexes list, per wanted channel
        for ci in todo:
            for part_topic, part in _read_chunk(f, scratch, path.name, ci, channels, indexed):
                parts[part_topic].append(part)

    if summary.statistics is not None:
        counts = summary.statistics.channel_message_counts
        if any(counts.get(cid, 0) != n for cid, n in indexed.items()):
            raise _NotApplicable(f"{path.name}: the message indexes miss messages the statistics count")
    return {topic: _in_order(got) for topic, got in parts.items()}


def _summary(f: BinaryIO, name: str) -> Summary:
    """The summary of an MCAP file with chunk indexes (the ``mcap`` library reads it), or _NotApplicable."""
    import mcap.exceptions
    from mcap.reader import make_reader

    _check_header(f)
    f.seek(0)
    try:
        summary = make_reader(f).get_summary()
    except (mcap.exceptions.McapError, struct.error, ValueError, EOFError, KeyError, IndexError,
            OverflowError) as exc:
        raise _NotApplicable(f"{name}: the mcap library refuses it: {exc!r}") from None
    if summary is None:
        raise _NotApplicable(f"{name}: no summary section (unindexed MCAP)")
    if not summary.chunk_indexes:
        raise _NotApplicable(f"{name}: no chunk indexes")
    if not summary.schemas:  # rosbags then scans the data section for schemas and channels
        raise _NotApplicable(f"{name}: no schemas in the summary")
    return summary


def _channel_types(path: Path) -> list[tuple[str, str]]:
    """(topic, message type) of each channel of an MCAP file, as rosbags names the type."""
    with path.open("rb") as f:
        summary = _summary(f, path.name)
    return [(ch.topic, _schema_name(summary, ch.schema_id)) for ch in summary.channels.values()]


def _schema_name(summary: Summary, schema_id: int) -> str:
    schema = summary.schemas.get(schema_id)
    return schema.name if schema is not None else "__schemaless__"


def _check_header(f: BinaryIO) -> None:
    """Magic and a Header record of profile ``ros2`` (rosbags' McapReader refuses any other)."""
    head = f.read(8 + _RECORD_HEAD + 4 + 4)
    if len(head) != 25 or head[:8] != _MAGIC or head[8] != _OP_HEADER:
        raise _NotApplicable("not an MCAP file")
    if head[17:] != b"\x04\x00\x00\x00ros2":  # the profile: u32 length 4, "ros2"
        raise _NotApplicable("MCAP profile is not ros2")


def _read_chunk(f: BufferedReader, scratch: bytearray, name: str, ci: ChunkIndex, channels: dict[int, str],
                indexed: dict[int, int]) -> list[tuple[str, _Part]]:
    """The wanted messages of one chunk, per topic, after checking the chunk and its indexes agree.

    The chunk is read into ``scratch`` (reused for the next: what is returned holds copies only)."""
    base, span = ci.chunk_start_offset, ci.chunk_length + ci.message_index_length
    f.seek(base)
    data = view = memoryview(scratch)[:span]
    if f.readinto(data) != span or ci.chunk_length < _CHUNK_FIXED.size + 8:
        raise _NotApplicable(f"{name}: chunk at {base} truncated")

    # the Chunk record, against its index (rosbags reads it as the index says)
    op, length, t_start, t_end, size, crc, n_comp = _CHUNK_FIXED.unpack_from(data, 0)
    pos = _CHUNK_FIXED.size
    compression = bytes(view[pos:pos + n_comp]).decode("utf-8", "replace")
    pos += n_comp
    if pos + 8 > ci.chunk_length:
        raise _NotApplicable(f"{name}: chunk at {base} malformed")
    (n_data,) = struct.unpack_from("<Q", data, pos)
    pos += 8
    if (op, length + _RECORD_HEAD, t_start, t_end, size, compression, n_data) != (
            _OP_CHUNK, ci.chunk_length, ci.message_start_time, ci.message_end_time, ci.uncompressed_size,
            ci.compression, ci.compressed_size) or pos + n_data > ci.chunk_length:
        raise _NotApplicable(f"{name}: chunk at {base} does not match its index")
    records = _decompress(view[pos:pos + n_data], compression, size, name)
    if crc and zlib.crc32(records) != crc:
        raise _NotApplicable(f"{name}: chunk at {base}: checksum mismatch")
    rec = np.frombuffer(records, np.uint8)

    # the message indexes; rosbags counts each channel's messages from the gap to the next index record
    # (sorted offsets), so they must lie back to back after the chunk as writers put them
    offsets = ci.message_index_offsets
    ends = sorted(offsets.values())
    ends.append(base + ci.chunk_length + ci.message_index_length)
    if len(set(ends)) != len(ends) or ends[0] < base + ci.chunk_length:
        raise _NotApplicable(f"{name}: chunk at {base}: message index offsets out of place")
    by_topic: dict[str, list[tuple[int, np.ndarray]]] = {}
    for cid in sorted(c for c in offsets if c in channels):
        at = offsets[cid]
        rel = at - base
        if rel + _INDEX_HEAD.size > span:
            raise _NotApplicable(f"{name}: message index at {at} past its chunk's")
        op, length, channel, n_bytes = _INDEX_HEAD.unpack_from(data, rel)
        following = ends[bisect.bisect_right(ends, at)]
        if (op, channel, length) != (_OP_MESSAGE_INDEX, cid, 6 + n_bytes) or n_bytes % 16 \
                or at + _INDEX_HEAD.size + n_bytes != following:
            raise _NotApplicable(f"{name}: message index at {at} malformed")
        n = n_bytes // 16
        indexed[cid] += n
        if n:
            pairs = np.frombuffer(data, "<u8", count=2 * n, offset=rel + _INDEX_HEAD.size).reshape(n, 2)
            by_topic.setdefault(channels[cid], []).append((cid, pairs))

    out = []
    for topic, lists in by_topic.items():
        pairs = np.concatenate([p for _, p in lists]) if len(lists) > 1 else lists[0][1]
        cid_of = np.concatenate([np.full(len(p), c, np.uint16) for c, p in lists])
        out.append((topic, _gather_messages(rec, pairs, cid_of, ci, name)))
    return out


def _decompress(data: memoryview, compression: str, size: int, name: str) -> bytes | memoryview:
    """Decompressed chunk records, as rosbags decompresses them; ``size`` bytes or _NotApplicable."""
    raw: bytes | memoryview
    try:
        if compression == "":
            raw = data
        elif compression == "zstd":
            if sys.version_info >= (3, 14):
                from compression import zstd
            else:
                from backports import zstd
            try:
                raw = zstd.decompress(data)
            except zstd.ZstdError as exc:
                raise _NotApplicable(f"{name}: zstd: {exc}") from None
        elif compression == "lz4":
            from lz4.frame import decompress as lz4_decompress  # type: ignore[import-untyped]

            raw = lz4_decompress(data)
        else:
            raise _NotApplicable(f"{name}: chunk compression {compression!r}")
    except (RuntimeError, ValueError, MemoryError) as exc:  # lz4 raises RuntimeError on a broken frame
        raise _NotApplicable(f"{name}: {compression}: {exc!r}") from None
    if len(raw) != size:
        raise _NotApplicable(f"{name}: chunk decompresses to {len(raw)} bytes, its header says {size}")
    return raw


def _gather_messages(rec: np.ndarray, pairs: np.ndarray, cid_of: np.ndarray, ci: ChunkIndex, name: str
                     ) -> _Part:
    """Headers and payloads of the indexed messages (``pairs``: (n, 2) log_time, record offset) of a chunk
    (``rec``: its decompressed records), vectorised, after checking each is the Message record its index says."""
    size = len(rec)
    if size < _MESSAGE_HEAD or int(pairs[:, 1].max()) > size - _MESSAGE_HEAD:
        raise _NotApplicable(f"{name}: chunk at {ci.chunk_start_offset}: message offset past the chunk")
    order = np.argsort(pairs[:, 1], kind="stable")  # record order, as rosbags scans the chunk
    offset = pairs[order, 1].astype(np.int64)
    index_time, cid_of = pairs[order, 0], cid_of[order]
    head = rec[offset[:, None] + np.arange(1, _MESSAGE_HEAD)]  # (n, 30): bytes 1..30 of each record
    hdr = head.view(_MESSAGE_HEADER)[:, 0]
    reclen, log_time = hdr["length"], hdr["log_time"]
    end = offset + _RECORD_HEAD  # where each record ends, checked below before it is trusted
    ok = ((rec[offset] == _OP_MESSAGE).all() and (hdr["channel"] == cid_of).all()
          and (log_time == index_time).all() and (reclen >= _MESSAGE_FIXED).all()
          and (reclen <= np.uint64(size) - end.astype(np.uint64)).all())
    if ok:
        end += reclen.astype(np.int64)
        # records must not overlap (a duplicated or stray offset), and times must lie in the chunk's range:
        # rosbags drops messages outside it and merges chunks assuming none is
        ok = bool((end[:-1] <= offset[1:]).all() and int(log_time.min()) >= ci.message_start_time
                  and int(log_time.max()) <= min(ci.message_end_time, _I64_MAX))
    if not ok:
        raise _NotApplicable(f"{name}: chunk at {ci.chunk_start_offset}: its message index does not match "
                             "its records")
    start = offset + _MESSAGE_HEAD
    length = end - start
    return _Part(log_time.copy(), ci.chunk_start_offset, offset, length, _gather(rec, start, length))


def _gather(src: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """``src[start[i]:start[i] + length[i]]`` for all i, back to back (uint8), vectorised.

    Messages of one length (most topics have a few fixed layouts) are copied as rows of a sliding-window
    view of ``src`` (numpy copies each row whole: ~10x faster than a byte index); with many distinct
    lengths, by a byte index (``np.repeat`` / ``np.arange``) in blocks of about _GATHER_BLOCK bytes, so the
    int64 index stays small.
    """
    ends = np.cumsum(length)
    total = int(ends[-1]) if len(ends) else 0
    if total == 0:
        return np.zeros(0, np.uint8)
    firsts = ends - length  # where each lands in the result
    lengths = np.unique(length)
    if len(lengths) == 1:
        return sliding_window_view(src, int(lengths[0]))[start].reshape(-1)
    out = np.empty(total, np.uint8)
    if len(lengths) <= max(_FEW_LENGTHS, total // _BYTES_PER_LENGTH):
        for n in lengths.tolist():
            if n:
                sel = length == n
                sliding_window_view(out, n, writeable=True)[firsts[sel]] = sliding_window_view(src, n)[start[sel]]
        return out
    cuts = np.searchsorted(ends, np.arange(_GATHER_BLOCK, total, _GATHER_BLOCK), side="left") + 1
    bounds = np.unique(np.concatenate([[0], cuts, [len(length)]]))
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        lo, hi = int(firsts[a]), int(ends[b - 1])
        if hi > lo:
            idx = np.repeat(start[a:b] - firsts[a:b], length[a:b])
            idx += np.arange(lo, hi)
            out[lo:hi] = src[idx]
    return out


def _in_order(parts: list[_Part]) -> tuple[np.ndarray, ...]:
    """One file's parts of a topic in rosbags' order: by log time, then chunk offset, then record offset.
    Returns (log_time, buf, length, chunk offset, record offset), all but buf int64."""
    if not parts:
        empty = np.zeros(0, np.int64)
        return empty, np.zeros(0, np.uint8), empty, empty, empty
    log_time = np.concatenate([p.log_time for p in parts]).astype(np.int64)
    chunk = np.concatenate([np.full(len(p.offset), p.chunk_start, np.int64) for p in parts])
    offset = np.concatenate([p.offset for p in parts]).astype(np.int64)
    length = np.concatenate([p.length for p in parts])
    buf = np.concatenate([p.buf for p in parts])
    order = np.lexsort((offset, chunk, log_time))
    if (order[1:] < order[:-1]).any():  # not already in that order: move the payloads too
        start = np.zeros(len(length), np.int64)
        np.cumsum(length[:-1], out=start[1:])
        buf = _gather(buf, start[order], length[order])
        log_time, length, chunk, offset = log_time[order], length[order], chunk[order], offset[order]
    return log_time, buf, length, chunk, offset
