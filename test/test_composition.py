"""Composed robots (``GraphConfig.composition``): which nodes share a process, the container's command line
and arguments, and the rule that composition changes processes only, never nodes, names or parameters.
ROS-free; the composed graph itself runs in test_train_e2e.py (parametrized over composition)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from async_naf.run.container import COMPOSABLE, parse_args
from async_naf.run.graph import ContainerSpec, GraphConfig, build_graph, compose
from async_naf.run.launcher import composed_process_specs, process_specs


def test_composition_none_keeps_one_process_per_node() -> None:
    nodes = build_graph(GraphConfig(workers=2))
    assert compose(nodes, "none") == nodes


def test_robot_composition_puts_each_robots_nodes_in_one_container() -> None:
    nodes = build_graph(GraphConfig(workers=3, composition="robot"))
    procs = compose(nodes, "robot")
    assert [p.key for p in procs] == ["robot_0", "robot_1", "robot_2", "trainer"]
    containers = [p for p in procs if isinstance(p, ContainerSpec)]
    assert len(containers) == 3
    for i, c in enumerate(containers):
        assert c.namespace == f"/robot_{i}"
        assert c.roles == ("sim", "door_angle", "policy", "collector")
        assert all(n.namespace == c.namespace for n in c.nodes)
        assert not c.required
    # the same nodes, parameters included: composition never changes what a node is
    flat = [n for p in procs for n in (p.nodes if isinstance(p, ContainerSpec) else (p,))]
    assert sorted(flat, key=lambda n: n.fqn) == sorted(nodes, key=lambda n: n.fqn)
    trainer = procs[-1]
    assert not isinstance(trainer, ContainerSpec) and trainer.role == "trainer" and trainer.required


def test_graph_config_rejects_an_unknown_composition() -> None:
    with pytest.raises(ValueError, match="composition"):
        GraphConfig(composition="everything")
    with pytest.raises(ValueError, match="composition"):
        compose(build_graph(GraphConfig()), "process")


def test_robot_composition_on_ros2_control_backends_composes_what_is_ours() -> None:
    """gazebo / real: no sim node; door_angle, policy and collector still share the robot's process."""
    procs = compose(build_graph(GraphConfig(workers=1, backend="real")), "robot")
    container = next(p for p in procs if isinstance(p, ContainerSpec))
    assert container.roles == ("door_angle", "policy", "collector")
    # the policy's commands go through the guard: a rule for the policy node only, not the whole process
    assert ("policy:forward_velocity_controller/commands", "guard/commands_in") in container.remappings
    assert ("forward_velocity_controller/commands", "guard/commands_in") not in container.remappings


def test_composed_robot_keeps_per_robot_clock_remapping() -> None:
    procs = compose(build_graph(GraphConfig(workers=2, use_sim_time=True)), "robot")
    assert procs[1].remappings == (("/clock", "/robot_1/clock"),)


def test_container_command_line_has_one_params_file_per_node(tmp_path: Path) -> None:
    nodes = build_graph(GraphConfig(workers=2))
    specs = composed_process_specs(compose(nodes, "robot"), tmp_path, python="py")
    assert [s.key for s in specs] == ["robot_0", "robot_1", "trainer"]
    argv = list(specs[0].argv)
    assert argv[:7] == ["py", "-m", "async_naf.run.container", "sim", "door_angle", "policy", "collector"]
    assert argv[7:10] == ["--ros-args", "-r", "__ns:=/robot_0"]
    assert "__node:=" not in " ".join(argv)  # a node-name remap would rename every node of the process
    files = [argv[i + 1] for i, a in enumerate(argv) if a == "--params-file"]
    assert len(files) == 4
    for path, node in zip(files, nodes[:4], strict=True):
        doc = yaml.safe_load(Path(path).read_text())
        assert doc == {node.fqn: {"ros__parameters": node.parameters}}  # keyed: reaches only that node
    # the trainer's process is exactly what it is without composition
    assert specs[-1] == process_specs([nodes[-1]], tmp_path, python="py")[0]
    assert specs[-1].required and specs[-1].stop_timeout_s == nodes[-1].stop_timeout_s


def test_container_arguments() -> None:
    roles, executor, intra, ros = parse_args(["sim", "policy", "--ros-args", "-r", "__ns:=/robot_0"])
    assert roles == ["sim", "policy"] and executor == "events" and intra
    assert ros == ["--ros-args", "-r", "__ns:=/robot_0"]
    assert parse_args(["--executor", "single_threaded", "collector"])[:2] == (["collector"], "single_threaded")
    assert parse_args(["--intra-process", "off", "sim"])[:3] == (["sim"], "events", False)
    for bad in (["trainer"], [], ["sim", "sim"], ["--executor", "multi", "sim"], ["--ros-args"],
                ["--intra-process", "maybe", "sim"]):
        with pytest.raises(ValueError):
            parse_args(bad)
    assert "trainer" not in COMPOSABLE  # learning keeps its own process


def test_container_exits_2_on_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    from async_naf.run.container import main

    assert main(["trainer", "--ros-args"]) == 2
    assert "cannot be composed" in capsys.readouterr().err


def test_launch_file_and_setup_offer_the_composition() -> None:
    """``composition:=`` of launch/train.launch.py has exactly the graph's choices, and the container's
    console script (what the launch file's Node runs) is installed by setup.py under the graph's name."""
    import ast

    from async_naf.run.graph import COMPOSITIONS, CONTAINER_EXECUTABLE

    repo = Path(__file__).resolve().parent.parent
    tree = ast.parse((repo / "launch" / "train.launch.py").read_text())
    table = next(ast.literal_eval(n.value) for n in ast.walk(tree) if isinstance(n, ast.Assign)
                 and any(getattr(t, "id", "") == "ARGUMENTS" for t in n.targets))
    arg = {a[0]: a for a in table}["composition"]
    from async_naf.run.graph import GraphConfig

    assert arg[1] == GraphConfig().composition == "robot" and tuple(arg[3]) == COMPOSITIONS
    intra = {a[0]: a for a in table}["intra_process"]
    assert intra[1] == "true" and GraphConfig().intra_process
    assert f"{CONTAINER_EXECUTABLE} = {{PACKAGE}}.run.container:main" in (repo / "setup.py").read_text()
