"""async_naf.recording.cdr: Float64MultiArray messages decoded as tables agree with rosbags' deserialiser."""
from __future__ import annotations

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from async_naf.recording.cdr import multiarray_groups, parse_header

F64 = "std_msgs/msg/Float64MultiArray"
STORE = get_typestore(Stores.ROS2_JAZZY)
T = STORE.types


def _message(labels: list[str], data: np.ndarray, offset: int = 0) -> bytes:
    dims = [T["std_msgs/msg/MultiArrayDimension"](label=lab, size=len(data), stride=len(data)) for lab in labels]
    msg = T[F64](layout=T["std_msgs/msg/MultiArrayLayout"](dim=dims, data_offset=offset), data=np.asarray(data, float))
    return bytes(STORE.serialize_cdr(msg, F64))


def test_tables_hold_what_rosbags_deserialises_and_leave_the_rest_by_index() -> None:
    rng = np.random.default_rng(3)
    layouts = [["async_naf.policy_step.v1:obs=22,act=7"], ["x"], ["ab", "cde"], []]
    messages = []
    for _ in range(400):
        labels = layouts[rng.integers(len(layouts))]
        n = 46 if labels and labels[0].startswith("async") else int(rng.integers(0, 9))
        messages.append(_message(labels, rng.normal(size=n), offset=int(rng.integers(0, 2))))
    messages += [b"", b"\x00\x01\x00\x00", b"\x00\x00\x00\x00" + bytes(40)]  # empty, truncated, big endian
    big = bytes(STORE.serialize_cdr(STORE.deserialize_cdr(messages[0], F64), F64, little_endian=False))
    messages.append(big)
    buf = np.frombuffer(b"".join(messages), np.uint8)
    length = np.array([len(m) for m in messages], np.int64)
    start = np.concatenate(([0], np.cumsum(length)[:-1]))
    groups, rest = multiarray_groups(buf, start, length)

    covered = np.concatenate([g.messages for g in groups] + [rest])
    assert sorted(covered.tolist()) == list(range(len(messages)))  # every message exactly once
    assert {len(messages) - 4, len(messages) - 3, len(messages) - 2, len(messages) - 1} <= set(rest.tolist())
    decoded = 0
    for g in groups:
        assert (np.diff(g.messages) > 0).all()
        for row, i in zip(g.data, g.messages.tolist()):
            msg = STORE.deserialize_cdr(messages[i], F64)
            assert tuple(d.label for d in msg.layout.dim) == g.labels
            assert tuple(int(d.size) for d in msg.layout.dim) == g.sizes
            assert int(msg.layout.data_offset) == g.data_offset
            assert np.array_equal(np.asarray(msg.data), row)
            decoded += 1
    assert decoded == 400  # all but the four broken ones, in tables


def test_header_parse_refuses_what_is_not_a_whole_message() -> None:
    good = _message(["abc"], np.arange(3.0))
    header = parse_header(good)
    assert header is not None and header.labels == ("abc",) and header.n_values == 3
    assert header.data_start + 24 == len(good)
    assert parse_header(good[:-8]) is None  # values cut short
    assert parse_header(good + bytes(8)) is None  # trailing bytes
    assert parse_header(b"\x00\x00" + good[2:]) is None  # big endian: left to rosbags
    empty = _message([], np.zeros(0))
    assert parse_header(empty) is not None and parse_header(empty).n_values == 0


def test_joint_state_tables_hold_what_rosbags_deserialises() -> None:
    from async_naf.recording.cdr import joint_state_groups

    js_type = "sensor_msgs/msg/JointState"
    rng = np.random.default_rng(5)
    messages = []
    for k in range(300):
        names = [["door_hinge", "door_handle"], ["a", "bb", "ccc"], ["door_handle", "door_hinge"]][k % 3]
        n_vel = len(names) if k % 5 else 0
        msg = T[js_type](header=T["std_msgs/msg/Header"](
            stamp=T["builtin_interfaces/msg/Time"](sec=int(rng.integers(-5, 2**31 - 1)),
                                                   nanosec=int(rng.integers(0, 10**9))), frame_id="f" * (k % 2)),
            name=names, position=rng.normal(size=len(names)), velocity=rng.normal(size=n_vel),
            effort=rng.normal(size=len(names) if k % 7 == 0 else 0))
        messages.append(bytes(STORE.serialize_cdr(msg, js_type)))
    messages.append(b"\x00\x01\x00\x00" + bytes(12))
    buf = np.frombuffer(b"".join(messages), np.uint8)
    length = np.array([len(m) for m in messages], np.int64)
    start = np.concatenate(([0], np.cumsum(length)[:-1]))
    groups, rest = joint_state_groups(buf, start, length)
    assert sorted(np.concatenate([g.messages for g in groups] + [rest]).tolist()) == list(range(len(messages)))
    assert rest.tolist() == [len(messages) - 1]  # only the broken one goes one by one
    for g in groups:
        for row, i in enumerate(g.messages.tolist()):
            msg = STORE.deserialize_cdr(messages[i], js_type)
            assert tuple(msg.name) == g.names
            assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (g.stamp_sec[row], g.stamp_nanosec[row])
            assert np.array_equal(msg.position, g.position[row]) and np.array_equal(msg.velocity, g.velocity[row])


def test_imu_tables_hold_what_rosbags_deserialises() -> None:
    """Imu messages of several frame ids (string lengths that pad alike and differently), negative stamps:
    every value as rosbags reads it; trailing bytes, truncated and big-endian messages go one by one."""
    from async_naf.recording.cdr import imu_groups, parse_imu

    imu_type = "sensor_msgs/msg/Imu"
    rng = np.random.default_rng(6)
    v3, quat = T["geometry_msgs/msg/Vector3"], T["geometry_msgs/msg/Quaternion"]
    messages = []
    for k in range(240):
        v = rng.normal(size=37)
        msg = T[imu_type](header=T["std_msgs/msg/Header"](
            stamp=T["builtin_interfaces/msg/Time"](sec=int(rng.integers(-5, 2**31 - 1)),
                                                   nanosec=int(rng.integers(0, 10**9))),
            frame_id=["", "imu", "door_imu_link", "abcdefgh"][k % 4]),
            orientation=quat(x=v[0], y=v[1], z=v[2], w=v[3]), orientation_covariance=v[4:13],
            angular_velocity=v3(x=v[13], y=v[14], z=v[15]), angular_velocity_covariance=v[16:25],
            linear_acceleration=v3(x=v[25], y=v[26], z=v[27]), linear_acceleration_covariance=v[28:37])
        messages.append(bytes(STORE.serialize_cdr(msg, imu_type)))
    big = bytes(STORE.serialize_cdr(STORE.deserialize_cdr(messages[0], imu_type), imu_type, little_endian=False))
    odd = [messages[1] + bytes(8), messages[2][:-8], big]
    assert all(parse_imu(m) is None for m in odd) and parse_imu(messages[3]) is not None
    messages += odd
    buf = np.frombuffer(b"".join(messages), np.uint8)
    length = np.array([len(m) for m in messages], np.int64)
    start = np.concatenate(([0], np.cumsum(length)[:-1]))
    groups, rest = imu_groups(buf, start, length)
    assert sorted(np.concatenate([g.messages for g in groups] + [rest]).tolist()) == list(range(len(messages)))
    assert rest.tolist() == [240, 241, 242]
    for g in groups:
        for row, i in enumerate(g.messages.tolist()):
            m = STORE.deserialize_cdr(messages[i], imu_type)
            assert (m.header.stamp.sec, m.header.stamp.nanosec) == (g.stamp_sec[row], g.stamp_nanosec[row])
            o, w, a = m.orientation, m.angular_velocity, m.linear_acceleration
            want = np.concatenate(([o.x, o.y, o.z, o.w], m.orientation_covariance, [w.x, w.y, w.z],
                                   m.angular_velocity_covariance, [a.x, a.y, a.z], m.linear_acceleration_covariance))
            assert np.array_equal(g.values[row], want)


def test_canonical_cdr_of_rmw_s_serialiser_is_what_rosbags_writes() -> None:
    """The recorder's tap serialises with rmw (``rclpy.serialization.serialize_message``), which leaves padding
    uninitialised and pads an empty float64 sequence at the end: the canonical bytes equal rosbags' own
    serialisation of the same message, byte for byte (so tables and rosbags read them), for the tapped types."""
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Imu, JointState
    from std_msgs.msg import Float64MultiArray, MultiArrayDimension

    from async_naf.wire.record_bundle import canonical_imu, canonical_joint_state, canonical_multiarray

    rng = np.random.default_rng(9)
    for k in range(40):
        names = [f"j{i}" * (1 + (i + k) % 3) for i in range(k % 8)]
        frame = "f" * (k % 5)
        pos, vel = rng.normal(size=len(names)), rng.normal(size=len(names) * (k % 2))
        eff = rng.normal(size=(k % 3 == 0) * len(names))
        msg = JointState(name=names, position=pos.tolist(), velocity=vel.tolist(), effort=eff.tolist())
        msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec = frame, k, 7 * k
        ref = T["sensor_msgs/msg/JointState"](
            header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=k, nanosec=7 * k),
                                            frame_id=frame),
            name=names, position=pos, velocity=vel, effort=eff)
        want = bytes(STORE.serialize_cdr(ref, "sensor_msgs/msg/JointState"))
        assert canonical_joint_state(serialize_message(msg)) == want
        data = rng.normal(size=k % 4)
        labels = ["x" * (k % 7)] * (k % 3)
        arr = Float64MultiArray(data=data.tolist())
        arr.layout.dim = [MultiArrayDimension(label=lab, size=3, stride=3) for lab in labels]
        ref_arr = T[F64](layout=T["std_msgs/msg/MultiArrayLayout"](
            dim=[T["std_msgs/msg/MultiArrayDimension"](label=lab, size=3, stride=3) for lab in labels], data_offset=0),
            data=data)
        assert canonical_multiarray(serialize_message(arr)) == bytes(STORE.serialize_cdr(ref_arr, F64))
        v = rng.normal(size=37)
        imu = Imu()
        imu.header.frame_id = frame
        imu.orientation.x, imu.orientation.y, imu.orientation.z, imu.orientation.w = v[:4]
        imu.orientation_covariance = v[4:13].tolist()
        imu.angular_velocity.x, imu.angular_velocity.y, imu.angular_velocity.z = v[13:16]
        imu.angular_velocity_covariance = v[16:25].tolist()
        imu.linear_acceleration.x, imu.linear_acceleration.y, imu.linear_acceleration.z = v[25:28]
        imu.linear_acceleration_covariance = v[28:37].tolist()
        v3, quat = T["geometry_msgs/msg/Vector3"], T["geometry_msgs/msg/Quaternion"]
        ref_imu = T["sensor_msgs/msg/Imu"](
            header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=0, nanosec=0), frame_id=frame),
            orientation=quat(x=v[0], y=v[1], z=v[2], w=v[3]), orientation_covariance=v[4:13],
            angular_velocity=v3(x=v[13], y=v[14], z=v[15]), angular_velocity_covariance=v[16:25],
            linear_acceleration=v3(x=v[25], y=v[26], z=v[27]), linear_acceleration_covariance=v[28:37])
        assert canonical_imu(serialize_message(imu)) == bytes(STORE.serialize_cdr(ref_imu, "sensor_msgs/msg/Imu"))
    for bad in (b"", b"\x00\x00\x00\x00" + bytes(16), b"\x00\x01\x00\x00" + bytes(3)):
        for canonical in (canonical_joint_state, canonical_multiarray, canonical_imu):
            with pytest.raises(ValueError):
                canonical(bad)
