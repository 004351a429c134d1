"""A graph split across hosts, and one robot's link pulled: training across network namespaces.

:func:`run_partition` makes a :class:`async_naf.bench.netns.NetnsLab` with a ``trainer`` host and one host
per robot, and starts on each what a user would start on that machine::

    trainer host:  async-naf train --part trainer --workers N --discovery subnet --record ...
    robot_i host:  async-naf train --part robots --robots i --workers N --discovery subnet --realtime --record ...

(same task, seed, ``ROS_DOMAIN_ID``), waits until the trainer has episodes from every robot, lets it train,
takes the partitioned robot's link down for ``partition_s``, brings it up again, waits until the trainer
hears from that robot again, lets it train on, then stops the robots and the trainer (Ctrl-C, as a user
would) and deletes the lab. Every host records ``/diagnostics`` (the trainer host also the weights; each robot
host its own robot's topics) into its run directory's bag, so what each side counted is known afterwards:
:func:`analyse` turns the run directories into the figures of the closing note (JSON) and :func:`plot`
into the learning curve with the partition marked (PNG).

Times: ``wall_s`` of the trainer (seconds since it started, as in its metrics.csv); the link events are
mapped onto it through the metrics rows seen while polling (the smallest ``local time - wall_s``).
ROS-free: rclpy runs only in the node processes; the bags are read with rosbags.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from async_naf.bench.netns import LAB_ENV, NetnsLab
from async_naf.run.launcher import start_child, stop_child, tail
from async_naf.run.results import EpisodeRow, read_eval, read_metrics, rolling_success, write_json


@dataclasses.dataclass
class PartitionConfig:
    """One split-graph run with a partition. Units: seconds.

    Attributes:
        out_dir: run directories (``trainer/``, ``robot_<i>/``), process outputs, results.
        task: task to learn.
        robots: robots, each on a host of its own.
        partitioned: the robot whose link goes down.
        seed: base seed (robot i gets its own from it on its host, as in one graph).
        domain_id: ROS_DOMAIN_ID of every host.
        connect_episodes: episodes from every robot the trainer must have before the clock of ``before_s`` starts.
        before_s: training across the hosts before the partition.
        partition_s: the partitioned robot's link is down this long.
        after_s: training after the trainer has heard from that robot again.
        wait_s: longest wait for each event (connection, hearing again), else :class:`PartitionError`.
        eval_every_s, eval_episodes: the trainer host's greedy evaluations (``--eval-every``, 0 = off).
        composition: ``robot``: each robot's nodes in one process (lighter on a small machine).
        trainer_sets: ``--set`` items of the trainer host (e.g. ``trainer.min_buffer_size=200``).
        discovery_server: instead of multicast discovery (``--discovery subnet``), the bridge drops multicast
            and every host uses a Fast DDS discovery server (``fast-discovery-server`` of the wheels) on the
            trainer host (``--discovery-server``).
    """

    out_dir: Path
    task: str = "reach"
    robots: int = 2
    partitioned: int = 1
    seed: int = 0
    domain_id: int = 70
    connect_episodes: int = 2
    before_s: float = 60.0
    partition_s: float = 30.0
    after_s: float = 60.0
    wait_s: float = 120.0
    eval_every_s: float = 0.0
    eval_episodes: int = 5
    composition: str = "robot"
    trainer_sets: tuple[str, ...] = ()
    discovery_server: bool = False

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        if self.robots < 1 or not 0 <= self.partitioned < self.robots:
            raise ValueError(f"partitioned robot {self.partitioned} outside 0..{self.robots - 1}")
        if min(self.before_s, self.partition_s, self.after_s) < 0 or self.wait_s <= 0:
            raise ValueError("durations must be >= 0 and wait_s > 0")


class PartitionError(RuntimeError):
    """The split graph did not do what it must (a host's run died, an event did not come in time)."""


DIAG_LAG_S = 2.5  # a node's /diagnostics (every 1 s) show a state this long after it was reached, at most
SERVER_PORT = 11811  # the discovery server's UDP port on the trainer host (Fast DDS's default)
CUT_SETTLE_S = 2.0  # statistics received just before a cut may be written by a loaded trainer this long after it


def server_binary() -> str | None:
    """``fast-discovery-server`` of this Python environment (the rclpy wheels ship it), or on PATH."""
    import shutil

    return shutil.which("fast-discovery-server", path=str(Path(sys.executable).parent)) or shutil.which(
        "fast-discovery-server")


def _host_argv(cfg: PartitionConfig, host: str, server: str = "") -> list[str]:
    discovery = ["--discovery-server", server] if server else ["--discovery", "subnet"]
    common = ["--task", cfg.task, "--workers", str(cfg.robots), "--seed", str(cfg.seed), *discovery,
              "--domain-id", str(cfg.domain_id), "--record", "--quiet", "--overwrite",
              "--run-dir", str(cfg.out_dir / host)]
    if host == "trainer":
        return [*common, "--part", "trainer", "--minutes", "0", "--steps", "100000000",
                "--eval-every", str(cfg.eval_every_s), "--eval-episodes", str(cfg.eval_episodes),
                *(arg for item in cfg.trainer_sets for arg in ("--set", item))]
    index = int(host.removeprefix("robot_"))
    return [*common, "--part", "robots", "--robots", str(index), "--minutes", "0", "--realtime",
            "--composition", cfg.composition]


class _Hosts:
    """The ``async-naf train`` processes of the lab's hosts (each in its own process group; stopped with
    SIGINT like a user's Ctrl-C, the robots first)."""

    def __init__(self, lab: NetnsLab, cfg: PartitionConfig) -> None:
        self.lab, self.cfg = lab, cfg
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.outs: dict[str, Path] = {}
        self.returncodes: dict[str, int | None] = {}
        self.server = ""

    def start(self, host: str) -> None:
        env = {**os.environ, **LAB_ENV, "ROS_DOMAIN_ID": str(self.cfg.domain_id)}
        out = self.cfg.out_dir / f"{host}.out"
        self.outs[host] = out
        with open(out, "wb") as fh:
            argv = self.lab.wrap(host, [sys.executable, "-m", "async_naf.run.cli", "train",
                                        *_host_argv(self.cfg, host, self.server)])
            self.procs[host] = start_child(argv, stdout=fh, stderr=subprocess.STDOUT, env=env)

    def check_alive(self) -> None:
        for host, proc in self.procs.items():
            if proc.poll() is not None:
                raise PartitionError(f"host {host}'s run exited with {proc.returncode}:\n{tail(self.outs[host], 30)}")

    def stop(self, host: str, timeout_s: float) -> int | None:
        proc = self.procs.get(host)
        if proc is None:
            return None
        rc = stop_child(proc, timeout_s, name=host)
        self.returncodes[host] = rc
        return rc

    def stop_all(self) -> None:
        for host in sorted(self.procs, key=lambda h: h == "trainer"):  # robots first, then the trainer
            if host not in self.returncodes:
                self.stop(host, 120.0 if host == "trainer" else 60.0)


class _Metrics:
    """The trainer's metrics.csv, polled: rows, and the offset of its ``wall_s`` from this machine's clock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[EpisodeRow] = []
        self.offset = float("inf")  # time.time() - trainer wall_s (the smallest seen: the least polling delay)

    def poll(self) -> list[EpisodeRow]:
        try:
            rows = read_metrics(self.path)
        except (ValueError, OSError):
            return self.rows  # not there yet, or a row half-written: next poll
        now = time.time()
        for row in rows[len(self.rows):]:
            self.offset = min(self.offset, now - row.wall_s)
        self.rows = rows
        return rows

    def count(self, robot: int, after_wall_s: float = -1.0) -> int:
        return sum(1 for r in self.rows if str(r.robot) == str(robot) and r.wall_s > after_wall_s)

    def trainer_time(self, t: float) -> float:
        """A ``time.time()`` on the trainer's wall_s axis."""
        return t - self.offset


def _wait(what: str, pred: Callable[[], bool], hosts: _Hosts, metrics: _Metrics, timeout_s: float) -> float:
    """Poll until ``pred()`` (metrics.csv re-read each time); the time.time() it became true."""
    deadline = time.monotonic() + timeout_s
    while True:
        metrics.poll()
        if pred():
            return time.time()
        hosts.check_alive()
        if time.monotonic() > deadline:
            counts = {f"robot_{i}": metrics.count(i) for i in range(hosts.cfg.robots)}
            raise PartitionError(f"timed out after {timeout_s:.0f} s waiting for {what} (episodes at the trainer: "
                                 f"{counts}; each host's run directory has its logs)")
        time.sleep(0.5)  # polling a file another process writes


def _hold(seconds: float, hosts: _Hosts, metrics: _Metrics) -> None:
    """Let the graph run for ``seconds`` (the experiment's schedule), checking every host's run is alive."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        hosts.check_alive()
        metrics.poll()
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))


def run_partition(cfg: PartitionConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the split graph with one partition (module docstring); return the timeline (``time.time()``s and
    trainer ``wall_s``) and each host's exit status, written to ``out_dir/timeline.json``.

    Raises:
        PartitionError: a host's run died or an event did not come within ``wait_s``.
        async_naf.bench.netns.NetnsError: the lab could not be made.
    """
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    robots = [f"robot_{i}" for i in range(cfg.robots)]
    victim, p = f"robot_{cfg.partitioned}", cfg.partitioned
    timeline: dict[str, Any] = {"config": {k: str(v) if isinstance(v, Path) else v
                                           for k, v in dataclasses.asdict(cfg).items()}}
    metrics = _Metrics(cfg.out_dir / "trainer" / "metrics.csv")
    with NetnsLab(["trainer", *robots]) as lab:
        timeline["lab"] = {h: {"namespace": lab.namespace(h), "address": lab.address(h)} for h in lab.hosts}
        hosts = _Hosts(lab, cfg)
        server: subprocess.Popen[bytes] | None = None
        try:
            if cfg.discovery_server:
                binary = server_binary()
                if binary is None:
                    raise PartitionError("fast-discovery-server not found (it ships in the rclpy wheels' bin/)")
                lab.block_multicast()  # only the server can connect the hosts now
                hosts.server = f"{lab.address('trainer')}:{SERVER_PORT}"
                with open(cfg.out_dir / "discovery_server.out", "wb") as fh:
                    server = start_child(lab.wrap("trainer", [binary, "-i", "0", "-l", lab.address("trainer"),
                                                              "-p", str(SERVER_PORT)]),
                                         stdout=fh, stderr=subprocess.STDOUT)
                timeline["discovery_server"] = hosts.server
            timeline["t_start"] = time.time()
            for host in ["trainer", *robots]:
                hosts.start(host)
            log(f"started the trainer and {len(robots)} robot host(s) in {lab.namespaces()}")
            timeline["t_connected"] = _wait(
                f"{cfg.connect_episodes} episodes from every robot at the trainer",
                lambda: all(metrics.count(i) >= cfg.connect_episodes for i in range(cfg.robots)), hosts, metrics,
                cfg.wait_s + 60.0)  # + start-up (imports, discovery, the first resets)
            log(f"trainer hears every robot ({len(metrics.rows)} episodes); training {cfg.before_s:.0f} s")
            _hold(cfg.before_s, hosts, metrics)
            lab.set_link(victim, up=False)
            timeline["t_down"] = time.time()
            timeline["episodes_before"] = {str(i): metrics.count(i) for i in range(cfg.robots)}
            log(f"{victim}'s link down for {cfg.partition_s:.0f} s")
            _hold(cfg.partition_s, hosts, metrics)
            lab.set_link(victim, up=True)
            timeline["t_up"] = time.time()
            heard = metrics.count(p)
            timeline["episodes_at_up"] = {str(i): metrics.count(i) for i in range(cfg.robots)}
            timeline["t_heard_again"] = _wait(f"the trainer hearing from {victim} again",
                                              lambda: metrics.count(p) > heard, hosts, metrics, cfg.wait_s)
            log(f"trainer hears {victim} again {timeline['t_heard_again'] - timeline['t_up']:.1f} s after the link "
                f"came up; training {cfg.after_s:.0f} s")
            _hold(cfg.after_s, hosts, metrics)
            timeline["t_end"] = time.time()
            hosts.check_alive()  # nothing crashed up to here
        finally:
            if not lab.link_is_up(victim):
                lab.set_link(victim, up=True)
            hosts.stop_all()
            if server is not None:
                stop_child(server, 5.0, name="discovery server")
            timeline["returncodes"] = dict(hosts.returncodes)
            timeline["trainer_offset_s"] = metrics.offset if metrics.rows else None
            write_json(cfg.out_dir / "timeline.json", timeline)
    return timeline


# ---------------------------------------------------------------------- analysis
def read_diagnostics(bag: Path) -> list[tuple[float, str, dict[str, str]]]:
    """``(receive time.time(), node's fully qualified name, key -> value)`` of every /diagnostics status in a
    bag written by the recorder node, in order."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    out: list[tuple[float, str, dict[str, str]]] = []
    with AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_JAZZY)) as reader:
        conns = [c for c in reader.connections if c.topic == "/diagnostics"]
        for conn, t_ns, raw in reader.messages(connections=conns) if conns else ():  # []: every message
            msg: Any = reader.deserialize(raw, conn.msgtype)
            for status in msg.status:
                out.append((t_ns * 1e-9, str(status.name), {kv.key: kv.value for kv in status.values}))
    return out


def _series(diags: list[tuple[float, str, dict[str, str]]], node: str, key: str) -> list[tuple[float, float]]:
    out = []
    for t, name, values in diags:
        if name == node and key in values:
            try:
                out.append((t, float(values[key])))
            except ValueError:
                continue
    return out


ACCOUNTING = ("sequenced_transitions", "acked_transitions", "lost_transitions", "unconfirmed_transitions",
              "resent_transitions", "lost_with_trainer", "lost_episode_stats", "unconfirmed_episode_stats",
              "resent_episode_stats", "duplicate_transitions", "gap_transitions", "out_of_order_transitions",
              "unsequenced_transitions", "duplicate_episode_stats", "unsent_at_exit_transitions",
              "unsent_at_exit_episode_stats",
              "goal_resends", "aborted_episodes", "reset_failures")


def last_status(diags: list[tuple[float, str, dict[str, str]]], node: str) -> dict[str, str]:
    """The last /diagnostics values of ``node`` (empty if it never reported)."""
    out: dict[str, str] = {}
    for _t, name, values in diags:
        if name == node:
            out = values
    return out


def drops_and_accounting(values: dict[str, str]) -> dict[str, dict[str, float]]:
    """A node's last diagnostics -> ``{"dropped": {reason: n}, "accounting": {counter: n}}`` (non-zero only)."""
    def num(v: str) -> float | None:
        try:
            return float(v)
        except ValueError:
            return None
    dropped = {k.removeprefix("dropped_"): num(v) for k, v in values.items() if k.startswith("dropped_")}
    acc = {k: num(values[k]) for k in ACCOUNTING if k in values}
    return {"dropped": {k: v for k, v in dropped.items() if v}, "accounting": {k: v for k, v in acc.items() if v}}


def _at(series: list[tuple[float, float]], t: float) -> float | None:
    """The last value at or before ``t`` (None before the first)."""
    value = None
    for ts, v in series:
        if ts > t:
            break
        value = v
    return value


def analyse(out_dir: Path) -> dict[str, Any]:
    """The figures of a :func:`run_partition` run (its ``timeline.json``, the hosts' run directories and bags),
    written to ``out_dir/partition.json``: per robot the episodes the trainer recorded, the partitioned
    robot's episodes, weights and backlog across the partition (from its own host's bag), how long until the
    trainer heard it again, episodes never recorded (lost), and transitions sent by the collectors against
    those the trainer received."""
    out_dir = Path(out_dir)
    tl = json.loads((out_dir / "timeline.json").read_text())
    cfg = tl["config"]
    p, n = int(cfg["partitioned"]), int(cfg["robots"])
    offset = float(tl["trainer_offset_s"])
    rows = read_metrics(out_dir / "trainer" / "metrics.csv")
    trainer_summary = _json(out_dir / "trainer" / "summary.json")
    down, up = tl["t_down"], tl["t_up"]
    res: dict[str, Any] = {
        "task": cfg["task"], "robots": n, "partitioned_robot": p,
        "partition_s": round(up - down, 1),
        "partition_trainer_wall_s": [round(down - offset, 1), round(up - offset, 1)],
        "heard_again_after_link_up_s": round(tl["t_heard_again"] - up, 1),
        "returncodes": tl["returncodes"], "discovery_server": tl.get("discovery_server", ""),
        "trainer": {k: trainer_summary.get(k) for k in ("env_steps", "updates", "train_episodes", "episodes_by_robot",
                                                         "eval_success_rate", "eval_episodes", "outcome", "part",
                                                         "discovery", "discovery_server")},
        "robots_summaries": {f"robot_{i}": {k: _json(out_dir / f"robot_{i}" / "summary.json").get(k)
                                            for k in ("outcome", "dead_nodes", "part", "robots", "discovery",
                                                      "discovery_server")}
                             for i in range(n)},
    }
    per_robot: dict[str, Any] = {}
    sent_total = 0.0
    for i in range(n):
        mine = sorted(r.episode for r in rows if str(r.robot) == str(i))
        # rows written within CUT_SETTLE_S of the cut are statistics received before it and handled after
        # (the trainer's executor behind under load), counted apart
        cut, settled = down - offset, down - offset + CUT_SETTLE_S
        at_cut = [r for r in rows if str(r.robot) == str(i) and cut <= r.wall_s < settled]
        in_window = [r for r in rows if str(r.robot) == str(i) and settled <= r.wall_s <= up - offset]
        entry: dict[str, Any] = {"episodes_recorded_by_trainer": len(mine),
                                 "episodes_recorded_during_partition": len(in_window),
                                 "episodes_recorded_at_cut": len(at_cut),
                                 "episode_numbers_missing": _missing(mine)}
        diags = _robot_diags(out_dir, i)
        coll, pol = f"/robot_{i}/collector", f"/robot_{i}/policy"
        eps, sent = _series(diags, coll, "episodes"), _series(diags, coll, "transitions_sent")
        backlog, lost = _series(diags, coll, "backlog_transitions"), _series(diags, coll, "lost_transitions")
        weights = _series(diags, pol, "weights_version")
        if sent:
            entry["transitions_sent"] = int(sent[-1][1])
            sent_total += sent[-1][1]
        entry["lost_transitions_counted_by_collector"] = int(lost[-1][1]) if lost else None
        entry["weights_version_at_end"] = weights[-1][1] if weights else None
        entry["diagnostics_at_end"] = {node: drops_and_accounting(last_status(diags, node))
                                       for node in sorted({name for _t, name, _v in diags
                                                           if name.startswith(f"/robot_{i}/")})}
        if i == p and eps:
            e_down, e_up = _at(eps, down), _at(eps, up)
            entry.update({
                "episodes_made_during_partition": None if e_down is None or e_up is None else int(e_up - e_down),
                # the policy's diagnostics come once a second: what it had when the link went down shows in the
                # first ones after (a weights message received just before the link went down included)
                "weights_version_after_link_down": _at(weights, down + DIAG_LAG_S),
                "weights_version_before_link_up": _at(weights, up - 0.5),
                "backlog_transitions_max": int(max((v for t, v in backlog if down <= t <= up + 60), default=0)),
                "lost_transitions_during_partition": None if not lost else int((_at(lost, up + 60) or 0)
                                                                              - (_at(lost, down) or 0)),
            })
        per_robot[f"robot_{i}"] = entry
    res["per_robot"] = per_robot
    trainer_bag = out_dir / "trainer" / "bag"
    if trainer_bag.exists():
        trainer_diags = read_diagnostics(trainer_bag)
        res["trainer_diagnostics_at_end"] = {node: drops_and_accounting(last_status(trainer_diags, node))
                                             for node in sorted({name for _t, name, _v in trainer_diags
                                                                 if name.split(":")[0].split("/")[1] == "trainer"})}
    received = trainer_summary.get("env_steps")
    if received is not None and sent_total:
        res["transitions_sent_by_collectors"] = int(sent_total)
        res["transitions_received_by_trainer"] = int(received)
        # sent is the collectors' last diagnostics (up to a second old); with acknowledgements negative = none lost
        res["transitions_lost_in_flight"] = int(sent_total - received)
    evals = read_eval(out_dir / "trainer" / "eval.csv")
    res["evaluations"] = [{"wall_s": e["wall_s"], "success_rate": e["success_rate"]} for e in evals]
    write_json(out_dir / "partition.json", res)
    return res


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _missing(episodes: list[int]) -> int:
    """Episode numbers between a robot's first and last recorded episode that the trainer never recorded."""
    return (episodes[-1] - episodes[0] + 1 - len(set(episodes))) if episodes else 0


def _robot_diags(out_dir: Path, i: int) -> list[tuple[float, str, dict[str, str]]]:
    bag = out_dir / f"robot_{i}" / "bag"
    return read_diagnostics(bag) if bag.exists() else []


def plot(out_dir: Path) -> Path | None:
    """``out_dir/partition.png``: training success and return (all robots), greedy evaluations, episodes the
    trainer recorded per robot, and the partitioned robot's backlog and weights version, against the
    trainer's wall time, with the partition shaded."""
    out_dir = Path(out_dir)
    tl = json.loads((out_dir / "timeline.json").read_text())
    rows = read_metrics(out_dir / "trainer" / "metrics.csv")
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg, offset = tl["config"], float(tl["trainer_offset_s"])
    p, n = int(cfg["partitioned"]), int(cfg["robots"])
    down, up, heard = (tl[k] - offset for k in ("t_down", "t_up", "t_heard_again"))
    fig, (ax_s, ax_e, ax_b) = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    t = [r.wall_s for r in rows]
    ax_s.plot(t, rolling_success(rows), lw=1.2, label="training success (last 20 episodes, all robots)")
    evals = read_eval(out_dir / "trainer" / "eval.csv")
    if evals:
        ax_s.plot([e["wall_s"] for e in evals], [e["success_rate"] for e in evals], "o-",
                  label=f"greedy evaluation ({int(evals[-1]['episodes'])} episodes)")
    ax_s.set_ylabel("success rate")
    ax_s.set_ylim(-0.03, 1.03)
    for i in range(n):
        mine = [r.wall_s for r in rows if str(r.robot) == str(i)]
        label = f"robot_{i}: episodes the trainer recorded" + (" (link down)" if i == p else "")
        ax_e.step(mine, range(1, len(mine) + 1), where="post", label=label)
    diags = _robot_diags(out_dir, p)
    backlog = _series(diags, f"/robot_{p}/collector", "backlog_transitions")
    episodes = _series(diags, f"/robot_{p}/collector", "episodes")
    weights = _series(diags, f"/robot_{p}/policy", "weights_version")
    if episodes:
        ax_e.plot([x - offset for x, _ in episodes], [v for _, v in episodes], "--",
                  label=f"robot_{p}: episodes it made (its own host's count)")
    ax_e.set_ylabel("episodes")
    if backlog:
        ax_b.plot([x - offset for x, _ in backlog], [v for _, v in backlog], label=f"robot_{p} backlog (transitions)")
    ax_b.set_ylabel("backlog (transitions)")
    if weights:
        ax_w = ax_b.twinx()
        ax_w.plot([x - offset for x, _ in weights], [v for _, v in weights], ":", color="gray")
        ax_w.set_ylabel(f"robot_{p} weights version (dotted)")
    ax_b.set_xlabel("trainer wall time (s)")
    for ax in (ax_s, ax_e, ax_b):
        ax.axvspan(down, up, color="red", alpha=0.12)
        ax.axvline(heard, color="green", lw=0.8, ls="--")
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
    ax_s.set_title(f"{cfg['task']}: trainer and {n} robots on {n + 1} network namespaces; robot_{p}'s link down "
                   f"{up - down:.0f} s (shaded), heard again (dashed)", fontsize=9)
    fig.tight_layout()
    png = out_dir / "partition.png"
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png
