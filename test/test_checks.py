"""The shared config validators: every config dataclass reports bad numbers through them."""
from __future__ import annotations

import math

import pytest

from async_naf.common.checks import integer, integers, number, numbers


def test_number_accepts_in_range_and_converts() -> None:
    assert number("x", 3) == 3.0 and isinstance(number("x", 3), float)
    assert number("x", 0.0, 0.0) == 0.0
    assert number("x", 1.0, 0.0, 1.0) == 1.0


@pytest.mark.parametrize("value, kw", [
    (math.nan, {}), (math.inf, {}), ("1.0", {}), (None, {}),
    (0.0, {"low": 0.0, "low_open": True}), (-0.1, {"low": 0.0}),
    (1.0, {"high": 1.0, "high_open": True}), (1.1, {"high": 1.0}),
])
def test_number_rejects_with_the_field_name(value, kw) -> None:
    with pytest.raises(ValueError, match=r"^cfg\.field must be"):
        number("cfg.field", value, **kw)


def test_integer_rejects_bools_fractions_and_out_of_range() -> None:
    assert integer("n", 5.0, 1) == 5
    for bad in (True, 2.5, "3", math.nan, 0):
        with pytest.raises(ValueError, match=r"^n must be an integer >= 1"):
            integer("n", bad, 1)
    with pytest.raises(ValueError, match=r"<= 10"):
        integer("n", 11, 0, 10)


def test_fields_are_checked_and_stored_back() -> None:
    class Cfg:
        a, b, n = 1, 2.5, 4.0

    cfg = Cfg()
    numbers(cfg, ("a", "b"), 0.0, low_open=True)
    integers(cfg, ("n",), 1)
    assert (cfg.a, cfg.b, cfg.n) == (1.0, 2.5, 4) and isinstance(cfg.a, float) and isinstance(cfg.n, int)
    cfg.b = -1.0
    with pytest.raises(ValueError, match=r"^P\.b must be a finite number > 0, got -1.0$"):
        numbers(cfg, ("a", "b"), 0.0, low_open=True, prefix="P.")
