"""Registry of event-stream decoders, keyed by the ``encoding`` field of EventPacket."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from evseg_ros.events import evt3_fast
from evseg_ros.events.evt2 import Evt2Decoder
from evseg_ros.events.evt3 import DecodedEvents, Evt3Decoder


class EventDecoder(Protocol):
    """What the accumulator needs from a decoder: stateful, packet after packet."""

    def decode(self, data: bytes | bytearray | memoryview | np.ndarray) -> DecodedEvents: ...

    def reset(self) -> None: ...

    @property
    def current_time_us(self) -> int: ...


#: The numba EVT3 decoder is bit-identical to the numpy one and several times faster; the numpy
#: one serves where numba is not installed.
DECODERS: dict[str, Callable[..., EventDecoder]] = {
    "evt2": Evt2Decoder,
    "evt3": evt3_fast.FastEvt3Decoder if evt3_fast.available() else Evt3Decoder,
}


def create_decoder(encoding: str, *, width: int, height: int) -> EventDecoder:
    """Make a decoder for ``encoding``.

    Raises:
        KeyError: unknown encoding; the message names the known ones.
    """
    try:
        factory = DECODERS[encoding]
    except KeyError:
        msg = f"no decoder for encoding {encoding!r}; known: {sorted(DECODERS)}"
        raise KeyError(msg) from None
    return factory(width=width, height=height)
