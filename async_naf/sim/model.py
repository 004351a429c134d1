"""The MuJoCo model, compiled from the project's URDF (``urdf/arm_door.urdf.xacro``).

The URDF is the single robot description (shared with Gazebo, the real arm and pinocchio). MuJoCo compiles it
directly; everything URDF cannot express is added in exactly one place, :func:`add_mujoco_extras`:

- solver options (timestep, implicit-fast integrator);
- the arm's joint servos: one ``intvelocity`` actuator per arm joint (the command is a joint velocity in
  rad/s, integrated into a position target that a stiff PD servo tracks - what an industrial arm's joint
  velocity interface does), torque limits from the URDF ``effort``, gravity compensation of the arm links
  (the arm's own controller does it) and reflected rotor inertia (armature);
- the handle's return spring (stiffness and preloaded rest angle);
- contact filtering: arm <-> door only (no self-collision, no door <-> frame contacts: the hinge's joint
  limits are the frame and the door stop); collision cylinders become capsules of the same length
  (faster, smoother contacts);
- sites ``hook_tip`` (end-effector point) and ``door_imu`` with gyro + accelerometer sensors.

The latch is not a static model element: :meth:`async_naf.sim.arm_door_sim.ArmDoorSim._update_latch`
changes the hinge's upper limit with the handle angle during stepping (see there).
"""
from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from async_naf.sim.config import DoorConfig, ImuNoiseConfig, SimConfig
from async_naf.task.description import (
    ARM_JOINT_NAMES,
    UrdfJoint,
    expand_urdf,
    urdf_joints,
)
from async_naf.task.tasks import door_handle_y

DOOR_HINGE = "door_hinge"
DOOR_HANDLE = "door_handle"
HOOK_TIP_LINK = "arm_hook_tip"
IMU_LINK = "door_imu_link"

# servo stiffness per arm joint, N m/rad (with the torque limit it bounds the force the arm can exert on
# an obstacle); damping is critical for the joint's effective inertia (dampratio 1)
SERVO_KP = (2000.0, 2000.0, 1000.0, 1000.0, 500.0, 200.0, 200.0)
ARMATURE = (0.4, 0.4, 0.2, 0.2, 0.1, 0.05, 0.05)  # kg m^2, reflected rotor inertia
ARM_CONTYPE, DOOR_CONTYPE = 1, 2


def xacro_mappings(door: DoorConfig, hinge_left: bool, opening: str, mode: str = "mujoco") -> dict[str, str]:
    """xacro arguments of ``arm_door.urdf.xacro`` for a door configuration."""
    return {
        "mode": mode,
        "door_front_x": repr(door.front_x),
        "door_handle_y": repr(door_handle_y(door, opening)),
        "door_handle_height": repr(door.handle_height),
        "door_width": repr(door.width),
        "door_height": repr(door.height),
        "door_thickness": repr(door.thickness),
        "door_hinge_left": "true" if hinge_left else "false",
        "door_opening": opening,
        "door_mass": repr(door.mass),
        "door_max_open": repr(door.max_open),
        "door_hinge_damping": repr(door.hinge_damping),
        "door_hinge_friction": repr(door.hinge_friction),
        "handle_damping": repr(door.handle_damping),
        "handle_spring": repr(door.handle_spring),
        "handle_spring_ref": repr(door.handle_spring_ref),
        "handle_max": repr(door.handle_max),
        # Gazebo's latch system (async_naf.task.gz_latch; mode gazebo only)
        "latch_threshold": repr(door.latch_threshold),
        "latch_play": repr(door.latch_play),
    }


# correlation time of the Gazebo IMU's dynamic bias, s: gz-sensors drives it as a Gauss-Markov process whose
# increments have variance dynamic_bias_stddev^2 * dt while dt << tau, i.e. a random walk of density
# dynamic_bias_stddev for runs much shorter than tau (the embedded model's walk is unbounded)
IMU_BIAS_CORRELATION_TIME_S = 3600.0


def imu_xacro_mappings(imu: ImuNoiseConfig) -> dict[str, str]:
    """xacro arguments of the Gazebo door IMU sensor (``mode:=gazebo``) from the embedded model's
    :class:`ImuNoiseConfig`, so both simulators sample and corrupt the IMU alike: sample rate; per axis
    gaussian white noise (per-sample std = density * sqrt(rate)), a constant bias drawn at start (std =
    ``*_bias_std``; gz-sensors draws it from N(bias_mean = 0, bias_stddev) with a random sign) and a bias
    random walk (``dynamic_bias_stddev`` = ``*_bias_walk``, correlation time
    :data:`IMU_BIAS_CORRELATION_TIME_S`). gz-sensors has no scale-factor error or warm-up drift: those two
    terms of the embedded model are absent in Gazebo. ``imu.enabled: false`` gives zeros (perfect samples)."""
    on = 1.0 if imu.enabled else 0.0
    return {
        "imu_rate_hz": repr(float(imu.rate_hz)),
        "imu_gyro_noise_stddev": repr(imu.gyro_white_std),
        "imu_gyro_bias_stddev": repr(on * imu.gyro_bias_std),
        "imu_gyro_bias_walk": repr(on * imu.gyro_bias_walk),
        "imu_accel_noise_stddev": repr(imu.accel_white_std),
        "imu_accel_bias_stddev": repr(on * imu.accel_bias_std),
        "imu_accel_bias_walk": repr(on * imu.accel_bias_walk),
        "imu_bias_correlation_time": repr(IMU_BIAS_CORRELATION_TIME_S),
    }


def _with_mujoco_compiler(urdf_xml: str) -> str:
    """Insert the ``<mujoco><compiler/></mujoco>`` block MuJoCo's URDF importer reads (kept out of the
    URDF files themselves): keep fixed-joint links as bodies (hook_tip, door_imu_link), drop visuals."""
    block = '<mujoco><compiler fusestatic="false" discardvisual="true" balanceinertia="true"/></mujoco>'
    head, sep, rest = urdf_xml.partition("<link")
    if not sep:
        raise ValueError("URDF has no <link> elements")
    return head + block + sep + rest


def add_mujoco_extras(spec: mujoco.MjSpec, config: SimConfig, joints: list[UrdfJoint]) -> None:
    """Everything MuJoCo needs beyond the URDF (see the module docstring). Edits ``spec`` in place."""
    door = config.door
    by_name = {j.name: j for j in joints}
    spec.option.timestep = config.physics_timestep_s
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.gravity = [0.0, 0.0, -9.81]

    for jname, armature in zip(ARM_JOINT_NAMES, ARMATURE):
        spec.joint(jname).armature = armature
    for body in spec.bodies:
        if body.name.startswith("arm_"):
            body.gravcomp = 1.0  # the arm's own controller compensates gravity

    handle = spec.joint(DOOR_HANDLE)
    handle.stiffness = [door.handle_spring, 0.0, 0.0]  # linear spring (MuJoCo 4 allows a polynomial)
    handle.springref = door.handle_spring_ref

    for geom in spec.geoms:
        body = geom.parent.name
        is_arm = body.startswith("arm_")
        geom.contype = ARM_CONTYPE if is_arm else DOOR_CONTYPE
        geom.conaffinity = DOOR_CONTYPE if is_arm else ARM_CONTYPE
        geom.friction = [0.8, 0.005, 0.0001]
        if geom.type == mujoco.mjtGeom.mjGEOM_CYLINDER:
            radius, half = float(geom.size[0]), float(geom.size[1])
            geom.type = mujoco.mjtGeom.mjGEOM_CAPSULE
            geom.size = [radius, max(half - radius, 1e-3), 0.0]

    spec.body(HOOK_TIP_LINK).add_site(name="hook_tip", size=[0.005, 0.0, 0.0])
    spec.body(IMU_LINK).add_site(name="door_imu", size=[0.01, 0.0, 0.0])
    spec.add_sensor(name="door_imu_gyro", type=mujoco.mjtSensor.mjSENS_GYRO,
                    objtype=mujoco.mjtObj.mjOBJ_SITE, objname="door_imu")
    spec.add_sensor(name="door_imu_accel", type=mujoco.mjtSensor.mjSENS_ACCELEROMETER,
                    objtype=mujoco.mjtObj.mjOBJ_SITE, objname="door_imu")

    for jname, kp in zip(ARM_JOINT_NAMES, SERVO_KP):
        j = by_name[jname]
        act = spec.add_actuator(name=f"{jname}_velocity", target=jname, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_intvelocity(kp=kp, dampratio=1.0)
        act.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
        act.ctrlrange = [-j.velocity, j.velocity]
        act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        act.forcerange = [-j.effort, j.effort]
        act.actlimited = mujoco.mjtLimited.mjLIMITED_TRUE
        act.actrange = [j.lower, j.upper]


@dataclass
class CompiledModel:
    """A compiled scene and the indices the simulation needs."""

    model: mujoco.MjModel
    urdf_xml: str
    joints: list[UrdfJoint]
    arm_qpos: np.ndarray  # (7,) qpos addresses of the arm joints
    arm_dof: np.ndarray  # (7,) dof addresses
    hinge_joint: int
    hinge_qpos: int
    hinge_dof: int
    handle_qpos: int
    handle_dof: int
    hook_site: int
    imu_site: int
    gyro_adr: int
    accel_adr: int
    velocity_limits: np.ndarray  # (7,) rad/s
    position_limits: np.ndarray  # (7, 2) rad


def build_model(config: SimConfig, door: DoorConfig | None = None, hinge_left: bool | None = None) -> CompiledModel:
    """Expand the xacro for ``config`` (door geometry optionally overridden), compile it with MuJoCo and
    apply :func:`add_mujoco_extras`."""
    door = door or config.door
    hinge_left = config.hinge_left if hinge_left is None else hinge_left
    urdf = expand_urdf(xacro_mappings(door, hinge_left, config.door_opening))
    joints = urdf_joints(urdf)
    spec = mujoco.MjSpec.from_string(_with_mujoco_compiler(urdf))
    cfg = config if door is config.door else _replace_door(config, door)
    add_mujoco_extras(spec, cfg, joints)
    model = spec.compile()
    jid = {name: mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name) for name in ARM_JOINT_NAMES}
    hinge = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, DOOR_HINGE)
    handle = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, DOOR_HANDLE)
    gyro = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, "door_imu_gyro")
    accel = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, "door_imu_accel")
    by_name = {j.name: j for j in joints}
    return CompiledModel(
        model=model, urdf_xml=urdf, joints=joints,
        arm_qpos=np.array([model.jnt_qposadr[jid[n]] for n in ARM_JOINT_NAMES]),
        arm_dof=np.array([model.jnt_dofadr[jid[n]] for n in ARM_JOINT_NAMES]),
        hinge_joint=hinge, hinge_qpos=int(model.jnt_qposadr[hinge]), hinge_dof=int(model.jnt_dofadr[hinge]),
        handle_qpos=int(model.jnt_qposadr[handle]), handle_dof=int(model.jnt_dofadr[handle]),
        hook_site=mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "hook_tip"),
        imu_site=mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "door_imu"),
        gyro_adr=int(model.sensor_adr[gyro]), accel_adr=int(model.sensor_adr[accel]),
        velocity_limits=np.array([by_name[n].velocity for n in ARM_JOINT_NAMES]),
        position_limits=np.array([[by_name[n].lower, by_name[n].upper] for n in ARM_JOINT_NAMES]),
    )


def _replace_door(config: SimConfig, door: DoorConfig) -> SimConfig:
    import dataclasses

    return dataclasses.replace(config, door=door)
