"""The onboard files beside the doctor: the environment file systemd reads and the unit that runs
``evseg doctor`` before the rig."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ONBOARD = REPO_ROOT / "config" / "onboard"


#: names the code does not read but ROS 2, Fast DDS or CUDA do
STANDARD_NAMES = {
    "ROS_DOMAIN_ID", "RMW_IMPLEMENTATION", "FASTDDS_DEFAULT_PROFILES_FILE",
    "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_STATIC_PEERS", "ROS_LOCALHOST_ONLY", "ROS_LOG_DIR",
    "RCUTILS_COLORIZED_OUTPUT", "CUDA_VISIBLE_DEVICES", "CUDA_MODULE_LOADING", "PYTHONUNBUFFERED",
}


def _env_file() -> dict[str, str]:
    values = {}
    for raw in (ONBOARD / "evseg.env").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", name), line
        values[name] = value
    return values


def test_env_file_names_are_read_by_the_code_or_standard():
    values = _env_file()
    assert values
    sources = "\n".join(path.read_text() for path in (REPO_ROOT / "evseg_ros").rglob("*.py"))
    for name in values:
        if name.startswith("EVSEG_"):
            assert re.search(rf"\b{name}\b", sources), f"{name}: no code in evseg_ros reads it"
        else:
            assert name in STANDARD_NAMES, f"{name}: neither read by evseg_ros nor a known name"


def test_env_file_values_need_no_shell():
    """systemd reads EnvironmentFile literally: no ~, no $VAR, no quotes to strip."""
    for name, value in _env_file().items():
        assert "~" not in value and "$" not in value, f"{name}={value}"
    assert _env_file()["EVSEG_ENGINE_CACHE"].startswith("/")


def _unit() -> dict[str, list[str]]:
    entries: dict[str, list[str]] = {}
    for line in (ONBOARD / "evseg.service").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";")):
            key, _, value = line.partition("=")
            entries.setdefault(key.strip(), []).append(value.strip())
    return entries


def test_unit_launch_arguments_exist():
    unit = _unit()
    core = (REPO_ROOT / "launch" / "rig_core.launch.py").read_text()
    declared = set(re.findall(r'DeclareLaunchArgument\(\s*"(\w+)"', core))
    (start,) = unit["ExecStart"]
    assert "ros2 launch evseg_ros rig.launch.py" in start
    for name in re.findall(r"(\w+):=", start):
        assert name in declared, f"launch argument {name!r} is not declared"
    assert any("doctor --need gpu" in line for line in unit["ExecStartPre"])
    assert unit["EnvironmentFile"] == ["/etc/evseg/evseg.env"]
    assert unit["Restart"] == ["on-failure"]
    for key in ("User", "RestartSec", "LimitMEMLOCK", "LimitRTPRIO", "After"):
        assert key in unit, key


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not found")
def test_unit_passes_systemd_analyze_verify(tmp_path):
    unit = tmp_path / "evseg.service"
    unit.write_text((ONBOARD / "evseg.service").read_text())
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60, check=False)
    problems = [line for line in done.stderr.splitlines() if str(unit) in line]
    assert done.returncode == 0 and not problems, done.stderr
