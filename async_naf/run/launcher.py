"""Start a node graph as child processes where ``ros2 launch`` does not exist.

``async-naf train`` uses this to start the nodes of :func:`async_naf.run.graph.build_graph` (the same description
``launch/train.launch.py`` uses on a ROS install) as ``python -m async_naf.nodes.<module> --ros-args ...``
processes. It is ROS-free: it only builds command lines, parameter files and environments.

Process hygiene (the launcher never leaves orphans):

- every child runs in a process group of its own, so a terminal's Ctrl-C reaches only the launcher, which
  then stops the children in order: SIGINT (rclpy shuts down cleanly, the trainer saves a final checkpoint),
  then SIGTERM, then SIGKILL, each after a timeout, always to the child's whole process group;
- every child asks the kernel (``prctl(PR_SET_PDEATHSIG, SIGKILL)``) to be killed when the launcher dies,
  which covers the one case no handler can (the launcher itself killed with SIGKILL). The death signal is
  tied to the thread that started the child, so children are started from the launcher's main thread;
- SIGTERM and SIGHUP sent to the launcher are turned into an orderly stop, and an ``atexit`` hook stops
  whatever is still running when the interpreter exits. While it stops the children, SIGINT, SIGTERM and
  SIGHUP are only logged, so a second signal cannot cut the clean-up short.

A child that dies is logged with the tail of its log file (``<run_dir>/logs/<node>.log``). Whether that
ends the run is the caller's policy: :class:`GraphLauncher` marks nodes as *required* (the trainer); if a
required node exits with a non-zero status, :meth:`GraphLauncher.run` stops everything and reports it,
unless the process may be restarted (``max_restarts``): then it is started again after ``restart_delay_s``
with ``restart_args`` appended (the trainer: ``-p resume:=true``, so it continues from its newest
checkpoint), each restart logged and recorded in :attr:`RunResult.restarts`; the other processes go on.
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import dataclasses
import enum
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import yaml

from async_naf.common.ros_env import ros_environment

LOG = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
NO_RESTART_STATUS = 2  # a node that exits with it refused its parameters: a restart with the same ones fails alike

_LIBC: Any = None
if sys.platform.startswith("linux"):
    try:
        _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:  # no libc to load (unusual): children then rely on the handlers alone
        _LIBC = None


@dataclasses.dataclass(frozen=True)
class ProcessSpec:
    """One child process: what to run and how to stop it.

    Attributes:
        key: unique, file-name-safe identifier (e.g. ``robot_0.sim``), used for the log file name.
        argv: full command line.
        required: if True, the run fails (everything stops) when this process exits with a non-zero status,
            and it finishes (everything stops) when it exits with status 0.
        stop_timeout_s: seconds to wait after SIGINT before SIGTERM (a trainer saving a checkpoint needs
            longer than a sim); SIGTERM -> SIGKILL waits ``term_timeout_s``.
        term_timeout_s: seconds to wait after SIGTERM before SIGKILL.
        max_restarts: a non-zero exit is followed by a restart this many times at most (0 = never); an exit
            with status 0 is never restarted.
        restart_delay_s: seconds between noticing the exit and the restart.
        restart_args: appended to ``argv`` on a restart (e.g. ``-p resume:=true``).
    """

    key: str
    argv: tuple[str, ...]
    required: bool = False
    stop_timeout_s: float = 10.0
    term_timeout_s: float = 5.0
    max_restarts: int = 0
    restart_delay_s: float = 2.0
    restart_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.key or any(c in self.key for c in "/ \\\0"):
            raise ValueError(f"process key must be non-empty without '/', spaces: {self.key!r}")
        if not self.argv:
            raise ValueError(f"process {self.key}: empty command line")
        if self.stop_timeout_s < 0 or self.term_timeout_s < 0 or self.restart_delay_s < 0:
            raise ValueError(f"process {self.key}: timeouts and delays must be >= 0")
        if self.max_restarts < 0:
            raise ValueError(f"process {self.key}: max_restarts must be >= 0")


class Outcome(str, enum.Enum):  # noqa: UP042 - not StrEnum: str(Outcome.X) stays "Outcome.X"
    """Why :meth:`GraphLauncher.run` returned."""

    FINISHED = "finished"          # a required process exited with status 0 (e.g. trainer reached its budget)
    STOP_REQUESTED = "stopped"     # the caller's stop condition became true
    TIMEOUT = "timeout"            # the wall-time budget ran out
    INTERRUPTED = "interrupted"    # SIGINT / SIGTERM / SIGHUP to the launcher
    FAILED = "failed"              # a required process died with a non-zero status (or failed to start)


@dataclasses.dataclass
class RunResult:
    """What happened: outcome, wall time (s), exit statuses by key (negative = killed by that signal), and
    the restarts (``key``, ``returncode`` of the exit, ``exit_s`` / ``restart_s``: seconds since the start of
    :meth:`GraphLauncher.run` when the exit was noticed and the new process started)."""

    outcome: Outcome
    wall_s: float
    returncodes: dict[str, int | None]
    message: str = ""
    failed: list[str] = dataclasses.field(default_factory=list)
    restarts: list[dict[str, Any]] = dataclasses.field(default_factory=list)


class LauncherInterrupted(Exception):
    """Raised inside :meth:`GraphLauncher.run` when the launcher receives SIGTERM or SIGHUP."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = signum


def _child_setup(parent_pid: int) -> None:  # pragma: no cover - runs in the forked child
    """preexec_fn: die with the launcher (PR_SET_PDEATHSIG), close the race where it already died."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:  # the launcher died between fork and prctl: nobody would reap us
        os._exit(1)
    # the launcher may ignore SIGINT while it shuts down; children start with the default dispositions
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start_child(
    argv: Sequence[str],
    stdout: Any = None,
    stderr: Any = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start one child the way the launcher starts its nodes (call from the main thread).

    The child leads a process group of its own (a terminal's Ctrl-C reaches only this process, which decides
    how to stop it: see :func:`stop_child`), asks to be killed when this process dies (``PR_SET_PDEATHSIG``,
    tied to the calling thread), starts with the default SIGINT / SIGTERM dispositions and reads no stdin.

    Raises:
        OSError: the program cannot be started.
    """
    parent = os.getpid()
    return subprocess.Popen(  # argv built by the caller, no shell
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        env=None if env is None else dict(env),
        cwd=cwd,
        process_group=0,  # own process group: the terminal's Ctrl-C reaches only the parent
        preexec_fn=lambda: _child_setup(parent),
        close_fds=True,
    )


def stop_child(popen: subprocess.Popen[bytes], stop_timeout_s: float, term_timeout_s: float = 5.0,
               name: str = "child") -> int | None:
    """Stop a child started with :func:`start_child`: SIGINT, then SIGTERM, then SIGKILL to its process group.

    Each step waits for the child's exit up to its timeout (s). While this runs in the main thread, SIGINT,
    SIGTERM and SIGHUP to this process are only logged, so a second Ctrl-C cannot cut the stop short.

    Returns:
        the child's exit status (None only if it survived SIGKILL for 5 s).
    """
    with _signals_only_logged():
        for sig, timeout_s in ((signal.SIGINT, stop_timeout_s), (signal.SIGTERM, term_timeout_s),
                               (signal.SIGKILL, 5.0)):
            if popen.poll() is not None and sig != signal.SIGKILL:
                continue
            if sig != signal.SIGINT and popen.poll() is None:
                LOG.warning("%s (pid %d) still running: %s", name, popen.pid, signal.Signals(sig).name)
            _signal_group(popen.pid, sig, name)  # SIGKILL always: sweep what it left in its group
            try:
                popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                LOG.debug("%s still running after %s", name, signal.Signals(sig).name)
    return popen.poll()


def _signal_group(pgid: int, sig: int, name: str) -> None:
    try:
        os.killpg(pgid, sig)  # the child leads its own process group (pgid == pid)
    except ProcessLookupError:
        pass  # already gone, group and all
    except PermissionError:
        LOG.warning("cannot signal process group of %s (pid %d)", name, pgid)


def tail(path: Path, lines: int = 15) -> str:
    """Last ``lines`` lines of a text file ('' if it does not exist)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 8192))
            data = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


class _Child:
    def __init__(self, spec: ProcessSpec, popen: subprocess.Popen[bytes], log_path: Path, log: IO[bytes]):
        self.spec = spec
        self.popen = popen
        self.log_path = log_path
        self.log = log
        self.reported = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def signal_group(self, sig: int) -> None:
        _signal_group(self.popen.pid, sig, self.spec.key)


class GraphLauncher:
    """Starts :class:`ProcessSpec` children, watches them, and stops them all (see the module docstring).

    Use as a context manager, or call :meth:`stop` in a ``finally``::

        with GraphLauncher(specs, log_dir=run_dir / "logs", env=env) as launcher:
            result = launcher.run(max_wall_s=600)
    """

    def __init__(
        self,
        specs: Sequence[ProcessSpec],
        log_dir: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        on_exit: Callable[[str, int, str], None] | None = None,
        restart_args: Callable[[str, float], Sequence[str]] | None = None,
    ) -> None:
        """
        Args:
            specs: processes to start, in order.
            log_dir: one ``<key>.log`` per process (stdout and stderr) goes here.
            env: environment for the children (default: :func:`async_naf.common.ros_env.ros_environment`, i.e.
                loopback-only DDS).
            cwd: working directory of the children.
            on_exit: called as ``on_exit(key, returncode, log_tail)`` when a child exits on its own.
            restart_args: called as ``restart_args(key, elapsed_s)`` at a restart (``elapsed_s``: seconds since
                :meth:`run` began); its arguments go after the spec's ``restart_args`` (e.g. the trainer's
                remaining wall-time budget).

        Raises:
            ValueError: on duplicate keys or an empty graph.
        """
        keys = [s.key for s in specs]
        if not specs:
            raise ValueError("nothing to launch")
        if len(set(keys)) != len(keys):
            raise ValueError(f"duplicate process keys: {sorted(k for k in keys if keys.count(k) > 1)}")
        self.specs = list(specs)
        self.log_dir = Path(log_dir)
        self.env = dict(env) if env is not None else ros_environment()
        self.cwd = cwd
        self.on_exit = on_exit
        self.restart_args = restart_args
        self._children: dict[str, _Child] = {}
        self._stopped = False
        self._lock = threading.Lock()
        self._old_handlers: dict[int, Any] = {}
        self._atexit_registered = False
        self.restarts: list[dict[str, Any]] = []  # see RunResult.restarts
        self._restart_due: dict[str, float] = {}  # key -> monotonic time of the pending restart

    # ------------------------------------------------------------------ start
    def start(self) -> None:
        """Start every process (main thread only: the kernel ties the death signal to the starting thread).

        Raises:
            RuntimeError: when called from another thread, or twice.
            OSError: if a process cannot be started (those already started are stopped first).
        """
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("GraphLauncher.start() must run in the main thread (PR_SET_PDEATHSIG)")
        if self._children:
            raise RuntimeError("already started")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        self._install_signal_handlers()
        try:
            for spec in self.specs:
                self._start_one(spec)
        except BaseException:
            self.stop()
            raise

    def _start_one(self, spec: ProcessSpec, argv: Sequence[str] | None = None) -> None:
        argv = tuple(argv or spec.argv)
        log_path = self.log_dir / f"{spec.key}.log"
        log = open(log_path, "ab", buffering=0)  # noqa: SIM115 - closed in stop()
        log.write(f"# {time.strftime('%Y-%m-%dT%H:%M:%S')} started: {' '.join(argv)}\n".encode())
        try:
            popen = start_child(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd)
        except OSError:
            log.close()
            raise
        self._children[spec.key] = _Child(spec, popen, log_path, log)
        LOG.info("started %s (pid %d), log %s", spec.key, popen.pid, log_path)

    # ------------------------------------------------------------------ watch
    @property
    def pids(self) -> dict[str, int]:
        """Process id of every started child, by key."""
        return {k: c.pid for k, c in self._children.items()}

    def returncodes(self) -> dict[str, int | None]:
        """Exit status per key (None while running)."""
        return {k: c.popen.poll() for k, c in self._children.items()}

    def log_path(self, key: str) -> Path:
        """Log file of one child."""
        return self.log_dir / f"{key}.log"

    def poll(self) -> list[tuple[str, int]]:
        """Children that exited since the last call, as ``(key, returncode)``; each exit is logged once."""
        exited = []
        for key, child in self._children.items():
            rc = child.popen.poll()
            if rc is None or child.reported:
                continue
            child.reported = True
            exited.append((key, rc))
            if not self._stopped:
                last = tail(child.log_path)
                level = logging.INFO if rc == 0 else logging.ERROR
                LOG.log(level, "node %s exited with status %s; last lines of %s:\n%s",
                        key, rc, child.log_path, last)
                if self.on_exit is not None:
                    self.on_exit(key, rc, last)
        return exited

    def run(
        self,
        max_wall_s: float | None = None,
        stop_when: Callable[[], bool] | None = None,
        period_s: float = 0.5,
        on_tick: Callable[[float], None] | None = None,
    ) -> RunResult:
        """Start (if needed), watch until done, stop everything, and say why it ended.

        Ends when a required process exits (status 0: FINISHED, else FAILED), ``stop_when()`` becomes true
        (STOP_REQUESTED), ``max_wall_s`` runs out (TIMEOUT), or the launcher gets SIGINT/SIGTERM/SIGHUP
        (INTERRUPTED). A non-required process that dies is logged and the run goes on; if *every*
        non-required process has died the run is FAILED too (nothing is left to do the work).

        Args:
            max_wall_s: wall-time budget in seconds (None = unlimited).
            stop_when: polled every ``period_s`` seconds.
            period_s: polling period in seconds.
            on_tick: called every period with the elapsed wall time (progress display).
        """
        if not self._children:
            self.start()
        t0 = time.monotonic()
        outcome, message, failed = Outcome.TIMEOUT, "", []
        try:
            while True:
                for key, rc in self.poll():
                    spec = self._children[key].spec
                    if rc != 0 and self._schedule_restart(key, rc, t0):
                        continue
                    if not spec.required and rc != 0:
                        failed.append(key)
                    if spec.required:
                        if rc == 0:
                            outcome, message = Outcome.FINISHED, f"{key} finished"
                        else:
                            outcome = Outcome.FAILED
                            message = (f"required node {key} died with status {rc}; stopping the graph. "
                                       f"See {self._children[key].log_path}")
                            failed.append(key)
                        raise _Done
                self._due_restarts(t0)
                others = [c for c in self._children.values() if not c.spec.required]
                if others and all(c.popen.poll() is not None and c.spec.key not in self._restart_due
                                  for c in others):
                    outcome, message = Outcome.FAILED, "every non-required node has exited"
                    raise _Done
                elapsed = time.monotonic() - t0
                if on_tick is not None:
                    on_tick(elapsed)
                if stop_when is not None and stop_when():
                    outcome, message = Outcome.STOP_REQUESTED, "stop condition reached"
                    raise _Done
                if max_wall_s is not None and elapsed >= max_wall_s:
                    outcome, message = Outcome.TIMEOUT, f"wall-time budget of {max_wall_s:.0f} s reached"
                    raise _Done
                time.sleep(period_s)  # polling child status, not synchronising with them
        except _Done:
            pass
        except KeyboardInterrupt:
            outcome, message = Outcome.INTERRUPTED, "interrupted (SIGINT)"
        except LauncherInterrupted as exc:
            outcome, message = Outcome.INTERRUPTED, f"interrupted ({exc})"
        finally:
            codes = self.stop()
        return RunResult(outcome, time.monotonic() - t0, codes, message, failed, list(self.restarts))

    def restart_count(self, key: str) -> int:
        """Restarts of one child so far (started or pending)."""
        return sum(1 for r in self.restarts if r["key"] == key)

    def _schedule_restart(self, key: str, rc: int, t0: float) -> bool:
        """A child exited with status ``rc`` != 0: schedule its restart if it has restarts left. Status 2 (bad
        parameters: a ValueError at construction, :func:`async_naf.nodes._main.run_node`) is not restarted: the
        same arguments fail the same way (a resume of a run of other sizes was started 4 times)."""
        spec = self._children[key].spec
        if rc == NO_RESTART_STATUS and spec.max_restarts and not self._stopped:
            LOG.error("%s exited with status %d (its parameters were refused): not restarted", key, rc)
            return False
        if self._stopped or self.restart_count(key) >= spec.max_restarts:
            if spec.max_restarts:
                LOG.error("%s exited with status %s and has used its %d restart(s)", key, rc, spec.max_restarts)
            return False
        now = time.monotonic()
        self.restarts.append({"key": key, "returncode": rc, "exit_s": round(now - t0, 3), "restart_s": None})
        self._restart_due[key] = now + spec.restart_delay_s
        LOG.warning("%s exited with status %s: restart %d of %d in %.1f s", key, rc, self.restart_count(key),
                    spec.max_restarts, spec.restart_delay_s)
        return True

    def _due_restarts(self, t0: float) -> None:
        """Start the children whose restart is due (main thread: the death signal is tied to it)."""
        now = time.monotonic()
        for key, due in list(self._restart_due.items()):
            if now < due or self._stopped:
                continue
            del self._restart_due[key]
            old = self._children[key]
            old.log.close()
            spec = old.spec
            extra = tuple(self.restart_args(key, now - t0)) if self.restart_args is not None else ()
            self._start_one(spec, (*spec.argv, *spec.restart_args, *extra))
            record = next(r for r in reversed(self.restarts) if r["key"] == key)
            record["restart_s"] = round(time.monotonic() - t0, 3)

    # ------------------------------------------------------------------ stop
    def stop(self) -> dict[str, int | None]:
        """Stop every child: SIGINT, then SIGTERM, then SIGKILL (to each whole process group). Idempotent.

        Returns:
            exit status per key.
        """
        with self._lock:
            if self._stopped:
                return self.returncodes()
            self._stopped = True
            self._restart_due.clear()
        # a second Ctrl-C, or a SIGTERM / SIGHUP (whose run-time handler raises), must not abort the clean-up
        # half-way and leave children to the death signal: while stopping they are only logged
        # straight back to what was there before start() afterwards (no window with the raising handler)
        try:
            with _signals_only_logged(restore_to=self._old_handlers):
                self._escalate()
        finally:
            for child in self._children.values():
                child.log.close()
            self._restore_signal_handlers()
        return self.returncodes()

    def _escalate(self) -> None:
        running = [c for c in self._children.values() if c.popen.poll() is None]
        t_int = time.monotonic()
        for child in running:
            child.signal_group(signal.SIGINT)
        for child in running:  # all were signalled together: each waits until its own deadline
            self._wait(child, t_int + child.spec.stop_timeout_s, "SIGINT")
        running = [c for c in running if c.popen.poll() is None]
        t_term = time.monotonic()
        for child in running:
            LOG.warning("%s did not stop on SIGINT within %.0f s: SIGTERM", child.spec.key,
                        child.spec.stop_timeout_s)
            child.signal_group(signal.SIGTERM)
        for child in running:
            self._wait(child, t_term + child.spec.term_timeout_s, "SIGTERM")
        for child in self._children.values():
            # the leader may be gone while something it started still runs in its group: always sweep
            if child.popen.poll() is None:
                LOG.warning("%s did not stop on SIGTERM: SIGKILL", child.spec.key)
            child.signal_group(signal.SIGKILL)
            try:
                child.popen.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                LOG.error("%s (pid %d) survived SIGKILL for 5 s", child.spec.key, child.pid)

    @staticmethod
    def _wait(child: _Child, deadline: float, after: str) -> None:
        try:
            child.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            LOG.debug("%s still running after %s", child.spec.key, after)

    # ------------------------------------------------------------------ signals
    def _install_signal_handlers(self) -> None:
        def _raise(signum: int, _frame: Any) -> None:
            raise LauncherInterrupted(signum)

        # SIGINT explicitly too: a shell starts background jobs with SIGINT ignored, and `kill -INT` must
        # still mean "stop the graph cleanly"
        handlers = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: _raise, signal.SIGHUP: _raise}
        for sig, handler in handlers.items():
            try:
                self._old_handlers[sig] = signal.signal(sig, handler)
            except (ValueError, OSError):  # not the main thread / not supported here
                pass

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()

    def __enter__(self) -> GraphLauncher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Done(Exception):
    """Internal: leave the watch loop."""


@contextlib.contextmanager
def _signals_only_logged(restore_to: dict[int, Any] | None = None) -> Iterator[None]:
    """While stopping children: SIGINT, SIGTERM and SIGHUP are only logged (main thread only; elsewhere
    Python cannot set handlers). Afterwards each gets ``restore_to.pop(sig)`` if given there, else the
    handler it had before."""
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            try:
                previous[sig] = signal.signal(sig, _log_signal_while_stopping)
            except (ValueError, OSError):  # not supported here
                pass
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, (restore_to if restore_to is not None else {}).pop(signum, handler))


def _log_signal_while_stopping(signum: int, _frame: Any) -> None:
    """Signal handler while :meth:`GraphLauncher.stop` runs: the stop is already under way, go on with it."""
    LOG.warning("received %s while stopping the graph: the stop goes on", signal.Signals(signum).name)


# ---------------------------------------------------------------------- graph -> processes
def write_params_file(path: str | os.PathLike[str], fqn: str, parameters: Mapping[str, Any]) -> Path:
    """Write a ROS 2 params file for one node (key: its fully qualified name, e.g. ``/robot_0/sim``).

    Args:
        path: file to write.
        fqn: fully qualified node name.
        parameters: flat parameter dict (dotted names for nested parameters); values must be bool, int,
            float, str or homogeneous lists of those.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {fqn: {"ros__parameters": dict(parameters)}}
    path.write_text(yaml.safe_dump(doc, default_flow_style=False, sort_keys=True))
    return path


def process_specs(
    nodes: Sequence[Any],
    params_dir: str | os.PathLike[str],
    python: str = sys.executable,
    extra_ros_args: Sequence[str] = (),
) -> list[ProcessSpec]:
    """Turn :class:`async_naf.run.graph.NodeSpec` objects into process specs (writes one params file each).

    The command line is ``python -m <module> --ros-args -r __ns:=<ns> -r __node:=<name>
    --params-file <file> [-r from:=to ...]``, which is what ``ros2 launch`` runs for a
    ``launch_ros.actions.Node`` with the same name, namespace, parameters and remappings.
    """
    specs = []
    for node in nodes:
        params_file = write_params_file(Path(params_dir) / f"{node.key}.yaml", node.fqn, node.parameters)
        argv = [python, "-m", node.module, "--ros-args", "-r", f"__ns:={node.namespace}",
                "-r", f"__node:={node.name}", "--params-file", str(params_file)]
        for src, dst in node.remappings:
            argv += ["-r", f"{src}:={dst}"]
        argv += list(extra_ros_args)
        restart_args: list[str] = []
        for name, value in sorted(getattr(node, "restart_parameters", {}).items()):
            restart_args += ["-p", f"{name}:={_ros_value(value)}"]
        specs.append(ProcessSpec(key=node.key, argv=tuple(argv), required=node.required,
                                 stop_timeout_s=node.stop_timeout_s,
                                 max_restarts=int(getattr(node, "max_restarts", 0)),
                                 restart_delay_s=float(getattr(node, "restart_delay_s", 2.0)),
                                 restart_args=tuple(restart_args)))
    return specs


def _ros_value(value: Any) -> str:
    """A parameter value as ``-p name:=value`` wants it (YAML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def composed_process_specs(
    processes: Sequence[Any],
    params_dir: str | os.PathLike[str],
    python: str = sys.executable,
    extra_ros_args: Sequence[str] = (),
) -> list[ProcessSpec]:
    """Like :func:`process_specs` for the output of :func:`async_naf.run.graph.compose`: a
    :class:`~async_naf.run.graph.ContainerSpec` becomes ``python -m async_naf.run.container <roles>
    --ros-args -r __ns:=<ns> --params-file <one per node> [-r from:=to ...]`` (each params file keyed by its
    node's fully qualified name, so it reaches only that node); a plain node is started as before.
    """
    specs: list[ProcessSpec] = []
    for proc in processes:
        if not hasattr(proc, "nodes"):
            specs += process_specs([proc], params_dir, python, extra_ros_args)
            continue
        own = [] if proc.intra_process else ["--intra-process", "off"]
        argv = [python, "-m", proc.module, *proc.roles, *own, "--ros-args", "-r", f"__ns:={proc.namespace}"]
        for node in proc.nodes:
            argv += ["--params-file",
                     str(write_params_file(Path(params_dir) / f"{node.key}.yaml", node.fqn, node.parameters))]
        for src, dst in proc.remappings:
            argv += ["-r", f"{src}:={dst}"]
        argv += list(extra_ros_args)
        specs.append(ProcessSpec(key=proc.key, argv=tuple(argv), required=proc.required,
                                 stop_timeout_s=proc.stop_timeout_s))
    return specs
