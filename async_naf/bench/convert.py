"""Speed of the bag conversions (``async-naf bench --only raw_convert_steps_per_s``), one core, no ROS.

A door_pull bag of one robot is written into a temporary directory (lockstep: per step a joint state, five
IMU messages, the command and the policy's own ``policy/step`` record; a goal every 150 steps), then:

- ``raw_convert_steps_per_s``: ``convert_raw`` steps per second, everything included: reading and
  deserialising the bag, the door-angle estimator over every IMU message, forward kinematics, the task's
  observation and reward, the collector's pairing (issue 10's goal: >= 10,000 on one core).
- ``exact_convert_transitions_per_s``: ``convert_exact`` transitions per second on the same bag (goal:
  >= 100,000).

Best of ``repeats`` runs (least disturbed by other processes on a shared machine); each also per CPU second
of this process (``*_per_cpu_s``: less sensitive to other processes on a loaded machine).
"""
from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

JS, F64, IMU = "sensor_msgs/msg/JointState", "std_msgs/msg/Float64MultiArray", "sensor_msgs/msg/Imu"
ARM = [f"arm_joint_{i}" for i in range(1, 8)]


def write_door_bag(path: Path, steps: int, seed: int = 0, episode_steps: int = 150) -> None:
    """The benchmark's bag (module docstring) at ``path``."""
    from rosbags.typesys import Stores, get_typestore

    from async_naf.recording.writer import BagWriter, TopicSpec, qos_dict
    from async_naf.task.kinematics import ArmKinematics
    from async_naf.task.tasks import TaskState, make_task
    from async_naf.wire import layouts

    store = get_typestore(Stores.ROS2_JAZZY)
    t = store.types
    task, kin = make_task("door_pull"), ArmKinematics()
    rng = np.random.default_rng(seed)

    def header(ns: int):
        sec, nsec = divmod(ns, 1_000_000_000)
        return t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec), frame_id="")

    def array(data: np.ndarray, arr: layouts.ArrayMsg | None = None) -> bytes:
        dims = [] if arr is None else [t["std_msgs/msg/MultiArrayDimension"](label=lab, size=s, stride=st)
                                       for lab, s, st in zip(arr.labels, arr.sizes, arr.strides)]
        msg = t[F64](layout=t["std_msgs/msg/MultiArrayLayout"](dim=dims, data_offset=0),
                     data=np.asarray(data if arr is None else arr.data, np.float64))
        return bytes(store.serialize_cdr(msg, F64))

    unknown = np.zeros(9)
    unknown[0] = -1.0
    v3, quat = t["geometry_msgs/msg/Vector3"], t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)
    ns = "/robot_0"
    writer = BagWriter(path, [TopicSpec(f"{ns}/joint_states", JS, qos_dict("sensor")),
                              TopicSpec(f"{ns}/door/imu", IMU, qos_dict("imu")),
                              TopicSpec(f"{ns}/forward_velocity_controller/commands", F64, qos_dict("commands")),
                              TopicSpec(f"{ns}/task/goal", F64, qos_dict("latched")),
                              TopicSpec(f"{ns}/policy/step", F64, qos_dict("stream"))],
                       max_pending=10_000_000)
    goal = np.array([0.6, 0.0, 0.9, 0.0, 1.0, 0.0])
    stamp, t_rx = 1_000_000_000, 1_700_000_000_000_000_000
    q = rng.uniform(-0.5, 0.5, 7)
    for i in range(steps):
        episode, step = divmod(i, episode_steps + 1)
        if step == 0:
            writer.put(3, t_rx, array(np.zeros(0), layouts.encode_goal(layouts.Goal(episode, True, goal))))
            q = rng.uniform(-0.5, 0.5, 7)
        stamp += 50_000_000
        t_rx = stamp + 1_700_000_000_000_000_000
        qd = rng.normal(scale=0.1, size=7)
        msg = t[JS](header=header(stamp), name=ARM, position=q, velocity=qd, effort=np.zeros(0))
        writer.put(0, t_rx, bytes(store.serialize_cdr(msg, JS)))
        for k in range(5):
            w = 0.3 * math.sin(0.01 * i)  # the door swings slowly back and forth
            imu = t[IMU](header=header(stamp - 40_000_000 + k * 10_000_000), orientation=quat,
                         orientation_covariance=unknown, angular_velocity=v3(x=0.0, y=0.0, z=w),
                         angular_velocity_covariance=unknown, linear_acceleration=v3(x=9.81, y=0.0, z=0.0),
                         linear_acceleration_covariance=unknown)
            writer.put(1, t_rx + 10_000 * (k + 1), bytes(store.serialize_cdr(imu, IMU)))
        action = rng.uniform(task.action_low, task.action_high).astype(np.float64)
        writer.put(2, t_rx + 2_000_000, array(action))
        ee = kin.ee_position(q)
        obs = task.observation(TaskState(q, qd, ee, 0.0, 0.0), goal)
        pstep = layouts.PolicyStep(stamp * 1e-9, episode, step, obs, action, q, qd, ee, 0.0, 0.0)
        writer.put(4, t_rx + 2_100_000, array(np.zeros(0), layouts.encode_policy_step(pstep)))
        q = q + 0.05 * action
    writer.close()


def bench_convert(quick: bool = False) -> dict[str, float]:
    """Measure ``raw_convert_steps_per_s`` and ``exact_convert_transitions_per_s`` (module docstring)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from async_naf.run.convert import convert_exact
    from async_naf.run.convert_raw import RawConfig, convert_raw

    steps = 2000 if quick else 10_000
    repeats = 2 if quick else 3
    with tempfile.TemporaryDirectory(prefix="async_naf_bench_") as tmp:
        bag = Path(tmp) / "bag"
        write_door_bag(bag, steps)
        best: dict[str, float] = {}
        n_raw = n_exact = 0
        door = {"hinge_axis": (0.0, 0.0, 1.0)}

        def keep(name: str, n: int, wall: float, cpu: float) -> None:
            best[name] = max(best.get(name, 0.0), n / wall)
            best[name + "_cpu"] = max(best.get(name + "_cpu", 0.0), n / cpu)

        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            raw = convert_raw(bag, "door_pull", RawConfig(), door_values=door)
            n_raw = int(raw.counts["used:steps"])
            keep("raw", n_raw, time.perf_counter() - t0, time.process_time() - c0)
            t0, c0 = time.perf_counter(), time.process_time()
            exact = convert_exact(bag, "door_pull", {"use_ground_truth": False})
            n_exact = int(exact.counts["transitions"])
            keep("exact", n_exact, time.perf_counter() - t0, time.process_time() - c0)
    return {"raw_convert_steps_per_s": round(best["raw"], 1), "raw_convert_steps_per_cpu_s": round(best["raw_cpu"], 1),
            "raw_convert_steps": n_raw, "exact_convert_transitions_per_s": round(best["exact"], 1),
            "exact_convert_transitions_per_cpu_s": round(best["exact_cpu"], 1), "exact_convert_transitions": n_exact}
