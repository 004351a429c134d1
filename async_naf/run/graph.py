"""One description of the training node graph, used by ``launch/train.launch.py`` and ``async-naf train``.

:func:`build_graph` turns a :class:`GraphConfig` into a list of :class:`NodeSpec` (package, executable,
module, name, namespace, parameters, remappings). ``launch/train.launch.py`` turns each spec into a
``launch_ros.actions.Node``; :mod:`async_naf.run.launcher` runs each as ``python -m <module> --ros-args ...``.
Both therefore start exactly the same nodes with exactly the same parameters.

The graph (relative topic names, see the topic table in docs/graph.md)::

    /robot_<i>/sim          embedded MuJoCo arm + door (backend mujoco only; on gazebo / real,
                            ros2_control's joint_state_broadcaster and forward_velocity_controller and an
                            IMU driver / bridge provide joint_states, the command topic and door/imu)
    /robot_<i>/guard        safety layer between policy and arm (gazebo / real only: the policy's
                            forward_velocity_controller/commands are remapped to guard/commands_in)
    /robot_<i>/door_angle   IMU door-angle estimator
    /robot_<i>/policy       mu(x) + exploration noise at the control rate
    /robot_<i>/collector    transitions, rewards, episodes -> trainer
    /trainer                replay buffer, NAF updates, weights, checkpoints, metrics

Parameters come from each component's config dataclass (``SimConfig``, ``DoorAngleConfig``,
``PolicyNodeConfig``, ``CollectorConfig``, ``TrainerConfig``): defaults, then what the backend knows (the
simulated IMU's mounting), then the overrides of ``config/train.yaml`` (ROS params-file format) and the
command line, then what the graph itself decides (task, per-robot seeds, run directory, budgets, realtime),
each validated by constructing the dataclass, so a misspelt or out-of-range parameter fails here with a
ValueError, before any process starts.

Nested dataclasses become dotted parameter names (``noise.scale``, ``door.width``), tuples become lists,
``None`` is left out (a ROS parameter cannot be None; the dataclass default applies) - the same rule the
nodes use to declare their parameters (:mod:`async_naf.wire.params`).

This module is ROS-free: it never imports rclpy or launch.
"""
from __future__ import annotations

import dataclasses
import importlib
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from async_naf.wire import params as wire_params
from async_naf.wire.record_bundle import BUNDLE_TOPIC

if TYPE_CHECKING:
    from async_naf.sim.config import SimConfig

PACKAGE = "async_naf"
BACKENDS = ("mujoco", "gazebo", "real", "hardware")
# hardware: the graph backend "real" starts, with the embedded sim in hardware mode standing in for the arm
# (async-naf train --backend hardware; not a launch-file backend)
ROLES = ("sim", "door_angle", "policy", "collector", "guard", "reset", "trainer", "recorder")
# every command of a ros2_control arm (gazebo, real) passes the guard (acting/safety.py); the embedded MuJoCo
# sim in lockstep has no controller that could keep a stale velocity, and a watchdog zero would step it
GUARDED_BACKENDS = ("gazebo", "real", "hardware")
COMMAND_TOPIC = "forward_velocity_controller/commands"
GUARD_INPUT = "guard/commands_in"
ROBOT_PREFIX = "robot_"
# how the nodes share processes: none = one process per node; robot = one process per robot (sim, door_angle,
# policy, collector in one executor: async_naf.run.container), the trainer in its own
COMPOSITIONS = ("none", "robot")
# which part of the graph this host starts (several hosts: docs/graph.md, "Several hosts"): all = the trainer and
# the robots; trainer = the trainer only (robots elsewhere); robots = robots only (the trainer elsewhere)
PARTS = ("all", "trainer", "robots")
CONTAINER_MODULE = f"{PACKAGE}.run.container"
CONTAINER_EXECUTABLE = "robot_container"
MAX_WORKERS = 64

# role -> (console script, python module, "module:ConfigClass")
ROLE_NODES: dict[str, tuple[str, str, str]] = {
    "sim": ("sim_node", f"{PACKAGE}.nodes.sim_node", "async_naf.sim.config:SimConfig"),
    "door_angle": ("door_angle_node", f"{PACKAGE}.nodes.door_angle_node",
                   "async_naf.sensing.door_angle.config:DoorAngleConfig"),
    "policy": ("policy_node", f"{PACKAGE}.nodes.policy_node", "async_naf.acting.config:PolicyNodeConfig"),
    "collector": ("collector_node", f"{PACKAGE}.nodes.collector_node",
                  "async_naf.collecting.collector:CollectorConfig"),
    "trainer": ("trainer_node", f"{PACKAGE}.nodes.trainer_node", "async_naf.learning.config:TrainerConfig"),
    "guard": ("guard_node", f"{PACKAGE}.nodes.guard_node", "async_naf.acting.safety:SafetyConfig"),
    "reset": ("reset_node", f"{PACKAGE}.nodes.reset_node", "async_naf.acting.reset:ResetConfig"),
    "recorder": ("recorder_node", f"{PACKAGE}.nodes.recorder_node", "async_naf.recording.config:RecorderConfig"),
}
HARDWARE_WATCHDOG_S = 0.3  # backend hardware: the guard's watchdog timeouts (s)
HARDWARE_DOOR_CLOSER_NM = 2.0  # hardware and gazebo: the door closer, N m (hinge friction 0.3 N m by default)
# a ros2_control arm's reset drives it home and waits for the door: the collector waits longer for it
ARM_RESET_TIMEOUT_S = 120.0

# node parameters declared by a node in addition to its config dataclass's fields: name -> type
EXTRA_PARAMS: dict[str, dict[str, type]] = {
    "sim": {"seed": int},  # ArmDoorSim(config, seed): noise and start-pose randomisation
}

# seconds a node gets after SIGINT before SIGTERM (the trainer writes a final checkpoint and the buffer)
# `ros2 bag record`'s node: rosbag2_transport's Recorder default (rosbag2_py Recorder node_name="rosbag2_recorder")
ROSBAG2_RECORDER = "/rosbag2_recorder"
STOP_TIMEOUT_S = {"trainer": 60.0, "recorder": 60.0}  # the recorder drains its queue and closes the bag
DEFAULT_STOP_TIMEOUT_S = 10.0

ParamValue = bool | int | float | str | list


# ---------------------------------------------------------------------- dataclass <-> flat ROS parameters
# One rule for both sides: the nodes declare their parameters with async_naf.nodes._params (the rclpy half
# of async_naf.wire.params) and this module writes parameter values with wire.params (flatten / build).
def flatten_config(config: Any) -> dict[str, ParamValue]:
    """A config instance as flat ROS parameters (dotted names; ``None`` left out), as the nodes declare them."""
    return wire_params.flatten(config)


def config_from_params(cls: type, params: Mapping[str, Any], what: str = "") -> Any:
    """Build and validate ``cls`` from flat ROS parameters.

    Raises:
        ValueError: unknown parameter names, wrong types, or values the dataclass rejects (the message
            names the node).
    """
    try:
        return wire_params.build(cls, params)
    except ValueError as exc:
        raise ValueError(f"{what or cls.__name__}: {exc}") from exc


def sim_config_of(task: str, sim_overrides: Mapping[str, Any], what: str) -> SimConfig:
    """The SimConfig a sim node with these parameters (its ``sim`` overrides, flat) would build for ``task``:
    the node-only parameters (seed, use_sim_time) left out. ``what`` names the use in an error.

    Raises:
        ValueError: a parameter the dataclass rejects.
    """
    from async_naf.sim.config import SimConfig

    params = {k: v for k, v in sim_overrides.items() if k not in EXTRA_PARAMS["sim"] and k not in ROS_STANDARD_PARAMS}
    config: SimConfig = config_from_params(SimConfig, {**params, "task": task}, what)
    return config


def config_class(role: str) -> type:
    """The config dataclass of a node role (imported on demand)."""
    module_name, _, cls_name = ROLE_NODES[role][2].partition(":")
    return getattr(importlib.import_module(module_name), cls_name)


# ---------------------------------------------------------------------- graph description
@dataclasses.dataclass(frozen=True)
class NodeSpec:
    """One node of the graph, in the terms both ``launch_ros.actions.Node`` and the launcher use.

    Attributes:
        package: ROS package of the executable (``async_naf``).
        executable: console script (``ros2 run async_naf <executable>``).
        module: python module with ``main()`` (``python -m <module>``).
        name: node name (``sim``, ``door_angle``, ``policy``, ``collector``, ``trainer``).
        namespace: ``/robot_<i>`` or ``/``.
        parameters: flat ROS parameters (dotted names for nested ones).
        remappings: ``(from, to)`` pairs.
        role: which component (same as ``name`` for this graph).
        robot: robot index, None for global nodes.
        required: if True, the run ends when this node exits (the trainer).
        stop_timeout_s: seconds between SIGINT and SIGTERM when stopping (s).
        arguments: extra command-line arguments before ``--ros-args`` (bringup tools such as the spawner).
        param_files: ROS params files passed before ``parameters`` (e.g. config/controllers.yaml).
        max_restarts: restarts after a non-zero exit (``async-naf train``; ``respawn`` in the launch file).
        restart_delay_s: seconds before such a restart (s).
        restart_parameters: parameters that replace ``parameters`` on a restart (the trainer: ``resume``).
    """

    package: str
    executable: str
    module: str
    name: str
    namespace: str
    parameters: dict[str, ParamValue]
    remappings: tuple[tuple[str, str], ...] = ()
    role: str = ""
    robot: int | None = None
    required: bool = False
    stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S
    arguments: tuple[str, ...] = ()
    param_files: tuple[str, ...] = ()
    max_restarts: int = 0
    restart_delay_s: float = 0.0
    restart_parameters: dict[str, ParamValue] = dataclasses.field(default_factory=dict)

    @property
    def fqn(self) -> str:
        """Fully qualified node name, e.g. ``/robot_0/sim`` or ``/trainer``."""
        return f"{self.namespace.rstrip('/')}/{self.name}"

    @property
    def key(self) -> str:
        """File-name-safe identifier, e.g. ``robot_0.sim`` or ``trainer``."""
        return self.fqn.strip("/").replace("/", ".")


@dataclasses.dataclass
class GraphConfig:
    """What to start. Units: seconds, environment steps (one control period each).

    Attributes:
        task: ``reach``, ``door_pull`` or ``door_push``.
        workers: number of robots (collectors), each in namespace ``/robot_<i>``.
        backend: ``mujoco`` (embedded simulation, one sim node per robot), ``gazebo`` or ``real``
            (ros2_control provides joint_states and the forward_velocity_controller; an IMU driver or the
            gz bridge provides door/imu).
        seed: base seed; robot i gets :func:`robot_seed` (seed, i).
        run_dir: where the trainer writes metrics.csv, checkpoints/, TensorBoard events.
        realtime: sims paced to wall time (like real robots) instead of as fast as the graph keeps up.
        use_sim_time: nodes follow simulated time: mujoco, each robot its own sim's clock when workers > 1
            (/clock remapped to /robot_<i>/clock); gazebo, the world's one /clock for every robot.
        max_env_steps: trainer stops after this many transitions (all robots; 0 = no limit).
        max_wall_s: trainer stops after this many seconds (0 = no limit).
        deadline_unix: the trainer stops at this wall-clock time (s since the Unix epoch; 0 = none). Set once
            per run by :func:`with_deadline` (``async-naf train``, the launch file) so that a restarted trainer
            keeps the run's end; the trainer's own ``max_wall_s`` still bounds each of its processes.
        overrides: per-node parameter overrides, keyed like a params file (see :func:`load_overrides`).
        record: also start a ``/recorder`` that writes every topic of :func:`record_topics` into
            ``run_dir/bag`` (rosbag2, MCAP); the launch file starts ``ros2 bag record`` instead.
        bag_dir: where the recorded bag goes instead of ``run_dir/bag`` (must not exist when recording starts).
        external_recorder: fully qualified name of a recorder started beside the graph (the launch file's
            ``record:=true`` starts ``ros2 bag record``, whose node is :data:`ROSBAG2_RECORDER`): each
            collector's first episode waits until it subscribes to the robot's policy steps, as for ``record``.
        composition: ``none`` (one process per node) or ``robot`` (each robot's nodes in one process with one
            executor, :mod:`async_naf.run.container`; the trainer keeps its own process). The nodes, topics,
            message types, QoS and parameters are the same either way (:func:`compose`).
        intra_process: with ``composition`` robot, messages between a robot's nodes skip DDS (handed over in
            the process, :mod:`async_naf.nodes._local`; still published to DDS for any subscriber elsewhere).
        part: which part of the graph to start on this host: ``all`` (trainer and robots), ``trainer``
            (the trainer only; its robots run on other hosts) or ``robots`` (robots only; the trainer runs on
            another host).
        robots: the robot indices to start (empty = all of ``0 .. workers-1``). Indices are global: robot 2
            is ``/robot_2`` with robot 2's seed on whichever host starts it, so hosts that each start some
            robots (same ``workers``, ``seed`` and ``task``) make up one graph. Not with ``part`` trainer.
    """

    task: str = "door_pull"
    workers: int = 2
    backend: str = "mujoco"
    seed: int = 0
    run_dir: str = "runs/default"
    realtime: bool = False
    use_sim_time: bool = False
    max_env_steps: int = 0
    max_wall_s: float = 0.0
    deadline_unix: float = 0.0
    overrides: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    record: bool = False
    bag_dir: str = ""
    external_recorder: str = ""
    composition: str = "robot"
    intra_process: bool = True
    trainer_restarts: int = 3
    trainer_restart_delay_s: float = 2.0
    part: str = "all"
    robots: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        from async_naf.task.tasks import TASK_NAMES  # keep `import async_naf.run.graph` light

        if self.task not in TASK_NAMES:
            raise ValueError(f"unknown task {self.task!r}; choose one of {', '.join(TASK_NAMES)}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.external_recorder and not self.external_recorder.startswith("/"):
            raise ValueError(f"external_recorder must be a fully qualified node name (/name), "
                             f"got {self.external_recorder!r}")
        if not 1 <= int(self.workers) <= MAX_WORKERS:
            raise ValueError(f"workers must be in 1..{MAX_WORKERS}, got {self.workers}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.max_env_steps < 0 or self.max_wall_s < 0 or not math.isfinite(self.max_wall_s):
            raise ValueError("max_env_steps and max_wall_s must be >= 0 (0 = no limit)")
        if not 0.0 <= self.deadline_unix < math.inf:
            raise ValueError(f"deadline_unix must be >= 0 (0 = none), got {self.deadline_unix}")
        if not str(self.run_dir):
            raise ValueError("run_dir must not be empty")
        for key in self.overrides:
            _match_key(key)  # raises on malformed keys
        if self.trainer_restarts < 0 or not 0.0 <= self.trainer_restart_delay_s < math.inf:
            raise ValueError("trainer_restarts and trainer_restart_delay_s must be >= 0")
        if self.composition not in COMPOSITIONS:
            raise ValueError(f"unknown composition {self.composition!r}; choose one of {', '.join(COMPOSITIONS)}")
        if self.part not in PARTS:
            raise ValueError(f"unknown part {self.part!r}; choose one of {', '.join(PARTS)}")
        self.robots = tuple(int(r) for r in self.robots)
        if len(set(self.robots)) != len(self.robots):
            raise ValueError(f"robots: an index given twice in {list(self.robots)}")
        outside = [r for r in self.robots if not 0 <= r < int(self.workers)]
        if outside:
            raise ValueError(f"robots {outside} outside 0..{int(self.workers) - 1}: indices are global, set workers to "
                             "the number of robots of the whole graph (all hosts together)")
        if self.part == "trainer" and self.robots:
            raise ValueError("robots: a trainer-only part starts no robots (part all or robots)")


def robot_indices(config: GraphConfig) -> list[int]:
    """The robots this host starts: none for part ``trainer``, else ``robots`` (all if empty), in order."""
    if config.part == "trainer":
        return []
    return sorted(config.robots) if config.robots else list(range(config.workers))


def starts_trainer(config: GraphConfig) -> bool:
    """Whether this host starts the trainer (part ``all`` or ``trainer``)."""
    return config.part in ("all", "trainer")


def parse_robots(text: str) -> tuple[int, ...]:
    """``"0,2"`` -> ``(0, 2)``; ``""`` -> ``()`` (all robots). Used by ``--robots`` and ``robots:=``.

    Raises:
        ValueError: anything but comma-separated non-negative integers.
    """
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not all(t.isdigit() for t in items):
        raise ValueError(f"robots {text!r}: expected comma-separated robot indices such as 0,2")
    return tuple(int(t) for t in items)


def robot_namespace(index: int) -> str:
    """Namespace of robot ``index``: ``/robot_<index>``."""
    return f"/{ROBOT_PREFIX}{index}"


def robot_seed(seed: int, index: int) -> int:
    """Seed of robot ``index`` (sim randomisation, exploration noise): distinct per robot and per base seed."""
    return int(seed) * 1000 + 1 + int(index)


def _match_key(key: str) -> tuple[str | None, str]:
    """Parse an override key into (namespace or None for any, node name or '**').

    Accepted: ``sim``, ``/**/sim``, ``/robot_0/sim``, ``/trainer``, ``trainer``, ``/**``.
    """
    k = key.strip()
    if k in ("/**", "**"):
        return None, "**"
    if k.startswith("/**/"):
        name = k[4:]
        ns = None
    elif k.startswith("/"):
        ns, _, name = k.rpartition("/")
        ns = ns or "/"
    else:
        ns, name = None, k
    if name not in ROLES:
        raise ValueError(f"override key {key!r}: unknown node {name!r}; nodes are {', '.join(ROLES)}")
    return ns, name


def robot_scoped(key: str) -> bool:
    """Whether an override key names one robot's node (``/robot_0/sim``), not every robot's or the trainer."""
    return _match_key(key)[0] not in (None, "/")


def load_overrides(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read per-node overrides from a ROS params-file style YAML (``config/train.yaml``).

    Format::

        /**/policy:              # every robot's policy node (also: "policy")
          ros__parameters:
            noise.scale: 0.3     # nested dicts are flattened with dots, as ROS does
        /robot_1/sim:            # one robot only
          ros__parameters: {...}
        /trainer:
          ros__parameters: {...}

    Raises:
        ValueError: malformed file (not a mapping, missing ``ros__parameters``, unknown node).
    """
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a mapping of node names to ros__parameters")
    out: dict[str, dict[str, Any]] = {}
    for key, body in doc.items():
        if not isinstance(body, dict) or set(body) != {"ros__parameters"}:
            raise ValueError(f"{path}: entry {key!r} must contain exactly 'ros__parameters'")
        params = body["ros__parameters"] or {}
        if not isinstance(params, dict):
            raise ValueError(f"{path}: {key}.ros__parameters must be a mapping")
        _match_key(str(key))
        out[str(key)] = _flatten_dict(params)
    return out


_FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def yaml_number(value: Any) -> Any:
    """PyYAML (YAML 1.1) reads ``1e-3`` as a string; ROS's params-file parser reads it as a double. Do as ROS."""
    if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [yaml_number(v) for v in value]
    return value


def _flatten_dict(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten_dict(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = yaml_number(v)
    return out


def overrides_for(overrides: Mapping[str, Mapping[str, Any]], namespace: str, name: str) -> dict[str, Any]:
    """Merged overrides for one node, generic to specific: ``/**``, ``name`` / ``/**/name``, ``/ns/name``."""
    ranked: list[tuple[int, Mapping[str, Any]]] = []
    for key, params in overrides.items():
        ns, node = _match_key(key)
        if node == "**":
            ranked.append((0, params))
        elif node == name and ns is None:
            ranked.append((1, params))
        elif node == name and ns is not None and ns.rstrip("/") == namespace.rstrip("/"):
            ranked.append((2, params))
    merged: dict[str, Any] = {}
    for _, params in sorted(ranked, key=lambda t: t[0]):
        merged.update(params)
    return merged


# ROS-standard parameters that every rclpy node accepts; not part of any config dataclass
ROS_STANDARD_PARAMS = ("use_sim_time",)


def _node_params(role: str, graph_vals: Mapping[str, Any], user: Mapping[str, Any], what: str,
                 backend_defaults: Mapping[str, Any] | None = None) -> dict:
    """Validate through the role's config dataclass and return the full flat parameter set.

    Precedence: dataclass defaults < backend defaults (calibration the backend knows, e.g. the simulated IMU's
    mounting) < user overrides (train.yaml, CLI) < what the graph decides (task, seeds, run directory,
    budgets, realtime), so a run is always what its command line says.

    Raises:
        ValueError: unknown parameter names, wrong types, or values the dataclass rejects.
    """
    cls = config_class(role)
    extra_types = EXTRA_PARAMS.get(role, {})
    user = dict(user)
    standard = {k: user.pop(k) for k in list(user) if k in ROS_STANDARD_PARAMS}
    merged = {**(backend_defaults or {}), **user, **graph_vals}
    extra = {k: merged.pop(k) for k in list(merged) if k in extra_types}
    config = config_from_params(cls, merged, what)
    params: dict[str, Any] = flatten_config(config)
    for name, value in extra.items():
        if not isinstance(value, extra_types[name]) or isinstance(value, bool):
            raise ValueError(f"{what}: parameter {name!r} must be {extra_types[name].__name__}, got {value!r}")
        params[name] = value
    params.update({k: bool(v) for k, v in standard.items()})
    return params


def backend_defaults(config: GraphConfig, role: str, sim_params: Mapping[str, Any] | None,
                     user: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults a backend knows better than the dataclass (the user may still override them).

    Embedded MuJoCo: the door-angle estimator gets the simulated IMU's mounting (hinge axis = the IMU's z axis)
    and the door stop from the sim's door, exactly as :class:`async_naf.run.env.ArmDoorEnv` configures it,
    so training (graph) and evaluation (env) see the same estimator. Gazebo / real: the estimator
    identifies the hinge axis online (or the user sets ``hinge_axis`` in the config file). ``user``: the
    node's user parameters; one who sets ``opening_direction`` (which excludes ``hinge_axis``) gets no
    hinge-axis default.
    """
    if role == "sim" and config.backend == "hardware":
        return {"door_closer_torque": HARDWARE_DOOR_CLOSER_NM}  # nobody else closes the door here
    if role == "guard" and config.backend == "hardware":
        # the simulated arm shares the CPUs with every node and the trainer: a watchdog at 2 control periods
        # trips on scheduling delays alone there; a real arm's own computer keeps the defaults
        return {"command_timeout_s": HARDWARE_WATCHDOG_S, "state_timeout_s": HARDWARE_WATCHDOG_S}
    if role == "door_angle" and config.backend in ("mujoco", "hardware") and sim_params is not None:
        if user and user.get("opening_direction") and "hinge_axis" not in user:
            return {"stop_angle_rad": float(sim_params["door.max_open"])}
        return {"hinge_axis": [0.0, 0.0, 1.0], "stop_angle_rad": float(sim_params["door.max_open"])}
    return {}


def with_deadline(config: GraphConfig, now_unix: float) -> GraphConfig:
    """``config`` with the run's wall-clock end fixed: ``deadline_unix = now_unix + max_wall_s`` (unchanged
    without a budget, or when a deadline was given). Called once per run, where the run starts (``async-naf
    train``; the launch file's OpaqueFunction): every trainer process of the run, respawned ones included,
    gets the same deadline through its parameters."""
    if config.max_wall_s <= 0 or config.deadline_unix > 0:
        return config
    return dataclasses.replace(config, deadline_unix=float(now_unix) + float(config.max_wall_s))


def graph_values(config: GraphConfig, role: str, robot: int | None, sim_period_s: float | None = None) -> dict:
    """Parameters the graph itself decides for one node (every name must exist on the node)."""
    if role == "trainer":
        return {"task": config.task, "seed": config.seed, "run_dir": str(Path(config.run_dir).resolve()),
                "max_env_steps": int(config.max_env_steps), "max_wall_s": float(config.max_wall_s),
                "deadline_unix": float(config.deadline_unix)}
    assert robot is not None
    seed = robot_seed(config.seed, robot)
    if role == "sim":
        if config.backend == "hardware":  # plain ros2_control-like hardware, paced to wall time, no clock
            return {"task": config.task, "seed": seed, "realtime": True, "hardware": True, "clock_topic": ""}
        # several sims must not all publish /clock: each its own (relative 'clock' -> /robot_<i>/clock)
        return {"task": config.task, "seed": seed, "realtime": bool(config.realtime),
                "clock_topic": "/clock" if config.workers == 1 else "clock"}
    if role == "policy":
        values: dict[str, Any] = {"task": config.task, "seed": seed}
        if config.backend == "mujoco":
            # the embedded sim publishes joint_states once per step: act on each; lockstep unless realtime
            values.update(trigger="joint_states", lockstep=not config.realtime)
        else:
            # ros2_control's joint_state_broadcaster publishes at the controller rate: act on a timer
            values.update(trigger="timer", lockstep=False)
            if config.backend == "real":
                values["autostart"] = False  # a real arm moves only once the lifecycle node is activated
        if sim_period_s is not None:
            values["control_period_s"] = float(sim_period_s)
        return values
    if role == "collector":  # its final counters go into summary.json (async_naf.run.results.collector_counts)
        # a recorded run (the graph's own /recorder): the first episode waits until the bag gets its steps
        values = {"task": config.task, "seed": seed, "robot_id": robot,
                  "counts_file": str(Path(config.run_dir).resolve() / "collectors" / f"robot_{robot}.json"),
                  "wait_for_recorder": "/recorder" if config.record else config.external_recorder,
                  "recorder_ready_topic": "/recorder/ready" if config.record else "",
                  # a lockstep sim loses nothing by waiting for a trainer that has gone: no data dropped
                  "pause_when_backlog_full": config.backend == "mujoco" and not config.realtime}
        tapped = record_bundle_topics(config, robot)
        return {**values, "record_bundle_topics": tapped} if tapped else values
    return {}  # door_angle, guard: nothing graph-specific (the guard's period: see guarded_roles)


def guarded_roles(config: GraphConfig) -> list[str]:
    """Per-robot roles, in start order: the guard starts before the policy, so no command bypasses it."""
    if config.backend == "mujoco":
        return ["sim", "door_angle", "policy", "collector"]
    roles = ["reset", "door_angle", "policy", "collector"]  # reset: the collector's sim/reset on any arm
    roles = ["guard", *roles] if config.backend in GUARDED_BACKENDS else roles
    return ["sim", *roles] if config.backend == "hardware" else roles


def guard_remaps(config: GraphConfig, role: str) -> tuple[tuple[str, str], ...]:
    """The policy's and the reset's commands go to the guard, which alone publishes on the controller's topic."""
    if role in ("policy", "reset") and config.backend in GUARDED_BACKENDS:
        return ((COMMAND_TOPIC, GUARD_INPUT),)
    return ()


RETREAT_OFFSET_M = (-0.15, 0.0, 0.10)  # door tasks: the reset's retreat, from the hook's start position (m)


CLEAR_MARGIN_M = 0.2  # door tasks: the clear pose's hook is this far beyond the leaf's sweep (m)
CLEAR_STEP_RAD = 0.05  # ... found by turning joint 1 in these steps (rad)


def arm_reset_poses(task: str, sim_overrides: Mapping[str, Any]) -> tuple[list[float], list[float], list[float]]:
    """The joint-space poses (7 rad each) a ros2_control arm's reset node uses: the start pose, and for door
    tasks (else empty) the retreat and clear poses.

    The start pose is the embedded sim's (inverse kinematics of the task's start pose for the door geometry of
    ``sim_overrides``, e.g. the ``sim`` section of config/train.yaml), so every backend starts its episodes in
    the same pose; the retreat is the same hook orientation :data:`RETREAT_OFFSET_M` back and up, clear of the
    lever while the door closes; the clear pose is the retreat turned about joint 1 away from the hinge until
    the hook is :data:`CLEAR_MARGIN_M` beyond the leaf's sweep (a circle of the leaf's width about the hinge),
    where the arm cannot hold an open door open (empty if joint 1's range does not reach that far)."""
    import numpy as np

    from async_naf.sim.arm_door_sim import ArmDoorSim
    from async_naf.task.kinematics import ArmKinematics
    from async_naf.task.tasks import start_pose_target

    sim = ArmDoorSim(sim_config_of(task, sim_overrides, "sim (start pose)"))
    start = sim.start_pose()
    goal = sim.door_goal()
    target = start_pose_target(task, goal)
    if target is None:
        return [float(v) for v in start], [], []
    retreat = sim.solve_ik(target[0] + np.array(RETREAT_OFFSET_M), target[1], q0=start)
    kin = ArmKinematics()
    hinge = goal[3:5]
    away = 1.0 if goal[1] > hinge[1] else -1.0  # the hook's side of the hinge (y)
    reach = sim.door_config.width + CLEAR_MARGIN_M
    clear: list[float] = []
    for k in range(1, int(math.pi / CLEAR_STEP_RAD)):
        q = retreat.copy()
        q[0] += away * k * CLEAR_STEP_RAD
        if not kin.lower[0] <= q[0] <= kin.upper[0]:
            break
        if float(np.hypot(*(kin.ee_position(q)[:2] - hinge))) >= reach:
            clear = [float(v) for v in q]
            break
    return [float(v) for v in start], [float(v) for v in retreat], clear


def arm_start_pose(task: str, sim_overrides: Mapping[str, Any]) -> tuple[list[float], list[float]]:
    """The start pose and, for door tasks (else empty), the retreat pose of :func:`arm_reset_poses`."""
    start, retreat, _ = arm_reset_poses(task, sim_overrides)
    return start, retreat


def arm_reset_values(config: GraphConfig, role: str, ns: str, user: Mapping[str, Any],
                     cache: dict[tuple, tuple[list[float], list[float], list[float]]]) -> dict[str, Any]:
    """Graph-decided parameters of the reset node (task, start pose) and of the collector on an arm
    backend (a reset timeout that covers the motion home and the door wait)."""
    if config.backend == "mujoco":
        return {}
    if role == "reset":
        values: dict[str, Any] = {"task": config.task}
        if config.task != "reach" and not user.get("start_pose"):
            sim_user = overrides_for(config.overrides, ns, "sim")
            key = (config.task, tuple(sorted((k, str(v)) for k, v in sim_user.items())))
            if key not in cache:
                cache[key] = arm_reset_poses(config.task, sim_user)
            values["start_pose"], retreat, clear = cache[key]
            if retreat and not user.get("retreat_pose"):
                values["retreat_pose"] = retreat
            if clear and not user.get("clear_pose"):
                values["clear_pose"] = clear
        return values
    if role == "collector" and "reset_timeout_s" not in user:
        return {"reset_timeout_s": ARM_RESET_TIMEOUT_S}
    return {}


def build_graph(config: GraphConfig) -> list[NodeSpec]:
    """The node graph for ``config``: per robot sim (mujoco only), door_angle, policy, collector; then one
    trainer. Part ``robots`` leaves the trainer out, part ``trainer`` the robots; ``robots`` picks robots
    by their global index (:func:`robot_indices`).

    Raises:
        ValueError: if an override names an unknown parameter or a config dataclass rejects a value.
    """
    nodes: list[NodeSpec] = []
    roles = guarded_roles(config)
    start_poses: dict[tuple, tuple[list[float], list[float], list[float]]] = {}
    for i in robot_indices(config):
        ns = robot_namespace(i)
        remaps: tuple[tuple[str, str], ...] = ()
        if config.use_sim_time and config.workers > 1 and config.backend == "mujoco":
            remaps = (("/clock", f"{ns}/clock"),)
        sim_period_s = None
        sim_params: dict[str, Any] | None = None
        for role in roles:
            user = overrides_for(config.overrides, ns, role)
            if config.use_sim_time:
                user.setdefault("use_sim_time", True)
            decided = {**graph_values(config, role, i, sim_period_s),
                       **arm_reset_values(config, role, ns, user, start_poses)}
            params = _node_params(role, decided, user, f"{ns}/{role}", backend_defaults(config, role, sim_params, user))
            if role == "sim":
                sim_params = params
                sim_period_s = float(params["control_period_s"])  # the policy acts at the sim's period
            if role == "guard":  # the guard assumes commands held one policy period
                policy_user = overrides_for(config.overrides, ns, "policy")
                if "control_period_s" in policy_user and "control_period_s" not in user:
                    params = _node_params(role, {"control_period_s": float(policy_user["control_period_s"])},
                                          user, f"{ns}/{role}")
            nodes.append(_spec(role, ns, params, remaps + guard_remaps(config, role), robot=i))
    if starts_trainer(config):
        user = overrides_for(config.overrides, "/", "trainer")
        params = _node_params("trainer", graph_values(config, "trainer", None), user, "/trainer")
        nodes.append(dataclasses.replace(
            _spec("trainer", "/", params, (), robot=None, required=True), max_restarts=int(config.trainer_restarts),
            restart_delay_s=float(config.trainer_restart_delay_s), restart_parameters={"resume": True}))
    if config.record:
        topics = record_topics(config)
        values = {"bag_path": str(bag_path(config)), "topics": [t[0] for t in topics],
                  "types": [t[1] for t in topics], "qos": [t[2] for t in topics], "task": config.task}
        tapped = {i: record_bundle_topics(config, i) for i in robot_indices(config)}
        if any(tapped.values()):
            values.update(bundled=[t for ts in tapped.values() for t in ts],
                          bundles=[f"{robot_namespace(i)}/{BUNDLE_TOPIC}" for i, ts in tapped.items() if ts])
        user = overrides_for(config.overrides, "/", "recorder")
        nodes.insert(0, _spec("recorder", "/", _node_params("recorder", values, user, "/recorder"), (), robot=None))
    names = [n.fqn for n in nodes]
    if len(set(names)) != len(names):  # cannot happen with the rules above; guards future edits
        raise ValueError(f"duplicate node names in graph: {names}")
    return nodes


def bag_path(config: GraphConfig) -> Path:
    """Where a recorded run's bag goes: ``bag_dir``, else ``run_dir/bag``."""
    return Path(config.bag_dir).resolve() if config.bag_dir else Path(config.run_dir).resolve() / "bag"


def free_bag_dir(run_dir: str | Path) -> Path:
    """``run_dir/bag``, or ``bag_2``, ``bag_3``, ... if a resumed run already has one (bags are never
    written over)."""
    run_dir = Path(run_dir).resolve()
    path, n = run_dir / "bag", 1
    while path.exists():
        n += 1
        path = run_dir / f"bag_{n}"
    return path


def rosbag2_record_command(config: GraphConfig) -> list[str]:
    """``ros2 bag record`` for a recorded launch (``train.launch.py record:=true``): MCAP into
    :func:`bag_path`, the topics of :func:`record_topics`, and the run's task in metadata.yaml's custom_data
    (``--custom-data async_naf.task=<task>``, rosbag2's ``KEY=VALUE`` split at the first ``=``), where
    ``async-naf train --record``'s recorder writes it, so ``async-naf bag info`` and ``convert`` know the task."""
    from async_naf.recording.config import TASK_KEY

    return ["ros2", "bag", "record", "--storage", "mcap", "--output", str(bag_path(config)),
            "--custom-data", f"{TASK_KEY}={config.task}", "--topics", *[topic for topic, _, _ in record_topics(config)]]


def record_topics(config: GraphConfig) -> list[tuple[str, str, str]]:
    """(absolute topic, ROS type, QoS profile name of async_naf.nodes._msgs) of everything a recorded run
    keeps: per robot the sensors, the commands, the goal, the policy's steps and (embedded sim) the ground
    truth and clock; the trainer's weights; /diagnostics."""
    js, f64 = "sensor_msgs/msg/JointState", "std_msgs/msg/Float64MultiArray"
    door = config.task != "reach"
    out: list[tuple[str, str, str]] = []
    for i in robot_indices(config):
        ns = robot_namespace(i)
        out += [(f"{ns}/joint_states", js, "sensor")]
        if door:
            out += [(f"{ns}/door/imu", "sensor_msgs/msg/Imu", "imu"), (f"{ns}/door/joint_states", js, "sensor")]
        out += [(f"{ns}/forward_velocity_controller/commands", f64, "commands"), (f"{ns}/task/goal", f64, "latched"),
                (f"{ns}/policy/step", f64, "stream")]
        if config.backend == "mujoco":
            out += [(f"{ns}/ground_truth/door_state", js, "sensor")] if door else []
            if config.workers > 1:
                out += [(f"{ns}/clock", "rosgraph_msgs/msg/Clock", "clock")]
    if (config.workers == 1 or config.backend != "mujoco") and robot_indices(config):
        out += [("/clock", "rosgraph_msgs/msg/Clock", "clock")]
    out += [("/trainer/weights", "std_msgs/msg/UInt8MultiArray", "latched"),
            ("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", "diagnostics")]
    return out


def record_bundle_topics(config: GraphConfig, robot: int) -> list[str]:
    """The recorded topics of robot ``robot`` that its collector's tap sends the recorder in bundles
    (:mod:`async_naf.wire.record_bundle`) instead of the recorder subscribing to them: with the graph's own
    recorder, a composed robot with intra-process delivery and the embedded sim (whose nodes publish every one
    of them through the process's bus), the robot's topics except the latched goal (its DDS publisher keeps
    transient-local durability for a late recorder). Empty otherwise."""
    if not (config.record and config.composition == "robot" and config.intra_process and config.backend == "mujoco"):
        return []
    ns = robot_namespace(robot)
    return [topic for topic, _, qos in record_topics(config) if topic.startswith(ns + "/") and qos != "latched"]


def _spec(role: str, ns: str, params: dict, remaps: tuple, robot: int | None, required: bool = False) -> NodeSpec:
    executable, module, _ = ROLE_NODES[role]
    return NodeSpec(package=PACKAGE, executable=executable, module=module, name=role, namespace=ns,
                    parameters=params, remappings=tuple(remaps), role=role, robot=robot, required=required,
                    stop_timeout_s=STOP_TIMEOUT_S.get(role, DEFAULT_STOP_TIMEOUT_S))


@dataclasses.dataclass(frozen=True)
class ContainerSpec:
    """Several nodes of one robot in one process (:mod:`async_naf.run.container`).

    Attributes:
        namespace: the robot's namespace (every node of the container has it).
        nodes: the nodes, in the order they are created (the graph's order).
        remappings: ``(from, to)`` pairs, the same for every node of the robot.
        stop_timeout_s: seconds between SIGINT and SIGTERM (the longest of its nodes').
        intra_process: messages between the container's nodes go through the process's bus
            (:mod:`async_naf.nodes._local`) instead of DDS; False: through DDS, as between processes.
    """

    namespace: str
    nodes: tuple[NodeSpec, ...]
    remappings: tuple[tuple[str, str], ...] = ()
    stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S
    intra_process: bool = True
    package: str = PACKAGE
    executable: str = CONTAINER_EXECUTABLE
    module: str = CONTAINER_MODULE
    required: bool = False

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(n.role for n in self.nodes)

    @property
    def key(self) -> str:
        """File-name-safe identifier, e.g. ``robot_0``."""
        return self.namespace.strip("/").replace("/", ".")


def compose(nodes: Sequence[NodeSpec], composition: str, intra_process: bool = True) -> list[NodeSpec | ContainerSpec]:
    """The processes of a graph: ``none`` keeps one per node; ``robot`` puts each robot's composable nodes
    (sim, door_angle, policy, collector) into one :class:`ContainerSpec` (where the robot's first node was);
    global nodes (the trainer) and anything else stay processes of their own. ``intra_process``: see
    :class:`ContainerSpec`.

    Raises:
        ValueError: unknown composition.
    """
    if composition not in COMPOSITIONS:
        raise ValueError(f"unknown composition {composition!r}; choose one of {', '.join(COMPOSITIONS)}")
    if composition == "none":
        return list(nodes)
    from async_naf.run.container import COMPOSABLE  # ROS-free module (rclpy only in its main)

    members: dict[int, list[NodeSpec]] = {}
    for node in nodes:
        if node.robot is not None and node.role in COMPOSABLE and node.package == PACKAGE:
            members.setdefault(node.robot, []).append(node)
    out: list[NodeSpec | ContainerSpec] = []
    placed: set[int] = set()
    for node in nodes:
        robot = node.robot
        group = members.get(robot) if robot is not None else None
        if robot is None or group is None or node not in group:
            out.append(node)
            continue
        if robot in placed:
            continue
        placed.add(robot)
        # remappings all of the robot's nodes share apply to the process; one node's own (the policy's
        # command topic through the guard) become node-targeted rules ``<node>:<from>:=<to>`` (ROS 2 CLI)
        common = set.intersection(*(set(n.remappings) for n in group))
        remaps = tuple(r for r in group[0].remappings if r in common) + tuple(
            (f"{n.name}:{src}", dst) for n in group for src, dst in n.remappings if (src, dst) not in common)
        out.append(ContainerSpec(namespace=group[0].namespace, nodes=tuple(group), remappings=remaps,
                                 stop_timeout_s=max(n.stop_timeout_s for n in group),
                                 intra_process=intra_process))
    return out


def default_config_file() -> Path:
    """``config/train.yaml`` of this checkout or install."""
    from async_naf.common.resources import data_path

    return data_path("config", "train.yaml")


_TASK_NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")


def task_config_file(task: str) -> Path | None:
    """``config/train.<task>.yaml`` of this checkout or install: the task's additions to ``config/train.yaml``
    (same format, read after it), or None if the task has none (or ``task`` is not a plain name)."""
    from async_naf.common.resources import data_path

    if not _TASK_NAME_RE.fullmatch(task or ""):
        return None
    path = data_path("config", f"train.{task}.yaml")
    return path if path.is_file() else None


def merge_overrides(base: Mapping[str, Mapping[str, Any]],
                    extra: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``base`` with ``extra`` laid over it, key by key and parameter by parameter (``extra`` wins)."""
    out = {key: dict(params) for key, params in base.items()}
    for key, params in extra.items():
        out.setdefault(key, {}).update(params)
    return out


def config_overrides(config: str | Path | None, option: str = "--config",
                     task: str | None = None) -> dict[str, dict[str, Any]]:
    """Overrides from the parameter file a user named (``async-naf train --config``, ``config:=`` of the
    launch file), or, when none is named, the package's ``config/train.yaml`` (none if it is absent) with the
    task's ``config/train.<task>.yaml`` over it where ``task`` is given and has one. A named file replaces
    both: it is the whole configuration.

    Raises:
        ValueError: the named file does not exist (``option`` names where it was given), or is malformed; a
            task file sets a parameter for one robot only (``/robot_<i>/...``: it would outrank ``--set``,
            which sets every robot's).
    """
    if config:
        path = Path(config)
        if not path.is_file():
            raise ValueError(f"{option} {config}: no such file")
        return load_overrides(path)
    default = default_config_file()
    out = load_overrides(default) if default.exists() else {}
    extra = task_config_file(task) if task else None
    if extra is None:
        return out
    task_overrides = load_overrides(extra)
    per_robot = [k for k in task_overrides if robot_scoped(k)]
    if per_robot:
        raise ValueError(f"{extra}: a task's file sets parameters for every robot (/**/<node>, /trainer), "
                         f"not for one: {', '.join(per_robot)}")
    return merge_overrides(out, task_overrides)


def training_sim_config(task: str, config_file: str | Path | None = None) -> SimConfig:
    """The :class:`~async_naf.sim.config.SimConfig` a graph run's simulated robot 0 trains in (its ``sim``
    overrides from ``config_overrides(config_file, task=task)``), for in-process loops that train on
    :class:`~async_naf.run.env.ArmDoorEnv` beside the graph (``async_naf.run.serial``, the SB3 peers).
    Greedy evaluations keep the simulation's own defaults.

    Raises:
        ValueError: a ``sim`` override the dataclass rejects.
    """
    sim = overrides_for(config_overrides(config_file, "--config", task=task), robot_namespace(0), "sim")
    return sim_config_of(task, sim, "sim (training)")


def graph_to_dict(nodes: Sequence[NodeSpec]) -> list[dict[str, Any]]:
    """JSON-friendly form of a graph (written to ``<run_dir>/graph.json`` for the record)."""
    return [{"fqn": n.fqn, "package": n.package, "executable": n.executable, "module": n.module,
             "parameters": n.parameters, "remappings": [list(r) for r in n.remappings],
             "required": n.required} for n in nodes]


# ---------------------------------------------------------------------- gazebo / real bringup
CONTROLLERS = ("joint_state_broadcaster", "forward_velocity_controller")  # spawned in this order
GZ_ROBOT_SPACING_M = 4.0  # y distance between robots spawned in one Gazebo world (m)
GAZEBO_WORLD = ("worlds", "async_naf.sdf")  # the package's world: physics, the IMU system once, ground
CONTROLLER_MANAGER_TIMEOUT_S = 60.0  # default of launch's controller_manager_timeout (the spawner's wait)
RVIZ_CONFIG = ("rviz", "async_naf.rviz")  # rviz:=true: RobotModel + TF of robot_0, fixed frame world
WORLD_FRAME = "world"  # the frame all robots share (RViz's fixed frame); robot_<i>/world sits at its spawn pose
# TF sources of the door (defect 9): the hinge from the door_angle node's estimate, the handle at rest (nothing
# measures it on a real arm)
DOOR_ANGLE_JOINT = "door_hinge"  # the joint door_angle_node publishes on door/joint_states
DOOR_HANDLE_JOINT = "door_handle"
# bringup processes that exit once their work is done (ros_gz_sim create, the controller spawner): exit code 0
# is success, any other ends the launch (launch/train.launch.py)
ONE_SHOT_BRINGUP = ("spawn", "spawner")
_HW_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def gazebo_world(world: str = "") -> str:
    """The world given to ``gz sim``: ``world`` as given (a file, or a world name gz finds on its resource
    path), or for ``''`` the package's ``worlds/async_naf.sdf``."""
    if world:
        return world
    from async_naf.common.resources import data_path

    return str(data_path(*GAZEBO_WORLD))


def gz_sim_args(gz_args: str, gui: bool, world: str = "") -> str:
    """The ``gz_args`` given to ros_gz_sim's gz_sim.launch.py (the ``gz sim`` command line): the user's
    arguments, ``-s`` (server only, no GUI) unless ``gui`` or already given, then :func:`gazebo_world`."""
    words = gz_args.split()
    if not gui and "-s" not in words:
        words.append("-s")
    if gui and "-s" in words:
        raise ValueError("gui:=true with -s in gz_args (server only): drop one of them")
    return " ".join([*words, gazebo_world(world)])


@dataclasses.dataclass(frozen=True)
class RobotHardware:
    """One robot's entry of a hardware file: its ros2_control hardware plugin and the ``<param>`` values
    of its ``<hardware>`` tag (strings, as in the URDF)."""

    plugin: str
    parameters: tuple[tuple[str, str], ...] = ()


def _hw_scalar(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str) and not (isinstance(value, float) and not math.isfinite(value)):
        return str(value)
    raise ValueError(f"{where}: must be a string, number or boolean, got {value!r}")


def parse_hardware(doc: Any, workers: int, robots: Sequence[int], source: str = "hardware file",
                   default_plugin: str = "") -> dict[int, RobotHardware]:
    """Validate per-robot hardware parameters (the content of ``hardware_file:=``)::

        robot_0:
          plugin: my_driver/MyArmSystem      # optional: default the hardware_plugin argument
          parameters: {robot_ip: 10.0.0.2}   # <param> of the robot's <hardware> tag
        robot_1:
          parameters: {robot_ip: 10.0.0.3}

    Args:
        doc: the loaded YAML.
        workers: robots of the whole graph (entries must name one of them).
        robots: the robots this host starts: each needs an entry.
        source: names the file in error messages.
        default_plugin: plugin of the entries that give none.

    Raises:
        ValueError: naming the file, the entry and what is wrong.
    """
    if not isinstance(doc, Mapping) or not doc:
        raise ValueError(f"{source}: expected a mapping robot_<i> -> {{plugin, parameters}}, got {doc!r}")
    out: dict[int, RobotHardware] = {}
    for key, entry in doc.items():
        m = re.fullmatch(rf"/?{ROBOT_PREFIX}(\d+)", str(key))
        if m is None:
            raise ValueError(f"{source}: entry {key!r} is not a robot namespace (robot_<i>)")
        index = int(m.group(1))
        if index >= workers:
            raise ValueError(f"{source}: {key} is not a robot of this graph (workers {workers}: "
                             f"robot_0 .. robot_{workers - 1})")
        if index in out:
            raise ValueError(f"{source}: {ROBOT_PREFIX}{index} is given twice")
        if not isinstance(entry, Mapping):
            raise ValueError(f"{source}: {key} must be a mapping with plugin and/or parameters, got {entry!r}")
        unknown = set(entry) - {"plugin", "parameters"}
        if unknown:
            raise ValueError(f"{source}: {key} has unknown keys {sorted(unknown)} (allowed: plugin, parameters)")
        plugin = entry.get("plugin", default_plugin)
        if not isinstance(plugin, str) or not plugin.strip() or any(c.isspace() for c in plugin):
            raise ValueError(f"{source}: {key}.plugin must be a plugin class name such as "
                             f"my_driver/MyArmSystem, got {plugin!r}")
        params = entry.get("parameters") or {}
        if not isinstance(params, Mapping):
            raise ValueError(f"{source}: {key}.parameters must be a mapping name -> value, got {params!r}")
        values = []
        for name, value in params.items():
            if not isinstance(name, str) or not _HW_PARAM_NAME.match(name):
                raise ValueError(f"{source}: {key}.parameters: {name!r} is not a parameter name")
            values.append((name, _hw_scalar(value, f"{source}: {key}.parameters.{name}")))
        out[index] = RobotHardware(plugin=plugin, parameters=tuple(values))
    missing = [i for i in robots if i not in out]
    if missing:
        raise ValueError(f"{source}: no entry for " + ", ".join(f"{ROBOT_PREFIX}{i}" for i in missing)
                         + " (every robot this host starts needs one)")
    return out


def load_hardware_file(path: str | Path, config: GraphConfig,
                       default_plugin: str = "mock_components/GenericSystem") -> dict[int, RobotHardware]:
    """Read and validate ``hardware_file:=`` (see :func:`parse_hardware`) for the robots ``config`` starts."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"hardware_file:= {p}: no such file")
    try:
        doc = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"hardware_file:= {p}: not valid YAML: {err}") from err
    return parse_hardware(doc, config.workers, robot_indices(config), f"hardware_file:= {p}", default_plugin)


_DESCRIPTION_CACHE: dict[tuple, dict[str, str]] = {}


def description_mappings(task: str, sim_overrides: Mapping[str, Any]) -> dict[str, str]:
    """The xacro arguments that make a robot's Gazebo / real description match its task and the embedded
    sim's configuration (``sim_overrides``: the ``sim`` section for that robot, e.g. of config/train.yaml): the
    door geometry and dynamics, the latch and the door closer (Gazebo's system), the door IMU's rate and noise
    (Gazebo's IMU sensor), hinge side and opening direction (``door_push`` gets the push door) and
    ``initial_positions`` = the episode's start pose (:func:`arm_start_pose`, the pose the reset node drives to),
    so a spawned arm starts where its episodes start."""
    key = (task, tuple(sorted((k, str(v)) for k, v in sim_overrides.items())))
    if key not in _DESCRIPTION_CACHE:
        from async_naf.sim.model import imu_xacro_mappings, xacro_mappings

        sim = sim_config_of(task, sim_overrides, "sim (robot description)")
        # door geometry and latch, and the Gazebo IMU's rate and noise: the embedded model's configuration
        mappings = {**xacro_mappings(sim.door, sim.hinge_left, sim.door_opening), **imu_xacro_mappings(sim.imu)}
        del mappings["mode"]
        # Gazebo's door closer (async_naf.task.gz_latch): the sim section's, else the one hardware mode uses
        mappings["door_closer_torque"] = repr(float(sim.door_closer_torque if "door_closer_torque" in sim_overrides
                                                    else HARDWARE_DOOR_CLOSER_NM))
        mappings["door_closer_delay_s"] = repr(float(sim.door_closer_delay_s))
        start, _ = arm_start_pose(task, sim_overrides)
        mappings["initial_positions"] = " ".join(repr(float(v)) for v in start)
        _DESCRIPTION_CACHE[key] = mappings
    return dict(_DESCRIPTION_CACHE[key])


def robot_description(backend: str, namespace: str = "", hardware_plugin: str = "mock_components/GenericSystem",
                      robot_ip: str = "192.168.1.10", controllers_file: str | None = None,
                      description_file: str | Path | None = None, *, mappings: Mapping[str, str] | None = None,
                      hardware_params: Sequence[tuple[str, str]] = ()) -> str:
    """The expanded URDF (``urdf/arm_door.urdf.xacro``) for a backend, via the xacro Python API.

    Args:
        backend: ``gazebo`` (gz_ros2_control tags, IMU sensor) or ``real`` (``hardware_plugin``) or ``mujoco``.
        namespace: ROS namespace of the robot's controller manager (gazebo), e.g. ``/robot_0``.
        hardware_plugin: ros2_control SystemInterface plugin for a real arm.
        robot_ip: passed to the hardware plugin.
        controllers_file: controllers YAML for gz_ros2_control (default: this package's config/controllers.yaml).
        description_file: xacro file (default: the package's urdf/arm_door.urdf.xacro).
        mappings: further xacro arguments (door geometry, ``initial_positions``: :func:`description_mappings`).
        hardware_params: ``(name, value)`` of ``<param>`` tags set in the real arm's ``<hardware>`` (replacing one
            of the same name, e.g. ``robot_ip``): a robot's entry of the hardware file.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}")
    import xacro  # only the gazebo / real bringup needs it

    from async_naf.common.resources import data_path

    path = Path(description_file) if description_file else data_path("urdf", "arm_door.urdf.xacro")
    args = {**dict(mappings or {}),
            "mode": backend, "namespace": namespace,
            "controllers_file": str(controllers_file or data_path("config", "controllers.yaml")),
            "hardware_plugin": hardware_plugin, "robot_ip": robot_ip}
    doc = xacro.process_file(str(path), mappings=args)
    if backend == "gazebo" and namespace:
        # one world, N robots: each door IMU must publish on its own gz topic (<ns>/door/imu), which the
        # robot's bridge maps to the ROS topic of the same name; its messages' frame_id (gz_frame_id, which
        # gz-sensors stamps them with) is the robot's prefixed TF frame, as robot_state_publisher names it
        for sensor in doc.getElementsByTagName("sensor"):
            if sensor.getAttribute("type") == "imu":
                for topic in sensor.getElementsByTagName("topic"):
                    topic.firstChild.nodeValue = f"{namespace.rstrip('/')}/door/imu"
                for frame in sensor.getElementsByTagName("gz_frame_id"):
                    frame.firstChild.nodeValue = frame_prefix(namespace) + frame.firstChild.nodeValue.strip()
    if hardware_params:
        hardware = doc.getElementsByTagName("hardware")
        if backend != "real" or not hardware:
            raise ValueError("hardware parameters apply to the real backend's <hardware> tag only")
        existing = {p.getAttribute("name"): p for p in hardware[0].getElementsByTagName("param")}
        for name, value in hardware_params:
            if name not in existing:
                existing[name] = doc.createElement("param")
                existing[name].setAttribute("name", name)
                hardware[0].appendChild(existing[name])
            node = existing[name]
            while node.firstChild is not None:
                node.removeChild(node.firstChild)
            node.appendChild(doc.createTextNode(value))
    return doc.toprettyxml(indent="  ")


def frame_prefix(namespace: str) -> str:
    """TF frame prefix of a robot's frames: ``/robot_0`` -> ``robot_0/`` (no leading slash: tf2 frame ids
    carry none)."""
    ns = namespace.strip("/")
    return f"{ns}/" if ns else ""


SpawnPose = tuple[float, float, float, float]  # x, y, z (m), yaw (rad) of a robot's world frame


def default_spawn_pose(index: int) -> SpawnPose:
    """Where robot ``index`` stands without ``spawn_poses:=``: on the world's y axis, robots
    :data:`GZ_ROBOT_SPACING_M` apart."""
    return (0.0, index * GZ_ROBOT_SPACING_M, 0.0, 0.0)


def parse_spawn_poses(text: str, workers: int) -> dict[int, SpawnPose]:
    """``spawn_poses:=`` of the launch file: one ``x y z yaw`` (m, m, m, rad) per robot of the whole graph,
    separated by ``;`` (robot 0 first), e.g. ``"0 0 0 0; 0 3 0 1.57"``; empty = :func:`default_spawn_pose`.

    Raises:
        ValueError: not exactly ``workers`` entries, or an entry that is not 4 finite numbers.
    """
    if not text.strip():
        return {i: default_spawn_pose(i) for i in range(workers)}
    entries = [e.strip() for e in text.split(";")]
    if len(entries) != workers:
        raise ValueError(f"spawn_poses:= has {len(entries)} entries for {workers} robots (one 'x y z yaw' "
                         f"per robot, separated by ';')")
    out: dict[int, SpawnPose] = {}
    for i, entry in enumerate(entries):
        try:
            values = [float(v) for v in entry.replace(",", " ").split()]
        except ValueError:
            values = []
        if len(values) != 4 or not all(math.isfinite(v) for v in values):
            raise ValueError(f"spawn_poses:= entry {i} ({entry!r}): expected 4 finite numbers 'x y z yaw' "
                             f"(m, m, m, rad)")
        out[i] = (values[0], values[1], values[2], values[3])
    return out


def _urdf_joint_origin(urdf: str, joint: str) -> tuple[str, str, list[float], list[float]]:
    """(parent link, child link, origin xyz, origin rpy) of a joint of an expanded URDF."""
    import xml.etree.ElementTree as ET

    for j in ET.fromstring(urdf).findall("joint"):
        if j.get("name") == joint:
            origin = j.find("origin")
            xyz = [float(v) for v in (origin.get("xyz", "0 0 0") if origin is not None else "0 0 0").split()]
            rpy = [float(v) for v in (origin.get("rpy", "0 0 0") if origin is not None else "0 0 0").split()]
            parent, child = j.find("parent"), j.find("child")
            if parent is None or child is None:
                raise ValueError(f"robot description: joint {joint!r} has no parent or child")
            return str(parent.get("link")), str(child.get("link")), xyz, rpy
    raise ValueError(f"robot description has no joint {joint!r}")


def _static_tf(name: str, ns: str, robot: int, parent: str, child: str, xyz: Sequence[float],
               rpy: Sequence[float], sim_time: bool) -> NodeSpec:
    """tf2_ros static_transform_publisher (Jazzy's named arguments) for one fixed transform."""
    args: list[str] = []
    for flag, value in zip(("--x", "--y", "--z", "--roll", "--pitch", "--yaw"), (*xyz, *rpy), strict=True):
        args += [flag, repr(float(value))]
    return NodeSpec(package="tf2_ros", executable="static_transform_publisher", module="", name=name,
                    namespace=ns, parameters={"use_sim_time": sim_time}, role="bringup", robot=robot,
                    arguments=(*args, "--frame-id", parent, "--child-frame-id", child))


def build_bringup(config: GraphConfig, hardware_plugin: str = "mock_components/GenericSystem",
                  robot_ip: str = "192.168.1.10", controllers_file: str | None = None,
                  hardware: Mapping[int, RobotHardware] | None = None,
                  controller_manager_timeout_s: float = CONTROLLER_MANAGER_TIMEOUT_S,
                  description_file: str | Path | None = None,
                  spawn_poses: Mapping[int, SpawnPose] | None = None,
                  rviz: bool = False) -> list[NodeSpec]:
    """Nodes that give each robot its ros2_control interfaces on the gazebo / real backends.

    Per robot namespace: robot_state_publisher (robot_description from the xacro, with the door of the robot's
    task and sim configuration and the arm at the episode's start pose: :func:`description_mappings`), then

    - gazebo: ``ros_gz_sim create`` (spawns the model from the robot_description topic, robots
      :data:`GZ_ROBOT_SPACING_M` apart), a ``ros_gz_bridge parameter_bridge`` for the door IMU
      (gz ``<ns>/door/imu`` -> ROS ``<ns>/door/imu``); gz_ros2_control runs the controller manager inside
      Gazebo; plus one global ``/clock`` bridge;
    - real: ``ros2_control_node`` with the hardware plugin (a xacro argument) and config/controllers.yaml;
      ``hardware`` (a hardware file, :func:`load_hardware_file`) gives each robot its own plugin and
      ``<hardware>`` parameters (its ``robot_ip``...), else every robot gets ``hardware_plugin`` and ``robot_ip``;
      the door IMU comes from the user's IMU driver publishing ``<ns>/door/imu``;

    and one controller spawner per robot for :data:`CONTROLLERS` (loaded, configured and activated in that
    order; it waits ``controller_manager_timeout_s`` for the controller manager).

    TF (frames ``robot_<i>/...``, :func:`frame_prefix`): robot_state_publisher publishes the arm from
    ``joint_states`` (joint_state_broadcaster); a second robot_state_publisher, ``door_state_publisher``, fed
    from ``door/joint_states`` (the door_angle node's :data:`DOOR_ANGLE_JOINT` estimate), publishes the door
    leaf; a static transform holds the handle at rest (:data:`DOOR_HANDLE_JOINT`: nothing measures it on a real
    arm); a static transform places ``robot_<i>/world`` in :data:`WORLD_FRAME` at the robot's spawn pose
    (``spawn_poses``, default :func:`default_spawn_pose`; on gazebo also where ``create`` spawns the model).
    ``description_file`` replaces the package's xacro; ``rviz`` adds rviz2 with :data:`RVIZ_CONFIG`.
    The spawner and ``create`` exit when done (:data:`ONE_SHOT_BRINGUP`: the launch file ends the launch on a
    non-zero exit). The mujoco backend needs none of this (the sim node serves the same topics) and gets an
    empty list. Gazebo itself (ros_gz_sim's gz_sim.launch.py with :func:`gz_sim_args`) is included by the
    launch file.
    """
    if hardware and config.backend != "real":  # never ignored silently (hardware: the sim is the arm)
        raise ValueError("hardware_file:= applies to backend real only")
    if config.backend in ("mujoco", "hardware"):
        given = [name for name, value in (("spawn_poses", spawn_poses), ("rviz", rviz),
                                          ("description_file", description_file),
                                          ("controllers_file", controllers_file)) if value]
        if given:  # never ignored silently: the embedded sim has its own description and no ros2_control
            raise ValueError(f"{', '.join(f'{n}:=' for n in given)} apply to backends gazebo and real only")
        return []
    if not controller_manager_timeout_s > 0 or not math.isfinite(controller_manager_timeout_s):
        raise ValueError(f"controller_manager_timeout must be a positive number of seconds, "
                         f"got {controller_manager_timeout_s!r}")
    from async_naf.common.resources import data_path

    controllers = str(controllers_file or data_path("config", "controllers.yaml"))
    sim_time = config.backend == "gazebo"
    nodes: list[NodeSpec] = []
    if config.backend == "gazebo" and robot_indices(config):
        nodes.append(NodeSpec(package="ros_gz_bridge", executable="parameter_bridge", module="",
                              name="clock_bridge", namespace="/", parameters={}, role="bringup",
                              arguments=("/clock@rosgraph_msgs/msg/Clock[gz.msgs.Clock",)))
    for i in robot_indices(config):
        ns = robot_namespace(i)
        entry = (hardware or {}).get(i)
        if hardware and entry is None:
            raise ValueError(f"hardware file: no entry for {ROBOT_PREFIX}{i}")
        urdf = robot_description(
            config.backend, ns, entry.plugin if entry else hardware_plugin, robot_ip, controllers,
            description_file,
            mappings=description_mappings(config.task, overrides_for(config.overrides, ns, "sim")),
            hardware_params=entry.parameters if entry else ())
        prefix = frame_prefix(ns)
        rsp_params: dict[str, ParamValue] = {"robot_description": urdf, "use_sim_time": sim_time,
                                             "frame_prefix": prefix}
        nodes.append(NodeSpec(package="robot_state_publisher", executable="robot_state_publisher", module="",
                              name="robot_state_publisher", namespace=ns, role="bringup", robot=i,
                              # frame_prefix (robot_state_publisher's parameter, prepended to every
                              # frame id it publishes): N robots' TF trees stay apart (robot_0/arm_base_link)
                              parameters=dict(rsp_params)))
        # the door's TF: robot_state_publisher publishes a transform for every moving joint named in the
        # JointState messages it gets on its (relative) joint_states topic, with SensorDataQoS (matches the
        # door_angle node's best-effort publisher); its description topic goes elsewhere (one publisher of
        # <ns>/robot_description, which create and the controller manager read)
        nodes.append(NodeSpec(package="robot_state_publisher", executable="robot_state_publisher", module="",
                              name="door_state_publisher", namespace=ns, role="bringup", robot=i,
                              parameters=dict(rsp_params),
                              remappings=(("joint_states", "door/joint_states"),
                                          ("robot_description", "door_state_publisher/robot_description"))))
        parent, child, xyz, rpy = _urdf_joint_origin(urdf, DOOR_HANDLE_JOINT)  # the lever at rest (angle 0)
        nodes.append(_static_tf("door_handle_tf", ns, i, prefix + parent, prefix + child, xyz, rpy, sim_time))
        x, y, z, yaw = (spawn_poses or {}).get(i, default_spawn_pose(i))
        nodes.append(_static_tf("world_tf", ns, i, WORLD_FRAME, prefix + "world", (x, y, z), (0.0, 0.0, yaw),
                                sim_time))
        if config.backend == "gazebo":
            nodes.append(NodeSpec(
                package="ros_gz_sim", executable="create", module="", name="spawn", namespace=ns,
                parameters={}, role="bringup", robot=i,
                arguments=("-topic", f"{ns}/robot_description", "-name", ns.strip("/"),
                           "-x", repr(x), "-y", repr(y), "-z", repr(z), "-Y", repr(yaw))))
            nodes.append(NodeSpec(
                package="ros_gz_bridge", executable="parameter_bridge", module="", name="imu_bridge",
                namespace=ns, parameters={}, role="bringup", robot=i,
                arguments=(f"{ns}/door/imu@sensor_msgs/msg/Imu[gz.msgs.IMU",)))
        else:
            nodes.append(NodeSpec(
                package="controller_manager", executable="ros2_control_node", module="",
                name="controller_manager", namespace=ns, parameters={}, role="bringup", robot=i,
                # no remapping: since Jazzy the controller manager subscribes to the relative topic
                # robot_description (ros2_control doc/migration/Jazzy.rst, PR #1410), i.e.
                # <ns>/robot_description, which this namespace's robot_state_publisher publishes
                param_files=(controllers,)))
        # one spawner for both controllers (Jazzy's spawner takes a list and loads, configures and activates
        # them in order, exiting 1 on the first failure): no chaining on the exit of another process
        nodes.append(NodeSpec(
            package="controller_manager", executable="spawner", module="", name="spawner", namespace=ns,
            parameters={"use_sim_time": sim_time}, role="spawner", robot=i,
            arguments=(*CONTROLLERS, "--controller-manager", f"{ns}/controller_manager",
                       "--controller-manager-timeout", f"{controller_manager_timeout_s:g}")))
    if rviz:
        nodes.append(NodeSpec(package="rviz2", executable="rviz2", module="", name="rviz", namespace="/",
                              parameters={"use_sim_time": sim_time}, role="bringup",
                              arguments=("-d", str(data_path(*RVIZ_CONFIG)))))
    return nodes
