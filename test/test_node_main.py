"""nodes/_main.run_node without ROS nodes: exit codes and clean-up with fake nodes and executors.

rclpy is initialised and shut down (no node is created, so no DDS participant starts).
"""
from __future__ import annotations

import gc
import signal

import pytest

rclpy = pytest.importorskip("rclpy")

from async_naf.nodes import _main  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_signals():
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    threshold = gc.get_threshold()
    yield
    for s, h in handlers.items():
        signal.signal(s, h)
    rclpy.try_shutdown()
    gc.unfreeze()  # run_node settles the heap of the process it runs in: this one's is given back
    gc.set_threshold(*threshold)


class FakeNode:
    def __init__(self, spin_error: Exception | None = None, hook_error: Exception | None = None) -> None:
        self.spin_error, self.hook_error = spin_error, hook_error
        self.done = False
        self.exit_code = 0
        self.hooked = self.destroyed = False

    def shutdown_hook(self) -> None:
        self.hooked = True
        if self.hook_error is not None:
            raise self.hook_error

    def destroy_node(self) -> None:
        self.destroyed = True


class FakeExecutor:
    def __init__(self, node: FakeNode) -> None:
        self.node = node

    def add_node(self, node: FakeNode) -> None:
        assert node is self.node

    def spin_once(self, timeout_sec: float) -> None:
        self.node.gc_while_spinning = (gc.get_freeze_count(), gc.get_threshold()[0])
        if self.node.spin_error is not None:
            raise self.node.spin_error
        self.node.done = True


def _run(node_or_error):
    def factory():
        if isinstance(node_or_error, Exception):
            raise node_or_error
        return node_or_error

    return _main.run_node(factory, "fake", [], executor_factory=FakeExecutor)


def test_normal_stop_returns_the_node_exit_code() -> None:
    node = FakeNode()
    node.exit_code = 1
    assert _run(node) == 1
    assert node.hooked and node.destroyed and not rclpy.ok()


def test_bad_parameters_at_construction_exit_2(capsys) -> None:
    assert _run(ValueError("lr must be > 0")) == 2
    assert "lr must be > 0" in capsys.readouterr().err and not rclpy.ok()


def test_a_params_file_rclpy_cannot_read_is_one_line_and_exit_2(tmp_path, capsys) -> None:
    """`--params-file` naming a missing file (or not a params file): rclpy.init raises RCLError, which was a
    traceback and exit status 1; now one line and 2, as for a bad value."""
    def never() -> None:
        raise AssertionError("no node is built when rclpy cannot start")

    for path in (tmp_path / "missing.yaml", tmp_path / "bad.yaml"):
        if path.name == "bad.yaml":
            path.write_text("[not: a params file\n")
        assert _main.run_node(never, "fake", ["fake", "--ros-args", "--params-file", str(path)]) == 2
        err = capsys.readouterr().err
        assert "fake: cannot start:" in err and "Traceback" not in err and not rclpy.ok()


def test_value_error_while_spinning_is_not_reported_as_bad_parameters() -> None:
    node = FakeNode(spin_error=ValueError("bug in a callback"))
    with pytest.raises(ValueError, match="bug in a callback"):
        _run(node)
    assert node.hooked and node.destroyed and not rclpy.ok()


def test_rclpy_is_shut_down_even_if_the_shutdown_hook_raises() -> None:
    node = FakeNode(hook_error=OSError("disk full"))
    with pytest.raises(OSError, match="disk full"):
        _run(node)
    assert node.destroyed and not rclpy.ok()


def test_the_start_up_heap_is_frozen_and_young_collections_are_rarer_while_spinning() -> None:
    gc.unfreeze()
    node = FakeNode()
    assert _run(node) == 0
    frozen, gen0 = node.gc_while_spinning
    assert frozen > 1000 and gen0 == _main.GC_GEN0_THRESHOLD  # the modules and nodes built before the spin


class SignallingExecutor(FakeExecutor):
    """A callback that gets SIGINT or SIGTERM part-way through."""

    signum = signal.SIGINT

    def spin_once(self, timeout_sec: float) -> None:
        self.node.spins = getattr(self.node, "spins", 0) + 1
        signal.raise_signal(self.signum)
        self.node.callback_completed = True


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_spin_after_the_running_callback_not_inside_it(signum: int) -> None:
    """Nothing is raised into the callback running when the signal comes (rclpy's EventsExecutor turned a
    KeyboardInterrupt raised while it converted a message for a callback into a RuntimeError, and a policy
    node stopped with Ctrl-C exited with status 1): the callback ends, the loop stops, the node is closed."""
    node = FakeNode()

    def executor(n: FakeNode) -> SignallingExecutor:
        ex = SignallingExecutor(n)
        ex.signum = signum
        return ex

    assert _main.run_node(lambda: node, "fake", [], executor_factory=executor) == 0
    assert getattr(node, "callback_completed", False) and node.spins == 1
    assert node.hooked and node.destroyed and not rclpy.ok()
