"""A small two-stream segmentation network for paired camera frames and event frames.

The demo model has to train in minutes on a laptop CPU and run at camera rate without a GPU, so
it is a plain CNN: one light encoder per modality, features fused by concatenation at three
scales (1/2, 1/4, 1/8), and a light top-down decoder. Input normalisation lives inside the
network so that every runtime (ONNX Runtime, PyTorch, a future TensorRT engine) only has to
deliver the raw tensors described in :class:`DemoFusionNet`.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: Accepted values of ``variant``.
VARIANTS = ("fused", "image_only")

#: Mean and spread used to centre RGB in [0, 1]; fixed constants, not learnt, so the exported
#: graph does not depend on the training set's statistics.
_IMAGE_MEAN = (0.45, 0.45, 0.45)
_IMAGE_STD = (0.25, 0.25, 0.25)


#: Convolutions per encoder stage (the first of each has stride 2).
STAGE_DEPTHS = (2, 2, 3)


class ConvBNReLU(nn.Sequential):
    """3x3 (or 1x1) convolution, batch norm, ReLU: the only building block of the network."""

    def __init__(
        self, in_channels: int, out_channels: int, *, stride: int = 1, kernel: int = 3
    ) -> None:
        super().__init__(
            nn.Conv2d(
                in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class Encoder(nn.Module):
    """Stride-2 stages; stage ``i`` returns ``channels[i]`` features at ``1 / 2**(i + 1)`` size."""

    def __init__(self, in_channels: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        stages = []
        for out_channels, depth in zip(channels, STAGE_DEPTHS, strict=True):
            layers = [ConvBNReLU(in_channels, out_channels, stride=2)]
            layers += [ConvBNReLU(out_channels, out_channels) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*layers))
            in_channels = out_channels
        self.stages = nn.ModuleList(stages)

    def forward(self, hidden_states: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for stage in self.stages:
            hidden_states = stage(hidden_states)
            features.append(hidden_states)
        return features


def _upsample_to(hidden_states: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    # Sizes are taken from the reference tensor, not a fixed factor, so odd input sizes work.
    return F.interpolate(
        hidden_states, size=reference.shape[-2:], mode="bilinear", align_corners=False
    )


class DemoFusionNet(nn.Module):
    """Frame + event segmentation network, or its frame-only twin.

    Input contract (identical for both variants, so either is a drop-in replacement):

    * ``image``: float32 ``N x 3 x H x W``, RGB scaled to [0, 1].
    * ``events``: float32 ``N x 3 x H x W``, the raw event frame of
      :class:`evseg_ros.events.event_frame.EventFrameBuilder` (ON count, OFF count, latest time
      in [0, 1]). Counts are compressed with ``log1p`` inside the network because their range
      depends on scene texture and motion and spans orders of magnitude.

    Output: logits ``N x num_classes x H x W`` at the input resolution, for any ``H, W``.

    ``variant="image_only"`` builds no event encoder and ignores ``events``; everything else
    (image encoder, fusion and decoder widths) is the same, which makes the pair a controlled
    comparison of what the events add.

    Args:
        num_classes: Number of output classes.
        variant: ``"fused"`` or ``"image_only"``.
        width: Channels of the first encoder stage; later stages use 2x and 4x.
    """

    def __init__(self, num_classes: int = 11, variant: str = "fused", width: int = 16) -> None:
        super().__init__()
        if variant not in VARIANTS:
            msg = f"unknown variant {variant!r}; expected one of {VARIANTS}"
            raise ValueError(msg)
        if num_classes < 1 or width < 1:
            msg = f"num_classes and width must be positive, got {num_classes!r}, {width!r}"
            raise ValueError(msg)
        self.num_classes = num_classes
        self.variant = variant
        self.width = width
        self.register_buffer(
            "image_mean", torch.tensor(_IMAGE_MEAN).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "image_std", torch.tensor(_IMAGE_STD).view(1, 3, 1, 1), persistent=False
        )
        channels = (width, 2 * width, 4 * width)
        self.image_encoder = Encoder(3, channels)
        self.event_encoder = Encoder(3, channels) if variant == "fused" else None
        streams = 2 if variant == "fused" else 1
        # Per-stage fusion: concatenate both modalities, mix with a 1x1 convolution.
        self.fuse = nn.ModuleList(ConvBNReLU(streams * c, c, kernel=1) for c in channels)
        # Top-down decoder, coarse to fine: project the coarser map to the finer stage's
        # channels, upsample, add the finer fused features, refine with a 3x3 convolution.
        self.lateral = nn.ModuleList(
            ConvBNReLU(coarse, fine, kernel=1) for fine, coarse in itertools.pairwise(channels)
        )
        self.refine = nn.ModuleList(ConvBNReLU(c, c) for c in channels[:-1])
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def config(self) -> dict[str, Any]:
        """Return the constructor arguments, for checkpoints and model metadata."""
        return {"num_classes": self.num_classes, "variant": self.variant, "width": self.width}

    def normalize_image(self, image: torch.Tensor) -> torch.Tensor:
        """Centre and scale RGB in [0, 1]."""
        return (image - self.image_mean) / self.image_std

    @staticmethod
    def normalize_events(events: torch.Tensor) -> torch.Tensor:
        """Compress the two count channels with ``log1p``; keep the time channel in [0, 1]."""
        counts = torch.log1p(events[:, 0:2].clamp(min=0.0))
        return torch.cat([counts, events[:, 2:3]], dim=1)

    def forward(self, image: torch.Tensor, events: torch.Tensor) -> torch.Tensor:
        features = self.image_encoder(self.normalize_image(image))
        if self.event_encoder is not None:
            event_features = self.event_encoder(self.normalize_events(events))
            features = [torch.cat(pair, dim=1) for pair in zip(features, event_features)]
        fused = [fuse(f) for fuse, f in zip(self.fuse, features)]
        hidden_states = fused[-1]  # (batch, 4 * width, height / 8, width / 8)
        for i in reversed(range(len(fused) - 1)):
            upsampled = _upsample_to(self.lateral[i](hidden_states), fused[i])
            hidden_states = self.refine[i](upsampled + fused[i])
        logits = self.classifier(hidden_states)  # (batch, classes, height / 2, width / 2)
        return F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=False)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def save_checkpoint(model: DemoFusionNet, path: str | Path, **extra: Any) -> None:
    """Save weights together with the constructor config, so loading needs no other file."""
    torch.save({"config": model.config(), "state_dict": model.state_dict(), **extra}, path)


def load_checkpoint(path: str | Path, *, map_location: str = "cpu") -> DemoFusionNet:
    """Rebuild a :class:`DemoFusionNet` from :func:`save_checkpoint` output (in eval mode)."""
    data = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(data, dict) or "config" not in data or "state_dict" not in data:
        msg = f"{str(path)!r} is not a DemoFusionNet checkpoint (needs 'config' and 'state_dict')"
        raise ValueError(msg)
    model = DemoFusionNet(**data["config"])
    model.load_state_dict(data["state_dict"])
    return model.eval()
