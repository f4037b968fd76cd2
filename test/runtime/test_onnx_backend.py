"""ONNX Runtime backend: contract checks at load time, inference, resizing and errors."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto

from evseg_ros.labels import DSEC_11
from evseg_ros.runtime import (
    BACKENDS,
    ModelNotFoundError,
    RuntimeBackendError,
    SegmentationBackend,
    create_backend,
)
from evseg_ros.runtime.backend import to_network_inputs
from evseg_ros.runtime.onnx_backend import OnnxRuntimeBackend, select_providers

SHIPPED_MODEL = Path(__file__).resolve().parents[2] / "models" / "cacd_b0_sim.onnx"


def _frame(height: int = 24, width: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Left half: green dominant (class 1); right half: blue dominant (class 2)."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2, 1] = 200
    image[:, width // 2 :, 2] = 200
    return image, np.zeros((3, height, width), np.float32)


def _expected_mask(height: int = 24, width: int = 32) -> np.ndarray:
    mask = np.full((height, width), 2, np.uint8)
    mask[:, : width // 2] = 1
    return mask


@pytest.mark.parametrize("name", ["onnxruntime", "auto"])
def test_contract_via_create_backend(tmp_path, name: str, argmax_model) -> None:
    backend = create_backend(name, argmax_model(tmp_path / "m.onnx"), return_logits=True)
    assert isinstance(backend, SegmentationBackend)
    assert backend.name == "onnxruntime"
    assert backend.device == "cpu" or backend.device.startswith("cuda")
    result = backend.infer(*_frame())
    assert result.mask.dtype == np.uint8
    np.testing.assert_array_equal(result.mask, _expected_mask())
    assert result.logits is not None
    assert result.logits.shape == (3, 24, 32)
    assert set(result.timings) == {"preprocess", "inference", "postprocess"}
    assert all(v >= 0 for v in result.timings.values())


def test_auto_logs_its_choice(tmp_path, caplog, argmax_model) -> None:
    with caplog.at_level(logging.INFO, logger="evseg_ros.runtime.backend"):
        create_backend("auto", argmax_model(tmp_path / "m.onnx"))
    assert "onnxruntime" in caplog.text


def test_logits_not_copied_unless_asked(tmp_path, argmax_model) -> None:
    backend = create_backend("onnxruntime", argmax_model(tmp_path / "m.onnx"))
    assert backend.infer(*_frame()).logits is None


def test_resizes_to_network_size_and_back(tmp_path, argmax_model) -> None:
    backend = create_backend(
        "onnxruntime",
        argmax_model(tmp_path / "m.onnx"),
        network_width=16,
        network_height=12,
        return_logits=True,
    )
    assert backend.network_size == (16, 12)
    result = backend.infer(*_frame(24, 32))
    assert result.mask.shape == (24, 32)
    np.testing.assert_array_equal(result.mask, _expected_mask(24, 32))
    assert result.logits.shape == (3, 12, 16)


def test_static_model_size_is_used(tmp_path, argmax_model) -> None:
    path = argmax_model(tmp_path / "m.onnx", spatial=(12, 16))
    backend = OnnxRuntimeBackend(path)
    assert backend.network_size == (16, 12)
    np.testing.assert_array_equal(backend.infer(*_frame(24, 32)).mask, _expected_mask(24, 32))
    with pytest.raises(RuntimeBackendError, match="fixed input size"):
        OnnxRuntimeBackend(path, network_width=32, network_height=24)


def test_event_resizing_keeps_counts_per_pixel() -> None:
    image = np.zeros((24, 32, 3), np.uint8)
    events = np.zeros((3, 24, 32), np.float32)
    events[0] = 4.0
    events[2, :, :16] = 0.75
    img_t, ev_t = to_network_inputs(image, events, (16, 12))
    assert img_t.shape == ev_t.shape == (1, 3, 12, 16)
    np.testing.assert_allclose(ev_t[0, 0], 4.0)
    assert set(np.unique(ev_t[0, 2])) <= {0.0, 0.75}


def test_missing_model_names_path(tmp_path) -> None:
    missing = tmp_path / "nope" / "model.onnx"
    with pytest.raises(ModelNotFoundError) as info:
        create_backend("onnxruntime", missing)
    assert str(missing) in str(info.value)
    assert "evseg train --config config/train/cacd_b0_sim.yaml" in str(info.value)
    assert "evseg export" in str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, RuntimeBackendError)


def test_corrupt_file(tmp_path) -> None:
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(b"\x08\x07garbage that is not a protobuf" * 10)
    with pytest.raises(RuntimeBackendError, match=r"corrupt\.onnx"):
        create_backend("auto", path)


def test_wrong_input_names(tmp_path, argmax_model) -> None:
    path = argmax_model(tmp_path / "m.onnx", input_names=("rgb", "events"))
    with pytest.raises(RuntimeBackendError, match=r"inputs are \['events', 'rgb'\]") as info:
        create_backend("onnxruntime", path)
    assert "m.onnx" in str(info.value)


def test_wrong_mask_type(tmp_path, argmax_model) -> None:
    path = argmax_model(tmp_path / "m.onnx", mask_type=TensorProto.INT64)
    with pytest.raises(RuntimeBackendError, match="mask"):
        create_backend("onnxruntime", path)


def test_label_set_check(tmp_path, argmax_model) -> None:
    path = argmax_model(tmp_path / "m.onnx", label_set="cityscapes19")
    with pytest.raises(RuntimeBackendError, match="label set"):
        OnnxRuntimeBackend(path, expected_label_set="dsec11")


def test_unknown_backend(tmp_path, argmax_model) -> None:
    with pytest.raises(ValueError, match="openvino") as info:
        create_backend("openvino", argmax_model(tmp_path / "m.onnx"))
    for known in ("auto", "tensorrt", *BACKENDS):
        assert known in str(info.value)


def test_tensorrt_without_tensorrt_says_what_to_install(tmp_path, argmax_model) -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    with pytest.raises(RuntimeBackendError, match="TensorRT is not installed") as info:
        create_backend("tensorrt", argmax_model(tmp_path / "m.onnx"))
    assert "pip install tensorrt" in str(info.value) and "evseg doctor" in str(info.value)


def test_bad_input_shapes(tmp_path, argmax_model) -> None:
    backend = create_backend("onnxruntime", argmax_model(tmp_path / "m.onnx"))
    image, events = _frame()
    with pytest.raises(ValueError, match="events"):
        backend.infer(image, events[:, :10])
    with pytest.raises(ValueError, match="uint8"):
        backend.infer(image.astype(np.float32), events)


def test_provider_selection() -> None:
    assert select_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    both = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert select_providers(both) == both
    assert select_providers(both, "cpu") == ["CPUExecutionProvider"]
    with pytest.raises(RuntimeBackendError, match="cuda"):
        select_providers(["CPUExecutionProvider"], "cuda")


def test_pytorch_backend_runs_a_trainer_checkpoint_like_its_onnx_export(
    tmp_path, write_trainer_checkpoint
) -> None:
    torch = pytest.importorskip("torch")
    from evseg_ros.model.cacd import CACDConfig, CACDNet
    from evseg_ros.model.export import export_checkpoint

    torch.manual_seed(0)
    config = CACDConfig(backbone="mit_e0", decoder_channels=16, fusion_attention_stages=(3,))
    checkpoint = write_trainer_checkpoint(tmp_path / "m.pt", CACDNet(config), step=12)
    export_checkpoint(checkpoint, tmp_path / "m.onnx", height=48, width=64)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    events = rng.random((3, 48, 64), dtype=np.float32)
    via_torch = create_backend("auto", checkpoint, return_logits=True)
    via_onnx = create_backend("auto", tmp_path / "m.onnx", return_logits=True)
    assert via_torch.name == "pytorch"
    assert via_torch.architecture == via_onnx.architecture == "cacd-mit-e0"
    assert via_torch.training_data == via_onnx.training_data
    assert "sim seeds 0-3" in via_torch.description
    # an .onnx path with a checkpoint beside it works for the pytorch backend too
    assert create_backend("pytorch", tmp_path / "m.onnx").name == "pytorch"
    a, b = via_torch.infer(image, events), via_onnx.infer(image, events)
    np.testing.assert_allclose(a.logits, b.logits, atol=1e-4)


def test_pytorch_backend_refuses_a_file_that_is_not_a_cacd_checkpoint(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(RuntimeBackendError, match=r"other\.pt") as info:
        create_backend("pytorch", tmp_path / "other.pt")
    assert "evseg train" in str(info.value) and "\n" not in str(info.value)


def test_shipped_model_follows_contract() -> None:
    backend = OnnxRuntimeBackend(SHIPPED_MODEL, expected_label_set=DSEC_11.name)
    assert backend.variant == "fused"
    assert backend.architecture == "cacd-mit-b0+evt-mit-e0"
    assert "sim seeds 0-23" in backend.training_data
    assert backend.class_names == DSEC_11.classes
    assert SHIPPED_MODEL.stat().st_size <= 20 * 1024 * 1024
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    events = rng.poisson(0.3, (3, 240, 320)).astype(np.float32)
    events[2] = np.minimum(events[2], 1.0)
    mask = backend.infer(image, events).mask
    assert mask.shape == (240, 320)
    assert mask.dtype == np.uint8
    assert mask.max() < DSEC_11.num_classes


@pytest.mark.parametrize("name", ["onnxruntime", "pytorch"])
def test_torch_tensors_give_the_masks_of_host_arrays(tiny_onnx_model, name: str) -> None:
    """The GPU path's input kind (torch tensors) through each backend, here on the CPU."""
    torch = pytest.importorskip("torch")
    backend = create_backend(
        name, tiny_onnx_model, device="cpu", network_width=160, network_height=120
    )
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    events = rng.random((3, 240, 320), dtype=np.float32)
    host = backend.infer(image, events).mask
    tensors = backend.infer(torch.from_numpy(image), torch.from_numpy(events)).mask
    assert tensors.shape == (240, 320) and tensors.dtype == np.uint8
    # torch's area resize and OpenCV's INTER_AREA agree to rounding: near-ties may flip
    assert (tensors == host).mean() > 0.99


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_nan_events_are_refused_as_bad_input(tmp_path, argmax_model, kind: str) -> None:
    torch = pytest.importorskip("torch")
    backend = create_backend("onnxruntime", argmax_model(tmp_path / "m.onnx"), device="cpu")
    image, events = _frame()
    events[1, 3, 4] = np.nan
    if kind == "torch":
        image, events = torch.from_numpy(image), torch.from_numpy(events)
    with pytest.raises(ValueError, match="NaN"):
        backend.infer(image, events)
