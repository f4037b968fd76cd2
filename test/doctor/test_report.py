"""The report: every real check on this machine is a well-formed row, a check that breaks
becomes an ``error`` row, and the needed rows decide the table's verdict and the exit status."""

from __future__ import annotations

import json
from pathlib import Path

from evseg_ros.doctor.check import ERROR, MISSING, OK, STATUSES, WARN, Check
from evseg_ros.doctor.report import (
    BASE_NEEDS,
    exit_code,
    format_json,
    format_table,
    guarded,
    needed_checks,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_every_check_is_a_well_formed_row(checks):
    for check in checks.values():
        assert check.status in STATUSES, check
        assert check.detail, check
        assert "Traceback" not in check.detail, check
        if check.status in (MISSING, ERROR):
            assert check.fix, f"{check.name} is {check.status} without a fix"
    for name in ("python", "platform", "torch", "cuda", "tensorrt", "engine_cache", "onnxruntime",
                 "onnxruntime_gpu", "numba", "rclpy", "fastdds_profile", "shm", "metavision_sdk",
                 "evk4_camera", "pyspin", "flir_camera", "model", "ros_domain"):
        assert name in checks


def test_python_dependencies_are_present_here(checks):
    for name in BASE_NEEDS:
        assert checks[name].status == OK, checks[name]
    assert checks["model"].status == OK
    assert checks["model"].detail.startswith(str(REPO_ROOT / "models" / "cacd_b0_sim.onnx"))


def test_a_check_that_breaks_becomes_an_error_row():
    def broken() -> Check:
        raise RuntimeError("boom\nsecond line")

    check = guarded("broken", broken)
    assert check.status == ERROR
    assert check.detail == "the check itself failed: RuntimeError: boom"
    assert check.fix


ROWS = [
    Check("python", OK, "CPython 3.12"),
    Check("cuda", MISSING, "torch is a CPU-only build", "install a CUDA build of torch"),
    Check("tensorrt", MISSING, "not importable", "pip install tensorrt"),
    Check("ros_domain", WARN, "ROS_DOMAIN_ID=150", "use 0..101"),
]


def test_needed_rows_decide_the_verdict():
    assert needed_checks(["tensorrt", "gpu"]) == [*BASE_NEEDS, "tensorrt", "engine_cache", "cuda"]
    assert exit_code(ROWS, []) == 0, "missing rows nobody needs, and warnings, do not fail"
    assert exit_code(ROWS, ["gpu"]) == 1
    table = format_table(ROWS, ["gpu"]).splitlines()
    assert table[0].split() == ["check", "status", "detail"]
    assert table[1].startswith("* python ")
    assert table[2].startswith("* cuda ")
    assert table[3].strip() == "fix: install a CUDA build of torch"
    assert table[4].startswith("  tensorrt ")
    assert table[-1] == "* needed (python deps + gpu): missing or broken: cuda"
    assert format_table(ROWS, []).endswith("* needed (python deps): all present")
    report = json.loads(format_json(ROWS, ["gpu"]))
    assert report["checks"][1] == {
        "name": "cuda", "status": MISSING, "detail": "torch is a CPU-only build",
        "fix": "install a CUDA build of torch",
    }
    assert report["needed"] == [*BASE_NEEDS, "cuda"]
    assert report["failed"] == ["cuda"]
    assert report["exit_code"] == 1
