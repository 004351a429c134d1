"""ROS parameters declared from the project's config dataclasses (one dataclass per component).

Every node declares its parameters from its component's config dataclass, so the dataclass is the single
source of names, defaults, units (in the docstring) and validation (``__post_init__`` raising ValueError)::

    from async_naf.nodes._params import declare_from_dataclass
    cfg = declare_from_dataclass(node, TrainerConfig)            # one ROS parameter per field
    cfg = declare_from_dataclass(node, NAFConfig, prefix="naf")  # "naf.lr", "naf.noise.scale", ...

Naming and type rules (the launcher builds parameter files with the same rules, see :func:`flatten`):

- one parameter per dataclass field; nested dataclasses are flattened with dots (``noise.scale``);
- ``bool``/``int``/``str`` fields are statically typed parameters; ``float`` fields (and float tuples) accept
  integers too (``max_wall_s: 60`` in a YAML file is fine), they are declared with dynamic typing and coerced;
- tuples/lists become ROS arrays (``tuple[float, ...]`` -> double array) and come back as tuples/lists;
- ``Optional[X]`` fields whose default is ``None`` are declared without a value: not set -> ``None``;
- any other annotation (e.g. ``float | Sequence[float]``) is declared with dynamic typing and handed to the
  dataclass as given (lists as tuples), which validates it.

The parameter description (``ros2 param describe``) comes from the field's ``metadata["help"]`` (or
``"description"``) or else from the ``Attributes:`` section of the dataclass docstring (Google style).

The value-handling helpers (:func:`flatten`, :func:`build`, :func:`field_descriptions`) are ROS-free, so the
launcher and tests may import this module without rclpy; rclpy is imported only inside the functions that
need a node.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import re
import types
import typing
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

# kinds of parameter values
_BOOL, _INT, _FLOAT, _STR = "bool", "int", "float", "str"
_BOOL_ARRAY, _INT_ARRAY, _FLOAT_ARRAY, _STR_ARRAY = "bool[]", "int[]", "float[]", "str[]"
_ANY = "any"
_SCALAR_KINDS = {bool: _BOOL, int: _INT, float: _FLOAT, str: _STR}
_ARRAY_KINDS = {bool: _BOOL_ARRAY, int: _INT_ARRAY, float: _FLOAT_ARRAY, str: _STR_ARRAY}


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One ROS parameter derived from one (possibly nested) dataclass field.

    Attributes:
        name: dotted parameter name (``noise.scale``), prefix included.
        path: field names from the top dataclass down to this field.
        kind: value kind (``bool``, ``int``, ``float``, ``str``, ``float[]``, ..., ``any``).
        default: the default value (None: not set).
        optional: ``None`` is an accepted value.
        sequence_type: ``tuple`` or ``list`` for array fields (what the dataclass gets back), else None.
        description: text for the ParameterDescriptor.
    """

    name: str
    path: tuple[str, ...]
    kind: str
    default: Any
    optional: bool
    sequence_type: type | None
    description: str


# --------------------------------------------------------------------------------------------- ROS-free


def field_descriptions(cls: type) -> dict[str, str]:
    """Field descriptions of a dataclass: ``metadata['help'|'description']`` or its docstring's Attributes."""
    from_doc: dict[str, str] = {}
    doc = cls.__doc__ or ""
    match = re.search(r"^(\s*)Attributes:\s*$", doc, flags=re.MULTILINE)
    if match:
        current: str | None = None
        base_indent: int | None = None
        for line in doc[match.end():].splitlines():
            if not line.strip():
                continue
            indent = len(line) - len(line.lstrip())
            if indent <= len(match.group(1)):
                break  # next section
            item = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(\([^)]*\))?\s*:\s*(.*)$", line)
            if item and (base_indent is None or indent <= base_indent):
                base_indent = indent
                current = item.group(1)
                from_doc[current] = item.group(3).strip()
            elif current is not None:
                from_doc[current] = (from_doc[current] + " " + line.strip()).strip()
    out: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        text = f.metadata.get("help") or f.metadata.get("description") or from_doc.get(f.name, "")
        out[f.name] = str(text)
    return out


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) != len(typing.get_args(tp))
        if len(args) == 1:
            return args[0], optional
        return typing.Union[tuple(args)], optional  # type: ignore[return-value]
    return tp, False


def _kind_of(tp: Any) -> tuple[str, type | None]:
    """(kind, sequence type) for an annotation without its Optional."""
    if tp in _SCALAR_KINDS:
        return _SCALAR_KINDS[tp], None
    origin = typing.get_origin(tp)
    if origin in (tuple, list, collections.abc.Sequence):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        elem = set(args)
        seq_type = list if origin is list else tuple
        if len(elem) == 1 and next(iter(elem)) in _ARRAY_KINDS:
            return _ARRAY_KINDS[next(iter(elem))], seq_type
    return _ANY, None


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def param_specs(cls: type, prefix: str = "", defaults: Any = None) -> list[ParamSpec]:
    """The ROS parameters of dataclass ``cls`` (nested dataclasses flattened with dots).

    Args:
        cls: a dataclass type.
        prefix: prepended to every name with a dot (``"naf"`` -> ``naf.lr``); ``""`` for none.
        defaults: an instance of ``cls`` whose values replace the class defaults (optional).
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    docs = field_descriptions(cls)
    specs: list[ParamSpec] = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        name = f"{prefix}.{f.name}" if prefix else f.name
        default = getattr(defaults, f.name) if defaults is not None else _field_default(f)
        tp, optional = _strip_optional(hints.get(f.name, Any))
        if dataclasses.is_dataclass(tp):
            nested_default = default if dataclasses.is_dataclass(default) else None
            if default is None and optional:
                nested_default = None
            specs.extend(
                dataclasses.replace(s, path=(f.name,) + s.path)
                for s in param_specs(tp, name, nested_default)  # type: ignore[arg-type]
            )
            continue
        kind, seq_type = _kind_of(tp)
        if default is dataclasses.MISSING:
            default = None  # required field: must come from an override
        specs.append(
            ParamSpec(name, (f.name,), kind, default, optional or default is None, seq_type, docs.get(f.name, ""))
        )
    return specs


def _to_ros_value(value: Any) -> Any:
    """A Python value as a ROS parameter value (tuples -> lists, numpy scalars -> Python)."""
    if isinstance(value, (list, tuple)):
        return [_to_ros_value(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (bool, int, float, str)):
        return value.item()
    return value


def flatten(instance: Any, prefix: str = "") -> dict[str, Any]:
    """Parameter values of a config instance as ``{dotted name: ROS value}``; ``None`` and ``()`` are omitted.

    This is the rule a launcher uses to write parameter files that :func:`declare_from_dataclass` reads.
    """
    out: dict[str, Any] = {}
    for f in dataclasses.fields(instance):
        if not f.init:
            continue
        name = f"{prefix}.{f.name}" if prefix else f.name
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out.update(flatten(value, name))
        elif value is None or (isinstance(value, (list, tuple)) and len(value) == 0):
            continue  # ROS params files cannot hold None or (portably) empty arrays: the default applies
        else:
            out[name] = _to_ros_value(value)
    return out


def _coerce(spec: ParamSpec, value: Any) -> Any:
    """Check/convert a parameter value for ``spec``; raises ValueError naming the parameter."""
    if value is None:
        if spec.optional:
            return None
        raise ValueError(f"parameter '{spec.name}' is required (no default)")
    kind = spec.kind

    def bad(expected: str) -> ValueError:
        return ValueError(f"parameter '{spec.name}' must be {expected}, got {value!r}")

    if kind == _BOOL:
        if not isinstance(value, bool):
            raise bad("a bool")
        return value
    if kind == _INT:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if kind == _FLOAT:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if kind == _STR:
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if kind.endswith("[]"):
        if not isinstance(value, (list, tuple)) and not hasattr(value, "tolist"):
            raise bad(f"an array ({kind})")
        items = list(value.tolist() if hasattr(value, "tolist") else value)
        elem_kind = kind[:-2]
        elem_spec = dataclasses.replace(spec, kind=elem_kind, optional=False)
        items = [_coerce(elem_spec, v) for v in items]
        return (spec.sequence_type or tuple)(items)
    # _ANY: hand over as given (arrays as tuples); the dataclass validates
    if isinstance(value, list):
        return tuple(value)
    return value


def build(cls: type[T], values: Mapping[str, Any], prefix: str = "", defaults: T | None = None) -> T:
    """Build and validate a config instance from ``{dotted name: value}`` (missing names -> defaults).

    Raises:
        ValueError: a value of the wrong type, an unknown name under ``prefix``, or the dataclass's own
            validation failing (message names the parameter or the dataclass).
    """
    specs = param_specs(cls, prefix, defaults)
    known = {s.name for s in specs}
    lead = f"{prefix}." if prefix else ""
    unknown = [k for k in values if k.startswith(lead) and k not in known]
    if unknown:
        raise ValueError(f"unknown parameter(s) for {cls.__name__}: {sorted(unknown)}")
    tree: dict[str, Any] = {}
    for spec in specs:
        raw = values.get(spec.name, spec.default)
        node = tree
        for key in spec.path[:-1]:
            node = node.setdefault(key, {})
        node[spec.path[-1]] = _coerce(spec, raw)
    return _instantiate(cls, tree, defaults)


def _instantiate(cls: type[T], tree: Mapping[str, Any], defaults: Any = None) -> T:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init or f.name not in tree:
            continue
        value = tree[f.name]
        if isinstance(value, dict):
            tp, _ = _strip_optional(hints[f.name])
            nested_defaults = getattr(defaults, f.name) if defaults is not None else None
            value = _instantiate(tp, value, nested_defaults)
        kwargs[f.name] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid {cls.__name__} parameters: {exc}") from exc


# ------------------------------------------------------------------------------------------- rclpy side


def _descriptor(spec: ParamSpec, read_only: bool):
    from rcl_interfaces.msg import ParameterDescriptor

    units_hint = f" [{spec.kind}]" if spec.kind != _ANY else ""
    dynamic = spec.kind in (_FLOAT, _FLOAT_ARRAY, _ANY) or (spec.optional and spec.default is None)
    return ParameterDescriptor(
        description=(spec.description + units_hint).strip(),
        read_only=read_only,
        dynamic_typing=dynamic,
    ), dynamic


def _ros_type(kind: str):
    from rclpy.parameter import Parameter

    return {
        _BOOL: Parameter.Type.BOOL,
        _INT: Parameter.Type.INTEGER,
        _STR: Parameter.Type.STRING,
        _BOOL_ARRAY: Parameter.Type.BOOL_ARRAY,
        _INT_ARRAY: Parameter.Type.INTEGER_ARRAY,
        _STR_ARRAY: Parameter.Type.STRING_ARRAY,
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
        default = _to_ros_value(override_map.get(spec.name, spec.default))
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
