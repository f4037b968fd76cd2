"""The machine itself: Python, CPU architecture, and on a Jetson the board and its power mode.

A Jetson left in a low power mode runs every stage of the rig slower without any error, and an
interpreter older than the code runs nothing; both are cheapest to catch before launch. The
board files and query commands are parameters, so tests feed them files in a temporary folder.
"""

from __future__ import annotations

import platform
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from evseg_ros.doctor.check import ERROR, OK, WARN, Check
from evseg_ros.doctor.process import COMMAND_TIMEOUT_S, run_command

MIN_PYTHON = (3, 11)  # enum.StrEnum

TEGRA_RELEASE = Path("/etc/nv_tegra_release")
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
NVPMODEL_QUERY = ("nvpmodel", "-q")
JETPACK_QUERY = ("dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack")
#: L4T major release -> JetPack major release, when the nvidia-jetpack package says nothing
JETPACK_BY_L4T = {32: "4", 34: "5", 35: "5", 36: "6", 38: "7"}
POWER_MODE_FIX = "sudo nvpmodel -m 0 && sudo jetson_clocks"


def check_python() -> Check:
    """The interpreter: the code uses ``enum.StrEnum``, so Python 3.11 or newer."""
    version = ".".join(str(part) for part in sys.version_info[:3])
    venv = " (virtualenv)" if sys.prefix != sys.base_prefix else ""
    detail = f"{platform.python_implementation()} {version} at {sys.executable}{venv}"
    if sys.version_info[:2] < MIN_PYTHON:
        fix = (
            "use Python >= 3.11 (Ubuntu 24.04 / JetPack 7 ship 3.12); on an older system make a "
            "venv from a newer python3 and install the stack into it"
        )
        return Check("python", ERROR, f"{detail}: older than 3.11", fix)
    return Check("python", OK, detail)


class JetsonInfo(NamedTuple):
    """What the board files say about a Jetson."""

    model: str  # e.g. "NVIDIA Jetson AGX Orin Developer Kit"; "" when unknown
    l4t: str  # e.g. "36.4.3"; "" when unknown
    l4t_major: int | None


def read_jetson_info(
    tegra_release: Path = TEGRA_RELEASE, device_tree_model: Path = DEVICE_TREE_MODEL
) -> JetsonInfo | None:
    """Parse the L4T release file and the device-tree model; None when this is not a Jetson."""
    model = ""
    try:
        model = device_tree_model.read_bytes().replace(b"\x00", b"").decode(errors="replace")
        model = model.strip()
    except OSError:
        pass
    release = ""
    try:
        release = tegra_release.read_text(errors="replace")
    except OSError:
        pass
    if not release and "jetson" not in model.lower():
        return None
    # "# R36 (release), REVISION: 4.3, GCID: ..., BOARD: generic, EABI: aarch64, DATE: ..."
    found = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", release)
    if found is None:
        return JetsonInfo(model, "", None)
    major = int(found.group(1))
    return JetsonInfo(model, f"{major}.{found.group(2).rstrip('.')}", major)


def jetpack_release(
    info: JetsonInfo, query: Sequence[str] = JETPACK_QUERY, timeout_s: float = COMMAND_TIMEOUT_S
) -> str:
    """JetPack as the ``nvidia-jetpack`` package states it, else the series its L4T belongs to."""
    answer = run_command(query, timeout_s)
    version = answer.output.strip().split("+")[0] if answer.returncode == 0 else ""
    if re.fullmatch(r"\d+(\.\d+)*", version):
        return version
    if info.l4t_major in JETPACK_BY_L4T:
        return f"{JETPACK_BY_L4T[info.l4t_major]}.x"
    return "unknown"


def check_platform(
    machine: str | None = None,
    *,
    tegra_release: Path = TEGRA_RELEASE,
    device_tree_model: Path = DEVICE_TREE_MODEL,
    jetpack_query: Sequence[str] = JETPACK_QUERY,
) -> Check:
    """CPU architecture, and on a Jetson the module, L4T and JetPack releases."""
    machine = machine or platform.machine()
    system = f"{platform.system()} {platform.release()}"
    if machine in ("x86_64", "AMD64"):
        return Check("platform", OK, f"x86_64, {system}")
    if machine not in ("aarch64", "arm64"):
        return Check("platform", WARN, f"{machine}, {system}: only x86_64 and aarch64 are tried")
    info = read_jetson_info(tegra_release, device_tree_model)
    if info is None:
        return Check("platform", OK, f"aarch64, {system}, not a Jetson (no {tegra_release})")
    jetpack = jetpack_release(info, jetpack_query)
    l4t = f"L4T R{info.l4t}" if info.l4t else f"L4T release unknown ({tegra_release} unreadable)"
    module = info.model or "unknown module"
    return Check("platform", OK, f"Jetson: {module}, {l4t}, JetPack {jetpack}")


def check_power_mode(
    command: Sequence[str] = NVPMODEL_QUERY, timeout_s: float = COMMAND_TIMEOUT_S
) -> Check:
    """The Jetson power mode: anything below MAXN slows every stage of the rig."""
    answer = run_command(command, timeout_s)
    if not answer.found:
        return Check("power_mode", WARN, f"{command[0]} not found", POWER_MODE_FIX)
    if answer.timed_out:
        return Check("power_mode", WARN, f"{' '.join(command)}: no answer in {timeout_s:g} s")
    name = re.search(r"NV Power Mode:\s*(.+)", answer.output)
    number = re.search(r"^\s*(\d+)\s*$", answer.output, re.MULTILINE)
    if answer.returncode != 0 or name is None:
        text = answer.output.strip().splitlines()
        said = text[-1] if text else f"exit status {answer.returncode}"
        return Check("power_mode", WARN, f"{' '.join(command)} failed: {said}", POWER_MODE_FIX)
    mode = name.group(1).strip()
    mode_id = int(number.group(1)) if number else None
    detail = f"{mode}" + (f" (mode {mode_id})" if mode_id is not None else "")
    if mode_id == 0 or "MAXN" in mode.upper():
        return Check("power_mode", OK, detail)
    fix = f"{POWER_MODE_FIX} (mode 0 is MAXN on AGX Orin; /etc/nvpmodel.conf lists this module's)"
    return Check("power_mode", WARN, f"{detail}: not the maximum", fix)

