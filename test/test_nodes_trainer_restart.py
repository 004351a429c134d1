"""A trainer killed (SIGKILL) and started again with ``resume`` while a robot runs, over real rclpy (issue 13).

What is checked: the robot keeps acting and finishing episodes while no trainer runs (the policy keeps the
last weights); its collector keeps the transitions in its bounded backlog and sends them to the restarted
trainer, which resumes from its newest checkpoint; none are lost at the collector. The accounting closes:
every row the collector numbered is held by the restarted trainer (acknowledged) or counted as lost with
the dead one (acknowledged by it after its last checkpoint); what was published to the dead trainer unacknowledged
(before DDS reported it gone) was sent again. The episode statistics close the same way: every episode the
collector finished is in metrics.csv once (the dead trainer's rows after its checkpoint included) or
counted as lost. Figures printed with ``-s``.
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

    def checkpointed_steps() -> int:  # env steps in the newest checkpoint (0 before the first one holding data)
        return int(json.loads(latest.read_text())["env_steps"]) if latest.exists() else 0
    probe.spin_until(lambda: probe.diag(COLL, "episodes") >= 2 and probe.diag(TRAINER, "updates") > 0
                     and checkpointed_steps() > 0, 150, "episodes, updates and a checkpoint holding transitions")
    procs.kill("trainer")
    procs.procs.pop("trainer")
    del probe.diagnostics[TRAINER]
    sent_at_kill = probe.diag(COLL, "transitions_sent")
    episodes = probe.diag(COLL, "episodes")
    # no trainer: the robot goes on, its transitions kept. Until DDS reports the trainer gone its send window
    # fills and the rest waits in the backlog; once it does, what was in flight goes back to the backlog too
    # (in flight 0): only then is the trainer restarted, so the collector has seen it gone
    probe.spin_until(lambda: probe.diag(COLL, "episodes") >= episodes + 2
                     and probe.diag(COLL, "backlog_transitions") > 0
                     and probe.diag(COLL, "inflight_transitions") == 0, 90,
                     "episodes while the trainer is down, and the collector seeing it gone")
    ckpt_steps = checkpointed_steps()
    backlog = probe.diag(COLL, "backlog_transitions")
    # everything counted as sent by now went to the dead trainer: kept if in its last checkpoint, else lost
    # (received after it, or published before the collector saw the trainer gone)
    sent_before_restart = probe.diag(COLL, "transitions_sent")
    _trainer(procs, "trainer2", run, "-p", "resume:=true")
    probe.spin_until(lambda: TRAINER in probe.diagnostics, 60, "the restarted trainer")
    probe.spin_until(lambda: probe.diag(COLL, "backlog_transitions") == 0
                     and probe.diag(TRAINER, "env_steps") > ckpt_steps, 60, "the backlog sent")
    updates = probe.diag(TRAINER, "updates")
    probe.spin_until(lambda: probe.diag(TRAINER, "updates") > updates, 60, "updates after the restart")
    # the collector's own snapshot closes: numbered = below the new trainer's mark + in flight + kept; below the
    # mark, the rows that died with the old trainer are the new one's gap (never delivered to it)
    last: dict[str, float] = {}

    def closed() -> bool:
        c = {k: probe.diag(COLL, k) for k in ("sequenced_transitions", "acked_transitions", "lost_with_trainer",
                                               "inflight_transitions", "backlog_transitions", "trainers_seen",
                                               "lost_transitions", "unconfirmed_transitions")}
        c.update({k: probe.diag(TRAINER, k) for k in ("gap_transitions", "duplicate_transitions")})
        last.update(c)
        return c["trainers_seen"] >= 2 and c["sequenced_transitions"] == (
            c["acked_transitions"] + c["inflight_transitions"] + c["backlog_transitions"]) \
            and c["gap_transitions"] == c["lost_with_trainer"]
    try:
        probe.spin_until(closed, 60, "the collector's accounting to close")
    except AssertionError as exc:  # the last counters say which term did not close
        raise AssertionError(f"{exc}; last counters: {last}") from None
    lost_with = probe.diag(COLL, "lost_with_trainer")
    print(f"trainer restart: checkpoint at {ckpt_steps} env steps; sent to the first trainer {sent_at_kill:.0f} "
          f"(diagnostics at the kill) / {sent_before_restart:.0f} (at the restart); backlog when restarted "
          f"{backlog:.0f}; lost with the dead trainer {lost_with:.0f}; re-sent "
          f"{probe.diag(COLL, 'resent_transitions'):.0f}; copies dropped by the new trainer "
          f"{probe.diag(TRAINER, 'duplicate_transitions'):.0f}; lost at the collector "
          f"{probe.diag(COLL, 'lost_transitions'):.0f}")
    assert 0 <= lost_with <= sent_before_restart - ckpt_steps
    assert probe.diag(COLL, "resent_transitions") > 0  # published to the dead trainer, unacknowledged: sent again
    assert probe.diag(COLL, "lost_transitions") == 0 and probe.diag(COLL, "unconfirmed_transitions") == 0
    # rows the dead trainer acknowledged after its last checkpoint are the new trainer's gap, and nothing else is
    assert probe.diag(TRAINER, "gap_transitions") == lost_with

    # the episode statistics are compared once no more episodes finish: while the robot runs, the collector's
    # and the trainer's diagnostics (each every 0.2 s, in their own processes) are taken at different moments
    # and differ by the episodes finished in between (tens a second here). Without its policy the robot's
    # episodes stall and are aborted, without statistics
    assert procs.interrupt("policy") == 0
    procs.procs.pop("policy")
    seen: dict[str, float] = {}

    def episodes_closed() -> bool:  # each finished episode recorded once, or counted lost by the collector
        seen.update({k: probe.diag(COLL, k) for k in ("episodes", "lost_episode_stats", "unconfirmed_episode_stats",
                                                      "inflight_episode_stats", "resent_episode_stats")})
        seen.update({f"trainer {k}": probe.diag(TRAINER, k) for k in ("episodes", "episodes_after_checkpoint",
                                                                       "duplicate_episode_stats")})
        uncounted = seen["lost_episode_stats"] + seen["unconfirmed_episode_stats"]
        return seen["trainer episodes"] == seen["episodes"] - uncounted
    try:
        probe.spin_until(episodes_closed, 30, "every episode recorded or counted")
    except AssertionError as exc:  # the last counters say which side is ahead
        raise AssertionError(f"{exc}; last counters: {seen}") from None
    rows = (run / "metrics.csv").read_text().splitlines()[1:]
    keys = [tuple(r.split(",")[3:5]) for r in rows]
    print(f"episode statistics: {len(rows)} rows in metrics.csv, "
          f"{probe.diag(TRAINER, 'episodes_after_checkpoint'):.0f} written by the dead trainer after its checkpoint, "
          f"re-sent "
          f"{probe.diag(COLL, 'resent_episode_stats'):.0f}, copies dropped "
          f"{probe.diag(TRAINER, 'duplicate_episode_stats'):.0f}")
    assert len(keys) == len(set(keys)) and len(rows) >= probe.diag(TRAINER, "episodes") - 1
    assert all(p.poll() is None for p in procs.procs.values())
