"""Rig geometry: calibration files, the event-to-output pixel mapping and its estimation.

The frame remapper (:mod:`evseg_ros.geometry.frame_remap`) and the estimation tool
(:mod:`evseg_ros.geometry.calibrate`) are imported from their modules: they need torch / a
checkerboard detector, which reading a calibration file does not.
"""

from __future__ import annotations

from evseg_ros.geometry.calibration import (
    CalibrationError,
    CameraModel,
    MappingKind,
    RigCalibration,
    StereoExtrinsics,
    aspect_crop,
    calibration_from_dict,
    homography_from_intrinsics,
    load_calibration,
)

__all__ = [
    "CalibrationError",
    "CameraModel",
    "MappingKind",
    "RigCalibration",
    "StereoExtrinsics",
    "aspect_crop",
    "calibration_from_dict",
    "homography_from_intrinsics",
    "load_calibration",
]
