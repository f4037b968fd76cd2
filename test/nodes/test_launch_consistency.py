"""The launch file and the in-process runner start the same nodes with the same parameters.

``ros2 launch`` cannot run here, so the launch file is read statically (its ``Node(...)`` calls
and launch arguments) and checked against the graph table the runner uses, the console scripts
of setup.py, the config file, and the parameters each node really declares.
"""

from __future__ import annotations

import ast
from importlib import import_module
from pathlib import Path

import pytest
import yaml

from evseg_ros.nodes.graph import GRAPH

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / "launch" / "rig.launch.py"
CONFIG = REPO / "config" / "rig.yaml"


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
def launch_tree() -> ast.AST:
    return ast.parse(LAUNCH.read_text())


@pytest.fixture(scope="module")
def launch_nodes(launch_tree) -> dict[str, dict]:
    nodes = {}
    for call in _calls(launch_tree, "Node"):
        kwargs = _kwargs(call)
        executable = _literal(kwargs["executable"])
        if executable == "rviz2":
            continue
        nodes[executable] = kwargs
    return nodes


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


def test_every_node_has_a_console_script_with_main():
    tree = ast.parse((REPO / "setup.py").read_text())
    (setup_call,) = _calls(tree, "setup")
    entry_points = _literal(_kwargs(setup_call)["entry_points"])["console_scripts"]
    scripts = dict(line.replace(" ", "").split("=") for line in entry_points)
    assert "evseg" in scripts
    for spec in GRAPH:
        module_name, _, func = scripts[spec.name].partition(":")
        assert module_name == spec.target.partition(":")[0]
        assert callable(getattr(import_module(module_name), func))


def test_launch_passes_the_shared_config_to_every_node(launch_nodes, launch_tree):
    for kwargs in launch_nodes.values():
        parameters = kwargs["parameters"]
        assert isinstance(parameters, ast.List)
        assert ast.unparse(parameters.elts[0]) == "config"
    (config_arg,) = [
        c for c in _calls(launch_tree, "DeclareLaunchArgument") if _literal(c.args[0]) == "config"
    ]
    default = ast.unparse(_kwargs(config_arg)["default_value"])
    assert "'config', 'rig.yaml'" in default and CONFIG.is_file()


def test_launch_overrides_are_declared_parameters(launch_nodes, declared):
    for name, kwargs in launch_nodes.items():
        for element in kwargs["parameters"].elts[1:]:
            assert isinstance(element, ast.Dict)
            for key in element.keys:
                assert _literal(key) in declared[name], f"{name} does not declare {key!r}"


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


def test_launch_argument_choices_match_node_parameters(launch_tree, declared):
    arguments = {
        _literal(c.args[0]): _kwargs(c) for c in _calls(launch_tree, "DeclareLaunchArgument")
    }
    assert {"source", "backend", "model", "rviz", "config"} <= set(arguments)
    assert _literal(arguments["source"]["choices"]) == ["sim", "hardware", "replay"]
    live_sources = set(_literal(arguments["source"]["choices"])) - {"replay"}
    assert live_sources <= set(declared["evk4_driver"]["source"].choices)
    assert live_sources <= set(declared["flir_driver"]["source"].choices)
    assert set(_literal(arguments["backend"]["choices"])) == set(
        declared["segmentation"]["backend"].choices
    )
    config = yaml.safe_load(CONFIG.read_text())
    model = config["/**/segmentation"]["ros__parameters"]["model_path"]
    assert _literal(arguments["model"]["default_value"]) == model
