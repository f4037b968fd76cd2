from __future__ import annotations

import numpy as np
import pytest

from evseg_ros.events.event_frame import EventFrameBuilder
from evseg_ros.events.representations import (
    Representation,
    build,
    channels,
    polarity_histogram,
    voxel_grid,
)
from evseg_ros.events.types import EVENT_DTYPE


def _events(rows):
    events = np.zeros(len(rows), dtype=EVENT_DTYPE)
    for i, row in enumerate(rows):
        events[i] = row
    return events


def test_voxel_grid_splits_each_event_linearly_between_its_two_nearest_bins(sim_calibration):
    builder = EventFrameBuilder(sim_calibration)
    # (200, 112) maps to frame pixel (160, 120); window [0, 1000), 3 bins at 0, 500, 1000 us
    events = _events([(200, 112, 1, 0), (200, 112, 1, 500), (200, 112, 0, 250), (0, 0, 1, 999)])
    grid = voxel_grid(builder, events, 0, 1000, bins=3)
    assert grid.shape == (3, 240, 320) and grid.dtype == np.float32
    np.testing.assert_allclose(grid[:, 120, 160], [1.0 - 0.5, 1.0 - 0.5, 0.0])
    np.testing.assert_allclose(grid[:, 30, 0], [0.0, 0.002, 0.998], atol=1e-6)
    assert grid.sum() == pytest.approx(2.0)  # ON - OFF: each event contributes its sign once


def test_random_windows_conserve_polarity_and_match_the_event_frame(sim_calibration):
    rng = np.random.default_rng(0)
    events = np.zeros(5000, dtype=EVENT_DTYPE)
    events["x"] = rng.integers(0, 400, 5000)
    events["y"] = rng.integers(0, 225, 5000)
    events["p"] = rng.integers(0, 2, 5000)
    events["t"] = np.sort(rng.integers(0, 30_000, 5000))
    builder = EventFrameBuilder(sim_calibration)
    frame = builder.build(events, 0, 30_000)
    histogram = polarity_histogram(builder, events)
    np.testing.assert_array_equal(histogram, frame[:2])
    grid = voxel_grid(builder, events, 0, 30_000, bins=5)
    np.testing.assert_allclose(grid.sum(axis=0), frame[0] - frame[1], atol=1e-4)
    for representation in Representation:
        out = build(representation, builder, events, 0, 30_000, bins=5)
        assert out.shape[0] == channels(representation, bins=5)


def test_voxel_grid_needs_two_bins(sim_calibration):
    with pytest.raises(ValueError, match="at least 2 bins"):
        voxel_grid(EventFrameBuilder(sim_calibration), _events([]), 0, 10, bins=1)
