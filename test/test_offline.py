"""Offline training: the behaviour-cloning term of the NAF loss (naf.bc_weight) and ``async-naf train-offline``
(datasets or bags -> checkpoints, eval.csv, summary.json with a greedy evaluation in the embedded simulation)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from async_naf.learning.agents import make_agent
from async_naf.learning.config import NAFConfig
from async_naf.learning.replay import Batch

torch.set_num_threads(1)


def _mu_error(bc_weight: float) -> tuple[float, object]:
    """|mu(x) - u| after 300 updates on data whose action is always u (rewards 0: Q gives mu no direction)."""
    rng = np.random.default_rng(0)
    agent = make_agent(NAFConfig(6, 2, -1.0, 1.0, lr=3e-3, bc_weight=bc_weight, seed=0))
    u = np.array([0.6, -0.4], np.float32)
    obs = rng.normal(size=(256, 6)).astype(np.float32)
    for _ in range(300):
        idx = rng.integers(0, 256, 32)
        agent.update(Batch(obs[idx], np.tile(u, (32, 1)), np.zeros(32, np.float32), obs[(idx + 1) % 256],
                           np.zeros(32, np.float32)))
    mu = agent.q_values(obs[:64], np.tile(u, (64, 1)))["mu"]
    return float(np.abs(mu - u).mean()), agent


def test_the_bc_term_pulls_mu_towards_the_data_actions() -> None:
    plain, plain_agent = _mu_error(0.0)
    cloned, bc_agent = _mu_error(1.0)
    assert plain_agent._fast_step is not None and bc_agent._fast_step is not None  # BC is in the fast step too
    assert cloned < 0.05 < plain, (cloned, plain)
    stats = bc_agent.update(Batch(*(np.zeros((4, 6), np.float32), np.zeros((4, 2), np.float32),
                                    np.zeros(4, np.float32), np.zeros((4, 6), np.float32), np.zeros(4, np.float32))))
    assert "bc_loss" in stats and "bc_loss" not in plain_agent.update(
        Batch(np.zeros((4, 6), np.float32), np.zeros((4, 2), np.float32), np.zeros(4, np.float32),
              np.zeros((4, 6), np.float32), np.zeros(4, np.float32)))
    with pytest.raises(ValueError, match="bc_weight"):
        NAFConfig(6, 2, bc_weight=-1.0)


def test_train_offline_writes_a_run_directory_with_greedy_evaluations(tmp_path: Path, capsys) -> None:
    from test_demos import _dataset, _rows

    from async_naf.run.cli import main
    from async_naf.run.commands.evaluate import evaluate_checkpoint

    ds = _dataset(tmp_path / "ds", _rows(300, reward=-1.0, seed=3))
    run = tmp_path / "off"
    rc = main(["train-offline", str(ds), "--task", "reach", "--run-dir", str(run), "--updates", "60",
               "--eval-every", "30", "--eval-episodes", "1", "--bc-weight", "0.5", "--set", "trainer.naf.lr=3e-4",
               "--quiet"])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["updates"] == 60 and summary["rows"] == 300 and summary["bc_weight"] == 0.5
    assert summary["trainer_config"]["naf"]["lr"] == 3e-4 and summary["final_bc_loss"] is not None
    assert summary["eval_episodes"] == 1 and np.isfinite(summary["eval_mean_return"])
    evals = (run / "eval.csv").read_text().splitlines()
    assert len(evals) == 2 and evals[1].split(",")[2] == "30"  # one periodic evaluation (the final one: summary)
    result, meta = evaluate_checkpoint(run, "reach", 1, seed=0)  # the usual layout: async-naf evaluate reads it
    assert meta["update_count"] == 60 and result.episodes == 1
    # an earlier run is kept unless --overwrite; a dataset of another task is refused before training
    assert main(["train-offline", str(ds), "--task", "reach", "--run-dir", str(run), "--updates", "1"]) == 2
    assert main(["train-offline", str(ds), "--task", "door_pull", "--run-dir", str(tmp_path / "x"),
                 "--updates", "1"]) == 2
    assert "task 'reach'" in capsys.readouterr().err and not (tmp_path / "x").exists()  # no empty run dir either
    # a source that is not there is named as the argument it is (the error named --demos, an option of train)
    assert main(["train-offline", str(tmp_path / "nothing"), "--task", "reach", "--run-dir", str(tmp_path / "y"),
                 "--updates", "1"]) == 2
    err = capsys.readouterr().err
    assert f"DATASET|BAG {tmp_path / 'nothing'}: no such dataset or bag" in err and "--demos" not in err


def test_a_dataset_manifest_with_unhashable_layouts_is_a_clear_error(tmp_path: Path, capsys) -> None:
    """``layouts: [{}]`` in a dataset's manifest (hand-edited, corrupt): a TypeError traceback before."""
    from test_demos import _dataset, _rows

    from async_naf.run.cli import main

    ds = _dataset(tmp_path / "ds", _rows(20, reward=-1.0, seed=3))
    manifest = json.loads((ds / "manifest.json").read_text())
    for bad in ([{}], [[1]]):
        (ds / "manifest.json").write_text(json.dumps({**manifest, "layouts": bad}))
        assert main(["train-offline", str(ds), "--task", "reach", "--run-dir", str(tmp_path / "r"),
                     "--updates", "1", "--quiet"]) == 2
        assert "layouts" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_a_misspelt_set_is_an_error_naming_the_parameter_meant(tmp_path: Path) -> None:
    """`train-offline --set trainer.naf.lrr=3e-4` ran on the default learning rate without a word (the file's
    values and the --set ones were filtered together); the file's node-only parameters are still left out."""
    import argparse

    from async_naf.run.commands.train_offline import trainer_config

    def config(*sets: str):
        args = argparse.Namespace(config=None, task="reach", sets=list(sets), seed=0, bc_weight=0.0)
        return trainer_config(args, tmp_path)

    assert config("trainer.naf.lr=3e-4").naf.lr == 3e-4
    with pytest.raises(ValueError, match=r"did you mean 'naf\.lr'"):
        config("trainer.naf.lrr=3e-4")
    assert config().naf.lr > 0  # config/train.yaml's /trainer section, node parameters and all, still reads
