"""The graph description (async_naf.run.graph): node sets, names, parameters through the config dataclasses,
overrides, and the ROS 2 launch file / controllers file that use it (checked statically here; a test that
really imports ``launch`` runs where it exists)."""
from __future__ import annotations

import argparse
import ast
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import yaml

from async_naf.learning.config import NAFParams
from async_naf.run import graph
from async_naf.run.graph import GraphConfig, build_bringup, build_graph, load_overrides
from async_naf.run.launcher import process_specs
from async_naf.wire.params import build, flatten

REPO = Path(__file__).resolve().parent.parent
LAUNCH_FILE = REPO / "launch" / "train.launch.py"
CONTROLLERS = REPO / "config" / "controllers.yaml"


def _cfg(**kw) -> GraphConfig:
    kw.setdefault("run_dir", "/tmp/async_naf_test_run")
    return GraphConfig(**kw)


@pytest.mark.parametrize(("backend", "workers"), [("mujoco", 1), ("mujoco", 3), ("gazebo", 2), ("real", 1)])
def test_node_set_per_backend(backend: str, workers: int) -> None:
    nodes = build_graph(_cfg(task="door_pull", workers=workers, backend=backend))
    per_robot = ["sim", "door_angle", "policy", "collector"] if backend == "mujoco" else \
        ["guard", "reset", "door_angle", "policy", "collector"]
    expected = [f"/robot_{i}/{r}" for i in range(workers) for r in per_robot] + ["/trainer"]
    assert [n.fqn for n in nodes] == expected
    assert len({n.fqn for n in nodes}) == len(nodes)
    assert len({n.key for n in nodes}) == len(nodes)
    assert [n.fqn for n in nodes if n.required] == ["/trainer"]
    for n in nodes:
        assert n.module == f"async_naf.nodes.{n.executable}"
        assert importlib.util.find_spec(n.module) is not None, f"{n.module} does not exist"


def test_the_runs_deadline_is_fixed_once_and_reaches_the_trainer() -> None:
    """with_deadline (async-naf train, the launch file): the run's end = start + max_wall_s, written into the
    trainer's parameters, so a restarted or respawned trainer (same parameters file) keeps it."""
    from async_naf.run.graph import with_deadline

    cfg = with_deadline(_cfg(task="reach", workers=1, max_wall_s=600.0), 1_000_000.0)
    assert cfg.deadline_unix == 1_000_600.0
    assert with_deadline(cfg, 2_000_000.0).deadline_unix == 1_000_600.0  # fixed once: a later call keeps it
    assert with_deadline(_cfg(task="reach", workers=1), 1_000_000.0).deadline_unix == 0.0  # no budget: none
    trainer = {n.fqn: n for n in build_graph(cfg)}["/trainer"].parameters
    assert trainer["deadline_unix"] == 1_000_600.0 and trainer["max_wall_s"] == 600.0
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            _cfg(task="reach", workers=1, deadline_unix=bad)


def test_graph_decided_parameters() -> None:
    nodes = {n.fqn: n for n in build_graph(_cfg(task="reach", workers=3, seed=7, realtime=False,
                                                   max_env_steps=1234, max_wall_s=60.0))}
    seeds = [nodes[f"/robot_{i}/sim"].parameters["seed"] for i in range(3)]
    assert len(set(seeds)) == 3 and all(s != 7 for s in seeds)
    for i in range(3):
        ns = f"/robot_{i}"
        assert nodes[f"{ns}/policy"].parameters["seed"] == nodes[f"{ns}/sim"].parameters["seed"]
        assert nodes[f"{ns}/collector"].parameters["robot_id"] == i
        assert nodes[f"{ns}/sim"].parameters["clock_topic"] == "clock"  # -> /robot_i/clock, not a shared /clock
        assert nodes[f"{ns}/policy"].parameters["lockstep"] is True
        assert all(nodes[f"{ns}/{r}"].parameters.get("task", "reach") == "reach"
                   for r in ("sim", "door_angle", "policy", "collector"))
    trainer = nodes["/trainer"].parameters
    assert trainer["max_env_steps"] == 1234 and trainer["max_wall_s"] == 60.0 and trainer["seed"] == 7
    assert Path(trainer["run_dir"]).is_absolute()
    # other seed -> other robot seeds; one worker publishes the usual /clock
    other = build_graph(_cfg(task="reach", workers=1, seed=8, realtime=True))
    assert other[0].parameters["seed"] not in seeds and other[0].parameters["clock_topic"] == "/clock"
    assert other[2].parameters["lockstep"] is False


@pytest.mark.parametrize("backend", ["gazebo", "real"])
def test_every_command_of_a_ros2_control_arm_passes_the_guard(backend: str) -> None:
    overrides = {"/**/policy": {"control_period_s": 0.02}}
    nodes = {n.fqn: n for n in build_graph(_cfg(task="door_pull", workers=2, backend=backend, overrides=overrides))}
    for i in range(2):
        ns = f"/robot_{i}"
        assert nodes[f"{ns}/policy"].remappings == (("forward_velocity_controller/commands", "guard/commands_in"),)
        assert nodes[f"{ns}/reset"].remappings == (("forward_velocity_controller/commands", "guard/commands_in"),)
        assert nodes[f"{ns}/guard"].remappings == ()  # the guard alone publishes on the controller's topic
        assert nodes[f"{ns}/guard"].parameters["control_period_s"] == 0.02  # the policy's period
        assert nodes[f"{ns}/policy"].parameters["control_period_s"] == 0.02
    mujoco = build_graph(_cfg(task="door_pull", workers=1))
    assert all(n.role not in ("guard", "reset") and not n.remappings for n in mujoco)


def test_arm_backends_reset_to_the_sims_start_pose() -> None:
    """gazebo / real: a reset node per robot offers sim/reset; door tasks drive to the embedded sim's start pose
    (the inverse kinematics of the task's start pose), and the collector waits long enough for it."""
    from async_naf.sim.arm_door_sim import ArmDoorSim
    from async_naf.sim.config import SimConfig

    nodes = {n.fqn: n for n in build_graph(_cfg(task="door_pull", workers=2, backend="real"))}
    from async_naf.task.kinematics import ArmKinematics

    expected = ArmDoorSim(SimConfig(task="door_pull")).start_pose()
    kin = ArmKinematics()
    for i in range(2):
        reset = nodes[f"/robot_{i}/reset"].parameters
        assert reset["task"] == "door_pull"
        np.testing.assert_allclose(reset["start_pose"], expected)
        # the retreat: the hook 15 cm back and 10 cm up from its start position, clear of the lever
        np.testing.assert_allclose(kin.ee_position(np.array(reset["retreat_pose"])) - kin.ee_position(expected),
                                   graph.RETREAT_OFFSET_M, atol=0.005)
        # the clear pose: the retreat turned about joint 1, the hook beyond the leaf's sweep about the hinge
        clear, retreat = np.array(reset["clear_pose"]), np.array(reset["retreat_pose"])
        np.testing.assert_allclose(clear[1:], retreat[1:])
        assert clear[0] > retreat[0]  # away from the pull door's hinge (-y), toward +y
        goal = ArmDoorSim(SimConfig(task="door_pull")).door_goal()
        reach_m = float(np.hypot(*(kin.ee_position(clear)[:2] - goal[3:5])))
        assert SimConfig().door.width + graph.CLEAR_MARGIN_M <= reach_m < SimConfig().door.width + 0.3
        assert nodes[f"/robot_{i}/collector"].parameters["reset_timeout_s"] == graph.ARM_RESET_TIMEOUT_S
    reach = {n.fqn: n for n in build_graph(_cfg(task="reach", workers=1, backend="gazebo",
                                                 overrides={"collector": {"reset_timeout_s": 30.0}}))}
    assert reach["/robot_0/reset"].parameters.get("start_pose", []) == []  # reach: its fixed joint-space pose
    assert reach["/robot_0/collector"].parameters["reset_timeout_s"] == 30.0  # the user's value wins


def test_use_sim_time_remaps_clock_per_robot() -> None:
    nodes = build_graph(_cfg(task="reach", workers=2, use_sim_time=True))
    for n in nodes:
        if n.robot is not None:
            assert n.parameters["use_sim_time"] is True
            assert n.remappings == (("/clock", f"/robot_{n.robot}/clock"),)
    assert "use_sim_time" not in nodes[-1].parameters  # the trainer stays on wall time
    assert all(not n.remappings for n in build_graph(_cfg(task="reach", workers=2)))


def test_parameters_valid_through_dataclasses(tmp_path: Path) -> None:
    """Every node's parameters rebuild its config dataclass unchanged, also after a trip through the params
    file the launcher writes (what the node reads)."""
    nodes = build_graph(_cfg(task="door_push", workers=2, overrides=load_overrides(REPO / "config" / "train.yaml")))
    for spec, node in zip(process_specs(nodes, tmp_path), nodes, strict=True):
        cls = graph.config_class(node.role)
        own = {k: v for k, v in node.parameters.items() if k not in graph.EXTRA_PARAMS.get(node.role, {})}
        assert flatten(build(cls, own)) == own
        params_file = Path(spec.argv[spec.argv.index("--params-file") + 1])
        doc = yaml.safe_load(params_file.read_text())
        assert list(doc) == [node.fqn]
        assert doc[node.fqn]["ros__parameters"] == node.parameters
        assert spec.argv[1:3] == ("-m", node.module)
        assert f"__ns:={node.namespace}" in spec.argv and f"__node:={node.name}" in spec.argv


def test_overrides_precedence_and_scope() -> None:
    overrides = {
        "/**/policy": {"noise.scale": 0.2, "exploration_scale": 0.5},
        "/robot_1/policy": {"noise.scale": 0.1},
        "sim": {"start_noise": 0.01},
        "/trainer": {"naf.lr": 3e-4, "naf.batch_size": 128, "task": "door_push"},
    }
    nodes = {n.fqn: n.parameters for n in build_graph(_cfg(task="reach", workers=2, overrides=overrides))}
    assert nodes["/robot_0/policy"]["noise.scale"] == 0.2 and nodes["/robot_1/policy"]["noise.scale"] == 0.1
    assert nodes["/robot_1/policy"]["exploration_scale"] == 0.5
    assert nodes["/robot_0/sim"]["start_noise"] == 0.01
    assert nodes["/trainer"]["naf.lr"] == 3e-4 and nodes["/trainer"]["naf.batch_size"] == 128
    assert nodes["/trainer"]["task"] == "reach"  # the run's task wins over a stray override


def test_bad_overrides_fail_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lrr"):
        build_graph(_cfg(task="reach", overrides={"/trainer": {"naf.lrr": 0.1}}))
    with pytest.raises(ValueError, match="batch_size"):
        build_graph(_cfg(task="reach", overrides={"/trainer": {"naf.batch_size": "big"}}))
    with pytest.raises(ValueError, match="unknown node"):
        build_graph(_cfg(task="reach", overrides={"/**/planner": {"x": 1}}))
    bad = tmp_path / "bad.yaml"
    bad.write_text("/trainer:\n  lr: 0.1\n")  # missing ros__parameters
    with pytest.raises(ValueError, match="ros__parameters"):
        load_overrides(bad)
    with pytest.raises(ValueError, match="task"):
        _cfg(task="fly")
    with pytest.raises(ValueError, match="workers"):
        _cfg(task="reach", workers=0)
    with pytest.raises(ValueError, match="backend"):
        _cfg(task="reach", backend="isaac")


def test_train_yaml_is_valid_for_every_task() -> None:
    overrides = load_overrides(REPO / "config" / "train.yaml")
    assert overrides, "config/train.yaml holds no overrides"
    for task in ("reach", "door_pull", "door_push"):
        build_graph(_cfg(task=task, workers=2, overrides=overrides))
        for backend in graph.BACKENDS:  # with the task's own file over it, on every backend
            build_graph(_cfg(task=task, workers=2, backend=backend, overrides=graph.config_overrides(None, task=task)))
    for path in (REPO / "config").glob("train.*.yaml"):  # every task file names a task
        assert path.name[len("train."):-len(".yaml")] in ("reach", "door_pull", "door_push"), path


def test_a_tasks_own_file_lies_over_train_yaml(tmp_path: Path) -> None:
    """config/train.door_push.yaml: door_push's robots train from +-0.06 rad starts and its trainer with a
    settling learning rate; config/train.door_pull.yaml: a rate that settles faster and lower,
    config/train.yaml's 0.03; reach keeps train.yaml's constant rate; everything else of train.yaml stays; a named
    file and --set still win."""
    from async_naf.run.commands.train import build_config

    base = graph.config_overrides(None)
    push = graph.config_overrides(None, task="door_push")
    assert graph.overrides_for(base, "/robot_0", "sim")["start_noise"] == 0.03
    assert graph.overrides_for(push, "/robot_1", "sim")["start_noise"] == 0.06
    assert {k: v for k, v in push["/**/sim"].items() if k != "start_noise"} == {
        k: v for k, v in base["/**/sim"].items() if k != "start_noise"}
    schedule = {"naf.lr_decay_start": 100000, "naf.lr_half_life": 100000, "naf.lr_min": 1e-4}
    assert push["/trainer"] == {**base["/trainer"], **schedule} and not set(schedule) & set(base["/trainer"])
    assert {k: v for k, v in push.items() if k not in ("/**/sim", "/trainer")} == {
        k: v for k, v in base.items() if k not in ("/**/sim", "/trainer")}
    pull_schedule = {"naf.lr_decay_start": 100000, "naf.lr_half_life": 50000, "naf.lr_min": 2.5e-5}
    pull = graph.config_overrides(None, task="door_pull")
    assert pull == {**base, "/trainer": {**base["/trainer"], **pull_schedule}}
    assert graph.config_overrides(None, task="reach") == base
    (tmp_path / "mine.yaml").write_text("/trainer:\n  ros__parameters:\n    lr: 1e-3\n")
    assert graph.config_overrides(str(tmp_path / "mine.yaml"), task="door_push") == {"/trainer": {"lr": 1e-3}}

    def nodes(task: str, sets: list[str], name: str) -> list:
        args = argparse.Namespace(config=None, resume=False, eval_every=0.0, sets=sets, minutes=1.0, steps=0,
                                  task=task, workers=2, seed=0, run_dir=str(tmp_path / "run"), realtime=False)
        return [n for n in build_graph(build_config(args)) if n.name == name]

    def sim_noise(task: str, sets: list[str]) -> set[float]:
        return {n.parameters["start_noise"] for n in nodes(task, sets, "sim")}

    assert sim_noise("door_push", []) == {0.06}
    assert sim_noise("door_pull", []) == {0.03}
    assert sim_noise("door_push", ["sim.start_noise=0.03"]) == {0.03}

    def trainer_naf(task: str, sets: list[str]) -> NAFParams:
        (trainer,) = nodes(task, sets, "trainer")
        keys = ("lr", "lr_decay_start", "lr_half_life", "lr_min")
        return NAFParams(**{k: trainer.parameters[f"naf.{k}"] for k in keys if f"naf.{k}" in trainer.parameters})

    push_naf = trainer_naf("door_push", [])
    assert [push_naf.lr_at(n) for n in (100_000, 200_000, 10**7)] == pytest.approx([1e-3, 5e-4, 1e-4])
    pull_naf = trainer_naf("door_pull", [])
    assert [pull_naf.lr_at(n) for n in (100_000, 150_000, 400_000)] == pytest.approx([1e-3, 5e-4, 2.5e-5])
    assert trainer_naf("door_pull", ["trainer.naf.lr_min=1e-4"]).lr_at(10**7) == pytest.approx(1e-4)
    assert trainer_naf("reach", []).lr_at(10**7) == 1e-3
    assert trainer_naf("door_push", ["trainer.naf.lr_half_life=0"]).lr_at(10**7) == 1e-3
    # the in-process loops beside the graph (serial diagnostic, SB3 peers) train in the same simulation
    assert graph.training_sim_config("door_push").start_noise == 0.06
    assert graph.training_sim_config("door_pull").start_noise == 0.03
    assert graph.training_sim_config("door_push").task == "door_push"
    # the launch file gives its task:= to the same function
    calls = [n for n in ast.walk(_launch_tree()) if isinstance(n, ast.Call)
             and getattr(n.func, "id", "") == "config_overrides"]
    (task_kw,) = [k.value for k in calls[0].keywords if k.arg == "task"]
    assert isinstance(task_kw, ast.Call) and task_kw.args[0].value == "task"


def test_a_task_file_is_looked_up_by_plain_name_and_sets_every_robot(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Only ``config/train.<name>.yaml`` of a plain task name is read (no path outside config/), and a task file
    that sets one robot's parameters is refused: it would outrank ``--set``, which sets every robot's."""
    import async_naf.common.resources as resources

    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "train.yaml").write_text("/trainer:\n  ros__parameters:\n    lr: 1e-3\n")
    body = "/**/sim:\n  ros__parameters:\n    start_noise: 0.05\n"
    (tmp_path / "config" / "train.mine.yaml").write_text(body)
    (tmp_path / "config" / "train...").mkdir()
    (tmp_path / "config" / "train..." / "evil.yaml").write_text(body)  # what "train.../evil.yaml" names
    (tmp_path / "config" / "train.mine\n.yaml").write_text(body)
    monkeypatch.setattr(resources, "share_dir", lambda: tmp_path)
    base = {"/trainer": {"lr": 1e-3}}
    assert graph.config_overrides(None, task="mine") == {**base, "/**/sim": {"start_noise": 0.05}}
    for name in ("../evil", "mine\n", "", None):
        assert graph.config_overrides(None, task=name) == base, name
    (tmp_path / "config" / "train.one.yaml").write_text(body.replace("/**/sim", "/robot_1/sim"))
    with pytest.raises(ValueError, match=r"train.one.yaml: a task's file sets parameters for every robot.*robot_1"):
        graph.config_overrides(None, task="one")


def test_the_in_process_loops_train_in_the_graphs_simulation(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The serial diagnostic and the SB3 peers build their ArmDoorEnv from training_sim_config: door_push's
    +-0.06 rad starts, or the sim section of the file the experiment was given."""
    import async_naf.run.env as env_module
    from async_naf.run import peers, serial

    made: list[object] = []

    class Built(Exception):
        pass

    def capture(*args: object, sim_config: object = None, **kwargs: object) -> None:
        made.append(sim_config)
        raise Built

    monkeypatch.setattr(env_module, "ArmDoorEnv", capture)
    with pytest.raises(Built):
        serial.train_serial(serial.SerialConfig(task="door_push", steps=10))
    assert [(c.task, c.start_noise) for c in made] == [("door_push", 0.06)]  # type: ignore[attr-defined]
    mine = tmp_path / "mine.yaml"
    mine.write_text("/**/sim:\n  ros__parameters:\n    start_noise: 0.02\n")
    pytest.importorskip("stable_baselines3", reason="the peers need Stable-Baselines3 (an optional extra)")
    with pytest.raises(Built):
        peers.train_peer("sac", "door_push", 0, 10, tmp_path / "peer", 5, 1)
    with pytest.raises(Built):
        peers.train_peer("sac", "door_pull", 0, 10, tmp_path / "peer2", 5, 1, config_file=str(mine))
    assert [(c.task, c.start_noise) for c in made[1:]] == [  # type: ignore[attr-defined]
        ("door_push", 0.06), ("door_pull", 0.02)]


# ---------------------------------------------------------------------- launch file (static checks)
def _launch_tree() -> ast.Module:
    return ast.parse(LAUNCH_FILE.read_text(), filename=str(LAUNCH_FILE))


def _declared_arguments() -> dict[str, tuple]:
    tree = _launch_tree()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "ARGUMENTS" for t in node.targets):
            return {a[0]: a for a in ast.literal_eval(node.value)}
    raise AssertionError("launch file declares no ARGUMENTS table")


def test_launch_file_compiles_and_declares_described_arguments() -> None:
    compile(LAUNCH_FILE.read_text(), str(LAUNCH_FILE), "exec")
    args = _declared_arguments()
    for name in ("backend", "workers", "task", "seed", "run_dir", "realtime", "demos", "demo_ratio"):
        assert name in args, f"launch argument {name} missing"
    for name, default, description, choices in args.values():
        assert isinstance(description, str) and len(description) > 15, f"{name}: no real description"
        if choices:
            assert default in choices, f"{name}: default {default!r} not among its choices"
    assert tuple(args["backend"][3]) == graph.BACKENDS
    from async_naf.task.tasks import TASK_NAMES

    assert tuple(args["task"][3]) == tuple(TASK_NAMES)
    # every DeclareLaunchArgument call goes through the table (which has a description for each)
    calls = [n for n in ast.walk(_launch_tree()) if isinstance(n, ast.Call)
             and getattr(n.func, "id", "") == "DeclareLaunchArgument"]
    assert calls and all(any(k.arg == "description" for k in c.keywords) for c in calls)


def test_launch_file_builds_nodes_from_the_graph_description() -> None:
    """Same description on both paths: the launch file imports build_graph/build_bringup from async_naf.run.graph
    and passes each NodeSpec's package, executable, name, namespace, parameters and remappings to Node."""
    tree = _launch_tree()
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "async_naf.run.graph"
                for a in n.names}
    assert {"build_graph", "build_bringup", "GraphConfig"} <= imported
    called = {getattr(n.func, "id", "") for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert {"build_graph", "build_bringup", "OpaqueFunction", "Node", "with_deadline"} <= called
    node_calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "Node"]
    keywords = {k.arg for c in node_calls for k in c.keywords}
    assert {"package", "executable", "name", "namespace", "parameters", "remappings"} <= keywords
    # the launch file reads every GraphConfig field it needs from a declared argument
    args = _declared_arguments()
    performed = {n.args[0].value for n in ast.walk(tree) if isinstance(n, ast.Call)
                 and getattr(n.func, "id", "") == "arg" and n.args and isinstance(n.args[0], ast.Constant)}
    assert performed <= set(args), f"launch file reads undeclared arguments {performed - set(args)}"
    assert {"backend", "workers", "task", "seed", "run_dir", "realtime"} <= performed


def test_launch_file_keeps_dds_on_loopback() -> None:
    """The first action sets ROS_AUTOMATIC_DISCOVERY_RANGE (the user's value if set, else LOCALHOST), so every
    process of the launch - ros2_control, spawners, gz bridges and gz sim included - stays on loopback."""
    from async_naf.common.ros_env import DEFAULT_DISCOVERY_RANGE

    tree = _launch_tree()
    (gen,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description"]
    (described,) = [n for n in ast.walk(gen)
                    if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "LaunchDescription"]
    assert isinstance(described.args[0], ast.List), "LaunchDescription takes a literal list of actions"
    first = described.args[0].elts[0]
    assert isinstance(first, ast.Call) and getattr(first.func, "id", "") == "SetEnvironmentVariable", \
        "the first action must be SetEnvironmentVariable"
    name, value = first.args
    assert isinstance(name, ast.Constant) and name.value == "ROS_AUTOMATIC_DISCOVERY_RANGE"
    # value: the user's own setting if there is one, else the project default
    assert isinstance(value, ast.Call) and getattr(value.func, "id", "") == "EnvironmentVariable"
    assert isinstance(value.args[0], ast.Constant) and value.args[0].value == "ROS_AUTOMATIC_DISCOVERY_RANGE"
    (default,) = [k.value for k in value.keywords if k.arg == "default_value"]
    assert isinstance(default, ast.Name) and default.id == "DEFAULT_DISCOVERY_RANGE"
    imported = {a.name for n in tree.body if isinstance(n, ast.ImportFrom) and n.module == "async_naf.common.ros_env"
                for a in n.names}
    assert "DEFAULT_DISCOVERY_RANGE" in imported and DEFAULT_DISCOVERY_RANGE == "LOCALHOST"
    imported_launch = {a.name for n in tree.body if isinstance(n, ast.ImportFrom) and n.module
                       and n.module.startswith("launch") for a in n.names}
    assert {"SetEnvironmentVariable", "EnvironmentVariable"} <= imported_launch


def test_a_missing_config_file_is_an_error_on_both_paths(tmp_path: Path) -> None:
    """`config:=` / `--config` naming a file that does not exist fails clearly instead of being ignored."""
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ValueError, match=r"config:= .*nope.yaml: no such file"):
        graph.config_overrides(str(missing), "config:=")
    assert graph.config_overrides("", "config:=") == load_overrides(graph.default_config_file())
    (tmp_path / "mine.yaml").write_text("/trainer:\n  ros__parameters:\n    lr: 1e-3\n")
    assert graph.config_overrides(str(tmp_path / "mine.yaml")) == {"/trainer": {"lr": 1e-3}}
    # the launch file reads its config:= argument through this one function
    calls = [n for n in ast.walk(_launch_tree()) if isinstance(n, ast.Call)
             and getattr(n.func, "id", "") == "config_overrides"]
    assert calls and isinstance(calls[0].args[0], ast.Call) and calls[0].args[0].args[0].value == "config"
    from async_naf.run.commands.train import build_config

    args = argparse.Namespace(config=str(missing), resume=False, eval_every=0.0, sets=[], minutes=1.0, steps=0,
                              task="reach", workers=1, seed=0, run_dir=str(tmp_path / "run"), realtime=False)
    with pytest.raises(ValueError, match=r"--config .*no such file"):
        build_config(args)


def test_launch_file_references_existing_files() -> None:
    text = LAUNCH_FILE.read_text()
    assert "gz_sim.launch.py" in text and "ros_gz_sim" in text
    for rel in ("config/controllers.yaml", "config/train.yaml", "urdf/arm_door.urdf.xacro"):
        assert (REPO / rel).is_file(), rel
    from async_naf.common.resources import data_path

    assert graph.default_config_file() == data_path("config", "train.yaml")


def test_launch_file_with_real_launch_package() -> None:
    """Where launch / launch_ros are installed: the launch description loads and declares its arguments."""
    pytest.importorskip("launch", reason="launch (ROS 2) is not installable here; checked statically above")
    pytest.importorskip("launch_ros", reason="launch_ros (ROS 2) is not installable here")
    from launch.actions import DeclareLaunchArgument

    spec = importlib.util.spec_from_file_location("train_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    declared = {a.name for a in description.entities if isinstance(a, DeclareLaunchArgument)}
    assert {"backend", "workers", "task", "seed", "run_dir", "realtime"} <= declared
    assert all(a.description for a in description.entities if isinstance(a, DeclareLaunchArgument))
    from launch.actions import SetEnvironmentVariable

    assert isinstance(description.entities[0], SetEnvironmentVariable)


# ---------------------------------------------------------------------- ros2_control bringup
def _urdf_joints(backend: str, ns: str = "/robot_0"):
    import xml.etree.ElementTree as ET

    root = ET.fromstring(graph.robot_description(backend, ns))
    return root


def test_controllers_yaml_matches_urdf_joints() -> None:
    from async_naf.sim import ARM_JOINT_NAMES

    doc = yaml.safe_load(CONTROLLERS.read_text())
    cm = doc["/**/controller_manager"]["ros__parameters"]
    assert cm["joint_state_broadcaster"]["type"] == "joint_state_broadcaster/JointStateBroadcaster"
    assert cm["forward_velocity_controller"]["type"] == "forward_command_controller/ForwardCommandController"
    assert isinstance(cm["update_rate"], int) and cm["update_rate"] > 0
    fvc = doc["/**/forward_velocity_controller"]["ros__parameters"]
    assert fvc["interface_name"] == "velocity"
    assert tuple(fvc["joints"]) == tuple(ARM_JOINT_NAMES)
    root = _urdf_joints("gazebo")
    revolute = [j.get("name") for j in root.iter("joint")
                if j.get("type") == "revolute" and j.get("name") in fvc["joints"]]
    assert revolute == list(fvc["joints"])
    rc_joints = {j.get("name"): j for j in root.find("ros2_control").iter("joint")}
    assert set(rc_joints) == set(fvc["joints"])
    for joint in rc_joints.values():  # each joint can take the velocity command the controller writes
        assert [c.get("name") for c in joint.findall("command_interface")] == ["velocity"]
        assert {s.get("name") for s in joint.findall("state_interface")} == {"position", "velocity"}


def test_bringup_gazebo_and_real() -> None:
    gz = build_bringup(_cfg(task="door_pull", workers=2, backend="gazebo"))
    spawners = [n for n in gz if n.executable == "spawner"]
    assert [n.robot for n in spawners] == [0, 1]  # one per robot, both controllers in order
    for n in spawners:
        assert n.arguments[:2] == graph.CONTROLLERS
        assert n.arguments[n.arguments.index("--controller-manager") + 1] == f"/robot_{n.robot}/controller_manager"
        assert n.arguments[n.arguments.index("--controller-manager-timeout") + 1] == "60"
        assert n.name in graph.ONE_SHOT_BRINGUP
    creates = [n for n in gz if n.executable == "create"]
    assert [c.arguments[c.arguments.index("-name") + 1] for c in creates] == ["robot_0", "robot_1"]
    assert all(c.name in graph.ONE_SHOT_BRINGUP for c in creates)
    bridges = [n.arguments[0] for n in gz if n.executable == "parameter_bridge"]
    assert "/clock@rosgraph_msgs/msg/Clock[gz.msgs.Clock" in bridges
    assert "/robot_1/door/imu@sensor_msgs/msg/Imu[gz.msgs.IMU" in bridges
    rsp = [n for n in gz if n.name == "robot_state_publisher"]
    import xml.etree.ElementTree as ET

    plugin = ET.fromstring(rsp[1].parameters["robot_description"]).find(".//plugin[@filename='gz_ros2_control-system']")
    assert plugin.find("ros/namespace").text == "/robot_1"
    assert plugin.find("parameters").text.endswith("controllers.yaml")
    imu_topics = [t.text.strip() for t in ET.fromstring(rsp[1].parameters["robot_description"]).iter("sensor")
                  if t.get("type") == "imu" for t in t.iter("topic")]
    assert imu_topics == ["/robot_1/door/imu"]  # each robot's IMU on its own gz topic, bridged 1:1
    # the IMU messages' frame_id (gz-sensors takes it from gz_frame_id) is the robot's TF frame of the IMU link
    imu_frames = [t.text.strip() for t in ET.fromstring(rsp[1].parameters["robot_description"]).iter("sensor")
                  if t.get("type") == "imu" for t in t.iter("gz_frame_id")]
    assert imu_frames == [rsp[1].parameters["frame_prefix"] + "door_imu_link"] == ["robot_1/door_imu_link"]
    real = build_bringup(_cfg(task="door_pull", workers=1, backend="real"),
                         hardware_plugin="my_driver/MyArmSystem", controller_manager_timeout_s=12.5)
    cm = [n for n in real if n.executable == "ros2_control_node"]
    assert len(cm) == 1 and cm[0].param_files[0].endswith("controllers.yaml")
    (spawner,) = [n for n in real if n.executable == "spawner"]
    assert spawner.arguments[spawner.arguments.index("--controller-manager-timeout") + 1] == "12.5"
    hw = ET.fromstring(next(n for n in real if n.executable == "robot_state_publisher").parameters["robot_description"])
    assert hw.find("ros2_control/hardware/plugin").text == "my_driver/MyArmSystem"
    assert build_bringup(_cfg(task="reach", workers=2)) == []
    assert build_bringup(_cfg(task="door_pull", workers=2, backend="hardware")) == []  # the sim is the arm
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="controller_manager_timeout"):
            build_bringup(_cfg(task="door_pull", workers=1, backend="real"), controller_manager_timeout_s=bad)


def _door_and_start(urdf: str) -> tuple[list[float], list[float]]:
    """(door_frame_joint origin xyz, the 7 arm joints' ros2_control initial positions) of an expanded URDF."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(urdf)
    frame = next(j for j in root.findall("joint") if j.get("name") == "door_frame_joint")
    initial = [float(j.find("state_interface[@name='position']/param[@name='initial_value']").text)
               for j in root.find("ros2_control").findall("joint")]
    return [float(v) for v in frame.find("origin").get("xyz").split()], initial


def test_bringup_description_follows_task_and_sim_config() -> None:
    """Defect 3: the spawned / controlled description has the task's door (door_push: the push door, hinge on
    the left) and the sim section's door geometry, and the arm starts at the episode's start pose (the pose
    the reset node drives to)."""
    from async_naf.sim.config import SimConfig
    from async_naf.sim.model import xacro_mappings
    from async_naf.task.description import expand_urdf

    def rsp_urdfs(task: str, workers: int = 1, overrides: dict | None = None, backend: str = "gazebo") -> list:
        nodes = build_bringup(_cfg(task=task, workers=workers, backend=backend, overrides=overrides or {}))
        return [_door_and_start(n.parameters["robot_description"]) for n in nodes
                if n.name == "robot_state_publisher"]

    doors = {}
    for task in ("door_pull", "door_push"):
        sim = SimConfig(task=task)
        expected = expand_urdf(dict(xacro_mappings(sim.door, sim.hinge_left, sim.door_opening, mode="gazebo"),
                                    controllers_file="/x.yaml"))
        ((door, start),) = rsp_urdfs(task)
        assert door == _door_and_start(expected)[0]
        assert start == pytest.approx(graph.arm_start_pose(task, {})[0], abs=1e-12)
        assert start != pytest.approx(_door_and_start(expected)[1], abs=1e-3)  # not the xacro default pose
        doors[task] = door
    assert rsp_urdfs("door_push", backend="real") == [(doors["door_push"], start)]  # a real arm's alike
    assert doors["door_push"][1] > doors["door_pull"][1]  # push: hinge on the robot's left (+y), pull: right
    # a robot's sim overrides reach its description: a wider door moves the hinge, and the start pose follows
    (d0, s0), (d1, s1) = rsp_urdfs("door_pull", 2, {"/robot_1/sim": {"door.width": 0.9}})
    assert d0 == doors["door_pull"] and d1[1] == pytest.approx(doors["door_pull"][1] - 0.15)
    assert s0 == pytest.approx(graph.arm_start_pose("door_pull", {})[0], abs=1e-12)
    assert s1 == pytest.approx(graph.arm_start_pose("door_pull", {"door.width": 0.9})[0], abs=1e-12)


def test_hardware_file_gives_each_real_robot_its_own_parameters(tmp_path: Path) -> None:
    """Defect 5: hardware_file:= has one entry per robot (plugin, <hardware> params); bad files fail clearly."""
    import xml.etree.ElementTree as ET

    path = tmp_path / "hardware.yaml"
    path.write_text("robot_0:\n  plugin: vendor/ArmSystem\n  parameters: {robot_ip: 10.0.0.2, port: 30002}\n"
                    "robot_1:\n  parameters:\n    robot_ip: 10.0.0.3\n    use_fake: true\n")
    config = _cfg(task="door_pull", workers=2, backend="real")
    hardware = graph.load_hardware_file(path, config)
    assert hardware[0] == graph.RobotHardware("vendor/ArmSystem", (("robot_ip", "10.0.0.2"), ("port", "30002")))
    assert hardware[1].plugin == "mock_components/GenericSystem"  # the default hardware_plugin
    nodes = build_bringup(config, hardware=hardware)
    params = {}
    for n in nodes:
        if n.name == "robot_state_publisher":
            hw = ET.fromstring(n.parameters["robot_description"]).find("ros2_control/hardware")
            params[n.robot] = (hw.find("plugin").text, {p.get("name"): p.text for p in hw.findall("param")})
    assert params[0] == ("vendor/ArmSystem", {"robot_ip": "10.0.0.2", "port": "30002"})
    assert params[1] == ("mock_components/GenericSystem",
                         {"robot_ip": "10.0.0.3", "calculate_dynamics": "true", "use_fake": "true"})
    example = graph.load_hardware_file(REPO / "config" / "hardware.example.yaml", config)
    assert [dict(example[i].parameters)["robot_ip"] for i in (0, 1)] == ["192.168.1.10", "192.168.1.11"]
    # a host that starts robot_1 only needs only its entry
    assert set(graph.load_hardware_file(path, _cfg(task="door_pull", workers=2, backend="real", part="robots",
                                                    robots=(1,)))) == {0, 1}
    bad = {
        "robot_0: {plugin: a/B}\n": "no entry for robot_1",
        "robot_0: {}\nrobot_1: {}\nrobot_2: {}\n": "robot_2 is not a robot of this graph",
        "robot_0: {}\nrobot_1: {ip: 1}\n": r"unknown keys \['ip'\]",
        "robot_0: {}\nrobot_1: {plugin: 'a b'}\n": "plugin must be a plugin class name",
        "robot_0: {}\nrobot_1: {parameters: {robot_ip: [1, 2]}}\n": "must be a string, number or boolean",
        "robot_0: {}\nrobot_1: {parameters: {'bad name': 1}}\n": "is not a parameter name",
        "arm_0: {}\n": "is not a robot namespace",
        "[robot_0, robot_1]\n": "expected a mapping",
        "robot_0: {\n": "not valid YAML",
    }
    for text, message in bad.items():
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            graph.load_hardware_file(path, config)
    with pytest.raises(ValueError, match="no such file"):
        graph.load_hardware_file(tmp_path / "missing.yaml", config)
    for backend in ("gazebo", "hardware", "mujoco"):
        with pytest.raises(ValueError, match="backend real only"):
            build_bringup(_cfg(task="door_pull", workers=2, backend=backend), hardware=hardware)


def test_gazebo_world_loads_the_imu_system_once() -> None:
    """Defect 4: the IMU system (which updates every IMU sensor of the world) is in the world file, once; no
    robot description loads it (N robots would simulate and publish every IMU N times); the launch file gives
    gz sim that world by default."""
    import xml.etree.ElementTree as ET

    world_file = Path(graph.gazebo_world(""))
    assert world_file == REPO / "worlds" / "async_naf.sdf"
    assert graph.gazebo_world("my.sdf") == "my.sdf"
    sdf = ET.parse(world_file).getroot()
    assert sdf.tag == "sdf" and sdf.get("version") == "1.10"
    (world,) = sdf.findall("world")
    plugins = [(p.get("filename"), p.get("name")) for p in world.findall("plugin")]
    assert sorted(plugins) == sorted([
        ("gz-sim-physics-system", "gz::sim::systems::Physics"),
        ("gz-sim-user-commands-system", "gz::sim::systems::UserCommands"),  # ros_gz_sim create's service
        ("gz-sim-scene-broadcaster-system", "gz::sim::systems::SceneBroadcaster"),
        ("gz-sim-imu-system", "gz::sim::systems::Imu"),
    ])
    assert float(world.find("physics/max_step_size").text) == pytest.approx(0.001)
    assert world.find("physics").get("type") == "dart"
    ground = [m for m in world.findall("model") if m.find("static") is not None and m.find("static").text == "true"]
    assert ground and ground[0].find("link/collision/geometry/plane/normal").text.split() == ["0", "0", "1"]
    for n in build_bringup(_cfg(task="door_pull", workers=2, backend="gazebo")):
        if n.executable == "robot_state_publisher":
            urdf = ET.fromstring(n.parameters["robot_description"])
            assert "gz-sim-imu-system" not in {p.get("filename") for p in urdf.iter("plugin")}
            assert len([s for s in urdf.iter("sensor") if s.get("type") == "imu"]) == 1
    args = _declared_arguments()
    assert args["gz_world"][1] == ""  # empty = the package's world
    launch = LAUNCH_FILE.read_text()
    assert "gz_sim_args(arg(\"gz_args\"), arg(\"gui\") == \"true\", arg(\"gz_world\"))" in launch


def test_launch_file_ends_the_launch_when_a_bringup_tool_fails() -> None:
    """Defect 12: no spawner chained on another's exit whatever its code: one spawner per robot, and a
    non-zero exit of the spawner or of create shuts the launch down."""
    tree = _launch_tree()
    names = {getattr(n, "id", getattr(n, "attr", "")) for n in ast.walk(tree)}
    assert "OnProcessExit" not in names and "RegisterEventHandler" not in names
    (fail,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_fail_on_error"]
    compares = [n for n in ast.walk(fail) if isinstance(n, ast.Compare)]
    assert any(isinstance(c.ops[0], ast.NotEq) and isinstance(c.comparators[0], ast.Constant)
               and c.comparators[0].value == 0 for c in compares)
    assert "Shutdown" in {getattr(n.func, "id", "") for n in ast.walk(fail) if isinstance(n, ast.Call)}
    text = LAUNCH_FILE.read_text()
    assert "_fail_on_error(spec) if spec.name in ONE_SHOT_BRINGUP" in text
    assert "controller_manager_timeout_s=float(arg(\"controller_manager_timeout\"))" in text
    assert "load_hardware_file(arg(\"hardware_file\")" in text


@pytest.mark.parametrize("backend", ["gazebo", "real"])
def test_bringup_keeps_each_robots_tf_frames_apart(backend: str) -> None:
    """Defect 9: every robot's robot_state_publisher prefixes its frames (robot_<i>/...); defect 12: no
    ~/robot_description remap on the controller manager (Jazzy's CM reads the relative robot_description)."""
    nodes = build_bringup(_cfg(task="door_pull", workers=3, backend=backend))
    rsp = [n for n in nodes if n.name == "robot_state_publisher"]
    assert [n.parameters["frame_prefix"] for n in rsp] == ["robot_0/", "robot_1/", "robot_2/"]
    assert [n.namespace for n in rsp] == ["/robot_0", "/robot_1", "/robot_2"]
    assert all(not n.remappings for n in nodes if n.executable == "ros2_control_node")
    assert graph.frame_prefix("/") == ""


def test_mock_hardware_integrates_velocity_commands() -> None:
    """Defect 6: the default real-arm plugin, mock_components/GenericSystem, moves only with
    calculate_dynamics; a vendor plugin does not get the mock's parameter."""
    import xml.etree.ElementTree as ET

    pytest.importorskip("xacro")

    def hardware_params(plugin: str) -> dict[str, str]:
        doc = ET.fromstring(graph.robot_description("real", "/robot_0", hardware_plugin=plugin))
        return {p.get("name"): (p.text or "").strip() for p in doc.find("ros2_control/hardware").iter("param")}

    assert hardware_params("mock_components/GenericSystem")["calculate_dynamics"] == "true"
    assert "calculate_dynamics" not in hardware_params("my_driver/MyArmSystem")


def test_estimator_configured_like_the_evaluation_env() -> None:
    """Training (graph, door_angle node) and evaluation (ArmDoorEnv) must see the same door-angle estimator,
    or a policy trained on one meets different door-angle readings in the other."""
    from async_naf.run.env import ArmDoorEnv
    from async_naf.sensing.door_angle.config import DoorAngleConfig

    node = next(n for n in build_graph(_cfg(task="door_pull", workers=1)) if n.role == "door_angle")
    from_graph = build(DoorAngleConfig, node.parameters)
    env = ArmDoorEnv("door_pull", seed=0)
    assert from_graph == env.estimator_config


@pytest.mark.parametrize("backend", ["mujoco", "hardware", "gazebo"])
def test_a_known_opening_direction_replaces_the_backends_hinge_axis(backend: str) -> None:
    """The embedded sim's backends configure the estimator's hinge axis; a user who sets ``opening_direction``
    instead (the two exclude each other) gets it, not a conflict the user never wrote."""
    from async_naf.sensing.door_angle.config import DoorAngleConfig

    cfg = _cfg(task="door_pull", workers=1, backend=backend, overrides={"door_angle": {"opening_direction": -1}})
    node = next(n for n in build_graph(cfg) if n.role == "door_angle")
    est = build(DoorAngleConfig, node.parameters)
    assert est.opening_direction == -1 and est.hinge_axis is None
    if backend != "gazebo":  # the door stop still comes from the sim's door
        assert est.stop_angle_rad == build(DoorAngleConfig, next(
            n for n in build_graph(_cfg(task="door_pull", workers=1, backend=backend)) if n.role == "door_angle"
        ).parameters).stop_angle_rad != DoorAngleConfig().stop_angle_rad


# ---------------------------------------------------------------------- TF of the door, spawn poses, GUI, RViz
@pytest.mark.parametrize("backend", ["gazebo", "real"])
def test_every_moving_joint_of_the_description_has_a_tf_source(backend: str) -> None:
    """Defect 9, second half: every non-fixed joint of each robot's URDF gets its transform from exactly one
    source: the arm's from joint_states (the joint_state_broadcaster's joints = controllers.yaml's), the hinge from
    the door_angle node's door/joint_states (a second robot_state_publisher, same prefix), the handle from a
    static transform at rest; and robot_<i>/world sits in world at the robot's spawn pose."""
    import xml.etree.ElementTree as ET

    from async_naf.nodes import door_angle_node

    poses = graph.parse_spawn_poses("0 0 0 0; 1.5 -3 0.1 1.25", 2)
    nodes = build_bringup(_cfg(task="door_pull", workers=2, backend=backend), spawn_poses=poses)
    controllers = yaml.safe_load(CONTROLLERS.read_text())
    arm_joints = set(controllers["/**/forward_velocity_controller"]["ros__parameters"]["joints"])
    assert door_angle_node.JOINT_NAME == graph.DOOR_ANGLE_JOINT
    for i in (0, 1):
        ns, prefix = f"/robot_{i}", f"robot_{i}/"
        mine = [n for n in nodes if n.namespace == ns]
        (arm_rsp,) = [n for n in mine if n.name == "robot_state_publisher"]
        (door_rsp,) = [n for n in mine if n.name == "door_state_publisher"]
        assert door_rsp.executable == "robot_state_publisher" and door_rsp.package == "robot_state_publisher"
        assert arm_rsp.remappings == ()  # joint_states: the broadcaster's
        remaps = dict(door_rsp.remappings)
        assert remaps["joint_states"] == "door/joint_states"  # relative: <ns>/door/joint_states, door_angle's topic
        assert remaps["robot_description"] != "robot_description"  # one publisher of <ns>/robot_description
        assert door_rsp.parameters == arm_rsp.parameters
        assert door_rsp.parameters["frame_prefix"] == prefix
        urdf = ET.fromstring(arm_rsp.parameters["robot_description"])
        moving = {j.get("name") for j in urdf.findall("joint") if j.get("type") != "fixed"}
        static = {n.name: n for n in mine if n.executable == "static_transform_publisher"}
        assert set(static) == {"door_handle_tf", "world_tf"}
        handle = static["door_handle_tf"].arguments
        handle_joint = next(j for j in urdf.findall("joint") if j.get("name") == graph.DOOR_HANDLE_JOINT)
        assert handle[handle.index("--frame-id") + 1] == prefix + handle_joint.find("parent").get("link")
        assert handle[handle.index("--child-frame-id") + 1] == prefix + handle_joint.find("child").get("link")
        xyz = [float(handle[handle.index(f) + 1]) for f in ("--x", "--y", "--z")]
        assert xyz == pytest.approx([float(v) for v in handle_joint.find("origin").get("xyz").split()])
        # each moving joint covered once: arm (joint_states), hinge (door/joint_states), handle (static at rest)
        sources = [*sorted(arm_joints), graph.DOOR_ANGLE_JOINT, graph.DOOR_HANDLE_JOINT]
        assert sorted(sources) == sorted(moving) and len(set(sources)) == len(sources)
        world = static["world_tf"].arguments
        assert world[world.index("--frame-id") + 1] == graph.WORLD_FRAME
        assert world[world.index("--child-frame-id") + 1] == prefix + "world"  # the URDF's root, prefixed
        assert urdf.find("link").get("name") == "world"
        got = [float(world[world.index(f) + 1]) for f in ("--x", "--y", "--z", "--yaw")]
        assert got == pytest.approx(list(poses[i]))
        if backend == "gazebo":
            (create,) = [n for n in mine if n.executable == "create"]
            spawned = [float(create.arguments[create.arguments.index(f) + 1]) for f in ("-x", "-y", "-z", "-Y")]
            assert spawned == pytest.approx(list(poses[i]))  # the model stands where TF says it does
        else:
            assert not [n for n in mine if n.executable == "create"]


def test_spawn_poses_default_and_validation() -> None:
    assert graph.parse_spawn_poses("", 3) == {i: (0.0, i * graph.GZ_ROBOT_SPACING_M, 0.0, 0.0) for i in range(3)}
    assert graph.parse_spawn_poses(" 1 2 3 0.5 ;-1,0,0,0", 2) == {0: (1.0, 2.0, 3.0, 0.5), 1: (-1.0, 0.0, 0.0, 0.0)}
    for bad, match in (("0 0 0 0", "1 entries for 2 robots"), ("0 0 0; 0 0 0 0", "entry 0"),
                       ("0 0 0 0; 0 0 x 0", "entry 1"), ("0 0 0 0; 0 0 nan 0", "entry 1")):
        with pytest.raises(ValueError, match=match):
            graph.parse_spawn_poses(bad, 2)
    nodes = build_bringup(_cfg(task="door_pull", workers=2, backend="gazebo"))  # no spawn_poses: the default
    ys = [float(n.arguments[n.arguments.index("-y") + 1]) for n in nodes if n.executable == "create"]
    assert ys == [0.0, graph.GZ_ROBOT_SPACING_M]


@pytest.mark.parametrize("backend", ["mujoco", "hardware"])
def test_bringup_options_of_arm_backends_are_never_ignored(backend: str) -> None:
    """spawn_poses / rviz / description_file / controllers_file on a backend without bringup: an error."""
    cfg = _cfg(task="door_pull", workers=1, backend=backend)
    assert build_bringup(cfg) == []
    for kwargs in ({"spawn_poses": graph.parse_spawn_poses("", 1)}, {"rviz": True},
                   {"description_file": "x.xacro"}, {"controllers_file": "c.yaml"}):
        with pytest.raises(ValueError, match=f"{next(iter(kwargs))}:= apply to backends gazebo and real only"):
            build_bringup(cfg, **kwargs)


def test_gui_switches_gz_sim_between_server_only_and_gui() -> None:
    world = graph.gazebo_world("")
    assert graph.gz_sim_args("-r -v 2", gui=False) == f"-r -v 2 -s {world}"
    assert graph.gz_sim_args("-r -v 2", gui=True) == f"-r -v 2 {world}"
    assert graph.gz_sim_args("-r -s", gui=False, world="my.sdf") == "-r -s my.sdf"
    with pytest.raises(ValueError, match="gui"):
        graph.gz_sim_args("-r -s", gui=True)
    args = _declared_arguments()
    assert args["gui"][1] == "false" and "-s" not in args["gz_args"][1].split()


def test_rviz_config_shows_robot_0_in_the_world_frame() -> None:
    """rviz/async_naf.rviz (rviz2's YAML format): fixed frame world, RobotModel of robot_0 from its transient-local
    robot_description topic with TF prefix robot_0 (robot_state_publisher's frame_prefix without the slash), a TF
    display; rviz:=true adds rviz2 with it, default off."""
    path = REPO / "rviz" / "async_naf.rviz"
    doc = yaml.safe_load(path.read_text())
    vm = doc["Visualization Manager"]
    assert vm["Global Options"]["Fixed Frame"] == graph.WORLD_FRAME
    displays = {d["Class"]: d for d in vm["Displays"]}
    model = displays["rviz_default_plugins/RobotModel"]
    assert model["Description Source"] == "Topic"
    assert model["Description Topic"]["Value"] == "/robot_0/robot_description"
    assert model["Description Topic"]["Durability Policy"] == "Transient Local"
    assert model["TF Prefix"] + "/" == graph.frame_prefix("/robot_0")
    assert displays["rviz_default_plugins/TF"]["Enabled"] is True
    nodes = build_bringup(_cfg(task="door_pull", workers=1, backend="real"), rviz=True)
    (rviz,) = [n for n in nodes if n.executable == "rviz2"]
    from async_naf.common.resources import data_path

    assert rviz.arguments == ("-d", str(data_path("rviz", "async_naf.rviz")))
    assert Path(rviz.arguments[1]) == path
    assert not [n for n in build_bringup(_cfg(task="door_pull", workers=1, backend="real")) if n.executable == "rviz2"]
    args = _declared_arguments()
    assert args["rviz"][1] == "false" and args["rviz"][3] == ("true", "false")


def test_description_and_controllers_files_reach_the_bringup(tmp_path: Path) -> None:
    """description_file:= / controllers_file:= replace the package's xacro / controllers YAML."""
    controllers = tmp_path / "my_controllers.yaml"
    controllers.write_text(CONTROLLERS.read_text())
    xacro_file = tmp_path / "my_arm_door.urdf.xacro"
    src = REPO / "urdf" / "arm_door.urdf.xacro"
    for f in (REPO / "urdf").glob("*.xacro"):
        (tmp_path / f.name).write_text(f.read_text())
    xacro_file.write_text(src.read_text().replace('<robot name="arm_door"', '<robot name="my_arm_door"'))
    nodes = build_bringup(_cfg(task="door_pull", workers=1, backend="gazebo"), controllers_file=str(controllers),
                          description_file=xacro_file)
    import xml.etree.ElementTree as ET

    (rsp,) = [n for n in nodes if n.name == "robot_state_publisher"]
    urdf = ET.fromstring(rsp.parameters["robot_description"])
    assert urdf.get("name") == "my_arm_door"
    assert urdf.find(".//plugin[@filename='gz_ros2_control-system']/parameters").text == str(controllers)
    text = LAUNCH_FILE.read_text()
    assert 'description_file=arg("description_file") or None' in text
    assert 'controllers_file=arg("controllers_file") or None' in text
