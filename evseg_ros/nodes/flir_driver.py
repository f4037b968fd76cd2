"""FLIR frame camera driver: ``sensor_msgs/Image`` + ``CameraInfo`` per frame.

Sources: ``sim`` (the simulated rig, rgb8, with ground-truth labels on ``frame/ground_truth``),
``hardware`` (a FLIR camera through PySpin, see :mod:`evseg_ros.sources.spinnaker`), and
replays of a ``video`` file, an image ``folder`` or a ``bag`` of Images. A bag replay keeps the
recorded stamps, publishes the playhead on ``/clock`` (``replay_publish_clock``) and, with
``replay_pacing: lockstep``, releases the next frame only once ``segmentation/mask`` returned the
previous one (or ``replay_lockstep_timeout_s`` passed, counted in ``lockstep_timeouts``).

Images go out in the source's own encoding: a Bayer camera publishes its raw mosaic
(``bayer_rggb8`` for BayerRG8) and the consumer demosaics it where the pixels are needed
(:mod:`evseg_ros.pipeline.debayer`, on the GPU where there is one). The stamp is the frame's
exposure start in ROS time (from the camera clock on hardware, the recording on replays), which
the accumulator maps back to the trigger event in the event stream. ``CameraInfo`` comes from the
calibration file; a frame whose size differs from the calibration is still published (the
consumer decides what to do with it) but counted in ``size_mismatch`` and warned about once.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import numpy as np
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from evseg_ros.geometry.calibration import CameraModel, load_calibration
from evseg_ros.nodes.diagnostics import OK, WARN
from evseg_ros.nodes.driver_base import SourceDriverNode
from evseg_ros.nodes.fault_params import FAULT_PARAMS, replay_faults
from evseg_ros.nodes.image_conversion import ENCODINGS, ns_to_stamp, stamp_to_ns, to_image_msg
from evseg_ros.nodes.managed import node_class
from evseg_ros.nodes.params import Param
from evseg_ros.nodes.qos import FRAMES_QOS, RESULTS_QOS
from evseg_ros.nodes.replay_params import REPLAY_PARAMS
from evseg_ros.nodes.sim_params import SIM_PARAMS, build_rig
from evseg_ros.nodes.spin import run_node
from evseg_ros.paths import resolve_package_path
from evseg_ros.sources import CapturedFrame, FrameSource, SimFrameSource, SourceUnavailableError
from evseg_ros.sources.bag_replay import BagFrameSource
from evseg_ros.sources.frame_replay import (
    FRAME_ENCODINGS,
    TIMESTAMP_UNITS_NS,
    ImageFolderFrameSource,
    VideoFileFrameSource,
)
from evseg_ros.sources.replay_clock import ReplayPacing
from evseg_ros.sources.spinnaker import (
    PIXEL_FORMAT_ENCODINGS,
    TRIGGER_ACTIVATIONS,
    TRIGGER_MODES,
    TRIGGER_OVERLAPS,
    TRIGGER_SOURCES,
)

HARDWARE_PARAMS: tuple[Param, ...] = (
    Param(
        "pixel_format",
        "BayerRG8",
        "camera pixel format (hardware; Bayer is published raw and demosaiced downstream)",
        tuple(PIXEL_FORMAT_ENCODINGS),
    ),
    Param("exposure_auto", True, "automatic exposure (hardware; false: exposure_us)"),
    Param(
        "exposure_us", 10_000.0, "fixed exposure time [us] when exposure_auto is false",
        low=1.0, high=30_000_000.0,
    ),
    Param("gain_auto", True, "automatic gain (hardware; false: gain_db)"),
    Param("gain_db", 0.0, "fixed gain [dB] when gain_auto is false", low=0.0, high=48.0),
    Param(
        "frame_rate_hz", 0.0, "acquisition frame rate [Hz] (hardware; 0 = camera default)",
        low=0.0, high=1_000.0,
    ),
    Param("trigger_mode", "off", "wait for a hardware trigger per frame", TRIGGER_MODES),
    Param("trigger_source", "Line0", "trigger input line (selector FrameStart)", TRIGGER_SOURCES),
    Param("trigger_activation", "RisingEdge", "trigger edge or level", TRIGGER_ACTIVATIONS),
    Param(
        "trigger_delay_us", 0.0, "delay from trigger to exposure start [us] (0 = none)",
        low=0.0, high=1_000_000.0,
    ),
    Param("trigger_overlap", "Off", "accept a trigger during readout", TRIGGER_OVERLAPS),
    Param(
        "acquisition_timeout_ms", 1000, "wait for one frame at most this long [ms]",
        low=1, high=3_600_000,
    ),
    Param(
        "max_consecutive_timeouts",
        3,
        "restart acquisition after this many timeouts in a row (a disconnect restarts at once)",
        low=1, high=1_000_000,
    ),
)
REPLAY_PARAMS: tuple[Param, ...] = (
    Param("video_file", "", "video file to replay (source 'video')"),
    Param("image_folder", "", "folder of PNG/JPEG images to replay (source 'folder')"),
    Param(
        "image_folder_rate_hz",
        10.0,
        "frame rate of the image folder [Hz] unless it holds a timestamps.txt",
        low=0.01, high=10_000.0,
    ),
    Param(
        "image_timestamp_unit",
        "us",
        "unit of the folder's timestamps.txt",
        tuple(TIMESTAMP_UNITS_NS),
    ),
    Param("bag_path", "", "rosbag2 with sensor_msgs/Image to replay (source 'bag')"),
    Param("bag_topic", "", "Image topic in the bag; empty = the first one"),
    *REPLAY_PARAMS,
    Param(
        "replay_lockstep_timeout_s", 10.0,
        "lockstep: release the next frame anyway when no mask came back for this long [s]",
        low=0.01, high=3_600.0,
    ),
)
PARAMS: tuple[Param, ...] = (
    Param("source", "sim", "where frames come from", ("sim", "hardware", "video", "folder", "bag")),
    Param("serial", "", "camera serial number (hardware source; empty = first camera)"),
    Param("frame_id", "frame_camera", "TF frame of the frame camera"),
    Param("poll_period_ms", 5.0, "how often the source is polled [ms]", low=0.1, high=1_000.0),
    Param("calibration_file", "config/calibration/sim_rig.yaml", "rig calibration file"),
    Param("publish_ground_truth", True, "publish simulator labels on frame/ground_truth"),
    *HARDWARE_PARAMS,
    *REPLAY_PARAMS,
    *FAULT_PARAMS,
    *SIM_PARAMS,
)
#: how many publish times of recent frames are kept (a minute at 30 Hz)
PUBLISHED_AT_LENGTH = 1800
#: source counters every status carries, so dashboards see the same keys for every source
SOURCE_STATUS_DEFAULTS: dict[str, Any] = {
    "timeouts": 0,
    "restarts": 0,
    "incomplete": 0,
    "settings_not_applied": "none",
}


def camera_info_msg(camera: CameraModel, header: Header) -> CameraInfo:
    return CameraInfo(header=header, **camera.camera_info_fields())


def frame_image_msg(image: np.ndarray, encoding: str, header: Header) -> Image:
    """Image message in any of the frame encodings (Bayer mosaics are one byte per pixel)."""
    if encoding in ENCODINGS:
        return to_image_msg(image, encoding, header)
    msg = to_image_msg(image, "mono8", header)
    msg.encoding = encoding
    return msg


def _frame_problem(frame: CapturedFrame, encoding: str) -> str | None:
    """Why ``frame`` cannot be published as ``encoding``, or None if it can."""
    channels = FRAME_ENCODINGS.get(encoding)
    if channels is None:
        return f"encoding {encoding!r} is not one of {tuple(FRAME_ENCODINGS)!r}"
    image = frame.image
    shape_ok = image.ndim == 2 if channels == 1 else (image.ndim == 3 and image.shape[2] == 3)
    if image.dtype != np.uint8 or not shape_ok or image.size == 0:
        return f"{encoding!r} frame has dtype {image.dtype} and shape {image.shape!r}"
    return None


class FlirDriverNode(SourceDriverNode):
    """Poll a frame source and publish each frame with its camera info."""

    source: FrameSource | None

    def __init__(self, **kwargs) -> None:
        self.frames_published = 0
        self.size_mismatch = 0
        self.bad_frames = 0
        self._warned: set[str] = set()
        super().__init__("flir_driver", PARAMS, **kwargs)

    def _setup_publishers(self) -> None:
        self.camera = load_calibration(
            resolve_package_path(self.params["calibration_file"])
        ).frame_camera
        self.image_publisher = self.create_publisher(Image, "frame/image_raw", FRAMES_QOS)
        self.info_publisher = self.create_publisher(CameraInfo, "frame/camera_info", FRAMES_QOS)
        self.lockstep_timeouts = 0
        #: (stamp, monotonic ns) of the latest frames published: where frame->mask latency starts
        self.published_at: deque[tuple[int, int]] = deque(maxlen=PUBLISHED_AT_LENGTH)
        self._awaiting: tuple[int, float] | None = None  # lockstep: (stamp, monotonic s)
        self.truth_publisher = None
        if self.params["source"] == "sim" and self.params["publish_ground_truth"]:
            self.truth_publisher = self.create_publisher(Image, "frame/ground_truth", FRAMES_QOS)
        not_applied = getattr(self.source, "settings_not_applied", ())
        if not_applied:
            self.get_logger().warning(f"camera settings not applied: {'; '.join(not_applied)}")

    def _subscribe(self) -> None:
        if self.replay is not None and self.replay.pacing is ReplayPacing.LOCKSTEP:
            self.create_subscription(Image, "segmentation/mask", self._on_mask, RESULTS_QOS)

    def _open_source(self) -> FrameSource:
        params = self.params
        source = params["source"]
        if source == "hardware":
            from evseg_ros.sources.spinnaker import SpinnakerConfig, SpinnakerFrameSource

            config = SpinnakerConfig(
                serial=params["serial"],
                pixel_format=params["pixel_format"],
                exposure_auto=params["exposure_auto"],
                exposure_us=float(params["exposure_us"]),
                gain_auto=params["gain_auto"],
                gain_db=float(params["gain_db"]),
                frame_rate_hz=float(params["frame_rate_hz"]),
                trigger_mode=params["trigger_mode"],
                trigger_source=params["trigger_source"],
                trigger_activation=params["trigger_activation"],
                trigger_delay_us=float(params["trigger_delay_us"]),
                trigger_overlap=params["trigger_overlap"],
                acquisition_timeout_ms=int(params["acquisition_timeout_ms"]),
                max_consecutive_timeouts=int(params["max_consecutive_timeouts"]),
            )
            return SpinnakerFrameSource(config)
        replay = {"video": "video_file", "folder": "image_folder", "bag": "bag_path"}
        if source in replay and not params[replay[source]]:
            msg = f"source {source!r} needs parameter {replay[source]!r} (it is empty)"
            raise SourceUnavailableError(msg)
        pacing, loop = params["replay_pacing"], params["replay_loop"]
        if source == "bag":
            return BagFrameSource(
                params["bag_path"],
                topic=params["bag_topic"] or None,
                pacing=pacing,
                rate=float(params["replay_rate"]),
                epoch_ns=int(params["replay_epoch_ns"]),
                loop=loop,
                faults=replay_faults(params),
            )
        if pacing == ReplayPacing.LOCKSTEP:
            msg = f"replay_pacing 'lockstep' needs source 'bag', not {source!r}"
            raise SourceUnavailableError(msg)
        realtime = pacing == ReplayPacing.REALTIME
        if source == "video":
            return VideoFileFrameSource(params["video_file"], realtime=realtime, loop=loop)
        if source == "folder":
            return ImageFolderFrameSource(
                params["image_folder"],
                rate_hz=float(params["image_folder_rate_hz"]),
                realtime=realtime,
                loop=loop,
                timestamp_unit=params["image_timestamp_unit"],
            )
        rig, epoch_ns = build_rig(params)
        return SimFrameSource(
            rig,
            epoch_ns=epoch_ns,
            with_ground_truth=params["publish_ground_truth"],
            time_scale=float(params["sim_time_scale"]),
        )

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.get_logger().warning(message)

    def _on_mask(self, msg: Image) -> None:
        """Lockstep: the mask of the frame out there came back: let the next one go."""
        if self._awaiting is not None and stamp_to_ns(msg.header) == self._awaiting[0]:
            self._awaiting = None
            self.replay.release_next()

    def _check_lockstep_timeout(self) -> None:
        if self._awaiting is None:
            return
        if time.monotonic() - self._awaiting[1] >= self.params["replay_lockstep_timeout_s"]:
            self.lockstep_timeouts += 1
            self._warn_once(
                "lockstep",
                f"lockstep: no mask for frame stamp {self._awaiting[0]} within "
                f"{self.params['replay_lockstep_timeout_s']} s; releasing the next frame "
                "(counted in lockstep_timeouts)",
            )
            self._awaiting = None
            self.replay.release_next()

    def _poll(self, now_ns: int) -> None:
        lockstep = self.replay is not None and self.replay.pacing is ReplayPacing.LOCKSTEP
        if lockstep:
            self._check_lockstep_timeout()
        for frame in self.source.read(now_ns):
            if lockstep:
                # the playhead reaches this frame before the frame itself goes out, so the
                # event driver can release the frame's events first
                self._publish_clock(now_ns)
            encoding = getattr(frame, "encoding", "rgb8")  # sim frames are rgb8
            problem = _frame_problem(frame, encoding)
            if problem is not None:
                self.bad_frames += 1
                self._warn_once(f"bad {encoding}", f"dropping frames: {problem}")
                if lockstep:
                    self.replay.release_next()  # no mask will come for it
                continue
            height, width = frame.image.shape[:2]
            if (width, height) != (self.camera.width, self.camera.height):
                self.size_mismatch += 1
                self._warn_once(
                    "size",
                    f"frames are {width}x{height} but the calibration's frame camera is "
                    f"{self.camera.width}x{self.camera.height}; publishing them anyway",
                )
            header = ns_to_stamp(Header(frame_id=self.params["frame_id"]), frame.stamp_ns)
            self.image_publisher.publish(frame_image_msg(frame.image, encoding, header))
            self.info_publisher.publish(camera_info_msg(self.camera, header))
            if self.truth_publisher is not None and frame.ground_truth is not None:
                self.truth_publisher.publish(to_image_msg(frame.ground_truth, "mono8", header))
            self.frames_published += 1
            self.published_at.append((frame.stamp_ns, time.monotonic_ns()))
            if lockstep:
                self._awaiting = (frame.stamp_ns, time.monotonic())

    def _status_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "frames_published": self.frames_published,
            "frames_skipped": 0 if self.source is None else self.source.skipped_frames,
            "size_mismatch": self.size_mismatch,
            "bad_frames": self.bad_frames,
            **SOURCE_STATUS_DEFAULTS,
        }
        if self.replay is not None:
            values["lockstep_timeouts"] = self.lockstep_timeouts
        if hasattr(self.source, "status_values"):
            source_values = dict(self.source.status_values())
            # the node's own count of dropped frames includes the source's
            values["bad_frames"] += int(source_values.pop("bad_frames", 0))
            values.update(source_values)
        return values

    def _diagnostics(self) -> tuple[bytes, str, dict[str, Any]]:
        """ERROR when the source could not open; WARN while the camera is lost or misconfigured."""
        level, message, values = super()._diagnostics()
        if level != OK:
            return level, message, values
        if getattr(self.source, "connected", True) is False:
            return WARN, f"camera lost, reopening: {self.source.last_error}", values
        not_applied = getattr(self.source, "settings_not_applied", ())
        if not_applied:
            return WARN, f"streaming; settings not applied: {'; '.join(not_applied)}", values
        if self.size_mismatch:
            return (
                WARN,
                (
                    f"streaming; {self.size_mismatch} frames differ in size from the calibration "
                    f"({self.camera.width}x{self.camera.height})"
                ),
                values,
            )
        return level, message, values


def main(args: list[str] | None = None) -> int:
    return run_node(node_class(FlirDriverNode, args), args)


if __name__ == "__main__":
    raise SystemExit(main())
