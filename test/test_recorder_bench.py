"""The recorder bench's own logic, without ROS (the figures themselves come from ``async-naf bench``, never from a
timed test): the published mix feeds every recorded topic, and the completeness check of a recorded bag finds a
missing ``policy/step`` and a bag that holds fewer steps than the policy counted."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bag_msgs import array_bytes

from async_naf.bench.recorder import DIAGNOSTICS_EVERY_STEPS, PER_ROBOT_STEP, _schedule, check_policy_steps
from async_naf.recording.writer import BagWriter, TopicSpec, qos_dict
from async_naf.run.graph import GraphConfig, record_topics
from async_naf.wire import layouts

F64, DIAG = "std_msgs/msg/Float64MultiArray", "diagnostic_msgs/msg/DiagnosticArray"


def test_the_published_mix_feeds_every_recorded_topic_in_the_documented_proportions(tmp_path: Path) -> None:
    topics = record_topics(GraphConfig(task="door_pull", workers=2, run_dir=str(tmp_path), record=True))
    steps = 2 * 150 * 75  # a whole number of goal and weights periods for both robots
    counts: dict[str, int] = {}
    for s in range(steps):
        for topic in _schedule(topics, s, 2):
            counts[topic] = counts.get(topic, 0) + 1
    assert set(counts) == {t[0] for t in topics}
    for robot in ("/robot_0", "/robot_1"):
        for suffix, per_step in PER_ROBOT_STEP.items():
            assert counts[f"{robot}/{suffix}"] == per_step * steps // 2
        assert counts[f"{robot}/task/goal"] == steps // 2 // 150
    assert counts["/diagnostics"] == steps // DIAGNOSTICS_EVERY_STEPS


def _bag(path: Path, episodes: dict[int, list[int]], policy_counted: int) -> Path:
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    t = store.types
    writer = BagWriter(path, [TopicSpec("/robot_0/policy/step", F64, qos_dict("stream")),
                              TopicSpec("/diagnostics", DIAG, qos_dict("diagnostics"))])
    rng = np.random.default_rng(0)
    stamp = 1_000_000_000
    for episode, steps in episodes.items():
        for step in steps:
            ps = layouts.PolicyStep(stamp * 1e-9, episode, step, rng.normal(size=23), rng.normal(size=7),
                                    rng.normal(size=7), rng.normal(size=7), rng.normal(size=3), 0.0, 0.0)
            writer.put(0, stamp, array_bytes(store, layouts.encode_policy_step(ps)))
            stamp += 1000
    status = t["diagnostic_msgs/msg/DiagnosticStatus"](
        level=0, name="/robot_0/policy", message="policy", hardware_id="/robot_0",
        values=[t["diagnostic_msgs/msg/KeyValue"](key="steps", value=str(policy_counted))])
    header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="")
    writer.put(1, stamp, bytes(store.serialize_cdr(t[DIAG](header=header, status=[status]), DIAG)))
    writer.close()
    return path


def test_the_completeness_check_finds_a_missing_step_and_a_short_bag(tmp_path: Path) -> None:
    whole = check_policy_steps(_bag(tmp_path / "whole", {0: list(range(5)), 1: list(range(3))}, 8))
    assert whole["/robot_0"] == {"policy_steps_in_bag": 8, "episodes": 2, "episodes_with_holes": 0,
                                 "policy_steps_counted_by_policy": 8, "complete": True}
    hole = check_policy_steps(_bag(tmp_path / "hole", {0: [0, 1, 3, 4], 1: list(range(3))}, 7))
    assert hole["/robot_0"]["episodes_with_holes"] == 1 and not hole["/robot_0"]["complete"]
    short = check_policy_steps(_bag(tmp_path / "short", {0: list(range(5))}, 6))  # the policy made 6
    assert short["/robot_0"]["episodes_with_holes"] == 0 and not short["/robot_0"]["complete"]


def test_the_tap_bench_hands_every_message_of_a_robot_step_to_the_tap() -> None:
    pytest.importorskip("rclpy")  # the tap encodes with the ROS message types
    from async_naf.bench.recorder import bench_record_tap

    out = bench_record_tap(steps=40, repeats=2)
    assert out["record_tap_messages_per_step"] == sum(PER_ROBOT_STEP.values()) == 15
    assert out["record_tap_messages"] == 15 * 40 * 2
    assert out["record_tap_bundles"] >= 1 and out["record_tap_bundle_bytes_mean"] > 15 * 40 * 2 * 50 / \
        out["record_tap_bundles"]  # at least 50 bytes a message: every message encoded into the bundles
    assert len(out["record_tap_windows_us_per_step"]) == 2


def test_the_recorder_bench_s_recorder_subscribes_to_every_topic_it_is_fed(tmp_path: Path) -> None:
    """The bench publishes every recorded topic itself: its recorder must subscribe to each of them (no topic
    left to robots' bundles, which the bench does not send; the bench waited for ever on such a recorder)."""
    import yaml

    from async_naf.bench.recorder import recorder_specs

    (spec,) = recorder_specs(tmp_path, 2, True)
    params_file = Path(spec.argv[spec.argv.index("--params-file") + 1])
    params = yaml.safe_load(params_file.read_text())["/recorder"]["ros__parameters"]
    fed = [t for t, _, _ in record_topics(GraphConfig(task="door_pull", workers=2, run_dir=str(tmp_path / "x"),
                                                      record=True))]
    assert params["topics"] == fed and not params.get("bundled") and params["drain_queue"] is True
