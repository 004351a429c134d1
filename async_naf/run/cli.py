"""The ``async-naf`` command-line interface.

Each subcommand lives in its own module under ``async_naf.run.commands``; a module provides ``HELP`` (one
line), ``DESCRIPTION`` (the ``--help`` text), ``add_arguments(parser)`` and ``run(args) -> int``. Modules
import their heavy dependencies (torch, mujoco, rclpy) inside ``run`` so ``--help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand name -> module under async_naf.run.commands
COMMANDS: dict[str, str] = {
    "train": "train",
    "evaluate": "evaluate",
    "experiment": "experiment",
    "door-angle": "door_angle",
    "bag": "bag",
    "train-offline": "train_offline",
    "bench": "bench",
    "discovery-server": "discovery_server",
}


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="async-naf",
        description="Asynchronous NAF for robot arms over ROS 2: train, evaluate, estimate door angles, bench.",
    )
    from async_naf import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(f"async_naf.run.commands.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"async_naf.run.commands.{module_name}":
                raise
            continue  # a command whose module is not part of this build
        cmd = sub.add_parser(
            name,
            help=module.HELP,
            description=module.DESCRIPTION,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``async-naf``; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
