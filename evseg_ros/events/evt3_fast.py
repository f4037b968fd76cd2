"""Compiled EVT 3.0 decoding, and decoding fused with event-frame accumulation: the CPU path.

The vectorised :class:`~evseg_ros.events.evt3.Evt3Decoder` needs a dozen full-length array
passes per packet (prefix scans, gathers, mask unpacking), which caps it at a few tens of
millions of events per second on one core. EVT 3.0 is, however, a plain state machine over
16-bit words: one compiled pass that keeps the row, vector base, polarity and clock in
registers does the same work with a single read of the input and a single write per event.

Two entry points share that one compiled pass, so they cannot drift apart:

* :class:`FastEvt3Decoder` is a drop-in replacement for ``Evt3Decoder``: same constructor,
  ``decode``/``decode_until``/``reset``, ``counters``, ``current_time_us`` and
  ``buffered_bytes``, and bit-identical events, triggers, counters and carried state.
* :func:`decode_and_accumulate` never materialises the events: each one goes straight through
  the pixel lookup table into a ``(3, H, W)`` float32 event frame (ON count, OFF count, latest
  normalised time) for a window ``[t_start, t_end)``, exactly as decoding, cutting the window
  and calling :meth:`EventFrameBuilder.build <evseg_ros.events.event_frame.EventFrameBuilder.
  build>` would. This skips writing and re-reading 13 bytes per event and the builder's
  temporaries, which is what makes a full-rate sensor affordable on one core. The accumulator
  stage builds its CPU event frames this way: it keeps each packet with the decoder state in
  front of it (:meth:`FastEvt3Decoder.save_state`) and replays the packets of a frame's window
  through this kernel (:class:`~evseg_ros.events.packet_buffer.PacketEventBuffer`).

numba is an optional dependency. Without it this module still imports, :func:`available`
returns False and :data:`UNAVAILABLE_REASON` says why; callers then keep using the numpy
decoder. Constructing a :class:`FastEvt3Decoder` without numba raises ``RuntimeError``.
The kernels are compiled on first use: about ten seconds the first time on a machine, then
a fraction of a second from numba's on-disk cache. :func:`warm_up` does it ahead of time so
that the first packet of a live stream is not late.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import numpy as np

from evseg_ros.events.errors import EventDecodeError
from evseg_ros.events.evt3 import DecodedEvents, DecoderCounters, empty_decoded
from evseg_ros.events.evt3_format import (
    ADDR_X,
    ADDR_Y,
    CONTINUED_4,
    CONTINUED_12,
    COORD_MASK,
    EXT_TRIGGER,
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
from evseg_ros.events.types import EVENT_DTYPE, TRIGGER_DTYPE

if TYPE_CHECKING:
    from evseg_ros.events.event_frame import EventFrameBuilder

try:
    import numba
except ImportError as _err:  # pragma: no cover - exercised only where numba is absent
    numba = None
    #: Why the compiled path is off, or None when it is on.
    UNAVAILABLE_REASON: str | None = (
        f"numba is not installed ({_err}); EVT3 decoding falls back to the numpy "
        "Evt3Decoder. Install it with: .venv/bin/pip install numba"
    )
else:
    UNAVAILABLE_REASON = None

__all__ = [
    "UNAVAILABLE_REASON",
    "FastEvt3Decoder",
    "FastFrameAccumulator",
    "FrameAccumulation",
    "StreamState",
    "available",
    "decode_and_accumulate",
    "warm_up",
]

_F = TypeVar("_F", bound=Callable[..., Any])


def _kernel(func: _F) -> _F:
    """Compile ``func`` with numba when present, else leave it as (unused) Python.

    ``error_model="numpy"`` drops the zero-division checks Python semantics would add to the
    per-word loop (the only division is by a window span that is at least 1).
    """
    if numba is None:  # pragma: no cover
        return func
    return numba.njit(cache=True, nogil=True, error_model="numpy")(func)


def _inline(func: _F) -> _F:
    """Compile ``func`` to be inlined into its numba callers (with constant flags folded)."""
    if numba is None:  # pragma: no cover
        return func
    return numba.njit(inline="always", nogil=True, error_model="numpy")(func)


if numba is not None:
    from llvmlite import binding as _llvm
    from llvmlite import ir as _ir
    from numba.core import cgutils as _cgutils
    from numba.extending import intrinsic as _intrinsic

    # LLVM 15 made pointers opaque, which renamed the overloaded intrinsic.
    _PREFETCH = "llvm.prefetch.p0" if _llvm.llvm_version_info >= (15,) else "llvm.prefetch.p0i8"

    @_intrinsic
    def _prefetch(typingctx: Any, array: Any, index: Any) -> Any:
        """Hint the cache to fetch ``array[index]`` for writing (LLVM ``prefetch``)."""
        sig = numba.types.void(array, index)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            ary = context.make_array(signature.args[0])(context, builder, args[0])
            ptr = _cgutils.get_item_pointer(
                context, builder, signature.args[0], ary, [args[1]], wraparound=False
            )
            i8p = _ir.IntType(8).as_pointer()
            i32 = _ir.IntType(32)
            fnty = _ir.FunctionType(_ir.VoidType(), [i8p, i32, i32, i32])
            fn = _cgutils.get_or_insert_function(builder.module, fnty, _PREFETCH)
            # write access, high temporal locality, data cache
            builder.call(fn, [builder.bitcast(ptr, i8p), i32(1), i32(3), i32(1)])
            return context.get_dummy_value()

        return sig, codegen

else:  # pragma: no cover

    def _prefetch(array: np.ndarray, index: int) -> None:
        """Placeholder: the kernels never run without numba."""


def available() -> bool:
    """True when numba is importable, i.e. the compiled decoder can be used."""
    return numba is not None


# Decoder state slots (int64 array shared with the kernel).
_S_Y, _S_BASE, _S_POL, _S_HIGH, _S_LOW, _S_EPOCH, _S_STAMP = range(7)
_N_STATE = 7

# Running totals per decoder (int64 array the kernels add to in place, so a call costs no
# Python-side bookkeeping); DecoderCounters is built from it only when read.
(
    _T_WORDS,
    _T_CD,
    _T_ADDRESS,
    _T_TIME,
    _T_TRIGGER,
    _T_OTHER,
    _T_CONT12,
    _T_CONT4,
    _T_UNKNOWN,
    _T_DELIVERED,  # events written out or accumulated
    _T_OUTSIDE,  # decoded but outside the accumulation window
    _T_UNMAPPED,  # decoded, in the window, but without a frame pixel
    _T_OOB,
    _T_WRAPS,
    _T_BACKWARDS,
) = range(15)
_N_TALLY = 15

# Why a kernel call returned.
_DONE = 0
_EVENTS_FULL = 1
_TRIGGERS_FULL = 2
_LIMIT = 3

#: Set bits of every 12-bit mask.
_POPCOUNT = np.array([v.bit_count() for v in range(1 << 12)], np.int8)
#: Index of the lowest set bit of every 12-bit mask (a table lookup beats a bit-scan loop and
#: needs no compiler intrinsic); entry 0 is never used.
_LOWEST_BIT = np.array([(v & -v).bit_length() - 1 if v else 0 for v in range(1 << 12)], np.int8)
_NO_LIMIT = int(np.iinfo(np.int64).max)
_RING = 32  # words between a frame update's prefetch and the update (a power of two)
_LUT_AHEAD = 16  # words between a table entry's prefetch and its use
_LOW_CLIP = np.float32(1e-6)  # EventFrameBuilder clips normalised times to [1e-6, 1]


@_inline
def _window(now: int, t_start: int, t_end: int, fspan: np.float32) -> tuple[bool, np.float32]:
    """Whether time ``now`` is in the window, and its normalised value for channel 2.

    Computed once per time word, as every event up to the next one shares it; the float32
    arithmetic is the builder's: ``float32(t - t_start) / float32(span)``, clipped.
    """
    tnorm = min(max(np.float32(now - t_start) / fspan, _LOW_CLIP), np.float32(1.0))
    return t_start <= now < t_end, tnorm


@_inline
def _target(
    x: int,
    y: int,
    lut: np.ndarray,
    lut_width: int,
    lut_height: int,
    size: int,
    identity: bool,
) -> int:
    """Flat frame pixel of event pixel (x, y), or -1 when it has none."""
    if x >= lut_width or y >= lut_height:
        return -1
    if identity:
        return y * lut_width + x
    target = np.int64(lut[np.uint64(y * lut_width + x)])
    if target < 0 or target >= size:
        return -1
    return target


@_inline
def _add(frame: np.ndarray, size: int, target: int, p: int, count: int, tnorm: np.float32) -> None:
    """Add ``count`` (0 or 1) events of polarity ``p`` at frame pixel ``target``.

    Unsigned indices: numba then emits no negative-index wraparound code.
    """
    frame[np.uint64((1 - p) * size + target)] += np.float32(count)
    slot = np.uint64(2 * size + target)
    frame[slot] = max(frame[slot], tnorm)


@_inline
def _apply(frame: np.ndarray, count_at: int, time_at: int, tvalue: np.float32) -> None:
    """Apply a deferred update: one event at flat indices ``count_at``/``time_at``.

    ``tvalue`` is 0 for an update that adds nothing (it then adds 0 to the count too; real
    event times are at least 1e-6).
    """
    frame[np.uint64(count_at)] += np.float32(tvalue > 0)
    frame[np.uint64(time_at)] = max(frame[np.uint64(time_at)], tvalue)


@_inline
def _loop(
    words: np.ndarray,
    pos: int,
    t_limit: int,
    state: np.ndarray,
    tally: np.ndarray,
    width: int,
    height: int,
    events: np.ndarray,
    n_ev: int,
    triggers: np.ndarray,
    n_tr: int,
    accumulate: bool,
    identity: bool,
    frame: np.ndarray,
    lut: np.ndarray,
    lut_width: int,
    lut_height: int,
    t_start: int,
    t_end: int,
) -> tuple[int, int, int, int, int, int, int]:
    """Decode ``words[pos:]``, either into ``events``/``triggers`` or into ``frame``.

    One loop body serves both modes so that decoding and accumulation cannot disagree on the
    format. It is inlined into each kernel with ``accumulate`` and ``identity`` constant, so
    every kernel is compiled without the other mode's branches.

    Speed comes from the two most frequent words, EVT_ADDR_Y and EVT_ADDR_X (over 80% of a
    real stream, in an order no branch predictor can learn). While the clock is below the
    limit (and in the window) and the row is on the sensor (and the table), both take one
    branch-free path, so the processor does not mispredict at every row change: an X word
    there is always a kept event, and a Y word is handled by the same instructions with its
    effect masked out. Decoding, every such word writes an output record, and only an X word
    advances the output index. Accumulating, every such word updates a frame pixel, adding
    0 (to a count, and through ``max`` to the time) for a Y word or an X word without a
    frame pixel. Adding 0 leaves a non-negative value bit-identical, so a frame must hold
    non-negative values, as zeroed frames and everything accumulated into them do. Every
    other case (vectors, clock, triggers, an X beyond the sensor or table, a row off them,
    the time limit, a full output, outside the window) takes ordinary branches. Only what
    the fast path cannot derive is counted inside it; the rest is worked out at the end.

    The frame does not fit in the core's caches, and events land on random pixels, so each
    update would wait for memory. Instead, a fast word prefetches the two cache lines it
    will update and files the update in a ring of ``_RING`` slots, then applies the update
    filed ``_RING`` words earlier, whose lines have had time to arrive. Counts add and times
    take the maximum, so applying updates late and in another order changes nothing.

    Stops early, with all state consistent up to the returned word index, when the event or
    trigger array might overflow (the caller grows it and calls again) or at the first
    event-carrying word whose time is ``>= t_limit`` (``decode_until``).

    Returns:
        ``(next word index, events written, triggers written, status, accumulated, outside
        the window, unmapped)``; the last three are also added to ``tally``.
    """
    n = words.size
    ev_cap = events.size
    tr_cap = triggers.size
    size = frame.size // 3
    lut_size = lut_width * lut_height
    y = state[_S_Y]
    base = state[_S_BASE]
    pol = state[_S_POL]
    high = state[_S_HIGH]
    low = state[_S_LOW]
    epoch = state[_S_EPOCH]
    stamp = state[_S_STAMP]
    now = epoch + (high << TIME_LOW_BITS) + low
    fspan = np.float32(max(t_end - t_start, 1))
    in_window, tnorm = _window(now, t_start, t_end, fspan)
    # The fast path needs x < x_lim and y < y_lim (on the sensor, and on the table).
    x_lim = min(width, lut_width) if accumulate else width
    y_lim = min(height, lut_height) if accumulate else height
    time_ok = now < t_limit and (in_window or not accumulate)
    fast = time_ok and y < y_lim
    n_ev0 = n_ev
    n_tr0 = n_tr
    fast_x = 0  # X words taken by the fast path (all events on the sensor and the table)
    y_ahead = y  # row in force _LUT_AHEAD words ahead, as far as the look-ahead has seen
    fast_kept = 0  # ... of which accumulated (table entries can still be -1)
    slow_words = slow_events = 0
    # Slow-path figures (locals: a counter in memory would chain every update to the last).
    n_cd = n_y = n_base = n_time = n_other = n_cont12 = n_cont4 = n_unknown = 0
    oob = unmapped = accumulated = outside = wraps = backwards = 0
    # Deferred frame updates (see above): flat indices of the count and of the time, and
    # the time value, which is 0 exactly for an update that adds nothing.
    ring = _RING if accumulate else 1
    ring_count_at = np.zeros(ring, dtype=np.int64)
    ring_time_at = np.zeros(ring, dtype=np.int64)
    ring_time = np.zeros(ring, dtype=np.float32)
    status = _DONE
    i = pos
    while i < n:
        # Inner loop over X/Y words in the fast state: kept apart so that the register
        # allocator gives its few values registers (the slow paths need many more).
        while i < n:
            word = np.int64(words[np.uint64(i)])  # unsigned: no wraparound code
            kind = word >> TYPE_SHIFT
            value = word & COORD_MASK
            # One branch, mostly taken: an X/Y word (kind 0 or 2), fast state, an X within
            # x_lim. Bitwise operators on purpose: `and`/`or` branch on the word kind.
            if not (
                ((kind & 0xD) == 0)
                & fast
                & ((value < x_lim) | (kind == ADDR_Y))
                & (accumulate or n_ev < ev_cap)
            ):
                break
            is_x = kind >> 1
            y = y if is_x else value
            p = (word >> POLARITY_SHIFT) & 1
            if accumulate:
                if identity:
                    target = min(y * lut_width + value, size - 1)
                    kept = is_x
                else:
                    # The table does not fit the caches either: prefetch the entry of the
                    # word _LUT_AHEAD ahead, with the row of the last Y word seen that far
                    # ahead (a wrong guess, e.g. after a slow-path word, costs nothing).
                    ahead = np.int64(words[np.uint64(min(i + _LUT_AHEAD, n - 1))])
                    ahead_value = ahead & COORD_MASK
                    y_ahead = ahead_value if (ahead >> TYPE_SHIFT) == ADDR_Y else y_ahead
                    _prefetch(lut, np.uint64(min(y_ahead * lut_width + ahead_value, lut_size - 1)))
                    at = min(y * lut_width + value, lut_size - 1)
                    target = np.int64(lut[np.uint64(at)])
                    kept = is_x & (target >= 0) & (target < size)
                    target = min(max(target, 0), size - 1)
                    fast_kept += kept
                slot = np.uint64(i & (ring - 1))
                _apply(frame, ring_count_at[slot], ring_time_at[slot], ring_time[slot])
                count_at = (1 - p) * size + target
                time_at = 2 * size + target
                ring_count_at[slot] = count_at
                ring_time_at[slot] = time_at
                ring_time[slot] = tnorm * np.float32(kept)
                _prefetch(frame, np.uint64(count_at))
                _prefetch(frame, np.uint64(time_at))
                fast_x += is_x
            else:
                ev = events[np.uint64(n_ev)]
                ev.x = value
                ev.y = y
                ev.p = p
                ev.t = now
                n_ev += is_x
            fast = time_ok & (y < y_lim)
            i += 1
        if i >= n:
            break
        word = np.int64(words[np.uint64(i)])
        kind = word >> TYPE_SHIFT
        value = word & COORD_MASK
        if (kind == ADDR_X) | (kind == VECT_12) | (kind == VECT_8):
            if now >= t_limit:
                status = _LIMIT
                break
            if not accumulate and n_ev + 12 > ev_cap:
                status = _EVENTS_FULL
                break
            n_cd += 1
            if kind == ADDR_X:
                x0 = value
                p = (word >> POLARITY_SHIFT) & 1
                mask = 1
            else:
                x0 = base
                p = pol
                if kind == VECT_12:
                    mask = word & PAYLOAD_MASK
                    base += VECT_12_STEP
                else:
                    mask = word & VECT_8_MASK
                    base += VECT_8_STEP
            if y >= height:
                oob += _POPCOUNT[mask]
                mask = 0
            while mask != 0:
                x = x0 + _LOWEST_BIT[mask]
                mask &= mask - 1
                if x >= width:
                    oob += 1
                elif not accumulate:
                    ev = events[np.uint64(n_ev)]
                    ev.x = x
                    ev.y = y
                    ev.p = p
                    ev.t = now
                    n_ev += 1
                    slow_events += 1
                elif not in_window:
                    outside += 1
                else:
                    target = _target(x, y, lut, lut_width, lut_height, size, identity)
                    if target >= 0:
                        _add(frame, size, target, p, 1, tnorm)
                        accumulated += 1
                    else:
                        unmapped += 1
        elif kind == ADDR_Y:
            n_y += 1
            y = value
            fast = time_ok and y < y_lim
        elif kind == VECT_BASE_X:
            n_base += 1
            base = value
            pol = (word >> POLARITY_SHIFT) & 1
        elif (kind == TIME_LOW) | (kind == TIME_HIGH):
            n_time += 1
            if kind == TIME_LOW:
                low = word & PAYLOAD_MASK
                now = epoch + (high << TIME_LOW_BITS) + low
                if now < stamp:
                    backwards += 1
                stamp = now
            else:
                high_now = word & PAYLOAD_MASK
                if high - high_now > WRAP_DROP:
                    epoch += TIME_PERIOD_US
                    wraps += 1
                high = high_now
                now = epoch + (high << TIME_LOW_BITS) + low
            if accumulate:
                in_window, tnorm = _window(now, t_start, t_end, fspan)
            time_ok = now < t_limit and (in_window or not accumulate)
            fast = time_ok and y < y_lim
        elif kind == EXT_TRIGGER:
            if now >= t_limit:
                status = _LIMIT
                break
            if n_tr >= tr_cap:
                status = _TRIGGERS_FULL
                break
            tr = triggers[np.uint64(n_tr)]
            tr.t = now
            tr.channel = (word >> TRIGGER_CHANNEL_SHIFT) & TRIGGER_CHANNEL_MASK
            tr.value = word & TRIGGER_VALUE_MASK
            n_tr += 1
        elif kind == OTHERS:
            n_other += 1
        elif kind == CONTINUED_12:
            n_cont12 += 1
        elif kind == CONTINUED_4:
            n_cont4 += 1
        else:
            n_unknown += 1
        slow_words += 1
        i += 1

    if accumulate:
        for slot in range(ring):
            _apply(frame, ring_count_at[slot], ring_time_at[slot], ring_time[slot])
    state[_S_Y] = y
    state[_S_BASE] = base
    state[_S_POL] = pol
    state[_S_HIGH] = high
    state[_S_LOW] = low
    state[_S_EPOCH] = epoch
    state[_S_STAMP] = stamp
    if accumulate:
        if identity:
            fast_kept = fast_x
        unmapped += fast_x - fast_kept
        accumulated += fast_kept
    else:
        fast_x = n_ev - n_ev0 - slow_events  # every fast X word wrote an event
    fast_words = i - pos - slow_words
    tally[_T_WORDS] += i - pos
    tally[_T_CD] += n_cd + fast_x
    tally[_T_ADDRESS] += n_y + n_base + fast_words - fast_x
    tally[_T_TIME] += n_time
    tally[_T_TRIGGER] += n_tr - n_tr0
    tally[_T_OTHER] += n_other
    tally[_T_CONT12] += n_cont12
    tally[_T_CONT4] += n_cont4
    tally[_T_UNKNOWN] += n_unknown
    tally[_T_OUTSIDE] += outside
    tally[_T_WRAPS] += wraps
    tally[_T_BACKWARDS] += backwards
    tally[_T_OOB] += oob
    tally[_T_UNMAPPED] += unmapped
    tally[_T_DELIVERED] += n_ev - n_ev0 + accumulated
    return i, n_ev, n_tr, status, accumulated, outside, unmapped


@_kernel
def _decode_kernel(
    words: np.ndarray,
    pos: int,
    t_limit: int,
    state: np.ndarray,
    tally: np.ndarray,
    width: int,
    height: int,
    events: np.ndarray,
    n_ev: int,
    triggers: np.ndarray,
    n_tr: int,
) -> tuple[int, int, int, int, int, int, int]:
    """:func:`_loop` writing events and triggers (see there for arguments and result)."""
    no_frame = np.zeros(3, dtype=np.float32)
    no_lut = np.zeros(1, dtype=np.int32)
    return _loop(
        words, pos, t_limit, state, tally, width, height, events, n_ev, triggers, n_tr,
        False, False, no_frame, no_lut, 1, 1, 0, 1,
    )  # fmt: skip


@_kernel
def _fused_kernel(
    words: np.ndarray,
    pos: int,
    t_limit: int,
    state: np.ndarray,
    tally: np.ndarray,
    width: int,
    height: int,
    no_events: np.ndarray,
    triggers: np.ndarray,
    n_tr: int,
    frame: np.ndarray,
    lut: np.ndarray,
    lut_width: int,
    lut_height: int,
    identity: bool,
    t_start: int,
    t_end: int,
) -> tuple[int, int, int, int, int, int, int]:
    """:func:`_loop` accumulating into ``frame`` (flat, 3 planes), with or without a table."""
    if identity:
        return _loop(
            words, pos, t_limit, state, tally, width, height, no_events, 0, triggers, n_tr,
            True, True, frame, lut, lut_width, lut_height, t_start, t_end,
        )  # fmt: skip
    return _loop(
        words, pos, t_limit, state, tally, width, height, no_events, 0, triggers, n_tr,
        True, False, frame, lut, lut_width, lut_height, t_start, t_end,
    )  # fmt: skip


@_kernel
def _count_outputs(
    words: np.ndarray, pos: int, state: np.ndarray, width: int, height: int
) -> tuple[int, int]:
    """Events on the sensor, and triggers, of ``words[pos:]`` from the carried ``state``.

    Only used when an output array turned out too small (vector-heavy data, or the first
    trigger of a call), so that it is grown once to a size that cannot overflow again. The
    event count follows the row and the vector base exactly as the decode loop does, so a
    flood of vector words off the sensor (each naming up to 12 events, none of them kept)
    reserves nothing; it is exact unless a time limit stops the decoding early.
    """
    y = state[_S_Y]
    base = state[_S_BASE]
    n_ev = 0
    n_tr = 0
    for i in range(pos, words.size):
        word = np.int64(words[i])
        kind = word >> TYPE_SHIFT
        if kind == ADDR_Y:
            y = word & COORD_MASK
        elif kind == VECT_BASE_X:
            base = word & COORD_MASK
        elif kind == ADDR_X:
            n_ev += ((word & COORD_MASK) < width) & (y < height)
        elif (kind == VECT_12) | (kind == VECT_8):
            mask = word & (PAYLOAD_MASK if kind == VECT_12 else VECT_8_MASK)
            if y < height and base < width:
                room = min(width - base, VECT_12_STEP)
                n_ev += _POPCOUNT[mask & ((1 << room) - 1)]
            base += VECT_12_STEP if kind == VECT_12 else VECT_8_STEP
        elif kind == EXT_TRIGGER:
            n_tr += 1
    return n_ev, n_tr


def _require_numba() -> None:
    """Raise a clear error instead of running the kernels as (very slow) plain Python."""
    if numba is None:
        raise RuntimeError(str(UNAVAILABLE_REASON))


#: Zero-capacity outputs: a kernel that meets a trigger (or, accumulating, that has no event
#: array) stops and asks for a real one, so the common packet allocates nothing for them.
_NO_EVENTS = np.empty(0, dtype=EVENT_DTYPE)
_NO_TRIGGERS = np.empty(0, dtype=TRIGGER_DTYPE)
_NO_WORDS = np.empty(0, dtype=np.dtype("<u2"))
#: Placeholder table for the identity mapping (never read).
_NO_LUT = np.zeros(1, dtype=np.int32)


def _grow(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` resized to ``size`` elements, contents kept (a fresh array if it is shared)."""
    if array.size == 0:
        return np.empty(size, dtype=array.dtype)
    # refcheck=False: the arrays grown here are private to one call; nothing views them.
    array.resize(size, refcheck=False)
    return array


class FrameAccumulation(NamedTuple):
    """What :func:`decode_and_accumulate` did with one packet.

    Attributes:
        triggers: trigger edges of the packet (TRIGGER_DTYPE), decoded as usual.
        accumulated: events added to the frame.
        outside_window: events on the sensor but outside ``[t_start, t_end)``, skipped.
        unmapped: events in the window whose pixel has no frame pixel (what
            ``EventFrameBuilder.unmapped_events`` counts).
    """

    triggers: np.ndarray
    accumulated: int
    outside_window: int
    unmapped: int


class StreamState(NamedTuple):
    """What a :class:`FastEvt3Decoder` carries from one packet to the next, counters aside.

    Saved in front of a packet, it lets that packet be decoded again later exactly as it was
    the first time, which is how the accumulator keeps packets instead of their events.

    Attributes:
        registers: row, vector base and polarity, clock halves, wrap epoch, last stamp.
        held: bytes of an unfinished word held back by the framing.
        pending: words held back by :meth:`FastEvt3Decoder.decode_until`.
    """

    registers: np.ndarray
    held: np.ndarray
    pending: np.ndarray


class FastEvt3Decoder:
    """Compiled drop-in replacement for :class:`~evseg_ros.events.evt3.Evt3Decoder`.

    Same constructor, methods and counters, and the same stream state carried across calls
    (row, vector base and polarity, clock halves, wrap epoch, a dangling odd byte, words held
    back by :meth:`decode_until`); outputs are bit-identical. Events are written into an
    array sized by a cheap guess (1.5 events per word; real EVT3 streams carry about 0.7),
    grown to the exact number of events still to come if vector-heavy data overflows it, and
    shrunk in place at the end. The guess reserves address space only (pages that are never
    written never become resident), and events named off the sensor are neither written nor
    reserved, so resident memory is the events returned plus a few fixed buffers, whatever
    the bytes (a flood of VECT_12 words names 12 events per word, almost none of them real).

    Args:
        width: sensor width; events with ``x >= width`` are dropped and counted.
        height: sensor height; events with ``y >= height`` are dropped and counted.

    Raises:
        EventDecodeError: the geometry is not a positive int.
        RuntimeError: numba is not installed (see :func:`available`).
    """

    def __init__(self, *, width: int = 1280, height: int = 720) -> None:
        _require_numba()
        self.width, self.height = check_geometry(width, height)
        self._state = np.zeros(_N_STATE, dtype=np.int64)
        self._tally = np.zeros(_N_TALLY, dtype=np.int64)
        self._framer = WordFramer(WORD_BYTES)
        self.reset()

    def reset(self) -> None:
        """Forget all stream state and counters (e.g. after a camera restart or a seek)."""
        self._state[:] = 0
        self._tally[:] = 0
        self._framer.reset()
        self._pending = _NO_WORDS

    def save_state(self) -> StreamState:
        """The stream state as it is now, for :meth:`restore_state` (a copy)."""
        return StreamState(self._state.copy(), self._framer.held(), self._pending)

    def restore_state(self, saved: StreamState) -> None:
        """Continue from ``saved``: the next packet decodes as it did after the save.

        The counters start again from zero: they describe what this decoder did since.
        """
        self._state[:] = saved.registers
        self._tally[:] = 0
        self._framer.hold(saved.held)
        self._pending = saved.pending

    @property
    def counters(self) -> DecoderCounters:
        """Running totals since construction or the last :meth:`reset` (a fresh snapshot).

        Kept as an array that the kernels update in place, so that a small packet does not
        pay a dozen Python additions; the dataclass is assembled only when asked for.
        """
        t = [int(v) for v in self._tally]
        return DecoderCounters(
            words=t[_T_WORDS],
            cd_words=t[_T_CD],
            address_words=t[_T_ADDRESS],
            time_words=t[_T_TIME],
            trigger_words=t[_T_TRIGGER],
            other_words=t[_T_OTHER],
            continued_words=t[_T_CONT12],
            continued4_words=t[_T_CONT4],
            unknown_words=t[_T_UNKNOWN],
            # events skipped by the accumulation window or table were decoded all the same
            cd_events=t[_T_DELIVERED] + t[_T_OUTSIDE] + t[_T_UNMAPPED],
            triggers=t[_T_TRIGGER],
            out_of_bounds=t[_T_OOB],
            time_wraps=t[_T_WRAPS],
            time_backwards=t[_T_BACKWARDS],
        )

    @property
    def current_time_us(self) -> int:
        """Unwrapped clock value after the last consumed word."""
        s = self._state
        return int(s[_S_EPOCH]) + (int(s[_S_HIGH]) << TIME_LOW_BITS) + int(s[_S_LOW])

    @property
    def buffered_bytes(self) -> int:
        """Bytes held back for the next call (an odd byte, or words left by decode_until)."""
        return self._framer.held_bytes + WORD_BYTES * int(self._pending.size)

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
        decoded, _ = self._decode_words(self._take_words(data), _NO_LIMIT)
        return decoded

    def decode_until(
        self, data: bytes | bytearray | memoryview | np.ndarray, t_limit_us: int
    ) -> tuple[DecodedEvents, bool, int]:
        """Decode up to, not including, the first event word whose time is ``>= t_limit_us``.

        Same contract as :meth:`Evt3Decoder.decode_until
        <evseg_ros.events.evt3.Evt3Decoder.decode_until>`: the time test is made per
        event-carrying word (EVT_ADDR_X, VECT_12, VECT_8, EXT_TRIGGER) before bounds filtering,
        and the words from the first late one on are held back for the next call.

        Returns:
            ``(decoded, reached_limit, next_time)``; ``next_time`` is the time of the first
            held-back item, or :attr:`current_time_us` when everything was consumed.

        Raises:
            EventDecodeError: wrong argument types.
        """
        if isinstance(t_limit_us, bool) or not isinstance(t_limit_us, (int, np.integer)):
            raise EventDecodeError(f"t_limit_us must be an int, got {t_limit_us!r}")
        decoded, reached = self._decode_words(self._take_words(data), int(t_limit_us))
        return decoded, reached, self.current_time_us

    # ------------------------------------------------------------------ internals

    def _take_words(self, data: object) -> np.ndarray:
        """Words held back by decode_until, then the words ``data`` completes (uint16).

        Read-only (the framer's words are): numba compiles read-only and writable arrays
        separately, and the kernels only read the words, so one compilation serves.
        """
        words = self._framer.words(data)
        if self._pending.size:
            words = np.concatenate((self._pending, words))
            self._pending = _NO_WORDS
            words.flags.writeable = False
        return words

    def _hold_back(self, words: np.ndarray, pos: int) -> None:
        """Keep ``words[pos:]`` (from the first item past a time limit) for the next call."""
        self._pending = words[pos:].copy()

    def _decode_words(self, words: np.ndarray, t_limit: int) -> tuple[DecodedEvents, bool]:
        """Run the decode kernel over ``words`` until done or the time limit, growing outputs."""
        n = int(words.size)
        if n == 0:
            return empty_decoded(), False
        events = np.empty(n + n // 2 + 16, dtype=EVENT_DTYPE)
        triggers = _NO_TRIGGERS
        pos = n_ev = n_tr = 0
        while True:
            pos, n_ev, n_tr, status, _, _, _ = _decode_kernel(
                words, pos, t_limit, self._state, self._tally, self.width, self.height,
                events, n_ev, triggers, n_tr,
            )  # fmt: skip
            if status not in (_EVENTS_FULL, _TRIGGERS_FULL):
                break
            more_ev, more_tr = _count_outputs(words, pos, self._state, self.width, self.height)
            if status == _EVENTS_FULL:
                events = _grow(events, n_ev + more_ev + 12)
            else:
                triggers = _grow(triggers, n_tr + more_tr)
        reached = status == _LIMIT
        if reached:
            self._hold_back(words, pos)
        # Shrinking in place is a realloc, no copy: the guess costs address space only.
        events.resize(n_ev, refcheck=False)
        if n_tr:
            triggers.resize(n_tr, refcheck=False)
        else:
            triggers = np.empty(0, dtype=TRIGGER_DTYPE)
        return DecodedEvents(events, triggers), reached


def _flat_frame(frame: object) -> np.ndarray:
    """Flat view of a (3, H, W) float32 frame, checked so the kernel cannot write past it.

    Raises:
        TypeError: not such a frame (type, dtype, shape or memory layout).
    """
    if not (
        isinstance(frame, np.ndarray)
        and frame.dtype == np.float32
        and frame.ndim == 3
        and frame.shape[0] == 3
        and frame.size > 0
        and frame.flags.c_contiguous
        and frame.flags.writeable
    ):
        raise TypeError("frame must be a writable C-contiguous (3, H, W) float32 array, H, W > 0")
    return frame.reshape(-1)


def _flat_lut(lut: object, lut_width: object) -> np.ndarray:
    """Flat int32/int64 view of a pixel table of whole rows of ``lut_width`` entries.

    Raises:
        TypeError: not an integer table, or ``lut_width`` is not an int.
        ValueError: not a whole number of rows.
    """
    if not (isinstance(lut, np.ndarray) and lut.dtype in (np.int32, np.int64)):
        raise TypeError("lut must be an int32 or int64 array (frame pixel index, -1 = none)")
    if isinstance(lut_width, bool) or not isinstance(lut_width, (int, np.integer)):
        raise TypeError(f"lut_width must be an int with a lut, got {lut_width!r}")
    if lut_width <= 0 or lut.size == 0 or lut.size % int(lut_width):
        raise ValueError(f"lut of {lut.size} entries is not a whole number of {lut_width} rows")
    return np.ascontiguousarray(lut).reshape(-1)


def decode_and_accumulate(
    decoder: FastEvt3Decoder,
    data: bytes | bytearray | memoryview | np.ndarray,
    frame: np.ndarray,
    t_start_us: int,
    t_end_us: int,
    *,
    lut: np.ndarray | None = None,
    lut_width: int | None = None,
) -> FrameAccumulation:
    """Decode one packet and add its events in ``[t_start_us, t_end_us)`` to ``frame``.

    The frame is updated in place, so a window that spans several packets is built by calling
    this once per packet on a zeroed frame. The result is then identical to decoding every
    packet, keeping the events with ``t_start_us <= t < t_end_us`` and passing them to
    :meth:`EventFrameBuilder.build <evseg_ros.events.event_frame.EventFrameBuilder.build>`
    with the same window: ON and OFF counts in channels 0 and 1, the latest event time
    normalised over the window and clipped to [1e-6, 1] in channel 2, events placed through
    the pixel table. The decoder's state and counters advance exactly as
    :meth:`FastEvt3Decoder.decode` would advance them.

    Args:
        decoder: carries the stream state across packets (and across windows).
        data: the next bytes of the stream.
        frame: (3, H, W) float32 C-contiguous frame to add to. Its values must not be
            negative (a zeroed frame, or one this function filled): the kernel adds 0 to
            pixels that get no event, which leaves only non-negative values bit-identical.
        t_start_us: window start (inclusive), unwrapped microseconds.
        t_end_us: window end (exclusive).
        lut: per event pixel ``y * lut_width + x``, the flat frame pixel index or -1, as
            :func:`~evseg_ros.events.event_frame.build_pixel_lut` returns (int32 halves the
            memory traffic, see :class:`FastFrameAccumulator`). Entries outside
            ``[0, H * W)`` count as unmapped, so a wrong table cannot corrupt memory. None
            means the identity: event pixel (x, y) is frame pixel (x, y), which needs no
            table reads at all.
        lut_width: event-camera width the table is laid out with (its height is
            ``lut.size // lut_width``); required with ``lut``. Events outside the table count
            as unmapped, like the builder's off-sensor events.

    Returns:
        The packet's trigger edges and the window figures.

    Raises:
        TypeError: ``decoder`` is not a :class:`FastEvt3Decoder`, or the frame or table has
            the wrong type or layout.
        EventDecodeError: ``data`` is not a supported buffer type.
        ValueError: the table is empty or not a whole number of rows.
    """
    if not isinstance(decoder, FastEvt3Decoder):
        raise TypeError(f"decoder must be a FastEvt3Decoder, got {type(decoder).__name__!r}")
    flat = _flat_frame(frame)
    identity = lut is None
    if lut is None:
        table, table_width, table_height = _NO_LUT, frame.shape[2], frame.shape[1]
    else:
        table = _flat_lut(lut, lut_width)
        table_width = int(lut_width)  # type: ignore[arg-type]
        table_height = table.size // table_width
    t_start, t_end = int(t_start_us), int(t_end_us)
    words = decoder._take_words(data)  # same module: the fused path shares the plumbing
    triggers = _NO_TRIGGERS
    pos = n_tr = accumulated = outside = unmapped = 0
    while pos < words.size:
        pos, _, n_tr, status, done, skipped, lost = _fused_kernel(
            words, pos, _NO_LIMIT, decoder._state, decoder._tally, decoder.width, decoder.height,
            _NO_EVENTS, triggers, n_tr,
            flat, table, table_width, table_height, identity, t_start, t_end,
        )  # fmt: skip
        accumulated += done
        outside += skipped
        unmapped += lost
        if status != _TRIGGERS_FULL:
            break
        more_tr = _count_outputs(words, pos, decoder._state, decoder.width, decoder.height)[1]
        triggers = _grow(triggers, n_tr + more_tr)
    if n_tr:
        triggers.resize(n_tr, refcheck=False)
    else:
        triggers = np.empty(0, dtype=TRIGGER_DTYPE)
    return FrameAccumulation(triggers, accumulated, outside, unmapped)


class FastFrameAccumulator:
    """An :class:`EventFrameBuilder`'s frames, built by the fused kernel from the packets.

    The builder's pixel table is kept as int32 (half the memory traffic of its int64 one,
    which matters because a full-sensor table does not fit in the core's cache), and dropped
    altogether when it is the identity (same grid for both cameras), so that each event costs
    no table read. Events without a frame pixel are added to the builder's
    ``unmapped_events``, so that one counter holds them however a frame was built.

    Args:
        builder: the numpy frame builder of the same calibration.

    Raises:
        RuntimeError: numba is not installed.
    """

    def __init__(self, builder: EventFrameBuilder) -> None:
        _require_numba()
        self.builder = builder
        self.event_width = builder.event_width
        self.width = builder.width
        self.height = builder.height
        lut = builder.lut
        same_grid = (builder.event_width, builder.event_height) == (self.width, self.height)
        #: int32 pixel table, or None when it is the identity.
        self.lut: np.ndarray | None = None
        if not (same_grid and np.array_equal(lut, np.arange(lut.size))):
            self.lut = lut.astype(np.int32)

    def new_frame(self) -> np.ndarray:
        """A zeroed (3, H, W) float32 frame to accumulate one window into."""
        return np.zeros((3, self.height, self.width), dtype=np.float32)

    def accumulate(
        self,
        decoder: FastEvt3Decoder,
        data: bytes | bytearray | memoryview | np.ndarray,
        frame: np.ndarray,
        t_start_us: int,
        t_end_us: int,
    ) -> FrameAccumulation:
        """:func:`decode_and_accumulate` through this calibration's table.

        Raises:
            ValueError: ``frame`` is not a (3, H, W) float32 frame of this calibration.
        """
        if frame.shape != (3, self.height, self.width):
            raise ValueError(
                f"frame must have shape {(3, self.height, self.width)}, got {frame.shape}"
            )
        result = decode_and_accumulate(
            decoder, data, frame, t_start_us, t_end_us,
            lut=self.lut, lut_width=self.event_width,
        )  # fmt: skip
        self.builder.unmapped_events += result.unmapped
        return result


def warm_up() -> None:
    """Compile (or load from the on-disk cache) every kernel before real data arrives.

    Without it the first packet of a stream pays the compilation: about ten seconds the
    first time this code runs on a machine, a fraction of a second from the cache after.

    Raises:
        RuntimeError: numba is not installed.
    """
    _require_numba()
    # Every word type, a vector that overflows the 16x16 sensor, and a trigger.
    words = np.array(
        [0x8001, 0x6002, 0x0003, 0x2804, 0x300A, 0x4FFF, 0x50FF, 0xA101, 0xE000, 0xF000],
        dtype="<u2",
    )
    decoder = FastEvt3Decoder(width=16, height=16)
    decoder.decode(words)
    decoder.decode_until(words, 0)
    frame = np.zeros((3, 16, 16), dtype=np.float32)
    decode_and_accumulate(decoder, words, frame, 0, 1 << 20)
    for dtype in (np.int32, np.int64):  # FastFrameAccumulator's and build_pixel_lut's tables
        lut = np.arange(256, dtype=dtype)
        decode_and_accumulate(decoder, words, frame, 0, 1 << 20, lut=lut, lut_width=16)
