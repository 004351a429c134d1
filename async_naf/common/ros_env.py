"""Environment defaults for starting ROS 2 processes from the project's own tools and tests.

DDS traffic must stay on loopback unless a user deliberately spans hosts: every process that the
project starts gets ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` unless the caller already set a range.
Spanning hosts is an explicit choice (``async-naf train --discovery subnet`` or ``--discovery-server
HOST:PORT``, ``discovery:=`` / ``discovery_server:=`` of the launch file): :func:`discovery_variables`.
This module is ROS-free (it only builds environment dictionaries).
"""
from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping

DEFAULT_DISCOVERY_RANGE = "LOCALHOST"
DEFAULT_RMW = "rmw_fastrtps_cpp"
MAX_DOMAIN_ID = 101  # 0..101 are safe with Fast DDS's default port mapping
# --discovery: localhost = loopback only (the default); subnet = every host of the local subnets (multicast
# discovery, what a graph split across machines needs); ROS 2's ROS_AUTOMATIC_DISCOVERY_RANGE values
DISCOVERY_RANGES = {"localhost": "LOCALHOST", "subnet": "SUBNET"}


# a host name as Fast DDS 2.14 resolves one in ROS_DISCOVERY_SERVER (its pattern ``[\w\.-]{0,63}``, ASCII here)
_HOST_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}")
_SERVER_HELP = "expected HOST:PORT (e.g. 192.168.1.20:11811, robots.lan:11811 or [fd00::5]:11811)"


def parse_server(text: str) -> tuple[str, int]:
    """One ``HOST:PORT`` of a Fast DDS discovery server -> (host, port).

    HOST is an IPv4 address, an IPv6 address in brackets (``[fd00::5]:11811``: without them Fast DDS would read
    the last digits of ``fd00::5:11811`` as the port) or a host name Fast DDS resolves (letters, digits,
    ``_ . -``, at most 63). The host comes back without brackets.

    Raises:
        ValueError: no port, a port outside 1..65535, an empty or malformed host, an IPv6 address without
            brackets, or the wildcard address (0.0.0.0, ``::``: parts on other hosts cannot reach it).
    """
    entry = str(text).strip()
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None  # None: a name, Fast DDS resolves it
    if entry.startswith("["):
        host, sep, port = entry[1:].partition("]:")
        if not sep:
            raise ValueError(f"discovery server {text!r}: {_SERVER_HELP}")
        try:
            address = ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"discovery server {text!r}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port = entry.rpartition(":")
        if ":" in host:
            raise ValueError(f"discovery server {text!r}: write an IPv6 address in brackets, [{host}]:{port}")
        if not sep or not host or not _HOST_NAME.fullmatch(host):
            raise ValueError(f"discovery server {text!r}: {_SERVER_HELP}")
        if re.fullmatch(r"[0-9.]+", host):
            try:
                address = ipaddress.IPv4Address(host)
            except ValueError:
                raise ValueError(f"discovery server {text!r}: {host!r} is not an IPv4 address") from None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"discovery server {text!r}: the port must be 1..65535; {_SERVER_HELP}")
    if address is not None and address.is_unspecified:
        raise ValueError(f"discovery server {text!r}: {host} is the wildcard address; give the server host's own "
                         "address")
    return host, int(port)


def server_address(host: str, port: int) -> str:
    """``HOST:PORT`` as Fast DDS reads it in ``ROS_DISCOVERY_SERVER``: an IPv6 address in brackets."""
    host = host.strip()
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def server_list(text: str) -> str:
    """``ROS_DISCOVERY_SERVER`` for ``text``: one ``HOST:PORT`` (:func:`parse_server`), or several separated by
    ``;``, where an empty place skips a server id (Fast DDS reads a server's id from its place: ``;HOST:PORT`` is
    id 1). Each host is checked and written as Fast DDS reads it (IPv6 in brackets).

    Raises:
        ValueError: a malformed entry, or no server at all.
    """
    places = [place.strip() for place in str(text).split(";")]
    out = [server_address(*parse_server(place)) if place else "" for place in places]
    if not any(out):
        raise ValueError(f"discovery server {text!r}: {_SERVER_HELP}")
    return ";".join(out)


def discovery_variables(discovery: str = "", server: str = "") -> dict[str, str]:
    """Environment variables that make DDS discovery span hosts (empty: leave the default, loopback only).

    Args:
        discovery: ``localhost`` or ``subnet`` (:data:`DISCOVERY_RANGES`), or empty for the inherited range
            (else LOCALHOST).
        server: ``HOST:PORT`` of a Fast DDS discovery server (``fast-discovery-server -i 0 -l HOST -p PORT``,
            which ships in the rclpy wheels), or a ``;``-separated list of them (:func:`server_list`): every
            node becomes its client (``ROS_DISCOVERY_SERVER``) and the range is SUBNET, since a server on another
            host is not on loopback.

    Raises:
        ValueError: an unknown range, a malformed server, or a server with range localhost.
    """
    out: dict[str, str] = {}
    if discovery and discovery not in DISCOVERY_RANGES:
        raise ValueError(f"unknown discovery {discovery!r}; choose one of {', '.join(DISCOVERY_RANGES)}")
    if server:
        servers = server_list(server)
        if discovery == "localhost":
            raise ValueError("a discovery server on another host needs discovery subnet, not localhost")
        out["ROS_DISCOVERY_SERVER"] = servers
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
