"""Frames onto the network's output grid: undistort + crop/scale in one remap.

The maps come from :meth:`RigCalibration.frame_remap_maps` (the raw frame pixel sampled for
every output pixel), so frames and events land on the same grid by construction. Two
interchangeable backends apply them with bilinear interpolation:

* ``opencv``: ``cv2.remap`` (CPU) with the float32 maps as they are (converting them to
  OpenCV's fixed-point form would be faster but rounds sample positions to 1/32 pixel).
* ``torch``: ``torch.nn.functional.grid_sample`` on the frame's device (CUDA when available),
  with the same maps in normalised coordinates. ``align_corners=True`` puts -1 and +1 on the
  centres of the first and last pixels, which is OpenCV's pixel-centre convention, so both
  backends sample the same points (checked numerically in the tests).

When the output grid *is* the undistorted frame (same size, no crop, no distortion) the frame
is passed through untouched.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from evseg_ros.device import is_cuda, resolve_device_name
from evseg_ros.geometry.calibration import RigCalibration

if TYPE_CHECKING:
    import torch


class FrameShapeError(ValueError):
    """A frame does not have the frame camera's size."""


class RemapBackend(Enum):
    """How frames are resampled."""

    IDENTITY = "identity"  # output grid == frame: nothing to do
    OPENCV = "opencv"
    TORCH = "torch"


def normalised_grid(map_x: np.ndarray, map_y: np.ndarray, width: int, height: int) -> np.ndarray:
    """``cv2.remap`` pixel maps -> ``grid_sample`` grid (``align_corners=True``).

    Returns:
        (height_out, width_out, 2) float32, x then y, -1/+1 at the first/last pixel centre.
    """
    gx = map_x.astype(np.float64) * (2.0 / max(width - 1, 1)) - 1.0
    gy = map_y.astype(np.float64) * (2.0 / max(height - 1, 1)) - 1.0
    return np.stack([gx, gy], axis=-1).astype(np.float32)


class FrameRemapper:
    """Resample raw frames onto the calibration's output grid.

    Args:
        calibration: Rig calibration (frame intrinsics/distortion and output grid).
        device: ``"auto"`` (CUDA if torch sees one), ``"cpu"`` or ``"cuda[:n]"``, read by
            :mod:`evseg_ros.device` like every stage's.
        backend: Force ``"opencv"`` or ``"torch"``; by default torch on CUDA, OpenCV on CPU,
            and the identity pass-through whenever the output grid is the frame.

    Raises:
        DeviceError: a malformed device, or a GPU this machine does not have (says what to set).
        ValueError: OpenCV asked for on a GPU.
    """

    def __init__(
        self, calibration: RigCalibration, device: str = "auto", *, backend: str | None = None
    ) -> None:
        self.device = resolve_device_name(device)
        self.input_size = (calibration.frame_camera.width, calibration.frame_camera.height)
        self.output_size = (calibration.output_width, calibration.output_height)
        if backend is None:
            if calibration.output_is_frame_grid:
                chosen = RemapBackend.IDENTITY
            elif is_cuda(self.device):
                chosen = RemapBackend.TORCH
            else:
                chosen = RemapBackend.OPENCV
        else:
            chosen = RemapBackend(backend)
        if chosen is RemapBackend.OPENCV and is_cuda(self.device):
            msg = f"backend 'opencv' runs on the CPU only, got device {self.device!r}"
            raise ValueError(msg)
        self.backend = chosen
        self.map_x, self.map_y = calibration.frame_remap_maps()
        self._grid: Any = None
        if chosen is RemapBackend.TORCH:
            import torch  # noqa: PLC0415 (torch only for this backend)

            grid = normalised_grid(self.map_x, self.map_y, *self.input_size)
            self._grid = torch.from_numpy(grid).unsqueeze(0).to(self.device)

    def remap(self, image: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Return ``image`` on the output grid.

        Args:
            image: numpy ``(H, W)`` or ``(H, W, C)`` (any dtype cv2 accepts), or a torch tensor
                ``(C, H, W)`` / ``(N, C, H, W)``, at the frame camera's size.

        Returns:
            Same kind and layout. numpy keeps its dtype (integers rounded and clipped);
            tensors come back float32 on this remapper's device (identity: unchanged).

        Raises:
            FrameShapeError: The image is not the frame camera's size.
        """
        if isinstance(image, np.ndarray):
            self._check_size(image.shape[1], image.shape[0], image.shape)
            if self.backend is RemapBackend.IDENTITY:
                return image
            if self.backend is RemapBackend.OPENCV:
                return cv2.remap(
                    image,
                    self.map_x,
                    self.map_y,
                    cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_CONSTANT,
                    borderValue=0,
                )
            return self._remap_numpy_with_torch(image)
        self._check_size(image.shape[-1], image.shape[-2], tuple(image.shape))
        if self.backend is RemapBackend.IDENTITY:
            return image
        if self.backend is RemapBackend.OPENCV:
            msg = "torch tensors need the 'torch' backend (this remapper uses OpenCV)"
            raise TypeError(msg)
        return self._remap_tensor(image)

    def remap_image(self, image: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Return an ``(H, W[, C])`` image on the output grid in its own kind, layout and dtype.

        The camera frame's path: numpy as :meth:`remap`, and a channels-last tensor (the
        demosaiced frame on the GPU) stays a tensor on this remapper's device, integers rounded
        and clipped like the numpy path, so the network sees the same pixels either way.

        Raises:
            FrameShapeError: The image is not the frame camera's size.
        """
        if isinstance(image, np.ndarray):
            return self.remap(image)
        self._check_size(image.shape[1], image.shape[0], tuple(image.shape))
        if self.backend is RemapBackend.IDENTITY:
            return image
        if self.backend is RemapBackend.OPENCV:
            msg = "torch tensors need the 'torch' backend (this remapper uses OpenCV)"
            raise TypeError(msg)
        return self._remap_channels_last(image)

    # -- internals -----------------------------------------------------------------------------
    def _check_size(self, width: int, height: int, shape: tuple) -> None:
        if (width, height) != self.input_size:
            msg = (
                f"frame of shape {shape!r} does not match the frame camera's "
                f"{self.input_size[0]}x{self.input_size[1]}"
            )
            raise FrameShapeError(msg)

    def _remap_tensor(self, tensor: torch.Tensor) -> torch.Tensor:
        import torch  # noqa: PLC0415

        batched = tensor if tensor.dim() == 4 else tensor.unsqueeze(0)
        batched = batched.to(device=self.device, dtype=torch.float32)
        grid = self._grid.expand(batched.shape[0], -1, -1, -1)
        out = torch.nn.functional.grid_sample(
            batched, grid, mode="bilinear", padding_mode="zeros", align_corners=True
        )
        return out if tensor.dim() == 4 else out.squeeze(0)

    def _remap_channels_last(self, image: torch.Tensor) -> torch.Tensor:
        """(H, W[, C]) tensor -> the same on the output grid; integer dtypes rounded, clipped."""
        import torch  # noqa: PLC0415

        planar = image[..., None] if image.dim() == 2 else image
        out = self._remap_tensor(planar.permute(2, 0, 1)).permute(1, 2, 0)
        if not image.dtype.is_floating_point:
            info = torch.iinfo(image.dtype)
            out = out.round_().clamp_(info.min, info.max)  # half to even, as numpy's rint
        out = out.to(image.dtype).contiguous()
        return out[..., 0] if image.dim() == 2 else out

    def _remap_numpy_with_torch(self, image: np.ndarray) -> np.ndarray:
        import torch  # noqa: PLC0415

        tensor = torch.from_numpy(np.ascontiguousarray(image))
        return self._remap_channels_last(tensor).cpu().numpy()


__all__ = ["FrameRemapper", "FrameShapeError", "RemapBackend", "normalised_grid"]
