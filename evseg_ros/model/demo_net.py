"""A small two-stream segmentation network for paired camera frames and event frames.

The demo model has to train in minutes on a laptop CPU and run at camera rate without a GPU, so
it is a plain CNN: one light encoder per modality, features fused by concatenation at three
scales (1/2, 1/4, 1/8), and a light top-down decoder. Input normalisation lives inside the
network so that every runtime (ONNX Runtime, PyTorch, a future TensorRT engine) only has to
deliver the raw tensors described in :class:`DemoFusionNet`.
"""

from __future__ import annotations

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


class ConvBNReLU(nn.Sequential):
    """3x3 (or 1x1) convolution, batch norm, ReLU: the only building block of the network."""

    def __init__(self, in_ch: int, out_ch: int, *, stride: int = 1, kernel: int = 3) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class Encoder(nn.Module):
    """Three stride-2 stages returning features at 1/2, 1/4 and 1/8 of the input size."""

    def __init__(self, in_ch: int, width: int) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(ConvBNReLU(in_ch, width, stride=2), ConvBNReLU(width, width))
        self.stage2 = nn.Sequential(
            ConvBNReLU(width, 2 * width, stride=2), ConvBNReLU(2 * width, 2 * width)
        )
        self.stage3 = nn.Sequential(
            ConvBNReLU(2 * width, 4 * width, stride=2),
            ConvBNReLU(4 * width, 4 * width),
            ConvBNReLU(4 * width, 4 * width),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f1 = self.stage1(x)
        f2 = self.stage2(f1)
        f3 = self.stage3(f2)
        return f1, f2, f3


def _upsample_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    # Sizes are taken from the reference tensor, not a fixed factor, so odd input sizes work.
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


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
        self.image_encoder = Encoder(3, width)
        self.event_encoder = Encoder(3, width) if variant == "fused" else None
        streams = 2 if variant == "fused" else 1
        chans = (width, 2 * width, 4 * width)
        # 1x1 fusion convolutions: concatenation followed by a learnt mix at each scale.
        self.fuse = nn.ModuleList(ConvBNReLU(streams * c, c, kernel=1) for c in chans)
        # Top-down decoder: project, upsample, add the finer fused features, refine with a 3x3.
        self.lateral3 = ConvBNReLU(4 * width, 2 * width, kernel=1)
        self.refine2 = ConvBNReLU(2 * width, 2 * width)
        self.lateral2 = ConvBNReLU(2 * width, width, kernel=1)
        self.refine1 = ConvBNReLU(width, width)
        self.head = nn.Conv2d(width, num_classes, 1)

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
        feats = self.image_encoder(self.normalize_image(image))
        if self.event_encoder is not None:
            ev_feats = self.event_encoder(self.normalize_events(events))
            feats = tuple(torch.cat([a, b], dim=1) for a, b in zip(feats, ev_feats))
        f1, f2, f3 = (fuse(f) for fuse, f in zip(self.fuse, feats))
        x = self.refine2(_upsample_to(self.lateral3(f3), f2) + f2)
        x = self.refine1(_upsample_to(self.lateral2(x), f1) + f1)
        logits = self.head(x)
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
