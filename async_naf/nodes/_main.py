"""Process entry helper shared by the policy, collector and trainer nodes.

rclpy's default signal handler shuts the context down on SIGINT, after which a node can no longer publish
(e.g. a last zero-velocity command). Here SIGINT and SIGTERM instead raise ``KeyboardInterrupt`` in the main
thread, so ``spin`` returns with the context still valid, the node's ``shutdown_hook`` runs (stop the arm,
write the final checkpoint), and only then is rclpy shut down. Exit status: 0 on a normal or requested
stop, 2 on bad parameters (ValueError while constructing the node), or what the node's ``exit_code``
says. An exception while spinning or in ``shutdown_hook`` propagates (after rclpy is shut down).
"""
from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import Any


def _raise_interrupt(signum: int, frame: Any) -> None:
    del frame
    raise KeyboardInterrupt(f"signal {signum}")


def run_node(factory: Callable[[], Any], name: str, args: list[str] | None = None,
             executor_factory: Callable[[Any], Any] | None = None) -> int:
    """Create the node with ``factory`` and spin it until interrupted or ``node.done`` becomes true.

    ``executor_factory(node)`` builds the executor (default: SingleThreadedExecutor). The node may define
    ``shutdown_hook()`` (called before rclpy shuts down), ``done`` (bool attribute/
    property polled between spins) and ``exit_code`` (int).
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from async_naf.common.ros_env import apply_defaults

    apply_defaults()
    rclpy.init(args=args if args is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    node = None
    code = 0
    try:
        try:
            node = factory()
        except ValueError as exc:  # bad parameters / configuration (only while constructing the node)
            print(f"{name}: {exc}", file=sys.stderr)
            code = 2
        if node is not None:
            executor = executor_factory(node) if executor_factory else SingleThreadedExecutor()
            executor.add_node(node)
            while rclpy.ok() and not getattr(node, "done", False):
                executor.spin_once(timeout_sec=0.1)
            code = int(getattr(node, "exit_code", 0))
    except KeyboardInterrupt:
        pass
    except ExternalShutdownException:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the clean-up
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            if node is not None:
                hook = getattr(node, "shutdown_hook", None)
                try:
                    if hook is not None:
                        hook()
                finally:
                    node.destroy_node()
                code = int(getattr(node, "exit_code", code)) if code == 0 else code
        finally:
            rclpy.try_shutdown()
    return code
