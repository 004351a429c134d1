"""ROS parameters declared from the project's config dataclasses (one dataclass per component).

Every node declares its parameters from its component's config dataclass, so the dataclass is the single
source of names, defaults, units (in the docstring) and validation (``__post_init__`` raising ValueError)::

    from async_naf.nodes._params import declare_from_dataclass   # the rclpy half
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

This module is the ROS-free half (:func:`param_specs`, :func:`flatten`, :func:`build`,
:func:`field_descriptions`): the graph description writes parameter files with it and the nodes declare
their parameters through :mod:`async_naf.nodes._params`, which adds the rclpy half on top of it.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")  # a config dataclass

# kinds of parameter values
KIND_BOOL, KIND_INT, KIND_FLOAT, KIND_STR = "bool", "int", "float", "str"
KIND_BOOL_ARRAY, KIND_INT_ARRAY, KIND_FLOAT_ARRAY, KIND_STR_ARRAY = "bool[]", "int[]", "float[]", "str[]"
KIND_ANY = "any"
_SCALAR_KINDS = {bool: KIND_BOOL, int: KIND_INT, float: KIND_FLOAT, str: KIND_STR}
_ARRAY_KINDS = {bool: KIND_BOOL_ARRAY, int: KIND_INT_ARRAY, float: KIND_FLOAT_ARRAY, str: KIND_STR_ARRAY}


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


def _doc_attributes(doc: str) -> dict[str, str]:
    """The ``Attributes:`` section of a Google-style docstring: name -> text (``a, b: text`` gives both)."""
    from_doc: dict[str, str] = {}
    match = re.search(r"^(\s*)Attributes\b[^\n]*:\s*$", doc, flags=re.MULTILINE)
    if not match:
        return from_doc
    current: list[str] = []
    base_indent: int | None = None
    for line in doc[match.end():].splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= len(match.group(1)):
            break  # next section
        item = re.match(r"\s*([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*(\([^)]*\))?\s*:\s*(.*)$", line)
        if item and (base_indent is None or indent <= base_indent):
            base_indent = indent
            current = [name.strip() for name in item.group(1).split(",")]
            for name in current:
                from_doc[name] = item.group(3).strip()
        else:
            for name in current:
                from_doc[name] = (from_doc[name] + " " + line.strip()).strip()
    return from_doc


def field_descriptions(cls: type) -> dict[str, str]:
    """Field descriptions of a dataclass: ``metadata['help'|'description']``, else the ``Attributes:`` section
    of its docstring or of the nearest base class that documents the field."""
    from_doc: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # subclasses' texts replace their bases'
        from_doc.update(_doc_attributes(klass.__dict__.get("__doc__") or ""))
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
        return typing.Union[tuple(args)], optional  # noqa: UP007 - a runtime tuple
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
    return KIND_ANY, None


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
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


def to_ros_value(value: Any) -> Any:
    """A Python value as a ROS parameter value (tuples -> lists, numpy scalars -> Python)."""
    if isinstance(value, (list, tuple)):
        return [to_ros_value(v) for v in value]
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
            out[name] = to_ros_value(value)
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

    if kind == KIND_BOOL:
        if not isinstance(value, bool):
            raise bad("a bool")
        return value
    if kind == KIND_INT:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if kind == KIND_FLOAT:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if kind == KIND_STR:
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
    # KIND_ANY: hand over as given (arrays as tuples); the dataclass validates
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
        import difflib

        hints = []
        for name in sorted(unknown):
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(f"unknown parameter(s) for {cls.__name__}: {', '.join(hints)}; its parameters: "
                         f"{', '.join(sorted(known))}")
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


# Descriptions of the parameters a node declares itself, outside its config dataclass (nodes._params.node_only;
# docs/parameters.md). A node parameter found in a node's source but missing here makes the docs generator fail.
NODE_ONLY_HELP: dict[str, str] = {
    "seed": "seeds start-pose noise, IMU errors and domain randomisation (ArmDoorSim(config, seed)).",
    "diagnostics_period_s": "period of the /diagnostics status, s.",
    "time_jump_reset_s": "an IMU stamp this far behind or ahead of the last one is a glitch (dropped), unless "
                         "the next stamps go on from it: then, behind, the estimate restarts (a replayed bag "
                         "looping, a sim restart); ahead, a gap, s.",
}
