"""Typed per-component options: a dataclass schema parsed from `-o key=value` strings.

Each component class has an `Options` dataclass. Values arrive as strings from the CLI or as
JSON/TOML values from a config; both are checked against the field's type, and unknown keys are
refused, so a typo never silently falls back to a default.
"""

import dataclasses
import typing

from diffkit.errors import DiffkitError


def _convert(value, kind, key):
    """Convert one value to `kind` (str, int, float, bool, Literal[...] or tuple[int, ...])."""
    origin = typing.get_origin(kind)
    if origin is typing.Literal:
        choices = typing.get_args(kind)
        if value not in choices:
            raise DiffkitError(f"option {key}={value!r}: choose one of {', '.join(map(str, choices))}")
        return value
    if origin is tuple:
        item = typing.get_args(kind)[0]
        parts = value.split(",") if isinstance(value, str) else list(value)
        return tuple(_convert(p.strip() if isinstance(p, str) else p, item, key) for p in parts)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off"):
            return False
        raise DiffkitError(f"option {key}={value!r}: expected true or false")
    try:
        converted = kind(value)
    except (TypeError, ValueError):
        raise DiffkitError(f"option {key}={value!r}: expected {kind.__name__}") from None
    if kind is int and isinstance(value, float) and value != converted:
        raise DiffkitError(f"option {key}={value!r}: expected int")
    return converted


def parse_options(schema, values, component="component"):
    """Build `schema` (a dataclass) from a dict of raw values; unknown keys are an error."""
    hints = typing.get_type_hints(schema)
    fields = {f.name for f in dataclasses.fields(schema)}
    unknown = sorted(set(values) - fields)
    if unknown:
        known = ", ".join(sorted(fields)) or "none"
        raise DiffkitError(f"unknown option {unknown[0]!r} for {component}; known options: {known}")
    kwargs = {k: _convert(v, hints[k], k) for k, v in values.items()}
    try:
        return schema(**kwargs)
    except ValueError as exc:
        raise DiffkitError(f"{component}: {exc}") from None


def options_dict(options):
    """A JSON-ready dict of an options instance (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(options).items()}


def describe(schema):
    """(name, type, default) for each field, for `diffkit list`."""
    hints = typing.get_type_hints(schema)
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
        rows.append((f.name, type_name, default))
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
