"""Pseudo-labels from a frozen frame teacher, and the EMA teacher with soft targets."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from evseg_ros.labels import VOID
from evseg_ros.model.cacd import CACDConfig, CACDNet, save_cacd_checkpoint
from evseg_ros.train.config import TrainConfig
from evseg_ros.train.semi import (
    EmaTeacher,
    PseudoLabeler,
    load_frame_teacher,
    pseudo_labels_from_logits,
    soft_target_loss,
)
from evseg_ros.train.trainer import Trainer


def two_class_logits(probabilities: list[float]) -> torch.Tensor:
    """``(1, 2, 1, N)`` logits whose softmax puts ``p`` on class 0 and ``1 - p`` on class 1."""
    p = torch.tensor(probabilities, dtype=torch.float64)
    return torch.stack([p.log(), (1 - p).log()])[None, :, None, :].float()


def test_threshold_keeps_confident_pixels_only():
    logits = two_class_logits([0.95, 0.6, 0.3, 0.02, 0.9])
    result = pseudo_labels_from_logits(logits, threshold=0.9)
    assert result.labels.tolist() == [[[0, VOID, VOID, 1, 0]]]
    assert (result.kept, result.total) == (3, 5)
    assert result.confidence[0, 0, 0].item() == pytest.approx(0.95)
    everything = pseudo_labels_from_logits(logits, threshold=0.0)
    assert everything.kept == 5 and VOID not in everything.labels
    with pytest.raises(ValueError, match="threshold must be in"):
        pseudo_labels_from_logits(logits, threshold=1.5)


class ImageTeacher(nn.Module):
    """Frame-only teacher: class 1 where the red channel is bright, confidence from its level."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, image: torch.Tensor, events: torch.Tensor) -> torch.Tensor:
        red = image[:, 0:1] - 0.5
        return torch.cat([-red, red], dim=1) * self.scale


def test_pseudo_labeler_uses_the_frame_and_counts_kept_pixels():
    teacher = ImageTeacher()
    labeler = PseudoLabeler(teacher, threshold=0.9)
    assert not teacher.training and not teacher.scale.requires_grad
    image = torch.zeros(1, 3, 2, 2)
    image[0, 0] = torch.tensor([[0.0, 1.0], [0.5, 0.55]])  # sure 0, sure 1, 50/50, 73 % class 1
    events = torch.full((1, 3, 2, 2), 7.0)  # the teacher must not need the events
    result = labeler(image, events)
    assert result.labels.tolist() == [[[0, 1], [VOID, VOID]]]
    labeler(image, events)
    counters = labeler.counters
    assert (counters.batches, counters.kept_pixels, counters.total_pixels) == (2, 4, 8)
    assert counters.kept_fraction == 0.5


def test_frame_teacher_must_see_frames(tmp_path):
    torch.manual_seed(0)
    save_cacd_checkpoint(CACDNet(CACDConfig(variant="event_only")), tmp_path / "event.pt")
    with pytest.raises(ValueError, match="must see the frame"):
        load_frame_teacher(tmp_path / "event.pt")
    save_cacd_checkpoint(CACDNet(CACDConfig(variant="image_only")), tmp_path / "image.pt")
    assert load_frame_teacher(tmp_path / "image.pt").variant == "image_only"
    with pytest.raises(FileNotFoundError):
        load_frame_teacher(tmp_path / "missing.pt")


def small_student() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))


def test_ema_teacher_follows_the_exact_formula():
    student = small_student()
    ema = EmaTeacher(student, decay=0.9)
    assert all(not p.requires_grad for p in ema.teacher.parameters())
    before_student = {k: v.clone() for k, v in student.state_dict().items()}
    before_teacher = {k: v.clone() for k, v in ema.teacher.state_dict().items()}

    optimizer = torch.optim.SGD(student.parameters(), lr=0.5)
    student.train()
    output = student(torch.randn(4, 3, 5, 5))
    output.square().mean().backward()
    optimizer.step()
    ema.update(student)

    after_student = student.state_dict()
    for name, parameter in student.named_parameters():
        assert not torch.equal(parameter, before_student[name]), f"student {name} not updated"
        expected = 0.9 * before_teacher[name] + 0.1 * parameter.detach()
        torch.testing.assert_close(ema.teacher.state_dict()[name], expected, rtol=1e-6, atol=1e-7)
        assert not torch.equal(ema.teacher.state_dict()[name], parameter)
    # Buffers (batch-norm statistics) are copied, not averaged.
    assert torch.equal(ema.teacher[1].running_mean, after_student["1.running_mean"])
    assert ema.updates == 1

    restored = EmaTeacher(small_student(), decay=0.9)
    restored.load_state_dict(ema.state_dict())
    assert torch.equal(restored.teacher[0].weight, ema.teacher[0].weight)
    assert restored.updates == 1


def test_ema_decay_zero_copies_the_student_and_bad_decay_is_refused():
    student = small_student()
    ema = EmaTeacher(student, decay=0.0)
    with torch.no_grad():
        student[0].weight.add_(1.0)
    ema.update(student)
    assert torch.equal(ema.teacher[0].weight, student[0].weight)
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\), got 1\.0"):
        EmaTeacher(student, decay=1.0)


def test_soft_target_loss():
    torch.manual_seed(0)
    teacher = torch.randn(2, 5, 3, 3)
    assert soft_target_loss(teacher.clone(), teacher, temperature=2.0).item() == pytest.approx(
        0.0, abs=1e-6
    )
    student = torch.randn(2, 5, 3, 3, requires_grad=True)
    teacher.requires_grad_(True)
    loss = soft_target_loss(student, teacher, temperature=2.0)
    p_t = torch.softmax(teacher / 2, 1)
    expected = (p_t * (p_t.log() - torch.log_softmax(student / 2, 1))).sum(1).mean() * 4
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5) and loss.item() > 0
    loss.backward()
    assert student.grad is not None and teacher.grad is None
    with pytest.raises(ValueError, match="temperature must be positive"):
        soft_target_loss(student, teacher, temperature=0.0)


def make_rpea(root: Path, count: int = 2, size: int = 64) -> None:
    rng = np.random.default_rng(0)
    for sub in ("images", "events", "labels"):
        (root / "train" / sub).mkdir(parents=True, exist_ok=True)
    for index in range(count):
        label = np.zeros((size, size), np.uint8)
        label[size // 2 :] = 5
        rgb = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "train" / "images" / f"s{index}.png"), rgb)
        cv2.imwrite(str(root / "train" / "labels" / f"s{index}.png"), label)
        events = rng.poisson(0.5, (3, size, size)).astype(np.float32)
        np.save(root / "train" / "events" / f"s{index}.npy", events)


def test_trainer_runs_both_semi_signals(tmp_path):
    make_rpea(tmp_path / "data")
    torch.manual_seed(0)
    save_cacd_checkpoint(
        CACDNet(CACDConfig(variant="image_only", decoder_channels=16)), tmp_path / "teacher.pt"
    )
    spec = {"type": "rpea", "root": str(tmp_path / "data"), "scale_range": [1.0, 1.0]}
    config = TrainConfig.from_dict(
        {
            "model": {"variant": "fused", "decoder_channels": 16},
            "data": {
                "train": spec,
                "unlabelled": spec,
                "batch_size": 2,
                "num_workers": 0,
                "crop_size": [64, 64],
            },
            "loss": {"use_hfca": False, "use_jbcd": False, "aux_heads": True},
            "semi": {
                "pseudo_labels": {
                    "enabled": True,
                    "teacher_checkpoint": str(tmp_path / "teacher.pt"),
                    "threshold": 0.0,
                },
                "ema_teacher": {"enabled": True, "decay": 0.5, "temperature": 2.0},
            },
            "train": {"max_steps": 2, "output_dir": str(tmp_path / "run"), "log_every": 1},
        }
    )
    trainer = Trainer(config)
    teacher_before = trainer.ema.teacher.decoder.classifier.weight.clone()
    trainer.fit()
    with (tmp_path / "run" / "metrics.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 2
    for row in rows:
        assert math.isfinite(float(row["pseudo"])) and math.isfinite(float(row["consistency"]))
        assert float(row["pseudo_kept_fraction"]) == 1.0  # threshold 0 keeps every pixel
    assert trainer.pseudo_labeler.counters.batches == 2
    assert trainer.ema.updates == 2
    assert not torch.equal(trainer.ema.teacher.decoder.classifier.weight, teacher_before)
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert saved["ema"]["updates"] == 2 and saved["pseudo_counters"][2] == 2
