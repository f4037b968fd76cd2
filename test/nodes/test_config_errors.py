"""A node or ``evseg run`` that cannot start with its configuration says why in one line.

Each case starts the real executable with a bad parameter file (or calibration, or config path)
and expects exactly one line on stderr naming what to fix (the parameter, the bad value and what
is allowed, or the file), exit status 2, and no traceback: it used to be a 20-40 line traceback,
or nothing at all for a misspelt key.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
START_TIMEOUT_S = 120
BROKEN_CALIBRATION = "event_camera: [1, 2\n"


def _run(command: list[str], cwd: Path) -> tuple[int, list[str]]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("AMENT_PREFIX_PATH", None)  # a plain shell, no ROS environment sourced
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    process = subprocess.run(
        command, check=False, cwd=cwd, env=env, capture_output=True, text=True,
        timeout=START_TIMEOUT_S,
    )
    return process.returncode, process.stderr.splitlines()


def _node(name: str, params_file: Path, *ros_args: str) -> list[str]:
    script = BIN / name
    if not script.exists():
        pytest.skip(f"console script {name} not installed next to {sys.executable}")
    return [str(script), "--ros-args", "--params-file", str(params_file), *ros_args]


def _evseg_run(*args: str) -> list[str]:
    return [sys.executable, "-m", "evseg_ros.cli", "run", *args]


def _params(tmp_path: Path, section: str, line: str, name: str = "params.yaml") -> Path:
    path = tmp_path / name
    path.write_text(f"{section}:\n  ros__parameters:\n    {line}\n")
    return path


def _one_line(result: tuple[int, list[str]]) -> str:
    status, lines = result
    assert status == 2, lines
    assert len(lines) == 1, "\n".join(lines)
    return lines[0]


@pytest.mark.parametrize(
    ("node", "line", "expected"),
    [
        (
            "accumulator", "windw_duration_us: 20000",
            "unknown parameter 'windw_duration_us' (did you mean 'window_duration_us'?)",
        ),
        (
            "evk4_driver", "poll_period_ms: 0",
            "parameter 'poll_period_ms' = 0 is out of range: expected a number in [0.1, 1000.0]",
        ),
        (
            "flir_driver", "exposure_us: long",
            "parameter 'exposure_us' = 'long' has the wrong type: expected a number in "
            "[1.0, 30000000.0]",
        ),
        (
            "evk4_driver", "source: camera",
            "parameter 'source' = 'camera' is not allowed: expected one of 'sim', 'hardware', "
            "'raw', 'bag'",
        ),
    ],
)
def test_a_bad_params_file_stops_the_node_with_one_line(tmp_path, node, line, expected):
    path = _params(tmp_path, f"/**/{node}", line)
    message = _one_line(_run(_node(node, path), tmp_path))
    assert message == f"{node}: {path}: /**/{node}: {expected}"


def test_a_bad_override_on_the_command_line_names_the_parameter(tmp_path):
    path = _params(tmp_path, "/**", "sim_seed: 1")
    message = _one_line(_run(_node("evk4_driver", path, "-p", "poll_period_ms:=0.0"), tmp_path))
    assert message == (
        "evk4_driver: /evk4_driver: parameter 'poll_period_ms' = 0.0 is out of range: "
        "expected a number in [0.1, 1000.0]"
    )


def test_a_broken_calibration_file_stops_the_node_with_one_line_naming_it(tmp_path):
    calibration = tmp_path / "calibration.yaml"
    calibration.write_text(BROKEN_CALIBRATION)
    path = _params(tmp_path, "/**", f"calibration_file: {calibration}")
    message = _one_line(_run(_node("evk4_driver", path), tmp_path))
    assert message.startswith(f"evk4_driver: calibration file '{calibration}' is not valid YAML")
    assert "line 2, column 1" in message


def test_evseg_run_with_a_missing_config_says_where_it_looked(tmp_path):
    message = _one_line(_run(_evseg_run("--config", "nope.yaml"), tmp_path))
    assert message == (
        f"evseg run: config file 'nope.yaml' not found (looked for {tmp_path / 'nope.yaml'}, "
        f"{REPO / 'nope.yaml'})"
    )


def test_evseg_run_reads_a_relative_config_from_the_current_directory(tmp_path):
    _params(tmp_path, "/**/accumulator", "windw_duration_us: 20000", "mine.yaml")
    message = _one_line(_run(_evseg_run("--config", "mine.yaml"), tmp_path))
    assert message == (
        "evseg run: mine.yaml: /**/accumulator: unknown parameter 'windw_duration_us' "
        "(did you mean 'window_duration_us'?)"
    )


def test_evseg_run_with_a_value_out_of_range_stops_before_any_node(tmp_path):
    _params(tmp_path, "/**", "sim_time_scale: 0", "mine.yaml")
    message = _one_line(_run(_evseg_run("--config", "mine.yaml"), tmp_path))
    assert message == (
        "evseg run: mine.yaml: /** (evk4_driver): parameter 'sim_time_scale' = 0 is out of "
        "range: expected a number in [0.001, 10.0]"
    )


def test_evseg_run_with_a_broken_calibration_is_one_line(tmp_path):
    (tmp_path / "calibration.yaml").write_text(BROKEN_CALIBRATION)
    config = (REPO / "config" / "rig.yaml").read_text().replace(
        "calibration_file: config/calibration/sim_rig.yaml",
        "calibration_file: calibration.yaml",
    )
    (tmp_path / "rig.yaml").write_text(config)
    message = _one_line(_run(_evseg_run("--config", "rig.yaml", "--duration", "1"), tmp_path))
    assert message.startswith(
        "evseg run: calibration file 'calibration.yaml' is not valid YAML: line 2, column 1"
    )


def test_evseg_run_with_a_missing_model_is_one_line(tmp_path):
    message = _one_line(_run(_evseg_run("--model", "missing.onnx", "--duration", "1"), tmp_path))
    assert message == "evseg run: model file 'missing.onnx' not found (--model)"
