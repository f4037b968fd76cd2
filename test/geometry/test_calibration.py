from __future__ import annotations

import numpy as np
import pytest
import yaml

from evseg_ros.geometry import (
    CalibrationError,
    calibration_from_dict,
    homography_from_intrinsics,
    load_calibration,
)


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
