"""Prophesee EVT 3.0 codec: a stateful vectorised decoder, a matching encoder, a .raw reader.

EVT 3.0 is a stream of 16-bit little-endian words whose top 4 bits give the word type. Most
words do not carry an event but update a piece of decoder state (row ``y``, vector base ``x``
and polarity, low or high 12 bits of the 24-bit microsecond clock); event words are then
interpreted against that state:

========  ==============  ===========================================================
type      name            payload (bits 11..0)
========  ==============  ===========================================================
``0x0``   EVT_ADDR_Y      y in bits 10..0 (bit 11: master/slave system type, ignored)
``0x2``   EVT_ADDR_X      x in bits 10..0, polarity in bit 11: one event at (x, y, t)
``0x3``   VECT_BASE_X     base x in bits 10..0, polarity in bit 11 for later vectors
``0x4``   VECT_12         validity mask: event at base + i for each set bit i; base += 12
``0x5``   VECT_8          same with an 8-bit mask (bits 7..0); base += 8
``0x6``   EVT_TIME_LOW    time bits 11..0
``0x7``   CONTINUED_4     vendor payload, skipped
``0x8``   EVT_TIME_HIGH   time bits 23..12
``0xA``   EXT_TRIGGER     edge in bit 0 (1 = rising), channel id in bits 11..8
``0xE``   OTHERS          vendor sub-type, skipped
``0xF``   CONTINUED_12    vendor payload, skipped
========  ==============  ===========================================================

Every other type is reserved; the decoder skips and counts it instead of failing, because a
live camera link or a recorder's padding must never take the pipeline down.

Why vectorised: a Python loop over words runs at roughly one million words per second, far
below a busy sensor's rate. Every piece of state is a "last value set before this word" lookup,
which is a prefix scan: for each event word we find, with a binary search over the sorted
indices of the words of one kind, how many of them precede it and read the value of the last
one (or the state carried over from the previous call when there is none). Vector masks are
expanded with :func:`numpy.unpackbits`. No Python code runs per word or per event.

The 24-bit clock wraps every 2**24 us (about 16.8 s). The decoder keeps a wrap epoch and adds
2**24 to it whenever a TIME_HIGH value drops by more than half of its 12-bit range; smaller
drops are sensor jitter (kept as they are, and counted). Output times are therefore int64
microseconds that only ever grow on a healthy stream. Before the first TIME_HIGH has been seen
the high part is taken as 0 (and the low part as 0 before the first TIME_LOW): reference
decoders differ here (some drop such events), and keeping them loses nothing a caller could not
filter out.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import NamedTuple

import numpy as np

from evseg_ros.events.errors import EventDecodeError
from evseg_ros.events.types import (
    EVENT_DTYPE,
    EVT3_TIME_PERIOD_US,
    TRIGGER_DTYPE,
    empty_events,
    empty_triggers,
)

__all__ = [
    "DecodedEvents",
    "DecoderCounters",
    "Evt3Decoder",
    "Evt3EncoderState",
    "as_byte_array",
    "encode_evt3",
    "read_raw_file",
]

# Word types (top 4 bits of each 16-bit word).
ADDR_Y = 0x0
ADDR_X = 0x2
VECT_BASE_X = 0x3
VECT_12 = 0x4
VECT_8 = 0x5
TIME_LOW = 0x6
CONTINUED_4 = 0x7
TIME_HIGH = 0x8
EXT_TRIGGER = 0xA
OTHERS = 0xE
CONTINUED_12 = 0xF
#: Reserved types: skipped and counted as unknown.
UNKNOWN_TYPES = (0x1, 0x9, 0xB, 0xC, 0xD)

_HIGH_RANGE = 1 << 12  # TIME_HIGH carries 12 bits
#: A TIME_HIGH that drops by more than this many steps is a wrap of the 24-bit clock; the
#: encoder therefore never lets two consecutive TIME_HIGH words be this far apart.
_WRAP_DROP = _HIGH_RANGE // 2
#: Largest forward TIME_HIGH step the encoder emits (in units of 4096 us): one below half the
#: range, so that a wrap always looks like a drop of more than half the range.
_MAX_HIGH_STEP = _WRAP_DROP - 1
#: EVT 3.0 addresses are 11 bits wide.
_MAX_COORD = 1 << 11


class DecodedEvents(NamedTuple):
    """What one decode call produced, each array in stream order.

    Attributes:
        events: CD events with :data:`~evseg_ros.events.types.EVENT_DTYPE`.
        triggers: external-trigger edges with :data:`~evseg_ros.events.types.TRIGGER_DTYPE`.
    """

    events: np.ndarray
    triggers: np.ndarray


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
        time_backwards: time stamps (the time in force after each TIME_LOW) lower than the
            previous stamp: sensor jitter, or a TIME_HIGH that dropped too little to count as
            a wrap. Events keep the lower time; nothing is reordered.
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
        return (
            self.cd_words
            + self.address_words
            + self.time_words
            + self.trigger_words
            + self.other_words
            + self.continued_words
            + self.continued4_words
            + self.unknown_words
        )

    def as_dict(self) -> dict[str, int]:
        """Plain dict, e.g. for diagnostics messages or logging."""
        return {f.name: int(getattr(self, f.name)) for f in fields(self)}


def empty_decoded() -> DecodedEvents:
    """Zero-length result, shared shape for every decoder."""
    return DecodedEvents(empty_events(), empty_triggers())


def as_byte_array(data: object) -> np.ndarray:
    """View a caller's buffer as a 1-D ``uint8`` array without copying when possible.

    Accepts ``bytes``, ``bytearray``, ``memoryview`` and numpy arrays of ``uint8`` or (for
    already word-aligned EVT3 data) ``uint16`` words, which are reinterpreted as little-endian
    bytes. Anything else is a programming error, not a stream error.

    Raises:
        EventDecodeError: ``data`` is not a supported buffer type.
    """
    if isinstance(data, np.ndarray):
        if data.dtype == np.uint8:
            return np.ascontiguousarray(data).reshape(-1)
        if data.dtype.kind == "u" and data.dtype.itemsize == 2:
            return np.ascontiguousarray(data, dtype="<u2").reshape(-1).view(np.uint8)
        raise EventDecodeError(
            f"event buffer must be a uint8 (or uint16) array, got dtype {str(data.dtype)!r}"
        )
    if isinstance(data, (bytes, bytearray)):
        return np.frombuffer(data, dtype=np.uint8)
    if isinstance(data, memoryview):
        try:
            return np.frombuffer(data.cast("B"), dtype=np.uint8)
        except (TypeError, ValueError):
            return np.frombuffer(data.tobytes(), dtype=np.uint8)
    raise EventDecodeError(
        f"event buffer must be bytes, bytearray, memoryview or a numpy array, "
        f"got {type(data).__name__!r}"
    )


def _check_geometry(width: object, height: object) -> tuple[int, int]:
    """Validate sensor geometry arguments shared by the decoders."""
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise EventDecodeError(f"{name} must be an int, got {value!r}")
        if not 0 < int(value) <= 0xFFFF:
            raise EventDecodeError(f"{name} must be in 1..65535, got {value!r}")
    return int(width), int(height)  # type: ignore[arg-type]


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
    """Clock reconstruction over one block of words (computed without touching the state)."""

    hi_count: np.ndarray | None  # TIME_HIGH words at or before each word
    hi_ext: np.ndarray  # [carried base, base after each TIME_HIGH]: epoch + (high << 12)
    lo_count: np.ndarray | None  # TIME_LOW words at or before each word
    lo_ext: np.ndarray  # [carried low, low of each TIME_LOW]
    n_high: int
    n_low: int
    last_high: int  # 12-bit value of the last TIME_HIGH (or the carried one)
    last_epoch: int
    wraps: int
    backwards: int  # complete time stamps lower than the one before
    last_stamp: int  # time at the last TIME_LOW (or the carried one)

    def at(self, idx: np.ndarray) -> np.ndarray:
        """Unwrapped time (us) in force at each of the given word indices."""
        return _in_force(self.hi_count, self.hi_ext, idx) + _in_force(
            self.lo_count, self.lo_ext, idx
        )


class Evt3Decoder:
    """Stateful EVT 3.0 decoder for a stream split into arbitrary byte packets.

    All state (row, vector base and polarity, both halves of the clock, wrap epoch, and a
    dangling odd byte) carries from one :meth:`decode` call to the next, so a ROS
    ``EventPacket`` stream or a file read in chunks decodes exactly as if it were one buffer.

    Args:
        width: sensor width; events with ``x >= width`` are dropped and counted.
        height: sensor height; events with ``y >= height`` are dropped and counted.

    Raises:
        EventDecodeError: the geometry is not a positive int.
    """

    def __init__(self, *, width: int = 1280, height: int = 720) -> None:
        self.width, self.height = _check_geometry(width, height)
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
        self._tail = b""
        self._pending = np.empty(0, dtype=np.uint16)

    @property
    def current_time_us(self) -> int:
        """Unwrapped clock value after the last consumed word."""
        return self._epoch + (self._high << 12) + self._low

    @property
    def buffered_bytes(self) -> int:
        """Bytes held back for the next call (an odd byte, or words left by decode_until)."""
        return len(self._tail) + 2 * int(self._pending.size)

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
        return self._decode_words(words)

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
        if words.size == 0:
            return empty_decoded(), False, self.current_time_us
        ty = words >> 12
        item_idx = np.flatnonzero(
            (ty == ADDR_X) | (ty == VECT_12) | (ty == VECT_8) | (ty == EXT_TRIGGER)
        )
        if item_idx.size:
            times = self._time_track(ty, words & 0x0FFF).at(item_idx)
            late = np.flatnonzero(times >= int(t_limit_us))
            if late.size:
                stop = int(item_idx[late[0]])
                self._pending = words[stop:].copy()
                decoded = self._decode_words(words[:stop])
                return decoded, True, int(times[late[0]])
        return self._decode_words(words), False, self.current_time_us

    # ------------------------------------------------------------------ internals

    def _take_words(self, data: object) -> np.ndarray:
        """Join buffered bytes with ``data`` and return all complete words (uint16)."""
        buf = as_byte_array(data)
        if self._tail:
            buf = np.concatenate((np.frombuffer(self._tail, dtype=np.uint8), buf))
        even = buf.size & ~1
        self._tail = buf[even:].tobytes()
        words = buf[:even].view("<u2")
        if self._pending.size:
            words = np.concatenate((self._pending, words))
            self._pending = np.empty(0, dtype=np.uint16)
        return words

    def _time_track(self, ty: np.ndarray, pl: np.ndarray) -> _TimeTrack:
        """Reconstruct the unwrapped clock over a block of words (no state change)."""
        is_hi = ty == TIME_HIGH
        is_lo = ty == TIME_LOW
        high = pl[is_hi].astype(np.int64)
        low = pl[is_lo]
        wraps = 0
        last_high, last_epoch = self._high, self._epoch
        if high.size:
            prev = np.empty_like(high)
            prev[0] = self._high
            prev[1:] = high[:-1]
            wrap = prev - high > _WRAP_DROP
            epoch = self._epoch + np.cumsum(wrap, dtype=np.int64) * EVT3_TIME_PERIOD_US
            wraps = int(np.count_nonzero(wrap))
            last_high, last_epoch = int(high[-1]), int(epoch[-1])
            high = epoch + (high << 12)
        track = _TimeTrack(
            hi_count=_prefix_count(is_hi) if high.size else None,
            hi_ext=_ext(self._epoch + (self._high << 12), high),
            lo_count=_prefix_count(is_lo) if low.size else None,
            lo_ext=_ext(self._low, low),
            n_high=int(high.size),
            n_low=int(low.size),
            last_high=last_high,
            last_epoch=last_epoch,
            wraps=wraps,
            backwards=0,
            last_stamp=self._stamp,
        )
        if low.size == 0:
            return track
        # A time stamp is complete at each TIME_LOW; one lower than the previous stamp means
        # sensor jitter or a TIME_HIGH that dropped too little to count as a wrap.
        stamps = track.at(np.flatnonzero(is_lo))
        backwards = int(stamps[0] < self._stamp) + int(np.count_nonzero(stamps[1:] < stamps[:-1]))
        return track._replace(backwards=backwards, last_stamp=int(stamps[-1]))

    def _decode_words(self, w: np.ndarray) -> DecodedEvents:
        """Decode a block of complete words and advance the state past it."""
        n = int(w.size)
        if n == 0:
            return empty_decoded()
        ty = (w >> 12).astype(np.uint8)
        pl = w & 0x0FFF
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
        y_val = pl[is_y] & 0x7FF
        y_ext = _ext(self._y, y_val)
        y_word = _in_force(_prefix_count(is_y) if y_val.size else None, y_ext, cd_idx)

        cd_pl = pl[cd_idx]
        x_word = (cd_pl & 0x7FF).astype(np.int64)
        p_word = (cd_pl >> 11).astype(np.uint8)
        if n_vect or n_base:
            # Vector state: only the three vector word types take part, so scan that subset.
            v_idx = np.flatnonzero(is_base | is_vec)
            v_ty = ty[v_idx]
            v_pl = pl[v_idx]
            v_is_base = v_ty == VECT_BASE_X
            step = np.where(v_ty == VECT_12, 12, np.where(v_ty == VECT_8, 8, 0))
            advanced = np.cumsum(step, dtype=np.int64) - step  # base advance before each word
            b_loc = np.flatnonzero(v_is_base)
            n_bases = np.cumsum(v_is_base, dtype=np.int64)  # bases at or before each word
            base_ext = _ext(self._base_x, v_pl[b_loc] & 0x7FF)
            pol_ext = _ext(self._vect_pol, v_pl[b_loc] >> 11, np.uint8)
            adv_ext = _ext(0, advanced[b_loc])
            k = int(n_bases[-1])
            self._base_x = int(base_ext[k] + advanced[-1] + step[-1] - adv_ext[k])
            self._vect_pol = int(pol_ext[k])
            if n_vect:
                in_vec = ~v_is_base
                nb = n_bases[in_vec]
                vec_cd = ty[cd_idx] != ADDR_X
                x_word[vec_cd] = base_ext[nb] + advanced[in_vec] - adv_ext[nb]
                p_word[vec_cd] = pol_ext[nb]

        t_word = clock.at(cd_idx)

        if n_vect:
            # One event per set mask bit, in word order then bit order (EVT_ADDR_X: mask 1).
            cd_ty = ty[cd_idx]
            mask = np.where(cd_ty == ADDR_X, 1, np.where(cd_ty == VECT_8, cd_pl & 0xFF, cd_pl))
            bits = np.unpackbits(
                mask.astype("<u2").view(np.uint8).reshape(-1, 2), axis=1, bitorder="little"
            )
            flat = np.flatnonzero(bits)
            row = flat >> 4
            x_ev = x_word[row] + (flat & 15)
            y_ev = y_word[row]
            p_ev = p_word[row]
            t_ev = t_word[row]
        else:
            x_ev, y_ev, p_ev, t_ev = x_word, y_word, p_word, t_word

        keep = (x_ev < self.width) & (y_ev < self.height)
        n_total = int(x_ev.size)
        n_keep = int(np.count_nonzero(keep))
        if n_keep != n_total:
            x_ev, y_ev, p_ev, t_ev = x_ev[keep], y_ev[keep], p_ev[keep], t_ev[keep]
        events = np.empty(n_keep, dtype=EVENT_DTYPE)
        events["x"] = x_ev
        events["y"] = y_ev
        events["p"] = p_ev
        events["t"] = t_ev

        triggers = np.empty(tr_idx.size, dtype=TRIGGER_DTYPE)
        if tr_idx.size:
            tr_pl = pl[tr_idx]
            triggers["t"] = clock.at(tr_idx)
            triggers["channel"] = (tr_pl >> 8) & 0xF
            triggers["value"] = tr_pl & 1

        # Carry the remaining state past this block.
        self._y = int(y_ext[-1])
        self._high, self._epoch = clock.last_high, clock.last_epoch
        self._low = int(clock.lo_ext[-1])
        self._stamp = clock.last_stamp

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
        return DecodedEvents(events, triggers)


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
        return (self.time_us >> 12) & 0xFFF

    @property
    def time_low(self) -> int:
        """12-bit TIME_LOW value the decoder holds."""
        return self.time_us & 0xFFF


def _field(arr: np.ndarray, name: str, what: str) -> np.ndarray:
    """Read one integer field of a structured array as int64, with a clear error if absent."""
    if arr.dtype.names is None or name not in arr.dtype.names:
        raise EventDecodeError(f"{what} need a field {name!r}, got dtype {str(arr.dtype)!r}")
    return arr[name].astype(np.int64, copy=False)


def _check_range(values: np.ndarray, lo: int, hi: int, name: str) -> None:
    """Raise if any value falls outside ``[lo, hi)``, naming the first offender."""
    bad = np.flatnonzero((values < lo) | (values >= hi))
    if bad.size:
        raise EventDecodeError(
            f"{name} must be in [{lo}, {hi}) for EVT3, got {int(values[bad[0]])!r} "
            f"at index {int(bad[0])}"
        )


def encode_evt3(
    events: np.ndarray,
    triggers: np.ndarray | None = None,
    *,
    state: Evt3EncoderState | None = None,
) -> bytes:
    """Encode CD events and trigger edges as EVT 3.0 words that :class:`Evt3Decoder` inverts.

    Layout choices, all made with array operations:

    * per call, one TIME_HIGH and one TIME_LOW before the first item, then TIME_HIGH whenever
      bits 23.. of the time change and TIME_LOW whenever the time changes;
    * when two consecutive items (or the previous call's last time and this call's first) are
      more than ``2047 * 4096`` us apart, extra TIME_HIGH words at intermediate times, so the
      decoder's "drop of more than half the range" wrap test is never ambiguous. Times past
      2**24 us therefore wrap and unwrap exactly;
    * EVT_ADDR_Y whenever the row differs from the last one emitted;
    * for runs of events with the same time, row and polarity and strictly increasing x, the
      row is cut into 12-pixel windows aligned at multiples of 12; a chain of adjacent windows
      becomes VECT_BASE_X plus one VECT_12 per window when that is shorter than one
      EVT_ADDR_X per event; everything else is a plain EVT_ADDR_X.

    Trigger edges are merged by time, before events with the same time. The decoder returns
    events in exactly the input order.

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
    ex = _field(events, "x", "events")
    ey = _field(events, "y", "events")
    ep = _field(events, "p", "events")
    et = _field(events, "t", "events")
    if triggers is None:
        triggers = empty_triggers()
    triggers = triggers.reshape(-1)
    tt = _field(triggers, "t", "triggers")
    tc = _field(triggers, "channel", "triggers")
    tv = _field(triggers, "value", "triggers")

    n_ev, n_tr = int(et.size), int(tt.size)
    if n_ev + n_tr == 0:
        return b""
    _check_range(ex, 0, _MAX_COORD, "event x")
    _check_range(ey, 0, _MAX_COORD, "event y")
    _check_range(ep, 0, 2, "event polarity")
    _check_range(tc, 0, 16, "trigger channel")
    _check_range(tv, 0, 2, "trigger value")
    for name, t in (("event", et), ("trigger", tt)):
        if t.size > 1:
            down = np.flatnonzero(t[1:] < t[:-1])
            if down.size:
                raise EventDecodeError(
                    f"{name} times must be sorted, got {int(t[down[0] + 1])!r} after "
                    f"{int(t[down[0]])!r} at index {int(down[0]) + 1}"
                )
    first_t = min(int(et[0]) if n_ev else np.iinfo(np.int64).max,
                  int(tt[0]) if n_tr else np.iinfo(np.int64).max)
    if first_t < max(int(st.time_us), 0):
        raise EventDecodeError(
            f"times must not go back before the encoder state's time {st.time_us!r}, "
            f"got {first_t!r}"
        )

    # ---- merge triggers and events into one item sequence (trigger first on equal times)
    n = n_ev + n_tr
    if n_tr:
        ev_pos = np.arange(n_ev, dtype=np.int64) + np.searchsorted(tt, et, side="right")
        tr_pos = np.arange(n_tr, dtype=np.int64) + np.searchsorted(et, tt, side="left")
        t_item = np.empty(n, dtype=np.int64)
        t_item[ev_pos] = et
        t_item[tr_pos] = tt
    else:
        ev_pos = np.arange(n_ev, dtype=np.int64)
        tr_pos = ev_pos[:0]
        t_item = et

    # ---- clock words per item
    h_item = t_item >> 12
    prev_t = np.empty(n, dtype=np.int64)
    prev_t[0] = st.time_us
    prev_t[1:] = t_item[:-1]
    gap = h_item - (prev_t >> 12)
    n_high = np.where(gap > 0, (gap + (_MAX_HIGH_STEP - 1)) // _MAX_HIGH_STEP, 0)
    n_high[0] = max(int(n_high[0]), 1)
    n_low = (t_item != prev_t).astype(np.int64)
    n_low[0] = 1

    # ---- row words per event
    n_y = np.zeros(n, dtype=np.int64)
    pay = np.ones(n, dtype=np.int64)  # payload words; triggers and EVT_ADDR_X use one
    if n_ev:
        prev_y = np.empty(n_ev, dtype=np.int64)
        prev_y[0] = -1 if st.y is None else st.y
        prev_y[1:] = ey[:-1]
        n_y[ev_pos] = ey != prev_y

        # ---- vector grouping
        win = ex // 12
        new_run = np.ones(n_ev, dtype=bool)
        new_run[1:] = (
            (et[1:] != et[:-1]) | (ey[1:] != ey[:-1]) | (ep[1:] != ep[:-1]) | (ex[1:] <= ex[:-1])
        )
        dwin = np.zeros(n_ev, dtype=np.int64)
        dwin[1:] = win[1:] - win[:-1]
        new_win = new_run | (dwin != 0)
        new_chain = new_run | (dwin > 1)
        chain_start = np.flatnonzero(new_chain)
        chain_events = np.diff(np.append(chain_start, n_ev))
        chain_windows = np.add.reduceat(new_win.astype(np.int64), chain_start)
        vec_chain = 1 + chain_windows < chain_events
        if vec_chain.any():
            chain_id = np.cumsum(new_chain) - 1
            vec_ev = vec_chain[chain_id]
            ev_pay = np.where(vec_ev, new_win.astype(np.int64) + new_chain, 1)
            pay[ev_pos] = ev_pay
        else:
            vec_ev = None

    count = n_high + n_low + n_y + pay
    end = np.cumsum(count)
    start = end - count
    out = np.empty(int(end[-1]), dtype=np.uint16)

    # TIME_HIGH words: fillers every _MAX_HIGH_STEP from the previous high, then the target.
    has_high = np.flatnonzero(n_high)
    out[start[has_high] + n_high[has_high] - 1] = TIME_HIGH << 12 | (h_item[has_high] & 0xFFF)
    fill = np.flatnonzero(n_high > 1)
    if fill.size:
        reps = n_high[fill] - 1
        item = np.repeat(fill, reps)
        k = np.arange(int(reps.sum()), dtype=np.int64) - np.repeat(np.cumsum(reps) - reps, reps)
        high = (prev_t[item] >> 12) + _MAX_HIGH_STEP * (k + 1)
        out[start[item] + k] = TIME_HIGH << 12 | (high & 0xFFF)
    has_low = np.flatnonzero(n_low)
    out[start[has_low] + n_high[has_low]] = TIME_LOW << 12 | (t_item[has_low] & 0xFFF)
    pos = start + n_high + n_low  # next free slot of each item

    if n_tr:
        p = pos[tr_pos]
        out[p] = EXT_TRIGGER << 12 | (tc << 8) | tv
    if n_ev:
        p = pos[ev_pos]
        has_y = np.flatnonzero(n_y[ev_pos])
        out[p[has_y]] = ADDR_Y << 12 | ey[has_y]
        p = p + n_y[ev_pos]
        if vec_ev is None:
            out[p] = ADDR_X << 12 | (ep << 11) | ex
        else:
            single = np.flatnonzero(~vec_ev)
            out[p[single]] = ADDR_X << 12 | (ep[single] << 11) | ex[single]
            chain_first = np.flatnonzero(vec_ev & new_chain)
            out[p[chain_first]] = VECT_BASE_X << 12 | (ep[chain_first] << 11) | (
                win[chain_first] * 12
            )
            win_first = np.flatnonzero(vec_ev & new_win)
            in_win = np.flatnonzero(vec_ev)
            bit = np.left_shift(1, ex[in_win] - win[in_win] * 12)
            win_id = np.cumsum(new_win[in_win]) - 1
            mask = np.bincount(win_id, weights=bit).astype(np.int64)
            out[p[win_first] + new_chain[win_first]] = VECT_12 << 12 | mask
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
        nl = data.find(b"\n", pos, pos + _MAX_HEADER_LINE)
        if nl < 0:
            raise EventDecodeError(
                f"damaged header in {str(p)!r}: line at byte {pos} has no line end"
            )
        raw = data[pos:nl].rstrip(b"\r")
        if raw != b"%" and not raw.startswith(b"% "):
            break  # not a header line: the binary payload starts here
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
            probe = value if key != "sensor_generation" else f"gen{value.replace('.', '')}"
            found = next((wh for rx, wh in _SENSOR_GEOMETRY if rx.search(probe)), None)
            if found is not None:
                header["width"], header["height"] = found
                header["geometry_source"] = key
                break
    return header, memoryview(data)[pos:]
