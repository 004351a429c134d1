"""A trainer killed (SIGKILL) and started again with ``resume`` while a robot runs, over real rclpy (issue 13).

What is checked: the robot keeps acting and finishing episodes while no trainer runs (the policy keeps the
last weights); its collector keeps the transitions in its bounded backlog and sends them to the restarted
trainer, which resumes from its newest checkpoint; none are lost at the collector. The transitions the dead
trainer had received after its last checkpoint are lost with it: printed (``-s``) with the other figures.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("rclpy")

from nodes_harness import Processes

TRAINER = "/trainer"
COLL = "/robot_0/collector"
pytestmark = pytest.mark.timeout(240)


def _trainer(procs: Processes, key: str, run: Path, *extra: str) -> None:
    procs.start(key, "trainer_node", "-p", "task:=reach", "-p", f"run_dir:={run}", "-p", "diagnostics_period_s:=0.2",
                "-p", "checkpoint_every_s:=2.0", "-p", "replay_capacity:=50000", "-p", "min_buffer_size:=100", *extra)


def test_robots_go_on_while_the_trainer_restarts(procs, probe, tmp_path) -> None:
    run = tmp_path / "run"
    _trainer(procs, "trainer", run)
    common = ["-p", "task:=reach", "-p", "seed:=1"]
    procs.start("sim", "sim_node", *common, namespace="/robot_0")
    procs.start("policy", "policy_node", *common, "-p", "lockstep:=true", namespace="/robot_0")
    procs.start("collector", "collector_node", *common, "-p", "diagnostics_period_s:=0.2", namespace="/robot_0")
    latest = run / "checkpoints" / "latest.json"
    probe.spin_until(lambda: probe.diag(COLL, "episodes") >= 2 and probe.diag(TRAINER, "updates") > 0
                     and latest.exists(), 150, "episodes, updates and a checkpoint")
    procs.kill("trainer")
    procs.procs.pop("trainer")
    del probe.diagnostics[TRAINER]
    sent_at_kill = probe.diag(COLL, "transitions_sent")
    episodes = probe.diag(COLL, "episodes")
    # no trainer: the robot goes on, its transitions kept
    probe.spin_until(lambda: probe.diag(COLL, "episodes") >= episodes + 2
                     and probe.diag(COLL, "backlog_transitions") > 0, 60, "episodes while the trainer is down")
    ckpt_steps = json.loads(latest.read_text())["env_steps"]
    backlog = probe.diag(COLL, "backlog_transitions")
    # everything counted as sent by now went to the dead trainer: kept if in its last checkpoint, else lost
    # (received after it, or published before the collector saw the trainer gone)
    sent_before_restart = probe.diag(COLL, "transitions_sent")
    _trainer(procs, "trainer2", run, "-p", "resume:=true")
    probe.spin_until(lambda: TRAINER in probe.diagnostics, 60, "the restarted trainer")
    probe.spin_until(lambda: probe.diag(COLL, "backlog_transitions") == 0
                     and probe.diag(TRAINER, "env_steps") >= ckpt_steps + backlog, 60, "the backlog sent")
    updates = probe.diag(TRAINER, "updates")
    probe.spin_until(lambda: probe.diag(TRAINER, "updates") > updates, 60, "updates after the restart")
    sent = probe.diag(COLL, "transitions_sent")
    probe.spin_until(lambda: probe.diag(TRAINER, "env_steps") >= ckpt_steps + sent - sent_at_kill, 30,
                     "every transition sent since the kill in the restarted trainer")
    print(f"trainer restart: checkpoint at {ckpt_steps} env steps; sent to the first trainer {sent_at_kill:.0f} "
          f"(diagnostics at the kill) / {sent_before_restart:.0f} (at the restart) -> "
          f"{sent_before_restart - ckpt_steps:.0f} lost with it; backlog when restarted {backlog:.0f}; lost at the "
          f"collector {probe.diag(COLL, 'lost_transitions'):.0f}")
    assert probe.diag(COLL, "lost_transitions") == 0  # (an episode may be aborted by a stall on a loaded machine)
    assert all(p.poll() is None for p in procs.procs.values())
