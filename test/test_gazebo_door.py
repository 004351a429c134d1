"""The door in Gazebo behaves like the embedded model's: the latch (one rule, async_naf.task.latch, used by
MuJoCo and by the gz-sim Python system async_naf.task.gz_latch) and the door IMU's rate and noise (the Gazebo
sensor's sdformat <noise> from the same ImuNoiseConfig). Checked on the expanded description here; the
system itself runs inside gz sim (test at the end, skipped where gz-sim's Python bindings are missing)."""
from __future__ import annotations

import importlib
import itertools
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from async_naf.run import graph
from async_naf.sim import ArmDoorSim, DoorConfig, ImuNoiseConfig, SimConfig
from async_naf.sim.model import IMU_BIAS_CORRELATION_TIME_S, imu_xacro_mappings, xacro_mappings
from async_naf.task import gz_latch
from async_naf.task.latch import hinge_upper_limit, latch_next

REPO = Path(__file__).resolve().parent.parent
XACRO = REPO / "urdf" / "arm_door.urdf.xacro"


def _xacro_defaults() -> dict[str, str]:
    return dict(re.findall(r'<xacro:arg name="([^"]+)" default="([^"]*)"/>', XACRO.read_text()))


def _gazebo(task: str = "door_pull", sim: dict | None = None, backend: str = "gazebo") -> ET.Element:
    mappings = graph.description_mappings(task, sim or {})
    return ET.fromstring(graph.robot_description(backend, "/robot_0", mappings=mappings))


# ---------------------------------------------------------------------- the latch rule
def test_latch_rule_truth_table() -> None:
    """Engaged: stays engaged while the handle is below the threshold, whatever the door does; retracted at the
    threshold. Retracted: re-engages only with the handle back and the door closed (within the play)."""
    th, play = 0.35, 0.01
    assert latch_next(True, 0.0, 0.0, th, play) and latch_next(True, 0.34, 0.5, th, play)
    assert not latch_next(True, 0.35, 0.0, th, play) and not latch_next(True, 0.9, 0.0, th, play)
    assert not latch_next(False, 0.0, 0.011, th, play)  # open door: never snaps shut
    assert not latch_next(False, 0.35, 0.0, th, play)  # handle still turned
    assert latch_next(False, 0.0, 0.01, th, play) and latch_next(False, 0.2, -0.001, th, play)
    assert hinge_upper_limit(True, play, 1.4) == play and hinge_upper_limit(False, play, 1.4) == 1.4


def test_mujoco_latch_follows_the_shared_rule() -> None:
    """The embedded model's latch state, stepped with the handle pushed down and released, is the rule's on
    its own ground truth at every IMU period (the rule Gazebo's system applies)."""
    sim = ArmDoorSim(SimConfig(task="door_pull", imu=ImuNoiseConfig(enabled=False)), seed=3)
    sim.reset(randomize=False)
    door = sim.config.door
    handle_q = sim.model.jnt_qposadr[sim.model.joint("door_handle").id]
    hinge_q = sim.model.jnt_qposadr[sim.model.joint("door_hinge").id]
    states = []
    for handle in itertools.chain(np.linspace(0.0, 0.6, 12), np.linspace(0.6, 0.0, 12)):
        before = sim.latched
        sim.data.qpos[handle_q] = handle
        sim._update_latch()
        assert sim.latched == latch_next(before, handle, float(sim.data.qpos[hinge_q]), door.latch_threshold,
                                         door.latch_play)
        assert sim.model.jnt_range[sim.model.joint("door_hinge").id, 1] == pytest.approx(
            hinge_upper_limit(sim.latched, door.latch_play, door.max_open))
        states.append(sim.latched)
    assert states[0] and not states[12] and states[-1]  # engaged, retracted, engaged again (door closed)


# ---------------------------------------------------------------------- the latch in the description
def test_gazebo_description_loads_the_latch_system_per_robot() -> None:
    """mode:=gazebo: one PythonSystemLoader per model naming async_naf.task.gz_latch, with the latch parameters of
    the robot's sim configuration (the embedded model's DoorConfig: one source); none for mujoco / real."""
    defaults = _xacro_defaults()
    door = DoorConfig()
    assert float(defaults["latch_threshold"]) == door.latch_threshold
    assert float(defaults["latch_play"]) == door.latch_play
    for sim, expect in (({}, door), ({"door.latch_play": 0.02, "door.latch_threshold": 0.3},
                                     DoorConfig(latch_play=0.02, latch_threshold=0.3))):
        urdf = _gazebo(sim=sim)
        loaders = [p for p in urdf.iter("plugin") if p.get("name") == "gz::sim::systems::PythonSystemLoader"]
        assert len(loaders) == 1
        (loader,) = loaders
        assert loader.get("filename") == "gz-sim-python-system-loader-system"
        module = importlib.import_module(loader.find("module_name").text)
        assert module is gz_latch and callable(module.get_system)
        values = {name: float(loader.find(name).text) for name in gz_latch.SDF_PARAMETERS}
        assert values == {"latch_threshold": expect.latch_threshold, "latch_play": expect.latch_play,
                          "max_open": expect.max_open}
        joints = {j.get("name"): j for j in urdf.findall("joint")}
        assert {gz_latch.HINGE_JOINT, gz_latch.HANDLE_JOINT} <= set(joints)
        # the limit the system lifts the bolt to is the hinge's own door stop
        assert float(joints[gz_latch.HINGE_JOINT].find("limit").get("upper")) == values["max_open"]
    for backend in ("real", "mujoco"):
        urdf = _gazebo(backend=backend)
        assert not [p for p in urdf.iter("plugin") if p.get("name") == "gz::sim::systems::PythonSystemLoader"]


def test_gazebo_description_carries_the_door_closer() -> None:
    """The door closer's parameters in the same system's block: 2 N m after 1 s of a still arm by default (as
    the hardware backend's embedded sim), the sim section's values where it sets them, 0 switching it off."""
    from async_naf.task.latch import door_closer_torque

    for sim, torque, delay in (({}, graph.HARDWARE_DOOR_CLOSER_NM, 1.0),
                               ({"door_closer_torque": 3.5, "door_closer_delay_s": 2.0}, 3.5, 2.0),
                               ({"door_closer_torque": 0.0}, 0.0, 1.0)):
        (loader,) = [p for p in _gazebo(sim=sim).iter("plugin")
                     if p.get("name") == "gz::sim::systems::PythonSystemLoader"]
        values = {name: float(loader.find(name).text) for name in gz_latch.CLOSER_PARAMETERS}
        assert values == {"door_closer_torque": torque, "door_closer_delay_s": delay, "arm_still_speed": 0.01}
    assert door_closer_torque(2.0, True, 0.3, 0.01) == -2.0  # open, arm still long enough: closes
    assert door_closer_torque(2.0, False, 0.3, 0.01) == 0.0  # the arm moves (a policy acts): never
    assert door_closer_torque(2.0, True, 0.004, 0.01) == 0.0  # within half the latch play: closed
    assert door_closer_torque(0.0, True, 0.3, 0.01) == 0.0  # no closer


def test_still_timer_counts_an_uninterrupted_still_spell() -> None:
    from async_naf.task.latch import StillTimer

    timer = StillTimer(1.0)
    assert [timer.update(t, still) for t, still in ((0.0, True), (0.9, True), (1.0, True), (1.1, False),
                                                    (1.5, True), (2.4, True), (2.5, True))] == \
        [False, False, True, False, False, False, True]


def test_latch_system_module_needs_no_gazebo_to_import() -> None:
    """The module imports without gz (gz.sim8 only inside configure), so the package imports anywhere; the
    system has the methods gz-sim's PythonSystemLoader looks for."""
    system = gz_latch.get_system()
    for method in ("configure", "pre_update", "reset"):
        assert callable(getattr(system, method))
    assert system.latched


# ---------------------------------------------------------------------- the IMU noise
def _noise(urdf: ET.Element, quantity: str, axis: str) -> dict[str, float]:
    (sensor,) = [s for s in urdf.iter("sensor") if s.get("type") == "imu"]
    noise = sensor.find(f"imu/{quantity}/{axis}/noise")
    assert noise.get("type") == "gaussian"
    return {child.tag: float(child.text) for child in noise}


def test_gazebo_imu_noise_is_the_embedded_models() -> None:
    """The Gazebo door IMU samples at imu.rate_hz with, per axis, white noise std = density * sqrt(rate), a
    constant bias of std *_bias_std and a bias walk of density *_bias_walk (gz-sensors' dynamic bias: increment
    variance sigma^2 dt while dt << tau), from the sim configuration; the xacro's defaults are ImuNoiseConfig's."""
    defaults = _xacro_defaults()
    for name, value in imu_xacro_mappings(ImuNoiseConfig()).items():
        assert float(defaults[name]) == pytest.approx(float(value), rel=1e-12), name
    for sim in ({}, {"imu.rate_hz": 200.0, "imu.gyro_noise_density": 2e-4, "imu.accel_bias_walk": 5e-3}):
        imu = ImuNoiseConfig(**{k.split(".", 1)[1]: v for k, v in sim.items()})
        urdf = _gazebo(sim=sim)
        (sensor,) = [s for s in urdf.iter("sensor") if s.get("type") == "imu"]
        assert float(sensor.find("update_rate").text) == imu.rate_hz
        assert sensor.find("imu/enable_orientation").text == "false"
        for axis in "xyz":
            gyro, accel = _noise(urdf, "angular_velocity", axis), _noise(urdf, "linear_acceleration", axis)
            assert gyro["stddev"] == pytest.approx(imu.gyro_noise_density * math.sqrt(imu.rate_hz))
            assert gyro["bias_stddev"] == pytest.approx(imu.gyro_bias_std)
            assert gyro["dynamic_bias_stddev"] == pytest.approx(imu.gyro_bias_walk)
            assert accel["stddev"] == pytest.approx(imu.accel_noise_density * math.sqrt(imu.rate_hz))
            assert accel["bias_stddev"] == pytest.approx(imu.accel_bias_std)
            assert accel["dynamic_bias_stddev"] == pytest.approx(imu.accel_bias_walk)
            for n in (gyro, accel):
                assert n["mean"] == 0.0 and n["bias_mean"] == 0.0
                assert n["dynamic_bias_correlation_time"] == IMU_BIAS_CORRELATION_TIME_S
    perfect = _gazebo(sim={"imu.enabled": False})
    assert all(v == 0.0 for k, v in _noise(perfect, "angular_velocity", "z").items()
               if k != "dynamic_bias_correlation_time")


def test_gauss_markov_bias_with_long_correlation_time_is_the_walk() -> None:
    """gz-sensors' dynamic bias update (GaussianNoiseModel::ApplyImpl: b <- exp(-dt/tau) b + N(0, sigma_d),
    sigma_d^2 = -sigma^2 tau/2 expm1(-2 dt/tau)), replayed here: over 60 s at 100 Hz its spread grows as
    sigma * sqrt(t), like the embedded model's random walk of the same density."""
    rng = np.random.default_rng(0)
    sigma, tau, dt, n = 1e-4, IMU_BIAS_CORRELATION_TIME_S, 0.01, 6000
    sigma_d = math.sqrt(-sigma * sigma * tau / 2 * math.expm1(-2 * dt / tau))
    phi = math.exp(-dt / tau)
    b = np.zeros(2000)
    for _ in range(n):
        b = phi * b + rng.normal(0.0, sigma_d, b.shape)
    assert b.std() == pytest.approx(sigma * math.sqrt(n * dt), rel=0.05)


def test_xacro_mappings_carry_the_latch() -> None:
    m = xacro_mappings(DoorConfig(latch_play=0.03), hinge_left=False, opening="pull")
    assert float(m["latch_play"]) == 0.03 and float(m["latch_threshold"]) == DoorConfig().latch_threshold


# ---------------------------------------------------------------------- inside gz sim (where it exists)
def _world_with(tmp_path: Path, urdf: ET.Element) -> Path:
    """worlds/async_naf.sdf with the model ``urdf`` included as ``robot``, written under ``tmp_path``."""
    model = tmp_path / "robot.urdf"
    model.write_text(ET.tostring(urdf, encoding="unicode"))
    world = tmp_path / "world.sdf"
    text = (REPO / "worlds" / "async_naf.sdf").read_text()
    world.write_text(text.replace("</world>", f"<include><uri>file://{model}</uri><name>robot</name></include>"
                                              "</world>"))
    return world


def test_latch_holds_the_door_in_gazebo_until_the_handle_is_turned(tmp_path: Path) -> None:
    """In a real gz-sim 8 server (gz.sim8 TestFixture) with the gazebo description: a torque opening the door
    moves it no further than the latch play while the handle is at rest; with the handle held past the
    threshold the same torque opens it."""
    sim8 = pytest.importorskip("gz.sim8", reason="gz-sim 8 Python bindings (Gazebo Harmonic) not installed here")
    pytest.importorskip("gz.common5", reason="gz-common Python bindings not installed here")
    urdf = ET.fromstring(graph.robot_description("gazebo", "", mappings=graph.description_mappings("door_pull", {})))
    # the door alone (the latch acts on it only): no arm links and joints, no ros2_control / gz_ros2_control
    for element in list(urdf):
        name = element.get("name") or ""
        control = element.find("plugin[@filename='gz_ros2_control-system']") is not None
        if (element.tag in ("link", "joint") and name.startswith("arm_")) or element.tag == "ros2_control" or control:
            urdf.remove(element)
    world = _world_with(tmp_path, urdf)
    door = DoorConfig()
    phase = {"turn_handle": False}
    hinge_max = {False: 0.0, True: 0.0}

    def pre_update(info, ecm):
        if info.paused:
            return
        m = sim8.Model(sim8.World(sim8.world_entity(ecm)).model_by_name(ecm, "robot"))
        hinge = sim8.Joint(m.joint_by_name(ecm, "door_hinge"))
        handle = sim8.Joint(m.joint_by_name(ecm, "door_handle"))
        hinge.enable_position_check(ecm, True)
        hinge.set_force(ecm, [20.0])  # N m, opening
        if phase["turn_handle"]:
            handle.set_force(ecm, [5.0])  # N m, lever down past its spring
        q = hinge.position(ecm)
        if q:
            hinge_max[phase["turn_handle"]] = max(hinge_max[phase["turn_handle"]], q[0])

    fixture = sim8.TestFixture(str(world))
    fixture.on_pre_update(pre_update)
    fixture.finalize()
    server = fixture.server()
    server.run(True, 2000, False)  # 2 s: latched
    phase["turn_handle"] = True
    server.run(True, 2000, False)  # 2 s: handle turned, door pulled
    assert hinge_max[False] <= door.latch_play + 0.005
    assert hinge_max[True] > door.latch_threshold


def test_closer_shuts_the_door_in_gazebo_once_the_arm_holds_still(tmp_path: Path) -> None:
    """In a real gz-sim 8 server with the whole gazebo description (arm and door, without gz_ros2_control: the
    test holds the arm with zero joint velocities, as the reset node's wait does): the handle turned and the
    door pulled open for 1 s while the arm moves, then released with the arm still: the closer shuts it."""
    sim8 = pytest.importorskip("gz.sim8", reason="gz-sim 8 Python bindings (Gazebo Harmonic) not installed here")
    pytest.importorskip("gz.common5", reason="gz-common Python bindings not installed here")
    urdf = ET.fromstring(graph.robot_description("gazebo", "", mappings=graph.description_mappings("door_pull", {})))
    for element in list(urdf):
        control = element.find("plugin[@filename='gz_ros2_control-system']") is not None
        if element.tag == "ros2_control" or control:
            urdf.remove(element)
    world = _world_with(tmp_path, urdf)
    phase = {"pull": True, "t": 0.0}
    seen = {"open": 0.0, "final": None}

    def pre_update(info, ecm):
        if info.paused:
            return
        m = sim8.Model(sim8.World(sim8.world_entity(ecm)).model_by_name(ecm, "robot"))
        for i in range(1, 8):  # the arm held still (zero velocity), moving only while the door is pulled
            arm = sim8.Joint(m.joint_by_name(ecm, f"arm_joint_{i}"))
            arm.set_velocity(ecm, [0.2 if phase["pull"] and i == 1 else 0.0])
        hinge = sim8.Joint(m.joint_by_name(ecm, "door_hinge"))
        hinge.enable_position_check(ecm, True)
        if phase["pull"]:
            sim8.Joint(m.joint_by_name(ecm, "door_handle")).set_force(ecm, [5.0])
            hinge.set_force(ecm, [20.0])
        q = hinge.position(ecm)
        if q:
            seen["open"] = max(seen["open"], q[0])
            seen["final"] = q[0]

    fixture = sim8.TestFixture(str(world))
    fixture.on_pre_update(pre_update)
    fixture.finalize()
    server = fixture.server()
    server.run(True, 1000, False)  # 1 s: handle turned, door pulled, the arm moving
    phase["pull"] = False
    server.run(True, 8000, False)  # 8 s: the arm still; after door_closer_delay_s the closer acts
    assert seen["open"] > 0.3
    assert seen["final"] is not None and seen["final"] <= DoorConfig().latch_play
