"""Prophesee EVT 3.0 word format: the one definition the encoder and all three decoders read.

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

Every other type is reserved; decoders skip and count it instead of failing, because a live
camera link or a recorder's padding must never take the pipeline down.

The 24-bit clock wraps every 2**24 us (about 16.8 s). A decoder keeps a wrap epoch and adds
:data:`TIME_PERIOD_US` to it whenever a TIME_HIGH value drops by more than :data:`WRAP_DROP`
(half of its 12-bit range); smaller drops are glitches, kept as they are. The numpy, numba and
torch decoders and the encoder all take these values from here, so they cannot disagree on
the format.
"""

from __future__ import annotations

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

#: Bytes per word; words are little-endian.
WORD_BYTES = 2
#: ``word >> TYPE_SHIFT`` is the word type, ``word & PAYLOAD_MASK`` its payload.
TYPE_SHIFT = 12
PAYLOAD_MASK = 0xFFF
#: x, y and the vector base are 11 bits wide; EVT 3.0 addresses at most 2048 x 2048 pixels.
COORD_MASK = 0x7FF
MAX_COORD = 1 << 11
#: Polarity bit of EVT_ADDR_X and VECT_BASE_X (1 = ON).
POLARITY_SHIFT = 11
#: Mask bits of a VECT_8 word (a VECT_12 word uses the whole payload).
VECT_8_MASK = 0xFF
#: How far the vector base advances after a VECT_12 / VECT_8 word.
VECT_12_STEP = 12
VECT_8_STEP = 8
#: EXT_TRIGGER: channel id in bits 11..8, edge in bit 0.
TRIGGER_CHANNEL_SHIFT = 8
TRIGGER_CHANNEL_MASK = 0xF
TRIGGER_VALUE_MASK = 0x1

#: TIME_LOW carries the low 12 bits of the clock, TIME_HIGH the next 12.
TIME_LOW_BITS = 12
TIME_HIGH_RANGE = 1 << 12
#: The clock is 24 bits of microseconds: it wraps every 2**24 us (~16.77 s).
TIME_BITS = 24
TIME_PERIOD_US = 1 << TIME_BITS
#: A TIME_HIGH that drops by more than this many steps is a wrap of the 24-bit clock.
WRAP_DROP = TIME_HIGH_RANGE // 2
