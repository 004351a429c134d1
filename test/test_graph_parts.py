"""Several hosts: the graph description starts a part of the graph (trainer only, robots only, some robots by
their global index), and DDS discovery spans hosts only when asked (ROS-free; the multi-host run itself:
test/test_netns_hosts.py)."""
from __future__ import annotations

import argparse
import ast
from pathlib import Path

import pytest

from async_naf.common import ros_env
from async_naf.run import graph
from async_naf.run.graph import GraphConfig, build_graph, parse_robots, robot_indices, starts_trainer

REPO = Path(__file__).resolve().parent.parent


def _cfg(**kw) -> GraphConfig:
    kw.setdefault("run_dir", "/tmp/async_naf_test_run")
    kw.setdefault("task", "reach")
    return GraphConfig(**kw)


def _by_fqn(config: GraphConfig) -> dict[str, graph.NodeSpec]:
    return {n.fqn: n for n in build_graph(config)}


def test_a_robot_subset_keeps_global_indices_seeds_and_clocks() -> None:
    whole = _by_fqn(_cfg(workers=3, seed=4))
    part = _by_fqn(_cfg(workers=3, seed=4, part="robots", robots=(2, 0)))
    assert sorted(part) == ["/robot_0/collector", "/robot_0/door_angle", "/robot_0/policy", "/robot_0/sim",
                            "/robot_2/collector", "/robot_2/door_angle", "/robot_2/policy", "/robot_2/sim"]
    for fqn, node in part.items():  # the very node the whole graph would start there: same parameters
        assert node == whole[fqn], fqn
    assert part["/robot_2/collector"].parameters["robot_id"] == 2
    assert part["/robot_2/sim"].parameters["seed"] == graph.robot_seed(4, 2) != graph.robot_seed(4, 0)
    assert part["/robot_2/sim"].parameters["clock_topic"] == "clock"  # workers 3: each robot its own clock
    assert not any(n.required for n in part.values())  # nothing here ends a robots-only run on its own


def test_parts_split_the_whole_graph_exactly() -> None:
    """trainer here + robots 0 there + robots 1,2 elsewhere = the whole graph, node for node."""
    whole = _by_fqn(_cfg(workers=3))
    trainer = _by_fqn(_cfg(workers=3, part="trainer"))
    hosts = [_by_fqn(_cfg(workers=3, part="robots", robots=(0,))), _by_fqn(_cfg(workers=3, part="robots",
                                                                                 robots=(1, 2)))]
    assert list(trainer) == ["/trainer"] and trainer["/trainer"].required
    assert trainer["/trainer"] == whole["/trainer"]
    combined = {**trainer, **hosts[0], **hosts[1]}
    assert combined == whole
    assert len(trainer) + len(hosts[0]) + len(hosts[1]) == len(whole)  # no node on two hosts


def test_part_all_with_robots_starts_the_trainer_and_those_robots() -> None:
    nodes = _by_fqn(_cfg(workers=4, robots=(3,)))
    assert sorted({n.namespace for n in nodes.values()}) == ["/", "/robot_3"]
    assert "/trainer" in nodes


@pytest.mark.parametrize(("kw", "match"), [
    ({"part": "hosts"}, "unknown part"),
    ({"robots": (2,), "workers": 2}, r"robots \[2\] outside 0..1"),
    ({"robots": (0, 0)}, "given twice"),
    ({"part": "trainer", "robots": (0,)}, "trainer-only part starts no robots"),
])
def test_bad_parts_are_rejected(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _cfg(**kw)


def test_parse_robots() -> None:
    assert parse_robots("0,2") == (0, 2)
    assert parse_robots(" 1 , 3 ,") == (1, 3)
    assert parse_robots("") == ()
    for bad in ("a", "-1", "0;2", "1.5"):
        with pytest.raises(ValueError, match="robot indices"):
            parse_robots(bad)


def test_robot_indices_and_trainer_by_part() -> None:
    assert robot_indices(_cfg(workers=3)) == [0, 1, 2] and starts_trainer(_cfg(workers=3))
    assert robot_indices(_cfg(workers=3, part="trainer")) == [] and starts_trainer(_cfg(workers=3, part="trainer"))
    assert robot_indices(_cfg(workers=3, part="robots", robots=(1,))) == [1]
    assert not starts_trainer(_cfg(workers=3, part="robots"))


def test_record_topics_and_bringup_follow_the_part() -> None:
    topics = [t for t, _, _ in graph.record_topics(_cfg(workers=3, part="robots", robots=(1,)))]
    assert {t.split("/")[1] for t in topics if t.startswith("/robot_")} == {"robot_1"}
    trainer_only = [t for t, _, _ in graph.record_topics(_cfg(workers=3, part="trainer"))]
    assert trainer_only == ["/trainer/weights", "/diagnostics"]
    pytest.importorskip("xacro")
    bringup = graph.build_bringup(_cfg(task="door_pull", workers=3, backend="gazebo", part="robots", robots=(2,)))
    assert {n.robot for n in bringup if n.robot is not None} == {2}
    assert graph.build_bringup(_cfg(task="door_pull", workers=3, backend="gazebo", part="trainer")) == []


# ---------------------------------------------------------------------- discovery
def test_discovery_stays_on_loopback_unless_asked() -> None:
    assert ros_env.ros_environment({})["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    inherited = ros_env.ros_environment({"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"})
    assert inherited["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SUBNET"  # a user's own setting is kept, as before
    assert ros_env.ros_environment({}, discovery="subnet")["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SUBNET"
    forced = ros_env.ros_environment({"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}, discovery="localhost")
    assert forced["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    server = ros_env.ros_environment({}, discovery_server="10.0.0.5:11811")
    assert server["ROS_DISCOVERY_SERVER"] == "10.0.0.5:11811"
    assert server["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SUBNET"
    assert "ROS_DISCOVERY_SERVER" not in ros_env.ros_environment({})
    # what Fast DDS 2.14 reads in ROS_DISCOVERY_SERVER: names, IPv6 in brackets, lists with empty places (ids)
    for given, written in (("robots.lan:11811", "robots.lan:11811"), ("[fd00::5]:11811", "[fd00::5]:11811"),
                           (" ;10.0.0.5:11812", ";10.0.0.5:11812"),
                           ("10.0.0.5:11811; [::1]:11812", "10.0.0.5:11811;[::1]:11812")):
        assert ros_env.ros_environment({}, discovery_server=given)["ROS_DISCOVERY_SERVER"] == written


@pytest.mark.parametrize(("discovery", "server", "match"), [
    ("wan", "", "unknown discovery"),
    ("", "10.0.0.5", "HOST:PORT"),
    ("", "10.0.0.5:0", "HOST:PORT"),
    ("", ":11811", "HOST:PORT"),
    ("localhost", "10.0.0.5:11811", "needs discovery subnet"),
    # Fast DDS reads ::1:11811 as the address ::1:1181 with port 1: refused, with the form it does read
    ("", "::1:11811", r"in brackets, \[::1\]:11811"),
    ("", "[zz::q]:11811", "not an IPv6 address"),
    ("", "[::1]", "HOST:PORT"),
    ("", "10.0.0.256:11811", "not an IPv4 address"),
    ("", "10.0.5:11811", "not an IPv4 address"),
    ("", "0.0.0.0:11811", "wildcard"),
    ("", "[::]:11811", "wildcard"),
    ("", "robot host:11811", "HOST:PORT"),
    ("", "10.0.0.5:70000", "1..65535"),
    ("", ";;", "HOST:PORT"),
    ("", "10.0.0.5:11811;bad", "HOST:PORT"),
])
def test_bad_discovery_options(discovery: str, server: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ros_env.discovery_variables(discovery, server)


# ---------------------------------------------------------------------- CLI and launch file
def _train_args(*argv: str) -> argparse.Namespace:
    from async_naf.run.cli import build_parser

    return build_parser().parse_args(["train", *argv])


def test_cli_parts_build_the_same_config_as_the_launch_arguments() -> None:
    from async_naf.run.commands.train import _default_run_dir, build_config

    args = _train_args("--task", "reach", "--workers", "3", "--part", "robots", "--robots", "0,2",
                       "--discovery", "subnet", "--minutes", "0")
    args.run_dir = _default_run_dir(args)
    assert args.run_dir == "runs/reach_3w_s0_robots_r0-2"
    config = build_config(args)
    assert (config.part, config.robots, config.max_wall_s) == ("robots", (0, 2), 0.0)
    args = _train_args("--task", "reach", "--part", "robots", "--steps", "100")
    args.run_dir = "/tmp/x"
    with pytest.raises(ValueError, match="robots-only part ends at --minutes"):
        build_config(args)
    args = _train_args("--task", "reach", "--part", "trainer", "--robots", "1")
    args.run_dir = "/tmp/x"
    with pytest.raises(ValueError, match="trainer-only part starts no robots"):
        build_config(args)


def test_launch_file_declares_part_robots_and_discovery() -> None:
    tree = ast.parse((REPO / "launch" / "train.launch.py").read_text())
    table = next(ast.literal_eval(n.value) for n in ast.walk(tree) if isinstance(n, ast.Assign)
                 and any(getattr(t, "id", "") == "ARGUMENTS" for t in n.targets))
    args = {a[0]: a for a in table}
    assert tuple(args["part"][3]) == graph.PARTS and args["part"][1] == "all"
    assert args["robots"][1] == "" and args["discovery"][1] == "" and args["discovery_server"][1] == ""
    assert set(args["discovery"][3]) == {"", *ros_env.DISCOVERY_RANGES}
    assert all(a[2] for a in table)  # every argument has a description
    text = (REPO / "launch" / "train.launch.py").read_text()
    # the launch file builds the same GraphConfig (part, robots through parse_robots) and environment
    assert 'part=arg("part"), robots=parse_robots(arg("robots"))' in text
    assert 'discovery_variables(arg("discovery"), arg("discovery_server"))' in text


def test_cli_demo_pretrain_goes_to_the_trainer_and_is_checked() -> None:
    from async_naf.run.commands.train import build_config

    args = _train_args("--task", "reach", "--demos", "data/x", "--demo-pretrain", "1500", "--steps", "10")
    args.run_dir = "/tmp/x"
    assert build_config(args).overrides["/trainer"]["demo_pretrain_updates"] == 1500
    args = _train_args("--task", "reach", "--demos", "data/x", "--demo-pretrain", "-1", "--steps", "10")
    args.run_dir = "/tmp/x"
    with pytest.raises(ValueError, match="--demo-pretrain must be >= 0"):
        build_config(args)
