"""The robot description: xacro expansion, check_urdf, ros2_control tags, and URDF <-> MuJoCo <-> pinocchio
consistency (names, order, limits, forward kinematics)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import mujoco
import numpy as np
import pytest

from async_naf.sim import ARM_JOINT_NAMES, ArmDoorSim, SimConfig
from async_naf.sim.model import build_model, expand_urdf, urdf_joints, xacro_mappings
from async_naf.task.kinematics import ArmKinematics

REPO = Path(__file__).resolve().parent.parent
XACRO = REPO / "urdf" / "arm_door.urdf.xacro"
CHECK_URDF = shutil.which("check_urdf") or str(Path(sys.executable).parent / "check_urdf")
DOOR_JOINTS = ("door_hinge", "door_handle")


def _expand(**args: str) -> str:
    return expand_urdf(dict({"controllers_file": "/tmp/controllers.yaml"}, **args))


@pytest.fixture(scope="module")
def urdf_mujoco() -> str:
    return _expand(mode="mujoco")


@pytest.mark.parametrize("mode", ["mujoco", "gazebo", "real"])
@pytest.mark.parametrize("variant", [{}, {"door_hinge_left": "true", "door_opening": "push"}])
def test_check_urdf_passes(tmp_path: Path, mode: str, variant: dict) -> None:
    if not Path(CHECK_URDF).exists():
        pytest.skip("check_urdf (urdfdom tools: Debian liburdfdom-tools or cmeel-urdfdom) is not installed")
    path = tmp_path / "arm_door.urdf"
    path.write_text(_expand(mode=mode, **variant))
    out = subprocess.run([CHECK_URDF, str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Successfully Parsed XML" in out.stdout
    assert "root Link: world" in out.stdout


def test_xacro_command_line_tool_expands_the_same(urdf_mujoco: str) -> None:
    xacro_bin = Path(sys.executable).parent / "xacro"
    if not xacro_bin.exists():
        pytest.skip("the xacro command-line tool is not installed")
    out = subprocess.run([str(xacro_bin), str(XACRO)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    names = lambda xml: [j.get("name") for j in ET.fromstring(xml).findall("joint")]  # noqa: E731
    assert names(out.stdout) == names(urdf_mujoco)


def test_arm_has_realistic_limits_and_inertias(urdf_mujoco: str) -> None:
    joints = {j.name: j for j in urdf_joints(urdf_mujoco)}
    assert [n for n in joints if n.startswith("arm_")] == list(ARM_JOINT_NAMES)
    for name in ARM_JOINT_NAMES:
        j = joints[name]
        assert -3.2 < j.lower < 0 < j.upper < 3.2
        assert 1.0 < j.velocity < 2.5  # rad/s, iiwa-class
        assert 30 <= j.effort <= 350  # N m
    root = ET.fromstring(urdf_mujoco)
    total = 0.0
    for link in root.findall("link"):
        inertial = link.find("inertial")
        if inertial is None:
            continue
        mass = float(inertial.find("mass").get("value"))
        i = inertial.find("inertia")
        ixx, iyy, izz = (float(i.get(k)) for k in ("ixx", "iyy", "izz"))
        assert mass > 0 and ixx > 0 and iyy > 0 and izz > 0
        assert ixx + iyy >= izz * 0.999 and iyy + izz >= ixx * 0.999 and ixx + izz >= iyy * 0.999  # triangle
        if link.get("name", "").startswith("arm_"):
            total += mass
            assert link.find("collision") is not None, f"{link.get('name')} has no collision geometry"
    assert 15.0 < total < 35.0  # kg, a 7-DoF arm of this class
    for name in DOOR_JOINTS:
        assert joints[name].lower == 0.0 and joints[name].upper > 0.0


def test_ros2_control_tags_gazebo_and_real() -> None:
    gz = ET.fromstring(_expand(mode="gazebo", namespace="/robot_0"))
    systems = gz.findall("ros2_control")
    assert len(systems) == 1
    assert systems[0].find("hardware/plugin").text == "gz_ros2_control/GazeboSimSystem"
    urdf = {j.name: j for j in urdf_joints(ET.tostring(gz, encoding="unicode"))}
    joints = systems[0].findall("joint")
    assert [j.get("name") for j in joints] == list(ARM_JOINT_NAMES)
    for j in joints:
        cmd = j.findall("command_interface")
        assert [c.get("name") for c in cmd] == ["velocity"]
        limits = {p.get("name"): float(p.text) for p in cmd[0].findall("param")}
        assert limits["max"] == pytest.approx(urdf[j.get("name")].velocity)
        assert limits["min"] == pytest.approx(-urdf[j.get("name")].velocity)
        assert [s.get("name") for s in j.findall("state_interface")] == ["position", "velocity"]
    plugins = {p.get("filename"): p for p in gz.findall("gazebo/plugin")}
    ctrl = plugins["gz_ros2_control-system"]
    assert ctrl.get("name") == "gz_ros2_control::GazeboSimROS2ControlPlugin"
    assert ctrl.find("parameters").text == "/tmp/controllers.yaml"
    assert ctrl.find("ros/namespace").text == "/robot_0"
    assert "gz-sim-imu-system" not in plugins  # once per world: worlds/async_naf.sdf (test_graph.py)
    imu = [g for g in gz.findall("gazebo") if g.get("reference") == "door_imu_link"]
    assert imu and imu[0].find("sensor").get("type") == "imu"
    assert imu[0].find("sensor/gz_frame_id").text == "door_imu_link"

    real = ET.fromstring(_expand(mode="real", hardware_plugin="vendor_driver/ArmSystem", robot_ip="10.0.0.2"))
    hw = real.find("ros2_control/hardware")
    assert hw.find("plugin").text == "vendor_driver/ArmSystem"
    assert hw.find("param").text == "10.0.0.2"
    assert real.find("gazebo/plugin") is None
    assert ET.fromstring(_expand(mode="mujoco")).find("ros2_control") is None


@pytest.mark.parametrize("hinge_left,opening", [(False, "pull"), (True, "push"), (True, "pull")])
def test_urdf_and_mujoco_agree_on_joints(hinge_left: bool, opening: str) -> None:
    """Names, order and limits of every movable joint are the same in the URDF and the compiled model."""
    cfg = SimConfig()
    compiled = build_model(cfg, hinge_left=hinge_left) if opening == cfg.door_opening else None
    if compiled is None:
        compiled = build_model(SimConfig(task="door_push"), hinge_left=hinge_left)
    m = compiled.model
    urdf = urdf_joints(compiled.urdf_xml)
    assert [m.joint(i).name for i in range(m.njnt)] == [j.name for j in urdf]
    assert [j.name for j in urdf] == list(ARM_JOINT_NAMES) + list(DOOR_JOINTS)
    for i, j in enumerate(urdf):
        assert m.jnt_limited[i] == 1
        np.testing.assert_allclose(m.jnt_range[i], [j.lower, j.upper], atol=1e-9)
        assert m.dof_damping[m.jnt_dofadr[i]] == pytest.approx(j.damping)
        assert m.dof_frictionloss[m.jnt_dofadr[i]] == pytest.approx(j.friction)
    # actuators: one velocity servo per arm joint, in order, bounded by the URDF velocity and effort limits
    assert m.nu == 7
    for k, name in enumerate(ARM_JOINT_NAMES):
        j = urdf[k]
        assert m.joint(int(m.actuator_trnid[k, 0])).name == name
        np.testing.assert_allclose(m.actuator_ctrlrange[k], [-j.velocity, j.velocity])
        np.testing.assert_allclose(m.actuator_forcerange[k], [-j.effort, j.effort])
        np.testing.assert_allclose(m.actuator_actrange[k], [j.lower, j.upper])
    np.testing.assert_allclose(compiled.velocity_limits, [j.velocity for j in urdf[:7]])


def test_pinocchio_fk_matches_mujoco_within_1mm() -> None:
    sim = ArmDoorSim(SimConfig(task="reach"), seed=0)
    kin = ArmKinematics(sim.compiled.urdf_xml)
    np.testing.assert_allclose(kin.velocity_limits, sim.velocity_limits)
    np.testing.assert_allclose(np.c_[kin.lower, kin.upper], sim.position_limits)
    m = sim.model
    d = mujoco.MjData(m)
    rng = np.random.default_rng(7)
    for _ in range(200):
        q = rng.uniform(sim.position_limits[:, 0], sim.position_limits[:, 1])
        d.qpos[sim.compiled.arm_qpos] = q
        mujoco.mj_kinematics(m, d)
        pos, rot = kin.ee_pose(q)
        assert np.linalg.norm(pos - d.site_xpos[sim.compiled.hook_site]) < 1e-3
        np.testing.assert_allclose(rot, d.site_xmat[sim.compiled.hook_site].reshape(3, 3), atol=1e-6)
    # and the default expansion (no URDF given) is the same arm
    q = rng.uniform(sim.position_limits[:, 0], sim.position_limits[:, 1])
    np.testing.assert_allclose(ArmKinematics().ee_position(q), kin.ee_position(q), atol=1e-12)
    # many rows at once (bag conversion): each row's bits as one at a time
    qs = rng.uniform(sim.position_limits[:, 0], sim.position_limits[:, 1], (50, 7))
    assert np.array_equal(kin.ee_positions(qs), np.array([kin.ee_position(row) for row in qs]))
    assert kin.ee_positions(np.zeros((0, 7))).shape == (0, 3)


def test_kinematics_rejects_bad_input() -> None:
    kin = ArmKinematics()
    with pytest.raises(ValueError):
        kin.ee_position(np.zeros(6))
    with pytest.raises(ValueError):
        kin.ee_position(np.array([0, 0, 0, np.nan, 0, 0, 0]))
    with pytest.raises(ValueError):
        kin.ee_positions(np.zeros(7))  # one row must be (1, 7)
    with pytest.raises(ValueError):
        kin.ee_positions(np.array([[0.0] * 7, [0, 0, 0, np.inf, 0, 0, 0]]))
    with pytest.raises(ValueError):
        ArmKinematics(_expand(mode="mujoco"), ee_frame="no_such_frame")


def test_imu_frame_z_is_the_opening_axis() -> None:
    """The IMU's z axis is the hinge axis, oriented so that opening reads as +gyro z, for every door variant."""
    for task, side in [("door_pull", "auto"), ("door_push", "auto"), ("door_pull", "left"), ("door_push", "right")]:
        cfg = SimConfig(task=task, imu={"enabled": False})
        cfg.door.hinge_side = side
        sim = ArmDoorSim(cfg, seed=0)
        d = sim.data
        d.qpos[sim.compiled.hinge_qpos] = 0.3
        d.qvel[sim.compiled.hinge_dof] = 0.5
        mujoco.mj_forward(sim.model, d)
        gyro = d.sensordata[sim.compiled.gyro_adr:sim.compiled.gyro_adr + 3]
        np.testing.assert_allclose(gyro, [0.0, 0.0, 0.5], atol=1e-9)
        # and opening moves the handle toward the robot for pull, away for push
        handle_x = d.xpos[sim.model.body("door_handle_link").id][0]
        assert (handle_x < cfg.door.front_x - 0.1) == (cfg.door_opening == "pull"), (task, side)
    assert xacro_mappings(SimConfig().door, False, "pull")["door_opening"] == "pull"


# ---------------------------------------------------------------------- Gazebo specifics (issue 11, section 4)
def test_gazebo_model_collides_with_itself() -> None:
    """Defect 2: arm and door are one Gazebo model; gz-physics' dartsim checks contacts between a model's own
    links only with the model's <self_collide> (setSelfCollisionCheck(model.SelfCollide())), which a <gazebo>
    block without reference puts into <model>. Only the gazebo description has it."""
    gz = ET.fromstring(_expand(mode="gazebo", namespace="/robot_0"))
    model_level = [g for g in gz.findall("gazebo") if g.get("reference") is None and g.find("self_collide") is not None]
    assert len(model_level) == 1 and model_level[0].find("self_collide").text.strip() == "true"
    for mode in ("mujoco", "real"):
        assert ET.fromstring(_expand(mode=mode)).find("gazebo/self_collide") is None


def _contacts(urdf: str, q: list[float]) -> set[tuple[str, str]]:
    """Body pairs in contact when every geom may touch every other (as DART with self collision: only links
    joined by a joint are skipped; MuJoCo skips parent-child bodies), the arm at q, the door closed."""
    from async_naf.sim.model import _with_mujoco_compiler

    model = mujoco.MjSpec.from_string(_with_mujoco_compiler(urdf)).compile()
    model.geom_contype[:] = 1
    model.geom_conaffinity[:] = 1
    data = mujoco.MjData(model)
    for name, value in zip(ARM_JOINT_NAMES, q, strict=True):
        data.qpos[model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)]] = value
    mujoco.mj_forward(model, data)
    body = lambda g: mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, model.geom_bodyid[g])  # noqa: E731
    return {tuple(sorted((body(c.geom1), body(c.geom2)))) for c in data.contact[:data.ncon]}


@pytest.mark.parametrize("task", ["door_pull", "door_push"])
def test_self_collision_leaves_the_start_pose_free(task: str) -> None:
    """With self collision on (defect 2), the spawned model must not start in contact with itself: at the
    episode's start pose (the initial_positions the bringup gives Gazebo) no two links touch; the same check
    finds the contacts of an arm reaching through a door placed too close (it can fail)."""
    from async_naf.run.graph import description_mappings

    mappings = description_mappings(task, {})
    start = [float(v) for v in mappings["initial_positions"].split()]
    assert _contacts(_expand(mode="mujoco", **mappings), start) == set()
    too_close = _contacts(_expand(mode="mujoco", **{**mappings, "door_front_x": "0.3"}), start)
    assert any(a.startswith("arm_") and b.startswith("door_") for a, b in too_close), too_close


def test_door_leaf_collision_clears_the_floor() -> None:
    """Defect 11: the leaf's collision box starts above z = 0 (the ground plane of worlds/async_naf.sdf), its
    top edge and its visual unchanged."""
    for variant in ({}, {"door_hinge_left": "true", "door_opening": "push"}):
        root = ET.fromstring(_expand(mode="gazebo", **variant))
        leaf = next(link for link in root.findall("link") if link.get("name") == "door_leaf_link")
        height = 1.0  # door_height default (m); the leaf frame's z = 0 is the leaf's lower edge = the floor
        frame = next(j for j in root.findall("joint") if j.get("name") == "door_frame_joint")
        assert float(frame.find("origin").get("xyz").split()[2]) == 0.0
        for kind, bottom_min, bottom_max in (("collision", 0.002, 0.02), ("visual", 0.0, 0.0)):
            element = leaf.find(kind)
            z = float(element.find("origin").get("xyz").split()[2])
            size_z = float(element.find("geometry/box").get("size").split()[2])
            assert bottom_min <= z - size_z / 2 <= bottom_max, (kind, z, size_z)
            assert z + size_z / 2 == pytest.approx(height)


def test_xacro_command_line_gazebo_needs_no_ament_index(tmp_path: Path) -> None:
    """Defect 10: the documented `xacro urdf/arm_door.urdf.xacro mode:=gazebo namespace:=/robot_0` works
    without controllers_file:= and without ROS: the default is the config/controllers.yaml beside urdf/, as an
    absolute path whatever the working directory."""
    xacro_bin = Path(sys.executable).parent / "xacro"
    if not xacro_bin.exists():
        pytest.skip("the xacro command-line tool is not installed")
    for cwd, path in ((REPO, "urdf/arm_door.urdf.xacro"), (tmp_path, str(XACRO))):
        out = subprocess.run([str(xacro_bin), path, "mode:=gazebo", "namespace:=/robot_0"], cwd=cwd,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        parameters = ET.fromstring(out.stdout).find(".//plugin[@filename='gz_ros2_control-system']/parameters")
        default = Path(parameters.text.strip())
        assert default.is_absolute() and default.resolve() == (REPO / "config" / "controllers.yaml").resolve()


@pytest.mark.parametrize("variant", [{}, {"door_hinge_left": "true", "door_opening": "push"}])
def test_every_link_gazebo_models_has_a_mass(variant: dict) -> None:
    """sdformat's URDF parser (gazebosim/sdformat src/parser_urdf.cc, CreateSDF) writes no SDF link for a link
    without a positive <inertial> mass, unless a fixed joint to a parent other than ``world`` lumps it into that
    parent. Its children's joints then name a parent link that does not exist, and the model does not load.
    The door frame, fixed to ``world`` without an inertial, was such a link."""
    urdf = ET.fromstring(_expand(mode="gazebo", namespace="/robot_0", **variant))
    joint_of = {j.find("child").get("link"): j for j in urdf.findall("joint")}
    unmodelled = []
    for link in urdf.findall("link"):
        name = link.get("name")
        joint = joint_of.get(name)
        if name == "world" or (joint is not None and joint.get("type") == "fixed"
                               and joint.find("parent").get("link") != "world"):
            continue  # the world, or lumped into its parent
        mass = link.find("inertial/mass")
        if mass is None or not float(mass.get("value")) > 0.0:
            unmodelled.append(name)
    assert unmodelled == []
