"""Demonstrations (async_naf.learning.demos, async_naf.run.demos): datasets checked against the run, update
batches that mix demonstration and online rows at the ratio, the trainer's demo buffer through a checkpoint
and a resume, and bags converted for ``--demos``."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from async_naf.learning.demos import DemoMixer, demo_rows, load_demos, read_dataset
from async_naf.learning.replay import Batch, ReplayBuffer, write_snapshot
from async_naf.wire import layouts

torch.set_num_threads(1)
OBS, ACT = 23, 7  # reach


def _rows(n: int, reward: float, seed: int = 0, obs: int = OBS, act: int = ACT) -> Batch:
    rng = np.random.default_rng(seed)
    return Batch(rng.normal(size=(n, obs)).astype(np.float32), rng.uniform(-0.5, 0.5, (n, act)).astype(np.float32),
                 np.full(n, reward, np.float32), rng.normal(size=(n, obs)).astype(np.float32), np.zeros(n, np.float32))


def _dataset(path: Path, rows: Batch, **manifest) -> Path:
    """A dataset directory as `async-naf bag convert` writes it (rows written unchecked: bad rows stay in)."""
    path.mkdir(parents=True)
    n, obs, act = rows.obs.shape[0], rows.obs.shape[1], rows.action.shape[1]
    meta = {"format": "async_naf.replay", "version": 1, "capacity": n, "obs_dim": obs, "act_dim": act, "size": n,
            "total_added": n, "seed": 0, "rng_state": np.random.default_rng(0).bit_generator.state}
    write_snapshot(path / "replay.npz", (meta, rows))
    doc = {"format": "async_naf.dataset", "version": 1, "task": "reach", "method": "exact",
           "layouts": [layouts.POLICY_STEP, layouts.GOAL], "replay_format": "async_naf.replay", "episodes": 2,
           "transitions": n, "obs_dim": obs, "act_dim": act, "bag_sha256": "0" * 64, **manifest}
    (path / "manifest.json").write_text(json.dumps(doc))
    return path


def _buffer(rows: Batch, seed: int = 0) -> ReplayBuffer:
    buf = ReplayBuffer(max(1, rows.obs.shape[0]), OBS, ACT, seed=seed)
    buf.add_batch(rows)
    return buf


# ------------------------------------------------------------------------------------------- mixing
def test_every_batch_mixes_exactly_the_ratio_after_an_all_demo_warm_up() -> None:
    demos = _buffer(_rows(200, reward=1.0, seed=1), seed=5)  # demonstration rows: reward 1, online rows: 0
    online = ReplayBuffer(1000, OBS, ACT, seed=6)
    mixer = DemoMixer(demos, ratio=0.5, batch_size=64, min_online=100)
    # warm-up: fewer than min_online online rows -> all 64 rows are demonstrations
    online.add_batch(_rows(40, reward=0.0, seed=2))
    assert mixer.counts(len(online)) == (64, 0) and mixer.ready(len(online))
    batch, n_demo = mixer.sample(online)
    assert n_demo == 64 and int(batch.reward.sum()) == 64
    online.add_batch(_rows(60, reward=0.0, seed=3))  # now 100 online rows: mixed, 32 + 32 in every batch
    for _ in range(20):
        batch, n_demo = mixer.sample(online)
        assert batch.obs.shape == (64, OBS) and n_demo == 32
        assert int(batch.reward.sum()) == 32 and np.all(batch.reward[:32] == 1.0) and np.all(batch.reward[32:] == 0.0)
    assert (mixer.demo_rows_sampled, mixer.rows_sampled) == (64 + 20 * 32, 21 * 64)
    # other ratios: round(ratio * batch), halves up
    assert [demo_rows(64, r) for r in (0.3, 0.25, 0.1, 1 / 128)] == [19, 16, 6, 1]
    odd = DemoMixer(demos, ratio=0.3, batch_size=64, min_online=100)
    assert odd.counts(100) == (19, 45) and int(odd.sample(online)[0].reward.sum()) == 19


def test_ratio_zero_and_one_and_no_demos() -> None:
    demos = _buffer(_rows(50, reward=1.0, seed=1))
    online = ReplayBuffer(1000, OBS, ACT)
    zero = DemoMixer(demos, ratio=0.0, batch_size=32, min_online=10)
    none = DemoMixer(None, ratio=0.5, batch_size=32, min_online=10)
    for mixer in (zero, none):  # online rows only: nothing to draw before min_online, as without demos
        assert not mixer.uses_demos and mixer.counts(0) == (0, 0) and not mixer.ready(9)
        with pytest.raises(ValueError, match="no batch yet"):
            mixer.sample(online)
    online.add_batch(_rows(10, reward=0.0, seed=2))
    for mixer in (zero, none):
        batch, n_demo = mixer.sample(online)
        assert n_demo == 0 and batch.reward.sum() == 0 and batch.obs.shape == (32, OBS)
    one = DemoMixer(demos, ratio=1.0, batch_size=32, min_online=10)
    batch, n_demo = one.sample(online)
    assert n_demo == 32 and batch.reward.sum() == 32 and one.counts(10**6) == (32, 0)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="ratio"):
            DemoMixer(demos, ratio=bad, batch_size=32, min_online=10)


def test_the_mixed_batches_are_the_same_for_the_same_seeds() -> None:
    def draw() -> list[np.ndarray]:
        demos, online = _buffer(_rows(100, 1.0, seed=1), seed=3), _buffer(_rows(100, 0.0, seed=2), seed=4)
        mixer = DemoMixer(demos, ratio=0.25, batch_size=16, min_online=1)
        return [mixer.sample(online)[0].obs for _ in range(3)]

    for a, b in zip(draw(), draw()):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------- datasets
def test_a_dataset_loads_with_its_bad_rows_dropped_and_counted(tmp_path: Path) -> None:
    rows = _rows(10, reward=1.0)
    rows.obs[2, 3] = np.nan
    rows.reward[5] = np.inf
    rows.terminal[7] = 0.5
    ds = _dataset(tmp_path / "ds", rows)
    batch, source = read_dataset(ds, "reach", OBS, ACT)
    assert batch.obs.shape == (7, OBS) and np.isfinite(batch.obs).all() and np.isfinite(batch.reward).all()
    assert (source.rows, source.dropped, source.episodes) == (7, 3, 2) and len(source.sha256) == 64
    buf, sources = load_demos([str(ds)], "reach", OBS, ACT)
    assert len(buf) == buf.capacity == 7 and sources == [source]


@pytest.mark.parametrize(("manifest", "match"), [
    ({"task": "door_pull"}, "task 'door_pull'"),
    ({"obs_dim": 22}, "obs/action dims"),
    ({"layouts": ["async_naf.policy_step.v2", layouts.GOAL]}, "layouts"),
    ({"format": "minari"}, "not an async_naf dataset"),
    ({"version": 7}, "version 7"),
])
def test_a_dataset_of_another_run_is_refused(tmp_path: Path, manifest: dict, match: str) -> None:
    ds = _dataset(tmp_path / "ds", _rows(5, 1.0), **manifest)
    with pytest.raises(ValueError, match=match):
        load_demos([str(ds)], "reach", OBS, ACT)


def test_unusable_datasets_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a dataset directory"):
        read_dataset(tmp_path, "reach", OBS, ACT)
    other_dims = _dataset(tmp_path / "dims", _rows(5, 1.0, obs=22), obs_dim=OBS)  # manifest lies about dims
    with pytest.raises(ValueError, match="dims"):
        read_dataset(other_dims, "reach", OBS, ACT)
    bad = _rows(3, 1.0)
    bad.action[:] = np.nan
    with pytest.raises(ValueError, match="no valid demonstration row"):
        read_dataset(_dataset(tmp_path / "nan", bad), "reach", OBS, ACT)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("{not json")
    (tmp_path / "broken" / "replay.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="manifest"):
        read_dataset(tmp_path / "broken", "reach", OBS, ACT)
    good = _dataset(tmp_path / "good", _rows(4, 1.0))
    with pytest.raises(ValueError, match="twice"):
        load_demos([str(good), str(good) + "/"], "reach", OBS, ACT)
    (good / "replay.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="not a readable replay-buffer file"):
        read_dataset(good, "reach", OBS, ACT)


# ------------------------------------------------------------------------------------------- the trainer
def _wait(pred, timeout: float = 30.0) -> bool:
    """Poll ``pred`` until true or timeout (the update thread has no event per update)."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return bool(pred())


def _trainer_cfg(tmp_path: Path, **kw):
    from async_naf.learning.config import TrainerConfig

    base = dict(run_dir=str(tmp_path / "run"), task="reach", min_buffer_size=64, checkpoint_every_s=0.0,
                weights_every_updates=50, log_every_updates=10, replay_capacity=10_000, tensorboard=False)
    base.update(kw)
    return TrainerConfig(**base)


def _transitions(n: int, seed: int) -> layouts.TransitionBatch:
    b = _rows(n, 0.0, seed=seed)
    return layouts.TransitionBatch(*b, np.zeros(n, np.int64), np.zeros(n, np.int64), np.arange(n))


def test_the_trainer_mixes_demos_checkpoints_their_source_and_resumes_with_them(tmp_path: Path) -> None:
    from async_naf.learning.trainer import Trainer

    ds = _dataset(tmp_path / "ds", _rows(300, reward=1.0, seed=9))
    cfg = _trainer_cfg(tmp_path, demos=(str(ds),), demo_ratio=0.25)
    trainer = Trainer(cfg)
    batch = trainer.agent.config.batch_size
    try:
        assert trainer.stats()["demo_buffer_size"] == 300
        trainer.start()
        trainer.add_transitions(_transitions(40, seed=1))  # < min_buffer_size (64): all-demo batches, 1 per step
        assert _wait(lambda: trainer.updates == 40)
        assert (trainer.mixer.demo_rows_sampled, trainer.mixer.rows_sampled) == (40 * batch, 40 * batch)
        trainer.add_transitions(_transitions(60, seed=2))  # 100 online rows: round(0.25 * batch) demo rows each
        assert _wait(lambda: trainer.updates == 100)
        stats = trainer.stats()
    finally:
        trainer.stop()
    assert stats["demo_rows_sampled"] == 40 * batch + 60 * demo_rows(batch, 0.25)
    assert stats["rows_sampled"] == 100 * batch and stats["demo_share"] == demo_rows(batch, 0.25) / batch
    # the agent was told which rows are demonstrations (naf.demo_bc_weight: its BC term on them)
    assert 0.0 <= stats["train_demo_bc_kept"] <= 1.0 and stats["train_demo_bc_loss"] >= 0.0
    final = json.loads((Path(cfg.run_dir) / "checkpoints" / "final.json").read_text())
    assert final["demos"][0]["path"] == str(ds) and final["demos"][0]["rows"] == 300
    assert final["demo_rows_sampled"] == stats["demo_rows_sampled"]
    # resumed without naming the demos: re-loaded from the recorded path, counters continue
    resumed = Trainer(_trainer_cfg(tmp_path, resume=True))
    try:
        assert len(resumed.demo_buffer) == 300 and resumed.mixer.ratio == 0.1  # the resumed config's (default) ratio
        assert resumed.mixer.demo_rows_sampled == stats["demo_rows_sampled"]
        assert resumed.demo_buffer.rng.bit_generator.state == final["demo_rng_state"]
    finally:
        resumed.close()
    # a dataset that changed since the checkpoint is refused
    _dataset(tmp_path / "ds2", _rows(300, reward=1.0, seed=10))
    (ds / "replay.npz").write_bytes((tmp_path / "ds2" / "replay.npz").read_bytes())
    with pytest.raises(ValueError, match="changed since"):
        Trainer(_trainer_cfg(tmp_path, resume=True))


def test_the_trainer_pretrains_on_the_demos_before_its_first_weights(tmp_path: Path) -> None:
    """demo_pretrain_updates: a fresh run takes that many demo-only updates before any weights go out, they
    clone every demonstration row (the BC filter, on by default, is for the online phase) and pull mu(x) to
    the demonstrated action, they stay outside updates_per_step, the checkpoint records them and a resumed
    run does not repeat them."""
    from async_naf.learning.trainer import Trainer

    rows = _rows(300, reward=1.0, seed=9)
    rows = rows._replace(action=np.full_like(rows.action, 0.4))  # every demonstration commands 0.4 rad/s
    ds = _dataset(tmp_path / "ds", rows)
    published: list[int] = []
    cfg = _trainer_cfg(tmp_path, demos=(str(ds),), demo_ratio=0.25, demo_pretrain_updates=300)
    assert cfg.naf.demo_bc_filter
    trainer = Trainer(cfg, on_weights=lambda data, updates: published.append(updates))
    before = trainer.agent.q_values(rows.obs[:50], rows.action[:50])["mu"]
    try:
        trainer.start()
        assert _wait(lambda: bool(published))
        assert published[0] == 300 and trainer.pretrain_updates == 300 and trainer.env_steps == 0
        assert trainer.stats()["train_demo_bc_kept"] == 1.0  # update 300's batch: every row cloned
        after = trainer.agent.q_values(rows.obs[:50], rows.action[:50])["mu"]
        trainer.add_transitions(_transitions(40, seed=1))  # 1 update per received step, as without pre-training
        assert _wait(lambda: trainer.updates == 340)
        assert not _wait(lambda: trainer.updates > 340, timeout=0.3)
    finally:
        trainer.stop()
    assert np.abs(after - 0.4).mean() < 0.5 * np.abs(before - 0.4).mean()
    final = json.loads((Path(cfg.run_dir) / "checkpoints" / "final.json").read_text())
    assert final["pretrain_updates"] == 300
    assert not list((Path(cfg.run_dir) / "checkpoints").glob("step_*"))  # no periodic checkpoints, none after it
    resumed = Trainer(_trainer_cfg(tmp_path, resume=True, demo_pretrain_updates=300))
    try:
        resumed.start()
        assert _wait(lambda: resumed.idle_passes > 0)
        assert resumed.updates == 340 and resumed.pretrain_updates == 300
        resumed.add_transitions(_transitions(5, seed=3))
        assert _wait(lambda: resumed.updates == 345)
    finally:
        resumed.stop()


def test_with_periodic_checkpoints_the_pre_trained_policy_gets_one(tmp_path: Path) -> None:
    """checkpoint_every_s > 0: the end of pre-training writes a checkpoint (async-naf train evaluates every
    checkpoint: eval.csv then shows what the demonstrations gave before any online update)."""
    from async_naf.learning.trainer import Trainer

    ds = _dataset(tmp_path / "ds", _rows(300, reward=1.0, seed=9))
    cfg = _trainer_cfg(tmp_path, demos=(str(ds),), demo_ratio=0.25, demo_pretrain_updates=200,
                       checkpoint_every_s=3600.0)
    trainer = Trainer(cfg)
    ckpt = Path(cfg.run_dir) / "checkpoints"
    try:
        trainer.start()
        assert _wait(lambda: (ckpt / "latest.json").exists())
        latest = json.loads((ckpt / "latest.json").read_text())
        assert latest["agent"] == "pretrained.safetensors" and not list(ckpt.glob("step_*.json"))
        assert latest["updates"] == 200 and latest["pretrain_updates"] == 200 and latest["env_steps"] == 0
        assert not trainer.paused  # pause_after_pretrain off: online updates go on
    finally:
        trainer.stop()


def test_pause_after_pretrain_holds_the_pre_trained_weights_until_resumed(tmp_path: Path) -> None:
    """pause_after_pretrain (async-naf train --stop-at-success): the trainer pauses when pre-training ends,
    before writing checkpoints/pretrained, and makes no update on the robots' data until resumed; the
    pre-trained weights are published meanwhile."""
    from async_naf.learning.trainer import Trainer

    ds = _dataset(tmp_path / "ds", _rows(300, reward=1.0, seed=9))
    cfg = _trainer_cfg(tmp_path, demos=(str(ds),), demo_ratio=0.25, demo_pretrain_updates=150,
                       checkpoint_every_s=3600.0, pause_after_pretrain=True)
    published: list[int] = []
    trainer = Trainer(cfg, on_weights=lambda data, updates: published.append(updates))
    ckpt = Path(cfg.run_dir) / "checkpoints"
    try:
        trainer.start()
        assert _wait(lambda: (ckpt / "pretrained.json").exists())
        assert trainer.paused and trainer.updates == 150
        trainer.add_transitions(_transitions(200, seed=1))
        assert _wait(lambda: published == [150])  # the pre-trained weights go out while paused
        assert not _wait(lambda: trainer.updates > 150, timeout=0.5)  # data waiting, no update
        trainer.set_paused(False)
        assert _wait(lambda: trainer.updates > 150)
    finally:
        trainer.stop()


def test_a_run_paused_during_pre_training_still_ends_at_its_time_limit(tmp_path: Path) -> None:
    """Paused while pre-training (an evaluation's pause), the loop waited for a resume or a stop only: a run
    whose time limit passed meanwhile never finished."""
    from async_naf.learning.trainer import Trainer

    ds = _dataset(tmp_path / "ds", _rows(300, reward=1.0, seed=9))
    trainer = Trainer(_trainer_cfg(tmp_path, demos=(str(ds),), demo_pretrain_updates=100_000, max_wall_s=1.0))
    try:
        trainer.set_paused(True)
        trainer.start()
        assert _wait(lambda: trainer.finished, timeout=20), "the run did not end at its time limit while paused"
        assert "max_wall_s" in trainer.finish_reason and trainer.updates < 100_000
    finally:
        trainer.stop()


def test_a_trainer_restarted_during_pre_training_makes_the_rest(tmp_path: Path) -> None:
    """Stopped after 100 of 300 pre-training updates: the checkpoint records 100, a resumed trainer makes the
    other 200 (and no more), a run that went online never goes back to it, and without demos it is skipped."""
    from async_naf.learning.trainer import Trainer

    ds = _dataset(tmp_path / "ds", _rows(300, reward=1.0, seed=9))
    cfg = _trainer_cfg(tmp_path, demos=(str(ds),), demo_pretrain_updates=300)
    first = Trainer(cfg)
    once = first._update_once

    def counted(demos_only: bool = False) -> None:
        once(demos_only)
        if first.updates == 100:
            first._stop.set()  # as a shutdown would, mid-phase

    first._update_once = counted  # type: ignore[method-assign]
    first._pretrain()
    assert first.updates == first.pretrain_updates == 100
    first.save_checkpoint("final")
    first.close()
    resumed = Trainer(_trainer_cfg(tmp_path, resume=True, demo_pretrain_updates=300))
    assert resumed.pretrain_updates == 100
    resumed._pretrain()
    assert resumed.updates == resumed.pretrain_updates == 300
    resumed._pretrain()  # done: nothing more
    assert resumed.updates == 300
    resumed.pretrain_updates = 250  # a run whose online updates went past its pre-training: never again
    resumed._pretrain()
    assert resumed.updates == 300
    resumed.close()
    fresh = Trainer(_trainer_cfg(tmp_path / "none", demo_pretrain_updates=300))  # no demos: skipped
    fresh._pretrain()
    assert fresh.updates == 0
    fresh.close()


def test_the_trainer_refuses_demos_of_another_task(tmp_path: Path) -> None:
    from async_naf.learning.trainer import Trainer

    ds = _dataset(tmp_path / "ds", _rows(5, 1.0, obs=22), task="door_pull", obs_dim=22)
    with pytest.raises(ValueError, match="task 'door_pull'"):
        Trainer(_trainer_cfg(tmp_path, demos=(str(ds),)))


def test_trainer_config_validates_the_demo_fields() -> None:
    from async_naf.learning.config import TrainerConfig

    for bad in ({"demo_ratio": 1.5}, {"demo_ratio": -0.1}, {"demos": ("",)}, {"demo_pretrain_updates": -1}):
        with pytest.raises(ValueError, match="demo"):
            TrainerConfig(**bad)
    assert TrainerConfig(demos=["a", "b"]).demos == ("a", "b")


# ------------------------------------------------------------------------------------------- --demos BAG
def test_a_bag_given_as_demos_is_converted_into_the_run_directory_once(tmp_path: Path, capsys) -> None:
    from test_recording import _write_policy_bag

    from async_naf.run.demos import prepare_demos

    bag = tmp_path / "bag"
    _write_policy_bag(bag)
    run = tmp_path / "run"
    paths = prepare_demos([str(bag)], "reach", run)
    assert paths == [str(run / "demos" / "bag")]
    manifest = json.loads((run / "demos" / "bag" / "manifest.json").read_text())
    assert manifest["task"] == "reach" and manifest["transitions"] > 0
    mtime = (run / "demos" / "bag" / "replay.npz").stat().st_mtime_ns
    assert prepare_demos([str(bag)], "reach", run) == paths  # a resumed run: the dataset is re-used
    assert (run / "demos" / "bag" / "replay.npz").stat().st_mtime_ns == mtime
    assert "converted before" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no robot"):  # a reach bag cannot feed door_pull: before any node
        prepare_demos([str(bag)], "door_pull", tmp_path / "run2")
    with pytest.raises(ValueError, match="neither a dataset"):
        prepare_demos([str(tmp_path / "run")], "reach", tmp_path / "run3")
    with pytest.raises(ValueError, match="no such"):
        prepare_demos([str(tmp_path / "nothing")], "reach", tmp_path / "run3")
    with pytest.raises(ValueError, match="task 'reach'"):  # a dataset of reach for a door_pull run
        prepare_demos(paths, "door_pull", tmp_path / "run4")


def test_train_with_demos_that_do_not_fit_leaves_no_run_directory(tmp_path: Path, capsys) -> None:
    """async-naf train --demos refuses before any node starts; the run directory it had made stayed behind."""
    from async_naf.run.cli import main

    run = tmp_path / "run"
    assert main(["train", "--task", "reach", "--demos", str(tmp_path / "nothing"), "--run-dir", str(run)]) == 2
    assert "no such dataset or bag" in capsys.readouterr().err and not run.exists()
    run.mkdir()  # a directory the user made is theirs: kept
    assert main(["train", "--task", "reach", "--demos", str(tmp_path / "nothing"), "--run-dir", str(run)]) == 2
    assert run.is_dir()


def test_metrics_csv_has_the_demo_columns_and_an_older_file_keeps_its_own(tmp_path: Path) -> None:
    import csv

    from async_naf.learning.metrics import MetricsLog
    from async_naf.wire.layouts import EpisodeStats

    new, old = tmp_path / "new", tmp_path / "old"
    new.mkdir()
    old.mkdir()
    (old / "metrics.csv").write_text("wall_s,env_steps,updates,robot,episode,episode_return,success\n"
                                     "1.000,10,5,0,0,-1,0\n")
    for d in (new, old):
        log = MetricsLog(d, tensorboard=False)
        log.queue_episode(2.0, 20, 10, EpisodeStats(1, 3, 2.5, 10, True, 20), (0.5, 300))
        log.close()
    with open(new / "metrics.csv") as f:
        assert list(csv.reader(f))[1][3:] == ["1", "3", "2.5", "1", "0.5", "300"]
    with open(old / "metrics.csv") as f:
        rows = list(csv.reader(f))
    assert [len(r) for r in rows] == [7, 7, 7] and rows[2][3:] == ["1", "3", "2.5", "1"]


# ------------------------------------------------------------------------------------------- end to end
@pytest.mark.ros
@pytest.mark.e2e
@pytest.mark.slow
def test_a_short_run_trains_on_the_demos_of_a_recorded_run(tmp_path: Path, ros_env: dict[str, str]) -> None:
    """Record a short reach run (--record), give its bag as --demos to a second short run: the bag is converted
    into RUN_DIR/demos, the trainer's update batches hold demo rows (all of them before the online buffer
    holds min_buffer_size rows, half of them after), metrics.csv and summary.json say so, and the final
    policy is evaluated greedily."""
    import csv
    import math
    import subprocess
    import sys

    def train(run: Path, *extra: str) -> str:
        out = subprocess.run([sys.executable, "-m", "async_naf.run.cli", "train", "--task", "reach", "--workers",
                              "1", "--minutes", "3", "--eval-every", "0", "--run-dir", str(run), "--quiet", *extra],
                             env=ros_env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stderr

    said = train(tmp_path / "rec", "--steps", "100", "--eval-episodes", "1", "--record")
    assert json.loads((tmp_path / "rec" / "summary.json").read_text())["bag"] == str(tmp_path / "rec" / "bag")
    assert "bag/" in said.split("results in")[-1]
    run = tmp_path / "demos_run"
    min_online = 100
    # --realtime: the robot steps at 20 Hz, as a real arm would, so the trainer's first updates come while the
    # online buffer is still below min_online (lockstep, a composed robot can deliver 100 steps before the
    # trainer's first update: no all-demo batch, the race CI saw)
    train(run, "--steps", "200", "--realtime", "--eval-episodes", "2", "--demos", str(tmp_path / "rec" / "bag"),
          "--demo-ratio", "0.5", "--set", f"trainer.min_buffer_size={min_online}")
    summary = json.loads((run / "summary.json").read_text())
    demos = summary["demos"]
    manifest = json.loads((run / "demos" / "bag" / "manifest.json").read_text())
    assert demos["datasets"] == [str(run / "demos" / "bag")] and demos["rows"] == manifest["transitions"] > 0
    assert summary["env_steps"] >= 200 and summary["updates"] > 0
    # every update drew a batch of 64: all demos while the online buffer held < 100 rows, then 32 of 64
    assert demos["rows_sampled"] == 64 * summary["updates"]
    assert 32 * summary["updates"] < demos["demo_rows_sampled"] < demos["rows_sampled"]
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(int(r["demo_buffer_size"]) == demos["rows"] for r in rows)
    assert max(float(r["demo_share"]) for r in rows) > 0.0
    # the greedy evaluation of the final policy was measured
    assert summary["eval_episodes"] == 2 and math.isfinite(summary["eval_mean_return"])
    assert summary["eval_success_rate"] is not None
    # the recorded run resumed with --record: a bag of its own, which summary.json and the closing lines name
    said = train(tmp_path / "rec", "--steps", "150", "--eval-episodes", "1", "--record", "--resume")
    assert json.loads((tmp_path / "rec" / "summary.json").read_text())["bag"] == str(tmp_path / "rec" / "bag_2")
    assert "bag_2/" in said.split("results in")[-1]


def test_bag_convert_keeps_only_successful_episodes_when_asked(tmp_path: Path) -> None:
    """Three reach episodes of 4 transitions; only episode 1 ends at its target: --successful-only keeps its 4
    rows, --max-episodes cuts in order, and the manifest records the selection."""
    from bag_msgs import array_bytes
    from test_recording import F64, _goal_bytes, _store, _synthetic_steps

    from async_naf.recording.writer import BagWriter, TopicSpec, qos_dict
    from async_naf.run.convert import convert_exact, write_dataset

    store, bag = _store(), tmp_path / "bag"
    writer = BagWriter(bag, [TopicSpec("/robot_0/task/goal", F64, qos_dict("latched")),
                             TopicSpec("/robot_0/policy/step", F64, qos_dict("stream"))])
    t = 1_000_000_000
    for episode in range(3):
        goal = np.array([0.4, 0.1 * episode, 0.3])
        writer.put(0, t, _goal_bytes(store, episode, True, goal))
        steps = _synthetic_steps("reach", episode, 5, goal, seed=episode)
        if episode == 1:  # the last step at the target: success
            steps[4] = dataclasses.replace(steps[4], ee_pos=goal.copy())
        for step in steps:
            t += 1000
            writer.put(1, t, array_bytes(store, layouts.encode_policy_step(step)))
        t += 1000
    writer.close()
    everything = convert_exact(bag, "reach", {"episode_steps": 4})
    assert everything.counts["transitions"] == 12 and everything.selection == {}
    best = convert_exact(bag, "reach", {"episode_steps": 4}, successful_only=True)
    assert best.counts["transitions"] == 4 and best.episodes == 1
    assert best.selection["episodes_ended"] == 3 and best.selection["episodes_successful"] == 1
    np.testing.assert_array_equal(best.batch.obs, everything.batch.obs[4:8])
    first_two = convert_exact(bag, "reach", {"episode_steps": 4}, max_episodes=2)
    assert first_two.counts["transitions"] == 8 and first_two.episodes == 2
    out = write_dataset(best, bag, "reach", tmp_path / "demos")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["selection"]["successful_only"] is True and manifest["transitions"] == 4


def test_resuming_a_run_with_another_task_or_without_a_checkpoint_is_refused(tmp_path: Path, capsys) -> None:
    """door_pull and door_push have the same sizes: `--resume --task door_push` on a door_pull run started, and the
    run's parameters (which the bag conversion reads for the task) then named door_push for the door_pull bag."""
    import json

    from async_naf.run.cli import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text("wall_s\n")
    # a run directory without a checkpoint: --resume started a new run from scratch without a word
    assert main(["train", "--task", "door_pull", "--resume", "--run-dir", str(run)]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "latest.json").write_text("{}")
    (run / "graph.json").write_text(json.dumps([{"fqn": "/trainer", "parameters": {"task": "door_pull"}},
                                                {"fqn": "/robot_0/collector", "parameters": {"task": "door_pull"}}]))
    assert main(["train", "--task", "door_push", "--resume", "--run-dir", str(run)]) == 2
    assert "was trained on task 'door_pull'" in capsys.readouterr().err
    # --resume --overwrite: the one continued and the other was ignored
    assert main(["train", "--task", "door_pull", "--resume", "--overwrite", "--run-dir", str(run)]) == 2
    assert "choose one" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "graph.json", "metrics.csv"]  # nothing touched


def test_a_resumed_run_keeps_its_demonstration_ratio_and_refuses_changed_demonstrations(tmp_path: Path,
                                                                                         capsys) -> None:
    """--resume without --demos: the trainer re-loads the demonstrations its checkpoint records. The run's ratio
    is kept (it fell back to the default 0.1 without a word: 0.5 -> 0.09 demo share in a reviewer's run) unless
    --demo-ratio or --set gives another; a changed or missing dataset is refused before any node starts;
    --demo-ratio / --demo-pretrain without any demonstrations are refused."""
    import argparse
    import types

    from async_naf.learning.config import TrainerConfig
    from async_naf.learning.demos import file_sha256
    from async_naf.run.cli import main
    from async_naf.run.commands.train import DEFAULT_DEMO_RATIO, resumed_demos

    assert TrainerConfig().demo_ratio == DEFAULT_DEMO_RATIO
    data = tmp_path / "demos_ds"
    data.mkdir()
    (data / "replay.npz").write_bytes(b"rows")
    run = tmp_path / "run"
    ckpt = run / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "step_000000100.safetensors").write_bytes(b"weights")
    meta = {"agent": "step_000000100.safetensors", "updates": 100, "env_steps": 120, "episodes": 2, "wall_s": 1.0,
            "demos": [{"path": str(data), "sha256": file_sha256(data / "replay.npz"), "rows": 1, "dropped": 0}],
            "demo_ratio": 0.5}
    (ckpt / "latest.json").write_text(json.dumps(meta))

    def resume(ratio=None, pretrain=None, overrides=None, demos=None):
        config = types.SimpleNamespace(overrides=overrides or {})
        args = argparse.Namespace(demo_ratio=ratio, demo_pretrain=pretrain, demos=demos)
        changed = resumed_demos(args, config, run)
        return changed, config.overrides.get("/trainer", {})

    assert resume() == (True, {"demo_ratio": 0.5})  # the run's own ratio
    assert resume(ratio=0.25, pretrain=30) == (True, {"demo_ratio": 0.25, "demo_pretrain_updates": 30})
    assert resume(overrides={"/trainer": {"demo_ratio": 0.3}}) == (True, {"demo_ratio": 0.3})  # --set
    # --demos given again with --resume: the datasets are prepare_demos' to check; the ratio is still the run's
    assert resume(demos=["other"]) == (True, {"demo_ratio": 0.5})
    given = {"/trainer": {"demo_ratio": 0.2}}  # as build_config leaves --demo-ratio 0.2
    assert resume(demos=["other"], ratio=0.2, overrides=given) == (False, {"demo_ratio": 0.2})
    (data / "replay.npz").write_bytes(b"other rows")
    with pytest.raises(ValueError, match="changed since its checkpoint"):
        resume()
    (data / "replay.npz").unlink()
    with pytest.raises(ValueError, match="cannot be read"):
        resume()
    # a run without demonstrations: nothing to keep, and no ratio to take
    (ckpt / "latest.json").write_text(json.dumps({k: v for k, v in meta.items() if not k.startswith("demo")}))
    assert resume() == (False, {})
    with pytest.raises(ValueError, match="without demonstrations"):
        resume(ratio=0.5)
    assert resume(demos=["other"]) == (True, {"demo_ratio": DEFAULT_DEMO_RATIO})  # a run without: the default
    # a new run: --demo-ratio without --demos is refused before anything starts (it was ignored), and so are the
    # demonstration options on a robots part (no trainer there: ignored too)
    fresh = tmp_path / "fresh"
    assert main(["train", "--task", "reach", "--demo-ratio", "0.5", "--run-dir", str(fresh)]) == 2
    assert "go with --demos" in capsys.readouterr().err and not fresh.exists()
    assert main(["train", "--task", "reach", "--part", "robots", "--demo-ratio", "0.5", "--minutes", "0",
                 "--run-dir", str(fresh)]) == 2
    assert "go to the trainer" in capsys.readouterr().err and not fresh.exists()
    # --demos with --set trainer.demo_ratio (no --demo-ratio): the set value (it was overwritten with 0.1)
    from async_naf.run.cli import build_parser
    from async_naf.run.commands.train import build_config

    args = build_parser().parse_args(["train", "--task", "reach", "--demos", "x", "--set", "trainer.demo_ratio=0.3"])
    assert build_config(args).overrides["/trainer"]["demo_ratio"] == 0.3
