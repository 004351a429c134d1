"""The core package must import and work where rclpy does not exist."""
from __future__ import annotations

import subprocess
import sys

# every core module that must import without rclpy; extended as components land
CORE_MODULES = [
    "async_naf",
    "async_naf.run.cli",
    "async_naf.common.resources",
    "async_naf.common.ros_env",
]

_BLOCK_RCLPY = """
import importlib, importlib.abc, pkgutil, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == 'rclpy' or name.startswith('rclpy.') or name.endswith('_msgs') or '_msgs.' in name \\
                or name.startswith('std_srvs'):
            raise ModuleNotFoundError(f'blocked for this test: {name}', name=name)
        return None
sys.meta_path.insert(0, Block())
import async_naf
mods = {m}
for info in pkgutil.walk_packages(async_naf.__path__, 'async_naf.'):
    if not info.name.startswith('async_naf.nodes'):
        mods.add(info.name)
for name in sorted(mods):
    importlib.import_module(name)
assert 'rclpy' not in sys.modules
print('imported', len(mods))
"""


def test_core_imports_with_rclpy_unavailable() -> None:
    code = _BLOCK_RCLPY.replace("{m}", repr(set(CORE_MODULES)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    assert "imported" in out.stdout


def test_blocker_really_blocks_rclpy() -> None:
    """The check above could pass vacuously if the blocker did nothing: prove it blocks."""
    code = _BLOCK_RCLPY.split("import async_naf")[0] + "import rclpy\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "blocked for this test: rclpy" in out.stderr
