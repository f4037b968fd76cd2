"""Colour renderings of class masks for RViz and for the demo's PNG panels."""

from __future__ import annotations

import numpy as np

from evseg_ros.labels import LabelSet


def colorize(mask: np.ndarray, label_set: LabelSet) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 RGB using the label set's palette (void = black)."""
    return label_set.palette()[mask]


def blend_overlay(
    image: np.ndarray, mask: np.ndarray, label_set: LabelSet, alpha: float
) -> np.ndarray:
    """Blend the class colours over the camera image; ``alpha`` is the weight of the colours."""
    if not 0.0 <= alpha <= 1.0:
        msg = f"overlay alpha must be within [0, 1], got {alpha!r}"
        raise ValueError(msg)
    colours = colorize(mask, label_set).astype(np.float32)
    mixed = (1.0 - alpha) * image.astype(np.float32) + alpha * colours
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


def render_event_frame(event_frame: np.ndarray) -> np.ndarray:
    """(3, H, W) event frame -> (H, W, 3) uint8: ON events red-ish, OFF blue-ish, on grey."""
    on = np.log1p(event_frame[0])
    off = np.log1p(event_frame[1])
    scale = max(float(np.percentile(np.maximum(on, off), 99.5)), 1e-6)
    on = np.clip(on / scale, 0, 1)
    off = np.clip(off / scale, 0, 1)
    grey = np.full(on.shape, 0.5, dtype=np.float32)
    rgb = np.stack(
        [grey + 0.5 * on - 0.3 * off, grey - 0.3 * (on + off), grey + 0.5 * off - 0.3 * on],
        axis=-1,
    )
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
