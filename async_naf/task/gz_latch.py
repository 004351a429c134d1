"""The door latch and door closer in Gazebo: a gz-sim 8 (Harmonic) Python system with the embedded
simulation's rules (:mod:`async_naf.task.latch`).

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

The **door closer** (``door_closer_torque`` N m > 0, ``door_closer_delay_s`` s, ``arm_still_speed`` rad/s:
the xacro arguments of the same names) closes the door between episodes, so Gazebo runs train unattended,
as the embedded sim's hardware mode does: once every arm joint of the model (``arm_joint_1`` ...
``arm_joint_7``, their JointVelocity) has stayed slower than ``arm_still_speed`` for ``door_closer_delay_s``
of simulated time, a closing torque is set on ``door_hinge`` every step (``Joint.set_force``: a
``JointForceCmd``, which the Physics system applies for that step) while the door is open beyond half the
latch play (:func:`~async_naf.task.latch.door_closer_torque`); a zero force is set once when it stops. The
reset node holds the arm still at its retreat (or clear) pose while it waits for the door, which is when the
closer acts; a policy moving the arm never meets it. A model without arm joints (the door alone) has no
closer; ``door_closer_torque`` 0 switches it off.

Differences from the embedded model: DART enforces the limit as a hard constraint (MuJoCo: a soft limit with a
0.01 s time constant), and the rule runs every physics step (1 ms in worlds/async_naf.sdf) instead of every IMU
period. Needs gz-sim's Python bindings (``gz.sim8``, ``gz.math7``) and its ``gz-sim-python-system-loader-system``;
without them gz sim logs an error for the plugin and the door has no latch.
"""
from __future__ import annotations

from typing import Any

from async_naf.task.latch import StillTimer, door_closer_torque, hinge_upper_limit, latch_next

HINGE_JOINT = "door_hinge"
HANDLE_JOINT = "door_handle"
ARM_JOINTS = tuple(f"arm_joint_{i}" for i in range(1, 8))  # the arm the closer waits for (urdf/arm.xacro)
SDF_PARAMETERS = ("latch_threshold", "latch_play", "max_open")  # <plugin> children, rad
CLOSER_PARAMETERS = {"door_closer_torque": 0.0, "door_closer_delay_s": 1.0, "arm_still_speed": 0.01}  # optional


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
        self.closer = dict(CLOSER_PARAMETERS)
        self._arm: list[Any] = []  # the arm's joints (the closer waits for them to hold still)
        self._still = StillTimer(1.0)
        self._time = 0.0  # simulated time since configure, s
        self.closing = False  # the closer acts (counted in closings)
        self.closings = 0

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
        for name, default in CLOSER_PARAMETERS.items():
            self.closer[name] = float(sdf.get_double(name)) if sdf.has_element(name) else default
        if self.closer["door_closer_torque"] < 0.0 or self.closer["door_closer_delay_s"] < 0.0:
            raise ValueError(f"door closer: door_closer_torque and door_closer_delay_s must be >= 0, got "
                             f"{self.closer}")
        if self.closer["door_closer_torque"] > 0.0:
            for name in ARM_JOINTS:
                joint = Joint(model.joint_by_name(ecm, name))
                if joint.valid(ecm):
                    joint.enable_velocity_check(ecm, True)  # creates the JointVelocity component Physics fills
                    self._arm.append(joint)
        self._still = StillTimer(self.closer["door_closer_delay_s"], since=0.0)
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
        if self._arm:
            self._close(info, ecm, float(hinge[0]))

    def _close(self, info: Any, ecm: Any, hinge: float) -> None:
        """The door closer (module docstring), after the latch rule of the same step."""
        self._time += info.dt.total_seconds()  # a datetime.timedelta (pybind11/chrono)
        speeds = [joint.velocity(ecm) for joint in self._arm]
        still = all(v and abs(float(v[0])) < self.closer["arm_still_speed"] for v in speeds)
        torque = door_closer_torque(self.closer["door_closer_torque"], self._still.update(self._time, still),
                                    hinge, self.play)
        if torque != 0.0:
            self._hinge.set_force(ecm, [torque])
            self.closings += not self.closing
            self.closing = True
        elif self.closing:
            self._hinge.set_force(ecm, [0.0])
            self.closing = False

    def reset(self, info: Any, ecm: Any) -> None:
        """gz-sim ISystemReset (world reset): door back to closed, bolt engaged."""
        del info
        self.latched = True
        self.closing = False
        self._still = StillTimer(self.closer["door_closer_delay_s"], since=self._time)
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
