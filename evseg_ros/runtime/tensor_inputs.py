"""Network inputs from torch tensors, on the device the frame already lives on.

On the vehicle the frame is demosaiced and remapped on the GPU and the event frame is built
there; copying both to the host to resize and normalise them, then back for inference, would
cost more than the network's B0 forward pass. These functions do the same work as
:func:`evseg_ros.runtime.backend.to_network_inputs` (same interpolation choices, same units)
with torch on whatever device the tensors are on, and the mask comes back to the host once, at
the image's size, as the only copy per frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.nn import functional

#: 1/255 as a float32 constant: the image normalisation of the numpy path, bit for bit.
_INV_255 = float(np.float32(1.0 / 255.0))


def is_tensor(value: Any) -> bool:
    """Whether ``value`` is a torch tensor (cheap check for backends that accept both kinds)."""
    return isinstance(value, torch.Tensor)


def check_tensor_inputs(image: torch.Tensor, events: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``image`` is HxWx3 uint8 and ``events`` 3xHxW on its grid."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != torch.uint8:
        msg = f"image must be HxWx3 uint8 RGB, got {tuple(image.shape)} {image.dtype}"
        raise ValueError(msg)
    if events.ndim != 3 or tuple(events.shape) != (3, *image.shape[:2]):
        height, width = image.shape[:2]
        msg = f"events must be 3x{height}x{width} (the image grid), got {tuple(events.shape)}"
        raise ValueError(msg)
    if image.device != events.device:
        msg = f"image is on {image.device} but events on {events.device}; both must share one"
        raise ValueError(msg)
    if not bool(torch.isfinite(events).all()):
        msg = "events contain NaN or inf (a broken event frame): frame skipped"
        raise ValueError(msg)


def as_tensor(value: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """``value`` on ``device``; a host array is uploaded without an extra host copy."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    tensor = torch.from_numpy(np.ascontiguousarray(value))
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor


def to_network_tensors(
    image: torch.Tensor,
    events: torch.Tensor,
    size: tuple[int, int] | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One frame as the network's ``1x3xHxW`` tensors of ``dtype``, resized to ``size`` (w, h).

    The interpolation follows the host path: area averaging when shrinking, bilinear when
    enlarging, for the image and the event counts (the mean count keeps the unit the network
    was trained on); nearest for the latest-event time, which must not be averaged with the
    zeros of silent pixels.
    """
    check_tensor_inputs(image, events)
    height, width = image.shape[:2]
    image_t = image.permute(2, 0, 1)[None].float() * _INV_255
    events_t = events[None].float()
    if size is not None and tuple(size) != (width, height):
        out = (int(size[1]), int(size[0]))
        shrink = size[0] <= width and size[1] <= height
        mode = {"mode": "area"} if shrink else {"mode": "bilinear", "align_corners": False}
        image_t = functional.interpolate(image_t, size=out, **mode)
        counts = functional.interpolate(events_t[:, :2], size=out, **mode)
        latest = functional.interpolate(events_t[:, 2:], size=out, mode="nearest")
        events_t = torch.cat([counts, latest], dim=1)
    return image_t.to(dtype).contiguous(), events_t.to(dtype).contiguous()


def mask_to_host(mask: torch.Tensor, width: int, height: int) -> np.ndarray:
    """An ``h x w`` class-id tensor at ``width x height`` (nearest: ids never blend) on the host."""
    if tuple(mask.shape) != (height, width):
        resized = functional.interpolate(
            mask[None, None].float(), size=(height, width), mode="nearest"
        )
        mask = resized[0, 0]
    return mask.to(torch.uint8).cpu().numpy()


__all__ = ["as_tensor", "check_tensor_inputs", "is_tensor", "mask_to_host", "to_network_tensors"]
