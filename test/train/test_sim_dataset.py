"""Simulated training samples: shapes, determinism, cache, and parity with the pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evseg_ros.events.event_frame import EventFrameBuilder
from evseg_ros.geometry.calibration import load_calibration
from evseg_ros.labels import DSEC_11, VOID
from evseg_ros.train.sim_dataset import (
    SimDatasetConfig,
    SimSamples,
    generate_sequence,
    lighting_name,
    load_or_generate,
)

sim = pytest.importorskip("evseg_ros.sim")

CALIBRATION = load_calibration(
    Path(__file__).resolve().parents[2] / "config" / "calibration" / "sim_rig.yaml"
)
CONFIG = SimDatasetConfig(frames_per_seed=2, frame_stride=3)


@pytest.fixture(scope="module")
def samples() -> SimSamples:
    return generate_sequence(CALIBRATION, 3, CONFIG)


def test_shapes_and_types(samples: SimSamples) -> None:
    assert len(samples) == 2
    assert samples.images.shape == (2, 240, 320, 3)
    assert samples.images.dtype == np.uint8
    assert samples.events.shape == (2, 3, 240, 320)
    assert samples.events.dtype == np.float16
    assert samples.labels.shape == (2, 240, 320)
    ids = np.unique(samples.labels)
    assert np.all((ids < DSEC_11.num_classes) | (ids == VOID))
    assert samples.times_us[1] - samples.times_us[0] == 3 * 100_000
    assert all(name in ("normal", "night", "glare") for name in samples.lighting)


def test_every_stuff_region_is_an_instance_and_the_clean_render_rides_along(
    samples: SimSamples,
) -> None:
    """HFCA needs instances everywhere: road, buildings and sky get ids like the objects."""
    assert samples.instances is not None and samples.reconstructed is not None
    assert samples.reconstructed.shape == samples.images.shape
    assert samples.reconstructed.dtype == np.uint8
    rig = sim.CoaxialRigSim(
        CALIBRATION, sim.SimConfig(seed=3, frame_rate_hz=10.0, lighting="cycle")
    )
    for index in range(len(samples)):
        t_k = int(samples.times_us[index])
        np.testing.assert_array_equal(samples.reconstructed[index], rig.render_clean_frame(t_k))
        labels, ids = samples.labels[index], samples.instances[index]
        labelled = labels != VOID
        assert np.mean(ids[labelled] > 0) > 0.9
        # The road, stuff the renderer gives id 0, is covered by instances of its own.
        road = labels == DSEC_11.classes.index("road")
        assert road.any() and np.mean(ids[road] > 0) > 0.9
        # An id never spans two classes.
        for instance in np.unique(ids[ids > 0]):
            assert len(np.unique(labels[ids == instance])) == 1, instance


def test_deterministic_per_seed(samples: SimSamples) -> None:
    again = generate_sequence(CALIBRATION, 3, CONFIG)
    for name in ("images", "events", "labels", "times_us"):
        np.testing.assert_array_equal(getattr(again, name), getattr(samples, name))


def test_event_frame_matches_pipeline_window(samples: SimSamples) -> None:
    """The event frame is the pipeline's: WindowConfig bounds of the trigger, same builder."""
    rig = sim.CoaxialRigSim(
        CALIBRATION, sim.SimConfig(seed=3, frame_rate_hz=10.0, lighting="cycle")
    )
    t_k = int(samples.times_us[0])
    start, end = CONFIG.window.bounds(t_k)
    events, _ = rig.event_simulator(start - CONFIG.warmup_us).advance_to(end)
    events = events[(events["t"] >= start) & (events["t"] < end)]
    expected = EventFrameBuilder(CALIBRATION).build(events, start, end)
    np.testing.assert_allclose(samples.events[0].astype(np.float32), expected, atol=1e-3, rtol=1e-3)


def test_cache_round_trip(tmp_path, samples: SimSamples) -> None:
    first = load_or_generate(CALIBRATION, [3], CONFIG, tmp_path)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1
    second = load_or_generate(CALIBRATION, [3], CONFIG, tmp_path)
    np.testing.assert_array_equal(first.events, second.events)
    np.testing.assert_array_equal(first.lighting, samples.lighting)


def test_lighting_name() -> None:
    assert lighting_name(sim.Lighting.NIGHT) == "night"
    assert lighting_name("Glare") == "glare"
