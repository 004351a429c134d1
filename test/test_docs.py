"""The parameter reference and the config files against the config dataclasses (one home per parameter).

- ``docs/parameters.md`` is exactly what ``python -m async_naf.run.docs`` generates from the dataclasses;
- every parameter a node params file in ``config/`` sets exists on that node (its dataclass or a parameter
  the node declares itself) and is a valid value. ``config/train.yaml`` is checked more strictly by
  ``test_graph.test_train_yaml_is_valid_for_every_task`` (through the graph, which also refuses node-only
  parameters) and skipped here; ``config/door_angle.yaml`` against the defaults by
  ``test_door_angle_core.test_shipped_yaml_matches_the_config_defaults``;
- ``config/sim.yaml``, which says it lists the sim's defaults, does.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import pytest
import yaml

from async_naf.run import docs, graph
from async_naf.wire.params import build, param_specs

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config"
CHECKED_ELSEWHERE = {"train.yaml"}  # test_graph.test_train_yaml_is_valid_for_every_task


def _flat(params: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _node_entries() -> list[tuple[str, str, str, dict[str, Any]]]:
    """(file, key, role, flat parameters) of every node entry in config/*.yaml (params-file format)."""
    found = []
    for path in sorted(CONFIG.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        if not isinstance(doc, dict):
            continue
        for key, body in doc.items():
            role = str(key).rstrip("/").rpartition("/")[2]
            if role in graph.ROLES and isinstance(body, dict) and "ros__parameters" in body:
                found.append((path.name, str(key), role, _flat(body["ros__parameters"] or {})))
    return found


def test_parameters_md_is_generated() -> None:
    expected = docs.render()
    actual = docs.DOCS_FILE.read_text(encoding="utf-8") if docs.DOCS_FILE.is_file() else ""
    if actual != expected:
        diff = list(difflib.unified_diff(actual.splitlines(), expected.splitlines(), "docs/parameters.md",
                                         "generated", lineterm="", n=0))
        pytest.fail(f"docs/parameters.md is not what the generator produces: run `{docs.COMMAND}`\n"
                    + "\n".join(diff[:20]))


def test_check_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "parameters.md"
    assert docs.main(["--check", "--out", str(out)]) == 1  # missing
    assert docs.main(["--out", str(out)]) == 0
    assert docs.main(["--check", "--out", str(out)]) == 0
    out.write_text(out.read_text().replace("| `naf.lr` |", "| `naf.learning_rate` |"))
    assert docs.main(["--check", "--out", str(out)]) == 1
    assert docs.COMMAND in capsys.readouterr().err


def test_every_node_parameter_is_documented() -> None:
    """Each node's table lists every dataclass parameter and every parameter the node declares itself."""
    text = docs.DOCS_FILE.read_text(encoding="utf-8")
    for role in graph.ROLES:
        section = text.split(f"\n## `{role}`\n", 1)[1].split("\n## ", 1)[0]
        names = [s.name for s in param_specs(graph.config_class(role))] + list(docs.node_only_parameters(role))
        for name in names:
            assert f"\n| `{name}` |" in section, f"{role}: {name} missing from docs/parameters.md"
    assert "diagnostics_period_s" in docs.node_only_parameters("trainer")  # the source scan finds them
    assert set(docs.node_only_parameters("door_angle")) == {"diagnostics_period_s", "time_jump_reset_s"}
    assert {"eval_mode", "exploration_scale", "noise.scale"} <= docs.runtime_parameters("policy")
    assert docs.runtime_parameters("door_angle") == frozenset()


def test_config_files_set_only_parameters_of_their_node() -> None:
    entries = [e for e in _node_entries() if e[0] not in CHECKED_ELSEWHERE]
    assert {e[0] for e in entries} >= {"sim.yaml", "door_angle.yaml"}, "no node params files found in config/"
    for file, key, role, values in entries:
        cls = graph.config_class(role)
        node_only = docs.node_only_parameters(role)
        known = {s.name for s in param_specs(cls)} | set(node_only)
        unknown = sorted(set(values) - known)
        assert not unknown, f"config/{file} {key}: {unknown} are not parameters of the {role} node ({cls.__name__})"
        build(cls, {k: v for k, v in values.items() if k not in node_only})  # valid values (raises otherwise)


def test_sim_yaml_lists_the_defaults() -> None:
    """config/sim.yaml says "Values here are the defaults": every SimConfig parameter with a default, equal
    (within the file's rounding)."""
    (values,) = [v for f, _, role, v in _node_entries() if f == "sim.yaml" and role == "sim"]
    for spec in param_specs(graph.config_class("sim")):
        if spec.default in (None, ()):  # empty = the task's pose: commented out in the file
            assert spec.name not in values, spec.name
            continue
        assert spec.name in values, f"{spec.name} missing from config/sim.yaml"
        default = list(spec.default) if isinstance(spec.default, tuple) else spec.default
        if spec.kind in ("float", "float[]"):
            assert values[spec.name] == pytest.approx(default, rel=1e-3), spec.name
        else:
            assert values[spec.name] == default, spec.name
    assert values["seed"] == docs.node_only_parameters("sim")["seed"]
