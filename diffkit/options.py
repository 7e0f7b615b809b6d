"""Typed per-component options: a dataclass schema parsed from `-o key=value` strings.

Each component class has an `Options` dataclass. Values arrive as strings from the CLI or as
JSON/TOML values from a config; both are checked against the field's type, and unknown keys are
refused, so a typo never silently falls back to a default.
"""

import dataclasses
import math
import typing

from diffkit.errors import DiffkitError


INT_LIMIT = 2**31  # no option needs more; a larger value is a typo that would exhaust memory later


def convert(value, kind, key):
    """Convert one value to `kind` (str, int, float, bool, Literal[...] or tuple[int, ...]), strictly:
    a bool is not a number, a float must be finite, an int must be integral and below 2**31 in size."""
    origin = typing.get_origin(kind)
    if origin is typing.Literal:
        choices = typing.get_args(kind)
        if value not in choices:
            raise DiffkitError(f"option {key}={value!r}: choose one of {', '.join(map(str, choices))}")
        return value
    if origin is tuple:
        item = typing.get_args(kind)[0]
        if not isinstance(value, (str, list, tuple)):
            raise DiffkitError(f"option {key}={value!r}: expected a comma-separated list")
        parts = value.split(",") if isinstance(value, str) else list(value)
        return tuple(convert(p.strip() if isinstance(p, str) else p, item, key) for p in parts)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise DiffkitError(f"option {key}={value!r}: expected true or false")
    if kind is str:
        if not isinstance(value, str):
            raise DiffkitError(f"option {key}={value!r}: expected a string")
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DiffkitError(f"option {key}={value!r}: expected {kind.__name__}")
    try:
        converted = kind(value)
    except (TypeError, ValueError, OverflowError):
        raise DiffkitError(f"option {key}={value!r}: expected {kind.__name__}") from None
    if kind is int and isinstance(value, float) and value != converted:
        raise DiffkitError(f"option {key}={value!r}: expected int")
    if kind is int and abs(converted) >= INT_LIMIT:
        raise DiffkitError(f"option {key}={value!r}: out of range (at most {INT_LIMIT - 1:,})")
    if kind is float and not math.isfinite(converted):
        raise DiffkitError(f"option {key}={value!r}: expected a finite number")
    return converted


def field_types(schema):
    """{field: type} of an options dataclass. A subclass that redeclares a base's Literal field with its plain
    type (`loss: str = "l2"` over `loss: Literal["l1", "l2"]`) keeps the base's choices; declaring a new Literal
    changes them."""
    hints = typing.get_type_hints(schema)
    for name, kind in hints.items():
        base = next((c for c in schema.__mro__[1:] if name in getattr(c, "__dataclass_fields__", {})), None)
        if base is None:
            continue
        inherited = typing.get_type_hints(base)[name]
        if typing.get_origin(inherited) is typing.Literal and kind in {type(c) for c in typing.get_args(inherited)}:
            hints[name] = inherited
    return hints


def parse_options(schema, values, component="component"):
    """Build `schema` (a dataclass) from a dict of raw values; unknown keys are an error, and so is a default
    outside the choices a field inherits."""
    hints = field_types(schema)
    fields = {f.name for f in dataclasses.fields(schema)}
    unknown = sorted(set(values) - fields)
    if unknown:
        known = ", ".join(sorted(fields)) or "none"
        raise DiffkitError(f"unknown option {unknown[0]!r} for {component}; known options: {known}")
    if not isinstance(values, dict):
        raise DiffkitError(f"options for {component} must be a table of KEY = VALUE, got {values!r}")
    kwargs = {k: convert(v, hints[k], k) for k, v in values.items()}
    try:
        options = schema(**kwargs)
    except (TypeError, ValueError) as exc:
        raise DiffkitError(f"{component}: {exc}") from None
    for name, kind in hints.items():
        if typing.get_origin(kind) is typing.Literal and getattr(options, name) not in typing.get_args(kind):
            raise DiffkitError(f"{component}: option {name}={getattr(options, name)!r}: choose one of "
                               f"{', '.join(map(str, typing.get_args(kind)))}")
    return options


def options_dict(options):
    """A JSON-ready dict of an options instance (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(options).items()}


def field_help(schema, name):
    """A field's metadata["help"], from the nearest class in the MRO that gives one: a subclass that only
    changes a default (`T: int = 50`) keeps its base's help."""
    for cls in schema.__mro__:
        found = getattr(cls, "__dataclass_fields__", {}).get(name)
        if found is not None and found.metadata.get("help"):
            return found.metadata["help"]
    return ""


def describe(schema):
    """(name, type, default, help) for each field, for `diffkit list`."""
    hints = field_types(schema)
    rows = []
    for f in dataclasses.fields(schema):
        kind = hints[f.name]
        if typing.get_origin(kind) is typing.Literal:
            type_name = "|".join(map(str, typing.get_args(kind)))
        elif typing.get_origin(kind) is tuple:
            type_name = f"{typing.get_args(kind)[0].__name__},..."
        else:
            type_name = kind.__name__
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        rows.append((f.name, type_name, default, field_help(schema, f.name)))
    return rows


def split_assignments(pairs):
    """['a=1', 'b=x'] -> {'a': '1', 'b': 'x'}; a pair without '=' is an error."""
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise DiffkitError(f"option {pair!r} must look like KEY=VALUE")
        result[key.strip()] = value.strip()
    return result
