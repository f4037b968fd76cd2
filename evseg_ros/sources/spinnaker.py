"""FLIR frame camera (Blackfly S) through PySpin, the Spinnaker SDK's Python binding.

PySpin cannot be installed from PyPI, so it is imported when a source is opened, never at module
import: without it, opening raises :class:`SourceUnavailableError` naming what to install and
every other source keeps working.

What the source does with the camera:

- **Configuration** through the GenICam nodes (pixel format, exposure, gain, frame rate, trigger,
  chunk data, newest-only stream buffers). A node is written only when it is writable; whatever
  cannot be applied (missing node, read-only, rejected value) is listed in
  ``settings_not_applied`` and logged instead of failing: camera models differ in their nodes,
  and a frame with a default setting is more useful than no frame.
- **Stamps** from chunk data: the camera's Timestamp (ns, camera clock, taken at exposure start)
  is mapped to host time by :class:`CameraClockMapper`, which tracks offset and drift from the
  frames' receive times. Stamps therefore keep the camera's exact frame spacing instead of the
  host's USB and scheduling jitter.
- **Acquisition** in a background thread blocked in ``GetNextImage(timeout)``, so the ROS
  executor never waits for the camera. A timeout is counted; ``max_consecutive_timeouts`` of them
  in a row, or any other Spinnaker error (a disconnect shows up that way), end acquisition and
  re-initialise the camera; while it is absent, reopening is retried every timeout period.
  Nothing raises out of :meth:`SpinnakerFrameSource.read`.
- **Newest-only**: the stream keeps only the newest buffer (``NewestOnly``), and the thread
  keeps only the newest frame for the next poll. Frames lost either way are counted in
  ``skipped_frames`` (the chunk FrameID shows gaps at the camera).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from evseg_ros.sources.base import CapturedFrame, SourceUnavailableError, import_sdk
from evseg_ros.sources.camera_clock import CameraClockMapper

LOGGER = logging.getLogger(__name__)

INSTALL_HINT = (
    "install the FLIR Spinnaker SDK and its matching spinnaker-python wheel (module PySpin) "
    "to use source 'hardware'"
)

#: GenICam pixel format -> ROS image encoding (sensor_msgs/image_encodings)
PIXEL_FORMAT_ENCODINGS: dict[str, str] = {
    "BayerRG8": "bayer_rggb8",
    "BayerGB8": "bayer_gbrg8",
    "BayerGR8": "bayer_grbg8",
    "BayerBG8": "bayer_bggr8",
    "RGB8": "rgb8",
    "BGR8": "bgr8",
    "Mono8": "mono8",
}
TRIGGER_MODES = ("off", "on")
TRIGGER_SELECTORS = ("FrameStart", "AcquisitionStart")
TRIGGER_SOURCES = ("Line0", "Line1", "Line2", "Line3")
TRIGGER_ACTIVATIONS = ("RisingEdge", "FallingEdge", "AnyEdge", "LevelHigh", "LevelLow")
TRIGGER_OVERLAPS = ("Off", "ReadOut", "PreviousFrame")
#: chunk data the stamp needs: frame counter, camera time, exposure time
CHUNKS = ("FrameID", "Timestamp", "ExposureTime")
SPINNAKER_ERR_TIMEOUT = -1011  # spinError value of a GetNextImage timeout


def _choice(field: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        msg = f"SpinnakerConfig.{field} = {value!r} is not one of {choices!r}"
        raise ValueError(msg)


def _at_least(field: str, value: float, low: float, *, strict: bool = False) -> None:
    if not np.isfinite(value) or value < low or (strict and value == low):
        relation = ">" if strict else ">="
        msg = f"SpinnakerConfig.{field} = {value!r} must be {relation} {low!r}"
        raise ValueError(msg)


@dataclass(frozen=True)
class SpinnakerConfig:
    """Camera settings, validated before the camera is touched.

    Raises:
        ValueError: a value is out of range or not one of its choices (names field and value).
    """

    serial: str = ""  # empty: the first camera found
    pixel_format: str = "BayerRG8"  # debayering happens downstream (GPU where there is one)
    exposure_auto: bool = True
    exposure_us: float = 10_000.0  # used when exposure_auto is off
    gain_auto: bool = True
    gain_db: float = 0.0  # used when gain_auto is off
    frame_rate_hz: float = 0.0  # 0: leave the camera's rate (or the trigger) in charge
    trigger_mode: str = "off"  # "on": every frame waits for a pulse on trigger_source
    trigger_selector: str = "FrameStart"
    trigger_source: str = "Line0"
    trigger_activation: str = "RisingEdge"
    trigger_delay_us: float = 0.0
    trigger_overlap: str = "Off"
    acquisition_timeout_ms: int = 1000
    max_consecutive_timeouts: int = 3

    def __post_init__(self) -> None:
        _choice("pixel_format", self.pixel_format, tuple(PIXEL_FORMAT_ENCODINGS))
        _choice("trigger_mode", self.trigger_mode, TRIGGER_MODES)
        _choice("trigger_selector", self.trigger_selector, TRIGGER_SELECTORS)
        _choice("trigger_source", self.trigger_source, TRIGGER_SOURCES)
        _choice("trigger_activation", self.trigger_activation, TRIGGER_ACTIVATIONS)
        _choice("trigger_overlap", self.trigger_overlap, TRIGGER_OVERLAPS)
        _at_least("exposure_us", self.exposure_us, 0.0, strict=True)
        _at_least("gain_db", self.gain_db, 0.0)
        _at_least("frame_rate_hz", self.frame_rate_hz, 0.0)
        _at_least("trigger_delay_us", self.trigger_delay_us, 0.0)
        _at_least("acquisition_timeout_ms", self.acquisition_timeout_ms, 0, strict=True)
        _at_least("max_consecutive_timeouts", self.max_consecutive_timeouts, 1)

    @property
    def encoding(self) -> str:
        """ROS encoding of frames in ``pixel_format``."""
        return PIXEL_FORMAT_ENCODINGS[self.pixel_format]


def import_pyspin() -> ModuleType:
    """The PySpin module.

    Raises:
        SourceUnavailableError: PySpin is not importable; the message says what to install.
    """
    return import_sdk("PySpin", INSTALL_HINT)


class _NodeWriter:
    """Writes GenICam nodes that are writable and records the ones that are not."""

    def __init__(self, spin: ModuleType, camera: Any) -> None:
        self._spin = spin
        self._camera = camera
        self.not_applied: list[str] = []

    def _node(self, path: str) -> Any | None:
        node = self._camera
        for part in path.split("."):
            node = getattr(node, part, None)
            if node is None:
                return None
        return node

    def set(self, path: str, value: Any, *, label: str | None = None) -> bool:
        """Write ``value`` to node ``path`` if it is writable; False (and recorded) if not."""
        label = label or path
        spin = self._spin
        node = self._node(path)
        if node is None:
            self.not_applied.append(f"{label}={value!r} (no such node)")
            return False
        try:
            if node.GetAccessMode() not in (spin.RW, spin.WO):
                self.not_applied.append(f"{label}={value!r} (not writable)")
                return False
            node.SetValue(value)
        except spin.SpinnakerException as err:
            self.not_applied.append(f"{label}={value!r} ({err})")
            return False
        return True

    def set_enum(self, path: str, symbol: str, *, label: str | None = None) -> bool:
        """Write the enumeration entry ``<node>_<symbol>`` (PySpin's constant) to ``path``."""
        node_name = path.rsplit(".", 1)[-1]
        value = getattr(self._spin, f"{node_name}_{symbol}", None)
        if value is None:
            self.not_applied.append(f"{label or path}={symbol!r} (PySpin has no such entry)")
            return False
        return self.set(path, value, label=f"{label or path}={symbol}")


def configure_camera(spin: ModuleType, camera: Any, config: SpinnakerConfig) -> list[str]:
    """Apply ``config`` to an initialised, not yet streaming camera.

    Returns:
        The settings that could not be applied, as ``"Node=value (reason)"`` strings.
    """
    writer = _NodeWriter(spin, camera)
    writer.set_enum("AcquisitionMode", "Continuous")
    writer.set_enum("TLStream.StreamBufferHandlingMode", "NewestOnly")
    writer.set_enum("PixelFormat", config.pixel_format)
    writer.set_enum("ExposureAuto", "Continuous" if config.exposure_auto else "Off")
    if not config.exposure_auto:
        writer.set("ExposureTime", float(config.exposure_us))
    writer.set_enum("GainAuto", "Continuous" if config.gain_auto else "Off")
    if not config.gain_auto:
        writer.set("Gain", float(config.gain_db))
    # the trigger source can only change while the trigger is off
    writer.set_enum("TriggerMode", "Off")
    if config.trigger_mode == "on":
        writer.set_enum("TriggerSelector", config.trigger_selector)
        writer.set_enum("TriggerSource", config.trigger_source)
        writer.set_enum("TriggerActivation", config.trigger_activation)
        writer.set_enum("TriggerOverlap", config.trigger_overlap)
        if config.trigger_delay_us > 0:
            writer.set("TriggerDelay", float(config.trigger_delay_us))
        writer.set_enum("TriggerMode", "On")
    if config.frame_rate_hz > 0:
        if writer.set("AcquisitionFrameRateEnable", True):
            writer.set("AcquisitionFrameRate", float(config.frame_rate_hz))
    writer.set("ChunkModeActive", True)
    for chunk in CHUNKS:
        if writer.set_enum("ChunkSelector", chunk, label=f"ChunkSelector[{chunk}]"):
            writer.set("ChunkEnable", True, label=f"ChunkEnable[{chunk}]")
    return writer.not_applied


@dataclass(frozen=True)
class _Grabbed:
    """A frame as the acquisition thread hands it over (stamp in the local monotonic clock)."""

    monotonic_ns: int
    image: np.ndarray
    frame_id: int
    exposure_us: int
    encoding: str


class SpinnakerFrameSource:
    """Frames from a FLIR camera, newest only, stamped from the camera clock.

    Args:
        config: camera settings.
        threaded: acquire in a background thread (the driver). False: every :meth:`read`
            waits for one ``GetNextImage`` itself (deterministic; used by tests).
        clock_ns: monotonic clock of this host in ns (a fake one in tests).

    Raises:
        SourceUnavailableError: PySpin is missing, or no camera matches ``config.serial``.
    """

    def __init__(
        self,
        config: SpinnakerConfig | None = None,
        *,
        threaded: bool = True,
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self._spin = import_pyspin()
        self.config = config or SpinnakerConfig()
        self._clock_ns = clock_ns
        self.clock = CameraClockMapper()
        self.width = self.height = 0
        self.settings_not_applied: list[str] = []
        self.skipped_frames = 0
        self.frames_captured = 0
        self.timeouts = 0
        self.restarts = 0
        self.failed_restarts = 0
        self.errors = 0
        self.incomplete = 0
        self.unsupported_frames = 0
        self.connected = False
        self.last_error = ""
        self._consecutive_timeouts = 0
        self._last_frame_id: int | None = None
        self._next_reopen_ns = 0
        self._camera: Any = None
        self._cameras: Any = None
        self._warned: set[str] = set()
        self._closed = False
        self._system = self._spin.System.GetInstance()
        try:
            self._start_camera()
        except Exception:
            self._release_system()
            raise
        self._newest: _Grabbed | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(
                target=self._acquire_loop, name="spinnaker-acquisition", daemon=True
            )
            self._thread.start()

    # camera lifecycle -----------------------------------------------------------------------
    def _find_camera(self) -> Any:
        spin = self._spin
        self._cameras = self._system.GetCameras()
        serial = self.config.serial
        camera = None
        try:
            if serial:
                camera = self._cameras.GetBySerial(serial)
            elif self._cameras.GetSize() > 0:
                camera = self._cameras.GetByIndex(0)
            if camera is not None and not camera.IsValid():
                camera = None
        except spin.SpinnakerException:
            camera = None
        if camera is None:
            found = self._serials()
            self._clear_camera_list()
            wanted = f"serial {serial!r}" if serial else "any serial"
            msg = f"no FLIR camera found for {wanted} (connected: {found!r})"
            raise SourceUnavailableError(msg)
        return camera

    def _serials(self) -> list[str]:
        serials = []
        try:
            for index in range(self._cameras.GetSize()):
                device = self._cameras.GetByIndex(index).TLDevice
                serials.append(str(device.DeviceSerialNumber.GetValue()))
        except (self._spin.SpinnakerException, AttributeError):
            pass
        return serials

    def _start_camera(self) -> None:
        camera = self._find_camera()
        try:
            camera.Init()
            not_applied = configure_camera(self._spin, camera, self.config)
            camera.BeginAcquisition()
            self.width = int(camera.Width.GetValue())
            self.height = int(camera.Height.GetValue())
        except self._spin.SpinnakerException as err:
            self._camera = camera
            self._stop_camera()
            msg = f"FLIR camera {self.config.serial or '(first)'} failed to start: {err}"
            raise SourceUnavailableError(msg) from err
        self._camera = camera
        if not_applied != self.settings_not_applied:
            LOGGER.warning("camera settings not applied: %s", "; ".join(not_applied))
        self.settings_not_applied = not_applied
        self.connected = True
        self._consecutive_timeouts = 0
        self._last_frame_id = None
        self.clock.reset()  # a reconnected camera may have restarted its clock

    def _stop_camera(self) -> None:
        """End acquisition and release the camera, whatever state it is in."""
        camera, self._camera = self._camera, None
        self.connected = False
        if camera is not None:
            for step in ("EndAcquisition", "DeInit"):
                try:
                    getattr(camera, step)()
                except self._spin.SpinnakerException as err:
                    LOGGER.debug("%s failed while stopping the camera: %s", step, err)
            del camera
        self._clear_camera_list()

    def _clear_camera_list(self) -> None:
        if self._cameras is not None:
            try:
                self._cameras.Clear()
            except self._spin.SpinnakerException:
                pass
            self._cameras = None

    def _release_system(self) -> None:
        if self._system is not None:
            try:
                self._system.ReleaseInstance()
            except self._spin.SpinnakerException as err:
                LOGGER.debug("ReleaseInstance failed: %s", err)
            self._system = None

    def _restart(self, reason: str) -> None:
        """Stop and reopen the camera; on failure stay disconnected and retry later."""
        LOGGER.warning("restarting FLIR camera acquisition: %s", reason)
        self.last_error = reason
        self._stop_camera()
        self._reopen()

    def _reopen(self) -> None:
        try:
            self._start_camera()
        except (SourceUnavailableError, self._spin.SpinnakerException) as err:
            self.failed_restarts += 1
            reason = self.last_error.split("; reopening")[0]
            self.last_error = f"{reason}; reopening failed: {err}"
            retry_ns = self.config.acquisition_timeout_ms * 1_000_000
            self._next_reopen_ns = self._clock_ns() + retry_ns
            return
        self.restarts += 1
        LOGGER.info("FLIR camera acquisition restarted")

    # acquisition ----------------------------------------------------------------------------
    def _is_timeout(self, err: Exception) -> bool:
        code = getattr(err, "errorcode", None)
        if code is not None:
            timeout_code = getattr(self._spin, "SPINNAKER_ERR_TIMEOUT", SPINNAKER_ERR_TIMEOUT)
            return int(code) == int(timeout_code)
        return "timeout" in str(err).lower()

    def grab_once(self) -> _Grabbed | None:
        """Wait for one frame (up to the acquisition timeout); None on any trouble, counted."""
        spin = self._spin
        if self._camera is None:
            if self._clock_ns() >= self._next_reopen_ns:
                self._reopen()
            return None
        try:
            image = self._camera.GetNextImage(int(self.config.acquisition_timeout_ms))
        except spin.SpinnakerException as err:
            if self._is_timeout(err):
                self.timeouts += 1
                self._consecutive_timeouts += 1
                if self._consecutive_timeouts >= self.config.max_consecutive_timeouts:
                    self._restart(
                        f"no frame for {self._consecutive_timeouts} x "
                        f"{self.config.acquisition_timeout_ms} ms"
                    )
            else:
                self.errors += 1
                self._restart(f"camera error (disconnected?): {err}")
            return None
        received_ns = self._clock_ns()
        self._consecutive_timeouts = 0
        try:
            return self._convert(image, received_ns)
        except spin.SpinnakerException as err:
            self.errors += 1
            self._warn_once("read", f"cannot read a frame from the camera: {err}")
            return None
        finally:
            try:
                image.Release()
            except spin.SpinnakerException:
                pass

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            LOGGER.warning(message)

    def _convert(self, image: Any, received_ns: int) -> _Grabbed | None:
        if image.IsIncomplete():
            self.incomplete += 1
            return None
        pixel_format = str(image.GetPixelFormatName())
        encoding = PIXEL_FORMAT_ENCODINGS.get(pixel_format)
        array = np.array(image.GetNDArray(), copy=True)
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        channels = 1 if array.ndim == 2 else (array.shape[2] if array.ndim == 3 else -1)
        wanted_channels = 3 if encoding in ("rgb8", "bgr8") else 1
        if encoding is None or array.dtype != np.uint8 or channels != wanted_channels:
            self.unsupported_frames += 1
            self._warn_once(
                f"format {pixel_format}",
                f"dropping frames in pixel format {pixel_format!r} ({array.dtype}, shape "
                f"{array.shape}); supported: {sorted(PIXEL_FORMAT_ENCODINGS)}",
            )
            return None
        frame_id, camera_ns, exposure_us = self._chunk_values(image)
        if self._last_frame_id is not None and frame_id > self._last_frame_id + 1:
            self.skipped_frames += frame_id - self._last_frame_id - 1
        self._last_frame_id = frame_id
        exposure_ns = round(exposure_us * 1000)
        start_ns = received_ns - exposure_ns  # latest possible exposure start
        if camera_ns > 0:
            self.clock.add(camera_ns, start_ns)
            stamp = self.clock.to_host(camera_ns)
        else:
            stamp = start_ns
        self.frames_captured += 1
        return _Grabbed(int(stamp), array, frame_id, round(exposure_us), encoding)

    def _chunk_values(self, image: Any) -> tuple[int, int, float]:
        """(FrameID, camera Timestamp in ns, ExposureTime in us), from chunk data if present."""
        try:
            chunk = image.GetChunkData()
            return (
                int(chunk.GetFrameID()),
                int(chunk.GetTimestamp()),
                float(chunk.GetExposureTime()),
            )
        except (self._spin.SpinnakerException, AttributeError):
            exposure = 0.0 if self.config.exposure_auto else float(self.config.exposure_us)
            return int(image.GetFrameID()), int(image.GetTimeStamp()), exposure

    def _acquire_loop(self) -> None:
        while not self._stop.is_set():
            try:
                grabbed = self.grab_once()
            except Exception as err:  # never let the thread die silently
                self.errors += 1
                self.last_error = f"acquisition failed: {err!r}"
                LOGGER.exception("acquisition failed")
                grabbed = None
            if grabbed is not None:
                with self._lock:
                    if self._newest is not None:
                        self.skipped_frames += 1
                    self._newest = grabbed
            elif self._camera is None:
                self._stop.wait(self.config.acquisition_timeout_ms / 1000.0)

    # FrameSource ----------------------------------------------------------------------------
    def read(self, now_ns: int) -> list[CapturedFrame]:
        """The newest frame since the last call, stamped in the clock of ``now_ns``."""
        if self._closed:
            return []
        poll_ns = self._clock_ns()  # the local clock reading that goes with now_ns
        if self._thread is None:
            try:
                grabbed = self.grab_once()
            except Exception as err:  # the driver must keep running whatever the camera does
                self.errors += 1
                self.last_error = f"acquisition failed: {err!r}"
                LOGGER.exception("acquisition failed")
                grabbed = None
        else:
            with self._lock:
                grabbed, self._newest = self._newest, None
        if grabbed is None:
            return []
        stamp = int(now_ns) + (grabbed.monotonic_ns - poll_ns)
        return [
            CapturedFrame(
                stamp,
                grabbed.image,
                grabbed.frame_id,
                grabbed.exposure_us,
                encoding=grabbed.encoding,
            )
        ]

    def status_values(self) -> dict[str, int | bool | str]:
        """Counters and state for the driver's diagnostics."""
        return {
            "connected": self.connected,
            "frames_captured": self.frames_captured,
            "timeouts": self.timeouts,
            "restarts": self.restarts,
            "failed_restarts": self.failed_restarts,
            "camera_errors": self.errors,
            "incomplete": self.incomplete,
            "unsupported_frames": self.unsupported_frames,
            "clock_jumps": self.clock.clock_jumps,
            "settings_not_applied": "; ".join(self.settings_not_applied) or "none",
        }

    def close(self) -> None:
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0 * self.config.acquisition_timeout_ms / 1000.0 + 1.0)
            self._thread = None
        self._stop_camera()
        self._release_system()
