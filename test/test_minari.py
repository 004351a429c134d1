"""``async-naf bag convert --format minari``: a bag written here, converted, loaded back with Minari's own
``minari.load_dataset`` and checked against the replay-buffer output of the same bag. Minari is optional:
these tests skip where it is not importable (``pip install minari==0.5.4``)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_recording import _write_policy_bag

from async_naf.learning.replay import ReplayBuffer

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "async_naf.run.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=300, env={**os.environ, **(env or {})})


def _load(root: Path, dataset_id: str):
    minari = pytest.importorskip("minari", reason="minari not installed (pip install minari==0.5.4)")
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        return minari.load_dataset(dataset_id)
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH")
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def test_a_bag_converted_to_minari_loads_back_with_the_replay_outputs_transitions(tmp_path: Path) -> None:
    pytest.importorskip("minari", reason="minari not installed (pip install minari==0.5.4)")
    bag = tmp_path / "bag"
    _write_policy_bag(bag)  # reach, 2 episodes of 6 policy steps
    ref = _cli("bag", "convert", str(bag), "--task", "reach", "--out", str(tmp_path / "replay"),
               "--episode-steps", "4")
    assert ref.returncode == 0, ref.stderr
    root = tmp_path / "minari"
    out = _cli("bag", "convert", str(bag), "--task", "reach", "--format", "minari", "--out", str(root),
               "--dataset-id", "async_naf/reach-test-v0", "--episode-steps", "4")
    assert out.returncode == 0, out.stderr
    assert "Warning" not in out.stderr  # Minari's four about metadata a bag does not have: filtered
    assert [p.name for p in root.iterdir()] == ["async_naf"]  # no staging directory left
    ds = _load(root, "async_naf/reach-test-v0")
    buf = ReplayBuffer.load(tmp_path / "replay" / "replay.npz")
    n = len(buf)
    obs, act, rew, nxt, term = buf.obs[:n], buf.action[:n], buf.reward[:n], buf.next_obs[:n], buf.terminal[:n]
    assert ds.total_episodes == 2 and ds.total_steps == len(buf) == 8  # 4 steps per episode (time limit)
    episodes = list(ds.iterate_episodes())
    got_obs = np.concatenate([e.observations[:-1] for e in episodes])
    got_next = np.concatenate([e.observations[1:] for e in episodes])
    np.testing.assert_array_equal(got_obs, obs)
    np.testing.assert_array_equal(got_next, nxt)
    np.testing.assert_array_equal(np.concatenate([e.actions for e in episodes]), act)
    np.testing.assert_allclose(np.concatenate([e.rewards for e in episodes]), rew, rtol=0,
                               atol=1e-6)
    for e in episodes:  # reach at the time limit: truncated at the last step, never terminated
        assert len(e.observations) == len(e.actions) + 1 == 5
        assert not e.terminations.any() and e.truncations.tolist() == [False, False, False, True]
    assert not term.any()
    assert ds.spec.action_space.shape == (7,) and ds.spec.observation_space.shape == (obs.shape[1],)
    manifest = json.loads((root / "async_naf" / "reach-test-v0" / "manifest.json").read_text())
    assert manifest["transitions"] == 8 and manifest["minari_episodes"] == 2 and len(manifest["bag_sha256"]) == 64


def test_an_existing_dataset_id_or_a_bad_one_is_exit_2_and_nothing_is_written(tmp_path: Path) -> None:
    pytest.importorskip("minari", reason="minari not installed (pip install minari==0.5.4)")
    bag = tmp_path / "bag"
    _write_policy_bag(bag)
    root = tmp_path / "minari"
    args = ("bag", "convert", str(bag), "--task", "reach", "--format", "minari", "--out", str(root))
    assert _cli(*args, "--dataset-id", "reach-a-v0").returncode == 0
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    again = _cli(*args, "--dataset-id", "reach-a-v0")
    assert again.returncode == 2 and "exists" in again.stderr and "Traceback" not in again.stderr
    bad = _cli(*args, "--dataset-id", "no version here!")
    assert bad.returncode == 2 and "dataset id" in bad.stderr and "Traceback" not in bad.stderr
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    # the default root is Minari's own (MINARI_DATASETS_PATH)
    env_root = tmp_path / "env_root"
    ok = _cli("bag", "convert", str(bag), "--task", "reach", "--format", "minari",
              env={"MINARI_DATASETS_PATH": str(env_root)})
    assert ok.returncode == 0, ok.stderr
    assert (env_root / "async_naf" / "reach-exact-v0" / "data").is_dir()
    # ... also a relative one (it was joined twice into the staging path: FileNotFoundError traceback)
    rel = subprocess.run([sys.executable, "-m", "async_naf.run.cli", "bag", "convert", str(bag), "--task", "reach",
                          "--format", "minari", "--dataset-id", "rel/reach-v0"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300, env={**os.environ, "MINARI_DATASETS_PATH": "rel_root"})
    assert rel.returncode == 0, rel.stderr
    assert (tmp_path / "rel_root" / "rel" / "reach-v0" / "data").is_dir()


def test_without_minari_the_error_names_the_pip_command(tmp_path: Path, monkeypatch) -> None:
    from async_naf.run.convert_minari import MINARI_PIP, minari_target

    monkeypatch.setitem(sys.modules, "minari", None)  # as if it were not installed
    with pytest.raises(ValueError, match="optional package minari") as err:
        minari_target("reach-a-v0", tmp_path)
    assert MINARI_PIP in str(err.value)
    assert not any(tmp_path.iterdir())


def test_episodes_are_split_at_a_hole_and_end_on_the_terminal_flag() -> None:
    from async_naf.run.convert_minari import minari_episodes
    from async_naf.wire.batch import Batch

    rng = np.random.default_rng(0)
    states = rng.normal(size=(8, 3)).astype(np.float32)
    # robot 0 episode 0: steps 0, 1, then a hole (step 2 dropped), 3, 4 (terminal); robot 1 episode 0: 0, 1
    steps = [(0, 0, 0), (0, 0, 1), (0, 0, 3), (0, 0, 4), (1, 0, 0), (1, 0, 1)]
    src = [0, 1, 3, 4, 6, 7]
    obs = states[src]
    nxt = states[[s + 1 for s in src[:4]] + [7, 0]]
    batch = Batch(obs, rng.normal(size=(6, 2)).astype(np.float32), np.arange(6, dtype=np.float32), nxt,
                  np.array([0, 0, 0, 1, 0, 0], np.float32))
    keys = np.array(steps, np.int64)[::-1]  # any order
    batch = Batch(*(np.asarray(col)[::-1] for col in batch))
    episodes, holes = minari_episodes(batch, keys)
    assert holes == 1 and [len(e["actions"]) for e in episodes] == [2, 2, 2]
    assert [e["terminations"].tolist() for e in episodes] == [[False, False], [False, True], [False, False]]
    assert [e["truncations"].tolist() for e in episodes] == [[False, True], [False, False], [False, True]]
    np.testing.assert_array_equal(episodes[0]["observations"], states[[0, 1, 2]])
    np.testing.assert_array_equal(episodes[1]["observations"], states[[3, 4, 5]])
    np.testing.assert_array_equal(episodes[1]["rewards"], [2.0, 3.0])


def test_the_d3rlpy_script_rebuilds_the_episodes_so_every_row_is_one_transition() -> None:
    """benchmarks/offline_d3rlpy.py (d3rlpy itself not needed here): rows chained into episodes, a truncated
    episode's final observation as an extra timeout step, a terminated one ending on its terminal flag."""
    import importlib.util

    from async_naf.wire.batch import Batch

    spec = importlib.util.spec_from_file_location("offline_d3rlpy", REPO / "benchmarks" / "offline_d3rlpy.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    s = np.arange(24, dtype=np.float32).reshape(8, 3)
    # episode A: s0 -> s1 -> s2 (time limit); episode B: s4 -> s5 -> s6 (terminal)
    batch = Batch(s[[0, 1, 4, 5]], np.ones((4, 2), np.float32), np.array([1, 2, 3, 4], np.float32),
                  s[[1, 2, 5, 6]], np.array([0, 0, 0, 1], np.float32))
    np.testing.assert_array_equal(mod.episode_keys(batch), [[0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 1]])
    arrays = mod.mdp_arrays(batch)
    np.testing.assert_array_equal(arrays["observations"], s[[0, 1, 2, 4, 5]])
    np.testing.assert_array_equal(arrays["rewards"], [1, 2, 0, 3, 4])
    np.testing.assert_array_equal(arrays["actions"][:, 0], [1, 1, 0, 1, 1])
    np.testing.assert_array_equal(arrays["timeouts"], [0, 0, 1, 0, 0])
    np.testing.assert_array_equal(arrays["terminals"], [0, 0, 0, 0, 1])
