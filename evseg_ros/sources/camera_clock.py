"""Camera clock to host clock mapping with drift tracking.

A frame's chunk timestamp is taken by the camera's own clock (ns since the camera booted); the
host sees the frame later, after exposure, readout and USB transfer. So
``host_receive - camera_time`` is the clock offset plus a delay that is never negative and
only rarely close to its minimum. The lower envelope of that difference tracks the offset.

A plain minimum over a window (what :class:`evseg_ros.sync.clock_offset.ClockOffsetEstimator`
does for EventPackets) lags behind when the two oscillators drift apart: crystal clocks differ by
tens of ppm, i.e. tens of microseconds per second, which over a window of many seconds is more
than the sub-frame accuracy the event window needs. Here the window is split into bins in
camera time; each bin's minimum is one point of the lower envelope, and a straight line through
those points (least squares) models offset and drift together.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClockFit:
    """``host_ns = camera_ns + offset_ns + drift * (camera_ns - reference_ns)``."""

    offset_ns: float
    drift: float  # dimensionless (1e-6 = 1 ppm)
    reference_ns: int

    def to_host(self, camera_ns: int) -> int:
        delta = int(camera_ns) - self.reference_ns
        return int(camera_ns) + round(self.offset_ns + self.drift * delta)


class CameraClockMapper:
    """Map camera timestamps to host time from ``(camera_ns, host_receive_ns)`` pairs.

    Args:
        window: number of recent samples the fit uses.
        bins: envelope points per window (each is the minimum of ``window / bins`` samples).
        min_span_ns: camera-time span the window must cover before drift is fitted; shorter
            windows use the plain minimum (drift is not observable over a short span).
        jump_threshold_ns: an offset change larger than this (camera restart, clock reset)
            restarts the window instead of dragging the fit along; such jumps are counted.
    """

    def __init__(
        self,
        *,
        window: int = 400,
        bins: int = 8,
        min_span_ns: int = 2_000_000_000,
        jump_threshold_ns: int = 100_000_000,
    ) -> None:
        if window < 2 * bins or bins < 2:
            msg = f"window ({window!r}) must hold at least two samples per bin (bins={bins!r})"
            raise ValueError(msg)
        self.window = window
        self.bins = bins
        self.min_span_ns = min_span_ns
        self.jump_threshold_ns = jump_threshold_ns
        self._camera: deque[int] = deque(maxlen=window)
        self._residual: deque[int] = deque(maxlen=window)
        self._fit: ClockFit | None = None
        #: times the offset jumped by more than ``jump_threshold_ns`` and the window restarted
        self.clock_jumps = 0

    def reset(self) -> None:
        """Forget every sample (the camera clock restarts with the camera)."""
        self._camera.clear()
        self._residual.clear()
        self._fit = None

    def add(self, camera_ns: int, host_ns: int) -> None:
        """Add one observation: the frame stamped ``camera_ns`` reached the host at ``host_ns``."""
        residual = int(host_ns) - int(camera_ns)
        if self._fit is not None:
            predicted = self._fit.to_host(camera_ns) - int(camera_ns)
            if abs(residual - predicted) > self.jump_threshold_ns:
                self.clock_jumps += 1
                self.reset()
        if self._camera and int(camera_ns) <= self._camera[-1]:
            # time went backwards without a big offset jump: a restarted camera clock
            self.clock_jumps += 1
            self.reset()
        self._camera.append(int(camera_ns))
        self._residual.append(residual)
        self._fit = self._refit()

    def _refit(self) -> ClockFit:
        camera = np.fromiter(self._camera, dtype=np.int64)
        residual = np.fromiter(self._residual, dtype=np.int64)
        reference = int(camera[-1])
        span = int(camera[-1] - camera[0])
        if len(camera) < 2 * self.bins or span < self.min_span_ns:
            return ClockFit(float(residual.min()), 0.0, reference)
        # bin edges in camera time, so that bursts or gaps do not bias the line
        edges = np.linspace(camera[0], camera[-1], self.bins + 1)
        index = np.clip(np.searchsorted(edges, camera, side="right") - 1, 0, self.bins - 1)
        xs, ys = [], []
        for b in range(self.bins):
            members = np.flatnonzero(index == b)
            if members.size:
                best = members[np.argmin(residual[members])]
                xs.append(float(camera[best] - reference))
                ys.append(float(residual[best]))
        if len(xs) < 2:
            return ClockFit(float(residual.min()), 0.0, reference)
        base = min(ys)  # fit small numbers: host times in ns are ~1e18
        drift, offset = np.polyfit(np.asarray(xs), np.asarray(ys) - base, 1)
        return ClockFit(float(offset) + base, float(drift), reference)

    @property
    def fit(self) -> ClockFit | None:
        """The current model, or None before the first sample."""
        return self._fit

    def to_host(self, camera_ns: int) -> int | None:
        """Host time of camera time ``camera_ns``, or None before the first sample."""
        return None if self._fit is None else self._fit.to_host(camera_ns)
