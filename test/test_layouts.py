"""async_naf.wire.layouts: round trips and every validation failure (ROS-free unit tests, fixed seeds)."""
from __future__ import annotations

import dataclasses
import json
import struct

import numpy as np
import pytest

from async_naf.wire import layouts as L
from async_naf.wire.layouts import ArrayMsg, LayoutError

OBS, ACT = 20, 7


def _batch(n: int = 5, seed: int = 0) -> L.TransitionBatch:
    rng = np.random.default_rng(seed)
    return L.TransitionBatch(
        obs=rng.normal(size=(n, OBS)).astype(np.float32),
        action=rng.uniform(-1, 1, size=(n, ACT)).astype(np.float32),
        reward=rng.normal(size=n).astype(np.float32),
        next_obs=rng.normal(size=(n, OBS)).astype(np.float32),
        terminal=(rng.uniform(size=n) < 0.5).astype(np.float32),
        robot_id=np.full(n, 3),
        episode=np.arange(n) + 10,
        step=np.arange(n),
    )


def _safetensors_bytes() -> bytes:
    from safetensors.numpy import save

    return save({"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, metadata={"kind": "test"})


def _with(msg: ArrayMsg, **changes) -> ArrayMsg:
    return dataclasses.replace(msg, **changes)


# ------------------------------------------------------------------------------------------ transitions


def test_transitions_round_trip_exact() -> None:
    batch = _batch()
    msg = L.encode_transitions(batch)
    assert msg.labels == ("async_naf.transitions.v2:rows", f"cols:obs={OBS},act={ACT}")
    assert msg.sizes == (5, L.transition_columns(OBS, ACT)) and msg.data.dtype == np.float32
    out = L.decode_transitions(msg, obs_dim=OBS, act_dim=ACT)
    assert (out.session, out.first) == (0, -1) and not out.sequenced
    for name in L.TransitionBatch._fields[:8]:
        np.testing.assert_array_equal(getattr(out, name),
                                      np.asarray(getattr(batch, name), dtype=getattr(out, name).dtype))
    assert out.rows == 5
    rb = out.to_batch()
    assert rb.obs.shape == (5, OBS) and rb.terminal.shape == (5,)


def test_sequenced_transitions_round_trip_and_tail() -> None:
    batch = _batch()._replace(robot_id=np.zeros(5, np.int64), session=2**31 - 1, first=2**40)
    msg = L.encode_transitions(batch)
    # base not set (a batch not sent by a collector): taken as first, nothing held before it
    assert msg.labels[0] == f"async_naf.transitions.v2:rows,session={2**31 - 1},first={2**40},base={2**40}"
    out = L.decode_transitions(msg, obs_dim=OBS, act_dim=ACT)
    assert out.sequenced and (out.session, out.first, out.base) == (2**31 - 1, 2**40, 2**40)
    tail = out.tail(3)
    assert tail.rows == 2 and tail.first == 2**40 + 3 and tail.base == 2**40
    np.testing.assert_array_equal(tail.obs, out.obs[3:])
    held = L.decode_transitions(L.encode_transitions(batch._replace(base=12)))
    assert held.base == held.held_from == 12 and held.first == 2**40


@pytest.mark.parametrize("label", ["rows,session=0,first=0,base=0", "rows,session=1,first=-1,base=0",
                                   "rows,first=3,session=1,base=0", f"rows,session={2**31},first=0,base=0",
                                   "rows,session=1", "rows;session=1,first=0,base=0",
                                   "rows,session=1,first=3", "rows,session=1,first=3,base=4",
                                   "rows,session=1,first=3,base=-1"])
def test_transitions_bad_sequence_refused(label: str) -> None:
    msg = L.encode_transitions(_batch())
    with pytest.raises(L.LayoutError):
        L.decode_transitions(_with(msg, labels=(f"async_naf.transitions.v2:{label}", msg.labels[1])))


def test_a_sequenced_batch_running_past_the_sequence_limit_is_refused() -> None:
    """first = 2**53 - 1 with 4 rows: the trainer's count would pass what its acknowledgement can carry (every
    acknowledgement then failed to encode and the trainer died)."""
    batch = _batch(4)._replace(robot_id=np.zeros(4, np.int64), session=77, first=L.MAX_SEQUENCE - 4)
    msg = L.encode_transitions(batch)
    assert L.decode_transitions(msg).first == L.MAX_SEQUENCE - 4  # up to the limit: fine
    past = f"async_naf.transitions.v2:rows,session=77,first={L.MAX_SEQUENCE - 1},base=0"
    with pytest.raises(L.LayoutError, match="sequence limit"):
        L.decode_transitions(_with(msg, labels=(past, msg.labels[1])))


def test_sequenced_batch_of_several_robots_refused() -> None:
    batch = _batch()._replace(robot_id=np.arange(5), session=3, first=0)
    with pytest.raises(L.LayoutError, match="one robot"):
        L.encode_transitions(batch)


def test_transition_ack_round_trip_and_validation() -> None:
    ack = L.TransitionAck(7, {(0, 11): (100, 250), (1, 2**31 - 1): (0, 2**50)}, {(0, 11): 4, (2, 5): 1})
    msg = L.encode_transition_ack(ack)
    assert msg.data.dtype == np.float64 and msg.sizes == (16,)  # a session with statistics and no rows too
    assert L.decode_transition_ack(msg) == ack
    assert L.decode_transition_ack(L.encode_transition_ack(L.TransitionAck(5))).entries == {}
    data = msg.data.copy()
    for index, value in ((0, 0.0), (2, 0.0), (3, 300.0), (4, 0.5), (4, np.nan), (1, -1.0), (5, -1.0), (5, 0.5)):
        bad = data.copy()
        bad[index] = value
        with pytest.raises(L.LayoutError):
            L.decode_transition_ack(_with(msg, data=bad))
    with pytest.raises(L.LayoutError):  # not 1 + 5 per entry
        L.decode_transition_ack(_with(msg, data=data[:-1], sizes=(15,), strides=(15,)))
    with pytest.raises(L.LayoutError):  # duplicate entry
        L.decode_transition_ack(_with(msg, data=np.concatenate((data, data[1:6])), sizes=(21,), strides=(21,)))
    for old in (".v1", ".v3"):  # v1: no statistics column; a collector of another version is told so
        with pytest.raises(L.LayoutError, match="version"):
            L.decode_transition_ack(_with(msg, labels=(msg.labels[0].replace(".v2", old),)))


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda m: _with(m, labels=("async_naf.transitions.v1:rows", m.labels[1])), "version"),
        (lambda m: _with(m, labels=("other.layout.v1:rows", m.labels[1])), "not"),
        (lambda m: _with(m, labels=(m.labels[0], "cols:obs=20")), "act="),
        (lambda m: _with(m, labels=(m.labels[0], "cols:obs=21,act=7")), "columns"),
        (lambda m: _with(m, labels=m.labels[:1], sizes=m.sizes[:1], strides=m.strides[:1]), "dimension"),
        (lambda m: _with(m, data=m.data[:-1]), "values"),
        (lambda m: _with(m, strides=(m.strides[0] + 1, m.strides[1])), "stride"),
        (lambda m: _with(m, data_offset=1), "data_offset"),
        (lambda m: _with(m, data=m.data.astype(np.float64)), "float32"),
    ],
)
def test_transitions_layout_errors(mutate, match) -> None:
    with pytest.raises(LayoutError, match=match):
        L.decode_transitions(mutate(L.encode_transitions(_batch())))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_transitions_non_finite_rejected(bad: float) -> None:
    msg = L.encode_transitions(_batch())
    data = msg.data.copy()
    data[7] = bad
    with pytest.raises(LayoutError, match="non-finite"):
        L.decode_transitions(_with(msg, data=data))


@pytest.mark.parametrize("column, value, match", [("terminal", 0.5, "terminal"), ("robot_id", -1, "robot_id"),
                                                  ("episode", 1.5, "episode"), ("step", -2, "step")])
def test_transitions_bad_flags_and_counts_rejected(column: str, value: float, match: str) -> None:
    msg = L.encode_transitions(_batch())
    cols = L.transition_columns(OBS, ACT)
    offset = {"terminal": cols - 4, "robot_id": cols - 3, "episode": cols - 2, "step": cols - 1}[column]
    data = msg.data.copy()
    data[cols + offset] = value  # second row
    with pytest.raises(LayoutError, match=match):
        L.decode_transitions(_with(msg, data=data))


def test_transitions_expected_dims_enforced() -> None:
    msg = L.encode_transitions(_batch())
    with pytest.raises(LayoutError, match="obs=20, expected 30"):
        L.decode_transitions(msg, obs_dim=30)
    with pytest.raises(LayoutError, match="act=7, expected 6"):
        L.decode_transitions(msg, act_dim=6)


def test_transitions_encoder_refuses_bad_input() -> None:
    batch = _batch()
    with pytest.raises(LayoutError, match="non-finite"):
        L.encode_transitions(batch._replace(reward=np.array([0, 0, np.nan, 0, 0], np.float32)))
    with pytest.raises(LayoutError, match="next_obs"):
        L.encode_transitions(batch._replace(next_obs=batch.next_obs[:, :-1]))
    with pytest.raises(LayoutError, match="at least one row"):
        L.encode_transitions(_batch(n=0))


def test_transitions_row_limit() -> None:
    cols = L.transition_columns(1, 1)
    n = L.MAX_ROWS + 1
    msg = ArrayMsg(("async_naf.transitions.v2:rows", "cols:obs=1,act=1"), (n, cols), (n * cols, cols),
                   np.zeros(n * cols, np.float32))
    with pytest.raises(LayoutError, match="limit"):
        L.decode_transitions(msg)


def test_layout_error_is_value_error() -> None:
    assert issubclass(LayoutError, ValueError)


# ---------------------------------------------------------------------------------------------- weights


def test_weights_round_trip() -> None:
    blob = _safetensors_bytes()
    msg = L.encode_weights(blob)
    assert msg.labels == ("async_naf.weights.v1",) and msg.data.dtype == np.uint8
    assert L.decode_weights(msg) == blob


@pytest.mark.parametrize(
    "blob, match",
    [
        (b"", "cannot hold"),
        (b"\x00" * 7, "cannot hold"),
        (struct.pack("<Q", 10_000) + b"{}", "does not fit"),
        (struct.pack("<Q", 4) + b"notj", "JSON"),
        (struct.pack("<Q", 2) + b"[]", "object"),
        (struct.pack("<Q", 40)
         + json.dumps({"w": {"dtype": "F32", "shape": [9], "data_offsets": [0, 36]}}).encode()[:40],
         "JSON|range|malformed"),
    ],
)
def test_weights_malformed_bytes_rejected(blob: bytes, match: str) -> None:
    data = np.frombuffer(blob, dtype=np.uint8)
    msg = ArrayMsg(("async_naf.weights.v1",), (data.size,), (data.size,), data)
    with pytest.raises(LayoutError, match=match):
        L.decode_weights(msg)


def test_weights_tensor_out_of_range_rejected() -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    blob = struct.pack("<Q", len(header)) + header + b"\x00" * 8  # only 8 of 16 data bytes
    with pytest.raises(LayoutError, match="range"):
        L.encode_weights(blob)


def test_weights_layout_errors() -> None:
    msg = L.encode_weights(_safetensors_bytes())
    with pytest.raises(LayoutError, match="version"):
        L.decode_weights(_with(msg, labels=("async_naf.weights.v9",)))
    with pytest.raises(LayoutError, match="exactly"):
        L.decode_weights(_with(msg, labels=("async_naf.weights.v1:x",)))
    with pytest.raises(LayoutError, match="values"):
        L.decode_weights(_with(msg, sizes=(msg.sizes[0] + 1,), strides=(msg.sizes[0] + 1,)))
    with pytest.raises(LayoutError, match="uint8"):
        L.decode_weights(_with(msg, data=msg.data.astype(np.int16)))


# ----------------------------------------------------------------------------------------- episode stats


def test_episode_stats_round_trip() -> None:
    stats = L.EpisodeStats(robot=2, episode=7, episode_return=-12.5, length=100, success=True, env_steps=800)
    assert L.decode_episode_stats(L.encode_episode_stats(stats)) == stats
    numbered = L.EpisodeStats(2, 7, -12.5, 100, True, 800, session=2**31 - 1, seq=9, base=8)
    assert L.decode_episode_stats(L.encode_episode_stats(numbered)) == numbered


@pytest.mark.parametrize("index, value, match", [(0, -1, "counts"), (3, 2.5, "counts"), (4, 0.5, "success"),
                                                 (2, np.nan, "non-finite"), (2, -1e39, "float32"),
                                                 (2, 1e308, "float32"), (6, -1, "counts"), (7, 0.5, "counts")])
def test_episode_stats_bad_values(index: int, value: float, match: str) -> None:
    msg = L.encode_episode_stats(L.EpisodeStats(0, 0, 1.0, 10, False, 10))
    data = msg.data.copy()
    data[index] = value
    with pytest.raises(LayoutError, match=match):
        L.decode_episode_stats(_with(msg, data=data))


@pytest.mark.parametrize("session, seq, base", [(0, 3, 1), (5, 0, 0), (5, 3, 3), (5, 3, 4), (0, 0, 2),
                                                (2**31, 3, 1)])
def test_episode_stats_numbering_that_does_not_hold_together(session: int, seq: int, base: int) -> None:
    """A number without a session, a session without a number, a base at or above the number, a session out
    of range: the trainer would acknowledge statistics it does not hold."""
    msg = L.encode_episode_stats(L.EpisodeStats(0, 0, 1.0, 10, False, 10))
    data = msg.data.copy()
    data[6:] = (session, seq, base)
    with pytest.raises(LayoutError, match="numbering"):
        L.decode_episode_stats(_with(msg, data=data))


def test_episode_stats_layout_errors() -> None:
    msg = L.encode_episode_stats(L.EpisodeStats(0, 0, 1.0, 10, False, 10))
    with pytest.raises(LayoutError, match="fields"):
        L.decode_episode_stats(_with(msg, labels=("async_naf.episode_stats.v2:robot,episode",)))
    with pytest.raises(LayoutError, match="version"):  # v1: six values, no numbering
        L.decode_episode_stats(_with(msg, labels=(msg.labels[0].replace(".v2", ".v1"),)))
    with pytest.raises(LayoutError, match="values"):
        L.decode_episode_stats(_with(msg, data=msg.data[:5], sizes=(5,), strides=(5,)))


# ------------------------------------------------------------------------------------ policy step / goal


def test_policy_step_round_trip() -> None:
    rng = np.random.default_rng(1)
    step = L.PolicyStep(12.345, 4, 17, rng.normal(size=OBS), rng.normal(size=ACT), rng.normal(size=7),
                        rng.normal(size=7), rng.normal(size=3), 0.3, -0.1)
    out = L.decode_policy_step(L.encode_policy_step(step), OBS, ACT)
    assert (out.stamp_s, out.episode, out.step, out.door_angle, out.door_velocity) == (12.345, 4, 17, 0.3, -0.1)
    for name in ("obs", "action", "joint_pos", "joint_vel", "ee_pos"):
        np.testing.assert_array_equal(getattr(out, name), getattr(step, name))
    # what a sender may hand over: float32, a (1, n) row, big-endian, a list, numpy integers
    odd = L.PolicyStep(np.float32(2.5), np.int64(3), np.int32(9), rng.normal(size=(1, OBS)).astype(np.float32),
                       rng.normal(size=ACT).astype(">f8"), rng.normal(size=7).tolist(), rng.normal(size=14)[::2],
                       rng.normal(size=3), 0.5, 0.25)
    msg = L.encode_policy_step(odd)
    assert msg.data.dtype == np.float64 and msg.data.flags.writeable and msg.sizes == (msg.data.size,)
    out = L.decode_policy_step(msg, OBS, ACT)
    assert (out.stamp_s, out.episode, out.step, out.door_angle, out.door_velocity) == (2.5, 3, 9, 0.5, 0.25)
    for name in ("obs", "action", "joint_pos", "joint_vel", "ee_pos"):
        np.testing.assert_array_equal(getattr(out, name), np.ravel(getattr(odd, name)).astype(np.float64))


def test_policy_step_errors() -> None:
    step = L.PolicyStep(1.0, 0, 0, np.zeros(OBS), np.zeros(ACT), np.zeros(7), np.zeros(7), np.zeros(3))
    msg = L.encode_policy_step(step)
    with pytest.raises(LayoutError, match="expected 21"):
        L.decode_policy_step(msg, obs_dim=21)
    data = msg.data.copy()
    data[5] = np.nan
    with pytest.raises(LayoutError, match="non-finite"):
        L.decode_policy_step(_with(msg, data=data))
    for index, bad in ((2, -1), (1, 2.5), (2, 2.0**53 + 2)):  # negative, not whole, beyond 2**53
        data = msg.data.copy()
        data[index] = bad
        with pytest.raises(LayoutError, match="episode/step"):
            L.decode_policy_step(_with(msg, data=data))
    for text in ("obs=21", "obs=21,act=x", "obs=21,act=9999999"):  # a bad label fails every time (not cached)
        for _ in range(2):
            with pytest.raises(LayoutError, match="act"):
                L.decode_policy_step(_with(msg, labels=(f"{L.POLICY_STEP}:{text}",)))


def test_integer_checks_agree_for_few_and_many_values() -> None:
    """The counters' check takes plain floats for a few values and numpy for more: the same verdicts."""
    cases = ([0.0, 3.0], [1.0, 2.5], [-1.0, 2.0], [np.inf, 1.0], [np.nan, 1.0], [2.0**24 + 2, 0.0], [])
    for values in cases:
        for reps in (1, 5):  # 2 values (few), 10 values (many)
            arr = np.array(values * reps, dtype=np.float64)
            try:
                L._require_int_valued(arr, "x")
                ok = True
            except LayoutError:
                ok = False
            assert ok == bool(all(np.isfinite(v) and v == round(v) and 0 <= v <= L._F32_INT_MAX for v in values))


def test_goal_round_trip_and_errors() -> None:
    goal = L.Goal(episode=3, active=True, goal=np.array([0.4, -0.1, 0.5]))
    out = L.decode_goal(L.encode_goal(goal), goal_dim=3)
    assert out.episode == 3 and out.active and np.array_equal(out.goal, goal.goal)
    empty = L.decode_goal(L.encode_goal(L.Goal(0, False)))
    assert empty.goal.shape == (0,) and not empty.active
    msg = L.encode_goal(goal)
    with pytest.raises(LayoutError, match="expected 2"):
        L.decode_goal(msg, goal_dim=2)
    data = msg.data.copy()
    data[1] = 0.5
    with pytest.raises(LayoutError, match="active"):
        L.decode_goal(_with(msg, data=data))
    with pytest.raises(LayoutError, match="not"):
        L.decode_goal(_with(msg, labels=("async_naf.transitions.v2:goal=3",)))
    data = msg.data.copy()
    data[4] = 1e39  # finite, but inf in the policy's float32 observation: it could not act until the next goal
    with pytest.raises(LayoutError, match="float32"):
        L.decode_goal(_with(msg, data=data))
