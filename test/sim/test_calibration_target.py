from __future__ import annotations

import cv2
import numpy as np
import pytest

from evseg_ros.geometry.calibrate import Checkerboard
from evseg_ros.geometry.calibration import calibration_from_dict, homography_from_intrinsics
from evseg_ros.sim.calibration_target import (
    TargetRenderSettings,
    default_poses,
    project_to_event,
    render_calibration_shots,
    simulated_views,
)

BOARD = Checkerboard(9, 6)


@pytest.fixture(scope="module")
def shots(sim_calibration):
    return render_calibration_shots(sim_calibration, BOARD, count=2)


def _transfer(homography, points):
    return cv2.perspectiveTransform(points.reshape(-1, 1, 2), homography).reshape(-1, 2)


def test_true_corners_follow_the_calibration_homography(sim_calibration, shots):
    for shot in shots:
        mapped = _transfer(sim_calibration.event_to_frame, shot.event_corners)
        np.testing.assert_allclose(mapped, shot.frame_corners, atol=1e-6)


def test_rotated_distorted_rig_is_rendered_through_its_own_mapping(sim_calibration):
    data = sim_calibration.to_dict()
    data["event_camera"]["distortion"] = [-0.2, 0.05, 0.001, 0.0, 0.0]
    data["event_camera"]["camera_matrix"] = [290.0, 0, 200.0, 0, 290.0, 113.0, 0, 0, 1]
    partial = calibration_from_dict(data)
    rotation = cv2.Rodrigues(np.radians([-1.0, 2.0, -4.0]))[0]
    data["event_to_frame_homography"] = (
        homography_from_intrinsics(partial.event_camera, partial.frame_camera, rotation)
        .ravel()
        .tolist()
    )
    rig = calibration_from_dict(data)
    (shot,) = render_calibration_shots(rig, BOARD, poses=default_poses(rig, BOARD, 2)[1:])
    und_x, und_y = rig.event_camera.undistort_pixels(
        shot.event_corners[:, 0], shot.event_corners[:, 1]
    )
    mapped = _transfer(rig.event_to_frame, np.stack([und_x, und_y], axis=1))
    np.testing.assert_allclose(mapped, shot.frame_corners, atol=1e-6)
    # and the images agree with those true corners
    found = cv2.findChessboardCornersSB(
        shot.event_image, BOARD.pattern_size, flags=cv2.CALIB_CB_ACCURACY
    )[1].reshape(-1, 2)
    assert np.linalg.norm(found - shot.event_corners, axis=1).mean() < 0.25


def test_poses_keep_the_board_inside_the_event_image(sim_calibration):
    poses = default_poses(sim_calibration, BOARD, 8)
    assert len({p.rotation_vector for p in poses}) == 8
    right, bottom = BOARD.columns + 1, BOARD.rows + 1
    outline = np.array([[-2, -2, 0], [right, -2, 0], [right, bottom, 0], [-2, bottom, 0]])
    outline = outline * BOARD.square_size_m
    for pose in poses:
        points = (pose.rotation() @ outline.T).T + np.asarray(pose.translation_m)
        corners = project_to_event(sim_calibration, points)
        assert corners[:, 0].min() >= 0 and corners[:, 0].max() <= 399
        assert corners[:, 1].min() >= 0 and corners[:, 1].max() <= 224


def test_blink_gives_off_on_white_and_on_on_black(shots):
    shot = shots[0]
    events = shot.events
    assert set(np.unique(events["p"]).tolist()) == {0, 1}
    assert events["t"].min() >= 0 and events["t"].max() < TargetRenderSettings().window_us
    # corner (0, 0): the square up-left of it is white, the one up-right black
    x, y = np.rint(shot.event_corners[0]).astype(int)
    step = 6
    for (px, py), polarity in (((x - step, y - step), 0), ((x + step, y - step), 1)):
        at = events[(events["x"] == px) & (events["y"] == py)]
        assert len(at) >= 5, (px, py)
        assert np.mean(at["p"] == polarity) > 0.9
    # the static background only sees sensor noise
    corner = events[(events["x"] < 4) & (events["y"] < 4)]
    assert len(corner) <= 3
    fx, fy = np.rint(shot.frame_corners[0]).astype(int)
    assert shot.frame_image[fy - 4, fx - 4] > 200 and shot.frame_image[fy - 4, fx + 4] < 60


def test_shots_are_deterministic(sim_calibration, shots):
    again = render_calibration_shots(sim_calibration, BOARD, poses=[shots[0].pose])
    np.testing.assert_array_equal(again[0].frame_image, shots[0].frame_image)
    np.testing.assert_array_equal(again[0].events, shots[0].events)
    views = simulated_views(sim_calibration, BOARD, count=1)
    assert views[0].name == "sim_pose00" and views[0].event_image.shape == (225, 400)
