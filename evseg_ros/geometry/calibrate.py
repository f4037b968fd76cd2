"""Estimate the rig calibration from paired views of a checkerboard.

Each view pairs a frame image with an event image of the same board pose: an event count or
polarity image of a blinking board (the board inverting its contrast on a monitor makes every
pixel fire, so the event image redraws the board), or any event frame in which the board shows.

1. Corners are found with ``cv2.findChessboardCornersSB`` (sub-pixel, robust to the noise of
   event images), falling back to ``findChessboardCorners`` + ``cornerSubPix``, on the image and,
   if that fails, on its negative (an event image's sign depends on the blink direction).
2. Corner order: OpenCV lists corners from an end it picks per image. For a board with one odd
   and one even count the colours fix that end in both images, but mirrored optics (a beam
   splitter reflects one camera) or symmetric boards can flip or rotate the order. Each view's
   frame corners are therefore re-ordered by the board symmetry that is consistent with the
   other views (one homography serves every view of a coaxial rig, a wrong order does not).
3. Optional intrinsics: ``cv2.calibrateCamera`` per camera from >= 3 poses; corners are then
   undistorted before the homography, as :mod:`evseg_ros.geometry.calibration` specifies.
4. ``cv2.findHomography`` event -> frame pixels: RANSAC to drop bad corners, then least squares
   (with Levenberg-Marquardt refinement) on the inliers.

The reported reprojection error is the transfer error ``|H p_event - p_frame|`` in frame pixels.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from evseg_ros.geometry.calibration import CameraModel, RigCalibration, calibration_from_dict

_LOG = logging.getLogger(__name__)

_SB_FLAGS = cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_EXHAUSTIVE | cv2.CALIB_CB_ACCURACY
_SUBPIX_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_MAX_ITER, 100, 1e-4)


class CalibrationEstimateError(RuntimeError):
    """The views do not allow an estimate (board not found, too few views or corners)."""


@dataclass(frozen=True)
class Checkerboard:
    """A planar checkerboard: ``columns x rows`` inner corners, squares of ``square_size_m``.

    ``"9x6"`` means 9 inner corners per row and 6 per column (OpenCV's ``patternSize``). One
    even and one odd count make the pattern's orientation unambiguous.
    """

    columns: int
    rows: int
    square_size_m: float = 0.03

    def __post_init__(self) -> None:
        if self.columns < 2 or self.rows < 2:
            msg = f"a checkerboard needs at least 2x2 inner corners, got {self.columns}x{self.rows}"
            raise ValueError(msg)
        if not self.square_size_m > 0:
            msg = f"square_size_m must be positive, got {self.square_size_m!r}"
            raise ValueError(msg)

    @classmethod
    def parse(cls, text: str, *, square_size_m: float = 0.03) -> Checkerboard:
        """Build from ``"COLUMNSxROWS"`` (inner corners), e.g. ``"9x6"``."""
        try:
            columns, rows = (int(part) for part in text.lower().split("x"))
        except ValueError:
            msg = f"board must look like '9x6' (inner corners), got {text!r}"
            raise ValueError(msg) from None
        return cls(columns, rows, square_size_m)

    @property
    def pattern_size(self) -> tuple[int, int]:
        """OpenCV ``patternSize``: ``(columns, rows)``."""
        return self.columns, self.rows

    def object_points(self) -> np.ndarray:
        """Inner corners in board coordinates (metres, z = 0), row by row: ``(N, 3)`` float32."""
        grid = np.mgrid[0 : self.columns, 0 : self.rows].T.reshape(-1, 2)
        points = np.zeros((grid.shape[0], 3), np.float32)
        points[:, :2] = grid * self.square_size_m
        return points

    def symmetries(self) -> list[np.ndarray]:
        """Index permutations of the row-major corner list that map the grid onto itself.

        Identity, column flip, row flip, 180-degree turn; for square grids also the four
        transposed variants.
        """
        index = np.arange(self.rows * self.columns).reshape(self.rows, self.columns)
        grids = [index, index[:, ::-1], index[::-1, :], index[::-1, ::-1]]
        if self.rows == self.columns:
            grids += [g.T for g in grids]
        return [g.reshape(-1) for g in grids]


@dataclass(frozen=True)
class PairedView:
    """One board pose seen by both cameras."""

    frame_image: np.ndarray  # (H_f, W_f) or (H_f, W_f, 3)
    event_image: np.ndarray  # (H_e, W_e) event-derived image (any numeric dtype)
    name: str = ""


@dataclass(frozen=True)
class ViewError:
    """Transfer error of one view's corners under the fitted homography (frame pixels)."""

    name: str
    corners: int
    inliers: int
    rms_px: float
    max_px: float


@dataclass(frozen=True)
class HomographyFit:
    """Fitted event -> frame homography (undistorted pixels) and its reprojection errors."""

    homography: np.ndarray
    rms_px: float  # over inlier corners
    max_px: float  # over inlier corners
    inliers: int
    corners: int
    views: tuple[ViewError, ...]


@dataclass(frozen=True)
class CalibrationResult:
    """What :func:`calibrate_rig` produced and how well it fits."""

    calibration: RigCalibration
    fit: HomographyFit
    skipped_views: tuple[str, ...]  # board not found in one of the two images
    event_intrinsics_rms_px: float | None = None
    frame_intrinsics_rms_px: float | None = None


# -- images and corners ---------------------------------------------------------------------------
def event_polarity_image(events: np.ndarray, width: int, height: int) -> np.ndarray:
    """Signed event count ``OFF - ON`` per pixel, scaled to uint8 around 128.

    For a board inverting from its normal contrast this redraws the board as it was before the
    blink: white squares (which went dark, OFF) bright, black squares dark. The opposite blink
    gives the negative, which :func:`detect_corners` also tries.
    """
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    keep = (x < width) & (y < height)
    index = y[keep] * width + x[keep]
    sign = np.where(events["p"][keep] != 0, -1.0, 1.0)
    signed = np.bincount(index, weights=sign, minlength=width * height).reshape(height, width)
    scale = max(float(np.percentile(np.abs(signed), 99.5)), 1.0)
    return np.clip(128.0 + 127.0 * signed / scale, 0, 255).astype(np.uint8)


def to_gray_u8(image: np.ndarray) -> np.ndarray:
    """Grey uint8 view of an image: colour averaged, other dtypes min-max scaled.

    A 3-channel image is taken as RGB; channel-first event frames ``(C, H, W)`` with C <= 3
    are summed over channels.
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[0] <= 3 < image.shape[-1]:
        image = image.sum(axis=0)
    elif image.ndim == 3:
        image = (
            image.mean(axis=-1)
            if image.dtype != np.uint8
            else cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2GRAY)
        )
    if image.ndim != 2:
        msg = f"expected an (H, W) or (H, W, 3) image, got shape {image.shape!r}"
        raise ValueError(msg)
    if image.dtype == np.uint8:
        return image
    lo, hi = float(np.min(image)), float(np.max(image))
    scaled = (image.astype(np.float64) - lo) * (255.0 / max(hi - lo, 1e-12))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def detect_corners(image: np.ndarray, board: Checkerboard) -> np.ndarray | None:
    """Sub-pixel inner corners of ``board`` in ``image`` (``(N, 2)`` float64, row-major), or None.

    Tries the image, then its negative; ``findChessboardCornersSB`` first, then the classic
    detector with ``cornerSubPix``.
    """
    gray = to_gray_u8(image)
    for candidate in (gray, 255 - gray):
        found, corners = cv2.findChessboardCornersSB(candidate, board.pattern_size, flags=_SB_FLAGS)
        if found:
            return corners.reshape(-1, 2).astype(np.float64)
    for candidate in (gray, 255 - gray):
        found, corners = cv2.findChessboardCorners(
            candidate,
            board.pattern_size,
            flags=cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE,
        )
        if found:
            refined = cv2.cornerSubPix(candidate, corners, (5, 5), (-1, -1), _SUBPIX_CRITERIA)
            return refined.reshape(-1, 2).astype(np.float64)
    return None


def _transfer(homography: np.ndarray, points: np.ndarray) -> np.ndarray:
    mapped = cv2.perspectiveTransform(points.reshape(-1, 1, 2), homography)
    return mapped.reshape(-1, 2)


def resolve_corner_order(
    event_sets: Sequence[np.ndarray], frame_sets: Sequence[np.ndarray], board: Checkerboard
) -> list[np.ndarray]:
    """Re-order each view's frame corners so that one homography fits every view.

    For every symmetry of the first view, fit a homography to it and pick for each other view
    the symmetry with the smallest median transfer error; keep the first-view choice with the
    smallest total. With a single view every order fits, so the detected order is kept.

    Returns:
        The frame corner sets, re-ordered.
    """
    perms = board.symmetries()
    if len(event_sets) < 2:
        return [np.asarray(f) for f in frame_sets]
    best_total, best_choice = np.inf, None
    for first in perms:
        homography, _ = cv2.findHomography(event_sets[0], frame_sets[0][first], 0)
        if homography is None:
            continue
        choice, total = [first], 0.0
        for events, frames in zip(event_sets[1:], frame_sets[1:]):
            mapped = _transfer(homography, events)
            errors = [float(np.median(np.linalg.norm(mapped - frames[p], axis=1))) for p in perms]
            k = int(np.argmin(errors))
            choice.append(perms[k])
            total += errors[k]
        if total < best_total:
            best_total, best_choice = total, choice
    if best_choice is None:
        return [np.asarray(f) for f in frame_sets]
    return [frames[p] for frames, p in zip(frame_sets, best_choice)]


def fit_event_to_frame(
    event_sets: Sequence[np.ndarray],
    frame_sets: Sequence[np.ndarray],
    *,
    names: Sequence[str] | None = None,
    ransac_threshold_px: float = 2.0,
) -> HomographyFit:
    """One homography for all views: RANSAC, then least squares on the inliers.

    Args:
        event_sets: Per view ``(N, 2)`` event corners (undistorted pixels).
        frame_sets: Per view ``(N, 2)`` frame corners, in the same order.
        names: View names for the report.
        ransac_threshold_px: Inlier distance in frame pixels.

    Raises:
        CalibrationEstimateError: Fewer than 4 correspondences, or no homography found.
    """
    names = list(names) if names is not None else [f"view{i}" for i in range(len(event_sets))]
    if not event_sets:
        msg = "no view with the board found in both images"
        raise CalibrationEstimateError(msg)
    src = np.concatenate([np.asarray(e, np.float64) for e in event_sets])
    dst = np.concatenate([np.asarray(f, np.float64) for f in frame_sets])
    if len(src) < 4:
        msg = f"need at least 4 corner pairs for a homography, got {len(src)}"
        raise CalibrationEstimateError(msg)
    homography, mask = cv2.findHomography(
        src, dst, cv2.RANSAC, ransac_threshold_px, maxIters=5000, confidence=0.999
    )
    if homography is None:
        msg = "cv2.findHomography found no homography (degenerate corner set?)"
        raise CalibrationEstimateError(msg)
    inlier = mask.ravel().astype(bool)
    refined, _ = cv2.findHomography(src[inlier], dst[inlier], 0)
    if refined is not None:
        homography = refined
    homography = homography / homography[2, 2]
    errors = np.linalg.norm(_transfer(homography, src) - dst, axis=1)
    views, start = [], 0
    for name, events in zip(names, event_sets):
        stop = start + len(events)
        e, keep = errors[start:stop], inlier[start:stop]
        chosen = e[keep] if keep.any() else e
        views.append(
            ViewError(
                name,
                len(e),
                int(keep.sum()),
                float(np.sqrt(np.mean(chosen**2))),
                float(chosen.max()),
            )
        )
        start = stop
    return HomographyFit(
        homography=homography,
        rms_px=float(np.sqrt(np.mean(errors[inlier] ** 2))),
        max_px=float(errors[inlier].max()),
        inliers=int(inlier.sum()),
        corners=len(src),
        views=tuple(views),
    )


def calibrate_intrinsics(
    corner_sets: Sequence[np.ndarray], board: Checkerboard, image_size: tuple[int, int]
) -> tuple[CameraModel, float]:
    """``cv2.calibrateCamera`` from >= 3 board poses (k3 fixed: few poses cannot pin it down).

    Returns:
        The camera (5 distortion coefficients) and the RMS reprojection error in pixels.

    Raises:
        CalibrationEstimateError: Fewer than 3 poses.
    """
    if len(corner_sets) < 3:
        msg = f"intrinsics need at least 3 board poses, got {len(corner_sets)}"
        raise CalibrationEstimateError(msg)
    objects = [board.object_points() for _ in corner_sets]
    images = [np.asarray(c, np.float32).reshape(-1, 1, 2) for c in corner_sets]
    rms, matrix, distortion, _, _ = cv2.calibrateCamera(
        objects, images, image_size, None, None, flags=cv2.CALIB_FIX_K3
    )
    camera = CameraModel(
        int(image_size[0]),
        int(image_size[1]),
        np.asarray(matrix, np.float64),
        np.asarray(distortion, np.float64).reshape(-1)[:5],
    )
    return camera, float(rms)


def nominal_camera(width: int, height: int) -> CameraModel:
    """Placeholder intrinsics (focal length = larger side, centred, no distortion).

    Used when intrinsics are neither given nor estimated: with zero distortion the event to
    output mapping depends only on the homography, not on these numbers.
    """
    focal = float(max(width, height))
    matrix = np.array([[focal, 0, (width - 1) / 2], [0, focal, (height - 1) / 2], [0, 0, 1]])
    return CameraModel(int(width), int(height), matrix, np.zeros(5))


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".npy")


def _read_view_file(path: Path, event_size: tuple[int, int] | None) -> np.ndarray:
    """An image file, an image ``.npy``, or structured events ``.npy`` (fields x, y, p)."""
    if path.suffix.lower() == ".npy":
        array = np.load(path, allow_pickle=False)
        if array.dtype.names is None:
            return array
        if not {"x", "y", "p"} <= set(array.dtype.names):
            msg = f"{str(path)!r}: structured events need fields x, y, p; got {array.dtype.names}"
            raise ValueError(msg)
        if event_size is None:
            msg = f"{str(path)!r} holds raw events: give the sensor size (--event-size WxH)"
            raise ValueError(msg)
        return event_polarity_image(array, *event_size)
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        msg = f"cannot read image {str(path)!r}"
        raise OSError(msg)
    return image


def load_paired_views(
    frames_dir: str | Path, events_dir: str | Path, *, event_size: tuple[int, int] | None = None
) -> list[PairedView]:
    """Pair frame and event files of two folders by file stem (``pose03.png`` + ``pose03.npy``).

    Raises:
        CalibrationEstimateError: No stem is present in both folders.
        OSError, ValueError: A file cannot be read or has the wrong content.
    """

    def listing(folder: str | Path) -> dict[str, Path]:
        folder = Path(folder)
        if not folder.is_dir():
            msg = f"not a folder: {str(folder)!r}"
            raise OSError(msg)
        return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in _IMAGE_SUFFIXES}

    frames, events = listing(frames_dir), listing(events_dir)
    stems = sorted(frames.keys() & events.keys())
    if not stems:
        msg = (
            f"no file stem is in both {str(frames_dir)!r} ({len(frames)} files) and "
            f"{str(events_dir)!r} ({len(events)} files)"
        )
        raise CalibrationEstimateError(msg)
    for stem in sorted(frames.keys() ^ events.keys()):
        _LOG.warning("%s: only in one folder; ignored", stem)
    return [
        PairedView(_read_view_file(frames[s], None), _read_view_file(events[s], event_size), name=s)
        for s in stems
    ]


def _image_size(image: np.ndarray) -> tuple[int, int]:
    shape = np.asarray(image).shape
    if len(shape) == 3 and shape[0] <= 3 < shape[-1]:
        return int(shape[2]), int(shape[1])
    return int(shape[1]), int(shape[0])


def calibrate_rig(
    views: Sequence[PairedView],
    board: Checkerboard,
    *,
    event_camera: CameraModel | None = None,
    frame_camera: CameraModel | None = None,
    estimate_intrinsics: bool = False,
    output_size: tuple[int, int] | None = None,
    output_crop: tuple[float, float, float, float] | None = None,
    ransac_threshold_px: float = 2.0,
) -> CalibrationResult:
    """Estimate a full :class:`RigCalibration` from paired views.

    Args:
        views: Paired frame/event images of the board (one pose each).
        board: The checkerboard.
        event_camera: Known event intrinsics (else estimated or nominal).
        frame_camera: Known frame intrinsics (else estimated or nominal).
        estimate_intrinsics: Run ``cv2.calibrateCamera`` for cameras not given (>= 3 views).
        output_size: Output grid ``(width, height)``; default the frame size.
        output_crop: ``(x0, y0, w, h)`` of the undistorted frame shown on the output grid.
        ransac_threshold_px: RANSAC inlier distance (frame pixels).

    Raises:
        CalibrationEstimateError: No usable views, or too few for what was asked.
        CalibrationError: The estimate does not make a valid calibration.
    """
    if not views:
        msg = "no views given"
        raise CalibrationEstimateError(msg)
    frame_size = _image_size(views[0].frame_image)
    event_size = _image_size(views[0].event_image)
    event_sets, frame_sets, names, skipped = [], [], [], []
    for index, view in enumerate(views):
        name = view.name or f"view{index}"
        sizes = (_image_size(view.frame_image), _image_size(view.event_image))
        if sizes != (frame_size, event_size):
            msg = (
                f"{name}: image sizes {sizes!r} differ from the first view's "
                f"{(frame_size, event_size)!r}"
            )
            raise CalibrationEstimateError(msg)
        frame_corners = detect_corners(view.frame_image, board)
        event_corners = detect_corners(view.event_image, board)
        if frame_corners is None or event_corners is None:
            where = "frame" if frame_corners is None else "event"
            _LOG.warning(
                "%s: board %dx%d not found in the %s image; view skipped",
                name,
                board.columns,
                board.rows,
                where,
            )
            skipped.append(name)
            continue
        event_sets.append(event_corners)
        frame_sets.append(frame_corners)
        names.append(name)
    if not event_sets:
        msg = f"board {board.columns}x{board.rows} not found in both images of any view"
        raise CalibrationEstimateError(msg)
    frame_sets = resolve_corner_order(event_sets, frame_sets, board)

    event_rms = frame_rms = None
    if event_camera is None and estimate_intrinsics:
        event_camera, event_rms = calibrate_intrinsics(event_sets, board, event_size)
    if frame_camera is None and estimate_intrinsics:
        frame_camera, frame_rms = calibrate_intrinsics(frame_sets, board, frame_size)
    event_camera = event_camera or nominal_camera(*event_size)
    frame_camera = frame_camera or nominal_camera(*frame_size)
    for camera, size, which in (
        (event_camera, event_size, "event"),
        (frame_camera, frame_size, "frame"),
    ):
        if (camera.width, camera.height) != size:
            msg = (
                f"{which} camera intrinsics are for {camera.width}x{camera.height} but the "
                f"{which} images are {size[0]}x{size[1]}"
            )
            raise CalibrationEstimateError(msg)

    def undistorted(camera: CameraModel, points: np.ndarray) -> np.ndarray:
        ux, uy = camera.undistort_pixels(points[:, 0], points[:, 1])
        return np.stack([ux, uy], axis=1)

    fit = fit_event_to_frame(
        [undistorted(event_camera, e) for e in event_sets],
        [undistorted(frame_camera, f) for f in frame_sets],
        names=names,
        ransac_threshold_px=ransac_threshold_px,
    )
    out_w, out_h = output_size if output_size is not None else frame_size
    data = {
        "event_camera": event_camera.to_dict(),
        "frame_camera": frame_camera.to_dict(),
        "mapping": "homography",
        "event_to_frame_homography": fit.homography.reshape(-1).tolist(),
        "output": {"width": int(out_w), "height": int(out_h)},
    }
    if output_crop is not None:
        data["output"]["crop"] = [float(v) for v in output_crop]
    calibration = calibration_from_dict(data, source="estimated calibration")
    return CalibrationResult(calibration, fit, tuple(skipped), event_rms, frame_rms)


def homography_transfer_error(
    estimated: np.ndarray, truth: np.ndarray, width: int, height: int, *, step: int = 4
) -> tuple[float, float]:
    """Mean and max ``|H_est(p) - H_true(p)|`` (target pixels) over a grid of source pixels."""
    ys, xs = np.mgrid[0:height:step, 0:width:step]
    points = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    diff = np.linalg.norm(_transfer(estimated, points) - _transfer(truth, points), axis=1)
    return float(diff.mean()), float(diff.max())


def mapping_error(
    estimated: RigCalibration, truth: RigCalibration, *, step: int = 4
) -> tuple[float, float]:
    """Mean and max distance (frame pixels) between two calibrations' event -> frame maps.

    Compared over a grid of raw event pixels (every ``step``-th), distortion included, so
    calibrations with different intrinsics compare by what matters: where events land.
    """
    event = truth.event_camera
    ys, xs = np.mgrid[0 : event.height : step, 0 : event.width : step]
    ex, ey = estimated.map_event_pixels(xs.ravel(), ys.ravel())
    tx, ty = truth.map_event_pixels(xs.ravel(), ys.ravel())
    diff = np.hypot(ex - tx, ey - ty)
    return float(np.nanmean(diff)), float(np.nanmax(diff))


def format_result(result: CalibrationResult) -> str:
    """Human-readable report: per-view and overall reprojection errors."""
    fit = result.fit
    lines = [f"{'view':<24} {'corners':>7} {'inliers':>7} {'rms px':>8} {'max px':>8}"]
    lines += [
        f"{v.name:<24} {v.corners:>7} {v.inliers:>7} {v.rms_px:>8.3f} {v.max_px:>8.3f}"
        for v in fit.views
    ]
    lines.append(
        f"reprojection error (event -> frame, {fit.inliers}/{fit.corners} inlier "
        f"corners): rms {fit.rms_px:.3f} px, max {fit.max_px:.3f} px"
    )
    for which, rms in (
        ("event", result.event_intrinsics_rms_px),
        ("frame", result.frame_intrinsics_rms_px),
    ):
        if rms is not None:
            lines.append(f"{which} camera intrinsics (cv2.calibrateCamera): rms {rms:.3f} px")
    if result.skipped_views:
        lines.append(f"skipped (board not found): {', '.join(result.skipped_views)}")
    return "\n".join(lines)


def write_calibration(
    calibration: RigCalibration, path: str | Path, *, force: bool = False, comment: str = ""
) -> Path:
    """Write ``calibration`` as YAML that :func:`load_calibration` reads back.

    Args:
        calibration: What to write.
        path: Destination file.
        force: Replace an existing file (otherwise that is an error).
        comment: Lines written as ``#`` comments at the top (e.g. the reprojection error).

    Raises:
        FileExistsError: ``path`` exists and ``force`` is false.
    """
    path = Path(path)
    if path.exists() and not force:
        msg = f"{str(path)!r} exists; pass force=True (--force) to replace it"
        raise FileExistsError(msg)
    header = "".join(f"# {line}\n" if line else "#\n" for line in comment.splitlines())
    text = header + yaml.safe_dump(
        calibration.to_dict(), sort_keys=False, default_flow_style=None, width=100
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if the file appeared meanwhile: never overwrite
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


__all__ = [
    "CalibrationEstimateError",
    "CalibrationResult",
    "Checkerboard",
    "HomographyFit",
    "PairedView",
    "ViewError",
    "calibrate_intrinsics",
    "calibrate_rig",
    "detect_corners",
    "event_polarity_image",
    "fit_event_to_frame",
    "format_result",
    "homography_transfer_error",
    "load_paired_views",
    "mapping_error",
    "nominal_camera",
    "resolve_corner_order",
    "to_gray_u8",
    "write_calibration",
]
