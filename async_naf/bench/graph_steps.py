"""What the training graph costs per environment step (``async-naf bench --only graph_env_steps_per_s``).

Starts the real training graph (door_pull, 2 workers, lockstep, the trainer at ``updates_per_step`` 1, i.e.
one NAF update per environment step once its buffer holds ``min_buffer_size`` transitions) with the launcher
``async-naf train`` uses, on a private ``ROS_DOMAIN_ID``, loopback-only. A probe node reads the trainer's
``/diagnostics`` (``env_steps``, ``updates``). After a warm-up (updates running, every node started) it
measures over a fixed number of environment steps:

- ``graph_env_steps_per_s``: environment steps (all robots) per second of wall time;
- ``graph_cpu_ms_per_step``: CPU time (user + system, every thread, from ``/proc/<pid>/stat``) of every
  graph process over the window, per environment step; ``graph_cpu_ms_per_step_<process>`` per process
  (``robot_0.sim``, ..., or ``robot_0`` for a composed robot, ``trainer``): where the CPU goes;
- ``graph_updates_per_step``: NAF updates per environment step over the window (about 1: the window opens
  once the trainer has caught up with the steps made before it reached ``min_buffer_size``, or after a
  second warm-up if it cannot);

and then, in the same bench run and process, without ROS:

- ``env_steps_per_s``: ``ArmDoorEnv`` (door_pull) steps per second (one core);
- ``naf_update_ms``: one NAF update (batch 64, 2x100, one thread; the ``naf_updates_per_s`` network);
- ``graph_efficiency`` = graph_env_steps_per_s / env_steps_per_s (goal >= 0.5);
- ``graph_cpu_ratio`` = graph_cpu_ms_per_step / (1000 / env_steps_per_s + naf_update_ms) (goal <= 2).

Then, to tell the graph's own overhead from the cost of sharing the cores (the graph runs ``workers`` + 1
busy processes on this machine's cores; the figures above are each measured alone, at the machine's best):

- ``env_ms_contended``, ``naf_update_ms_contended``: CPU ms per ``ArmDoorEnv`` step and per NAF update
  while ``workers`` processes step the env and one makes updates, all at once for a few seconds, no ROS;
- ``graph_cpu_ratio_contended`` = graph_cpu_ms_per_step / (env_ms_contended + naf_update_ms_contended):
  what the graph costs beyond the same work sharing the cores the same way (a diagnostic beside the goal,
  not the goal's figure).

``composition`` selects the process layout (:data:`LAYOUTS`, env ``ASYNC_NAF_BENCH_COMPOSITION``): ``none``
(one process per node), ``robot`` (one per robot, messages between its nodes handed over in the process),
``robot_dds`` (one per robot, messages through DDS). The machine's load average is reported beside the
figures (``load_avg_1min``): compare ratios measured in one run, not absolute figures across runs on a
shared machine.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) from ``/proc/<pid>/stat``; 0 if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text.rpartition(")")[2].split()  # after "(comm)", which may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15 of proc(5))


def _work(kind: str) -> Callable[[], None]:
    """One call of the graph's work without ROS: ``env`` steps ``ArmDoorEnv`` (door_pull, random actions,
    reset at the time limit); ``update`` makes one NAF update (batch 64, 2x100: the ``naf_updates_per_s``
    network) on a filled buffer, with torch on one thread (the caller's setting: see
    :func:`_in_process_costs`)."""
    import numpy as np

    if kind == "env":
        from async_naf.run.env import ArmDoorEnv

        env = ArmDoorEnv("door_pull", seed=0)
        env.reset()
        rng = np.random.default_rng(0)
        actions = rng.uniform(env.task.action_low, env.task.action_high, (256, env.task.act_dim))
        counter = {"i": 0}

        def env_step() -> None:
            i = counter["i"] = counter["i"] + 1
            if env.step(actions[i % 256])[3]:  # truncated
                env.reset()
        return env_step
    if kind == "update":
        from async_naf.bench.agents import ACT_DIM, BATCH, HIDDEN, OBS_DIM, _filled_buffer
        from async_naf.learning.agents.naf import NAFAgent, NAFConfig

        buf = _filled_buffer()
        agent = NAFAgent(NAFConfig(OBS_DIM, ACT_DIM, hidden_sizes=HIDDEN, batch_size=BATCH))

        def update() -> None:
            agent.update(buf.sample(BATCH))
        return update
    raise ValueError(f"unknown work {kind!r}")


def _in_process_costs(quick: bool) -> dict[str, float]:
    """ArmDoorEnv steps/s and one NAF update (ms), measured here without ROS."""
    import torch

    from async_naf.bench.sim import _rate

    env_rate = _rate(_work("env"), 500 if quick else 2000, 2 if quick else 3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        update = _work("update")
        n = 300 if quick else 1500
        for _ in range(50):
            update()
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(n):
                update()
            best = min(best, (time.perf_counter() - t0) / n)
    finally:
        torch.set_num_threads(threads)
    return {"env_steps_per_s": round(env_rate, 1), "naf_update_ms": round(best * 1e3, 3)}


def _work_loop(kind: str, seconds: float) -> dict[str, float]:
    """Run one kind of :func:`_work` for ``seconds`` of wall time (updates with torch on one thread); returns the
    calls made and this process's CPU seconds (all threads) spent making them."""
    if kind == "update":
        import torch

        torch.set_num_threads(1)
    work = _work(kind)
    for _ in range(50):  # warm-up (first calls allocate)
        work()
    n, c0, t0 = 0, time.process_time(), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        work()
        n += 1
    return {"calls": n, "cpu_s": time.process_time() - c0}


def _contended_costs(workers: int, seconds: float) -> dict[str, float]:
    """The in-process costs again, measured with as many busy processes sharing the cores as the graph has
    (``workers`` processes stepping ``ArmDoorEnv``, one making NAF updates, all at once): CPU ms per env
    step and per update when the work alone shares the machine the way the graph's processes do. The
    graph's CPU per step over their sum is the part of ``graph_cpu_ratio`` that is not sharing the cores."""
    import json
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    kinds = ["env"] * workers + ["update"]
    procs = [subprocess.Popen([sys.executable, "-m", "async_naf.bench.graph_steps", "--work", kind, str(seconds)],
                              stdout=subprocess.PIPE, text=True, env=env) for kind in kinds]
    results = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=seconds + 120)
            if proc.returncode != 0:
                raise RuntimeError(f"graph bench: a contended work process exited with {proc.returncode}")
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    env_ms = sum(r["cpu_s"] for r in results[:-1]) * 1e3 / sum(r["calls"] for r in results[:-1])
    update_ms = results[-1]["cpu_s"] * 1e3 / results[-1]["calls"]
    return {"env_ms_contended": round(env_ms, 3), "naf_update_ms_contended": round(update_ms, 3)}


LAYOUTS = {"none": ("none", True), "robot": ("robot", True), "robot_dds": ("robot", False)}


def measure_graph(workers: int = 2, composition: str = "none", steps: int = 3000, warmup_steps: int = 1500,
                  task: str = "door_pull", timeout_s: float = 600.0, keep_dir: str | None = None,
                  record: bool = False, realtime: bool = False) -> dict[str, Any]:
    """Run the graph and measure one window of ``steps`` environment steps after ``warmup_steps``.

    ``composition``: a process layout of :data:`LAYOUTS`: ``none`` (a process per node), ``robot`` (a process
    per robot, messages between its nodes handed over in the process) or ``robot_dds`` (a process per robot,
    messages between its nodes through DDS). ``record``: the graph with its ``/recorder`` (``async-naf train
    --record``), the bag in ``keep_dir/run/bag`` (read it before ``keep_dir`` goes). ``realtime``: the sims
    paced to wall time at the control rate, as real robots (``async-naf train --realtime``), not lockstep.

    Returns:
        ``graph_env_steps_per_s``, ``graph_cpu_ms_per_step``, ``graph_cpu_ms_per_step_<process>``,
        ``graph_updates_per_step``, ``graph_workers``, ``graph_composition``, ``graph_window_steps``,
        ``graph_window_ns`` (the window's start and end, wall clock, ns).

    Raises:
        RuntimeError: the graph did not reach the warm-up or the window within ``timeout_s``, or a process died.
    """
    from async_naf.bench.graph import _BENCH_DOMAIN, _Probe
    from async_naf.common.ros_env import ros_environment
    from async_naf.run.graph import GraphConfig, build_graph, compose, config_overrides
    from async_naf.run.launcher import GraphLauncher, composed_process_specs, tail

    if composition not in LAYOUTS:
        raise ValueError(f"unknown layout {composition!r}; choose one of {', '.join(LAYOUTS)}")
    layout, intra_process = LAYOUTS[composition]
    tmp = Path(keep_dir) if keep_dir else Path(tempfile.mkdtemp(prefix="async_naf_graphbench_"))
    overrides = config_overrides(None, task=task)
    overrides.setdefault("/trainer", {}).update(
        {"updates_per_step": 1.0, "tensorboard": False, "checkpoint_every_s": 0.0, "save_buffer": False,
         "weights_every_updates": 100})
    config = GraphConfig(task=task, workers=workers, run_dir=str(tmp / "run"), overrides=overrides,
                         composition=layout, intra_process=intra_process, record=record, realtime=realtime)
    specs = composed_process_specs(compose(build_graph(config), layout, intra_process), tmp / "params")
    env = ros_environment(domain_id=_BENCH_DOMAIN)
    env.setdefault("OMP_NUM_THREADS", "1")
    launcher = GraphLauncher(specs, log_dir=tmp / "logs", env=env)
    probe = None
    try:
        launcher.start()
        probe = _Probe()
        latest: dict[str, float] = {}

        def on_diag(msg: Any) -> None:
            for status in msg.status:
                if status.name == "/trainer":
                    values = {kv.key: kv.value for kv in status.values}
                    latest.update(env_steps=float(values["env_steps"]), updates=float(values["updates"]),
                                  t=time.perf_counter())

        from diagnostic_msgs.msg import DiagnosticArray

        probe.node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 50)
        deadline = time.monotonic() + timeout_s

        def wait_steps(n: float, what: str) -> None:
            while latest.get("env_steps", -1.0) < n:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"graph bench: timed out waiting for {what} ({latest})")
                dead = {k: rc for k, rc in launcher.returncodes().items() if rc is not None}
                if dead:
                    raise RuntimeError(f"graph bench: processes exited: {dead}")
                probe.executor.spin_once(timeout_sec=0.05)

        wait_steps(warmup_steps, "the warm-up")
        # the trainer starts updating at min_buffer_size and then catches up (updates_per_step 1 counts from
        # the run's start): a window opened while it catches up charges those extra updates to its steps.
        # Wait until it has caught up, or until another warm-up's worth of steps (a trainer that cannot keep
        # up, e.g. with many workers: graph_updates_per_step then says so)
        caught_up_by = latest["env_steps"] + warmup_steps
        while latest["updates"] < 0.99 * latest["env_steps"] and latest["env_steps"] < caught_up_by:
            wait_steps(latest["env_steps"] + 1, "the trainer catching up")
        pids = launcher.pids
        s0, u0 = latest["env_steps"], latest["updates"]
        t0, c0 = time.perf_counter(), {k: proc_cpu_s(p) for k, p in pids.items()}
        w0 = time.time_ns()
        wait_steps(s0 + steps, "the measured window")
        s1, u1 = latest["env_steps"], latest["updates"]
        t1, c1 = time.perf_counter(), {k: proc_cpu_s(p) for k, p in pids.items()}
        w1 = time.time_ns()
        n = s1 - s0
        per = {k: (c1[k] - c0[k]) * 1e3 / n for k in pids}
        out: dict[str, Any] = {
            "graph_env_steps_per_s": round(n / (t1 - t0), 1),
            "graph_cpu_ms_per_step": round(sum(per.values()), 3),
            "graph_updates_per_step": round((u1 - u0) / n, 3),
            "graph_workers": workers, "graph_composition": composition, "graph_window_steps": int(n),
            "graph_window_ns": (w0, w1),
        }
        out.update({f"graph_cpu_ms_per_step_{k}": round(v, 3) for k, v in sorted(per.items())})
        return out
    except RuntimeError as exc:
        logs = "\n".join(f"--- {s.key}\n{tail(launcher.log_path(s.key), 8)}" for s in specs)
        raise RuntimeError(f"{exc}\n{logs}") from exc
    finally:
        if probe is not None:
            probe.close()
        launcher.stop()
        if not keep_dir:
            shutil.rmtree(tmp, ignore_errors=True)


def bench_graph_steps(quick: bool = False, workers: int = 2, composition: str | None = None) -> dict[str, Any]:
    """``graph_env_steps_per_s`` and the figures beside it (module docstring). ``composition``: the graph's
    process layout (default: ``ASYNC_NAF_BENCH_COMPOSITION`` or ``robot``, the graph's default). The
    in-process costs are measured twice: alone, and with the cores shared as in the graph
    (:func:`_contended_costs`)."""
    composition = composition or os.environ.get("ASYNC_NAF_BENCH_COMPOSITION", "robot")
    # the window: about 7 s at 1,700 steps/s (3,000 steps, 2 s, varied by +-10 % from run to run); the
    # in-process costs first, on a machine without the graph's processes (still exiting after it)
    steps, warmup = (1000, 1200) if quick else (12000, 1500)
    costs = _in_process_costs(quick)
    out = measure_graph(workers=workers, composition=composition, steps=steps, warmup_steps=warmup)
    out.pop("graph_window_ns")
    out.update(costs)
    out["graph_efficiency"] = round(out["graph_env_steps_per_s"] / out["env_steps_per_s"], 3)
    budget_ms = 1e3 / out["env_steps_per_s"] + out["naf_update_ms"]
    out["graph_cpu_ratio"] = round(out["graph_cpu_ms_per_step"] / budget_ms, 2)
    out.update(_contended_costs(workers, 2.0 if quick else 6.0))
    shared_ms = out["env_ms_contended"] + out["naf_update_ms_contended"]
    out["graph_cpu_ratio_contended"] = round(out["graph_cpu_ms_per_step"] / shared_ms, 2)
    out["load_avg_1min"] = round(os.getloadavg()[0], 2)
    return out


if __name__ == "__main__":  # pragma: no cover
    import json
    import sys

    if sys.argv[1:2] == ["--work"]:  # one of _contended_costs's processes
        print(json.dumps(_work_loop(sys.argv[2], float(sys.argv[3]))))
    else:
        print(json.dumps(bench_graph_steps(quick="--quick" in sys.argv,
                                           composition="robot" if "--robot" in sys.argv else None)))
