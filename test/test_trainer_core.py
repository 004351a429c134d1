"""async_naf.learning.trainer: the ROS-free trainer core (update thread, pause, checkpoints, resume, stop condition)."""
from __future__ import annotations

import csv
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from async_naf.learning.trainer import Trainer, TrainerConfig, read_latest_checkpoint
from async_naf.wire.layouts import EpisodeStats, TransitionBatch

torch.set_num_threads(1)
TASK = "reach"
OBS, ACT = 23, 7


def _batch(n: int, seed: int = 0) -> TransitionBatch:
    rng = np.random.default_rng(seed)
    return TransitionBatch(rng.normal(size=(n, OBS)).astype(np.float32),
                           rng.uniform(-0.5, 0.5, size=(n, ACT)).astype(np.float32),
                           rng.normal(size=n).astype(np.float32), rng.normal(size=(n, OBS)).astype(np.float32),
                           np.zeros(n, np.float32), np.zeros(n, np.int64), np.zeros(n, np.int64), np.arange(n))


def _wait(pred, timeout: float = 20.0) -> bool:
    """Poll ``pred`` until true or timeout (the update thread has no event per update)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def _wait_idle(trainer: Trainer) -> None:
    """Wait until the update loop has made a whole pass after this call and found nothing to do.

    The first pass counted may have begun before the call; the second began after it.
    """
    start = trainer.idle_passes
    assert _wait(lambda: trainer.idle_passes >= start + 2), "the update loop never went idle"


def _cfg(tmp_path: Path, **kw) -> TrainerConfig:
    base = dict(run_dir=str(tmp_path / "run"), task=TASK, min_buffer_size=64, checkpoint_every_s=0.0,
                weights_every_updates=50, log_every_updates=10, replay_capacity=10_000)
    base.update(kw)
    return TrainerConfig(**base)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="algorithm"):
        TrainerConfig(algorithm="ppo")
    with pytest.raises(ValueError, match="updates_per_step"):
        TrainerConfig(updates_per_step=-1)
    with pytest.raises(ValueError, match="task"):
        TrainerConfig(task="fly")
    with pytest.raises(ValueError, match="action_limit"):
        TrainerConfig(action_limit=(1.0, 2.0))
    with pytest.raises(ValueError, match="run_dir"):
        TrainerConfig(run_dir="")
    with pytest.raises(ValueError, match="replay_eviction"):
        TrainerConfig(replay_eviction="lifo")


def test_the_trainer_s_buffer_evicts_as_configured_and_a_resumed_one_as_its_file_says(tmp_path: Path) -> None:
    """``replay_eviction`` reaches the buffer (default ``random``); a run resumed from its checkpoint keeps the
    file's eviction (a buffer's rows were chosen by it), whatever the resumed configuration says."""
    trainer = Trainer(_cfg(tmp_path, replay_eviction="random", replay_capacity=100))
    trainer.start()
    trainer.add_transitions(_batch(150))
    assert _wait(lambda: trainer.updates == 150)
    assert trainer.buffer.eviction == "random" and len(trainer.buffer) == 100
    trainer.save_checkpoint()
    trainer.stop(final_checkpoint=False)
    resumed = Trainer(_cfg(tmp_path, resume=True, replay_eviction="oldest"))
    try:
        assert resumed.buffer.eviction == "random" and len(resumed.buffer) == 100
    finally:
        resumed.close()
    for kw, eviction in (({}, "random"), ({"replay_eviction": "oldest"}, "oldest")):
        other = Trainer(_cfg(tmp_path / f"other_{eviction}", **kw))
        try:
            assert other.buffer.eviction == eviction
        finally:
            other.close()


@pytest.mark.parametrize("algorithm", ["naf", "linear_naf", "ddpg"])
def test_the_trainer_builds_the_configured_algorithm(tmp_path: Path, algorithm: str) -> None:
    """``algorithm: linear_naf`` trains Linear-NAF (until stop 28 the trainer built a NAFAgent for it: the
    config object it passed names no variant), and its checkpoints say so."""
    from async_naf.learning.agents.naf import checkpoint_algorithm

    trainer = Trainer(_cfg(tmp_path, algorithm=algorithm))
    assert type(trainer.agent).algorithm == algorithm
    info = trainer.save_checkpoint()
    assert checkpoint_algorithm(info.agent) == algorithm


def test_updates_run_in_their_own_thread_at_the_configured_ratio(tmp_path: Path) -> None:
    threads: set[str] = set()
    weights: list[int] = []

    def on_weights(data: bytes, updates: int) -> None:
        threads.add(threading.current_thread().name)
        weights.append(updates)

    trainer = Trainer(_cfg(tmp_path, updates_per_step=2.0), on_weights=on_weights)
    trainer.start()
    try:
        trainer.add_transitions(_batch(32))  # below min_buffer_size: no learning yet
        assert _wait(lambda: weights == [0], 5)  # the starting weights are published once
        assert trainer.updates == 0
        trainer.add_transitions(_batch(68, seed=1))  # 100 env steps -> at most 200 updates
        assert _wait(lambda: trainer.updates == 200)
        _wait_idle(trainer)  # the thread must now be idle: the ratio caps it
        assert trainer.updates == 200 and trainer.env_steps == 100 and len(trainer.buffer) == 100
        assert threads == {"trainer-updates"}
        assert weights[:5] == [0, 50, 100, 150, 200]
        assert np.isfinite(trainer.stats()["train_loss"])
    finally:
        trainer.stop(final_checkpoint=False)


def test_pause_stops_updates_but_keeps_buffering(tmp_path: Path) -> None:
    trainer = Trainer(_cfg(tmp_path))
    trainer.start()
    try:
        trainer.set_paused(True)
        trainer.add_transitions(_batch(200))
        _wait_idle(trainer)
        assert trainer.updates == 0 and len(trainer.buffer) == 200 and trainer.paused
        trainer.set_paused(False)
        assert _wait(lambda: trainer.updates == 200)
    finally:
        trainer.stop(final_checkpoint=False)


def test_a_pause_returns_after_the_update_under_way(tmp_path: Path, monkeypatch) -> None:
    """An update that had passed the pause check landed after the pause and after the checkpoint the run then
    evaluated: the run ended with other weights than the evaluated ones (updates 638,512 against 638,511). The
    pause now waits for it, and the weights do not change after it."""
    trainer = Trainer(_cfg(tmp_path))
    entered, release = threading.Event(), threading.Event()
    real_update = trainer.agent.update

    def held_update(*args, **kwargs):  # the 11th update stops inside until released
        if trainer.agent.update_count == 10:
            entered.set()
            assert release.wait(20), "never released"
        return real_update(*args, **kwargs)

    monkeypatch.setattr(trainer.agent, "update", held_update)
    trainer.start()
    paused = threading.Event()
    pauser = threading.Thread(target=lambda: (trainer.set_paused(True), paused.set()))
    try:
        trainer.add_transitions(_batch(200))
        assert entered.wait(20), "the 11th update never began"
        pauser.start()
        assert not paused.wait(0.3), "the pause returned while an update was under way"
        release.set()
        assert paused.wait(20)
        at_pause = trainer.agent.update_count
        assert at_pause == 11
        _wait_idle(trainer)
        assert trainer.agent.update_count == at_pause and trainer.updates == at_pause
    finally:
        release.set()
        pauser.join(20)
        trainer.stop(final_checkpoint=False)


def test_invalid_batches_are_rejected_and_counted(tmp_path: Path) -> None:
    trainer = Trainer(_cfg(tmp_path))
    bad = _batch(10)
    bad.obs[3, 4] = np.nan
    with pytest.raises(ValueError):
        trainer.add_transitions(bad)
    with pytest.raises(ValueError):
        trainer.add_transitions(_batch(10)._replace(obs=np.zeros((10, OBS + 1), np.float32)))
    assert trainer.rejected_batches == 2 and len(trainer.buffer) == 0 and trainer.env_steps == 0
    trainer.close()


def test_checkpoint_round_trip_and_resume(tmp_path: Path) -> None:
    from async_naf.learning.agents import Policy, load_agent
    from async_naf.learning.replay import ReplayBuffer

    cfg = _cfg(tmp_path)
    trainer = Trainer(cfg)
    trainer.start()
    trainer.add_transitions(_batch(150))
    assert _wait(lambda: trainer.updates == 150)
    trainer.record_episode(EpisodeStats(robot=1, episode=0, episode_return=-3.5, length=150, success=True,
                                        env_steps=150))
    info = trainer.save_checkpoint()
    trainer.stop(final_checkpoint=False)

    assert Path(info.agent).name == "step_000000150.safetensors"
    agent = load_agent(info.agent)
    assert agent.update_count == 150
    obs = np.random.default_rng(3).normal(size=OBS).astype(np.float32)
    np.testing.assert_allclose(agent.act(obs), trainer.agent.act(obs), rtol=0, atol=0)
    buf = ReplayBuffer.load(info.buffer)
    assert len(buf) == 150
    np.testing.assert_array_equal(buf.obs[:150], trainer.buffer.obs[:150])
    weights = (Path(cfg.run_dir) / "weights" / "latest.safetensors").read_bytes()
    np.testing.assert_allclose(Policy.from_bytes(weights).act(obs), agent.act(obs), atol=1e-6)
    latest = read_latest_checkpoint(cfg.run_dir)
    assert latest is not None and (latest.updates, latest.env_steps, latest.episodes) == (150, 150, 1)

    resumed = Trainer(_cfg(tmp_path, resume=True))
    try:
        assert (resumed.updates, resumed.env_steps, resumed.episodes) == (150, 150, 1)
        assert len(resumed.buffer) == 150 and resumed.wall_s >= latest.wall_s
        np.testing.assert_allclose(resumed.agent.act(obs), agent.act(obs), atol=0)
        resumed.record_episode(EpisodeStats(0, 1, -1.0, 50, False, 200))
    finally:
        resumed.close()
    with open(Path(cfg.run_dir) / "metrics.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["wall_s", "env_steps", "updates", "robot", "episode", "episode_return", "success",
                       "demo_share", "demo_buffer_size"]
    assert [r[3:] for r in rows[1:]] == [["1", "0", "-3.5", "1", "0", "0"], ["0", "1", "-1", "0", "0", "0"]]
    assert list((Path(cfg.run_dir) / "tensorboard").glob("events.out.tfevents.*"))


def test_a_restarted_trainer_counts_its_predecessors_episodes_and_drops_re_sent_copies(tmp_path: Path) -> None:
    """Episodes recorded in metrics.csv after the last checkpoint count for the restarted trainer; statistics a
    collector re-sends because their rows were never acknowledged are recognised as copies (and a torn last
    line of a trainer killed while writing is skipped)."""
    trainer = Trainer(_cfg(tmp_path))
    trainer.record_episode(EpisodeStats(0, 0, -2.0, 10, False, 10))
    trainer.metrics.write_queued()  # as the update thread does (a checkpoint counts only what metrics.csv holds)
    trainer.save_checkpoint()
    assert trainer.record_episode(EpisodeStats(0, 1, -1.25, 10, False, 20))
    assert not trainer.record_episode(EpisodeStats(0, 1, -1.25, 10, False, 20))  # the same trainer: a copy
    trainer.close()  # (killed: no final checkpoint)
    with open(Path(tmp_path) / "run" / "metrics.csv", "a") as fh:
        fh.write("12.5,20,0,1,")  # torn
    resumed = Trainer(_cfg(tmp_path, resume=True))
    try:
        assert resumed.episodes == 2 and resumed.stats()["episodes_after_checkpoint"] == 1
        assert not resumed.record_episode(EpisodeStats(0, 1, -1.25, 10, False, 20))
        assert resumed.record_episode(EpisodeStats(0, 1, -1.5, 10, False, 20))  # another collector's episode 1
        assert resumed.record_episode(EpisodeStats(1, 1, -1.25, 10, False, 20))  # another robot's
        assert resumed.episodes == 4 and resumed.stats()["duplicate_episode_stats"] == 1
    finally:
        resumed.close()
    lines = (Path(tmp_path) / "run" / "metrics.csv").read_text().splitlines()
    assert lines[3] == "12.5,20,0,1," and [line.split(",")[3:5] for line in lines[4:]] == [["0", "1"], ["1", "1"]]


def test_the_runs_deadline_stops_a_restarted_trainer(tmp_path: Path) -> None:
    """deadline_unix is wall-clock time, not this process's: a trainer started after it (a restart late in
    the run) finishes at once with its final checkpoint; one before it keeps going (max_wall_s would not
    have stopped either: it counts from each start)."""
    late = Trainer(_cfg(tmp_path, max_wall_s=3600.0, deadline_unix=time.time() - 1.0))
    late.start()
    assert late.wait_finished(20.0) and "deadline_unix" in late.finish_reason
    late.stop()
    assert (Path(tmp_path) / "run" / "checkpoints" / "final.json").exists()
    early = Trainer(_cfg(tmp_path / "b", max_wall_s=3600.0, deadline_unix=time.time() + 3600.0))
    early.start()
    try:
        assert _wait(lambda: early.idle_passes > 2) and not early.finished
    finally:
        early.stop(final_checkpoint=False)
    with pytest.raises(ValueError):
        TrainerConfig(run_dir=str(tmp_path), deadline_unix=-5.0)


def test_resume_from_missing_checkpoint_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no checkpoint"):
        Trainer(_cfg(tmp_path, resume_from=str(tmp_path / "nothing")))


def test_resume_rejects_a_corrupt_pointer(tmp_path: Path) -> None:
    ckpt = tmp_path / "run" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "latest.json").write_text(json.dumps({"agent": "gone.safetensors", "updates": 1, "env_steps": 1,
                                                  "episodes": 0, "wall_s": 1.0}))
    with pytest.raises(ValueError, match="missing"):
        Trainer(_cfg(tmp_path, resume=True))


def test_stop_condition_writes_final_checkpoint(tmp_path: Path) -> None:
    from async_naf.learning.agents import Policy

    reasons: list[str] = []
    cfg = _cfg(tmp_path, max_env_steps=100, keep_checkpoints=1)
    trainer = Trainer(cfg, on_finished=reasons.append)
    trainer.start()
    trainer.add_transitions(_batch(60))
    assert not trainer.wait_finished(0.2)
    trainer.add_transitions(_batch(60, seed=2))
    assert trainer.wait_finished(20)
    assert reasons and "max_env_steps" in reasons[0]
    run = Path(cfg.run_dir)
    assert (run / "checkpoints" / "final.safetensors").exists()
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["agent"] == "final.safetensors"
    policy = Policy.from_bytes((run / "weights" / "final.safetensors").read_bytes())
    assert policy.obs_dim == OBS and policy.act_dim == ACT
    trainer.stop()  # idempotent after finishing


def test_periodic_checkpoints_are_pruned(tmp_path: Path) -> None:
    trainer = Trainer(_cfg(tmp_path, keep_checkpoints=2))
    for _ in range(4):
        trainer.updates += 1  # distinct names without running updates
        trainer.save_checkpoint()
    names = sorted(p.name for p in (Path(trainer.config.run_dir) / "checkpoints").glob("step_*.safetensors"))
    assert names == ["step_000000003.safetensors", "step_000000004.safetensors"]
    trainer.close()
    # a restarted (or resumed) trainer prunes its predecessors' checkpoints too: each process kept only its own
    # list, and the files of every earlier one stayed for ever
    resumed = Trainer(_cfg(tmp_path, keep_checkpoints=2, resume=True))
    stems = []
    for _ in range(2):
        resumed.updates += 11  # (the agent's own count restarts this test's fake counter: distinct names)
        stems.append(f"step_{resumed.updates:09d}")
        resumed.save_checkpoint()
    ckpt = Path(resumed.config.run_dir) / "checkpoints"
    assert sorted(p.stem for p in ckpt.glob("step_*.safetensors")) == sorted(stems)
    assert sorted(p.stem for p in ckpt.glob("step_*.json")) == sorted(stems)
    assert not (ckpt / "replay_000000003.npz").exists() and not (ckpt / "replay_000000004.npz").exists()
    resumed.close()


def test_repeated_checkpoints_at_the_same_update_keep_their_files(tmp_path: Path) -> None:
    trainer = Trainer(_cfg(tmp_path, keep_checkpoints=1))
    for _ in range(3):  # e.g. ~/save_checkpoint called three times while paused
        info = trainer.save_checkpoint()
    assert Path(info.agent).exists() and read_latest_checkpoint(trainer.config.run_dir).agent == info.agent
    trainer.close()


def test_weights_request_made_while_publishing_is_not_lost(tmp_path: Path) -> None:
    """An episode that ends while the starting weights are being published asks for new weights; once
    updates have changed them they must be published (not only at the next weights_every_updates)."""
    published: list[int] = []
    second = threading.Event()
    trainer: Trainer

    def on_weights(data: bytes, updates: int) -> None:
        published.append(updates)
        if len(published) == 1:  # runs in the update thread, inside the weights publication
            trainer.record_episode(EpisodeStats(0, 0, -1.0, 64, False, 64))
            trainer.add_transitions(_batch(64))
        else:
            second.set()

    trainer = Trainer(_cfg(tmp_path, weights_every_updates=10_000), on_weights=on_weights)
    trainer.start()
    try:
        assert second.wait(20), f"the request made during the first publication was lost: {published}"
        assert published[0] == 0 and published[1] > 0
    finally:
        trainer.stop(final_checkpoint=False)


def test_buffer_is_written_outside_the_buffer_lock(tmp_path: Path, monkeypatch) -> None:
    """While a checkpoint writes the replay buffer to disk, add_transitions (the subscription) goes on."""
    trainer = Trainer(_cfg(tmp_path, min_buffer_size=10_000))
    trainer.add_transitions(_batch(100))
    real_savez = np.savez
    added = threading.Event()
    adders: list[threading.Thread] = []

    def savez_while_adding(file, **arrays):
        adders.append(threading.Thread(target=lambda: (trainer.add_transitions(_batch(5, seed=4)), added.set())))
        adders[0].start()
        ok = added.wait(10)
        real_savez(file, **arrays)
        assert ok, "add_transitions waited for the buffer file to be written"

    monkeypatch.setattr(np, "savez", savez_while_adding)
    try:
        info = trainer.save_checkpoint()
    finally:
        monkeypatch.undo()
        for adder in adders:  # after save_checkpoint: it may have held the lock the adder waits for
            adder.join(10)
        trainer.close()
    assert info.env_steps == 100 and trainer.env_steps == 105
    from async_naf.learning.replay import ReplayBuffer

    assert len(ReplayBuffer.load(info.buffer)) == 100


class _RecordingBoard:
    """Stands in for the TensorBoard SummaryWriter: remembers which thread wrote which tag."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.calls.append((threading.current_thread().name, tag))

    def close(self) -> None:
        pass


def _metric_rows(cfg: TrainerConfig) -> list[list[str]]:
    with open(Path(cfg.run_dir) / "metrics.csv", newline="") as f:
        return list(csv.reader(f))


def test_episode_rows_are_written_by_the_update_thread(tmp_path: Path) -> None:
    """record_episode (a subscription callback) only queues; the update thread writes metrics.csv and
    TensorBoard soon after, flushed; close() writes what is still queued."""
    cfg = _cfg(tmp_path)
    trainer = Trainer(cfg)
    board = _RecordingBoard()
    trainer.metrics._tb = board
    trainer.record_episode(EpisodeStats(0, 0, -2.0, 10, False, 10))
    assert trainer.episodes == 1
    assert len(_metric_rows(cfg)) == 1 and board.calls == []  # nothing written in the caller's thread
    trainer.start()
    try:
        assert _wait(lambda: len(_metric_rows(cfg)) == 2, 10), "row not written by the update thread"
        trainer.record_episode(EpisodeStats(1, 0, 3.0, 12, True, 12))
        assert _wait(lambda: len(_metric_rows(cfg)) == 3, 10)
        assert {thread for thread, tag in board.calls if tag.startswith("episode/")} == {"trainer-updates"}
    finally:
        trainer.stop(final_checkpoint=False)
    assert [r[3:7] for r in _metric_rows(cfg)[1:]] == [["0", "0", "-2", "0"], ["1", "0", "3", "1"]]


def test_an_acknowledgement_writes_the_episode_rows_queued_before_it(tmp_path: Path) -> None:
    """A collector takes the acknowledgement of its statistics' numbers as their receipt
    (async_naf.collecting.loop), so the rows queued when an acknowledgement is taken are in metrics.csv,
    flushed, before it is returned: a trainer killed right after publishing it (its update thread busy with
    a checkpoint, so nothing written there) loses none of them."""
    cfg = _cfg(tmp_path)
    trainer = Trainer(cfg, instance_id=3)  # the update thread never started: it writes nothing
    try:
        assert trainer.add_transitions(_batch(10)._replace(session=5, first=0)) == 10
        trainer.record_episode(EpisodeStats(0, 0, -2.0, 10, False, 10, session=5, seq=1))
        assert len(_metric_rows(cfg)) == 1 and trainer.metrics.queued == 1  # queued only
        ack = trainer.ack()
        assert ack.entries == {(0, 5): (0, 10)} and ack.stats == {(0, 5): 1}
        assert [r[3:7] for r in _metric_rows(cfg)[1:]] == [["0", "0", "-2", "0"]]
        assert trainer.metrics.queued == 0 and trainer.metrics.rows_written == 1
        assert not trainer.record_episode(EpisodeStats(0, 0, -2.0, 10, False, 10, session=5, seq=1))  # a copy
        assert trainer.record_episode(EpisodeStats(0, 1, -1.0, 10, False, 20, session=5, seq=2, base=1))
        assert trainer.ack().stats == {(0, 5): 2}
    finally:
        trainer.close()
    # closed: nothing more is written, so nothing more is recorded or acknowledged
    assert not trainer.record_episode(EpisodeStats(0, 2, -1.0, 10, False, 30, session=5, seq=3, base=2))
    assert trainer.ack().stats == {(0, 5): 2} and trainer.metrics.unwritten_episode_rows == 1


def test_an_episode_recorded_while_the_metrics_close_is_written_or_not_acknowledged(tmp_path: Path) -> None:
    """A reviewer's interleaving: close() had written the queued rows, an episode arrived, the trainer saw the
    file still open and counted its number as held, then close() closed the file: acknowledged, never written.
    Now close() refuses rows from its start, and a refused one is not held."""
    import threading

    cfg = _cfg(tmp_path)
    trainer = Trainer(cfg, instance_id=4)
    metrics = trainer.metrics
    recorded: list[bool] = []
    original = metrics.write_queued

    def write_then_an_episode() -> int:  # close()'s write_queued, then an episode before the file is closed
        n = original()
        if not recorded:
            recorded.append(trainer.record_episode(EpisodeStats(0, 0, -1.0, 10, False, 10, session=5, seq=1)))
        return n

    metrics.write_queued = write_then_an_episode  # type: ignore[method-assign]
    closer = threading.Thread(target=trainer.close)
    closer.start()
    closer.join(30)
    assert recorded == [False] and trainer.ack().stats == {}
    assert metrics.unwritten_episode_rows == 1 and len(_metric_rows(cfg)) == 1  # the header alone


def test_a_checkpoint_counts_the_episodes_metrics_csv_holds(tmp_path: Path) -> None:
    """An episode still queued when a checkpoint is taken is not in it: a trainer killed before writing the
    row and resumed from it would otherwise count the episode, and count it again when its collector (never
    acknowledged) sends it once more."""
    cfg = _cfg(tmp_path)
    trainer = Trainer(cfg)  # the update thread never started: the row stays queued
    try:
        trainer.record_episode(EpisodeStats(0, 0, -2.0, 10, False, 10))
        assert trainer.episodes == 1 and trainer.save_checkpoint().episodes == 0
        trainer.metrics.write_queued()
        assert trainer.save_checkpoint().episodes == 1 and len(_metric_rows(cfg)) == 2
    finally:
        trainer.close()


def test_close_writes_queued_episode_rows(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    trainer = Trainer(cfg)  # never started: only close() can write the rows
    trainer.record_episode(EpisodeStats(2, 5, 1.5, 20, True, 100))
    assert len(_metric_rows(cfg)) == 1
    trainer.close()
    assert [r[3:7] for r in _metric_rows(cfg)[1:]] == [["2", "5", "1.5", "1"]]
    trainer.record_episode(EpisodeStats(2, 6, 1.0, 20, True, 120))
    trainer.close()  # after close: dropped and counted, not written
    assert trainer.metrics.unwritten_episode_rows == 1 and len(_metric_rows(cfg)) == 2


def test_stop_after_update_thread_failure_does_not_raise(tmp_path: Path) -> None:
    """An update that leaves NaN weights kills the update thread; stop() must then neither raise (the final
    checkpoint would refuse the NaN weights) nor leave the metrics open."""
    cfg = _cfg(tmp_path)
    trainer = Trainer(cfg)

    def broken_update(batch):
        with torch.no_grad():
            trainer.agent.theta[0, 0] = float("nan")
        raise FloatingPointError("update produced NaN")

    trainer.agent.update = broken_update
    trainer.start()
    trainer.add_transitions(_batch(100))
    assert _wait(lambda: trainer.failure != "", 10)
    trainer.record_episode(EpisodeStats(0, 0, -1.0, 100, False, 100))
    trainer.stop(final_checkpoint=True)
    assert "FloatingPointError" in trainer.failure and not trainer.finished
    assert not (Path(cfg.run_dir) / "checkpoints" / "final.safetensors").exists()
    assert trainer.metrics.closed and len(_metric_rows(cfg)) == 2  # closed, queued row written


def test_checkpoints_record_the_rows_held_per_collector_session_and_a_resumed_trainer_acknowledges_them(
        tmp_path: Path) -> None:
    """Issue 13: the ledger (de-duplication by session and row) is saved with the buffer; a trainer resumed from
    the checkpoint starts from it, so copies re-sent by a collector are dropped and its acknowledgement says
    what it restored."""
    trainer = Trainer(_cfg(tmp_path), instance_id=11)
    assert trainer.add_transitions(_batch(40)._replace(session=5, first=0)) == 40
    assert trainer.add_transitions(_batch(40)._replace(session=5, first=20)) == 20  # 20 copies dropped
    trainer.save_checkpoint()
    assert trainer.add_transitions(_batch(10, seed=3)._replace(session=5, first=60)) == 10
    assert trainer.ack().entries == {(0, 5): (0, 70)} and trainer.stats()["duplicate_transitions"] == 20
    trainer.close()  # killed: no final checkpoint
    resumed = Trainer(_cfg(tmp_path, resume=True), instance_id=12)
    try:
        assert resumed.env_steps == 60 and len(resumed.buffer) == 60
        assert resumed.ack().trainer == 12 and resumed.ack().entries == {(0, 5): (60, 60)}
        assert resumed.add_transitions(_batch(10, seed=3)._replace(session=5, first=50)) == 0
        assert resumed.add_transitions(_batch(10, seed=3)._replace(session=5, first=60)) == 10
        assert resumed.ack().entries == {(0, 5): (60, 70)}
    finally:
        resumed.close()


def test_a_batch_held_back_goes_into_the_buffer_once_due_even_if_nothing_more_comes(tmp_path: Path) -> None:
    """A resumed trainer gets a collector's newer rows before the ones in front of them (still held by the
    collector: ``base``): they wait, out of the buffer and the acknowledgement. A collector that sends nothing
    more (its rows lost again on the way) still gets them acknowledged: the trainer's acknowledgements hand the
    held batch over after OUT_OF_ORDER_WAIT_S, with the gap."""
    from async_naf.learning import receipts

    trainer = Trainer(_cfg(tmp_path), instance_id=11)
    assert trainer.add_transitions(_batch(20)._replace(session=5, first=0)) == 20
    trainer.save_checkpoint()
    trainer.close()
    resumed = Trainer(_cfg(tmp_path, resume=True), instance_id=12)
    try:
        assert resumed.add_transitions(_batch(10, seed=3)._replace(session=5, first=40, base=20)) == 0
        assert resumed.ack().entries == {(0, 5): (20, 20)} and len(resumed.buffer) == 20
        assert resumed.stats()["out_of_order_transitions"] == 10
        # the rows in front of it come: both in, in order
        assert resumed.add_transitions(_batch(20, seed=4)._replace(session=5, first=20, base=20)) == 30
        assert resumed.ack().entries == {(0, 5): (20, 50)} and resumed.env_steps == 50
        # another collector's rows, 0..60 acknowledged by the trainer before (gone for good), 60..70 missing
        assert resumed.add_transitions(_batch(10, seed=5)._replace(session=6, first=70, base=60)) == 0
        assert resumed.ack().entries == {(0, 5): (20, 50)}
        # what the buffer would refuse is refused before it is held back: nothing held, nothing counted
        bad = _batch(10, seed=6)._replace(session=7, first=40, base=30)
        bad.reward[3] = np.nan
        with pytest.raises(ValueError):
            resumed.add_transitions(bad)
        assert resumed.rejected_batches == 1 and resumed.stats()["out_of_order_transitions"] == 20
        original = receipts.OUT_OF_ORDER_WAIT_S
        receipts.OUT_OF_ORDER_WAIT_S = 0.0  # the wait over, and nothing more comes
        try:
            assert resumed.ack().entries == {(0, 5): (20, 50), (0, 6): (0, 80)}
        finally:
            receipts.OUT_OF_ORDER_WAIT_S = original
        assert resumed.env_steps == 60 and resumed.stats()["gap_transitions"] == 70
    finally:
        resumed.close()


def test_resume_falls_back_to_an_older_checkpoint_record(tmp_path: Path) -> None:
    """latest.json damaged (not by the trainer: every file is replaced atomically): the newest usable
    step_*.json is taken; no usable record at all stays an error."""
    trainer = Trainer(_cfg(tmp_path, keep_checkpoints=3))
    trainer.add_transitions(_batch(30))
    first = trainer.save_checkpoint()
    trainer.close()
    latest = tmp_path / "run" / "checkpoints" / "latest.json"
    good = latest.read_text()
    # a record torn, or with JSON's Infinity in a counter (int() raises OverflowError, not ValueError)
    for damaged in ("{ half written", json.dumps({**json.loads(good), "updates": float("inf")})):
        latest.write_text(damaged)
        resumed = Trainer(_cfg(tmp_path, resume=True))
        try:
            assert resumed.env_steps == first.env_steps == 30 and len(resumed.buffer) == 30
        finally:
            resumed.close()
    Path(first.agent).unlink()
    with pytest.raises(ValueError, match="no usable checkpoint"):
        Trainer(_cfg(tmp_path, resume=True))
