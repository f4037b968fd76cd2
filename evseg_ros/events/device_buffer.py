"""Decoded events kept on the accumulation device (the GPU) between packets and frames.

The host pipeline keeps numpy events in :class:`~evseg_ros.events.window.EventBuffer`; the
device pipeline decodes each packet on the GPU and must not bring its events back, so this is
the same store for :class:`~evseg_ros.events.evt3_torch.DeviceEvents`: chunks of per-event time
and frame cell tensors. Each chunk's first and last time are known on the host (read when the
packet was decoded), so picking the chunks a window overlaps costs no device sync; only the cut
inside the two boundary chunks is a ``searchsorted`` on the device. The rules (what is dropped
and how it is counted) are those of ``EventBuffer``.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

import torch


class _Chunk(NamedTuple):
    times: torch.Tensor  # int64 (n,), non-decreasing
    cells: torch.Tensor  # int64 (n,)
    first_us: int
    last_us: int


class DeviceEventBuffer:
    """Time-ordered (time, cell) event store on one torch device, with bounded span."""

    def __init__(self, *, max_span_us: int = 2_000_000) -> None:
        self.max_span_us = max_span_us
        self._chunks: deque[_Chunk] = deque()
        self._size = 0
        self.dropped_overflow = 0
        self.dropped_out_of_order = 0

    @property
    def latest_time_us(self) -> int | None:
        return self._chunks[-1].last_us if self._chunks else None

    def __len__(self) -> int:
        return self._size

    def add(self, times: torch.Tensor, cells: torch.Tensor, first_us: int, last_us: int) -> None:
        """Append a packet's events; those older than the newest held event are dropped."""
        if times.numel() == 0:
            return
        latest = self.latest_time_us
        if latest is not None and first_us < latest:
            keep = times >= latest
            kept = int(keep.sum())  # sync, only on the rare out-of-order packet
            self.dropped_out_of_order += int(times.numel()) - kept
            if kept == 0:
                return
            times, cells = times[keep], cells[keep]
            first_us = int(times[0])
        self._chunks.append(_Chunk(times, cells, int(first_us), int(last_us)))
        self._size += int(times.numel())
        self.dropped_overflow += self._trim(int(last_us) - self.max_span_us)

    def window(self, t_start_us: int, t_end_us: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Times and cells of the events with ``t_start_us <= t < t_end_us`` (stream order)."""
        times: list[torch.Tensor] = []
        cells: list[torch.Tensor] = []
        for chunk in self._chunks:
            if chunk.last_us < t_start_us:
                continue
            if chunk.first_us >= t_end_us:
                break
            lo, hi = 0, int(chunk.times.numel())
            if chunk.first_us < t_start_us or chunk.last_us >= t_end_us:
                bounds = torch.tensor([t_start_us, t_end_us], device=chunk.times.device)
                lo, hi = torch.searchsorted(chunk.times, bounds).tolist()
            times.append(chunk.times[lo:hi])
            cells.append(chunk.cells[lo:hi])
        if not times:
            device = self._chunks[0].times.device if self._chunks else "cpu"
            empty = torch.empty(0, dtype=torch.int64, device=device)
            return empty, empty
        return torch.cat(times), torch.cat(cells)

    def last(
        self, t_start_us: int, t_end_us: int, count: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The newest ``count`` events of ``[t_start_us, t_end_us)`` (fewer if there are not)."""
        times, cells = self.window(t_start_us, t_end_us)
        return times[-count:], cells[-count:]

    def discard_before(self, t_us: int) -> None:
        """Forget events no future window can need (not counted as drops)."""
        self._trim(t_us)

    def _trim(self, t_keep_from_us: int) -> int:
        removed = 0
        while self._chunks and self._chunks[0].last_us < t_keep_from_us:
            removed += int(self._chunks.popleft().times.numel())
        if self._chunks and self._chunks[0].first_us < t_keep_from_us:
            first = self._chunks[0]
            bound = torch.tensor([t_keep_from_us], device=first.times.device)
            cut = int(torch.searchsorted(first.times, bound))
            if cut:
                rest = first.times[cut:]
                self._chunks[0] = _Chunk(rest, first.cells[cut:], int(rest[0]), first.last_us)
                removed += cut
        self._size -= removed
        return removed
