"""Packaging for a ROS 2 (Jazzy) install: every package.xml key resolves with rosdep, colcon's normal and
symlink (``setup.py develop``) installs find every console script's module, and the installed share/ holds the
files the launch path reads. Static checks on the files (no rosdep, colcon or network here)."""
from __future__ import annotations

import ast
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------- what rosdep can resolve on Jazzy
# Copied from ros/rosdistro, jazzy/distribution.yaml at commit 0006cdad667d515a8328dae16964acbaf8fe1ad7
# (https://github.com/ros/rosdistro/blob/0006cdad667d515a8328dae16964acbaf8fe1ad7/jazzy/distribution.yaml):
# the released packages of the repositories async_naf uses (repository -> release packages; a repository
# without a packages list releases one package of its own name). rosdep resolves a ROS package key from this file.
JAZZY_RELEASED: dict[str, tuple[str, ...]] = {
    "ament_index": ("ament_index_cpp", "ament_index_python"),
    "ament_lint": ("ament_copyright", "ament_flake8", "ament_lint", "ament_lint_auto", "ament_lint_common",
                   "ament_pep257", "ament_xmllint", "ament_mypy", "ament_pycodestyle", "ament_pyflakes"),
    "common_interfaces": ("actionlib_msgs", "common_interfaces", "diagnostic_msgs", "geometry_msgs", "nav_msgs",
                          "sensor_msgs", "sensor_msgs_py", "shape_msgs", "std_msgs", "std_srvs", "stereo_msgs",
                          "trajectory_msgs", "visualization_msgs"),
    "gz_ros2_control": ("gz_ros2_control", "gz_ros2_control_demos"),
    "launch": ("launch", "launch_pytest", "launch_testing", "launch_testing_ament_cmake", "launch_xml",
               "launch_yaml"),
    "launch_ros": ("launch_ros", "launch_testing_ros", "ros2launch"),
    "pinocchio": ("pinocchio",),
    "rcl_interfaces": ("action_msgs", "builtin_interfaces", "composition_interfaces", "lifecycle_msgs",
                       "rcl_interfaces", "rosgraph_msgs", "service_msgs", "statistics_msgs", "test_msgs",
                       "type_description_interfaces"),
    "rclpy": ("rclpy",),
    "robot_state_publisher": ("robot_state_publisher",),
    "ros2_control": ("controller_interface", "controller_manager", "controller_manager_msgs", "hardware_interface",
                     "hardware_interface_testing", "joint_limits", "ros2_control", "ros2_control_test_assets",
                     "ros2controlcli", "rqt_controller_manager", "transmission_interface"),
    "ros2_controllers": ("forward_command_controller", "joint_state_broadcaster", "joint_trajectory_controller",
                         "position_controllers", "velocity_controllers", "effort_controllers",
                         "imu_sensor_broadcaster", "ros2_controllers"),
    "ros_gz": ("ros_gz", "ros_gz_bridge", "ros_gz_image", "ros_gz_interfaces", "ros_gz_sim", "ros_gz_sim_demos"),
    "xacro": ("xacro",),
    # added for the TF / RViz bringup (only the packages used): released for ROS 2 from the geometry2 and rviz
    # repositories (ros2-gbp/geometry2-release, ros2-gbp/rviz-release); not re-copied from the pinned file above
    "geometry2": ("tf2", "tf2_ros", "tf2_ros_py"),
    "rviz": ("rviz2", "rviz_common", "rviz_default_plugins"),
}
# Copied from ros/rosdistro, rosdep/python.yaml at commit 000730dc5f916eb05b15d3f183bd1c17bf1b4722
# (https://github.com/ros/rosdistro/blob/000730dc5f916eb05b15d3f183bd1c17bf1b4722/rosdep/python.yaml): keys with
# an Ubuntu (noble: '*') and Debian rule.
ROSDEP_PYTHON_KEYS = frozenset({
    "python3-numpy", "python3-yaml", "python3-scipy", "python3-matplotlib", "python3-transforms3d",
    "python3-pytest", "python3-pytest-timeout", "python3-hypothesis", "python3-tensorboardX-pip",
})
# Looked for in the same python.yaml and absent (the old package.xml used some): pip-only dependencies, installed
# from requirements.txt after rosdep. python3-pytorch-pip exists only as an end-of-life migration alias.
NOT_ROSDEP_KEYS = frozenset({
    "python3-torch", "python3-safetensors", "python3-safetensors-pip", "python3-mujoco", "python3-mujoco-pip",
    "python3-rosbags", "python3-rosbags-pip", "python3-tensorboard", "tensorboard", "python3-pinocchio",
})
PIP_ONLY = ("torch", "safetensors", "mujoco", "rosbags", "tensorboard")
DEPEND_TAGS = ("depend", "build_depend", "buildtool_depend", "exec_depend", "test_depend", "build_export_depend",
               "buildtool_export_depend", "doc_depend")


def _package_keys() -> dict[str, str]:
    root = ET.parse(REPO / "package.xml").getroot()
    return {e.text.strip(): e.tag for tag in DEPEND_TAGS for e in root.iter(tag) if e.text}


def test_every_package_xml_key_resolves_on_jazzy() -> None:
    """rosdep install --from-paths src must succeed on Jazzy: every key is a released Jazzy package or a
    rosdep/python.yaml key (lists above, copied from rosdistro with their commits)."""
    released = {p for packages in JAZZY_RELEASED.values() for p in packages}
    assert not released & ROSDEP_PYTHON_KEYS
    keys = _package_keys()
    assert keys, "package.xml lists no dependencies"
    unknown = sorted(k for k in keys if k not in released and k not in ROSDEP_PYTHON_KEYS)
    assert not unknown, f"package.xml keys that rosdep cannot resolve on Jazzy: {unknown}"
    assert not set(keys) & NOT_ROSDEP_KEYS
    assert "moveit_py" not in keys  # optional (the reset node's use_moveit), not a dependency
    assert "ament_python" not in keys  # a build type, not a package
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.find("export/build_type").text == "ament_python"


def test_pip_only_dependencies_are_in_requirements() -> None:
    """What rosdep cannot install is documented in package.xml and pinned for pip (torch by the Makefile)."""
    text = (REPO / "package.xml").read_text()
    for name in PIP_ONLY:
        assert name in text, f"package.xml does not say how {name} is installed"
    requirements = (REPO / "requirements.txt").read_text()
    pinned = set(re.findall(r"^([A-Za-z0-9_.-]+)==", requirements, re.M))
    for name in PIP_ONLY:
        if name == "torch":
            assert "torch==" in (REPO / "Makefile").read_text()
        else:
            assert name in pinned, f"{name} is not pinned in requirements.txt"
    assert "pin" in pinned  # pinocchio's PyPI name, for installs without ROS


# ---------------------------------------------------------------------- setup.py: colcon's two install modes
def _setup_call() -> ast.Call:
    tree = ast.parse((REPO / "setup.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup"]
    assert len(calls) == 1
    return calls[0]


def test_console_scripts_modules_live_in_the_package_tree() -> None:
    """colcon build --symlink-install runs ``setup.py develop`` from a build directory of symlinks to the source
    tree, which ignores any ``package_dir`` mapping: every console script's module must be importable from the
    source root as is (async_naf/nodes/<module>.py), and find_packages must include it for the normal install."""
    call = _setup_call()
    keywords = {k.arg for k in call.keywords}
    assert "package_dir" not in keywords
    source = (REPO / "setup.py").read_text()
    nodes = ast.literal_eval(next(n.value for n in ast.walk(ast.parse(source))
                                  if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "NODES"))
    modules = [f"async_naf.nodes.{m}" for m in nodes.values()] + ["async_naf.run.cli", "async_naf.run.container"]
    for module in modules:
        assert (REPO / (module.replace(".", "/") + ".py")).is_file(), module
        package = module.rsplit(".", 1)[0]
        assert (REPO / package.replace(".", "/") / "__init__.py").is_file(), f"{package} is not a package"
    from async_naf.run.graph import CONTAINER_EXECUTABLE, ROLE_NODES

    scripts = set(nodes) | {CONTAINER_EXECUTABLE}
    assert f'"{CONTAINER_EXECUTABLE} = ' in source or f"{CONTAINER_EXECUTABLE} = " in source
    assert {script for script, _, _ in ROLE_NODES.values()} <= scripts  # every node the graph starts
    cfg = (REPO / "setup.cfg").read_text()
    # ament_python convention: console scripts in lib/<package> where `ros2 run` / launch_ros look for them
    assert "script_dir=$base/lib/async_naf" in cfg and "install_scripts=$base/lib/async_naf" in cfg


def test_data_files_cover_what_the_launch_path_reads() -> None:
    """share/async_naf gets launch/, config/, urdf/ and worlds/ (urdf/ and config/ side by side: the xacro's
    default controllers file is urdf/../config/controllers.yaml) and nothing that does not exist."""
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, timeout=30, check=True)
    tracked = set(out.stdout.split())
    for rel in ("worlds/async_naf.sdf", "config/controllers.yaml", "urdf/arm_door.urdf.xacro",
                "launch/train.launch.py", "resource/async_naf", "package.xml"):
        assert rel in tracked, rel
    source = (REPO / "setup.py").read_text()
    assert "rviz/async_naf.rviz" in tracked
    for pattern in ('glob("launch/*.py")', 'glob("config/*.yaml")', 'glob("urdf/*.xacro")', 'glob("worlds/*.sdf")',
                    'glob("rviz/*.rviz")'):
        assert pattern in source, pattern
    assert "urdf/*.xml" not in source  # there is no urdf/mujoco_extras.xml (nor any urdf/*.xml)


def test_no_reference_to_files_that_do_not_exist() -> None:
    """Defect 12: urdf/mujoco_extras.xml never existed (the MuJoCo extras are async_naf/sim/model.py)."""
    out = subprocess.run(["git", "grep", "-l", "mujoco_extras.xml"], cwd=REPO, capture_output=True, text=True,
                         timeout=30)
    assert out.stdout.split() == ["test/test_packaging.py"], out.stdout
