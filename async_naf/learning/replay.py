"""Replay buffer: a numpy buffer of transitions (a ring, or random eviction once full) with uniform sampling,
saved without pickle.

Shapes and dtypes (``B`` rows): ``obs`` (B, obs_dim) float32, ``action`` (B, act_dim) float32 in action
units, ``reward`` (B,) float32, ``next_obs`` (B, obs_dim) float32, ``terminal`` (B,) float32 in {0, 1}
(1 = the episode ended in a true terminal state, so the target does not bootstrap; a time-limit cut-off is
*not* terminal).

Example::

    from async_naf.learning.replay import Batch, ReplayBuffer
    buf = ReplayBuffer(capacity=1_000_000, obs_dim=20, act_dim=7, seed=0)
    buf.add(obs, action, reward, next_obs, terminal=False)
    batch = buf.sample(64)          # Batch of numpy arrays
    buf.save("replay.npz"); buf2 = ReplayBuffer.load("replay.npz")

Invalid input (wrong shapes, NaN/Inf, terminal not 0/1) raises ``ValueError`` and adds nothing.
"""
from __future__ import annotations

import json
import os
import zipfile
import zlib
from typing import Any

import numpy as np

from async_naf.wire.batch import BATCH_FIELDS as _FIELDS
from async_naf.wire.batch import Batch, validate_batch
from async_naf.wire.checkpoint import atomic_writer

__all__ = ["Batch", "ReplayBuffer", "read_rows", "validate_batch", "write_snapshot"]

REPLAY_FORMAT = "async_naf.replay"
REPLAY_FORMAT_VERSION = 1  # a buffer that overwrites its oldest rows (the default); readable by every version
REPLAY_FORMAT_VERSION_RANDOM = 2  # one that overwrites random rows (the header names it; older readers refuse it)
EVICTIONS = ("oldest", "random")


def _positive_int(name: str, value: int) -> int:
    try:
        whole = not isinstance(value, bool) and int(value) == value
    except (TypeError, ValueError, OverflowError):  # None, NaN, Infinity (a corrupt file's header)
        whole = False
    if not whole or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class ReplayBuffer:
    """Fixed-capacity buffer of transitions; once full, each new row overwrites the oldest one (a ring
    buffer, ``eviction="oldest"``) or a uniformly random stored one (``eviction="random"``).

    With random eviction a row survives m later additions with probability (1 - 1/capacity)^m, about
    exp(-m / capacity): the buffer keeps a thinning share of every age instead of only the newest
    ``capacity`` rows, so transitions from early in a run (exploration, failures a good policy no longer
    makes) stay in the updates' batches long after a ring buffer would have overwritten them. Keeping part of
    the old experience against forgetting once the policy converges: de Bruin et al., "The importance of
    experience replay database composition in deep reinforcement learning" (NIPS Deep RL workshop 2015) and
    "Experience selection in deep reinforcement learning for control" (JMLR 19, 2018); Isele and Cosgun,
    "Selective experience replay for lifelong learning" (AAAI 2018).

    Args:
        capacity: maximum number of transitions kept.
        obs_dim: observation size.
        act_dim: action size.
        seed: seed of the sampling random generator (and of the eviction's, a separate stream).
        eviction: ``"oldest"`` (default) or ``"random"``: which row a new one overwrites once full.
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, seed: int = 0, eviction: str = "oldest") -> None:
        self.capacity = _positive_int("capacity", capacity)
        self.obs_dim = _positive_int("obs_dim", obs_dim)
        self.act_dim = _positive_int("act_dim", act_dim)
        if eviction not in EVICTIONS:
            raise ValueError(f"eviction must be one of {EVICTIONS}, got {eviction!r}")
        self.eviction = eviction
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        # which rows random eviction overwrites: a stream of its own, so sampling draws the same batches
        # whatever the eviction
        self.evict_rng = np.random.default_rng([int(seed) if isinstance(seed, (int, np.integer)) else 0, 1])
        # one row per transition: [obs | action | reward | next_obs | terminal], so that sampling is a single
        # fancy-indexing operation; the per-field arrays below are views into it
        o, a = self.obs_dim, self.act_dim
        self._data = np.zeros((self.capacity, 2 * o + a + 2), np.float32)
        self._cols: dict[str, slice | int] = {
            "obs": slice(0, o),
            "action": slice(o, o + a),
            "reward": o + a,
            "next_obs": slice(o + a + 1, 2 * o + a + 1),
            "terminal": 2 * o + a + 1,
        }
        self.obs = self._data[:, self._cols["obs"]]
        self.action = self._data[:, self._cols["action"]]
        self.reward = self._data[:, self._cols["reward"]]
        self.next_obs = self._data[:, self._cols["next_obs"]]
        self.terminal = self._data[:, self._cols["terminal"]]
        self._size = 0
        self._ptr = 0  # next row to write
        self.total_added = 0  # transitions ever added (including overwritten ones)

    def __len__(self) -> int:
        return self._size

    def add(self, obs, action, reward: float, next_obs, terminal: bool | float) -> None:
        """Add one transition (see module docstring for shapes); ValueError on bad input."""
        self.add_batch(
            Batch(
                np.asarray(obs, np.float32)[None],
                np.asarray(action, np.float32)[None],
                np.asarray([reward], np.float32),
                np.asarray(next_obs, np.float32)[None],
                np.asarray([float(terminal)], np.float32),
            )
        )

    def add_batch(self, batch: Batch) -> int:
        """Validate and add all rows of ``batch``; return the number of rows added.

        The whole batch is rejected (``ValueError``, nothing added) if any row is invalid. Ring buffer: if the
        batch has more rows than ``capacity``, only its last ``capacity`` rows remain. Random eviction: the
        rows past the free ones each replace a random stored row (one replaced again within the batch is
        gone).
        """
        b = validate_batch(batch, self.obs_dim, self.act_dim)
        n = b.obs.shape[0]
        if n == 0:
            return 0
        if self.eviction == "random":
            # the free rows first, in order; every row after that replaces a random stored one (rows of this
            # batch included: one it replaces again is gone, as if added one at a time)
            m = min(n, self.capacity - self._size)  # rows that take a free row
            idx = self._ptr + np.arange(m)
            keep = b
            if m < n:
                idx = np.concatenate([idx, self.evict_rng.integers(0, self.capacity, size=n - m)])
                # a row drawn twice keeps the batch's later one; written once, so every field of a stored row
                # comes from the same transition (numpy leaves the order of repeated-index assignments unspecified)
                idx, last = np.unique(idx[::-1], return_index=True)
                keep = Batch(*(x[n - 1 - last] for x in b))
        else:
            keep = b if n <= self.capacity else Batch(*(x[-self.capacity :] for x in b))
            m = keep.obs.shape[0]
            idx = (self._ptr + np.arange(m)) % self.capacity
        for name, arr in zip(_FIELDS, keep):
            getattr(self, name)[idx] = arr
        self._ptr = int((self._ptr + m) % self.capacity)
        self._size = min(self._size + m, self.capacity)
        self.total_added += n
        return n

    def sample(self, n: int) -> Batch:
        """``n`` transitions drawn uniformly with replacement (float32 numpy arrays).

        The fields are views into one freshly copied (n, row) array (they do not alias the buffer; they are
        not C-contiguous).

        Raises:
            ValueError: if the buffer is empty or ``n`` is not a positive integer.
        """
        if self._size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = self.rng.integers(0, self._size, size=_positive_int("n", n))
        rows = self._data[idx]
        c = self._cols
        return Batch(rows[:, c["obs"]], rows[:, c["action"]], rows[:, c["reward"]], rows[:, c["next_obs"]],
                     rows[:, c["terminal"]])

    def _ordered(self) -> Batch:
        """Stored rows, oldest first (random eviction: in storage order, which is no order of age)."""
        if self._size < self.capacity or self.eviction == "random":
            order = np.arange(self._size)
        else:
            order = (self._ptr + np.arange(self.capacity)) % self.capacity
        return Batch(*(getattr(self, name)[order] for name in _FIELDS))

    def save(self, path: str | os.PathLike) -> None:
        """Write the buffer to an ``.npz`` file (no pickle; atomic: temporary file, fsync, rename).

        The file holds the stored rows (oldest first with ``eviction="oldest"``) plus a JSON header (format,
        version, capacity, dims, counters, sampler state; with random eviction also ``eviction`` and the
        eviction generator's state, version 2). Same as ``write_snapshot(path, snapshot())``.
        """
        write_snapshot(path, self.snapshot())

    def snapshot(self) -> tuple[dict[str, Any], Batch]:
        """Copy of everything :meth:`save` writes: ``(header, rows)`` (oldest first for a ring buffer).

        Cheap compared with writing the file (one copy of the stored rows, no I/O), so a caller can take
        it under its lock and call :func:`write_snapshot` after releasing it.
        """
        meta = {
            "format": REPLAY_FORMAT,
            "version": REPLAY_FORMAT_VERSION,
            "capacity": self.capacity,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "size": self._size,
            "total_added": self.total_added,
            "seed": int(self.seed) if isinstance(self.seed, (int, np.integer)) else None,
            "rng_state": self.rng.bit_generator.state,
        }
        if self.eviction == "random":
            meta.update(version=REPLAY_FORMAT_VERSION_RANDOM, eviction=self.eviction,
                        evict_rng_state=self.evict_rng.bit_generator.state)
        return meta, self._ordered()

    @classmethod
    def load(cls, path: str | os.PathLike) -> ReplayBuffer:
        """Read a buffer written by :meth:`save` (never unpickles).

        Raises:
            ValueError: the file is not a replay buffer of a known version, or is truncated/inconsistent.
            FileNotFoundError: no such file.
        """
        meta, arrays = read_rows(path)
        try:
            random = meta["version"] == REPLAY_FORMAT_VERSION_RANDOM
            if random and meta.get("eviction") != "random":
                raise ValueError(f"version 2 names eviction {meta.get('eviction')!r}, not 'random'")
            buf = cls(meta["capacity"], meta["obs_dim"], meta["act_dim"], seed=meta.get("seed") or 0,
                      eviction="random" if random else "oldest")
            size = int(meta["size"])
            if not 0 <= size <= buf.capacity:
                raise ValueError(f"size {size} outside [0, capacity]")
            if size:
                buf.add_batch(Batch(*(arrays[name] for name in _FIELDS)))
            if len(buf) != size:
                raise ValueError(f"header says {size} rows, file holds {len(buf)}")
            buf.total_added = int(meta.get("total_added", size))
            buf.rng.bit_generator.state = meta["rng_state"]
            if random:
                buf.evict_rng.bit_generator.state = meta["evict_rng_state"]
        except (KeyError, TypeError, ValueError, OverflowError) as exc:  # int(Infinity): OverflowError
            raise ValueError(f"{path}: inconsistent replay-buffer file: {exc}") from exc
        return buf


def read_rows(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and the raw field arrays of a file :meth:`ReplayBuffer.save` wrote, rows not validated
    (:meth:`ReplayBuffer.load` validates them all at once; a demonstration dataset drops the bad ones).

    Raises:
        ValueError: not a replay-buffer file of a known version, or unreadable.
        FileNotFoundError: no such file.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"][()]))
            arrays = {name: np.asarray(data[name]) for name in _FIELDS}
    except FileNotFoundError:
        raise
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise ValueError(f"{path}: not a readable replay-buffer file: {type(exc).__name__}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != REPLAY_FORMAT:
        raise ValueError(f"{path}: not an async_naf replay-buffer file")
    if meta.get("version") not in (REPLAY_FORMAT_VERSION, REPLAY_FORMAT_VERSION_RANDOM):
        raise ValueError(f"{path}: replay-buffer format version {meta.get('version')!r} is not supported")
    return meta, arrays


def write_snapshot(path: str | os.PathLike, snapshot: tuple[dict[str, Any], Batch]) -> None:
    """Write a :meth:`ReplayBuffer.snapshot` to an ``.npz`` file that :meth:`ReplayBuffer.load` reads
    (atomic: temporary file, fsync, rename; see :func:`async_naf.wire.checkpoint.atomic_writer`)."""
    meta, rows = snapshot
    with atomic_writer(path) as f:
        arrays: dict[str, Any] = {"meta": np.array(json.dumps(meta)), **dict(zip(_FIELDS, rows))}
        np.savez(f, **arrays)
