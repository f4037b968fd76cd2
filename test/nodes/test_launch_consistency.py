"""The launch files and the in-process runner start the same nodes with the same parameters.

The launch files are read statically (their ``Node(...)`` calls, parameter dicts and launch
arguments), so this runs without the launch system, and checked against the graph table the
runner uses, the console scripts of setup.py, the config file, and the parameters each node
really declares. ``test/launch/test_ros2_launch.py`` runs them for real where ``ros2 launch``
is available.
"""

from __future__ import annotations

import ast
from importlib import import_module
from pathlib import Path

import pytest
import yaml

from evseg_ros.nodes.graph import GRAPH

REPO = Path(__file__).resolve().parents[2]
LAUNCH_DIR = REPO / "launch"
CORE = LAUNCH_DIR / "rig_core.launch.py"
VARIANTS = (LAUNCH_DIR / "rig.launch.py", LAUNCH_DIR / "replay.launch.py")
CONFIG = REPO / "config" / "rig.yaml"
DRIVERS = ("evk4_driver", "flir_driver")
#: what source:=replay sets on both drivers (the flir driver also publishes /clock)
REPLAY_OVERRIDES = {
    "source", "bag_path", "replay_pacing", "replay_rate", "replay_loop", "replay_epoch_ns",
}


def _literal(node: ast.AST):
    try:
        return ast.literal_eval(node)
    except ValueError:
        return node


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name
    ]


def _kwargs(call: ast.Call) -> dict:
    return {k.arg: k.value for k in call.keywords}


@pytest.fixture(scope="module")
def core_tree() -> ast.AST:
    return ast.parse(CORE.read_text())


@pytest.fixture(scope="module")
def assignments(core_tree) -> dict[str, list[ast.expr]]:
    """Every value assigned to each plain name in the core launch file."""
    values: dict[str, list[ast.expr]] = {}
    for node in ast.walk(core_tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                values.setdefault(target.id, []).append(node.value)
    return values


def _override_keys(expr: ast.expr, assignments: dict[str, list[ast.expr]]) -> set[str]:
    """Parameter names a ``parameters=[...]`` element can set (dict displays, names, ``**``)."""
    if isinstance(expr, ast.Dict):
        keys: set[str] = set()
        for key, value in zip(expr.keys, expr.values):
            if key is None:  # {**other, ...}
                keys |= _override_keys(value, assignments)
            else:
                assert isinstance(_literal(key), str), ast.unparse(key)
                keys.add(_literal(key))
        return keys
    if isinstance(expr, ast.IfExp):
        return _override_keys(expr.body, assignments) | _override_keys(expr.orelse, assignments)
    if isinstance(expr, ast.Name):
        assert expr.id in assignments, f"parameter overrides {expr.id!r} are never assigned"
        return set().union(*(_override_keys(v, assignments) for v in assignments[expr.id]))
    pytest.fail(f"cannot read parameter overrides statically from {ast.unparse(expr)!r}")


@pytest.fixture(scope="module")
def launch_nodes(core_tree) -> dict[str, dict]:
    """The graph nodes' keyword arguments (``_node(managed, ...)``: a Node or LifecycleNode)."""
    nodes = {}
    for call in _calls(core_tree, "_node"):
        kwargs = _kwargs(call)
        executable = _literal(kwargs["executable"])
        if executable == "rviz2":
            continue
        nodes[executable] = kwargs
    return nodes


@pytest.fixture(scope="module")
def arguments(core_tree) -> dict[str, dict]:
    return {_literal(c.args[0]): _kwargs(c) for c in _calls(core_tree, "DeclareLaunchArgument")}


@pytest.fixture(scope="module")
def declared() -> dict[str, dict]:
    """Parameter tables the node modules really declare, by node name."""
    tables = {}
    for spec in GRAPH:
        module = import_module(spec.target.partition(":")[0])
        tables[spec.name] = {p.name: p for p in module.PARAMS}
    return tables


def test_launch_starts_exactly_the_graph_nodes(launch_nodes):
    assert set(launch_nodes) == {spec.name for spec in GRAPH}
    for executable, kwargs in launch_nodes.items():
        assert _literal(kwargs["name"]) == executable
        assert _literal(kwargs["package"]) == "evseg_ros" or ast.unparse(kwargs["package"]) == (
            "PACKAGE"
        )
        assert ast.unparse(kwargs["namespace"]) == "namespace"


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda path: path.name)
def test_variants_include_the_core_and_start_no_node_themselves(variant):
    tree = ast.parse(variant.read_text())
    assert not _calls(tree, "Node")
    (include,) = _calls(tree, "IncludeLaunchDescription")
    assert "rig_core.launch.py" in variant.read_text()
    if variant.name == "replay.launch.py":
        assert "{'source': 'replay'}" in ast.unparse(_kwargs(include)["launch_arguments"])
        (bag,) = _calls(tree, "DeclareLaunchArgument")
        assert _literal(bag.args[0]) == "bag" and "default_value" not in _kwargs(bag)  # required


def test_every_launch_file_is_installed():
    tree = ast.parse((REPO / "setup.py").read_text())
    (setup_call,) = _calls(tree, "setup")
    data_files = ast.unparse(_kwargs(setup_call)["data_files"])
    assert "glob('launch/*.launch.py')" in data_files
    assert {path.name for path in LAUNCH_DIR.glob("*.launch.py")} == {
        CORE.name, *(variant.name for variant in VARIANTS)
    }
    assert "config/*.rviz" in data_files and (REPO / "config" / "rig.rviz").is_file()


def test_every_node_has_a_console_script_with_main():
    tree = ast.parse((REPO / "setup.py").read_text())
    (setup_call,) = _calls(tree, "setup")
    entry_points = _literal(_kwargs(setup_call)["entry_points"])["console_scripts"]
    scripts = dict(line.replace(" ", "").split("=") for line in entry_points)
    assert scripts["evseg"] == "evseg_ros.cli:main"
    assert scripts["recorder"] == "evseg_ros.nodes.recorder:main"
    for spec in GRAPH:
        module_name, _, func = scripts[spec.name].partition(":")
        assert module_name == spec.target.partition(":")[0]
        assert callable(getattr(import_module(module_name), func))


def test_launch_passes_the_shared_config_to_every_node(launch_nodes, arguments):
    for kwargs in launch_nodes.values():
        parameters = kwargs["parameters"]
        assert isinstance(parameters, ast.List)
        assert ast.unparse(parameters.elts[0]) == "config"
    default = ast.unparse(arguments["config"]["default_value"])
    assert "'config', 'rig.yaml'" in default and CONFIG.is_file()


def test_launch_overrides_are_declared_parameters(launch_nodes, assignments, declared):
    for name, kwargs in launch_nodes.items():
        for element in kwargs["parameters"].elts[1:]:
            for key in _override_keys(element, assignments):
                assert key in declared[name], f"{name} does not declare {key!r}"


def test_calibration_argument_reaches_all_four_nodes(launch_nodes, assignments):
    for name, kwargs in launch_nodes.items():
        keys = set().union(
            *(_override_keys(element, assignments) for element in kwargs["parameters"].elts[1:])
        )
        assert "calibration_file" in keys, name


def test_replay_sets_the_bag_source_on_both_drivers(assignments, declared):
    replay = [
        value
        for value in assignments["evk4"]
        if isinstance(value, ast.Dict)
        and any(_literal(k) == "source" and _literal(v) == "bag"
                for k, v in zip(value.keys, value.values))
    ]
    assert len(replay) == 1, "one replay override dict for the EVK4 driver"
    assert _override_keys(replay[0], assignments) == REPLAY_OVERRIDES
    # the frame driver: the same overrides, plus the /clock of `ros2 bag play --clock`
    (flir,) = [value for value in assignments["flir"] if "**evk4" in ast.unparse(value)]
    assert ast.unparse(flir) == "{**evk4, 'replay_publish_clock': True}"
    for driver in DRIVERS:
        assert "bag" in declared[driver]["source"].choices


def test_config_keys_are_declared_by_their_nodes(declared):
    config = yaml.safe_load(CONFIG.read_text())
    shared = config.pop("/**")["ros__parameters"]
    assert set(config) == {f"/**/{spec.name}" for spec in GRAPH}
    for key, block in config.items():
        name = key.removeprefix("/**/")
        for param, value in block["ros__parameters"].items():
            assert param in declared[name], f"config sets {param!r} that {name} does not declare"
            declared_param = declared[name][param]
            assert type(value) is type(declared_param.default), (name, param)
            if declared_param.choices:
                assert value in declared_param.choices
    for param in shared:
        assert any(param in table for table in declared.values()), param


def test_launch_arguments_are_described(arguments):
    assert {
        "source", "bag", "rate", "pacing", "loop", "replay_start_delay_s", "calibration",
        "model", "backend", "namespace", "config", "rviz", "managed",
    } <= set(arguments)
    for name, kwargs in arguments.items():
        assert _literal(kwargs.get("description", "")), f"launch argument {name!r} undescribed"
    for name in ("loop", "rviz", "managed"):
        assert _literal(arguments[name]["choices"]) == ["true", "false"]
    assert _literal(arguments["managed"]["default_value"]) == "false"  # plain nodes by default
    assert _literal(arguments["calibration"]["default_value"]) == ""


def test_launch_argument_choices_match_node_parameters(arguments, declared):
    assert _literal(arguments["source"]["choices"]) == ["sim", "hardware", "replay"]
    live_sources = set(_literal(arguments["source"]["choices"])) - {"replay"}
    for driver in DRIVERS:
        assert live_sources <= set(declared[driver]["source"].choices)
        assert set(_literal(arguments["pacing"]["choices"])) <= set(
            declared[driver]["replay_pacing"].choices
        )
    assert set(_literal(arguments["backend"]["choices"])) == set(
        declared["segmentation"]["backend"].choices
    )
    config = yaml.safe_load(CONFIG.read_text())
    model = config["/**/segmentation"]["ros__parameters"]["model_path"]
    assert _literal(arguments["model"]["default_value"]) == model
