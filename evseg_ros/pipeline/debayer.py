"""Bayer mosaic -> rgb8, on the CPU with OpenCV or on any torch device.

The FLIR driver publishes the raw mosaic (a third of the bytes of rgb8, and no CPU time in the
driver); the consumer demosaics where the pixels end up, which on a GPU machine is the GPU.

Naming trap: ROS and GenICam name a mosaic by its top-left 2x2 block read row by row
(``bayer_rggb8`` = R G / G B), while OpenCV's ``COLOR_Bayer??2RGB`` names it by the second and
third pixel of the second row. So ROS ``rggb`` is OpenCV ``BG``; the table below is verified by
a test that mosaics a known RGB image and demosaics it back.

Both implementations are the classic bilinear demosaic (OpenCV's default for these codes): a
missing green is the mean of its four direct neighbours, a missing red/blue the mean of its two
or four nearest same-colour neighbours, rounded half up. The torch version is a 3x3
convolution per channel over the masked mosaic and agrees with OpenCV exactly away from the
one-pixel border (borders: OpenCV extrapolates differently; here the mosaic is mirrored, which
keeps the colour pattern in phase).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from evseg_ros.device import is_cuda, resolve_device_name

if TYPE_CHECKING:
    import torch

#: ROS Bayer encoding -> OpenCV conversion code (see the module docstring for the offset)
OPENCV_BAYER_CODES: dict[str, int] = {
    "bayer_rggb8": cv2.COLOR_BayerBG2RGB,
    "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg8": cv2.COLOR_BayerGR2RGB,
    "bayer_grbg8": cv2.COLOR_BayerGB2RGB,
}
#: colour (0 R, 1 G, 2 B) of the top-left 2x2 block, row by row, per ROS Bayer encoding
BAYER_PATTERNS: dict[str, tuple[int, int, int, int]] = {
    "bayer_rggb8": (0, 1, 1, 2),
    "bayer_bggr8": (2, 1, 1, 0),
    "bayer_gbrg8": (1, 2, 0, 1),
    "bayer_grbg8": (1, 0, 2, 1),
}
#: encodings :class:`Debayer` accepts (the non-Bayer ones are only reordered or replicated)
SUPPORTED_ENCODINGS: tuple[str, ...] = (*BAYER_PATTERNS, "rgb8", "bgr8", "mono8")


def _check(image_shape: tuple[int, ...], dtype: Any, encoding: str) -> None:
    if encoding not in SUPPORTED_ENCODINGS:
        msg = f"cannot convert encoding {encoding!r} to rgb8; supported: {SUPPORTED_ENCODINGS!r}"
        raise ValueError(msg)
    channels = 3 if encoding in ("rgb8", "bgr8") else 1
    shape_ok = (
        len(image_shape) == 2 if channels == 1 else (len(image_shape) == 3 and image_shape[2] == 3)
    )
    if not shape_ok or str(dtype) not in ("uint8", "torch.uint8"):
        msg = (
            f"encoding {encoding!r} needs a uint8 array of shape "
            f"{'(H, W)' if channels == 1 else '(H, W, 3)'}, got {dtype} {tuple(image_shape)!r}"
        )
        raise ValueError(msg)


def debayer_opencv(image: np.ndarray, encoding: str) -> np.ndarray:
    """(H, W[, 3]) uint8 in ``encoding`` -> (H, W, 3) uint8 RGB with OpenCV.

    Raises:
        ValueError: unsupported encoding (lists the supported ones) or wrong shape/dtype.
    """
    _check(image.shape, image.dtype, encoding)
    if encoding == "rgb8":
        return image
    if encoding == "bgr8":
        return np.ascontiguousarray(image[:, :, ::-1])
    if encoding == "mono8":
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(np.ascontiguousarray(image), OPENCV_BAYER_CODES[encoding])


def _channel_masks(encoding: str, height: int, width: int, device: Any) -> torch.Tensor:
    """(3, H, W) float masks: 1 where the mosaic samples that colour."""
    import torch

    pattern = BAYER_PATTERNS[encoding]
    rows = torch.arange(height, device=device) % 2
    cols = torch.arange(width, device=device) % 2
    colour = torch.tensor(pattern, device=device)[(rows[:, None] * 2 + cols[None, :])]
    return torch.stack([(colour == c) for c in range(3)]).to(torch.float32)


def debayer_torch(mosaic: torch.Tensor, encoding: str) -> torch.Tensor:
    """Bilinear demosaic of a (H, W) uint8 tensor on its own device -> (H, W, 3) uint8 RGB.

    Raises:
        ValueError: not a Bayer encoding, or the tensor is not (H, W) uint8.
    """
    import torch
    from torch.nn import functional

    if encoding not in BAYER_PATTERNS:
        msg = f"debayer_torch needs a Bayer encoding, one of {tuple(BAYER_PATTERNS)!r}; "
        msg += f"got {encoding!r}"
        raise ValueError(msg)
    _check(tuple(mosaic.shape), mosaic.dtype, encoding)
    height, width = mosaic.shape
    device = mosaic.device
    # (1, 1, H, W) -> mirrored by one pixel; mirroring keeps the colour phase, so the masks of
    # the padded mosaic are the padded masks
    padded = functional.pad(mosaic.to(torch.float32)[None, None], (1, 1, 1, 1), mode="reflect")
    masks = _channel_masks(encoding, height, width, device)
    masks = functional.pad(masks[None], (1, 1, 1, 1), mode="reflect")
    sampled = padded * masks  # (1, 3, H+2, W+2): each channel holds only its own samples
    red_blue = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], device=device)
    green = torch.tensor([[0.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 0.0]], device=device)
    kernels = torch.stack([red_blue, green, red_blue])[:, None] / 4.0  # (3, 1, 3, 3)
    rgb = functional.conv2d(sampled, kernels, groups=3)[0]  # (3, H, W)
    # round half up, as OpenCV's integer arithmetic does
    return torch.floor(rgb + 0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous()


class Debayer:
    """Convert a frame in any :data:`SUPPORTED_ENCODINGS` to RGB on the chosen device.

    With the default ``backend="auto"``, ``device="cpu"`` runs OpenCV and returns numpy arrays,
    and a CUDA device runs :func:`debayer_torch` and returns (H, W, 3) uint8 tensors on that
    device, ready for the network without another host round trip. ``backend="torch"`` uses
    torch on any device (CPU included). ``device`` is read by :mod:`evseg_ros.device`, like
    every stage's: ``auto`` picks CUDA when torch sees a GPU, ``cuda`` without one is an error.

    A host frame given to a CUDA debayer is uploaded as it came (the mosaic: a third of the
    bytes of the RGB it becomes) through page-locked memory, without blocking the host.

    Raises:
        DeviceError: a malformed device, or a GPU this machine does not have (says what to set).
        ValueError: unknown backend, or OpenCV asked for on a GPU.
    """

    def __init__(self, device: str = "auto", *, backend: str = "auto") -> None:
        self.device = resolve_device_name(device)
        if backend not in ("auto", "opencv", "torch"):
            msg = f"Debayer backend {backend!r} is not one of 'auto', 'opencv', 'torch'"
            raise ValueError(msg)
        if backend == "opencv" and is_cuda(self.device):
            msg = f"Debayer backend 'opencv' runs on the CPU, not on device {self.device!r}"
            raise ValueError(msg)
        self.backend = (
            backend if backend != "auto" else ("torch" if is_cuda(self.device) else "opencv")
        )

    def __call__(self, image: np.ndarray | torch.Tensor, encoding: str) -> Any:
        """RGB version of ``image``: numpy with OpenCV, a tensor on ``device`` with torch.

        Raises:
            ValueError: unsupported encoding (lists the supported ones) or wrong shape/dtype.
        """
        if self.backend == "opencv":
            array = image if isinstance(image, np.ndarray) else image.cpu().numpy()
            return debayer_opencv(array, encoding)
        import torch

        from evseg_ros.runtime.tensor_inputs import as_tensor

        _check(tuple(image.shape), image.dtype, encoding)
        tensor = as_tensor(image, torch.device(self.device))
        if encoding in BAYER_PATTERNS:
            return debayer_torch(tensor, encoding)
        if encoding == "bgr8":
            return tensor.flip(-1).contiguous()
        if encoding == "mono8":
            return tensor[:, :, None].expand(-1, -1, 3).contiguous()
        return tensor
