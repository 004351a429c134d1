"""The serial diagnostic trainer: the trainer's agent on the embedded env, evaluated on both criteria."""
from __future__ import annotations

import json
import math
from pathlib import Path

from async_naf.run.serial import SerialConfig, main, train_serial


def test_serial_run_records_both_criteria_and_the_agent_state(tmp_path: Path) -> None:
    records = train_serial(SerialConfig(task="reach", steps=1_200, seed=3, eval_every=600, eval_episodes=2),
                           log=lambda _text: None)
    assert [r["env_steps"] for r in records] == [600, 1_200]
    last = records[-1]
    assert last["updates"] == 201  # one per step from the step that fills min_buffer_size (1000) to 1200
    for key in ("success_rate", "strict_success_rate", "loss", "q_mean", "grad_norm", "norm_count"):
        assert math.isfinite(last[key]), key
    assert last["noise_scale"] == 0.3 and last["door_angle_final"] == {}  # reach: no door


def test_serial_command_line_overrides_and_json(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    assert main(["--task", "reach", "--steps", "600", "--eval-every", "600", "--eval-episodes", "1",
                 "--set", "naf.lr=3e-4", "--task-set", "w_success=0.2", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["trainer"]["naf"]["lr"] == 3e-4 and data["task_config"]["w_success"] == 0.2
    assert data["trainer"]["naf"]["tau"] == 0.005 and data["trainer"]["naf"]["grad_clip_norm"] == 10.0  # train.yaml
    assert data["records"][-1]["updates"] == 0  # 600 steps < min_buffer_size: no update yet
