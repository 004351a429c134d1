"""The robot description: the project's URDF (``urdf/arm_door.urdf.xacro``) expanded with xacro, and its joints.

One description for the MuJoCo model (:mod:`async_naf.sim.model`), Gazebo, the real arm and the pinocchio
kinematics (:mod:`async_naf.task.kinematics`). Units: rad, rad/s, N m.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache

from async_naf.common.resources import data_path

ARM_JOINT_NAMES: tuple[str, ...] = tuple(f"arm_joint_{i}" for i in range(1, 8))
"""The arm's joints in command/state order (the order of joint_states and of velocity commands)."""
URDF_XACRO = ("urdf", "arm_door.urdf.xacro")


@lru_cache(maxsize=32)
def _expand_cached(items: tuple[tuple[str, str], ...]) -> str:
    import xacro  # only needed when a model is built

    doc = xacro.process_file(str(data_path(*URDF_XACRO)), mappings=dict(items))
    return doc.toprettyxml(indent="  ")


def expand_urdf(mappings: dict[str, str] | None = None) -> str:
    """Expand ``urdf/arm_door.urdf.xacro`` with the given xacro arguments and return the URDF text."""
    return _expand_cached(tuple(sorted((mappings or {}).items())))


@dataclass(frozen=True)
class UrdfJoint:
    """A movable joint as the URDF declares it (radians, rad/s, N m)."""

    name: str
    lower: float
    upper: float
    velocity: float
    effort: float
    damping: float
    friction: float


def urdf_joints(urdf_xml: str) -> list[UrdfJoint]:
    """Revolute/prismatic joints of a URDF, in document order."""
    root = ET.fromstring(urdf_xml)
    out = []
    for j in root.findall("joint"):
        if j.get("type") not in ("revolute", "prismatic"):
            continue
        lim = j.find("limit")
        if lim is None:
            raise ValueError(f"{j.get('type')} joint {j.get('name')!r} has no <limit>")
        dyn = j.find("dynamics")
        out.append(UrdfJoint(
            name=j.get("name", ""),
            lower=float(lim.get("lower", "0")), upper=float(lim.get("upper", "0")),
            velocity=float(lim.get("velocity", "0")), effort=float(lim.get("effort", "0")),
            damping=float(dyn.get("damping", "0")) if dyn is not None else 0.0,
            friction=float(dyn.get("friction", "0")) if dyn is not None else 0.0,
        ))
    return out
