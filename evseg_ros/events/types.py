"""Record layouts shared by every event decoder, encoder, simulator and accumulator.

Events are structured numpy arrays (the layout event_camera_py and Metavision use) so that a
packet's worth of events moves between stages without per-event Python objects.
"""

from __future__ import annotations

import numpy as np

#: One contrast-detection (CD) event. ``t`` is sensor time in microseconds, already unwrapped
#: (EVT3 carries 24 bits that wrap every 2**24 us ~ 16.77 s; decoders extend it to 64 bits).
#: ``p`` is 1 for ON (brighter), 0 for OFF.
EVENT_DTYPE = np.dtype([("x", "<u2"), ("y", "<u2"), ("p", "u1"), ("t", "<i8")])

#: One external-trigger edge seen by the event camera. ``value`` 1 = rising edge, 0 = falling.
TRIGGER_DTYPE = np.dtype([("t", "<i8"), ("channel", "u1"), ("value", "u1")])


def first_time_us(events: np.ndarray, triggers: np.ndarray, default: int) -> int:
    """Sensor time of the first item of a packet (event or trigger edge), else ``default``.

    This is the time a packet's header stamp stands for, on both the publishing and the
    receiving side, so the two must compute it the same way.
    """
    return packet_time_us(int(events["t"][0]) if len(events) else None, triggers, default)


def packet_time_us(first_event_us: int | None, triggers: np.ndarray, default: int) -> int:
    """:func:`first_time_us` for a caller that has only the first event's time (device path)."""
    firsts = [int(triggers["t"][0])] if len(triggers) else []
    if first_event_us is not None:
        firsts.append(int(first_event_us))
    return min(firsts) if firsts else int(default)


def empty_events() -> np.ndarray:
    """Return a zero-length event array with the shared layout."""
    return np.empty(0, dtype=EVENT_DTYPE)


def empty_triggers() -> np.ndarray:
    """Return a zero-length trigger array with the shared layout."""
    return np.empty(0, dtype=TRIGGER_DTYPE)
