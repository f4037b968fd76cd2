"""Check a ROS 2 parameter file against the nodes' Param tables before any node starts.

rcl ignores a key that no node declares (a misspelt ``windw_duration_us`` silently leaves the
default in force), and a malformed file fails deep inside ``rclpy.init`` with a multi-line
message. Here every key of a section that names a node must be one of that node's parameters,
every key of a wildcard section (``/**``) one of some graph node's, and every value must fit its
:class:`Param` (type, range, choices); the first problem is a one-line :class:`ConfigError`
naming the file, the section and the key, with the closest known name when there is one.

Sections match nodes by their last name component (``accumulator``, ``/**/accumulator`` and
``/rig/accumulator`` all name the accumulator), so a check does not depend on the namespace a
launch file picks. The module also remembers which parameter files each context was started
with, so a value rejected later, while a node declares it, names the file it came from.
"""

from __future__ import annotations

import difflib
import re
import sys
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from functools import cache
from importlib import import_module
from pathlib import Path
from typing import Any

import yaml
from rclpy.context import Context
from rclpy.node import Node

from evseg_ros.nodes.config_errors import ConfigError
from evseg_ros.nodes.graph import GRAPH
from evseg_ros.nodes.params import Param, ParamValueError, check_value

#: parameters rclpy declares on every node itself
ROS_PARAMS: tuple[Param, ...] = (
    Param("use_sim_time", False, "follow /clock instead of the system clock"),
    Param("start_type_description_service", True, "offer ~/get_type_description"),
)
#: names under this prefix are QoS overrides, declared by rclpy where a publisher allows them
QOS_OVERRIDES_PREFIX = "qos_overrides."
#: how close an unknown node name must be to a graph node's to be taken for a typo of it
NODE_TYPO_CUTOFF = 0.8

Tables = Mapping[str, Sequence[Param]]


# -- the tables ---------------------------------------------------------------------------------
def table_of(target: str) -> tuple[Param, ...] | None:
    """The ``PARAMS`` table of the module of a ``"module:Class"`` target (None if it has none)."""
    module = import_module(target.partition(":")[0])
    return getattr(module, "PARAMS", None)


@cache
def graph_tables() -> dict[str, tuple[Param, ...]]:
    """Every graph node's parameter table, by node name."""
    return {spec.name: table_of(spec.target) or () for spec in GRAPH}


# -- reading a parameter file -------------------------------------------------------------------
def _yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error on one line: where, then what (PyYAML's own text spans several lines)."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    if mark is None:
        return problem
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested parameter mappings as rcl reads them: ``a: {b: 1}`` is parameter ``a.b``."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def read_params_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """Parameters of a ROS 2 parameter file by section (``/**/accumulator``) and name.

    Raises:
        ConfigError: the file cannot be read, is not YAML, or is not shaped like a parameter
            file (sections of ``ros__parameters`` mappings); one line naming the file.
    """
    try:
        text = Path(path).read_text()
    except OSError as err:
        reason = err.strerror or str(err)
        raise ConfigError(f"cannot read parameter file {str(path)!r}: {reason}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(err)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected node sections (a mapping) at the top level")
    sections: dict[str, dict[str, Any]] = {}
    for section, block in data.items():
        params = block.get("ros__parameters") if isinstance(block, dict) else None
        if not isinstance(params, dict):
            msg = f"{path}: {section}: expected 'ros__parameters:' with parameters under it"
            raise ConfigError(msg)
        sections[str(section)] = _flatten(params)
    return sections


# -- matching sections to nodes -----------------------------------------------------------------
def _last_name(section: str) -> str:
    return section.rstrip("/").rsplit("/", 1)[-1]


def _is_wildcard(section: str) -> bool:
    return "*" in _last_name(section)


def _section_nodes(section: str, names: Iterable[str]) -> list[str]:
    """The node names (of ``names``) a section applies to, by its last name component."""
    pattern = _last_name(section)
    return [name for name in names if fnmatchcase(name, pattern)]


def section_matches(section: str, fully_qualified_name: str) -> bool:
    """Whether rcl applies ``section`` to the node ``fully_qualified_name`` (``/rig/x``).

    ``/**`` stands for any number of namespace levels, ``*`` for part of one name, and a
    section without a leading slash is taken from the root, as rcl reads them.
    """
    parts = [part for part in section.split("/") if part]
    regex = ""
    for part in parts:
        if part == "**":
            regex += "(/[^/]+)*"
        else:
            regex += "/" + re.escape(part).replace(r"\*", "[^/]*")
    return re.fullmatch(regex or "/", fully_qualified_name) is not None


# -- checking -----------------------------------------------------------------------------------
def _known(table: Sequence[Param]) -> dict[str, Param]:
    return {param.name: param for param in (*ROS_PARAMS, *table)}


def _suggestion(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_value(where: str, param: Param, value: Any) -> None:
    if isinstance(value, str) and isinstance(param.default, float) and not param.choices:
        # rcl reads an unquoted 1e3 as a number where PyYAML reads a string
        try:
            value = float(value)
        except ValueError:
            pass
    try:
        check_value(param, value)
    except ParamValueError as err:
        raise ConfigError(f"{where}: {err}") from None


def _check_section(
    path: str, section: str, params: dict[str, Any], tables: dict[str, dict[str, Param]],
    checked: Sequence[str],
) -> None:
    """Check one section's keys against the nodes it applies to (values: ``checked`` nodes')."""
    nodes = _section_nodes(section, tables)
    for name, value in params.items():
        if name.startswith(QOS_OVERRIDES_PREFIX):
            continue
        declaring = [node for node in nodes if name in tables[node]]
        if not declaring:
            candidates = [key for node in nodes for key in tables[node]]
            whose = "" if not _is_wildcard(section) else "; no node of the graph declares it"
            msg = f"{path}: {section}: unknown parameter {name!r}{whose}"
            raise ConfigError(msg + _suggestion(name, candidates))
        for node in declaring:
            if node in checked:
                where = f"{path}: {section}" + (f" ({node})" if _is_wildcard(section) else "")
                _check_value(where, tables[node][name], value)


def check_params_file(path: str | Path, tables: Tables, *, node: str | None = None) -> None:
    """Check a parameter file against the parameter tables of the nodes that will read it.

    Args:
        path: the file (as the user gave it: messages name it so).
        tables: Param table by node name; rclpy's own parameters are always allowed.
        node: check for this one node only (a node process of a launch): sections naming other
            nodes are skipped and wildcard keys need only be some node's of ``tables``; values
            are checked against this node's table. None: for every node of ``tables`` (the
            in-process runner), and a section naming a node that is almost one of them is
            taken for a typo.

    Raises:
        ConfigError: the first problem, on one line naming the file, section and key.
    """
    known = {name: _known(table) for name, table in tables.items()}
    checked = list(known) if node is None else [node]
    for section, params in read_params_file(path).items():
        nodes = _section_nodes(section, known)
        if not nodes:
            if node is None and not _is_wildcard(section):
                typo = difflib.get_close_matches(
                    _last_name(section), list(known), n=1, cutoff=NODE_TYPO_CUTOFF
                )
                if typo:
                    msg = f"{path}: {section}: no node is called {_last_name(section)!r}"
                    raise ConfigError(f"{msg} (did you mean {typo[0]!r}?)")
            continue
        if node is not None and node not in nodes:
            continue
        _check_section(str(path), section, params, known, checked)


def check_graph_config(path: str | Path) -> None:
    """Check the in-process runner's parameter file against every graph node's table."""
    check_params_file(path, graph_tables())


# -- a node process's command line --------------------------------------------------------------
def _ros_args(args: Sequence[str]) -> list[str]:
    """The arguments between ``--ros-args`` and ``--`` (or the end), every such section."""
    ros: list[str] = []
    inside = False
    for arg in args:
        if arg == "--ros-args":
            inside = True
        elif arg == "--":
            inside = False
        elif inside:
            ros.append(arg)
    return ros


def params_files_in(args: Sequence[str]) -> list[str]:
    """The ``--params-file`` arguments of a ROS command line, in order."""
    ros = _ros_args(args)
    return [ros[i + 1] for i, arg in enumerate(ros[:-1]) if arg == "--params-file"]


def node_name_in(args: Sequence[str], default: str) -> str:
    """The node name a ``-r __node:=name`` remap gives, else ``default``."""
    ros = _ros_args(args)
    name = default
    for i, arg in enumerate(ros[:-1]):
        if arg in ("-r", "--remap"):
            key, sep, value = ros[i + 1].partition(":=")
            if sep and key.rsplit(":", 1)[-1] == "__node":
                name = value
    return name


def _node_of(factory: Callable[..., Node]) -> tuple[str, tuple[Param, ...]] | None:
    """The node name and table of a node class: a graph node's, or its module's ``PARAMS``."""
    factory = getattr(factory, "managed_from", factory)  # a managed twin: its plain class's
    module = getattr(factory, "__module__", "")
    loaded = sys.modules.get(module)
    spec = getattr(loaded, "__spec__", None)
    if module == "__main__" and spec is not None:
        module = spec.name  # ``python -m evseg_ros.nodes.accumulator``
    target = f"{module}:{getattr(factory, '__qualname__', '')}"
    for node in GRAPH:
        if node.target == target:
            return node.name, graph_tables()[node.name]
    table = getattr(loaded, "PARAMS", None)
    if table is None:
        return None
    return module.rsplit(".", 1)[-1], tuple(table)


def node_name_for(factory: Callable[..., Node], args: Sequence[str]) -> str | None:
    """The name a node built by ``factory`` will have (remaps included), if it is known."""
    identity = _node_of(factory)
    return None if identity is None else node_name_in(args, identity[0])


def check_node_args(factory: Callable[..., Node], args: Sequence[str]) -> None:
    """Check the parameter files on a node's command line for that node.

    A node whose table is unknown (not a graph node, no ``PARAMS``) gets its files read only,
    so a missing or malformed one is still one line instead of rcl's error.

    Raises:
        ConfigError: as :func:`check_params_file`.
    """
    files = params_files_in(args)
    if not files:
        return
    identity = _node_of(factory)
    for path in files:
        if identity is None:
            read_params_file(path)
            continue
        default_name, table = identity
        name = node_name_in(args, default_name)
        check_params_file(path, {**graph_tables(), name: table}, node=name)


# -- which file set a value ---------------------------------------------------------------------
_CONTEXT_FILES: weakref.WeakKeyDictionary[Context, tuple[str, ...]] = (
    weakref.WeakKeyDictionary()
)


def remember_params_files(context: Context, args: Sequence[str]) -> None:
    """Note the parameter files ``context`` is initialised with (rclpy does not keep them)."""
    _CONTEXT_FILES[context] = tuple(params_files_in(args))


def file_setting(node: Node, name: str) -> str | None:
    """The last parameter file of the node's context that sets ``name`` for it, if any."""
    fully_qualified_name = node.get_fully_qualified_name()
    for path in reversed(_CONTEXT_FILES.get(node.context, ())):
        try:
            sections = read_params_file(path)
        except ConfigError:
            continue
        for section, params in sections.items():
            if name in params and section_matches(section, fully_qualified_name):
                return path
    return None
