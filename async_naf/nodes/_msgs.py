"""Conversions between real std_msgs MultiArray messages and :mod:`async_naf.wire.layouts`, and the QoS profiles.

The layouts module is ROS-free and works on :class:`async_naf.wire.layouts.ArrayMsg`; this module is the only
place that touches the message classes. Array data is moved as ``array.array`` (fast path of the generated
message setters) and read back with ``np.frombuffer`` (no per-element Python work).

QoS per stream (see the topic table in docs/graph.md):

==============  ===========================================  ==========================================
profile         streams                                      settings
==============  ===========================================  ==========================================
SENSOR          joint_states, door/joint_states,             best effort, volatile, keep last 5
                ground_truth/door_state                      (rclpy.qos.qos_profile_sensor_data)
IMU             door/imu                                     best effort, volatile, keep last 50 (a
                                                             simulated control step publishes its IMU
                                                             samples as one burst: 5 at 100 Hz, 10 at
                                                             200 Hz; keep last 5 would drop some)
COMMANDS        forward_velocity_controller/commands         reliable, volatile, keep last 10
LATCHED         /trainer/weights, task/goal                  reliable, transient local, keep last 1
STREAM          policy/step, /trainer/transitions,           reliable, volatile, keep last 100
                /trainer/episode_stats
==============  ===========================================  ==========================================
"""
from __future__ import annotations

import array

import numpy as np
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from std_msgs.msg import Float32MultiArray, Float64MultiArray, MultiArrayDimension, MultiArrayLayout, UInt8MultiArray

from async_naf.wire.layouts import ArrayMsg

SENSOR = qos_profile_sensor_data
IMU = QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE,
                 history=HistoryPolicy.KEEP_LAST)
COMMANDS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE,
                      history=HistoryPolicy.KEEP_LAST)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                     history=HistoryPolicy.KEEP_LAST)
STREAM = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE,
                    history=HistoryPolicy.KEEP_LAST)

_TYPES = {
    Float32MultiArray: ("f", np.float32),
    Float64MultiArray: ("d", np.float64),
    UInt8MultiArray: ("B", np.uint8),
}


def to_msg(arr: ArrayMsg, msg_type: type) -> object:
    """An ArrayMsg as a ``msg_type`` (Float32MultiArray, Float64MultiArray or UInt8MultiArray)."""
    code, dtype = _TYPES[msg_type]
    msg = msg_type()
    msg.layout = MultiArrayLayout(
        dim=[MultiArrayDimension(label=label, size=int(s), stride=int(st))
             for label, s, st in zip(arr.labels, arr.sizes, arr.strides)],
        data_offset=int(arr.data_offset),
    )
    buf = array.array(code)
    buf.frombytes(np.ascontiguousarray(arr.data, dtype=dtype).tobytes())
    msg.data = buf
    return msg


def from_msg(msg: object) -> ArrayMsg:
    """A received MultiArray message as an ArrayMsg (data viewed without a copy where possible)."""
    _, dtype = _TYPES[type(msg)]
    data = msg.data  # type: ignore[attr-defined]
    if isinstance(data, array.array):
        values = np.frombuffer(data, dtype=dtype) if len(data) else np.zeros(0, dtype)
    else:  # a message built by hand with a list (not from the middleware)
        values = np.asarray(data, dtype=dtype)
    dims = msg.layout.dim  # type: ignore[attr-defined]
    return ArrayMsg(
        labels=tuple(d.label for d in dims),
        sizes=tuple(int(d.size) for d in dims),
        strides=tuple(int(d.stride) for d in dims),
        data=values,
        data_offset=int(msg.layout.data_offset),  # type: ignore[attr-defined]
    )


def stamp_to_s(stamp: object) -> float:
    """builtin_interfaces/Time -> seconds (float)."""
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)  # type: ignore[attr-defined]
