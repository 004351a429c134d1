"""The contracts between stages: message array layouts, the Batch of transitions, policy weights, checkpoint framing,
the IMU sample, dataclass <-> ROS parameter mapping. Imports no stage."""
