"""Rig geometry: calibration files and the event-to-frame pixel mapping."""

from __future__ import annotations

from evseg_ros.geometry.calibration import (
    CalibrationError,
    CameraModel,
    RigCalibration,
    calibration_from_dict,
    homography_from_intrinsics,
    load_calibration,
)

__all__ = [
    "CalibrationError",
    "CameraModel",
    "RigCalibration",
    "calibration_from_dict",
    "homography_from_intrinsics",
    "load_calibration",
]
