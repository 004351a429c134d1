"""Results helpers: metrics/eval files, streaks, time to threshold, plots, the workers comparison, --set."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest

from async_naf.run.results import (
    EVAL_FIELDS,
    EvalResult,
    append_csv,
    longest_streak,
    plot_learning_curve,
    read_metrics,
    rolling_success,
    time_to_threshold,
)

HEADER = "wall_s,env_steps,updates,robot,episode,episode_return,success\n"


def test_streak_and_rates() -> None:
    assert longest_streak([]) == 0
    assert longest_streak([True, True, False, True, True, True, False]) == 3
    r = EvalResult((True, False, True, True), (1.0, -1.0, 2.0, 2.0))
    assert r.episodes == 4 and r.success_rate == 0.75 and r.consecutive_successes == 2 and r.mean_return == 1.0
    assert r.to_dict()["successes"] == [1, 0, 1, 1]
    doors = EvalResult((True, True, True, False), (0.0,) * 4, strict=(True, False, True, False),
                       door_angles=(1.1, 0.44, 1.2, 0.1))
    assert doors.strict_success_rate == 0.5 and doors.strict_consecutive == 1
    q = doors.door_angle_quantiles()
    assert q["min"] == 0.1 and q["max"] == 1.2 and q["median"] == pytest.approx(0.77)
    why = EvalResult((True, False, False, False), (0.0,) * 4,
                     failures=("", "closed_again", "too_little", "closed_again"))
    assert why.failure_counts() == {"closed_again": 2, "too_little": 1}
    assert why.to_dict()["failures"] == why.summary_fields()["eval_failures"] == {"closed_again": 2, "too_little": 1}
    row = doors.eval_row()
    assert row["strict_success_rate"] == 0.5 and row["door_angle_median"] == pytest.approx(0.77)
    assert r.door_angle_quantiles() == {} and r.strict_success_rate == 0.0  # reach has no door angles


def test_read_metrics_tolerates_partial_last_line_and_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text(HEADER + "1.0,50,40,0,1,-3.5,0\n2.0,100,90,1,1,nan,1\n3.0,150,140,1,2,-1.0,1\n4.0,20")
    rows = read_metrics(path)
    assert [r.env_steps for r in rows] == [50, 150]  # the NaN row and the half-written line are skipped
    assert rows[1].robot == "1" and rows[1].success is True
    assert read_metrics(tmp_path / "missing.csv") == []
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="missing columns"):
        read_metrics(tmp_path / "bad.csv")


def test_rolling_success_and_threshold() -> None:
    class Row:
        def __init__(self, s: bool) -> None:
            self.success = s

    rows = [Row(s) for s in (False, True, True, True)]
    assert rolling_success(rows, window=2) == [0.0, 0.5, 1.0, 1.0]
    assert time_to_threshold([(10, 0.5), (20, 0.95), (30, 1.0)], 0.95) == 20
    assert time_to_threshold([(10, 0.5)], 0.95) is None


def test_quiet_progress_still_reads_the_env_steps(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--quiet only hides the progress lines: the env-step backstop of `async-naf train` needs the counts."""
    from async_naf.run.commands.train import Progress

    (tmp_path / "metrics.csv").write_text(HEADER + "1.0,50,40,0,1,-3.5,0\n2.0,120,90,1,1,-1.0,1\n")
    progress = Progress(tmp_path, period_s=0.0, quiet=True)
    progress.tick(1.0, None)
    assert progress.env_steps == 120
    assert capsys.readouterr().err == ""


def test_a_corrupt_metrics_file_at_the_end_of_a_run_is_a_warning(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    """A metrics.csv that cannot be read at the end: a warning and no rows, so summary.json is still written;
    the plots take the rows already read instead of reading (and failing on) the file again."""
    from async_naf.run.commands.train import read_final_metrics

    (tmp_path / "metrics.csv").write_text("garbage,header\n1,2\n")
    assert read_final_metrics(tmp_path / "metrics.csv") == []
    assert "WARNING" in capsys.readouterr().err
    assert plot_learning_curve(tmp_path, rows=[], evals=[]) is None


def test_learning_curve_png(tmp_path: Path) -> None:
    assert plot_learning_curve(tmp_path) is None  # nothing to plot yet
    (tmp_path / "metrics.csv").write_text(HEADER + "".join(f"{i},{50 * i},{40 * i},0,{i},{-5 + i * 0.1},{int(i > 20)}\n"
                                                          for i in range(1, 40)))
    append_csv(tmp_path / "eval.csv", EVAL_FIELDS, {"wall_s": 30, "env_steps": 1500, "updates": 1200, "episodes": 20,
                                                     "success_rate": 0.9, "consecutive_successes": 12,
                                                     "mean_return": 1.0, "checkpoint": "step_1.safetensors"})
    png = plot_learning_curve(tmp_path, title="t")
    assert png is not None and png.read_bytes()[:4] == b"\x89PNG"


def test_workers_comparison(tmp_path: Path) -> None:
    from async_naf.run.commands.experiment import compare, train_command

    for n, curve in {1: [(60, 0.2), (120, 0.5), (240, 0.95)], 2: [(60, 0.5), (120, 0.95)]}.items():
        d = tmp_path / f"workers_{n}"
        d.mkdir()
        for t, sr in curve:
            append_csv(d / "eval.csv", EVAL_FIELDS, {"wall_s": t, "env_steps": 0, "updates": 0, "episodes": 20,
                                                      "success_rate": sr, "consecutive_successes": 0,
                                                      "mean_return": 0, "checkpoint": "x"})
    result = compare(tmp_path, [1, 2], 0.9, "door_pull", criterion="success")
    assert result["runs"]["1"]["time_to_threshold_s"] == 240 and result["runs"]["2"]["time_to_threshold_s"] == 120
    assert result["runs"]["2"]["speedup_vs_fewest"] == 2.0
    assert json.loads((tmp_path / "workers.json").read_text())["threshold"] == 0.9
    assert (tmp_path / "workers.png").read_bytes()[:4] == b"\x89PNG"
    # these eval.csv files predate the strict criterion: its columns read as NaN, never as reached
    strict = compare(tmp_path, [1, 2], 0.9, "door_pull")
    assert strict["criterion"] == "strict" and strict["runs"]["1"]["time_to_threshold_s"] is None
    args = argparse.Namespace(task="door_pull", seed=0, minutes=60.0, eval_every=60.0, eval_episodes=20,
                              threshold=0.9, realtime=True, stop_at_threshold=True, config=None,
                              sets=["trainer.naf.lr=1e-4"], criterion="strict")
    cmd = train_command(args, 4, tmp_path / "workers_4")
    assert cmd[cmd.index("--workers") + 1] == "4" and "--realtime" in cmd and "--stop-at-success" in cmd
    assert cmd[cmd.index("--criterion") + 1] == "strict"
    assert cmd[cmd.index("--set") + 1] == "trainer.naf.lr=1e-4"


@pytest.mark.parametrize("sig_name", ["SIGTERM", "SIGINT"])
def test_experiment_forwards_a_signal_to_its_run_and_waits(tmp_path: Path, sig_name: str) -> None:
    """The experiment's `async-naf train` child leads its own process group (it dies with the experiment);
    SIGTERM or Ctrl-C to the experiment reaches the run as SIGINT and the experiment waits for its exit."""
    import os
    import signal
    import sys
    import threading
    import time

    from async_naf.run.commands.experiment import _Interrupted, _run_child

    ready, out = tmp_path / "ready", tmp_path / "out"
    child = (f"import os, signal, sys, time\n"
             f"def stop(signum, frame):\n"
             f"    open({str(out)!r}, 'w').write(f'{{signum}} {{os.getpgid(0)}}')\n"
             f"    sys.exit(7)\n"
             f"signal.signal(signal.SIGINT, stop)\n"
             f"open({str(ready)!r}, 'w').close()\n"
             f"time.sleep(60)\n")
    sig = getattr(signal, sig_name)

    def send() -> None:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), sig)

    threading.Thread(target=send, daemon=True).start()
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(_Interrupted) as info:
        _run_child([sys.executable, "-c", child])
    assert info.value.signum == sig
    signum, pgid = map(int, out.read_text().split())
    assert signum == signal.SIGINT  # forwarded as SIGINT: the run stops its nodes cleanly
    assert pgid != os.getpgid(0)  # its own process group: a terminal's Ctrl-C reaches only the experiment
    assert signal.getsignal(signal.SIGTERM) is before


def test_parse_sets() -> None:
    from async_naf.run.commands.train import parse_sets

    assert parse_sets(["trainer.naf.lr=3e-4", "policy.noise.scale=0.2", "sim.realtime=true"]) == {
        "/trainer": {"naf.lr": 3e-4}, "/**/policy": {"noise.scale": 0.2}, "/**/sim": {"realtime": True}}
    with pytest.raises(ValueError, match=r"NODE\.PARAM=VALUE"):
        parse_sets(["lr=3"])
    with pytest.raises(ValueError):
        parse_sets(["planner.x=1"])


def test_scientific_notation_in_overrides_is_a_number(tmp_path: Path) -> None:
    """PyYAML reads 1e-3 as a string; ROS reads it as a double: the overrides follow ROS."""
    from async_naf.run.graph import load_overrides

    f = tmp_path / "o.yaml"
    f.write_text("/trainer:\n  ros__parameters:\n    lr: 1e-3\n    hidden_sizes: [64, 64]\n    run_dir: 1e3x\n")
    assert load_overrides(f) == {"/trainer": {"lr": 1e-3, "hidden_sizes": [64, 64], "run_dir": "1e3x"}}


def test_evaluate_command(tmp_path: Path) -> None:
    """`async-naf evaluate` on policy weights and on a full checkpoint; a task mismatch or a corrupt file is a
    clear error (exit status 2), not a traceback."""
    import subprocess
    import sys

    import torch

    from async_naf.learning.agents import NAFConfig, make_agent
    from async_naf.task.tasks import make_task

    torch.set_num_threads(1)
    task = make_task("reach")
    agent = make_agent(NAFConfig(obs_dim=task.obs_dim, act_dim=task.act_dim, action_low=-0.5, action_high=0.5))
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "final.safetensors").write_bytes(agent.policy_weights())
    agent.save(tmp_path / "full.safetensors")

    def evaluate(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "async_naf.run.cli", "evaluate", *args], capture_output=True,
                              text=True, timeout=120)

    out = evaluate("--checkpoint", str(tmp_path), "--task", "reach", "--episodes", "3", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["episodes"] == 3 and len(result["successes"]) == 3 and 0 <= result["success_rate"] <= 1
    assert result["consecutive_successes"] <= 3
    full = evaluate("--checkpoint", str(tmp_path / "full.safetensors"), "--task", "reach", "--episodes", "3", "--json")
    assert full.returncode == 0, full.stderr
    assert json.loads(full.stdout)["returns"] == result["returns"]  # same policy, same seeds, same episodes
    wrong = evaluate("--checkpoint", str(tmp_path), "--task", "door_pull", "--episodes", "1")
    assert wrong.returncode == 2 and "obs_dim" in wrong.stderr and "Traceback" not in wrong.stderr
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 40)
    junk = evaluate("--checkpoint", str(tmp_path / "junk.safetensors"), "--task", "reach")
    assert junk.returncode == 2 and "Traceback" not in junk.stderr


def test_algorithms_comparison_table_and_plot(tmp_path: Path) -> None:
    """Per task and algorithm: final figures averaged over seeds, steps to the threshold per seed (on the
    chosen criterion), one PNG per task, JSON and a markdown table."""
    from async_naf.run.commands.experiment import algorithm_runs, compare_algorithms, train_command

    curves = {("naf", 0): [(1000, 0.2), (2000, 0.9)], ("naf", 1): [(1000, 0.5), (2000, 1.0)],
              ("ddpg", 0): [(1000, 0.0), (2000, 0.1)], ("ddpg", 1): [(1000, 0.0), (2000, 0.95)]}
    for (name, seed), pts in curves.items():
        d = tmp_path / "door_pull" / f"{name}_s{seed}"
        d.mkdir(parents=True)
        for steps, strict in pts:
            row = {"wall_s": steps / 10, "env_steps": steps, "updates": steps, "episodes": 20, "success_rate": 1.0,
                   "consecutive_successes": 20, "mean_return": 0, "checkpoint": "x", "strict_success_rate": strict,
                   "strict_consecutive": 0, "door_angle_median": 1.1}
            append_csv(d / "eval.csv", EVAL_FIELDS, row)
        (d / "summary.json").write_text(json.dumps({"eval_success_rate": 1.0, "eval_strict_success_rate": pts[-1][1],
                                                    "door_angle_final": {"median": 1.0 + seed / 10}, "wall_s": 120}))
    result = compare_algorithms(tmp_path, ["door_pull"], ["naf", "ddpg"], [0, 1], 0.9)
    naf, ddpg = result["table"]["door_pull"]["naf"], result["table"]["door_pull"]["ddpg"]
    assert naf["strict"] == pytest.approx(0.95) and naf["reached"] == 2
    assert [r["steps_to_threshold"] for r in naf["seeds"]] == [2000, 2000]
    assert ddpg["reached"] == 1 and ddpg["seeds"][0]["steps_to_threshold"] is None
    assert naf["door_angle_median"] == pytest.approx(1.05)
    assert (tmp_path / "door_pull.png").read_bytes()[:4] == b"\x89PNG"
    table = (tmp_path / "algorithms.md").read_text()
    assert "| door_pull | naf | 100% | 95% | 1.05 | 2/2 | 2,000, 2,000 |" in table
    args = argparse.Namespace(task="door_pull", tasks=["reach", "door_pull"], algorithms=["naf", "ddpg"],
                              peers=["sac"], seeds=[0, 1], seed=0, minutes=30.0, eval_every=60.0, eval_episodes=20,
                              threshold=0.9, realtime=False, stop_at_threshold=False, config=None, sets=[],
                              criterion="strict", steps=30_000)
    runs = algorithm_runs(args, tmp_path)
    assert len(runs) == 2 * 3 * 2 and runs[0] == ("reach", "naf", 0, tmp_path / "reach" / "naf_s0")
    assert ("door_pull", "sb3_sac", 1, tmp_path / "door_pull" / "sb3_sac_s1") in runs
    cmd = train_command(args, 2, runs[2][3], task="reach", seed=0, algorithm="ddpg")
    assert cmd[cmd.index("--steps") + 1] == "30000" and "trainer.algorithm=ddpg" in cmd
    # not evaluated while it runs: every checkpoint of every 60 s kept (weights only), evaluated after the run
    assert cmd[cmd.index("--eval-every") + 1] == "0"
    assert {"trainer.checkpoint_every_s=60.0", "trainer.save_buffer=false"} <= set(cmd)
    assert any(item.startswith("trainer.keep_checkpoints=") and int(item.split("=")[1]) >= 100_000 for item in cmd)
    args.sets = ["trainer.keep_checkpoints=5"]  # the user's --set comes later and wins
    cmd = train_command(args, 2, runs[2][3], task="reach", seed=0, algorithm="ddpg")
    keeps = [i for i, c in enumerate(cmd) if c.startswith("trainer.keep_checkpoints=")]
    assert len(keeps) == 2 and cmd[keeps[-1]] == "trainer.keep_checkpoints=5"
    args.sets, args.stop_at_threshold = [], True  # a stop needs the evaluations during the run
    cmd = train_command(args, 2, runs[2][3], task="reach", seed=0, algorithm="ddpg")
    assert cmd[cmd.index("--eval-every") + 1] == "60.0" and not any("checkpoint_every_s" in c for c in cmd)
    args.stop_at_threshold = False  # workers and stability runs (no algorithm) are evaluated while they run
    cmd = train_command(args, 2, runs[2][3])
    assert cmd[cmd.index("--eval-every") + 1] == "60.0"


def test_an_algorithms_runs_checkpoints_are_evaluated_after_it_in_the_order_written(tmp_path: Path,
                                                                                    caplog: pytest.LogCaptureFixture
                                                                                    ) -> None:
    """evaluate_saved_checkpoints: one eval.csv row per kept periodic checkpoint, ordered by updates, with the
    counters of that checkpoint and the episodes a live evaluation would run; unreadable counters or a missing
    agent file are logged and skipped; best.safetensors is not touched."""
    import torch

    from async_naf.learning.agents import NAFConfig, make_agent
    from async_naf.run.commands.evaluate import evaluate_checkpoint
    from async_naf.run.commands.train import evaluate_saved_checkpoints
    from async_naf.run.results import read_eval
    from async_naf.task.tasks import make_task

    torch.set_num_threads(1)
    task = make_task("reach")
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    agents = {}
    for i, updates in enumerate((900, 12_000, 4_500)):  # written out of name order on purpose
        agents[updates] = make_agent(NAFConfig(obs_dim=task.obs_dim, act_dim=task.act_dim, action_low=-0.5,
                                               action_high=0.5, seed=i))
        agents[updates].save(ckpt / f"step_{updates:09d}.safetensors")
        (ckpt / f"step_{updates:09d}.json").write_text(json.dumps(
            {"agent": f"step_{updates:09d}.safetensors", "updates": updates, "env_steps": updates + 7,
             "episodes": 3, "wall_s": updates / 1000}))
    (ckpt / "step_000000050.json").write_text("{not json")
    (ckpt / "step_000000060.json").write_text(json.dumps({"updates": 60, "env_steps": 60, "wall_s": 0.1}))
    with caplog.at_level("WARNING", logger="async_naf"):
        rows = evaluate_saved_checkpoints(tmp_path, "reach", 2, seed=3)
    evals = read_eval(tmp_path / "eval.csv")
    assert [e["updates"] for e in evals] == [900, 4_500, 12_000] == [r["updates"] for r in rows]
    assert [e["env_steps"] for e in evals] == [907, 4_507, 12_007] and evals[0]["wall_s"] == pytest.approx(0.9)
    assert all(e["episodes"] == 2 for e in evals)
    direct, _ = evaluate_checkpoint(ckpt / "step_000004500.safetensors", "reach", 2, seed=10_003)
    assert evals[1]["mean_return"] == pytest.approx(direct.eval_row()["mean_return"], abs=1e-3)
    assert "step_000000050.json" in caplog.text and "step_000000060.safetensors" in caplog.text
    assert not (ckpt / "best.safetensors").exists()


def test_the_initial_weights_are_evaluated_but_never_kept_as_the_best(tmp_path: Path) -> None:
    """A checkpoint of 0 updates (a trainer part evaluated before any robot reached it) gets its eval.csv row but
    does not become best.safetensors, even as the first row; the first trained checkpoint does, whatever it
    scores."""
    import torch

    from async_naf.learning.agents import NAFConfig, make_agent
    from async_naf.run.commands.train import PeriodicEvaluator
    from async_naf.run.results import read_eval
    from async_naf.task.tasks import make_task

    torch.set_num_threads(1)
    task = make_task("reach")
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    evaluator = PeriodicEvaluator(tmp_path, "reach", 1, 60.0, seed=0)
    files = {}
    for i, updates in enumerate((0, 0, 700)):
        agent = make_agent(NAFConfig(obs_dim=task.obs_dim, act_dim=task.act_dim, action_low=-0.5, action_high=0.5,
                                     seed=i))
        files[i] = ckpt / f"step_{i:09d}.safetensors"
        agent.save(files[i])
        evaluator.evaluate(files[i], {"updates": updates, "env_steps": updates, "wall_s": i})
        if updates == 0:
            assert evaluator.best is None and not (ckpt / "best.safetensors").exists()
    assert [e["updates"] for e in read_eval(tmp_path / "eval.csv")] == [0, 0, 700]
    assert evaluator.best is not None and evaluator.best["updates"] == 700
    assert (ckpt / "best.safetensors").read_bytes() == files[2].read_bytes()


def test_peer_trains_and_is_evaluated_like_a_run(tmp_path: Path) -> None:
    """A Stable-Baselines3 peer on the same environment writes eval.csv and summary.json with the fields the
    comparison reads (a short SAC run on reach: the plumbing, not the learning)."""
    pytest.importorskip("stable_baselines3", reason="the peers' optional dependency (requirements.txt pins it)")
    from async_naf.run.peers import train_peer
    from async_naf.run.results import read_eval

    summary = train_peer("sac", "reach", 0, 1_100, tmp_path / "sac", eval_every=550, eval_episodes=2,
                         final_episodes=3)
    evals = read_eval(tmp_path / "sac" / "eval.csv")
    assert [e["env_steps"] for e in evals] == [550, 1100] and evals[-1]["updates"] > 0
    assert summary["env_steps"] == 1_100 and summary["eval_episodes"] == 3
    assert 0.0 <= summary["eval_strict_success_rate"] <= summary["eval_success_rate"] + 1e-9 <= 1.0 + 1e-9
    assert json.loads((tmp_path / "sac" / "summary.json").read_text())["algorithm"] == "sb3_sac"


def test_collector_counts_sum_the_collectors_final_counters(tmp_path: Path) -> None:
    from async_naf.run.results import collector_counts

    assert collector_counts(tmp_path) == {"collectors": {}, "transitions_lost": {}, "episode_stats_lost": {},
                                          "resent": {}}
    folder = tmp_path / "collectors"
    folder.mkdir()
    (folder / "robot_0.json").write_text(json.dumps({"lost_with_trainer": 514, "lost_transitions": 0,
                                                     "resent_transitions": 417, "resent_episode_stats": 8}))
    (folder / "robot_1.json").write_text(json.dumps({"lost_with_trainer": 530, "lost_episode_stats": 2,
                                                     "resent_transitions": 386}))
    (folder / "robot_2.json").write_text("{not json")  # a collector killed while writing: skipped
    out = collector_counts(tmp_path)
    assert sorted(out["collectors"]) == ["robot_0", "robot_1"]
    assert out["transitions_lost"] == {"lost_transitions": 0, "unconfirmed_transitions": 0, "lost_with_trainer": 1044,
                                       "unsent_at_exit_transitions": 0}
    assert out["episode_stats_lost"] == {"lost_episode_stats": 2, "unconfirmed_episode_stats": 0,
                                         "unsent_at_exit_episode_stats": 0}
    assert out["resent"] == {"resent_transitions": 803, "resent_episode_stats": 8}


def test_a_robots_part_says_when_its_robots_hear_lose_and_regain_the_trainer(tmp_path: Path) -> None:
    """RobotsWatch reads the collectors' counters files as they are rewritten: one line per change of a robot's
    trainer, a warning once if no robot heard one after no_trainer_warn_s, progress lines, and closing lines."""
    from async_naf.run.results import RobotsWatch

    folder = tmp_path / "collectors"
    folder.mkdir()

    def write(robot: str, **counts: int) -> None:
        (folder / f"{robot}.json").write_text(json.dumps({"episodes": 0, "transitions_sent": 0, **counts}))

    watch = RobotsWatch(tmp_path, ["robot_0", "robot_1"], hint="same ROS_DOMAIN_ID?", no_trainer_warn_s=30.0,
                        progress_every_s=60.0, poll_s=2.0)
    assert watch.poll(0.0) == []  # no file yet: nothing to say
    write("robot_0", trainer_heard=0, trainer_listening=0)
    write("robot_1", trainer_heard=0, trainer_listening=0)
    assert watch.poll(10.0) == []
    lines = watch.poll(31.0)
    assert len(lines) == 1 and lines[0].startswith("WARNING: no trainer heard after 31 s")
    assert "same ROS_DOMAIN_ID?" in lines[0]
    assert watch.poll(40.0) == []  # warned once
    write("robot_0", trainer_heard=1, trainer_listening=1, episodes=3, transitions_sent=150)
    assert watch.poll(41.0) == []  # read every poll_s: not yet
    assert watch.poll(42.0) == ["robot_0: trainer heard on /trainer/transitions; its episodes start"]
    write("robot_0", trainer_heard=1, trainer_listening=0, episodes=5, transitions_sent=250, backlog_transitions=40)
    lines = watch.poll(50.0)
    assert lines == ["WARNING: robot_0: trainer gone; 40 transitions kept to send (0 lost so far)"]
    write("robot_0", trainer_heard=1, trainer_listening=1, episodes=9, transitions_sent=450, backlog_transitions=10)
    assert watch.poll(55.0) == ["robot_0: trainer back; 10 transitions still to send"]
    assert watch.poll(61.0) == ["robots at 1.0 min: 9 episodes, 450 transitions sent, backlog 10, 0 lost"]
    (folder / "robot_1.json").write_text("{half a fi")  # being replaced: the last good read stands
    assert watch.poll(64.0) == []
    # lost: every reason summary.json counts (the progress line said 0 while unconfirmed ones piled up)
    write("robot_0", trainer_heard=1, trainer_listening=0, episodes=9, transitions_sent=450, lost_transitions=2,
          unconfirmed_transitions=5)
    assert watch.final() == ["  robot_0: 9 episodes, 450 transitions sent, 7 lost (by reason in summary.json: "
                             "transitions_lost)",
                             "  robot_1: 0 episodes, 0 transitions sent, 0 lost (by reason in summary.json: "
                             "transitions_lost)"]
    # no robot ever heard a trainer: the closing lines say so
    quiet = RobotsWatch(tmp_path, ["robot_1", "robot_5"], hint="check discovery", progress_every_s=0.0)
    write("robot_1", trainer_heard=0, trainer_listening=0)
    assert quiet.poll(100.0) == ["WARNING: no trainer heard after 100 s: the robots wait for one on "
                                 "/trainer/transitions; check discovery"]  # no progress lines with progress_every_s 0
    final = quiet.final()
    assert final[1].startswith("  robot_5: no counters") and final[-1] == (
        "WARNING: no robot heard a trainer on /trainer/transitions: nothing was trained; check discovery")
    # heard and gone between two polls: both said (the gone line was skipped)
    write("robot_1", trainer_heard=1, trainer_listening=0, backlog_transitions=3)
    assert quiet.poll(200.0) == ["robot_1: trainer heard on /trainer/transitions; its episodes start",
                                 "WARNING: robot_1: trainer gone; 3 transitions kept to send (0 lost so far)"]


def test_evaluation_says_why_a_still_arm_fails_the_door() -> None:
    """A policy that never moves: the embedded sim's door stays latched, each episode fails as handle_not_turned."""
    import numpy as np

    from async_naf.run.commands.evaluate import evaluate_policy

    class Still:
        obs_dim, act_dim = 22, 7

        def act(self, obs):
            return np.zeros(7, np.float32)

    result = evaluate_policy(Still(), "door_pull", 2, seed=3)
    assert result.successes == (False, False) and result.failures == ("handle_not_turned",) * 2


def test_eval_csv_says_why_episodes_failed_and_an_older_file_keeps_its_columns(tmp_path: Path) -> None:
    """A periodic evaluation's row carries the failure counts (text column); an eval.csv written before that
    column (or before the strict criterion) is continued under its own header, never misaligned."""
    from async_naf.run.results import EvalResult, read_eval

    result = EvalResult(successes=(True, False, False), returns=(1.0, 0.0, 0.0),
                        failures=("", "closed_again", "too_little"))
    row = {"wall_s": 60, "env_steps": 3000, "updates": 2500, **result.eval_row(), "checkpoint": "step_2.safetensors"}
    assert row["failures"] == "closed_again 1, too_little 1"
    append_csv(tmp_path / "eval.csv", EVAL_FIELDS, row)
    (got,) = read_eval(tmp_path / "eval.csv")
    assert got["failures"] == "closed_again 1, too_little 1" and got["checkpoint"] == "step_2.safetensors"
    assert got["success_rate"] == pytest.approx(1 / 3)
    # an older run's file: the first eight columns only; a resumed run appends to it
    old = tmp_path / "old" / "eval.csv"
    old.parent.mkdir()
    old.write_text("wall_s,env_steps,updates,episodes,success_rate,consecutive_successes,mean_return,checkpoint\n"
                   "30,1500,1200,20,0.5,3,1.0,step_1.safetensors\n")
    append_csv(old, EVAL_FIELDS, row)
    rows = read_eval(old)
    assert [r["checkpoint"] for r in rows] == ["step_1.safetensors", "step_2.safetensors"]
    assert [r["env_steps"] for r in rows] == [1500.0, 3000.0] and rows[1]["success_rate"] == pytest.approx(1 / 3)
    assert rows[1]["failures"] == "" and math.isnan(rows[1]["strict_success_rate"])  # columns the file lacks


def _eval_rows(d: Path, rows: list[tuple[float, float, float]]) -> None:
    """eval.csv of (wall_s, success_rate, strict_success_rate) rows, env steps 1,000 per minute."""
    d.mkdir(parents=True, exist_ok=True)
    for wall, success, strict in rows:
        append_csv(d / "eval.csv", EVAL_FIELDS, {
            "wall_s": wall, "env_steps": wall * 1000 / 60, "updates": 0, "episodes": 20, "success_rate": success,
            "consecutive_successes": 0, "mean_return": 0, "checkpoint": "x", "strict_success_rate": strict,
            "strict_consecutive": 0, "door_angle_median": 1.2})


def test_stability_counts_what_came_after_the_first_evaluation_at_the_threshold() -> None:
    from async_naf.run.results import stability

    def evals(rates: list[float]) -> list[dict[str, float]]:
        return [{"wall_s": 60.0 * (i + 1), "env_steps": 1000.0 * (i + 1), "r": v} for i, v in enumerate(rates)]

    held = stability(evals([0.2, 0.9, 1.0, 0.95, 1.0]), "r", 0.9, 20)
    assert held["first_index"] == 1 and held["first_wall_s"] == 120 and held["first_env_steps"] == 2000
    assert held["later"] == 3 and held["later_below"] == 0 and held["lowest_later"] == 0.95 and held["held"]
    assert held["failed_episodes_after"] == 1 and held["failure_rate_after"] == pytest.approx(1 / 60)
    dipped = stability(evals([0.95, 1.0, 0.85, float("nan"), 1.0, 0.5]), "r", 0.9, 20)
    assert dipped["first_index"] == 0 and dipped["later"] == 4 and dipped["later_below"] == 2  # NaN: not scored
    assert dipped["lowest_later"] == 0.5 and dipped["failed_episodes_after"] == 3 + 10 and not dipped["held"]
    never = stability(evals([0.1, 0.85]), "r", 0.9, 20)
    assert never["first_index"] is None and never["later"] == 0 and never["failure_rate_after"] is None
    assert not never["held"]
    counted = evals([1.0, 0.9, 0.5])
    counted[1]["episodes"], counted[2]["episodes"] = 10.0, float("nan")  # a row's own count; none: the default
    mixed = stability(counted, "r", 0.9, 20)
    assert mixed["failed_episodes_after"] == 1 + 10 and mixed["later_episodes"] == 30
    assert mixed["failure_rate_after"] == pytest.approx(11 / 30)
    last = stability(evals([0.1, 0.95]), "r", 0.9, 20)  # reached at the last evaluation: nothing shows it held
    assert last["first_index"] == 1 and last["later"] == 0 and not last["held"]
    with pytest.raises(ValueError, match="episodes"):
        stability(evals([1.0]), "r", 0.9, 0)


def test_stability_experiment_runs_one_seed_after_the_other_and_reports_both_criteria(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """``async-naf experiment stability``: one `async-naf train` per seed, in order, each finished before the next
    starts; then stability.json / stability.md from their eval.csv and summary.json. ``--analyze`` reads the runs
    already there without starting any."""
    from async_naf.run import cli
    from async_naf.run.commands import experiment

    curves = {0: [(60, 0.5, 0.0), (120, 1.0, 0.9), (180, 1.0, 1.0), (240, 1.0, 0.95)],
              1: [(60, 0.95, 0.3), (120, 0.85, 0.9), (180, 1.0, 0.8), (240, 0.9, 1.0)]}
    started: list[int] = []

    def fake_run(cmd: list[str]) -> int:  # what `async-naf train` leaves in its run directory
        seed = int(cmd[cmd.index("--seed") + 1])
        assert cmd[cmd.index("--task") + 1] == "door_push" and cmd[cmd.index("--workers") + 1] == "2"
        assert all((tmp_path / "door_push" / f"s{s}" / "summary.json").exists() for s in started)  # one at a time
        started.append(seed)
        d = Path(cmd[cmd.index("--run-dir") + 1])
        _eval_rows(d, curves[seed])
        (d / "summary.json").write_text(json.dumps({"env_steps": 1000, "updates": 990 - 300 * seed,
                                                    "eval_success_rate": 1.0, "eval_strict_success_rate": 0.95,
                                                    "strict_consecutive": 12, "wall_s": 240}))
        return 0

    monkeypatch.setattr(experiment, "_run_child", fake_run)
    argv = ["experiment", "stability", "--task", "door_push", "--seeds", "0", "1", "--out", str(tmp_path)]
    assert cli.main(argv) == 2  # --minutes is required to run
    assert cli.main(argv + ["--minutes", "4", "--stop-at-threshold"]) == 2  # nothing after the threshold to score
    assert cli.main(argv + ["--minutes", "4"]) == 0 and started == [0, 1]
    assert cli.main(argv + ["--minutes", "4"]) == 2 and started == [0, 1]  # runs there: neither replaced nor rescored
    result = json.loads((tmp_path / "stability.json").read_text())
    s0, s1 = result["runs"]
    assert s0["success"]["held"] and s0["strict"]["held"] and s0["strict"]["failed_episodes_after"] == 1
    assert s1["success"]["first_index"] == 0 and s1["success"]["later_below"] == 1 and not s1["success"]["held"]
    assert s1["strict"]["first_index"] == 1 and s1["strict"]["lowest_later"] == 0.8 and not s1["strict"]["held"]
    assert result["held"] == {"success": 1, "strict": 1}
    assert s0["updates_per_env_step"] == pytest.approx(0.99) and s1["updates_per_env_step"] == pytest.approx(0.69)
    table = (tmp_path / "stability.md").read_text()
    assert "success: 1 of 2 seeds, strict: 1 of 2" in table
    assert "| 1 | strict | 2.0, 2,000 | 1 of 2 | 80% | 4 of 40 (10.0%) | 0.69 | 100% / 95% (12) |" in table
    started.clear()
    (tmp_path / "stability.json").unlink()
    assert cli.main(["experiment", "stability", "--analyze", "--task", "door_push", "--seeds", "1", "--out",
                     str(tmp_path)]) == 0
    assert started == [] and json.loads((tmp_path / "stability.json").read_text())["seeds"] == [1]
    assert cli.main(["experiment", "stability", "--analyze", "--task", "door_push", "--seeds", "7", "--out",
                     str(tmp_path)]) == 2  # nothing to read
    assert "no eval.csv for seed(s) 7" in capsys.readouterr().err
    assert cli.main(["experiment", "workers", "--analyze", "--minutes", "1", "--out", str(tmp_path)]) == 2
    assert started == []


@pytest.mark.parametrize("experiment_name", ["workers", "algorithms"])
def test_an_experiment_refuses_to_score_earlier_runs(tmp_path: Path, monkeypatch, capsys, experiment_name) -> None:
    """experiment workers into an --out holding an earlier run: the child run refused, and the experiment then
    reported and plotted the earlier run's time as this one's (exit 1). Now it refuses before any run."""
    from async_naf.run import cli
    from async_naf.run.commands import experiment

    started: list[list[str]] = []
    monkeypatch.setattr(experiment, "_run_child", lambda cmd: started.append(cmd) or 0)
    if experiment_name == "workers":
        earlier = tmp_path / "workers_1"
        argv = ["experiment", "workers", "--workers", "1", "--minutes", "1", "--out", str(tmp_path)]
    else:
        earlier = tmp_path / "reach" / "naf_s0"
        argv = ["experiment", "algorithms", "--tasks", "reach", "--algorithms", "naf", "--seeds", "0", "--steps",
                "100", "--minutes", "1", "--out", str(tmp_path)]
    earlier.mkdir(parents=True)
    (earlier / "summary.json").write_text("{}")
    assert cli.main(argv) == 2 and started == []
    assert f"earlier runs in {earlier}" in capsys.readouterr().err


def test_compare_runs_reads_an_eval_csv_with_its_text_columns(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """benchmarks/compare_runs.py read every column but the checkpoint as a number and failed on the failures
    column every eval.csv has had since 2026-12-03 (ValueError: could not convert string to float: '')."""
    import importlib.util

    from async_naf.run.results import EVAL_FIELDS, append_csv

    runs = []
    for name, rates in (("a", (0.2, 0.95, 1.0)), ("b", (0.0, 0.5, 0.6))):
        run = tmp_path / name
        run.mkdir()
        for i, rate in enumerate(rates):
            append_csv(run / "eval.csv", EVAL_FIELDS, {
                "wall_s": 60.0 * (i + 1), "env_steps": 1000 * (i + 1), "updates": 900 * (i + 1), "episodes": 20,
                "success_rate": rate, "consecutive_successes": 3, "mean_return": 1.0, "checkpoint": f"s{i}",
                "strict_success_rate": rate, "strict_consecutive": 2, "door_angle_median": 0.5,
                "failures": "" if rate == 1.0 else "too_little 2"})
        runs.append(str(run))
    spec = importlib.util.spec_from_file_location("compare_runs", Path(__file__).resolve().parents[1] / "benchmarks"
                                                  / "compare_runs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([*runs, "--labels", "A", "B", "--out", str(tmp_path / "cmp.png")]) == 0
    said = capsys.readouterr().out
    assert "A: first >= 90% at 2000 env steps, 2.0 min; 100% of the 2 evaluations" in said
    assert "B: never at or above 90% in 3 evaluations" in said and (tmp_path / "cmp.png").stat().st_size > 0


def test_the_discovery_server_command_line_is_checked() -> None:
    """`async-naf discovery-server`: the wheels' fast-discovery-server with its options; bad values refused."""
    from async_naf.common.ros_env import discovery_variables
    from async_naf.run.commands.discovery_server import client_address, server_binary, server_command

    # Fast DDS reads a server's id from its place in ROS_DISCOVERY_SERVER: id 1 comes after one ';'
    assert client_address("10.0.0.5", 11811, 0) == "10.0.0.5:11811"
    assert client_address("10.0.0.5", 11812, 1) == ";10.0.0.5:11812"
    assert client_address("fd00::5", 11811, 0) == "[fd00::5]:11811"  # what Fast DDS reads as address and port
    assert discovery_variables(server=client_address("10.0.0.5", 11812, 1))["ROS_DISCOVERY_SERVER"] == ";10.0.0.5:11812"

    assert server_command("/x/fast-discovery-server", "192.168.1.20", 11811, 0) == [
        "/x/fast-discovery-server", "-i", "0", "-l", "192.168.1.20", "-p", "11811"]
    for address, port, sid in (("", 11811, 0), ("10.0.0.1", 0, 0), ("10.0.0.1", 70000, 0), ("10.0.0.1", 1, 256)):
        with pytest.raises(ValueError):
            server_command("/x/fds", address, port, sid)
    assert server_binary() is not None  # the rclpy wheels of `make setup` ship it
