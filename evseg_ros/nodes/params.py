"""Typed parameter declaration from one table per node.

Every parameter gets a default, a type and a description visible to ``ros2 param describe``;
values are read once at construction (callbacks never re-read them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    choices: tuple[str, ...] = ()


def declare_parameters(node: Node, table: tuple[Param, ...]) -> dict[str, Any]:
    """Declare every parameter of ``table`` on ``node`` and return their values by name.

    Raises:
        ValueError: a parameter with closed choices got a value outside them (names both).
    """
    values: dict[str, Any] = {}
    for param in table:
        description = param.description
        if param.choices:
            description += f" (one of: {', '.join(param.choices)})"
        descriptor = ParameterDescriptor(description=description, read_only=True)
        value = node.declare_parameter(param.name, param.default, descriptor).value
        if param.choices and value not in param.choices:
            msg = (
                f"{node.get_fully_qualified_name()}: parameter {param.name!r} = {value!r} "
                f"is not one of {param.choices!r}"
            )
            raise ValueError(msg)
        values[param.name] = value
    return values
