"""Compute checks: the real torch / CUDA / TensorRT / ONNX Runtime rows on this machine, the
engine cache folder and the model file on folders in ``tmp_path``."""

from __future__ import annotations

import os
import re

import pytest

from evseg_ros.doctor.check import ERROR, MISSING, OK
from evseg_ros.doctor.compute_checks import check_engine_cache, check_model, tensorrt_install_hint


def test_cuda_row_matches_torch(checks):
    import torch

    cuda = checks["cuda"]
    if torch.cuda.is_available():
        assert cuda.status == OK
        assert torch.cuda.get_device_name(0) in cuda.detail
        assert re.search(r"sm_\d+", cuda.detail)
    else:
        assert cuda.status == MISSING
        assert torch.__version__ in cuda.detail
        assert "torch" in cuda.fix


def test_tensorrt_missing_says_how_to_install(checks):
    trt = checks["tensorrt"]
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert trt.status == MISSING
        if os.uname().machine == "x86_64":
            assert "pip install tensorrt" in trt.fix
            assert "CUDA 12" in trt.fix
    else:
        assert trt.status == OK


def test_jetson_tensorrt_hint_is_jetpack():
    hint = tensorrt_install_hint("aarch64", jetson=True)
    assert "python3-libnvinfer" in hint
    assert "system python3" in hint


def test_onnxruntime_gpu_row_matches_its_providers(checks):
    import onnxruntime

    has_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    assert (checks["onnxruntime_gpu"].status == OK) == has_cuda
    assert onnxruntime.__version__ in checks["onnxruntime"].detail


def test_engine_cache_folder(tmp_path):
    check = check_engine_cache(tmp_path / "a" / "b")
    assert check.status == OK
    assert check.detail == f"{tmp_path / 'a' / 'b'} (given), created by the first build"
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "cacd_b0_sim.fp16.1034x617.engine").write_bytes(b"0")
    (tmp_path / "cache" / "timing.cache").write_bytes(b"0")
    check = check_engine_cache(tmp_path / "cache")
    assert check.status == OK
    assert check.detail.endswith("(given), 1 engine(s)")
    (tmp_path / "file").write_text("")
    check = check_engine_cache(tmp_path / "file")
    assert check.status == ERROR
    assert "EVSEG_ENGINE_CACHE" in check.fix


def test_engine_cache_is_the_backends_folder():
    from evseg_ros.runtime.engine_cache import CACHE_ENV, cache_dir

    check = check_engine_cache()
    origin = CACHE_ENV if os.environ.get(CACHE_ENV) else "default"
    assert check.detail.startswith(f"{cache_dir()} ({origin})")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_engine_cache_not_writable(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        check = check_engine_cache(locked)
        assert check.status == ERROR
        assert "not writable" in check.detail
    finally:
        locked.chmod(0o700)


def test_model_missing_or_lfs_pointer(tmp_path):
    assert check_model(path=tmp_path / "absent.onnx").status == MISSING
    pointer = tmp_path / "pointer.onnx"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n")
    check = check_model(path=pointer)
    assert check.status == ERROR
    assert check.fix == "git lfs pull"
