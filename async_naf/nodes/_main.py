"""Process entry helper shared by the policy, collector and trainer nodes.

rclpy's default signal handler shuts the context down on SIGINT, after which a node can no longer publish
(e.g. a last zero-velocity command). Here SIGINT and SIGTERM instead ask the spin loop to stop: it checks
after every ``spin_once`` (at most 0.1 s apart), leaves with the context still valid, the node's
``shutdown_hook`` runs (stop the arm, write the final checkpoint), and only then is rclpy shut down. The
signal raises nothing into the callback running when it comes: rclpy's EventsExecutor turned a
``KeyboardInterrupt`` raised while it converted a message for a callback into ``RuntimeError: Unable to
convert call argument '0' to Python object``, and a policy node stopped with Ctrl-C exited with status 1.
Exit status: 0 on a normal or requested stop, 2 on bad parameters (ValueError while constructing the
node), or what the node's ``exit_code`` says. An exception while spinning or in ``shutdown_hook``
propagates (after rclpy is shut down).
"""
from __future__ import annotations

import gc
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

GC_GEN0_THRESHOLD = 20_000  # allocations between young-generation collections (CPython's default: 700)


def settle_heap() -> None:
    """Take what the process built at start-up (nodes, MuJoCo and pinocchio models, message modules, the
    policy network) out of the cyclic garbage collector's reach, and collect the young generation less often.

    A control step allocates a few hundred short-lived objects (messages, small arrays) that reference
    counting frees; with CPython's defaults the collector still ran every 700 allocations and now and then
    walked the whole start-up heap: 15 % of a composed robot's CPU samples were ``gc_collect_main``
    (docs/benchmarks.md). Cycles made later are still collected.
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


_STOP: list[int] = []  # the signals received since run_nodes began (the spin loop stops on the first)


def _request_stop(signum: int, frame: Any) -> None:
    del frame
    _STOP.append(signum)


def run_node(factory: Callable[[], Any], name: str, args: list[str] | None = None,
             executor_factory: Callable[[Any], Any] | None = None) -> int:
    """Create the node with ``factory`` and spin it until interrupted or ``node.done`` becomes true.

    ``executor_factory(node)`` builds the executor (default: SingleThreadedExecutor). The node may define
    ``shutdown_hook()`` (called before rclpy shuts down), ``done`` (bool attribute/
    property polled between spins) and ``exit_code`` (int).
    """
    wrap = None if executor_factory is None else (lambda nodes: executor_factory(nodes[0]))
    return run_nodes([factory], name, args, wrap)


def run_nodes(factories: Sequence[Callable[[], Any]], name: str, args: list[str] | None = None,
              executor_factory: Callable[[list[Any]], Any] | None = None,
              after_spin: Callable[[], None] | None = None) -> int:
    """Several nodes in one process and one executor (a composed robot, see ``async_naf.run.container``).

    Nodes are created in order (all read the same ``--ros-args``: parameters files keyed by each node's
    fully qualified name reach only that node). Spins until interrupted or every node that defines ``done``
    is done. On the way out every ``shutdown_hook`` runs (in creation order), then every node is destroyed.
    Exit status: 2 if a factory raises ValueError (the nodes already created are destroyed), else the first
    non-zero ``exit_code``, else 0. ``executor_factory(nodes)`` builds the executor (default:
    SingleThreadedExecutor). ``after_spin()`` runs after every ``spin_once`` (the container's bus re-raises
    a delivered callback's exception there).
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from async_naf.common.ros_env import apply_defaults

    apply_defaults()
    try:
        rclpy.init(args=args if args is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    except RuntimeError as exc:  # rclpy's RCLError: a --params-file that is missing or not a params file, ...
        text = " ".join(str(exc).split())
        print(f"{name}: cannot start: {text}", file=sys.stderr)
        return 2
    _STOP.clear()
    signal.signal(signal.SIGINT, _request_stop)
    signal.signal(signal.SIGTERM, _request_stop)
    nodes: list[Any] = []
    code = 0

    def finished() -> bool:
        flags = [bool(n.done) for n in nodes if hasattr(n, "done")]
        return bool(flags) and all(flags)

    def exit_code() -> int:
        return next((c for c in (int(getattr(n, "exit_code", 0)) for n in nodes) if c != 0), 0)

    try:
        try:
            for factory in factories:
                nodes.append(factory())
        except ValueError as exc:  # bad parameters / configuration (only while constructing a node)
            print(f"{name}: {exc}", file=sys.stderr)
            code = 2
        if code == 0 and nodes:
            executor = executor_factory(nodes) if executor_factory else SingleThreadedExecutor()
            for node in nodes:
                executor.add_node(node)
            settle_heap()
            while rclpy.ok() and not finished() and not _STOP:
                executor.spin_once(timeout_sec=0.1)
                if after_spin is not None:
                    after_spin()
            code = exit_code()
    except KeyboardInterrupt:
        pass
    except ExternalShutdownException:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the clean-up
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            _close(nodes)
            code = exit_code() if code == 0 else code
        finally:
            rclpy.try_shutdown()
    return code


def _close(nodes: list[Any]) -> None:
    """Every node's ``shutdown_hook``, then ``destroy_node``; the first exception propagates after all ran."""
    error: BaseException | None = None
    for node in nodes:
        hook = getattr(node, "shutdown_hook", None)
        try:
            if hook is not None:
                hook()
        except BaseException as exc:  # noqa: BLE001 - re-raised below once every node is closed
            error = error or exc
    for node in nodes:
        node.destroy_node()
    if error is not None:
        raise error
