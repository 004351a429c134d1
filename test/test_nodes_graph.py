"""Policy, collector and trainer nodes as real, separate processes over real rclpy (isolated ROS_DOMAIN_ID).

What is checked: transitions reach the trainer's buffer; malformed transition / episode-statistics / weights
messages are dropped and counted while the nodes keep running; a late-joining policy node gets the latest
weights (transient local) and acts with them; the lifecycle gate (no commands before activation); the
trainer's services, stop condition and clean SIGINT exit (final checkpoint); and that killing one robot's
collector does not stop the trainer while the other robot keeps training it.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")


from async_naf.wire import layouts

OBS, ACT = 23, 7  # reach
TRAINER = "/trainer"
pytestmark = pytest.mark.timeout(180)


def _transitions(n: int, seed: int, obs_dim: int = OBS) -> layouts.ArrayMsg:
    rng = np.random.default_rng(seed)
    batch = layouts.TransitionBatch(
        rng.normal(size=(n, obs_dim)).astype(np.float32), rng.uniform(-0.5, 0.5, (n, ACT)).astype(np.float32),
        rng.normal(size=n).astype(np.float32), rng.normal(size=(n, obs_dim)).astype(np.float32),
        np.zeros(n, np.float32), np.zeros(n), np.zeros(n), np.arange(n))
    return layouts.encode_transitions(batch)


def _trainer_args(run_dir: Path, *extra: str) -> list[str]:
    return ["-p", "task:=reach", "-p", f"run_dir:={run_dir}", "-p", "diagnostics_period_s:=0.2",
            "-p", "checkpoint_every_s:=0.0", "-p", "replay_capacity:=20000", *extra]


def test_trainer_buffers_valid_batches_and_drops_malformed_ones(procs, probe, tmp_path) -> None:
    from std_msgs.msg import Float32MultiArray, Float64MultiArray
    from std_srvs.srv import SetBool, Trigger

    from async_naf.nodes import _msgs

    run = tmp_path / "run"
    procs.start("trainer", "trainer_node", *_trainer_args(run, "-p", "min_buffer_size:=100000"))
    pub = probe.node.create_publisher(Float32MultiArray, "/trainer/transitions", _msgs.STREAM)
    stats_pub = probe.node.create_publisher(Float64MultiArray, "/trainer/episode_stats", _msgs.STREAM)
    probe.spin_until(lambda: pub.get_subscription_count() > 0 and stats_pub.get_subscription_count() > 0, 60,
                     "the trainer's subscriptions")
    to_msg = _msgs.to_msg
    for seed in range(3):
        pub.publish(to_msg(_transitions(50, seed), Float32MultiArray))
    good = _transitions(10, 9)
    nan = good.data.copy()
    nan[5] = np.nan
    malformed = [
        layouts.ArrayMsg(("async_naf.transitions.v1:rows", good.labels[1]), good.sizes, good.strides, good.data),
        layouts.ArrayMsg(good.labels, good.sizes, good.strides, nan),
        _transitions(10, 1, obs_dim=20),  # another task's observation size
        layouts.ArrayMsg(good.labels, good.sizes, good.strides, good.data[:-3]),
    ]
    for m in malformed:
        pub.publish(to_msg(m, Float32MultiArray))
    bad_stats = layouts.encode_episode_stats(layouts.EpisodeStats(0, 0, 1.0, 5, True, 5))
    bad_stats = layouts.ArrayMsg(bad_stats.labels, bad_stats.sizes, bad_stats.strides,
                                 np.array([0, 0, 1.0, 5, 0.5, 5]))  # success must be 0/1
    stats_pub.publish(to_msg(bad_stats, Float64MultiArray))
    stats_pub.publish(to_msg(layouts.encode_episode_stats(layouts.EpisodeStats(1, 0, -2.0, 50, False, 150)),
                             Float64MultiArray))
    pub.publish(to_msg(_transitions(50, 7), Float32MultiArray))  # after the bad ones: still accepted

    probe.spin_until(lambda: probe.diag(TRAINER, "env_steps") == 200
                     and probe.diag(TRAINER, "dropped_transitions_layout") == 4
                     and probe.diag(TRAINER, "dropped_episode_stats_layout") == 1
                     and probe.diag(TRAINER, "episodes") == 1, 60, "trainer counters")
    assert probe.diag(TRAINER, "buffer_size") == 200

    save = probe.node.create_client(Trigger, "/trainer/save_checkpoint")
    resp = probe.call(save, Trigger.Request())
    assert resp.success and Path(resp.message).exists()
    pause = probe.node.create_client(SetBool, "/trainer/pause")
    assert probe.call(pause, SetBool.Request(data=True)).message == "paused"
    probe.spin_until(lambda: probe.diag(TRAINER, "paused") == 1.0, 20, "paused flag")

    assert procs.interrupt("trainer") == 0, procs.log("trainer")
    assert (run / "checkpoints" / "final.safetensors").exists()
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["env_steps"] == 200
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].split(",")[3:7] == ["1", "0", "-2", "0"]


def test_trainer_exits_zero_at_its_stop_condition(procs, probe, tmp_path) -> None:
    from std_msgs.msg import Float32MultiArray

    from async_naf.nodes import _msgs

    run = tmp_path / "run"
    proc = procs.start("trainer", "trainer_node", *_trainer_args(run, "-p", "max_env_steps:=100",
                                                                   "-p", "min_buffer_size:=10"))
    pub = probe.node.create_publisher(Float32MultiArray, "/trainer/transitions", _msgs.STREAM)
    probe.spin_until(lambda: pub.get_subscription_count() > 0, 60, "the trainer's subscription")
    pub.publish(_msgs.to_msg(_transitions(60, 0), Float32MultiArray))
    pub.publish(_msgs.to_msg(_transitions(60, 1), Float32MultiArray))
    probe.spin_until(lambda: proc.poll() is not None, 60, "the trainer to exit")
    assert proc.returncode == 0, procs.log("trainer")
    assert (run / "checkpoints" / "final.safetensors").exists() and (run / "weights" / "final.safetensors").exists()


def test_bad_parameters_exit_with_status_2(ros_env) -> None:
    for module, args in (("policy_node", ["-p", "trigger:=sometimes"]), ("collector_node", ["-p", "task:=fly"]),
                         ("trainer_node", ["-p", "naf.gamma:=2.0"])):
        out = subprocess.run([sys.executable, "-m", f"async_naf.nodes.{module}", "--ros-args", *args],
                             env=ros_env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 2, (module, out.stderr[-2000:])
        assert "trigger" in out.stderr or "task" in out.stderr or "gamma" in out.stderr


def _expected_command(weights: bytes, q: np.ndarray, qd: np.ndarray, goal: np.ndarray) -> np.ndarray:
    from async_naf.learning.agents import Policy
    from async_naf.task.kinematics import ArmKinematics
    from async_naf.task.tasks import TaskState, make_task

    task, kin = make_task("reach"), ArmKinematics()
    obs = task.observation(TaskState(q, qd, kin.ee_position(q)), goal)
    policy = Policy.from_bytes(weights)
    low = np.maximum(-kin.velocity_limits, np.maximum(task.action_low, policy.action_low))
    high = np.minimum(kin.velocity_limits, np.minimum(task.action_high, policy.action_high))
    return np.clip(policy.act(obs), low, high)


def test_late_policy_gets_weights_acts_with_them_and_drops_malformed_weights(procs, probe, tmp_path) -> None:
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray, MultiArrayDimension, UInt8MultiArray

    from async_naf.nodes import _msgs
    from async_naf.sim import ARM_JOINT_NAMES

    procs.start("trainer", "trainer_node", *_trainer_args(tmp_path / "run", "-p", "min_buffer_size:=100000"))
    received: list[bytes] = []
    weights_sub = probe.node.create_subscription(
        UInt8MultiArray, "/trainer/weights", lambda m: received.append(layouts.decode_weights(_msgs.from_msg(m))),
        _msgs.LATCHED)
    probe.spin_until(lambda: received, 60, "the trainer's first weights")
    # the policy starts only now: it must get the weights from the trainer's transient-local history
    ns = "/robot_0"
    procs.start("policy", "policy_node", "-p", "task:=reach", "-p", "eval_mode:=true",
                "-p", "diagnostics_period_s:=0.2", namespace=ns)
    name = f"{ns}/policy"
    probe.spin_until(lambda: probe.diag(name, "weights_loaded") == 1, 60, "weights at the late-joining policy")
    assert probe.diag(name, "weights_version") == 0

    commands: list[np.ndarray] = []
    steps: list[layouts.PolicyStep] = []
    probe.node.create_subscription(Float64MultiArray, f"{ns}/forward_velocity_controller/commands",
                                   lambda m: commands.append(np.array(m.data)), _msgs.COMMANDS)
    probe.node.create_subscription(Float64MultiArray, f"{ns}/policy/step",
                                   lambda m: steps.append(layouts.decode_policy_step(_msgs.from_msg(m))),
                                   _msgs.STREAM)
    goal_pub = probe.node.create_publisher(Float64MultiArray, f"{ns}/task/goal", _msgs.LATCHED)
    goal = np.array([0.45, 0.1, 0.5])
    goal_pub.publish(_msgs.to_msg(layouts.encode_goal(layouts.Goal(0, True, goal)), Float64MultiArray))
    js_pub = probe.node.create_publisher(JointState, f"{ns}/joint_states", _msgs.SENSOR)
    q = np.array([0.1, 0.3, -0.2, -1.5, 0.1, 0.8, 0.0])
    qd = np.linspace(-0.1, 0.1, 7)

    def send_joint_state(stamp_s: float) -> None:
        js = JointState(name=list(ARM_JOINT_NAMES), position=q.tolist(), velocity=qd.tolist())
        js.header.stamp.sec, js.header.stamp.nanosec = int(stamp_s), int((stamp_s % 1) * 1e9)
        js_pub.publish(js)

    def command_for(stamp_s: float) -> np.ndarray:
        count, first = len(steps), stamp_s
        while len(steps) == count:  # best-effort joint states: re-send until the policy answers
            assert stamp_s < first + 30, "the policy never answered a joint state"
            send_joint_state(stamp_s)
            stamp_s += 0.05
            probe.executor.spin_once(timeout_sec=0.1)
        probe.spin_until(lambda: len(commands) >= len(steps), 10, "the command")
        return commands[-1]

    cmd = command_for(1.0)
    np.testing.assert_allclose(cmd, _expected_command(received[0], q, qd, goal), atol=1e-5)
    np.testing.assert_allclose(steps[-1].action, cmd, atol=1e-12)
    np.testing.assert_allclose(steps[-1].joint_pos, q)

    # malformed weights: garbage bytes, a truncated file, weights for another observation size; one at a
    # time (the weights topic keeps only the newest message, by design)
    probe.node.destroy_subscription(weights_sub)
    bad_pub = probe.node.create_publisher(UInt8MultiArray, "/trainer/weights", _msgs.LATCHED)
    probe.spin_until(lambda: bad_pub.get_subscription_count() > 0, 30, "the policy to match our weights publisher")
    garbage = UInt8MultiArray()
    garbage.layout.dim = [MultiArrayDimension(label="async_naf.weights.v1", size=64, stride=64)]
    garbage.data = bytes(range(64))
    truncated = layouts.encode_weights(received[0])
    truncated = _msgs.to_msg(layouts.ArrayMsg(truncated.labels, (100,), (100,), truncated.data[:100]),
                             UInt8MultiArray)
    from async_naf.learning.agents import NAFConfig, make_agent

    other = make_agent(NAFConfig(obs_dim=20, act_dim=7)).policy_weights()
    for k, msg in enumerate((garbage, truncated, _msgs.to_msg(layouts.encode_weights(other), UInt8MultiArray))):
        bad_pub.publish(msg)
        probe.spin_until(lambda k=k: probe.diag(name, "dropped_weights", 0.0) >= k + 1, 60,
                         f"dropped weights message {k + 1}")
    assert probe.diag(name, "weights_loaded") == 1
    np.testing.assert_allclose(command_for(50.0), cmd, atol=1e-5)  # still acting with the last good weights
    assert procs.procs["policy"].poll() is None and procs.procs["trainer"].poll() is None

    # an arm joint named twice (its second value NaN) is a malformed joint state: dropped, not half-read
    dropped = probe.diag(name, "dropped_joint_state", 0.0)
    twice = JointState(name=list(ARM_JOINT_NAMES) * 2, position=q.tolist() + [float("nan")] * 7,
                       velocity=qd.tolist() * 2)
    t_twice = round(steps[-1].stamp_s + 0.5, 3)  # near the stream's clock (a far stamp is dropped for that)
    twice.header.stamp.sec, twice.header.stamp.nanosec = int(t_twice), int(round((t_twice % 1) * 1e9))
    for _ in range(150):  # best effort: re-send until counted (30 s at most)
        if probe.diag(name, "dropped_joint_state", 0.0) > dropped:
            break
        js_pub.publish(twice)
        probe.executor.spin_once(timeout_sec=0.2)
    assert all(abs(step.stamp_s - t_twice) > 1e-6 for step in steps)  # no step from it
    assert probe.diag(name, "dropped_joint_state", 0.0) > dropped

    # runtime parameters: exploration on -> the command leaves mu(x); a bad value is refused
    from rcl_interfaces.msg import Parameter as ParamMsg
    from rcl_interfaces.msg import ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    set_params = probe.node.create_client(SetParameters, f"{ns}/policy/set_parameters")

    def set_param(name: str, value: ParameterValue) -> bool:
        req = SetParameters.Request(parameters=[ParamMsg(name=name, value=value)])
        return probe.call(set_params, req).results[0].successful

    assert set_param("eval_mode", ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=False))
    assert set_param("exploration_scale", ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=1.0))
    assert not set_param("exploration_scale", ParameterValue(type=ParameterType.PARAMETER_DOUBLE,
                                                             double_value=-1.0))
    assert not set_param("task", ParameterValue(type=ParameterType.PARAMETER_STRING, string_value="door_pull"))
    assert np.max(np.abs(command_for(60.0) - cmd)) > 1e-3  # noise added


def test_lifecycle_policy_commands_only_once_activated(procs, probe) -> None:
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from async_naf.nodes import _msgs
    from async_naf.sim import ARM_JOINT_NAMES

    ns = "/robot_0"
    procs.start("policy", "policy_node", "-p", "task:=reach", "-p", "autostart:=false", namespace=ns)
    commands: list[np.ndarray] = []
    probe.node.create_subscription(Float64MultiArray, f"{ns}/forward_velocity_controller/commands",
                                   lambda m: commands.append(np.array(m.data)), _msgs.COMMANDS)
    goal_pub = probe.node.create_publisher(Float64MultiArray, f"{ns}/task/goal", _msgs.LATCHED)
    goal_pub.publish(_msgs.to_msg(layouts.encode_goal(layouts.Goal(0, True, np.array([0.4, 0.0, 0.5]))),
                                  Float64MultiArray))
    js_pub = probe.node.create_publisher(JointState, f"{ns}/joint_states", _msgs.SENSOR)
    change = probe.node.create_client(ChangeState, f"{ns}/policy/change_state")
    # unconfigured: no subscriptions exist yet, so joint states go nowhere
    assert probe.call(change, ChangeState.Request(transition=Transition(id=Transition.TRANSITION_CONFIGURE))).success
    probe.spin_until(lambda: js_pub.get_subscription_count() > 0, 30, "the configured policy's subscription")
    js = JointState(name=list(ARM_JOINT_NAMES), position=[0.0] * 7, velocity=[0.0] * 7)
    for i in range(10):  # configured but inactive: must not command
        js.header.stamp.sec = i + 1
        js_pub.publish(js)
        probe.executor.spin_once(timeout_sec=0.05)
    assert probe.call(change, ChangeState.Request(transition=Transition(id=Transition.TRANSITION_ACTIVATE))).success
    before = len(commands)
    assert all(np.all(c == 0.0) for c in commands[:before])  # at most zero-velocity holds before activation
    stamp = 20
    while len(commands) == before:
        assert stamp < 400, "no command after activation"
        js.header.stamp.sec = stamp
        stamp += 1
        js_pub.publish(js)
        probe.executor.spin_once(timeout_sec=0.1)
    assert commands[-1].shape == (7,)


def test_killing_one_collector_does_not_stop_the_trainer(procs, probe, tmp_path) -> None:
    run = tmp_path / "run"
    procs.start("trainer", "trainer_node", *_trainer_args(run, "-p", "min_buffer_size:=100"))
    for i in range(2):
        ns = f"/robot_{i}"
        common = ["-p", "task:=reach", "-p", f"seed:={i + 1}"]
        procs.start(f"sim{i}", "sim_node", *common, namespace=ns)
        procs.start(f"policy{i}", "policy_node", *common, "-p", "lockstep:=true", namespace=ns)
        procs.start(f"collector{i}", "collector_node", *common, "-p", f"robot_id:={i}",
                    "-p", "diagnostics_period_s:=0.2", namespace=ns)
    c0, c1 = "/robot_0/collector", "/robot_1/collector"
    probe.spin_until(lambda: probe.diag(c0, "episodes") >= 1 and probe.diag(c1, "episodes") >= 1, 120,
                     "an episode from each robot")
    probe.spin_until(lambda: probe.diag(TRAINER, "updates") > 0, 60, "the first updates")
    procs.kill("collector0")
    steps = probe.diag(TRAINER, "env_steps")
    updates = probe.diag(TRAINER, "updates")
    probe.spin_until(lambda: probe.diag(TRAINER, "env_steps") >= steps + 200
                     and probe.diag(TRAINER, "updates") > updates, 60, "training to go on with robot 1")
    assert procs.procs["trainer"].poll() is None
    assert procs.interrupt("trainer") == 0, procs.log("trainer")
    robots = {line.split(",")[3] for line in (run / "metrics.csv").read_text().splitlines()[1:]}
    assert robots == {"0", "1"}


def test_door_policy_waits_for_a_current_door_estimate(procs, probe) -> None:
    """Door tasks: act on a joint state with a door estimate at least as new; closed-door prior at the start."""
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from async_naf.nodes import _msgs
    from async_naf.sim import ARM_JOINT_NAMES
    from async_naf.task.tasks import make_task

    ns = "/robot_0"
    procs.start("policy", "policy_node", "-p", "task:=door_pull", "-p", "door_wait_s:=0.05",
                "-p", "door_stale_s:=0.5", "-p", "diagnostics_period_s:=0.2", namespace=ns)
    steps: list[layouts.PolicyStep] = []
    commands: list[np.ndarray] = []
    probe.node.create_subscription(Float64MultiArray, f"{ns}/policy/step",
                                   lambda m: steps.append(layouts.decode_policy_step(_msgs.from_msg(m))),
                                   _msgs.STREAM)
    probe.node.create_subscription(Float64MultiArray, f"{ns}/forward_velocity_controller/commands",
                                   lambda m: commands.append(np.array(m.data)), _msgs.COMMANDS)
    goal = make_task("door_pull").sample_goal(np.random.default_rng(0))
    goal_pub = probe.node.create_publisher(Float64MultiArray, f"{ns}/task/goal", _msgs.LATCHED)
    goal_pub.publish(_msgs.to_msg(layouts.encode_goal(layouts.Goal(0, True, goal)), Float64MultiArray))
    js_pub = probe.node.create_publisher(JointState, f"{ns}/joint_states", _msgs.SENSOR)
    door_pub = probe.node.create_publisher(JointState, f"{ns}/door/joint_states", _msgs.SENSOR)
    probe.spin_until(lambda: js_pub.get_subscription_count() > 0 and door_pub.get_subscription_count() > 0, 60,
                     "the policy's subscriptions")

    def stamp(msg: JointState, t: float) -> JointState:
        msg.header.stamp.sec, msg.header.stamp.nanosec = int(t), int(round((t % 1) * 1e9))
        return msg

    def joint_state(t: float) -> JointState:
        return stamp(JointState(name=list(ARM_JOINT_NAMES), position=[0.0, 0.5, 0.0, -1.5, 0.0, 0.5, 0.0],
                                velocity=[0.0] * 7), t)

    def door(t: float, angle: float) -> JointState:
        return stamp(JointState(name=["door_hinge"], position=[angle], velocity=[0.1]), t)

    # 1) episode start, no estimate yet: after door_wait_s the policy acts with the closed-door prior
    t = 10.0
    while not steps:
        js_pub.publish(joint_state(t))
        probe.executor.spin_once(timeout_sec=0.2)
        t += 0.05
        assert t < 40, "no step at the episode start"
    assert steps[-1].door_angle == 0.0
    probe.spin_until(lambda: probe.diag(f"{ns}/policy", "door_late") >= 1, 30, "the door_late counter")
    # 2) a joint state, then (later) its door estimate: the policy waits for it and uses it, not an older one
    published: dict[int, float] = {}
    n = len(steps)
    while len(steps) == n:  # best effort: repeat (with new stamps and angles) if a message was lost
        t += 0.05
        assert t < 80, "no step with a door estimate"
        angle = 0.2 + 0.01 * len(published)
        published[round(t * 1e6)] = angle
        js_pub.publish(joint_state(t))
        probe.executor.spin_once(timeout_sec=0.01)  # the estimate comes after the joint state
        door_pub.publish(door(t - 0.005, angle))
        probe.executor.spin_once(timeout_sec=0.2)
    first = steps[n]
    assert first.door_angle == pytest.approx(published[round(first.stamp_s * 1e6)])
    # 3) the newest estimate is older than door_stale_s: the arm is stopped (zero command), no step
    t_stale = t + 2.0
    while probe.diag(f"{ns}/policy", "dropped_door_stale", 0.0) < 1:
        t_stale += 0.05
        assert t_stale < t + 30, "no stale-door stop"
        js_pub.publish(joint_state(t_stale))
        probe.executor.spin_once(timeout_sec=0.2)
    probe.spin_until(lambda: len(commands) > 0 and np.all(commands[-1] == 0.0), 30, "a zero command")
    assert all(step.stamp_s < t + 2.0 for step in steps)  # no step was made for the stale joint states
