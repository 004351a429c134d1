"""The launcher starts real processes and never leaves one behind (Ctrl-C, SIGTERM, SIGKILL, dying nodes).

Process-hygiene tests use small Python child processes (stubborn ones that ignore SIGINT or SIGTERM, one that
starts a grandchild in its process group), so each escalation step is exercised; the launcher is generic.
A last test starts a real node graph (sim + door_angle) and stops it with SIGINT.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from async_naf.run.launcher import GraphLauncher, Outcome, ProcessSpec

# A child that writes its pid (and optionally a grandchild's) to a file, then waits forever.
CHILD = textwrap.dedent("""
    import os, signal, subprocess, sys, time
    out, mode = sys.argv[1], sys.argv[2]
    if mode in ("ignore_int", "ignore_all"):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if mode == "ignore_all":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    pids = [os.getpid()]
    if mode == "grandchild":
        # a stubborn grandchild: only the launcher's final SIGKILL to the whole process group ends it
        gc = subprocess.Popen([sys.executable, "-c", "import signal, time\\n"
                               "signal.signal(signal.SIGINT, signal.SIG_IGN)\\n"
                               "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
                               f"open({out!r} + '.gc', 'w').close()\\n"
                               "while True: time.sleep(1)"])
        while not os.path.exists(out + ".gc"):  # handlers in place before we report ready
            time.sleep(0.01)
        pids.append(gc.pid)
    with open(out + ".tmp", "w") as fh:
        fh.write(" ".join(map(str, pids)))
    os.replace(out + ".tmp", out)
    while True:
        time.sleep(0.2)
""")

# A launcher in its own process (so the test can SIGINT / SIGKILL it like a user or the OOM killer would).
DRIVER = textwrap.dedent("""
    import sys
    from async_naf.run.launcher import GraphLauncher, ProcessSpec
    child, tmp, modes = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
    specs = [ProcessSpec(key=f"n{i}_{m}", argv=(sys.executable, child, f"{tmp}/pid_{i}", m),
                         stop_timeout_s=1.0, term_timeout_s=1.0) for i, m in enumerate(modes)]
    launcher = GraphLauncher(specs, log_dir=f"{tmp}/logs")
    result = launcher.run()
    print("OUTCOME", result.outcome.value, flush=True)
""")


def _alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def _read_pids(tmp: Path, n: int, timeout_s: float = 30.0) -> list[int]:
    files = [tmp / f"pid_{i}" for i in range(n)]
    _wait_for(lambda: all(f.exists() for f in files), timeout_s, "children to start")
    return [int(p) for f in files for p in f.read_text().split()]


@pytest.fixture
def child_script(tmp_path: Path) -> Path:
    path = tmp_path / "child.py"
    path.write_text(CHILD)
    return path


def _start_driver(tmp_path: Path, child: Path, modes: str, sigint_ignored: bool = False) -> subprocess.Popen:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    # sigint_ignored: how a non-interactive shell starts a background job (`cmd &`)
    pre = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None
    return subprocess.Popen([sys.executable, str(driver), str(child), str(tmp_path), modes],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=pre)


def _cleanup(pids: list[int]) -> None:
    for pid in pids:  # only if a test failed: never leave our own children behind
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize(("sig", "sigint_ignored"), [(signal.SIGINT, False), (signal.SIGTERM, False),
                                                     (signal.SIGINT, True)])
def test_signal_to_launcher_stops_every_child(tmp_path: Path, child_script: Path, sig: int,
                                              sigint_ignored: bool) -> None:
    """SIGINT (Ctrl-C, also `kill -INT` to a background job that inherited SIGINT ignored) or SIGTERM: polite
    children, stubborn ones (SIGINT / SIGTERM ignored) and a grandchild in a child's process group are all
    gone when the launcher exits."""
    driver = _start_driver(tmp_path, child_script, "plain,ignore_int,ignore_all,grandchild", sigint_ignored)
    pids: list[int] = []
    try:
        pids = _read_pids(tmp_path, 4)
        assert len(pids) == 5 and all(_alive(p) for p in pids)
        driver.send_signal(sig)
        out, _ = driver.communicate(timeout=30)
        assert "OUTCOME interrupted" in out, out
        _wait_for(lambda: not any(_alive(p) for p in pids), 10, "all children to be gone")
    finally:
        driver.kill()
        _cleanup(pids)


def test_sigkill_of_launcher_kills_children(tmp_path: Path, child_script: Path) -> None:
    """The launcher killed with SIGKILL (no handler can run): PR_SET_PDEATHSIG takes its children down,
    even one that ignores SIGINT and SIGTERM."""
    driver = _start_driver(tmp_path, child_script, "plain,ignore_all")
    pids: list[int] = []
    try:
        pids = _read_pids(tmp_path, 2)
        driver.kill()
        driver.wait(timeout=10)
        _wait_for(lambda: not any(_alive(p) for p in pids), 10, "children to die with the launcher")
    finally:
        _cleanup(pids)


def test_children_have_their_own_process_group(tmp_path: Path, child_script: Path) -> None:
    """A terminal's Ctrl-C goes to the foreground process group: children must not be in the launcher's,
    so the launcher alone decides the shutdown order."""
    spec = ProcessSpec(key="a", argv=(sys.executable, str(child_script), str(tmp_path / "pid_0"), "plain"))
    with GraphLauncher([spec], log_dir=tmp_path / "logs"):
        (pid,) = _read_pids(tmp_path, 1)
        assert os.getpgid(pid) == pid != os.getpgid(0)
    assert not _alive(pid)


def _script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_required_node_failure_stops_graph(tmp_path: Path, child_script: Path) -> None:
    """A required node (the trainer) dying with an error stops everything and says so."""
    crash = _script(tmp_path, "crash.py", """
        import os, sys
        while not os.path.exists(sys.argv[1]):
            pass
        print("trainer: fatal error for the test", flush=True)
        sys.exit(3)
    """)
    worker = ProcessSpec(key="worker", argv=(sys.executable, str(child_script), str(tmp_path / "pid_0"), "plain"))
    trainer = ProcessSpec(key="trainer", argv=(sys.executable, crash, str(tmp_path / "pid_0")), required=True)
    launcher = GraphLauncher([worker, trainer], log_dir=tmp_path / "logs")
    result = launcher.run(max_wall_s=60, period_s=0.05)
    assert result.outcome == Outcome.FAILED
    assert "trainer" in result.message and "status 3" in result.message
    assert result.returncodes["trainer"] == 3
    assert result.returncodes["worker"] is not None  # stopped, not left running
    (pid,) = [int(p) for p in (tmp_path / "pid_0").read_text().split()]
    assert not _alive(pid)
    assert "fatal error for the test" in (tmp_path / "logs" / "trainer.log").read_text()


def test_dead_worker_is_logged_and_trainer_goes_on(tmp_path: Path, child_script: Path) -> None:
    """A non-required node (a collector) dying is reported; the run goes on until the trainer finishes."""
    flag = tmp_path / "worker_dead"
    dies = _script(tmp_path, "dies.py", """
        import sys
        print("collector: crashing for the test", flush=True)
        sys.exit(7)
    """)
    finisher = _script(tmp_path, "finish.py", """
        import os, sys, time
        while not os.path.exists(sys.argv[1]):
            time.sleep(0.05)
        sys.exit(0)
    """)
    exits: list[tuple[str, int, str]] = []

    def on_exit(key: str, rc: int, tail: str) -> None:
        exits.append((key, rc, tail))
        if key == "collector":
            flag.write_text("1")  # let the "trainer" finish only after the death was reported

    specs = [ProcessSpec(key="collector", argv=(sys.executable, dies)),
             ProcessSpec(key="policy", argv=(sys.executable, str(child_script), str(tmp_path / "pid_0"), "plain")),
             ProcessSpec(key="trainer", argv=(sys.executable, finisher, str(flag)), required=True)]
    result = GraphLauncher(specs, log_dir=tmp_path / "logs", on_exit=on_exit).run(max_wall_s=60, period_s=0.05)
    assert result.outcome == Outcome.FINISHED, result
    assert result.failed == ["collector"]
    assert exits[0][0] == "collector" and exits[0][1] == 7 and "crashing for the test" in exits[0][2]
    assert result.returncodes["policy"] is not None


def test_a_dying_required_node_is_restarted_with_its_restart_args_up_to_its_limit(
        tmp_path: Path, child_script: Path) -> None:
    """A trainer that crashes is started again (restart_args appended) while the others go on; after
    max_restarts crashes the run fails as before."""
    crash = _script(tmp_path, "crash_n.py", """
        import os, sys
        with open(sys.argv[1], "a") as fh:
            fh.write(" ".join(sys.argv[2:]) + "\\n")
        sys.exit(5)
    """)
    calls = tmp_path / "calls"
    worker = ProcessSpec(key="worker", argv=(sys.executable, str(child_script), str(tmp_path / "pid_0"), "plain"))
    trainer = ProcessSpec(key="trainer", argv=(sys.executable, crash, str(calls), "first"), required=True,
                          max_restarts=2, restart_delay_s=0.1, restart_args=("-p", "resume:=true"))
    asked: list[tuple[str, float]] = []

    def more(key: str, elapsed_s: float) -> list[str]:
        asked.append((key, elapsed_s))
        return ["-p", f"n:={len(asked)}"]

    launcher = GraphLauncher([worker, trainer], log_dir=tmp_path / "logs", restart_args=more)
    result = launcher.run(max_wall_s=60, period_s=0.05)
    assert result.outcome == Outcome.FAILED and "status 5" in result.message
    assert calls.read_text().splitlines() == ["first", "first -p resume:=true -p n:=1", "first -p resume:=true -p n:=2"]
    assert [k for k, _ in asked] == ["trainer", "trainer"] and 0 < asked[0][1] <= asked[1][1]
    assert [r["key"] for r in result.restarts] == ["trainer", "trainer"]
    assert all(r["returncode"] == 5 and r["restart_s"] >= r["exit_s"] + 0.1 for r in result.restarts)
    (pid,) = [int(p) for p in (tmp_path / "pid_0").read_text().split()]
    assert not _alive(pid)  # the worker ran on through the restarts and was stopped at the end
    assert result.returncodes["worker"] is not None


def test_a_clean_exit_is_never_restarted(tmp_path: Path, child_script: Path) -> None:
    worker = ProcessSpec(key="worker", argv=(sys.executable, str(child_script), str(tmp_path / "pid_0"), "plain"))
    trainer = ProcessSpec(key="trainer", argv=(sys.executable, "-c", "pass"), required=True, max_restarts=3)
    result = GraphLauncher([worker, trainer], log_dir=tmp_path / "logs").run(max_wall_s=60, period_s=0.05)
    assert result.outcome == Outcome.FINISHED and result.restarts == []


def test_an_exit_with_status_2_is_not_restarted(tmp_path: Path, child_script: Path) -> None:
    """Status 2 is a node refusing its parameters (a resume of a run of other sizes): the same arguments fail
    alike, and the trainer was started 4 times before the run failed."""
    worker = ProcessSpec(key="worker", argv=(sys.executable, str(child_script), str(tmp_path / "pid_0"), "plain"))
    trainer = ProcessSpec(key="trainer", argv=(sys.executable, "-c", "import sys; sys.exit(2)"), required=True,
                          max_restarts=3, restart_delay_s=0.1)
    result = GraphLauncher([worker, trainer], log_dir=tmp_path / "logs").run(max_wall_s=60, period_s=0.05)
    assert result.outcome == Outcome.FAILED and "status 2" in result.message and result.restarts == []


def test_bad_specs_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="duplicate"):
        GraphLauncher([ProcessSpec("a", ("true",)), ProcessSpec("a", ("true",))], log_dir=tmp_path)
    with pytest.raises(ValueError):
        ProcessSpec("robot_0/sim", ("true",))
    with pytest.raises(ValueError):
        GraphLauncher([], log_dir=tmp_path)
    with pytest.raises(ValueError):
        ProcessSpec("a", ("true",), max_restarts=-1)


def test_signals_while_stopping_do_not_abort_the_stop(tmp_path: Path) -> None:
    """A SIGTERM / SIGHUP / second SIGINT that arrives while stop() escalates is logged; the stop goes on."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    launcher = GraphLauncher([ProcessSpec("a", ("true",))], log_dir=tmp_path)
    launcher._install_signal_handlers()  # as start() does: SIGTERM / SIGHUP raise LauncherInterrupted
    finished = []

    def escalate() -> None:  # stands in for the SIGINT -> SIGTERM -> SIGKILL sequence
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            os.kill(os.getpid(), sig)
        time.sleep(0.05)  # the handlers run in this (main) thread between bytecodes
        finished.append(True)

    launcher._escalate = escalate
    launcher.stop()  # must not raise LauncherInterrupted / KeyboardInterrupt
    assert finished == [True]
    assert {sig: signal.getsignal(sig) for sig in before} == before  # handlers restored

GRAPH_DRIVER = textwrap.dedent("""
    import json, sys
    from async_naf.run.graph import GraphConfig, build_graph
    from async_naf.run.launcher import GraphLauncher, process_specs
    run_dir, roles = sys.argv[1], sys.argv[2].split(",")
    nodes = [n for n in build_graph(GraphConfig(task="door_pull", workers=1, run_dir=run_dir)) if n.role in roles]
    launcher = GraphLauncher(process_specs(nodes, run_dir + "/params"), log_dir=run_dir + "/logs")
    launcher.start()
    print("PIDS", json.dumps(launcher.pids), flush=True)
    result = launcher.run()
    print("RESULT", result.outcome.value, json.dumps(result.returncodes), flush=True)
""")


@pytest.mark.ros
def test_real_nodes_stop_cleanly_on_ctrl_c(tmp_path: Path, ros_env: dict[str, str]) -> None:
    """A tiny real graph (sim + door-angle estimator of one robot) started by the launcher: after Ctrl-C
    every node has exited with status 0 (rclpy shut down cleanly, no traceback) and none is left."""
    driver = tmp_path / "graph_driver.py"
    driver.write_text(GRAPH_DRIVER)
    proc = subprocess.Popen([sys.executable, str(driver), str(tmp_path), "sim,door_angle"], env=ros_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pids: list[int] = []
    try:
        line = proc.stdout.readline()
        assert line.startswith("PIDS"), line + proc.stdout.read()
        pids = list(json.loads(line.split(" ", 1)[1]).values())
        logs = tmp_path / "logs"
        ready = {"robot_0.sim.log": "] [robot_0.sim]: sim ready",
                 "robot_0.door_angle.log": "] [robot_0.door_angle]: door angle from"}

        def up() -> bool:
            return all((logs / f).exists() and marker in (logs / f).read_text() for f, marker in ready.items())

        _wait_for(up, 60, "both nodes to log that they are up")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        result = [ln for ln in out.splitlines() if ln.startswith("RESULT")]
        assert result and result[0].split()[1] == "interrupted", out
        codes = json.loads(result[0].split(" ", 2)[2])
        assert codes == {"robot_0.sim": 0, "robot_0.door_angle": 0}, (codes, out)
        assert not any(_alive(p) for p in pids)
        for f in ready:
            assert "Traceback" not in (logs / f).read_text(), (logs / f).read_text()
    finally:
        proc.kill()
        _cleanup(pids)
