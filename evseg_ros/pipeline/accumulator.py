"""Accumulator stage: EventPackets + frame stamps in, one event frame per camera frame out.

Frames usually arrive before all the events of their window have been decoded (the event stream
is chunked into packets), so each frame waits in a short queue until the decoded sensor time has
passed its window end, or until ``max_wait_ns`` of host time has passed, in which case it is
processed with what is there and counted as late. Nothing is dropped without a counter.

Every event frame carries its :class:`~evseg_ros.pipeline.modality.EventHealth` (complete, on
time, anchored to the frame's trigger, plausible, packets not lost), so the segmentation stage can
fall back to the frame alone instead of fusing garbage. When frames stop while the event stream
goes on, trigger edges that no frame claims within ``frame_timeout_us`` of sensor time come out as
*frameless* event frames (``key`` None, the stamp the frame would have had), so an event-only mask
keeps coming at the trigger rate; a frame that turns up after its slot was served that way is
dropped and counted (``frames_superseded``).

Three event paths share this logic (:class:`EventPath`); ``AccumulatorConfig.device`` picks the
fastest one for its device. On a GPU, the torch path decodes EVT3 there, keeps the events there
and builds the frames there, handed on as CUDA tensors. On a CPU, the fused path keeps the EVT3
packets and decodes each frame's window straight into its event frame with the compiled kernel;
the host path (decoded numpy events, numpy frame builders) serves the other representations, the
count window's event frames and machines without numba. All three give the same frames, bit for
bit; ``AccumulatorConfig.event_path`` can force one (the torch path on a CPU, say), which is how
tests and benchmarks compare them.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

import numpy as np

from evseg_ros.device import check_device_text, cuda_available, is_cuda, resolve_device_name
from evseg_ros.events import evt3_fast, representations
from evseg_ros.events.decoders import EventDecoder, create_decoder
from evseg_ros.events.device_buffer import DeviceEventBuffer
from evseg_ros.events.event_frame import EventFrameBuilder
from evseg_ros.events.packet_buffer import PacketEventBuffer
from evseg_ros.events.representations import Representation
from evseg_ros.events.types import empty_events, packet_time_us
from evseg_ros.events.window import EventBuffer, WindowConfig, WindowMode
from evseg_ros.geometry.calibration import RigCalibration
from evseg_ros.pipeline.modality import EventHealth, HealthPolicy
from evseg_ros.sync import (
    ClockOffsetEstimator,
    FrameSyncResult,
    FrameTiming,
    FrameTriggerSync,
    MatchResult,
    SyncConfig,
)

logger = logging.getLogger(__name__)

#: A forward EventPacket.seq jump beyond this is a stream reset (driver restart, corrupt header),
#: not lost packets: a million packets is a quarter of an hour at 1 kHz.
MAX_PLAUSIBLE_SEQ_GAP = 1_000_000


class EventPath(Enum):
    """Where events are decoded and event frames built."""

    #: numba: EVT3 packets kept, each window decoded straight into its event frame (CPU)
    FUSED = "fused"
    #: decoded events kept in numpy, frames built by numpy (any representation, any encoding)
    HOST = "host"
    #: torch: decoded on the device, events kept there, frames built there (a GPU; or the CPU)
    TORCH = "torch"


def choose_event_path(
    device: str, representation: Representation, path: EventPath | None = None
) -> tuple[EventPath, str]:
    """The event path for a ``device`` value, and the device its frames are built on.

    Without ``path``, the fastest for the device: torch on a GPU, the fused path on a CPU for
    the event frame where numba is installed, else the host path. ``auto`` never fails: on a
    machine without a GPU, or for a representation torch does not build, it stays on the CPU.

    Raises:
        DeviceError: a malformed device, or a GPU asked for where none is usable.
        ValueError: a path or device that cannot build ``representation``, or the fused path
            without numba.
    """
    text = check_device_text(device)
    on_cpu = text == "cpu" or (text == "auto" and not cuda_available())
    built_on = "cpu" if on_cpu else resolve_device_name(text)
    event_frame = representation is Representation.EVENT_FRAME
    if path is None and is_cuda(built_on):
        path = EventPath.TORCH if event_frame or text != "auto" else EventPath.HOST
    if path is None:
        path = EventPath.FUSED if event_frame and evt3_fast.available() else EventPath.HOST
    if path is EventPath.TORCH:
        if not event_frame:
            msg = (
                f"device {device!r} builds the 3-channel event frame only; representation "
                f"{representation.value!r} needs device 'cpu' (or 'auto')"
            )
            raise ValueError(msg)
        return path, built_on
    if is_cuda(built_on) and text != "auto":
        msg = f"event path {path.value!r} runs on the CPU; device {device!r} asks for a GPU"
        raise ValueError(msg)
    if path is EventPath.FUSED and not event_frame:
        msg = f"the fused event path builds the event frame only, not {representation.value!r}"
        raise ValueError(msg)
    if path is EventPath.FUSED and not evt3_fast.available():
        raise ValueError(str(evt3_fast.UNAVAILABLE_REASON))
    return path, "cpu"


def host_array(frame: Any) -> np.ndarray:
    """An event frame as a numpy array (copied from the device if it is a torch tensor)."""
    if isinstance(frame, np.ndarray):
        return frame
    return frame.detach().cpu().numpy()


@dataclass(frozen=True)
class AccumulatorConfig:
    window: WindowConfig = field(default_factory=WindowConfig)
    trigger_channel: int = 0
    trigger_tolerance_us: int = 50_000
    max_wait_ns: int = 200_000_000
    max_pending_frames: int = 30
    buffer_span_us: int = 2_000_000
    #: sensor time going back by more than this is a restart of the sensor clock (a camera
    #: reset, a recording looping), not events out of order: even a 0.5 s loop is caught
    time_reset_us: int = 200_000
    representation: Representation = Representation.EVENT_FRAME
    voxel_bins: int = 3
    #: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (:mod:`evseg_ros.device`)
    device: str = "cpu"
    #: None: the fastest path for ``device`` (see :func:`choose_event_path`)
    event_path: EventPath | None = None
    #: sensor time the decoded stream may pass a trigger edge before its frame counts as
    #: missing and the edge is served event-only; 0 = never
    frame_timeout_us: int = 150_000
    health: HealthPolicy = field(default_factory=HealthPolicy)


@dataclass(frozen=True)
class ReadyFrame:
    """An event frame for one camera frame, with how it was anchored."""

    key: Any  # whatever the caller attached to the frame (header, image ...)
    stamp_ns: int
    event_frame: Any  # (C, H, W) float32 numpy array, or torch tensor on the device path
    window_us: tuple[int, int]
    match: MatchResult
    num_events: int
    late: bool
    accumulate_ms: float
    health: EventHealth = EventHealth.OK
    #: no camera frame came for this trigger: ``key`` is None, serve it event-only
    frameless: bool = False


@dataclass
class _Pending:
    key: Any
    stamp_ns: int
    arrival_ns: int
    timing: FrameTiming
    #: the sync's decision, once made (it commits the sync's state, so it is made only once)
    sync_result: FrameSyncResult | None = None


class EventFrameAccumulator:
    """Decode packets, keep events and triggers, and emit an event frame per frame stamp."""

    def __init__(
        self, calibration: RigCalibration, config: AccumulatorConfig | None = None
    ) -> None:
        self.config = config or AccumulatorConfig()
        self.calibration = calibration
        self.builder = EventFrameBuilder(calibration)
        #: Where events are decoded and frames built, and on which device ("cpu", "cuda:1").
        self.path, self.device = choose_event_path(
            self.config.device, self.config.representation, self.config.event_path
        )
        #: Torch decoder + frame builder of the torch path (None on the CPU paths).
        self.device_decoder = None
        if self.path is EventPath.TORCH:
            from evseg_ros.events.evt3_torch import TorchEvt3Accumulator

            self.device_decoder = TorchEvt3Accumulator(calibration, device=self.device)
            self.device = str(self.device_decoder.device)
        #: The fused path's frame builder (None on the other paths).
        self.fused_frames = None
        if self.path is EventPath.FUSED:
            self.fused_frames = evt3_fast.FastFrameAccumulator(self.builder)
        self.buffer = self._new_buffer()
        self.clock = ClockOffsetEstimator()
        self.sync = FrameTriggerSync(
            SyncConfig(
                channel=self.config.trigger_channel,
                acquire_tolerance_us=self.config.trigger_tolerance_us,
            ),
            clock=self.clock,
        )
        self._decoders: dict[str, EventDecoder] = {}
        if evt3_fast.available() and self.device_decoder is None:
            evt3_fast.warm_up()  # compile/load now, not while the first frame waits
        self._pending: deque[_Pending] = deque()
        self._last_seq: int | None = None
        self._decoded_until_us: int | None = None
        #: trigger (sensor time) of the newest frame that arrived, in this sensor-time epoch
        self._newest_frame_trigger_us: float | None = None
        #: host time the newest frame arrived: frames still coming are not a stopped camera
        self._last_frame_arrival_ns: int | None = None
        #: stamp of the newest frameless event frame: a frame up to here is superseded
        self._frameless_until_ns: int | None = None
        #: (packets, packets_lost) when the previous frame went out, for the loss per frame
        self._loss_mark = (0, 0)
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
            "seq_resets": 0,
            "frames_in": 0,
            "frames_out": 0,
            "frames_late": 0,
            "frames_without_events": 0,
            "frames_dropped_queue_full": 0,
            "frames_superseded": 0,
            "frameless_out": 0,
            "windows_degraded": 0,
        }

    def update_config(self, **changes: Any) -> None:
        """Swap run-time-settable options (window, health policy, frame timeout) in place."""
        self.config = replace(self.config, **changes)

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
        # the fused path keeps EVT3 packets with the decoder state in front of them
        saved = None
        if self.fused_frames is not None and isinstance(decoder, evt3_fast.FastEvt3Decoder):
            saved = decoder.save_state()
        try:
            if decoder is self.device_decoder:
                decoded = decoder.decode_to_device(data)
                triggers, n_events = decoded.triggers, int(decoded.times.numel())
                first_event = decoded.first_time_us
            else:
                host = decoder.decode(data)
                triggers, n_events = host.triggers, len(host.events)
                first_event = int(host.events["t"][0]) if n_events else None
                if self.device_decoder is not None:  # another encoding on the device path
                    decoded = self.device_decoder.device_events(host)
        except Exception:  # a decoder bug must not stop the node: count, reset, go on
            logger.exception("decoder for %r failed on packet seq %d", encoding, seq)
            self.counters["decode_failures"] += 1
            decoder.reset()
            return
        current = int(decoder.current_time_us)
        # the packet's stamp is the ROS time of its first item (event or trigger edge)
        first_time = packet_time_us(first_event, triggers, current)
        latest = self.buffer.latest_time_us
        if latest is not None and first_time < latest - self.config.time_reset_us:
            # sensor time restarted (camera reset, bag looped): start over instead of
            # discarding everything that follows as out of order
            self.counters["sensor_time_resets"] += 1
            self.buffer = self._new_buffer()
            self.sync.reset_epoch()
            self._newest_frame_trigger_us = None
            self._frameless_until_ns = None
        self.clock.add(stamp_ns // 1000, first_time)
        if saved is not None:
            self.buffer.add_packet(host.events, data, saved)
        elif self.device_decoder is None:
            self.buffer.add(host.events)
        else:
            self.buffer.add(
                decoded.times, decoded.cells, decoded.first_time_us, decoded.last_time_us
            )
        self.sync.add_trigger_records(triggers)
        self.counters["events_decoded"] += n_events
        self.counters["triggers_decoded"] += len(triggers)
        self._decoded_until_us = current

    def _new_buffer(self) -> EventBuffer | DeviceEventBuffer:
        span = self.config.buffer_span_us
        if self.path is EventPath.TORCH:
            return DeviceEventBuffer(max_span_us=span)
        if self.path is EventPath.FUSED:
            return PacketEventBuffer(self.fused_frames, max_span_us=span)
        return EventBuffer(max_span_us=span)

    def _decoder(self, encoding: str) -> EventDecoder | None:
        if encoding == "evt3" and self.device_decoder is not None:
            return self.device_decoder
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
        """Count gaps in EventPacket.seq; a jump back or absurdly far ahead is a new stream.

        A driver restart or a replay loop starts seq over, and a corrupt header can carry any
        number: neither is ``2**63`` lost packets.
        """
        if self._last_seq is not None and seq != self._last_seq + 1:
            self.counters["seq_gaps"] += 1
            if self._last_seq < seq <= self._last_seq + MAX_PLAUSIBLE_SEQ_GAP:
                self.counters["packets_lost"] += seq - self._last_seq - 1
            else:
                self.counters["seq_resets"] += 1
        self._last_seq = seq

    # -- frames --------------------------------------------------------------------------------
    def on_frame(
        self, key: Any, stamp_ns: int, *, frame_id: int | None = None,
        chunk_time_ns: int | None = None, exposure_us: int | None = None,
        arrival_ns: int | None = None,
    ) -> None:
        """Queue a frame; its event frame comes out of :meth:`poll` once its events are in.

        ``frame_id`` / ``chunk_time_ns`` (the camera's frame counter and clock, where the
        driver has them) let the trigger sync count dropped frames exactly.
        """
        self.counters["frames_in"] += 1
        if self._frameless_until_ns is not None and stamp_ns <= self._frameless_until_ns:
            # its slot was already served event-only: a second mask for it would be a duplicate
            self.counters["frames_superseded"] += 1
            return
        self._frameless_until_ns = None
        trigger = self.sync.predict_trigger_us(int(stamp_ns))
        if trigger is not None:
            self._newest_frame_trigger_us = trigger
        if len(self._pending) >= self.config.max_pending_frames:
            self._pending.popleft()
            self.counters["frames_dropped_queue_full"] += 1
        arrival = time.monotonic_ns() if arrival_ns is None else arrival_ns
        self._last_frame_arrival_ns = arrival
        timing = FrameTiming(
            int(stamp_ns), frame_id=frame_id, chunk_time_ns=chunk_time_ns, exposure_us=exposure_us
        )
        self._pending.append(_Pending(key, int(stamp_ns), arrival, timing))

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
        if not self._pending:
            ready.extend(self._frameless(now))
        return ready

    def _frameless(self, now_ns: int) -> list[ReadyFrame]:
        """Event frames for trigger edges no frame came for (the frame stream stopped).

        Both clocks must agree that the frames stopped: the event stream is ``frame_timeout_us``
        past the edge, and no frame arrived for as long on the host. Frames that keep coming
        but cannot be placed on the trigger grid are unsynced (frame-only), not missing.
        """
        timeout = self.config.frame_timeout_us
        decoded_until = self._decoded_until_us
        if timeout <= 0 or decoded_until is None:
            return []
        last_frame = self._last_frame_arrival_ns
        if last_frame is not None and now_ns - last_frame < timeout * 1000:
            return []
        period = self.sync.period_us or 0.0
        newest = self._newest_frame_trigger_us
        after = None if newest is None else newest + period / 2
        ready = []
        for index, _t_us in self.sync.frameless_triggers(
            after_us=after, decoded_until_us=decoded_until, timeout_us=timeout
        ):
            t_us = self.sync.claim_frameless(index)
            stamp_ns = self.sync.stamp_ns_of(t_us)
            if stamp_ns is None:
                continue  # no clock to stamp it with yet
            pending = _Pending(None, stamp_ns, time.monotonic_ns(), FrameTiming(stamp_ns))
            frame = self._emit(pending, MatchResult(t_us, True, 0), late=False, empty=False)
            self._frameless_until_ns = stamp_ns + int(period * 500)  # half a period, in ns
            self.counters["frameless_out"] += 1
            ready.append(replace(frame, frameless=True))
        return ready

    def _try_build(self, pending: _Pending, *, force: bool) -> ReadyFrame | None:
        decoded_until = self._decoded_until_us
        if pending.sync_result is None:
            # the sync decides once the decoded stream has passed the frame's trigger slot
            result = None if decoded_until is None else self.sync.resolve(
                pending.timing, decoded_until_us=decoded_until, force=force
            )
            if result is None:
                if not force:
                    return None
                # no event stream at all yet (missing modality): an empty event frame, counted
                self.counters["frames_without_events"] += 1
                return self._emit(pending, MatchResult(0, False, 0), late=True, empty=True)
            pending.sync_result = result
        match = pending.sync_result
        window_end = self.config.window.bounds(match.t_anchor_us)[1]
        complete = decoded_until is not None and decoded_until >= window_end
        if not complete and not force:
            return None
        return self._emit(
            pending, match.as_match_result(), late=not complete, empty=False,
            trigger_missing=match.trigger_missing,
        )

    def _emit(
        self, pending: _Pending, match: MatchResult, *, late: bool, empty: bool,
        trigger_missing: bool = False,
    ) -> ReadyFrame:
        start = time.perf_counter()
        window = self.config.window
        t0, t1 = window.bounds(match.t_anchor_us)
        if self.device_decoder is not None:
            frame, t0, num_events = self._build_on_device(t0, t1, empty=empty)
        elif self.fused_frames is not None and not empty and window.mode is not WindowMode.COUNT:
            frame, num_events = self.buffer.event_frame(t0, t1)
        else:
            if empty:
                events = empty_events()
            elif window.mode is WindowMode.COUNT:
                events = self.buffer.last(t0, t1, window.event_count)
                t0 = int(events["t"][0]) if len(events) else t1 - 1
            else:
                events = self.buffer.window(t0, t1)
            frame = representations.build(
                self.config.representation, self.builder, events, t0, t1,
                bins=self.config.voxel_bins,
            )
            num_events = len(events)
        if not empty:
            # frames come in order: windows older than this one are not asked for again
            self.buffer.discard_before(t0 - window.duration_us)
        self.counters["frames_out"] += 1
        if late:
            self.counters["frames_late"] += 1
        health = EventHealth.judge(
            self.config.health, has_stream=not empty, late=late,
            trigger_missing=trigger_missing, num_events=num_events,
            packet_loss=self._packet_loss_since_last_frame(),
        )
        self.counters["windows_degraded"] += int(not health.ok)
        elapsed = (time.perf_counter() - start) * 1e3
        return ReadyFrame(
            pending.key, pending.stamp_ns, frame, (t0, t1), match, num_events, late, elapsed,
            health,
        )

    def _packet_loss_since_last_frame(self) -> float:
        """Fraction of the EventPackets since the previous frame that never arrived."""
        packets, lost = self.counters["packets"], self.counters["packets_lost"]
        received = packets - self._loss_mark[0]
        missing = lost - self._loss_mark[1]
        self._loss_mark = (packets, lost)
        return missing / (received + missing) if missing else 0.0

    def _build_on_device(self, t0: int, t1: int, *, empty: bool) -> tuple[Any, int, int]:
        """Device path of :meth:`_emit`: (frame tensor, window start, events in it)."""
        decoder = self.device_decoder
        if empty:
            return decoder.new_frame(), t0, 0
        window = self.config.window
        if window.mode is WindowMode.COUNT:
            times, cells = self.buffer.last(t0, t1, window.event_count)
            t0 = int(times[0]) if times.numel() else t1 - 1
        else:
            times, cells = self.buffer.window(t0, t1)
        return decoder.build_frame(times, cells, t0, t1), t0, int(times.numel())

    def diagnostics(self) -> dict[str, int | float | str]:
        """Counters and sync state for /diagnostics."""
        values: dict[str, int | float | str] = dict(self.counters)
        values["events_buffered"] = len(self.buffer)
        values["events_dropped_overflow"] = self.buffer.dropped_overflow
        values["events_dropped_out_of_order"] = self.buffer.dropped_out_of_order
        values["events_unmapped"] = (
            self.builder.unmapped_events
            if self.device_decoder is None
            else self.device_decoder.unmapped_events
        )
        values["device"] = self.device
        values["event_path"] = self.path.value
        sync = self.sync.statistics()
        values["triggers_matched"] = sync["matched"]
        values["frames_without_trigger"] = sync["unmatched"]
        for key, value in sync.items():
            values[f"sync_{key}"] = "unknown" if value is None else value
        values["clock_jumps"] = self.clock.clock_jumps
        offset = self.clock.offset_us
        values["clock_offset_us"] = "unknown" if offset is None else offset
        values["frames_pending"] = len(self._pending)
        decoders = dict(self._decoders)
        if self.device_decoder is not None:
            decoders["evt3"] = self.device_decoder
        for encoding, decoder in decoders.items():
            counters = getattr(decoder, "counters", None)
            if counters is None:
                continue
            for name, value in vars(counters).items():
                values[f"{encoding}_{name}"] = value
        return values
