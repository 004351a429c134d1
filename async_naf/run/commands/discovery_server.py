"""``async-naf discovery-server``: a Fast DDS discovery server for a graph split over hosts."""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from async_naf.common.ros_env import server_address

HELP = "start a Fast DDS discovery server (the rclpy wheels' fast-discovery-server) for a graph over several hosts"
DESCRIPTION = """Start a Fast DDS discovery server on this host, for a graph whose hosts cannot find each other by
multicast (docs/graph.md, "Several hosts"); every part then runs with --discovery-server ADDRESS:PORT.

The server is the rclpy wheels' own fast-discovery-server (next to this Python), else the one on PATH (a ROS 2
install). The wheels' binary does not find its libraries when run from a shell (its RPATH points outside the
virtual environment: "error while loading shared libraries: libfastrtps.so.2.14"); this command runs it with the
library path the wheels set up for Python, and replaces itself with it (Ctrl-C stops the server).

Examples:
  async-naf discovery-server --address 192.168.1.20              # then: --discovery-server 192.168.1.20:11811
  async-naf discovery-server --address 192.168.1.20 --port 11812 --server-id 1
                                                                  # then: --discovery-server ';192.168.1.20:11812'
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", required=True, metavar="IP",
                        help="the address of this host the other hosts reach it by (the server listens there)")
    parser.add_argument("--port", type=int, default=11811, help="UDP port (default: %(default)s)")
    parser.add_argument("--server-id", type=int, default=0,
                        help="server id, 0..255; the parts then name it after that many ';' (Fast DDS reads the id "
                             "from its place in the list) (default: %(default)s)")


def server_binary() -> str | None:
    """``fast-discovery-server`` next to this Python (the rclpy wheels ship it), else on PATH, else None."""
    return shutil.which("fast-discovery-server", path=str(Path(sys.executable).parent)) or shutil.which(
        "fast-discovery-server")


def client_address(address: str, port: int, server_id: int) -> str:
    """What the parts give as ``--discovery-server`` (``ROS_DISCOVERY_SERVER``) for this server: Fast DDS reads
    a server's id from its place in that ``;``-separated list, so id N comes after N separators. An IPv6 address
    goes in brackets (``[fd00::5]:11811``): without them Fast DDS reads its last digits as the port."""
    return ";" * server_id + server_address(address, port)


def server_command(binary: str, address: str, port: int, server_id: int) -> list[str]:
    """The server's command line (Fast DDS 2.x ``fast-discovery-server`` options).

    Raises:
        ValueError: a port outside 1..65535, a server id outside 0..255 or an empty address.
    """
    if not address.strip():
        raise ValueError("--address must name this host's address (e.g. 192.168.1.20)")
    if not 1 <= port <= 65535:
        raise ValueError(f"--port must be in 1..65535, got {port}")
    if not 0 <= server_id <= 255:
        raise ValueError(f"--server-id must be in 0..255, got {server_id}")
    return [binary, "-i", str(server_id), "-l", address.strip(), "-p", str(port)]


def run(args: argparse.Namespace) -> int:
    binary = server_binary()
    if binary is None:
        print("error: fast-discovery-server not found next to this Python (the rclpy wheels: `make setup`) or on "
              "PATH (a ROS 2 install)", file=sys.stderr)
        return 2
    try:
        argv = server_command(binary, args.address, args.port, args.server_id)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.address.strip() in ("0.0.0.0", "::"):
        print("warning: the parts need this host's own address in --discovery-server, not the wildcard "
              f"{args.address.strip()}", file=sys.stderr)
    print(f"async-naf discovery-server: {' '.join(argv)} (parts: --discovery-server "
          f"'{client_address(args.address, args.port, args.server_id)}')", file=sys.stderr, flush=True)
    os.execve(binary, argv, server_environment())
    return 1  # not reached: execve replaces this process or raises


def server_environment() -> dict[str, str]:
    """This environment with the rclpy wheels' library directories on LD_LIBRARY_PATH (the wheels' own
    bootstrapper computes them: ``ros_wheels_bootstrapper.get_ros_paths``; it sets them for Python, once per
    environment, so a process started with its marker but without the path would not get them)."""
    env = dict(os.environ)
    try:
        import ros_wheels_bootstrapper  # type: ignore[import-untyped,unused-ignore]  # the rclpy wheels' (a ROS install: none)
    except ImportError:
        return env
    env["LD_LIBRARY_PATH"] = ros_wheels_bootstrapper.get_ros_paths()
    return env
