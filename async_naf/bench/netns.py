"""Several hosts on one machine: Linux network namespaces joined by veth pairs on a bridge of their own.

:class:`NetnsLab` makes one namespace per test host (``trainer``, ``robot_0``, ...) and one more holding a
bridge; each host has an ``eth0`` (a veth pair whose other end is a port of that bridge) with an address of
a private /24, loopback up and a route for multicast (DDS SIMPLE discovery). Nothing is connected to the
machine's own network: traffic goes only between the lab's hosts. Names carry a random tag, so concurrent
labs never meet; :meth:`NetnsLab.close` deletes every namespace (and with them their veths and the bridge).
:meth:`NetnsLab.set_link` takes one host's bridge port down (a cable pulled) and up again.

Needs root (CAP_NET_ADMIN) and ``ip`` (iproute2); :func:`unavailable` says why a lab cannot be made here.
ROS-free: it runs ``ip`` only. Used by test/test_netns_hosts.py and :mod:`async_naf.bench.partition`.
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Sequence

IP = "ip"
# inside the lab's namespaces: DDS finds the other hosts by multicast on their subnet (loopback-only discovery
# would not see them), and UDP only: Fast DDS's shared-memory transport would carry data between processes of
# one machine past the lab's links (the namespaces share /dev/shm), so a pulled link would not partition them
LAB_ENV = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET", "FASTDDS_BUILTIN_TRANSPORTS": "UDPv4"}


class NetnsError(RuntimeError):
    """An ``ip`` command of the lab failed."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([IP, *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc


def unavailable() -> str:
    """Why no lab can be made here ('' if one can): not root, no ``ip``, or namespaces not permitted."""
    if not shutil.which(IP):
        return "iproute2's `ip` is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN)"
    name = f"annaf-probe-{secrets.token_hex(3)}"
    proc = _ip("netns", "add", name, check=False)
    if proc.returncode != 0:
        return f"`ip netns add` is not permitted here: {proc.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return ""


class NetnsLab:
    """Hosts in network namespaces on one private bridge (see the module docstring).

    Use as a context manager (the namespaces are deleted on exit, whatever happened)::

        with NetnsLab(["trainer", "robot_0", "robot_1"]) as lab:
            subprocess.Popen(lab.wrap("robot_0", ["python", "-m", ...]))
            lab.set_link("robot_0", up=False)
    """

    def __init__(self, hosts: Sequence[str], subnet: str = "") -> None:
        """
        Args:
            hosts: host names (letters, digits, ``_``), at most 250.
            subnet: the first three octets of the lab's /24 (default: a random one of 10.213.x).

        Raises:
            ValueError: no hosts, a duplicate or malformed name.
        """
        if not hosts or len(hosts) > 250 or len(set(hosts)) != len(hosts):
            raise ValueError(f"hosts: 1..250 distinct names, got {list(hosts)}")
        for host in hosts:
            if not host or not all(c.isalnum() or c == "_" for c in host):
                raise ValueError(f"host name {host!r}: letters, digits and _ only")
        self.tag = secrets.token_hex(3)  # 6 hex digits: interface names stay within 15 characters
        self.hosts = list(hosts)
        self.subnet = subnet or f"10.213.{secrets.randbelow(250) + 1}"
        self.bridge_ns = f"annaf-{self.tag}-bridge"
        self._made: list[str] = []

    def namespace(self, host: str) -> str:
        """The network namespace of ``host``."""
        self._index(host)
        return f"annaf-{self.tag}-{host}"

    def address(self, host: str) -> str:
        """The IPv4 address of ``host`` on the lab's bridge."""
        return f"{self.subnet}.{self._index(host) + 1}"

    def port(self, host: str) -> str:
        """The bridge's port (veth end in the bridge namespace) that connects ``host``."""
        return f"p{self.tag}{self._index(host)}"

    def _index(self, host: str) -> int:
        try:
            return self.hosts.index(host)
        except ValueError:
            raise ValueError(f"no host {host!r} in this lab ({', '.join(self.hosts)})") from None

    def up(self) -> NetnsLab:
        """Make the namespaces, the bridge and the links. On failure what was made is deleted again.

        Raises:
            NetnsError: an ``ip`` command failed.
        """
        try:
            self._add_ns(self.bridge_ns)
            _ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.bridge_ns, "link", "set", "br0", "up")
            for i, host in enumerate(self.hosts):
                ns, port, end = self.namespace(host), self.port(host), f"h{self.tag}{i}"
                self._add_ns(ns)
                # created inside the bridge namespace, so no interface ever appears in the machine's own
                _ip("-n", self.bridge_ns, "link", "add", port, "type", "veth", "peer", "name", end)
                _ip("-n", self.bridge_ns, "link", "set", end, "netns", ns)
                _ip("-n", self.bridge_ns, "link", "set", port, "master", "br0")
                _ip("-n", self.bridge_ns, "link", "set", port, "up")
                _ip("-n", ns, "link", "set", end, "name", "eth0")
                _ip("-n", ns, "addr", "add", f"{self.address(host)}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")  # multicast discovery
        except BaseException:
            self.close()
            raise
        return self

    def _add_ns(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self._made.append(ns)

    def wrap(self, host: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside ``host``'s namespace (``ip netns exec``)."""
        return [IP, "netns", "exec", self.namespace(host), *argv]

    def set_link(self, host: str, up: bool) -> None:
        """Take ``host``'s bridge port down (its link goes down too: no carrier) or up again."""
        _ip("-n", self.bridge_ns, "link", "set", self.port(host), "up" if up else "down")

    def block_multicast(self) -> None:
        """The bridge stops forwarding multicast (snooping off, no flooding to any port): multicast (DDS
        SIMPLE) discovery then finds no other host, as on networks that do not carry multicast."""
        _ip("-n", self.bridge_ns, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
        for host in self.hosts:
            proc = subprocess.run(["bridge", "-n", self.bridge_ns, "link", "set", "dev", self.port(host),
                                   "mcast_flood", "off"], capture_output=True, text=True, timeout=30)
            if proc.returncode != 0:
                raise NetnsError(f"bridge link set dev {self.port(host)} mcast_flood off: {proc.stderr.strip()}")

    def link_is_up(self, host: str) -> bool:
        """Whether ``host``'s bridge port is administratively up."""
        out = _ip("-n", self.bridge_ns, "-o", "link", "show", self.port(host)).stdout
        flags = out.split("<", 1)[1].split(">", 1)[0].split(",") if "<" in out else []
        return "UP" in flags

    def namespaces(self) -> list[str]:
        """The namespaces of this lab that exist now."""
        listed = _ip("netns", "list", check=False).stdout.split()
        return [ns for ns in (self.bridge_ns, *(self.namespace(h) for h in self.hosts)) if ns in listed]

    def close(self) -> None:
        """Delete every namespace this lab made (their interfaces go with them). Idempotent."""
        errors = []
        while self._made:
            ns = self._made.pop()
            proc = _ip("netns", "del", ns, check=False)
            if proc.returncode != 0 and "No such file" not in proc.stderr:
                errors.append(f"{ns}: {proc.stderr.strip()}")
        if errors:
            raise NetnsError("could not delete " + "; ".join(errors))

    def __enter__(self) -> NetnsLab:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.close()
