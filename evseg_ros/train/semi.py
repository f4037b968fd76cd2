"""Semi-supervised training signals for data without (usable) labels.

Two independent mechanisms, each behind a switch of the ``semi`` config section:

* **Frame-branch pseudo-labels** (CMESS-style target-path labelling): a frozen model that sees
  the *frame* predicts classes on unlabelled samples; pixels it is confident about
  (softmax maximum >= threshold) become targets for the *event* path of the student, the rest
  are 255 (ignored). This transfers what the frame network knows to the event branch where
  only events are reliable (or only events are labelled-free), without trusting its guesses.
  :class:`PseudoLabeler` counts kept pixels, so a threshold that keeps almost nothing (or
  everything) is visible in the logs.
* **EMA teacher** (Drive&Segment-style mean teacher): the teacher is an exponential moving
  average of the student's weights, ``teacher = decay * teacher + (1 - decay) * student`` after
  every optimiser step; the student matches the teacher's softened class distribution on
  unlabelled samples (:func:`soft_target_loss`). The average is smoother than any single
  student, so its soft targets are a stable, slowly improving training signal.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evseg_ros.labels import VOID

__all__ = [
    "EmaTeacher",
    "PseudoLabelCounters",
    "PseudoLabeler",
    "PseudoLabels",
    "load_frame_teacher",
    "pseudo_labels_from_logits",
    "soft_target_loss",
]


class PseudoLabels(NamedTuple):
    """Pseudo-labels of one batch.

    Attributes:
        labels: ``(batch, H, W)`` int64 class ids, ``ignore_index`` where unsure.
        confidence: ``(batch, H, W)`` float32 softmax maximum of the teacher.
        kept: Pixels that got a class.
        total: Pixels looked at.
    """

    labels: Tensor
    confidence: Tensor
    kept: int
    total: int


def pseudo_labels_from_logits(
    logits: Tensor, *, threshold: float, ignore_index: int = VOID
) -> PseudoLabels:
    """Arg-max classes where the softmax maximum is at least ``threshold``, else ignore.

    Args:
        logits: ``(batch, K, H, W)`` teacher scores.
        threshold: Confidence needed to keep a pixel, in [0, 1]; 0 keeps every pixel.
        ignore_index: Label of the pixels that are not kept.

    Returns:
        The labels, the confidence map and the kept / total pixel counts.

    Raises:
        ValueError: ``logits`` is not 4-D or ``threshold`` is outside [0, 1].
    """
    if logits.dim() != 4:
        msg = f"logits must be (batch, K, H, W), got shape {tuple(logits.shape)!r}"
        raise ValueError(msg)
    if not 0.0 <= threshold <= 1.0:
        msg = f"threshold must be in [0, 1], got {threshold!r}"
        raise ValueError(msg)
    probabilities = torch.softmax(logits.detach().float(), dim=1)
    confidence, labels = probabilities.max(dim=1)
    keep = confidence >= threshold
    labels = torch.where(keep, labels, torch.full_like(labels, ignore_index))
    return PseudoLabels(labels, confidence, int(keep.sum().item()), keep.numel())


@dataclass
class PseudoLabelCounters:
    """Running totals of :class:`PseudoLabeler` (per process)."""

    batches: int = 0
    kept_pixels: int = 0
    total_pixels: int = 0

    @property
    def kept_fraction(self) -> float:
        """Share of pixels that got a pseudo-label so far (0 before the first batch)."""
        return self.kept_pixels / self.total_pixels if self.total_pixels else 0.0


class PseudoLabeler:
    """Frozen frame teacher that turns unlabelled samples into thresholded pseudo-labels.

    Args:
        teacher: Module ``(image, events) -> logits (batch, K, H, W)``; it is put in eval mode
            and its parameters are frozen (it is never trained here).
        threshold: Confidence needed to keep a pixel.
        ignore_index: Label of the pixels that are not kept.
    """

    def __init__(self, teacher: nn.Module, *, threshold: float, ignore_index: int = VOID) -> None:
        if not 0.0 <= threshold <= 1.0:
            msg = f"threshold must be in [0, 1], got {threshold!r}"
            raise ValueError(msg)
        self.teacher = teacher.eval()
        for parameter in self.teacher.parameters():
            parameter.requires_grad_(False)
        self.threshold = threshold
        self.ignore_index = ignore_index
        self.counters = PseudoLabelCounters()

    @torch.no_grad()
    def __call__(self, image: Tensor, events: Tensor) -> PseudoLabels:
        """Label one batch and add its pixels to :attr:`counters`."""
        result = pseudo_labels_from_logits(
            self.teacher(image, events), threshold=self.threshold, ignore_index=self.ignore_index
        )
        self.counters.batches += 1
        self.counters.kept_pixels += result.kept
        self.counters.total_pixels += result.total
        return result


def load_frame_teacher(path: str | Path, *, map_location: str | torch.device = "cpu") -> nn.Module:
    """Load the frozen frame teacher of the pseudo-labels from a CACD checkpoint.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: Not a CACD checkpoint, or an ``event_only`` model (it cannot see frames).
    """
    from evseg_ros.model.cacd import load_cacd_checkpoint

    path = Path(path)
    if not path.is_file():
        msg = f"pseudo-label teacher checkpoint {str(path)!r} does not exist"
        raise FileNotFoundError(msg)
    model = load_cacd_checkpoint(path, map_location=str(map_location))
    if model.variant == "event_only":
        msg = (
            f"pseudo-label teacher {str(path)!r} is an 'event_only' model; the teacher must "
            "see the frame ('image_only' or 'fused')"
        )
        raise ValueError(msg)
    return model


def soft_target_loss(
    student_logits: Tensor, teacher_logits: Tensor, *, temperature: float
) -> Tensor:
    r"""KL divergence from the teacher's to the student's softened class distribution.

    :math:`T^2 \cdot \mathrm{mean}_x \sum_k p^t_k(x) (\log p^t_k(x) - \log p^s_k(x))` with
    :math:`p = \mathrm{softmax}(z / T)`; the :math:`T^2` keeps the gradient scale independent of
    the temperature (Hinton et al.). The teacher is detached. Zero when both agree.

    Args:
        student_logits: ``(batch, K, H, W)`` student scores.
        teacher_logits: Teacher scores of the same shape.
        temperature: Softmax temperature ``T > 0``.

    Raises:
        ValueError: Shapes differ or ``temperature`` is not positive.
    """
    if student_logits.shape != teacher_logits.shape:
        msg = (
            f"student logits {tuple(student_logits.shape)!r} and teacher logits "
            f"{tuple(teacher_logits.shape)!r} differ"
        )
        raise ValueError(msg)
    if not temperature > 0:
        msg = f"temperature must be positive, got {temperature!r}"
        raise ValueError(msg)
    student_log = F.log_softmax(student_logits.float() / temperature, dim=1)
    teacher_log = F.log_softmax(teacher_logits.detach().float() / temperature, dim=1)
    divergence = (teacher_log.exp() * (teacher_log - student_log)).sum(dim=1)
    return divergence.mean() * temperature**2


class EmaTeacher:
    """Exponential moving average of a student network, used as a frozen teacher.

    After every optimiser step :meth:`update` sets each teacher parameter to
    ``decay * teacher + (1 - decay) * student``; buffers (batch-norm statistics) are copied
    from the student, since averaging running statistics of a moving network has no meaning
    beyond what the student's own running average already does.

    Args:
        student: The network being trained (not wrapped in DDP).
        decay: EMA decay in [0, 1); 0 makes the teacher a copy of the student.
    """

    def __init__(self, student: nn.Module, *, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            msg = f"EMA decay must be in [0, 1), got {decay!r}"
            raise ValueError(msg)
        self.decay = decay
        self.teacher = copy.deepcopy(student).eval()
        for parameter in self.teacher.parameters():
            parameter.requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, student: nn.Module) -> None:
        """Move the teacher towards ``student`` by one EMA step.

        Raises:
            ValueError: ``student`` does not have the teacher's parameters.
        """
        teacher_parameters = dict(self.teacher.named_parameters())
        student_parameters = dict(student.named_parameters())
        if teacher_parameters.keys() != student_parameters.keys():
            msg = "EMA update: the student's parameters differ from the teacher's"
            raise ValueError(msg)
        for name, teacher_parameter in teacher_parameters.items():
            source = student_parameters[name].detach()
            teacher_parameter.mul_(self.decay).add_(source, alpha=1.0 - self.decay)
        student_buffers = dict(student.named_buffers())
        for name, buffer in self.teacher.named_buffers():
            buffer.copy_(student_buffers[name])
        self.updates += 1

    @torch.no_grad()
    def predict(self, image: Tensor, events: Tensor) -> Tensor:
        """Teacher logits (eval mode, no gradient)."""
        return self.teacher(image, events)

    def state_dict(self) -> dict:
        """Teacher weights and the update count, for checkpoints."""
        return {"state_dict": self.teacher.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output."""
        self.teacher.load_state_dict(state["state_dict"])
        self.updates = int(state["updates"])
