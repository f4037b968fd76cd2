"""After set-up, ``evseg`` and the node executables are on the virtualenv's PATH.

scripts/bootstrap.sh installs evseg_ros itself editable (``pip install --no-deps -e .``): its
console scripts go to the venv's ``bin/``, while colcon's ``setup.py install`` puts them in
``lib/evseg_ros`` for ``ros2 run`` (test_ros2_launch.py checks that side).
"""

from __future__ import annotations

import subprocess
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest

from evseg_ros.nodes.graph import GRAPH

REPO = Path(__file__).resolve().parents[2]
EXECUTABLES = ("evseg", "recorder", *(spec.name for spec in GRAPH))


@pytest.fixture(scope="module")
def distribution() -> metadata.Distribution:
    try:
        return metadata.distribution("evseg_ros")
    except metadata.PackageNotFoundError:
        pytest.fail("evseg_ros is not installed in this venv: run scripts/bootstrap.sh")


def test_the_venv_runs_this_checkout(distribution):
    import evseg_ros

    assert Path(evseg_ros.__file__).resolve().parent == REPO / "evseg_ros"
    # editable: nothing of the package was copied into the venv
    assert not any(
        str(path).startswith("evseg_ros/") for path in (distribution.files or [])
    ), "evseg_ros is installed as a copy, not editable"


def test_console_scripts_are_in_the_venv_bin(distribution):
    scripts = {
        ep.name: ep.value for ep in distribution.entry_points if ep.group == "console_scripts"
    }
    assert set(EXECUTABLES) <= set(scripts)
    bin_dir = Path(sysconfig.get_path("scripts"))
    for name in EXECUTABLES:
        assert (bin_dir / name).is_file(), f"{name} is not in {bin_dir}"
    assert scripts["recorder"] == "evseg_ros.nodes.recorder:main"


def test_evseg_runs_from_the_venv_bin():
    evseg = Path(sysconfig.get_path("scripts")) / "evseg"
    result = subprocess.run(
        [str(evseg), "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()
