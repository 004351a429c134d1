"""Transitions from a recorded bag, the exact way: the policy's own ``policy/step`` records (``async-naf bag convert``).

For every robot namespace in the bag, each active goal on ``task/goal`` starts an episode with the recorded
goal vector, and the policy steps of that episode (``policy/step``, receive order) go through the same
:class:`~async_naf.collecting.collector.EpisodeAssembler` the collector node runs live: the same pairing,
reward, success, terminal and time-limit code, with the simulator's ground truth (``ground_truth/door_state``
at the step's stamp) where the bag has it and the collector used it. On a bag recorded with ``--record`` the
result is the transitions the trainer received in that run.

Output (written to ``OUT.part`` and renamed, so a failure never leaves a partial dataset)::

    OUT/replay.npz        the project's replay-buffer file (ReplayBuffer.load)
    OUT/manifest.json     bag sha256, task, collector configs, layout versions, counts, drops by reason

Reading: an indexed MCAP bag (what ``--record`` and ``ros2 bag record`` on Jazzy write) is read through its
chunk and message indexes (:mod:`async_naf.recording.indexed`) and its policy steps decoded as tables
(:mod:`async_naf.recording.cdr`, :func:`~async_naf.wire.layouts.policy_step_rows`), then paired by
:meth:`~async_naf.collecting.collector.EpisodeAssembler.add_steps` (the collector's rules, rewards computed
for all steps at once): about 160,000 transitions/s on one core. Any other bag (sqlite3, unindexed MCAP), and
every message that does not fit a table (another header, a bad value), goes message by message through
rosbags, with the same result: ``vectorised=False`` reads it all that way.

Bad input is counted, never fatal per message: undecodable or invalid messages (wrong layout, dimensions of
another task, NaN/Inf, steps out of order) are dropped by reason in the manifest. A bag with no usable robot
(no ``task/goal`` or no ``policy/step``) is an error.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from async_naf.collecting.collector import CollectorConfig, EpisodeAssembler, GroundTruth
from async_naf.common.bags import message_count, read_errors
from async_naf.learning.replay import Batch, ReplayBuffer
from async_naf.recording.info import BagError, recorded_collector_params
from async_naf.wire import layouts

_ROBOT_RE = re.compile(r"^(/[^/]+)/(task/goal|policy/step|ground_truth/door_state)$")


@dataclass
class Converted:
    """What a conversion produced: transitions per robot, and everything counted on the way."""

    batch: Batch
    robots: list[str]
    episodes: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    drops: Counter[str] = field(default_factory=Counter)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    selection: dict[str, Any] = field(default_factory=dict)
    method: str = "exact"
    door_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    # (n, 3) int64: robot_id, episode, step of each row's first step (rows of two conversions are matched by it)
    keys: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))

    def set_parts(self, parts: list[layouts.TransitionBatch]) -> None:
        """The transitions (and their keys) from the assemblers' batches; counts ``transitions``."""
        if parts:
            self.set_rows({f: np.concatenate([getattr(p, f) for p in parts])
                           for f in layouts.TransitionBatch._fields[:8]})
        self.counts["transitions"] = int(self.batch.obs.shape[0])

    def set_rows(self, rows: dict[str, np.ndarray]) -> None:
        """The transitions (and their keys) from merged rows (the first eight TransitionBatch fields)."""
        self.batch = Batch(*(rows[f] for f in ("obs", "action", "reward", "next_obs", "terminal")))
        self.keys = np.column_stack([rows[f].astype(np.int64) for f in ("robot_id", "episode", "step")])
        self.counts["transitions"] = int(self.batch.obs.shape[0])



def _collector_config(bag: Path, ns: str, task: str, robot_id: int, overrides: dict[str, Any]) -> CollectorConfig:
    """The collector's configuration for robot ``ns``: what the recorded run used (``../params`` of a bag
    recorded with --record) if it is there, else the defaults; then ``overrides``. BagError if the recorded
    run's task is not ``task``."""
    values = dict(recorded_collector_params(bag, ns))  # BagError for an unreadable file
    recorded = values.get("task", task)
    if recorded != task:  # door_pull and door_push have the same sizes: nothing else would notice
        raise BagError(f"{bag}: robot {ns} was recorded running task {recorded!r} (RUN_DIR/params, or the bag's "
                       f"metadata), not {task!r}: its goals, observations and door are that task's")
    values.update(task=task, robot_id=values.get("robot_id", robot_id), **overrides)
    names = {f.name for f in dataclasses.fields(CollectorConfig)}
    return CollectorConfig(**{k: v for k, v in values.items() if k in names})


@dataclass
class _Decoded:
    """What the robot topics of a bag hold, decoded and checked (drops counted by the caller's counters)."""

    goals: dict[str, list[layouts.Goal]] = field(default_factory=dict)
    # per robot: (receive-order key, steps) pieces; sorted by key into one PolicySteps at the end
    steps: dict[str, list[tuple[np.ndarray, layouts.PolicySteps]]] = field(default_factory=dict)
    truth: dict[str, dict[int, GroundTruth]] = field(default_factory=dict)

    def add_steps(self, ns: str, order: np.ndarray, steps: layouts.PolicySteps) -> None:
        self.steps.setdefault(ns, []).append((np.asarray(order, np.int64), steps))

    def robot_steps(self, ns: str) -> layouts.PolicySteps | None:
        """The steps of robot ``ns`` in receive order, or None without any."""
        pieces = self.steps.get(ns)
        if not pieces:
            return None
        order = np.concatenate([o for o, _ in pieces])
        merged = layouts.PolicySteps(*(np.concatenate(cols) for cols in zip(*(p for _, p in pieces))))
        return merged.take(np.argsort(order, kind="stable"))


def _decode_message(kind: str, ns: str, order: int, msg: Any, task_obj: Any, out: _Decoded) -> None:
    """One deserialised robot message into ``out`` (LayoutError / ValueError etc. for bad ones)."""
    if kind == "task/goal":
        goal = layouts.decode_goal(layouts.array_msg_of(msg), goal_dim=task_obj.goal_dim)
        if goal.active:
            out.goals.setdefault(ns, []).append(goal)
    elif kind == "policy/step":
        step = layouts.decode_policy_step(layouts.array_msg_of(msg), task_obj.obs_dim, task_obj.act_dim)
        out.add_steps(ns, np.array([order]), layouts.PolicySteps.from_steps([step]))
    else:
        names = list(msg.name)
        i, j = names.index("door_hinge"), names.index("door_handle")
        # the collector's key: the header stamp in s (float), rounded to ns
        key = int(round((msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec) * 1e9))
        vel = float(msg.velocity[i]) if len(msg.velocity) > i else 0.0
        out.truth.setdefault(ns, {})[key] = GroundTruth(float(msg.position[i]), vel, float(msg.position[j]))


def _decode_counted(kind: str, ns: str, order: int, decode: Any, task_obj: Any, out: _Decoded,
                    drops: Counter[str]) -> None:
    """:func:`_decode_message` of ``decode()`` (the deserialised message), a failure counted by reason."""
    from rosbags.highlevel import AnyReaderError
    from rosbags.serde import SerdeError

    try:
        _decode_message(kind, ns, order, decode(), task_obj, out)
    except layouts.LayoutError as exc:
        drops[f"{kind}:layout"] += 1
        if "dim" in str(exc) or "size" in str(exc):
            drops[f"{kind}:other_task_dims"] += 1
    except (AnyReaderError, SerdeError, ValueError, IndexError, KeyError, AttributeError, AssertionError):
        drops[f"{kind}:undecodable"] += 1


def _read_generic(bag: Path, task_obj: Any, counts: Counter[str], drops: Counter[str]) -> _Decoded:
    """The robot topics through rosbags, message by message (any storage, any bag rosbags reads)."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    out = _Decoded()
    try:
        with AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_JAZZY)) as reader:
            conns = [c for c in reader.connections if _ROBOT_RE.match(c.topic)]
            seen: Counter[str] = Counter()
            # messages(connections=[]) is every message of the bag (rosbags): none of a robot's, nothing to read
            for conn, _, raw in reader.messages(connections=conns) if conns else ():
                m = _ROBOT_RE.match(conn.topic)
                assert m is not None
                ns, kind = m.group(1), m.group(2)
                counts[kind] += 1
                seen[conn.topic] += 1
                _decode_counted(kind, ns, seen[conn.topic] - 1,
                                lambda raw=raw, conn=conn: reader.deserialize(raw, conn.msgtype), task_obj, out, drops)
            check_counts(bag, conns, seen)
    except BagError:  # this module's own (a topic missing, ...): not a damaged bag
        raise
    except read_errors() as exc:  # whatever a damaged bag makes rosbags raise
        raise BagError(f"{bag}: not a readable rosbag2 bag: {type(exc).__name__}: {exc}") from exc
    return out


def check_counts(bag: Path, connections: list[Any], seen: Counter[str]) -> None:
    """BagError if rosbags yielded fewer messages of a topic than the bag's metadata counts: it skips a damaged
    chunk without an error, and a conversion would go on with a part of the data."""
    expected: Counter[str] = Counter()
    for c in connections:
        expected[c.topic] += message_count(c) or 0
    short = [f"{topic}: {seen[topic]} of {n}" for topic, n in sorted(expected.items()) if seen[topic] < n]
    if short:
        raise BagError(f"{bag}: read fewer messages than its metadata counts ({'; '.join(short)}): a damaged chunk?")


def _read_fast(bag: Path, task_obj: Any, counts: Counter[str], drops: Counter[str]) -> _Decoded | None:
    """The robot topics of an indexed MCAP bag, vectorised (:mod:`async_naf.recording.indexed`,
    :mod:`async_naf.recording.cdr`), or None where that does not apply (then :func:`_read_generic`).

    Policy steps whose layout header repeats are decoded as one table; every other message (goals, ground
    truth, a step with another header or a bad value) goes through the per-message decoder, so drops and
    results are those of :func:`_read_generic`."""
    from rosbags.typesys import Stores, get_typestore

    from async_naf.recording.cdr import joint_state_groups, multiarray_groups
    from async_naf.recording.indexed import read_indexed, topic_types

    types = topic_types(bag)
    if types is None:
        return None
    wanted = {name: kind for name, kind in types.items() if _ROBOT_RE.match(name)}
    payloads = read_indexed(bag, wanted)
    if payloads is None:
        return None
    store = get_typestore(Stores.ROS2_JAZZY)
    out = _Decoded()
    o, a = task_obj.obs_dim, task_obj.act_dim
    for topic in sorted(payloads):
        m = _ROBOT_RE.match(topic)
        assert m is not None
        ns, kind = m.group(1), m.group(2)
        p, msgtype = payloads[topic], wanted[topic]
        counts[kind] += len(p.log_time)
        rest = np.arange(len(p.log_time))
        if kind == "policy/step" and msgtype == "std_msgs/msg/Float64MultiArray":
            groups, rest = multiarray_groups(p.buf, p.start, p.length)
            for g in groups:
                try:  # the values row by row, then the header once, with a row whose values pass
                    steps, ok = layouts.policy_step_rows(g.data, o, a)
                    if not ok.any():
                        raise layouts.LayoutError("no row with good values")
                    layouts.decode_policy_step(layouts.ArrayMsg(g.labels, g.sizes, g.strides, g.data[ok][0],
                                                                g.data_offset), o, a)
                except layouts.LayoutError:  # every message then goes one by one (and fails, counted)
                    rest = np.concatenate((rest, g.messages))
                    continue
                out.add_steps(ns, g.messages[ok], steps)
                rest = np.concatenate((rest, g.messages[~ok]))
        truth: list[tuple[int, int, GroundTruth]] = []  # (message, key, truth): into the dict in message order
        if kind == "ground_truth/door_state" and msgtype == "sensor_msgs/msg/JointState":
            js_groups, rest = joint_state_groups(p.buf, p.start, p.length)
            for js in js_groups:
                if "door_hinge" not in js.names or "door_handle" not in js.names:
                    rest = np.concatenate((rest, js.messages))  # each then fails as one message would
                    continue
                i, j = js.names.index("door_hinge"), js.names.index("door_handle")
                # the collector's key: the header stamp in s (float), rounded to ns
                keys = np.round((js.stamp_sec + 1e-9 * js.stamp_nanosec) * 1e9).astype(np.int64).tolist()
                vel = js.velocity[:, i].tolist() if js.velocity.shape[1] > i else [0.0] * len(keys)
                truth += [(m, k, GroundTruth(h, v, g)) for m, k, h, v, g in zip(
                    js.messages.tolist(), keys, js.position[:, i].tolist(), vel, js.position[:, j].tolist())]
        for i in np.sort(rest).tolist():
            one = _Decoded() if truth else out  # with tables, the per-message truths join them in order
            _decode_counted(kind, ns, i, lambda i=i, p=p, t=msgtype: store.deserialize_cdr(p.payload(i), t),
                            task_obj, one, drops)
            if one is not out:
                truth += [(i, k, v) for k, v in one.truth.get(ns, {}).items()]
        if truth:
            robot = out.truth.setdefault(ns, {})
            for _, key, value in sorted(truth, key=lambda x: x[0]):
                robot[key] = value
    return out


def convert_exact(bag: str | Path, task: str, overrides: dict[str, Any] | None = None,
                  successful_only: bool = False, max_episodes: int = 0, vectorised: bool = True) -> Converted:
    """Rebuild the transitions of every robot in ``bag`` (see the module docstring).

    Args:
        successful_only: keep only the episodes that ended (time limit or terminal) with the task's success
            at their last step (demonstrations from a trained policy's bag); an episode the bag cuts short
            never counts as successful.
        max_episodes: keep at most this many of the (selected) episodes, by robot id, each robot's episodes
            in order (0 = all). ``Converted.episodes`` then counts the episodes kept.
        vectorised: read an indexed MCAP bag's policy steps as tables (about 5 times faster; the same
            result); False: message by message through rosbags, as for any other bag.

    Raises:
        BagError: unreadable bag, or no robot with both ``task/goal`` and ``policy/step``.
        ValueError: unknown task or bad ``overrides`` (CollectorConfig fields).
    """
    from async_naf.task.tasks import make_task

    bag = Path(bag)
    task_obj = make_task(task)
    counts: Counter[str] = Counter()
    drops: Counter[str] = Counter()
    decoded = _read_fast(bag, task_obj, counts, drops) if vectorised else None
    if decoded is None:
        counts.clear()
        drops.clear()
        decoded = _read_generic(bag, task_obj, counts, drops)
    robots = sorted(ns for ns in decoded.goals if ns in decoded.steps)
    if not robots:
        raise BagError(f"{bag}: no robot with both task/goal (active goals) and policy/step for task {task!r} "
                       f"(messages: {dict(counts)}, dropped: {dict(drops)})")
    out = Converted(Batch(*(np.zeros((0,) + s, np.float32) for s in
                            ((task_obj.obs_dim,), (task_obj.act_dim,), (), (task_obj.obs_dim,), ()))), robots,
                    counts=counts, drops=drops)
    parts: list[layouts.TransitionBatch] = []
    ends: dict[int, dict[int, bool]] = {}  # robot id -> episode -> success at its end
    for index, ns in enumerate(robots):
        digits = re.search(r"(\d+)$", ns)
        cfg = _collector_config(bag, ns, task, int(digits.group(1)) if digits else index, overrides or {})
        out.configs[ns] = dataclasses.asdict(cfg)
        asm = EpisodeAssembler(cfg, task_obj)
        steps = decoded.robot_steps(ns)
        assert steps is not None
        robot_truth = decoded.truth.get(ns, {}) if cfg.use_ground_truth else {}
        hinge = handle = have = None
        if robot_truth:  # each step's truth by its stamp (the collector's key); NaN where the bag has none
            found = [robot_truth.get(k) for k in np.round(steps.stamp_s * 1e9).astype(np.int64).tolist()]
            have = np.array([t is not None for t in found], bool)
            hinge = np.array([math.nan if t is None else t.hinge_angle for t in found], np.float64)
            handle = np.array([math.nan if t is None else t.handle_angle for t in found], np.float64)
        by_episode = np.argsort(steps.episode, kind="stable")
        episodes = steps.episode[by_episode]
        seen: set[int] = set()
        ended: dict[int, bool] = {}  # episode -> success at its end
        for goal in decoded.goals[ns]:
            if goal.episode in seen:  # the same goal again (re-published): one episode
                continue
            seen.add(goal.episode)
            asm.episode = goal.episode - 1
            asm.start_episode(goal.goal)
            out.episodes += 1
            lo, hi = np.searchsorted(episodes, [goal.episode, goal.episode + 1])
            rows = by_episode[lo:hi]
            if have is not None:
                if missing := int((~have[rows]).sum()):
                    drops["truth_missing"] += missing  # the live collector drops these too
                rows = rows[have[rows]]
            for stats in asm.add_steps(steps.take(rows), None if hinge is None else hinge[rows],
                                       None if handle is None else handle[rows]):
                ended[goal.episode] = bool(stats.success)
        drops.update({f"step:{k}": v for k, v in asm.dropped.items()})
        # steps of an episode that had ended (its time limit or terminal step): one or so per episode live (the
        # policy acts on until the collector's next goal); many when --episode-steps cut the recorded episodes
        counts["steps_after_episode_end"] += asm.late_steps
        orphans = int((~np.isin(steps.episode, np.array(sorted(seen), np.int64))).sum())
        if orphans:
            drops["step:no_goal"] += orphans
        while asm.pending:
            batch = asm.pop_batch(max_rows=100_000)
            if batch is not None:
                parts.append(batch)
        ends[cfg.robot_id] = ended
    if parts and (successful_only or max_episodes):
        merged = {f: np.concatenate([getattr(p, f) for p in parts]) for f in layouts.TransitionBatch._fields[:8]}
        out.set_rows(_select_episodes(merged, ends, out, successful_only, max_episodes))
    else:
        out.set_parts(parts)
    return out


def _select_episodes(rows: dict[str, np.ndarray], ends: dict[int, dict[int, bool]], out: Converted,
                     successful_only: bool, max_episodes: int) -> dict[str, np.ndarray]:
    """The rows of the selected episodes (see :func:`convert_exact`); the selection goes into ``out``."""
    chosen: list[tuple[int, int]] = []
    for robot in sorted(ends):
        for episode, success in sorted(ends[robot].items()):
            if success or not successful_only:
                chosen.append((robot, episode))
    if not successful_only:  # episodes the bag cut short count too (in order, after those that ended)
        present = {(int(r), int(e)) for r, e in zip(rows["robot_id"], rows["episode"])}
        chosen = sorted(present)
    if max_episodes:
        chosen = chosen[:max_episodes]
    keys = rows["robot_id"].astype(np.int64) * (1 << 32) + rows["episode"].astype(np.int64)
    wanted = np.array([r * (1 << 32) + e for r, e in chosen], np.int64)
    keep = np.isin(keys, wanted)
    out.selection = {"successful_only": successful_only, "max_episodes": max_episodes,
                     "episodes_ended": sum(len(v) for v in ends.values()),
                     "episodes_successful": sum(sum(v.values()) for v in ends.values()),
                     "episodes_kept": len(chosen), "rows_dropped": int((~keep).sum())}
    out.episodes = len(chosen)
    return {k: v[keep] for k, v in rows.items()}


def _bag_sha256(bag: Path) -> str:
    """sha256 over the bag's storage files (sorted by name) and metadata.yaml."""
    h = hashlib.sha256()
    files = sorted(p for p in bag.iterdir() if p.is_file()) if bag.is_dir() else [bag]
    for path in files:
        h.update(path.name.encode())
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def dataset_manifest(converted: Converted, bag: str | Path, task: str) -> dict[str, Any]:
    """What ``manifest.json`` holds: bag sha256, task, configs, layout versions, counts, drops by reason."""
    b = converted.batch
    manifest = {
        "format": "async_naf.dataset", "version": 1, "task": task, "method": converted.method,
        "bag": str(Path(bag).resolve()), "bag_sha256": _bag_sha256(Path(bag)),
        "layouts": [layouts.POLICY_STEP, layouts.GOAL] if converted.method == "exact" else [layouts.GOAL],
        "replay_format": "async_naf.replay",
        "robots": converted.robots, "episodes": converted.episodes, "transitions": int(b.obs.shape[0]),
        "counts": dict(converted.counts), "drops": dict(converted.drops), "collector_configs": converted.configs,
        "selection": converted.selection or {"successful_only": False, "max_episodes": 0},
        "obs_dim": int(b.obs.shape[1]), "act_dim": int(b.action.shape[1]),
        "reward_range": [float(b.reward.min()), float(b.reward.max())] if len(b.reward) else [],
    }
    if converted.door_configs:
        manifest["door_angle_configs"] = converted.door_configs
    manifest.update(converted.extra)
    return manifest


def write_dataset(converted: Converted, bag: str | Path, task: str, out_dir: str | Path) -> Path:
    """``out_dir/replay.npz`` + ``manifest.json``, written to ``out_dir.part`` first and renamed.

    Raises:
        ValueError: ``out_dir`` exists, or the transitions are invalid (nothing is left behind).
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise ValueError(f"{out_dir} exists: a dataset is never written over")
    part = out_dir.with_name(out_dir.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    try:
        b = converted.batch
        n = int(b.obs.shape[0])
        if n == 0:
            raise ValueError(f"no transitions: nothing to write (dropped: {dict(converted.drops)})")
        buf = ReplayBuffer(max(n, 1), int(b.obs.shape[1]), int(b.action.shape[1]))
        buf.add_batch(b)
        buf.save(part / "replay.npz")
        manifest = dataset_manifest(converted, bag, task)
        (part / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str) + "\n")
        part.rename(out_dir)
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)
        raise
    return out_dir


def compare_with_buffer(batch: Batch, buffer_path: str | Path) -> dict[str, float]:
    """How a converted dataset matches a trainer's replay buffer (``checkpoints/replay_final.npz``).

    Rows are matched exactly (float32 bytes of obs | action | reward | next_obs | terminal, as a multiset).
    Returns ``buffer_rows``, ``converted_rows``, ``matched`` (buffer rows found among the converted ones),
    ``unmatched`` and ``max_abs_diff``: for each unmatched buffer row, its distance (largest absolute
    difference of any column) to the nearest converted row; the largest of those (0 when all match).
    Converted rows beyond the buffer's are transitions that reached the trainer after its last checkpoint.
    """
    from collections import Counter as Multiset

    buf = ReplayBuffer.load(buffer_path)
    ours = np.ascontiguousarray(np.column_stack([np.asarray(x, np.float32).reshape(len(batch.obs), -1)
                                                 for x in batch]))
    _, theirs_b = buf.snapshot()
    theirs = np.ascontiguousarray(np.column_stack([np.asarray(x, np.float32).reshape(len(theirs_b.obs), -1)
                                                   for x in theirs_b]))
    pool = Multiset(row.tobytes() for row in ours)
    unmatched = []
    for row in theirs:
        key = row.tobytes()
        if pool[key] > 0:
            pool[key] -= 1
        else:
            unmatched.append(row)
    max_diff = 0.0
    for row in unmatched:
        max_diff = max(max_diff, float(np.abs(ours - row).max(axis=1).min()) if len(ours) else float("inf"))
    return {"buffer_rows": float(len(theirs)), "converted_rows": float(len(ours)),
            "matched": float(len(theirs) - len(unmatched)), "unmatched": float(len(unmatched)),
            "max_abs_diff": max_diff}


def compare_conversions(raw: Converted, exact: Converted, obs_layout: dict[str, slice] | None = None,
                        tol: float = 1e-6) -> dict[str, Any]:
    """Deviation per column between two conversions of one bag (raw against exact).

    Rows are matched by robot, episode and the joint state the transition starts from: with ``obs_layout``
    the observation's ``joint_pos`` and ``joint_vel`` (float32, bit for bit: the same joint-state message
    gives the same values in both ways), else the step index. Step indices alone would shift for the rest of
    an episode after one step that only one way counted.

    Returns ``matched``, ``only_raw``, ``only_exact`` (row counts) and per column (``obs``, ``action``,
    ``reward``, ``next_obs``, ``done``) ``max_abs``, ``mean_abs`` (over the elements of matched rows) and
    ``rows_over_tol`` (matched rows with any element differing by more than ``tol``); with ``obs_layout``
    also ``obs_parts``: the largest difference per observation part (joint_pos, door_angle, ...).
    """
    def index(conv: Converted) -> dict[tuple[int, int, bytes], int]:
        obs = np.asarray(conv.batch.obs, np.float32)
        if obs_layout and "joint_pos" in obs_layout and "joint_vel" in obs_layout:
            state = np.ascontiguousarray(np.concatenate([obs[:, obs_layout["joint_pos"]],
                                                         obs[:, obs_layout["joint_vel"]]], axis=1))
            ids = [row.tobytes() for row in state]
        else:
            ids = [int(s).to_bytes(8, "little", signed=True) for s in conv.keys[:, 2]]
        return {(int(k[0]), int(k[1]), ident): i for i, (k, ident) in enumerate(zip(conv.keys, ids))}

    ia, ib = index(raw), index(exact)
    common = sorted(set(ia) & set(ib), key=lambda k: ia[k])
    ra = np.array([ia[k] for k in common], np.int64)
    rb = np.array([ib[k] for k in common], np.int64)
    out: dict[str, Any] = {"matched": len(common), "only_raw": len(ia) - len(common),
                           "only_exact": len(ib) - len(common), "tolerance": tol}
    columns = dict(zip(("obs", "action", "reward", "next_obs", "done"), range(5)))
    for name, col in columns.items():
        a = np.asarray(raw.batch[col], np.float64)[ra].reshape(len(common), -1)
        b = np.asarray(exact.batch[col], np.float64)[rb].reshape(len(common), -1)
        d = np.abs(a - b)
        out[name] = {"max_abs": float(d.max()) if d.size else 0.0, "mean_abs": float(d.mean()) if d.size else 0.0,
                     "rows_over_tol": int((d > tol).any(axis=1).sum()) if d.size else 0}
        if name == "obs" and obs_layout:
            out["obs_parts"] = {part: float(d[:, sl].max()) if d.size else 0.0 for part, sl in obs_layout.items()}
    return out


def format_comparison(cmp: dict[str, Any]) -> str:
    """The comparison as a few lines of text."""
    lines = [f"raw vs exact: {cmp['matched']} rows matched by robot, episode and joint state, {cmp['only_raw']} only "
             f"raw, {cmp['only_exact']} only exact"]
    for name in ("obs", "action", "reward", "next_obs", "done"):
        c = cmp[name]
        lines.append(f"  {name:9s} max |diff| {c['max_abs']:.3g}  mean {c['mean_abs']:.3g}  "
                     f"rows > {cmp['tolerance']:g}: {c['rows_over_tol']}")
    if "obs_parts" in cmp:
        lines.append("  obs parts max |diff|: " + ", ".join(f"{k} {v:.3g}" for k, v in cmp["obs_parts"].items()))
    return "\n".join(lines)
