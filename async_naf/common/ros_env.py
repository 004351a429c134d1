"""Environment defaults for starting ROS 2 processes from the project's own tools and tests.

DDS traffic must stay on loopback unless a user deliberately spans hosts: every process that the
project starts gets ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` unless the caller already set a range.
Spanning hosts is an explicit choice (``async-naf train --discovery subnet`` or ``--discovery-server
HOST:PORT``, ``discovery:=`` / ``discovery_server:=`` of the launch file): :func:`discovery_variables`.
This module is ROS-free (it only builds environment dictionaries).
"""
from __future__ import annotations

import os
from collections.abc import Mapping

DEFAULT_DISCOVERY_RANGE = "LOCALHOST"
DEFAULT_RMW = "rmw_fastrtps_cpp"
MAX_DOMAIN_ID = 101  # 0..101 are safe with Fast DDS's default port mapping
# --discovery: localhost = loopback only (the default); subnet = every host of the local subnets (multicast
# discovery, what a graph split across machines needs); ROS 2's ROS_AUTOMATIC_DISCOVERY_RANGE values
DISCOVERY_RANGES = {"localhost": "LOCALHOST", "subnet": "SUBNET"}


def parse_server(text: str) -> tuple[str, int]:
    """``HOST:PORT`` of a Fast DDS discovery server -> (host, port).

    Raises:
        ValueError: no port, a port outside 1..65535, or an empty host.
    """
    host, sep, port = str(text).strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"discovery server {text!r}: expected HOST:PORT, e.g. 192.168.1.20:11811")
    return host, int(port)


def discovery_variables(discovery: str = "", server: str = "") -> dict[str, str]:
    """Environment variables that make DDS discovery span hosts (empty: leave the default, loopback only).

    Args:
        discovery: ``localhost`` or ``subnet`` (:data:`DISCOVERY_RANGES`), or empty for the inherited range
            (else LOCALHOST).
        server: ``HOST:PORT`` of a Fast DDS discovery server (``fast-discovery-server -i 0 -l HOST -p PORT``,
            which ships in the rclpy wheels): every node becomes its client (``ROS_DISCOVERY_SERVER``) and
            the range is SUBNET, since a server on another host is not on loopback.

    Raises:
        ValueError: an unknown range, a malformed server, or a server with range localhost.
    """
    out: dict[str, str] = {}
    if discovery and discovery not in DISCOVERY_RANGES:
        raise ValueError(f"unknown discovery {discovery!r}; choose one of {', '.join(DISCOVERY_RANGES)}")
    if server:
        host, port = parse_server(server)
        if discovery == "localhost":
            raise ValueError("a discovery server on another host needs discovery subnet, not localhost")
        out["ROS_DISCOVERY_SERVER"] = f"{host}:{port}"
        discovery = "subnet"
    if discovery:
        out["ROS_AUTOMATIC_DISCOVERY_RANGE"] = DISCOVERY_RANGES[discovery]
    return out


def ros_environment(base: Mapping[str, str] | None = None, domain_id: int | None = None, discovery: str = "",
                    discovery_server: str = "") -> dict[str, str]:
    """Return a copy of ``base`` (default ``os.environ``) with the project's ROS 2 defaults applied.

    Args:
        base: environment to start from.
        domain_id: ``ROS_DOMAIN_ID`` to force (0..101); ``None`` keeps the inherited one.
        discovery, discovery_server: spanning hosts on purpose (:func:`discovery_variables`); by default the
            inherited ``ROS_AUTOMATIC_DISCOVERY_RANGE``, else LOCALHOST.

    Raises:
        ValueError: if ``domain_id`` is outside 0..101, or the discovery options are invalid.
    """
    env = dict(os.environ if base is None else base)
    env.update(discovery_variables(discovery, discovery_server))
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", DEFAULT_DISCOVERY_RANGE)
    env.setdefault("RMW_IMPLEMENTATION", DEFAULT_RMW)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if domain_id is not None:
        if not 0 <= domain_id <= MAX_DOMAIN_ID:
            raise ValueError(f"ROS_DOMAIN_ID must be in 0..{MAX_DOMAIN_ID}, got {domain_id}")
        env["ROS_DOMAIN_ID"] = str(domain_id)
    return env


def apply_defaults() -> None:
    """Apply the loopback-only defaults to this process (call before ``rclpy.init``)."""
    os.environ.update({k: v for k, v in ros_environment().items() if k not in os.environ})
