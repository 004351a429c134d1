"""Embedded MuJoCo simulation of the 7-DoF hook arm and the latched door with an IMU.

    from async_naf.sim import SimConfig, ArmDoorSim, ARM_JOINT_NAMES
    sim = ArmDoorSim(SimConfig(task="door_pull"), seed=0)
    sim.reset()
    imu_samples = sim.step(np.zeros(7))      # joint velocities, rad/s, one control period
    sim.joint_positions, sim.ee_position(), sim.door_state()

The gymnasium wrapper is :class:`async_naf.run.env.ArmDoorEnv` (imported lazily: it needs the estimator).
"""
from async_naf.sim.arm_door_sim import ArmDoorSim, DoorState
from async_naf.sim.config import DoorConfig, ImuNoiseConfig, RandomizationConfig, SimConfig
from async_naf.sim.model import ARM_JOINT_NAMES

__all__ = ["ARM_JOINT_NAMES", "ArmDoorSim", "DoorConfig", "DoorState", "ImuNoiseConfig", "RandomizationConfig",
           "SimConfig"]
