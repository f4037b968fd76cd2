"""Rig calibration: both cameras' intrinsics, the event-to-frame mapping and the output grid.

A beam splitter gives both cameras one centre of projection, so event pixels map to frame pixels
through a single homography ``H = K_frame @ R @ inv(K_event)`` (no depth dependence). The file is
the single source of truth for the accumulator's lookup table, the frame remap and the simulated
rig, which renders each camera through these intrinsics so that its ground-truth mapping is ``H``.

Conventions (every consumer follows these; the tests pin them down)
--------------------------------------------------------------------
* **Pixels**: OpenCV's. Pixel centres sit at integer coordinates, ``(0, 0)`` is the centre of
  the top-left pixel, so an image of width ``W`` spans ``[-0.5, W - 0.5]``.
* **Distortion**: raw pixels of both cameras are distorted (OpenCV model, ``k1 k2 p1 p2 [k3 ..]``).
  ``event_to_frame`` maps *undistorted* event pixels (camera matrix ``K_event``) to *undistorted*
  frame pixels (``K_frame``): an event pixel is undistorted first, then mapped. With zero
  distortion, undistorted pixels are the raw ones.
* **Mapping** (``mapping:`` in the file):

  - ``homography`` (default): ``event_to_frame_homography`` is given directly (9 numbers).
  - ``stereo``: ``stereo.rotation`` ``R`` (9 numbers, or a 3-number Rodrigues vector) and
    ``stereo.translation_m`` ``T`` take event-camera coordinates to frame-camera coordinates,
    ``X_f = R X_e + T`` (``cv2.stereoCalibrate``'s convention with the event camera first), plus
    the depth ``stereo.plane_depth_m`` of the fronto-parallel plane aligned exactly (default
    infinity). The homography is derived as ``K_f (R + T n^T / d) inv(K_e)``, ``n = (0, 0, 1)``.
    We map through this plane-induced homography after undistorting both cameras instead of a
    full ``cv2.stereoRectify``: rectification aligns rows but leaves a depth-dependent
    disparity, while the accumulator needs one output pixel per event pixel without depth.
    Behind a beam splitter ``T`` is ~0 and the mapping is exact; for a side-by-side pair the
    residual parallax at depth ``Z`` is ``f |T| |1/Z - 1/d|`` pixels.
* **Output grid**: the network runs at ``output.width x output.height`` (RPEA: 1034x617). A
  region of the *undistorted* frame, ``output.crop = [x0, y0, w, h]`` in frame pixels (edges, so
  ``[0, 0, W, H]`` is the whole frame, the default), is scaled onto the output grid area to area,
  exactly like ``cv2.resize``::

      u_out = (u_frame + 0.5 - x0) * out_width / w - 0.5
      v_out = (v_frame + 0.5 - y0) * out_height / h - 0.5

  (:attr:`RigCalibration.frame_to_output`, a 3x3 matrix ``S``). Hence

  - event pixel -> output pixel = ``S @ event_to_frame`` applied to the undistorted event pixel
    (:meth:`RigCalibration.event_to_output_pixels`; the accumulator's lookup table rounds it);
  - frame image -> output image: for every output pixel the raw frame pixel to sample is
    ``distort(inv(S) @ p_out)`` (:meth:`RigCalibration.frame_remap_maps`, ``cv2.remap`` maps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

#: Distortion vector lengths OpenCV accepts (0 = none).
_DISTORTION_SIZES = (0, 4, 5, 8, 12, 14)
#: Condition number above which a 3x3 mapping counts as singular.
_MAX_CONDITION = 1e10
#: Iterative undistortion: enough iterations for sub-millipixel accuracy at strong distortion.
_UNDISTORT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)


class CalibrationError(ValueError):
    """A calibration file is missing, incomplete or numerically unusable."""


class MappingKind(Enum):
    """How the file states the event-to-frame mapping."""

    HOMOGRAPHY = "homography"
    STEREO = "stereo"


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

    def camera_info_fields(self) -> dict[str, object]:
        """The ``sensor_msgs/CameraInfo`` fields of this camera (unrectified: R = identity).

        One filling for the driver's live messages and the simulated recordings' alike.
        """
        # fmt: off
        projection = [
            self.fx, 0.0, self.cx, 0.0,
            0.0, self.fy, self.cy, 0.0,
            0.0, 0.0, 1.0, 0.0,
        ]
        # fmt: on
        return {
            "width": int(self.width),
            "height": int(self.height),
            "distortion_model": "plumb_bob",
            "d": [float(v) for v in np.asarray(self.distortion).reshape(-1)],
            "k": [float(v) for v in np.asarray(self.camera_matrix).reshape(-1)],
            "r": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            "p": projection,
        }

    @property
    def is_distorted(self) -> bool:
        """Whether any distortion coefficient is non-zero."""
        return bool(np.any(np.asarray(self.distortion) != 0))

    def undistort_pixels(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw (distorted) pixel coordinates -> undistorted pixels of the same camera matrix.

        The identity (bit-exact, as float64) when there is no distortion.
        """
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if not self.is_distorted:
            return x, y
        points = np.stack([x.ravel(), y.ravel()], axis=1).reshape(-1, 1, 2)
        out = cv2.undistortPoints(
            points,
            self.camera_matrix,
            self.distortion,
            R=np.eye(3),
            P=self.camera_matrix,
            criteria=_UNDISTORT_CRITERIA,
        ).reshape(-1, 2)
        return out[:, 0].reshape(x.shape), out[:, 1].reshape(y.shape)

    def distort_pixels(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Undistorted pixel coordinates -> raw (distorted) pixels: the inverse of the above."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if not self.is_distorted:
            return x, y
        k_inv = np.linalg.inv(self.camera_matrix)
        rays = k_inv @ np.stack([x.ravel(), y.ravel(), np.ones(x.size)])
        rays = (rays / rays[2]).T.reshape(-1, 1, 3)
        zero = np.zeros(3)
        out, _ = cv2.projectPoints(rays, zero, zero, self.camera_matrix, self.distortion)
        out = out.reshape(-1, 2)
        return out[:, 0].reshape(x.shape), out[:, 1].reshape(y.shape)

    def to_dict(self) -> dict:
        return {
            "width": self.width,
            "height": self.height,
            "camera_matrix": self.camera_matrix.reshape(-1).tolist(),
            "distortion": self.distortion.tolist(),
        }


@dataclass(frozen=True)
class StereoExtrinsics:
    """Event camera -> frame camera pose, ``X_f = rotation @ X_e + translation_m``."""

    rotation: np.ndarray  # (3, 3) float64, orthonormal
    translation_m: np.ndarray  # (3,) float64
    plane_depth_m: float = math.inf  # depth (event camera) of the plane aligned exactly

    def homography(self, event_camera: CameraModel, frame_camera: CameraModel) -> np.ndarray:
        """Plane-induced homography between undistorted pixels (normalised, ``H[2, 2] = 1``)."""
        plane = np.zeros((3, 3))
        if math.isfinite(self.plane_depth_m):
            plane[:, 2] = self.translation_m / self.plane_depth_m  # T n^T / d, n = (0, 0, 1)
        return homography_from_intrinsics(event_camera, frame_camera, self.rotation + plane)

    def to_dict(self) -> dict:
        depth = self.plane_depth_m
        return {
            "rotation": self.rotation.reshape(-1).tolist(),
            "translation_m": self.translation_m.tolist(),
            "plane_depth_m": float(depth) if math.isfinite(depth) else math.inf,
        }


@dataclass(frozen=True)
class RigCalibration:
    """Everything needed to put an event and a frame pixel on the network's output grid."""

    event_camera: CameraModel
    frame_camera: CameraModel
    event_to_frame: np.ndarray  # (3, 3) homography, undistorted event -> undistorted frame pixel
    output_width: int
    output_height: int
    #: ``(x0, y0, w, h)`` region of the undistorted frame scaled onto the output (None = all).
    output_crop: tuple[float, float, float, float] | None = None
    mapping: MappingKind = MappingKind.HOMOGRAPHY
    stereo: StereoExtrinsics | None = None

    # -- output grid -----------------------------------------------------------------------
    @property
    def crop(self) -> tuple[float, float, float, float]:
        """The frame region on the output grid, ``(x0, y0, w, h)`` in frame pixel edges."""
        if self.output_crop is None:
            return 0.0, 0.0, float(self.frame_camera.width), float(self.frame_camera.height)
        x0, y0, w, h = self.output_crop
        return float(x0), float(y0), float(w), float(h)

    @property
    def frame_to_output(self) -> np.ndarray:
        """``S``: undistorted frame pixel -> output pixel (scale about pixel edges + crop)."""
        x0, y0, w, h = self.crop
        sx, sy = self.output_width / w, self.output_height / h
        return np.array(
            [[sx, 0.0, (0.5 - x0) * sx - 0.5], [0.0, sy, (0.5 - y0) * sy - 0.5], [0, 0, 1.0]]
        )

    @property
    def event_to_output(self) -> np.ndarray:
        """``S @ event_to_frame``: undistorted event pixel -> output pixel."""
        return self.frame_to_output @ self.event_to_frame

    @property
    def output_is_frame_grid(self) -> bool:
        """True when the output grid *is* the frame (same size, no crop, no distortion)."""
        same_size = (self.output_width, self.output_height) == (
            self.frame_camera.width,
            self.frame_camera.height,
        )
        full = self.crop == (
            0.0,
            0.0,
            float(self.frame_camera.width),
            float(self.frame_camera.height),
        )
        return same_size and full and not self.frame_camera.is_distorted

    # -- event pixels ----------------------------------------------------------------------
    def map_event_pixels(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map raw event pixel coordinates to (float) undistorted frame pixel coordinates.

        Points that the homography sends through infinity (``w <= 0``) come back as NaN.
        """
        ux, uy = self.event_camera.undistort_pixels(x, y)
        pts = np.stack([ux, uy, np.ones_like(ux)], axis=0).astype(np.float64)
        mapped = np.tensordot(self.event_to_frame, pts, axes=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where(mapped[2] > 0, mapped[2], np.nan)
            return mapped[0] / w, mapped[1] / w

    def event_to_output_pixels(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map raw event pixel coordinates to (float) output-grid pixel coordinates.

        Undistortion, then ``event_to_frame``, then ``frame_to_output``; NaN where undefined.
        """
        fx, fy = self.map_event_pixels(x, y)
        if self.output_is_frame_grid:
            return fx, fy
        s = self.frame_to_output
        return s[0, 0] * fx + s[0, 2], s[1, 1] * fy + s[1, 2]

    # -- frame pixels ----------------------------------------------------------------------
    def frame_remap_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """``cv2.remap`` maps taking the raw frame onto the output grid (undistort + crop/scale).

        Returns:
            ``(map_x, map_y)``, each ``(output_height, output_width)`` float32: the raw frame
            pixel sampled for every output pixel.
        """
        new_matrix = self.frame_to_output @ self.frame_camera.camera_matrix
        map_x, map_y = cv2.initUndistortRectifyMap(
            self.frame_camera.camera_matrix,
            self.frame_camera.distortion,
            None,
            new_matrix,
            (self.output_width, self.output_height),
            cv2.CV_32FC1,
        )
        return map_x, map_y

    def to_dict(self) -> dict:
        data: dict[str, Any] = {
            "event_camera": self.event_camera.to_dict(),
            "frame_camera": self.frame_camera.to_dict(),
        }
        if self.mapping is MappingKind.STEREO and self.stereo is not None:
            data["mapping"] = MappingKind.STEREO.value
            data["stereo"] = self.stereo.to_dict()
        else:
            data["mapping"] = MappingKind.HOMOGRAPHY.value
            data["event_to_frame_homography"] = self.event_to_frame.reshape(-1).tolist()
        output: dict[str, Any] = {"width": self.output_width, "height": self.output_height}
        if self.output_crop is not None:
            output["crop"] = [float(v) for v in self.output_crop]
        data["output"] = output
        return data


# -- validation ----------------------------------------------------------------------------------
def _field(data: dict, key: str, where: str):
    try:
        return data[key]
    except (KeyError, TypeError, IndexError):
        msg = f"{where}: missing field {key!r}"
        raise CalibrationError(msg) from None


def _positive_int(data: dict, key: str, where: str) -> int:
    value = _field(data, key, where)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        msg = f"{where}.{key}: expected a positive integer, got {value!r}"
        raise CalibrationError(msg)
    if value <= 0:
        msg = f"{where}.{key}: must be positive, got {value!r}"
        raise CalibrationError(msg)
    return int(value)


def _numbers(values, sizes: tuple[int, ...], where: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        msg = f"{where}: expected numbers, got {values!r}"
        raise CalibrationError(msg) from None
    if array.size not in sizes or not np.all(np.isfinite(array)):
        count = " or ".join(str(s) for s in sizes)
        msg = f"{where}: expected {count} finite numbers, got {values!r}"
        raise CalibrationError(msg)
    return array


def _matrix(values, shape: tuple[int, ...], where: str) -> np.ndarray:
    return _numbers(values, (int(np.prod(shape)),), where).reshape(shape)


def _invertible(matrix: np.ndarray, where: str) -> None:
    if not np.all(np.isfinite(matrix)):
        msg = f"{where}: matrix is not finite: {matrix.tolist()!r}"
        raise CalibrationError(msg)
    singular = np.linalg.svd(matrix, compute_uv=False)
    if singular[-1] <= 0 or singular[0] / singular[-1] > _MAX_CONDITION:
        msg = f"{where}: matrix is not invertible: {matrix.tolist()!r}"
        raise CalibrationError(msg)


def _camera(data: dict, where: str) -> CameraModel:
    if not isinstance(data, dict):
        msg = f"{where}: expected a mapping, got {data!r}"
        raise CalibrationError(msg)
    width = _positive_int(data, "width", where)
    height = _positive_int(data, "height", where)
    matrix = _matrix(_field(data, "camera_matrix", where), (3, 3), f"{where}.camera_matrix")
    _invertible(matrix, f"{where}.camera_matrix")
    distortion = _numbers(data.get("distortion", []), _DISTORTION_SIZES, f"{where}.distortion")
    return CameraModel(width, height, matrix, distortion)


def _rotation(values, where: str) -> np.ndarray:
    array = _numbers(values, (3, 9), where)
    if array.size == 3:
        return cv2.Rodrigues(array)[0]
    rotation = array.reshape(3, 3)
    if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-6) or np.linalg.det(rotation) < 0:
        msg = f"{where}: not a rotation matrix: {values!r}"
        raise CalibrationError(msg)
    return rotation


def _stereo(data: dict, where: str) -> StereoExtrinsics:
    if not isinstance(data, dict):
        msg = f"{where}: expected a mapping, got {data!r}"
        raise CalibrationError(msg)
    rotation = _rotation(_field(data, "rotation", where), f"{where}.rotation")
    translation = _numbers(_field(data, "translation_m", where), (3,), f"{where}.translation_m")
    depth = data.get("plane_depth_m", math.inf)
    if isinstance(depth, bool) or not isinstance(depth, (int, float)) or not depth > 0:
        msg = f"{where}.plane_depth_m: expected a positive depth (or .inf), got {depth!r}"
        raise CalibrationError(msg)
    return StereoExtrinsics(rotation, translation, float(depth))


def _output(data: dict, frame: CameraModel, where: str):
    if "output" not in data or data["output"] is None:
        return frame.width, frame.height, None
    output = data["output"]
    if not isinstance(output, dict):
        msg = f"{where}: expected a mapping, got {output!r}"
        raise CalibrationError(msg)
    width = _positive_int(output, "width", where)
    height = _positive_int(output, "height", where)
    crop = output.get("crop")
    if crop is None:
        return width, height, None
    x0, y0, w, h = _numbers(crop, (4,), f"{where}.crop").tolist()
    if w <= 0 or h <= 0:
        msg = f"{where}.crop: width and height must be positive, got {crop!r}"
        raise CalibrationError(msg)
    return width, height, (x0, y0, w, h)


def _check_coverage(calibration: RigCalibration, where: str) -> np.ndarray:
    """Normalise the homography's sign and check it images the event sensor onto the frame.

    ``w`` (the homogeneous scale) is affine in the event pixel, so if it is positive on a grid
    spanning the sensor it is positive everywhere on it: no event pixel goes through infinity.
    """
    event, frame = calibration.event_camera, calibration.frame_camera
    xs, ys = np.meshgrid(np.linspace(0, event.width - 1, 17), np.linspace(0, event.height - 1, 17))
    ux, uy = event.undistort_pixels(xs.ravel(), ys.ravel())
    homography = calibration.event_to_frame
    mapped = homography @ np.stack([ux, uy, np.ones_like(ux)])
    if np.median(mapped[2]) < 0:  # same homography, opposite sign convention
        homography, mapped = -homography, -mapped
    if not np.all(mapped[2] > 0):
        msg = (
            f"{where}: maps part of the event image through infinity (w <= 0): "
            f"{calibration.event_to_frame.tolist()!r}"
        )
        raise CalibrationError(msg)
    fx, fy = mapped[0] / mapped[2], mapped[1] / mapped[2]
    inside = (fx >= -0.5) & (fx <= frame.width - 0.5) & (fy >= -0.5) & (fy <= frame.height - 0.5)
    if not np.any(inside):
        msg = (
            f"{where}: maps the whole event image outside the {frame.width}x{frame.height} "
            f"frame: {calibration.event_to_frame.tolist()!r}"
        )
        raise CalibrationError(msg)
    return homography


def calibration_from_dict(data: dict, *, source: str = "<dict>") -> RigCalibration:
    """Validate and build a calibration; errors name ``source``, the field and the bad value.

    Raises:
        CalibrationError: A field is missing or unusable (non-positive size, non-finite or
            singular matrix, mapping that misses the frame, unknown mapping kind).
    """
    if not isinstance(data, dict):
        msg = f"{source}: expected a mapping at the top level, got {data!r}"
        raise CalibrationError(msg)
    event = _camera(_field(data, "event_camera", source), f"{source}: event_camera")
    frame = _camera(_field(data, "frame_camera", source), f"{source}: frame_camera")
    kind_text = data.get("mapping", MappingKind.HOMOGRAPHY.value)
    try:
        kind = MappingKind(kind_text)
    except ValueError:
        choices = [k.value for k in MappingKind]
        msg = f"{source}: mapping: expected one of {choices!r}, got {kind_text!r}"
        raise CalibrationError(msg) from None
    stereo = None
    if kind is MappingKind.STEREO:
        if "event_to_frame_homography" in data:
            msg = (
                f"{source}: event_to_frame_homography: not allowed with mapping 'stereo' "
                "(the homography is derived from stereo.rotation/translation_m)"
            )
            raise CalibrationError(msg)
        stereo = _stereo(_field(data, "stereo", source), f"{source}: stereo")
        homography = stereo.homography(event, frame)
    else:
        where = f"{source}: event_to_frame_homography"
        homography = _matrix(_field(data, "event_to_frame_homography", source), (3, 3), where)
    where = f"{source}: event_to_frame_homography"
    _invertible(homography, where)
    width, height, crop = _output(data, frame, f"{source}: output")
    calibration = RigCalibration(event, frame, homography, width, height, crop, kind, stereo)
    checked = _check_coverage(calibration, where)
    if checked is not homography:
        calibration = RigCalibration(event, frame, checked, width, height, crop, kind, stereo)
    return calibration


def load_calibration(path: str | Path) -> RigCalibration:
    """Read a calibration YAML file (see ``config/calibration/sim_rig.yaml``)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        msg = f"cannot read calibration file {str(path)!r}: {err.strerror or err}"
        raise CalibrationError(msg) from err
    except yaml.YAMLError as err:
        # one line (where, then what): PyYAML's own message spans several
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or " ".join(str(err).split())
        msg = f"calibration file {str(path)!r} is not valid YAML: {where}{problem}"
        raise CalibrationError(msg) from err
    return calibration_from_dict(data, source=str(path))


def homography_from_intrinsics(
    event_camera: CameraModel, frame_camera: CameraModel, rotation: np.ndarray | None = None
) -> np.ndarray:
    """Return ``K_frame @ R @ inv(K_event)``: the exact mapping of a coaxial (shared centre) rig."""
    rot = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
    homography = frame_camera.camera_matrix @ rot @ np.linalg.inv(event_camera.camera_matrix)
    return homography / homography[2, 2]


def aspect_crop(
    region: tuple[float, float, float, float], output_width: int, output_height: int
) -> tuple[float, float, float, float]:
    """Largest crop with the output's aspect ratio centred in ``region`` (``x0, y0, w, h``).

    Used to choose ``output.crop`` so the output grid is scaled uniformly (no stretching).
    """
    x0, y0, w, h = (float(v) for v in region)
    scale = min(w / output_width, h / output_height)
    cw, ch = output_width * scale, output_height * scale
    return x0 + (w - cw) / 2, y0 + (h - ch) / 2, cw, ch


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
