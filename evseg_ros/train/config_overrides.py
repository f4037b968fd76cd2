"""Command-line ``--set section.key=value`` overrides applied to a parsed YAML config.

Kept apart from the config sections because overrides act on the raw YAML tree before anything
is checked (so an override goes through exactly the same checks as the file), and because the
CLI also applies them to the config stored in a checkpoint when resuming.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

__all__ = ["apply_overrides", "parse_override"]


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"a.b.c=value"`` into ``(["a", "b", "c"], value)``; the value is parsed as YAML.

    Raises:
        ValueError: No ``=``, or an empty key part.
    """
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        msg = f"override must look like 'section.key=value', got {text!r}"
        raise ValueError(msg)
    return parts, yaml.safe_load(raw) if raw.strip() else None


def apply_overrides(values: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of parsed YAML with ``--set`` overrides applied (missing levels created).

    Raises:
        ValueError: An override is malformed or would descend into a non-mapping value.
    """
    result = _deep_copy(values)
    for text in overrides:
        parts, value = parse_override(text)
        node = result
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                msg = f"override {text!r}: {where} is {child!r}, not a section"
                raise ValueError(msg)
            node = child
        node[parts[-1]] = value
    return result


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
