"""EVT 3.0 decoding and event-frame building with torch: the accumulator's GPU path.

The numpy decoder (:class:`~evseg_ros.events.evt3.Evt3Decoder`) and frame builder
(:class:`~evseg_ros.events.event_frame.EventFrameBuilder`) define the results; this module
produces the same events, counters and (bit for bit) the same event frames, as a chain of
whole-array torch operations, so that on a GPU the bytes of a packet go in, its events stay on
the device (:meth:`TorchEvt3Accumulator.decode_to_device`) and each frame's ``(3, H, W)`` event
frame is built there (:meth:`TorchEvt3Accumulator.build_frame`) without a per-word Python loop.
The segmentation network then reads the frame where it already is. It runs on the CPU too,
which is how its logic is tested on machines without a GPU.

How the stateful format becomes data-parallel (the numpy decoder's scheme, kept lean for a GPU):

* The state in force at a word (row, clock, vector base and polarity) is set by the last word of
  one type at or before it. A cumulative count of those setter words (a prefix scan) gives,
  for every word, how many setters precede it, and that count indexes a short table
  ``[carried state, value after setter 1, value after setter 2, ...]`` built from the setters
  alone. Setters are far fewer than event words (clock words are ~3 % of a real recording), so
  all work that is not a gather runs on the short tables: the 24-bit clock is unwrapped there
  (a cumulative count of TIME_HIGH drops of more than half the range gives the epoch), stamps
  that go backwards are counted there, and the window test and normalised time of the time
  channel are computed there, once per clock value rather than once per word.
* Vector words advance the base by 12 or 8; the base at a vector word is the last
  VECT_BASE_X value plus the cumulative advances since it (one more prefix scan).
* Per-word properties that depend on the word alone (mask bits, base advance, polarity offset)
  come from 64 Ki-entry tables indexed by the 16-bit word, one gather instead of several
  bit operations.
* Mask bits of pixels past the sensor edge (and whole words on rows past it) are cleared before
  expansion, so every expanded event is kept and the event count per word is a popcount look-up.
  A cumulative sum of the counts places each word's events; :func:`torch.repeat_interleave`
  and a "k-th set bit" table expand them.
* Accumulation is one integer ``index_add_`` for both count channels and one
  ``scatter_reduce_(..., "amax")`` for the time channel, through a table from (polarity, event
  pixel) to frame cell. Pixels without a frame pixel map to a block of spare cells instead of
  being filtered out, which would cost another data-dependent size.

Host synchronisation: the sizes of the setter tables and of the expanded events depend on the
data, and torch must know them on the host to allocate, so each call reads a 16-bin word-type
histogram (:func:`torch.bincount`, which itself reads the input's range) and then the number of
events to expand. Those few small reads per call are the only syncs; state and counters stay
in small device tensors between calls. :meth:`TorchEvt3Accumulator.decode` also copies its
results to the host, and reading :attr:`~TorchEvt3Accumulator.counters`,
:attr:`~TorchEvt3Accumulator.unmapped_events` or :attr:`~TorchEvt3Accumulator.current_time_us`
synchronises. Each call also costs a fixed ~150 small operator launches (a few hundred
microseconds of host time). Input longer than ``_BLOCK_WORDS`` words (256 KiB) is decoded in
blocks of that size, each with its own launches and syncs, so that the per-word temporaries
stay bounded however much is passed at once.

Determinism: counts are integer atomic adds and the time channel a maximum, both independent of
the order in which the GPU applies them, and every floating-point step (int64 to float32, one
true division by a float32 tensor, a clamp) is correctly rounded on both devices. The divisor
is a tensor on the device on purpose: torch's CUDA division by a host scalar multiplies by a
reciprocal, which can differ from numpy in the last bit.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch

from evseg_ros.device import resolve_device
from evseg_ros.events.event_frame import build_pixel_lut
from evseg_ros.events.evt3 import DecodedEvents, DecoderCounters, OutputRecords, _outputs
from evseg_ros.events.evt3_format import (
    ADDR_X,
    ADDR_Y,
    CONTINUED_4,
    CONTINUED_12,
    COORD_MASK,
    EXT_TRIGGER,
    MAX_COORD,
    OTHERS,
    PAYLOAD_MASK,
    POLARITY_SHIFT,
    TIME_HIGH,
    TIME_LOW,
    TIME_LOW_BITS,
    TIME_PERIOD_US,
    TRIGGER_CHANNEL_MASK,
    TRIGGER_CHANNEL_SHIFT,
    TRIGGER_VALUE_MASK,
    TYPE_SHIFT,
    UNKNOWN_TYPES,
    VECT_8,
    VECT_8_MASK,
    VECT_8_STEP,
    VECT_12,
    VECT_12_STEP,
    VECT_BASE_X,
    WORD_BYTES,
    WRAP_DROP,
)
from evseg_ros.events.framing import WordFramer
from evseg_ros.events.types import TRIGGER_DTYPE
from evseg_ros.geometry.calibration import RigCalibration

__all__ = ["DeviceEvents", "TorchEvt3Accumulator"]

# Carried state, one int64 device tensor: row, TIME_HIGH (12 bits), TIME_LOW (12 bits), clock
# epoch in us, vector base x (saturated), vector polarity, time at the last TIME_LOW.
_S_Y, _S_HIGH, _S_LOW, _S_EPOCH, _S_BASE, _S_POL, _S_STAMP = range(7)
# Counters only the device knows; the word-type counters come from the histogram on the host.
_DEVICE_COUNTERS = ("cd_events", "out_of_bounds", "time_wraps", "time_backwards")

#: Largest vector base kept in the state. Anything past the 11-bit address range is off the
#: sensor, so saturating keeps int32 arithmetic exact on garbage without changing any result.
_BASE_CAP = 1 << 20
#: Spare cells per polarity plane that take events whose pixel has no frame pixel. Spreading
#: them over many cells keeps the atomic adds from piling onto one address.
_SPARE_CELLS = 1024
#: Blocks of more words than this use int64 positions (int32 positions and vector advances,
#: up to 12 per word, must stay clear of 2**31).
_MAX_INT32_WORDS = ((1 << 31) - (1 << 23)) // 12
#: Words decoded at once (256 KiB of stream, more than a typical ROS packet). A block's
#: temporaries (prefix counts, gathers, clock tables) take 70 to 150 bytes per word, up to 300
#: on the host counting what the allocator keeps, so a long packet is decoded block after
#: block, the state carried exactly as between calls: memory stays under ~40 MiB beyond the
#: results whatever the input. Each block costs its own ~150 operator
#: launches and a few syncs, so on a GPU much larger inputs run somewhat below the rate that
#: one call per input would reach; that is the price of the bound.
_BLOCK_WORDS = 1 << 17


def _word_tables(sensor_pixels: int) -> dict[str, np.ndarray]:
    """Look-up tables of the decoder, built once with numpy.

    Returns:
        ``mask_bits``: event bits per 16-bit word (1 for EVT_ADDR_X, the mask of VECT_12 and
        VECT_8, 0 for every other type); ``step``: vector base advance per word;
        ``addr_x_offset``: for EVT_ADDR_X words, ``polarity * sensor_pixels``, the polarity
        part of the cell table's index; ``popcount`` of every 12-bit mask; ``kth``: position
        of the k-th set bit of mask m at ``12 * m + k``; ``keep``: the mask of the lowest
        ``l`` bits for l = 0..12 (pixels still on the sensor).
    """
    word = np.arange(1 << 16)
    kind = word >> TYPE_SHIFT
    mask_bits = np.select(
        [kind == ADDR_X, kind == VECT_12, kind == VECT_8],
        [1, word & PAYLOAD_MASK, word & VECT_8_MASK],
        0,
    )
    step = np.select([kind == VECT_12, kind == VECT_8], [VECT_12_STEP, VECT_8_STEP], 0)
    addr_x_offset = np.where(kind == ADDR_X, ((word >> POLARITY_SHIFT) & 1) * sensor_pixels, 0)
    masks = np.arange(1 << 12)
    bits = (masks[:, None] >> np.arange(12)) & 1
    rank = np.cumsum(bits, axis=1) - 1
    kth = np.zeros((1 << 12, 12), dtype=np.int64)
    m_idx, b_idx = np.nonzero(bits)
    kth[m_idx, rank[m_idx, b_idx]] = b_idx
    keep = (1 << np.arange(13)) - 1
    tables = {
        "mask_bits": mask_bits,
        "step": step,
        "addr_x_offset": addr_x_offset,
        "popcount": bits.sum(axis=1),
        "kth": kth.reshape(-1),
        "keep": keep,
    }
    return {name: table.astype(np.int32) for name, table in tables.items()}


class _Words(NamedTuple):
    """One decoded block, per word and in setter tables; what both outputs are built from.

    ``*_count`` tensors hold, per word, the number of setter words of that kind at or before
    it, which indexes the matching ``*_table`` (entry 0 is the carried state).
    """

    words: torch.Tensor  # int32 word values
    kinds: torch.Tensor  # uint8 word types
    histogram: list[int]  # words of each of the 16 types
    row_count: torch.Tensor
    row_table: torch.Tensor  # int32 y
    clock_count: torch.Tensor
    clock_table: torch.Tensor  # int64 unwrapped time after each TIME_HIGH/TIME_LOW
    base_count: torch.Tensor
    polarity_table: torch.Tensor  # int32 vector polarity
    x: torch.Tensor  # int32: x of EVT_ADDR_X, vector base of vector words
    row_offset: torch.Tensor  # int32: y * sensor width, or -1 for a row past the sensor
    mask: torch.Tensor  # int32: bits of the kept events (1 for a kept EVT_ADDR_X)
    n_kept: torch.Tensor  # int32: kept events per word


class _Clock(NamedTuple):
    """The clock over one block: per-word lookup table and the state after the block.

    All values are device tensors (0-d int64 except ``table``), so nothing waits for the GPU.
    """

    table: torch.Tensor  # [carried time, unwrapped time after each TIME_HIGH/TIME_LOW word]
    high: torch.Tensor  # 12-bit TIME_HIGH in force after the block
    low: torch.Tensor  # 12-bit TIME_LOW in force after the block
    epoch: torch.Tensor  # wrap epoch (us) after the block
    stamp: torch.Tensor  # time at the last TIME_LOW
    wraps: torch.Tensor  # clock wraps in the block
    backwards: torch.Tensor  # stamps lower than the stamp before them


class DeviceEvents(NamedTuple):
    """Decoded events kept on the device: what :meth:`TorchEvt3Accumulator.build_frame` reads."""

    times: torch.Tensor  # int64 unwrapped sensor time (us) per event, stream order
    cells: torch.Tensor  # int64 cell of the [ON plane | OFF plane] buffer per event
    triggers: np.ndarray  # TRIGGER_DTYPE records, on the host
    first_time_us: int | None
    last_time_us: int | None


def _empty_device_events(device: torch.device) -> DeviceEvents:
    empty = torch.empty(0, dtype=torch.int64, device=device)
    return DeviceEvents(empty, empty, np.empty(0, dtype=TRIGGER_DTYPE), None, None)


class TorchEvt3Accumulator:
    """Stateful EVT 3.0 decoder and event-frame accumulator on a torch device.

    One instance follows one event stream: all decoder state (row, vector base and polarity,
    both halves of the clock, wrap epoch, a dangling odd byte) carries from one call to the
    next exactly as in :class:`~evseg_ros.events.evt3.Evt3Decoder`, so packets of any size,
    odd ones included, decode as if they were one buffer. The pipeline decodes packets with
    :meth:`decode_to_device` (the events stay on the device) and builds each frame with
    :meth:`build_frame`; :meth:`decode` gives numpy events like the other decoders (for tests
    and scripts). All advance the same state, so a stream can mix them.

    Events outside the event camera's sensor (``x >= width`` or ``y >= height``) are dropped
    and counted, as the numpy decoder does with the calibration's event-camera geometry.

    Args:
        calibration: the rig; its event camera gives the sensor geometry, its frame camera the
            frame size, and the pixel look-up table is built from it once.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or
            ``"cuda:N"``, read by :func:`evseg_ros.device.resolve_device`, or a torch device.

    Raises:
        DeviceError: a malformed ``device``, or CUDA asked for where it is not usable.
        ValueError: a sensor larger than EVT3 can address.
    """

    def __init__(self, calibration: RigCalibration, *, device: str | torch.device = "auto") -> None:
        self.device = resolve_device(device)
        self.event_width = int(calibration.event_camera.width)
        self.event_height = int(calibration.event_camera.height)
        self.width = int(calibration.output_width)
        self.height = int(calibration.output_height)
        if self.event_width > MAX_COORD or self.event_height > MAX_COORD:
            raise ValueError(
                f"EVT3 addresses at most 2048x2048 pixels, the calibration's event camera is "
                f"{self.event_width}x{self.event_height}"
            )
        dev = self.device
        self._sensor_pixels = self.event_width * self.event_height
        tables = {
            name: torch.from_numpy(table).to(dev)
            for name, table in _word_tables(self._sensor_pixels).items()
        }
        self._mask_bits = tables["mask_bits"]
        self._step = tables["step"]
        self._addr_x_offset = tables["addr_x_offset"]
        self._popcount = tables["popcount"]
        self._kth = tables["kth"]
        self._keep = tables["keep"]

        # Index polarity * sensor pixels + y * width + x -> cell of an [ON plane | OFF plane]
        # buffer (the frame's channel order, so OFF pixels, which come first, go to plane 1).
        # Each plane holds the frame's cells, then the spare cells for unmapped pixels.
        self._cells = self.width * self.height
        self._plane = self._cells + _SPARE_CELLS
        lut = torch.from_numpy(build_pixel_lut(calibration).astype(np.int64))
        spare = self._cells + torch.arange(lut.numel(), dtype=torch.int64) % _SPARE_CELLS
        lut = torch.where(lut >= 0, lut, spare)
        self._cell_lut = torch.cat((lut + self._plane, lut)).to(dev)
        self._framer = WordFramer(WORD_BYTES)
        self.reset()

    # ------------------------------------------------------------------ state and counters

    def reset(self) -> None:
        """Forget all stream state and counters (e.g. after a camera restart or a seek)."""
        self._state = torch.zeros(7, dtype=torch.int64, device=self.device)
        self._device_counts = torch.zeros(
            len(_DEVICE_COUNTERS), dtype=torch.int64, device=self.device
        )
        self._histogram = [0] * 16
        self._unmapped = torch.zeros((), dtype=torch.int64, device=self.device)
        self._framer.reset()

    @property
    def counters(self) -> DecoderCounters:
        """Running totals, the same as the numpy decoder's :class:`DecoderCounters`.

        Every counter is maintained. Reading them copies four integers to the host (a sync).
        """
        h = self._histogram
        values = dict(zip(_DEVICE_COUNTERS, self._device_counts.tolist(), strict=True))
        return DecoderCounters(
            words=sum(h),
            cd_words=h[ADDR_X] + h[VECT_12] + h[VECT_8],
            address_words=h[ADDR_Y] + h[VECT_BASE_X],
            time_words=h[TIME_HIGH] + h[TIME_LOW],
            trigger_words=h[EXT_TRIGGER],
            other_words=h[OTHERS],
            continued_words=h[CONTINUED_12],
            continued4_words=h[CONTINUED_4],
            unknown_words=sum(h[kind] for kind in UNKNOWN_TYPES),
            triggers=h[EXT_TRIGGER],
            **values,
        )

    @property
    def unmapped_events(self) -> int:
        """Accumulated events whose pixel has no frame pixel (the numpy builder's counter)."""
        return int(self._unmapped)

    @property
    def current_time_us(self) -> int:
        """Unwrapped clock value after the last consumed word (a sync)."""
        state = self._state.tolist()
        return int(state[_S_EPOCH] + (state[_S_HIGH] << TIME_LOW_BITS) + state[_S_LOW])

    @property
    def buffered_bytes(self) -> int:
        """Bytes held back for the next call (a dangling odd byte)."""
        return self._framer.held_bytes

    def new_frame(self) -> torch.Tensor:
        """A zero (3, H, W) float32 frame on the device."""
        return torch.zeros((3, self.height, self.width), dtype=torch.float32, device=self.device)

    # ------------------------------------------------------------------ public API

    def decode(self, data: object) -> DecodedEvents:
        """Decode every complete word of ``data`` into numpy events, as ``Evt3Decoder`` does.

        Meant for tests and scripts: it copies the results to the host. The pipeline uses
        :meth:`decode_to_device`, which keeps the events on the device.

        Args:
            data: the next bytes of the stream: ``bytes``, ``bytearray``, ``memoryview``,
                ``array('B')`` or a numpy unsigned-integer array. An odd trailing byte is kept
                for the next call.

        Returns:
            CD events and trigger edges in stream order, identical to the numpy decoder's.

        Raises:
            EventDecodeError: ``data`` is not a supported buffer type.
        """
        buf = self._take_words(data)
        events, triggers = _outputs(0 if buf is None else buf.numel() // 2)
        for block in self._blocks(buf):
            self._block_to_host(block, events, triggers)
        return DecodedEvents(events.result(), triggers.result())

    def decode_to_device(self, data: object) -> DeviceEvents:
        """Decode a block into per-event times and frame cells that stay on the device.

        For a pipeline that decodes each packet as it arrives but builds frames later, over
        windows that may overlap (a window per camera frame): the events are kept in this
        compact form (one int64 time and one int64 cell per event, already through the pixel
        look-up table) and :meth:`build_frame` turns any time range of them into a frame.
        Trigger edges, which the host needs to cut windows, come back as numpy records.

        Args:
            data: the next bytes of the stream (see :meth:`decode`).

        Returns:
            Times, cells and triggers of the block; ``first_time_us`` / ``last_time_us`` are
            the block's first and last event times on the host (None without events), read
            in one sync once the events are decoded.
        """
        buf = self._take_words(data)
        _, triggers = _outputs(0 if buf is None else buf.numel() // 2)
        all_times: list[torch.Tensor] = []
        all_cells: list[torch.Tensor] = []
        for block in self._blocks(buf):
            block_triggers = self._triggers(block)
            triggers.take(block_triggers.size)[:] = block_triggers
            n_events = int(block.n_kept.sum())  # sync: output size
            if n_events == 0:
                continue
            pixels = self._event_pixels(block)
            clock = block.clock_table.index_select(0, block.clock_count)
            for word, bit, _, _ in self._expansions(block.n_kept, block.mask, n_events):
                all_cells.append(self._cell_lut.index_select(0, pixels.index_select(0, word) + bit))
                all_times.append(clock.index_select(0, word))
        if not all_times:
            return _empty_device_events(self.device)._replace(triggers=triggers.result())
        # more than one block or piece of input: join them (the results are needed whole)
        times = all_times[0] if len(all_times) == 1 else torch.cat(all_times)
        cells = all_cells[0] if len(all_cells) == 1 else torch.cat(all_cells)
        first_last = torch.stack((times[0], times[-1])).tolist()  # sync: two integers
        return DeviceEvents(times, cells, triggers.result(), first_last[0], first_last[1])

    def device_events(self, decoded: DecodedEvents) -> DeviceEvents:
        """Move events decoded on the host (another encoding, e.g. EVT2) into the device form.

        Events off the sensor are not expected here (host decoders drop and count them); any
        that are left go to the spare cells and are counted as unmapped when accumulated.
        """
        events = decoded.events
        if len(events) == 0:
            return _empty_device_events(self.device)._replace(triggers=decoded.triggers)
        x = np.minimum(events["x"].astype(np.int64), self.event_width - 1)
        y = np.minimum(events["y"].astype(np.int64), self.event_height - 1)
        pixel = (events["p"] != 0) * self._sensor_pixels + y * self.event_width + x
        on_sensor = (events["x"] < self.event_width) & (events["y"] < self.event_height)
        cells = self._cell_lut.index_select(0, torch.from_numpy(pixel).to(self.device))
        if not on_sensor.all():
            spare = torch.from_numpy(~on_sensor).to(self.device)
            cells = torch.where(spare, self._cells, cells)
        times = torch.from_numpy(events["t"].astype(np.int64)).to(self.device)
        return DeviceEvents(
            times, cells, decoded.triggers, int(events["t"][0]), int(events["t"][-1])
        )

    def build_frame(
        self, times: torch.Tensor, cells: torch.Tensor, t_start_us: int, t_end_us: int
    ) -> torch.Tensor:
        """The (3, H, W) frame of events already cut to ``[t_start_us, t_end_us)``.

        Bit for bit what :meth:`EventFrameBuilder.build
        <evseg_ros.events.event_frame.EventFrameBuilder.build>` makes of the same events;
        events without a frame pixel are added to :attr:`unmapped_events`, as it does.
        """
        frame = self.new_frame()
        if times.numel() == 0:
            return frame
        self._add_cells(frame, cells, self._normalised_times(times, t_start_us, t_end_us))
        return frame

    # ------------------------------------------------------------------ internals

    def _block_to_host(
        self, block: _Words, events_out: OutputRecords, triggers_out: OutputRecords
    ) -> None:
        """Copy one decoded block's events and triggers into the host outputs."""
        n_events = int(block.n_kept.sum())  # sync: output size
        events = events_out.take(n_events)
        if n_events:
            is_addr_x = block.kinds == ADDR_X
            polarity = torch.where(
                is_addr_x,
                (block.words >> POLARITY_SHIFT) & 1,
                block.polarity_table.index_select(0, block.base_count),
            )
            row = block.row_table.index_select(0, block.row_count)
            clock = block.clock_table.index_select(0, block.clock_count)
            for word, bit, start, stop in self._expansions(block.n_kept, block.mask, n_events):
                piece = events[start:stop]
                piece["x"] = (block.x.index_select(0, word) + bit).cpu().numpy()
                piece["y"] = row.index_select(0, word).cpu().numpy()
                piece["p"] = polarity.index_select(0, word).cpu().numpy()
                piece["t"] = clock.index_select(0, word).cpu().numpy()
        block_triggers = self._triggers(block)
        triggers_out.take(block_triggers.size)[:] = block_triggers

    def _normalised_times(
        self, times: torch.Tensor, t_start_us: int, t_end_us: int
    ) -> torch.Tensor:
        """The builder's float32 steps: int64 difference to float32, divided, clipped.

        The divisor is a float32 tensor on the device on purpose (see the module docstring).
        """
        span = torch.full(
            (), float(max(int(t_end_us) - int(t_start_us), 1)), dtype=torch.float32,
            device=self.device,
        )
        return ((times - int(t_start_us)).to(torch.float32) / span).clamp_(1e-6, 1.0)

    def _event_pixels(self, block: _Words) -> torch.Tensor:
        """Per word: polarity plane offset + row offset + x (of the word's first event)."""
        polarity_offset = torch.where(
            block.kinds == ADDR_X,
            self._addr_x_offset.index_select(0, block.words),
            (block.polarity_table * self._sensor_pixels).index_select(0, block.base_count),
        )
        return polarity_offset + block.row_offset + block.x

    def _triggers(self, block: _Words) -> np.ndarray:
        n_triggers = block.histogram[EXT_TRIGGER]
        triggers = np.empty(n_triggers, dtype=TRIGGER_DTYPE)
        if n_triggers:
            at = torch.nonzero_static(block.kinds == EXT_TRIGGER, size=n_triggers).view(-1)
            payload = block.words.index_select(0, at)
            clock_at = block.clock_count.index_select(0, at)
            triggers["t"] = block.clock_table.index_select(0, clock_at).cpu().numpy()
            channel = (payload >> TRIGGER_CHANNEL_SHIFT) & TRIGGER_CHANNEL_MASK
            triggers["channel"] = channel.cpu().numpy()
            triggers["value"] = (payload & TRIGGER_VALUE_MASK).cpu().numpy()
        return triggers

    def _add_cells(self, frame: torch.Tensor, cell: torch.Tensor, norm_time: torch.Tensor) -> None:
        """Add events (cell of the [ON | OFF] buffer, normalised time) into ``frame``."""
        counts = torch.zeros(2 * self._plane, dtype=torch.int32, device=self.device)
        one = torch.ones(1, dtype=torch.int32, device=self.device)
        counts.index_add_(0, cell, one.expand(cell.numel()))
        latest = torch.zeros(2 * self._plane, dtype=torch.float32, device=self.device)
        latest.scatter_reduce_(0, cell, norm_time, "amax")
        planes = counts.view(2, self._plane)
        self._unmapped += planes[:, self._cells :].sum()
        shape = (self.height, self.width)
        frame[0] += planes[0, : self._cells].view(shape)
        frame[1] += planes[1, : self._cells].view(shape)
        times = latest.view(2, self._plane)[:, : self._cells].amax(dim=0).view(shape)
        torch.maximum(frame[2], times, out=frame[2])

    def _take_words(self, data: object) -> torch.Tensor | None:
        """The words ``data`` completes, as their stream bytes (uint8) on the device.

        Returns:
            The bytes of the complete words (an even number), or None when there is no
            complete word yet; an odd trailing byte is held back by the framing.
        """
        words = self._framer.words(data)
        if words.size == 0:
            return None
        with warnings.catch_warnings():
            # the framer's words are read-only; torch only ever reads them
            warnings.simplefilter("ignore", UserWarning)
            host = torch.from_numpy(words.view(np.uint8))
        return host.to(self.device, non_blocking=True)

    def _blocks(self, buf: torch.Tensor | None) -> Iterator[_Words]:
        """Decode ``buf`` (whole words, as from :meth:`_take_words`) block after block.

        Lazily: each block advances the state only when the caller asks for it, after the
        previous block's results have been used, so at most one block's temporaries live.
        """
        if buf is None:
            return
        step = 2 * _BLOCK_WORDS
        for start in range(0, buf.numel(), step):
            block = self._decode_words(buf[start : start + step])
            if block is not None:
                yield block

    def _decode_words(self, buf: torch.Tensor | None) -> _Words | None:
        """Decode a block of whole words; advance the state and counters past it.

        Args:
            buf: the block's bytes on the device (even length), or None for no words.
        """
        if buf is None:
            return None
        dev = self.device
        n = buf.numel() // 2
        pos_t = torch.int32 if n <= _MAX_INT32_WORDS else torch.int64
        words = buf.view(torch.int16).to(torch.int32)  # int16: fully supported on every device
        words &= 0xFFFF
        kinds = buf[1::2] >> (TYPE_SHIFT - 8)  # uint8: top nibble of each word's high byte
        histogram = torch.bincount(kinds, minlength=16).tolist()  # sync: table sizes
        self._histogram = [a + b for a, b in zip(self._histogram, histogram, strict=True)]
        state = self._state

        # Rows.
        is_row = kinds == ADDR_Y
        row_count = torch.cumsum(is_row, dim=0, dtype=pos_t)
        row_table = self._setter_table(is_row, histogram[ADDR_Y], words, state[_S_Y], torch.int32)
        row_table &= COORD_MASK
        row_offset_table = torch.where(
            row_table < self.event_height, row_table * self.event_width, -1
        )
        row_offset = row_offset_table.index_select(0, row_count)

        # Clock, worked out at the TIME_HIGH/TIME_LOW words only.
        n_high, n_low = histogram[TIME_HIGH], histogram[TIME_LOW]
        is_clock = (kinds == TIME_HIGH) | (kinds == TIME_LOW)
        clock_count = torch.cumsum(is_clock, dim=0, dtype=pos_t)
        clock = self._clock(is_clock, n_high, n_low, words)
        clock_table = clock.table

        # Vector base: last VECT_BASE_X value plus the advances since it. ``advance[i]`` is the
        # sum of the steps of the words before word i (an exclusive scan).
        steps = torch.zeros(n + 1, dtype=pos_t, device=dev)
        torch.index_select(self._step, 0, words, out=steps[1:])
        advance = torch.cumsum(steps[:-1], dim=0, dtype=pos_t)
        n_base = histogram[VECT_BASE_X]
        is_base = kinds == VECT_BASE_X
        base_count = torch.cumsum(is_base, dim=0, dtype=pos_t)
        base_table = torch.empty(n_base + 1, dtype=pos_t, device=dev)
        base_table[:1] = state[_S_BASE]
        polarity_table = torch.empty(n_base + 1, dtype=torch.int32, device=dev)
        polarity_table[:1] = state[_S_POL]
        if n_base:
            at = torch.nonzero_static(is_base, size=n_base).view(-1)
            base_word = words.index_select(0, at)
            # base in force = value - advance at the VECT_BASE_X + advance at the word
            torch.sub(base_word & COORD_MASK, advance.index_select(0, at), out=base_table[1:])
            torch.bitwise_and(base_word >> POLARITY_SHIFT, 1, out=polarity_table[1:])
        vector_x = base_table.index_select(0, base_count) + advance

        is_addr_x = kinds == ADDR_X
        x = torch.where(is_addr_x, words & COORD_MASK, vector_x)
        # pixels left on the sensor row from x on
        room = (self.event_width - x).clamp_(0, VECT_12_STEP)
        room *= row_offset >= 0
        mask_bits = self._mask_bits.index_select(0, words)
        mask = mask_bits & self._keep.index_select(0, room)
        n_kept = self._popcount.index_select(0, mask)
        kept = n_kept.sum()

        total_advance = VECT_12_STEP * histogram[VECT_12] + VECT_8_STEP * histogram[VECT_8]
        self._state = torch.stack(
            (
                row_table[-1].to(torch.int64),
                clock.high,
                clock.low,
                clock.epoch,
                (base_table[-1].to(torch.int64) + total_advance).clamp(max=_BASE_CAP),
                polarity_table[-1].to(torch.int64),
                clock.stamp,
            )
        )
        raw = self._popcount.index_select(0, mask_bits).sum()
        self._device_counts += torch.stack((kept, raw - kept, clock.wraps, clock.backwards))
        return _Words(
            words=words,
            kinds=kinds,
            histogram=histogram,
            row_count=row_count,
            row_table=row_table,
            clock_count=clock_count,
            clock_table=clock_table,
            base_count=base_count,
            polarity_table=polarity_table,
            x=x,
            row_offset=row_offset,
            mask=mask,
            n_kept=n_kept,
        )

    def _setter_table(
        self,
        is_setter: torch.Tensor,
        n_setters: int,
        words: torch.Tensor,
        carried: torch.Tensor,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        """``[carried, word of setter 1, word of setter 2, ...]`` (callers mask the payload)."""
        table = torch.empty(n_setters + 1, dtype=dtype, device=self.device)
        table[:1] = carried
        if n_setters:
            at = torch.nonzero_static(is_setter, size=n_setters).view(-1)
            table[1:] = words.index_select(0, at)
        return table

    def _clock(
        self, is_clock: torch.Tensor, n_high: int, n_low: int, words: torch.Tensor
    ) -> _Clock:
        """Unwrap the clock at the TIME_HIGH/TIME_LOW words of a block (state is not changed).

        Args:
            is_clock: per-word flags of the TIME_HIGH and TIME_LOW words.
            n_high: number of TIME_HIGH words (from the histogram).
            n_low: number of TIME_LOW words.
            words: int32 word values.
        """
        dev = self.device
        state = self._state
        zero = torch.zeros((), dtype=torch.int64, device=dev)
        table = torch.empty(n_high + n_low + 1, dtype=torch.int64, device=dev)
        table[:1] = state[_S_EPOCH] + (state[_S_HIGH] << TIME_LOW_BITS) + state[_S_LOW]
        clock = _Clock(
            table=table,
            high=state[_S_HIGH],
            low=state[_S_LOW],
            epoch=state[_S_EPOCH],
            stamp=state[_S_STAMP],
            wraps=zero,
            backwards=zero,
        )
        if n_high + n_low == 0:
            return clock
        at = torch.nonzero_static(is_clock, size=n_high + n_low).view(-1)
        clock_words = words.index_select(0, at)
        value = (clock_words & PAYLOAD_MASK).to(torch.int64)
        is_high = (clock_words >> TYPE_SHIFT) == TIME_HIGH
        is_low = ~is_high

        # High part (with the epoch) after 0, 1, 2, ... TIME_HIGH words, likewise the low part;
        # a TIME_HIGH that drops by more than half its range starts a new epoch.
        high_table = torch.empty(n_high + 1, dtype=torch.int64, device=dev)
        high_table[:1] = table[:1] - state[_S_LOW]
        if n_high:
            high = value.index_select(0, torch.nonzero_static(is_high, size=n_high).view(-1))
            previous = torch.cat((state[_S_HIGH : _S_HIGH + 1], high[:-1]))
            epoch = torch.cumsum(previous - high > WRAP_DROP, dim=0, dtype=torch.int64)
            high_table[1:] = state[_S_EPOCH] + epoch * TIME_PERIOD_US + (high << TIME_LOW_BITS)
            clock = clock._replace(
                high=high[-1],
                epoch=state[_S_EPOCH] + epoch[-1] * TIME_PERIOD_US,
                wraps=epoch[-1],
            )
        low_table = torch.empty(n_low + 1, dtype=torch.int64, device=dev)
        low_table[:1] = state[_S_LOW]
        low_at = None
        if n_low:
            low_at = torch.nonzero_static(is_low, size=n_low).view(-1)
            low_table[1:] = value.index_select(0, low_at)
        high_part = high_table.index_select(0, torch.cumsum(is_high, dim=0))
        stamps = high_part + low_table.index_select(0, torch.cumsum(is_low, dim=0))
        table[1:] = stamps
        if low_at is not None:
            # A stamp (time at a TIME_LOW) lower than the previous stamp: sensor jitter, or a
            # TIME_HIGH that dropped too little to count as a wrap.
            low_stamps = stamps.index_select(0, low_at)
            backwards = (low_stamps[:1] < state[_S_STAMP]).sum()
            backwards += (low_stamps[1:] < low_stamps[:-1]).sum()
            clock = clock._replace(low=low_table[-1], stamp=low_stamps[-1], backwards=backwards)
        return clock

    def _expansions(
        self,
        per_word: torch.Tensor,
        mask: torch.Tensor,
        n_events: int,
        first: torch.Tensor | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, int, int]]:
        """:meth:`_expand` in pieces of at most about ``_BLOCK_WORDS`` events.

        A block of dense vectors names up to 12 events per word; expanding them piece by
        piece keeps the per-event temporaries as small as the per-word ones. Yields
        ``(word, bit, start, stop)``: block word indices and bit positions of the block's
        events ``[start, stop)``. Only a block with more events than words pays one extra
        sync, for the piece bounds.
        """
        if n_events <= _BLOCK_WORDS:
            word, bit = self._expand(per_word, mask, n_events, first)
            yield word, bit, 0, n_events
            return
        if first is None:
            first = torch.cumsum(per_word, dim=0, dtype=torch.int64) - per_word
        ends = first + per_word  # events up to and including each word
        targets = torch.arange(
            _BLOCK_WORDS, n_events, _BLOCK_WORDS, dtype=ends.dtype, device=self.device
        )
        cuts = torch.searchsorted(ends, targets)  # first word of each later piece
        bounds = torch.stack((cuts, first.index_select(0, cuts).to(cuts.dtype))).tolist()
        word_at = [0, *bounds[0], int(per_word.numel())]
        event_at = [0, *bounds[1], n_events]
        for i in range(len(word_at) - 1):
            lo, hi = word_at[i], word_at[i + 1]
            start, stop = event_at[i], event_at[i + 1]
            word, bit = self._expand(per_word[lo:hi], mask[lo:hi], stop - start)
            yield word + lo, bit, start, stop

    def _expand(
        self,
        per_word: torch.Tensor,
        mask: torch.Tensor,
        n_events: int,
        first: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Word index and bit position of every event, in word order then bit order.

        Args:
            per_word: events to expand per word (0 for words left out); each word's events
                are the lowest set bits of its ``mask`` (all of them when it is not left out).
            mask: kept-event bits per word.
            n_events: ``per_word.sum()``, known to the caller (it sizes the outputs).
            first: exclusive cumulative sum of ``per_word`` when the caller has it.
        """
        wide = n_events > (1 << 31) - (1 << 16) or per_word.dtype == torch.int64
        dtype = torch.int64 if wide else torch.int32
        counts = per_word.to(dtype)
        if first is None:
            first = torch.cumsum(counts, dim=0, dtype=dtype) - counts
        word = torch.repeat_interleave(counts, output_size=n_events)
        # 12 * mask + (rank of the event within its word) indexes the k-th set bit table.
        kth_index = (mask.to(dtype) * 12 - first).index_select(0, word)
        kth_index += torch.arange(n_events, dtype=dtype, device=self.device)
        return word, self._kth.index_select(0, kth_index)
