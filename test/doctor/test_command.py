"""The ``evseg doctor`` command: exit status and JSON, ``--need`` parsing, the ``evseg``
subcommand, ``python -m evseg_ros.doctor`` as its own process, and a standard-library-only
import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evseg_ros import doctor
from evseg_ros.doctor import ERROR, MISSING, OK

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_default_exit_is_0_and_need_gpu_is_1_without_a_gpu(capsys):
    import torch

    assert doctor.main([]) == 0
    table = capsys.readouterr().out
    assert "all present" in table
    assert "fix: " in table
    code = doctor.main(["--need", "gpu"])
    out = capsys.readouterr().out
    if torch.cuda.is_available():
        assert code == 0
    else:
        assert code == 1
        assert "missing or broken: cuda" in out


def test_json_output_parses(capsys):
    code = doctor.main(["--json", "--need", "evk4,shm"])
    report = json.loads(capsys.readouterr().out)
    assert report["exit_code"] == code
    assert {"name", "status", "detail", "fix"} <= set(report["checks"][0])
    assert "metavision_sdk" in report["needed"] and "shm" in report["needed"]
    statuses = {row["name"]: row["status"] for row in report["checks"]}
    failing = [name for name in report["needed"] if statuses[name] in (MISSING, ERROR)]
    assert report["failed"] == failing
    assert code == (1 if failing else 0)


def test_unknown_need_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stop:
        doctor.main(["--need", "gpu,warp-drive"])
    assert stop.value.code == 2
    assert "unknown need 'warp-drive'" in capsys.readouterr().err


def test_register_adds_the_subcommand():
    import argparse

    parser = argparse.ArgumentParser(prog="evseg")
    doctor.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["doctor", "--json", "--need", "gpu,tensorrt"])
    assert args.func is doctor.run
    assert args.json is True
    assert args.need == ["gpu", "tensorrt"]


def test_module_runs_as_a_process_outside_the_repo(tmp_path):
    """The command as a unit file starts it: its own process, another working directory."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "evseg_ros.doctor", "--json", "--need", "flir"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    report = json.loads(done.stdout)
    assert done.returncode == report["exit_code"]
    statuses = {row["name"]: row["status"] for row in report["checks"]}
    assert done.returncode == (1 if statuses["flir_camera"] != OK else 0)
    model = next(row for row in report["checks"] if row["name"] == "model")
    assert model["status"] == OK


def test_importing_the_package_loads_nothing_heavy():
    """Every module of the package, ``__main__`` included, imports the standard library only."""
    code = (
        "import importlib, pkgutil, sys, evseg_ros.doctor as package; "
        "[importlib.import_module(f'evseg_ros.doctor.{info.name}') "
        " for info in pkgutil.iter_modules(package.__path__)]; "
        "print([m for m in ('torch', 'rclpy', 'onnxruntime', 'numba', 'tensorrt', "
        "'evseg_ros.sources', 'evseg_ros.runtime', 'evseg_ros.paths') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert done.stdout.strip() == "[]"
