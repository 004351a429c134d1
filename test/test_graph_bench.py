"""The graph bench's contended reference (async_naf.bench.graph_steps): the work loops and their processes."""
from __future__ import annotations

import pytest

from async_naf.bench import graph_steps


def test_a_work_loop_counts_its_calls_and_their_cpu_time() -> None:
    out = graph_steps._work_loop("env", 0.3)
    assert out["calls"] > 10 and 0.0 < out["cpu_s"] < 5.0
    # CPU per call, not per wall second: a loaded machine (the suite beside other work) gives the loop a share of
    # a core only; an ArmDoorEnv step costs between 1 us and 50 ms of CPU on any machine
    assert 1e-6 < out["cpu_s"] / out["calls"] < 0.05


def test_an_unknown_work_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown work"):
        graph_steps._work_loop("sleep", 0.1)


def test_the_contended_costs_come_from_processes_running_at_once() -> None:
    out = graph_steps._contended_costs(workers=1, seconds=0.5)
    assert set(out) == {"env_ms_contended", "naf_update_ms_contended"}
    # an ArmDoorEnv step and a NAF update each cost between 10 us and 50 ms of CPU on any machine
    assert all(0.01 < v < 50.0 for v in out.values()), out
