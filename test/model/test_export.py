"""ONNX export: output parity with torch, uint8 mask, metadata and overwrite protection."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from evseg_ros.labels import DSEC_11
from evseg_ros.model.demo_net import DemoFusionNet
from evseg_ros.model.export import export_onnx
from evseg_ros.runtime.backend import META_CLASSES, META_CONTRACT, META_LABEL_SET, META_VARIANT


def _trained_looking_net(variant: str) -> DemoFusionNet:
    """A random net whose batch-norm statistics are not the identity (as after training)."""
    torch.manual_seed(0)
    net = DemoFusionNet(variant=variant, width=8)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(4, 3, 40, 48), torch.rand(4, 3, 40, 48) * 4)
    return net


def _run(path, image: np.ndarray, events: np.ndarray) -> list[np.ndarray]:
    engine = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return engine.run(None, {"image": image, "events": events})


@pytest.mark.parametrize("variant", ["fused", "image_only"])
def test_onnx_matches_torch(tmp_path, variant: str) -> None:
    net = _trained_looking_net(variant)
    path = export_onnx(net, tmp_path / "m.onnx", height=48, width=64)
    assert net.training, "export must restore the caller's training mode"
    net.eval()
    rng = np.random.default_rng(0)
    # A different size than the export example: the spatial axes are dynamic.
    image = rng.random((2, 3, 30, 44), dtype=np.float32)
    events = (rng.random((2, 3, 30, 44), dtype=np.float32) * 3).astype(np.float32)
    mask, logits = _run(path, image, events)
    with torch.no_grad():
        expected = net(torch.from_numpy(image), torch.from_numpy(events)).numpy()
    assert mask.dtype == np.uint8
    assert mask.shape == (2, 30, 44)
    assert logits.shape == (2, 11, 30, 44)
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)
    np.testing.assert_array_equal(mask, expected.argmax(axis=1))


def test_image_only_keeps_events_input(tmp_path) -> None:
    path = export_onnx(_trained_looking_net("image_only"), tmp_path / "m.onnx", height=32, width=32)
    names = [i.name for i in onnx.load(str(path)).graph.input]
    assert names == ["image", "events"]


def test_metadata(tmp_path) -> None:
    path = export_onnx(
        DemoFusionNet(width=8), tmp_path / "m.onnx", height=32, width=32, metadata={"k": "v"}
    )
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props[META_LABEL_SET] == DSEC_11.name
    assert props[META_CLASSES].split(",") == list(DSEC_11.classes)
    assert props[META_VARIANT] == "fused"
    assert "image" in props[META_CONTRACT]
    assert props["k"] == "v"


def test_mask_only(tmp_path) -> None:
    path = export_onnx(
        DemoFusionNet(width=8), tmp_path / "m.onnx", height=32, width=32, with_logits=False
    )
    assert [o.name for o in onnx.load(str(path)).graph.output] == ["mask"]


def test_refuses_to_overwrite(tmp_path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="overwrite"):
        export_onnx(DemoFusionNet(width=8), path, height=32, width=32)
    assert path.read_bytes() == b"keep me"
    export_onnx(DemoFusionNet(width=8), path, height=32, width=32, overwrite=True)
    onnx.checker.check_model(str(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
