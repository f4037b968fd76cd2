"""Turning parsed YAML values into typed dataclass fields, with errors that name the dotted key.

The training config is plain YAML read into frozen dataclasses; this module holds the generic
part of that (mapping checks, unknown-key rejection, conversion to each field's type hint) so
:mod:`evseg_ros.train.config` only states the sections, their defaults and their rules. Every
error is a ``ValueError`` naming the key and showing the bad value, because a typo that silently
trains at the default wastes a whole run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "as_mapping",
    "build_dataclass",
    "check_value",
    "convert_value",
    "invalid_value",
    "plain_values",
    "reject_unknown_keys",
]


def invalid_value(key: str, value: object, expected: str) -> ValueError:
    """The error for ``key`` holding ``value`` where ``expected`` was required."""
    return ValueError(f"{key} must be {expected}, got {value!r}")


def check_value(condition: bool, key: str, value: object, expected: str) -> None:
    """Raise :func:`invalid_value`'s error unless ``condition`` holds."""
    if not condition:
        raise invalid_value(key, value, expected)


def as_mapping(value: object, key: str) -> Mapping[str, Any]:
    """``value`` itself when it is a mapping (a YAML section), else the error naming ``key``."""
    if not isinstance(value, Mapping):
        raise invalid_value(key, value, "a mapping")
    return value


def reject_unknown_keys(values: Mapping[str, Any], known: Sequence[str], prefix: str) -> None:
    """Raise on the first key of ``values`` not in ``known`` (listing the known ones)."""
    for key in values:
        if key not in known:
            msg = (
                f"unknown key {prefix}{key} (value {values[key]!r}); known keys: "
                f"{', '.join(prefix + k for k in known)}"
            )
            raise ValueError(msg)


def build_dataclass(cls: type, values: object, prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from a mapping, converting each value to its field type."""
    values = as_mapping(values, prefix)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    reject_unknown_keys(values, names, f"{prefix}.")
    kwargs = {k: convert_value(v, hints[k], f"{prefix}.{k}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"{prefix}: {err}") from None


def convert_value(value: Any, hint: Any, key: str) -> Any:
    """Convert a YAML value to ``hint`` (bool, int, float, str, dict, tuple, optional)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return _convert_union(value, typing.get_args(hint), key)
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]: any length
            check_value(isinstance(value, (list, tuple)), key, value, "a list")
            return tuple(convert_value(v, args[0], key) for v in value)
        check_value(isinstance(value, (list, tuple)), key, value, f"a list of {len(args)} values")
        check_value(len(value) == len(args), key, value, f"a list of {len(args)} values")
        return tuple(convert_value(v, a, key) for v, a in zip(value, args))
    if hint is dict or origin is dict:
        return dict(as_mapping(value, key))
    converter = _SCALARS.get(hint)
    return value if converter is None else converter(value, key)


def _convert_union(value: Any, options: tuple[Any, ...], key: str) -> Any:
    if value is None:
        if type(None) in options:
            return None
        raise invalid_value(key, value, "set (null is not allowed)")
    errors = []
    for option in (o for o in options if o is not type(None)):
        try:
            return convert_value(value, option, key)
        except ValueError as err:
            errors.append(err)
    raise errors[0]


def _to_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "on", "off"):
        return value.lower() in ("true", "on")
    raise invalid_value(key, value, "true or false")


def _to_int(value: Any, key: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return int(value)
    raise invalid_value(key, value, "an integer")


def _to_float(value: Any, key: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):  # PyYAML reads "1e-4" (no dot) as a string
        with contextlib.suppress(ValueError):
            return float(value)
    raise invalid_value(key, value, "a number")


def _to_str(value: Any, key: str) -> str:
    if isinstance(value, str):
        return value
    if value is False and key == "train.amp":
        return "off"  # YAML 1.1 reads a bare ``off`` as false
    raise invalid_value(key, value, "a string")


_SCALARS = {bool: _to_bool, int: _to_int, float: _to_float, str: _to_str}


def plain_values(value: Any) -> Any:
    """Mappings and sequences turned into dicts (string keys) and lists, for ``yaml.safe_dump``."""
    if isinstance(value, Mapping):
        return {str(k): plain_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_values(v) for v in value]
    return value
