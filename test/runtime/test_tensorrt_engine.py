"""The TensorRT engine manager against the stand-in module: cache, manifest, rebuild, INT8, runner.

TensorRT cannot be installed here; the stand-in (fake_tensorrt.py) builds "engines" that carry
their release and run the ONNX graph with ONNX Runtime, so every decision of the manager (load a
valid engine, rebuild a stale/foreign/corrupt one with the reason, never both) and the runner's
buffer handling are exercised for real.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading

import numpy as np
import pytest
import torch

from evseg_ros.runtime import create_backend
from evseg_ros.runtime.engine_builder import BuildOptions
from evseg_ros.runtime.engine_cache import manifest_path, read_manifest
from evseg_ros.runtime.errors import RuntimeBackendError
from evseg_ros.runtime.int8_calibration import calibration_batches
from evseg_ros.runtime.onnx_backend import OnnxRuntimeBackend
from evseg_ros.runtime.tensor_inputs import to_network_tensors
from evseg_ros.runtime.tensorrt_backend import EngineRunner
from evseg_ros.runtime.tensorrt_engine import GpuFacts, network_shapes, prepare_engine

H100 = GpuFacts("NVIDIA H100 80GB HBM3", "9.0")
ORIN = GpuFacts("Orin", "8.7")
SHAPES = network_shapes(32, 24)


def _prepare(trt, onnx_path, folder, *, gpu=H100, shapes=SHAPES, **options):
    return prepare_engine(
        trt, onnx_path, shapes=shapes, gpu=gpu, cache_folder=folder,
        options=BuildOptions(timing_cache=folder / "timing.cache", **options), progress=False,
    )


def test_first_start_builds_then_a_valid_engine_is_loaded_never_rebuilt(
    tmp_path, argmax_model, fake_tensorrt
) -> None:
    trt = fake_tensorrt()
    model = argmax_model(tmp_path / "m.onnx")
    first = _prepare(trt, model, tmp_path / "cache")
    assert first.built and "no engine yet" in first.decision.reason
    assert first.path.name == "m.fp16.32x24.engine"
    manifest = read_manifest(first.path)
    assert manifest["key"].tensorrt_version == "10.3.0"
    assert manifest["key"].gpu_name == H100.name
    assert manifest["key"].compute_capability == "9.0"
    assert manifest["key"].input_shapes == {"image": [1, 3, 24, 32], "events": [1, 3, 24, 32]}
    second = _prepare(trt, model, tmp_path / "cache")
    assert not second.built and second.decision.action == "load"
    assert trt.builds == 1
    assert (tmp_path / "cache" / "timing.cache").read_bytes() == b"1"  # kept across builds


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("onnx", "the ONNX file changed"),
        ("gpu", "built for GPU 'NVIDIA H100 80GB HBM3', this machine has 'Orin'"),
        ("corrupt", "does not match its manifest's sha256"),
        ("no_manifest", "has no manifest"),
        ("bad_manifest", "not valid JSON"),
        ("refused", "refused to deserialize"),
    ],
)
def test_stale_foreign_or_corrupt_engines_are_rebuilt_with_the_reason(
    tmp_path, argmax_model, fake_tensorrt, caplog, change: str, reason: str
) -> None:
    trt = fake_tensorrt()
    model = argmax_model(tmp_path / "m.onnx")
    cache = tmp_path / "cache"
    engine = _prepare(trt, model, cache).path
    gpu = H100
    if change == "onnx":
        argmax_model(model, label_set="cityscapes19")  # same graph, other metadata: other hash
    elif change == "gpu":
        gpu = ORIN
    elif change == "corrupt":
        data = bytearray(engine.read_bytes())
        data[len(data) // 2] ^= 0xFF
        engine.write_bytes(bytes(data))
    elif change == "no_manifest":
        manifest_path(engine).unlink()
    elif change == "bad_manifest":
        manifest_path(engine).write_text("{ truncated")
    elif change == "refused":  # bytes and manifest agree, but TensorRT will not read them
        engine.write_bytes(b"not an engine")
        record = json.loads(manifest_path(engine).read_text())
        record["engine_sha256"] = hashlib.sha256(b"not an engine").hexdigest()
        manifest_path(engine).write_text(json.dumps(record))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="evseg_ros.runtime.tensorrt_engine"):
        again = _prepare(trt, model, cache, gpu=gpu)
    assert again.built and reason in again.decision.reason
    rebuilt = [r for r in caplog.records if "building TensorRT engine" in r.getMessage()]
    assert len(rebuilt) == 1 and reason in rebuilt[0].getMessage()
    assert trt.builds == 2
    assert not _prepare(trt, model, cache, gpu=gpu).built  # and the new one is trusted


def test_an_engine_of_another_tensorrt_release_is_rebuilt(
    tmp_path, argmax_model, fake_tensorrt
) -> None:
    model = argmax_model(tmp_path / "m.onnx")
    _prepare(fake_tensorrt(), model, tmp_path / "cache")
    upgraded = fake_tensorrt("10.5.0")
    again = _prepare(upgraded, model, tmp_path / "cache")
    assert again.built
    assert "built by TensorRT 10.3.0, this machine has 10.5.0" in again.decision.reason


def test_precision_and_size_get_their_own_slots(tmp_path, argmax_model, fake_tensorrt) -> None:
    trt = fake_tensorrt()
    model = argmax_model(tmp_path / "m.onnx")
    fp16 = _prepare(trt, model, tmp_path / "c")
    fp32 = _prepare(trt, model, tmp_path / "c", precision="fp32")
    small = _prepare(trt, model, tmp_path / "c", shapes=network_shapes(16, 12))
    assert len({fp16.path, fp32.path, small.path}) == 3
    assert trt.builds == 3
    with pytest.raises(RuntimeBackendError, match="precision"):
        _prepare(trt, model, tmp_path / "c", precision="int4")


def test_two_starts_at_once_build_once(tmp_path, argmax_model, fake_tensorrt) -> None:
    trt = fake_tensorrt()
    model = argmax_model(tmp_path / "m.onnx")
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(_prepare(trt, model, tmp_path / "c")))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.built for r in results) == [False, True]
    assert trt.builds == 1


def test_unparsable_onnx_is_one_error_naming_the_file(tmp_path, fake_tensorrt) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x01garbage")
    with pytest.raises(RuntimeBackendError, match=r"cannot parse .*bad\.onnx"):
        _prepare(fake_tensorrt(), bad, tmp_path / "c")


def test_int8_calibrates_once_from_samples_then_reuses_the_cache(
    tmp_path, argmax_model, fake_tensorrt
) -> None:
    trt = fake_tensorrt()
    model = argmax_model(tmp_path / "m.onnx")
    samples = tmp_path / "samples"
    samples.mkdir()
    rng = np.random.default_rng(0)
    for index in range(5):
        np.savez(
            samples / f"{index:03d}.npz",
            image=rng.integers(0, 255, (48, 64, 3), dtype=np.uint8),
            events=rng.random((3, 48, 64), dtype=np.float32),
        )
    calibration = tmp_path / "calib.cache"
    options = {
        "precision": "int8", "calibration_cache": calibration,
        "calibration_batches": calibration_batches(samples, (32, 24)),
    }
    first = _prepare(trt, model, tmp_path / "c", **options)
    assert first.built and trt.calibration_batches == 5
    assert calibration.read_bytes() == b"fake-calibration:5"
    assert read_manifest(first.path)["key"].calibration_sha256  # keyed to the scales
    assert not _prepare(trt, model, tmp_path / "c", **options).built
    first.path.unlink()
    _prepare(trt, model, tmp_path / "c", **options)  # rebuilt from the cache, no samples read
    assert trt.calibration_batches == 5
    calibration.write_bytes(b"other scales")
    assert "calibration" in _prepare(trt, model, tmp_path / "c", **options).decision.reason


def test_int8_without_cache_or_samples_says_what_to_pass(
    tmp_path, argmax_model, fake_tensorrt
) -> None:
    with pytest.raises(RuntimeBackendError, match="--calibration"):
        _prepare(
            fake_tensorrt(), argmax_model(tmp_path / "m.onnx"), tmp_path / "c",
            precision="int8", calibration_cache=tmp_path / "none.cache",
        )


def test_runner_binds_torch_buffers_and_matches_onnxruntime(
    tmp_path, tiny_onnx_model, fake_tensorrt
) -> None:
    """The CACD export through the runner (torch buffers by address) equals ONNX Runtime."""
    trt = fake_tensorrt()
    prepared = _prepare(trt, tiny_onnx_model, tmp_path / "c", shapes=network_shapes(320, 240))
    runner = EngineRunner(trt, prepared.engine, torch.device("cpu"))
    assert runner.size == (320, 240)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    events = rng.random((3, 240, 320), dtype=np.float32)
    image_t, events_t = to_network_tensors(torch.from_numpy(image), torch.from_numpy(events))
    outputs = runner.run({"image": image_t, "events": events_t})
    reference = OnnxRuntimeBackend(tiny_onnx_model, device="cpu").infer(image, events)
    np.testing.assert_array_equal(outputs["mask"][0].numpy(), reference.mask)
    with pytest.raises(ValueError, match="engine takes"):
        runner.run({"image": image_t[..., :100], "events": events_t[..., :100]})


def test_auto_skips_tensorrt_without_a_gpu_and_says_why(
    tmp_path, argmax_model, fake_tensorrt
) -> None:
    fake_tensorrt()
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: auto would take TensorRT")
    backend = create_backend("auto", argmax_model(tmp_path / "m.onnx"))
    assert backend.name == "onnxruntime"
    assert "tensorrt/cuda: no CUDA GPU visible to torch" in backend.selection
    with pytest.raises(RuntimeBackendError, match=r"needs a CUDA GPU|CUDA is not usable"):
        create_backend("tensorrt", argmax_model(tmp_path / "m.onnx"))


def test_int8_scales_from_a_recording_see_the_nodes_own_inputs(
    tmp_path, argmax_model, fake_tensorrt, short_recording
) -> None:
    """A recording is replayed through the graph; its remapped frames calibrate the engine."""
    from evseg_ros.nodes.sample_capture import capture_inputs

    pairs = capture_inputs(short_recording, limit=4)
    assert len(pairs) == 4
    image, events = pairs[0]
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert events.shape == (3, *image.shape[:2]) and events[:2].sum() > 0  # real events
    trt = fake_tensorrt()
    calibration = tmp_path / "calib.cache"
    _prepare(
        trt, argmax_model(tmp_path / "m.onnx"), tmp_path / "c", precision="int8",
        calibration_cache=calibration,
        calibration_batches=calibration_batches(short_recording, (32, 24), limit=3),
    )
    assert trt.calibration_batches == 3
    assert calibration.read_bytes() == b"fake-calibration:3"
