"""IMU door-angle estimation (ROS-free): the hinge angle of a door from an IMU on its leaf.

- :class:`DoorAngleEstimator` / :class:`DoorAngleConfig` / :class:`DoorAngleState`: the estimator
  (see :mod:`async_naf.sensing.door_angle.estimator` for the algorithm).
- :mod:`async_naf.sensing.door_angle.synthetic`: simulated door recordings with ground truth (benchmarks, tests).
- :mod:`async_naf.sensing.door_angle.bag`: reading IMU messages from rosbag2 bags through ``rosbags``.
- :mod:`async_naf.sensing.door_angle.broad`: real IMU recordings with optical truth (BROAD, HDF5) as IMU
  samples and rosbag2 bags (the converter; benchmark in ``benchmarks/door_angle_real.py``).
"""
from async_naf.sensing.door_angle.config import DoorAngleConfig
from async_naf.sensing.door_angle.estimator import DROP_REASONS, DoorAngleEstimator, DoorAngleState, update_guarded

__all__ = ["DROP_REASONS", "DoorAngleConfig", "DoorAngleEstimator", "DoorAngleState", "update_guarded"]
