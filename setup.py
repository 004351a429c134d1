"""ament_python package for async_naf.

The package ``async_naf`` (directory ``async_naf/``) holds the ROS-free core and, in ``async_naf/nodes/``,
the thin rclpy nodes: every import path matches its folder, so ``colcon build --symlink-install`` and
``pip install -e .`` work alike (no ``package_dir`` mapping, which ``setup.py develop`` would ignore).
``launch/``, ``urdf/``, ``worlds/`` and ``config/`` go to ``share/async_naf`` so that ``ros2 launch async_naf ...``
finds them; ``urdf/`` and ``config/`` stay siblings there as in the source tree (the xacro's default controllers
file is ``urdf/../config/controllers.yaml``).
"""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "async_naf"

NODES = {
    # console script name: module in async_naf/nodes/
    "sim_node": "sim_node",
    "door_angle_node": "door_angle_node",
    "policy_node": "policy_node",
    "collector_node": "collector_node",
    "trainer_node": "trainer_node",
    "recorder_node": "recorder_node",
    "guard_node": "guard_node",
    "reset_node": "reset_node",
}

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["py.typed"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/urdf", glob("urdf/*.xacro")),
        (f"share/{PACKAGE}/worlds", glob("worlds/*.sdf")),
        (f"share/{PACKAGE}/rviz", glob("rviz/*.rviz")),
    ],
    python_requires=">=3.11",  # subprocess.Popen(process_group=...) in run/launcher.py
    install_requires=["setuptools"],
    # optional: async-naf bag convert --format minari (Minari offline-RL datasets); the core never imports it
    extras_require={"minari": ["minari==0.5.4"]},
    zip_safe=True,
    maintainer="async_naf maintainers",
    maintainer_email="maintainers@async-naf.invalid",
    description="Asynchronous NAF for robot arms over ROS 2",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [f"{PACKAGE.replace('_', '-')} = {PACKAGE}.run.cli:main"]
        + [f"{name} = {PACKAGE}.nodes.{module}:main" for name, module in NODES.items()]
        + [f"robot_container = {PACKAGE}.run.container:main"],  # composition:=robot (launch/train.launch.py)
    },
)
