"""``evseg backends`` and ``evseg build-engine`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from evseg_ros.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_backends_table_names_each_backend_and_why(capsys) -> None:
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    for name in ("tensorrt", "pytorch", "onnxruntime"):
        assert name in out
    if not torch.cuda.is_available():
        assert "no CUDA GPU visible to torch" in out
        assert "* onnxruntime  cpu     yes" in out.replace("*  ", "* ")


def test_backends_json_agrees_with_what_auto_loads(capsys, tiny_onnx_model) -> None:
    from evseg_ros.runtime import create_backend

    assert main(["backends", "--model", str(tiny_onnx_model), "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    backend = create_backend("auto", tiny_onnx_model)
    assert table["auto"] == f"{backend.name}/{backend.device.split(':')[0]}"
    assert {row["name"] for row in table["backends"]} == {"tensorrt", "pytorch", "onnxruntime"}


def test_backends_with_cpu_only_device_and_a_bad_one(capsys) -> None:
    assert main(["backends", "--device", "cpu", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["backends"]
    assert all(r["reason"].startswith("device is cpu") for r in rows if r["device"] != "cpu")
    assert main(["backends", "--device", "gpu0"]) == 2
    assert "cuda:N" in capsys.readouterr().err


def test_build_engine_help_and_its_error_without_tensorrt() -> None:
    run = [sys.executable, "-m", "evseg_ros.cli", "build-engine"]
    helped = subprocess.run([*run, "--help"], cwd=REPO, capture_output=True, text=True, check=False)
    assert helped.returncode == 0
    for option in ("--precision", "--calibration", "--cache-dir", "--force", "--size"):
        assert option in helped.stdout
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("TensorRT is installed here")
    failed = subprocess.run(run, cwd=REPO, capture_output=True, text=True, check=False)
    assert failed.returncode == 2
    assert "TensorRT is not installed" in failed.stderr and "pip install tensorrt" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_build_engine_needs_a_gpu_even_with_tensorrt(capsys, fake_tensorrt) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["build-engine", "--device", "cpu"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err
