"""Two parts of one graph started separately (loopback, one domain): ``async-naf train --part robots --robots 1``
first, which must wait for a trainer, then ``--part trainer``; what each writes into its summary.json.
(Across network namespaces, with a link pulled: test_netns_hosts.py.)"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from async_naf.run.launcher import start_child, stop_child, tail
from async_naf.run.results import read_metrics

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.ros]


def _train(run_dir: Path, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    run_dir.mkdir(parents=True)
    with open(run_dir.parent / f"{run_dir.name}.out", "wb") as fh:
        return start_child([sys.executable, "-m", "async_naf.run.cli", "train", "--task", "reach", "--workers", "2",
                            "--run-dir", str(run_dir), "--quiet", *args], stdout=fh, stderr=subprocess.STDOUT,
                           env=env)


def test_a_robots_part_waits_for_a_trainer_started_elsewhere(tmp_path: Path, ros_env: dict[str, str], probe) -> None:
    robots = _train(tmp_path / "robots", ros_env, "--part", "robots", "--robots", "1", "--realtime", "--minutes", "0",
                    "--composition", "robot")
    trainer = None
    try:
        collector, policy = "/robot_1/collector", "/robot_1/policy"
        probe.spin_until(lambda: collector in probe.diagnostics and policy in probe.diagnostics, 90.0,
                         "robot 1's collector and policy on /diagnostics")
        assert not any(name.startswith("/robot_0") or name == "/trainer" for name in probe.diagnostics)
        # no trainer: robot 1 stays idle without weights (a negative check: 3 s of its diagnostics, spun)
        t0 = time.monotonic()
        probe.spin_until(lambda: time.monotonic() - t0 >= 3.0, 30.0, "3 s of robot 1's diagnostics")
        assert probe.diagnostics[collector]["phase"] == "idle"
        assert probe.diag(collector, "episodes") == 0 and probe.diag(collector, "transitions_sent") == 0
        assert probe.diag(policy, "weights_version") == -1  # none yet
        assert robots.poll() is None
        assert "waiting for a trainer" in (tmp_path / "robots" / "logs" / "robot_1.log").read_text()
        # its counters file is written while it runs, not only at exit: what the part's terminal lines come from
        counts = json.loads((tmp_path / "robots" / "collectors" / "robot_1.json").read_text())
        assert counts["trainer_heard"] == 0 and counts["episodes"] == 0

        trainer = _train(tmp_path / "trainer", ros_env, "--part", "trainer", "--minutes", "0", "--steps",
                         "100000000", "--eval-every", "0", "--eval-episodes", "1")
        probe.spin_until(lambda: probe.diag(policy, "weights_version") >= 0, 90.0, "the trainer's weights at robot 1")
        metrics = tmp_path / "trainer" / "metrics.csv"

        def trainer_has_robot_1() -> bool:
            try:
                return any(r.robot == "1" for r in read_metrics(metrics))
            except (OSError, ValueError):
                return False
        probe.spin_until(trainer_has_robot_1, 90.0, "an episode of robot 1 in the trainer's metrics.csv")
        out = tmp_path / "robots.out"
        probe.spin_until(lambda: "robot_1: trainer heard" in out.read_text(), 30.0,
                         "the robots part saying that robot 1 heard the trainer")
    finally:
        rc_robots = stop_child(robots, 60.0, name="robots part")
        rc_trainer = stop_child(trainer, 120.0, name="trainer part") if trainer is not None else None
    assert rc_robots == 130, tail(tmp_path / "robots.out", 30)  # Ctrl-C: its normal end, nothing died before
    assert rc_trainer == 130, tail(tmp_path / "trainer.out", 30)
    robots_summary = json.loads((tmp_path / "robots" / "summary.json").read_text())
    assert robots_summary["part"] == "robots" and robots_summary["robots"] == [1]
    assert robots_summary["dead_nodes"] == [] and robots_summary["outcome"] == "interrupted"
    assert robots_summary["discovery"] == "LOCALHOST"  # nothing asked for more
    assert not (tmp_path / "robots" / "metrics.csv").exists() and "eval_success_rate" not in robots_summary
    said = (tmp_path / "robots.out").read_text()
    assert "robot_1: trainer heard" in said and "WARNING: no robot heard a trainer" not in said
    episodes = robots_summary["collectors"]["robot_1"]["episodes"]
    assert episodes >= 1 and f"robot_1: {episodes} episodes" in said  # the closing lines, from the final counters
    trainer_summary = json.loads((tmp_path / "trainer" / "summary.json").read_text())
    assert trainer_summary["part"] == "trainer" and trainer_summary["robots"] == []
    assert set(trainer_summary["episodes_by_robot"]) == {"1"} and trainer_summary["episodes_by_robot"]["1"] >= 1
    assert trainer_summary["eval_episodes"] == 1  # the trainer part evaluates its final policy
