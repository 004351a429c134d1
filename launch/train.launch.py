"""Asynchronous NAF training: N robots (collectors) and one trainer, on MuJoCo, Gazebo or real arms.

Examples::

    ros2 launch async_naf train.launch.py                                   # door_pull, 2 embedded MuJoCo arms
    ros2 launch async_naf train.launch.py task:=reach workers:=4 realtime:=true run_dir:=/tmp/reach4
    ros2 launch async_naf train.launch.py backend:=gazebo workers:=2 task:=door_push
    ros2 launch async_naf train.launch.py backend:=gazebo gui:=true rviz:=true spawn_poses:="0 0 0 0; 0 3 0 0"
    ros2 launch async_naf train.launch.py task:=door_pull demos:=runs/door_expert/bag demo_ratio:=0.1
    ros2 launch async_naf train.launch.py backend:=real workers:=1 \\
        hardware_plugin:=my_arm_driver/MyArmSystem robot_ip:=192.168.1.10
    ros2 launch async_naf train.launch.py backend:=real workers:=2 hardware_file:=/path/to/hardware.yaml

The nodes and their parameters come from ``async_naf.run.graph.build_graph`` - the same description
``async-naf train`` starts without ROS 2 launch - so both paths run the same graph:

- per robot namespace ``/robot_<i>``: ``sim`` (backend mujoco only), ``door_angle``, ``policy``, ``collector``;
- ``/trainer``: its clean exit (budget reached) shuts the whole launch down; after a crash it is respawned
  (``trainer_restarts`` times at most, ``respawn_delay`` 2 s) and resumes from run_dir's newest checkpoint
  (the trainer runs with ``resume: true``: a run_dir that holds an earlier run is continued), while the
  robots go on with the last weights;
- gazebo: Gazebo (ros_gz_sim's gz_sim.launch.py with worlds/async_naf.sdf: physics and the IMU system once per
  world), per robot robot_state_publisher (the door of the task, the arm at the episode's start pose) +
  ``ros_gz_sim create`` + an IMU bridge, one ``/clock`` bridge, and the controller spawner (gz_ros2_control
  runs the controller manager inside Gazebo with config/controllers.yaml);
- real: per robot robot_state_publisher, ``ros2_control_node`` with the hardware plugin given as a xacro
  argument (per robot from ``hardware_file:=``), and the same spawner. The door IMU driver (publishing
  ``/robot_<i>/door/imu``) is yours to start.
- gazebo / real, TF: per robot a second robot_state_publisher (``door_state_publisher``) publishes the door leaf
  from the door_angle node's ``door/joint_states``, static transforms hold the handle at rest and place
  ``robot_<i>/world`` in ``world`` at the robot's ``spawn_poses`` entry; ``rviz:=true`` opens rviz/async_naf.rviz;
  ``gui:=true`` runs gz sim with its GUI (default: server only);
- a spawner or ``create`` that exits with a non-zero code ends the launch (the arm would never move).

Every process it starts gets ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` (DDS on loopback) unless the variable
is already set or ``discovery:=subnet`` / ``discovery_server:=HOST:PORT`` is given, as with real arms on another
machine. Several hosts (docs/graph.md, "Several hosts")::

    ros2 launch async_naf train.launch.py part:=trainer workers:=3 task:=reach discovery:=subnet   # GPU server
    ros2 launch async_naf train.launch.py part:=robots robots:=0,2 workers:=3 task:=reach discovery:=subnet
"""
from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    IncludeLaunchDescription,
    OpaqueFunction,
    SetEnvironmentVariable,
    Shutdown,
)
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from async_naf.common.ros_env import DEFAULT_DISCOVERY_RANGE

# name, default, description, choices (None: free text). Every argument has a description.
ARGUMENTS = (
    ("backend", "mujoco",
     "Where the arms are: mujoco (embedded MuJoCo simulation, one sim node per robot), gazebo (Gazebo via "
     "ros_gz and gz_ros2_control), real (ros2_control_node with hardware_plugin) or hardware (the graph of real, "
     "with the embedded simulation in hardware mode standing in for each arm: a rehearsal without a robot).",
     ("mujoco", "gazebo", "real", "hardware")),
    ("workers", "2", "Number of robots (collectors), each in its own namespace /robot_<i>.", None),
    ("task", "door_pull", "Task to learn: reach (random target), door_pull or door_push (latched door).",
     ("reach", "door_pull", "door_push")),
    ("seed", "0", "Base random seed; robot i gets its own seed derived from it.", None),
    ("run_dir", "runs/launch",
     "Directory for metrics.csv, checkpoints/ and TensorBoard events written by the trainer.", None),
    ("realtime", "false",
     "mujoco only: pace each simulated robot to wall time like a real robot (true) or step as fast as the "
     "graph keeps up (false).", ("true", "false")),
    ("config", "",
     "Parameter overrides per node (ROS params-file format); empty = the package's config/train.yaml "
     "with config/train.<task>.yaml over it where the task has one (config/train.door_pull.yaml, "
     "config/train.door_push.yaml); a named file replaces both (copy what the task's file sets into yours to "
     "keep it).", None),
    ("max_env_steps", "0", "Trainer stops after this many environment steps from all robots (0 = no limit).",
     None),
    ("max_wall_s", "0", "Trainer stops this many seconds of wall time after the launch started (0 = no limit); "
     "a respawned trainer keeps that end (deadline_unix, fixed once at launch).", None),
    ("use_sim_time", "auto",
     "Nodes follow /clock: auto = true for gazebo, false otherwise.", ("auto", "true", "false")),
    ("gz_world", "",
     "gazebo: world file (or gz world name) given to gz sim; empty = the package's worlds/async_naf.sdf (physics, "
     "the IMU system once for all robots, ground plane). A world of your own must load the Physics, "
     "UserCommands, SceneBroadcaster and Imu systems itself.", None),
    ("gz_args", "-r -v 2",
     "gazebo: extra gz sim arguments (-r run immediately, -v verbosity); server only or with GUI: gui:=.", None),
    ("gui", "false",
     "gazebo: true starts gz sim with its GUI; false runs the server only (gz sim -s, headless).",
     ("true", "false")),
    ("rviz", "false",
     "gazebo / real: start rviz2 with the package's rviz/async_naf.rviz (RobotModel and TF of robot_0, fixed "
     "frame world).", ("true", "false")),
    ("spawn_poses", "",
     "gazebo / real: 'x y z yaw' (m, m, m, rad) of each robot's base frame robot_<i>/world in the frame world, "
     "one per robot of the graph separated by ';' (e.g. '0 0 0 0; 0 3 0 1.57'): where ros_gz_sim create spawns "
     "it, and the static transform world -> robot_<i>/world. Empty = robots on the y axis, 4 m apart.", None),
    ("description_file", "",
     "gazebo / real: xacro of the robot (arm, door, ros2_control tags) given the arguments of "
     "urdf/arm_door.urdf.xacro; empty = the package's urdf/arm_door.urdf.xacro.", None),
    ("controllers_file", "",
     "gazebo / real: ros2_control controllers YAML (joint_state_broadcaster, forward_velocity_controller); "
     "empty = the package's config/controllers.yaml.", None),
    ("hardware_plugin", "mock_components/GenericSystem",
     "real: ros2_control hardware plugin (SystemInterface) of the arm, passed to the xacro.", None),
    ("robot_ip", "192.168.1.10",
     "real: address of the arm, passed to the hardware plugin of every robot that hardware_file does not "
     "configure otherwise (one robot; for several, give each its own in hardware_file).", None),
    ("hardware_file", "",
     "real: YAML file with one entry per robot, robot_<i>: {plugin: <SystemInterface>, parameters: {robot_ip: "
     "..., ...}}, setting each robot's hardware plugin (default hardware_plugin) and the <param> tags of its "
     "<hardware> (docs/graph.md); every robot this host starts needs an entry. Empty = hardware_plugin and "
     "robot_ip for every robot.", None),
    ("controller_manager_timeout", "60",
     "gazebo / real: seconds the controller spawner waits for the robot's controller manager before it fails "
     "(and a failed spawner ends the launch).", None),
    ("record", "false",
     "Record every robot's sensors, commands, goals and policy steps, the weights and /diagnostics with "
     "`ros2 bag record` (MCAP) into run_dir/bag; the topic list is the graph description's.", ("true", "false")),
    ("demos", "",
     "Demonstrations for the trainer: comma-separated dataset directories (async-naf bag convert) or rosbag2 bags "
     "(converted the exact way into run_dir/demos/ before any node starts), kept in a replay buffer of their own "
     "and checked against the task; empty = none.", None),
    ("demo_ratio", "0.1",
     "Share of demonstration rows in every update batch, 0..1 (round(demo_ratio * batch_size) rows; all "
     "demonstrations until the replay buffer holds min_buffer_size rows). Ignored without demos.", None),
    ("demo_pretrain_updates", "",
     "Updates on the demonstrations alone before the trainer publishes its first weights (DQfD's pre-training "
     "phase; 0 = off); empty = the parameter file's value. Ignored without demos.", None),
    ("part", "all",
     "Which part of the graph this host starts: all (trainer and robots), trainer (the trainer only; the robots "
     "run on other hosts) or robots (robots only; they wait for the trainer of another host and act with its "
     "weights); it runs until Ctrl-C. Several hosts: docs/graph.md, 'Several hosts'.", ("all", "trainer", "robots")),
    ("robots", "",
     "Comma-separated global indices of the robots to start, e.g. 0,2 (empty = all of 0..workers-1); workers "
     "is the number of robots of the whole graph, so /robot_2 keeps its namespace and seed on any host.", None),
    ("discovery", "",
     "DDS discovery range of every process: localhost (loopback only), subnet (the hosts of the local "
     "subnets, for a graph split across machines); empty = ROS_AUTOMATIC_DISCOVERY_RANGE if set, else "
     "localhost.", ("", "localhost", "subnet")),
    ("discovery_server", "",
     "HOST:PORT of a Fast DDS discovery server (fast-discovery-server) to use instead of multicast discovery; "
     "implies discovery subnet. HOST: an IPv4 address, a name or [IPv6]; several servers ';'-separated. "
     "Empty = none.", None),
    ("composition", "robot",
     "none: one process per node; robot: each robot's nodes (sim, door_angle, policy, collector) in one "
     "process with one executor (robot_container), same names, topics, messages and QoS; the trainer keeps "
     "its own process.", ("none", "robot")),
    ("intra_process", "true",
     "With composition robot: true hands messages between a robot's nodes over inside the process (published "
     "to DDS only for subscribers in other processes, and always on latched topics); false sends them through "
     "DDS as between processes.", ("true", "false")),
    ("trainer_restarts", "3",
     "Respawn a trainer that died at most this many times (2 s later), resuming from run_dir's newest "
     "checkpoint; the robots go on with the last weights meanwhile. 0 = the trainer's exit ends the launch.",
     None),
)


def _node(spec, on_exit=None):
    """A launch_ros Node from an async_naf.run.graph.NodeSpec."""
    params = list(spec.param_files)
    if spec.parameters:
        # a respawned process gets the same command line: its restart parameters (the trainer: resume from its
        # newest checkpoint, starting fresh when there is none) hold from the first start on
        params.append({**spec.parameters, **spec.restart_parameters} if spec.max_restarts else dict(spec.parameters))
    kwargs = {"on_exit": on_exit} if on_exit is not None else {}
    if spec.max_restarts:
        kwargs.update(respawn=True, respawn_delay=float(spec.restart_delay_s),
                      respawn_max_retries=int(spec.max_restarts))
    return Node(
        package=spec.package,
        executable=spec.executable,
        name=spec.name,
        namespace=spec.namespace,
        parameters=params,
        remappings=list(spec.remappings),
        arguments=list(spec.arguments),
        output="screen",
        **kwargs,
    )


def _end_on_clean_exit(spec):
    """on_exit callable (launch's ``Callable[[ProcessExited, LaunchContext], entities]``) for a respawned
    required node: a clean exit shuts the launch down; a crash is left to respawn, up to its limit."""
    crashes = {"n": 0}

    def on_exit(event, context):
        del context
        if event.returncode == 0:
            return [Shutdown(reason=f"{spec.fqn} finished")]
        crashes["n"] += 1
        if crashes["n"] > spec.max_restarts:
            return [Shutdown(reason=f"{spec.fqn} died {crashes['n']} times (respawn_max_retries {spec.max_restarts})")]
        return None

    return on_exit


def _fail_on_error(spec):
    """on_exit callable for a bringup tool that exits when done (ros_gz_sim create, the spawner): exit code 0 is
    success; any other ends the launch with the tool named."""

    def on_exit(event, context):
        del context
        if event.returncode != 0:
            return [Shutdown(reason=f"{spec.fqn} failed (exit code {event.returncode})")]
        return None

    return on_exit


def _container(spec, params_dir):
    """A launch_ros Node running async_naf.run.container for an async_naf.run.graph.ContainerSpec: one
    params file per node, keyed by its fully qualified name (so each reaches only its node), no node-name
    remapping (it would rename every node of the process)."""
    from async_naf.run.launcher import write_params_file

    files = [str(write_params_file(f"{params_dir}/{n.key}.yaml", n.fqn, n.parameters)) for n in spec.nodes]
    return Node(
        package=spec.package,
        executable=spec.executable,
        namespace=spec.namespace,
        parameters=files,
        remappings=list(spec.remappings),
        arguments=list(spec.roles) + ([] if spec.intra_process else ["--intra-process", "off"]),
        output="screen",
    )


def _launch_setup(context, *args, **kwargs):
    """Build every action once the launch arguments are known (OpaqueFunction)."""
    import tempfile
    import time

    from async_naf.common.ros_env import discovery_variables
    from async_naf.run.demos import prepare_demos
    from async_naf.run.graph import (
        ONE_SHOT_BRINGUP,
        ROSBAG2_RECORDER,
        GraphConfig,
        build_bringup,
        build_graph,
        compose,
        config_overrides,
        gz_sim_args,
        load_hardware_file,
        parse_robots,
        parse_spawn_poses,
        robot_indices,
        rosbag2_record_command,
        with_deadline,
    )

    def arg(name):
        return LaunchConfiguration(name).perform(context)

    backend = arg("backend")
    use_sim_time = {"auto": backend == "gazebo", "true": True, "false": False}[arg("use_sim_time")]
    # a config:= file that does not exist is an error (as for `async-naf train --config`), never ignored
    overrides = config_overrides(arg("config"), "config:=", task=arg("task"))
    demo_sources = [p.strip() for p in arg("demos").split(",") if p.strip()]
    if demo_sources and arg("part") != "robots":
        # bags converted, every dataset checked against the task (a mismatch raises here: nothing starts)
        overrides.setdefault("/trainer", {}).update(
            demos=prepare_demos(demo_sources, arg("task"), arg("run_dir")), demo_ratio=float(arg("demo_ratio")))
        if arg("demo_pretrain_updates").strip():
            overrides["/trainer"]["demo_pretrain_updates"] = int(arg("demo_pretrain_updates"))
    config = GraphConfig(
        task=arg("task"), workers=int(arg("workers")), backend=backend, seed=int(arg("seed")),
        run_dir=arg("run_dir"), realtime=arg("realtime").lower() == "true", use_sim_time=use_sim_time,
        max_env_steps=int(arg("max_env_steps")), max_wall_s=float(arg("max_wall_s")), overrides=overrides,
        composition=arg("composition"), intra_process=arg("intra_process").lower() == "true",
        trainer_restarts=int(arg("trainer_restarts")),
        part=arg("part"), robots=parse_robots(arg("robots")),
        # the first episode of each robot waits until `ros2 bag record` (below) takes its policy steps
        external_recorder=ROSBAG2_RECORDER if arg("record") == "true" else "",
    )
    # the run's end, fixed once here: a respawned trainer reads the same parameters file, so it stops at the
    # run's end instead of counting max_wall_s from its own start
    config = with_deadline(config, time.time())
    # spanning hosts is explicit: discovery:= / discovery_server:= override the range set at the top
    actions_env = [SetEnvironmentVariable(name, value)
                   for name, value in discovery_variables(arg("discovery"), arg("discovery_server")).items()]
    if arg("record") == "true":
        # rosbag2's own recorder with the graph's topic list (it adapts to the offered QoS and writes it into
        # metadata.yaml) and the task in its custom_data; `async-naf train --record` starts async_naf's recorder
        # node with the same list
        actions_first = [ExecuteProcess(cmd=rosbag2_record_command(config), output="screen", sigterm_timeout="30")]
    else:
        actions_first = []
    actions = [*actions_env, *actions_first]
    if backend == "gazebo" and robot_indices(config):
        actions.append(IncludeLaunchDescription(
            PythonLaunchDescriptionSource(
                PathJoinSubstitution([FindPackageShare("ros_gz_sim"), "launch", "gz_sim.launch.py"])),
            # gz sim -s: the server without the GUI (ros_gz_sim's gz_sim.launch.py passes gz_args to gz sim)
            launch_arguments={"gz_args": gz_sim_args(arg("gz_args"), arg("gui") == "true", arg("gz_world")),
                              "on_exit_shutdown": "true"}.items(),
        ))
    # ros2_control: robot_state_publisher, spawn / ros2_control_node, one spawner per robot for both controllers
    hardware = (load_hardware_file(arg("hardware_file"), config, arg("hardware_plugin"))
                if arg("hardware_file") else None)
    for spec in build_bringup(config, hardware_plugin=arg("hardware_plugin"), robot_ip=arg("robot_ip"),
                              controllers_file=arg("controllers_file") or None, hardware=hardware,
                              controller_manager_timeout_s=float(arg("controller_manager_timeout")),
                              description_file=arg("description_file") or None,
                              spawn_poses=(parse_spawn_poses(arg("spawn_poses"), config.workers)
                                           if arg("spawn_poses") else None),
                              rviz=arg("rviz") == "true"):
        # create and the spawner exit when done: a non-zero exit (no controller manager within the timeout, a
        # controller that failed to load or activate, a model that could not be spawned) ends the launch
        actions.append(_node(spec, on_exit=_fail_on_error(spec) if spec.name in ONE_SHOT_BRINGUP else None))
    # the learning graph itself; the trainer's exit (budget reached, or a crash) ends the launch
    params_dir = tempfile.mkdtemp(prefix="async_naf_launch_params_")
    for spec in compose(build_graph(config), config.composition, config.intra_process):
        if hasattr(spec, "nodes"):  # a composed robot (composition:=robot)
            actions.append(_container(spec, params_dir))
            continue
        on_exit = None
        if spec.required and spec.max_restarts:
            # respawned after a crash (ExecuteProcess respawns on any exit): only a clean exit (its budget
            # reached) ends the launch; so do the crashes once respawn_max_retries are used (no new process)
            on_exit = _end_on_clean_exit(spec)
        elif spec.required:
            on_exit = Shutdown(reason=f"{spec.fqn} exited")
        actions.append(_node(spec, on_exit=on_exit))
    return actions


def generate_launch_description():
    declared = [
        DeclareLaunchArgument(name, default_value=default, description=description,
                              **({"choices": list(choices)} if choices else {}))
        for name, default, description, choices in ARGUMENTS
    ]
    return LaunchDescription([
        # first: every process this launch starts (robot_state_publisher, ros2_control_node, the spawners,
        # the gz bridges, gz sim, the learning nodes) keeps DDS discovery on loopback unless the user set a
        # range explicitly (as async-naf train does, async_naf.common.ros_env)
        SetEnvironmentVariable("ROS_AUTOMATIC_DISCOVERY_RANGE",
                               EnvironmentVariable("ROS_AUTOMATIC_DISCOVERY_RANGE",
                                                   default_value=DEFAULT_DISCOVERY_RANGE)),
        *declared,
        OpaqueFunction(function=_launch_setup),
    ])
