"""``async-naf train``: asynchronous NAF on N robots, as real ROS 2 node processes, without ``ros2 launch``.

Starts the node graph of :func:`async_naf.run.graph.build_graph` (the one ``launch/train.launch.py`` starts on a
ROS install) with :class:`async_naf.run.launcher.GraphLauncher`, shows progress from the trainer's
``metrics.csv``, evaluates checkpoints greedily while it runs (``--eval-every``), and at the end evaluates
the final checkpoint on >= 20 episodes with exploration off, in-process on the embedded environment
(:class:`async_naf.run.env.ArmDoorEnv`, door angle from the IMU estimator, never ground truth). Results:
``summary.json``, ``metrics.csv``, ``eval.csv``, ``learning_curve.png``, ``tensorboard/``, ``checkpoints/``,
``logs/`` (one log per node), ``params/`` (the exact parameter file of every node) and ``graph.json``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

HELP = "train with asynchronous NAF: N robots + one trainer as ROS 2 node processes"
DESCRIPTION = """Train a policy with asynchronous NAF (Gu et al. 2017) on the embedded MuJoCo simulation.

Starts the nodes talking over ROS 2 (loopback only): per robot /robot_<i>/{sim, door_angle, policy,
collector} and one /trainer - the same graph `ros2 launch async_naf train.launch.py` starts; by default
(--composition robot) each robot's four nodes share one process (robot_<i>, intra-process delivery) beside
the trainer's (--composition none: a process per node). Ctrl-C stops every node cleanly (the trainer writes
a final checkpoint, then the final evaluation runs); no process is left behind.

Two criteria are reported for every evaluation: the task's success (doors: open past 0.35 rad at the
end) and the strict one (doors: open at least 1.0 rad over the last second; reach: at the target over the
last second). --criterion picks the one --stop-at-success, --threshold and the best checkpoint use.

Several hosts (docs/graph.md, "Several hosts"): --part trainer on one host, --part robots --robots I,J on the
others, each with the same --task, --seed, --workers (all robots together), ROS_DOMAIN_ID and
--discovery subnet (or --discovery-server HOST:PORT). A trainer part writes everything below (summary.json
adds part, robots [] and episodes_by_robot); a robots part writes only summary.json (part, robots,
discovery, outcome, wall_s, dead_nodes, returncodes, the collectors' counters), collectors/, logs/, params/,
graph.json and train.log.

The run ends at --steps environment steps (all robots together) or --minutes of wall time, whichever comes
first (default: 15 min for reach, 60 min for the door tasks), or earlier with --stop-at-success, whose
evaluations pause the trainer so that the run ends with the weights that reached the rate. The final
policy is then evaluated greedily (exploration off) on --eval-episodes held-out episodes.

Written to --run-dir:
  summary.json         task, workers, env_steps, updates, wall_s, eval_success_rate, eval_episodes,
                       consecutive_successes, eval_strict_success_rate, strict_consecutive,
                       door_angle_final, eval_failures (why failed episodes failed), criterion,
                       time_to_threshold_s, command, ...
  metrics.csv          learning curve, one row per training episode (written by the trainer):
                       wall_s,env_steps,updates,robot,episode,episode_return,success,
                       demo_share,demo_buffer_size (--demos: share of demo rows in the updates)
  eval.csv             greedy evaluations of checkpoints during the run (--eval-every)
  learning_curve.png   success rate and return against wall time
  tensorboard/         TensorBoard events (tensorboard --logdir RUN_DIR)
  checkpoints/         trainer checkpoints (async-naf evaluate --checkpoint ...)
  logs/, params/       one log and one parameter file per node; graph.json: the whole graph

Examples:
  async-naf train --task reach --workers 2 --seed 0 --run-dir runs/reach_2w --minutes 15
  async-naf train --task door_pull --workers 4 --realtime --minutes 60 --run-dir runs/door_4w
  async-naf train --task reach --workers 1 --steps 5000 --run-dir /tmp/smoke --eval-episodes 5
  async-naf train --task door_pull --workers 2 --demos runs/door_expert/bag --demo-ratio 0.1 --run-dir runs/door_demos
  async-naf train --task door_pull --backend hardware --workers 2 --minutes 30 --run-dir runs/door_hw
  async-naf train --task reach --workers 3 --part trainer --discovery subnet --run-dir runs/reach_split  # GPU host
  async-naf train --task reach --workers 3 --part robots --robots 0,2 --discovery subnet --minutes 0     # arm host
"""

LOG = logging.getLogger("async_naf.train")
# what a run writes into its directory (--overwrite removes exactly these)
OUTPUTS = ("summary.json", "metrics.csv", "eval.csv", "learning_curve.png", "tensorboard", "checkpoints", "weights",
           "logs", "params", "graph.json", "train.log", "bag", "collectors", "demos")
# --criterion -> the eval.csv / EvalResult figure it reads
CRITERIA = {"strict": "strict_success_rate", "success": "success_rate"}
DEFAULT_MINUTES = {"reach": 15.0, "door_pull": 60.0, "door_push": 60.0}
DEFAULT_DEMO_RATIO = 0.1  # TrainerConfig.demo_ratio's default (a test keeps them equal)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", choices=("reach", "door_pull", "door_push"), default="door_pull",
                        help="task to learn (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="number of robots/collectors (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="base random seed (default: %(default)s)")
    parser.add_argument("--run-dir", default=None, help="output directory (default: runs/<task>_<N>w_s<seed>)")
    parser.add_argument("--realtime", action="store_true",
                        help="pace each simulated robot to wall time like a real robot (default: as fast as the "
                             "graph keeps up, lockstep)")
    parser.add_argument("--record", action="store_true",
                        help="record every robot's sensors, commands, goals and policy steps, the weights and "
                             "/diagnostics into RUN_DIR/bag (rosbag2, MCAP; async-naf bag info reads it)")
    parser.add_argument("--demos", nargs="+", default=[], metavar="DATASET|BAG",
                        help="demonstrations: dataset directories (async-naf bag convert) or rosbag2 bags (converted "
                             "the exact way into RUN_DIR/demos/ first), kept in a replay buffer of their own; every "
                             "update batch mixes them with the robots' data at --demo-ratio (checked against the "
                             "task before any node starts)")
    parser.add_argument("--demo-ratio", type=float, default=None, metavar="R",
                        help="share of demonstration rows in every update batch, 0..1 (round(R * batch_size) rows; "
                             "all demonstrations until the replay buffer holds min_buffer_size rows) "
                             f"(default: {DEFAULT_DEMO_RATIO}; with --resume, the resumed run's)")
    parser.add_argument("--demo-pretrain", type=int, default=None, metavar="UPDATES",
                        help="updates on the demonstrations alone before the first weights go out (trainer "
                             "parameter demo_pretrain_updates; DQfD's pre-training phase; 0 = off) "
                             "(default: the parameter file's)")
    parser.add_argument("--backend", choices=("mujoco", "hardware"), default="mujoco",
                        help="mujoco: the embedded sim with its reset service and ground truth; hardware: the graph "
                             "`ros2 launch ... backend:=real` starts (reset node, guard, door_angle, policy, "
                             "collector, trainer) with the sim in hardware mode standing in for a ros2_control "
                             "arm (joint states, velocity commands, door IMU only; real time; a door closer) "
                             "(default: %(default)s)")
    parser.add_argument("--steps", type=int, default=0,
                        help="stop after this many environment steps, all robots together (0 = no limit)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="stop after this much wall time (default: 15 for reach, 60 for door tasks)")
    parser.add_argument("--config", default=None,
                        help="parameter overrides per node, ROS params-file format (default: config/train.yaml, "
                             "with config/train.<task>.yaml over it where the task has one; a named file "
                             "replaces both)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="NODE.PARAM=VALUE",
                        help="override one parameter, e.g. --set trainer.naf.lr=3e-4 --set policy.noise.scale=0.2 "
                             "(YAML value; repeatable; wins over --config)")
    parser.add_argument("--eval-every", type=float, default=60.0, metavar="S",
                        help="the trainer writes a checkpoint every S seconds and each is evaluated greedily "
                             "while training, into eval.csv (0 = off; default: %(default)s)")
    parser.add_argument("--eval-episodes", type=int, default=20,
                        help="episodes per evaluation, final one included (default: %(default)s, minimum 1)")
    parser.add_argument("--stop-at-success", type=float, default=None, metavar="RATE",
                        help="stop as soon as a greedy evaluation reaches this success rate (0..1). Each "
                             "evaluation then pauses the trainer's updates (the robots go on collecting) and "
                             "evaluates a checkpoint of the paused weights, so the run ends with the weights "
                             "that reached it")
    parser.add_argument("--threshold", type=float, default=0.95,
                        help="success rate whose first time is reported as time_to_threshold_s (default: %(default)s)")
    parser.add_argument("--criterion", choices=CRITERIA, default="strict",
                        help="the evaluation figure --stop-at-success, --threshold and the best checkpoint use: "
                             "strict (door open >= open_angle, 1.0 rad, held over the episode's last "
                             "open_hold_steps) or success (the task's criterion at the last step: door past "
                             "0.35 rad) (default: %(default)s)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --run-dir from its newest checkpoint (weights, optimiser, buffer)")
    parser.add_argument("--trainer-restarts", type=int, default=3, metavar="N",
                        help="restart a trainer that dies at most N times, from its newest checkpoint (the robots "
                             "go on with the last weights meanwhile); 0 = a dead trainer ends the run "
                             "(default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete the results of an earlier run in --run-dir and start over")
    parser.add_argument("--domain-id", type=int, default=None,
                        help="ROS_DOMAIN_ID for the nodes (default: inherited, else 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--part", choices=("all", "trainer", "robots"), default="all",
                        help="which part of the graph this host starts: all (trainer and robots), trainer (the "
                             "trainer only: it trains from the collectors of other hosts, writes checkpoints, "
                             "metrics and evaluations), robots (robots only: they wait for a trainer on another "
                             "host and act with its weights; no evaluation; the run ends at --minutes or Ctrl-C) "
                             "(default: %(default)s; several hosts: docs/graph.md, 'Several hosts')")
    parser.add_argument("--robots", default="", metavar="I,J,...",
                        help="start only these robots, by global index (robot 2 is /robot_2 with its own seed on "
                             "any host; --workers is the number of robots of the whole graph) (default: all)")
    parser.add_argument("--discovery", choices=("localhost", "subnet"), default=None,
                        help="DDS discovery range of the nodes: localhost (loopback only) or subnet (every host "
                             "of the local subnets, for a graph split across machines) (default: the inherited "
                             "ROS_AUTOMATIC_DISCOVERY_RANGE, else localhost)")
    parser.add_argument("--discovery-server", default="", metavar="HOST:PORT",
                        help="use a Fast DDS discovery server instead of multicast (start it on one host with "
                             "`async-naf discovery-server --address ITS_ADDRESS [--port PORT]`); implies --discovery "
                             "subnet. HOST: an IPv4 address, a name or [IPv6]; several servers: ';'-separated")
    parser.add_argument("--composition", choices=("none", "robot"), default="robot",
                        help="none: one process per node; robot: each robot's nodes in one process with one "
                             "executor (same topics, messages, QoS; the trainer keeps its own process) "
                             "(default: %(default)s)")
    parser.add_argument("--no-intra-process", dest="intra_process", action="store_false",
                        help="with --composition robot: messages between a robot's nodes go through DDS as "
                             "between processes (default: handed over inside the process, and published to DDS "
                             "only for subscribers elsewhere)")


def remove_outputs(run_dir: Path, names: Iterable[str]) -> None:
    """Remove what a run wrote into ``run_dir`` under these names (files or directories; missing ones are
    fine): ``--overwrite``."""
    for name in names:
        target = run_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)


def discard_run_dir(run_dir: Path) -> None:
    """Remove a run directory this command made for a run it then refused (nothing of it left behind)."""
    try:
        shutil.rmtree(run_dir)
    except OSError as exc:
        print(f"warning: could not remove {run_dir}: {exc}", file=sys.stderr)


def _default_run_dir(args: argparse.Namespace) -> str:
    part = getattr(args, "part", "all")
    suffix = "" if part == "all" and not getattr(args, "robots", "") else f"_{part}"
    if getattr(args, "robots", "") and part != "trainer":
        suffix += "_r" + "-".join(str(r) for r in _robots(args))
    return f"runs/{args.task}_{args.workers}w_s{args.seed}{suffix}"


def _robots(args: argparse.Namespace) -> tuple[int, ...]:
    from async_naf.run.graph import parse_robots

    return parse_robots(getattr(args, "robots", "") or "")


def parse_sets(items: list[str]) -> dict[str, dict[str, Any]]:
    """``NODE.PARAM=VALUE`` items -> overrides keyed like a params file (``/**/NODE`` or ``/trainer``).

    Raises:
        ValueError: malformed item.
    """
    import yaml

    from async_naf.run.graph import ROLES, yaml_number

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        node, dot, param = key.strip().partition(".")
        if not sep or not dot or not param or node not in ROLES:
            raise ValueError(f"--set {item!r}: expected NODE.PARAM=VALUE with NODE one of {', '.join(ROLES)}")
        value = yaml_number(yaml.safe_load(raw)) if raw.strip() else ""
        target = "/trainer" if node == "trainer" else f"/**/{node}"
        out.setdefault(target, {})[param] = value
    return out


def resumed_demos(args: argparse.Namespace, config: Any, run_dir: Path) -> bool:
    """``--resume`` of a run: its demonstration ratio is the run's (its newest checkpoint's) unless
    ``--demo-ratio`` (or ``--set trainer.demo_ratio``) gives another; the trainer's default would replace it
    silently. Without ``--demos`` the trainer re-loads the datasets that checkpoint records: before any node
    starts, check that they are there and unchanged (replay.npz sha256). Returns whether the trainer's
    parameters changed (the graph must be built again).

    Raises:
        ValueError: a recorded dataset is missing or changed; ``--demo-ratio`` / ``--demo-pretrain`` for a run
            without demonstrations and without ``--demos``.
    """
    from async_naf.learning.checkpoints import newest_checkpoint
    from async_naf.learning.demos import file_sha256

    found = newest_checkpoint(run_dir)
    meta = found[1] if found is not None else {}
    recorded = [d for d in meta.get("demos") or [] if isinstance(d, dict) and "path" in d]
    given_ratio, pretrain = getattr(args, "demo_ratio", None), getattr(args, "demo_pretrain", None)
    trainer = config.overrides.setdefault("/trainer", {})
    if getattr(args, "demos", None):  # datasets given again (checked by prepare_demos): the ratio only
        if given_ratio is None and "demo_ratio" not in trainer:
            trainer["demo_ratio"] = float(meta.get("demo_ratio", DEFAULT_DEMO_RATIO)) if recorded \
                else DEFAULT_DEMO_RATIO
            return True
        return False
    if not recorded:
        if given_ratio is not None or pretrain is not None:
            raise ValueError("--demo-ratio / --demo-pretrain: the resumed run was trained without demonstrations "
                             "(add them with --demos)")
        return False
    for d in recorded:
        replay = Path(str(d["path"])) / "replay.npz"
        try:
            sha = file_sha256(replay)
        except OSError as exc:
            raise ValueError(f"--resume: the run's demonstrations {d['path']} cannot be read ({exc}); give them "
                             "again with --demos") from exc
        if sha != str(d.get("sha256", "")):
            raise ValueError(f"--resume: the run's demonstrations {d['path']} changed since its checkpoint "
                             f"(replay.npz sha256 {sha[:12]}, the checkpoint recorded {str(d.get('sha256'))[:12]})")
    if given_ratio is not None:
        trainer["demo_ratio"] = float(given_ratio)
    elif "demo_ratio" not in trainer:
        trainer["demo_ratio"] = float(meta.get("demo_ratio", DEFAULT_DEMO_RATIO))
    if pretrain is not None:
        trainer["demo_pretrain_updates"] = int(pretrain)
    return True


def build_config(args: argparse.Namespace) -> Any:
    """GraphConfig from the command line (+ config file and --set overrides)."""
    from async_naf.run.graph import GraphConfig, config_overrides, free_bag_dir, merge_overrides

    overrides = config_overrides(args.config, "--config", task=args.task)
    if getattr(args, "resume", False):
        overrides.setdefault("/trainer", {})["resume"] = True
    if args.eval_every > 0:  # every checkpoint is evaluated: the trainer writes one every --eval-every s
        overrides.setdefault("/trainer", {})["checkpoint_every_s"] = float(args.eval_every)
        if getattr(args, "stop_at_success", None) is not None:  # the pre-trained policy held for its evaluation
            overrides["/trainer"]["pause_after_pretrain"] = True
    overrides = merge_overrides(overrides, parse_sets(args.sets))
    given_ratio, pretrain = getattr(args, "demo_ratio", None), getattr(args, "demo_pretrain", None)
    if given_ratio is not None and not 0.0 <= float(given_ratio) <= 1.0:
        raise ValueError(f"--demo-ratio must be in [0, 1], got {given_ratio}")
    if pretrain is not None and pretrain < 0:
        raise ValueError(f"--demo-pretrain must be >= 0 updates, got {pretrain}")
    if getattr(args, "part", "all") == "robots" and (getattr(args, "demos", None) or given_ratio is not None
                                                     or pretrain is not None):
        raise ValueError("--demos, --demo-ratio and --demo-pretrain go to the trainer: give them to the host that "
                         "runs --part trainer (or all)")
    if getattr(args, "demos", None):
        trainer = overrides.setdefault("/trainer", {})  # demos: once prepared (prepare_demos)
        if given_ratio is not None:
            trainer["demo_ratio"] = float(given_ratio)
        elif "demo_ratio" not in trainer and not getattr(args, "resume", False):  # resumed: resumed_demos
            trainer["demo_ratio"] = DEFAULT_DEMO_RATIO
        if pretrain is not None:
            trainer["demo_pretrain_updates"] = int(pretrain)
    elif (given_ratio is not None or pretrain is not None) and not getattr(args, "resume", False):
        # a resumed run's own demonstrations: resumed_demos, once its checkpoint is found
        raise ValueError("--demo-ratio and --demo-pretrain go with --demos (or --resume of a run trained with "
                         "demonstrations)")
    minutes = args.minutes if args.minutes is not None else DEFAULT_MINUTES[args.task]
    part = getattr(args, "part", "all")
    if part == "robots" and args.steps > 0:
        raise ValueError("--steps counts the trainer's transitions: a robots-only part ends at --minutes or Ctrl-C")
    if minutes <= 0 and args.steps <= 0 and part != "robots":
        raise ValueError("give --steps or --minutes > 0 (a run needs an end)")
    backend = getattr(args, "backend", "mujoco")
    return GraphConfig(task=args.task, workers=args.workers, backend=backend, seed=args.seed,
                       run_dir=args.run_dir, realtime=args.realtime or backend == "hardware",
                       max_env_steps=max(0, args.steps), max_wall_s=max(0.0, minutes * 60.0), overrides=overrides,
                       record=bool(getattr(args, "record", False)),
                       bag_dir=str(free_bag_dir(args.run_dir)) if getattr(args, "resume", False) else "",
                       composition=getattr(args, "composition", "robot"),
                       intra_process=bool(getattr(args, "intra_process", True)),
                       trainer_restarts=int(getattr(args, "trainer_restarts", 3)), part=part, robots=_robots(args))


class Progress:
    """Progress on stderr from metrics.csv and eval.csv: env steps, updates, recent success rate."""

    def __init__(self, run_dir: Path, period_s: float = 10.0, quiet: bool = False) -> None:
        self.run_dir = run_dir
        self.tty = sys.stderr.isatty()
        self.period_s = 2.0 if self.tty else period_s
        self.quiet = quiet
        self._last = -1e9
        self.rows: list[Any] = []

    def refresh(self) -> None:
        from async_naf.run.results import read_metrics

        try:
            self.rows = read_metrics(self.run_dir / "metrics.csv")
        except ValueError as exc:
            LOG.warning("cannot read metrics.csv: %s", exc)

    @property
    def env_steps(self) -> int:
        return self.rows[-1].env_steps if self.rows else 0

    def line(self, elapsed: float, last_eval: dict | None) -> str:
        from async_naf.run.results import rolling_success

        rows = self.rows
        if rows:
            succ = rolling_success(rows)[-1]
            text = (f"env steps {rows[-1].env_steps:>8,}  updates {rows[-1].updates:>8,}  "
                    f"episodes {len(rows):>5}  train success (last 20) {succ:4.0%}")
        else:
            text = "waiting for the first episode ..."
        if last_eval is not None:
            text += (f"  eval {last_eval['success_rate']:4.0%} strict {last_eval['strict_success_rate']:4.0%} "
                     f"({int(last_eval['episodes'])} ep)")
        m, s = divmod(int(elapsed), 60)
        return f"[{m:3d}m{s:02d}s] {text}"

    def tick(self, elapsed: float, last_eval: dict | None, force: bool = False) -> None:
        """Every ``period_s`` (or when forced): re-read metrics.csv (always: the env-step backstop of
        ``async-naf train`` uses :attr:`env_steps`) and show a progress line (unless quiet)."""
        if not force and elapsed - self._last < self.period_s:
            return
        self._last = elapsed
        self.refresh()
        self.show(elapsed, last_eval, final=force)

    def show(self, elapsed: float, last_eval: dict | None, final: bool = False) -> None:
        """Print the progress line of the rows read last (nothing when quiet)."""
        if self.quiet:
            return
        end = "\r" if self.tty and not final else "\n"
        print(self.line(elapsed, last_eval).ljust(100), end=end, file=sys.stderr, flush=True)


def read_final_metrics(path: Path) -> list[Any]:
    """metrics.csv at the end of a run; an unreadable file is a warning on stderr and no rows (the summary,
    the final evaluation and the plots still get written)."""
    from async_naf.run.results import read_metrics

    try:
        return read_metrics(path)
    except (ValueError, OSError) as exc:
        print(f"WARNING: cannot read {path}: {exc}; the summary has no training-episode counts", file=sys.stderr)
        return []


class PeriodicEvaluator:
    """Greedy evaluation of each new trainer checkpoint while the graph runs (in this process).

    The trainer writes a checkpoint every ``--eval-every`` seconds (its ``checkpoint_every_s``) and records it
    in ``checkpoints/latest.json`` with its counters; each new one is evaluated once and logged to
    ``eval.csv`` with the trainer's wall time, env steps and updates *of that checkpoint* (so a time to
    threshold is when the trainer had the policy, not when it was evaluated).
    """

    def __init__(self, run_dir: Path, task: str, episodes: int, every_s: float, seed: int,
                 criterion: str = "strict", control: Any = None, keep_best: bool = True) -> None:
        self.run_dir = run_dir
        self.keep_best = keep_best  # copy the best evaluated checkpoint to checkpoints/best.safetensors
        # a TrainerControl (--stop-at-success): every eval_every s, pause the trainer, checkpoint, evaluate that
        self.control = control
        self.every_s = every_s
        self.key = CRITERIA[criterion]  # the figure that picks the best checkpoint
        self.task = task
        self.episodes = episodes
        self.poll_s = min(5.0, every_s / 2) if every_s > 0 else 0.0
        self.seed = seed
        self._next = 0.0
        self._next_paused = every_s  # the first paused evaluation: one period in, as the trainer's first checkpoint
        self._done: set[str] = set()
        self._created = time.time()  # checkpoints written before this are an earlier session's
        self.last: dict | None = None
        self.best: dict | None = None

    def _rank(self, row: dict) -> tuple[float, ...]:
        return (row[self.key], *(row[k] for k in CRITERIA.values() if k != self.key))

    def due(self, elapsed: float) -> bool:
        return self.poll_s > 0 and elapsed >= self._next

    def run(self, elapsed: float) -> dict | None:
        self._next = elapsed + self.poll_s
        if self.control is not None:
            return self._run_paused(elapsed)
        pointer = self.run_dir / "checkpoints" / "latest.json"
        try:
            meta = json.loads(pointer.read_text())
            agent_file = self.run_dir / "checkpoints" / str(meta["agent"])
        except (OSError, ValueError, KeyError, TypeError):
            return None  # no checkpoint yet (or being replaced right now): next poll
        if agent_file.name in self._done or not agent_file.is_file():
            return None
        return self.evaluate(agent_file, meta, elapsed)

    def _run_paused(self, elapsed: float) -> dict | None:
        """Pause the trainer, have it checkpoint, evaluate that checkpoint; the caller resumes the trainer
        (:meth:`resume`) unless it stops the run on this row, whose weights are then the final ones.

        The pre-trained policy comes first, off the schedule: a trainer with ``pause_after_pretrain`` pauses
        itself when its pre-training phase ends and writes ``checkpoints/pretrained``, which is then evaluated
        on exactly those weights (a run can end with them)."""
        assert self.control is not None
        held = self._pretrained()
        if held is not None:
            self.control.paused = True  # paused by the trainer itself: resume() must tell it to go on
            return self.evaluate(*held, elapsed)
        if self._next_paused > elapsed:
            return None
        named = self.control.pause_and_checkpoint()
        if named is None:
            return None  # no trainer answering yet: next poll
        self._next_paused = elapsed + self.every_s
        agent_file = self.run_dir / "checkpoints" / named.name
        try:
            meta = json.loads((self.run_dir / "checkpoints" / f"{agent_file.stem}.json").read_text())
        except (OSError, ValueError) as exc:
            LOG.warning("no counters for %s (%s): not evaluated", agent_file, exc)
            self.resume()
            return None
        return self.evaluate(agent_file, meta, elapsed)

    def _pretrained(self) -> tuple[Path, dict] | None:
        """The pre-training checkpoint and its counters, if the trainer wrote it during this run and it is not
        evaluated yet (a resumed run's earlier one is older than this evaluator)."""
        from async_naf.learning.checkpoints import PRETRAINED

        agent_file = self.run_dir / "checkpoints" / f"{PRETRAINED}.safetensors"
        counters = agent_file.with_suffix(".json")
        if agent_file.name in self._done:
            return None
        try:
            if counters.stat().st_mtime < self._created:
                return None
            return agent_file, json.loads(counters.read_text())
        except (OSError, ValueError):
            return None  # not written (no pre-training), or being written: next poll

    def resume(self) -> None:
        """Let a trainer paused for an evaluation update again (nothing without a TrainerControl)."""
        if self.control is not None and self.control.paused:
            self.control.resume()

    def evaluate(self, agent_file: Path, meta: dict, elapsed: float = 0.0) -> dict | None:
        """Evaluate one checkpoint into ``eval.csv`` (``meta``: its counters; ``elapsed`` stands in for a
        missing ``wall_s``); the row, or None if the checkpoint could not be read."""
        from async_naf.run.commands.evaluate import evaluate_checkpoint
        from async_naf.run.results import EVAL_FIELDS, append_csv

        self._done.add(agent_file.name)
        try:
            result, _ = evaluate_checkpoint(agent_file, self.task, self.episodes, seed=10_000 + self.seed)
        except (ValueError, OSError) as exc:  # pruned or half-written: skip this one
            LOG.warning("evaluation of %s failed: %s", agent_file, exc)
            return None
        row = {"wall_s": round(float(meta.get("wall_s", elapsed)), 2), "env_steps": meta.get("env_steps", ""),
               "updates": meta.get("updates", ""), **result.eval_row(), "checkpoint": agent_file.name}
        append_csv(self.run_dir / "eval.csv", EVAL_FIELDS, row)
        self.last = row
        # the criterion's figure first, ties broken by the other one (strict 0 % everywhere: the best plain success).
        # Never the initial weights (0 updates: e.g. a trainer part evaluated before any robot reached it): what
        # they score is chance, and best.safetensors would be an untrained policy whenever nothing later beat it
        if self.keep_best and _trained(meta) and (self.best is None or self._rank(row) > self._rank(self.best)):
            # keep the best evaluated policy (periodic checkpoints are pruned): checkpoints/best.safetensors
            try:
                shutil.copyfile(agent_file, self.run_dir / "checkpoints" / "best.safetensors.tmp")
                os.replace(self.run_dir / "checkpoints" / "best.safetensors.tmp",
                           self.run_dir / "checkpoints" / "best.safetensors")
                self.best = row
            except OSError as exc:
                LOG.warning("could not keep %s as the best checkpoint: %s", agent_file, exc)
        return row


def _trained(meta: dict) -> bool:
    """Whether a checkpoint's counters say it had at least one update (unknown counters: assumed so)."""
    try:
        return float(meta.get("updates", 1)) > 0
    except (TypeError, ValueError):
        return True


def evaluate_saved_checkpoints(run_dir: Path, task: str, episodes: int, seed: int) -> list[dict]:
    """Evaluate a finished run's periodic checkpoints (``checkpoints/step_*.safetensors`` with their counters
    ``step_*.json``) in the order the trainer wrote them, into ``eval.csv``: the rows
    :class:`PeriodicEvaluator` writes while a run goes on (same episodes, seed ``10_000 + seed``; wall time,
    env steps and updates of each checkpoint), here without taking the CPU from the run they measure.

    The run must have kept them (``trainer.keep_checkpoints``). A checkpoint without readable counters or
    weights is logged and skipped; ``checkpoints/best.safetensors`` and ``summary.json`` are left as they are.
    Returns the rows written.
    """
    evaluator = PeriodicEvaluator(run_dir, task, episodes, 0.0, seed, keep_best=False)
    saved: list[tuple[int, Path, dict]] = []
    for counters in (run_dir / "checkpoints").glob("step_*.json"):
        agent_file = counters.with_suffix(".safetensors")
        try:
            meta = json.loads(counters.read_text())
            updates = int(meta["updates"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            LOG.warning("%s: no readable counters (%s): not evaluated", counters, exc)
            continue
        if not agent_file.is_file():
            LOG.warning("%s: no %s beside it: not evaluated", counters, agent_file.name)
            continue
        saved.append((updates, agent_file, meta))
    rows = []
    for _, agent_file, meta in sorted(saved, key=lambda item: (item[0], item[1].name)):
        row = evaluator.evaluate(agent_file, meta)
        if row is not None:
            rows.append(row)
    return rows


def _setup_logging(run_dir: Path) -> None:
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger("async_naf")
    root.setLevel(logging.INFO)
    fh = logging.FileHandler(run_dir / "train.log")
    fh.setFormatter(fmt)
    root.addHandler(fh)
    sh = logging.StreamHandler(sys.stderr)
    sh.setLevel(logging.WARNING)
    sh.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    root.addHandler(sh)


def run(args: argparse.Namespace) -> int:
    from async_naf.common.ros_env import ros_environment
    from async_naf.run.commands.evaluate import evaluate_checkpoint, final_checkpoint
    from async_naf.run.graph import bag_path, build_graph, compose, graph_to_dict, with_deadline
    from async_naf.run.launcher import NO_RESTART_STATUS, GraphLauncher, Outcome, composed_process_specs
    from async_naf.run.results import (
        collector_counts,
        counts_text,
        has_tensorboard_events,
        plot_learning_curve,
        read_eval,
        time_to_threshold,
        write_json,
        write_tensorboard,
    )

    if args.eval_episodes < 1:
        print("error: --eval-episodes must be >= 1", file=sys.stderr)
        return 2
    args.run_dir = args.run_dir or _default_run_dir(args)
    try:
        config = with_deadline(build_config(args), time.time())  # the run's end, kept by a restarted trainer
        nodes = build_graph(config)
        raw_domain = os.environ.get("ROS_DOMAIN_ID") or "0"
        if args.domain_id is None and not raw_domain.isdigit():
            raise ValueError(f"ROS_DOMAIN_ID must be an integer in 0..101, got {raw_domain!r}")
        domain = args.domain_id if args.domain_id is not None else int(raw_domain)
        env = ros_environment(domain_id=domain, discovery=getattr(args, "discovery", None) or "",
                              discovery_server=getattr(args, "discovery_server", "") or "")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run_dir = Path(config.run_dir).resolve()
    earlier = [p for p in ("metrics.csv", "checkpoints") if (run_dir / p).exists()]
    if earlier and not (args.resume or args.overwrite):
        print(f"error: {run_dir} holds an earlier run ({', '.join(earlier)}); use --resume to continue it, "
              "--overwrite to start over, or another --run-dir", file=sys.stderr)
        return 2
    if args.resume and args.overwrite:
        print("error: --resume continues the run in --run-dir, --overwrite starts it over: choose one", file=sys.stderr)
        return 2
    from async_naf.run.graph import starts_trainer

    if args.resume and starts_trainer(config) and not any((run_dir / "checkpoints").glob("*.json")):
        print(f"error: --resume: no checkpoint in {run_dir / 'checkpoints'} to continue from (start over: --overwrite "
              "instead)", file=sys.stderr)
        return 2
    previous = _previous_task(run_dir) if args.resume else None
    if previous is not None and previous != config.task:  # door_pull and door_push have the same sizes
        print(f"error: {run_dir} was trained on task {previous!r} (graph.json); --resume continues it with the same "
              f"--task, not {config.task!r}", file=sys.stderr)
        return 2
    if args.resume and starts_trainer(config):
        try:
            if resumed_demos(args, config, run_dir):
                nodes = build_graph(config)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.overwrite and not args.resume:
        remove_outputs(run_dir, (*OUTPUTS, *(b.name for b in run_dir.glob("bag_*"))))
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "summary.json").unlink(missing_ok=True)
    shutil.rmtree(run_dir / "collectors", ignore_errors=True)  # a resumed run's earlier collectors' counters
    demos: list[str] = []
    if getattr(args, "demos", None):
        from async_naf.run.demos import prepare_demos

        try:  # bags converted into RUN_DIR/demos, every dataset checked against the task: before any node starts
            demos = prepare_demos(args.demos, config.task, run_dir)
        except ValueError as exc:
            text = str(exc)
            print(f"error: {text if text.startswith('--demos') else '--demos: ' + text}", file=sys.stderr)
            if created:  # no run directory left behind by a run that never started
                discard_run_dir(run_dir)
            return 2
        config.overrides.setdefault("/trainer", {})["demos"] = demos
        nodes = build_graph(config)
    _setup_logging(run_dir)
    command = shlex.join(["async-naf", *sys.argv[1:]])
    (run_dir / "graph.json").write_text(json.dumps(graph_to_dict(nodes), indent=2, default=str) + "\n")
    specs = composed_process_specs(compose(nodes, config.composition, config.intra_process), run_dir / "params")
    env.setdefault("OMP_NUM_THREADS", "1")  # one BLAS thread per node: N processes share the cores
    budget_s = config.max_wall_s if config.max_wall_s > 0 else None

    print(f"async-naf train: task {config.task}, {config.workers} worker(s), seed {config.seed}, "
          f"{'realtime' if config.realtime else 'lockstep'}, ROS_DOMAIN_ID {domain}, discovery "
          f"{env['ROS_AUTOMATIC_DISCOVERY_RANGE']}"
          f"{' via ' + env['ROS_DISCOVERY_SERVER'] if env.get('ROS_DISCOVERY_SERVER') else ''}", file=sys.stderr)
    if config.part != "all" or config.robots:
        print(f"  part {config.part}: {_part_text(config)}", file=sys.stderr)
    if config.part == "robots":
        return _run_robots(args, config, specs, env, run_dir, command)
    print(f"  run directory: {run_dir}", file=sys.stderr)
    print(f"  budget: {config.max_env_steps or 'no'} env-step limit, "
          f"{(budget_s or 0) / 60:.1f} min wall-time limit; node logs in {run_dir / 'logs'}", file=sys.stderr)

    # what the evaluations import (torch; gymnasium and MuJoCo) now, not on the first evaluation: a Ctrl-C that
    # lands inside that first import would leave it half-imported, and the final evaluation would fail on it
    import async_naf.run.env  # noqa: F401
    from async_naf.learning import agents  # noqa: F401

    progress = Progress(run_dir, quiet=args.quiet)
    control = None
    if args.stop_at_success is not None and args.eval_every > 0:
        # the stop is decided on the weights that end the run: evaluations pause the trainer (trainer_control)
        from async_naf.run.trainer_control import TrainerControl

        control = TrainerControl(env)
    evaluator = PeriodicEvaluator(run_dir, config.task, args.eval_episodes, args.eval_every, config.seed,
                                  args.criterion, control=control)
    key = CRITERIA[args.criterion]
    reached = {"flag": False}

    def on_tick(elapsed: float) -> None:
        if evaluator.due(elapsed) and not reached["flag"]:
            row = evaluator.run(elapsed)
            if row is not None:
                LOG.info("evaluation at %.0f s: %s", elapsed, row)
                if args.stop_at_success is not None and row[key] >= args.stop_at_success:
                    reached["flag"] = True  # a paused trainer stays paused: its final weights are these
            if not reached["flag"]:
                evaluator.resume()
        progress.tick(elapsed, evaluator.last)

    def stop_when() -> bool:
        if reached["flag"]:
            return True
        # backstop for the trainer's own max_env_steps (it exits by itself when it gets there)
        return config.max_env_steps > 0 and progress.env_steps >= config.max_env_steps * 1.05 + 1000

    def on_exit(key: str, rc: int, last_lines: str) -> None:
        if rc != 0 and key != "trainer":
            print(f"\nWARNING: node {key} died (status {rc}); training goes on without it. "
                  f"Log: {run_dir / 'logs' / (key + '.log')}", file=sys.stderr)
        elif rc == NO_RESTART_STATUS:
            print(f"\nERROR: the trainer refused its parameters (status {rc}): not restarted. "
                  f"Log: {run_dir / 'logs' / 'trainer.log'}", file=sys.stderr)
        elif rc != 0 and launcher.restart_count(key) < config.trainer_restarts:
            print(f"\nWARNING: the trainer died (status {rc}); restarting it from its newest checkpoint "
                  f"(restart {launcher.restart_count(key) + 1} of {config.trainer_restarts}); the robots go on "
                  f"with the last weights. Log: {run_dir / 'logs' / 'trainer.log'}", file=sys.stderr)

    # a restarted trainer gets the same parameters file, so the same deadline_unix: the run's end
    launcher = GraphLauncher(specs, log_dir=run_dir / "logs", env=env, on_exit=on_exit)
    t0 = time.monotonic()
    # the trainer enforces max_wall_s itself; the launcher's budget is a backstop (trainer start-up + final save)
    try:
        result = launcher.run(max_wall_s=None if budget_s is None else budget_s + 90.0, stop_when=stop_when,
                              on_tick=on_tick)
    finally:
        if control is not None:
            control.close()
    wall_s = time.monotonic() - t0
    rows = read_final_metrics(run_dir / "metrics.csv")  # read once here; the summary and plots use these
    progress.rows = rows
    progress.show(wall_s, evaluator.last, final=True)
    print(f"graph stopped after {wall_s:.0f} s: {result.message or result.outcome.value}", file=sys.stderr)
    failed_trainer = result.outcome == Outcome.FAILED and "trainer" in result.failed
    if failed_trainer:
        print(f"ERROR: the trainer died; see {run_dir / 'logs' / 'trainer.log'}", file=sys.stderr)

    # ---- final evaluation, summary, plots
    summary: dict[str, Any] = {
        "task": config.task, "workers": config.workers, "seed": config.seed, "realtime": config.realtime,
        **_part_fields(config, env), "episodes_by_robot": _episodes_by_robot(rows),
        "backend": config.backend, "env_steps": rows[-1].env_steps if rows else 0,
        "updates": rows[-1].updates if rows else 0, "train_episodes": len(rows), "wall_s": round(wall_s, 1),
        "outcome": result.outcome.value, "outcome_message": result.message, "dead_nodes": result.failed,
        "command": command, "run_dir": str(run_dir), "eval_success_rate": None, "eval_episodes": 0,
        "consecutive_successes": 0, "returncodes": result.returncodes,
        "trainer_restarts": len([r for r in result.restarts if r["key"] == "trainer"]),
        "restarts": result.restarts, **collector_counts(run_dir),
    }
    if config.record:  # this session's bag (a resumed run records into bag_2, bag_3, ...)
        summary["bag"] = str(bag_path(config))
    if demos:
        summary["demos"] = {"datasets": demos, "ratio": float(config.overrides["/trainer"]["demo_ratio"])}
    try:  # the trainer's own counters at its final checkpoint (metrics.csv only has finished episodes)
        final_meta = json.loads((run_dir / "checkpoints" / "final.json").read_text())
        # what the final checkpoint (its buffer, its networks) holds; metrics.csv rows of episodes whose
        # statistics came after it (a trainer still receiving while it shuts down) can count further
        after = summary["env_steps"] - int(final_meta["env_steps"])
        summary["env_steps"], summary["updates"] = int(final_meta["env_steps"]), int(final_meta["updates"])
        if after > 0:
            summary["env_steps_after_final_checkpoint"] = after
        summary["trainer_wall_s"] = round(float(final_meta["wall_s"]), 1)
        if final_meta.get("demos"):  # what the trainer loaded (also a resumed run's) and drew from them
            summary.setdefault("demos", {}).update(
                datasets=[str(d["path"]) for d in final_meta["demos"]],
                ratio=float(final_meta.get("demo_ratio", config.overrides.get("/trainer", {}).get(
                    "demo_ratio", DEFAULT_DEMO_RATIO))),
                rows=sum(int(d["rows"]) for d in final_meta["demos"]),
                dropped=sum(int(d["dropped"]) for d in final_meta["demos"]),
                demo_rows_sampled=int(final_meta.get("demo_rows_sampled", 0)),
                rows_sampled=int(final_meta.get("rows_sampled", 0)))
    except (OSError, ValueError, KeyError, TypeError):
        LOG.warning("no readable checkpoints/final.json: counters from metrics.csv only")
    ckpt = final_checkpoint(run_dir)
    if ckpt is None:
        print(f"ERROR: no checkpoint in {run_dir / 'checkpoints'}: nothing to evaluate", file=sys.stderr)
    else:
        print(f"evaluating {ckpt.name} greedily on {args.eval_episodes} episodes ...", file=sys.stderr)
        try:
            ev, meta = evaluate_checkpoint(ckpt, config.task, args.eval_episodes, seed=20_000 + config.seed)
        except ValueError as exc:
            print(f"ERROR: evaluation failed: {exc}", file=sys.stderr)
        else:
            summary.update(ev.summary_fields(), checkpoint=str(ckpt), checkpoint_updates=meta.get("update_count"))
            if meta.get("update_count"):
                summary["updates"] = max(summary["updates"], int(meta["update_count"]))
    evals = read_eval(run_dir / "eval.csv")
    summary["evaluations"] = len(evals)
    best_file = run_dir / "checkpoints" / "best.safetensors"
    if evaluator.best is not None and best_file.is_file():
        # the best periodic checkpoint was *selected* on the evaluation seeds (10000 + seed): report it on the
        # held-out seeds of the final evaluation (20000 + seed) too, never the selection score alone
        try:
            held_out, _ = evaluate_checkpoint(best_file, config.task, args.eval_episodes, seed=20_000 + config.seed)
        except ValueError as exc:
            LOG.warning("held-out evaluation of %s failed: %s", best_file, exc)
        else:
            summary["best_checkpoint"] = {
                "file": str(best_file), "selected_at": evaluator.best,
                "held_out_success_rate": held_out.success_rate, "held_out_episodes": held_out.episodes,
                "held_out_consecutive_successes": held_out.consecutive_successes,
                "held_out_strict_success_rate": held_out.strict_success_rate,
                "held_out_strict_consecutive": held_out.strict_consecutive}
    summary["threshold"] = args.threshold
    summary["criterion"] = args.criterion
    summary["time_to_threshold_s"] = time_to_threshold([(e["wall_s"], e[key]) for e in evals], args.threshold)
    summary["time_to_threshold_s_by_criterion"] = {
        name: time_to_threshold([(e["wall_s"], e[field]) for e in evals], args.threshold)
        for name, field in CRITERIA.items()}
    write_json(run_dir / "summary.json", summary)
    png = plot_learning_curve(run_dir, title=f"{config.task}, {config.workers} worker(s)", rows=rows, evals=evals)
    tb_dir = "tensorboard/curves" if has_tensorboard_events(run_dir / "tensorboard") else "tensorboard"
    write_tensorboard(run_dir, tb_dir, rows=rows, evals=evals)

    sr = summary["eval_success_rate"]
    print(f"\nresults in {run_dir}:", file=sys.stderr)
    print(f"  final evaluation: {'n/a' if sr is None else f'{sr:.0%}'} success over {summary['eval_episodes']} "
          f"episodes (longest streak {summary['consecutive_successes']}), {summary['env_steps']:,} env steps, "
          f"{summary['updates']:,} updates, {wall_s / 60:.1f} min", file=sys.stderr)
    if "eval_strict_success_rate" in summary:
        angles = summary["door_angle_final"]
        print(f"  strict criterion: {summary['eval_strict_success_rate']:.0%} (longest streak "
              f"{summary['strict_consecutive']})"
              + (f"; final door angle median {angles['median']:.2f} rad (min {angles['min']:.2f}, "
                 f"max {angles['max']:.2f})" if angles else ""), file=sys.stderr)
    if summary.get("eval_failures"):
        print("  failed episodes: " + counts_text(summary["eval_failures"]), file=sys.stderr)
    if "best_checkpoint" in summary:
        b = summary["best_checkpoint"]
        print(f"  best periodic checkpoint ({b['selected_at']['checkpoint']}, trainer time "
              f"{b['selected_at']['wall_s'] / 60:.1f} min): {b['held_out_success_rate']:.0%} "
              f"(strict {b['held_out_strict_success_rate']:.0%}) on the same held-out episodes "
              f"-> checkpoints/best.safetensors", file=sys.stderr)
    bag = f"{bag_path(config).name}/" if config.record else "bag/"  # a resumed run's recording: bag_2/, ...
    present = [name for name in ("eval.csv", "weights/", bag) if (run_dir / name.rstrip("/")).exists()]
    print(f"  summary.json, metrics.csv, {', '.join(present) + ', ' if present else ''}"
          f"{png.name if png else '(no learning curve)'}, tensorboard/, checkpoints/, logs/", file=sys.stderr)
    if failed_trainer or ckpt is None:
        return 1
    if result.outcome == Outcome.INTERRUPTED:
        return 130
    return 0


def _previous_task(run_dir: Path) -> str | None:
    """The task the graph in ``run_dir`` ran (its ``graph.json``: the nodes' ``task`` parameter); None where
    there is no readable one."""
    try:
        nodes = json.loads((run_dir / "graph.json").read_text())
        tasks = {n["parameters"]["task"] for n in nodes if isinstance(n, dict) and "task" in n.get("parameters", {})}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    return next(iter(tasks)) if len(tasks) == 1 and isinstance(next(iter(tasks)), str) else None


# ---------------------------------------------------------------------- parts of a graph (several hosts)
def _part_text(config: Any) -> str:
    from async_naf.run.graph import robot_indices, starts_trainer

    robots = ", ".join(f"/robot_{i}" for i in robot_indices(config)) or "none"
    return f"trainer {'here' if starts_trainer(config) else 'on another host'}, robots here: {robots}"


def _part_fields(config: Any, env: dict[str, str]) -> dict[str, Any]:
    """What every summary.json says about the part of the graph this host ran and how it found the others."""
    from async_naf.run.graph import robot_indices

    return {"part": config.part, "robots": robot_indices(config),
            "discovery": env.get("ROS_AUTOMATIC_DISCOVERY_RANGE", ""),
            "discovery_server": env.get("ROS_DISCOVERY_SERVER", "")}


def _episodes_by_robot(rows: list[Any]) -> dict[str, int]:
    """Training episodes the trainer recorded per robot (metrics.csv): which hosts' robots it heard from."""
    out: dict[str, int] = {}
    for row in rows:
        out[str(row.robot)] = out.get(str(row.robot), 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (len(kv[0]), kv[0])))


def _run_robots(args: argparse.Namespace, config: Any, specs: list[Any], env: dict[str, str], run_dir: Path,
                command: str) -> int:
    """A robots-only part: start the robots' nodes, which wait for the trainer of another host (the collectors
    start episodes once a trainer subscribes to /trainer/transitions; the policies take its weights, reliable
    and transient local, whenever it publishes) and keep acting with the last weights while it is away. No
    evaluation and no stop condition of its own: it ends at --minutes (0: never), on Ctrl-C, or when every
    node has died. summary.json: the part, its robots, how it ended, each node's exit status."""
    from async_naf.run.graph import robot_indices
    from async_naf.run.launcher import GraphLauncher, Outcome
    from async_naf.run.results import RobotsWatch, collector_counts, write_json

    budget_s = config.max_wall_s if config.max_wall_s > 0 else None

    def on_exit(key: str, rc: int, last_lines: str) -> None:
        if rc != 0:
            print(f"\nWARNING: node {key} died (status {rc}); the other robots go on. "
                  f"Log: {run_dir / 'logs' / (key + '.log')}", file=sys.stderr)

    print(f"  robots only: they wait for a trainer on /trainer/transitions (ROS_DOMAIN_ID {env.get('ROS_DOMAIN_ID')}); "
          f"until {'Ctrl-C' if budget_s is None else f'{budget_s / 60:.1f} min or Ctrl-C'}", file=sys.stderr)
    server = env.get("ROS_DISCOVERY_SERVER")
    hint = (f"is the trainer part running, with ROS_DOMAIN_ID {env.get('ROS_DOMAIN_ID')} and discovery "
            f"{env.get('ROS_AUTOMATIC_DISCOVERY_RANGE')}{' via ' + server if server else ''} as here?")
    watch = RobotsWatch(run_dir, [f"robot_{i}" for i in robot_indices(config)], hint=hint,
                        progress_every_s=0.0 if args.quiet else 60.0)

    def on_tick(elapsed: float) -> None:
        for line in watch.poll(elapsed):
            print(line, file=sys.stderr)

    launcher = GraphLauncher(specs, log_dir=run_dir / "logs", env=env, on_exit=on_exit)
    result = launcher.run(max_wall_s=budget_s, on_tick=on_tick)
    print(f"robots stopped after {result.wall_s:.0f} s: {result.message or result.outcome.value}", file=sys.stderr)
    for line in watch.final():
        print(line, file=sys.stderr)
    summary = {"task": config.task, "workers": config.workers, "seed": config.seed, "realtime": config.realtime,
               "backend": config.backend, **_part_fields(config, env), "wall_s": round(result.wall_s, 1),
               "outcome": result.outcome.value, "outcome_message": result.message, "dead_nodes": result.failed,
               "returncodes": result.returncodes, "command": command, "run_dir": str(run_dir),
               **collector_counts(run_dir)}
    write_json(run_dir / "summary.json", summary)
    if result.outcome == Outcome.FAILED:
        return 1
    return 130 if result.outcome == Outcome.INTERRUPTED else 0
