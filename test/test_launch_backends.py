"""``ros2 launch async_naf train.launch.py`` on each backend, with launch_pytest (the real launch, launch_ros and
rclpy; the launch file is this checkout's, the nodes are those of the sourced install of async_naf).

- mujoco: a short reach run on one embedded arm ends the launch by itself (the trainer's budget reached) and
  leaves metrics.csv and the final checkpoint in run_dir;
- real: the mock arm (mock_components/GenericSystem with calculate_dynamics) under ros2_control_node: the
  joint_state_broadcaster publishes the 7 arm joints at the episode's start pose, robot_state_publisher the
  arm's TF (robot_0/...), the static transforms place robot_0/world in world and the handle on the leaf;
- gazebo: gz sim (server only) with one robot: gz_ros2_control's joint states, the door IMU through the
  bridge, /clock, and the door leaf's TF from the door_angle estimate (door_state_publisher).

Skipped where launch_pytest is not installed (this development machine: launch, launch_ros and rclpy are not
installable here), and per backend where its ROS packages (controller_manager, ros_gz_sim...) or a colcon
install of async_naf are missing. Never a fake launch.
"""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
import yaml

launch_pytest = pytest.importorskip("launch_pytest", reason="launch_pytest (ROS 2) is not installed here")
launch = pytest.importorskip("launch", reason="launch (ROS 2) is not installed here")
pytest.importorskip("launch_ros", reason="launch_ros (ROS 2) is not installed here")
rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed here")

from launch.actions import IncludeLaunchDescription, RegisterEventHandler  # noqa: E402
from launch.event_handlers import OnShutdown  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
LAUNCH_FILE = REPO / "launch" / "train.launch.py"
ARM_JOINTS = tuple(f"arm_joint_{i}" for i in range(1, 8))


def _installed(*packages: str) -> bool:
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        for package in packages:
            get_package_share_directory(package)
    except PackageNotFoundError:
        return False
    return True


needs_install = pytest.mark.skipif(not _installed("async_naf"),
                                   reason="async_naf is not in the ament index (build and source a colcon install)")


def _config(tmp_path: Path) -> Path:
    """config/train.yaml with a small replay warm-up and no periodic checkpoints (a short run)."""
    doc = yaml.safe_load((REPO / "config" / "train.yaml").read_text())
    doc["/trainer"]["ros__parameters"].update(min_buffer_size=200, checkpoint_every_s=0.0)
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _train_launch(shutdown: threading.Event, reasons: list, **arguments: str):
    """The launch file with arguments, plus an OnShutdown handler that records why the launch ended."""

    def on_shutdown(event, context):
        del context
        reasons.append(getattr(event, "reason", ""))
        shutdown.set()

    return launch.LaunchDescription([
        IncludeLaunchDescription(PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
                                 launch_arguments=arguments.items()),
        RegisterEventHandler(OnShutdown(on_shutdown=on_shutdown)),
        launch_pytest.actions.ReadyToTest(),
    ])


class _Listener:
    """An rclpy node that records what the bringup publishes: joint states, IMU samples, TF frames."""

    def __init__(self, ns: str = "/robot_0") -> None:
        from rclpy.qos import qos_profile_sensor_data
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import Imu, JointState
        from tf2_msgs.msg import TFMessage

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("launch_backend_probe", context=self.context)
        self.joint_states: list = []
        self.imu = 0
        self.imu_frames: set[str] = set()
        self.clock: list[float] = []
        self.frames: set[tuple[str, str]] = set()
        self.got_joints, self.got_imu, self.got_clock = threading.Event(), threading.Event(), threading.Event()
        self.frames_changed = threading.Event()
        self.node.create_subscription(JointState, f"{ns}/joint_states", self._on_js, qos_profile_sensor_data)
        self.node.create_subscription(Imu, f"{ns}/door/imu", self._on_imu, qos_profile_sensor_data)
        self.node.create_subscription(Clock, "/clock", self._on_clock, qos_profile_sensor_data)
        self.node.create_subscription(TFMessage, "/tf", self._on_tf, 100)
        from rclpy.qos import DurabilityPolicy, QoSProfile

        self.node.create_subscription(TFMessage, "/tf_static", self._on_tf,
                                      QoSProfile(depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        from rclpy.executors import SingleThreadedExecutor

        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._executor.spin, daemon=True)
        self._thread.start()

    def _on_js(self, msg) -> None:
        self.joint_states.append((list(msg.name), list(msg.position)))
        self.got_joints.set()

    def _on_imu(self, msg) -> None:
        self.imu += 1
        self.imu_frames.add(msg.header.frame_id)
        self.got_imu.set()

    def _on_clock(self, msg) -> None:
        self.clock.append(msg.clock.sec + 1e-9 * msg.clock.nanosec)
        self.got_clock.set()

    def _on_tf(self, msg) -> None:
        for t in msg.transforms:
            self.frames.add((t.header.frame_id, t.child_frame_id))
        self.frames_changed.set()

    def wait_for_frames(self, wanted: set[tuple[str, str]], timeout_s: float) -> set[tuple[str, str]]:
        """Block until every (parent, child) of ``wanted`` was seen or the timeout; the missing ones."""
        import time

        end = time.monotonic() + timeout_s
        while not wanted <= self.frames and time.monotonic() < end:
            self.frames_changed.wait(max(0.0, end - time.monotonic()))
            self.frames_changed.clear()
        return wanted - self.frames

    def close(self) -> None:
        self._executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


# ---------------------------------------------------------------------- backend mujoco
MUJOCO_SHUTDOWN, MUJOCO_REASONS = threading.Event(), []
MUJOCO_RUN: dict[str, Path] = {}


@launch_pytest.fixture
def mujoco_launch(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("mujoco") / "run"
    MUJOCO_RUN["run_dir"] = run_dir
    return _train_launch(MUJOCO_SHUTDOWN, MUJOCO_REASONS, backend="mujoco", task="reach", workers="1", seed="2",
                         run_dir=str(run_dir), max_env_steps="600", max_wall_s="240",
                         config=str(_config(run_dir.parent)))


@needs_install
@pytest.mark.launch(fixture=mujoco_launch)
def test_mujoco_backend_trains_and_ends_the_launch():
    assert MUJOCO_SHUTDOWN.wait(timeout=300), "the launch did not end by itself (trainer budget reached)"
    assert any("/trainer finished" in r for r in MUJOCO_REASONS), MUJOCO_REASONS
    yield
    run_dir = MUJOCO_RUN["run_dir"]
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert len(rows) > 1, "no episode in metrics.csv"
    assert (run_dir / "checkpoints" / "final.safetensors").is_file()


# ---------------------------------------------------------------------- backend real (mock hardware)
REAL_SHUTDOWN, REAL_REASONS = threading.Event(), []


@launch_pytest.fixture
def real_launch(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("real") / "run"
    return _train_launch(REAL_SHUTDOWN, REAL_REASONS, backend="real", task="reach", workers="1",
                         run_dir=str(run_dir), spawn_poses="1.0 2.0 0.0 0.5", controller_manager_timeout="60")


@needs_install
@pytest.mark.skipif(not _installed("controller_manager", "joint_state_broadcaster", "forward_command_controller",
                                   "robot_state_publisher", "tf2_ros"),
                    reason="ros2_control / robot_state_publisher / tf2_ros packages are not installed")
@pytest.mark.launch(fixture=real_launch)
def test_real_backend_brings_up_the_mock_arm_with_tf():
    from async_naf.run.graph import arm_start_pose

    listener = _Listener()
    try:
        assert listener.got_joints.wait(timeout=120), "no joint_states from the joint_state_broadcaster"
        names, positions = listener.joint_states[-1]
        assert set(ARM_JOINTS) <= set(names)
        start, _ = arm_start_pose("reach", {})
        by_name = dict(zip(names, positions, strict=True))
        # the mock arm starts at the episode's start pose (initial_positions), give or take the reset's motion
        assert [by_name[j] for j in ARM_JOINTS] == pytest.approx(list(start), abs=0.5)
        missing = listener.wait_for_frames({("world", "robot_0/world"),
                                            ("robot_0/door_leaf_link", "robot_0/door_handle_link"),
                                            ("robot_0/world", "robot_0/door_frame_link")}, timeout_s=60)
        assert not missing, f"TF frames never published: {missing}"
        assert not REAL_SHUTDOWN.is_set(), REAL_REASONS  # a failed spawner would have ended the launch
    finally:
        listener.close()


# ---------------------------------------------------------------------- backend gazebo
GZ_SHUTDOWN, GZ_REASONS = threading.Event(), []


@launch_pytest.fixture
def gazebo_launch(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("gazebo") / "run"
    return _train_launch(GZ_SHUTDOWN, GZ_REASONS, backend="gazebo", task="door_pull", workers="1",
                         run_dir=str(run_dir), gui="false")


@needs_install
@pytest.mark.skipif(not _installed("ros_gz_sim", "ros_gz_bridge", "gz_ros2_control", "controller_manager",
                                   "robot_state_publisher", "tf2_ros"),
                    reason="Gazebo (ros_gz_sim, ros_gz_bridge, gz_ros2_control) is not installed")
@pytest.mark.launch(fixture=gazebo_launch)
def test_gazebo_backend_streams_joints_imu_clock_and_door_tf():
    listener = _Listener()
    try:
        assert listener.got_clock.wait(timeout=120), "no /clock from the Gazebo bridge"
        assert listener.got_joints.wait(timeout=120), "no joint_states from gz_ros2_control's broadcaster"
        assert set(ARM_JOINTS) <= set(listener.joint_states[-1][0])
        assert listener.got_imu.wait(timeout=60), "no door IMU samples through the bridge"
        # the door leaf on TF: door_angle's door_hinge estimate through door_state_publisher
        missing = listener.wait_for_frames({("robot_0/door_frame_link", "robot_0/door_leaf_link"),
                                            ("world", "robot_0/world"),
                                            ("robot_0/door_leaf_link", "robot_0/door_imu_link")}, timeout_s=60)
        assert not missing, f"TF frames never published: {missing}"
        assert listener.imu_frames == {"robot_0/door_imu_link"}  # the IMU's frame as TF names it
        assert not GZ_SHUTDOWN.is_set(), GZ_REASONS  # create and the spawner succeeded
    finally:
        listener.close()
