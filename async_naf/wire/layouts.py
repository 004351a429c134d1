"""Message array layouts: the ONE place that defines how async_naf data travels in standard ROS messages.

Custom .msg packages cannot be built here, so every stream uses a standard ``std_msgs/*MultiArray`` whose
``layout.dim`` labels carry the layout's *name and version*; receivers validate everything and raise
:class:`LayoutError` (a ``ValueError``) on anything unexpected. This module is ROS-free: it works on
:class:`ArrayMsg`, a plain picture of a MultiArray (dimension labels, sizes, strides, data offset, data as a
numpy array); ``nodes/_msgs.py`` converts between it and the real message classes.

Layouts (``N`` rows; all counts are integers stored in the array's dtype):

==========================  ===========================  ===========================================
layout (label prefix)       message                      contents
==========================  ===========================  ===========================================
async_naf.transitions.v2    std_msgs/Float32MultiArray   2-D, ``N`` x cols. dim0 label
                                                         ``async_naf.transitions.v2:rows``, dim1 label
                                                         ``cols:obs=<obs_dim>,act=<act_dim>``. Columns:
                                                         obs | action | reward | next_obs | terminal |
                                                         robot_id | episode | step. A collector's
                                                         batch labels dim0
                                                         ``rows,session=<s>,first=<f>,base=<b>`` (its
                                                         sequence: de-duplication, acknowledgements;
                                                         ``base``: it holds no row below it any more)
async_naf.weights.v1        std_msgs/UInt8MultiArray     1-D safetensors bytes (policy weights),
                                                         dim0 label ``async_naf.weights.v1``
async_naf.episode_stats.v2  std_msgs/Float64MultiArray   1-D: robot, episode, return, length, success,
                                                         env_steps, session, seq, base (a collector's
                                                         numbering of its statistics; 0, 0, 0: none).
                                                         dim0 label
                                                         ``async_naf.episode_stats.v2:robot,episode,...``
async_naf.policy_step.v1    std_msgs/Float64MultiArray   1-D: what the policy saw and did: stamp_s,
                                                         episode, step, obs, action, joint_pos(7),
                                                         joint_vel(7), ee_pos(3), door_angle,
                                                         door_velocity. dim0 label
                                                         ``async_naf.policy_step.v1:obs=..,act=..``
async_naf.goal.v1           std_msgs/Float64MultiArray   1-D: episode, active (0/1), goal (goal_dim).
                                                         dim0 label ``async_naf.goal.v1:goal=<goal_dim>``
async_naf.transition_ack.v2 std_msgs/Float64MultiArray   1-D: trainer id, then per collector session:
                                                         robot, session, restored, received (rows),
                                                         stats (statistics held: all of seq <= it).
                                                         dim0 label ``async_naf.transition_ack.v2:trainer,
                                                         (robot,session,restored,received,stats)*``
==========================  ===========================  ===========================================

Units: actions and joint velocities in rad/s, joint positions and door angles in rad (door: + = opening),
end-effector position in m (arm base frame), stamps in s (the joint state's header stamp).
"""
from __future__ import annotations

import functools
import math
import re
import struct
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from async_naf.wire.batch import Batch
from async_naf.wire.cdr import F8, f8_bytes
from async_naf.wire.checkpoint import safetensors_header

TRANSITIONS = "async_naf.transitions.v2"
WEIGHTS = "async_naf.weights.v1"
EPISODE_STATS = "async_naf.episode_stats.v2"
POLICY_STEP = "async_naf.policy_step.v1"
GOAL = "async_naf.goal.v1"
TRANSITION_ACK = "async_naf.transition_ack.v2"

N_JOINTS = 7
EPISODE_STATS_FIELDS = ("robot", "episode", "return", "length", "success", "env_steps", "session", "seq", "base")
MAX_ROWS = 100_000  # a single transitions message larger than this is refused (memory guard)
MAX_WEIGHTS_BYTES = 256 * 1024 * 1024
MAX_DIM = 4096  # obs/act/goal dims above this are refused
_F32_INT_MAX = 2**24  # integers stored exactly in float32
_F32_MAX = float(np.finfo(np.float32).max)


class LayoutError(ValueError):
    """A message does not follow its layout (wrong name/version, dims, sizes, non-finite values, ...)."""


@dataclass(frozen=True)
class ArrayMsg:
    """ROS-free picture of a ``std_msgs/*MultiArray`` message.

    Attributes:
        labels: ``layout.dim[i].label``.
        sizes: ``layout.dim[i].size``.
        strides: ``layout.dim[i].stride``.
        data: the ``data`` field as a 1-D numpy array (float32, float64 or uint8 by message type).
        data_offset: ``layout.data_offset`` (async_naf layouts always use 0).
    """

    labels: tuple[str, ...]
    sizes: tuple[int, ...]
    strides: tuple[int, ...]
    data: np.ndarray
    data_offset: int = 0


def array_msg_of(msg: Any) -> ArrayMsg:
    """A deserialised ``std_msgs/*MultiArray`` message (a bag reader's, e.g. rosbags', or rclpy's: anything with
    ``layout.dim[i].label/size/stride``, ``layout.data_offset`` and ``data``) as an :class:`ArrayMsg`."""
    dims = msg.layout.dim
    return ArrayMsg(tuple(d.label for d in dims), tuple(int(d.size) for d in dims),
                    tuple(int(d.stride) for d in dims), np.asarray(msg.data), int(msg.layout.data_offset))


# ------------------------------------------------------------------------------------------- helpers


def _check_dims(msg: ArrayMsg, ndim: int, what: str) -> None:
    if not isinstance(msg, ArrayMsg):
        raise LayoutError(f"{what}: expected an ArrayMsg, got {type(msg).__name__}")
    if not (len(msg.labels) == len(msg.sizes) == len(msg.strides) == ndim):
        raise LayoutError(f"{what}: expected {ndim} layout dimension(s), got {len(msg.labels)}")
    if msg.data_offset != 0:
        raise LayoutError(f"{what}: data_offset must be 0, got {msg.data_offset}")
    if any(int(v) < 0 for v in tuple(msg.sizes) + tuple(msg.strides)):
        raise LayoutError(f"{what}: negative size or stride")
    data = np.asarray(msg.data)
    if data.ndim != 1:
        raise LayoutError(f"{what}: data must be a flat array, got shape {data.shape}")
    expected = 1
    for size in msg.sizes:
        expected *= int(size)
    if data.size != expected:
        raise LayoutError(f"{what}: data has {data.size} values, layout sizes {tuple(msg.sizes)} say {expected}")
    # row-major strides: stride[i] = product of sizes[i:]
    for i in range(ndim):
        stride = 1
        for size in msg.sizes[i:]:
            stride *= int(size)
        if int(msg.strides[i]) != stride:
            raise LayoutError(f"{what}: dim {i} stride {msg.strides[i]} != {stride} (row-major)")


def _split_label(label: str, name: str, what: str) -> str:
    """``'<name>:<rest>'`` -> rest; LayoutError for another layout name or version."""
    prefix, sep, rest = label.partition(":")
    if prefix != name:
        base = name.rsplit(".v", 1)[0]
        if prefix.startswith(base + ".v"):
            raise LayoutError(f"{what}: unsupported layout version {prefix!r} (this build reads {name!r})")
        raise LayoutError(f"{what}: layout {prefix!r} is not {name!r}")
    return rest if sep else ""


def _parse_kv(text: str, keys: tuple[str, ...], what: str) -> dict[str, int]:
    return dict(zip(keys, _parse_kv_values(text, keys, what)))


@functools.lru_cache(maxsize=256)
def _parse_kv_values(text: str, keys: tuple[str, ...], what: str) -> tuple[int, ...]:
    """The values of ``keys`` in a ``k=v,...`` label, checked (cached: a stream repeats one label; a bad
    label raises every time, exceptions are not cached)."""
    items = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
    out: list[int] = []
    for key in keys:
        raw = items.get(key)
        if raw is None or not re.fullmatch(r"\d{1,6}", raw.strip()):
            raise LayoutError(f"{what}: label {text!r} lacks a valid '{key}=<int>'")
        value = int(raw)
        if not 0 <= value <= MAX_DIM:
            raise LayoutError(f"{what}: {key}={value} out of range 0..{MAX_DIM}")
        out.append(value)
    return tuple(out)


def _require_finite(values: np.ndarray, what: str) -> None:
    if not np.isfinite(values).all():
        bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
        raise LayoutError(f"{what}: {bad} non-finite value(s) (NaN/Inf)")


def _require_int_valued(values: np.ndarray, what: str, lo: float = 0, hi: float = _F32_INT_MAX) -> None:
    if values.size <= 8:  # a message's few counters: plain floats are several times faster than numpy here
        ok = all(math.isfinite(v) and v == round(v) and lo <= v <= hi for v in values.ravel().tolist())
    else:
        ok = not ((values != np.round(values)).any() or values.min() < lo or values.max() > hi)
    if not ok:
        raise LayoutError(f"{what}: must be integers in [{lo}, {hi}]")


def _require_binary(values: np.ndarray, what: str) -> None:
    if values.size and not ((values == 0.0) | (values == 1.0)).all():
        raise LayoutError(f"{what}: must be 0 or 1")


def _expect_dim(value: int, expected: int | None, name: str, what: str) -> None:
    if expected is not None and value != expected:
        raise LayoutError(f"{what}: {name}={value}, expected {expected}")


# --------------------------------------------------------------------------------------- transitions


class TransitionBatch(NamedTuple):
    """A batch of transitions with their origin (N rows).

    obs (N, obs_dim) float32; action (N, act_dim) float32 rad/s; reward (N,) float32; next_obs (N, obs_dim)
    float32; terminal (N,) float32 in {0, 1} (1 = true terminal state, no bootstrap; a time-limit cut-off is 0);
    robot_id, episode, step (N,) int64 (>= 0; step = index of the transition in its episode).
    session, first, base: the sender's sequence (:data:`TRANSITIONS` label
    ``rows,session=<s>,first=<f>,base=<b>``): the collector's session id (random per collector process, >= 1),
    the index of the first row among all the rows that session has sent (so rows ``first .. first+N-1``), and
    the oldest row it still holds to send again (``base <= first``): a receiver lacking rows below ``base`` will
    never get them, rows from ``base`` up to ``first`` it lacks are still to come. ``session`` 0 / ``first`` -1:
    unsequenced; ``base`` -1 (a batch not sent yet): taken as ``first``. (v1, before 2026-12-06, had no
    ``base``: a receiver could not tell rows gone for good from rows that would be sent again.)
    """

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    terminal: np.ndarray
    robot_id: np.ndarray
    episode: np.ndarray
    step: np.ndarray
    session: int = 0
    first: int = -1
    base: int = -1

    def to_batch(self) -> Batch:
        """The replay-buffer part (drops robot_id/episode/step)."""
        return Batch(self.obs, self.action, self.reward, self.next_obs, self.terminal)

    @property
    def rows(self) -> int:
        """Number of transitions N."""
        return int(np.shape(self.reward)[0])

    @property
    def sequenced(self) -> bool:
        """The batch carries its sender's session and row index."""
        return self.session > 0 and self.first >= 0

    @property
    def held_from(self) -> int:
        """``base`` where it is set (0 .. ``first``), else ``first``: the sender holds no row below it."""
        return int(self.base) if 0 <= self.base <= self.first else int(self.first)

    def tail(self, start: int) -> TransitionBatch:
        """Rows ``start ..`` of this batch (``first`` moved along)."""
        return TransitionBatch(self.obs[start:], self.action[start:], self.reward[start:], self.next_obs[start:],
                               self.terminal[start:], self.robot_id[start:], self.episode[start:],
                               self.step[start:], self.session, self.first + start if self.first >= 0 else -1,
                               self.base)


MAX_SESSION = 2**31 - 1
MAX_SEQUENCE = 2**53  # row indices stay exact in float64 (the acknowledgements)


def _sequence_label(batch: TransitionBatch) -> str:
    if not batch.sequenced:
        return f"{TRANSITIONS}:rows"
    return f"{TRANSITIONS}:rows,session={int(batch.session)},first={int(batch.first)},base={batch.held_from}"


def _parse_sequence(rest: str, what: str) -> tuple[int, int, int]:
    """``rows`` -> (0, -1, -1); ``rows,session=<s>,first=<f>,base=<b>`` -> (s, f, b)."""
    if rest == "rows":
        return 0, -1, -1
    match = re.fullmatch(r"rows,session=(\d{1,10}),first=(\d{1,16}),base=(\d{1,16})", rest)
    if match is None:
        raise LayoutError(f"{what}: dim0 label must be '{TRANSITIONS}:rows[,session=<s>,first=<f>,base=<b>]', "
                          f"got {rest!r}")
    session, first, base = int(match.group(1)), int(match.group(2)), int(match.group(3))
    if not 1 <= session <= MAX_SESSION or first >= MAX_SEQUENCE or base > first:
        raise LayoutError(f"{what}: session {session} / first {first} / base {base} out of range (base <= first)")
    return session, first, base


def transition_columns(obs_dim: int, act_dim: int) -> int:
    """Number of float32 columns per transition row."""
    return 2 * obs_dim + act_dim + 5


def encode_transitions(batch: TransitionBatch) -> ArrayMsg:
    """Pack a TransitionBatch into a Float32MultiArray picture (see module doc).

    Raises:
        LayoutError: inconsistent shapes or invalid values (the same checks as the decoder).
    """
    what = TRANSITIONS
    obs = np.asarray(batch.obs, dtype=np.float32)
    if obs.ndim != 2:
        raise LayoutError(f"{what}: obs must be (N, obs_dim), got shape {obs.shape}")
    n, obs_dim = obs.shape
    action = np.asarray(batch.action, dtype=np.float32)
    if action.ndim != 2 or action.shape[0] != n:
        raise LayoutError(f"{what}: action must be (N, act_dim) with N={n}, got shape {action.shape}")
    act_dim = action.shape[1]
    cols = [obs, action]
    for name, width in (("reward", 0), ("next_obs", obs_dim), ("terminal", 0), ("robot_id", 0),
                        ("episode", 0), ("step", 0)):
        arr = np.asarray(getattr(batch, name), dtype=np.float32)
        shape = (n, width) if width else (n,)
        if arr.shape != shape:
            raise LayoutError(f"{what}: {name} must have shape {shape}, got {arr.shape}")
        cols.append(arr if width else arr[:, None])
    table = np.concatenate(cols, axis=1)
    msg = ArrayMsg(
        labels=(_sequence_label(batch), f"cols:obs={obs_dim},act={act_dim}"),
        sizes=(n, table.shape[1]),
        strides=(table.size, table.shape[1]),
        data=table.reshape(-1),
    )
    decode_transitions(msg)  # the sender refuses what a receiver would refuse
    return msg


def decode_transitions(msg: ArrayMsg, obs_dim: int | None = None, act_dim: int | None = None) -> TransitionBatch:
    """Unpack and validate a transitions message.

    Args:
        msg: the message picture.
        obs_dim, act_dim: expected dimensions (None: accept what the label says).

    Raises:
        LayoutError: wrong layout name/version, dims, sizes, dtype, non-finite values, terminal not in
            {0, 1}, robot_id/episode/step not non-negative integers, too many rows, or a sequenced batch whose
            rows run past :data:`MAX_SEQUENCE`.
    """
    what = TRANSITIONS
    _check_dims(msg, 2, what)
    session, first, base = _parse_sequence(_split_label(msg.labels[0], TRANSITIONS, what), what)
    if not msg.labels[1].startswith("cols:"):
        raise LayoutError(f"{what}: dim1 label must be 'cols:obs=..,act=..', got {msg.labels[1]!r}")
    dims = _parse_kv(msg.labels[1][len("cols:"):], ("obs", "act"), what)
    o, a = dims["obs"], dims["act"]
    if o < 1 or a < 1:
        raise LayoutError(f"{what}: obs and act dims must be >= 1, got obs={o}, act={a}")
    _expect_dim(o, obs_dim, "obs", what)
    _expect_dim(a, act_dim, "act", what)
    n, cols = int(msg.sizes[0]), int(msg.sizes[1])
    if cols != transition_columns(o, a):
        raise LayoutError(f"{what}: {cols} columns, expected {transition_columns(o, a)} for obs={o}, act={a}")
    if n < 1:
        raise LayoutError(f"{what}: a transitions message must hold at least one row")
    if n > MAX_ROWS:
        raise LayoutError(f"{what}: {n} rows exceed the limit {MAX_ROWS}")
    if session and first + n > MAX_SEQUENCE:  # the acknowledgement counts rows up to MAX_SEQUENCE
        raise LayoutError(f"{what}: rows {first}..{first + n - 1} run past the sequence limit {MAX_SEQUENCE}")
    data = np.asarray(msg.data)
    if data.dtype != np.float32:
        raise LayoutError(f"{what}: data must be float32, got {data.dtype}")
    _require_finite(data, what)
    table = data.reshape(n, cols)
    i = 0
    obs = table[:, i:i + o]; i += o  # noqa: E702
    action = table[:, i:i + a]; i += a  # noqa: E702
    reward = table[:, i]; i += 1  # noqa: E702
    next_obs = table[:, i:i + o]; i += o  # noqa: E702
    terminal, robot_id, episode, step = (table[:, i + k] for k in range(4))
    _require_binary(terminal, f"{what}: terminal")
    for name, col in (("robot_id", robot_id), ("episode", episode), ("step", step)):
        _require_int_valued(col, f"{what}: {name}")
    if session and (robot_id != robot_id[0]).any():
        raise LayoutError(f"{what}: a sequenced batch holds the rows of one robot")
    return TransitionBatch(obs, action, reward, next_obs, terminal, robot_id.astype(np.int64),
                           episode.astype(np.int64), step.astype(np.int64), session, first, base)


# ------------------------------------------------------------------------------- acknowledgements


@dataclass(frozen=True)
class TransitionAck:
    """What the trainer holds of each collector session (:data:`TRANSITION_ACK`).

    Attributes:
        trainer: the trainer process's id (random per start: a new id = a restarted trainer).
        entries: per ``(robot, session)``: ``(restored, received)``: the rows of that session the trainer
            started with (from the checkpoint it resumed, 0 otherwise) and the end of the rows received
            (rows ``0 .. received-1``, less any the collector never delivered).
        stats: per ``(robot, session)`` (sessions with any): the collector's episode statistics the trainer
            holds, written to metrics.csv: every one numbered ``seq <= stats`` (:class:`EpisodeStats`), counting
            those the collector said it no longer waits for (``base``). Sessions without are left out (0).
    """

    trainer: int
    entries: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)
    stats: dict[tuple[int, int], int] = field(default_factory=dict)


MAX_ACK_ENTRIES = 4096
_ACK_FIELDS = "trainer,(robot,session,restored,received,stats)*"


def encode_transition_ack(ack: TransitionAck) -> ArrayMsg:
    """Pack a TransitionAck into a Float64MultiArray picture: trainer, then robot, session, restored,
    received, stats per session (of ``entries`` or ``stats``)."""
    rows = [float(ack.trainer)]
    for key in sorted(set(ack.entries) | set(ack.stats)):
        restored, received = ack.entries.get(key, (0, 0))
        rows += [float(key[0]), float(key[1]), float(restored), float(received), float(ack.stats.get(key, 0))]
    data = np.asarray(rows, dtype=np.float64)
    msg = ArrayMsg(labels=(f"{TRANSITION_ACK}:{_ACK_FIELDS}",), sizes=(data.size,), strides=(data.size,), data=data)
    decode_transition_ack(msg)
    return msg


def decode_transition_ack(msg: ArrayMsg) -> TransitionAck:
    """Unpack and validate an acknowledgement message.

    Raises:
        LayoutError: wrong layout name/version, sizes, dtype, non-finite or non-integer values, ids out of
            range, restored > received, duplicate entries or too many of them.
    """
    what = TRANSITION_ACK
    _check_dims(msg, 1, what)
    if _split_label(msg.labels[0], TRANSITION_ACK, what) != _ACK_FIELDS:
        raise LayoutError(f"{what}: unexpected field list in {msg.labels[0]!r}")
    data = np.asarray(msg.data)
    if data.dtype != np.float64:
        raise LayoutError(f"{what}: data must be float64, got {data.dtype}")
    if data.size < 1 or (data.size - 1) % 5:
        raise LayoutError(f"{what}: {data.size} values: expected 1 + 5 per entry")
    if (data.size - 1) // 5 > MAX_ACK_ENTRIES:
        raise LayoutError(f"{what}: more than {MAX_ACK_ENTRIES} entries")
    _require_finite(data, what)
    _require_int_valued(data, what, hi=MAX_SEQUENCE)
    trainer = int(data[0])
    if not 1 <= trainer <= MAX_SESSION:
        raise LayoutError(f"{what}: trainer id {trainer} out of range")
    entries: dict[tuple[int, int], tuple[int, int]] = {}
    stats: dict[tuple[int, int], int] = {}
    for robot, session, restored, received, held in data[1:].reshape(-1, 5).astype(np.int64).tolist():
        if not 1 <= session <= MAX_SESSION or restored > received or (robot, session) in entries:
            raise LayoutError(f"{what}: bad entry robot={robot} session={session} {restored}/{received}")
        entries[(robot, session)] = (restored, received)
        if held:
            stats[(robot, session)] = held
    # a session with statistics and no rows is encoded with rows (0, 0): left out of entries, as it went in
    return TransitionAck(trainer, {k: v for k, v in entries.items() if v != (0, 0) or k not in stats}, stats)


# ------------------------------------------------------------------------------------------ weights

_SAFETENSORS_DTYPES = {"BOOL", "U8", "I8", "U16", "I16", "F16", "BF16", "U32", "I32", "F32", "U64", "I64", "F64",
                       "F8_E4M3", "F8_E5M2"}


def _check_safetensors(blob: bytes, what: str) -> dict:
    """Structural check of safetensors bytes: the framing (:func:`async_naf.wire.checkpoint.safetensors_header`),
    then every tensor's dtype and offsets within the data."""
    try:
        header = safetensors_header(blob, what)
    except ValueError as exc:
        raise LayoutError(str(exc)) from exc
    (header_len,) = struct.unpack("<Q", blob[:8])
    body = len(blob) - 8 - header_len
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict):
                raise LayoutError(f"{what}: __metadata__ must be an object")
            continue
        try:
            start, end = (int(x) for x in info["data_offsets"])
            dtype = info["dtype"]
        except (KeyError, TypeError, ValueError) as exc:
            raise LayoutError(f"{what}: tensor {name!r} has a malformed entry") from exc
        if dtype not in _SAFETENSORS_DTYPES or not 0 <= start <= end <= body:
            raise LayoutError(f"{what}: tensor {name!r} has an invalid dtype or data range")
    return header


def encode_weights(blob: bytes) -> ArrayMsg:
    """Pack safetensors bytes (``agent.policy_weights()``) into a UInt8MultiArray picture.

    Raises:
        LayoutError: empty, too large or not structurally valid safetensors bytes.
    """
    blob = bytes(blob)
    if len(blob) > MAX_WEIGHTS_BYTES:
        raise LayoutError(f"{WEIGHTS}: {len(blob)} bytes exceed the limit {MAX_WEIGHTS_BYTES}")
    _check_safetensors(blob, WEIGHTS)
    data = np.frombuffer(blob, dtype=np.uint8)
    return ArrayMsg(labels=(WEIGHTS,), sizes=(data.size,), strides=(data.size,), data=data)


def decode_weights(msg: ArrayMsg) -> bytes:
    """Unpack and validate a weights message; returns the safetensors bytes.

    Structural checks only (layout, sizes, safetensors framing); ``Policy.from_bytes`` checks the content.

    Raises:
        LayoutError: wrong layout name/version, sizes, dtype, or malformed safetensors framing.
    """
    what = WEIGHTS
    _check_dims(msg, 1, what)
    if _split_label(msg.labels[0], WEIGHTS, what):
        raise LayoutError(f"{what}: label must be exactly {WEIGHTS!r}, got {msg.labels[0]!r}")
    data = np.asarray(msg.data)
    if data.dtype != np.uint8:
        raise LayoutError(f"{what}: data must be uint8, got {data.dtype}")
    if data.size > MAX_WEIGHTS_BYTES:
        raise LayoutError(f"{what}: {data.size} bytes exceed the limit {MAX_WEIGHTS_BYTES}")
    blob = data.tobytes()
    _check_safetensors(blob, what)
    return blob


# ------------------------------------------------------------------------------------- episode stats


@dataclass(frozen=True)
class EpisodeStats:
    """Statistics of one finished episode.

    Attributes:
        robot: robot index.
        episode: episode index of that robot (0-based).
        episode_return: sum of rewards.
        length: number of transitions.
        success: the task succeeded (at the end of the episode).
        env_steps: transitions that robot has sent so far (including this episode).
        session: the sending collector's session (as its transition batches), 0 if not numbered.
        seq: this statistic's number among the session's (1, 2, ...), 0 if not numbered. The trainer
            acknowledges the statistics it holds by these (:class:`TransitionAck` ``stats``).
        base: every statistic of the session numbered ``<= base`` is settled for the collector (acknowledged,
            or given up and counted): the trainer need not wait for them. Below ``seq``.
    """

    robot: int
    episode: int
    episode_return: float
    length: int
    success: bool
    env_steps: int
    session: int = 0
    seq: int = 0
    base: int = 0


def encode_episode_stats(stats: EpisodeStats) -> ArrayMsg:
    """Pack EpisodeStats into a Float64MultiArray picture."""
    data = np.array([stats.robot, stats.episode, stats.episode_return, stats.length, float(bool(stats.success)),
                     stats.env_steps, stats.session, stats.seq, stats.base], dtype=np.float64)
    msg = ArrayMsg(labels=(f"{EPISODE_STATS}:{','.join(EPISODE_STATS_FIELDS)}",), sizes=(data.size,),
                   strides=(data.size,), data=data)
    decode_episode_stats(msg)
    return msg


def decode_episode_stats(msg: ArrayMsg) -> EpisodeStats:
    """Unpack and validate an episode-statistics message.

    Raises:
        LayoutError: wrong layout name/version or field list, sizes, dtype, non-finite values, counts that
            are not non-negative integers, success not 0/1, a return beyond float32's range, a numbering that
            does not hold together (a session out of range, ``base >= seq``, a number without a session).
    """
    what = EPISODE_STATS
    _check_dims(msg, 1, what)
    fields = _split_label(msg.labels[0], EPISODE_STATS, what)
    if fields != ",".join(EPISODE_STATS_FIELDS):
        raise LayoutError(f"{what}: fields {fields!r}, expected {','.join(EPISODE_STATS_FIELDS)!r}")
    data = np.asarray(msg.data)
    if data.dtype != np.float64:
        raise LayoutError(f"{what}: data must be float64, got {data.dtype}")
    if data.size != len(EPISODE_STATS_FIELDS):
        raise LayoutError(f"{what}: {data.size} values, expected {len(EPISODE_STATS_FIELDS)}")
    _require_finite(data, what)
    robot, episode, ret, length, success, env_steps, session, seq, base = (float(x) for x in data)
    _require_int_valued(np.array([robot, episode, length, env_steps, session, seq, base]), f"{what}: counts",
                        hi=2**53)
    _require_binary(np.array([success]), f"{what}: success")
    if not abs(ret) <= _F32_MAX:  # a sum of float32 rewards: beyond that it is no episode's return
        raise LayoutError(f"{what}: return {ret!r} beyond float32's range")
    numbered = session > 0 or seq > 0 or base > 0
    if numbered and not (1 <= session <= MAX_SESSION and base < seq):
        raise LayoutError(f"{what}: numbering session={session:.0f} seq={seq:.0f} base={base:.0f}: expected a session "
                          f"in 1 .. {MAX_SESSION} and base < seq (or all 0)")
    return EpisodeStats(int(robot), int(episode), ret, int(length), bool(success), int(env_steps), int(session),
                        int(seq), int(base))


# --------------------------------------------------------------------------------------- policy step


@dataclass(frozen=True)
class PolicyStep:
    """What the policy saw and did in one control step (policy -> collector).

    Attributes:
        stamp_s: header stamp of the joint state the action was computed from, s.
        episode: episode index (from the goal message the policy acted under).
        step: index of this step within the episode (0 = first action after the reset).
        obs: observation (obs_dim,) float.
        action: commanded joint velocities (act_dim,) rad/s, after clamping.
        joint_pos: (7,) rad.  joint_vel: (7,) rad/s.  ee_pos: (3,) m, arm base frame.
        door_angle: estimated door angle, rad (+ = opening; 0 for tasks without a door).
        door_velocity: estimated door angular velocity, rad/s.
    """

    stamp_s: float
    episode: int
    step: int
    obs: np.ndarray
    action: np.ndarray
    joint_pos: np.ndarray
    joint_vel: np.ndarray
    ee_pos: np.ndarray
    door_angle: float = 0.0
    door_velocity: float = 0.0


def policy_step_size(obs_dim: int, act_dim: int) -> int:
    """Number of float64 values in a policy-step message."""
    return 3 + obs_dim + act_dim + 2 * N_JOINTS + 3 + 2


_POLICY_STEP_HEAD = struct.Struct("<3d")  # stamp_s, episode, step
_POLICY_STEP_TAIL = struct.Struct("<2d")  # door_angle, door_velocity


def policy_step_f8(step: PolicyStep) -> tuple[str, bytes]:
    """A policy-step message's label and data, the data as little-endian float64 bytes (the one place that
    orders the fields; :func:`encode_policy_step` builds its array from them, a recorded run's tap its CDR)."""
    obs, action = f8_bytes(step.obs), f8_bytes(step.action)
    raw = b"".join((_POLICY_STEP_HEAD.pack(step.stamp_s, step.episode, step.step), obs, action,
                    f8_bytes(step.joint_pos), f8_bytes(step.joint_vel), f8_bytes(step.ee_pos),
                    _POLICY_STEP_TAIL.pack(step.door_angle, step.door_velocity)))
    return f"{POLICY_STEP}:obs={len(obs) // 8},act={len(action) // 8}", raw


def encode_policy_step(step: PolicyStep) -> ArrayMsg:
    """Pack a PolicyStep into a Float64MultiArray picture (not validated: the sender built it from checked
    parts; the collector's decoder validates)."""
    label, raw = policy_step_f8(step)
    data = np.frombuffer(raw, dtype=F8).astype(np.float64)
    return ArrayMsg(labels=(label,), sizes=(data.size,), strides=(data.size,), data=data)


def decode_policy_step(msg: ArrayMsg, obs_dim: int | None = None, act_dim: int | None = None) -> PolicyStep:
    """Unpack and validate a policy-step message.

    Raises:
        LayoutError: wrong layout name/version, dims, sizes, dtype, non-finite values, negative or
            non-integer episode/step.
    """
    what = POLICY_STEP
    _check_dims(msg, 1, what)
    dims = _parse_kv(_split_label(msg.labels[0], POLICY_STEP, what), ("obs", "act"), what)
    o, a = dims["obs"], dims["act"]
    _expect_dim(o, obs_dim, "obs", what)
    _expect_dim(a, act_dim, "act", what)
    data = np.asarray(msg.data)
    if data.dtype != np.float64:
        raise LayoutError(f"{what}: data must be float64, got {data.dtype}")
    if data.size != policy_step_size(o, a):
        raise LayoutError(f"{what}: {data.size} values, expected {policy_step_size(o, a)}")
    _require_finite(data, what)
    _require_int_valued(data[1:3], f"{what}: episode/step", hi=2**53)
    i = 3
    obs = data[i:i + o]; i += o  # noqa: E702
    action = data[i:i + a]; i += a  # noqa: E702
    jp = data[i:i + N_JOINTS]; i += N_JOINTS  # noqa: E702
    jv = data[i:i + N_JOINTS]; i += N_JOINTS  # noqa: E702
    ee = data[i:i + 3]; i += 3  # noqa: E702
    return PolicyStep(float(data[0]), int(data[1]), int(data[2]), obs, action, jp, jv, ee,
                      float(data[i]), float(data[i + 1]))


class PolicySteps(NamedTuple):
    """n policy steps as columns (the fields of :class:`PolicyStep`, same units), for code that handles
    many at once (bag conversion); ``from_steps`` makes one from PolicyStep records.

    Attributes:
        stamp_s: (n,) s.  episode, step: (n,) int64.  obs: (n, obs_dim).  action: (n, act_dim) rad/s.
        joint_pos: (n, 7) rad.  joint_vel: (n, 7) rad/s.  ee_pos: (n, 3) m.  door_angle: (n,) rad.
        door_velocity: (n,) rad/s.
    """

    stamp_s: np.ndarray
    episode: np.ndarray
    step: np.ndarray
    obs: np.ndarray
    action: np.ndarray
    joint_pos: np.ndarray
    joint_vel: np.ndarray
    ee_pos: np.ndarray
    door_angle: np.ndarray
    door_velocity: np.ndarray

    @classmethod
    def from_steps(cls, steps: list[PolicyStep]) -> PolicySteps:
        """Stack PolicyStep records (all of one obs/act size)."""
        def table(name: str) -> np.ndarray:
            return np.array([np.asarray(getattr(s, name), np.float64).reshape(-1) for s in steps], np.float64)

        return cls(np.array([s.stamp_s for s in steps], np.float64), np.array([s.episode for s in steps], np.int64),
                   np.array([s.step for s in steps], np.int64), table("obs"), table("action"), table("joint_pos"),
                   table("joint_vel"), table("ee_pos"), np.array([s.door_angle for s in steps], np.float64),
                   np.array([s.door_velocity for s in steps], np.float64))

    def take(self, index: np.ndarray) -> PolicySteps:
        """The rows at ``index`` (an integer index array or a boolean mask)."""
        return PolicySteps(*(f[index] for f in self))


def policy_step_rows(data: np.ndarray, obs_dim: int, act_dim: int) -> tuple[PolicySteps, np.ndarray]:
    """Unpack the data of n policy-step messages whose layout label was checked already (one
    ``obs=..,act=..`` label for all): ``data`` (n, policy_step_size) float64.

    Returns the rows that pass :func:`decode_policy_step`'s value checks (finite, episode and step integers
    in [0, 2**53]) and the (n,) bool mask of those rows; a row outside the mask would raise LayoutError in
    :func:`decode_policy_step` (decode it there to learn why).
    """
    data = np.asarray(data, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != policy_step_size(obs_dim, act_dim):
        raise LayoutError(f"{POLICY_STEP}: rows of {policy_step_size(obs_dim, act_dim)} values expected, "
                          f"got shape {data.shape}")
    counters = data[:, 1:3]
    ok = np.isfinite(data).all(axis=1) & (counters == np.round(counters)).all(axis=1)
    ok &= (counters >= 0).all(axis=1) & (counters <= 2**53).all(axis=1)
    d = data[ok]
    i = 3
    parts = []
    for n in (obs_dim, act_dim, N_JOINTS, N_JOINTS, 3):
        parts.append(d[:, i:i + n])
        i += n
    steps = PolicySteps(d[:, 0], d[:, 1].astype(np.int64), d[:, 2].astype(np.int64), parts[0], parts[1], parts[2],
                        parts[3], parts[4], d[:, i], d[:, i + 1])
    return steps, ok


# ---------------------------------------------------------------------------------------------- goal


@dataclass(frozen=True)
class Goal:
    """The task goal of the current episode (collector -> policy).

    Attributes:
        episode: episode index.
        active: the policy should act (False between episodes: the policy holds still).
        goal: task goal vector (goal_dim,) (reach: target xyz in m, arm base frame; doors: may be empty).
    """

    episode: int
    active: bool
    goal: np.ndarray = field(default_factory=lambda: np.zeros(0))


def encode_goal(goal: Goal) -> ArrayMsg:
    """Pack a Goal into a Float64MultiArray picture."""
    g = np.asarray(goal.goal, dtype=np.float64).reshape(-1)
    data = np.concatenate(((goal.episode, float(bool(goal.active))), g))
    msg = ArrayMsg(labels=(f"{GOAL}:goal={g.size}",), sizes=(data.size,), strides=(data.size,), data=data)
    decode_goal(msg)
    return msg


def decode_goal(msg: ArrayMsg, goal_dim: int | None = None) -> Goal:
    """Unpack and validate a goal message.

    Raises:
        LayoutError: wrong layout name/version, sizes, dtype, non-finite values, bad episode/active, goal
            values beyond float32's range.
    """
    what = GOAL
    _check_dims(msg, 1, what)
    g = _parse_kv(_split_label(msg.labels[0], GOAL, what), ("goal",), what)["goal"]
    _expect_dim(g, goal_dim, "goal", what)
    data = np.asarray(msg.data)
    if data.dtype != np.float64:
        raise LayoutError(f"{what}: data must be float64, got {data.dtype}")
    if data.size != 2 + g:
        raise LayoutError(f"{what}: {data.size} values, expected {2 + g}")
    _require_finite(data, what)
    _require_int_valued(data[:1], f"{what}: episode", hi=2**53)
    _require_binary(data[1:2], f"{what}: active")
    if not (np.abs(data[2:]) <= _F32_MAX).all():  # the observation that holds it is float32
        raise LayoutError(f"{what}: goal values beyond float32's range")
    return Goal(int(data[0]), bool(data[1]), data[2:].copy())
