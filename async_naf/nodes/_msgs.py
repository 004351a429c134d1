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
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Float32MultiArray, Float64MultiArray, MultiArrayDimension, MultiArrayLayout, UInt8MultiArray

from async_naf.wire.imu import ImuSample, imu_msg_to_sample
from async_naf.wire.joints import JointStates
from async_naf.wire.layouts import ArrayMsg, PolicyStep, decode_policy_step, encode_policy_step, policy_step_f8
from async_naf.wire.record_bundle import imu_cdr, joint_state_cdr, multiarray_cdr, multiarray_f8_cdr

SENSOR = qos_profile_sensor_data
IMU = QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE,
                 history=HistoryPolicy.KEEP_LAST)
COMMANDS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE,
                      history=HistoryPolicy.KEEP_LAST)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                     history=HistoryPolicy.KEEP_LAST)
STREAM = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE,
                    history=HistoryPolicy.KEEP_LAST)
# a composed robot's bundles for the recorder (async_naf.wire.record_bundle): up to 256 KiB each (RecordTap), 5-10
# a second; 500 let the recorder fall behind for a minute without a loss, 128 MiB at most in the queue
BUNDLE = QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE,
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
    msg.data = _pack(arr.data, code, dtype)
    return msg


def from_msg(msg: object) -> ArrayMsg:
    """A received MultiArray message as an ArrayMsg (data viewed without a copy where possible)."""
    _, dtype = _TYPES[type(msg)]
    values = _unpack(msg.data, dtype)  # type: ignore[attr-defined]
    dims = msg.layout.dim  # type: ignore[attr-defined]
    return ArrayMsg(
        labels=tuple(d.label for d in dims),
        sizes=tuple(int(d.size) for d in dims),
        strides=tuple(int(d.stride) for d in dims),
        data=values,
        data_offset=int(msg.layout.data_offset),  # type: ignore[attr-defined]
    )


def _pack(values: object, code: str, dtype: type) -> array.array:
    """numpy (or a sequence) -> ``array.array``, the generated message setters' fast path for array fields
    (no check per element)."""
    buf = array.array(code)
    buf.frombytes(np.ascontiguousarray(values, dtype=dtype).tobytes())
    return buf


def _unpack(data: object, dtype: type) -> np.ndarray:
    """A received array field (``array.array`` from the middleware) as numpy, viewed without a copy; a field
    set by hand with a list is converted."""
    if isinstance(data, array.array):
        return np.frombuffer(data, dtype=dtype) if len(data) else np.zeros(0, dtype)
    return np.asarray(data, dtype=dtype)




# ---------------------------------------------------------------------------------------- type adapters
# (async_naf.nodes._local.TypeAdapter: in a composed robot the value itself goes from node to node; the ROS
# message is built only for readers that need it, e.g. a recorder or ``ros2 topic echo`` in another process)


class ImuAdapter:
    """``door/imu``: :class:`~async_naf.wire.imu.ImuSample` <-> ``sensor_msgs/Imu``.

    No orientation (``orientation_covariance[0] = -1``, REP 145); unknown covariances as all zeros (the
    message's convention for "unknown" in the other two fields). Each noise model's covariance matrix becomes
    one read-only float64 array shared by its messages (rclpy takes a float64 array of the right size as it
    is, without a check per element).
    """

    ros_type = Imu

    def __init__(self, frame_id: str = "") -> None:
        self.frame_id = frame_id
        self._flat: list[tuple[np.ndarray, np.ndarray] | None] = [None, None]

    def to_ros(self, sample: ImuSample) -> Imu:
        msg = Imu()
        msg.header.frame_id = self.frame_id
        ns = int(sample.stamp_ns)
        msg.header.stamp.sec, msg.header.stamp.nanosec = ns // 1_000_000_000, ns % 1_000_000_000
        msg.orientation_covariance[0] = -1.0
        g, a = sample.gyro, sample.accel
        msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z = float(g[0]), float(g[1]), float(g[2])
        msg.linear_acceleration.x, msg.linear_acceleration.y, msg.linear_acceleration.z = (
            float(a[0]), float(a[1]), float(a[2]))
        if sample.gyro_cov is not None:
            msg.angular_velocity_covariance = self._flat_cov(0, sample.gyro_cov)
        if sample.accel_cov is not None:
            msg.linear_acceleration_covariance = self._flat_cov(1, sample.accel_cov)
        return msg

    def to_cdr(self, sample: ImuSample) -> bytes:
        """What ``to_ros`` builds, as its exact CDR (a recorded run's tap: no message object)."""
        return imu_cdr(sample.stamp_ns, sample.gyro, sample.accel, sample.gyro_cov, sample.accel_cov, self.frame_id)

    def _flat_cov(self, slot: int, cov: np.ndarray) -> np.ndarray:
        cached = self._flat[slot]
        if cached is None or cached[0] is not cov:
            flat = np.array(cov, dtype=np.float64).ravel()
            flat.flags.writeable = False
            cached = self._flat[slot] = (cov, flat)
        return cached[1]

    def from_ros(self, msg: Imu) -> ImuSample:
        return imu_msg_to_sample(msg)


class PolicyStepAdapter:
    """``policy/step``: :class:`~async_naf.wire.layouts.PolicyStep` <-> ``Float64MultiArray`` (the layout
    ``layouts.POLICY_STEP``); a message of another layout or task size raises ``LayoutError`` (a
    ``ValueError``)."""

    ros_type = Float64MultiArray

    def __init__(self, obs_dim: int, act_dim: int) -> None:
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)

    def to_ros(self, step: PolicyStep) -> Float64MultiArray:
        return to_msg(encode_policy_step(step), Float64MultiArray)

    def to_cdr(self, step: PolicyStep) -> bytes:
        """What ``to_ros`` builds, as its exact CDR (a recorded run's tap: no message object)."""
        label, raw = policy_step_f8(step)
        n = len(raw) // 8
        return multiarray_f8_cdr((label,), (n,), (n,), raw)

    def from_ros(self, msg: Float64MultiArray) -> PolicyStep:
        return decode_policy_step(from_msg(msg), self.obs_dim, self.act_dim)


class JointStateAdapter:
    """``joint_states``, ``door/joint_states``, ``ground_truth/door_state``:
    :class:`~async_naf.wire.joints.JointStates` <-> ``sensor_msgs/JointState`` (no frame id, as
    joint_state_broadcaster publishes it). Receivers check names and sizes themselves: every message
    converts."""

    ros_type = JointState

    def to_ros(self, js: JointStates) -> JointState:
        msg = JointState()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(js.stamp_ns), 1_000_000_000)
        msg.name = list(js.name)
        msg.position = _pack(js.position, "d", np.float64)
        msg.velocity = _pack(js.velocity, "d", np.float64)
        msg.effort = _pack(js.effort, "d", np.float64)
        return msg

    def to_cdr(self, js: JointStates) -> bytes:
        """What ``to_ros`` builds, as its exact CDR (a recorded run's tap: no message object)."""
        return joint_state_cdr(js.stamp_ns, js.name, js.position, js.velocity, js.effort)

    def from_ros(self, msg: JointState) -> JointStates:
        stamp = msg.header.stamp
        return JointStates(int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec), tuple(msg.name),
                           _unpack(msg.position, np.float64), _unpack(msg.velocity, np.float64),
                           _unpack(msg.effort, np.float64))


class CommandAdapter:
    """``forward_velocity_controller/commands``: a float64 array (one velocity per joint, rad/s, in the
    controller's joint order) <-> ``std_msgs/Float64MultiArray`` with an empty layout, as ros2_control's
    forward command controllers read it."""

    ros_type = Float64MultiArray

    def to_ros(self, command: np.ndarray) -> Float64MultiArray:
        msg = Float64MultiArray()
        msg.data = _pack(command, "d", np.float64)
        return msg

    def to_cdr(self, command: np.ndarray) -> bytes:
        """What ``to_ros`` builds, as its exact CDR (a recorded run's tap: no message object)."""
        return multiarray_cdr((), (), (), command)

    def from_ros(self, msg: Float64MultiArray) -> np.ndarray:
        return _unpack(msg.data, np.float64)
