"""Render the simulated rig once into a rosbag2 recording (MCAP or sqlite3) and cache it.

The recording holds exactly what the hardware drivers publish, plus the simulator's ground
truth, so replay, evaluation and the demo treat it like a real drive. Topics (under ``/rig``,
as the drivers publish them) and their bag (log) times:

- ``/rig/calibration`` (``std_msgs/msg/String``): once, at sensor time 0;
- ``/rig/events`` (``event_camera_msgs/msg/EventPacket``): at the end of the packet's slice;
- ``/rig/frame/image_raw`` (``sensor_msgs/msg/Image``): trigger + exposure + readout delay;
- ``/rig/frame/camera_info`` (``sensor_msgs/msg/CameraInfo``), ``/rig/frame/ground_truth``
  (``sensor_msgs/msg/Image``) and ``/rig/frame/condition`` (``std_msgs/msg/Header``): as the
  frame they belong to.

Clocks: sensor time (µs) starts at 0 when the recording starts; a header stamp is
``EPOCH_NS + 1000 * sensor time`` with the fixed epoch 2026-01-01T00:00:00Z, so one seed gives
byte-identical messages on every machine. The bag (log) time of a message is when the driver
would have had it: an EventPacket's at the end of its ``packet_us`` slice of sensor time, a
frame's when its exposure and a 5 ms readout are over. A replay that releases messages by log
time therefore has every event up to the end of a frame's exposure out before the frame.

* ``/rig/events``: the EVT3 bytes of every ``packet_us`` of sensor time, as the EVK4 driver
  publishes them: ``header.stamp`` = stamp of the packet's first event or trigger edge,
  ``frame_id`` ``"event_camera"``, ``seq`` from 0 without gaps, ``time_base`` = that first item's
  sensor time in ns, ``encoding`` ``"evt3"``. A slice with nothing in it gives no packet. The
  stream holds one rising (and one falling, ``trigger_pulse_us`` later) trigger edge on channel
  0 per frame, at the frame's stamp, and none other: frames start at ``FIRST_FRAME_US`` so the
  event window before the first trigger is inside the recording.
* ``/rig/frame/image_raw``: the rendered frame as a ``bayer_rggb8`` mosaic (the FLIR driver's
  hardware default; :mod:`evseg_ros.pipeline.debayer` demosaics it), ``frame_id``
  ``"frame_camera"``, ``header.stamp`` = trigger time (exposure start).
* ``/rig/frame/camera_info``: the frame camera's intrinsics, filled like the FLIR driver does.
* ``/rig/frame/ground_truth``: ``mono8`` class ids (DSEC-11, 255 = void), the frame's stamp.
* ``/rig/frame/condition``: the frame's lighting condition. There is no standard message for a
  labelled stamp, so a bare ``std_msgs/msg/Header`` carries it: ``stamp`` = the frame's stamp,
  ``frame_id`` = the condition's name (``"normal"``, ``"night"`` or ``"glare"``). Every ROS
  reader knows the type, and it pairs with the frame by exact stamp.
* ``/rig/calibration``: the calibration YAML the recording was rendered with (after ``size``
  scaling), the same text as ``custom_data["evseg.calibration"]`` in the bag's metadata;
  ``custom_data["evseg.recording"]`` holds the parameters, cache key and counts as JSON.

Rendering is deterministic per :class:`RecordingSpec`. Frames are pure functions of
``(seed, t)`` and are rendered in worker processes while this process runs the (sequential)
event simulation and writes the bag. A finished recording is moved into place with one rename,
so a crash never leaves a half recording under the final name, and :func:`cached_recording`
keys the cache by every parameter, the calibration's content and the simulator version.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import yaml

from evseg_ros.geometry.calibration import RigCalibration, calibration_from_dict, load_calibration
from evseg_ros.paths import resolve_package_path
from evseg_ros.pipeline.debayer import BAYER_PATTERNS
from evseg_ros.record.topics import (
    TOPIC_CALIBRATION,
    TOPIC_CAMERA_INFO,
    TOPIC_CONDITION,
    TOPIC_EVENTS,
    TOPIC_GROUND_TRUTH,
    TOPIC_IMAGE,
)
from evseg_ros.sim.lighting import Lighting
from evseg_ros.sim.rig import CoaxialRigSim, SimConfig

_LOG = logging.getLogger(__name__)

#: Bump whenever the recording's layout or content changes for the same spec (invalidates caches).
RECORDING_FORMAT = 1
#: ROS time (ns) of sensor time 0: 2026-01-01T00:00:00Z.
EPOCH_NS = 1_767_225_600 * 1_000_000_000
#: Sensor time of the first trigger; the event window of a frame starts before its trigger.
FIRST_FRAME_US = 100_000
#: From the end of a frame's exposure to when the camera driver has it.
READOUT_DELAY_US = 5_000
DEFAULT_CALIBRATION = "config/calibration/sim_rig.yaml"
DEFAULT_CACHE_ROOT = Path("output/sim_cache/recordings")
#: ``--storage`` choices (rosbags storage plugins).
STORAGES = ("mcap", "sqlite3")
FRAME_ENCODING = "bayer_rggb8"
EVENT_FRAME_ID = "event_camera"
FRAME_FRAME_ID = "frame_camera"

#: Topic -> message type, in the order the connections are added (the image topic comes before
#: the ground truth, so a reader taking "the first Image topic" gets the camera's).
TOPICS: dict[str, str] = {
    TOPIC_CALIBRATION: "std_msgs/msg/String",
    TOPIC_EVENTS: "event_camera_msgs/msg/EventPacket",
    TOPIC_IMAGE: "sensor_msgs/msg/Image",
    TOPIC_CAMERA_INFO: "sensor_msgs/msg/CameraInfo",
    TOPIC_GROUND_TRUTH: "sensor_msgs/msg/Image",
    TOPIC_CONDITION: "std_msgs/msg/Header",
}
CUSTOM_DATA_CALIBRATION = "evseg.calibration"
CUSTOM_DATA_RECORDING = "evseg.recording"


class RecordingExistsError(FileExistsError):
    """The output path holds something other than a recording of the requested spec."""


# -- the parameters --------------------------------------------------------------------------------
@dataclass(frozen=True)
class RecordingSpec:
    """Everything that determines a recording's content (the ``evseg simulate`` options).

    Attributes:
        seconds: Simulated duration (sensor time), events from 0 to here.
        seed: Simulator seed (scene, noise, events).
        conditions: Lighting conditions, visited in this order for ``condition_period_s`` each
            (a comma-separated string is accepted too).
        condition_period_s: Length of one condition's segment.
        fps: Frame (trigger) rate.
        size: Frame camera ``(width, height)``; both cameras and the output grid are scaled by
            the same factor. None keeps the calibration's sizes.
        calibration: Calibration YAML (relative paths resolve like the config's).
        packet_us: Sensor time per EventPacket (the EVK4 driver's ``packet_time_us``).
        storage: ``"mcap"`` or ``"sqlite3"``.
    """

    seconds: float = 6.0
    seed: int = 0
    conditions: tuple[str, ...] = ("normal", "night", "glare")
    condition_period_s: float = 2.0
    fps: float = 30.0
    size: tuple[int, int] | None = None
    calibration: str = DEFAULT_CALIBRATION
    packet_us: int = 1000
    storage: str = "mcap"

    def __post_init__(self) -> None:
        conditions = self.conditions
        if isinstance(conditions, str):
            conditions = conditions.split(",")
        conditions = tuple(str(name).strip() for name in conditions)
        object.__setattr__(self, "conditions", conditions)
        names = tuple(light.value for light in Lighting)
        if not conditions or any(name not in names for name in conditions):
            msg = f"conditions must be a non-empty list of {names!r}, got {self.conditions!r}"
            raise ValueError(msg)
        for name in ("seconds", "fps", "condition_period_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                msg = f"{name} must be a positive number, got {value!r}"
                raise ValueError(msg)
        if isinstance(self.packet_us, bool) or not isinstance(self.packet_us, int) or (
            self.packet_us <= 0
        ):
            msg = f"packet_us must be a positive integer, got {self.packet_us!r}"
            raise ValueError(msg)
        if self.storage not in STORAGES:
            msg = f"storage must be one of {STORAGES!r}, got {self.storage!r}"
            raise ValueError(msg)
        if self.size is not None:
            size = tuple(self.size)
            if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
                msg = f"size must be (width, height) in positive pixels, got {self.size!r}"
                raise ValueError(msg)
            object.__setattr__(self, "size", size)

    @property
    def lighting_mode(self) -> str:
        """The simulator's lighting mode for :attr:`conditions` (a comma-separated list)."""
        return ",".join(self.conditions)

    @property
    def duration_us(self) -> int:
        return round(self.seconds * 1e6)

    def rig_calibration(self) -> RigCalibration:
        """The calibration the rig is rendered with: the file's, scaled to :attr:`size`."""
        calibration = load_calibration(resolve_package_path(self.calibration))
        if self.size is None:
            return calibration
        return scale_calibration(calibration, self.size)

    def sim_config(self) -> SimConfig:
        """The simulator configuration of this recording."""
        return SimConfig(
            seed=self.seed,
            frame_rate_hz=self.fps,
            lighting=self.lighting_mode,
            lighting_period_s=self.condition_period_s,
        )

    def to_dict(self) -> dict[str, Any]:
        """The parameters as JSON-ready values."""
        data = dataclasses.asdict(self)
        data["conditions"] = list(self.conditions)
        data["size"] = None if self.size is None else list(self.size)
        return data

    def key(self) -> str:
        """Hash of everything that determines the recording's content (16 hex digits).

        The calibration enters by content (after scaling), not by path; the simulator's
        configuration with all its defaults, ``SIM_VERSION`` and :data:`RECORDING_FORMAT` too.
        """
        return _key(self, self.rig_calibration())


def _simulator_version() -> str:
    from evseg_ros import sim  # the package imports this module: read it when needed

    return str(sim.SIM_VERSION)


def _key(spec: RecordingSpec, calibration: RigCalibration) -> str:
    params = spec.to_dict()
    del params["calibration"], params["size"]  # both enter through the calibration's content
    payload = {
        "format": RECORDING_FORMAT,
        "simulator": _simulator_version(),
        "spec": params,
        "calibration": calibration.to_dict(),
        "sim_config": dataclasses.asdict(spec.sim_config()),
        "epoch_ns": EPOCH_NS,
        "first_frame_us": FIRST_FRAME_US,
        "readout_delay_us": READOUT_DELAY_US,
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def scale_calibration(calibration: RigCalibration, size: tuple[int, int]) -> RigCalibration:
    """Scale both cameras and the output grid so that the frame camera is ``size``.

    One factor ``s = width / frame width`` applies to every image (sizes rounded half up);
    ``height`` must match the frame camera's aspect ratio. Pixel centres stay at integer
    coordinates, so a pixel edge ``u + 0.5`` scales by ``s``: ``K' = S K`` with
    ``S = [[s, 0, (s - 1) / 2], [0, s, (s - 1) / 2], [0, 0, 1]]``, the homography becomes
    ``S H inv(S)`` (still exactly ``K_frame' inv(K_event')`` for the simulated rig), distortion
    (normalised coordinates) and stereo extrinsics are unchanged, an output crop scales by ``s``.

    Raises:
        ValueError: ``size`` does not keep the frame camera's aspect ratio.
    """
    width, height = (int(v) for v in size)
    frame = calibration.frame_camera
    factor = width / frame.width
    if _round_half_up(frame.height * factor) != height:
        expected = f"{width}x{_round_half_up(frame.height * factor)}"
        msg = (
            f"size {width}x{height} does not keep the frame camera's {frame.width}x"
            f"{frame.height} aspect ratio (expected {expected})"
        )
        raise ValueError(msg)
    shift = (factor - 1.0) / 2.0
    scale = np.array([[factor, 0.0, shift], [0.0, factor, shift], [0.0, 0.0, 1.0]])
    data = calibration.to_dict()
    for name in ("event_camera", "frame_camera"):
        camera = data[name]
        matrix = scale @ np.asarray(camera["camera_matrix"], np.float64).reshape(3, 3)
        camera["camera_matrix"] = matrix.reshape(-1).tolist()
        camera["width"] = _round_half_up(camera["width"] * factor)
        camera["height"] = _round_half_up(camera["height"] * factor)
    if "event_to_frame_homography" in data:
        homography = np.asarray(data["event_to_frame_homography"], np.float64).reshape(3, 3)
        homography = scale @ homography @ np.linalg.inv(scale)
        data["event_to_frame_homography"] = (homography / homography[2, 2]).reshape(-1).tolist()
    output = data["output"]
    output["width"] = _round_half_up(output["width"] * factor)
    output["height"] = _round_half_up(output["height"] * factor)
    if "crop" in output:
        output["crop"] = [v * factor for v in output["crop"]]
    return calibration_from_dict(data, source=f"calibration scaled to {width}x{height}")


def calibration_yaml(calibration: RigCalibration) -> str:
    """``calibration`` as the YAML text :func:`load_calibration` reads."""
    data = calibration.to_dict()
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)


# -- frames and messages ---------------------------------------------------------------------------
def bayer_mosaic(rgb: np.ndarray, encoding: str = FRAME_ENCODING) -> np.ndarray:
    """``(H, W, 3)`` RGB -> ``(H, W)`` Bayer mosaic in a ROS ``encoding`` (``bayer_rggb8``...).

    Uses :data:`~evseg_ros.pipeline.debayer.BAYER_PATTERNS`, the table the consumer demosaics by.
    """
    pattern = BAYER_PATTERNS[encoding]
    mosaic = np.empty(rgb.shape[:2], np.uint8)
    for (dy, dx), colour in zip(((0, 0), (0, 1), (1, 0), (1, 1)), pattern):
        mosaic[dy::2, dx::2] = rgb[dy::2, dx::2, colour]
    return mosaic


def stamp_ns(t_us: int) -> int:
    """Header stamp (ROS time, ns) of sensor time ``t_us``."""
    return EPOCH_NS + int(t_us) * 1000


class _Messages:
    """Builds and serialises the recording's messages with one rosbags typestore."""

    def __init__(self, calibration: RigCalibration) -> None:
        from evseg_ros.events.bag import event_packet_typestore

        self.typestore = event_packet_typestore()
        self.calibration = calibration
        self._types = self.typestore.types

    def serialize(self, message: Any) -> bytes:
        return bytes(self.typestore.serialize_cdr(message, message.__msgtype__))

    def header(self, t_ns: int, frame_id: str) -> Any:
        sec, nanosec = divmod(int(t_ns), 1_000_000_000)
        time = self._types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
        return self._types["std_msgs/msg/Header"](stamp=time, frame_id=frame_id)

    def image(self, header: Any, array: np.ndarray, encoding: str) -> bytes:
        height, width = array.shape[:2]
        channels = 1 if array.ndim == 2 else array.shape[2]
        msg = self._types["sensor_msgs/msg/Image"](
            header=header, height=height, width=width, encoding=encoding, is_bigendian=0,
            step=width * channels, data=np.ascontiguousarray(array, np.uint8).reshape(-1),
        )
        return self.serialize(msg)

    def camera_info(self, header: Any) -> bytes:
        """Frame camera intrinsics, filled as the FLIR driver's ``camera_info_msg`` does."""
        camera = self.calibration.frame_camera
        roi = self._types["sensor_msgs/msg/RegionOfInterest"](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
        )
        fields = camera.camera_info_fields()
        for name in ("d", "k", "r", "p"):  # rosbags takes float64[] fields as arrays
            fields[name] = np.asarray(fields[name], np.float64)
        msg = self._types["sensor_msgs/msg/CameraInfo"](
            header=header, **fields, binning_x=0, binning_y=0, roi=roi,
        )
        return self.serialize(msg)

    def event_packet(self, seq: int, first_us: int, data: bytes) -> bytes:
        camera = self.calibration.event_camera
        msg = self._types["event_camera_msgs/msg/EventPacket"](
            header=self.header(stamp_ns(first_us), EVENT_FRAME_ID),
            height=camera.height, width=camera.width, seq=seq, time_base=first_us * 1000,
            encoding="evt3", is_bigendian=False, events=np.frombuffer(data, np.uint8),
        )
        return self.serialize(msg)

    def string(self, text: str) -> bytes:
        return self.serialize(self._types["std_msgs/msg/String"](data=text))


class _FrameMessages(NamedTuple):
    """One frame's serialised messages, all with the frame's stamp and log time."""

    t_us: int
    condition: str
    image: bytes
    camera_info: bytes
    ground_truth: bytes
    condition_header: bytes


class _FrameRenderer:
    """Renders a frame and serialises its four messages (in a worker process or inline)."""

    def __init__(self, calibration: RigCalibration, config: SimConfig) -> None:
        self.rig = CoaxialRigSim(calibration, config)
        self.messages = _Messages(calibration)

    def __call__(self, t_us: int) -> _FrameMessages:
        frame = self.rig.render_frame(t_us)
        condition = frame.lighting.value
        header = self.messages.header(stamp_ns(t_us), FRAME_FRAME_ID)
        return _FrameMessages(
            t_us=int(t_us),
            condition=condition,
            image=self.messages.image(header, bayer_mosaic(frame.image), FRAME_ENCODING),
            camera_info=self.messages.camera_info(header),
            ground_truth=self.messages.image(header, frame.labels, "mono8"),
            condition_header=self.messages.serialize(
                self.messages.header(stamp_ns(t_us), condition)
            ),
        )


_WORKER_RENDERER: _FrameRenderer | None = None


def _init_worker(calibration: RigCalibration, config: SimConfig) -> None:
    global _WORKER_RENDERER  # noqa: PLW0603 (one renderer per worker process)
    _WORKER_RENDERER = _FrameRenderer(calibration, config)


def _render_in_worker(t_us: int) -> _FrameMessages:
    assert _WORKER_RENDERER is not None  # set by the pool's initializer
    return _WORKER_RENDERER(t_us)


def default_workers() -> int:
    """Frame-rendering processes beside the event simulation: the spare CPUs, at most 3.

    Frames of the default recording cost about as much as its events, so one worker already
    halves the time on two cores; more help only until the event simulation is the bottleneck.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(0, min(3, cpus - 1))


class _FrameFeed:
    """Frame messages in trigger order, rendered ahead by a process pool (or inline)."""

    def __init__(
        self, times_us: list[int], calibration: RigCalibration, config: SimConfig, workers: int
    ) -> None:
        self._times = times_us
        self._submitted = 0
        self._pending: deque[concurrent.futures.Future[_FrameMessages]] = deque()
        self._ahead = 3 * workers
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._inline: _FrameRenderer | None = None
        if workers > 0:
            # forkserver, not fork: a caller with threads running (rclpy, ONNX Runtime, a
            # test session that started a graph) must not be forked mid-flight; forked workers
            # of such a process died ("process pool was terminated abruptly")
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=workers, initializer=_init_worker, initargs=(calibration, config),
                mp_context=multiprocessing.get_context("forkserver"),
            )
            self.top_up()  # start the workers now, before the bag is open
        else:
            self._inline = _FrameRenderer(calibration, config)

    def top_up(self) -> None:
        """Queue frames until ``3 * workers`` are in flight (bounded memory)."""
        if self._pool is None:
            return
        while len(self._pending) < self._ahead and self._submitted < len(self._times):
            t_us = self._times[self._submitted]
            self._pending.append(self._pool.submit(_render_in_worker, t_us))
            self._submitted += 1

    def next(self) -> _FrameMessages:
        """The next frame's messages (blocks until rendered)."""
        if self._inline is not None:
            t_us = self._times[self._submitted]
            self._submitted += 1
            return self._inline(t_us)
        self.top_up()
        return self._pending.popleft().result()

    def close(self) -> None:
        if self._pool is not None:
            for future in self._pending:
                future.cancel()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


@dataclass(frozen=True)
class _Plan:
    """Frame times and log times, derived from the spec before anything is rendered."""

    frame_times_us: list[int]
    frame_log_ns: list[int]
    frame_period_us: int
    duration_us: int


def _plan(spec: RecordingSpec, rig: CoaxialRigSim) -> _Plan:
    """Frames ``FIRST_FRAME_US + k * period`` whose whole exposure lies in the recording."""
    period = rig.frame_period_us()
    duration = spec.duration_us
    times, logs = [], []
    t_us = FIRST_FRAME_US
    while True:
        exposure = rig.exposure_us(rig.lighting_at(t_us))
        if t_us + exposure > duration:
            break
        times.append(t_us)
        logs.append(stamp_ns(t_us + exposure + READOUT_DELAY_US))
        t_us += period
    if not times:
        msg = (
            f"seconds={spec.seconds!r} holds no frame: the first trigger is at "
            f"{FIRST_FRAME_US / 1e6} s and its exposure must end inside the recording"
        )
        raise ValueError(msg)
    return _Plan(times, logs, period, duration)


def _trigger_schedule(times_us: list[int]) -> Callable[[int, int], np.ndarray]:
    """``(t0, t1) -> int64`` rising-edge times in ``[t0, t1)``: exactly the recorded frames."""
    times = np.asarray(times_us, np.int64)

    def trigger_times(t0: int, t1: int) -> np.ndarray:
        return times[np.searchsorted(times, t0, "left") : np.searchsorted(times, t1, "left")]

    return trigger_times


def _write_bag(
    spec: RecordingSpec, rig: CoaxialRigSim, plan: _Plan, key: str, path: Path, *, workers: int,
    progress: bool,
) -> dict[str, Any]:
    """Render the recording into a new rosbag2 folder ``path``; returns its summary."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from tqdm import tqdm

    from evseg_ros.events.evt3 import Evt3EncoderState, encode_evt3
    from evseg_ros.events.types import first_time_us

    calibration, config = rig.calibration, rig.config
    messages = _Messages(calibration)
    calibration_text = calibration_yaml(calibration)
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[spec.storage]
    summary: dict[str, Any] = {
        "format": RECORDING_FORMAT,
        "key": key,
        "simulator": _simulator_version(),
        "spec": spec.to_dict(),
        "sim_config": dataclasses.asdict(config),
        "frame_size": [calibration.frame_camera.width, calibration.frame_camera.height],
        "event_size": [calibration.event_camera.width, calibration.event_camera.height],
        "epoch_ns": EPOCH_NS,
        "duration_us": plan.duration_us,
        "first_frame_us": FIRST_FRAME_US,
        "frame_period_us": plan.frame_period_us,
        "readout_delay_us": READOUT_DELAY_US,
        "frame_encoding": FRAME_ENCODING,
        "topics": dict(TOPICS),
    }
    frame_counts: dict[str, int] = {}
    seq = 0
    feed = _FrameFeed(plan.frame_times_us, calibration, config, workers)
    try:
        bar = tqdm(
            total=math.ceil(plan.duration_us / 1000), unit="ms", desc="evseg simulate",
            file=sys.stderr, disable=None if progress else True, leave=False,
        )
        with bar, Writer(path, version=9, storage_plugin=plugin) as writer:
            conns = {
                topic: writer.add_connection(topic, msgtype, typestore=messages.typestore)
                for topic, msgtype in TOPICS.items()
            }
            writer.write(conns[TOPIC_CALIBRATION], EPOCH_NS, messages.string(calibration_text))
            simulator = rig.event_simulator(
                0, trigger_times=_trigger_schedule(plan.frame_times_us)
            )
            encoder = Evt3EncoderState()
            next_frame = 0

            def write_frames_before(log_ns: int) -> None:
                nonlocal next_frame
                while next_frame < len(plan.frame_times_us) and (
                    plan.frame_log_ns[next_frame] < log_ns
                ):
                    frame = feed.next()
                    frame_log = plan.frame_log_ns[next_frame]
                    writer.write(conns[TOPIC_IMAGE], frame_log, frame.image)
                    writer.write(conns[TOPIC_CAMERA_INFO], frame_log, frame.camera_info)
                    writer.write(conns[TOPIC_GROUND_TRUTH], frame_log, frame.ground_truth)
                    writer.write(conns[TOPIC_CONDITION], frame_log, frame.condition_header)
                    frame_counts[frame.condition] = frame_counts.get(frame.condition, 0) + 1
                    next_frame += 1

            for start_us, end_us in _slices(plan.duration_us, spec.packet_us):
                feed.top_up()
                events, triggers = simulator.advance_to(end_us)
                log_ns = stamp_ns(end_us)
                write_frames_before(log_ns)
                if len(events) or len(triggers):
                    data = encode_evt3(events, triggers, state=encoder)
                    first_us = first_time_us(events, triggers, start_us)
                    writer.write(conns[TOPIC_EVENTS], log_ns,
                                 messages.event_packet(seq, first_us, data))
                    seq += 1
                bar.update(math.ceil(end_us / 1000) - bar.n)
            write_frames_before(1 << 63)
            summary["frames"] = len(plan.frame_times_us)
            summary["frames_per_condition"] = dict(sorted(frame_counts.items()))
            summary["event_packets"] = seq
            writer.set_custom_data(CUSTOM_DATA_CALIBRATION, calibration_text)
            writer.set_custom_data(CUSTOM_DATA_RECORDING, json.dumps(summary, sort_keys=True))
    finally:
        feed.close()
    return summary


def _slices(duration_us: int, packet_us: int) -> Iterator[tuple[int, int]]:
    """``[start, end)`` of every packet: multiples of ``packet_us``, the last one cut short."""
    for start in range(0, duration_us, packet_us):
        yield start, min(start + packet_us, duration_us)


# -- output folders --------------------------------------------------------------------------------
def read_recording_info(path: str | Path) -> dict[str, Any] | None:
    """The ``evseg.recording`` summary of a complete recording at ``path``; None otherwise.

    "Complete" means a rosbag2 ``metadata.yaml`` with that entry and every storage file it
    lists present; anything else (missing, foreign, damaged) gives None.
    """
    folder = Path(path)
    try:
        metadata = yaml.safe_load((folder / "metadata.yaml").read_text())
        info = metadata["rosbag2_bagfile_information"]
        summary = json.loads(info["custom_data"][CUSTOM_DATA_RECORDING])
        files = info["relative_file_paths"]
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return None
    if not isinstance(summary, dict) or not files:
        return None
    if not all((folder / name).is_file() for name in files):
        return None
    return summary


def stored_calibration(path: str | Path) -> str | None:
    """The calibration YAML a recording was rendered with (its metadata), or None."""
    try:
        metadata = yaml.safe_load((Path(path) / "metadata.yaml").read_text())
        text = metadata["rosbag2_bagfile_information"]["custom_data"][CUSTOM_DATA_CALIBRATION]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    return text if isinstance(text, str) and text.strip() else None


def stored_recording_key(path: str | Path) -> str | None:
    """Cache key of the complete recording at ``path``, or None if there is none."""
    info = read_recording_info(path)
    key = None if info is None else info.get("key")
    return key if isinstance(key, str) else None


def _is_free(path: Path) -> bool:
    """Nothing at ``path`` yet, or an empty folder."""
    if path.is_symlink():
        return False
    if not path.exists():
        return True
    return path.is_dir() and not any(path.iterdir())


def _render(
    spec: RecordingSpec, output: Path, *, replace_foreign: bool, replace_same: bool,
    progress: bool, workers: int | None,
) -> Path:
    calibration = spec.rig_calibration()
    key = _key(spec, calibration)
    if not replace_same and stored_recording_key(output) == key:
        _LOG.info("%s already holds recording %s; reusing it", output, key)
        return output
    if not replace_foreign and not _is_free(output):
        msg = (
            f"{str(output)!r} exists and is not a recording of these parameters (key {key}); "
            "pass force=True (--force) to replace it"
        )
        raise RecordingExistsError(msg)
    rig = CoaxialRigSim(calibration, spec.sim_config())
    plan = _plan(spec, rig)  # fails on a spec without frames before anything is created
    output.parent.mkdir(parents=True, exist_ok=True)
    # Render beside the target and rename once complete: a crash leaves only the hidden
    # ".partial" folder, never something under ``output`` that looks like a recording.
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".partial",
                                    dir=output.parent))
    try:
        bag = staging / output.name
        workers = default_workers() if workers is None else max(0, int(workers))
        summary = _write_bag(spec, rig, plan, key, bag, workers=workers, progress=progress)
        try:
            os.rename(bag, output)  # atomic; also replaces an empty folder
        except OSError:
            if not replace_same and stored_recording_key(output) == key:
                return output  # rendered by someone else meanwhile: identical content
            if not replace_foreign:
                msg = (
                    f"{str(output)!r} appeared while rendering; pass force=True (--force) to "
                    "replace it"
                )
                raise RecordingExistsError(msg) from None
            os.rename(output, staging / "replaced")  # removed with the staging folder
            os.rename(bag, output)
        _LOG.info(
            "wrote %s: %d frames, %d event packets (key %s)", output, summary["frames"],
            summary["event_packets"], key,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output


def simulate_recording(
    spec: RecordingSpec, output_dir: str | Path, *, force: bool = False, progress: bool = True,
    workers: int | None = None,
) -> Path:
    """Render ``spec`` into the rosbag2 folder ``output_dir``; returns ``output_dir``.

    An ``output_dir`` that already holds a recording of the same :meth:`RecordingSpec.key` is
    reused as it is (unless ``force``).

    Args:
        spec: What to render.
        output_dir: The rosbag2 folder to create (``metadata.yaml`` and the storage file).
        force: Render again and replace whatever ``output_dir`` holds.
        progress: Show a progress bar on stderr (only when it is a terminal).
        workers: Frame-rendering processes; None = :func:`default_workers`, 0 = inline.

    Raises:
        RecordingExistsError: ``output_dir`` holds something else (a non-empty folder that is
            not this recording, or a file) and ``force`` is false.
        ValueError: The spec cannot be rendered (e.g. too short for one frame, bad size).
    """
    return _render(spec, Path(output_dir), replace_foreign=force, replace_same=force,
                   progress=progress, workers=workers)


def cached_recording(
    spec: RecordingSpec, cache_root: str | Path = DEFAULT_CACHE_ROOT, *, progress: bool = True,
    workers: int | None = None,
) -> Path:
    """The cached recording of ``spec`` (``cache_root/sim_<key>``), rendered first if absent.

    A damaged or incomplete entry is rendered again; a complete one is never touched.
    """
    output = Path(cache_root) / f"sim_{spec.key()}"
    return _render(spec, output, replace_foreign=True, replace_same=False, progress=progress,
                   workers=workers)


__all__ = [
    "CUSTOM_DATA_CALIBRATION",
    "CUSTOM_DATA_RECORDING",
    "DEFAULT_CACHE_ROOT",
    "EPOCH_NS",
    "FIRST_FRAME_US",
    "READOUT_DELAY_US",
    "RECORDING_FORMAT",
    "STORAGES",
    "TOPICS",
    "RecordingExistsError",
    "RecordingSpec",
    "bayer_mosaic",
    "cached_recording",
    "calibration_yaml",
    "default_workers",
    "read_recording_info",
    "scale_calibration",
    "simulate_recording",
    "stamp_ns",
    "stored_calibration",
    "stored_recording_key",
]
