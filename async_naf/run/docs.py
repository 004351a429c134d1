"""The parameter reference ``docs/parameters.md``, generated from the nodes' config dataclasses.

The config dataclass of each node is the one home of its parameters: names, defaults, types and
descriptions (with units, from the docstring's ``Attributes:`` section). This module renders them as one
table per node, with what ``config/train.yaml`` sets and what the run itself decides::

    python -m async_naf.run.docs            # rewrite docs/parameters.md
    python -m async_naf.run.docs --check    # exit 1 if docs/parameters.md is not what this would write

Sources, all read here and never copied:

- the nodes and their dataclasses: :data:`async_naf.run.graph.ROLE_NODES` (role -> ``module:ConfigClass``);
- names, kinds, defaults and descriptions: :func:`async_naf.wire.params.param_specs` (the rule the nodes
  declare their ROS parameters with), group descriptions: :func:`async_naf.wire.params.field_descriptions`;
- parameters a node declares besides its dataclass (``diagnostics_period_s``, ...): the literal
  ``declare_parameter("name", default)`` calls in the node's module (read as text, never imported: the
  nodes need rclpy); their descriptions are :data:`async_naf.wire.params.NODE_ONLY_HELP`;
- values of ``config/train.yaml``: :func:`async_naf.run.graph.load_overrides`;
- what the run decides (task, seeds, ...): :func:`async_naf.run.graph.graph_values` and
  :func:`async_naf.run.graph.backend_defaults`.

ROS-free: imports neither rclpy nor launch.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import async_naf
from async_naf.run import graph
from async_naf.wire import params as wire_params

REPO = Path(async_naf.__file__).resolve().parent.parent
DOCS_FILE = REPO / "docs" / "parameters.md"
TRAIN_YAML = REPO / "config" / "train.yaml"
COMMAND = "python -m async_naf.run.docs"


# a sample control period for graph_values (the policy then gets the sim's period on the mujoco backend)
_SAMPLE_PERIOD_S = 0.05

INTRO = """\
Every node declares one ROS parameter per field of its config dataclass (nested dataclasses as dotted
names like `noise.scale`, tuples as arrays, floats accept integers; `ros2 param describe` shows the
description below). The dataclass validates every value: a bad one makes the node exit with status 2 and a
message naming the parameter, and `async-naf train` / `train.launch.py` refuse it before any process
starts. Each node's section says which parameters may change at runtime (marked *runtime*).

Where a node's values come from (later wins):

1. the dataclass default (column *default*);
2. a default the backend knows better (column *set by the run*, "mujoco default: ...");
3. `config/train.yaml` (column *config/train.yaml*; robot 0 shown for per-robot nodes), then the task's own
   additions where it has a file of them (`config/train.<task>.yaml`, listed below the node list); or
   instead of both the file given with `async-naf train --config FILE` / `train.launch.py config:=FILE`;
4. `async-naf train --set NODE.PARAM=VALUE`;
5. what the run decides from its command line or launch arguments (column *set by the run*: "always", or
   the backends on which it does; a config file cannot change these). Robot `i` gets seed
   `seed*1000+1+i`.

How to start a run: [training.md](training.md); topics and QoS: [graph.md](graph.md).

`config/sim.yaml` and `config/door_angle.yaml` list the sim's and the estimator's defaults in params-file
form for `ros2 run ... --params-file` (tests keep them valid and equal to the defaults); the agents'
Python-API defaults are in `config/naf.yaml` ([naf.md](naf.md)).

Columns and marks: *kind* is the ROS parameter type (`float[]`: double array); default "unset": `None`
in the dataclass, the parameter has no value unless given; *node only*: declared by the node in addition
to its dataclass; *runtime*: changeable with `ros2 param set` while the node runs.
"""


@dataclasses.dataclass(frozen=True)
class Row:
    """One parameter of one node, as rendered.

    Attributes:
        name: dotted parameter name.
        kind: value kind (``float``, ``float[]``, ...).
        default: default value (None: unset).
        description: description with units.
        train_yaml: the value ``config/train.yaml`` sets, or ``dataclasses.MISSING``.
        set_by_run: how the run sets it ("" if it does not).
        node_only: declared by the node, not a field of its dataclass.
        runtime: the node lets it change at runtime.
    """

    name: str
    kind: str
    default: Any
    description: str
    train_yaml: Any = dataclasses.MISSING
    set_by_run: str = ""
    node_only: bool = False
    runtime: bool = False


# ------------------------------------------------------------------------------------------- sources
def node_module_path(role: str) -> Path:
    """Source file of a role's node module (``async_naf/nodes/<node>.py``)."""
    module = graph.ROLE_NODES[role][1]
    return REPO.joinpath(*module.split(".")).with_suffix(".py")


def node_only_parameters(role: str) -> dict[str, Any]:
    """``{name: default}`` of the parameters a node declares with literal ``declare_parameter(name, value)``
    or ``node_only(node, name, value)`` calls besides its dataclass (read from its source; the node module is not
    imported)."""
    path = node_module_path(role)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    fields = {s.name for s in wire_params.param_specs(graph.config_class(role))}
    found: dict[str, Any] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        # self.declare_parameter("name", default, ...) or node_only(self, "name", default)
        if isinstance(node.func, ast.Attribute) and node.func.attr == "declare_parameter":
            args = node.args
        elif isinstance(node.func, ast.Name) and node.func.id == "node_only":
            args = node.args[1:]
        else:
            continue
        if len(args) >= 2 and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str):
            try:
                default = ast.literal_eval(args[1])
            except ValueError:
                continue
            if args[0].value not in fields:
                found[args[0].value] = default
    return found


def runtime_parameters(role: str) -> frozenset[str] | None:
    """Names a node lets change at runtime: the ``dynamic=`` argument of its ``declare_from_dataclass`` call
    (a literal or a module-level constant), read from its source. ``None``: the call has no ``dynamic``
    (nothing declared read-only, nothing watched)."""
    path = node_module_path(role)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    constants = {t.id: n.value for n in tree.body if isinstance(n, ast.Assign)
                 for t in n.targets if isinstance(t, ast.Name)}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", ""))
                == "declare_from_dataclass"):
            for kw in node.keywords:
                if kw.arg == "dynamic":
                    value = constants.get(kw.value.id, kw.value) if isinstance(kw.value, ast.Name) else kw.value
                    return frozenset(ast.literal_eval(value))
    return None


def _namespace(role: str) -> str:
    return "/" if role == "trainer" else graph.robot_namespace(0)


def train_yaml_values(role: str, path: Path = TRAIN_YAML) -> dict[str, Any]:
    """What ``config/train.yaml`` sets for a role (robot 0 for per-robot nodes), dotted names."""
    if not path.is_file():
        return {}
    return graph.overrides_for(graph.load_overrides(path), _namespace(role), role)


def per_robot_entries(path: Path = TRAIN_YAML) -> dict[str, dict[str, Any]]:
    """Entries of ``config/train.yaml`` for one robot only (``/robot_<i>/<node>``)."""
    if not path.is_file():
        return {}
    return {k: v for k, v in graph.load_overrides(path).items() if graph.robot_scoped(k)}


def task_entries(train_yaml: Path = TRAIN_YAML) -> dict[str, dict[str, dict[str, Any]]]:
    """``{task: overrides}`` of the per-task files beside ``config/train.yaml`` (``train.<task>.yaml``)."""
    return {f.name[len("train."):-len(".yaml")]: graph.load_overrides(f)
            for f in sorted(train_yaml.parent.glob("train.*.yaml"))}


def run_settings(role: str) -> dict[str, str]:
    """``{name: how}`` for the parameters the run decides on some backend (from :func:`graph.graph_values`)
    and the defaults a backend sets (from :func:`graph.backend_defaults`)."""
    decided: dict[str, list[str]] = {}
    backend_default: dict[str, str] = {}
    sim_params = wire_params.flatten(graph.config_class("sim")())
    for backend in graph.BACKENDS:
        config = graph.GraphConfig(backend=backend)
        period = _SAMPLE_PERIOD_S if backend == "mujoco" else None
        robot = None if role == "trainer" else 0
        for name in graph.graph_values(config, role, robot, period):
            decided.setdefault(name, []).append(backend)
        for name, value in graph.backend_defaults(config, role, sim_params).items():
            backend_default[name] = f"{backend} default: {_fmt(value)}"
    out = {name: "always" if len(backends) == len(graph.BACKENDS) else ", ".join(backends)
           for name, backends in decided.items()}
    for name, text in backend_default.items():
        out[name] = f"{out[name]}; {text}" if name in out else text
    return out


def node_rows(role: str, train_yaml: Path = TRAIN_YAML) -> list[Row]:
    """Every parameter of one node: its dataclass's, then the node-only ones."""
    cls = graph.config_class(role)
    yaml_values = train_yaml_values(role, train_yaml)
    by_run = run_settings(role)
    runtime = runtime_parameters(role) or frozenset()
    rows = [Row(s.name, s.kind, s.default, s.description, yaml_values.get(s.name, dataclasses.MISSING),
                by_run.get(s.name, ""), runtime=s.name in runtime) for s in wire_params.param_specs(cls)]
    for name, default in node_only_parameters(role).items():
        if name not in wire_params.NODE_ONLY_HELP:
            raise ValueError(f"{node_module_path(role).name} declares parameter {name!r}, which is not in "
                             f"{cls.__name__}: describe it in async_naf.wire.params.NODE_ONLY_HELP")
        kind = _kind(default)
        rows.append(Row(name, kind, default, wire_params.NODE_ONLY_HELP[name],
                        yaml_values.get(name, dataclasses.MISSING),
                        by_run.get(name, ""), node_only=True))
    return rows


def _kind(value: Any) -> str:
    """Parameter kind of a node-only default (a scalar), by the dataclass rule (a one-field dataclass of its type)."""
    return wire_params.param_specs(dataclasses.make_dataclass("Value", [("value", type(value))]))[0].kind


def group_descriptions(cls: type) -> dict[str, str]:
    """``{field: description}`` of the nested-dataclass fields of ``cls`` (``noise``, ``door``, ...)."""
    docs = wire_params.field_descriptions(cls)
    groups = {}
    for spec in wire_params.param_specs(cls):
        if len(spec.path) > 1 and spec.path[0] not in groups:
            groups[spec.path[0]] = docs.get(spec.path[0], "")
    return groups


# ------------------------------------------------------------------------------------------- rendering
def _fmt(value: Any) -> str:
    """A value as it is written in a params file (YAML)."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = f"{value:.6g}"
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, str) and not value:
        return '""'
    return str(value)


def _code(value: Any) -> str:
    return "unset" if value is None else f"`{_fmt(value)}`"


def _text(description: str) -> str:
    """Docstring text as Markdown: ``x`` -> `x`, :meth:`x` -> `x`, pipes escaped."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", description)
    text = text.replace("``", "`")
    return text.replace("|", "\\|").strip()


def render_node(role: str, train_yaml: Path = TRAIN_YAML) -> str:
    """The section of one node."""
    executable, module, target = graph.ROLE_NODES[role]
    cls = graph.config_class(role)
    where = "/trainer" if role == "trainer" else f"/robot_<i>/{role}"
    lines = [f"## `{role}`", "",
             (f"Node `{where}` (`ros2 run async_naf {executable}`, `python -m {module}`); "
              f"dataclass `{target.replace(':', '.')}`."), ""]
    runtime = runtime_parameters(role)
    if runtime is None:
        lines += [("Read at start: the node declares none of its dataclass's parameters read-only but does not "
                   "watch them, so a later `ros2 param set` has no effect."), ""]
    elif not runtime:
        lines += ["The dataclass's parameters are all read-only.", ""]
    else:
        lines += [("Read-only except those marked *runtime* (`ros2 param set`, validated through the dataclass; "
                   "a bad value is refused with its reason)."), ""]
    groups = group_descriptions(cls)
    if groups:
        lines += [f"- `{g}.*`: {_text(d)}" for g, d in groups.items()] + [""]
    lines += ["| parameter | kind | default | config/train.yaml | set by the run | description |",
              "|---|---|---|---|---|---|"]
    for row in node_rows(role, train_yaml):
        yaml_cell = "" if row.train_yaml is dataclasses.MISSING else _code(row.train_yaml)
        desc = _text(row.description) + (" *(node only)*" if row.node_only else "") + \
            (" *(runtime)*" if row.runtime else "")
        lines.append(f"| `{row.name}` | {row.kind} | {_code(row.default)} | {yaml_cell} | {row.set_by_run} "
                     f"| {desc} |")
    return "\n".join(lines) + "\n"


def render(train_yaml: Path = TRAIN_YAML) -> str:
    """The whole of ``docs/parameters.md``."""
    parts = [f"<!-- Generated by `{COMMAND}` from the config dataclasses; do not edit by hand. -->", "",
             "# Parameters of the nodes", "", INTRO]
    parts.append("Nodes: " + " · ".join(f"[`{role}`](#{role})" for role in graph.ROLES) + "\n")
    extra = per_robot_entries(train_yaml)
    if extra:
        parts.append("`config/train.yaml` also sets, for one robot only: " + "; ".join(
            f"`{key}`: " + ", ".join(f"`{k}` = {_code(v)}" for k, v in values.items())
            for key, values in extra.items()) + ".\n")
    for task, entries in task_entries(train_yaml).items():
        parts.append(f"`config/train.{task}.yaml` adds, for `--task {task}` / `task:={task}`: " + "; ".join(
            f"`{key}`: " + ", ".join(f"`{k}` = {_code(v)}" for k, v in values.items())
            for key, values in entries.items()) + ".\n")
    parts += [render_node(role, train_yaml) for role in graph.ROLES]
    return "\n".join(parts)


def check(path: Path = DOCS_FILE, train_yaml: Path = TRAIN_YAML) -> bool:
    """True if ``path`` holds exactly what :func:`render` produces."""
    return path.is_file() and path.read_text(encoding="utf-8") == render(train_yaml)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the file is not what the generator writes (write nothing)")
    parser.add_argument("--out", type=Path, default=DOCS_FILE, help=f"output file (default {DOCS_FILE})")
    args = parser.parse_args(argv)
    if args.check:
        if check(args.out):
            return 0
        print(f"{args.out} is out of date: run `{COMMAND}`", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
