"""Event streams: EVT3/EVT2 codecs, event windows per frame, and event frames.

Events travel as structured numpy arrays (``EVENT_DTYPE``: x, y, p, t) so that a packet's worth
moves between stages without per-event Python objects.
"""

from __future__ import annotations

from evseg_ros.events.decoders import DECODERS, create_decoder
from evseg_ros.events.errors import EventDecodeError
from evseg_ros.events.event_frame import EventFrameBuilder, build_pixel_lut
from evseg_ros.events.evt2 import Evt2Decoder
from evseg_ros.events.evt3 import Evt3Decoder, Evt3EncoderState, encode_evt3, read_raw_file
from evseg_ros.events.types import EVENT_DTYPE, TRIGGER_DTYPE
from evseg_ros.events.window import EventBuffer, WindowConfig

__all__ = [
    "DECODERS",
    "EVENT_DTYPE",
    "TRIGGER_DTYPE",
    "EventBuffer",
    "EventDecodeError",
    "EventFrameBuilder",
    "Evt2Decoder",
    "Evt3Decoder",
    "Evt3EncoderState",
    "WindowConfig",
    "build_pixel_lut",
    "create_decoder",
    "encode_evt3",
    "read_raw_file",
]
