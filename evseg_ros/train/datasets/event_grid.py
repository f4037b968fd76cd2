"""Event representations of events that are already on the output pixel grid.

Dataset events (a folder's ``.npz`` files, DSEC after rectification) are already on the grid of
their labels, so they are accumulated with the pipeline's own :class:`EventFrameBuilder` and
:mod:`~evseg_ros.events.representations` through an identity calibration: the same channels and
the same time normalisation as the running node, with no second implementation to drift.
"""

from __future__ import annotations

import numpy as np

from evseg_ros.events import representations
from evseg_ros.events.event_frame import EventFrameBuilder
from evseg_ros.events.representations import Representation
from evseg_ros.events.types import EVENT_DTYPE
from evseg_ros.geometry.calibration import CameraModel, RigCalibration

__all__ = ["GridAccumulator", "identity_calibration", "parse_representation", "structured_events"]


def parse_representation(value: str | Representation) -> Representation:
    """Representation from its name (``event_frame``, ``voxel_grid``, ``polarity_histogram``).

    Raises:
        ValueError: Unknown name; the message lists the known ones.
    """
    if isinstance(value, Representation):
        return value
    try:
        return Representation(value)
    except ValueError:
        known = [r.value for r in Representation]
        msg = f"unknown event representation {value!r}; known: {known}"
        raise ValueError(msg) from None


def identity_calibration(height: int, width: int) -> RigCalibration:
    """A calibration whose event and frame grids coincide (``height`` x ``width``)."""
    camera = CameraModel(width, height, np.eye(3), np.zeros(5))
    return RigCalibration(camera, camera, np.eye(3), width, height)


def structured_events(x: np.ndarray, y: np.ndarray, t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Pack coordinate, time and polarity arrays into :data:`EVENT_DTYPE` events.

    Coordinates must be non-negative (callers drop the others first).
    """
    events = np.empty(len(t), dtype=EVENT_DTYPE)
    events["x"] = x
    events["y"] = y
    events["t"] = t
    events["p"] = np.asarray(p) > 0
    return events


class GridAccumulator:
    """Build one representation of on-grid events into ``(C, height, width)`` float32.

    Attributes:
        channels: Number of output channels.
        unmapped_events: Events dropped because they were off the grid (counted, not silent).
    """

    def __init__(
        self,
        height: int,
        width: int,
        representation: str | Representation = Representation.EVENT_FRAME,
        *,
        bins: int = 3,
    ) -> None:
        self.height = height
        self.width = width
        self.representation = parse_representation(representation)
        self.bins = bins
        self.channels = representations.channels(self.representation, bins=bins)
        self._builder = EventFrameBuilder(identity_calibration(height, width))

        self._dropped = 0

    @property
    def unmapped_events(self) -> int:
        """Events off the grid so far (dropped by :meth:`build_arrays` or the builder)."""
        return self._dropped + self._builder.unmapped_events

    def build(self, events: np.ndarray, t_start_us: int, t_end_us: int) -> np.ndarray:
        """Representation of ``events`` (already cut to ``[t_start_us, t_end_us)``)."""
        return representations.build(
            self.representation, self._builder, events, t_start_us, t_end_us, bins=self.bins
        ).astype(np.float32, copy=False)

    def build_arrays(
        self,
        x: np.ndarray,
        y: np.ndarray,
        t: np.ndarray,
        p: np.ndarray,
        t_start_us: int,
        t_end_us: int,
    ) -> np.ndarray:
        """Like :meth:`build` from separate arrays; events off the grid are dropped, counted."""
        x = np.asarray(x, dtype=np.int64)
        y = np.asarray(y, dtype=np.int64)
        keep = (x >= 0) & (y >= 0) & (x < self.width) & (y < self.height)
        self._dropped += int(len(keep) - np.count_nonzero(keep))
        events = structured_events(x[keep], y[keep], np.asarray(t)[keep], np.asarray(p)[keep])
        return self.build(events, t_start_us, t_end_us)
