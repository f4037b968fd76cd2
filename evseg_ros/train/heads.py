"""Training-only auxiliary classifiers on one encoder branch (never part of the exported model).

Optional and off by default (``loss.aux_heads``): they are not part of CACD's objective (paper
Eq. 8). They give a branch its own class scores before fusion, for an auxiliary cross-entropy
(``loss.aux_weight``) and for the semi-supervised pseudo-labels, which train the event path
through the event branch's head. JBCD's content term has its own heads in
:class:`~evseg_ros.train.losses.CACDLoss`.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BranchHead"]


class BranchHead(nn.Module):
    """Class scores of one encoder branch on its own (training-only, never exported).

    The network has no per-branch prediction, so a branch that needs one gets this small
    SegFormer-like head: every stage is projected to ``channels`` by a 1x1 convolution,
    upsampled to stage 1 (1/4 resolution), summed, and classified by a 1x1 convolution.

    Args:
        stage_channels: Channels of the four encoder stages.
        num_classes: Output classes.
        channels: Hidden width.
    """

    def __init__(self, stage_channels: tuple[int, ...], num_classes: int, *, channels: int = 64):
        super().__init__()
        self.projections = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in stage_channels)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, stage_maps: list[Tensor]) -> Tensor:
        """Four stage maps -> ``(batch, num_classes, H / 4, W / 4)``."""
        size = stage_maps[0].shape[-2:]
        summed = None
        for projection, stage in zip(self.projections, stage_maps):
            mapped = F.interpolate(
                projection(stage), size=size, mode="bilinear", align_corners=False
            )
            summed = mapped if summed is None else summed + mapped
        return self.classifier(F.relu(summed))
