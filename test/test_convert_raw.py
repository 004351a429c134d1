"""The raw bag conversion (``async-naf bag convert --method raw``): sensor topics -> transitions, without ROS.

Bags are written in the test with ``rosbags`` (through the project's BagWriter): a lockstep arm whose joint
states, commands, door IMU and goals are known, so the expected transitions are built independently with the
collector's own EpisodeAssembler from the same states. Fixed seeds, small bags (fast).
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from bag_msgs import array_bytes

from async_naf.recording.info import BagError
from async_naf.recording.writer import BagWriter, TopicSpec, qos_dict
from async_naf.wire import layouts

JS, F64, IMU = "sensor_msgs/msg/JointState", "std_msgs/msg/Float64MultiArray", "sensor_msgs/msg/Imu"
ARM = [f"arm_joint_{i}" for i in range(1, 8)]
PERIOD_NS = 50_000_000
T0 = 1_700_000_000_000_000_000


def _store():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_JAZZY)


def _header(store, stamp_ns: int):
    t = store.types
    sec, nsec = divmod(stamp_ns, 1_000_000_000)
    return t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec), frame_id="")


def _js(store, stamp_ns: int, q, qd, names=ARM) -> bytes:
    msg = store.types[JS](header=_header(store, stamp_ns), name=list(names), position=np.asarray(q, float),
                          velocity=np.asarray(qd, float), effort=np.zeros(0))
    return store.serialize_cdr(msg, JS)


def _cmd(store, action) -> bytes:
    t = store.types
    msg = t[F64](layout=t["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0), data=np.asarray(action, float))
    return store.serialize_cdr(msg, F64)


def _imu(store, stamp_ns: int, gyro, accel) -> bytes:
    t = store.types
    v3 = t["geometry_msgs/msg/Vector3"]
    unknown = np.zeros(9)
    unknown[0] = -1.0
    quat = t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)
    msg = t[IMU](header=_header(store, stamp_ns), orientation=quat,
                 orientation_covariance=unknown.copy(), angular_velocity=v3(x=gyro[0], y=gyro[1], z=gyro[2]),
                 angular_velocity_covariance=unknown.copy(), linear_acceleration=v3(x=accel[0], y=accel[1], z=accel[2]),
                 linear_acceleration_covariance=unknown.copy())
    return store.serialize_cdr(msg, IMU)


class Arm:
    """A lockstep arm for the tests: per step a joint state (received 1 ms after its stamp), IMU samples of
    the interval, then the command (2 ms later); the joint state after a command integrates it."""

    def __init__(self, task: str, seed: int = 0) -> None:
        from async_naf.task.tasks import make_task

        self.task = make_task(task)
        self.rng = np.random.default_rng(seed)
        self.q = self.rng.uniform(-0.5, 0.5, 7)
        self.stamp = T0
        self.records: list[tuple[str, int, object]] = []  # (key, receive ns, payload)
        self.steps: list[dict] = []  # what the policy saw and did, per command

    def episode(self, episode: int, goal: np.ndarray, n: int, imu_rate: float = 0.0) -> None:
        g = layouts.Goal(episode, True, goal)
        self.records.append(("goal", self.stamp + 500_000, g))
        for i in range(n):
            self.stamp += PERIOD_NS
            t = self.stamp + 1_000_000
            qd = self.rng.normal(scale=0.1, size=7)
            self.records.append(("joint_states", t, (self.stamp, self.q.copy(), qd)))
            if self.task.is_door:
                for k in range(5):  # 100 Hz IMU, stamped within the step
                    s = self.stamp - PERIOD_NS + (k + 1) * 10_000_000
                    rate = imu_rate if i >= 3 else 0.0  # at rest first, then the door swings
                    self.records.append(("imu", t + 10_000 * (k + 1), (s, (0.0, 0.0, rate), (9.81, 0.0, 0.0))))
            action = self.rng.uniform(self.task.action_low, self.task.action_high).astype(np.float64)
            self.records.append(("commands", t + 2_000_000, action))
            self.steps.append({"stamp": self.stamp, "q": self.q.copy(), "qd": qd, "action": action,
                               "episode": episode, "step": i, "t": t + 2_000_000})
            self.q = self.q + action * 0.05
        self.stamp += PERIOD_NS
        self.records.append(("goal", self.stamp + 500_000, layouts.Goal(episode, False, goal)))

    def write(self, path: Path, ns: str = "/robot_0", topics: dict[str, str] | None = None,
              policy_steps: bool = False) -> None:
        store = _store()
        names = {"joint_states": "joint_states", "commands": "forward_velocity_controller/commands",
                 "imu": "door/imu", "goal": "task/goal", "step": "policy/step", "truth": "ground_truth/door_state",
                 **(topics or {})}
        kinds = [k for k in ("joint_states", "commands", "imu", "goal", "truth")
                 if any(r[0] == k for r in self.records) and names.get(k)]
        types = {"joint_states": JS, "commands": F64, "imu": IMU, "goal": F64, "step": F64, "truth": JS}
        if policy_steps:
            kinds.append("step")
        specs = [TopicSpec(names[k] if names[k].startswith("/") else f"{ns}/{names[k]}", types[k],
                           qos_dict("latched" if k == "goal" else "sensor")) for k in kinds]
        writer = BagWriter(path, specs)
        index = {k: i for i, k in enumerate(kinds)}
        records = list(self.records)
        if policy_steps:
            records += [("step", s["t"] + 100_000, s) for s in self.steps]
        for key, t, payload in sorted(records, key=lambda r: r[1]):
            if key not in index:
                continue
            if key == "joint_states":
                stamp, q, qd = payload  # type: ignore[misc]
                data = _js(store, stamp, q, qd)
            elif key == "imu":
                stamp, g, a = payload  # type: ignore[misc]
                data = _imu(store, stamp, g, a)
            elif key == "commands":
                data = _cmd(store, payload)
            elif key == "goal":
                data = array_bytes(store, layouts.encode_goal(payload))  # type: ignore[arg-type]
            elif key == "truth":
                stamp, hinge, handle = payload  # type: ignore[misc]
                data = _js(store, stamp, [hinge, handle], [0.0, 0.0], names=("door_hinge", "door_handle"))
            else:
                data = array_bytes(store, layouts.encode_policy_step(self.policy_step(payload)))  # type: ignore[arg-type]
            assert writer.put(index[key], t, data)
        writer.close()

    def policy_step(self, s: dict, door: tuple[float, float] = (0.0, 0.0)) -> layouts.PolicyStep:
        from async_naf.task.tasks import TaskState

        goal = self.goals[s["episode"]]
        ee = _kin().ee_position(s["q"])
        obs = self.task.observation(TaskState(s["q"], s["qd"], ee, door[0], door[1]), goal)
        return layouts.PolicyStep(s["stamp"] * 1e-9, s["episode"], s["step"], obs, s["action"], s["q"], s["qd"],
                                  ee, door[0], door[1])

    @property
    def goals(self) -> dict[int, np.ndarray]:
        return {r[2].episode: r[2].goal for r in self.records if r[0] == "goal"}  # type: ignore[union-attr]


_KIN = []


def _kin():
    from async_naf.task.kinematics import ArmKinematics

    if not _KIN:
        _KIN.append(ArmKinematics())
    return _KIN[0]


def _reach_arm(seed: int = 0) -> Arm:
    arm = Arm("reach", seed)
    arm.episode(0, np.array([0.4, 0.0, 0.3]), 6)
    arm.episode(1, np.array([0.4, 0.1, 0.3]), 6)
    return arm


def _expected(arm: Arm, episode_steps: int, doors: list[tuple[float, float]] | None = None):
    from async_naf.collecting.collector import CollectorConfig, EpisodeAssembler

    asm = EpisodeAssembler(CollectorConfig(task=arm.task.name, episode_steps=episode_steps, batch_transitions=10_000,
                                           use_ground_truth=False))
    for i, s in enumerate(arm.steps):
        if s["step"] == 0:
            asm.episode = s["episode"] - 1
            asm.start_episode(arm.goals[s["episode"]])
        asm.add_step(arm.policy_step(s, doors[i] if doors else (0.0, 0.0)))
    return asm.pop_batch()


def test_raw_conversion_equals_the_collector_on_the_same_states(tmp_path: Path) -> None:
    """Reach: each command paired with the joint state before it, FK, observation, reward and time limit
    through the collector's own code: equal to the assembler fed the same states, bit for bit."""
    from async_naf.run.convert import write_dataset
    from async_naf.run.convert_raw import RawConfig, convert_raw

    arm = _reach_arm()
    bag = tmp_path / "bag"
    arm.write(bag)
    converted = convert_raw(bag, "reach", RawConfig(episode_steps=4))
    want = _expected(arm, 4)
    assert converted.counts["transitions"] == 8 and converted.episodes == 2
    for got, expected in zip(converted.batch, (want.obs, want.action, want.reward, want.next_obs, want.terminal)):
        np.testing.assert_array_equal(got, expected)
    # the commands after the time limit are late steps of a finished episode, not drops
    assert not converted.drops, converted.drops
    out = write_dataset(converted, bag, "reach", tmp_path / "data")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["method"] == "raw" and manifest["transitions"] == 8 and len(manifest["bag_sha256"]) == 64


def test_raw_agrees_with_exact_on_a_bag_with_both(tmp_path: Path) -> None:
    """A bag with the policy's own records beside the sensor topics: raw and exact give the same rows."""
    from async_naf.run.convert import compare_conversions, convert_exact
    from async_naf.run.convert_raw import RawConfig, convert_raw

    arm = _reach_arm(seed=1)
    bag = tmp_path / "bag"
    arm.write(bag, policy_steps=True)
    raw = convert_raw(bag, "reach", RawConfig(episode_steps=5))
    exact = convert_exact(bag, "reach", {"episode_steps": 5})
    cmp = compare_conversions(raw, exact, arm.task.obs_layout)
    assert cmp["matched"] == 10 and cmp["only_raw"] == 0 and cmp["only_exact"] == 0
    for column in ("obs", "action", "reward", "next_obs", "done"):
        assert cmp[column]["max_abs"] == 0.0, (column, cmp)
    # a shifted pairing is seen: raw rows keyed one step later match nothing
    raw.keys = raw.keys + np.array([0, 0, 1])
    assert compare_conversions(raw, exact)["matched"] == 8


def test_door_task_replays_the_imu_through_the_estimator(tmp_path: Path) -> None:
    """door_pull: the door state of each step is the estimator's after the IMU messages received before the
    command (the closed prior at the episode's first step, zeroed at the goal); a new estimator setting
    changes the result."""
    from async_naf.run.convert_raw import RawConfig, convert_raw
    from async_naf.sensing.door_angle import DoorAngleConfig, DoorAngleEstimator
    from async_naf.wire.imu import ImuSample

    arm = Arm("door_pull", seed=2)
    goal = np.array([0.6, 0.0, 0.9, 0.0, 1.0, 0.0])
    arm.episode(0, goal, 8, imu_rate=0.5)
    bag = tmp_path / "bag"
    arm.write(bag)

    def doors(cfg: DoorAngleConfig) -> list[tuple[float, float]]:
        est = DoorAngleEstimator(cfg)
        out, last, started = [], (0.0, 0.0), False
        cmd_times = iter(s["t"] for s in arm.steps)
        next_cmd = next(cmd_times)
        for key, _t, payload in sorted(arm.records, key=lambda r: r[1]):
            if key == "goal" and payload.active:  # type: ignore[union-attr]
                est.zero()
                started = True
            elif key == "imu":
                stamp, g, a = payload  # type: ignore[misc]
                st = est.update(ImuSample(stamp, np.array(g), np.array(a)))
                if st is not None:
                    last, started = (st.angle, st.velocity), False
            elif key == "commands":
                out.append((cfg.closed_angle_rad, 0.0) if started else last)
                next_cmd = next(cmd_times, None)
        assert next_cmd is None
        return out

    axis = {"hinge_axis": (0.0, 0.0, 1.0)}
    default = convert_raw(bag, "door_pull", RawConfig(episode_steps=7), door_values=axis)
    want = _expected(arm, 7, doors(DoorAngleConfig(**axis)))
    np.testing.assert_array_equal(default.batch.obs, want.obs)
    np.testing.assert_array_equal(default.batch.reward, want.reward)
    door = arm.task.obs_layout["door_angle"]
    assert np.ptp(default.batch.next_obs[:, door]) > 0  # the estimate moved: the IMU was used
    tuned = convert_raw(bag, "door_pull", RawConfig(episode_steps=7), door_values={**axis, "closed_angle_rad": 0.05})
    want_tuned = _expected(arm, 7, doors(DoorAngleConfig(**axis, closed_angle_rad=0.05)))
    np.testing.assert_array_equal(tuned.batch.obs, want_tuned.obs)
    assert not np.array_equal(tuned.batch.obs[:, door], default.batch.obs[:, door])
    assert tuned.door_configs["/robot_0"]["closed_angle_rad"] == 0.05


def _robot(task: str = "reach", estimator=None, **kw):
    from async_naf.collecting.collector import CollectorConfig
    from async_naf.run.convert_raw import RawConfig, RawRobot
    from async_naf.task.tasks import make_task

    return RawRobot(make_task(task), CollectorConfig(task=task, episode_steps=100, use_ground_truth=False),
                    RawConfig(**kw), estimator=estimator, kinematics=_kin())


def test_pairing_rules_never_a_later_state_max_age_repeats_and_bad_input() -> None:
    """Each rule on a hand-made event stream: a command takes the newest joint state at or before it, never
    a later one; too old, a repeat, between episodes, bad commands and bad joint states are counted drops,
    and no transition spans a dropped step."""
    from async_naf.run.convert_raw import Event

    r = _robot(max_state_age_s=0.03)
    ms = 1_000_000
    q = np.zeros(7)
    names = tuple(ARM)

    def js(t: int, stamp: int, qq=q, nm=names) -> Event:
        return Event(t * ms, "joint_states", (nm, stamp * ms, np.asarray(qq, float), np.zeros(len(nm))))

    def cmd(t: int, a=0.1) -> Event:
        return Event(t * ms, "commands", np.full(7, a) if np.isscalar(a) else np.asarray(a, float))

    events = [
        cmd(0),                                   # between episodes (no goal yet)
        Event(1 * ms, "goal", layouts.Goal(0, True, np.array([0.4, 0.0, 0.3]))),
        cmd(2),                                   # no joint state yet: stale_joint_state (hole: step 0)
        js(10, 10), cmd(11),                      # step 1
        cmd(12),                                  # same joint state again: repeated_state (no step)
        js(20, 20), cmd(21),                      # step 2 -> transition (1, 2)
        js(30, 30), cmd(31, a=5.0),               # out of bounds (hole: step 3)
        js(40, 40), cmd(41, a=[0.1] * 6),         # wrong size (hole: step 4)
        js(50, 50), cmd(51, a=[np.nan] * 7),      # non-finite (hole: step 5)
        js(60, 60), cmd(61),                      # step 6 (its predecessor was a hole: no transition)
        js(70, 70), cmd(71),                      # step 7 -> transition (6, 7)
        js(80, 65),                               # stamp going back: dropped, the newest stays 70
        js(81, 81, nm=tuple(reversed(names))[:6] + ("other",)),  # joint names that do not match
        js(82, 82, qq=[np.inf] + [0.0] * 6),      # non-finite joint state
        cmd(120),                                 # newest state (70) is 50 ms old > 30 ms: stale (hole 8)
        js(130, 130), cmd(131),                   # step 9
        js(140, 140),
        Event(141 * ms, "goal", layouts.Goal(0, False, np.array([0.4, 0.0, 0.3]))),
        cmd(142),                                 # between episodes
    ]
    for ev in events:
        r.feed(ev)
    drops = r.all_drops()
    assert drops["between_episodes"] == 2
    assert drops["stale_joint_state"] == 2
    assert drops["repeated_state"] == 1
    assert drops["command:out_of_bounds"] == 1 and drops["command:wrong_size"] == 1
    assert drops["command:non_finite"] == 1
    assert drops["joint_state:out_of_order"] == 1 and drops["joint_state:joint_names"] == 1
    assert drops["joint_state:non_finite"] == 1
    batch = r.asm.pop_batch(100)
    assert batch is not None
    assert batch.step.tolist() == [1, 6]  # (1, 2) and (6, 7): none across a hole
    # never a later state: the transition of step 1 starts from the state stamped 10 ms, received before it
    assert r.counts["steps"] == 5  # steps 1, 2, 6, 7, 9


def test_an_imu_reading_no_sensor_makes_is_a_counted_drop() -> None:
    """A finite but absurd IMU value (1e200 m/s^2) in a bag: counted as imu:out_of_range, the conversion goes on
    (it ended with the estimator's OverflowError before)."""
    from async_naf.run.convert_raw import Event
    from async_naf.sensing.door_angle import DoorAngleEstimator

    r = _robot("door_pull", estimator=DoorAngleEstimator())
    ms = 1_000_000
    for i in range(1, 200):
        az = 1e200 if i == 100 else 9.81
        r.feed(Event(i * 5 * ms, "imu", (i * 5 * ms, 0.0, 0.0, 0.0, 0.0, 0.0, az, None, None)))
    drops = r.all_drops()
    assert drops["imu:out_of_range"] == 1 and r.counts["imu"] == 198


def test_a_bag_without_goals_remapped_topics(tmp_path: Path) -> None:
    """Another arm's topic names (--topic) and no task/goal (--episode-steps, --goal): the same rows as the
    bag with goals, cut into episodes of N commands."""
    from async_naf.run.convert_raw import RawConfig, convert_raw, parse_remaps

    arm = Arm("reach", seed=3)
    goal = np.array([0.4, 0.0, 0.3])
    arm.episode(0, goal, 5)
    arm.episode(1, goal, 5)
    bag = tmp_path / "bag"
    arm.write(bag, ns="", topics={"joint_states": "/my_arm/joint_states", "commands": "/my_arm/cmd", "goal": ""})
    remaps = parse_remaps(["joint_states:=/my_arm/joint_states", "forward_velocity_controller/commands:=/my_arm/cmd"])
    with pytest.raises(BagError, match="task/goal"):
        convert_raw(bag, "reach", RawConfig(episode_steps=4), remaps=remaps)
    converted = convert_raw(bag, "reach", RawConfig(episode_steps=4, goal=tuple(goal)), remaps=remaps)
    assert converted.robots == ["/"] and converted.episodes == 2
    want = _expected(arm, 4)
    np.testing.assert_array_equal(converted.batch.obs, want.obs)
    np.testing.assert_array_equal(converted.batch.reward, want.reward)
    with pytest.raises(ValueError, match="unknown stream"):
        parse_remaps(["jointstates:=/x"])
    with pytest.raises(ValueError, match="needs 3 values"):
        convert_raw(bag, "reach", RawConfig(episode_steps=4, goal=(1.0, 2.0)), remaps=remaps)
    assert "fixed_goal_over_recorded_goals" not in converted.extra  # this bag has no goals to replace
    # a bag that has goals, converted with a fixed one: it is said (the recorded goals were ignored silently)
    with_goals = tmp_path / "with_goals"
    arm.write(with_goals)
    for vectorised in (True, False):
        over = convert_raw(with_goals, "reach", RawConfig(episode_steps=4, goal=tuple(goal)), vectorised=vectorised)
        assert over.extra["fixed_goal_over_recorded_goals"] == ["/robot_0"]


def test_missing_and_mistyped_topics_are_clear_errors_with_no_partial_output(tmp_path: Path, capsys) -> None:
    from async_naf.run.convert_raw import convert_raw

    arm = _reach_arm(seed=4)
    bag = tmp_path / "bag"
    arm.write(bag)
    with pytest.raises(BagError, match="door/imu"):
        convert_raw(bag, "door_pull")  # a reach bag has no IMU
    # an absolute commands topic makes the robot '/': the error says so, and how a bag without goals converts
    with pytest.raises(BagError, match=r"robot / lacks /task/goal.*--episode-steps N --goal.*--robot NS"):
        convert_raw(bag, "reach", remaps={"commands": "/robot_0/forward_velocity_controller/commands",
                                          "joint_states": "/robot_0/joint_states"})
    with pytest.raises(BagError, match="door/imu") as got:  # the same through rosbags, message by message
        convert_raw(bag, "door_pull", vectorised=False)
    assert "not a readable" not in str(got.value)  # a missing topic, not a damaged bag
    wrong = tmp_path / "wrong"
    store = _store()
    writer = BagWriter(wrong, [TopicSpec("/robot_0/joint_states", F64, qos_dict("sensor")),
                               TopicSpec("/robot_0/forward_velocity_controller/commands", F64, qos_dict("commands")),
                               TopicSpec("/robot_0/task/goal", F64, qos_dict("latched"))])
    writer.put(0, T0, _cmd(store, np.zeros(7)))
    writer.close()
    with pytest.raises(BagError, match="JointState"):
        convert_raw(wrong, "reach")
    # the command line: exit status 2, a clear message, nothing left behind
    from async_naf.run.cli import main

    out = tmp_path / "data"
    assert main(["bag", "convert", str(wrong), "--task", "reach", "--out", str(out), "--method", "raw"]) == 2
    assert "JointState" in capsys.readouterr().err
    assert not out.exists() and not out.with_name("data.part").exists()
    for bad, words in ((["--set", "door_angle.nope=1"], "nope"), (["--set", "raw.nope=1"], "raw.nope"),
                       (["--topic", "joint_states=/x"], "KEY:=NAME"), (["--goal", "a,b"], "--goal")):
        assert main(["bag", "convert", str(bag), "--task", "reach", "--out", str(out), "--method", "raw", *bad]) == 2
        assert words in capsys.readouterr().err
        assert not out.exists()
    assert main(["bag", "convert", str(bag), "--task", "reach", "--out", str(out), "--method", "raw",
                 "--episode-steps", "4", "--compare-exact"]) == 2  # no policy/step in a sensor-only bag
    assert "policy/step" in capsys.readouterr().err and not out.exists()
    # raw-only options with the (default) exact way: refused, not ignored (a reviewer's --robot /robot_0 gave both
    # robots' transitions without a word)
    for raw_only in (["--robot", "/robot_0"], ["--ground-truth"], ["--topic", "imu:=/x"], ["--goal", "1,2,3"],
                     ["--max-state-age", "0.1"], ["--set", "door_angle.tilt_tau_s=3"], ["--compare-exact"]):
        assert main(["bag", "convert", str(bag), "--task", "reach", "--out", str(out), *raw_only]) == 2
        assert f"{raw_only[0]}: option(s) of --method raw" in capsys.readouterr().err and not out.exists()


def test_the_cli_defaults_follow_raw_config() -> None:
    from async_naf.run.commands.bag import RAW_DEFAULTS
    from async_naf.run.convert_raw import RawConfig

    assert (RawConfig().max_state_age_s, RawConfig().max_door_age_s) == RAW_DEFAULTS
    with pytest.raises(ValueError):
        RawConfig(max_state_age_s=0.0)
    with pytest.raises(ValueError):
        RawConfig(goal=(float("nan"), 0.0, 0.0))


@pytest.mark.parametrize("frame_id", ["", "a", "abc", "door_imu_link"])
def test_the_fast_decoders_equal_the_generic_deserialiser(frame_id: str) -> None:
    """The hot-path CDR decoders (JointState, Imu, a command's data) give what rosbags' deserialiser gives,
    whatever the string lengths (alignment), and refuse what is not little-endian CDR."""
    from async_naf.run.convert_raw import _joint_state, fast_f64_data, fast_imu, fast_joint_state
    from async_naf.wire.imu import imu_msg_to_sample

    store = _store()
    t = store.types
    rng = np.random.default_rng(len(frame_id))
    h = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=5, nanosec=7), frame_id=frame_id)
    js = t[JS](header=h, name=["a", "bb", frame_id or "c"], position=rng.normal(size=3), velocity=rng.normal(size=3),
               effort=np.zeros(0))
    js_raw = store.serialize_cdr(js, JS)
    got, want = fast_joint_state(js_raw), _joint_state(store.deserialize_cdr(js_raw, JS))
    assert got[:2] == want[:2] and np.array_equal(got[2], want[2]) and np.array_equal(got[3], want[3])
    v3 = t["geometry_msgs/msg/Vector3"]
    cov = rng.normal(size=9)
    imu = t[IMU](header=h, orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
                 orientation_covariance=cov, angular_velocity=v3(x=1.0, y=2.0, z=3.0),
                 angular_velocity_covariance=cov, linear_acceleration=v3(x=4.0, y=5.0, z=6.0),
                 linear_acceleration_covariance=np.zeros(9))
    raw = store.serialize_cdr(imu, IMU)
    a, b = fast_imu(raw), imu_msg_to_sample(store.deserialize_cdr(raw, IMU))
    assert a.stamp_ns == b.stamp_ns and np.array_equal(a.gyro, b.gyro) and np.array_equal(a.accel, b.accel)
    assert np.array_equal(a.gyro_cov, b.gyro_cov) and a.accel_cov is None and b.accel_cov is None
    dims = [t["std_msgs/msg/MultiArrayDimension"](label=lab, size=3, stride=3) for lab in ("x", frame_id)]
    data = rng.normal(size=7)
    f = t[F64](layout=t["std_msgs/msg/MultiArrayLayout"](dim=dims, data_offset=0), data=data)
    assert np.array_equal(fast_f64_data(store.serialize_cdr(f, F64)), data)
    with pytest.raises(ValueError):
        fast_f64_data(b"\x00\x00\x00\x00" + bytes(8))  # big-endian CDR: left to the generic deserialiser
    with pytest.raises((ValueError, struct.error)):
        fast_joint_state(js_raw[:40])  # truncated


def test_ground_truth_only_when_asked_and_where_the_bag_has_it(tmp_path: Path) -> None:
    """--ground-truth: rewards from ground_truth/door_state at the joint state's stamp (the collector's
    GroundTruth); a step without its truth is dropped (truth_missing); without the topic, a clear error."""
    from async_naf.collecting.collector import CollectorConfig, EpisodeAssembler, GroundTruth
    from async_naf.run.convert_raw import RawConfig, convert_raw

    arm = Arm("door_pull", seed=5)
    goal = np.array([0.6, 0.0, 0.9, 0.0, 1.0, 0.0])
    arm.episode(0, goal, 6)
    bag_plain = tmp_path / "plain"
    arm.write(bag_plain)
    with pytest.raises(BagError, match="ground_truth/door_state"):
        convert_raw(bag_plain, "door_pull", RawConfig(use_ground_truth=True), door_values={"hinge_axis": (0, 0, 1)})
    truth = {s["stamp"]: GroundTruth(0.1 * i, 0.0, 0.02 * i) for i, s in enumerate(arm.steps) if i != 4}
    arm.records += [("truth", s["t"] - 1_500_000, (s["stamp"], truth[s["stamp"]].hinge_angle,
                                                     truth[s["stamp"]].handle_angle))
                    for s in arm.steps if s["stamp"] in truth]
    bag = tmp_path / "bag"
    arm.write(bag)
    axis = {"hinge_axis": (0.0, 0.0, 1.0)}
    estimate = convert_raw(bag, "door_pull", RawConfig(episode_steps=5), door_values=axis)
    with_truth = convert_raw(bag, "door_pull", RawConfig(episode_steps=5, use_ground_truth=True), door_values=axis)
    assert with_truth.drops["truth_missing"] == 1 and "truth_missing" not in estimate.drops
    # the same steps through the collector's assembler with the truth (step 4 dropped: no transition 3->4, 4->5)
    asm = EpisodeAssembler(CollectorConfig(task="door_pull", episode_steps=5, batch_transitions=100))
    asm.start_episode(goal)
    for i, s in enumerate(arm.steps):
        if i != 4:
            asm.add_step(arm.policy_step(s), truth[s["stamp"]])
    want = asm.pop_batch()
    np.testing.assert_array_equal(with_truth.batch.reward, want.reward)
    assert not np.array_equal(with_truth.batch.reward, estimate.batch.reward[:len(want.reward)])


def test_an_imu_time_jump_restarts_the_estimate_as_the_node_does() -> None:
    """IMU stamps far behind the newest (a restarted simulation in the bag): once JUMP_CONFIRM of them in a row go
    on from each other, the estimate restarts instead of every later message being dropped as out of order; a
    small step back is an out-of-order drop; one far stamp alone (a glitch: stamp 0, a year ahead) is dropped and
    restarts nothing (it restarted the estimate before: door assumed closed wherever it stood)."""
    from async_naf.common.stamps import JUMP_CONFIRM
    from async_naf.run.convert_raw import Event
    from async_naf.sensing.door_angle import DoorAngleConfig, DoorAngleEstimator
    from async_naf.wire.imu import ImuSample

    r = _robot("door_pull")
    r.estimator = DoorAngleEstimator(DoorAngleConfig(hinge_axis=(0.0, 0.0, 1.0)))

    def imu(t_ms: int, stamp_ms: int) -> Event:
        return Event(t_ms * 1_000_000, "imu", ImuSample(stamp_ms * 1_000_000, np.array([0.0, 0.0, 0.2]),
                                                        np.array([9.81, 0.0, 0.0])))

    for k in range(10):
        r.feed(imu(k, 10_000 + 10 * k))
    r.feed(imu(10, 10_050))  # 40 ms back: out of order, dropped by the estimator
    r.feed(imu(11, 0))  # a glitch: far behind, and the next stamp goes on from the old clock
    r.feed(imu(12, 10_000_000))  # another: far ahead
    r.feed(imu(13, 10_100))
    assert r.counts.get("imu_time_resets", 0) == 0 and r.counts["imu"] == 11
    assert r.all_drops()["imu:stamp_glitch"] == 2
    for k in range(JUMP_CONFIRM + 2):
        r.feed(imu(14 + k, 100 + 10 * k))  # 10 s back, and on from there: a restart at the JUMP_CONFIRM-th
    assert r.counts["imu_time_resets"] == 1 and r.counts["imu"] == 11 + 3
    assert r.all_drops()["imu:out_of_order"] == 1 and r.all_drops()["imu:stamp_glitch"] == 2 + JUMP_CONFIRM - 1


def _imu_msg(store, stamp_ns: int, gyro, accel, gcov, acov, frame_id: str = "", little_endian: bool = True) -> bytes:
    t = store.types
    v3 = t["geometry_msgs/msg/Vector3"]
    sec, nsec = divmod(stamp_ns, 1_000_000_000)
    header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec), frame_id=frame_id)
    msg = t[IMU](header=header, orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
                 orientation_covariance=np.zeros(9), angular_velocity=v3(x=gyro[0], y=gyro[1], z=gyro[2]),
                 angular_velocity_covariance=np.asarray(gcov, float),
                 linear_acceleration=v3(x=accel[0], y=accel[1], z=accel[2]),
                 linear_acceleration_covariance=np.asarray(acov, float))
    return bytes(store.serialize_cdr(msg, IMU, little_endian=little_endian))


def _odd(episode: int, i: int, robot: int) -> int:
    """Which odd message (if any: 1-16) step ``i`` of ``episode`` of ``robot`` carries in :func:`_odd_door_bag`."""
    return (i * 7 + episode * 3 + robot) % 23


def _odd_door_bag(path: Path, with_goals: bool = True) -> None:
    """Two door_pull robots whose streams hold every kind of odd message the raw conversion meets: IMU
    messages of several frame ids, covariances known, unknown and unusable, NaN, repeated and backward stamps,
    big-endian CDR, trailing bytes and garbage; joint states with other names, sizes, NaN, stamps going back;
    commands of another size, NaN, out of bounds, with a layout; goals re-published and inactive; ground
    truth with gaps and a message without the door's joints."""
    store = _store()
    rng = np.random.default_rng(7)
    kinds = [("joint_states", JS), ("forward_velocity_controller/commands", F64), ("door/imu", IMU),
             ("ground_truth/door_state", JS)] + ([("task/goal", F64)] if with_goals else [])
    specs = [TopicSpec(f"/robot_{r}/{name}", typ, qos_dict("latched" if name == "task/goal" else "sensor"))
             for r in (0, 1) for name, typ in kinds]
    writer = BagWriter(path, specs)
    per = len(kinds)
    goal = np.array([0.6, 0.0, 0.9, 0.0, 1.0, 0.0])
    sigma = np.eye(3).ravel() * 1e-4
    covs = [sigma, np.zeros(9), np.r_[-1.0, np.zeros(8)], np.r_[np.nan, sigma[1:]], -sigma, sigma * 3]
    t = T0
    stamp = 1_000_000_000
    for episode in range(3):
        for r in (0, 1):
            if with_goals:
                writer.put(r * per + 4, t, array_bytes(store, layouts.encode_goal(layouts.Goal(episode, True, goal))))
                if episode == 1:
                    writer.put(r * per + 4, t + 1, array_bytes(store, layouts.encode_goal(
                        layouts.Goal(episode, True, goal))))  # re-published: the same episode
        q = rng.uniform(-0.5, 0.5, 7)
        for i in range(25):
            stamp += PERIOD_NS
            t += PERIOD_NS
            for r in (0, 1):
                base = r * per
                odd = _odd(episode, i, r)
                names = ARM if odd != 1 else list(reversed(ARM))
                qq = q + rng.normal(scale=0.01, size=7)
                if odd == 2:
                    qq[3] = np.nan
                js_stamp = stamp if odd != 3 else stamp - 3 * PERIOD_NS
                js = _js(store, js_stamp, qq, rng.normal(size=7 if odd != 4 else 6), names)
                writer.put(base, t + 1000, bytes(js))
                for k in range(5):
                    s = stamp - PERIOD_NS + (k + 1) * 10_000_000
                    if odd == 5 and k == 2:
                        s -= 10_000_000  # a repeated stamp
                    gyro = (rng.normal(scale=0.01), rng.normal(scale=0.01), 0.4 * np.sin(0.2 * i + r))
                    if odd == 6 and k == 1:
                        gyro = (np.nan, 0.0, 0.0)
                    accel = (0.05 * rng.normal(), 0.05 * rng.normal(), 9.81)
                    frame = ("", "imu", "door_imu_link")[(i + k) % 3] if r == 0 else ""
                    raw = _imu_msg(store, s, gyro, accel, covs[(i + k + r) % len(covs)], covs[(i + 2 * k) % 2],
                                   frame, little_endian=not (odd == 7 and k == 3))
                    if odd == 8 and k == 4:
                        raw += bytes(8)  # trailing bytes
                    if odd == 9 and k == 0:
                        raw = b"\x00\x01garbage"
                    writer.put(base + 2, t + 2000 + 10 * k, raw)
                action = rng.uniform(-0.5, 0.5, 7)
                if odd == 10:
                    action = action[:6]
                elif odd == 11:
                    action[2] = np.nan
                elif odd == 12:
                    action[0] = 5.0
                cmd = _cmd(store, action)
                if odd == 13:
                    arr = layouts.ArrayMsg(("joints",), (7,), (7,), action)
                    cmd = array_bytes(store, arr)
                writer.put(base + 1, t + 3000, bytes(cmd))
                if odd not in (14, 15):  # truth missing at two odd steps
                    names_t = ("door_hinge", "door_handle") if odd != 16 else ("door_hinge", "latch")
                    writer.put(base + 3, t + 500, bytes(_js(store, js_stamp, [0.02 * i, 0.1], [0.0, 0.0], names_t)))
            q = q + 0.01
        if with_goals:
            for r in (0, 1):
                writer.put(r * per + 4, t + PERIOD_NS // 2, array_bytes(store, layouts.encode_goal(
                    layouts.Goal(episode, False, goal))))
        t += 2 * PERIOD_NS
    writer.close()


@pytest.mark.parametrize("with_goals", [True, False])
def test_the_vectorised_raw_conversion_equals_the_message_by_message_one(tmp_path: Path, with_goals: bool) -> None:
    """Read as tables (indexed MCAP, one decode per topic and layout, the estimator fed plain numbers, the
    steps of an episode handed to the assembler together) or message by message through rosbags: the same
    rows bit for bit, the same counts and drops, with and without ground truth and goals. Only the odd
    messages go one by one on the tables' path."""
    from async_naf.run import convert_raw as cr

    bag = tmp_path / "bag"
    _odd_door_bag(bag, with_goals)
    one_by_one: list[str] = []
    decoder = cr._decoder

    def counting(goal_dim, drops):
        decode = decoder(goal_dim, drops)

        def counted(kind, raw, deserialize):
            one_by_one.append(kind)
            return decode(kind, raw, deserialize)
        return counted

    base = {} if with_goals else {"episode_steps": 20, "goal": (0.6, 0.0, 0.9, 0.0, 1.0, 0.0)}
    for truth in (False, True):
        config = cr.RawConfig(use_ground_truth=truth, max_door_age_s=0.2, **base)
        one_by_one.clear()
        cr._decoder = counting
        try:
            fast = cr.convert_raw(bag, "door_pull", config)
        finally:
            cr._decoder = decoder
        slow = cr.convert_raw(bag, "door_pull", config, vectorised=False)
        for a, b in zip(fast.batch, slow.batch):
            assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)
        assert np.array_equal(fast.keys, slow.keys)
        assert (dict(fast.counts), dict(fast.drops), fast.episodes) == \
            (dict(slow.counts), dict(slow.drops), slow.episodes)
        assert fast.counts["transitions"] > 40
        # big-endian IMU messages, trailing bytes, garbage and the truth without the door's joints only
        # (and the goals): every other message was decoded in a table
        odd = [_odd(e, i, r) for e in range(3) for i in range(25) for r in (0, 1)]
        assert one_by_one.count("imu") == sum(o in (7, 8, 9) for o in odd)
        assert one_by_one.count("joint_states") == one_by_one.count("commands") == 0
        assert one_by_one.count("goal") == (14 if with_goals else 0)
        assert one_by_one.count("ground_truth") == (odd.count(16) if truth else 0)
        drops = set(fast.drops)
        assert {"imu:non_finite", "imu:duplicate", "imu:undecodable", "command:wrong_size", "command:non_finite",
                "command:out_of_bounds", "joint_state:non_finite", "joint_state:out_of_order"} <= drops, drops
        assert ("truth_missing" in drops) == truth
