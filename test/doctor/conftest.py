"""Fixtures of the doctor tests: every check, run once for real on this machine."""

from __future__ import annotations

import pytest

from evseg_ros.doctor.check import Check
from evseg_ros.doctor.report import run_checks


@pytest.fixture(scope="session")
def checks() -> dict[str, Check]:
    """Every check by name, from one real run (the camera discovery and subprocesses are slow)."""
    found = run_checks()
    names = [check.name for check in found]
    assert len(names) == len(set(names)), names
    return {check.name: check for check in found}
