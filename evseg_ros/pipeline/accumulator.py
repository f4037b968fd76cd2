"""Accumulator stage: EventPackets + frame stamps in, one event frame per camera frame out.

Frames usually arrive before all the events of their window have been decoded (the event stream
is chunked into packets), so each frame waits in a short queue until the decoded sensor time has
passed its window end, or until ``max_wait_ns`` of host time has passed, in which case it is
processed with what is there and counted as late. Nothing is dropped without a counter.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evseg_ros.events import evt3_fast, representations
from evseg_ros.events.decoders import EventDecoder, create_decoder
from evseg_ros.events.event_frame import EventFrameBuilder
from evseg_ros.events.representations import Representation
from evseg_ros.events.types import empty_events, first_time_us
from evseg_ros.events.window import EventBuffer, WindowConfig, WindowMode
from evseg_ros.geometry.calibration import RigCalibration
from evseg_ros.sync.clock_offset import ClockOffsetEstimator
from evseg_ros.sync.trigger_matcher import MatchResult, TriggerMatcher

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AccumulatorConfig:
    window: WindowConfig = field(default_factory=WindowConfig)
    trigger_channel: int = 0
    trigger_tolerance_us: int = 50_000
    max_wait_ns: int = 200_000_000
    max_pending_frames: int = 30
    buffer_span_us: int = 2_000_000
    representation: Representation = Representation.EVENT_FRAME
    voxel_bins: int = 3


@dataclass(frozen=True)
class ReadyFrame:
    """An event frame for one camera frame, with how it was anchored."""

    key: Any  # whatever the caller attached to the frame (header, image ...)
    stamp_ns: int
    event_frame: np.ndarray  # (C, H, W) float32; C = 3 for the default event frame
    window_us: tuple[int, int]
    match: MatchResult
    num_events: int
    late: bool
    accumulate_ms: float


@dataclass
class _Pending:
    key: Any
    stamp_ns: int
    arrival_ns: int


class EventFrameAccumulator:
    """Decode packets, keep events and triggers, and emit an event frame per frame stamp."""

    def __init__(
        self, calibration: RigCalibration, config: AccumulatorConfig | None = None
    ) -> None:
        self.config = config or AccumulatorConfig()
        self.calibration = calibration
        self.builder = EventFrameBuilder(calibration)
        self.buffer = EventBuffer(max_span_us=self.config.buffer_span_us)
        self.clock = ClockOffsetEstimator()
        self.matcher = TriggerMatcher(
            channel=self.config.trigger_channel, tolerance_us=self.config.trigger_tolerance_us
        )
        self._decoders: dict[str, EventDecoder] = {}
        if evt3_fast.available():
            evt3_fast.warm_up()  # compile/load now, not while the first frame waits
        self._pending: deque[_Pending] = deque()
        self._last_seq: int | None = None
        self._decoded_until_us: int | None = None
        self.counters: dict[str, int] = {
            "packets": 0,
            "events_decoded": 0,
            "triggers_decoded": 0,
            "seq_gaps": 0,
            "packets_lost": 0,
            "unknown_encoding": 0,
            "geometry_mismatch": 0,
            "decode_failures": 0,
            "odd_length_packets": 0,
            "sensor_time_resets": 0,
            "frames_in": 0,
            "frames_out": 0,
            "frames_late": 0,
            "frames_without_events": 0,
            "frames_dropped_queue_full": 0,
        }

    # -- events --------------------------------------------------------------------------------
    def on_packet(
        self, *, encoding: str, data: bytes | memoryview | np.ndarray, seq: int, stamp_ns: int,
        width: int, height: int,
    ) -> None:
        """Decode one EventPacket's payload; every problem is counted, none raises."""
        self.counters["packets"] += 1
        self._check_seq(seq)
        event_cam = self.calibration.event_camera
        if (width, height) != (event_cam.width, event_cam.height):
            self.counters["geometry_mismatch"] += 1
            return
        decoder = self._decoder(encoding)
        if decoder is None:
            return
        if len(data) % 2:
            # every packet of a camera ends on a word boundary: the last word was cut off.
            # Drop its stray byte instead of letting it shift every later packet.
            self.counters["odd_length_packets"] += 1
            data = memoryview(data).cast("B")[: len(data) - 1]
        try:
            decoded = decoder.decode(data)
        except Exception:  # a decoder bug must not stop the node: count, reset, go on
            logger.exception("decoder for %r failed on packet seq %d", encoding, seq)
            self.counters["decode_failures"] += 1
            decoder.reset()
            return
        events, triggers = decoded.events, decoded.triggers
        # the packet's stamp is the ROS time of its first item (event or trigger edge)
        first_time = first_time_us(events, triggers, decoder.current_time_us)
        latest = self.buffer.latest_time_us
        if latest is not None and first_time < latest - self.config.buffer_span_us:
            # sensor time restarted (camera reset, bag looped): start over instead of
            # discarding everything that follows as out of order
            self.counters["sensor_time_resets"] += 1
            self.buffer = EventBuffer(max_span_us=self.config.buffer_span_us)
            self.matcher = TriggerMatcher(
                channel=self.config.trigger_channel, tolerance_us=self.config.trigger_tolerance_us
            )
        self.clock.add(stamp_ns // 1000, first_time)
        self.buffer.add(events)
        self.matcher.add_triggers(triggers)
        self.counters["events_decoded"] += len(events)
        self.counters["triggers_decoded"] += len(triggers)
        self._decoded_until_us = int(decoder.current_time_us)

    def _decoder(self, encoding: str) -> EventDecoder | None:
        decoder = self._decoders.get(encoding)
        if decoder is None:
            try:
                decoder = create_decoder(
                    encoding,
                    width=self.calibration.event_camera.width,
                    height=self.calibration.event_camera.height,
                )
            except KeyError:
                self.counters["unknown_encoding"] += 1
                return None
            self._decoders[encoding] = decoder
        return decoder

    def _check_seq(self, seq: int) -> None:
        if self._last_seq is not None and seq != self._last_seq + 1:
            self.counters["seq_gaps"] += 1
            if seq > self._last_seq:
                self.counters["packets_lost"] += seq - self._last_seq - 1
        self._last_seq = seq

    # -- frames --------------------------------------------------------------------------------
    def on_frame(self, key: Any, stamp_ns: int, *, arrival_ns: int | None = None) -> None:
        """Queue a frame; its event frame comes out of :meth:`poll` once its events are in."""
        self.counters["frames_in"] += 1
        if len(self._pending) >= self.config.max_pending_frames:
            self._pending.popleft()
            self.counters["frames_dropped_queue_full"] += 1
        arrival = time.monotonic_ns() if arrival_ns is None else arrival_ns
        self._pending.append(_Pending(key, int(stamp_ns), arrival))

    def poll(self, *, now_ns: int | None = None) -> list[ReadyFrame]:
        """Return the frames whose windows are complete (or have waited too long), in order."""
        now = time.monotonic_ns() if now_ns is None else now_ns
        ready: list[ReadyFrame] = []
        while self._pending:
            pending = self._pending[0]
            waited_too_long = now - pending.arrival_ns >= self.config.max_wait_ns
            result = self._try_build(pending, force=waited_too_long)
            if result is None:
                break
            self._pending.popleft()
            ready.append(result)
        return ready

    def _try_build(self, pending: _Pending, *, force: bool) -> ReadyFrame | None:
        expected = self.clock.to_sensor(pending.stamp_ns // 1000)
        decoded_until = self._decoded_until_us
        if expected is None or decoded_until is None:
            if not force:
                return None
            # no event stream at all yet (missing modality): an empty event frame, counted
            self.counters["frames_without_events"] += 1
            return self._emit(pending, MatchResult(0, False, 0), late=True, empty=True)
        trigger = self.matcher.find(expected)
        window_end = self.config.window.bounds(trigger if trigger is not None else expected)[1]
        complete = decoded_until >= window_end and (
            trigger is not None or decoded_until >= expected + self.config.trigger_tolerance_us
        )
        if not complete and not force:
            return None
        return self._emit(pending, self.matcher.match(expected), late=not complete, empty=False)

    def _emit(
        self, pending: _Pending, match: MatchResult, *, late: bool, empty: bool
    ) -> ReadyFrame:
        start = time.perf_counter()
        window = self.config.window
        t0, t1 = window.bounds(match.t_anchor_us)
        if empty:
            events = empty_events()
        elif window.mode is WindowMode.COUNT:
            events = self.buffer.last(t0, t1, window.event_count)
            t0 = int(events["t"][0]) if len(events) else t1 - 1
        else:
            events = self.buffer.window(t0, t1)
        frame = representations.build(
            self.config.representation, self.builder, events, t0, t1, bins=self.config.voxel_bins
        )
        if not empty:
            # frames come in order: windows older than this one are not asked for again
            self.buffer.discard_before(t0 - window.duration_us)
        self.counters["frames_out"] += 1
        if late:
            self.counters["frames_late"] += 1
        elapsed = (time.perf_counter() - start) * 1e3
        return ReadyFrame(
            pending.key, pending.stamp_ns, frame, (t0, t1), match, len(events), late, elapsed
        )

    def diagnostics(self) -> dict[str, int | float | str]:
        """Counters and sync state for /diagnostics."""
        values: dict[str, int | float | str] = dict(self.counters)
        values["events_buffered"] = len(self.buffer)
        values["events_dropped_overflow"] = self.buffer.dropped_overflow
        values["events_dropped_out_of_order"] = self.buffer.dropped_out_of_order
        values["events_unmapped"] = self.builder.unmapped_events
        values["triggers_matched"] = self.matcher.matched
        values["frames_without_trigger"] = self.matcher.unmatched_frames
        values["clock_jumps"] = self.clock.clock_jumps
        offset = self.clock.offset_us
        values["clock_offset_us"] = "unknown" if offset is None else offset
        values["frames_pending"] = len(self._pending)
        for encoding, decoder in self._decoders.items():
            counters = getattr(decoder, "counters", None)
            if counters is None:
                continue
            for name, value in vars(counters).items():
                values[f"{encoding}_{name}"] = value
        return values
