"""The unknown-publisher alarm's comparison (async_naf.common.publishers), without rclpy."""
from __future__ import annotations

import pytest

from async_naf.common.publishers import (
    UNNAMED,
    PublisherWatch,
    PublisherWatchConfig,
    expected_publishers,
    node_fqn,
)

GOAL, WEIGHTS = "/robot_0/task/goal", "/trainer/weights"


def _policy_watch(**cfg) -> PublisherWatch:
    expected = {"/robot_0/" + t if not t.startswith("/") else t: p
                for t, p in expected_publishers("policy", "/robot_0").items()}
    return PublisherWatch(expected, PublisherWatchConfig(**cfg))


def test_graph_publishers_pass_and_others_are_named_once_when_they_appear() -> None:
    watch = _policy_watch()
    report = watch.check({GOAL: [("collector", "/robot_0")], WEIGHTS: [("trainer", "/")]})
    assert report.unknown == {} and report.count == 0 and report.summary() == ""
    seen = {GOAL: [("collector", "/robot_0"), ("collector", "/robot_1"), ("", "")],
            WEIGHTS: [("trainer", "/"), ("_ros2cli_4242", "/")], "/other": [("x", "/")]}
    # an endpoint without a node name (rmw before the participant's node info arrives) counts from its 2nd check
    assert watch.check(seen).unknown == {GOAL: ["/robot_1/collector"], WEIGHTS: ["/_ros2cli_4242"]}
    rmw_unknown = ("_NODE_NAME_UNKNOWN_", "_NODE_NAMESPACE_UNKNOWN_")
    report = watch.check({**seen, GOAL: [("collector", "/robot_1"), rmw_unknown]})
    assert report.unknown == {GOAL: ["/robot_1/collector", UNNAMED], WEIGHTS: ["/_ros2cli_4242"]}
    assert report.new == {GOAL: [UNNAMED]} and report.gone == {}
    assert report.summary() == f"{GOAL}: /robot_1/collector, {UNNAMED}; {WEIGHTS}: /_ros2cli_4242"
    assert watch.counts == {"unknown_publishers": 3, "unknown_publisher_sightings": 3, "publisher_checks": 3}
    report = watch.check({GOAL: [("collector", "/robot_1")], WEIGHTS: []})  # still there: not new again
    assert report.new == {} and report.gone == {GOAL: [UNNAMED], WEIGHTS: ["/_ros2cli_4242"]}
    assert watch.counts["unknown_publishers"] == 1 and watch.counts["unknown_publisher_sightings"] == 3
    assert watch.check({}).gone == {GOAL: ["/robot_1/collector"]}
    assert watch.counts["unknown_publishers"] == 0


def test_allowed_patterns_and_the_roles() -> None:
    watch = _policy_watch(allowed=("/rosbag2_*",))
    assert watch.check({WEIGHTS: [("rosbag2_player", "/")]}).unknown == {}
    trainer = PublisherWatch(expected_publishers("trainer", "/"))
    report = trainer.check({"/trainer/transitions": [("collector", "/robot_3"), ("collector", "/"),
                                                     ("collector", "/robot_3/x")]})
    assert report.unknown == {"/trainer/transitions": ["/collector", "/robot_3/x/collector"]}
    assert expected_publishers("guard", "/robot_2/") == {"guard/commands_in": ["/robot_2/policy", "/robot_2/reset"]}
    with pytest.raises(ValueError):
        expected_publishers("sim", "/robot_0")
    with pytest.raises(ValueError):
        PublisherWatchConfig(allowed=("rosbag2_player",))
    with pytest.raises(ValueError):
        PublisherWatchConfig(period_s=-1.0)
    assert node_fqn("trainer", "/") == "/trainer" and node_fqn("policy", "/robot_0") == "/robot_0/policy"
