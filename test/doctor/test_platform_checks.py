"""Platform checks on board files and query commands in ``tmp_path``: Jetson detection, JetPack
release, the power mode from ``nvpmodel`` (present, absent, failing, hanging)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from evseg_ros.doctor.check import OK, WARN
from evseg_ros.doctor.platform_checks import (
    POWER_MODE_FIX,
    JetsonInfo,
    check_platform,
    check_power_mode,
    read_jetson_info,
)

ORIN_RELEASE = (
    "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
    "DATE: Wed Jan  8 01:49:37 UTC 2025\n# KERNEL_VARIANT: oot\n"
)


def _board(tmp_path: Path, release: str | None, model: bytes | None) -> tuple[Path, Path]:
    tegra, tree = tmp_path / "nv_tegra_release", tmp_path / "model"
    if release is not None:
        tegra.write_text(release)
    if model is not None:
        tree.write_bytes(model)
    return tegra, tree


def _script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_jetson_release_and_model_are_read(tmp_path):
    tegra, tree = _board(tmp_path, ORIN_RELEASE, b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    info = read_jetson_info(tegra, tree)
    assert info == JetsonInfo("NVIDIA Jetson AGX Orin Developer Kit", "36.4.3", 36)
    check = check_platform(
        "aarch64", tegra_release=tegra, device_tree_model=tree,
        jetpack_query=[str(tmp_path / "no-such-dpkg-query")],
    )
    assert check.status == OK
    assert check.detail == (
        "Jetson: NVIDIA Jetson AGX Orin Developer Kit, L4T R36.4.3, JetPack 6.x"
    )


def test_jetpack_version_comes_from_the_package_when_installed(tmp_path):
    tegra, tree = _board(tmp_path, ORIN_RELEASE, None)
    query = _script(tmp_path, "dpkg-query", "printf '6.2+b77'")
    check = check_platform(
        "aarch64", tegra_release=tegra, device_tree_model=tree, jetpack_query=[str(query)]
    )
    assert check.detail == "Jetson: unknown module, L4T R36.4.3, JetPack 6.2"


@pytest.mark.parametrize(
    ("release", "model", "expected"),
    [
        (None, None, None),
        (None, b"Raspberry Pi 5 Model B Rev 1.0\x00", None),
        (None, b"NVIDIA Jetson Orin Nano Developer Kit\x00",
         JetsonInfo("NVIDIA Jetson Orin Nano Developer Kit", "", None)),
        ("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref\n", None,
         JetsonInfo("", "35.4.1", 35)),
        ("garbled\n", None, JetsonInfo("", "", None)),
    ],
)
def test_jetson_detection(tmp_path, release, model, expected):
    tegra, tree = _board(tmp_path, release, model)
    assert read_jetson_info(tegra, tree) == expected


def test_aarch64_without_board_files_is_not_a_jetson(tmp_path):
    tegra, tree = _board(tmp_path, None, None)
    check = check_platform("aarch64", tegra_release=tegra, device_tree_model=tree)
    assert check.status == OK
    assert "not a Jetson" in check.detail


@pytest.mark.parametrize(
    ("output", "status", "shown"),
    [
        ("NV Power Mode: MAXN\n0", OK, "MAXN (mode 0)"),
        ("NVPM WARN: fan mode is not set!\nNV Power Mode: 15W\n2", WARN, "15W (mode 2)"),
        ("NV Power Mode: MAXN_SUPER\n2", OK, "MAXN_SUPER (mode 2)"),
    ],
)
def test_power_mode_from_nvpmodel(tmp_path, output, status, shown):
    script = _script(tmp_path, "nvpmodel", f"printf '{output}\\n'")
    check = check_power_mode([str(script), "-q"])
    assert check.status == status
    assert check.detail.startswith(shown)
    if status == WARN:
        assert check.fix.startswith("sudo nvpmodel -m 0 && sudo jetson_clocks")


def test_power_mode_without_nvpmodel_failing_or_hanging(tmp_path):
    absent = check_power_mode([str(tmp_path / "nvpmodel"), "-q"])
    assert absent.status == WARN
    assert "not found" in absent.detail
    assert absent.fix == POWER_MODE_FIX
    failing = _script(tmp_path, "failing", "echo 'NVPM ERROR: need root' >&2; exit 1")
    assert check_power_mode([str(failing)]).detail.endswith("NVPM ERROR: need root")
    hanging = _script(tmp_path, "hanging", "exec sleep 30")
    check = check_power_mode([str(hanging)], timeout_s=0.3)
    assert check.status == WARN
    assert "no answer in 0.3 s" in check.detail
