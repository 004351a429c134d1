"""A composed robot: several of one robot's nodes in one process with one executor.

``python -m async_naf.run.container sim door_angle policy collector --ros-args -r __ns:=/robot_0
--params-file robot_0.sim.yaml --params-file robot_0.door_angle.yaml ...`` is what
:func:`async_naf.run.launcher.process_specs` runs for a robot when ``GraphConfig.composition`` is
``robot`` (and ``launch/train.launch.py`` with ``composition:=robot``). It is the rclpy counterpart of a ROS 2
component container: the node classes are the very ones each ``python -m async_naf.nodes.<node>`` process
runs, with the same names, namespace, parameters (each params file is keyed by its node's fully qualified
name, so it reaches only that node), topics, message types and QoS, so nothing outside the process can tell
the difference. What changes: one process instead of four, one executor (rclpy's EventsExecutor by default)
whose single thread runs every callback of the robot, so a control step no longer wakes four processes, and
(unless ``--intra-process off``) messages between the robot's nodes are handed over inside the process
(:mod:`async_naf.nodes._local`, rclcpp's intra-process communication for rclpy) instead of going through DDS;
they still reach DDS for any subscriber in another process.
The trainer is never composed: learning keeps its own process (and its update thread).

Exit: when every node with a ``done`` flag (the collector, at its episode budget) is done, or on SIGINT /
SIGTERM (every node's shutdown hook runs: the policy's last zero-velocity command, the collector's last batch).
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

# role -> "module:NodeClass" of the nodes that can share a robot's process
COMPOSABLE: dict[str, str] = {
    "sim": "async_naf.nodes.sim_node:SimNode",
    "door_angle": "async_naf.nodes.door_angle_node:DoorAngleNode",
    "policy": "async_naf.nodes.policy_node:PolicyNode",
    "collector": "async_naf.nodes.collector_node:CollectorNode",
}
EXECUTORS = ("events", "single_threaded")
USAGE = (f"usage: python -m async_naf.run.container [--executor {{{','.join(EXECUTORS)}}}] "
         "[--intra-process {on,off}] ROLE... --ros-args ...")


def node_class(role: str) -> Callable[[], Any]:
    """The node class of a composable role.

    Raises:
        ValueError: the role cannot be composed (the trainer, or an unknown name).
    """
    if role not in COMPOSABLE:
        raise ValueError(f"role {role!r} cannot be composed; composable roles: {', '.join(COMPOSABLE)}")
    module, _, cls = COMPOSABLE[role].partition(":")
    return getattr(importlib.import_module(module), cls)


def parse_args(argv: list[str]) -> tuple[list[str], str, bool, list[str]]:
    """Split ``argv`` (without the program name) into roles, executor, intra-process delivery (on unless
    ``--intra-process off``) and the ROS arguments.

    Raises:
        ValueError: no role, an unknown or repeated role, a bad executor or intra-process value.
    """
    ros_at = argv.index("--ros-args") if "--ros-args" in argv else len(argv)
    own, ros = argv[:ros_at], argv[ros_at:]
    executor = "events"
    intra = "on"
    roles: list[str] = []
    i = 0
    while i < len(own):
        if own[i] in ("--executor", "--intra-process") and i + 1 < len(own):
            if own[i] == "--executor":
                executor = own[i + 1]
            else:
                intra = own[i + 1]
            i += 2
            continue
        roles.append(own[i])
        i += 1
    if executor not in EXECUTORS:
        raise ValueError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if intra not in ("on", "off"):
        raise ValueError(f"--intra-process must be on or off, got {intra!r}")
    if not roles:
        raise ValueError("no node roles given")
    if len(set(roles)) != len(roles):
        raise ValueError(f"a role appears twice: {roles}")
    for role in roles:
        if role not in COMPOSABLE:
            raise ValueError(f"role {role!r} cannot be composed; composable roles: {', '.join(COMPOSABLE)}")
    return roles, executor, intra == "on", ros


def main(argv: list[str] | None = None) -> int:
    """Entry point: build the nodes in the order given and spin them in one executor."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        roles, executor, intra_process, ros = parse_args(argv)
    except ValueError as exc:
        print(f"container: {exc}\n{USAGE}", file=sys.stderr)
        return 2
    from async_naf.nodes import _local
    from async_naf.nodes._main import run_nodes

    bus = _local.LocalBus() if intra_process else None
    _local.install(bus)  # before the nodes exist: they create their robot-internal streams through it

    def make_executor(nodes: list[Any]) -> Any:
        del nodes
        if executor == "events":
            from rclpy.experimental import EventsExecutor

            ex: Any = EventsExecutor()
        else:
            from rclpy.executors import SingleThreadedExecutor

            ex = SingleThreadedExecutor()
        if bus is not None:
            bus.attach(ex)
        return ex

    factories = [node_class(role) for role in roles]
    try:
        return run_nodes(factories, "container", ["container", *ros], executor_factory=make_executor,
                         after_spin=None if bus is None else bus.raise_pending)
    finally:
        _local.install(None)


if __name__ == "__main__":
    sys.exit(main())
