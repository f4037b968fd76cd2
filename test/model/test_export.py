"""ONNX export: output parity with torch, uint8 mask, metadata and overwrite protection."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from evseg_ros.labels import DSEC_11
from evseg_ros.model.cacd import CACDConfig, CACDNet, save_cacd_checkpoint
from evseg_ros.model.checkpoint import CheckpointError
from evseg_ros.model.export import export_checkpoint, export_onnx
from evseg_ros.runtime.backend import (
    META_ARCHITECTURE,
    META_CHECKPOINT,
    META_CLASSES,
    META_CONTRACT,
    META_LABEL_SET,
    META_TRAINING_DATA,
    META_VARIANT,
)

#: What the trainer-shaped checkpoints of ``write_trainer_checkpoint`` were trained on.
TRAIN_DATA_SUMMARY = "sim seeds 0-3, 30 frames/seed (stride 4), crop 96x96"


def _net(variant: str = "fused", *, seed: int = 0, **config) -> CACDNet:
    torch.manual_seed(seed)
    return CACDNet(
        CACDConfig.from_dict(
            {"backbone": "mit_b0", "num_classes": 11, **config, "variant": variant}
        )
    )


def _trained_looking_net(variant: str) -> CACDNet:
    """A random net whose batch-norm statistics are not the identity (as after training)."""
    net = _net(variant)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(4, 3, 40, 48), torch.rand(4, 3, 40, 48) * 4)
    return net


def _run(path, image: np.ndarray, events: np.ndarray) -> list[np.ndarray]:
    engine = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return engine.run(None, {"image": image, "events": events})


def _props(path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


@pytest.mark.parametrize("variant", ["fused", "image_only"])
def test_onnx_matches_torch(tmp_path, variant: str) -> None:
    net = _trained_looking_net(variant)
    path = export_onnx(net, tmp_path / "m.onnx", height=48, width=64)
    assert net.training, "export must restore the caller's training mode"
    net.eval()
    rng = np.random.default_rng(0)
    # A different size than the export example: the spatial axes are dynamic.
    image = rng.random((2, 3, 40, 52), dtype=np.float32)
    events = (rng.random((2, 3, 40, 52), dtype=np.float32) * 3).astype(np.float32)
    mask, logits = _run(path, image, events)
    with torch.no_grad():
        expected = net(torch.from_numpy(image), torch.from_numpy(events)).numpy()
    assert mask.dtype == np.uint8
    assert mask.shape == (2, 40, 52)
    assert logits.shape == (2, 11, 40, 52)
    np.testing.assert_allclose(logits, expected, atol=1e-3, rtol=0)
    assert (mask == expected.argmax(axis=1)).mean() >= 0.999


def test_image_only_keeps_events_input(tmp_path) -> None:
    path = export_onnx(_net("image_only"), tmp_path / "m.onnx", height=32, width=32)
    names = [i.name for i in onnx.load(str(path)).graph.input]
    assert names == ["image", "events"]


def test_metadata(tmp_path) -> None:
    path = export_onnx(_net(), tmp_path / "m.onnx", height=32, width=32, metadata={"k": "v"})
    props = _props(path)
    assert props[META_LABEL_SET] == DSEC_11.name
    assert props[META_CLASSES].split(",") == list(DSEC_11.classes)
    assert props[META_VARIANT] == "fused"
    assert props[META_ARCHITECTURE] == "cacd-mit-b0"
    assert props[META_TRAINING_DATA] == "unknown"  # a bare network says nothing of its data
    assert "image" in props[META_CONTRACT]
    assert props["k"] == "v"


def test_architecture_names_a_narrower_event_encoder(tmp_path) -> None:
    net = _net(event_backbone="mit_e0")
    path = export_onnx(net, tmp_path / "m.onnx", height=32, width=32, with_logits=False)
    assert _props(path)[META_ARCHITECTURE] == "cacd-mit-b0+evt-mit-e0"


def test_export_of_a_trainer_checkpoint(tmp_path, write_trainer_checkpoint) -> None:
    net = _net()
    checkpoint = write_trainer_checkpoint(tmp_path / "best.pt", net.train(), step=12)
    path = export_checkpoint(checkpoint, tmp_path / "m.onnx", height=32, width=32)
    props = _props(path)
    assert props[META_ARCHITECTURE] == "cacd-mit-b0"
    assert props[META_TRAINING_DATA] == TRAIN_DATA_SUMMARY
    assert props[META_LABEL_SET] == DSEC_11.name
    assert props[META_VARIANT] == "fused"
    assert props[META_CHECKPOINT] == "best.pt, step 12, student"
    image = np.random.default_rng(1).random((1, 3, 32, 32), dtype=np.float32)
    events = np.zeros_like(image)
    _, logits = _run(path, image, events)
    with torch.no_grad():
        expected = net.eval()(torch.from_numpy(image), torch.from_numpy(events)).numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-3, rtol=0)


def test_export_of_the_ema_teacher(tmp_path, write_trainer_checkpoint) -> None:
    student, teacher = _net(), _net(seed=1)
    checkpoint = write_trainer_checkpoint(tmp_path / "last.pt", student, ema_net=teacher)
    path = export_checkpoint(checkpoint, tmp_path / "t.onnx", height=32, width=32, ema=True)
    assert _props(path)[META_CHECKPOINT] == "last.pt, step 7, EMA teacher"
    image = np.random.default_rng(2).random((1, 3, 32, 32), dtype=np.float32)
    _, logits = _run(path, image, image)
    with torch.no_grad():
        expected = teacher.eval()(torch.from_numpy(image), torch.from_numpy(image)).numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-3, rtol=0)
    # a checkpoint without a teacher cannot export one
    save_cacd_checkpoint(student, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="no EMA teacher"):
        export_checkpoint(tmp_path / "plain.pt", tmp_path / "x.onnx", height=32, width=32, ema=True)
    assert not (tmp_path / "x.onnx").exists()


def test_mask_only(tmp_path) -> None:
    path = export_onnx(_net(), tmp_path / "m.onnx", height=32, width=32, with_logits=False)
    assert [o.name for o in onnx.load(str(path)).graph.output] == ["mask"]


def test_refuses_to_overwrite(tmp_path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="overwrite"):
        export_onnx(_net(), path, height=32, width=32)
    assert path.read_bytes() == b"keep me"
    export_onnx(_net(), path, height=32, width=32, overwrite=True)
    onnx.checker.check_model(str(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
