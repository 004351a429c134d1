"""What the trainer holds of each collector's transitions (ROS-free): de-duplication and acknowledgements.

Every collector process numbers the rows it sends (``session``: random per process; ``first``: index of a
batch's first row among all the rows of that session; :class:`~async_naf.wire.layouts.TransitionBatch`).
The trainer keeps, per ``(robot, session)``, ``received``: the end of the rows it has taken. A batch (or the
part of it) below that mark is a copy it already holds (a collector re-sending what it could not know
arrived) and is dropped, counted as ``duplicate_transitions``. Each batch also says from which row on its
collector still holds its rows (``base``): rows below it that the trainer lacks will never come (acknowledged
to a trainer before this one, or given up by the collector, which counts them itself). A batch beyond the mark
leaves a gap (``gap_transitions``, counted when it is taken) once this trainer holds rows of that session and
holds none of its batches back. Before that (a trainer just started or restarted, to which the collector sends
new rows while rows sent to the previous one are in flight), a batch with rows from ``base`` up to it missing
is held back (``out_of_order_transitions``): the collector sends everything in flight again, in order, on this
trainer's first acknowledgement, and :meth:`ReceiptLedger.release` hands the held batches over, in order, as
the rows in front of each come in (or lie below the highest ``base`` seen: they never come). (Taken at once, it
would put the mark past those rows, and they would be dropped as copies.) If they have not all come
:data:`OUT_OF_ORDER_WAIT_S` after the session's oldest held batch was held back (lost again on the way: a
queue overrun), its held batches go, with their gaps, as in steady state. At most :data:`MAX_HELD_BATCHES`
batches and :data:`MAX_HELD_ROWS` rows are held (beyond either, the oldest batches of the session held longest
go, with their gaps, until within the bound). The
trainer calls ``release`` after every batch and before every acknowledgement, so a collector that sends
nothing more still gets its rows acknowledged. Nothing is held that the buffer would refuse: the trainer checks
a batch before :meth:`ReceiptLedger.admit`, which changes nothing but the counters and the held batches.
The ledger is
written into every checkpoint together with the replay buffer (the same moment), and a trainer resuming
from that checkpoint starts from it (``restored``), so the collectors learn from the acknowledgement which of
their rows died with the previous trainer.

Episode statistics travel on a topic of their own, numbered per session too (``seq`` 1, 2, ...; ``base``: the
collector no longer waits for any numbered ``<= base``; :class:`~async_naf.wire.layouts.EpisodeStats`). The
ledger keeps, per session, the highest number up to which it holds them all (``base`` included) and puts it
into the acknowledgement (``stats``): the collector forgets a statistic only once that covers it. The trainer
writes what it has received to metrics.csv before it takes the acknowledgement
(:meth:`async_naf.learning.trainer.Trainer.ack`), so an acknowledged statistic is on disk::

    ledger = ReceiptLedger(trainer_id, restored={(0, 123): 5000})
    part = ledger.admit(batch, now)  # None (all copies, or held back) or the rows to add
    ledger.commit(part)              # once they are in the buffer
    part = ledger.release(now)       # a batch held back that is due now (None: none), added and committed alike
    ledger.stats_received(stats)     # an episode's statistics (EpisodeStats), queued for metrics.csv
    ack = ledger.ack()               # TransitionAck to publish
    table = ledger.table()           # [[robot, session, received], ...] for the checkpoint
"""
from __future__ import annotations

import bisect
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from async_naf.wire.layouts import (
    MAX_ACK_ENTRIES,
    MAX_SEQUENCE,
    MAX_SESSION,
    EpisodeStats,
    TransitionAck,
    TransitionBatch,
)

MAX_STATS_AHEAD = 10_000  # statistics of a session held above a gap (more: the oldest of them forgotten)
# how long a trainer that holds no rows of a session of its own yet holds back a batch that came out of order, s:
# the collector sends its rows in flight again once it has this trainer's first acknowledgement (published
# within ack_period_s, at least once a second)
OUT_OF_ORDER_WAIT_S = 5.0
MAX_HELD_ROWS = 100_000  # rows held back over all sessions
MAX_HELD_BATCHES = 1024  # batches held back over all sessions (a send window of 32 for each of 32 collectors)


@dataclass
class _Held:
    """A session's batches held back: when the oldest was held back (s), the highest ``base`` seen, the batches
    in row order (no two overlap)."""

    since: float
    base: int = 0
    batches: list[TransitionBatch] = field(default_factory=list)


class ReceiptLedger:
    """See the module docstring.

    Args:
        trainer: this trainer process's id (1 .. 2**31-1, random per start).
        restored: ``(robot, session) -> received`` from the checkpoint it resumed (empty when fresh).
        max_entries: sessions remembered (the least recently active beyond it are forgotten).

    Attributes:
        counts: ``duplicate_transitions``, ``gap_transitions``, ``unsequenced_transitions``.
    """

    def __init__(self, trainer: int, restored: dict[tuple[int, int], int] | None = None,
                 max_entries: int = MAX_ACK_ENTRIES) -> None:
        if not 1 <= int(trainer) <= 2**31 - 1:
            raise ValueError(f"trainer id must be in 1 .. 2**31-1, got {trainer}")
        self.trainer = int(trainer)
        self.max_entries = int(max_entries)
        self._restored = {k: int(v) for k, v in (restored or {}).items()}
        self._received: OrderedDict[tuple[int, int], int] = OrderedDict(
            (k, int(v)) for k, v in (restored or {}).items())
        self.counts = {"duplicate_transitions": 0, "gap_transitions": 0, "out_of_order_transitions": 0,
                       "unsequenced_transitions": 0}
        self._live: set[tuple[int, int]] = set()  # sessions of which this trainer has taken rows itself
        # per session with batches held back: when the oldest of them was held back (s), the highest base seen
        # (rows below it never come), the batches
        self._held: dict[tuple[int, int], _Held] = {}
        self._held_rows = self._held_batches = 0
        # per session: statistics held, every one numbered <= it; those above it held (waiting for a gap); the
        # highest base the collector sent (numbers up to it count as held without having been received)
        self._stats: OrderedDict[tuple[int, int], tuple[int, set[int], int]] = OrderedDict()

    @staticmethod
    def from_table(trainer: int, table: object) -> ReceiptLedger:
        """A ledger restored from a checkpoint's ``received`` table (``[[robot, session, received], ...]``).

        Raises:
            ValueError: a malformed table.
        """
        restored: dict[tuple[int, int], int] = {}
        if table is not None:
            if not isinstance(table, list):
                raise ValueError(f"received table must be a list, got {type(table).__name__}")
            for row in table:
                try:
                    robot, session, received = (int(x) for x in row)
                except (TypeError, ValueError, OverflowError) as exc:  # int(Infinity): OverflowError
                    raise ValueError(f"bad received entry {row!r}: {exc}") from None
                # the acknowledgement carries these: out of its range, every acknowledgement would fail
                if robot < 0 or not 1 <= session <= MAX_SESSION or not 0 <= received <= MAX_SEQUENCE:
                    raise ValueError(f"bad received entry {row!r}")
                restored[(robot, session)] = received
        return ReceiptLedger(trainer, restored)

    def admit(self, batch: TransitionBatch, now: float | None = None) -> TransitionBatch | None:
        """The part of ``batch`` to take (None: all of it a copy, or held back); counts copies and batches held
        back. Changes nothing else (the mark moves in :meth:`commit`, which counts a gap). Call :meth:`commit`
        with the result once it is in the buffer, then :meth:`release` until None. ``now``: the trainer's clock
        (s; default ``time.monotonic()``), for :data:`OUT_OF_ORDER_WAIT_S`."""
        if not batch.sequenced:
            return batch
        key = (int(batch.robot_id[0]), int(batch.session))
        received = self._received.get(key, 0)
        end = batch.first + batch.rows
        if end <= received:
            self.counts["duplicate_transitions"] += batch.rows
            return None
        if batch.first < received:
            self.counts["duplicate_transitions"] += received - batch.first
            return batch.tail(received - batch.first)
        held = self._held.get(key)
        floor = max(received, batch.held_from, held.base if held is not None else 0)  # rows below it never come
        below_held = held is None or batch.first < held.batches[0].first  # a base must not pass held rows
        if (batch.first <= floor and below_held) or (key in self._live and held is None):
            return batch  # in order, or steady state: taken, the gap (if any) counted by commit
        if held is None:
            held = self._held[key] = _Held(time.monotonic() if now is None else float(now))
        held.base = max(held.base, batch.held_from)
        i = bisect.bisect_left(held.batches, batch.first, key=lambda b: b.first)
        neighbours = held.batches[max(i - 1, 0):i + 1]
        if any(b.first < end and batch.first < b.first + b.rows for b in neighbours):
            self.counts["duplicate_transitions"] += batch.rows  # held back already (its re-send)
            return None
        held.batches.insert(i, batch)
        self._held_rows += batch.rows
        self._held_batches += 1
        self.counts["out_of_order_transitions"] += batch.rows
        return None

    def release(self, now: float | None = None) -> TransitionBatch | None:
        """A batch held back (see the module doc) that is due: the first of its session's, once the rows
        before it are in or lie below the highest ``base`` seen; every one of a session whose oldest held batch
        has waited :data:`OUT_OF_ORDER_WAIT_S`, or of the session held longest while more than
        :data:`MAX_HELD_BATCHES` / :data:`MAX_HELD_ROWS` are held. Returns the part of it not held yet, to add
        and :meth:`commit` like :meth:`admit`'s; None when none is due. Call it until None."""
        t = time.monotonic() if now is None else float(now)
        while self._held:
            over = self._held_rows > MAX_HELD_ROWS or self._held_batches > MAX_HELD_BATCHES
            longest = min(self._held, key=lambda k: self._held[k].since) if over else None
            key = next((k for k, h in self._held.items()
                        if k == longest or t - h.since >= OUT_OF_ORDER_WAIT_S
                        or h.batches[0].first <= max(self._received.get(k, 0), h.base)), None)
            if key is None:
                return None
            held = self._held[key]
            batch = held.batches.pop(0)
            self._held_rows -= batch.rows
            self._held_batches -= 1
            if not held.batches:
                del self._held[key]
            received = self._received.get(key, 0)
            if batch.first + batch.rows <= received:  # a copy of rows taken meanwhile: the next one
                self.counts["duplicate_transitions"] += batch.rows
                continue
            if batch.first < received:
                self.counts["duplicate_transitions"] += received - batch.first
                return batch.tail(received - batch.first)
            return batch
        return None

    def commit(self, batch: TransitionBatch) -> None:
        """``batch`` (as :meth:`admit` returned it) is in the buffer: move the session's mark past it."""
        if not batch.sequenced:
            self.counts["unsequenced_transitions"] += batch.rows
            return
        key = (int(batch.robot_id[0]), int(batch.session))
        received = self._received.get(key, 0)
        if batch.first > received:  # rows below the collector's base, or missed on the way (a queue overrun)
            self.counts["gap_transitions"] += batch.first - received
        self._live.add(key)
        self._received[key] = max(received, batch.first + batch.rows)
        self._received.move_to_end(key)
        while len(self._received) > self.max_entries:
            old, _ = self._received.popitem(last=False)
            self._restored.pop(old, None)
            self._live.discard(old)
            gone = self._held.pop(old, None)
            if gone is not None:
                self._held_rows -= sum(b.rows for b in gone.batches)
                self._held_batches -= len(gone.batches)

    def stats_received(self, stats: EpisodeStats) -> None:
        """A numbered episode statistic (``seq`` > 0) is held (queued for metrics.csv, or a copy of one held):
        move the session's statistics mark. Unnumbered ones change nothing."""
        if stats.seq <= 0:
            return
        key = (int(stats.robot), int(stats.session))
        held, above, top_base = self._stats.get(key, (0, set(), 0))
        base = int(stats.base)
        top_base = max(top_base, base)
        if base > held:
            held = base
            above = {s for s in above if s > held}
        if stats.seq > held:
            above.add(int(stats.seq))
        while held + 1 in above:
            held += 1
            above.discard(held)
        if len(above) > MAX_STATS_AHEAD:  # a collector that never fills its gaps: keep the newest
            above = set(sorted(above)[-MAX_STATS_AHEAD:])
        self._stats[key] = (held, above, top_base)
        self._stats.move_to_end(key)
        while len(self._stats) > self.max_entries:
            self._stats.popitem(last=False)

    def holds_stats(self, stats: EpisodeStats) -> bool:
        """A numbered episode statistic whose number this ledger received before (a copy). Numbers only a
        ``base`` covered say nothing (one the collector gave up may still arrive): False for them."""
        if stats.seq <= 0:
            return False
        held, above, top_base = self._stats.get((int(stats.robot), int(stats.session)), (0, set(), 0))
        return top_base < stats.seq <= held or stats.seq in above

    def ack(self) -> TransitionAck:
        """The acknowledgement: per session, what this trainer started with and what it holds now (rows, and
        the statistics mark of the sessions that sent any)."""
        stats = {k: held for k, (held, _, _) in self._stats.items() if held > 0}
        if len(stats.keys() | self._received.keys()) > self.max_entries:  # one acknowledgement's bound
            stats = {k: held for k, held in stats.items() if k in self._received}
        return TransitionAck(self.trainer, {k: (min(self._restored.get(k, 0), v), v)
                                            for k, v in self._received.items()}, stats)

    def table(self) -> list[list[int]]:
        """``[[robot, session, received], ...]`` for a checkpoint (JSON)."""
        return [[robot, session, received] for (robot, session), received in self._received.items()]
