"""Environment defaults for starting ROS 2 processes from the project's own tools and tests.

DDS traffic must stay on loopback unless a user deliberately spans hosts: every process that the
project starts gets ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` unless the caller already set a range.
This module is ROS-free (it only builds environment dictionaries).
"""
from __future__ import annotations

import os
from collections.abc import Mapping

DEFAULT_DISCOVERY_RANGE = "LOCALHOST"
DEFAULT_RMW = "rmw_fastrtps_cpp"
MAX_DOMAIN_ID = 101  # 0..101 are safe with Fast DDS's default port mapping


def ros_environment(base: Mapping[str, str] | None = None, domain_id: int | None = None) -> dict[str, str]:
    """Return a copy of ``base`` (default ``os.environ``) with the project's ROS 2 defaults applied.

    Args:
        base: environment to start from.
        domain_id: ``ROS_DOMAIN_ID`` to force (0..101); ``None`` keeps the inherited one.

    Raises:
        ValueError: if ``domain_id`` is outside 0..101.
    """
    env = dict(os.environ if base is None else base)
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
