"""An event buffer that keeps EVT3 packets, and builds event frames with the fused kernel.

The accumulator cannot build a frame's event frame while the packets arrive: the window is cut
around the frame's trigger edge, which is only known later, and reaches back before it. The
host path therefore keeps decoded events (16 bytes each) until the frame comes, then cuts and
builds with numpy. On a CPU it is faster and smaller to keep what came in: each packet (3 to 9
bytes per event in the recordings at hand) with the decoder state in front of it, and to decode
the packets of a window a second time through
:func:`~evseg_ros.events.evt3_fast.decode_and_accumulate`, which puts every event straight into
the frame without materialising it.

:class:`PacketEventBuffer` keeps :class:`~evseg_ros.events.window.EventBuffer`'s rules
(out-of-order and overflow drops, trimming, which chunks a window reads, the counts) and gives
the same events and frames, bit for bit. It does so by keeping a packet only where the packet
stands exactly for the chunk of events the numpy buffer would hold: its events in time order,
none of them dropped as out of order. Anything else (a packet whose sensor clock stepped back
inside it, one cut by a drop or a trim, another encoding) is kept as events, as the numpy
buffer keeps it, and added to the frame by :class:`~evseg_ros.events.event_frame.
EventFrameBuilder`; counts and latest times of the two parts combine exactly.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from evseg_ros.events.evt3_fast import FastEvt3Decoder, FastFrameAccumulator, StreamState
from evseg_ros.events.framing import as_byte_array
from evseg_ros.events.window import EventBuffer

__all__ = ["PacketEventBuffer"]


class _Packet(NamedTuple):
    """One EVT3 packet standing for the chunk of events it decodes to."""

    data: bytes  # the packet's bytes (a private copy: the caller may reuse its buffer)
    state: StreamState  # decoder state in front of the packet
    first_us: int  # time of its first event
    last_us: int  # time of its last event
    count: int  # events (on the sensor)


class PacketEventBuffer(EventBuffer):
    """:class:`EventBuffer` holding encoded EVT3 packets where that is exact.

    Args:
        frames: the fused frame builder (its builder's calibration gives the sensor size).
        max_span_us: as for :class:`EventBuffer`.
    """

    def __init__(self, frames: FastFrameAccumulator, *, max_span_us: int = 2_000_000) -> None:
        super().__init__(max_span_us=max_span_us)
        self.frames = frames
        builder = frames.builder
        #: decodes kept packets again, from the state saved in front of each
        self._replay = FastEvt3Decoder(width=builder.event_width, height=builder.event_height)

    def add_packet(self, events: np.ndarray, data: object, state: StreamState) -> None:
        """Add a packet's events, keeping the packet itself when it stands for them exactly.

        Args:
            events: what a :class:`FastEvt3Decoder` in ``state`` decoded from ``data``.
            data: the packet as it was decoded.
            state: :meth:`FastEvt3Decoder.save_state` from just before that decode.
        """
        if len(events) == 0:
            return
        times = events["t"]
        latest = self.latest_time_us
        in_order = latest is None or times[0] >= latest
        if not (in_order and bool(np.all(times[1:] >= times[:-1]))):
            self.add(events)
            return
        frozen = data if isinstance(data, bytes) else as_byte_array(data).tobytes()
        self._append(_Packet(frozen, state, int(times[0]), int(times[-1]), len(events)))

    def event_frame(self, t_start_us: int, t_end_us: int) -> tuple[np.ndarray, int]:
        """The (3, H, W) event frame of ``[t_start_us, t_end_us)`` and its number of events.

        The same frame, bit for bit, as ``builder.build(self.window(t0, t1), t0, t1)``, and
        the same count as ``len(self.window(t0, t1))``; events without a frame pixel are added
        to the builder's ``unmapped_events`` as ``build`` adds them.
        """
        frame = self.frames.new_frame()
        loose = []
        count = 0
        for chunk in self._overlapping(t_start_us, t_end_us):
            if isinstance(chunk, _Packet):
                self._replay.restore_state(chunk.state)
                done = self.frames.accumulate(self._replay, chunk.data, frame, t_start_us, t_end_us)
                count += done.accumulated + done.unmapped
            else:
                loose.append(self._slice(chunk, t_start_us, t_end_us))
        if loose:
            events = np.concatenate(loose)
            part = self.frames.builder.build(events, t_start_us, t_end_us)
            frame[:2] += part[:2]  # whole counts: exact in float32 below 2**24
            np.maximum(frame[2], part[2], out=frame[2])
            count += len(events)
        return frame, count

    # -- what a chunk is ------------------------------------------------------------------------
    def _bounds(self, chunk: Any) -> tuple[int, int]:
        if isinstance(chunk, _Packet):
            return chunk.first_us, chunk.last_us
        return super()._bounds(chunk)

    def _count(self, chunk: Any) -> int:
        return chunk.count if isinstance(chunk, _Packet) else len(chunk)

    def _events(self, chunk: Any) -> np.ndarray:
        if not isinstance(chunk, _Packet):
            return chunk
        self._replay.restore_state(chunk.state)
        return self._replay.decode(chunk.data).events

    def _cut_front(self, chunk: Any, t_keep_from_us: int) -> tuple[Any, int]:
        if isinstance(chunk, _Packet):
            if chunk.first_us >= t_keep_from_us:
                return chunk, 0  # in time order: nothing before the first event
            chunk = self._events(chunk)  # cut into: kept as events from now on
        return super()._cut_front(chunk, t_keep_from_us)
