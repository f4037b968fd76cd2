from __future__ import annotations

import numpy as np
import pytest

from evseg_ros.events.types import EVENT_DTYPE
from evseg_ros.events.window import EventBuffer, WindowConfig, WindowMode


def _events(times):
    events = np.zeros(len(times), dtype=EVENT_DTYPE)
    events["t"] = times
    return events


def test_window_bounds_relative_to_trigger():
    assert WindowConfig(duration_us=30_000, end_offset_us=5_000).bounds(100_000) == (
        75_000,
        105_000,
    )
    with pytest.raises(ValueError, match="duration_us"):
        WindowConfig(duration_us=0)


def test_buffer_cuts_half_open_windows_across_chunks():
    buffer = EventBuffer()
    buffer.add(_events([0, 10, 20]))
    buffer.add(_events([30, 40]))
    np.testing.assert_array_equal(buffer.window(10, 40)["t"], [10, 20, 30])
    buffer.discard_before(25)
    assert len(buffer) == 2
    assert buffer.dropped_overflow == 0


def test_buffer_counts_out_of_order_and_overflow():
    buffer = EventBuffer(max_span_us=100)
    buffer.add(_events([50, 60]))
    buffer.add(_events([55, 70]))  # 55 is older than the newest held event
    assert buffer.dropped_out_of_order == 1
    buffer.add(_events([300]))
    assert buffer.dropped_overflow == 3
    np.testing.assert_array_equal(buffer.window(0, 1000)["t"], [300])


def test_exposure_and_count_windows():
    assert WindowConfig(mode=WindowMode.EXPOSURE, exposure_us=8_000).bounds(50_000) == (
        50_000,
        58_000,
    )
    buffer = EventBuffer()
    buffer.add(_events([0, 10, 20]))
    buffer.add(_events([30, 40]))
    np.testing.assert_array_equal(buffer.last(0, 40, 2)["t"], [20, 30])
    np.testing.assert_array_equal(buffer.last(25, 100, 10)["t"], [30, 40])
    with pytest.raises(ValueError, match="event_count"):
        WindowConfig(mode=WindowMode.COUNT, event_count=0)
