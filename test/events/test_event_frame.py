from __future__ import annotations

import numpy as np
import pytest

from evseg_ros.events.event_frame import EventFrameBuilder, build_pixel_lut
from evseg_ros.events.types import EVENT_DTYPE


def _events(rows):
    events = np.zeros(len(rows), dtype=EVENT_DTYPE)
    for i, (x, y, p, t) in enumerate(rows):
        events[i] = (x, y, p, t)
    return events


def test_lut_follows_the_calibration_homography(sim_calibration):
    lut = build_pixel_lut(sim_calibration)
    event = sim_calibration.event_camera
    frame = sim_calibration.frame_camera
    rng = np.random.default_rng(0)
    xs = rng.integers(0, event.width, 500)
    ys = rng.integers(0, event.height, 500)
    fx, fy = sim_calibration.map_event_pixels(xs, ys)
    expected = np.rint(fy).astype(int) * frame.width + np.rint(fx).astype(int)
    np.testing.assert_array_equal(lut[ys * event.width + xs], expected)
    # the event camera sees a 320x180 band of the 320x240 frame: corners land inside
    assert lut[0] == 30 * frame.width + 0
    assert lut[-1] == 209 * frame.width + 319


def test_counts_time_channel_and_mapping(sim_calibration):
    builder = EventFrameBuilder(sim_calibration)
    events = _events([(200, 112, 1, 100), (200, 112, 1, 400), (200, 112, 0, 900), (0, 0, 0, 500)])
    frame = builder.build(events, 0, 1000)
    assert frame.shape == (3, 240, 320) and frame.dtype == np.float32
    # (200, 112) -> (159.9, 119.5) -> frame pixel (160, 120)
    assert frame[0, 120, 160] == 2 and frame[1, 120, 160] == 1
    assert frame[2, 120, 160] == pytest.approx(0.9)
    assert frame[1, 30, 0] == 1 and frame[2, 30, 0] == pytest.approx(0.5)
    assert frame[0].sum() == 2 and frame[1].sum() == 2
    assert np.count_nonzero(frame[2]) == 2


def test_out_of_sensor_events_are_counted_not_mapped(sim_calibration):
    builder = EventFrameBuilder(sim_calibration)
    events = _events([(400, 0, 1, 1), (0, 225, 1, 2), (5, 5, 1, 3)])
    frame = builder.build(events, 0, 10)
    assert builder.unmapped_events == 2
    assert frame[0].sum() == 1


def test_empty_window_gives_zero_frame(sim_calibration):
    frame = EventFrameBuilder(sim_calibration).build(np.empty(0, EVENT_DTYPE), 0, 10)
    assert not frame.any()
