"""Shared test fixtures.

Every test run gets its own ``ROS_DOMAIN_ID`` (derived from the pytest process id unless the caller set
one) and ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, so DDS traffic stays on loopback and concurrent runs
on one machine do not see each other. Tests that start node processes should pass ``ros_env`` to them;
``fresh_domain_id`` gives a test a domain of its own.
"""
from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "test"))

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # forced: tests never leave loopback
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
_BASE_DOMAIN = int(os.environ.get("ROS_DOMAIN_ID", str(1 + os.getpid() % 60)))
os.environ["ROS_DOMAIN_ID"] = str(_BASE_DOMAIN)
_domains = itertools.count(1)


@pytest.fixture
def fresh_domain_id() -> int:
    """A ROS_DOMAIN_ID (0..101) not used by any other test of this run."""
    return 1 + (_BASE_DOMAIN + next(_domains)) % 101


@pytest.fixture
def ros_env(fresh_domain_id: int) -> dict[str, str]:
    """Environment for a node subprocess: loopback-only DDS on a domain of its own."""
    from async_naf.common.ros_env import ros_environment

    return ros_environment(domain_id=fresh_domain_id)


@pytest.fixture
def procs(ros_env: dict[str, str], tmp_path: Path):
    """Node processes of one test (test/nodes_harness.Processes), all stopped at its end."""
    from nodes_harness import Processes

    p = Processes(ros_env, tmp_path)
    yield p
    p.stop_all()


@pytest.fixture
def probe(ros_env: dict[str, str]):
    """An rclpy node in the test process watching /diagnostics (test/nodes_harness.Probe), closed at the end."""
    from nodes_harness import Probe

    pr = Probe(ros_env)
    pr.watch_diagnostics()
    yield pr
    pr.close()
