"""Forward kinematics of the arm from the project's URDF, with pinocchio (no simulator, no ROS).

What a real robot's software computes from its joint encoders: the hook-tip position in the arm's base frame.
The URDF is expanded from ``urdf/arm_door.urdf.xacro`` (or given); the door joints are locked at 0, so the
model is the 7-joint arm in ``ARM_JOINT_NAMES`` order.

    kin = ArmKinematics()
    kin.ee_position(q)   # (3,) m, base frame (= URDF 'world' = arm_base_link)
"""
from __future__ import annotations

from typing import Any

import numpy as np

from async_naf.task.description import ARM_JOINT_NAMES, expand_urdf

ARM_JOINTS = ARM_JOINT_NAMES
EE_FRAME = "arm_hook_tip"
BASE_FRAME = "arm_base_link"


class ArmKinematics:
    """Pinocchio forward kinematics of the hook arm.

    Args:
        urdf_xml: URDF text; None = expand the package's ``urdf/arm_door.urdf.xacro`` with default arguments.
        ee_frame: the end-effector frame (URDF link), default the hook tip.

    Raises:
        ValueError: if the URDF lacks the arm joints or the end-effector frame.
    """

    def __init__(self, urdf_xml: str | None = None, ee_frame: str = EE_FRAME) -> None:
        import pinocchio as pin  # heavy import, only when kinematics are used

        if urdf_xml is None:
            urdf_xml = expand_urdf({"mode": "mujoco"})
        full = pin.buildModelFromXML(urdf_xml)
        missing = [j for j in ARM_JOINTS if not full.existJointName(j)]
        if missing:
            raise ValueError(f"URDF lacks arm joints {missing}")
        lock = [full.getJointId(n) for n in full.names[1:] if n not in ARM_JOINTS]
        self.model = pin.buildReducedModel(full, lock, pin.neutral(full)) if lock else full
        if [n for n in self.model.names[1:]] != list(ARM_JOINTS):
            raise ValueError(f"unexpected joint order {list(self.model.names[1:])}")
        if not self.model.existFrame(ee_frame):
            raise ValueError(f"URDF has no frame {ee_frame!r}")
        self.data = self.model.createData()
        self._pin = pin
        self._ee = self.model.getFrameId(ee_frame)
        self._base = self.model.getFrameId(BASE_FRAME) if self.model.existFrame(BASE_FRAME) else None
        self.lower = np.array(self.model.lowerPositionLimit)
        self.upper = np.array(self.model.upperPositionLimit)
        self.velocity_limits = np.array(self.model.velocityLimit)

    def ee_pose(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """End-effector (position (3,) m, rotation (3, 3)) in the base frame for joint angles ``q`` (7,) rad."""
        q = np.asarray(q, dtype=float)
        if q.shape != (7,) or not np.isfinite(q).all():
            raise ValueError(f"q must be 7 finite joint angles (rad), got shape {q.shape}")
        ee = self._placement(q)
        return np.array(ee.translation), np.array(ee.rotation)

    def _placement(self, q: np.ndarray) -> Any:
        """The end-effector's placement (pinocchio SE3) in the base frame for checked joint angles ``q``."""
        pin = self._pin
        pin.forwardKinematics(self.model, self.data, q)
        # the two frames needed, not all of the model's (a quarter of the time: this runs every control step)
        ee = pin.updateFramePlacement(self.model, self.data, self._ee)
        if self._base is not None:
            ee = pin.updateFramePlacement(self.model, self.data, self._base).actInv(ee)
        return ee

    def ee_position(self, q: np.ndarray) -> np.ndarray:
        """Hook-tip position (3,) in the base frame, m, for joint angles ``q`` (7,) rad."""
        return self.ee_pose(q)[0]

    def ee_positions(self, q: np.ndarray) -> np.ndarray:
        """Hook-tip positions (n, 3) in the base frame, m, for joint angles ``q`` (n, 7) rad: row i is
        ``ee_position(q[i])`` (the same computation; the input is checked once for all rows)."""
        q = np.asarray(q, dtype=float)
        if q.ndim != 2 or q.shape[1] != 7 or not np.isfinite(q).all():
            raise ValueError(f"q must be (n, 7) finite joint angles (rad), got shape {q.shape}")
        out = np.empty((len(q), 3))
        for i, row in enumerate(q):
            out[i] = self._placement(row).translation
        return out
