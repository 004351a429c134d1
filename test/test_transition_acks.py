"""Accounting of the transitions between collectors and a trainer that may die (issue 13), without rclpy.

The collector's loop (async_naf.collecting.loop: sequence numbers, in-flight batches, re-sending) and the
trainer's ledger (async_naf.learning.receipts: de-duplication, acknowledgements, checkpoint table) are
wired together here through the real message layouts; a trainer "dies" by losing its ledger and what was
sent to it in flight, and "restarts" from the ledger table of its last checkpoint. Episode statistics go the
same way into the trainer's real metrics.csv (async_naf.learning.metrics), which outlives a trainer.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from async_naf.collecting.collector import CollectorConfig
from async_naf.collecting.loop import TICK_S, CollectorLoop
from async_naf.learning.metrics import MetricsLog
from async_naf.learning.receipts import ReceiptLedger
from async_naf.task.tasks import TaskState
from async_naf.wire import layouts
from async_naf.wire.layouts import PolicyStep, TransitionAck, TransitionBatch

SESSION = 77


def _rows(robot: int, session: int, first: int, n: int) -> TransitionBatch:
    z = np.zeros((n, 2), np.float32)
    return TransitionBatch(z, z, np.zeros(n, np.float32), z, np.zeros(n, np.float32), np.full(n, robot),
                           np.zeros(n, np.int64), np.arange(n), session, first)


def _take(ledger: ReceiptLedger, part: TransitionBatch | None, now: float) -> list[tuple[int, int]]:
    """As Trainer.add_transitions: the rows admitted (if any), then every batch the ledger held back that is due,
    each committed; returns their (session, row) ids in the order taken."""
    taken: list[tuple[int, int]] = []
    while True:
        if part is not None:
            taken += [(part.session, part.first + i) for i in range(part.rows)]
            ledger.commit(part)
        part = ledger.release(now)
        if part is None:
            return taken


# ---------------------------------------------------------------------------------------------- ledger
def test_ledger_drops_copies_cuts_overlaps_and_counts_gaps() -> None:
    ledger = ReceiptLedger(5)
    for first, n, expect in ((0, 10, 10), (0, 10, None), (5, 10, 5), (15, 5, 5), (30, 5, 5)):
        part = ledger.admit(_rows(1, SESSION, first, n))
        if expect is None:
            assert part is None
            continue
        assert part is not None and part.rows == expect
        ledger.commit(part)
    assert part is not None and part.first == 30
    assert ledger.counts == {"duplicate_transitions": 15, "gap_transitions": 10, "out_of_order_transitions": 0,
                             "unsequenced_transitions": 0}
    assert ledger.ack() == TransitionAck(5, {(1, SESSION): (0, 35)})
    unsequenced = _rows(1, 0, -1, 4)
    assert ledger.admit(unsequenced) is unsequenced
    ledger.commit(unsequenced)
    assert ledger.counts["unsequenced_transitions"] == 4 and ledger.table() == [[1, SESSION, 35]]


def test_a_trainer_holds_back_a_batch_that_comes_before_the_rows_still_held_in_front_of_it() -> None:
    """A restarted trainer (restored to row 10) gets the collector's new rows (40..) before the rows 10..40
    it sent the dead one: with ``base`` 10 (rows from 10 on still held) the batch is held back, not taken
    past them; once they come it follows. Rows below ``base`` it lacks never come: a gap, counted when the
    batch after them is taken."""
    from async_naf.learning.receipts import OUT_OF_ORDER_WAIT_S

    ledger = ReceiptLedger.from_table(2, [[1, SESSION, 10]])
    newer = _rows(1, SESSION, 40, 10)._replace(base=10)
    assert ledger.admit(newer, 0.0) is None and ledger.release(0.1) is None
    assert ledger.counts["out_of_order_transitions"] == 10 and ledger.ack().entries[(1, SESSION)] == (10, 10)
    assert ledger.admit(newer, 0.2) is None  # its re-send while it is held: a copy
    for first in (10, 25):  # the rows in front of it, sent again in order
        part = ledger.admit(_rows(1, SESSION, first, 15)._replace(base=10), 0.3)
        assert part is not None and part.first == first
        ledger.commit(part)
    released = ledger.release(0.4)
    assert released is not None and released.first == 40 and ledger.release(0.4) is None
    ledger.commit(released)
    assert ledger.table() == [[1, SESSION, 50]]
    assert ledger.counts == {"duplicate_transitions": 10, "gap_transitions": 0, "out_of_order_transitions": 10,
                             "unsequenced_transitions": 0}
    # now it holds rows of that session itself and none held back: a later batch beyond its mark is taken
    assert ledger.admit(_rows(1, SESSION, 60, 5)._replace(base=50), 0.5) is not None

    # rows 10..50 are below base: they never come; 50..60 may, so the batch waits for them
    ledger = ReceiptLedger.from_table(3, [[1, SESSION, 10]])
    assert ledger.admit(_rows(1, SESSION, 60, 5)._replace(base=50), 1.0) is None
    assert ledger.ack().entries[(1, SESSION)] == (10, 10) and ledger.counts["gap_transitions"] == 0
    # what never comes: after OUT_OF_ORDER_WAIT_S the held batch goes with its gap, as in steady state
    assert ledger.release(1.0 + OUT_OF_ORDER_WAIT_S - 0.01) is None
    late = ledger.release(1.0 + OUT_OF_ORDER_WAIT_S)
    assert late is not None and late.first == 60
    ledger.commit(late)
    assert ledger.counts["gap_transitions"] == 50 and ledger.table() == [[1, SESSION, 65]]
    # base = first (a batch sent with nothing held before it) and a fresh session: taken as before
    assert ledger.admit(_rows(1, SESSION + 1, 7, 5), 2.0) is not None


def test_a_base_that_passes_held_batches_hands_them_over() -> None:
    """A reviewer's case: rows 10..20 held back (base 0), then rows 30..40 come with base 20 (the collector
    gave 0..20 up). The mark moved to base over the held rows, which were then dropped as copies and counted
    twice (gap and copy). Now the held rows go in (the gap is 0..10), and 30..40 waits for 20..30."""
    ledger = ReceiptLedger(5)
    assert ledger.admit(_rows(1, SESSION, 10, 10)._replace(base=0), 0.0) is None
    assert ledger.admit(_rows(1, SESSION, 30, 10)._replace(base=20), 0.1) is None
    taken = ledger.release(0.2)
    assert taken is not None and (taken.first, taken.rows) == (10, 10) and ledger.release(0.2) is None
    ledger.commit(taken)
    part = ledger.admit(_rows(1, SESSION, 20, 10)._replace(base=20), 0.3)
    assert part is not None
    ledger.commit(part)
    taken = ledger.release(0.3)
    assert taken is not None and taken.first == 30
    ledger.commit(taken)
    assert ledger.table() == [[1, SESSION, 40]]
    assert ledger.counts == {"duplicate_transitions": 0, "gap_transitions": 10, "out_of_order_transitions": 20,
                             "unsequenced_transitions": 0}


def test_a_batch_whose_first_is_its_base_does_not_pass_held_rows() -> None:
    """A second reviewer's case: rows 10..20 held back (base 0), then 30..40 with base 30 (the collector gave
    up everything before it: its backlog bound). It was taken at once; the mark passed the held rows, which
    were counted as gap and then dropped as copies. Now it joins the held batches and both go in order."""
    ledger, taken = ReceiptLedger(8), []
    for t, batch in ((0.0, _rows(1, SESSION, 10, 10)._replace(base=0)),
                     (0.1, _rows(1, SESSION, 30, 10)._replace(base=30))):
        taken += [row for _, row in _take(ledger, ledger.admit(batch, t), t)]
        assert taken or t == 0.0  # 10..20 waits for 0..10 until the second batch's base says they never come
    assert taken == [*range(10, 20), *range(30, 40)] and ledger.table() == [[1, SESSION, 40]]
    assert ledger.counts["gap_transitions"] == 20 and ledger.counts["duplicate_transitions"] == 0


def test_held_batches_are_bounded_and_released_without_recursion() -> None:
    """A peer that makes the trainer hold many batches: at most MAX_HELD_BATCHES are held (beyond, the
    session held longest goes), and copies among them are skipped in a loop (the first version recursed once
    per copy: RecursionError, the trainer process gone, with about 1,000 of them)."""
    from async_naf.learning.receipts import MAX_HELD_BATCHES, OUT_OF_ORDER_WAIT_S

    ledger = ReceiptLedger(6)
    for k in range(MAX_HELD_BATCHES):  # one-row batches at 2, 4, 6, ...: each with a row missing before it
        assert ledger.admit(_rows(1, SESSION, 2 + 2 * k, 1)._replace(base=0), 0.0) is None
    assert ledger.release(0.0) is None
    assert ledger.admit(_rows(1, SESSION + 1, 5, 1)._replace(base=0), 1.0) is None  # one more: over the bound
    first_out = ledger.release(1.0)
    assert first_out is not None and first_out.session == SESSION and first_out.first == 2  # held longest
    part = ledger.admit(_rows(1, SESSION, 0, 3000)._replace(base=0), 1.0)  # covers every held row
    assert part is not None
    ledger.commit(part)
    assert ledger.release(1.0) is None  # all the rest copies now: skipped, no recursion
    assert ledger.counts["duplicate_transitions"] == MAX_HELD_BATCHES - 1
    assert ledger.release(1.0 + OUT_OF_ORDER_WAIT_S) is not None  # the other session's batch, waited out


def test_the_session_held_longest_waits_no_longer_than_out_of_order_wait_s() -> None:
    """A reviewer's case: a later batch with a lower first restarted the wait of the one behind it."""
    from async_naf.learning.receipts import OUT_OF_ORDER_WAIT_S

    ledger = ReceiptLedger(7)
    assert ledger.admit(_rows(1, SESSION, 40, 10)._replace(base=0), 0.0) is None
    assert ledger.admit(_rows(1, SESSION, 20, 10)._replace(base=0), 4.0) is None
    out = [ledger.release(OUT_OF_ORDER_WAIT_S), ledger.release(OUT_OF_ORDER_WAIT_S)]
    assert [(b.first if b is not None else None) for b in out] == [20, 40]


def test_ledger_restored_from_a_checkpoint_table() -> None:
    ledger = ReceiptLedger.from_table(9, [[0, SESSION, 40], [1, 3, 7]])
    assert ledger.ack() == TransitionAck(9, {(0, SESSION): (40, 40), (1, 3): (7, 7)})
    assert ledger.admit(_rows(0, SESSION, 30, 10)) is None  # in the checkpoint already
    part = ledger.admit(_rows(0, SESSION, 35, 10))
    assert part is not None
    ledger.commit(part)
    assert ledger.ack().entries[(0, SESSION)] == (40, 45)
    # beyond what an acknowledgement carries (a checkpoint of a trainer that took such a batch: every
    # acknowledgement then failed, the trainer died, and again on each resume); JSON's Infinity
    for bad in ("x", [[0, 0, 1]], [[0, 1, -1]], [[1, 2]], [[0, 77, 2**53 + 3]], [[0, 2**31, 1]],
                [[0, 1, float("inf")]]):
        with pytest.raises(ValueError):
            ReceiptLedger.from_table(9, bad)
    with pytest.raises(ValueError):
        ReceiptLedger(0)


def test_ledger_forgets_the_least_recently_active_sessions_beyond_its_bound() -> None:
    ledger = ReceiptLedger(1, max_entries=2)
    for session in (1, 2, 1, 3):
        part = ledger.admit(_rows(0, session, 0 if session != 1 or not ledger.table() else 1, 1))
        if part is not None:
            ledger.commit(part)
    assert sorted(k for k in ledger.ack().entries) == [(0, 1), (0, 3)]


def test_ledger_acknowledges_statistics_by_their_numbers_up_to_the_first_gap() -> None:
    ledger = ReceiptLedger(3)

    def stats(session: int, seq: int, base: int = 0, robot: int = 1) -> layouts.EpisodeStats:
        return layouts.EpisodeStats(robot, seq, 0.0, 10, False, 10, session, seq, base)

    ledger.stats_received(layouts.EpisodeStats(1, 0, 0.0, 10, False, 10))  # not numbered: nothing to acknowledge
    assert ledger.ack().stats == {}
    for seq in (1, 2, 4, 5):  # 3 missing (lost on the way, say)
        ledger.stats_received(stats(SESSION, seq))
    assert ledger.ack().stats == {(1, SESSION): 2}
    ledger.stats_received(stats(SESSION, 2))  # a copy changes nothing
    assert ledger.ack().stats == {(1, SESSION): 2}
    ledger.stats_received(stats(SESSION, 3))  # the gap filled: up to 5
    assert ledger.ack().stats == {(1, SESSION): 5}
    # a restarted trainer's first statistic of a session: the collector waits for nothing below its base
    ledger.stats_received(stats(9, 41, base=40, robot=0))
    ledger.stats_received(stats(9, 43, base=40, robot=0))
    ack = ledger.ack()
    assert ack.stats == {(1, SESSION): 5, (0, 9): 41} and ack.entries == {}  # statistics without rows
    assert layouts.decode_transition_ack(layouts.encode_transition_ack(ack)) == ack
    ledger.stats_received(stats(9, 44, base=42, robot=0))  # 42 given up by the collector (forgotten, counted)
    assert ledger.ack().stats[(0, 9)] == 44


def test_ledger_bounds_the_sessions_an_acknowledgement_carries() -> None:
    ledger = ReceiptLedger(1, max_entries=2)
    part = ledger.admit(_rows(0, 1, 0, 1))
    assert part is not None
    ledger.commit(part)
    for session in (2, 3, 4):
        ledger.stats_received(layouts.EpisodeStats(0, 0, 0.0, 1, False, 1, session, 1, 0))
    ack = ledger.ack()  # the least recently active forgotten, and never more sessions than an acknowledgement holds
    assert len(ack.entries.keys() | ack.stats.keys()) <= 2 and (0, 1) in ack.entries
    assert layouts.decode_transition_ack(layouts.encode_transition_ack(ack)) == ack


# ---------------------------------------------------------------------------------------------- loop + ledger
def _step(loop: CollectorLoop, index: int, stamp: float) -> PolicyStep:
    task = loop.asm.task
    rng = np.random.default_rng(index)
    q, qd, ee = rng.normal(size=7), rng.normal(size=7), rng.uniform(0.2, 0.6, size=3)
    obs = task.observation(TaskState(q, qd, ee, 0.0, 0.0), loop.asm.goal)
    return PolicyStep(stamp, loop.asm.episode, index, obs.astype(np.float64), rng.uniform(-0.5, 0.5, size=7),
                      q, qd, ee, 0.0, 0.0)


class World:
    """One collector loop and a trainer (ledger + buffer of (session, row) ids) joined by the real layouts.

    ``wire`` holds batches (and episode statistics) published and not yet delivered (DDS in flight); a dead
    trainer's wire is lost. With ``run_dir`` the trainer records the statistics in a real metrics.csv there.
    """

    def __init__(self, backlog: int = 20_000, run_dir: Path | None = None, window: int = 32,
                 depth: int | None = None) -> None:
        self.loop = CollectorLoop(CollectorConfig(task="reach", seed=0, robot_id=2, episode_steps=10,
                                                  batch_transitions=5, backlog_transitions=backlog,
                                                  send_window=window),
                                  session=SESSION)
        self.depth = depth  # the trainer's keep-last queue per topic (None: unbounded); beyond it the oldest go
        self.overflowed = 0
        self.t = 0.0
        self.trainer_id = 1
        self.ledger: ReceiptLedger | None = ReceiptLedger(self.trainer_id)
        self.buffer: list[tuple[int, int]] = []
        self.wire: list[TransitionBatch] = []
        self.stats_wire: list[layouts.EpisodeStats] = []
        self.run_dir = run_dir
        self.metrics = MetricsLog(run_dir, tensorboard=False) if run_dir is not None else None
        self.checkpoint: tuple[list[list[int]], int] = ([], 0)  # (ledger table, buffer rows)

    @property
    def listening(self) -> bool:
        return self.ledger is not None

    def _handle(self, acts) -> None:
        for batch in acts.batches:
            msg = layouts.encode_transitions(batch)
            if self.listening:
                self.wire.append(layouts.decode_transitions(msg))
        for stats in acts.stats:
            if self.listening:
                self.stats_wire.append(layouts.decode_episode_stats(layouts.encode_episode_stats(stats)))
        for queue in (self.wire, self.stats_wire):
            while self.depth is not None and len(queue) > self.depth:  # keep-last: the oldest dropped silently
                queue.pop(0)
                self.overflowed += 1

    def deliver(self, write: bool = True, stats: bool = True) -> None:
        """What is on the wire into the trainer; ``write``: its metrics.csv rows written at once (else only
        queued, as while the update thread saves a checkpoint); ``stats``: the statistics too (else they stay
        on their own topic's wire, not taken yet)."""
        assert self.ledger is not None
        for batch in self.wire:
            self._take(self.ledger.admit(batch, self.t))
        self.wire.clear()
        if not stats:
            return
        for episode_stats in self.stats_wire:  # as Trainer.record_episode: queued (a copy if held), then held
            if self.metrics is not None:
                self.metrics.queue_episode(self.t, len(self.buffer), 0, episode_stats,
                                           copy=self.ledger.holds_stats(episode_stats))
            self.ledger.stats_received(episode_stats)
        if write and self.metrics is not None:
            self.metrics.write_queued()
        self.stats_wire.clear()

    def _take(self, part: layouts.TransitionBatch | None) -> None:
        assert self.ledger is not None
        self.buffer += _take(self.ledger, part, self.t)

    def ack(self, late: float = 0.0) -> None:
        """The trainer's acknowledgement (as Trainer.ack: the held batches due taken, the ledger read, then the
        queued metrics rows written), received now, or ``late`` s after it was taken (the statistics delivered
        meanwhile are not in it)."""
        assert self.ledger is not None
        self._take(None)
        msg = layouts.encode_transition_ack(self.ledger.ack())
        if self.metrics is not None:
            self.metrics.write_queued()
        self.t += late
        self._handle(self.loop.on_ack(layouts.decode_transition_ack(msg), self.t))

    def episode(self, deliver: bool = True, ack: bool = True) -> None:
        loop = self.loop
        for _ in range(100):
            self.t += TICK_S
            acts = loop.tick(self.t, trainer_listening=self.listening)
            self._handle(acts)
            if acts.call == "reset":
                break
        else:
            raise AssertionError("no reset requested")
        self._handle(loop.on_service_reply(True, "", self.t))
        for i in range(11):
            self.t += 0.05
            self._handle(loop.on_step(_step(loop, i, self.t), self.t))
        if self.listening and deliver:
            self.deliver()
            if ack:
                self.ack()

    def save_checkpoint(self) -> None:
        assert self.ledger is not None
        self.checkpoint = (self.ledger.table(), len(self.buffer))

    def kill_trainer(self) -> None:
        self.ledger = None
        self.wire.clear()  # published to the dead trainer (DDS had not noticed yet): gone
        self.stats_wire.clear()
        if self.metrics is not None:  # what it wrote to metrics.csv stays there; what it had only queued dies
            self.metrics._rows.clear()
            self.metrics.close()
        _table, rows = self.checkpoint
        self.buffer = self.buffer[:rows]

    def restart_trainer(self) -> None:
        self.trainer_id += 1
        self.ledger = ReceiptLedger.from_table(self.trainer_id, self.checkpoint[0])
        if self.run_dir is not None:
            self.metrics = MetricsLog(self.run_dir, tensorboard=False)

    def recorded(self) -> list[int]:
        """Episode numbers in metrics.csv, in order."""
        assert self.run_dir is not None
        lines = (self.run_dir / "metrics.csv").read_text().splitlines()[1:]
        return [int(line.split(",")[4]) for line in lines]

    def run_on(self, ticks: int) -> None:
        """``ticks`` ticks of the collector, each followed by the trainer taking and acknowledging what came."""
        for _ in range(ticks):
            self.t += TICK_S
            self._handle(self.loop.tick(self.t, trainer_listening=self.listening))
            self.deliver()
            self.ack()

    def drain(self) -> None:
        for _ in range(200):
            self.run_on(1)
            counts = self.loop.counts
            if not any(counts[k] for k in ("backlog_transitions", "inflight_transitions", "inflight_episode_stats")):
                return
        raise AssertionError("backlog not drained")


def test_acknowledged_batches_leave_the_in_flight_set() -> None:
    world = World()
    world.episode(deliver=False)  # before any acknowledgement nothing is kept in flight
    assert world.loop.counts["inflight_transitions"] == 0
    world.deliver()
    world.ack()
    world.episode(deliver=False)
    counts = world.loop.counts
    assert counts["inflight_transitions"] == 10 and counts["acked_transitions"] == 10
    world.deliver()
    world.ack()
    assert counts["inflight_transitions"] == 0 and counts["acked_transitions"] == 20
    assert world.buffer == [(SESSION, i) for i in range(20)]


def test_a_killed_trainer_loses_only_what_it_acknowledged_after_its_checkpoint() -> None:
    world = World()
    for _ in range(3):
        world.episode()
    world.save_checkpoint()  # 30 rows in the checkpoint
    world.episode()  # 10 more received and acknowledged
    world.episode(ack=False)  # 10 more received, never acknowledged
    world.episode(deliver=False)  # 10 more published, the trainer dies before they arrive
    world.kill_trainer()
    counts = world.loop.counts
    assert counts["inflight_transitions"] == 20
    world.episode()  # the collector sees no subscriber: in flight back into the backlog, the episode kept
    assert counts["inflight_transitions"] == 0 and counts["backlog_transitions"] == 30
    world.restart_trainer()
    world.drain()
    # the 10 acknowledged after the checkpoint died with the trainer, counted; everything else arrived once
    assert counts["lost_with_trainer"] == 10 and counts["trainers_seen"] == 2
    assert counts["lost_transitions"] == 0 and counts["unconfirmed_transitions"] == 0
    made = world.loop._next_row
    assert made == 70 and len(world.buffer) == len(set(world.buffer)) == made - counts["lost_with_trainer"]
    assert sorted(r for _, r in world.buffer) == [*range(30), *range(40, 70)]
    assert counts["resent_transitions"] == 20 and counts["acked_transitions"] == 70


def test_a_quick_restart_never_seen_gone_re_sends_what_the_new_trainer_lacks() -> None:
    world = World()
    world.episode()
    world.save_checkpoint()
    world.episode(deliver=False)
    world.kill_trainer()
    world.restart_trainer()  # the collector never saw the subscriber count drop
    world.ack()
    counts = world.loop.counts
    assert counts["lost_with_trainer"] == 0 and counts["backlog_transitions"] == 10
    world.drain()
    assert sorted(r for _, r in world.buffer) == list(range(20))


def test_duplicates_are_dropped_when_the_same_trainer_comes_back() -> None:
    world = World()
    world.episode()
    world.episode(ack=False)  # received, not acknowledged
    ledger = world.ledger
    world.ledger = None  # a partition: the subscriber is gone for the collector
    world.episode()
    world.ledger = ledger  # the same trainer again
    world.drain()
    assert ledger is not None and ledger.counts["duplicate_transitions"] == 10
    assert world.loop.counts["lost_with_trainer"] == 0
    assert sorted(r for _, r in world.buffer) == list(range(30))


def test_in_flight_and_backlog_share_the_bound() -> None:
    world = World(backlog=25)
    world.episode()
    for _ in range(3):
        world.episode(deliver=False)  # the trainer receives nothing more and acknowledges nothing
    counts = world.loop.counts
    assert counts["inflight_transitions"] == 25 and counts["unconfirmed_transitions"] == 5
    world.ledger = None
    world.episode()
    assert counts["backlog_transitions"] == 25 and counts["lost_transitions"] == 10


# ---------------------------------------------------------------------------------------------- episode statistics
def test_statistics_sent_to_a_killed_trainer_are_re_sent_and_recorded_once(tmp_path: Path) -> None:
    world = World(run_dir=tmp_path)
    for _ in range(3):
        world.episode()
    world.save_checkpoint()
    world.episode()  # rows and statistics received and acknowledged (by their number): done
    world.episode(ack=False)  # received (metrics.csv has it), never acknowledged: re-sent, a copy for the next
    world.episode(deliver=False)  # published, the trainer dies before it arrives: re-sent, recorded by the next
    counts = world.loop.counts
    assert counts["inflight_episode_stats"] == 2
    world.kill_trainer()
    world.episode()  # no trainer: into the backlog
    assert counts["inflight_episode_stats"] == 0
    world.restart_trainer()
    assert world.metrics is not None and world.metrics.rows_at_open == 5
    world.drain()
    assert world.recorded() == list(range(7))  # every episode once, in order
    assert counts["resent_episode_stats"] == 2 and world.metrics.duplicate_episodes == 1
    assert counts["lost_episode_stats"] == 0 and counts["unconfirmed_episode_stats"] == 0
    assert counts["inflight_episode_stats"] == 0


@pytest.mark.parametrize("seen_gone", [True, False])
def test_statistics_a_killed_trainer_had_only_queued_reach_the_next_one(tmp_path: Path, seen_gone: bool) -> None:
    """The trainer took an episode's rows and statistics, but its update thread had not written the row yet
    (it was saving the checkpoint that holds those rows) when it died, before acknowledging them. The next
    trainer holds the rows, from that checkpoint, and not the statistics: the collector sends them again
    (it dropped them as held before, and the episode vanished uncounted)."""
    world = World(run_dir=tmp_path)
    world.episode()
    world.episode(deliver=False)
    world.deliver(write=False)  # rows in the buffer, the statistics only queued
    world.save_checkpoint()  # holds the rows of both episodes
    world.kill_trainer()
    counts = world.loop.counts
    if seen_gone:
        world.episode()  # no trainer: what was in flight goes back to the backlog
    world.restart_trainer()
    world.ack()  # the new trainer: it holds the rows of the first two episodes
    world.drain()
    assert world.recorded() == list(range(counts["episodes"]))  # every episode once
    assert counts["resent_episode_stats"] == 1 and counts["lost_episode_stats"] == 0
    assert counts["lost_with_trainer"] == 0 and world.metrics is not None and world.metrics.duplicate_episodes == 0


def test_statistics_whose_rows_were_acknowledged_before_they_arrived_are_sent_again(tmp_path: Path) -> None:
    """An episode's statistics go on their own topic just after its rows. The trainer's acknowledgement timer can
    run between the two callbacks: the rows acknowledged, the statistics not taken yet. Killed then, the trainer
    takes them along, and the collector had dropped them as confirmed by the rows: 5 of 408 episodes missing
    and counted nowhere in a CI run under load. Now only the trainer's acknowledgement of their own number
    confirms them; before that they are sent again."""
    world = World(run_dir=tmp_path)
    world.episode()
    world.episode(deliver=False)
    world.deliver(stats=False)  # the rows arrive; the statistics are still on their topic
    world.ack()  # ... and the timer acknowledges the rows
    counts = world.loop.counts
    # episode 0's statistics: confirmed by an acknowledgement of their number; episode 1's: only their rows
    assert counts["inflight_transitions"] == 0 and counts["inflight_episode_stats"] == 1
    world.save_checkpoint()
    world.kill_trainer()  # the statistics die with it
    world.restart_trainer()
    world.ack()  # the next trainer: it holds the rows (checkpoint), not the statistics
    world.drain()
    assert world.recorded() == [0, 1]  # episode 1 recorded once (it vanished before)
    assert counts["resent_episode_stats"] == 1 and world.metrics is not None and world.metrics.duplicate_episodes == 0
    assert counts["lost_episode_stats"] == 0 and counts["inflight_episode_stats"] == 0


def test_statistics_awaiting_their_acknowledgement_go_back_to_the_backlog_when_the_trainer_goes(
        tmp_path: Path) -> None:
    """Nothing in flight but an episode's statistics whose rows were acknowledged (they have not reached the
    trainer yet): the trainer going sends them again too (kept as confirmed-to-be, a trainer that came back
    would have confirmed statistics it never took)."""
    world = World(run_dir=tmp_path)
    world.episode()  # the first acknowledgement (before it nothing is tracked in flight)
    world.episode(deliver=False)
    world.deliver(stats=False)
    world.ack()
    counts = world.loop.counts
    assert counts["inflight_transitions"] == 0 and counts["inflight_episode_stats"] == 1  # awaiting
    ledger, world.ledger = world.ledger, None  # the trainer goes (the link, say)
    world.stats_wire.clear()  # with the statistics on it
    world.t += TICK_S
    acts = world.loop.tick(world.t, trainer_listening=False)
    assert [key for _, key, _ in acts.log] == ["trainer_gone"] and counts["inflight_episode_stats"] == 0
    world.ledger = ledger  # ... and comes back
    world.drain()
    assert world.recorded() == [0, 1] and counts["resent_episode_stats"] == 1
    assert world.metrics is not None and world.metrics.duplicate_episodes == 0


def test_an_acknowledgement_taken_before_the_statistics_arrived_never_confirms_them(tmp_path: Path) -> None:
    """The race left open on 2026-12-05 (stop 44): a trainer behind on its subscriptions takes an episode's rows,
    its timer takes an acknowledgement before the statistics' callback runs, and that acknowledgement reaches
    the collector 2 s later. Taken as the statistics' receipt (as any acknowledgement 0.5 s after sending was),
    a trainer killed right after lost them uncounted. By their own number, the acknowledgement says they are
    not held: they stay in flight and reach the next trainer."""
    world = World(run_dir=tmp_path)
    world.episode()
    world.episode(deliver=False)
    world.deliver(stats=False)  # the rows taken, the statistics still queued on their subscription
    world.ack(late=2.0)
    counts = world.loop.counts
    assert counts["inflight_episode_stats"] == 1
    world.save_checkpoint()
    world.kill_trainer()  # the statistics die with it
    world.restart_trainer()
    world.ack()
    world.drain()
    assert world.recorded() == [0, 1] and counts["resent_episode_stats"] == 1
    assert counts["lost_episode_stats"] == 0 and counts["unconfirmed_episode_stats"] == 0


def test_statistics_the_trainer_holds_are_not_sent_again_when_it_comes_back(tmp_path: Path) -> None:
    """A link down after the trainer took an episode's statistics but before its acknowledgement came through:
    the collector re-queues them, and the same trainer's acknowledgement of their number, once the link is
    back, takes them out of the backlog (nothing re-sent, no copy to drop)."""
    world = World(run_dir=tmp_path)
    world.episode()
    world.episode(ack=False)  # rows and statistics taken, the acknowledgement lost
    ledger, world.ledger = world.ledger, None
    world.t += TICK_S
    world._handle(world.loop.tick(world.t, trainer_listening=False))
    counts = world.loop.counts
    assert counts["backlog_transitions"] == 10 and counts["inflight_episode_stats"] == 0
    world.ledger = ledger
    world.ack()  # before the next tick sends the backlog again
    world.drain()
    assert world.recorded() == [0, 1] and counts["resent_episode_stats"] == 0
    assert world.metrics is not None and world.metrics.duplicate_episodes == 0


def _closes(world: World) -> bool:
    """Every episode made is in metrics.csv once, or counted lost (after the collector's exit)."""
    counts = world.loop.counts
    recorded = world.recorded()
    counted = sum(counts[f"{k}_episode_stats"] for k in ("lost", "unconfirmed", "unsent_at_exit"))
    return len(recorded) == len(set(recorded)) and len(recorded) + counted == counts["episodes"]


def test_a_statistic_lost_while_the_trainer_stays_is_sent_again(tmp_path: Path) -> None:
    """A reviewer's case: one statistic lost on its topic (a keep-last queue overflowing, say) while the trainer
    lives. Its mark stopped below it, nothing sent it again, and every later statistic of the session stayed
    unconfirmed for good (the lost one counted nowhere at exit). Now statistics awaiting their number
    STATS_RESEND_S after they were sent go again; the trainer drops the copies by number."""
    from async_naf.collecting.loop import STATS_RESEND_S

    world = World(run_dir=tmp_path)
    world.episode()
    world.episode(deliver=False)
    world.stats_wire.clear()  # episode 1's statistics lost, the trainer alive
    world.deliver()
    world.ack()
    for _ in range(20):
        world.episode()
    world.run_on(int(2 * STATS_RESEND_S / TICK_S))
    counts = world.loop.counts
    assert sorted(world.recorded()) == list(range(22)) and counts["inflight_episode_stats"] == 0
    assert counts["resent_episode_stats"] >= 1 and world.ledger is not None
    assert world.ledger.ack().stats == {(2, SESSION): 22}
    world._handle(world.loop.shutdown(world.t))
    assert _closes(world)


def test_what_a_trainer_never_acknowledged_reaches_the_one_after_it(tmp_path: Path) -> None:
    """A reviewer's case: the collector saw trainer A gone, sent its backlog to B, B died before any
    acknowledgement of its came, and C took over unnoticed. Having seen A gone, the collector re-queued nothing
    for C: episodes 1-3 vanished uncounted. Now every new trainer gets the statistics it lacks. The next
    episode's rows reached C before its first acknowledgement: C took them, its mark went past the 30 rows B
    took along, and their re-send was dropped as copies (C's `gap_transitions`, the one place they showed).
    Now the batches carry `base` and C holds those rows back until the rows in front of them come: all in."""
    world = World(run_dir=tmp_path)
    world.episode()
    world.save_checkpoint()
    world.episode(deliver=False)
    world.kill_trainer()
    world.episode()  # A seen gone: in flight back to the backlog
    world.restart_trainer()  # B
    world.episode(deliver=False)  # the backlog and a new episode go to B, not taken yet
    world.kill_trainer()  # B dies before acknowledging anything
    world.restart_trainer()  # C, never seen gone
    for _ in range(5):
        world.episode()
    world.run_on(200)
    counts = world.loop.counts
    assert sorted(world.recorded()) == list(range(counts["episodes"])) and counts["inflight_episode_stats"] == 0
    assert world.ledger is not None and world.ledger.counts["gap_transitions"] == 0
    assert sorted(r for _, r in world.buffer) == list(range(world.loop._next_row)) == list(range(90))
    assert world.ledger.counts["out_of_order_transitions"] > 0
    world._handle(world.loop.shutdown(world.t))
    assert _closes(world)


def test_the_send_window_holds_the_statistics_awaiting_their_number(tmp_path: Path) -> None:
    """A reviewer's case: a backlog burst to a restarted trainer whose statistics callback runs 8 times less often
    than its transitions callback, keep-last queues of 10. Statistics whose rows were acknowledged no longer
    counted in the send window, so their queue overflowed (10 lost) although the window was 8. Now they count
    until their own number is acknowledged: nothing overflows."""
    world = World(window=8, depth=10, run_dir=tmp_path)
    world.episode()
    world.save_checkpoint()
    world.kill_trainer()
    for _ in range(30):
        world.episode()
    world.restart_trainer()
    for tick in range(3000):
        world.t += TICK_S
        world._handle(world.loop.tick(world.t, trainer_listening=True))
        if tick % 5 == 4:
            world.deliver(stats=tick % 40 == 39)
            world.ack()
    counts = world.loop.counts
    assert world.overflowed == 0 and counts["inflight_episode_stats"] == 0 and not world.loop._backlog
    assert world.recorded() == list(range(31))


def test_statistics_a_trainer_never_takes_do_not_hold_up_the_rows(tmp_path: Path) -> None:
    """A second reviewer's case: the trainer takes and acknowledges rows but none of this collector's statistics
    (its subscription unmatched, a trainer of another statistics version dropping them all). With statistics
    awaiting their number in the one send window, no batch went out once send_window of them waited (330 of
    1,070 rows in 60 s), and they were re-sent every STATS_RESEND_S for good. Now statistics have a window of
    their own (the others wait, parked), re-sends back off to STATS_RESEND_MAX_S, and the collector warns once."""
    from async_naf.collecting.loop import STATS_RESEND_MAX_S, STATS_RESEND_S

    world = World(run_dir=tmp_path, window=8)
    world.episode()  # the first acknowledgement
    loop, start = world.loop, world.t
    warnings = []
    while world.t - start < 60.0:
        world.t += TICK_S
        acts = loop.tick(world.t, trainer_listening=True)
        world._handle(acts)
        warnings += [key for _, key, _ in acts.log if key == "stats_unacknowledged"]
        if acts.call == "reset":
            world._handle(loop.on_service_reply(True, "", world.t))
            for i in range(11):
                world.t += 0.05
                world._handle(loop.on_step(_step(loop, i, world.t), world.t))
        world.stats_wire.clear()  # the statistics never arrive
        world.deliver(stats=False)
        world.ack()
    counts = loop.counts
    assert counts["episodes"] > 80 and len(world.buffer) == loop._next_row - counts["inflight_transitions"]
    assert counts["inflight_transitions"] <= 8 * 5  # at most the window's batches of 5 rows
    assert counts["inflight_episode_stats"] == 8  # the statistics' own window, full
    # each of the 8 re-sent 2, 6, 14 and 30 s after it was first sent (intervals doubling from STATS_RESEND_S, at
    # most STATS_RESEND_MAX_S): at most 4 times in 60 s, where every STATS_RESEND_S would be 29
    assert STATS_RESEND_S == 2.0 and STATS_RESEND_MAX_S >= 32.0
    assert 8 <= counts["resent_episode_stats"] <= 8 * 4 and warnings == ["stats_unacknowledged"]


def test_a_statistic_lost_with_the_last_batch_is_sent_again(tmp_path: Path) -> None:
    """A second reviewer's case: a run's last episode lost its final batch and its statistic (one keep-last burst)
    while the trainer stayed. No later batch moved the trainer's row mark past them, so the statistic never
    waited for its own number and was never re-sent. Now any statistic in flight not acknowledged after
    STATS_RESEND_S goes again."""
    import dataclasses

    world = World(run_dir=tmp_path)
    world.episode()
    world.loop.config = dataclasses.replace(world.loop.config, max_episodes=2)
    world.episode(deliver=False)
    world.wire.pop()  # the episode's last batch lost
    world.stats_wire.clear()  # and its statistic
    world.deliver()
    world.ack()
    world.run_on(500)  # 10 s, the trainer alive and acknowledging
    counts = world.loop.counts
    assert world.recorded() == [0, 1] and counts["resent_episode_stats"] == 1
    assert counts["inflight_episode_stats"] == 0


def test_the_collector_s_exit_sends_again_what_is_in_flight(tmp_path: Path) -> None:
    """The process exits right after its last episode's final batch and statistic were lost on the way (no
    time for STATS_RESEND_S): its shutdown sends again whatever is in flight and not acknowledged, the trainer
    drops what it holds, and the last episode and its rows arrive."""
    world = World(run_dir=tmp_path)
    world.episode()
    world.episode(deliver=False)
    world.wire.pop()  # the last batch lost
    world.stats_wire.clear()  # and the statistic
    world.deliver()
    world.ack()
    world._handle(world.loop.shutdown(world.t))
    world.deliver()
    world.ack()
    counts = world.loop.counts
    assert world.recorded() == [0, 1] and counts["inflight_episode_stats"] == counts["inflight_transitions"] == 0
    assert sorted(r for _, r in world.buffer) == list(range(world.loop._next_row))


def test_a_restarted_collector_s_episodes_are_not_taken_for_copies(tmp_path: Path) -> None:
    """A second reviewer's case: a collector process restarted with the same robot id numbers its episodes from 0
    again (a new session); with the same returns (here the same seed) the trainer took each for a copy of the
    first process's episode, acknowledged it, and it was counted nowhere (3 of 3). Rows this trainer wrote for
    another session are no copies now."""
    world = World(run_dir=tmp_path)
    for _ in range(3):
        world.episode()
    world.loop = CollectorLoop(world.loop.config, session=SESSION + 1)  # the collector restarted
    for _ in range(3):
        world.episode()
    world.drain()
    assert world.recorded() == [0, 1, 2, 0, 1, 2] and world.loop.counts["inflight_episode_stats"] == 0
    assert world.metrics is not None and world.metrics.duplicate_episodes == 0


def test_a_trainer_that_stops_acknowledging_is_taken_as_gone(tmp_path: Path) -> None:
    """Cut off through a discovery server, a robot host still shows the trainer's subscription: it went on
    sending into the dead link, forgot what it had in flight as unconfirmed, and 41 episodes never reached the
    trainer (a reviewer's 45 s link-down). No acknowledgement for ACK_TIMEOUT_S is now the trainer gone: what
    was in flight goes back to the backlog and reaches the trainer when it answers again."""
    from async_naf.collecting.loop import ACK_TIMEOUT_S

    world = World(run_dir=tmp_path)
    world.episode()
    world.episode()
    counts = world.loop.counts
    start = world.t
    while world.t - start <= ACK_TIMEOUT_S + 2.0:  # the link is down: what is published is lost, no ack comes
        world.episode(deliver=False)
        world.wire.clear()
        world.stats_wire.clear()
    assert counts["inflight_transitions"] == 0 and counts["backlog_transitions"] > 0
    assert world.loop.trainer_state["trainer_listening"] == 0
    world.drain()  # the link is back: the trainer answers (its acknowledgement) and takes the backlog
    assert world.recorded() == list(range(counts["episodes"]))  # every episode, once
    assert counts["unconfirmed_transitions"] == 0 and counts["lost_transitions"] == 0
    assert world.loop.trainer_state["trainer_listening"] == 1


def test_statistics_lost_in_a_partition_reach_the_same_trainer_again(tmp_path: Path) -> None:
    world = World(run_dir=tmp_path)
    world.episode()
    world.episode(deliver=False)
    world.wire.clear()  # the link goes down with this episode's messages on it
    world.stats_wire.clear()
    ledger = world.ledger
    world.ledger = None
    world.episode()  # kept while the link is down, after the re-queued one
    world.ledger = ledger
    world.drain()
    assert world.recorded() == [0, 1, 2]
    counts = world.loop.counts
    assert counts["resent_episode_stats"] == 1 and world.metrics is not None and world.metrics.duplicate_episodes == 0


def test_statistics_beyond_the_bound_are_counted(tmp_path: Path) -> None:
    world = World(backlog=25, run_dir=tmp_path)
    world.episode()
    for _ in range(3):
        world.episode(deliver=False)  # nothing more is acknowledged
    counts = world.loop.counts
    assert counts["unconfirmed_transitions"] == 5 and counts["inflight_episode_stats"] == 3
    world.wire.clear()  # and none of it arrives: the link goes down
    world.stats_wire.clear()
    world.ledger = None
    world.episode()
    world.episode()
    assert counts["lost_episode_stats"] == 2 and counts["lost_transitions"] == 20
    world.ledger = ReceiptLedger(world.trainer_id)
    world.drain()
    # each episode made is recorded once or counted as lost: none vanishes uncounted
    recorded = world.recorded()
    assert len(recorded) == len(set(recorded)) == 4 and recorded[0] == 0
    assert len(recorded) + counts["lost_episode_stats"] + counts["unconfirmed_episode_stats"] == counts["episodes"] == 6


@pytest.mark.parametrize("window", [8, 1000])
def test_the_send_window_keeps_a_backlog_burst_within_the_trainers_queue(window: int) -> None:
    """A backlog of 30 episodes (90 messages) sent to a restarted trainer whose queues keep 10 messages per
    topic and which takes and acknowledges them only every 5 ticks (0.1 s). With a window of 8 nothing
    overflows and the accounting closes; without one (1000) the queue drops batches silently, the trainer
    counts a gap the collector knows nothing of, and the collector takes the dropped rows as delivered."""
    world = World(window=window, depth=10)
    world.episode()
    world.save_checkpoint()
    world.kill_trainer()
    for _ in range(30):
        world.episode()
    counts = world.loop.counts
    assert counts["backlog_transitions"] == 300
    world.restart_trainer()
    for tick in range(2000):
        world.t += TICK_S
        world._handle(world.loop.tick(world.t, trainer_listening=True))
        if tick % 5 == 4:
            world.deliver()
            world.ack()
        if not counts["backlog_transitions"] and not counts["inflight_transitions"]:
            break
    assert world.ledger is not None
    gap = world.ledger.counts["gap_transitions"]
    made = world.loop._next_row
    assert made == 310 and counts["acked_transitions"] == made and counts["lost_with_trainer"] == 0
    if window == 8:
        assert world.overflowed == 0 and gap == 0
        assert sorted(r for _, r in world.buffer) == list(range(made))
    else:  # what the window prevents: rows lost in the queue, yet acknowledged by the trainer's high mark
        assert world.overflowed > 0 and gap > 0 and len(world.buffer) == made - gap
