"""Segmentation stage: image + event frame in, class mask and RViz overlay out.

The inputs are host arrays, or torch tensors on the backend's device (the GPU path: the frame
was demosaiced and remapped there, the event frame built there). The mask always comes back
to the host; the image is brought down only when the overlay is wanted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from evseg_ros.labels import LabelSet
from evseg_ros.pipeline.accumulator import host_array
from evseg_ros.pipeline.overlay import blend_overlay
from evseg_ros.runtime.backend import SegmentationBackend


@dataclass(frozen=True)
class SegmentationOutput:
    mask: np.ndarray  # (H, W) uint8 class ids at the image's resolution
    overlay: np.ndarray | None  # (H, W, 3) uint8 RGB, None when nobody wants it
    timings_ms: dict[str, float]


class Segmenter:
    """Run a backend on one frame pair and derive the published images."""

    def __init__(
        self, backend: SegmentationBackend, label_set: LabelSet, *, overlay_alpha: float = 0.5
    ) -> None:
        if not 0.0 <= overlay_alpha <= 1.0:
            msg = f"overlay_alpha must be within [0, 1], got {overlay_alpha!r}"
            raise ValueError(msg)
        self.backend = backend
        self.label_set = label_set
        self.overlay_alpha = overlay_alpha
        self.frames = 0

    def process(
        self, image: Any, event_frame: Any, *, want_overlay: bool = True
    ) -> SegmentationOutput:
        """Segment one frame.

        Args:
            image: (H, W, 3) uint8 RGB, numpy or a tensor on the backend's device.
            event_frame: (3, H, W) float32 on the image's grid, of the same kind.
            want_overlay: Also blend the overlay (brings a GPU image to the host).

        Raises:
            ValueError: the shapes do not fit together.
        """
        if image.ndim != 3 or image.shape[2] != 3:
            msg = f"image must be (H, W, 3) RGB, got shape {tuple(image.shape)!r}"
            raise ValueError(msg)
        if tuple(event_frame.shape) != (3, *image.shape[:2]):
            msg = (
                f"event frame shape {tuple(event_frame.shape)!r} does not match image "
                f"{tuple(image.shape[:2])!r}"
            )
            raise ValueError(msg)
        result = self.backend.infer(image, event_frame)
        timings = dict(result.timings)
        overlay = None
        if want_overlay:
            start = time.perf_counter()
            overlay = blend_overlay(
                host_array(image), result.mask, self.label_set, self.overlay_alpha
            )
            timings["overlay"] = (time.perf_counter() - start) * 1e3
        self.frames += 1
        return SegmentationOutput(result.mask, overlay, timings)
