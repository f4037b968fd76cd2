"""Typed parameter declaration from one table per node.

Every parameter gets a default, a type (the default's), a description and, for numbers, an
inclusive range, all visible to ``ros2 param describe``. Values are checked when the node starts
(a wrong type, a value out of range or outside the choices is a :class:`ConfigError` naming the
node, the parameter file, the parameter, the value and what is allowed, on one line) and are
read once at construction; callbacks never re-read them. Parameters marked ``runtime`` can be
set while the node runs: the same checks apply, then the node's ``on_change`` hook may veto the
change, and only then does the node's value dict change.
"""

from __future__ import annotations

import array
import difflib
import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

from evseg_ros.nodes.config_errors import ConfigError, one_line

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

#: the hook a node passes to see (and possibly veto) runtime changes, by parameter name
ChangeHook = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    choices: tuple[str, ...] = ()
    #: inclusive numeric range (None: unbounded on that side); shown by ``ros2 param describe``;
    #: for a list of numbers it bounds every element
    low: float | None = None
    high: float | None = None
    #: settable while the node runs (validated); everything else is read-only
    runtime: bool = False

    def __post_init__(self) -> None:
        # a table whose own default breaks its rules is a programming error: fail on import
        if self.low is not None and self.high is not None and self.low > self.high:
            msg = f"parameter {self.name!r}: low {self.low!r} > high {self.high!r}"
            raise ValueError(msg)
        check_value(self, self.default)


class ParamValueError(ValueError):
    """A value a :class:`Param` does not allow; says what is wrong and what is allowed."""


# -- checking a value against its Param ---------------------------------------------------------
def _kind(value: Any) -> str | None:
    """The ROS parameter kind of one scalar value: bool, int, float or str (else None)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return None


def _is_list(value: Any) -> bool:
    return isinstance(value, list | tuple | array.array)


def _element_kind(param: Param) -> str | None:
    """Kind of the elements of a list parameter (None: its default is empty, any kind goes)."""
    return _kind(param.default[0]) if param.default else None


_KIND_NAMES = {
    "bool": ("true or false", "true/false values"),
    "int": ("an integer", "integers"),
    "float": ("a number", "numbers"),
    "str": ("a string", "strings"),
}


def _bound(value: float, kind: str | None, *, upper: bool) -> int | float:
    """A range end as it applies to ``kind`` (integers: rounded inwards)."""
    if kind == "int":
        return int(math.floor(value) if upper else math.ceil(value))
    return float(value)


def _range_text(param: Param, kind: str | None) -> str:
    if kind not in ("int", "float") or (param.low is None and param.high is None):
        return ""
    if param.high is None:
        return f" >= {_bound(param.low, kind, upper=False)!r}"
    if param.low is None:
        return f" <= {_bound(param.high, kind, upper=True)!r}"
    low = _bound(param.low, kind, upper=False)
    high = _bound(param.high, kind, upper=True)
    return f" in [{low!r}, {high!r}]"


def allowed(param: Param) -> str:
    """What ``param`` accepts, in words ("a number in [0.1, 1000.0]", "one of 'a', 'b'")."""
    if param.choices:
        return "one of " + ", ".join(repr(choice) for choice in param.choices)
    if _is_list(param.default):
        kind = _element_kind(param)
        if kind is None:
            return "a list"
        text = f"a non-empty list of {_KIND_NAMES[kind][1]}"
        bounds = _range_text(param, kind)
        return text + (f", each{bounds}" if bounds else "")
    kind = _kind(param.default)
    text = _KIND_NAMES[kind][0] if kind else f"a {type(param.default).__name__}"
    return text + _range_text(param, kind)


def shown(value: Any) -> str:
    """A value as messages show it (arrays as the lists they were written as)."""
    if isinstance(value, array.array | tuple):
        value = list(value)
    return repr(value)


def _scalar(param: Param, value: Any, kind: str | None, whole: Any = None) -> Any:
    """``value`` as ``kind`` (an int is a fine float); raises ParamValueError naming it.

    ``whole``: the list ``value`` is an element of, which the message shows instead.
    """
    got = _kind(value)
    show = shown(value if whole is None else whole)
    if kind is None or got == kind:
        checked = value
    elif kind == "float" and got == "int":
        checked = float(value)
    else:
        msg = f"parameter {param.name!r} = {show} has the wrong type: expected "
        hint = " (quote it in YAML)" if kind == "str" and got is not None else ""
        raise ParamValueError(msg + allowed(param) + hint)
    if kind in ("int", "float"):
        low_ok = param.low is None or checked >= param.low
        high_ok = param.high is None or checked <= param.high
        if not (low_ok and high_ok):  # NaN fails both
            msg = f"parameter {param.name!r} = {show} is out of range: expected "
            raise ParamValueError(msg + allowed(param))
    return checked


def check_value(param: Param, value: Any) -> Any:
    """``value`` if ``param`` allows it (ints given to float parameters become floats).

    Raises:
        ParamValueError: wrong type, out of range or not one of the choices; the message names
            the parameter and the value and says what is allowed.
    """
    if _is_list(param.default):
        if not _is_list(value) or (param.default and not len(value)):
            msg = f"parameter {param.name!r} = {shown(value)} has the wrong type: expected "
            raise ParamValueError(msg + allowed(param))
        kind = _element_kind(param)
        return [_scalar(param, element, kind, value) for element in value]
    checked = _scalar(param, value, _kind(param.default))
    if param.choices and checked not in param.choices:
        msg = f"parameter {param.name!r} = {shown(value)} is not allowed: expected "
        close = difflib.get_close_matches(str(checked), param.choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ParamValueError(msg + allowed(param) + hint)
    return checked


# -- declaring ----------------------------------------------------------------------------------
def _descriptor(param: Param) -> ParameterDescriptor:
    description = param.description
    if param.choices:
        description += f" (one of: {', '.join(param.choices)})"
    descriptor = ParameterDescriptor(
        description=description,
        read_only=not param.runtime,
        additional_constraints=allowed(param),
    )
    # ROS ranges bound scalars only; a list's element range is in additional_constraints
    kind = _kind(param.default)
    if param.low is None and param.high is None:
        return descriptor
    if kind == "int":
        low = INT64_MIN if param.low is None else _bound(param.low, kind, upper=False)
        high = INT64_MAX if param.high is None else _bound(param.high, kind, upper=True)
        descriptor.integer_range = [IntegerRange(from_value=low, to_value=high, step=0)]
    elif kind == "float":
        low = -math.inf if param.low is None else float(param.low)
        high = math.inf if param.high is None else float(param.high)
        descriptor.floating_point_range = [
            FloatingPointRange(from_value=low, to_value=high, step=0.0)
        ]
    return descriptor


def _plain(value: Any) -> Any:
    """Arrays as lists, so a node sees the same Python types whoever set the value."""
    return list(value) if isinstance(value, array.array | tuple) else value


def _where(node: Node, name: str) -> str:
    """``<node>: <file>: `` (the file that set ``name``), or ``<node>: `` when none did."""
    # imported here: config_check reads Param tables, so it imports this module
    from evseg_ros.nodes.config_check import file_setting  # noqa: PLC0415

    source = file_setting(node, name)
    prefix = f"{node.get_fully_qualified_name()}: "
    return prefix + (f"{source}: " if source else "")


def _start_value(node: Node, param: Param) -> Any:
    """The value ``param`` starts with: its override (checked), else its default."""
    # rclpy keeps the values of --params-file and parameter_overrides for this node here, and
    # has no public accessor; checking them before declaring is what lets an int stand for a
    # float and every error name the file
    overrides = getattr(node, "_parameter_overrides", {})
    if param.name not in overrides:
        return param.default
    value = overrides[param.name].value
    try:
        return check_value(param, value)
    except ParamValueError as err:
        raise ConfigError(_where(node, param.name) + str(err)) from None


#: nodes whose pre-set hook is installed, with every runtime-checked Param declared on them
_TABLES: weakref.WeakKeyDictionary[Node, dict[str, Param]] = weakref.WeakKeyDictionary()


def _install_coercion(node: Node, table: Sequence[Param]) -> None:
    """Let a runtime ``set`` give an int to a float parameter (rclpy would refuse the type).

    rclpy concatenates what every pre-set hook returns, so a node gets exactly one hook, which
    knows every table declared on it.
    """
    if node in _TABLES:
        _TABLES[node].update({param.name: param for param in table})
        return
    known = {param.name: param for param in table}
    _TABLES[node] = known

    def coerced(parameter: Parameter) -> Parameter:
        param = known.get(parameter.name)
        if param is None or parameter.type_ == Parameter.Type.NOT_SET:
            return parameter
        try:
            value = check_value(param, _plain(parameter.value))
        except ParamValueError:
            return parameter  # the on-set check rejects it, with the reason
        if Parameter.Type.from_parameter_value(value) == parameter.type_:
            return parameter
        return Parameter(parameter.name, value=value)

    def coerce(parameters: list[Parameter]) -> list[Parameter]:
        return [coerced(parameter) for parameter in parameters]

    node.add_pre_set_parameters_callback(coerce)


def declare_parameters(
    node: Node, table: Sequence[Param], *, on_change: ChangeHook | None = None
) -> dict[str, Any]:
    """Declare every parameter of ``table`` on ``node`` and return their values by name.

    Runtime parameters (``Param.runtime``) are writable: a ``set`` is checked like a start-up
    value, then passed to ``on_change`` (new values by name; raising ``ValueError`` rejects the
    change with its message as the reason), and once rclpy stored it the returned dict is updated
    in place, so the node reads the new value from the same dict. Everything else is read-only.

    Raises:
        ConfigError: a value (from a parameter file or override) has the wrong type, is out of
            range or not one of the choices; one line naming node, file, parameter, value and
            what is allowed.
    """
    values: dict[str, Any] = {}
    for param in table:
        value = _start_value(node, param)
        try:
            declared = node.declare_parameter(
                param.name, value, _descriptor(param), ignore_override=True
            )
        except (InvalidParameterTypeException, InvalidParameterValueException) as err:
            raise ConfigError(f"{_where(node, param.name)}{err}") from None
        values[param.name] = _plain(declared.value)
    by_name = {param.name: param for param in table}
    fqn = node.get_fully_qualified_name()

    def validate(parameters: list[Parameter]) -> SetParametersResult:
        changed: dict[str, Any] = {}
        for parameter in parameters:
            param = by_name.get(parameter.name)
            if param is None:
                continue  # another table's, or rclpy's own (use_sim_time)
            if not param.runtime:
                reason = f"{fqn}: parameter {param.name!r} is read-only (set at start-up only)"
                return SetParametersResult(successful=False, reason=reason)
            try:
                changed[param.name] = check_value(param, _plain(parameter.value))
            except ParamValueError as err:
                return SetParametersResult(successful=False, reason=f"{fqn}: {err}")
        if changed and on_change is not None:
            try:
                on_change(dict(changed))
            except ValueError as err:
                return SetParametersResult(successful=False, reason=one_line(err))
        return SetParametersResult(successful=True)

    def store(parameters: list[Parameter]) -> None:
        for parameter in parameters:
            if parameter.name in by_name:
                values[parameter.name] = _plain(parameter.value)

    if any(param.runtime for param in table):
        _install_coercion(node, [param for param in table if param.runtime])
        node.add_post_set_parameters_callback(store)
    node.add_on_set_parameters_callback(validate)
    return values
