"""Event windows: which events belong to which camera frame.

With a hardware trigger, frame k starts its exposure at trigger event k; the window of events
fused with that frame is cut in sensor time relative to the trigger. The buffer keeps decoded
events until every frame that could still need them has been served, and counts what it has to
discard (late frames, overflow) instead of dropping silently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evseg_ros.events.types import empty_events


@dataclass(frozen=True)
class WindowConfig:
    """Window of frame k: ``[t_trigger + end_offset_us - duration_us, t_trigger + end_offset_us)``.

    ``end_offset_us`` defaults to the middle of a nominal 10 ms exposure, so the events describe
    the scene the frame integrated; a negative or zero offset gives the lowest-latency window,
    closed at the trigger itself.
    """

    duration_us: int = 30_000
    end_offset_us: int = 5_000

    def __post_init__(self) -> None:
        if self.duration_us <= 0:
            msg = f"window duration_us must be positive, got {self.duration_us!r}"
            raise ValueError(msg)

    def bounds(self, t_trigger_us: int) -> tuple[int, int]:
        end = int(t_trigger_us) + self.end_offset_us
        return end - self.duration_us, end


class EventBuffer:
    """Time-ordered store of decoded events with bounded memory."""

    def __init__(self, *, max_span_us: int = 2_000_000) -> None:
        self.max_span_us = max_span_us
        self._chunks: list[np.ndarray] = []
        self._merged = empty_events()
        self.dropped_overflow = 0
        self.dropped_out_of_order = 0

    @property
    def latest_time_us(self) -> int | None:
        """Time of the newest buffered event (None when empty)."""
        if self._chunks:
            return int(self._chunks[-1]["t"][-1])
        if len(self._merged):
            return int(self._merged["t"][-1])
        return None

    def add(self, events: np.ndarray) -> None:
        """Append a time-sorted chunk; events older than the newest held one are dropped.

        Dropped events are counted in ``dropped_out_of_order``.
        """
        if len(events) == 0:
            return
        latest = self.latest_time_us
        if latest is not None and events["t"][0] < latest:
            ok = events["t"] >= latest
            self.dropped_out_of_order += int(len(events) - np.count_nonzero(ok))
            events = events[ok]
            if len(events) == 0:
                return
        self._chunks.append(events)
        newest = int(events["t"][-1])
        self._trim(newest - self.max_span_us, overflow=True)

    def _consolidate(self) -> np.ndarray:
        if self._chunks:
            self._merged = np.concatenate([self._merged, *self._chunks])
            self._chunks.clear()
        return self._merged

    def _trim(self, t_keep_from_us: int, *, overflow: bool) -> None:
        merged = self._consolidate()
        cut = int(np.searchsorted(merged["t"], t_keep_from_us, side="left"))
        if cut:
            if overflow:
                self.dropped_overflow += cut
            self._merged = merged[cut:]

    def window(self, t_start_us: int, t_end_us: int) -> np.ndarray:
        """Return a copy of the events with ``t_start_us <= t < t_end_us``."""
        merged = self._consolidate()
        times = merged["t"]
        lo = int(np.searchsorted(times, t_start_us, side="left"))
        hi = int(np.searchsorted(times, t_end_us, side="left"))
        return merged[lo:hi].copy()

    def discard_before(self, t_us: int) -> None:
        """Forget events no future window can need (not counted as drops)."""
        self._trim(t_us, overflow=False)

    def __len__(self) -> int:
        return len(self._merged) + sum(len(c) for c in self._chunks)
