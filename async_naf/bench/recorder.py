"""What recording costs (``async-naf bench --only recorder_msgs_per_s`` / ``--only record_env_steps_ratio``).

Issue 10: the recorder must not lose messages at the full lockstep rate of a 2-worker door run, and must not
slow training measurably. Two measurements, both with the real ``/recorder`` node (``recorder_node``) in a
process of its own, on a private ``ROS_DOMAIN_ID``, loopback-only:

- :func:`bench_recorder_rate` (``recorder_msgs_per_s``): this process publishes the topic mix of a recorded 2-worker
  door_pull run (:func:`async_naf.run.graph.record_topics`, each topic with the QoS its real publisher offers) at
  increasing rates of environment steps per second. Per step and robot: one ``joint_states``, five ``door/imu`` and
  five ``door/joint_states`` (the IMU at 100 Hz against the 20 Hz control step), one command, one ``policy/step``,
  one ``ground_truth/door_state``, one clock; a goal every 150 steps; over the graph ``/trainer/weights`` (a fresh
  door_pull NAF's, 2x100: 53.6 kB) every 75 steps and ``/diagnostics`` every 3 steps (the proportions of a recorded
  run: about 15.4 messages per env step). Messages are the real types with the real sizes, serialised once and
  published raw. Each rate level gets a fresh recorder and bag and a warm-up (one message per topic until the
  recorder has them all; counted only what is received after it); after the level the recorder is given time to drain,
  stopped (it closes the bag), and the bag is read back: per topic, messages published here against messages in the
  bag. Reported: per level the publish rate reached (messages/s), the messages lost (published - written, per
  topic), the recorder's CPU per message (publishing and draining; CPU cores it used while publishing and while
  draining); and ``recorder_msgs_per_s`` = the highest publish rate up to which every level lost nothing on any
  topic (``recorder_max_zero_loss_level_msgs_per_s``: the highest level without loss, above a lossy one or not).
- :func:`bench_record_overhead` (``record_env_steps_ratio``): the real 2-worker door_pull graph
  (:func:`async_naf.bench.graph_steps.measure_graph`: lockstep, one NAF update per env step, same seed and
  window of env steps) with and without the recorder, alternating, ``pairs`` times each; env steps/s of each
  and the ratio of the medians (``record_env_steps_ratio``; per pair too); CPU ms of all graph processes per env
  step with and without (``record_cpu_ratio``, less sensitive to other load on a shared machine) and the
  recorder's own CPU ms per env step. Each recorded run's bag is checked: per robot, the ``policy/step`` records in
  the bag are contiguous (every episode from step 0 with no step missing, the policy numbers its steps) and
  at least as many as the policy's own ``steps`` counter in its last ``/diagnostics`` in the bag; the
  recorder's own count of dropped messages (its log line ``bag closed: ...``); the messages/s the recorder
  wrote over the measured window (what the lockstep rate asks of it, beside ``recorder_msgs_per_s``).

The machine's load average is reported beside the figures (``load_avg_1min``): on a shared machine compare
the ratio measured in one run, not absolute rates across runs.
"""
from __future__ import annotations

import os
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# per env step of ONE robot (the other robots publish the same), from a recorded 2-worker door_pull run
PER_ROBOT_STEP = {"joint_states": 1, "door/imu": 5, "door/joint_states": 5, "forward_velocity_controller/commands": 1,
                  "policy/step": 1, "ground_truth/door_state": 1, "clock": 1}
GOAL_EVERY_STEPS = 150          # one task/goal per robot per episode of 150 steps
WEIGHTS_EVERY_STEPS = 75        # /trainer/weights (weights_every_updates 100 at ~1.3 updates per env step)
DIAGNOSTICS_EVERY_STEPS = 3     # /diagnostics: about 0.35 per env step over the graph

RATES_STEPS_PER_S = (100, 150, 200, 300, 400, 600, 800, 1600)  # env steps/s of the whole graph, per level


def _messages(topics: list[tuple[str, str, str]]) -> dict[str, bytes]:
    """One serialised message per recorded topic, of the real type and size."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    from rclpy.serialization import serialize_message
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Imu, JointState
    from std_msgs.msg import Float64MultiArray, UInt8MultiArray

    from async_naf.learning.agents import NAFConfig, make_agent
    from async_naf.nodes import _msgs
    from async_naf.sim import ARM_JOINT_NAMES
    from async_naf.task.tasks import make_task
    from async_naf.wire import layouts

    task = make_task("door_pull")
    weights = make_agent(NAFConfig(obs_dim=task.obs_dim, act_dim=task.act_dim, action_low=tuple(task.action_low),
                                   action_high=tuple(task.action_high))).policy_weights()
    rng = np.random.default_rng(0)
    q, qd = rng.uniform(-1, 1, 7), rng.normal(size=7)
    step = layouts.PolicyStep(1.0, 0, 0, rng.normal(size=task.obs_dim), rng.uniform(-1, 1, task.act_dim), q, qd,
                              np.array([0.5, 0.0, 0.8]), 0.1, 0.0)
    by_suffix: dict[str, Any] = {
        "joint_states": JointState(name=list(ARM_JOINT_NAMES), position=q.tolist(), velocity=qd.tolist(),
                                   effort=[0.0] * 7),
        "door/imu": Imu(),
        "door/joint_states": JointState(name=["door_hinge"], position=[0.1], velocity=[0.0]),
        "ground_truth/door_state": JointState(name=["door_hinge", "door_handle"], position=[0.1, 0.0],
                                              velocity=[0.0, 0.0]),
        "forward_velocity_controller/commands": Float64MultiArray(data=rng.uniform(-1, 1, 7).tolist()),
        "policy/step": _msgs.to_msg(layouts.encode_policy_step(step), Float64MultiArray),
        "task/goal": _msgs.to_msg(layouts.encode_goal(layouts.Goal(0, True, np.zeros(6))), Float64MultiArray),
        "clock": Clock(),
        "/trainer/weights": _msgs.to_msg(layouts.encode_weights(weights), UInt8MultiArray),
        "/diagnostics": DiagnosticArray(status=[DiagnosticStatus(
            name="/bench_publisher", message="policy", hardware_id="/robot_0",
            values=[KeyValue(key=f"count_{i}", value=str(1000 + i)) for i in range(12)])]),
    }
    out = {}
    for topic, _, _ in topics:
        key = topic if topic.startswith("/trainer") or topic == "/diagnostics" else topic.split("/", 2)[2]
        out[topic] = bytes(serialize_message(by_suffix[key]))
    return out


def _schedule(topics: list[tuple[str, str, str]], step: int, workers: int) -> list[str]:
    """The topics published at graph env step ``step`` (robots take turns: step ``step`` is robot
    ``step % workers``'s)."""
    robot = step % workers
    ns = f"/robot_{robot}/"
    robot_step = step // workers
    out = []
    for topic, _, _ in topics:
        if topic.startswith(ns):
            suffix = topic[len(ns):]
            if suffix == "task/goal":
                if robot_step % GOAL_EVERY_STEPS == 0:
                    out.append(topic)
            else:
                out += [topic] * PER_ROBOT_STEP[suffix]
        elif (topic == "/trainer/weights" and step % WEIGHTS_EVERY_STEPS == 0) or (
                topic == "/diagnostics" and step % DIAGNOSTICS_EVERY_STEPS == 0):
            out.append(topic)
    return out


def _count_bag(path: Path, own_diag_prefix: str = "/recorder", start_ns: int | None = None) -> dict[str, int]:
    """Messages per topic in a bag (received at or after ``start_ns``); ``/diagnostics`` without the recorder's
    own."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    counts: dict[str, int] = {}
    with AnyReader([path], default_typestore=get_typestore(Stores.ROS2_JAZZY)) as reader:
        for conn, _, raw in reader.messages(start=start_ns):
            if conn.topic == "/diagnostics":
                msg: Any = reader.deserialize(raw, conn.msgtype)
                if any(s.name.startswith(own_diag_prefix) for s in msg.status):
                    continue
            counts[conn.topic] = counts.get(conn.topic, 0) + 1
    return counts


def recorder_specs(level_dir: Path, workers: int, drain_queue: bool) -> list[Any]:
    """The recorder process of a recorded door_pull run with ``workers`` robots, one process per node
    (composition ``none``): the recorder subscribes to every recorded topic itself, which the bench publishes.
    (With composed robots the recorder takes their streams in bundles instead and does not subscribe to
    them; until 2026-12-04 this bench built that recorder and waited for ever for its subscriptions.)"""
    from async_naf.run.graph import GraphConfig, build_graph, compose
    from async_naf.run.launcher import composed_process_specs

    config = GraphConfig(task="door_pull", workers=workers, run_dir=str(level_dir / "run"), record=True,
                         composition="none", overrides={"/recorder": {"drain_queue": drain_queue}})
    specs = [s for s in composed_process_specs(compose(build_graph(config), "none"), level_dir / "params")
             if s.key == "recorder"]
    if len(specs) != 1:
        raise RuntimeError(f"recorder bench: expected one recorder process, got {[s.key for s in specs]}")
    return specs


def _recorder_level(tmp: Path, topics: list[tuple[str, str, str]], payload: dict[str, bytes], workers: int,
                    rate: float, seconds: float, timeout_s: float, drain_queue: bool = True) -> dict[str, Any]:
    """One rate level: a fresh recorder, ``rate * seconds`` env steps of the mix, the bag read back."""
    from diagnostic_msgs.msg import DiagnosticArray

    from async_naf.bench.graph import _BENCH_DOMAIN, _Probe
    from async_naf.bench.graph_steps import proc_cpu_s
    from async_naf.common.ros_env import ros_environment
    from async_naf.nodes.recorder_node import _message_class, _subscription_qos
    from async_naf.recording.writer import qos_dict
    from async_naf.run.launcher import GraphLauncher, tail

    level_dir = tmp / f"rate_{int(rate)}_{'drain' if drain_queue else 'nodrain'}"
    specs = recorder_specs(level_dir, workers, drain_queue)
    launcher = GraphLauncher(specs, log_dir=level_dir / "logs", env=ros_environment(domain_id=_BENCH_DOMAIN))
    probe = None
    try:
        launcher.start()
        probe = _Probe()
        node = probe.node
        pubs = {topic: node.create_publisher(_message_class(typename), topic,
                                             _subscription_qos(qos_dict(qos), int(qos_dict(qos)["depth"])))
                for topic, typename, qos in topics}
        recorder: dict[str, float] = {}

        def on_diag(msg: Any) -> None:
            for status in msg.status:
                if status.name == "/recorder":
                    recorder.update({kv.key: float(kv.value) for kv in status.values if kv.key in
                                     ("received", "written", "dropped", "pending")}, t=time.monotonic())

        node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
        probe.spin_until(lambda: all(p.get_subscription_count() > 0 for t, p in pubs.items() if t != "/diagnostics")
                         and "received" in recorder, timeout_s, "the recorder's subscriptions")
        # warm-up: one message per topic until the recorder gets them all (a publisher may see the recorder's
        # reader before that reader knows the publisher: what it sends meanwhile is not delivered); only what is
        # received after the warm-up is counted
        for _ in range(int(timeout_s)):
            base, seen = recorder["received"], recorder["t"]
            for topic, pub in pubs.items():
                pub.publish(payload[topic])
            probe.spin_until(lambda seen=seen: recorder["t"] > seen, timeout_s, "the recorder's diagnostics")
            if recorder["received"] - base >= len(pubs):
                break
        else:
            raise RuntimeError("recorder bench: the recorder did not get a message of every topic")
        start_ns = time.time_ns()
        pid = launcher.pids["recorder"]
        published = dict.fromkeys(pubs, 0)
        n_steps = max(1, int(rate * seconds))
        order = [_schedule(topics, s, workers) for s in range(2 * workers * max(GOAL_EVERY_STEPS, WEIGHTS_EVERY_STEPS))]
        c0, t0 = proc_cpu_s(pid), time.perf_counter()
        step = 0
        while step < n_steps:
            due = min(n_steps, int((time.perf_counter() - t0) * rate) + 1)
            while step < due:
                for topic in order[step % len(order)]:
                    pubs[topic].publish(payload[topic])
                    published[topic] += 1
                step += 1
            wait = step / rate - (time.perf_counter() - t0)
            if wait > 0:
                time.sleep(wait)
        t_pub, c_pub = time.perf_counter() - t0, proc_cpu_s(pid)
        total = sum(published.values())
        # drain: until the recorder's received count stands still (but for its own diagnostics) over two periods
        # of its diagnostics and nothing is pending
        stable, last, deadline = 0, -1.0, time.monotonic() + timeout_s
        while stable < 2 and time.monotonic() < deadline:
            seen = recorder.get("t", 0.0)
            probe.spin_until(lambda seen=seen: recorder.get("t", 0.0) > seen, timeout_s,
                             "the recorder's diagnostics")
            # the recorder records its own /diagnostics too: one message per diagnostics period
            stable = stable + 1 if recorder["received"] - last <= 1 and recorder["pending"] == 0 else 0
            last = recorder["received"]
        cpu_s, t_all = proc_cpu_s(pid) - c0, time.perf_counter() - t0
        probe.close()
        probe = None
        launcher.stop()
        counts = _count_bag(level_dir / "run" / "bag", start_ns=start_ns)
        foreign = {t: n - published.get(t, 0) for t, n in counts.items() if n > published.get(t, 0)}
        if foreign:
            raise RuntimeError(f"recorder bench: the bag holds more than was published here ({foreign}): another "
                               f"graph on ROS_DOMAIN_ID {_BENCH_DOMAIN}? Set ASYNC_NAF_BENCH_DOMAIN_ID to a free one")
        lost = {t: published[t] - counts.get(t, 0) for t in published if published[t] != counts.get(t, 0)}
        log = tail(launcher.log_path("recorder"), 40)
        m = re.search(r"bag closed: (\d+) messages written, (\d+) dropped", log)
        return {"target_msgs_per_s": round(total / (n_steps / rate)), "published_msgs_per_s": round(total / t_pub),
                "published": total, "lost": lost, "lost_total": sum(lost.values()),
                "recorder_dropped": int(m.group(2)) if m else None,
                "recorder_cpu_us_per_msg": round(cpu_s * 1e6 / total, 1),
                "recorder_cores_while_publishing": round((c_pub - c0) / t_pub, 2),
                "recorder_cores_draining": round((cpu_s - (c_pub - c0)) / max(1e-9, t_all - t_pub), 2),
                "drain_s": round(t_all - t_pub, 1)}
    finally:
        if probe is not None:
            probe.close()
        launcher.stop()


def bench_recorder_rate(quick: bool = False, workers: int = 2, rates: tuple[float, ...] | None = None,
                        seconds: float | None = None, timeout_s: float = 120.0,
                        drain_queue: bool | None = None) -> dict[str, Any]:
    """``recorder_msgs_per_s`` and the figures per level (module docstring). ``drain_queue``: the recorder's
    parameter (default: env ``ASYNC_NAF_BENCH_RECORDER_DRAIN``, ``1`` or ``0``, else the recorder's default)."""
    if drain_queue is None:
        drain_queue = os.environ.get("ASYNC_NAF_BENCH_RECORDER_DRAIN", "1") != "0"
    from async_naf.run.graph import GraphConfig, record_topics

    rates = rates or (RATES_STEPS_PER_S[::2] if quick else RATES_STEPS_PER_S)
    seconds = seconds or (3.0 if quick else 6.0)
    tmp = Path(tempfile.mkdtemp(prefix="async_naf_recbench_"))
    try:
        topics = record_topics(GraphConfig(task="door_pull", workers=workers, run_dir=str(tmp / "x"), record=True))
        payload = _messages(topics)
        levels = []
        for rate in rates:
            level = _recorder_level(tmp, topics, payload, workers, rate, seconds, timeout_s, drain_queue)
            level["env_steps_per_s"] = rate
            levels.append(level)
        zero = [lv["published_msgs_per_s"] for lv in levels if lv["lost_total"] == 0]
        upto = 0  # every level up to this rate lost nothing
        for lv in sorted(levels, key=lambda lv: lv["published_msgs_per_s"]):
            if lv["lost_total"]:
                break
            upto = lv["published_msgs_per_s"]
        return {"recorder_msgs_per_s": upto, "recorder_max_zero_loss_level_msgs_per_s": max(zero) if zero else 0,
                "recorder_levels": levels,
                "recorder_msgs_per_env_step": round(levels[-1]["published"] / max(1, int(rates[-1] * seconds)), 2),
                "recorder_drain_queue": drain_queue,
                "load_avg_1min": round(os.getloadavg()[0], 2)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_policy_steps(bag: Path) -> dict[str, Any]:
    """Per robot: ``policy/step`` records in the bag, whether they are contiguous (each episode from step 0, no
    step missing), the policy's own ``steps`` counter in its last ``/diagnostics`` in the bag, and every
    topic's message count and time span (for the recorded rate)."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    from async_naf.wire import layouts

    steps: dict[str, dict[int, list[int]]] = {}
    diag_steps: dict[str, int] = {}
    with AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_JAZZY)) as reader:
        for conn, _, raw in reader.messages():
            if conn.topic.endswith("/policy/step"):
                ns = conn.topic[: -len("/policy/step")]
                s = layouts.decode_policy_step(layouts.array_msg_of(reader.deserialize(raw, conn.msgtype)))
                steps.setdefault(ns, {}).setdefault(s.episode, []).append(s.step)
            elif conn.topic == "/diagnostics":
                msg: Any = reader.deserialize(raw, conn.msgtype)
                for status in msg.status:
                    if status.name.endswith("/policy"):
                        values = {kv.key: kv.value for kv in status.values}
                        if "steps" in values:
                            diag_steps[status.name[: -len("/policy")]] = int(values["steps"])
    out: dict[str, Any] = {}
    for ns, episodes in sorted(steps.items()):
        holes = sum(1 for eps in episodes.values() if sorted(eps) != list(range(len(eps))))
        n = sum(len(eps) for eps in episodes.values())
        out[ns] = {"policy_steps_in_bag": n, "episodes": len(episodes), "episodes_with_holes": holes,
                   "policy_steps_counted_by_policy": diag_steps.get(ns),
                   "complete": holes == 0 and diag_steps.get(ns, -1) <= n}
    return out


def _bag_rate(bag: Path, t0_ns: int, t1_ns: int) -> float:
    """Messages per second written into the bag with receive times in [t0, t1] (wall clock, ns)."""
    from rosbags.highlevel import AnyReader

    with AnyReader([bag]) as reader:
        n = sum(1 for _ in reader.messages(start=t0_ns, stop=t1_ns))
    return n / ((t1_ns - t0_ns) * 1e-9)


def bench_record_overhead(quick: bool = False, pairs: int | None = None, steps: int | None = None,
                          warmup_steps: int | None = None, realtime: bool = False) -> dict[str, Any]:
    """``record_env_steps_ratio`` and the figures beside it (module docstring); ``realtime``: the same with
    the sims paced as real robots (``record_env_steps_ratio_realtime``, shorter windows: 40 steps/s)."""
    from async_naf.bench.graph_steps import measure_graph

    pairs = pairs or (1 if quick else 3)
    if realtime:  # 40 env steps/s: the warm-up past the trainer's first updates (min_buffer_size 1,000)
        steps = steps or (200 if quick else 600)
        warmup_steps = warmup_steps or 1100
    # 12,000 steps (about 10 s): windows of 3,000 measured 0.74-0.78 where 12,000 measured 0.86 (docs/benchmarks.md)
    steps = steps or (1000 if quick else 12000)
    warmup_steps = warmup_steps or (1200 if quick else 1500)
    plain: list[float] = []
    recorded: list[float] = []
    checks: list[dict[str, Any]] = []
    cpu_plain: list[float] = []
    cpu_rec: list[float] = []
    cpu_recorder: list[float] = []
    for _ in range(pairs):
        for record in (False, True):
            keep = Path(tempfile.mkdtemp(prefix="async_naf_recoverhead_"))
            try:
                t0_ns = time.time_ns()
                out = measure_graph(workers=2, composition="robot", steps=steps, warmup_steps=warmup_steps,
                                    keep_dir=str(keep), record=record, realtime=realtime)
                (recorded if record else plain).append(out["graph_env_steps_per_s"])
                (cpu_rec if record else cpu_plain).append(out["graph_cpu_ms_per_step"])
                if not record:
                    continue
                cpu_recorder.append(out.get("graph_cpu_ms_per_step_recorder", float("nan")))
                bag = keep / "run" / "bag"
                log = (keep / "logs" / "recorder.log").read_text(errors="replace")
                m = re.search(r"bag closed: (\d+) messages written, (\d+) dropped", log)
                window = out["graph_window_ns"]
                checks.append({"robots": check_policy_steps(bag),
                               "recorder_written": int(m.group(1)) if m else None,
                               "recorder_dropped": int(m.group(2)) if m else None,
                               "recorded_msgs_per_s_in_window": round(_bag_rate(bag, *window)),
                               "run_started_ns": t0_ns})
            finally:
                shutil.rmtree(keep, ignore_errors=True)
    complete = all(rob["complete"] for c in checks for rob in c["robots"].values()) and all(
        c["recorder_dropped"] == 0 for c in checks)
    if realtime:
        return {f"{k}_realtime": v for k, v in _overhead_figures(plain, recorded, cpu_plain, cpu_rec, cpu_recorder,
                                                                   complete, checks, steps).items()}
    return _overhead_figures(plain, recorded, cpu_plain, cpu_rec, cpu_recorder, complete, checks, steps)


def bench_record_overhead_realtime(quick: bool = False) -> dict[str, Any]:
    """``record_env_steps_ratio_realtime``: :func:`bench_record_overhead` with the sims paced as real robots."""
    return bench_record_overhead(quick, realtime=True)


def _overhead_figures(plain: list[float], recorded: list[float], cpu_plain: list[float], cpu_rec: list[float],
                      cpu_recorder: list[float], complete: bool, checks: list[dict[str, Any]], steps: int
                      ) -> dict[str, Any]:
    p, r = statistics.median(plain), statistics.median(recorded)
    return {"graph_env_steps_per_s_plain": plain, "graph_env_steps_per_s_recorded": recorded,
            "record_env_steps_ratio": round(r / p, 3),
            "record_env_steps_ratio_per_pair": [round(b / a, 3) for a, b in zip(plain, recorded)],
            "graph_cpu_ms_per_step_plain": cpu_plain, "graph_cpu_ms_per_step_recorded": cpu_rec,
            "recorder_cpu_ms_per_step": cpu_recorder,
            "record_cpu_ratio": round(statistics.median(cpu_rec) / statistics.median(cpu_plain), 3),
            "record_bag_complete": complete,
            "record_checks": [{k: v for k, v in c.items() if k != "run_started_ns"} for c in checks],
            "record_window_steps": steps, "load_avg_1min": round(os.getloadavg()[0], 2)}


class _BundleSink:
    """Where :func:`bench_record_tap`'s tap sends its bundles: counted, not published (the DDS publish of a
    bundle is measured apart: 160-230 us each, about ten a second per lockstep robot)."""

    def __init__(self) -> None:
        self.bundles = 0
        self.bytes = 0

    def publish(self, raw: bytes) -> None:
        self.bundles += 1
        self.bytes += len(raw)

    def get_subscription_count(self) -> int:
        return 1  # the recorder, as in a recorded run


def bench_record_tap(quick: bool = False, steps: int | None = None, repeats: int = 5) -> dict[str, Any]:
    """``record_tap_us_per_step``: what a recorded run's tap costs a composed robot's thread per env step,
    in this process without ROS traffic: one robot's messages of a step (:data:`PER_ROBOT_STEP`, the values
    the embedded door_pull robot publishes: 7 arm joints, an IMU sample with covariances, the door estimate,
    the ground truth, a command, a policy step, the clock) each handed to a ``RecordTap`` as the bus does
    (an adapter's ``to_cdr``; the clock as a message), then ``poll`` once per step. CPU time of the process,
    the median of ``repeats`` windows of ``steps`` steps; the bundles are counted, not published."""
    from rosgraph_msgs.msg import Clock

    from async_naf.nodes import _local, _msgs
    from async_naf.sim import ARM_JOINT_NAMES
    from async_naf.task.tasks import make_task
    from async_naf.wire import layouts
    from async_naf.wire.imu import ImuSample
    from async_naf.wire.joints import JointStates

    steps = steps or (2000 if quick else 10000)
    task = make_task("door_pull")
    rng = np.random.default_rng(0)
    q, qd = rng.uniform(-1, 1, 7), rng.normal(size=7)
    cov = np.eye(3) * 1e-4
    imu, js, steps_adapter, cmd = (_msgs.ImuAdapter("door_imu"), _msgs.JointStateAdapter(),
                                   _msgs.PolicyStepAdapter(task.obs_dim, task.act_dim), _msgs.CommandAdapter())
    ns = "/robot_0/"
    topics = tuple(ns + suffix for suffix in PER_ROBOT_STEP)
    sink = _BundleSink()
    tap = _local.RecordTap(topics, sink)
    clock = Clock()
    rng_gyro, accel = rng.normal(size=3), np.array([0.0, 0.0, 9.81])
    door, truth, no_effort = np.array([0.1]), np.array([0.1, 0.0]), np.zeros(0)
    obs, action, ee = rng.normal(size=task.obs_dim), rng.uniform(-0.5, 0.5, task.act_dim), np.array([0.5, 0.0, 0.8])
    # the values of an episode's steps, built before the timed windows (the robot's nodes make them anyway)
    episode = []
    for k in range(150):
        t_ns = 1_000_000_000 + 50_000_000 * k
        dt = [10_000_000 * i for i in range(PER_ROBOT_STEP["door/imu"])]
        episode.append(([ImuSample(t_ns + d, rng_gyro, accel, cov, cov) for d in dt],
                        [JointStates(t_ns + d, ("door_hinge",), door, door, no_effort) for d in dt],
                        JointStates(t_ns, ARM_JOINT_NAMES, q, qd, no_effort),
                        JointStates(t_ns, ("door_hinge", "door_handle"), truth, truth, no_effort),
                        layouts.PolicyStep(t_ns * 1e-9, 0, k, obs, action, q, qd, ee, 0.1, 0.0), divmod(t_ns, 10**9)))

    def one_step(k: int) -> None:
        samples, doors, arm, gt, step, (sec, nanosec) = episode[k % 150]
        for sample, estimate in zip(samples, doors):
            tap.add_cdr(ns + "door/imu", imu.to_cdr(sample))
            tap.add_cdr(ns + "door/joint_states", js.to_cdr(estimate))
        tap.add_cdr(ns + "joint_states", js.to_cdr(arm))
        tap.add_cdr(ns + "ground_truth/door_state", js.to_cdr(gt))
        tap.add_cdr(ns + "forward_velocity_controller/commands", cmd.to_cdr(action))
        tap.add_cdr(ns + "policy/step", steps_adapter.to_cdr(step))
        clock.clock.sec, clock.clock.nanosec = sec, nanosec
        tap.add(ns + "clock", clock)
        tap.poll()

    per_step = sum(PER_ROBOT_STEP.values())
    windows = []
    for r in range(repeats):
        t0 = time.process_time()
        for k in range(r * steps, (r + 1) * steps):
            one_step(k)
        windows.append((time.process_time() - t0) / steps * 1e6)
    tap.flush()
    us = statistics.median(windows)
    return {"record_tap_us_per_step": round(us, 1), "record_tap_us_per_message": round(us / per_step, 2),
            "record_tap_messages_per_step": per_step, "record_tap_windows_us_per_step": [round(w, 1) for w in windows],
            "record_tap_bundles": sink.bundles,
            "record_tap_bundle_bytes_mean": round(sink.bytes / max(sink.bundles, 1)),
            "record_tap_messages": tap.messages}


if __name__ == "__main__":  # pragma: no cover
    import json
    import sys

    if "--overhead" in sys.argv:
        print(json.dumps(bench_record_overhead(quick="--quick" in sys.argv)))
    else:
        print(json.dumps(bench_recorder_rate(quick="--quick" in sys.argv)))
