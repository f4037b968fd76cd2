"""The whole training objective of one micro-batch behind a single ``nn.Module`` (what DDP wraps).

Network, auxiliary branch heads and the loss's heads (projection and content heads) sit in one
module so that one forward per backward covers every trainable parameter and DDP averages all
their gradients. Modality dropout (one network for fused, frame-only and event-only input) and
the per-part gradient norms are applied here too, because both need the network's forward.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evseg_ros.model.cacd import CACDNet
from evseg_ros.train.heads import BranchHead
from evseg_ros.train.losses import CACDLoss, segmentation_cross_entropy
from evseg_ros.train.semi import soft_target_loss

__all__ = ["DroppedModalities", "TrainingModule", "gradient_norm"]


def _upsample(logits: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def gradient_norm(term: Tensor, parameters: Sequence[Tensor]) -> Tensor:
    """L2 norm of the gradient of ``term`` with respect to ``parameters``, keeping the graph.

    Parameters ``term`` does not reach count as zero; a ``term`` without a graph gives 0.

    Args:
        term: Scalar that is part of a graph still needed for the real backward pass.
        parameters: Tensors to differentiate with respect to.

    Returns:
        Detached float32 scalar.
    """
    zero = torch.zeros((), dtype=torch.float32, device=term.device)
    if not term.requires_grad or not parameters:
        return zero
    gradients = torch.autograd.grad(term, parameters, retain_graph=True, allow_unused=True)
    squares = [g.detach().float().pow(2).sum() for g in gradients if g is not None]
    return torch.stack(squares).sum().sqrt() if squares else zero


class DroppedModalities(NamedTuple):
    """Which samples of a batch lost a modality (see :meth:`TrainingModule.drop_modalities`)."""

    image: Tensor  #: (batch,) bool, the frame was replaced by zeros
    events: Tensor  #: (batch,) bool, the events were replaced by zeros

    @property
    def paired(self) -> Tensor:
        """``(batch,)`` bool, samples that kept both modalities."""
        return ~(self.image | self.events)


class TrainingModule(nn.Module):
    """Everything that has trainable parameters, behind one ``forward`` (what DDP wraps).

    One forward computes the whole objective of a micro-batch, the unlabelled part included,
    so DDP sees one forward per backward and averages every gradient (network, auxiliary heads,
    HFCA projection heads, JBCD content heads).

    Args:
        model: The network.
        criterion: The CACD loss of Eq. 8 (holds the projection and content heads).
        image_head: Auxiliary classifier of the image branch, or ``None`` (the default: not
            part of Eq. 8).
        event_head: Auxiliary classifier of the event branch, or ``None``; also gives the
            pseudo-labels their event-path prediction.
        aux_weight: Weight of each auxiliary head's cross-entropy.
        pseudo_weight: Weight of the pseudo-label cross-entropy.
        consistency_weight: Weight of the EMA-teacher consistency term.
        temperature: Temperature of the consistency term.
        modality_dropout: ``(p_image, p_events)``, see :meth:`drop_modalities`.

    Raises:
        ValueError: ``modality_dropout`` is not two probabilities with a sum of at most 1.
    """

    def __init__(
        self,
        model: CACDNet,
        criterion: CACDLoss,
        *,
        image_head: BranchHead | None = None,
        event_head: BranchHead | None = None,
        aux_weight: float = 0.0,
        pseudo_weight: float = 1.0,
        consistency_weight: float = 1.0,
        temperature: float = 1.0,
        modality_dropout: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        super().__init__()
        probabilities = tuple(float(p) for p in modality_dropout)
        if (
            len(probabilities) != 2
            or not all(math.isfinite(p) and 0.0 <= p <= 1.0 for p in probabilities)
            or sum(probabilities) > 1.0
        ):
            msg = (
                "modality_dropout must be (p_image, p_events), each in [0, 1] with a sum of at "
                f"most 1, got {modality_dropout!r}"
            )
            raise ValueError(msg)
        self.model = model
        self.criterion = criterion
        self.image_head = image_head
        self.event_head = event_head
        self.aux_weight = aux_weight
        self.pseudo_weight = pseudo_weight
        self.consistency_weight = consistency_weight
        self.temperature = temperature
        self.modality_dropout = probabilities

    def drop_modalities(
        self, image: Tensor, events: Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, DroppedModalities]:
        """Replace the frame or the events of some samples by exact zeros.

        One uniform draw ``u`` per sample: ``u < p_image`` drops the frame, ``p_image <= u <
        p_image + p_events`` drops the events, so a sample never loses both. Zeros are what
        the runtime feeds for a missing modality, so the network learns exactly that input.
        With both probabilities 0 nothing is drawn (the generator is left untouched).

        Args:
            image: ``(batch, 3, H, W)`` frames.
            events: ``(batch, C, H, W)`` event tensors.
            generator: Source of the draws (the trainer's loss generator, for exact resume).

        Returns:
            The (possibly) modified image and events, and which samples lost what.
        """
        batch = image.shape[0]
        p_image, p_events = self.modality_dropout
        if p_image == 0.0 and p_events == 0.0:
            none = torch.zeros(batch, dtype=torch.bool, device=image.device)
            return image, events, DroppedModalities(none, none)
        draw_device = generator.device if generator is not None else image.device
        draws = torch.rand(batch, generator=generator, device=draw_device).to(image.device)
        drop_image = draws < p_image
        drop_events = (draws >= p_image) & (draws < p_image + p_events)
        image = image.masked_fill(drop_image.view(-1, 1, 1, 1), 0.0)
        events = events.masked_fill(drop_events.view(-1, 1, 1, 1), 0.0)
        return image, events, DroppedModalities(drop_image, drop_events)

    def forward(
        self,
        image: Tensor,
        events: Tensor,
        labels: Tensor,
        instances: Tensor,
        *,
        reconstructed: Tensor | None = None,
        has_image: Tensor | None = None,
        unlabelled_image: Tensor | None = None,
        unlabelled_events: Tensor | None = None,
        pseudo_labels: Tensor | None = None,
        soft_targets: Tensor | None = None,
        generator: torch.Generator | None = None,
        grad_norms: bool = False,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss and its parts (detached scalars) for one micro-batch.

        Args:
            image: ``(batch, 3, H, W)`` frames, RGB in [0, 1].
            events: ``(batch, C, H, W)`` event tensors.
            labels: ``(batch, H, W)`` class ids, 255 = ignore.
            instances: ``(batch, H, W)`` instance ids for HFCA, 0 = none.
            reconstructed: ``(batch, 3, H, W)`` well-exposed RGB for Eq. 6's gradient map;
                ``None`` = the frame itself.
            has_image: ``(batch,)`` bool, False where the frame is a placeholder; such
                samples are left out of HFCA and JBCD like those whose frame was dropped.
            unlabelled_image: Frames of the unlabelled batch (semi-supervised terms).
            unlabelled_events: Events of the unlabelled batch.
            pseudo_labels: ``(batch, H, W)`` pseudo-labels of the unlabelled batch.
            soft_targets: EMA-teacher logits of the unlabelled batch.
            generator: Source of the modality-dropout draws.
            grad_norms: Also return ``grad_<part>``: the L2 norm of the gradient of each
                weighted part of Eq. 8 with respect to the network's parameters (one extra
                backward pass per part; the graph is kept for the real one).

        Returns:
            The total and the parts by name (unweighted loss parts, ``total``, optional
            ``aux_*``, ``pseudo``, ``consistency`` and ``grad_*``).
        """
        if reconstructed is None:
            reconstructed = image
        image, events, dropped = self.drop_modalities(image, events, generator=generator)
        paired = dropped.paired
        if has_image is not None:
            paired = paired & has_image.to(device=paired.device, dtype=torch.bool)
        output = self.model.forward_features(image, events)
        image_logits = event_logits = None
        if self.image_head is not None and output.image_features:
            image_logits = self.image_head(output.image_features)
        if self.event_head is not None and output.event_features:
            event_logits = self.event_head(output.event_features)
        result = self.criterion(
            logits=output.logits,
            labels=labels,
            image=image,
            reconstructed=reconstructed,
            image_features=output.image_features or None,
            event_features=output.event_features or None,
            instance_masks=instances,
            paired=paired,
        )
        total = result.total
        parts = {name: total.new_tensor(value) for name, value in result.parts.items()}
        if grad_norms:
            parameters = [p for p in self.model.parameters() if p.requires_grad]
            for name, term in result.weighted.items():
                parts[f"grad_{name}"] = gradient_norm(term, parameters)
        size = tuple(labels.shape[-2:])
        for name, logits in (("aux_image", image_logits), ("aux_event", event_logits)):
            if logits is not None:
                value = segmentation_cross_entropy(_upsample(logits, size), labels)
                total = total + self.aux_weight * value
                parts[name] = value.detach()
        if unlabelled_image is not None and unlabelled_events is not None:
            student = self.model.forward_features(unlabelled_image, unlabelled_events)
            if pseudo_labels is not None:
                target_logits = student.logits
                if self.event_head is not None and student.event_features:
                    # The event path: the event branch's own head in the fused network.
                    target_logits = _upsample(
                        self.event_head(student.event_features), tuple(pseudo_labels.shape[-2:])
                    )
                value = segmentation_cross_entropy(target_logits, pseudo_labels)
                total = total + self.pseudo_weight * value
                parts["pseudo"] = value.detach()
            if soft_targets is not None:
                value = soft_target_loss(student.logits, soft_targets, temperature=self.temperature)
                total = total + self.consistency_weight * value
                parts["consistency"] = value.detach()
        parts["total"] = total.detach()
        return total, parts
