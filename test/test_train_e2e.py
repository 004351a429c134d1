"""End to end: ``async-naf train`` in a subprocess starts the real node graph, trains, stops, evaluates and
writes its run directory; a short reach run learns beyond a random policy."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.e2e]


def _train(run_dir: Path, env: dict[str, str], *extra: str, timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "async_naf.run.cli", "train", "--run-dir", str(run_dir), *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line mentions ``text`` (the run dir: node params files)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def _baseline_eval(task: str, episodes: int, seed: int, random: bool):
    """The same evaluation (same seeds, so the same start poses and targets) with uniformly random actions
    (``random``) or with the arm standing still: the baselines 'learning' must beat."""
    import numpy as np

    from async_naf.run.env import ArmDoorEnv
    from async_naf.run.results import EvalResult

    env = ArmDoorEnv(task=task, seed=seed)
    rng = np.random.default_rng(seed)
    successes, returns = [], []
    for k in range(episodes):
        env.reset(seed=seed + k)
        total, done, info = 0.0, False, {}
        while not done:
            action = rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32) if random \
                else np.zeros(env.action_space.shape, np.float32)
            _, reward, terminated, truncated, info = env.step(action)
            total += reward
            done = terminated or truncated
        successes.append(bool(info["is_success"]))
        returns.append(total)
    return EvalResult(tuple(successes), tuple(returns))


@pytest.mark.parametrize("composition", ["none", "robot"])
def test_train_reach_two_workers_writes_run_directory(tmp_path: Path, ros_env: dict[str, str],
                                                      composition: str) -> None:
    """The same run with one process per node and with each robot's nodes composed into one process."""
    run_dir = tmp_path / "run"
    # realtime (20 Hz per robot, as real arms): in lockstep a composed robot that found the trainer first made
    # all 1,500 steps of the earlier budget in 2 s, before the other robot's collector had found the trainer
    steps = 400
    proc = _train(run_dir, ros_env, "--task", "reach", "--workers", "2", "--seed", "3", "--steps", str(steps),
                  "--realtime", "--minutes", "3", "--eval-every", "0", "--eval-episodes", "3", "--quiet",
                  "--set", "trainer.min_buffer_size=200", "--set", "trainer.checkpoint_every_s=0",
                  "--composition", composition)
    try:
        assert proc.returncode == 0, proc.stderr[-4000:]
        summary = json.loads((run_dir / "summary.json").read_text())
        for key in ("task", "workers", "env_steps", "updates", "wall_s", "eval_success_rate", "eval_episodes",
                    "consecutive_successes"):
            assert key in summary, key
        assert summary["task"] == "reach" and summary["workers"] == 2
        assert summary["env_steps"] >= steps and summary["updates"] > 0
        assert summary["eval_episodes"] == 3 and 0.0 <= summary["eval_success_rate"] <= 1.0
        assert 0 <= summary["consecutive_successes"] <= 3
        assert summary["outcome"] == "finished", summary  # the trainer reached --steps and exited by itself
        assert summary["dead_nodes"] == []

        with open(run_dir / "metrics.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert rows, "no training episodes in metrics.csv"
        assert list(rows[0]) == ["wall_s", "env_steps", "updates", "robot", "episode", "episode_return", "success",
                                 "demo_share", "demo_buffer_size"]
        steps_col = [int(float(r["env_steps"])) for r in rows]
        # summary: the final checkpoint's count; episodes whose statistics came after it are counted apart
        assert steps_col == sorted(steps_col)
        assert steps_col[-1] == summary["env_steps"] + summary.get("env_steps_after_final_checkpoint", 0) \
            or steps_col[-1] <= summary["env_steps"]
        assert {r["robot"] for r in rows} == {"0", "1"}, "both robots should have finished episodes"
        assert all(r["success"] in ("0", "1") for r in rows)

        assert (run_dir / "checkpoints" / "final.safetensors").is_file()
        from async_naf.run.commands.evaluate import load_policy

        policy = load_policy(run_dir / "checkpoints" / "final.safetensors")
        assert policy.update_count == summary["updates"] or policy.update_count > 0
        assert (run_dir / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
        for node in ("robot_0.sim", "robot_1.policy", "robot_1.collector", "robot_0.door_angle", "trainer"):
            process = node.split(".")[0] if composition == "robot" and node != "trainer" else node
            assert (run_dir / "logs" / f"{process}.log").is_file(), process
            assert (run_dir / "params" / f"{node}.yaml").is_file(), node
        if composition == "robot":  # one process per robot, every node of the robot in it
            log = (run_dir / "logs" / "robot_1.log").read_text()
            assert "async_naf.run.container sim door_angle policy collector" in log
            for name in ("robot_1.sim", "robot_1.policy", "robot_1.collector"):
                assert f"[{name}]" in log, name
            assert not (run_dir / "logs" / "robot_1.sim.log").exists()
        assert "results in" in proc.stderr
    finally:
        leftovers = _processes_mentioning(str(run_dir))
        for pid in leftovers:
            os.kill(pid, 9)
    assert not leftovers, f"node processes left running: {leftovers}"


@pytest.mark.slow
@pytest.mark.parametrize("composition", ["none", "robot"])
def test_short_reach_run_learns_beyond_random(tmp_path: Path, ros_env: dict[str, str], composition: str) -> None:
    """A short reach run with 2 workers (4,000 env steps): the final greedy policy's evaluation return beats
    both uniformly random actions and standing still, on the same episodes, by a clear margin (an untrained
    or broken learner does not: its return is about that of standing still). Per-process and composed."""
    run_dir = tmp_path / "learn"
    episodes, seed = 10, 0
    proc = _train(run_dir, ros_env, "--task", "reach", "--workers", "2", "--seed", str(seed), "--steps", "4000",
                  "--minutes", "4", "--eval-every", "0", "--eval-episodes", str(episodes), "--quiet",
                  "--composition", composition, timeout=330)
    try:
        assert proc.returncode == 0, proc.stderr[-4000:]
    finally:
        for pid in _processes_mentioning(str(run_dir)):
            os.kill(pid, 9)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env_steps"] >= 4000 and summary["eval_episodes"] == episodes
    # async-naf train's final evaluation uses seeds 20000 + seed + k: the baselines get the same episodes
    random = _baseline_eval("reach", episodes, 20_000 + seed, random=True)
    still = _baseline_eval("reach", episodes, 20_000 + seed, random=False)
    best_baseline = max(random.mean_return, still.mean_return)
    trained = summary["eval_mean_return"]
    # what a failure needs to be told apart (an untrained policy, a trainer far behind, a late checkpoint)
    said = {k: summary.get(k) for k in ("updates", "checkpoint_updates", "env_steps", "checkpoint", "train_episodes",
                                         "wall_s", "trainer_wall_s", "eval_success_rate", "transitions_lost")}
    # did the robots' own (exploring) episodes improve while they trained, and did a collector drop steps?
    from async_naf.run.results import read_metrics

    train_returns = [row.episode_return for row in read_metrics(run_dir / "metrics.csv")]
    said["train_return_first_20"] = round(sum(train_returns[:20]) / max(len(train_returns[:20]), 1), 2)
    said["train_return_last_20"] = round(sum(train_returns[-20:]) / max(len(train_returns[-20:]), 1), 2)
    said["collector_drops"] = {robot: {k: v for k, v in counts.items() if k.startswith("dropped_")}
                               for robot, counts in summary.get("collectors", {}).items()}
    needed = best_baseline + 0.25 * abs(best_baseline)
    # the messages are strings: pytest would cut a tuple's repr short, the figures a failure needs included
    assert trained > needed, (f"greedy return {trained:.3f}, needed > {needed:.3f} (random {random.mean_return:.3f}, "
                              f"still {still.mean_return:.3f}); {said}")
    assert summary["eval_success_rate"] >= random.success_rate, f"random succeeded {random.success_rate}; {said}"


def test_train_door_pull_on_the_hardware_backend(tmp_path: Path, ros_env: dict[str, str]) -> None:
    """``--backend hardware``: the graph of ``backend:=real`` (guard, reset, door_angle, policy, collector,
    trainer) with the sim in hardware mode standing in for the arm (no sim/reset of its own, no ground truth):
    the reset node brings the arm home and waits for the door closer, episodes start, transitions reach the
    trainer, and the trainer updates."""
    run_dir = tmp_path / "hw"
    steps = 450  # three door episodes (150 steps each), in real time
    proc = _train(run_dir, ros_env, "--task", "door_pull", "--backend", "hardware", "--workers", "1", "--seed", "1",
                  "--steps", str(steps), "--minutes", "3", "--eval-every", "0", "--eval-episodes", "1", "--quiet",
                  "--set", "trainer.min_buffer_size=100", "--set", "trainer.checkpoint_every_s=0", timeout=300)
    try:
        assert proc.returncode == 0, proc.stderr[-4000:]
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["backend"] == "hardware" and summary["outcome"] == "finished", summary
        assert summary["env_steps"] >= steps and summary["updates"] > 0 and summary["dead_nodes"] == []
        graph = json.loads((run_dir / "graph.json").read_text())
        roles = ("sim", "guard", "reset", "door_angle", "policy", "collector")
        assert [n["fqn"] for n in graph] == [f"/robot_0/{r}" for r in roles] + ["/trainer"]
        sim_params = next(n for n in graph if n["fqn"] == "/robot_0/sim")["parameters"]
        assert sim_params["hardware"] is True and sim_params["clock_topic"] == ""
        with open(run_dir / "metrics.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) >= 3
        reset_log = (run_dir / "logs" / "robot_0.reset.log").read_text()
        assert "reset service ready" in reset_log
    finally:
        leftovers = _processes_mentioning(str(run_dir))
        for pid in leftovers:
            os.kill(pid, 9)
    assert not leftovers, f"node processes left running: {leftovers}"


def _checkpoint_env_steps(pointer: Path) -> int:
    """The env steps of the checkpoint ``checkpoints/latest.json`` points at; 0 while there is none (or it is
    being replaced)."""
    try:
        return int(json.loads(pointer.read_text())["env_steps"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def test_a_killed_trainer_is_restarted_from_its_checkpoint_and_the_run_goes_on(tmp_path: Path,
                                                                              ros_env: dict[str, str]) -> None:
    """Issue 13: SIGKILL of the trainer of a running ``async-naf train``: the launcher starts it again with
    ``resume`` (its newest checkpoint), the robot goes on meanwhile, the run reaches its env-step budget,
    and summary.json counts the restart."""
    import signal
    import time

    run_dir = tmp_path / "run"
    steps = 2500
    cmd = [sys.executable, "-m", "async_naf.run.cli", "train", "--run-dir", str(run_dir), "--task", "reach",
           "--workers", "1", "--seed", "2", "--steps", str(steps), "--minutes", "4", "--eval-every", "0",
           "--eval-episodes", "2", "--quiet", "--set", "trainer.min_buffer_size=200",
           "--set", "trainer.checkpoint_every_s=2"]
    proc = subprocess.Popen(cmd, env=ros_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        latest = run_dir / "checkpoints" / "latest.json"
        deadline = time.monotonic() + 150
        # polling a file the trainer writes (no event to wait on across processes), until a checkpoint holds env
        # steps (the first one, 2 s after the start, may be written before the robot's first batch arrived)
        while _checkpoint_env_steps(latest) <= 0:
            assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint before the deadline"
            time.sleep(0.2)
        params = str(run_dir / "params" / "trainer.yaml")
        (pid,) = [p for p in _processes_mentioning(params)
                  if b"trainer_node" in Path(f"/proc/{p}/cmdline").read_bytes()]
        os.kill(pid, signal.SIGKILL)
        _out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-4000:]
    assert "the trainer died (status -9); restarting it from its newest checkpoint" in err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["trainer_restarts"] == 1 and summary["outcome"] == "finished", summary
    (restart,) = summary["restarts"]
    assert restart["key"] == "trainer" and restart["returncode"] == -9 and restart["restart_s"] > restart["exit_s"]
    assert summary["env_steps"] >= steps
    # the collector's final counters (its counts_file) in summary.json: what the restart cost, by reason
    collector = summary["collectors"]["robot_0"]
    assert collector["node"] == "/robot_0/collector" and collector["trainers_seen"] in (1, 2)
    assert collector["sequenced_transitions"] >= summary["env_steps"]  # one robot: the trainer holds only its rows
    lost = summary["transitions_lost"]
    # the backlog's bound never reached (what was made after the trainer ended the run: unsent_at_exit)
    assert lost["lost_transitions"] == lost["unconfirmed_transitions"] == 0
    assert lost["lost_with_trainer"] == collector["lost_with_trainer"] >= 0
    log = (run_dir / "logs" / "trainer.log").read_text()
    assert log.count("started:") == 2
    second = log.split("started:")[2]
    assert "resume:=true" in second.splitlines()[0]
    import re

    ready = re.search(r"trainer ready: .* env_steps=(\d+)", second)
    assert ready is not None and int(ready.group(1)) > 0  # the env steps of the checkpoint it resumed
    assert not _processes_mentioning(str(run_dir))


def _stop_at_success_run(run_dir: Path, env: dict[str, str], *extra: str) -> list[dict[str, str]]:
    """A reach run (1 worker, seed 0) with ``--stop-at-success 0.0 --criterion success`` and ``extra``; its
    eval.csv rows, once it ended with status 0 (its processes killed in any case)."""
    proc = _train(run_dir, env, "--task", "reach", "--workers", "1", "--seed", "0", "--minutes", "3",
                  "--eval-episodes", "2", "--stop-at-success", "0.0", "--criterion", "success", "--quiet", *extra,
                  timeout=240)
    try:
        assert proc.returncode == 0, proc.stderr[-4000:]
    finally:
        for pid in _processes_mentioning(str(run_dir)):
            os.kill(pid, 9)
    with open(run_dir / "eval.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _same_networks(a: Path, b: Path) -> bool:
    """Two agent checkpoints hold the same tensors (names and values)."""
    from safetensors.numpy import load_file

    first, second = load_file(a), load_file(b)
    return sorted(first) == sorted(second) and all((first[k] == second[k]).all() for k in first)


def test_stop_at_success_ends_the_run_with_the_weights_it_evaluated(tmp_path: Path, ros_env: dict[str, str]) -> None:
    """--stop-at-success pauses the trainer for each evaluation and evaluates a checkpoint of the paused
    weights: the run that stops on it ends with exactly those weights (the final checkpoint holds the same
    networks, normaliser and update count), though its robots kept stepping meanwhile."""
    run_dir = tmp_path / "stop"
    rows = _stop_at_success_run(run_dir, ros_env, "--eval-every", "5",
                                "--set", "trainer.min_buffer_size=100")  # updates long before 5 s
    assert len(rows) == 1  # a rate of 0 is reached at the first evaluation: the run stops on it
    ckpt = run_dir / "checkpoints"
    assert _same_networks(ckpt / rows[0]["checkpoint"], ckpt / "final.safetensors")
    final_meta = json.loads((ckpt / "final.json").read_text())
    assert final_meta["updates"] == int(rows[0]["updates"]) > 0
    assert final_meta["env_steps"] > int(rows[0]["env_steps"])  # the robots went on while it was paused


def test_stop_at_success_evaluates_the_pre_trained_policy_first(tmp_path: Path, ros_env: dict[str, str]) -> None:
    """--demos with --demo-pretrain and --stop-at-success: the trainer holds its pre-trained weights
    (pause_after_pretrain) and the first evaluation is of checkpoints/pretrained, off the --eval-every
    schedule; a run that stops on it ends with exactly those weights, no online update made."""
    from test_demos import _dataset, _rows

    demos = _dataset(tmp_path / "demos", _rows(400, reward=1.0, seed=3))
    run_dir = tmp_path / "pre"
    rows = _stop_at_success_run(run_dir, ros_env, "--eval-every", "30", "--demos", str(demos), "--demo-ratio", "0.5",
                                "--demo-pretrain", "200")
    assert [r["checkpoint"] for r in rows] == ["pretrained.safetensors"]
    assert int(rows[0]["updates"]) == 200 and float(rows[0]["wall_s"]) < 30  # before the first periodic one
    ckpt = run_dir / "checkpoints"
    assert _same_networks(ckpt / "pretrained.safetensors", ckpt / "final.safetensors")
    final_meta = json.loads((ckpt / "final.json").read_text())
    assert final_meta["updates"] == final_meta["pretrain_updates"] == 200
