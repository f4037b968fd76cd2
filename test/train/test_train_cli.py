"""``evseg train`` / ``evseg export`` end to end: config -> checkpoint -> ONNX -> runtime mask."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from evseg_ros.cli import main
from evseg_ros.runtime import create_backend

SIZE = 64


def make_rpea(root: Path, count: int = 2) -> None:
    rng = np.random.default_rng(0)
    for sub in ("images", "events", "labels"):
        (root / "train" / sub).mkdir(parents=True, exist_ok=True)
    for index in range(count):
        label = np.zeros((SIZE, SIZE), np.uint8)
        label[SIZE // 2 :] = 5
        rgb = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "train" / "images" / f"s{index}.png"), rgb)
        cv2.imwrite(str(root / "train" / "labels" / f"s{index}.png"), label)
        np.save(root / "train" / "events" / f"s{index}.npy", np.ones((3, SIZE, SIZE), np.float32))


@pytest.fixture
def config_file(tmp_path) -> Path:
    make_rpea(tmp_path / "data")
    path = tmp_path / "tiny.yaml"
    path.write_text(
        f"""
model: {{backbone: mit_b0, variant: fused, decoder_channels: 16}}
data:
  train: {{type: rpea, root: {tmp_path / "data"}, scale_range: [1.0, 1.0]}}
  batch_size: 2
  num_workers: 0
  crop_size: [{SIZE}, {SIZE}]
loss: {{use_hfca: false, use_jbcd: true}}
train: {{max_steps: 1, output_dir: {tmp_path / "run"}, log_every: 1}}
"""
    )
    return path


def test_train_resume_export_and_run_the_onnx_model(config_file, tmp_path, capsys):
    assert main(["train", "--config", str(config_file)]) == 0
    checkpoint = tmp_path / "run" / "last.pt"
    assert checkpoint.is_file()
    # --resume alone takes the stored config; --set extends the run.
    assert main(["train", "--resume", str(checkpoint), "--set", "train.max_steps=2"]) == 0
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["1", "2"]

    onnx_path = tmp_path / "model.onnx"
    args = ["export", "--checkpoint", str(checkpoint), "--output", str(onnx_path)]
    weights = tmp_path / "weights.pt"
    size = ["--height", str(SIZE), "--width", str(SIZE)]
    assert main([*args, *size, "--weights-output", str(weights)]) == 0
    assert "mit_b0 fused, dsec11; cacd-mit-b0, trained on rpea" in capsys.readouterr().out

    backend = create_backend("onnxruntime", onnx_path, device="cpu", expected_label_set="dsec11")
    assert backend.variant == "fused"
    assert backend.metadata["evseg.architecture"] == "cacd-mit-b0"
    assert backend.metadata["evseg.training_data"].startswith("rpea ")
    assert backend.metadata["evseg.checkpoint"] == "last.pt, step 2, student"
    # The weights-only file runs on the pytorch backend like the export, at a third of the size.
    assert weights.stat().st_size < checkpoint.stat().st_size / 2
    via_torch = create_backend("pytorch", weights, return_logits=True)
    assert via_torch.description == backend.description
    image = np.random.default_rng(1).integers(0, 255, (48, 80, 3), dtype=np.uint8)
    result = backend.infer(image, np.zeros((3, 48, 80), np.float32))
    assert result.mask.shape == (48, 80) and result.mask.dtype == np.uint8
    assert int(result.mask.max()) < 11

    assert main(args) == 2  # never overwrites silently
    assert "already exists" in capsys.readouterr().err


def test_cli_errors_are_reported_with_status_2(config_file, tmp_path, capsys):
    assert main(["train", "--config", str(config_file), "--set", "optim.lr=fast"]) == 2
    assert "optim.lr must be a number, got 'fast'" in capsys.readouterr().err
    assert main(["train"]) == 2
    assert main(["export", "--checkpoint", str(tmp_path / "none.pt"), "--output", "x.onnx"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_missing_imagenet_weights_name_the_file_and_from_scratch_trains(
    config_file, tmp_path, capsys
):
    weights = tmp_path / "weights" / "mit_b0.pth"
    args = ["train", "--config", str(config_file), "--set", f"model.pretrained={weights}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    assert str(weights) in err and "nvidia/mit-b0" in err and "--from-scratch" in err
    assert not (tmp_path / "run").exists()  # nothing started

    assert main([*args, "--from-scratch"]) == 0
    assert (tmp_path / "run" / "last.pt").is_file()
