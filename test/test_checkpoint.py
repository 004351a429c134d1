"""Policy weights and full checkpoints: safetensors round trips, resuming, clear errors on bad files."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from async_naf.common.noise import NoiseConfig
from async_naf.learning.agents import (
    DDPGAgent,
    DDPGConfig,
    LinearNAFAgent,
    NAFAgent,
    NAFConfig,
    Policy,
    load_agent,
    make_agent,
)
from async_naf.learning.replay import Batch
from async_naf.wire import checkpoint

torch.set_num_threads(1)

OBS, ACT = 5, 3


def _batch(rng, n=32) -> Batch:
    return Batch(
        (rng.standard_normal((n, OBS)) * 2 + 1).astype(np.float32),
        rng.uniform(-1, 1, (n, ACT)).astype(np.float32),
        rng.standard_normal(n).astype(np.float32),
        (rng.standard_normal((n, OBS)) * 2 + 1).astype(np.float32),
        (rng.random(n) < 0.2).astype(np.float32),
    )


def _trained(agent, steps=5, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        agent.update(_batch(rng))
    return agent


AGENTS = {
    "naf": lambda: NAFAgent(NAFConfig(OBS, ACT, hidden_sizes=(16, 8), action_low=[-1, -2, -3], action_high=[1, 2, 0],
                                      noise=NoiseConfig(kind="gaussian", scale=0.2, scale_final=0.0,
                                                        anneal_steps=100))),
    "linear_naf": lambda: LinearNAFAgent(NAFConfig(OBS, ACT, hidden_sizes=(16,), grad_clip_norm=1.0)),
    "ddpg": lambda: DDPGAgent(DDPGConfig(OBS, ACT, hidden_sizes=(16, 8), normalize_obs=True)),
}


@pytest.mark.parametrize("name", list(AGENTS))
def test_policy_bytes_round_trip(name) -> None:
    agent = _trained(AGENTS[name]())
    data = agent.policy_weights()
    assert isinstance(data, bytes)
    policy = Policy.from_bytes(data)
    assert (policy.obs_dim, policy.act_dim, policy.update_count, policy.algorithm) == (OBS, ACT, 5, name)
    rng = np.random.default_rng(1)
    for _ in range(10):
        obs = (rng.standard_normal(OBS) * 3).astype(np.float32)
        a = policy.act(obs)
        assert a.shape == (ACT,) and a.dtype == np.float32
        assert np.allclose(a, agent.act(obs), atol=1e-5)
        assert np.all(a >= agent.action_low) and np.all(a <= agent.action_high)
    batch_obs = rng.standard_normal((7, OBS)).astype(np.float32)
    assert policy.act(batch_obs).shape == (7, ACT)
    with pytest.raises(ValueError):
        policy.act(np.zeros(OBS + 1, np.float32))
    with pytest.raises(ValueError):
        policy.act(np.full(OBS, np.nan, np.float32))
    # the bytes are a plain safetensors file with the metadata the contract names
    tensors = st_load(data)
    assert "obs_mean" in tensors or not agent.config.normalize_obs
    head = checkpoint.read_header(data)
    assert head["kind"] == "policy"
    for key in ("obs_dim", "act_dim", "action_low", "action_high", "update_count", "algorithm"):
        assert key in head["meta"]


def test_policy_needs_no_torch_optimiser_state() -> None:
    """The policy bytes hold only the mu(x) path: hidden layers + mu columns, no V/L columns, no Adam."""
    agent = _trained(AGENTS["naf"]())
    tensors = st_load(agent.policy_weights())
    assert not any("adam" in k or "target" in k for k in tensors)
    assert tensors["layer2.weight"].shape == (8, ACT)


@pytest.mark.parametrize("name", list(AGENTS))
def test_checkpoint_round_trip_resumes_identically(name, tmp_path) -> None:
    agent = _trained(AGENTS[name](), steps=6)
    agent.act(np.zeros(OBS, np.float32), explore=True)  # advance the noise
    path = tmp_path / "agent.safetensors"
    agent.save(path)
    assert not (tmp_path / "agent.safetensors.tmp").exists()
    restored = load_agent(path)
    assert type(restored) is type(agent)
    assert restored.update_count == agent.update_count == 6
    assert restored.config == agent.config
    assert restored.noise.step_count == agent.noise.step_count
    assert np.allclose(restored.normalizer.mean.numpy(), agent.normalizer.mean.numpy())
    assert restored.normalizer.count == agent.normalizer.count
    # continuing training from the checkpoint gives exactly what continuing the original gives
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    for _ in range(3):
        ma, mb = agent.update(_batch(rng_a)), restored.update(_batch(rng_b))
        assert ma == pytest.approx(mb, rel=1e-6, abs=1e-7)
    obs = np.ones(OBS, np.float32)
    assert np.array_equal(agent.act(obs), restored.act(obs))
    assert np.array_equal(agent.act(obs, explore=True), restored.act(obs, explore=True))
    # same class loader, and the file is a safetensors file (loads with a non-pickle reader)
    again = type(agent).load(path)
    assert again.update_count == 6
    st_load(path.read_bytes())


def test_a_resumed_run_continues_the_learning_rate_schedule(tmp_path) -> None:
    """The schedule is a function of the update count the checkpoint keeps: saved mid-decay, the restored agent
    takes the same steps at the same rates as the original."""
    make = lambda: NAFAgent(NAFConfig(OBS, ACT, hidden_sizes=(16, 8), lr_decay_start=3, lr_half_life=2,  # noqa: E731
                                      lr_min=1e-4))
    agent = _trained(make(), steps=5)
    agent.save(tmp_path / "a.safetensors")
    restored = load_agent(tmp_path / "a.safetensors")
    assert restored.config == agent.config and restored.config.lr_half_life == 2
    rng_a, rng_b = np.random.default_rng(4), np.random.default_rng(4)
    for k in range(4):
        ma, mb = agent.update(_batch(rng_a)), restored.update(_batch(rng_b))
        assert ma == pytest.approx(mb, rel=1e-6, abs=1e-7)
        assert ma["lr"] == pytest.approx(max(1e-4, 1e-3 * 0.5 ** ((5 + k - 3) / 2)))
    assert torch.equal(agent.theta, restored.theta)


def test_naf_checkpoint_restores_optimiser_and_targets(tmp_path) -> None:
    agent = _trained(AGENTS["naf"](), steps=4)
    agent.save(tmp_path / "a.safetensors")
    restored = NAFAgent.load(tmp_path / "a.safetensors")
    assert torch.equal(restored.theta, agent.theta)
    assert torch.equal(restored.optim.m, agent.optim.m) and torch.equal(restored.optim.v, agent.optim.v)
    assert restored.optim.step_count == 4
    assert not torch.equal(restored.theta[0], restored.theta[1])  # target kept separately


def _corruptions(data: bytes) -> dict[str, bytes]:
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    out = {
        "empty": b"",
        "short": data[:5],
        "truncated_header": data[: 8 + n // 2],
        "truncated_body": data[: len(data) - 100],
        "garbage": b"\x00" * 8 + b"hello world" * 10,
        "huge_header_len": struct.pack("<Q", 2**40) + data[8:],
        "not_json": struct.pack("<Q", 4) + b"\xff\xfe{]" + data[8:],
    }
    bad = dict(header)
    bad["__metadata__"] = dict(header["__metadata__"], format_version="999")
    out["future_version"] = _with_header(bad, data, n)
    bad = dict(header)
    bad["__metadata__"] = dict(header["__metadata__"], meta="{not json")
    out["bad_meta_json"] = _with_header(bad, data, n)
    bad = dict(header)
    del bad["__metadata__"]
    out["no_metadata"] = _with_header(bad, data, n)
    # a TypeError and RecursionErrors out of json.loads: a policy node died on such weights
    bad = dict(header)
    bad["__metadata__"] = dict(header["__metadata__"], meta=5)
    out["meta_not_a_string"] = _with_header(bad, data, n)
    bad = dict(header)
    bad["__metadata__"] = dict(header["__metadata__"], meta="[" * 100_000)
    out["meta_nested_too_deep"] = _with_header(bad, data, n)
    raw = b"[" * 100_000
    out["header_nested_too_deep"] = struct.pack("<Q", len(raw)) + raw + data[8 + n:]
    return out


def _with_header(header: dict, data: bytes, n: int) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data[8 + n :]


@pytest.mark.parametrize("name", list(AGENTS))
def test_corrupt_files_give_clear_value_errors(name, tmp_path) -> None:
    agent = _trained(AGENTS[name](), steps=2)
    for label, bad in _corruptions(agent.checkpoint_bytes()).items():
        path = tmp_path / f"{label}.safetensors"
        path.write_bytes(bad)
        with pytest.raises(ValueError):
            load_agent(path)
        with pytest.raises(ValueError):
            type(agent).load(path)
    for bad in _corruptions(agent.policy_weights()).values():
        with pytest.raises(ValueError):
            Policy.from_bytes(bad)


def test_mismatched_files_give_clear_value_errors(tmp_path) -> None:
    naf = _trained(AGENTS["naf"](), steps=1)
    ddpg = _trained(AGENTS["ddpg"](), steps=1)
    naf.save(tmp_path / "naf.safetensors")
    ddpg.save(tmp_path / "ddpg.safetensors")
    with pytest.raises(ValueError, match="ddpg"):
        NAFAgent.load(tmp_path / "ddpg.safetensors")
    with pytest.raises(ValueError, match="naf"):
        DDPGAgent.load(tmp_path / "naf.safetensors")
    with pytest.raises(ValueError, match="policy"):
        Policy.from_bytes(naf.checkpoint_bytes())  # a checkpoint is not policy weights
    with pytest.raises(ValueError, match="not an agent checkpoint"):
        (tmp_path / "p.safetensors").write_bytes(naf.policy_weights())
        load_agent(tmp_path / "p.safetensors")
    # a plain safetensors file from elsewhere
    (tmp_path / "foreign.safetensors").write_bytes(st_save({"w": np.zeros(3, np.float32)}))
    with pytest.raises(ValueError, match="async_naf"):
        load_agent(tmp_path / "foreign.safetensors")
    # tensors whose shapes contradict the recorded config
    tensors, meta, kind = checkpoint.unpack(naf.checkpoint_bytes(), "agent_checkpoint")
    tensors["online.l0.weight"] = np.zeros((OBS, 17), np.float32)
    with pytest.raises(ValueError, match="shape"):
        NAFAgent.from_checkpoint_bytes(checkpoint.pack(tensors, kind, meta))
    tensors, meta, kind = checkpoint.unpack(naf.checkpoint_bytes(), "agent_checkpoint")
    del tensors["adam.v"]
    with pytest.raises(ValueError, match=r"adam\.v"):
        NAFAgent.from_checkpoint_bytes(checkpoint.pack(tensors, kind, meta))
    tensors, meta, kind = checkpoint.unpack(naf.checkpoint_bytes(), "agent_checkpoint")
    meta["config"]["hidden_sizes"] = [16, 9]
    with pytest.raises(ValueError):
        NAFAgent.from_checkpoint_bytes(checkpoint.pack(tensors, kind, meta))
    meta["config"] = {"obs_dim": OBS, "act_dim": ACT, "no_such_field": 1}
    with pytest.raises(ValueError, match="no_such_field"):
        NAFAgent.from_checkpoint_bytes(checkpoint.pack(tensors, kind, meta))
    # policy bytes whose layer shapes do not chain
    ptensors, pmeta, pkind = checkpoint.unpack(naf.policy_weights(), "policy")
    ptensors["layer1.weight"] = np.zeros((15, 8), np.float32)
    with pytest.raises(ValueError, match="layer 1"):
        Policy.from_bytes(checkpoint.pack(ptensors, pkind, pmeta))
    pmeta2 = dict(pmeta, act_dim=ACT + 1)
    ptensors, _, _ = checkpoint.unpack(naf.policy_weights(), "policy")
    with pytest.raises(ValueError):
        Policy.from_bytes(checkpoint.pack(ptensors, pkind, pmeta2))


def test_non_finite_weights_never_written_or_read() -> None:
    naf = _trained(AGENTS["naf"](), steps=1)
    tensors, meta, kind = checkpoint.unpack(naf.policy_weights(), "policy")
    tensors["layer0.weight"][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        checkpoint.pack(tensors, kind, meta)
    raw = st_save(tensors, metadata={"format": "async_naf", "format_version": "1", "kind": "policy",
                                     "meta": json.dumps(meta)})
    with pytest.raises(ValueError, match="NaN"):
        Policy.from_bytes(raw)
    with torch.no_grad():
        naf.theta[0, 0] = float("inf")
    with pytest.raises(ValueError):
        naf.checkpoint_bytes()


def _raw(tensors, kind, meta) -> bytes:
    """safetensors bytes as a file from elsewhere could hold them (checkpoint.pack's checks bypassed)."""
    return st_save(tensors, metadata={"format": "async_naf", "format_version": "1", "kind": kind,
                                      "meta": json.dumps(meta)})


def test_float64_tensors_beyond_float32_are_refused() -> None:
    """1e300 is finite as float64 but inf as the float32 every reader uses: refused at load, not run as inf."""
    naf = _trained(AGENTS["naf"](), steps=1)
    tensors, meta, kind = checkpoint.unpack(naf.policy_weights(), "policy")
    tensors["layer0.weight"] = np.full(tensors["layer0.weight"].shape, 1e300, np.float64)
    with pytest.raises(ValueError, match="float32"):
        Policy.from_bytes(_raw(tensors, kind, meta))
    tensors, meta, kind = checkpoint.unpack(naf.checkpoint_bytes(), "agent_checkpoint")
    tensors["obs_norm.var"] = np.full(tensors["obs_norm.var"].shape, 1e300, np.float64)
    with pytest.raises(ValueError, match="float32"):
        NAFAgent.from_checkpoint_bytes(_raw(tensors, kind, meta))
    # float64 within float32's range still loads (a file from elsewhere may store float64)
    tensors, meta, kind = checkpoint.unpack(naf.policy_weights(), "policy")
    tensors["layer0.weight"] = tensors["layer0.weight"].astype(np.float64)
    assert Policy.from_bytes(_raw(tensors, kind, meta)).obs_dim == OBS


@pytest.mark.parametrize("name", ["naf", "ddpg"])
@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_an_agent_checkpoint_with_a_non_finite_counter_is_a_value_error(name, value) -> None:
    agent = _trained(AGENTS[name](), steps=1)
    tensors, meta, kind = checkpoint.unpack(agent.checkpoint_bytes(), "agent_checkpoint")
    with pytest.raises(ValueError, match=r"update_count|checkpoint"):
        type(agent).from_checkpoint_bytes(_raw(tensors, kind, {**meta, "update_count": value}))


def test_make_agent_by_config_and_name() -> None:
    assert isinstance(make_agent(NAFConfig(OBS, ACT)), NAFAgent)
    assert isinstance(make_agent(DDPGConfig(OBS, ACT)), DDPGAgent)
    assert isinstance(make_agent("linear_naf", obs_dim=OBS, act_dim=ACT), LinearNAFAgent)
    assert isinstance(make_agent("naf", obs_dim=OBS, act_dim=ACT, gamma=0.9), NAFAgent)
    # both NAF variants take a NAFConfig: the algorithm names which one (a config alone built NAF for both)
    assert type(make_agent(NAFConfig(OBS, ACT), algorithm="linear_naf")) is LinearNAFAgent
    assert type(make_agent(NAFConfig(OBS, ACT), algorithm="naf")) is NAFAgent
    for config, wrong in ((NAFConfig(OBS, ACT), "ddpg"), (DDPGConfig(OBS, ACT), "linear_naf"),
                          (NAFConfig(OBS, ACT), "sac")):
        with pytest.raises(ValueError):
            make_agent(config, algorithm=wrong)
    with pytest.raises(ValueError):
        make_agent("sac", obs_dim=OBS, act_dim=ACT)
    with pytest.raises(ValueError):
        make_agent("naf", obs_dim=OBS, act_dim=ACT, no_such=1)
    with pytest.raises(ValueError):
        NAFAgent(DDPGConfig(OBS, ACT))


def test_config_dict_round_trip() -> None:
    cfg = NAFConfig(OBS, ACT, action_low=[-1, -2, -3], hidden_sizes=(7,), grad_clip_norm=2.0,
                    noise=NoiseConfig(kind="gaussian", scale=0.1))
    again = NAFConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    d = DDPGConfig(OBS, ACT, actor_lr=3e-4)
    assert DDPGConfig.from_dict(json.loads(json.dumps(d.to_dict()))) == d


def test_config_yaml_matches_dataclass_defaults() -> None:
    from async_naf.common.resources import data_path
    from async_naf.learning.agents import config_from_yaml

    path = data_path("config", "naf.yaml")
    assert config_from_yaml(path, "naf", OBS, ACT) == NAFConfig(OBS, ACT)
    assert config_from_yaml(path, "ddpg", OBS, ACT) == DDPGConfig(OBS, ACT)
    assert config_from_yaml(path, "linear_naf", OBS, ACT, gamma=0.5).gamma == 0.5
    with pytest.raises(ValueError):
        config_from_yaml(path, "naf", OBS, ACT, tau=2.0)
    with pytest.raises(ValueError):
        config_from_yaml(path, "sac", OBS, ACT)


@pytest.mark.parametrize("change", [
    {"action_high": [1.0, float("inf"), 0.0]},
    {"action_low": [float("-inf"), -2.0, -3.0]},
    {"action_low": [float("nan"), -2.0, -3.0]},
    {"action_high": [1.0, 1e39, 0.0]},  # finite in JSON, inf as float32
    {"obs_clip": float("nan")},
    {"obs_clip": float("inf")},
    {"obs_clip": 0.0},
    {"obs_clip": "10"},
    # JSON's Infinity in an integer field: int() raises OverflowError, which escaped a node's callback
    {"update_count": float("inf")},
    {"obs_dim": float("inf")},
    {"n_layers": float("inf")},
    {"n_layers": float("nan")},
])
def test_policy_rejects_non_finite_bounds_and_bad_obs_clip(change) -> None:
    naf = _trained(AGENTS["naf"](), steps=1)
    tensors, meta, kind = checkpoint.unpack(naf.policy_weights(), "policy")
    with pytest.raises(ValueError):
        Policy.from_bytes(checkpoint.pack(tensors, kind, {**meta, **change}))


def test_policy_needs_obs_clip() -> None:
    naf = _trained(AGENTS["naf"](), steps=1)
    tensors, meta, kind = checkpoint.unpack(naf.policy_weights(), "policy")
    del meta["obs_clip"]
    with pytest.raises(ValueError, match="obs_clip"):
        Policy.from_bytes(checkpoint.pack(tensors, kind, meta))


def test_agent_bounds_beyond_float32_are_rejected() -> None:
    with pytest.raises(ValueError, match="finite"):
        NAFConfig(OBS, ACT, action_high=1e39)
    with pytest.raises(ValueError, match="finite"):
        DDPGConfig(OBS, ACT, action_low=[-1.0, -1e39, -1.0])


def test_require_returns_a_writable_float32_copy() -> None:
    source = {"t": np.arange(6, dtype=np.float64).reshape(2, 3)[:, ::-1]}
    arr = checkpoint.require(source, "t", (2, 3))
    assert arr.dtype == np.float32 and arr.flags.writeable and arr.flags.c_contiguous
    arr[0, 0] = -1.0
    assert source["t"][0, 0] == 2.0  # a copy, not a view
    with pytest.raises(ValueError, match="missing"):
        checkpoint.require(source, "u", (2, 3))
    with pytest.raises(ValueError, match="shape"):
        checkpoint.require(source, "t", (3, 2))


def test_load_agent_reads_the_file_once(tmp_path, monkeypatch) -> None:
    agent = _trained(AGENTS["ddpg"](), steps=2)
    agent.save(tmp_path / "a.safetensors")
    reads = []
    real = checkpoint.read_file
    monkeypatch.setattr(checkpoint, "read_file", lambda path: reads.append(path) or real(path))
    again = load_agent(tmp_path / "a.safetensors")
    assert len(reads) == 1 and again.update_count == agent.update_count


def test_fast_buffers_exist_only_for_the_fast_update() -> None:
    from async_naf.learning.agents.naf_update import HandDerivedStep

    assert isinstance(NAFAgent(NAFConfig(OBS, ACT))._fast_step, HandDerivedStep)
    assert NAFAgent(NAFConfig(OBS, ACT, fast_update=False))._fast_step is None
    assert LinearNAFAgent(NAFConfig(OBS, ACT))._fast_step is None


def test_a_new_store_prunes_its_predecessors_checkpoints_but_not_for_a_record_without_weights(tmp_path) -> None:
    """A restarted trainer's store counts the usable periodic checkpoints on disk. A record whose weights are gone
    (a resume fell back past it to an older one) is left alone: counted, it took the place of the usable
    checkpoint the resume came from, which the first new checkpoint then deleted."""
    from async_naf.learning.checkpoints import CheckpointStore

    def commit(store, updates):
        stem = store.stem(updates)
        store.agent_path(stem).write_bytes(b"agent")
        store.commit(stem, b"weights", False, {"updates": updates, "env_steps": updates, "episodes": 0,
                                               "wall_s": 0.0}, periodic=True)

    first = CheckpointStore(tmp_path, keep=3)
    for updates in (100, 200, 900):
        commit(first, updates)
    first.agent_path("step_000000900").unlink()  # the newest record's weights are gone
    second = CheckpointStore(tmp_path, keep=2)  # resumed from step 200
    commit(second, 300)
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*"))
    assert names == ["step_000000200.json", "step_000000200.safetensors", "step_000000300.json",
                     "step_000000300.safetensors", "step_000000900.json"]
