"""The door latch in Gazebo: a gz-sim 8 (Harmonic) Python system with the embedded simulation's latch rule.

Loaded per robot by the robot description (``mode:=gazebo``; urdf/door.xacro) through gz-sim's
``PythonSystemLoader``, which imports this module by name (``<module_name>async_naf.task.gz_latch``; the
module must be on the gz sim process's Python path: a sourced colcon install of async_naf puts it there) and
calls :func:`get_system`. The loader passes the ``<plugin>`` element, which carries ``latch_threshold``,
``latch_play`` and ``max_open`` (rad; the xacro arguments of the same names, from ``DoorConfig``: one source
of truth with the embedded model).

Every physics step (``pre_update``) it reads the model's ``door_handle`` and ``door_hinge`` positions and
applies :func:`async_naf.task.latch.latch_next`; when the state changes it sets the hinge's position limits
(``gz.sim.Joint`` ``SetPositionLimits``: a ``JointPositionLimitsCmd`` component, applied by the Physics
system and kept by the physics engine until the next one) to ``[0, latch_play]`` (engaged) or
``[0, max_open]`` (retracted), as ``ArmDoorSim._update_latch`` sets MuJoCo's ``jnt_range``. A world reset
(gz ``reset``) engages the bolt again.

Differences from the embedded model: DART enforces the limit as a hard constraint (MuJoCo: a soft limit with a
0.01 s time constant), and the rule runs every physics step (1 ms in worlds/async_naf.sdf) instead of every IMU
period. Needs gz-sim's Python bindings (``gz.sim8``, ``gz.math7``) and its ``gz-sim-python-system-loader-system``;
without them gz sim logs an error for the plugin and the door has no latch.
"""
from __future__ import annotations

from typing import Any

from async_naf.task.latch import hinge_upper_limit, latch_next

HINGE_JOINT = "door_hinge"
HANDLE_JOINT = "door_handle"
SDF_PARAMETERS = ("latch_threshold", "latch_play", "max_open")  # <plugin> children, rad


class DoorLatchSystem:
    """One robot's latch (the model the plugin belongs to)."""

    def __init__(self) -> None:
        self.latched = True
        self.threshold = 0.0
        self.play = 0.0
        self.max_open = 0.0
        self.switches = 0  # state changes since the start (engaged <-> retracted)
        self._hinge: Any = None
        self._handle: Any = None

    def configure(self, entity: Any, sdf: Any, ecm: Any, event_mgr: Any) -> None:
        """gz-sim ISystemConfigure: find the door's joints in the model, read the latch parameters."""
        del event_mgr
        from gz.sim8 import Joint, Model  # gz-sim's Python bindings: only inside gz sim

        self.threshold, self.play, self.max_open = (float(sdf.get_double(name)) for name in SDF_PARAMETERS)
        if not 0.0 < self.play < self.max_open or not self.threshold > 0.0:
            raise ValueError(f"door latch: need 0 < latch_play < max_open and latch_threshold > 0, got "
                             f"latch_play {self.play}, max_open {self.max_open}, latch_threshold {self.threshold}")
        model = Model(entity)
        joints = {}
        for name in (HINGE_JOINT, HANDLE_JOINT):
            joint = Joint(model.joint_by_name(ecm, name))
            if not joint.valid(ecm):
                raise ValueError(f"door latch: model {model.name(ecm)!r} has no joint {name!r}")
            joint.enable_position_check(ecm, True)  # creates the JointPosition component Physics fills
            joints[name] = joint
        self._hinge, self._handle = joints[HINGE_JOINT], joints[HANDLE_JOINT]
        self.latched = True
        self._apply(ecm)

    def pre_update(self, info: Any, ecm: Any) -> None:
        """gz-sim ISystemPreUpdate: the latch rule on the last step's joint positions."""
        if info.paused:
            return
        handle, hinge = self._handle.position(ecm), self._hinge.position(ecm)
        if not handle or not hinge:  # before the first physics step fills JointPosition
            return
        latched = latch_next(self.latched, float(handle[0]), float(hinge[0]), self.threshold, self.play)
        if latched != self.latched:
            self.latched = latched
            self.switches += 1
            self._apply(ecm)

    def reset(self, info: Any, ecm: Any) -> None:
        """gz-sim ISystemReset (world reset): door back to closed, bolt engaged."""
        del info
        self.latched = True
        self._apply(ecm)

    def _apply(self, ecm: Any) -> None:
        from gz.math7 import Vector2d

        limits = [Vector2d(0.0, hinge_upper_limit(self.latched, self.play, self.max_open))]
        # gz-sim 8's binding spells it set_position_imits; later releases may fix the name
        setter = getattr(self._hinge, "set_position_limits", None) or self._hinge.set_position_imits
        setter(ecm, limits)


def get_system() -> DoorLatchSystem:
    """Entry point of gz-sim's PythonSystemLoader."""
    return DoorLatchSystem()
