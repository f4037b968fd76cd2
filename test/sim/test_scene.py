"""Procedural world and ray caster: determinism, layout, classes, depth order, anchoring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evseg_ros.geometry.calibration import CameraModel, load_calibration
from evseg_ros.labels import DSEC_11
from evseg_ros.sim.scene import (
    ANCHOR_M,
    Illumination,
    Renderer,
    World,
    hash_uniform,
)

CALIBRATION = Path(__file__).resolve().parents[2] / "config" / "calibration" / "sim_rig.yaml"
ROAD = DSEC_11.index("road")
SKY = DSEC_11.index("background")
THINGS = {DSEC_11.index(n) for n in ("person", "pole", "vehicle", "traffic_sign")}


@pytest.fixture(scope="module")
def cameras() -> tuple[CameraModel, CameraModel]:
    calib = load_calibration(CALIBRATION)
    return calib.event_camera, calib.frame_camera


def test_hash_uniform_is_deterministic_in_range_and_stream_dependent() -> None:
    idx = np.arange(-500, 500)
    a = hash_uniform(3, 7, idx, 2)
    assert a.shape == (1000, 2)
    assert np.array_equal(a, hash_uniform(3, 7, idx, 2))
    assert a.min() >= 0.0 and a.max() < 1.0
    assert abs(a.mean() - 0.5) < 0.05
    assert not np.allclose(a, hash_uniform(3, 8, idx, 2))
    assert not np.allclose(a, hash_uniform(4, 7, idx, 2))
    assert not np.allclose(a[:, 0], a[:, 1])


def test_renders_are_deterministic_and_depend_on_seed(cameras) -> None:
    event_cam, _ = cameras
    first = Renderer(World(seed=5), event_cam).render(1_234_567, Illumination(), "rgb")
    again = Renderer(World(seed=5), event_cam).render(1_234_567, Illumination(), "rgb")
    other = Renderer(World(seed=6), event_cam).render(1_234_567, Illumination(), "rgb")
    assert np.array_equal(first.radiance, again.radiance)
    assert np.array_equal(first.labels, again.labels)
    assert np.array_equal(first.instances, again.instances)
    assert np.mean(first.labels != other.labels) > 0.05
    assert first.radiance.dtype == np.float32 and np.all(np.isfinite(first.radiance))


def test_all_dsec_classes_appear_over_a_few_seconds(cameras) -> None:
    _, frame_cam = cameras
    for seed in (0, 1):
        renderer = Renderer(World(seed=seed), frame_cam)
        seen: set[int] = set()
        for t_us in range(0, 3_000_000, 500_000):
            seen |= set(np.unique(renderer.render(t_us, Illumination(), "labels").labels).tolist())
        assert seen == set(range(DSEC_11.num_classes)), (seed, seen)


def test_road_fills_the_lower_middle_and_sky_the_top(cameras) -> None:
    for camera in cameras:
        renderer = Renderer(World(seed=2), camera)
        h, w = camera.height, camera.width
        for t_us in (0, 2_000_000, 4_000_000):
            labels = renderer.render(t_us, Illumination(), "labels").labels
            bottom = labels[int(0.8 * h) :, int(0.3 * w) : int(0.7 * w)]
            top = labels[: int(0.1 * h), int(0.4 * w) : int(0.6 * w)]
            assert np.mean(bottom == ROAD) > 0.9
            assert np.mean(top == SKY) > 0.9


def test_instances_mark_exactly_the_objects_and_stay_stable(cameras) -> None:
    _, frame_cam = cameras
    renderer = Renderer(World(seed=0), frame_cam)
    a = renderer.render(1_000_000, Illumination(), "labels")
    b = renderer.render(1_050_000, Illumination(), "labels")
    thing = np.isin(a.labels, list(THINGS))
    assert np.all(a.instances[thing] > 0)
    assert np.all(a.instances[~thing] == 0)
    ids_a, counts_a = np.unique(a.instances[a.instances > 0], return_counts=True)
    ids_b = set(np.unique(b.instances[b.instances > 0]).tolist())
    big = ids_a[counts_a > 200]  # objects large enough to stay in view for 50 ms
    assert big.size >= 2
    assert set(big.tolist()) <= ids_b
    # One id never spans two classes.
    for obj in ids_a:
        assert np.unique(a.labels[a.instances == obj]).size == 1


def test_objects_win_the_depth_test_only_where_they_are_closer(cameras) -> None:
    event_cam, _ = cameras
    full = Renderer(World(seed=1), event_cam).render(800_000, Illumination(), "labels")
    empty = Renderer(World(seed=1, num_vehicles=0, num_persons=0), event_cam).render(
        800_000, Illumination(), "labels")
    moved = full.instances != empty.instances
    assert moved.sum() > 500
    assert np.all(full.depth[moved] <= empty.depth[moved] + 1e-3)
    vehicles = (full.labels == DSEC_11.index("vehicle")) | (full.labels == DSEC_11.index("person"))
    assert np.all(moved[vehicles])


def test_textures_are_world_anchored(cameras) -> None:
    """A stopped ego in an empty street sees a still image; a moving one sees it change."""
    event_cam, _ = cameras
    still = Renderer(World(seed=0, ego_speed_mps=0.0, num_vehicles=0, num_persons=0), event_cam)
    a = still.render(0, Illumination(), "luminance").luminance
    b = still.render(3_000_000, Illumination(), "luminance").luminance
    assert np.array_equal(a, b)
    moving = Renderer(World(seed=0, ego_speed_mps=10.0, num_vehicles=0, num_persons=0),
                      event_cam)
    c = moving.render(20_000, Illumination(), "luminance").luminance
    d = moving.render(20_000 + 5_000, Illumination(), "luminance").luminance
    changed = np.abs(np.log(c + 1e-4) - np.log(d + 1e-4)) > 0.05
    assert changed.mean() > 0.05


def test_texture_is_continuous_across_local_frame_anchor(cameras) -> None:
    """Re-anchoring the float32 local frame (every 64 m) must not make the image jump."""
    event_cam, _ = cameras
    speed = 16.0
    renderer = Renderer(World(seed=0, ego_speed_mps=speed, num_vehicles=0, num_persons=0),
                        event_cam)
    t_cross = int(ANCHOR_M / speed * 1e6)  # ego crosses an anchor boundary here
    before = renderer.render(t_cross - 50, Illumination(), "luminance").luminance
    after = renderer.render(t_cross + 50, Illumination(), "luminance").luminance
    rel = np.abs(np.log(before + 1e-4) - np.log(after + 1e-4))
    assert np.median(rel) < 0.01
    assert np.mean(rel > 0.2) < 0.02


def test_luminance_mode_matches_rgb(cameras) -> None:
    event_cam, _ = cameras
    renderer = Renderer(World(seed=3), event_cam)
    illum = Illumination(sun=0.01, sky=0.003, lamps=0.1, lamp_heads=1.0)
    rgb = renderer.render(500_000, illum, "rgb").radiance
    lum = renderer.render(500_000, illum, "luminance").luminance
    expected = rgb @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    np.testing.assert_allclose(lum, expected, rtol=1e-4, atol=1e-6)


def test_lighting_scales_radiance_but_not_labels(cameras) -> None:
    event_cam, _ = cameras
    renderer = Renderer(World(seed=4), event_cam)
    day = renderer.render(700_000, Illumination(), "luminance")
    dark = renderer.render(700_000, Illumination(sun=0.01, sky=0.01, vehicle_lights=0.01),
                           "luminance")
    assert np.array_equal(day.labels, dark.labels)
    np.testing.assert_allclose(dark.luminance, 0.01 * day.luminance, rtol=1e-4, atol=1e-7)


def test_distorted_camera_renders_the_same_scene(cameras) -> None:
    event_cam, _ = cameras
    distorted = CameraModel(event_cam.width, event_cam.height, event_cam.camera_matrix,
                            np.array([-0.05, 0.01, 0.0, 0.0, 0.0]))
    world = World(seed=0)
    plain = Renderer(world, event_cam).render(0, Illumination(), "labels").labels
    warped = Renderer(world, distorted).render(0, Illumination(), "labels").labels
    h, w = plain.shape
    centre = (slice(h // 2 - 10, h // 2 + 10), slice(w // 2 - 10, w // 2 + 10))
    assert np.mean(plain[centre] == warped[centre]) > 0.95  # no distortion at the centre
    assert np.mean(plain != warped) > 0.01  # but the periphery moves


def test_unknown_render_mode_is_rejected(cameras) -> None:
    with pytest.raises(ValueError, match="render mode"):
        Renderer(World(), cameras[0]).render(0, Illumination(), "depth")
