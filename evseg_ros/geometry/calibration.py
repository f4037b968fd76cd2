"""Rig calibration: both cameras' intrinsics and the event-to-frame pixel mapping.

A beam splitter gives both cameras one centre of projection, so event pixels map to frame pixels
through a single homography ``H = K_frame @ R @ inv(K_event)`` (no depth dependence). The file is
the single source of truth for the accumulator's lookup table and for the simulated rig, which
renders each camera through these intrinsics so that its ground-truth mapping is this ``H``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml


class CalibrationError(ValueError):
    """A calibration file is missing, incomplete or numerically unusable."""


@dataclass(frozen=True)
class CameraModel:
    """Pinhole intrinsics (OpenCV convention: pixel centres at integer coordinates)."""

    width: int
    height: int
    camera_matrix: np.ndarray  # (3, 3) float64
    distortion: np.ndarray  # (k,) float64, OpenCV order k1 k2 p1 p2 [k3 ...]

    @property
    def fx(self) -> float:
        return float(self.camera_matrix[0, 0])

    @property
    def fy(self) -> float:
        return float(self.camera_matrix[1, 1])

    @property
    def cx(self) -> float:
        return float(self.camera_matrix[0, 2])

    @property
    def cy(self) -> float:
        return float(self.camera_matrix[1, 2])

    def to_dict(self) -> dict:
        return {
            "width": self.width,
            "height": self.height,
            "camera_matrix": self.camera_matrix.reshape(-1).tolist(),
            "distortion": self.distortion.tolist(),
        }


@dataclass(frozen=True)
class RigCalibration:
    """Everything needed to put an event at the frame pixel it images."""

    event_camera: CameraModel
    frame_camera: CameraModel
    event_to_frame: np.ndarray  # (3, 3) homography, event pixel -> frame pixel
    output_width: int
    output_height: int

    def map_event_pixels(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map event pixel coordinates to (float) frame pixel coordinates."""
        pts = np.stack([x, y, np.ones_like(x)], axis=0).astype(np.float64)
        mapped = self.event_to_frame @ pts
        return mapped[0] / mapped[2], mapped[1] / mapped[2]

    def to_dict(self) -> dict:
        return {
            "event_camera": self.event_camera.to_dict(),
            "frame_camera": self.frame_camera.to_dict(),
            "event_to_frame_homography": self.event_to_frame.reshape(-1).tolist(),
            "output": {"width": self.output_width, "height": self.output_height},
        }


def _field(data: dict, key: str, where: str):
    try:
        return data[key]
    except (KeyError, TypeError):
        msg = f"{where}: missing field {key!r}"
        raise CalibrationError(msg) from None


def _matrix(values, shape: tuple[int, ...], where: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.size != int(np.prod(shape)) or not np.all(np.isfinite(array)):
        msg = f"{where}: expected {int(np.prod(shape))} finite numbers, got {values!r}"
        raise CalibrationError(msg)
    return array.reshape(shape)


def _camera(data: dict, where: str) -> CameraModel:
    width = int(_field(data, "width", where))
    height = int(_field(data, "height", where))
    if width <= 0 or height <= 0:
        msg = f"{where}: image size must be positive, got {width!r}x{height!r}"
        raise CalibrationError(msg)
    matrix = _matrix(_field(data, "camera_matrix", where), (3, 3), f"{where}.camera_matrix")
    distortion = np.asarray(data.get("distortion", []), dtype=np.float64).reshape(-1)
    return CameraModel(width, height, matrix, distortion)


def calibration_from_dict(data: dict, *, source: str = "<dict>") -> RigCalibration:
    """Validate and build a calibration; errors name ``source`` and the bad field."""
    event = _camera(_field(data, "event_camera", source), f"{source}: event_camera")
    frame = _camera(_field(data, "frame_camera", source), f"{source}: frame_camera")
    homography = _matrix(
        _field(data, "event_to_frame_homography", source), (3, 3), f"{source}: homography"
    )
    if abs(np.linalg.det(homography)) < 1e-12:
        msg = f"{source}: event_to_frame_homography is not invertible: {homography.tolist()!r}"
        raise CalibrationError(msg)
    output = data.get("output", {"width": frame.width, "height": frame.height})
    return RigCalibration(
        event, frame, homography, int(_field(output, "width", source)),
        int(_field(output, "height", source)),
    )


def load_calibration(path: str | Path) -> RigCalibration:
    """Read a calibration YAML file (see ``config/calibration/sim_rig.yaml``)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        msg = f"cannot read calibration file {str(path)!r}: {err}"
        raise CalibrationError(msg) from err
    except yaml.YAMLError as err:
        msg = f"calibration file {str(path)!r} is not valid YAML: {err}"
        raise CalibrationError(msg) from err
    return calibration_from_dict(data, source=str(path))


def homography_from_intrinsics(
    event_camera: CameraModel, frame_camera: CameraModel, rotation: np.ndarray | None = None
) -> np.ndarray:
    """Return ``K_frame @ R @ inv(K_event)``: the exact mapping of a coaxial (shared centre) rig."""
    rot = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
    homography = frame_camera.camera_matrix @ rot @ np.linalg.inv(event_camera.camera_matrix)
    return homography / homography[2, 2]
