"""Geometric augmentation applied identically to the frame, the events and the label maps.

The two modalities must stay pixel-aligned after augmentation (the fusion and the distillation
losses compare them pixel by pixel), so one random draw (scale factor, crop offset, flip) is
applied to all four arrays of a sample.

Resampling on scale:

- image: bilinear (``cv2.INTER_LINEAR``), half-pixel centres.
- label, instances: nearest neighbour with the same half-pixel-centre convention
  (source pixel ``floor((dst + 0.5) * src_size / dst_size)``); labels and ids must never be
  interpolated.
- events, enlarged (factor >= 1): nearest, like the labels. It keeps counts integer counts and
  times real times, and per-pixel statistics unchanged, which is what the network's ``log1p``
  input scaling expects.
- events, shrunk (factor < 1): area average (``cv2.INTER_AREA``). Nearest would drop most
  events here (at factor 0.4, 84 % of the pixels, and with them the sparse edges the events are
  there for); the average keeps every event's contribution and the mean per-pixel count.

Because bilinear and nearest share the pixel-centre convention, a frame pixel and the event /
label pixel at the same output position come from source positions less than one source pixel
apart (exactly the same position for factor 1).

Crop pads at the bottom/right when the sample is smaller than the crop: 0 for image, events and
instances, 255 (ignore) for the label, so padding never counts as a class.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from evseg_ros.labels import VOID
from evseg_ros.train.datasets.sample import SampleArrays

__all__ = ["AugmentConfig", "Augmenter", "crop", "hflip", "pad_to", "scale"]


@dataclass(frozen=True)
class AugmentConfig:
    """Random scale, random crop and horizontal flip settings.

    Attributes:
        scale_range: ``(low, high)`` factor drawn uniformly; ``(1, 1)`` disables scaling.
        crop_size: ``(height, width)`` of the output, or ``None`` for no crop.
        hflip: Flip horizontally with probability 0.5.
    """

    scale_range: tuple[float, float] = (0.5, 2.0)
    crop_size: tuple[int, int] | None = (512, 512)
    hflip: bool = True

    def __post_init__(self) -> None:
        low, high = self.scale_range
        if not 0 < low <= high:
            msg = f"scale_range must satisfy 0 < low <= high, got {self.scale_range!r}"
            raise ValueError(msg)
        if self.crop_size is not None and (len(self.crop_size) != 2 or min(self.crop_size) <= 0):
            msg = f"crop_size must be (height, width) > 0, got {self.crop_size!r}"
            raise ValueError(msg)


def _nearest_indices(source: int, target: int) -> np.ndarray:
    """Source index of every target index for nearest resampling with half-pixel centres."""
    positions = (np.arange(target) + 0.5) * (source / target)
    return np.minimum(np.floor(positions).astype(np.int64), source - 1)


def scale(arrays: SampleArrays, factor: float) -> SampleArrays:
    """Resize all arrays by ``factor`` (see the module doc for each array's resampling)."""
    height, width = arrays.shape
    new_height = max(1, round(height * factor))
    new_width = max(1, round(width * factor))
    if (new_height, new_width) == (height, width):
        return arrays
    rows = _nearest_indices(height, new_height)
    cols = _nearest_indices(width, new_width)
    return SampleArrays(
        image=_resize_rgb(arrays.image, new_height, new_width),
        events=_resize_events(arrays.events, new_height, new_width, rows, cols),
        label=arrays.label[rows][:, cols],
        instances=arrays.instances[rows][:, cols],
        reconstructed=_resize_rgb(arrays.reconstructed, new_height, new_width),
    )


def _resize_rgb(image: np.ndarray, height: int, width: int) -> np.ndarray:
    resized = cv2.resize(
        np.ascontiguousarray(image.transpose(1, 2, 0)),
        (width, height),
        interpolation=cv2.INTER_LINEAR,
    )
    return np.ascontiguousarray(resized.transpose(2, 0, 1))


def _resize_events(
    events: np.ndarray, height: int, width: int, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    if height >= events.shape[1] and width >= events.shape[2]:
        return events[:, rows][:, :, cols]
    channels = [
        cv2.resize(channel, (width, height), interpolation=cv2.INTER_AREA)
        for channel in events.astype(np.float32, copy=False)
    ]
    return np.stack(channels).astype(events.dtype, copy=False)


def pad_to(arrays: SampleArrays, height: int, width: int) -> SampleArrays:
    """Pad at the bottom/right to at least ``height`` x ``width`` (label with 255)."""
    current_height, current_width = arrays.shape
    pad_rows = max(0, height - current_height)
    pad_cols = max(0, width - current_width)
    if pad_rows == 0 and pad_cols == 0:
        return arrays
    spatial = ((0, pad_rows), (0, pad_cols))
    return SampleArrays(
        image=np.pad(arrays.image, ((0, 0), *spatial), constant_values=0.0),
        events=np.pad(arrays.events, ((0, 0), *spatial), constant_values=0.0),
        label=np.pad(arrays.label, spatial, constant_values=VOID),
        instances=np.pad(arrays.instances, spatial, constant_values=0),
        reconstructed=np.pad(arrays.reconstructed, ((0, 0), *spatial), constant_values=0.0),
    )


def crop(arrays: SampleArrays, top: int, left: int, height: int, width: int) -> SampleArrays:
    """Cut the window ``[top, top + height) x [left, left + width)`` out of every array.

    Raises:
        ValueError: The window does not lie inside the arrays (pad first).
    """
    rows, cols = arrays.shape
    if top < 0 or left < 0 or top + height > rows or left + width > cols:
        msg = (
            f"crop window top={top!r} left={left!r} size={(height, width)!r} is outside "
            f"the {(rows, cols)!r} sample"
        )
        raise ValueError(msg)
    window = (slice(top, top + height), slice(left, left + width))
    return SampleArrays(
        image=arrays.image[(slice(None), *window)],
        events=arrays.events[(slice(None), *window)],
        label=arrays.label[window],
        instances=arrays.instances[window],
        reconstructed=arrays.reconstructed[(slice(None), *window)],
    )


def hflip(arrays: SampleArrays) -> SampleArrays:
    """Mirror every array left-right."""
    return SampleArrays(
        image=arrays.image[:, :, ::-1],
        events=arrays.events[:, :, ::-1],
        label=arrays.label[:, ::-1],
        instances=arrays.instances[:, ::-1],
        reconstructed=arrays.reconstructed[:, :, ::-1],
    )


class Augmenter:
    """Draw one scale / crop / flip per sample from a numpy ``Generator`` and apply it."""

    def __init__(self, config: AugmentConfig) -> None:
        self.config = config

    def __call__(self, arrays: SampleArrays, rng: np.random.Generator) -> SampleArrays:
        """Augment one sample; the same ``rng`` state always gives the same result."""
        low, high = self.config.scale_range
        if high > low:
            arrays = scale(arrays, float(rng.uniform(low, high)))
        elif low != 1.0:
            arrays = scale(arrays, low)
        if self.config.crop_size is not None:
            crop_height, crop_width = self.config.crop_size
            arrays = pad_to(arrays, crop_height, crop_width)
            height, width = arrays.shape
            top = int(rng.integers(0, height - crop_height + 1))
            left = int(rng.integers(0, width - crop_width + 1))
            arrays = crop(arrays, top, left, crop_height, crop_width)
        if self.config.hflip and rng.random() < 0.5:
            arrays = hflip(arrays)
        return replace(
            arrays,
            image=np.ascontiguousarray(arrays.image),
            events=np.ascontiguousarray(arrays.events),
            label=np.ascontiguousarray(arrays.label),
            instances=np.ascontiguousarray(arrays.instances),
            reconstructed=np.ascontiguousarray(arrays.reconstructed),
        )
