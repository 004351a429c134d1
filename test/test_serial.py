"""The serial diagnostic's settings (async_naf.run.serial.graph_settings): what the graph gets, and a --set
that names no trainer parameter is refused, never silently dropped."""
from __future__ import annotations

import pytest

from async_naf.run.serial import graph_settings


def test_a_nested_trainer_parameter_reaches_the_agent_config() -> None:
    trainer, _noise = graph_settings("door_pull", 0, trainer_sets={"naf.normalize_obs": False, "naf.lr": 3e-4})
    assert trainer.naf.normalize_obs is False and trainer.naf.lr == pytest.approx(3e-4)


def test_an_unknown_trainer_parameter_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown trainer parameter.*normalize_obs"):
        graph_settings("door_pull", 0, trainer_sets={"normalize_obs": False})
