"""Dense event representations beyond the 3-channel event frame.

All of them share the event frame's pixel mapping (the calibration lookup table applied in the
same pass), so any of them can be fed to a network on the frame camera's grid:

- ``voxel_grid``: B temporal bins; each event adds its polarity (+1 ON, -1 OFF) to the two bins
  nearest its normalised time, weighted linearly (the bilinear-in-time voxel grid of
  Zhu et al., 2019), which keeps sub-bin timing instead of quantising it away.
- ``polarity_histogram``: (2, H, W) ON and OFF counts.
"""

from __future__ import annotations

from enum import Enum

import numpy as np

from evseg_ros.events.event_frame import EventFrameBuilder


class Representation(Enum):
    EVENT_FRAME = "event_frame"
    VOXEL_GRID = "voxel_grid"
    POLARITY_HISTOGRAM = "polarity_histogram"


def channels(representation: Representation, *, bins: int = 3) -> int:
    """Number of channels a representation produces."""
    return {
        Representation.EVENT_FRAME: 3,
        Representation.VOXEL_GRID: bins,
        Representation.POLARITY_HISTOGRAM: 2,
    }[representation]


def voxel_grid(
    builder: EventFrameBuilder, events: np.ndarray, t_start_us: int, t_end_us: int, bins: int
) -> np.ndarray:
    """(bins, H, W) float32 voxel grid of ``events`` in ``[t_start_us, t_end_us)``."""
    if bins < 2:
        msg = f"a voxel grid needs at least 2 bins, got {bins!r}"
        raise ValueError(msg)
    size = builder.width * builder.height
    grid = np.zeros(bins * size, dtype=np.float32)
    target, keep = builder.map_events(events)
    if len(target):
        span = max(int(t_end_us) - int(t_start_us), 1)
        position = (events["t"][keep] - t_start_us).astype(np.float64) * (bins - 1) / span
        position = np.clip(position, 0.0, bins - 1)
        lower = np.minimum(np.floor(position).astype(np.int64), bins - 2)
        upper_weight = (position - lower).astype(np.float32)
        sign = np.where(events["p"][keep] != 0, 1.0, -1.0).astype(np.float32)
        grid += np.bincount(
            lower * size + target, weights=sign * (1.0 - upper_weight), minlength=bins * size
        ).astype(np.float32)
        grid += np.bincount(
            (lower + 1) * size + target, weights=sign * upper_weight, minlength=bins * size
        ).astype(np.float32)
    return grid.reshape(bins, builder.height, builder.width)


def polarity_histogram(builder: EventFrameBuilder, events: np.ndarray) -> np.ndarray:
    """(2, H, W) float32: ON counts, OFF counts."""
    size = builder.width * builder.height
    target, keep = builder.map_events(events)
    polarity = events["p"][keep] != 0
    histogram = np.stack(
        [
            np.bincount(target[polarity], minlength=size),
            np.bincount(target[~polarity], minlength=size),
        ]
    ).astype(np.float32)
    return histogram.reshape(2, builder.height, builder.width)


def build(
    representation: Representation, builder: EventFrameBuilder, events: np.ndarray,
    t_start_us: int, t_end_us: int, *, bins: int = 3,
) -> np.ndarray:
    """Build any representation of one window of events."""
    if representation is Representation.EVENT_FRAME:
        return builder.build(events, t_start_us, t_end_us)
    if representation is Representation.VOXEL_GRID:
        return voxel_grid(builder, events, t_start_us, t_end_us, bins)
    return polarity_histogram(builder, events)
