"""The import rules of the layout (README, "Where each stage lives"), checked on every import statement.

Layers, in the order data flows (sensor -> policy -> collector -> trainer -> weights -> policy)::

    common   validators, resources, ROS environment defaults, exploration noise   imports nothing else
    wire     message layouts, Batch, policy weights, checkpoints, parameters      imports common
    task     tasks (observation, reward), robot description, kinematics           imports common, wire
    stages   sensing, acting, collecting, learning, sim                           import common, wire, task,
                                                                                  never each other
    nodes    thin rclpy nodes: each maps to one stage                             its stage + the above
    run      graph, launcher, CLI, commands, in-process env, results              anything
    bench    benchmarks                                                           anything

Nothing below ``run`` imports it (only ``run`` and ``bench`` do). Lazy imports inside functions count the
same as top-level ones: the check reads every ``import`` statement of every module.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "async_naf"
SHARED = ("common", "wire", "task")
STAGES = ("sensing", "acting", "collecting", "learning", "sim", "recording")
# node module -> the one stage it serves
NODE_STAGE = {
    "door_angle_node": "sensing",
    "policy_node": "acting",
    "guard_node": "acting",  # the safety layer (acting/safety.py) between the policy and the arm
    "reset_node": "acting",  # episode reset of a ros2_control arm (acting/reset.py)
    "collector_node": "collecting",
    "trainer_node": "learning",
    "sim_node": "sim",
    "recorder_node": "recording",
}
NODE_HELPERS = ("_main", "_msgs", "_params", "_watch", "_local", "__init__")
# modules that run in a policy process: never torch
TORCH_FREE = ("common", "wire", "task", "acting")


def _layer(module: str) -> str:
    """'async_naf.acting.runner' -> 'acting'; 'async_naf' -> ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        out[name] = path
    return out


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import statement in the file, lazy ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name == "async_naf":  # from async_naf import X: X is the module imported
                found += [(node.lineno, f"async_naf.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, name))
    return found


def _allowed(src: str, dst_layer: str) -> bool:
    layer = _layer(src)
    if dst_layer == "" or dst_layer == layer:
        return True
    if layer in ("run", "bench"):
        return True
    if layer == "common":
        return False
    if layer == "wire":
        return dst_layer == "common"
    if layer == "task":
        return dst_layer in ("common", "wire")
    if layer in STAGES:
        return dst_layer in SHARED
    if layer == "nodes":
        leaf = src.rsplit(".", 1)[-1]
        if leaf in NODE_HELPERS:
            return dst_layer in SHARED
        return dst_layer in SHARED or dst_layer == NODE_STAGE.get(leaf)
    return False


def _violations() -> list[str]:
    bad = []
    for module, path in _modules().items():
        for line, name in _imports(path, module):
            if not name.startswith("async_naf"):
                continue
            if not _allowed(module, _layer(name)):
                bad.append(f"{path.relative_to(PKG.parent)}:{line}: {_layer(module)} imports {name}")
    return bad


def test_every_module_belongs_to_a_known_layer() -> None:
    known = {"", *SHARED, *STAGES, "nodes", "run", "bench"}
    unknown = sorted({_layer(m) for m in _modules()} - known)
    assert not unknown, f"modules outside the layout: {unknown} (add the layer to this test and the README)"
    assert set(NODE_STAGE) | set(NODE_HELPERS) >= {p.stem for p in (PKG / "nodes").glob("*.py")}


def test_layers_import_only_what_the_layout_allows() -> None:
    assert _violations() == []


def test_nothing_below_run_imports_the_orchestration_layer() -> None:
    offenders = [v for v in _violations() if "imports async_naf.run" in v]
    assert offenders == []
    # and the rule has teeth: run really is imported by run itself
    assert any(_layer(n) == "run" for m, p in _modules().items() if _layer(m) == "run" for _, n in _imports(p, m))


def test_the_check_detects_a_forbidden_import(tmp_path: Path) -> None:
    """The rule checker is not vacuous: a stage importing another stage, lazily, is found."""
    src = tmp_path / "mod.py"
    src.write_text("def f():\n    from async_naf.learning import replay\n    from ..collecting import collector\n")
    names = [n for _, n in _imports(src, "async_naf.acting.mod")]
    assert names == ["async_naf.learning", "async_naf.collecting"]
    assert not _allowed("async_naf.acting.mod", "learning")
    assert not _allowed("async_naf.acting.mod", "collecting")
    assert not _allowed("async_naf.wire.layouts", "learning")
    assert not _allowed("async_naf.nodes.policy_node", "learning")
    assert not _allowed("async_naf.sim.model", "run")
    assert _allowed("async_naf.nodes.trainer_node", "learning")


@pytest.mark.parametrize("layer", TORCH_FREE)
def test_policy_side_layers_never_import_torch(layer: str) -> None:
    for module, path in _modules().items():
        if _layer(module) != layer:
            continue
        torch_imports = [line for line, name in _imports(path, module) if name.split(".")[0] == "torch"]
        assert not torch_imports, f"{path}: imports torch at lines {torch_imports}"


_POLICY_PROCESS = r"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == 'torch' or name.startswith('torch.'):
            raise ModuleNotFoundError(f'blocked for this test: {name}', name=name)
        return None
sys.meta_path.insert(0, Block())
import numpy as np
import async_naf.nodes.policy_node  # the policy process's module, with rclpy
from async_naf.acting.config import PolicyNodeConfig
from async_naf.acting.runner import PolicyRunner
runner = PolicyRunner(PolicyNodeConfig(task='door_pull'))
runner.load_weights(open(sys.argv[1], 'rb').read())
state = runner.state(np.zeros(7), np.zeros(7), 0.1, 0.0)
obs, action = runner.act(state, np.zeros(runner.task.goal_dim), explore=True)
assert np.all(np.isfinite(action)) and action.shape == (7,)
assert 'torch' not in sys.modules
print('acted without torch')
"""


def test_a_policy_process_acts_without_torch(tmp_path: Path) -> None:
    """Import the policy node, load real weights (made by a torch agent in this process) and act with
    torch blocked from importing in the policy's process."""
    pytest.importorskip("rclpy")
    from async_naf.learning.agents import NAFConfig, make_agent
    from async_naf.task.tasks import make_task

    task = make_task("door_pull")
    agent = make_agent(NAFConfig(obs_dim=task.obs_dim, act_dim=task.act_dim, seed=0))
    weights = tmp_path / "policy.safetensors"
    weights.write_bytes(agent.policy_weights())
    out = subprocess.run([sys.executable, "-c", _POLICY_PROCESS, str(weights)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "acted without torch" in out.stdout


def test_the_torch_blocker_really_blocks() -> None:
    """The policy-process check above could pass vacuously if its blocker did nothing."""
    code = _POLICY_PROCESS.split("import numpy as np")[0] + "import torch\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "blocked for this test: torch" in out.stderr
