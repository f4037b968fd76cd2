"""Parameter files are checked against the nodes' tables before anything starts.

rcl ignores keys no node declares, so a misspelt parameter silently kept its default; these pin
down what is refused (and what is not) and that every refusal is one line naming file, section
and key, with the closest known name.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from evseg_ros.nodes.config_check import (
    check_graph_config,
    check_params_file,
    graph_tables,
    node_name_in,
    params_files_in,
    read_params_file,
    section_matches,
)
from evseg_ros.nodes.config_errors import ConfigError
from evseg_ros.nodes.params import Param, ParamValueError, allowed, check_value

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, text: str, name: str = "params.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _error(path: Path, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        if kwargs:
            check_params_file(path, graph_tables(), **kwargs)
        else:
            check_graph_config(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_the_shipped_rig_config_passes():
    check_graph_config(REPO / "config" / "rig.yaml")


def test_a_misspelt_key_of_a_node_section_names_file_section_key_and_suggestion(tmp_path):
    path = _write(
        tmp_path, "/**/accumulator:\n  ros__parameters:\n    windw_duration_us: 20000\n"
    )
    assert _error(path) == (
        f"{path}: /**/accumulator: unknown parameter 'windw_duration_us' "
        "(did you mean 'window_duration_us'?)"
    )


@pytest.mark.parametrize("section", ["accumulator", "/rig/accumulator", "/**/accumulator"])
def test_every_spelling_of_a_node_section_is_checked_for_that_node(tmp_path, section):
    # poll_period_ms is a driver's parameter, not the accumulator's
    path = _write(tmp_path, f"{section}:\n  ros__parameters:\n    poll_period_ms: 5.0\n")
    message = _error(path)
    assert f"{section}: unknown parameter 'poll_period_ms'" in message


def test_a_wildcard_key_must_belong_to_some_graph_node(tmp_path):
    good = _write(tmp_path, "/**:\n  ros__parameters:\n    poll_period_ms: 2.0\n", "good.yaml")
    check_graph_config(good)  # only the drivers declare it: fine under /**
    bad = _write(tmp_path, "/**:\n  ros__parameters:\n    sim_sed: 3\n", "bad.yaml")
    message = _error(bad)
    assert message.startswith(f"{bad}: /**: unknown parameter 'sim_sed'")
    assert "(did you mean 'sim_seed'?)" in message


def test_rclpy_own_parameters_and_qos_overrides_are_allowed(tmp_path):
    path = _write(
        tmp_path,
        "/**:\n  ros__parameters:\n    use_sim_time: true\n"
        "/**/accumulator:\n  ros__parameters:\n"
        "    qos_overrides:\n      /rig/events:\n        subscription:\n          depth: 10\n",
    )
    check_graph_config(path)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("poll_period_ms: 0", "parameter 'poll_period_ms' = 0 is out of range: expected a number "
                              "in [0.1, 1000.0]"),
        ("poll_period_ms: fast", "parameter 'poll_period_ms' = 'fast' has the wrong type: "
                                 "expected a number in [0.1, 1000.0]"),
        ("packet_period_us: 2.5", "parameter 'packet_period_us' = 2.5 has the wrong type: "
                                  "expected an integer in [1, 1000000]"),
        ("source: hardwar", "parameter 'source' = 'hardwar' is not allowed: expected one of "
                            "'sim', 'hardware', 'raw', 'bag' (did you mean 'hardware'?)"),
        ("serial: 1234", "parameter 'serial' = 1234 has the wrong type: expected a string "
                         "(quote it in YAML)"),
        ("trigger_in_channels: [0, 5]", "parameter 'trigger_in_channels' = [0, 5] is out of "
                                        "range: expected a non-empty list of integers, each "
                                        "in [-1, 2]"),
    ],
)
def test_values_are_checked_against_their_param(tmp_path, line, expected):
    path = _write(tmp_path, f"/**/evk4_driver:\n  ros__parameters:\n    {line}\n")
    assert _error(path) == f"{path}: /**/evk4_driver: {expected}"


def test_an_int_is_a_fine_value_for_a_float_parameter(tmp_path):
    path = _write(tmp_path, "/**/flir_driver:\n  ros__parameters:\n    poll_period_ms: 5\n")
    check_graph_config(path)


def test_a_wildcard_value_names_the_node_whose_rule_it_breaks(tmp_path):
    path = _write(tmp_path, "/**:\n  ros__parameters:\n    sim_time_scale: 50.0\n")
    message = _error(path)
    assert message.startswith(f"{path}: /** (evk4_driver): parameter 'sim_time_scale' = 50.0")
    assert message.endswith("is out of range: expected a number in [0.001, 10.0]")


def test_a_section_naming_almost_a_graph_node_is_taken_for_a_typo(tmp_path):
    path = _write(tmp_path, "/**/acumulator:\n  ros__parameters:\n    window_mode: count\n")
    assert _error(path) == (
        f"{path}: /**/acumulator: no node is called 'acumulator' (did you mean 'accumulator'?)"
    )
    # a section for some other program's node is none of the graph's business
    other = _write(tmp_path, "/**/camera_info_relay:\n  ros__parameters:\n    x: 1\n", "o.yaml")
    check_graph_config(other)


def test_one_node_checks_its_own_sections_and_wildcard_keys_only(tmp_path):
    path = _write(
        tmp_path,
        "/**:\n  ros__parameters:\n    window_mode: count\n    poll_period_ms: 0\n"
        "/**/accumulator:\n  ros__parameters:\n    windw_duration_us: 1\n",
    )
    # the accumulator's section and the drivers' values are other processes' concern ...
    check_params_file(path, graph_tables(), node="segmentation")
    # ... but a driver refuses the value it would get, and the accumulator its misspelt key
    assert "(evk4_driver): parameter 'poll_period_ms' = 0 is out of range" in _error(
        path, node="evk4_driver"
    )
    assert "unknown parameter 'windw_duration_us'" in _error(path, node="accumulator")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/**:\n  ros__parameters:\n    a: [1, 2\n", "not valid YAML: line 4, column 1: "),
        ("- 1\n- 2\n", "expected node sections (a mapping) at the top level"),
        ("/**:\n  poll_period_ms: 3\n", "/**: expected 'ros__parameters:' with parameters"),
    ],
)
def test_a_malformed_file_is_one_line_naming_it(tmp_path, text, expected):
    path = _write(tmp_path, text)
    message = _error(path)
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_a_missing_file_is_one_line_naming_it(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"^cannot read parameter file '.*nope\.yaml': No such"):
        read_params_file(missing)


def test_the_command_line_is_read_like_rcl_reads_it():
    args = [
        "evk4_driver", "--params-file", "ignored.yaml", "--ros-args", "-r", "__node:=cam",
        "--params-file", "a.yaml", "--", "--ros-args", "--params-file", "b.yaml",
    ]
    assert params_files_in(args) == ["a.yaml", "b.yaml"]
    assert node_name_in(args, "evk4_driver") == "cam"
    assert node_name_in(["x", "--ros-args", "-r", "x:__node:=y"], "x") == "y"
    assert node_name_in(["x"], "evk4_driver") == "evk4_driver"


@pytest.mark.parametrize(
    ("section", "node", "matches"),
    [
        ("/**", "/rig/accumulator", True),
        ("/**/accumulator", "/rig/accumulator", True),
        ("/**/accumulator", "/accumulator", True),
        ("/rig/accumulator", "/rig/accumulator", True),
        ("/rig/*", "/rig/accumulator", True),
        ("accumulator", "/accumulator", True),
        ("accumulator", "/rig/accumulator", False),
        ("/other/accumulator", "/rig/accumulator", False),
        ("/**/segmentation", "/rig/accumulator", False),
    ],
)
def test_sections_match_nodes_like_rcl(section, node, matches):
    assert section_matches(section, node) is matches


def test_check_value_coerces_ints_for_floats_and_refuses_the_rest():
    number = Param("gain", 1.0, "gain", low=0.0, high=2.0)
    assert check_value(number, 2) == 2.0 and isinstance(check_value(number, 2), float)
    for bad in (True, "1.0", float("nan"), 2.5, -0.1):
        with pytest.raises(ParamValueError):
            check_value(number, bad)
    integer = Param("count", 3, "count", low=1)
    assert allowed(integer) == "an integer >= 1"
    with pytest.raises(ParamValueError, match="wrong type"):
        check_value(integer, 3.0)
    with pytest.raises(ParamValueError, match="wrong type"):
        check_value(Param("flag", False, "flag"), 1)
    assert allowed(Param("limit", 1.5, "limit", high=2.0)) == "a number <= 2.0"


def test_a_table_whose_default_breaks_its_own_rules_fails_on_import():
    with pytest.raises(ValueError, match="'period'"):
        Param("period", 0.0, "period", low=0.1)
    with pytest.raises(ValueError, match="low 2 > high 1"):
        Param("x", 1, "x", low=2, high=1)
