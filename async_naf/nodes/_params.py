"""ROS parameters declared from the project's config dataclasses: the rclpy half of :mod:`async_naf.wire.params`.

    cfg = declare_from_dataclass(node, TrainerConfig)            # one ROS parameter per field
    watch_parameters(node, lambda: cfg, on_change)               # runtime changes, validated by the dataclass

Names, kinds, defaults and descriptions come from :func:`async_naf.wire.params.param_specs` (the same rules
the graph description uses to write parameter files).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from async_naf.wire.params import (
    KIND_ANY,
    KIND_BOOL,
    KIND_BOOL_ARRAY,
    KIND_FLOAT,
    KIND_FLOAT_ARRAY,
    KIND_INT,
    KIND_INT_ARRAY,
    KIND_STR,
    KIND_STR_ARRAY,
    ParamSpec,
    build,
    flatten,
    param_specs,
    to_ros_value,
)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")  # a config dataclass



def _descriptor(spec: ParamSpec, read_only: bool):
    from rcl_interfaces.msg import ParameterDescriptor

    units_hint = f" [{spec.kind}]" if spec.kind != KIND_ANY else ""
    dynamic = spec.kind in (KIND_FLOAT, KIND_FLOAT_ARRAY, KIND_ANY) or (spec.optional and spec.default is None)
    return ParameterDescriptor(
        description=(spec.description + units_hint).strip(),
        read_only=read_only,
        dynamic_typing=dynamic,
    ), dynamic


def _ros_type(kind: str):
    from rclpy.parameter import Parameter

    return {
        KIND_BOOL: Parameter.Type.BOOL,
        KIND_INT: Parameter.Type.INTEGER,
        KIND_STR: Parameter.Type.STRING,
        KIND_BOOL_ARRAY: Parameter.Type.BOOL_ARRAY,
        KIND_INT_ARRAY: Parameter.Type.INTEGER_ARRAY,
        KIND_STR_ARRAY: Parameter.Type.STRING_ARRAY,
    }[kind]


def declare_from_dataclass(
    node: Any,
    cls: type[T],
    overrides: Mapping[str, Any] | T | None = None,
    prefix: str = "",
    dynamic: Collection[str] | None = None,
) -> T:
    """Declare one ROS parameter per field of dataclass ``cls`` on ``node`` and return the validated config.

    Values come, in order of precedence, from the node's parameter overrides (``--ros-args -p`` or a params
    file), then ``overrides`` (a mapping of dotted field names, or an instance of ``cls``), then the
    dataclass defaults.

    Args:
        node: an ``rclpy.node.Node`` (or LifecycleNode).
        cls: the config dataclass.
        overrides: default values to use instead of the dataclass defaults.
        prefix: parameter-name prefix (``"naf"`` -> ``naf.lr``).
        dynamic: names (dotted, with prefix) that may change at runtime; if given, every other parameter
            is declared read-only. ``None``: nothing is read-only (the node decides in its callbacks).

    Returns:
        an instance of ``cls`` built from the parameter values.

    Raises:
        ValueError: a value of the wrong type or one the dataclass rejects (the message names it).
    """
    from rclpy.exceptions import InvalidParameterTypeException

    base_instance = overrides if dataclasses.is_dataclass(overrides) else None
    specs = param_specs(cls, prefix, base_instance)
    override_map = dict(overrides) if isinstance(overrides, Mapping) else {}
    values: dict[str, Any] = {}
    for spec in specs:
        default = to_ros_value(override_map.get(spec.name, spec.default))
        read_only = dynamic is not None and spec.name not in dynamic
        descriptor, is_dynamic = _descriptor(spec, read_only)
        try:
            if is_dynamic:
                param = node.declare_parameter(spec.name, default, descriptor)
            elif default is None or (isinstance(default, list) and not default):
                param = node.declare_parameter(spec.name, _ros_type(spec.kind), descriptor)
            else:
                param = node.declare_parameter(spec.name, default, descriptor)
        except InvalidParameterTypeException as exc:
            raise ValueError(f"parameter '{spec.name}' has the wrong type: {exc}") from exc
        value = param.value
        if value is None or (isinstance(value, list) and not value and default is not None):
            value = default
        values[spec.name] = value
    return build(cls, values, prefix, base_instance)


def watch_parameters(
    node: Any,
    current: Callable[[], T],
    on_change: Callable[[T], None],
    prefix: str = "",
) -> None:
    """Validate runtime parameter changes through the dataclass and apply the accepted ones.

    Registers an on-set callback (rejects a change the dataclass refuses, with its reason, so
    ``ros2 param set`` reports it) and a post-set callback that calls ``on_change(new_config)``.

    Args:
        node: the node whose parameters were declared by :func:`declare_from_dataclass`.
        current: returns the config instance in force now.
        on_change: called with the new, validated config after a change was accepted.
        prefix: the prefix used at declaration.
    """
    from rcl_interfaces.msg import SetParametersResult

    def merged(params: list) -> Any:
        cfg = current()
        values = flatten(cfg, prefix)
        lead = f"{prefix}." if prefix else ""
        names = {s.name for s in param_specs(type(cfg), prefix, cfg)}
        touched = False
        for p in params:
            if p.name in names or (lead and p.name.startswith(lead)):
                values[p.name] = p.value
                touched = True
        return build(type(cfg), values, prefix, cfg) if touched else None

    def on_set(params: list) -> Any:
        try:
            merged(params)
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def post_set(params: list) -> None:
        new = merged(params)
        if new is not None:
            on_change(new)

    node.add_on_set_parameters_callback(on_set)
    node.add_post_set_parameters_callback(post_set)


def node_only(node: Any, name: str, default: float) -> float:
    """Declare a parameter the node has besides its config dataclass (``diagnostics_period_s``, ...): read-only,
    described (:data:`async_naf.wire.params.NODE_ONLY_HELP`, units included), a finite number > 0; returns it.

    Raises:
        ValueError: the value is not a finite number > 0 (the message names the parameter and the value).
    """
    import math

    from rcl_interfaces.msg import ParameterDescriptor

    from async_naf.wire.params import NODE_ONLY_HELP

    descriptor = ParameterDescriptor(description=NODE_ONLY_HELP[name], read_only=True, dynamic_typing=True)
    value = node.declare_parameter(name, float(default), descriptor).value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)
