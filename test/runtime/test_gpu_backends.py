"""The GPU backends with device tensors: written for real, skipped where there is no GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evseg_ros.runtime import create_backend

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _inputs(height: int = 240, width: int = 320, seed: int = 0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    events = rng.poisson(0.3, (3, height, width)).astype(np.float32)
    return image, events


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a == b).mean())


@needs_cuda
@pytest.mark.parametrize(
    ("precision", "compiled"), [("fp16", False), ("bf16", False), ("fp16", True)]
)
def test_torch_cuda_matches_the_cpu_reference(
    tiny_onnx_model, precision: str, compiled: bool
) -> None:
    image, events = _inputs()
    reference = create_backend("pytorch", tiny_onnx_model, device="cpu").infer(image, events).mask
    backend = create_backend(
        "pytorch",
        tiny_onnx_model,
        device="cuda",
        precision=precision,
        compile=compiled,
        network_width=320,
        network_height=240,
    )
    assert backend.device.startswith("cuda") and backend.precision == precision
    gpu_image = torch.from_numpy(image).cuda()
    gpu_events = torch.from_numpy(events).cuda()
    for _ in range(3):  # compiled: warm-up and CUDA graph capture
        result = backend.infer(gpu_image, gpu_events)
    assert isinstance(result.mask, np.ndarray) and result.mask.shape == (240, 320)
    assert _agreement(result.mask, reference) > 0.98  # half precision flips near-ties only


@needs_cuda
def test_onnxruntime_cuda_binds_device_tensors(tiny_onnx_model) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime has no CUDA provider here (onnxruntime-gpu not installed)")
    image, events = _inputs()
    reference = create_backend("onnxruntime", tiny_onnx_model, device="cpu").infer(image, events)
    backend = create_backend("onnxruntime", tiny_onnx_model, device="cuda")
    assert backend.device.startswith("cuda")
    result = backend.infer(torch.from_numpy(image).cuda(), torch.from_numpy(events).cuda())
    assert _agreement(result.mask, reference.mask) > 0.99


@needs_cuda
def test_auto_on_a_gpu_takes_a_gpu_backend_and_says_why_not_better(tiny_onnx_model) -> None:
    backend = create_backend("auto", tiny_onnx_model, network_width=320, network_height=240)
    assert backend.device.startswith("cuda")
    if backend.name != "tensorrt":
        assert "tensorrt/cuda" in backend.selection


def test_half_precision_on_the_cpu_is_refused(tiny_onnx_model) -> None:
    from evseg_ros.runtime.errors import RuntimeBackendError

    with pytest.raises(RuntimeBackendError, match="needs a GPU"):
        create_backend("pytorch", tiny_onnx_model, device="cpu", precision="fp16")
