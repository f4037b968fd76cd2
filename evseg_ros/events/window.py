"""Event windows: which events belong to which camera frame.

With a hardware trigger, frame k starts its exposure at trigger event k; the window of events
fused with that frame is cut in sensor time relative to the trigger. The buffer keeps decoded
events until every frame that could still need them has been served, and counts what it has to
discard (late frames, overflow) instead of dropping silently.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from evseg_ros.events.types import empty_events


class WindowMode(Enum):
    """How the event window of a frame is cut around its trigger."""

    DURATION = "duration"  # fixed length, ending end_offset_us after the trigger
    EXPOSURE = "exposure"  # the exposure interval itself: [trigger, trigger + exposure_us)
    COUNT = "count"  # the last event_count events before trigger + end_offset_us


@dataclass(frozen=True)
class WindowConfig:
    """Where the events of frame k are taken from.

    In ``DURATION`` mode: ``[t_trigger + end_offset_us - duration_us, t_trigger + end_offset_us)``.
    ``end_offset_us`` defaults to the middle of a nominal 10 ms exposure, so the events describe
    the scene the frame integrated; a negative or zero offset gives the lowest-latency window,
    closed at the trigger itself. ``COUNT`` mode searches the same interval for its events, so
    ``duration_us`` also bounds how far back a fixed event count may reach.
    """

    duration_us: int = 30_000
    end_offset_us: int = 5_000
    mode: WindowMode = WindowMode.DURATION
    exposure_us: int = 10_000
    event_count: int = 50_000

    def __post_init__(self) -> None:
        for name in ("duration_us", "exposure_us", "event_count"):
            if getattr(self, name) <= 0:
                msg = f"window {name} must be positive, got {getattr(self, name)!r}"
                raise ValueError(msg)

    def bounds(self, t_trigger_us: int) -> tuple[int, int]:
        """Time interval to take events from (COUNT mode takes the last ones in it)."""
        if self.mode is WindowMode.EXPOSURE:
            return int(t_trigger_us), int(t_trigger_us) + self.exposure_us
        end = int(t_trigger_us) + self.end_offset_us
        return end - self.duration_us, end


class EventBuffer:
    """Time-ordered store of decoded events with bounded memory.

    Chunks are kept as they arrive (one per packet) and only the chunks a window overlaps are
    concatenated, so adding a packet costs nothing proportional to what is already buffered.
    A chunk is read through :meth:`_bounds`, :meth:`_count`, :meth:`_events` and
    :meth:`_cut_front` only, so that a store may keep something else per packet (the encoded
    packet itself, :class:`~evseg_ros.events.packet_buffer.PacketEventBuffer`) under the same
    rules.
    """

    def __init__(self, *, max_span_us: int = 2_000_000) -> None:
        self.max_span_us = max_span_us
        self._chunks: deque[Any] = deque()
        self._size = 0
        self.dropped_overflow = 0
        self.dropped_out_of_order = 0

    @property
    def latest_time_us(self) -> int | None:
        """Time of the newest buffered event (None when empty)."""
        return self._bounds(self._chunks[-1])[1] if self._chunks else None

    def add(self, events: np.ndarray) -> None:
        """Append a time-sorted chunk; events older than the newest held one are dropped.

        Dropped events are counted in ``dropped_out_of_order``; events pushed out by
        ``max_span_us`` in ``dropped_overflow``.
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
        self._append(events)

    def _append(self, chunk: Any) -> None:
        """Keep ``chunk`` as the newest, then forget what falls out of ``max_span_us``."""
        self._chunks.append(chunk)
        self._size += self._count(chunk)
        self.dropped_overflow += self._trim(self._bounds(chunk)[1] - self.max_span_us)

    def _trim(self, t_keep_from_us: int) -> int:
        """Forget events older than ``t_keep_from_us``; return how many."""
        removed = 0
        while self._chunks and self._bounds(self._chunks[0])[1] < t_keep_from_us:
            removed += self._count(self._chunks.popleft())
        if self._chunks:
            self._chunks[0], cut = self._cut_front(self._chunks[0], t_keep_from_us)
            removed += cut
        self._size -= removed
        return removed

    def window(self, t_start_us: int, t_end_us: int) -> np.ndarray:
        """Return a copy of the events with ``t_start_us <= t < t_end_us``."""
        parts = [
            self._slice(self._events(chunk), t_start_us, t_end_us)
            for chunk in self._overlapping(t_start_us, t_end_us)
        ]
        return np.concatenate(parts) if parts else empty_events()

    def last(self, t_start_us: int, t_end_us: int, count: int) -> np.ndarray:
        """The newest ``count`` events of ``[t_start_us, t_end_us)`` (fewer if there are not)."""
        events = self.window(t_start_us, t_end_us)
        return events[-count:] if len(events) > count else events

    def discard_before(self, t_us: int) -> None:
        """Forget events no future window can need (not counted as drops)."""
        self._trim(t_us)

    def __len__(self) -> int:
        return self._size

    # -- what a chunk is ------------------------------------------------------------------------
    def _overlapping(self, t_start_us: int, t_end_us: int) -> Iterator[Any]:
        """The chunks a window ``[t_start_us, t_end_us)`` may take events from, in order."""
        for chunk in self._chunks:
            first, last = self._bounds(chunk)
            if last < t_start_us:
                continue
            if first >= t_end_us:
                break
            yield chunk

    @staticmethod
    def _slice(events: np.ndarray, t_start_us: int, t_end_us: int) -> np.ndarray:
        """The events of one chunk's array in ``[t_start_us, t_end_us)`` (a view)."""
        times = events["t"]
        lo = int(np.searchsorted(times, t_start_us, side="left"))
        hi = int(np.searchsorted(times, t_end_us, side="left"))
        return events[lo:hi]

    def _bounds(self, chunk: np.ndarray) -> tuple[int, int]:
        """Times of the first and the last event of a chunk."""
        times = chunk["t"]
        return int(times[0]), int(times[-1])

    def _count(self, chunk: np.ndarray) -> int:
        return len(chunk)

    def _events(self, chunk: np.ndarray) -> np.ndarray:
        return chunk

    def _cut_front(self, chunk: np.ndarray, t_keep_from_us: int) -> tuple[Any, int]:
        """``chunk`` without its events before ``t_keep_from_us``, and how many those were."""
        cut = int(np.searchsorted(chunk["t"], t_keep_from_us, side="left"))
        return (chunk[cut:] if cut else chunk), cut
