from __future__ import annotations

import copy
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from evseg_ros.events.event_frame import build_pixel_lut
from evseg_ros.geometry import (
    CalibrationError,
    calibration_from_dict,
    homography_from_intrinsics,
    load_calibration,
)
from evseg_ros.geometry.calibration import MappingKind, aspect_crop


def test_shipped_sim_calibration_homography_matches_its_intrinsics(sim_calibration):
    expected = homography_from_intrinsics(
        sim_calibration.event_camera, sim_calibration.frame_camera
    )
    np.testing.assert_allclose(sim_calibration.event_to_frame, expected, atol=1e-9)
    assert (sim_calibration.output_width, sim_calibration.output_height) == (320, 240)


def test_missing_field_and_singular_mapping_are_named(tmp_path, sim_calibration):
    data = sim_calibration.to_dict()
    del data["frame_camera"]["camera_matrix"]
    with pytest.raises(CalibrationError, match=r"frame_camera: missing field 'camera_matrix'"):
        calibration_from_dict(data, source="x.yaml")
    data = sim_calibration.to_dict()
    data["event_to_frame_homography"] = [0.0] * 9
    with pytest.raises(CalibrationError, match="not invertible"):
        calibration_from_dict(data)
    path = tmp_path / "broken.yaml"
    path.write_text("event_camera: [unclosed")
    with pytest.raises(CalibrationError, match=r"broken\.yaml"):
        load_calibration(path)
    with pytest.raises(CalibrationError, match="cannot read"):
        load_calibration(tmp_path / "absent.yaml")


def test_round_trip_through_yaml(tmp_path, sim_calibration):
    path = tmp_path / "calib.yaml"
    path.write_text(yaml.safe_dump(sim_calibration.to_dict()))
    loaded = load_calibration(path)
    np.testing.assert_array_equal(loaded.event_to_frame, sim_calibration.event_to_frame)
    assert loaded.event_camera.width == 400 and loaded.frame_camera.height == 240


# -- file validation ------------------------------------------------------------------------------
REPO_ROOT = Path(__file__).resolve().parents[2]
RPEA_EXAMPLE = REPO_ROOT / "config" / "calibration" / "rpea_example.yaml"


def _without(data: dict, dotted: str) -> dict:
    data = copy.deepcopy(data)
    *parents, last = dotted.split(".")
    node = data
    for key in parents:
        node = node[key]
    del node[last]
    return data


def _with(data: dict, dotted: str, value) -> dict:
    data = copy.deepcopy(data)
    *parents, last = dotted.split(".")
    node = data
    for key in parents:
        node = node[key]
    node[last] = value
    return data


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("event_camera", r"rig\.yaml: missing field 'event_camera'"),
        ("frame_camera", r"rig\.yaml: missing field 'frame_camera'"),
        ("event_camera.width", r"event_camera: missing field 'width'"),
        ("event_camera.height", r"event_camera: missing field 'height'"),
        ("event_camera.camera_matrix", r"event_camera: missing field 'camera_matrix'"),
        ("frame_camera.width", r"frame_camera: missing field 'width'"),
        ("frame_camera.height", r"frame_camera: missing field 'height'"),
        ("frame_camera.camera_matrix", r"frame_camera: missing field 'camera_matrix'"),
        ("event_to_frame_homography", r"missing field 'event_to_frame_homography'"),
        ("output.width", r"output: missing field 'width'"),
        ("output.height", r"output: missing field 'height'"),
    ],
)
def test_each_missing_field_is_named(sim_calibration, field, message):
    with pytest.raises(CalibrationError, match=message):
        calibration_from_dict(_without(sim_calibration.to_dict(), field), source="rig.yaml")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("event_camera.width", 0, r"event_camera\.width: must be positive, got 0"),
        ("frame_camera.height", -240, r"frame_camera\.height: must be positive, got -240"),
        ("output.width", 0, r"output\.width: must be positive, got 0"),
        ("event_camera.width", "wide", r"event_camera\.width: expected a positive integer"),
        ("output.crop", [0, 0, 0, 240], r"output\.crop: width and height must be positive"),
        (
            "frame_camera.camera_matrix",
            [float("nan")] + [0.0] * 8,
            r"frame_camera\.camera_matrix: expected 9 finite numbers, got \[nan",
        ),
        ("event_camera.camera_matrix", [0.0] * 9, r"event_camera\.camera_matrix: .*not invert"),
        ("event_camera.distortion", [0.1, 0.2, 0.3], r"event_camera\.distortion: expected 0 or 4"),
        (
            "event_to_frame_homography",
            [1.0, 0.0, float("nan"), 0, 1, 0, 0, 0, 1],
            r"event_to_frame_homography: expected 9 finite numbers, got \[1\.0, 0\.0, nan",
        ),
        (
            "event_to_frame_homography",
            [1.0, 2.0, 3.0, 2.0, 4.0, 6.0, 0.0, 0.0, 1.0],
            r"event_to_frame_homography: matrix is not invertible",
        ),
        (
            "event_to_frame_homography",
            [1.0, 0.0, 5000.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            r"event_to_frame_homography: maps the whole event image outside the 320x240 frame",
        ),
        (
            "event_to_frame_homography",
            [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, -0.01, 0.0, 1.0],
            r"event_to_frame_homography: maps part of the event image through infinity",
        ),
        ("mapping", "affine", r"mapping: expected one of \['homography', 'stereo'\], got 'affine'"),
    ],
)
def test_bad_values_are_named_with_the_value(sim_calibration, field, value, message):
    with pytest.raises(CalibrationError, match=message):
        calibration_from_dict(_with(sim_calibration.to_dict(), field, value), source="rig.yaml")


def test_empty_file_and_non_mapping_are_clear_errors(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    with pytest.raises(CalibrationError, match=r"empty\.yaml: expected a mapping"):
        load_calibration(path)
    path.write_text("event_camera: 3\nframe_camera: 4\n")
    with pytest.raises(CalibrationError, match=r"event_camera: expected a mapping, got 3"):
        load_calibration(path)


def test_output_defaults_to_frame_size(sim_calibration):
    calibration = calibration_from_dict(_without(sim_calibration.to_dict(), "output"))
    assert (calibration.output_width, calibration.output_height) == (320, 240)
    assert calibration.output_crop is None and calibration.output_is_frame_grid


def test_negated_homography_is_the_same_mapping(sim_calibration):
    data = sim_calibration.to_dict()
    data["event_to_frame_homography"] = [-v for v in data["event_to_frame_homography"]]
    calibration = calibration_from_dict(data)
    xs, ys = np.array([0, 200, 399]), np.array([0, 112, 224])
    np.testing.assert_allclose(
        calibration.map_event_pixels(xs, ys), sim_calibration.map_event_pixels(xs, ys), atol=1e-9
    )


# -- stereo mapping -------------------------------------------------------------------------------
def test_stereo_mapping_derives_the_plane_homography(sim_calibration):
    rotation = cv2.Rodrigues(np.radians([0.5, -1.0, 2.0]))[0]
    translation = np.array([0.05, 0.0, 0.0])
    data = _without(sim_calibration.to_dict(), "event_to_frame_homography")
    data["mapping"] = "stereo"
    data["stereo"] = {"rotation": rotation.ravel().tolist(), "translation_m": translation.tolist()}
    at_infinity = calibration_from_dict(data)
    assert at_infinity.mapping is MappingKind.STEREO
    expected = homography_from_intrinsics(
        sim_calibration.event_camera, sim_calibration.frame_camera, rotation
    )
    np.testing.assert_allclose(at_infinity.event_to_frame, expected, atol=1e-12)

    # A point on the plane at depth d lands where both cameras really image it.
    data["stereo"]["plane_depth_m"] = 4.0
    on_plane = calibration_from_dict(data)
    point_e = np.array([0.3, -0.2, 4.0])  # event-camera coordinates, on the plane z = 4
    k_e = sim_calibration.event_camera.camera_matrix
    k_f = sim_calibration.frame_camera.camera_matrix
    pe, pf = k_e @ point_e, k_f @ (rotation @ point_e + translation)
    fx, fy = on_plane.map_event_pixels(np.array([pe[0] / pe[2]]), np.array([pe[1] / pe[2]]))
    np.testing.assert_allclose([fx[0], fy[0]], pf[:2] / pf[2], atol=1e-9)

    # Rodrigues vectors are accepted; round trip keeps the stereo form.
    data["stereo"]["rotation"] = cv2.Rodrigues(rotation)[0].ravel().tolist()
    again = calibration_from_dict(
        yaml.safe_load(yaml.safe_dump(calibration_from_dict(data).to_dict()))
    )
    np.testing.assert_allclose(again.event_to_frame, on_plane.event_to_frame, atol=1e-12)
    assert again.stereo is not None and again.stereo.plane_depth_m == 4.0


def test_stereo_errors_are_named(sim_calibration):
    data = _without(sim_calibration.to_dict(), "event_to_frame_homography")
    data["mapping"] = "stereo"
    with pytest.raises(CalibrationError, match=r"missing field 'stereo'"):
        calibration_from_dict(data)
    data["stereo"] = {"rotation": np.eye(3).ravel().tolist()}
    with pytest.raises(CalibrationError, match=r"stereo: missing field 'translation_m'"):
        calibration_from_dict(data)
    data["stereo"] = {"rotation": [1, 0, 0, 0, 2, 0, 0, 0, 1], "translation_m": [0, 0, 0]}
    with pytest.raises(CalibrationError, match=r"stereo\.rotation: not a rotation matrix"):
        calibration_from_dict(data)
    data["stereo"] = {"rotation": [0, 0, 0], "translation_m": [0, 0, 0], "plane_depth_m": -1}
    with pytest.raises(CalibrationError, match=r"plane_depth_m: expected a positive depth"):
        calibration_from_dict(data)
    data["stereo"]["plane_depth_m"] = 5.0
    data["event_to_frame_homography"] = np.eye(3).ravel().tolist()
    with pytest.raises(CalibrationError, match=r"not allowed with mapping 'stereo'"):
        calibration_from_dict(data)


# -- output grid and distortion -------------------------------------------------------------------
def _scaled(calibration, width, height, crop=None):
    data = calibration.to_dict()
    data["output"] = {"width": width, "height": height}
    if crop is not None:
        data["output"]["crop"] = list(crop)
    return calibration_from_dict(data)


def test_output_grid_follows_cv2_resize_convention(sim_calibration):
    half = _scaled(sim_calibration, 160, 120)
    s = half.frame_to_output
    # cv2.resize by 1/2: output pixel 0 covers frame pixels 0 and 1, so its centre is at 0.5
    np.testing.assert_allclose(s @ [0.5, 0.5, 1.0], [0.0, 0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(s @ [318.5, 238.5, 1.0], [159.0, 119.0, 1.0], atol=1e-12)
    # the frame remap of a smooth image equals cv2.resize
    yy, xx = np.mgrid[0:240, 0:320].astype(np.float32)
    image = np.sin(xx / 9.0) * 50 + np.cos(yy / 7.0) * 40 + 100
    map_x, map_y = half.frame_remap_maps()
    assert map_x.shape == (120, 160) and map_x.dtype == np.float32
    remapped = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    resized = cv2.resize(image, (160, 120), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(remapped, resized, atol=1e-3)


def test_event_to_output_is_frame_to_output_after_the_homography(sim_calibration):
    crop = (10.0, 20.0, 300.0, 200.0)
    scaled = _scaled(sim_calibration, 1034, 617, crop)
    assert not scaled.output_is_frame_grid
    rng = np.random.default_rng(1)
    xs, ys = rng.uniform(0, 399, 200), rng.uniform(0, 224, 200)
    fx, fy = sim_calibration.map_event_pixels(xs, ys)
    u, v = scaled.event_to_output_pixels(xs, ys)
    np.testing.assert_allclose(u, (fx + 0.5 - 10.0) * 1034 / 300.0 - 0.5, atol=1e-9)
    np.testing.assert_allclose(v, (fy + 0.5 - 20.0) * 617 / 200.0 - 0.5, atol=1e-9)
    mapped = scaled.event_to_output @ np.stack([xs, ys, np.ones_like(xs)])
    np.testing.assert_allclose(mapped[0] / mapped[2], u, atol=1e-9)


def test_event_distortion_is_undone_before_the_homography(sim_calibration):
    data = _with(sim_calibration.to_dict(), "event_camera.distortion", [-0.2, 0.05, 0, 0, 0])
    distorted = calibration_from_dict(data)
    camera = distorted.event_camera
    ideal_x, ideal_y = np.array([20.0, 199.5, 380.0]), np.array([10.0, 112.0, 215.0])
    raw_x, raw_y = camera.distort_pixels(ideal_x, ideal_y)
    assert np.abs(raw_x - ideal_x).max() > 1.0  # the distortion is not negligible
    fx, fy = distorted.map_event_pixels(raw_x, raw_y)
    ex, ey = sim_calibration.map_event_pixels(ideal_x, ideal_y)
    np.testing.assert_allclose(fx, ex, atol=1e-6)
    np.testing.assert_allclose(fy, ey, atol=1e-6)


def test_frame_remap_maps_undistort_the_frame(sim_calibration):
    data = _with(sim_calibration.to_dict(), "frame_camera.distortion", [-0.25, 0.08, 0, 0, 0])
    calibration = calibration_from_dict(data)
    map_x, map_y = calibration.frame_remap_maps()
    camera = calibration.frame_camera
    for u, v in ((0, 0), (160, 120), (319, 239), (40, 200)):
        # output pixel (u, v) is undistorted frame pixel (u, v) here; it samples its raw pixel
        rx, ry = camera.distort_pixels(np.array([float(u)]), np.array([float(v)]))
        assert map_x[v, u] == pytest.approx(rx[0], abs=1e-3)
        assert map_y[v, u] == pytest.approx(ry[0], abs=1e-3)


# -- the event lookup table -----------------------------------------------------------------------
def _check_lut_matches_mapping(calibration):
    lut = build_pixel_lut(calibration)
    event = calibration.event_camera
    ys, xs = np.mgrid[0 : event.height, 0 : event.width]
    u, v = calibration.event_to_output_pixels(xs.ravel(), ys.ravel())
    ou, ov = np.rint(u).astype(np.int64), np.rint(v).astype(np.int64)
    inside = (
        (ou >= 0) & (ou < calibration.output_width) & (ov >= 0) & (ov < calibration.output_height)
    )
    np.testing.assert_array_equal(lut[inside], ov[inside] * calibration.output_width + ou[inside])
    assert np.all(lut[~inside] == -1)
    return lut, inside


def test_lut_rounds_event_to_output_pixels_on_a_scaled_grid(sim_calibration):
    scaled = _scaled(sim_calibration, 1034, 617, aspect_crop((0, 30, 320, 180), 1034, 617))
    lut, inside = _check_lut_matches_mapping(scaled)
    assert inside.mean() > 0.9  # the crop lies in the event footprint: most events map
    assert lut.max() < 1034 * 617


def test_lut_on_the_rpea_example_rig():
    calibration = load_calibration(RPEA_EXAMPLE)
    assert (calibration.output_width, calibration.output_height) == (1034, 617)
    assert calibration.event_camera.is_distorted and calibration.frame_camera.is_distorted
    lut, inside = _check_lut_matches_mapping(calibration)
    # every output pixel is reached by some event pixel (the crop lies in the event footprint)
    assert np.unique(lut[inside]).size == 1034 * 617
    assert 0.85 < inside.mean() < 1.0


def test_lut_is_unchanged_for_the_shipped_sim_rig(sim_calibration):
    """Output = frame grid: the table is the plain rounded homography, as before."""
    lut = build_pixel_lut(sim_calibration)
    ys, xs = np.mgrid[0:225, 0:400].astype(np.float32)
    pts = np.stack([xs.ravel(), ys.ravel()], axis=1).reshape(-1, 1, 2)
    mapped = cv2.perspectiveTransform(pts, sim_calibration.event_to_frame).reshape(-1, 2)
    fx, fy = np.rint(mapped[:, 0]).astype(int), np.rint(mapped[:, 1]).astype(int)
    inside = (fx >= 0) & (fx < 320) & (fy >= 0) & (fy < 240)
    same = lut == np.where(inside, fy * 320 + fx, -1)
    assert same.mean() > 0.9999  # float32 vs float64 may differ on an exact .5 only
