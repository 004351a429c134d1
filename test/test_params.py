"""async_naf.nodes._params (+ wire.params): ROS parameters declared from config dataclasses (real rclpy node, own
context)."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

pytest.importorskip("rclpy")

from async_naf.common.noise import NoiseConfig
from async_naf.nodes._params import declare_from_dataclass, watch_parameters
from async_naf.wire.params import build, flatten, param_specs


@dataclass
class _Cfg:
    """A config for the tests.

    Attributes:
        count: how many, 1.
        period_s: a period, s. Continued
            on a second line.
        names: some names.
        gains: float gains (empty by default).
        limit: optional limit, m.
    """

    count: int = 3
    period_s: float = 0.5
    names: tuple[str, ...] = ("a", "b")
    gains: tuple[float, ...] = ()
    limit: float | None = None
    verbose: bool = field(default=False, metadata={"help": "print more"})
    noise: NoiseConfig = field(default_factory=NoiseConfig)

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError("count must be >= 0")


@pytest.fixture
def make_node(ros_env):
    import rclpy
    from rclpy.context import Context
    from rclpy.node import Node

    ctx = Context()
    rclpy.init(context=ctx, domain_id=int(ros_env["ROS_DOMAIN_ID"]))
    nodes = []

    def make(**overrides):
        from rclpy.parameter import Parameter

        params = [Parameter(k, value=v) for k, v in overrides.items()]
        node = Node("params_test", context=ctx, parameter_overrides=params)
        nodes.append(node)
        return node

    yield make
    for n in nodes:
        n.destroy_node()
    rclpy.shutdown(context=ctx)


def test_defaults_descriptions_and_flattening(make_node) -> None:
    node = make_node()
    cfg = declare_from_dataclass(node, _Cfg)
    assert cfg == _Cfg()
    assert node.describe_parameter("period_s").description.startswith("a period, s. Continued on a second line.")
    assert node.describe_parameter("verbose").description.startswith("print more")
    assert node.describe_parameter("noise.scale").description.startswith("initial standard deviation")
    assert node.get_parameter("names").value == ["a", "b"]
    flat = flatten(cfg)
    assert "gains" not in flat and "limit" not in flat and flat["noise.kind"] == "ou"
    assert build(_Cfg, flat) == cfg
    assert [s.name for s in param_specs(_Cfg)][-6:] == ["noise.kind", "noise.scale", "noise.scale_final",
                                                        "noise.anneal_steps", "noise.theta", "noise.dt"]


def test_overrides_ints_for_floats_arrays_and_optionals(make_node) -> None:
    node = make_node(period_s=2, gains=[1.0, 2.5], limit=0.3, names=["x"], **{"noise.scale": 1})
    cfg = declare_from_dataclass(node, _Cfg, overrides={"count": 7})
    assert (cfg.count, cfg.period_s, cfg.gains, cfg.limit, cfg.names) == (7, 2.0, (1.0, 2.5), 0.3, ("x",))
    assert cfg.noise.scale == 1.0 and isinstance(cfg.noise.scale, float)


@pytest.mark.parametrize("overrides, match", [({"count": 1.5}, "count"), ({"count": -1}, "count must be"),
                                              ({"period_s": "fast"}, "period_s"),
                                              ({"noise.kind": "pink"}, "NoiseConfig.kind")])
def test_bad_values_raise_value_error(make_node, overrides, match) -> None:
    node = make_node(**overrides)
    with pytest.raises(ValueError, match=match):
        declare_from_dataclass(node, _Cfg)


def test_runtime_changes_are_validated_and_read_only_enforced(make_node) -> None:
    from rclpy.parameter import Parameter

    node = make_node()
    state = {"cfg": declare_from_dataclass(node, _Cfg, dynamic={"period_s", "noise.scale"})}
    watch_parameters(node, lambda: state["cfg"], lambda c: state.update(cfg=c))
    assert node.set_parameters([Parameter("period_s", value=3)])[0].successful
    assert state["cfg"].period_s == 3.0
    result = node.set_parameters([Parameter("noise.scale", value=-1.0)])[0]
    assert not result.successful and "scale" in result.reason and state["cfg"].noise.scale == 0.3
    assert not node.set_parameters([Parameter("count", value=4)])[0].successful  # read-only
    assert state["cfg"].count == 3


def test_build_rejects_unknown_names() -> None:
    """The error names the closest parameter and lists the valid ones (it gave the unknown name alone)."""
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) for _Cfg: 'cuont' \(did you mean 'count'\?\); "
                                         r"its parameters: .*count.*noise\.scale"):
        build(_Cfg, {"cuont": 3})
