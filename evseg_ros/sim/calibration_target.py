"""The simulated rig's calibration: a blinking checkerboard seen by both cameras.

A planar checkerboard (inner corners ``columns x rows``, a one-square white margin) is ray-cast
at a few poses through both cameras of a :class:`RigCalibration`:

* the frame camera takes an ordinary picture of it (anti-aliased by supersampling, a little
  sensor noise);
* for the event camera the whole board (squares and margin) inverts its contrast, ramping in
  log intensity between two instants, as a board shown on a monitor does when it blinks; the
  DVS model of :mod:`evseg_ros.sim.event_model` turns that into ON/OFF events on the event
  grid, threshold mismatch and background noise included.

Both cameras look from one centre. Rays are built in frame-camera coordinates: a frame pixel's
ray is ``inv(K_f) undistort(p)``, an event pixel's ray ``inv(K_f) H undistort_e(q)`` with ``H``
the calibration's ``event_to_frame``. So the true event-to-frame mapping of the rendered views is
exactly ``H`` for any homography, including ``K_f R inv(K_e)`` with a rotation between cameras.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from evseg_ros.geometry.calibrate import Checkerboard, PairedView, event_polarity_image
from evseg_ros.geometry.calibration import CameraModel, RigCalibration
from evseg_ros.sim.event_model import EventModelParams, EventSimulator


@dataclass(frozen=True)
class BoardPose:
    """Board -> frame-camera pose: ``X_cam = R(rotation_vector) @ X_board + translation_m``.

    The board's origin is its first inner corner; x along a row, y down the columns.
    """

    rotation_vector: tuple[float, float, float]
    translation_m: tuple[float, float, float]

    def rotation(self) -> np.ndarray:
        return cv2.Rodrigues(np.asarray(self.rotation_vector, np.float64))[0]


@dataclass(frozen=True)
class TargetRenderSettings:
    """Appearance and timing of the simulated calibration shots."""

    supersample: int = 4  # rays per pixel along each axis (anti-aliasing)
    white: float = 1.0  # linear luminance of white squares and the margin
    black: float = 0.06
    background: float = 0.3
    frame_noise_sigma: float = 0.8  # frame sensor noise, grey levels
    blink_start_us: int = 5_000
    blink_ramp_us: int = 20_000  # log intensity ramps over this long
    window_us: int = 30_000  # events of [0, window_us) make one event view
    seed: int = 0
    event_params: EventModelParams = field(
        default_factory=lambda: EventModelParams(substep_us=1_000, noise_rate_hz=0.2)
    )


@dataclass(frozen=True)
class CalibrationShot:
    """One board pose as both cameras saw it, with the true corner positions."""

    pose: BoardPose
    frame_image: np.ndarray  # (H_f, W_f) uint8
    events: np.ndarray  # EVENT_DTYPE, event-camera pixels, one contrast inversion
    event_image: np.ndarray  # (H_e, W_e) uint8, board drawn by the events (pre-blink contrast)
    frame_corners: np.ndarray  # (N, 2) float64, true raw frame pixels of the inner corners
    event_corners: np.ndarray  # (N, 2) float64, true raw event pixels of the inner corners


# -- rays and projection (frame-camera coordinates) -----------------------------------------------
def _pixel_samples(width: int, height: int, supersample: int) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel sample positions, ``(H, W, s*s)`` each, centred in every pixel."""
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    oy, ox = np.meshgrid(offsets, offsets, indexing="ij")
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    return (xs[..., None] + ox.ravel()), (ys[..., None] + oy.ravel())


def frame_rays(camera: CameraModel, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Rays (frame-camera coordinates, z = 1) through raw frame pixels: ``(3, ...)``."""
    ux, uy = camera.undistort_pixels(xs, ys)
    k_inv = np.linalg.inv(camera.camera_matrix)
    rays = np.tensordot(k_inv, np.stack([ux, uy, np.ones_like(ux)]), axes=1)
    return rays / rays[2]


def event_rays(calibration: RigCalibration, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Rays (frame-camera coordinates, z = 1) through raw event pixels: ``(3, ...)``."""
    ux, uy = calibration.event_camera.undistort_pixels(xs, ys)
    to_frame_rays = np.linalg.inv(calibration.frame_camera.camera_matrix) @ (
        calibration.event_to_frame
    )
    rays = np.tensordot(to_frame_rays, np.stack([ux, uy, np.ones_like(ux)]), axes=1)
    return rays / rays[2]


def project_to_frame(camera: CameraModel, points: np.ndarray) -> np.ndarray:
    """Frame-camera 3-D points ``(N, 3)`` -> raw frame pixels ``(N, 2)``."""
    zero = np.zeros(3)
    pixels, _ = cv2.projectPoints(
        points.reshape(-1, 1, 3).astype(np.float64),
        zero,
        zero,
        camera.camera_matrix,
        camera.distortion,
    )
    return pixels.reshape(-1, 2)


def project_to_event(calibration: RigCalibration, points: np.ndarray) -> np.ndarray:
    """Frame-camera 3-D points ``(N, 3)`` -> raw event pixels ``(N, 2)``."""
    frame_pixels = calibration.frame_camera.camera_matrix @ points.T
    event_pixels = np.linalg.solve(calibration.event_to_frame, frame_pixels)
    ex, ey = event_pixels[0] / event_pixels[2], event_pixels[1] / event_pixels[2]
    rx, ry = calibration.event_camera.distort_pixels(ex, ey)
    return np.stack([rx, ry], axis=1)


# -- the board ------------------------------------------------------------------------------------
def _board_outline(board: Checkerboard) -> np.ndarray:
    """Outer corners of the board including its margin, board coordinates ``(4, 3)``."""
    s = board.square_size_m
    x0, y0 = -2 * s, -2 * s
    x1, y1 = (board.columns + 1) * s, (board.rows + 1) * s
    return np.array([[x0, y0, 0], [x1, y0, 0], [x1, y1, 0], [x0, y1, 0]], np.float64)


def _board_luminance(
    rays: np.ndarray, board: Checkerboard, pose: BoardPose, settings: TargetRenderSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Luminance along ``rays`` (``(3, ...)``): normal board and contrast-inverted board.

    Returns:
        ``(normal, inverted)``, each of the rays' trailing shape.
    """
    rotation = pose.rotation()
    t = np.asarray(pose.translation_m, np.float64)
    rx, ry = rays[0].astype(np.float32), rays[1].astype(np.float32)  # rays have z = 1
    # plane n . X = n . t with n the board normal; hit at depth (n . t) / (n . ray)
    n = rotation[:, 2]
    denom = np.float32(n[0]) * rx + np.float32(n[1]) * ry + np.float32(n[2])
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.float32(n @ t) / denom
    hit = np.isfinite(depth) & (depth > 0)

    def along(axis: np.ndarray) -> np.ndarray:  # board coordinate along a board axis
        a0, a1, a2 = (np.float32(v) for v in axis)
        return depth * (a0 * rx + a1 * ry + a2) - np.float32(axis @ t)

    inv_square = np.float32(1.0 / board.square_size_m)
    # squares indexed from corner (0, 0): the margin is squares -2 and columns (rows)
    col = np.floor(np.where(hit, along(rotation[:, 0]) * inv_square, -1e6)).astype(np.int32)
    row = np.floor(np.where(hit, along(rotation[:, 1]) * inv_square, -1e6)).astype(np.int32)
    on_board = hit & (col >= -2) & (col <= board.columns) & (row >= -2) & (row <= board.rows)
    in_pattern = (col >= -1) & (col < board.columns) & (row >= -1) & (row < board.rows)
    # The square up-left of corner (0, 0) is white: OpenCV then lists corners from that end.
    dark = in_pattern & ((col + row) % 2 == 1)
    black, white = np.float32(settings.black), np.float32(settings.white)
    background = np.float32(settings.background)
    normal = np.where(on_board, np.where(dark, black, white), background)
    inverted = np.where(on_board, np.where(dark, white, black), background)
    return normal, inverted


def _inside(pixels: np.ndarray, camera: CameraModel, margin: float = 6.0) -> bool:
    x, y = pixels[:, 0], pixels[:, 1]
    return bool(
        np.all(x >= margin)
        and np.all(x <= camera.width - 1 - margin)
        and np.all(y >= margin)
        and np.all(y <= camera.height - 1 - margin)
    )


def default_poses(
    calibration: RigCalibration, board: Checkerboard, count: int = 4
) -> list[BoardPose]:
    """``count`` well-spread poses that keep the whole board inside both images.

    Tilts up to ~30 degrees about both axes and offsets toward the image corners give the
    corner set the spread a homography (and ``cv2.calibrateCamera``) needs.
    """
    layouts = [  # (tilt about x, tilt about y in degrees; centre offset as image fractions)
        (0.0, 0.0, 0.0, 0.0),
        (25.0, -10.0, -0.16, -0.12),
        (-15.0, 28.0, 0.16, 0.12),
        (-25.0, -22.0, 0.14, -0.12),
        (20.0, 25.0, -0.14, 0.12),
        (8.0, -30.0, 0.0, 0.1),
        (-30.0, 5.0, -0.1, -0.05),
        (12.0, 12.0, 0.18, 0.0),
    ]
    event = calibration.event_camera
    outline = _board_outline(board)
    centre = outline.mean(axis=0)
    poses = []
    for index in range(count):
        tx, ty, ox, oy = layouts[index % len(layouts)]
        tx += 3.0 * (index // len(layouts))
        rotation = (
            cv2.Rodrigues(np.array([np.radians(tx), 0.0, 0.0]))[0]
            @ cv2.Rodrigues(np.array([0.0, np.radians(ty), 0.0]))[0]
        )
        rvec = cv2.Rodrigues(rotation)[0].ravel()
        aim = event_rays(
            calibration,
            np.array([(0.5 + ox) * (event.width - 1)]),
            np.array([(0.5 + oy) * (event.height - 1)]),
        )[:, 0]
        pose = None
        # nearest distance (in square sizes) at which the board fits both images
        for distance in board.square_size_m * np.geomspace(2.0, 20_000.0, 600):
            t = aim * distance - rotation @ centre
            points = (rotation @ outline.T).T + t
            if _inside(project_to_event(calibration, points), event) and _inside(
                project_to_frame(calibration.frame_camera, points), calibration.frame_camera
            ):
                pose = BoardPose(tuple(rvec.tolist()), tuple(t.tolist()))
                break
        if pose is None:
            msg = f"no board distance keeps pose {index} inside both images"
            raise ValueError(msg)
        poses.append(pose)
    return poses


def render_calibration_shots(
    calibration: RigCalibration,
    board: Checkerboard,
    *,
    poses: list[BoardPose] | None = None,
    count: int = 4,
    settings: TargetRenderSettings = TargetRenderSettings(),
) -> list[CalibrationShot]:
    """Render the board at ``poses`` (default: ``count`` :func:`default_poses`) in both cameras.

    Deterministic per ``settings.seed`` and pose index.
    """
    poses = default_poses(calibration, board, count) if poses is None else poses
    frame, event = calibration.frame_camera, calibration.event_camera
    ss = settings.supersample
    fx, fy = _pixel_samples(frame.width, frame.height, ss)
    f_rays = frame_rays(frame, fx, fy)
    ex, ey = _pixel_samples(event.width, event.height, ss)
    e_rays = event_rays(calibration, ex, ey)
    shots = []
    for index, pose in enumerate(poses):
        rng = np.random.default_rng([settings.seed & 0xFFFFFFFF, 0xCA11B, index])
        normal, _ = _board_luminance(f_rays, board, pose, settings)
        grey = 20.0 + 215.0 * normal.mean(axis=-1) / settings.white
        grey += settings.frame_noise_sigma * rng.standard_normal(grey.shape)
        frame_image = np.clip(np.rint(grey), 0, 255).astype(np.uint8)

        normal_e, inverted_e = _board_luminance(e_rays, board, pose, settings)
        events = _blink_events(
            normal_e.mean(axis=-1),
            inverted_e.mean(axis=-1),
            settings,
            seed=settings.seed * 1000 + index,
        )
        rotation = pose.rotation()
        corners = (rotation @ board.object_points().T.astype(np.float64)).T + np.asarray(
            pose.translation_m
        )
        shots.append(
            CalibrationShot(
                pose=pose,
                frame_image=frame_image,
                events=events,
                event_image=event_polarity_image(events, event.width, event.height),
                frame_corners=project_to_frame(frame, corners),
                event_corners=project_to_event(calibration, corners),
            )
        )
    return shots


def simulated_views(
    calibration: RigCalibration,
    board: Checkerboard,
    *,
    count: int = 4,
    settings: TargetRenderSettings = TargetRenderSettings(),
) -> list[PairedView]:
    """The simulated shots as the paired views :func:`calibrate_rig` takes."""
    shots = render_calibration_shots(calibration, board, count=count, settings=settings)
    return [
        PairedView(s.frame_image, s.event_image, name=f"sim_pose{i:02d}")
        for i, s in enumerate(shots)
    ]


def _blink_events(
    normal: np.ndarray, inverted: np.ndarray, settings: TargetRenderSettings, *, seed: int
) -> np.ndarray:
    """Events of one contrast inversion, ramped linearly in log intensity."""
    params = settings.event_params
    params = EventModelParams(**{**params.__dict__, "seed": seed})
    log_normal = np.log(normal + params.log_eps)
    log_inverted = np.log(inverted + params.log_eps)

    def luminance(t_us: int, _condition: object = None) -> np.ndarray:
        alpha = np.clip((t_us - settings.blink_start_us) / settings.blink_ramp_us, 0.0, 1.0)
        return np.exp(log_normal + alpha * (log_inverted - log_normal)) - params.log_eps

    simulator = EventSimulator(luminance, normal.shape, params, t_start_us=0)
    events, _ = simulator.advance_to(settings.window_us)
    return events


__all__ = [
    "BoardPose",
    "CalibrationShot",
    "TargetRenderSettings",
    "default_poses",
    "event_rays",
    "frame_rays",
    "project_to_event",
    "project_to_frame",
    "render_calibration_shots",
    "simulated_views",
]
