"""Bench figure ``naf_updates_per_s``: NAF gradient updates per second on one CPU thread.

Setting (issue 2, the network of Gu et al. 2017): obs 20, act 7, two hidden layers of 100, batch 64; every
update includes ``buffer.sample(64)`` from a filled replay buffer. The straightforward PyTorch update of
``benchmarks/naf_baseline.py`` is measured in the same run, in alternating rounds (the machine may be
shared, so each figure is the median over rounds), giving ``naf_baseline_updates_per_s`` and
``naf_speedup_vs_baseline``. Without a source checkout (no ``benchmarks/``) the baseline keys are absent.
"""
from __future__ import annotations

import importlib.util
import statistics
import time
from pathlib import Path

import numpy as np
import torch

OBS_DIM, ACT_DIM, HIDDEN, BATCH = 20, 7, (100, 100), 64


def _filled_buffer(n: int = 20_000, seed: int = 0):
    from async_naf.learning.replay import Batch, ReplayBuffer

    rng = np.random.default_rng(seed)
    buf = ReplayBuffer(n, OBS_DIM, ACT_DIM, seed=seed)
    buf.add_batch(
        Batch(
            rng.standard_normal((n, OBS_DIM), np.float32),
            rng.uniform(-1.0, 1.0, (n, ACT_DIM)).astype(np.float32),
            rng.standard_normal(n, np.float32),
            rng.standard_normal((n, OBS_DIM), np.float32),
            (rng.random(n) < 0.05).astype(np.float32),
        )
    )
    return buf


def _load_baseline():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "naf_baseline.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("async_naf_bench_naf_baseline", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rate(update, buf, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        update(buf.sample(BATCH))
    return n / (time.perf_counter() - t0)


def bench_naf_updates(quick: bool = False) -> dict[str, float]:
    """Measure NAF updates/s (and the baseline's) on one CPU thread; see the module docstring.

    Returns:
        ``naf_updates_per_s`` (median over rounds), ``naf_baseline_updates_per_s``, ``naf_speedup_vs_baseline``
        (ratio of the medians), ``naf_bench_rounds``.
    """
    from async_naf.learning.agents.naf import NAFAgent, NAFConfig

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        buf = _filled_buffer()
        agent = NAFAgent(NAFConfig(OBS_DIM, ACT_DIM, hidden_sizes=HIDDEN, batch_size=BATCH))
        baseline_mod = _load_baseline()
        baseline = None
        if baseline_mod is not None:
            baseline = baseline_mod.BaselineNAF(OBS_DIM, ACT_DIM, HIDDEN)

            def baseline_update(b):
                baseline.update(*b)

        rounds = 3 if quick else 5
        n_fast, n_base = (600, 150) if quick else (3000, 600)
        _rate(agent.update, buf, n_fast // 5)  # warm-up
        if baseline is not None:
            _rate(baseline_update, buf, n_base // 5)
        fast, base = [], []
        for _ in range(rounds):
            fast.append(_rate(agent.update, buf, n_fast))
            if baseline is not None:
                base.append(_rate(baseline_update, buf, n_base))
    finally:
        torch.set_num_threads(threads)
    result: dict[str, float] = {"naf_updates_per_s": round(statistics.median(fast), 1), "naf_bench_rounds": rounds}
    if base:
        med_base = statistics.median(base)
        result["naf_baseline_updates_per_s"] = round(med_base, 1)
        result["naf_speedup_vs_baseline"] = round(statistics.median(fast) / med_base, 2)
    return result


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(bench_naf_updates(quick="--quick" in sys.argv)))
