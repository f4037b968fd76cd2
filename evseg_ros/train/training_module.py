"""The whole training objective of one micro-batch behind a single ``nn.Module`` (what DDP wraps).

Network, auxiliary branch heads and the loss's projection heads sit in one module so that one
forward per backward covers every trainable parameter and DDP averages all their gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evseg_ros.model.cacd import CACDNet
from evseg_ros.train.heads import BranchHead
from evseg_ros.train.losses import CACDLoss, segmentation_cross_entropy
from evseg_ros.train.semi import soft_target_loss

__all__ = ["TrainingModule"]


def _upsample(logits: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


class TrainingModule(nn.Module):
    """Everything that has trainable parameters, behind one ``forward`` (what DDP wraps).

    One forward computes the whole objective of a micro-batch, the unlabelled part included,
    so DDP sees one forward per backward and averages every gradient (network, auxiliary heads,
    HFCA projection heads).

    Args:
        model: The network.
        criterion: The CACD loss (holds the projection heads).
        image_head: Auxiliary classifier of the image branch, or ``None``.
        event_head: Auxiliary classifier of the event branch, or ``None``.
        aux_weight: Weight of each auxiliary head's cross-entropy.
        pseudo_weight: Weight of the pseudo-label cross-entropy.
        consistency_weight: Weight of the EMA-teacher consistency term.
        temperature: Temperature of the consistency term.
    """

    def __init__(
        self,
        model: CACDNet,
        criterion: CACDLoss,
        *,
        image_head: BranchHead | None = None,
        event_head: BranchHead | None = None,
        aux_weight: float = 0.4,
        pseudo_weight: float = 1.0,
        consistency_weight: float = 1.0,
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        self.model = model
        self.criterion = criterion
        self.image_head = image_head
        self.event_head = event_head
        self.aux_weight = aux_weight
        self.pseudo_weight = pseudo_weight
        self.consistency_weight = consistency_weight
        self.temperature = temperature

    def forward(
        self,
        image: Tensor,
        events: Tensor,
        labels: Tensor,
        instances: Tensor,
        *,
        unlabelled_image: Tensor | None = None,
        unlabelled_events: Tensor | None = None,
        pseudo_labels: Tensor | None = None,
        soft_targets: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss and its unweighted parts (detached scalars) for one micro-batch."""
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
            image_features=output.image_features or None,
            event_features=output.event_features or None,
            instance_masks=instances,
            image_logits=image_logits,
            event_logits=event_logits,
            generator=generator,
        )
        total = result.total
        parts = {name: total.new_tensor(value) for name, value in result.parts.items()}
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
