from __future__ import annotations

import cv2
import numpy as np
import pytest
import yaml

from evseg_ros.geometry.calibrate import (
    CalibrationEstimateError,
    Checkerboard,
    PairedView,
    calibrate_rig,
    detect_corners,
    event_polarity_image,
    fit_event_to_frame,
    format_result,
    homography_transfer_error,
    mapping_error,
    resolve_corner_order,
    write_calibration,
)
from evseg_ros.geometry.calibration import (
    calibration_from_dict,
    homography_from_intrinsics,
    load_calibration,
)
from evseg_ros.sim.calibration_target import render_calibration_shots

BOARD = Checkerboard(9, 6, square_size_m=0.03)


def rotated_rig(sim_calibration):
    """Different focal lengths, shifted centre, a 3-degree rotation and event distortion.

    ``H = K_f R inv(K_e)`` is far from the shipped rig's mapping, so a trivial guess fails.
    """
    data = sim_calibration.to_dict()
    data["event_camera"]["camera_matrix"] = [300.0, 0, 205.0, 0, 301.0, 110.0, 0, 0, 1]
    data["event_camera"]["distortion"] = [-0.15, 0.05, 0.0, 0.0, 0.0]
    data["output"] = {"width": 1034, "height": 617, "crop": [0.0, 30.0, 320.0, 191.0]}
    partial = calibration_from_dict(data)
    rotation = cv2.Rodrigues(np.radians([1.5, -2.0, 3.0]))[0]
    homography = homography_from_intrinsics(partial.event_camera, partial.frame_camera, rotation)
    data["event_to_frame_homography"] = homography.ravel().tolist()
    return calibration_from_dict(data)


@pytest.fixture(scope="module")
def sim_shots(sim_calibration):
    return render_calibration_shots(sim_calibration, BOARD, count=4)


@pytest.fixture(scope="module")
def rotated(sim_calibration):
    truth = rotated_rig(sim_calibration)
    return truth, render_calibration_shots(truth, BOARD, count=4)


def views_of(shots):
    return [PairedView(s.frame_image, s.event_image, name=f"pose{i}") for i, s in enumerate(shots)]


def test_recovers_the_simulated_rig_mapping(sim_calibration, sim_shots):
    result = calibrate_rig(
        views_of(sim_shots),
        BOARD,
        event_camera=sim_calibration.event_camera,
        frame_camera=sim_calibration.frame_camera,
    )
    mean, worst = mapping_error(result.calibration, sim_calibration, step=2)
    print(
        f"\n{format_result(result)}\nsim rig 400x225 -> 320x240: mapping error over all event "
        f"pixels: mean {mean:.3f} px, max {worst:.3f} px"
    )
    assert mean < 0.5 and worst < 0.5
    assert result.fit.rms_px < 0.5 and result.fit.inliers == 4 * 54
    assert [v.corners for v in result.fit.views] == [54] * 4
    h_mean, h_max = homography_transfer_error(
        result.calibration.event_to_frame, sim_calibration.event_to_frame, 400, 225
    )
    assert h_mean == pytest.approx(mean, abs=0.02) and h_max < 0.5


def test_recovers_a_rotated_rig_with_distortion(sim_calibration, rotated):
    truth, shots = rotated
    trivial, _ = mapping_error(sim_calibration, truth)
    assert trivial > 5.0  # the shipped rig's mapping (or the identity) is far off
    result = calibrate_rig(
        views_of(shots),
        BOARD,
        event_camera=truth.event_camera,
        frame_camera=truth.frame_camera,
        output_size=(1034, 617),
        output_crop=truth.output_crop,
    )
    mean, worst = mapping_error(result.calibration, truth, step=2)
    xs, ys = np.mgrid[0:400:7, 0:225:7].reshape(2, -1)
    out_est = result.calibration.event_to_output_pixels(xs, ys)
    out_true = truth.event_to_output_pixels(xs, ys)
    out_err = np.hypot(out_est[0] - out_true[0], out_est[1] - out_true[1])
    print(
        f"\n{format_result(result)}\nrotated + distorted rig: mapping error (frame px) mean "
        f"{mean:.3f}, max {worst:.3f}; on the 1034x617 output grid mean {out_err.mean():.3f},"
        f" max {out_err.max():.3f}"
    )
    assert mean < 0.5 and worst < 0.5
    assert (result.calibration.output_width, result.calibration.output_height) == (1034, 617)


def test_estimates_intrinsics_from_the_views(rotated):
    truth, shots = rotated
    result = calibrate_rig(views_of(shots), BOARD, estimate_intrinsics=True)
    calibration = result.calibration
    print(f"\n{format_result(result)}")
    for estimated, true in (
        (calibration.event_camera, truth.event_camera),
        (calibration.frame_camera, truth.frame_camera),
    ):
        assert estimated.fx == pytest.approx(true.fx, rel=0.02)
        assert estimated.fy == pytest.approx(true.fy, rel=0.02)
    assert calibration.event_camera.distortion[0] == pytest.approx(-0.15, abs=0.03)
    assert result.event_intrinsics_rms_px < 0.5 and result.frame_intrinsics_rms_px < 0.5
    assert result.fit.rms_px < 0.5
    with pytest.raises(CalibrationEstimateError, match="at least 3 board poses"):
        calibrate_rig(views_of(shots[:2]), BOARD, estimate_intrinsics=True)


def test_detected_corners_are_sub_pixel(sim_shots):
    for shot in sim_shots:
        for image, truth in (
            (shot.frame_image, shot.frame_corners),
            (shot.event_image, shot.event_corners),
        ):
            corners = detect_corners(image, BOARD)
            assert corners is not None and corners.shape == (54, 2)
            error = np.linalg.norm(corners - truth, axis=1)
            # single corners of the noisy event image can be off by ~0.5 px; the fit averages
            assert error.mean() < 0.2 and error.max() < 0.8
    # the negative of an event image (the opposite blink) is found as well
    flipped = detect_corners(255 - sim_shots[0].event_image, BOARD)
    assert flipped is not None


def test_corner_order_is_made_consistent_across_views(sim_shots):
    events = [detect_corners(s.event_image, BOARD) for s in sim_shots]
    frames = [detect_corners(s.frame_image, BOARD) for s in sim_shots]
    _, flip_columns, flip_rows, turn = BOARD.symmetries()
    scrambled = [frames[0][flip_columns], frames[1][flip_rows], frames[2][turn], frames[3]]
    fixed = resolve_corner_order(events, scrambled, BOARD)
    reference = fit_event_to_frame(events, frames).homography
    repaired = fit_event_to_frame(events, fixed)
    # one consistent order: the same mapping up to the (mirror) order of the first view
    assert repaired.rms_px < 0.5
    agree = np.mean([np.allclose(f, g) for f, g in zip(fixed, frames)])
    assert agree in (0.0, 1.0)  # all views re-ordered alike
    if agree == 1.0:
        assert homography_transfer_error(repaired.homography, reference, 400, 225)[1] < 0.1


def test_ransac_drops_bad_corners():
    rng = np.random.default_rng(0)
    truth = np.array([[0.9, 0.02, 12.0], [-0.01, 0.88, 30.0], [1e-5, -2e-5, 1.0]])
    event_sets, frame_sets = [], []
    for _ in range(3):
        src = rng.uniform([0, 0], [400, 225], (28, 2))
        dst = cv2.perspectiveTransform(src.reshape(-1, 1, 2), truth).reshape(-1, 2)
        event_sets.append(src)
        frame_sets.append(dst + rng.normal(0, 0.05, dst.shape))
    frame_sets[1][5] += [25.0, -10.0]  # mis-detected corners
    frame_sets[2][0] += [0.0, 40.0]
    fit = fit_event_to_frame(event_sets, frame_sets, names=["a", "b", "c"])
    assert fit.inliers == 3 * 28 - 2 and fit.rms_px < 0.15
    assert [v.inliers for v in fit.views] == [28, 27, 27]
    assert homography_transfer_error(fit.homography, truth, 400, 225)[1] < 0.1


def test_views_without_a_board(sim_calibration, sim_shots):
    blank = PairedView(
        np.full((240, 320), 128, np.uint8), np.full((225, 400), 128, np.uint8), name="blank"
    )
    with pytest.raises(CalibrationEstimateError, match="not found in both images of any view"):
        calibrate_rig([blank], BOARD)
    result = calibrate_rig([*views_of(sim_shots[:2]), blank], BOARD)
    assert result.skipped_views == ("blank",)
    assert "skipped (board not found): blank" in format_result(result)
    with pytest.raises(CalibrationEstimateError, match="differ from the first view"):
        calibrate_rig(
            [views_of(sim_shots)[0], PairedView(blank.frame_image[:200], blank.event_image)],
            BOARD,
        )


def test_event_polarity_image_redraws_the_board(sim_shots):
    shot = sim_shots[0]
    image = event_polarity_image(shot.events, 400, 225)
    np.testing.assert_array_equal(image, shot.event_image)
    x, y = np.rint(shot.event_corners[0]).astype(int)
    assert image[y, x - 8] != image[y - 8, x - 8]  # neighbouring squares differ
    assert abs(int(image[5, 5]) - 128) < 20  # background: (almost) no events


def test_write_calibration_never_overwrites_silently(tmp_path, sim_calibration):
    path = tmp_path / "rig.yaml"
    write_calibration(sim_calibration, path, comment="rms 0.1 px\nsecond line")
    text = path.read_text()
    assert text.startswith("# rms 0.1 px\n# second line\n")
    loaded = load_calibration(path)
    np.testing.assert_array_equal(loaded.event_to_frame, sim_calibration.event_to_frame)
    with pytest.raises(FileExistsError, match="force"):
        write_calibration(sim_calibration, path)
    assert path.read_text() == text
    data = yaml.safe_load(text)
    data["output"] = {"width": 100, "height": 50}
    write_calibration(calibration_from_dict(data), path, force=True)
    assert load_calibration(path).output_width == 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rig.yaml"]  # no temp files left


def test_board_parsing():
    assert Checkerboard.parse("9x6", square_size_m=0.025).pattern_size == (9, 6)
    with pytest.raises(ValueError, match="9x6"):
        Checkerboard.parse("nine by six")
    with pytest.raises(ValueError, match="at least 2x2"):
        Checkerboard(1, 6)
    assert len(Checkerboard(5, 5).symmetries()) == 8
    assert BOARD.object_points()[1].tolist() == pytest.approx([0.03, 0.0, 0.0])
