"""Simulated coaxial rig: frames, ground truth, coaxial geometry, lighting, events, triggers."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from evseg_ros.events.types import EVENT_DTYPE, TRIGGER_DTYPE
from evseg_ros.geometry.calibration import (
    RigCalibration,
    homography_from_intrinsics,
    load_calibration,
)
from evseg_ros.labels import DSEC_11, VOID
from evseg_ros.sim import CoaxialRigSim, EventSimulator, Lighting, SimConfig, SimFrame

CALIBRATION = Path(__file__).resolve().parents[2] / "config" / "calibration" / "sim_rig.yaml"
STATIC = {"ego_speed_mps": 0.0, "num_vehicles": 0, "num_persons": 0}


@pytest.fixture(scope="module")
def calib() -> RigCalibration:
    return load_calibration(CALIBRATION)


def sim_with(calib: RigCalibration, **kw) -> CoaxialRigSim:
    return CoaxialRigSim(calib, SimConfig(**kw))


def event_rate(sim: CoaxialRigSim, t0: int, t1: int) -> float:
    ev = sim.event_simulator(t0)
    events, _ = ev.advance_to(t1)
    return events.size / ((t1 - t0) * 1e-6)


def test_frames_are_pure_functions_of_seed_and_time(calib) -> None:
    a = sim_with(calib, seed=7).render_frame(1_300_000)
    b = sim_with(calib, seed=7).render_frame(1_300_000)
    c = sim_with(calib, seed=8).render_frame(1_300_000)
    assert isinstance(a, SimFrame)
    for field in ("image", "labels", "instances"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert (a.lighting, a.exposure_us, a.t_us) == (b.lighting, b.exposure_us, 1_300_000)
    assert np.mean(a.labels != c.labels) > 0.05
    assert np.mean(np.abs(a.image.astype(int) - c.image.astype(int))) > 5


def test_frame_layout_and_types(calib) -> None:
    frame = sim_with(calib, lighting="normal").render_frame(0)
    h, w = calib.frame_camera.height, calib.frame_camera.width
    assert frame.image.shape == (h, w, 3) and frame.image.dtype == np.uint8
    assert frame.labels.shape == (h, w) and frame.labels.dtype == np.uint8
    assert frame.instances.shape == (h, w) and frame.instances.dtype == np.int32
    assert frame.labels.max() < DSEC_11.num_classes  # no void needed
    assert frame.lighting is Lighting.NORMAL and frame.exposure_us == 10_000


def test_event_labels_warp_onto_frame_labels(calib) -> None:
    """The calibration homography is exact ground truth for the simulated rig."""
    expected = homography_from_intrinsics(calib.event_camera, calib.frame_camera)
    np.testing.assert_allclose(calib.event_to_frame, expected, atol=1e-9)
    sim = sim_with(calib, seed=1)
    size = (calib.frame_camera.width, calib.frame_camera.height)
    for t_us in (0, 1_100_000, 2_700_000):
        frame = sim.render_frame(t_us)
        event_labels = sim.render_event_labels(t_us + frame.exposure_us // 2)
        assert event_labels.shape == (calib.event_camera.height, calib.event_camera.width)
        warped = cv2.warpPerspective(event_labels, calib.event_to_frame, size,
                                     flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                                     borderValue=VOID)
        overlap = warped != VOID
        assert overlap.mean() > 0.7  # the event view covers the frame's middle band
        agree = np.mean(warped[overlap] == frame.labels[overlap])
        assert agree >= 0.97, (t_us, agree)


def test_labels_do_not_depend_on_lighting(calib) -> None:
    labels = {mode: sim_with(calib, lighting=mode, seed=2).render_event_labels(900_000)
              for mode in ("normal", "night", "glare")}
    assert np.array_equal(labels["normal"], labels["night"])
    assert np.array_equal(labels["normal"], labels["glare"])


def test_night_is_dark_glare_saturates_normal_does_not(calib) -> None:
    stats = {}
    for mode in ("normal", "night", "glare"):
        frame = sim_with(calib, lighting=mode, seed=3).render_frame(2_000_000)
        saturated = np.mean(np.all(frame.image >= 250, axis=-1))
        stats[mode] = (frame.image.mean(), saturated, frame.exposure_us)
    assert stats["night"][0] < 0.5 * stats["normal"][0]
    assert stats["night"][2] > stats["normal"][2]  # longer exposure at night
    assert stats["glare"][1] > 0.25
    assert stats["normal"][1] < 0.02


def test_clean_render_is_the_same_well_exposed_sharp_frame_in_any_light(calib) -> None:
    """The training stand-in for EvLight: normal light, no blur, no noise, same scene."""
    moving = {"ego_speed_mps": 25.0, "blur_substeps": 8, "seed": 3}
    clean = {mode: sim_with(calib, lighting=mode, **moving).render_clean_frame(2_000_000)
             for mode in ("normal", "night", "glare")}
    assert clean["normal"].dtype == np.uint8 and clean["normal"].shape == (240, 320, 3)
    night_frame = sim_with(calib, lighting="night", **moving).render_frame(2_000_000)
    glare_frame = sim_with(calib, lighting="glare", **moving).render_frame(2_000_000)
    # Well exposed whatever the scene's light: neither dark nor clipped like the camera frame.
    assert clean["night"].mean() > 2 * night_frame.image.mean()
    assert np.mean(np.all(clean["glare"] >= 250, axis=-1)) < 0.05
    assert np.mean(np.all(glare_frame.image >= 250, axis=-1)) > 0.25
    # Noise-free and exposure-independent: the same pixels again, and under any lighting the
    # clean frames differ only by the exposure mid-point (night exposes longer).
    again = sim_with(calib, lighting="night", **moving).render_clean_frame(2_000_000)
    assert np.array_equal(again, clean["night"])
    assert np.array_equal(clean["normal"], clean["glare"])

    def sharpness(image: np.ndarray) -> float:
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        return float(cv2.Laplacian(gray[160:], cv2.CV_32F).var())

    blurred = sim_with(calib, lighting="normal", **moving).render_frame(2_000_000).image
    assert sharpness(clean["normal"]) > 1.3 * sharpness(blurred)


def test_night_frames_are_noisier(calib) -> None:
    """Same static scene twice with different noise draws: night differs far more."""
    diffs = {}
    for mode in ("normal", "night"):
        sim = sim_with(calib, lighting=mode, **STATIC)
        a = sim.render_frame(0).image.astype(np.float32)
        b = sim.render_frame(100_000).image.astype(np.float32)
        diffs[mode] = np.std(a - b) / max(a.mean(), 1.0)
    assert diffs["night"] > 3 * diffs["normal"]


def test_motion_blur_lowers_sharpness(calib) -> None:
    def sharpness(speed: float, substeps: int) -> float:
        frame = sim_with(calib, lighting="normal", exposure_us=40_000, blur_substeps=substeps,
                         num_vehicles=0, num_persons=0, seed=4, ego_speed_mps=speed
                         ).render_frame(0)
        gray = cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        return float(cv2.Laplacian(gray[160:], cv2.CV_32F).var())  # the near road moves most

    still = sharpness(0.0, 8)
    assert sharpness(20.0, 8) < 0.75 * still
    # Control: one render per exposure has no blur, so motion alone does not explain it.
    assert sharpness(20.0, 1) > 0.9 * still


def test_cycle_lighting_is_deterministic_and_visits_all_modes(calib) -> None:
    sim = sim_with(calib, lighting="cycle", lighting_period_s=2.0, seed=9)
    seq = [sim.lighting_at(t) for t in range(0, 6_000_000, 1_000_000)]
    assert seq == [sim_with(calib, lighting="cycle", lighting_period_s=2.0, seed=9)
                   .lighting_at(t) for t in range(0, 6_000_000, 1_000_000)]
    assert seq[0] == seq[1] and seq[2] == seq[3] and seq[4] == seq[5]
    assert {seq[0], seq[2], seq[4]} == set(Lighting)
    assert sim.render_frame(2_000_000).lighting is seq[2]


def test_trigger_times_are_frame_starts(calib) -> None:
    sim = sim_with(calib, frame_rate_hz=20.0)
    assert sim.frame_period_us() == 50_000
    assert sim.trigger_times(0, 200_000).tolist() == [0, 50_000, 100_000, 150_000]
    assert sim.trigger_times(1, 100_001).tolist() == [50_000, 100_000]
    assert sim.trigger_times(10, 10).size == 0
    assert sim.trigger_times(0, 1).dtype == np.int64


def test_event_stream_basic_properties(calib) -> None:
    sim = sim_with(calib, lighting="normal", seed=0)
    ev = sim.event_simulator(0)
    assert isinstance(ev, EventSimulator)
    events, triggers = ev.advance_to(150_000)
    assert events.dtype == EVENT_DTYPE and triggers.dtype == TRIGGER_DTYPE
    assert events.size > 10_000
    assert np.all(np.diff(events["t"]) >= 0)
    assert events["t"].min() >= 0 and events["t"].max() < 150_000
    assert events["x"].max() < calib.event_camera.width
    assert events["y"].max() < calib.event_camera.height
    assert 0.3 < events["p"].mean() < 0.7
    # Refractory period per pixel.
    order = np.lexsort((events["t"], events["y"], events["x"]))
    e = events[order]
    same = (e["x"][1:] == e["x"][:-1]) & (e["y"][1:] == e["y"][:-1])
    assert np.all(np.diff(e["t"])[same] >= sim.config.refractory_us)
    # Trigger edges: rising at k * period, falling a pulse width later.
    pulse = sim.config.trigger_pulse_us
    assert triggers["t"].tolist() == [0, pulse, 100_000, 100_000 + pulse]
    assert triggers["value"].tolist() == [1, 0, 1, 0]
    assert np.all(triggers["channel"] == 0)


def test_chunked_event_stream_matches_single_call(calib) -> None:
    whole = sim_with(calib, seed=5).event_simulator(20_000).advance_to(120_000)
    ev = sim_with(calib, seed=5).event_simulator(20_000)
    parts = [ev.advance_to(t) for t in (33_333, 70_000, 99_999, 120_000)]
    assert np.array_equal(whole[0], np.concatenate([p[0] for p in parts]))
    assert np.array_equal(whole[1], np.concatenate([p[1] for p in parts]))
    assert ev.time_us == 120_000


def test_events_keep_flowing_under_every_lighting(calib) -> None:
    """HDR: frames fail at night and under glare, event rates stay comparable."""
    rates = {mode: event_rate(sim_with(calib, lighting=mode, seed=6), 0, 100_000)
             for mode in ("normal", "night", "glare")}
    assert min(rates.values()) > 0.5 * max(rates.values()), rates
    assert min(rates.values()) > 1e5


def test_static_scene_gives_only_background_noise(calib) -> None:
    cfg = {"lighting": "normal", **STATIC}
    noisy = event_rate(sim_with(calib, noise_rate_hz=1.0, **cfg), 0, 500_000)
    pixels = calib.event_camera.width * calib.event_camera.height
    assert abs(noisy - pixels) < 0.05 * pixels
    assert event_rate(sim_with(calib, noise_rate_hz=0.0, **cfg), 0, 200_000) == 0


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="lighting"):
        SimConfig(lighting="dusk")
    with pytest.raises(ValueError, match="frame_rate_hz"):
        SimConfig(frame_rate_hz=0)
