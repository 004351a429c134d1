"""Replay buffer: ring wrap-around, uniform sampling, validation, save/load without pickle."""
from __future__ import annotations

import json

import numpy as np
import pytest

from async_naf.learning.replay import Batch, ReplayBuffer


def _rows(start: int, n: int, obs: int = 3, act: int = 2) -> Batch:
    """Rows whose values encode their index i (obs = i, action = -i, reward = i, next_obs = i + 0.5)."""
    i = np.arange(start, start + n, dtype=np.float32)
    return Batch(
        np.repeat(i[:, None], obs, 1),
        np.repeat(-i[:, None], act, 1),
        i.copy(),
        np.repeat(i[:, None] + 0.5, obs, 1),
        (i % 2 == 0).astype(np.float32),
    )


def test_add_and_wrap_around_keeps_newest() -> None:
    buf = ReplayBuffer(capacity=5, obs_dim=3, act_dim=2)
    assert len(buf) == 0
    assert buf.add_batch(_rows(0, 3)) == 3
    assert len(buf) == 3
    assert buf.add_batch(_rows(3, 4)) == 4  # 7 rows into capacity 5: rows 0 and 1 overwritten
    assert len(buf) == 5
    assert sorted(buf.reward.tolist()) == [2.0, 3.0, 4.0, 5.0, 6.0]
    assert buf._ordered().reward.tolist() == [2.0, 3.0, 4.0, 5.0, 6.0]  # oldest first
    buf.add(np.full(3, 7.0), np.full(2, -7.0), 7.0, np.full(3, 7.5), True)
    assert sorted(buf.reward.tolist()) == [3.0, 4.0, 5.0, 6.0, 7.0]
    # a batch larger than the capacity keeps its last rows
    assert buf.add_batch(_rows(100, 12)) == 12
    assert sorted(buf.reward.tolist()) == [107.0, 108.0, 109.0, 110.0, 111.0]
    assert buf.total_added == 3 + 4 + 1 + 12


def test_sample_rows_are_consistent_transitions_and_uniform() -> None:
    buf = ReplayBuffer(capacity=50, obs_dim=3, act_dim=2, seed=1)
    buf.add_batch(_rows(0, 20))
    b = buf.sample(20_000)
    assert isinstance(b, Batch)
    assert b.obs.shape == (20_000, 3) and b.action.shape == (20_000, 2) and b.reward.shape == (20_000,)
    assert all(x.dtype == np.float32 for x in b)
    i = b.reward
    assert np.all(b.obs == i[:, None]) and np.all(b.action == -i[:, None])
    assert np.all(b.next_obs == i[:, None] + 0.5) and np.all(b.terminal == (i % 2 == 0))
    counts = np.bincount(i.astype(int), minlength=20)
    assert counts.shape == (20,)  # only stored rows are drawn
    # uniform: each of 20 rows expected 1000 times; chi-square with 19 dof, 99.9% quantile is 43.8
    chi2 = ((counts - 1000.0) ** 2 / 1000.0).sum()
    assert chi2 < 43.8
    # samples are copies: modifying them does not touch the buffer
    b.obs[:] = -1
    assert np.all(buf.obs[:20] >= 0)


def test_sampling_is_reproducible_with_seed() -> None:
    a, b = ReplayBuffer(100, 3, 2, seed=7), ReplayBuffer(100, 3, 2, seed=7)
    a.add_batch(_rows(0, 50))
    b.add_batch(_rows(0, 50))
    assert np.array_equal(a.sample(64).reward, b.sample(64).reward)


def test_sample_from_empty_or_bad_n_raises() -> None:
    buf = ReplayBuffer(10, 3, 2)
    with pytest.raises(ValueError, match="empty"):
        buf.sample(4)
    buf.add_batch(_rows(0, 2))
    with pytest.raises(ValueError):
        buf.sample(0)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b._replace(obs=b.obs[:, :2]),
        lambda b: b._replace(action=b.action[:-1]),
        lambda b: b._replace(reward=b.reward[:, None]),
        lambda b: b._replace(next_obs=b.next_obs.ravel()),
        lambda b: b._replace(terminal=np.full(len(b.reward), 0.5, np.float32)),
        lambda b: b._replace(reward=np.where(np.arange(len(b.reward)) == 3, np.nan, b.reward)),
        lambda b: b._replace(obs=np.where(np.arange(len(b.reward))[:, None] == 1, np.inf, b.obs)),
        lambda b: b._replace(action=b.action.astype(np.float64) * 1e300),  # finite in float64, inf in float32
        lambda b: b._replace(obs=np.array([["a"] * 3] * len(b.reward))),
        lambda b: b[:4],
    ],
)
def test_invalid_batch_is_rejected_whole(mutate) -> None:
    buf = ReplayBuffer(100, 3, 2)
    buf.add_batch(_rows(0, 5))
    before = buf._data.copy()
    with pytest.raises(ValueError):
        buf.add_batch(mutate(_rows(10, 6)))
    assert len(buf) == 5
    assert np.array_equal(buf._data, before)


def test_bad_constructor_arguments() -> None:
    for args in ((0, 3, 2), (10, 0, 2), (10, 3, -1), (2.5, 3, 2)):
        with pytest.raises(ValueError):
            ReplayBuffer(*args)


def test_save_load_round_trip(tmp_path) -> None:
    buf = ReplayBuffer(capacity=8, obs_dim=3, act_dim=2, seed=3)
    buf.add_batch(_rows(0, 11))  # wrapped
    buf.sample(5)  # advance the sampler state
    path = tmp_path / "replay.npz"
    buf.save(path)
    loaded = ReplayBuffer.load(path)
    assert (loaded.capacity, loaded.obs_dim, loaded.act_dim, len(loaded)) == (8, 3, 2, 8)
    assert loaded.total_added == 11
    for name in ("obs", "action", "reward", "next_obs", "terminal"):
        assert np.array_equal(getattr(loaded._ordered(), name), getattr(buf._ordered(), name))
    # same sampler state -> same next samples
    assert np.array_equal(loaded.sample(16).reward, buf.sample(16).reward)
    # the file contains no pickled objects: numpy loads it with pickling disabled
    with np.load(path, allow_pickle=False) as data:
        assert json.loads(str(data["meta"][()]))["format"] == "async_naf.replay"
    # a partially filled buffer round-trips too, and new rows go after the loaded ones
    small = ReplayBuffer(10, 3, 2)
    small.add_batch(_rows(0, 4))
    small.save(path)
    again = ReplayBuffer.load(path)
    again.add_batch(_rows(4, 1))
    assert again._ordered().reward.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_load_rejects_corrupt_and_foreign_files(tmp_path) -> None:
    buf = ReplayBuffer(8, 3, 2)
    buf.add_batch(_rows(0, 5))
    good = tmp_path / "good.npz"
    buf.save(good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.zeros(3))
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, meta=np.array([{"format": "async_naf.replay"}], dtype=object))
    for bad in (truncated, garbage, foreign, pickled):
        with pytest.raises(ValueError):
            ReplayBuffer.load(bad)
    # a well-formed archive whose arrays contradict the header
    wrong = tmp_path / "wrong.npz"
    with np.load(good) as d:
        meta = json.loads(str(d["meta"][()]))
    meta["obs_dim"] = 4
    with np.load(good) as d:
        arrays = {k: d[k] for k in d.files if k != "meta"}
    np.savez(wrong, meta=np.array(json.dumps(meta)), **arrays)
    with pytest.raises(ValueError):
        ReplayBuffer.load(wrong)
    meta["obs_dim"], meta["version"] = 3, 99
    np.savez(wrong, meta=np.array(json.dumps(meta)), **arrays)
    with pytest.raises(ValueError, match="version"):
        ReplayBuffer.load(wrong)
    # NaN smuggled into a saved file is rejected like any other input
    arrays_nan = dict(arrays)
    arrays_nan["reward"] = arrays["reward"].copy()
    arrays_nan["reward"][0] = np.nan
    meta["version"] = 1
    np.savez(wrong, meta=np.array(json.dumps(meta)), **arrays_nan)
    with pytest.raises(ValueError):
        ReplayBuffer.load(wrong)
    with pytest.raises(FileNotFoundError):
        ReplayBuffer.load(tmp_path / "missing.npz")


@pytest.mark.parametrize("field", ["capacity", "size", "total_added", "obs_dim"])
@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_a_header_counter_that_is_not_a_number_is_a_value_error(tmp_path, field, value) -> None:
    """JSON's Infinity/NaN in a header's integer (a corrupt file): ValueError, not OverflowError from int()."""
    buf = ReplayBuffer(8, 3, 2)
    buf.add_batch(_rows(0, 5))
    meta, rows = buf.snapshot()
    path = tmp_path / "bad.npz"
    np.savez(path, meta=np.array(json.dumps({**meta, field: value})), **rows._asdict())
    with pytest.raises(ValueError):
        ReplayBuffer.load(path)


def test_failed_save_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch) -> None:
    buf = ReplayBuffer(8, 3, 2)
    buf.add_batch(_rows(0, 5))
    path = tmp_path / "replay.npz"
    buf.save(path)
    buf.add_batch(_rows(5, 2))

    def failing_savez(file, **arrays):
        file.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        buf.save(path)
    monkeypatch.undo()
    assert len(ReplayBuffer.load(path)) == 5
    assert [p.name for p in tmp_path.iterdir()] == ["replay.npz"]


def test_snapshot_is_a_copy_written_later(tmp_path) -> None:
    """snapshot() then write_snapshot() == save() at the moment of the snapshot, whatever is added between."""
    from async_naf.learning.replay import write_snapshot

    buf = ReplayBuffer(8, 3, 2, seed=1)
    buf.add_batch(_rows(0, 10))
    snap = buf.snapshot()
    buf.add_batch(_rows(10, 3))
    write_snapshot(tmp_path / "r.npz", snap)
    loaded = ReplayBuffer.load(tmp_path / "r.npz")
    assert loaded.total_added == 10
    assert loaded._ordered().reward.tolist() == [float(i) for i in range(2, 10)]


def test_random_eviction_keeps_a_thinning_share_of_old_rows() -> None:
    """Once full, a new row overwrites a random stored one: after 150 more rows into a buffer of 100 about
    100 x 0.99^150 = 22 of the first 100 are still there (a ring buffer keeps none), every row stored is one
    that was added, and rows of every age remain."""
    ring = ReplayBuffer(capacity=100, obs_dim=3, act_dim=2, seed=3)
    rand = ReplayBuffer(capacity=100, obs_dim=3, act_dim=2, seed=3, eviction="random")
    for buf in (ring, rand):
        buf.add_batch(_rows(0, 100))
        for start in range(100, 250, 30):  # batches, as the trainer adds them
            buf.add_batch(_rows(start, 30))
        assert len(buf) == 100 and buf.total_added == 250
    assert sorted(ring.reward.tolist()) == list(range(150, 250))
    kept = rand.reward.astype(int)
    assert len(set(kept.tolist())) == 100 and kept.min() >= 0 and kept.max() <= 249
    assert np.array_equal(rand.obs[:, 0], rand.reward)  # rows stay whole: every field of a row is one transition
    old = int((kept < 100).sum())
    assert 10 <= old <= 35, old
    assert int((kept >= 220).sum()) > int((kept < 30).sum())  # newer rows are more likely still there
    with pytest.raises(ValueError, match="eviction"):
        ReplayBuffer(capacity=10, obs_dim=3, act_dim=2, eviction="lifo")
    big = ReplayBuffer(capacity=20, obs_dim=3, act_dim=2, seed=1, eviction="random")
    big.add_batch(_rows(0, 15))
    big.add_batch(_rows(15, 60))  # 5 free rows, then 55 random replacements, many of the same rows
    assert len(big) == 20 and big.total_added == 75
    assert np.array_equal(big.obs[:, 0], big.reward) and np.array_equal(big.action[:, 0], -big.reward)
    assert np.array_equal(big.next_obs[:, 0], big.reward + 0.5)  # every field of every row from one transition
    assert len(set(big.reward.tolist())) == 20 and int((big.reward >= 15).sum()) >= 15


def test_random_eviction_does_not_change_sampling_and_resumes_exactly(tmp_path) -> None:
    """The eviction draws from a stream of its own (the same batches are sampled whatever the eviction, until
    the buffers' contents differ), and a saved buffer goes on evicting exactly as the one that was not saved
    (its generator's state is in the file, format version 2); version 1 files stay ring buffers."""
    ring = ReplayBuffer(capacity=50, obs_dim=3, act_dim=2, seed=5)
    rand = ReplayBuffer(capacity=50, obs_dim=3, act_dim=2, seed=5, eviction="random")
    for buf in (ring, rand):
        buf.add_batch(_rows(0, 40))
    assert np.array_equal(ring.sample(64).reward, rand.sample(64).reward)
    rand.add_batch(_rows(40, 30))
    path = tmp_path / "replay.npz"
    rand.save(path)
    meta = json.loads(str(np.load(path)["meta"][()]))
    assert meta["version"] == 2 and meta["eviction"] == "random"
    again = ReplayBuffer.load(path)
    assert again.eviction == "random"
    for buf in (rand, again):
        buf.add_batch(_rows(70, 45))
    assert np.array_equal(rand.reward, again.reward) and np.array_equal(rand.sample(32).obs, again.sample(32).obs)
    ring.save(path)
    assert json.loads(str(np.load(path)["meta"][()]))["version"] == 1 and ReplayBuffer.load(path).eviction == "oldest"
    meta["eviction"] = "oldest"  # a version-2 header that does not say random
    rows = rand._ordered()
    np.savez(path, meta=np.array(json.dumps(meta)), obs=rows.obs, action=rows.action, reward=rows.reward,
             next_obs=rows.next_obs, terminal=rows.terminal)
    with pytest.raises(ValueError, match="eviction"):
        ReplayBuffer.load(path)
