"""Prophesee EVT 2.0 decoder (vectorised, stateful across packets).

EVT 2.0 is a stream of 32-bit little-endian words whose top 4 bits give the word type. Unlike
EVT 3.0 every event word is self-contained apart from the upper time bits:

========  ==============  ===============================================================
type      name            payload
========  ==============  ===============================================================
``0x0``   CD_OFF          time bits 5..0 in 27..22, x in 21..11, y in 10..0 (polarity 0)
``0x1``   CD_ON           same layout, polarity 1
``0x8``   EVT_TIME_HIGH   time bits 33..6 in bits 27..0
``0xA``   EXT_TRIGGER     time bits 5..0 in 27..22, channel in 12..8, edge in bit 0
``0xE``   OTHERS          vendor extension, skipped
``0xF``   CONTINUED       vendor payload, skipped
========  ==============  ===============================================================

Other types are reserved and skipped (counted as unknown). The 34-bit clock wraps after about
4.8 hours; a TIME_HIGH that drops by more than half its range starts a new epoch so output
times stay monotonic. Before the first TIME_HIGH the upper bits are taken as 0.

The only state lookup is "last TIME_HIGH before this word", done for all words at once with a
prefix count, so there is no per-word Python code. Every word yields at most one event, but the
vectorised steps cost tens of bytes of temporaries per word, so a long packet is decoded in
blocks of :data:`BLOCK_WORDS` words (state carried from block to block exactly as from packet to
packet) into outputs that grow in place: working memory stays a small multiple of the packet
plus the events returned, and time linear in its size, whatever the bytes are.
"""

from __future__ import annotations

import numpy as np

from evseg_ros.events.evt3 import (
    DecodedEvents,
    DecoderCounters,
    OutputRecords,
    _ext,
    _in_force,
    _outputs,
    _prefix_count,
)
from evseg_ros.events.framing import WordFramer, check_geometry

__all__ = ["BLOCK_WORDS", "EVT2_TIME_PERIOD_US", "Evt2Decoder"]

CD_OFF = 0x0
CD_ON = 0x1
TIME_HIGH = 0x8
EXT_TRIGGER = 0xA
OTHERS = 0xE
CONTINUED = 0xF

_HIGH_BITS = 28
#: EVT 2.0 time stamps are 34-bit microsecond counters (28 high bits + 6 low bits).
EVT2_TIME_PERIOD_US = 1 << (_HIGH_BITS + 6)
_WRAP_DROP = 1 << (_HIGH_BITS - 1)
#: Words decoded at once (512 KiB of stream): a block's temporaries are a few MiB, and the
#: fixed cost of its numpy calls stays small next to its work.
BLOCK_WORDS = 1 << 17


class Evt2Decoder:
    """Stateful EVT 2.0 decoder with the same interface as :class:`~.evt3.Evt3Decoder`.

    State (upper time bits, wrap epoch, up to three dangling bytes) carries across calls, so a
    stream may be fed in packets of any byte length.

    Args:
        width: sensor width; events with ``x >= width`` are dropped and counted.
        height: sensor height; events with ``y >= height`` are dropped and counted.

    Raises:
        EventDecodeError: the geometry is not a positive int.
    """

    def __init__(self, *, width: int = 1280, height: int = 720) -> None:
        self.width, self.height = check_geometry(width, height)
        self.counters = DecoderCounters()
        self.reset()

    def reset(self) -> None:
        """Forget all stream state and counters."""
        self.counters = DecoderCounters()
        self._high = 0  # 28-bit value of the last TIME_HIGH
        self._epoch = 0  # multiple of EVT2_TIME_PERIOD_US
        self._low = 0  # low 6 bits of the last item after the last TIME_HIGH
        self._last_t = 0  # time of the last event or trigger word, to spot time going back
        self._framer = WordFramer(4)

    @property
    def current_time_us(self) -> int:
        """Unwrapped clock value after the last consumed word."""
        return self._epoch + (self._high << 6) + self._low

    @property
    def buffered_bytes(self) -> int:
        """Bytes of an incomplete word held back for the next call."""
        return self._framer.held_bytes

    def decode(self, data: bytes | bytearray | memoryview | np.ndarray) -> DecodedEvents:
        """Decode every complete word of ``data`` (after any bytes held back before).

        Args:
            data: the next bytes of the stream; up to 3 trailing bytes are kept for later.

        Returns:
            CD events and trigger edges in stream order.

        Raises:
            EventDecodeError: ``data`` is not a supported buffer type (stream content never
                raises).
        """
        words = self._framer.words(data)
        events, triggers = _outputs(words.size)
        for start in range(0, words.size, BLOCK_WORDS):
            self._decode_block(words[start : start + BLOCK_WORDS], events, triggers)
        return DecodedEvents(events.result(), triggers.result())

    def _decode_block(
        self, w: np.ndarray, events_out: OutputRecords, triggers_out: OutputRecords
    ) -> None:
        """Decode a block of complete words into the outputs and advance the state past it."""
        n = int(w.size)
        ty = (w >> 28).astype(np.uint8)

        # Upper time bits in force at every word, with wrap detection on the TIME_HIGH values.
        is_hi = ty == TIME_HIGH
        high = (w[is_hi] & 0x0FFFFFFF).astype(np.int64)
        carried = self._epoch + (self._high << 6)
        wraps = 0
        hi_count = None
        if high.size:
            prev = np.empty_like(high)
            prev[0] = self._high
            prev[1:] = high[:-1]
            wrap = prev - high > _WRAP_DROP
            epoch = self._epoch + np.cumsum(wrap, dtype=np.int64) * EVT2_TIME_PERIOD_US
            wraps = int(np.count_nonzero(wrap))
            self._high, self._epoch = int(high[-1]), int(epoch[-1])
            high = epoch + (high << 6)
            hi_count = _prefix_count(is_hi)
        hi_ext = _ext(carried, high)

        item_idx = np.flatnonzero((ty <= CD_ON) | (ty == EXT_TRIGGER))
        iw = w[item_idx]
        t_item = _in_force(hi_count, hi_ext, item_idx) + ((iw >> 22) & 0x3F)
        is_cd_item = (iw >> 28) <= CD_ON
        backwards = 0
        if item_idx.size:
            backwards = int(t_item[0] < self._last_t) + int(
                np.count_nonzero(t_item[1:] < t_item[:-1])
            )
            self._last_t = int(t_item[-1])
            after_high = hi_count is None or hi_count[-1] == hi_count[item_idx[-1]]
            self._low = int(iw[-1] >> 22) & 0x3F if after_high else 0
        elif high.size:
            self._low = 0

        cd = iw[is_cd_item]
        x = (cd >> 11) & 0x7FF
        y = cd & 0x7FF
        keep = (x < self.width) & (y < self.height)
        n_cd = int(cd.size)
        n_keep = int(np.count_nonzero(keep))
        t_cd = t_item[is_cd_item]
        if n_keep != n_cd:
            cd, x, y, t_cd = cd[keep], x[keep], y[keep], t_cd[keep]
        events = events_out.take(n_keep)
        events["x"] = x
        events["y"] = y
        events["p"] = cd >> 28
        events["t"] = t_cd

        tr = iw[~is_cd_item]
        triggers = triggers_out.take(int(tr.size))
        triggers["t"] = t_item[~is_cd_item]
        triggers["channel"] = (tr >> 8) & 0x1F
        triggers["value"] = tr & 1

        n_other = int(np.count_nonzero(ty == OTHERS))
        n_cont = int(np.count_nonzero(ty == CONTINUED))
        n_time = int(high.size)
        c = self.counters
        c.words += n
        c.cd_words += n_cd
        c.time_words += n_time
        c.trigger_words += int(tr.size)
        c.other_words += n_other
        c.continued_words += n_cont
        c.unknown_words += n - n_cd - n_time - int(tr.size) - n_other - n_cont
        c.cd_events += n_keep
        c.triggers += int(tr.size)
        c.out_of_bounds += n_cd - n_keep
        c.time_wraps += wraps
        c.time_backwards += backwards
