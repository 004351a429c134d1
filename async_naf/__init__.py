"""async_naf: asynchronous NAF for robot arms.

This package is the ROS-free core (NAF and baselines, replay buffer, IMU door-angle estimator, tasks,
embedded MuJoCo simulation, message layouts). It never imports rclpy; the rclpy nodes live in
``async_naf.nodes``. Heavy dependencies (torch, mujoco) are imported by the submodules that need them,
so ``import async_naf`` stays cheap.
"""

__version__ = "0.1.0"
