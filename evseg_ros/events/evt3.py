"""Prophesee EVT 3.0 codec: a stateful vectorised decoder, a matching encoder, a .raw reader.

The word format (types, bit fields, clock wrap) is defined once in
:mod:`evseg_ros.events.evt3_format`; this module is the reference decoder that the compiled
(:mod:`~evseg_ros.events.evt3_fast`) and torch (:mod:`~evseg_ros.events.evt3_torch`) decoders
must match bit for bit.

Why vectorised: a Python loop over words runs at roughly one million words per second, far
below a busy sensor's rate. Every piece of state is a "last value set before this word" lookup,
which is a prefix scan: a cumulative count of the words of one kind tells, for every word, how
many of them precede it, and that count indexes ``[carried state, value 1, value 2, ...]``.
The clock is first worked out at the (few) TIME_HIGH/TIME_LOW words only, the vector base at
the vector words only. EVT_ADDR_X words yield one event each; only vector masks are unpacked
bit by bit (:func:`numpy.unpackbits`). No Python code runs per word or per event.

Bounded memory on any input. A VECT_12 word names up to 12 events, but its pixels lie on the
sensor only while the vector base stays inside the sensor width (the base advances by 12 per
word); a flood of vector words without a fresh VECT_BASE_X, or on a row past the sensor, names
a dozen events per word of which almost none exist. The decoder therefore clears the mask bits
of pixels off the sensor *before* expanding masks into events (and counts them as out of
bounds), so only events that are returned are ever materialised. The per-word temporaries
(prefix counts, gathers, the clock) are a fixed multiple of the words decoded at once, so a
long packet is decoded in blocks of :data:`BLOCK_WORDS` words, the state carried from block to
block exactly as from packet to packet, into output arrays that grow in place: working memory
stays a small multiple of the packet (plus the events returned) and time linear in its size,
whatever the bytes are.

The 24-bit clock wraps every 2**24 us (about 16.8 s). The decoder keeps a wrap epoch and adds
2**24 to it whenever a TIME_HIGH value drops by more than half of its 12-bit range; smaller
drops are glitches, kept as they are. Output times are therefore int64 microseconds that only
grow on a healthy stream; time stamps that do go back are counted (``time_backwards``), never
reordered. Before the first TIME_HIGH has been seen the high part is taken as 0 (and the low
part as 0 before the first TIME_LOW): reference decoders differ here (some drop such events),
and keeping them loses nothing a caller could not filter out.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import NamedTuple

import numpy as np

from evseg_ros.events.errors import EventDecodeError
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
    TIME_HIGH_RANGE,
    TIME_LOW,
    TIME_LOW_BITS,
    TIME_PERIOD_US,
    TRIGGER_CHANNEL_MASK,
    TRIGGER_CHANNEL_SHIFT,
    TRIGGER_VALUE_MASK,
    TYPE_SHIFT,
    VECT_8,
    VECT_8_MASK,
    VECT_8_STEP,
    VECT_12,
    VECT_12_STEP,
    VECT_BASE_X,
    WORD_BYTES,
    WRAP_DROP,
)
from evseg_ros.events.framing import WordFramer, check_geometry
from evseg_ros.events.types import EVENT_DTYPE, TRIGGER_DTYPE, empty_events, empty_triggers

__all__ = [
    "BLOCK_WORDS",
    "DecodedEvents",
    "DecoderCounters",
    "Evt3Decoder",
    "Evt3EncoderState",
    "empty_decoded",
    "encode_evt3",
    "read_raw_file",
]

#: Largest forward TIME_HIGH step the encoder emits (in units of 4096 us): one below half the
#: range, so that a wrap always looks like a drop of more than half the range to a decoder.
_MAX_HIGH_STEP = WRAP_DROP - 1
#: Number of set bits of every 12-bit vector mask (np.bitwise_count needs numpy >= 2).
_POPCOUNT_12 = np.array([v.bit_count() for v in range(1 << 12)], dtype=np.uint8)
#: The lowest ``l`` bits set, for l = 0..12: the mask bits of a vector word whose pixels are
#: still on the sensor when ``l`` pixels of the row are left from its base on.
_LOW_BITS = ((1 << np.arange(13)) - 1).astype(np.uint16)
#: Words decoded at once. A block's temporaries cost about 100 bytes per word and 20 per
#: returned event, so longer packets are cut into blocks of this many words (256 KiB of
#: stream): big enough that the fixed cost of the numpy calls per block stays small, small
#: enough that a block's temporaries stay a few MiB whatever the packet size.
BLOCK_WORDS = 1 << 17


class DecodedEvents(NamedTuple):
    """What one decode call produced, each array in stream order.

    Attributes:
        events: CD events with :data:`~evseg_ros.events.types.EVENT_DTYPE`.
        triggers: external-trigger edges with :data:`~evseg_ros.events.types.TRIGGER_DTYPE`.
    """

    events: np.ndarray
    triggers: np.ndarray



#: The per-category word counters of :class:`DecoderCounters`: every word of a packet is in
#: exactly one of them.
WORD_CATEGORIES = (
    "cd_words",
    "address_words",
    "time_words",
    "trigger_words",
    "other_words",
    "continued_words",
    "continued4_words",
    "unknown_words",
)

@dataclass
class DecoderCounters:
    """Running totals since construction or the last ``reset()``.

    The word categories partition the consumed words, so ``words == categorised_words()``
    always holds; health monitoring can watch ``unknown_words`` (link corruption or a format
    mismatch), ``out_of_bounds`` (wrong geometry) and ``time_backwards`` (clock glitches).

    Attributes:
        words: complete words consumed (a trailing partial word is not counted until complete).
        cd_words: words that carry CD events (EVT3: EVT_ADDR_X, VECT_12, VECT_8; EVT2: CD_OFF,
            CD_ON), whether or not their events were kept.
        address_words: EVT3 EVT_ADDR_Y and VECT_BASE_X words (always 0 for EVT2).
        time_words: TIME_LOW and TIME_HIGH words.
        trigger_words: EXT_TRIGGER words (each yields exactly one trigger).
        other_words: OTHERS words (vendor extensions, skipped).
        continued_words: words of type 0xF (EVT3 CONTINUED_12, EVT2 CONTINUED): vendor payload
            following an OTHERS word, skipped.
        continued4_words: EVT3 CONTINUED_4 words (type 0x7; vendor payload, skipped). Kept
            apart from ``continued_words`` so each counter matches one word type.
        unknown_words: words of a reserved type (skipped).
        cd_events: CD events returned to the caller.
        triggers: trigger edges returned to the caller.
        out_of_bounds: CD events dropped because ``x >= width`` or ``y >= height``.
        time_wraps: clock wraps detected (each adds one full clock period to output times).
        time_backwards: time stamps lower than the previous stamp: sensor jitter, or a
            TIME_HIGH that dropped too little to count as a wrap. Events keep the lower time;
            nothing is reordered. A stamp is the time in force after each EVT3 TIME_LOW, or
            the time of each EVT2 event or trigger word (which carry their low time bits).
    """

    words: int = 0
    cd_words: int = 0
    address_words: int = 0
    time_words: int = 0
    trigger_words: int = 0
    other_words: int = 0
    continued_words: int = 0
    continued4_words: int = 0
    unknown_words: int = 0
    cd_events: int = 0
    triggers: int = 0
    out_of_bounds: int = 0
    time_wraps: int = 0
    time_backwards: int = 0

    def categorised_words(self) -> int:
        """Sum of the per-category word counts (equals ``words`` by construction)."""
        return sum(getattr(self, name) for name in WORD_CATEGORIES)

    def as_dict(self) -> dict[str, int]:
        """Plain dict, e.g. for diagnostics messages or logging."""
        return {f.name: int(getattr(self, f.name)) for f in fields(self)}


def empty_decoded() -> DecodedEvents:
    """Zero-length result, shared shape for every decoder."""
    return DecodedEvents(empty_events(), empty_triggers())


class OutputRecords:
    """One output array (events or triggers) filled block after block, grown in place.

    Joining per-block arrays at the end would hold every record twice; growing one array in
    place (``ndarray.resize``, a ``realloc`` that large arrays get as a page remap) holds it
    once. The array doubles, so the total copying stays linear, but it never reserves more
    than ``max_spare`` records beyond those written: the unused tail is bounded by the packet
    (the callers pass an eighth of a record per word, under the packet's own size), not by the
    output. A packet decoded in one block gets an array of exactly the right size and no
    resize at all.

    Args:
        dtype: record layout.
        max_spare: most records ever reserved beyond those taken.
    """

    def __init__(self, dtype: np.dtype, max_spare: int) -> None:
        self._array = np.empty(0, dtype=dtype)
        self._size = 0
        self._max_spare = max(int(max_spare), 0)

    def take(self, count: int) -> np.ndarray:
        """The next ``count`` records, to be filled before the next call (views go stale)."""
        need = self._size + count
        if need > self._array.size:
            spare = min(self._array.size, self._max_spare)
            if self._array.size == 0:
                self._array = np.empty(need + spare, dtype=self._array.dtype)
            else:
                # refcheck=False: the only other views are those handed out by earlier calls,
                # which their callers have already filled and dropped.
                self._array.resize(need + spare, refcheck=False)
        view = self._array[self._size : need]
        self._size = need
        return view

    def result(self) -> np.ndarray:
        """The records taken so far, in one array of exactly that length."""
        if self._array.size != self._size:
            self._array.resize(self._size, refcheck=False)  # a shrink, done in place
        return self._array


def _prefix_count(is_marker: np.ndarray) -> np.ndarray | None:
    """Number of marker words at or before each word, or None when there is no marker.

    int32 keeps the scan and the later gathers cheap; blocks of 2**31 words (4 GiB) would
    need int64.
    """
    if not is_marker.any():
        return None
    dtype = np.int32 if is_marker.size < np.iinfo(np.int32).max else np.int64
    return np.cumsum(is_marker, dtype=dtype)


def _ext(carried: int, values: np.ndarray, dtype: type = np.int64) -> np.ndarray:
    """``[carried, *values]``: the value in force after 0, 1, 2, ... marker words."""
    out = np.empty(values.size + 1, dtype=dtype)
    out[0] = carried
    out[1:] = values
    return out


def _in_force(count: np.ndarray | None, values_ext: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Value of one kind of state in force at each word of ``idx`` (a forward fill).

    Args:
        count: :func:`_prefix_count` of the marker words of that kind.
        values_ext: :func:`_ext` of the carried state and the markers' values.
        idx: word indices to look up. For a marker word itself the result is its own value.
    """
    if count is None:
        return np.full(idx.shape, values_ext[0], dtype=values_ext.dtype)
    return values_ext[count[idx]]


class _TimeTrack(NamedTuple):
    """Clock reconstruction over one block of words (computed without touching the state).

    TIME_HIGH and TIME_LOW words are few compared with event words, so the clock is first
    worked out at the time words only; any other word then needs a single lookup.
    """

    count: np.ndarray | None  # TIME_HIGH/TIME_LOW words at or before each word
    stamp_ext: np.ndarray  # [carried time, unwrapped time after each time word]
    n_high: int
    n_low: int
    last_high: int  # 12-bit value of the last TIME_HIGH (or the carried one)
    last_epoch: int
    last_low: int
    wraps: int
    backwards: int  # complete time stamps lower than the one before
    last_stamp: int  # time at the last TIME_LOW (or the carried one)
    last_rollover: int  # extra us added by the ``time_low_rollover`` mode so far

    def at(self, idx: np.ndarray) -> np.ndarray:
        """Unwrapped time (us) in force at each of the given word indices."""
        return _in_force(self.count, self.stamp_ext, idx)


class Evt3Decoder:
    """Stateful EVT 3.0 decoder for a stream split into arbitrary byte packets.

    All state (row, vector base and polarity, both halves of the clock, wrap epoch, and a
    dangling odd byte) carries from one :meth:`decode` call to the next, so a ROS
    ``EventPacket`` stream or a file read in chunks decodes exactly as if it were one buffer.

    Args:
        width: sensor width; events with ``x >= width`` are dropped and counted.
        height: sensor height; events with ``y >= height`` are dropped and counted.
        time_low_rollover: also add 4096 us whenever a TIME_LOW is lower than the TIME_LOW
            before it, as the expelliarmus decoder does (and so reproduce its output, e.g.
            ``evt3_sample.npy``, bit for bit). Off by default because it is not the sensor's
            clock: Gen4 firmware re-sends a TIME_HIGH/TIME_LOW pair a few microseconds ahead
            about once per millisecond, and counting each such step back as a rollover makes
            a recording's times drift ahead by 4.096 ms per occurrence (and double counts the
            genuine rollover next to every TIME_HIGH step).

    Raises:
        EventDecodeError: the geometry is not a positive int.
    """

    def __init__(
        self, *, width: int = 1280, height: int = 720, time_low_rollover: bool = False
    ) -> None:
        self.width, self.height = check_geometry(width, height)
        self.time_low_rollover = bool(time_low_rollover)
        self.counters = DecoderCounters()
        self.reset()

    def reset(self) -> None:
        """Forget all stream state and counters (e.g. after a camera restart or a seek)."""
        self.counters = DecoderCounters()
        self._y = 0
        self._base_x = 0
        self._vect_pol = 0
        self._high = 0
        self._low = 0
        self._epoch = 0
        self._stamp = 0  # time in force at the last TIME_LOW, to spot stamps going backwards
        self._rollover = 0  # time_low_rollover mode: 4096 us per TIME_LOW drop so far
        self._framer = WordFramer(WORD_BYTES)
        self._pending = np.empty(0, dtype=np.uint16)

    @property
    def current_time_us(self) -> int:
        """Unwrapped clock value after the last consumed word."""
        return self._epoch + (self._high << TIME_LOW_BITS) + self._low + self._rollover

    @property
    def buffered_bytes(self) -> int:
        """Bytes held back for the next call (an odd byte, or words left by decode_until)."""
        return self._framer.held_bytes + WORD_BYTES * int(self._pending.size)

    # ------------------------------------------------------------------ public decoding API

    def decode(self, data: bytes | bytearray | memoryview | np.ndarray) -> DecodedEvents:
        """Decode every complete word of ``data`` (after anything still buffered).

        Args:
            data: the next bytes of the stream; an odd trailing byte is kept for the next call.

        Returns:
            CD events and trigger edges in stream order.

        Raises:
            EventDecodeError: ``data`` is not a supported buffer type (stream content never
                raises).
        """
        words = self._take_words(data)
        events, triggers = _outputs(words.size)
        for start in range(0, words.size, BLOCK_WORDS):
            self._decode_block(words[start : start + BLOCK_WORDS], events, triggers)
        return DecodedEvents(events.result(), triggers.result())

    def decode_until(
        self, data: bytes | bytearray | memoryview | np.ndarray, t_limit_us: int
    ) -> tuple[DecodedEvents, bool, int]:
        """Decode up to, not including, the first event word whose time is ``>= t_limit_us``.

        Lets a consumer cut a stream into fixed time windows without splitting the bytes
        itself: the words from the stopping point on stay buffered and are decoded first by
        the next call (pass ``b""`` to continue with no new data).

        Args:
            data: the next bytes of the stream (may be empty).
            t_limit_us: exclusive time limit in unwrapped microseconds.

        Returns:
            ``(decoded, reached_limit, next_time)``. When the limit was reached, ``next_time``
            is the time of the first held-back event or trigger; otherwise everything was
            consumed and ``next_time`` is :attr:`current_time_us`. The time test is made per
            event-carrying word (EVT_ADDR_X, VECT_12, VECT_8, EXT_TRIGGER) before bounds
            filtering, because all events of one word share its time.

        Raises:
            EventDecodeError: wrong argument types.
        """
        if isinstance(t_limit_us, bool) or not isinstance(t_limit_us, (int, np.integer)):
            raise EventDecodeError(f"t_limit_us must be an int, got {t_limit_us!r}")
        words = self._take_words(data)
        events, triggers = _outputs(words.size)
        for start in range(0, words.size, BLOCK_WORDS):
            block = words[start : start + BLOCK_WORDS]
            late = self._first_late_item(block, int(t_limit_us))
            if late is not None:
                stop, next_time = late
                self._decode_block(block[:stop], events, triggers)
                self._pending = words[start + stop :].copy()
                return DecodedEvents(events.result(), triggers.result()), True, next_time
            self._decode_block(block, events, triggers)
        return DecodedEvents(events.result(), triggers.result()), False, self.current_time_us

    # ------------------------------------------------------------------ internals

    def _take_words(self, data: object) -> np.ndarray:
        """Words held back by decode_until, then the words ``data`` completes (uint16)."""
        words = self._framer.words(data)
        if self._pending.size:
            words = np.concatenate((self._pending, words))
            self._pending = np.empty(0, dtype=np.uint16)
        return words

    def _first_late_item(self, w: np.ndarray, t_limit_us: int) -> tuple[int, int] | None:
        """Index and time of the first event or trigger word of ``w`` at or past the limit.

        Reads the clock from the current state, so ``w`` must be the next words to decode.
        """
        ty = w >> TYPE_SHIFT
        item_idx = np.flatnonzero(
            (ty == ADDR_X) | (ty == VECT_12) | (ty == VECT_8) | (ty == EXT_TRIGGER)
        )
        if item_idx.size == 0:
            return None
        times = self._time_track(ty, w & PAYLOAD_MASK).at(item_idx)
        late = np.flatnonzero(times >= t_limit_us)
        if late.size == 0:
            return None
        return int(item_idx[late[0]]), int(times[late[0]])

    def _time_track(self, ty: np.ndarray, pl: np.ndarray) -> _TimeTrack:
        """Reconstruct the unwrapped clock over a block of words (no state change)."""
        is_time = (ty == TIME_HIGH) | (ty == TIME_LOW)
        t_idx = np.flatnonzero(is_time)
        carried = self.current_time_us
        if t_idx.size == 0:
            return _TimeTrack(
                count=None,
                stamp_ext=np.array([carried], dtype=np.int64),
                n_high=0,
                n_low=0,
                last_high=self._high,
                last_epoch=self._epoch,
                last_low=self._low,
                wraps=0,
                backwards=0,
                last_stamp=self._stamp,
                last_rollover=self._rollover,
            )
        t_val = pl[t_idx].astype(np.int64)
        is_hi = ty[t_idx] == TIME_HIGH
        is_lo = ~is_hi
        high = t_val[is_hi]
        low = t_val[is_lo]
        wraps = 0
        last_high, last_epoch = self._high, self._epoch
        if high.size:
            prev = np.empty_like(high)
            prev[0] = self._high
            prev[1:] = high[:-1]
            wrap = prev - high > WRAP_DROP
            epoch = self._epoch + np.cumsum(wrap, dtype=np.int64) * TIME_PERIOD_US
            wraps = int(np.count_nonzero(wrap))
            last_high, last_epoch = int(high[-1]), int(epoch[-1])
            high = epoch + (high << TIME_LOW_BITS)
        hi_ext = _ext(self._epoch + (self._high << TIME_LOW_BITS), high)
        lo_ext = _ext(self._low, low)
        stamp = hi_ext[np.cumsum(is_hi)] + lo_ext[np.cumsum(is_lo)]
        last_rollover = self._rollover
        if self.time_low_rollover:
            drops = np.cumsum(lo_ext[1:] < lo_ext[:-1], dtype=np.int64) * TIME_HIGH_RANGE
            rollover_ext = _ext(self._rollover, self._rollover + drops)
            stamp += rollover_ext[np.cumsum(is_lo)]
            last_rollover = int(rollover_ext[-1])
        backwards = 0
        last_stamp = self._stamp
        if low.size:
            # A time stamp is complete at each TIME_LOW; one lower than the previous stamp
            # means sensor jitter or a TIME_HIGH that dropped too little to count as a wrap.
            lo_stamp = stamp[is_lo]
            backwards = int(lo_stamp[0] < self._stamp) + int(
                np.count_nonzero(lo_stamp[1:] < lo_stamp[:-1])
            )
            last_stamp = int(lo_stamp[-1])
        return _TimeTrack(
            count=_prefix_count(is_time),
            stamp_ext=_ext(carried, stamp),
            n_high=int(high.size),
            n_low=int(low.size),
            last_high=last_high,
            last_epoch=last_epoch,
            last_low=int(lo_ext[-1]),
            wraps=wraps,
            backwards=backwards,
            last_stamp=last_stamp,
            last_rollover=last_rollover,
        )

    def _decode_block(
        self, w: np.ndarray, events_out: OutputRecords, triggers_out: OutputRecords
    ) -> None:
        """Decode a block of complete words into the outputs and advance the state past it."""
        n = int(w.size)
        if n == 0:
            return
        ty = (w >> TYPE_SHIFT).astype(np.uint8)
        pl = w & PAYLOAD_MASK
        clock = self._time_track(ty, pl)

        is_vec = (ty - VECT_12) <= VECT_8 - VECT_12  # uint8 wraps, so this is 4 <= ty <= 5
        is_cd = is_vec | (ty == ADDR_X)
        cd_idx = np.flatnonzero(is_cd)
        tr_idx = np.flatnonzero(ty == EXT_TRIGGER)
        is_y = ty == ADDR_Y
        is_base = ty == VECT_BASE_X
        n_vect = int(np.count_nonzero(is_vec))
        n_base = int(np.count_nonzero(is_base))

        # Row in force at each CD word.
        y_val = pl[is_y] & COORD_MASK
        y_ext = _ext(self._y, y_val, np.int32)
        y_word = _in_force(_prefix_count(is_y) if y_val.size else None, y_ext, cd_idx)

        cd_pl = pl[cd_idx]
        x_word = (cd_pl & COORD_MASK).astype(np.int32)
        p_word = (cd_pl >> POLARITY_SHIFT).astype(np.uint8)
        vec_rows = np.flatnonzero(ty[cd_idx] != ADDR_X) if n_vect else None
        if n_vect or n_base:
            self._vector_state(ty, pl, is_base | is_vec, x_word, p_word, vec_rows)

        # Only events on the sensor are ever materialised (the others are just counted): an
        # EVT_ADDR_X word's pixel, and the vector mask bits that _bits_on_sensor keeps.
        on_sensor = (x_word < self.width) & (y_word < self.height)
        t_word = clock.at(cd_idx)
        n_total = int(cd_idx.size)
        if vec_rows is None:
            n_keep = int(np.count_nonzero(on_sensor))
            events = events_out.take(n_keep)
            _copy_kept(events, on_sensor, n_keep, x_word, y_word, p_word, t_word)
        else:
            v_mask = cd_pl[vec_rows]
            v_mask = np.where(ty[cd_idx[vec_rows]] == VECT_8, v_mask & VECT_8_MASK, v_mask)
            kept_bits = on_sensor.astype(np.uint16)
            kept_bits[vec_rows] = self._bits_on_sensor(v_mask, x_word[vec_rows], y_word[vec_rows])
            n_total += int(_POPCOUNT_12[v_mask].sum()) - vec_rows.size
            n_keep = int(_POPCOUNT_12[kept_bits].sum())
            events = events_out.take(n_keep)
            _expand_bits(events, kept_bits, x_word, y_word, p_word, t_word)

        triggers = triggers_out.take(int(tr_idx.size))
        if tr_idx.size:
            tr_pl = pl[tr_idx]
            triggers["t"] = clock.at(tr_idx)
            triggers["channel"] = (tr_pl >> TRIGGER_CHANNEL_SHIFT) & TRIGGER_CHANNEL_MASK
            triggers["value"] = tr_pl & TRIGGER_VALUE_MASK

        # Carry the remaining state past this block.
        self._y = int(y_ext[-1])
        self._high, self._epoch = clock.last_high, clock.last_epoch
        self._low = clock.last_low
        self._stamp = clock.last_stamp
        self._rollover = clock.last_rollover

        n_other = int(np.count_nonzero(ty == OTHERS))
        n_cont12 = int(np.count_nonzero(ty == CONTINUED_12))
        n_cont4 = int(np.count_nonzero(ty == CONTINUED_4))
        n_address = int(y_val.size) + n_base
        n_time = clock.n_high + clock.n_low
        known = int(cd_idx.size) + n_address + n_time + int(tr_idx.size)
        c = self.counters
        c.words += n
        c.cd_words += int(cd_idx.size)
        c.address_words += n_address
        c.time_words += n_time
        c.trigger_words += int(tr_idx.size)
        c.other_words += n_other
        c.continued_words += n_cont12
        c.continued4_words += n_cont4
        c.unknown_words += n - known - n_other - n_cont12 - n_cont4
        c.cd_events += n_keep
        c.triggers += int(tr_idx.size)
        c.out_of_bounds += n_total - n_keep
        c.time_wraps += clock.wraps
        c.time_backwards += clock.backwards

    def _bits_on_sensor(self, mask: np.ndarray, base: np.ndarray, row: np.ndarray) -> np.ndarray:
        """The bits of vector masks whose pixels are on the sensor.

        Bit i of a vector is the pixel ``base + i`` of its row, so only the lowest
        ``width - base`` bits can be on the sensor, and none on a row past it. Clearing the
        rest before expanding is what keeps a flood of VECT_12 words (12 events named per
        word, the base running far past the sensor) from materialising events that do not
        exist.
        """
        room = np.clip(self.width - base, 0, VECT_12_STEP)
        room[row >= self.height] = 0
        return mask & _LOW_BITS[room]

    def _vector_state(
        self,
        ty: np.ndarray,
        pl: np.ndarray,
        is_vector_word: np.ndarray,
        x_word: np.ndarray,
        p_word: np.ndarray,
        vec_rows: np.ndarray | None,
    ) -> None:
        """Set the base x and polarity of the vector words among the CD words; carry both.

        Only the three vector word types take part, so the scan runs over that subset.

        Args:
            ty: word types of the block.
            pl: 12-bit payloads of the block.
            is_vector_word: VECT_BASE_X, VECT_12 and VECT_8 words of the block.
            x_word: x of each CD word, updated in place at ``vec_rows``.
            p_word: polarity of each CD word, updated in place at ``vec_rows``.
            vec_rows: positions of the VECT_12/VECT_8 words among the CD words, or None.
        """
        v_idx = np.flatnonzero(is_vector_word)
        v_ty = ty[v_idx]
        v_pl = pl[v_idx]
        v_is_base = v_ty == VECT_BASE_X
        step = np.where(v_ty == VECT_12, VECT_12_STEP, np.where(v_ty == VECT_8, VECT_8_STEP, 0))
        advanced = np.cumsum(step, dtype=np.int64) - step  # base advance before each word
        b_loc = np.flatnonzero(v_is_base)
        n_bases = np.cumsum(v_is_base, dtype=np.int64)  # bases at or before each word
        base_ext = _ext(self._base_x, v_pl[b_loc] & COORD_MASK)
        pol_ext = _ext(self._vect_pol, v_pl[b_loc] >> POLARITY_SHIFT, np.uint8)
        adv_ext = _ext(0, advanced[b_loc])
        k = int(n_bases[-1])
        self._base_x = int(base_ext[k] + advanced[-1] + step[-1] - adv_ext[k])
        self._vect_pol = int(pol_ext[k])
        if vec_rows is not None:
            in_vec = ~v_is_base
            nb = n_bases[in_vec]
            # Bases can run past 2**31 only on garbage; clip so int32 stays exact where it
            # matters (anything >= 2048 is out of bounds anyway).
            x_word[vec_rows] = np.minimum(base_ext[nb] + advanced[in_vec] - adv_ext[nb], 1 << 20)
            p_word[vec_rows] = pol_ext[nb]


def _outputs(n_words: int) -> tuple[OutputRecords, OutputRecords]:
    """Event and trigger outputs for a packet of ``n_words`` words (see OutputRecords)."""
    spare = n_words // 8
    return OutputRecords(EVENT_DTYPE, spare), OutputRecords(TRIGGER_DTYPE, spare)


def _copy_kept(
    events: np.ndarray,
    keep: np.ndarray,
    n_keep: int,
    x_word: np.ndarray,
    y_word: np.ndarray,
    p_word: np.ndarray,
    t_word: np.ndarray,
) -> None:
    """Fill ``events`` from the one-event words flagged in ``keep`` (all of them, usually)."""
    if n_keep != keep.size:
        x_word, y_word, p_word, t_word = x_word[keep], y_word[keep], p_word[keep], t_word[keep]
    events["x"] = x_word
    events["y"] = y_word
    events["p"] = p_word
    events["t"] = t_word


def _expand_bits(
    events: np.ndarray,
    bits: np.ndarray,
    x_word: np.ndarray,
    y_word: np.ndarray,
    p_word: np.ndarray,
    t_word: np.ndarray,
) -> None:
    """Fill ``events`` with one event per set bit of each word's ``bits``, bit i at x + i.

    Events come out in word order, then bit order. Every set bit is an event to return (the
    caller cleared the others). A block of dense vectors can name 12 events per word, so the
    words are expanded in pieces of at most about :data:`BLOCK_WORDS` events: the per-event
    temporaries then stay as small as the per-word ones.
    """
    if events.size <= BLOCK_WORDS:
        _expand_piece(events, bits, x_word, y_word, p_word, t_word)
        return
    ends = np.cumsum(_POPCOUNT_12[bits], dtype=np.int64)  # events up to and including each word
    cuts = np.searchsorted(ends, np.arange(BLOCK_WORDS, events.size, BLOCK_WORDS)).tolist()
    lo = 0
    for hi in [*cuts, bits.size]:
        first, stop = (int(ends[lo - 1]) if lo else 0), int(ends[hi - 1])
        piece = slice(lo, hi)
        _expand_piece(
            events[first:stop], bits[piece], x_word[piece], y_word[piece], p_word[piece],
            t_word[piece],
        )  # fmt: skip
        lo = hi


def _expand_piece(
    events: np.ndarray,
    bits: np.ndarray,
    x_word: np.ndarray,
    y_word: np.ndarray,
    p_word: np.ndarray,
    t_word: np.ndarray,
) -> None:
    """:func:`_expand_bits` for one piece: an index per event, then one field at a time."""
    unpacked = np.unpackbits(bits.astype("<u2", copy=False).view(np.uint8), bitorder="little")
    at = np.flatnonzero(unpacked.view(bool))  # word * 16 + bit, in stream order
    del unpacked
    x_off = (at & 15).astype(np.int32)
    at >>= 4  # now the word of each event
    x_off += x_word[at]
    events["x"] = x_off
    del x_off
    events["y"] = y_word[at]
    events["p"] = p_word[at]
    events["t"] = t_word[at]


# ====================================================================================== encoder


@dataclass
class Evt3EncoderState:
    """What a decoder that read the previous chunks holds, so the next chunk can build on it.

    A fresh state matches a fresh :class:`Evt3Decoder` (clock at 0, row unknown).

    Attributes:
        time_us: unwrapped time of the last TIME_HIGH/TIME_LOW pair emitted; its bits 23..12
            and 11..0 are what the decoder holds as high and low parts.
        y: last row emitted with EVT_ADDR_Y, or None before any.
    """

    time_us: int = 0
    y: int | None = None

    @property
    def time_high(self) -> int:
        """12-bit TIME_HIGH value the decoder holds."""
        return (self.time_us >> TIME_LOW_BITS) & PAYLOAD_MASK

    @property
    def time_low(self) -> int:
        """12-bit TIME_LOW value the decoder holds."""
        return self.time_us & PAYLOAD_MASK


def _field(
    arr: np.ndarray,
    name: str,
    what: str,
    dtype: type,
    lo: int | None = None,
    hi: int | None = None,
) -> np.ndarray:
    """One integer field of a structured array, range-checked, as a contiguous ``dtype`` array.

    The range is checked on the original values, before narrowing, so that e.g. an int64 x
    of 70000 is reported instead of silently wrapping.
    """
    if arr.dtype.names is None or name not in arr.dtype.names:
        raise EventDecodeError(f"{what} need a field {name!r}, got dtype {str(arr.dtype)!r}")
    values = arr[name]
    if values.dtype.kind not in "iub":
        raise EventDecodeError(f"{what} field {name!r} must be integer, got {str(values.dtype)!r}")
    checked = lo is not None and hi is not None and values.size
    if checked and (values.min() < lo or values.max() >= hi):
        bad = int(np.flatnonzero((values < lo) | (values >= hi))[0])
        raise EventDecodeError(
            f"{what} field {name!r} must be in [{lo}, {hi}) for EVT3, "
            f"got {int(values[bad])!r} at index {bad}"
        )
    return np.ascontiguousarray(values, dtype=dtype)


def _check_sorted(t: np.ndarray, name: str) -> None:
    """Raise if ``t`` ever decreases, naming the first offender."""
    if t.size > 1 and bool(np.any(t[1:] < t[:-1])):
        i = int(np.flatnonzero(t[1:] < t[:-1])[0]) + 1
        raise EventDecodeError(
            f"{name} times must be sorted, got {int(t[i])!r} after {int(t[i - 1])!r} at index {i}"
        )


#: 12-pixel window of each x: VECT_12 words cover [12 k, 12 k + 12).
_WINDOW_OF_X = (np.arange(MAX_COORD) // VECT_12_STEP).astype(np.int16)

# Word slots per item in the encoder's (items, 5) layout; a boolean mask picks the used ones.
_SLOT_HIGH, _SLOT_LOW, _SLOT_Y, _SLOT_A, _SLOT_B = range(5)


def _event_rows(
    ex: np.ndarray, ey: np.ndarray, ep: np.ndarray, et: np.ndarray, last_y: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Row and payload words of each event in the (items, 5) slot layout.

    Slot A holds EVT_ADDR_X, VECT_BASE_X (first event of a vector chain) or VECT_12 (first
    event of a later window of a chain); slot B holds the first window's VECT_12 after a
    VECT_BASE_X. Events other than the first of a window need no word of their own: their bit
    is in the window's mask.

    Args:
        ex: uint16 x of each event (already range-checked), likewise ``ey`` and ``ep``.
        ey: uint16 rows.
        ep: uint16 polarities.
        et: int64 times.
        last_y: row the decoder holds from earlier chunks, or None.
    """
    n = ex.size
    words = np.zeros((n, 5), dtype=np.uint16)
    used = np.zeros((n, 5), dtype=bool)
    used[0, _SLOT_Y] = last_y is None or int(ey[0]) != last_y
    used[1:, _SLOT_Y] = ey[1:] != ey[:-1]
    words[:, _SLOT_Y] = ey  # ADDR_Y is type 0: the word is the row itself
    addr_x = (ADDR_X << TYPE_SHIFT) | (ep << POLARITY_SHIFT) | ex

    # Runs: consecutive events sharing time, row and polarity with x strictly increasing.
    cont = np.zeros(n, dtype=bool)
    cont[1:] = (et[1:] == et[:-1]) & (ey[1:] == ey[:-1]) & (ep[1:] == ep[:-1]) & (ex[1:] > ex[:-1])
    # Vectors can only pay off in a run of at least 3 events.
    if n < 3 or not bool(np.any(cont[1:] & cont[:-1])):
        words[:, _SLOT_A] = addr_x
        used[:, _SLOT_A] = True
        return words, used
    win = _WINDOW_OF_X[ex]
    dwin = np.zeros(n, dtype=np.int16)
    dwin[1:] = win[1:] - win[:-1]
    new_win = ~cont | (dwin != 0)
    new_chain = ~cont | (dwin > 1)  # a chain is a run of adjacent windows
    chain_start = np.flatnonzero(new_chain)
    chain_events = np.diff(chain_start, append=n)
    windows_so_far = np.cumsum(new_win, dtype=np.int32)
    chain_end_windows = windows_so_far[chain_start + chain_events - 1]
    chain_windows = np.diff(chain_end_windows, prepend=0)
    vec_chain = 1 + chain_windows < chain_events  # VECT_BASE_X + one VECT_12 per window
    if not vec_chain.any():
        words[:, _SLOT_A] = addr_x
        used[:, _SLOT_A] = True
        return words, used
    vec = np.repeat(vec_chain, chain_events)
    vi = np.flatnonzero(vec)
    win_id = np.cumsum(new_win[vi]) - 1
    bit = np.left_shift(1, ex[vi] - win[vi] * VECT_12_STEP)
    masks = np.bincount(win_id, weights=bit).astype(np.uint16)
    vect12 = (VECT_12 << TYPE_SHIFT) | masks[win_id]
    slot_a = addr_x
    slot_a[vi] = np.where(
        new_chain[vi],
        (VECT_BASE_X << TYPE_SHIFT) | (ep[vi] << POLARITY_SHIFT) | (win[vi] * VECT_12_STEP),
        vect12,
    )
    words[:, _SLOT_A] = slot_a
    used[:, _SLOT_A] = ~vec | new_win
    words[vi, _SLOT_B] = vect12
    used[:, _SLOT_B] = vec & new_chain
    return words, used


def encode_evt3(
    events: np.ndarray,
    triggers: np.ndarray | None = None,
    *,
    state: Evt3EncoderState | None = None,
) -> bytes:
    """Encode CD events and trigger edges as EVT 3.0 words that :class:`Evt3Decoder` inverts.

    Layout choices, all made with array operations:

    * per call, one TIME_HIGH and one TIME_LOW before the first item, then TIME_HIGH whenever
      bits 12 and up of the time change and TIME_LOW whenever the time changes;
    * when two consecutive items (or the previous call's last time and this call's first) are
      more than ``2047 * 4096`` us apart, extra TIME_HIGH words at intermediate times, so the
      decoder's "drop of more than half the range" wrap test is never ambiguous. Times past
      2**24 us therefore wrap and unwrap exactly;
    * EVT_ADDR_Y whenever the row differs from the last one emitted;
    * for runs of events with the same time, row and polarity and strictly increasing x, the
      row is cut into 12-pixel windows aligned at multiples of 12; a chain of adjacent windows
      becomes VECT_BASE_X plus one VECT_12 per window when that is shorter than one
      EVT_ADDR_X per event; everything else is a plain EVT_ADDR_X.

    Each item gets five word slots (TIME_HIGH, TIME_LOW, EVT_ADDR_Y, two payload words) in
    one (items, 5) array, and a boolean mask of the used slots flattens it into the stream:
    cheaper than computing every word's offset. Trigger edges are merged by time, before
    events with the same time. The decoder returns events in exactly the input order.

    Args:
        events: structured array with fields x, y, p, t (e.g. EVENT_DTYPE), sorted by t;
            0 <= x, y < 2048, p in {0, 1}, t >= 0 (unwrapped microseconds).
        triggers: optional structured array with fields t, channel, value (TRIGGER_DTYPE),
            sorted by t; channel < 16, value in {0, 1}.
        state: carried between calls to encode one stream in chunks; updated in place. Each
            chunk then decodes correctly in a decoder that saw the previous chunks. Without
            it, the stream starts from a fresh decoder's state (time 0).

    Returns:
        The encoded words as little-endian bytes (empty when there is nothing to encode).

    Raises:
        EventDecodeError: missing fields, unsorted times, a time before the state's time, or
            values that EVT3 cannot represent.
    """
    if not isinstance(events, np.ndarray):
        raise EventDecodeError(f"events must be a numpy structured array, got {events!r}")
    if triggers is not None and not isinstance(triggers, np.ndarray):
        raise EventDecodeError(f"triggers must be a numpy structured array, got {triggers!r}")
    if state is not None and not isinstance(state, Evt3EncoderState):
        raise EventDecodeError(f"state must be an Evt3EncoderState, got {state!r}")
    st = state if state is not None else Evt3EncoderState()

    events = events.reshape(-1)
    ex = _field(events, "x", "events", np.uint16, 0, MAX_COORD)
    ey = _field(events, "y", "events", np.uint16, 0, MAX_COORD)
    ep = _field(events, "p", "events", np.uint16, 0, 2)
    et = _field(events, "t", "events", np.int64)
    if triggers is None:
        triggers = empty_triggers()
    triggers = triggers.reshape(-1)
    tt = _field(triggers, "t", "triggers", np.int64)
    tc = _field(triggers, "channel", "triggers", np.uint16, 0, 16)
    tv = _field(triggers, "value", "triggers", np.uint16, 0, 2)

    n_ev, n_tr = int(et.size), int(tt.size)
    if n_ev + n_tr == 0:
        return b""
    _check_sorted(et, "event")
    _check_sorted(tt, "trigger")
    first_t = min(int(t[0]) for t in (et, tt) if t.size)
    if first_t < 0:
        raise EventDecodeError(f"times must not be negative, got {first_t!r}")
    if first_t < st.time_us:
        raise EventDecodeError(
            f"times must not go back before the encoder state's time {st.time_us!r}, "
            f"got {first_t!r}"
        )

    if n_ev:
        words, used = _event_rows(ex, ey, ep, et, st.y)
    else:
        words = np.zeros((0, 5), dtype=np.uint16)
        used = np.zeros((0, 5), dtype=bool)
    if n_tr:
        # Trigger rows go before the first event that is not earlier than them.
        at = np.searchsorted(et, tt, side="left")
        tr_words = np.zeros((n_tr, 5), dtype=np.uint16)
        tr_used = np.zeros((n_tr, 5), dtype=bool)
        tr_words[:, _SLOT_A] = (EXT_TRIGGER << TYPE_SHIFT) | (tc << TRIGGER_CHANNEL_SHIFT) | tv
        tr_used[:, _SLOT_A] = True
        words = np.insert(words, at, tr_words, axis=0)
        used = np.insert(used, at, tr_used, axis=0)
        t_item = np.insert(et, at, tt)
    else:
        t_item = et

    # Clock words.
    prev_t = np.empty_like(t_item)
    prev_t[0] = st.time_us
    prev_t[1:] = t_item[:-1]
    high = t_item >> TIME_LOW_BITS
    prev_high = prev_t >> TIME_LOW_BITS
    used[:, _SLOT_HIGH] = high != prev_high
    used[0, _SLOT_HIGH] = True
    words[:, _SLOT_HIGH] = (TIME_HIGH << TYPE_SHIFT) | (high & PAYLOAD_MASK)
    used[:, _SLOT_LOW] = t_item != prev_t
    used[0, _SLOT_LOW] = True
    words[:, _SLOT_LOW] = (TIME_LOW << TYPE_SHIFT) | (t_item & PAYLOAD_MASK)
    out = words[used]

    # Long gaps: extra TIME_HIGH words every _MAX_HIGH_STEP, just before the item's TIME_HIGH.
    far = np.flatnonzero(high - prev_high > _MAX_HIGH_STEP)
    if far.size:
        used_flat = np.flatnonzero(used.reshape(-1))
        at = np.searchsorted(used_flat, far * 5)  # output index of each far item's first word
        n_fill = (high[far] - prev_high[far] - 1) // _MAX_HIGH_STEP
        k = np.arange(int(n_fill.sum())) - np.repeat(np.cumsum(n_fill) - n_fill, n_fill)
        fill_high = np.repeat(prev_high[far], n_fill) + _MAX_HIGH_STEP * (k + 1)
        fill = ((TIME_HIGH << TYPE_SHIFT) | (fill_high & PAYLOAD_MASK)).astype(np.uint16)
        out = np.insert(out, np.repeat(at, n_fill), fill)

    if n_ev:
        st.y = int(ey[-1])
    st.time_us = int(t_item[-1])
    return out.astype("<u2", copy=False).tobytes()


# ================================================================================= .raw files

#: Sensor generations recognised in a header's plugin or sensor name, for files that do not
#: state their geometry (older Metavision recordings only name the plugin).
_SENSOR_GEOMETRY = (
    (re.compile(r"genx320", re.IGNORECASE), (320, 320)),
    (re.compile(r"imx636|imx646|gen4", re.IGNORECASE), (1280, 720)),
    (re.compile(r"gen3", re.IGNORECASE), (640, 480)),
)
_GENERATION_GEOMETRY = {
    "3.0": (640, 480),
    "3.1": (640, 480),
    "4.0": (1280, 720),
    "4.1": (1280, 720),
    "4.2": (1280, 720),
}
_EVT_VERSIONS = {"3.0": "EVT3", "2.0": "EVT2", "2.1": "EVT21"}
_MAX_HEADER_LINE = 64 * 1024


def _header_int(path: Path, key: str, text: str) -> int:
    """Parse a positive integer header value or raise naming the file."""
    try:
        value = int(text.strip())
    except ValueError:
        value = -1
    if value <= 0:
        raise EventDecodeError(f"damaged header in {str(path)!r}: bad {key} value {text!r}")
    return value


def read_raw_file(path: str | os.PathLike[str]) -> tuple[dict[str, object], memoryview]:
    """Read a Prophesee ``.raw`` recording: text header, then the binary event stream.

    Header lines start with ``"% "`` and run until the first line that does not (or up to and
    including a ``"% end"`` line). Each becomes ``key -> value`` (first word, rest of line).
    On top of the raw strings the returned dict holds, where the header allows:

    * ``format``: ``"EVT3"``, ``"EVT2"`` or ``"EVT21"``, from ``% format NAME;k=v;...`` (whose
      ``width``/``height`` options are read too) or from ``% evt 3.0``;
    * ``width`` and ``height`` (ints): from the format options, from ``% geometry WxH``, or,
      for older files that state neither, from the sensor generation named by
      ``plugin_name``/``sensor_name``/``sensor_generation`` (then ``geometry_source`` says
      which key it came from).

    Args:
        path: the recording.

    Returns:
        ``(header, payload)``; ``payload`` is a zero-copy view of the bytes after the header,
        ready for :meth:`Evt3Decoder.decode`.

    Raises:
        OSError: the file cannot be read.
        EventDecodeError: the header is damaged (unterminated or undecodable line, malformed
            geometry) or names no known format.
    """
    p = Path(path)
    data = p.read_bytes()
    header: dict[str, object] = {}
    pos = 0
    size = len(data)
    while pos < size and data.startswith(b"%", pos):
        if data[pos + 1 : pos + 2] not in (b" ", b"\n", b"\r"):
            break  # "%" followed by anything else is payload, not a header line
        nl = data.find(b"\n", pos, pos + _MAX_HEADER_LINE)
        if nl < 0:
            raise EventDecodeError(
                f"damaged header in {str(p)!r}: line at byte {pos} has no line end"
            )
        raw = data[pos:nl].rstrip(b"\r")
        pos = nl + 1
        try:
            text = raw[2:].decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise EventDecodeError(
                f"damaged header in {str(p)!r}: line {raw[:40]!r} is not text"
            ) from exc
        if not text:
            continue
        if text == "end":
            break
        key, _, value = text.partition(" ")
        header[key] = value.strip()

    fmt_spec = header.get("format")
    if isinstance(fmt_spec, str) and fmt_spec:
        header["format_spec"] = fmt_spec
        name, *options = fmt_spec.split(";")
        header["format"] = name.strip().upper()
        for option in options:
            opt_key, sep, opt_value = option.partition("=")
            opt_key = opt_key.strip()
            if not sep:
                continue
            if opt_key in ("width", "height"):
                header[opt_key] = _header_int(p, opt_key, opt_value)
            else:
                header.setdefault(opt_key, opt_value.strip())
    elif "evt" in header:
        version = str(header["evt"]).strip()
        if version not in _EVT_VERSIONS:
            raise EventDecodeError(f"unknown event format in {str(p)!r}: evt {version!r}")
        header["format"] = _EVT_VERSIONS[version]
    else:
        raise EventDecodeError(
            f"damaged header in {str(p)!r}: no 'format' or 'evt' line, cannot tell the encoding"
        )

    if "width" not in header and "geometry" in header:
        geometry = str(header["geometry"])
        match = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", geometry)
        if match is None:
            raise EventDecodeError(f"damaged header in {str(p)!r}: bad geometry {geometry!r}")
        header["width"] = _header_int(p, "width", match.group(1))
        header["height"] = _header_int(p, "height", match.group(2))
    if "width" not in header or "height" not in header:
        for key in ("sensor_name", "sensor_generation", "plugin_name"):
            value = header.get(key)
            if not isinstance(value, str):
                continue
            if key == "sensor_generation":
                found = _GENERATION_GEOMETRY.get(value.strip())
            else:
                found = next((wh for rx, wh in _SENSOR_GEOMETRY if rx.search(value)), None)
            if found is not None:
                header["width"], header["height"] = found
                header["geometry_source"] = key
                break
    return header, memoryview(data)[pos:]
