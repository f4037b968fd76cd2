"""Frame sources that replay a video file or a folder of images (rosbag2: :mod:`.bag_replay`).

Both are newest-only like the camera: in real-time replay every frame that became due since
the last poll but one is skipped (and counted in ``skipped_frames``); as fast as consumed, one
frame goes out per poll. Stamps come from the recording (the video's frame rate, the folder's
rate or ``timestamps.txt``), so the spacing between frames is the
recorded one whatever the replay speed.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from evseg_ros.sources.base import CapturedFrame, SourceUnavailableError

LOGGER = logging.getLogger(__name__)

IMAGE_MSGTYPE = "sensor_msgs/msg/Image"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TIMESTAMP_UNITS_NS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}

#: ROS image encodings the frame sources deliver, with their channel count
FRAME_ENCODINGS: dict[str, int] = {
    "rgb8": 3,
    "bgr8": 3,
    "mono8": 1,
    "bayer_rggb8": 1,
    "bayer_gbrg8": 1,
    "bayer_grbg8": 1,
    "bayer_bggr8": 1,
}


class _FramePacer:
    """Maps recording time to ROS time and decides which frames are due.

    The first frame is stamped with the ROS time of the first poll; later ones keep their
    recorded spacing. After a loop the recording's first frame follows the last frame sent by
    one frame period, so paced stamps never go backwards.
    """

    def __init__(self, *, realtime: bool) -> None:
        self.realtime = realtime
        self._offset_ns: int | None = None
        self._last_ns: int | None = None

    def stamp(self, recording_ns: int, now_ns: int) -> int:
        if self._offset_ns is None:
            self._offset_ns = int(now_ns) - int(recording_ns)
        return self._offset_ns + int(recording_ns)

    def due(self, recording_ns: int, now_ns: int) -> bool:
        return not self.realtime or self.stamp(recording_ns, now_ns) <= now_ns

    def sent(self, stamp_ns: int) -> None:
        self._last_ns = stamp_ns

    def restart(self, first_recording_ns: int, period_ns: int) -> None:
        if self._last_ns is not None:
            self._offset_ns = self._last_ns + period_ns - int(first_recording_ns)


@dataclass(frozen=True)
class _Pending:
    recording_ns: int
    index: int
    decode: Callable[[], tuple[np.ndarray, str] | None]


class _NewestOnlyReplay:
    """Newest-only pacing shared by the replay sources.

    Subclasses provide ``_take`` (advance to the next frame without decoding it), ``_peek_ns``
    (recording time of the frame after that, without advancing) and ``_rewind``.
    """

    width: int
    height: int

    def __init__(self, *, realtime: bool, loop: bool) -> None:
        self.loop = loop
        self.loops = 0
        self.skipped_frames = 0
        #: frames that could not be decoded: counted and skipped, never raised
        self.bad_frames = 0
        self._pacer = _FramePacer(realtime=realtime)
        self._pending: _Pending | None = None
        self._sent_in_pass = 0
        self._period_ns = 1
        self._last_recording_ns: int | None = None
        self._ended = False
        self._closed = False

    def _take(self) -> _Pending | None:
        raise NotImplementedError

    def _peek_ns(self) -> int | None:
        raise NotImplementedError

    def _rewind(self) -> None:
        raise NotImplementedError

    @property
    def finished(self) -> bool:
        """Closed, or every frame sent and no loop to start over."""
        if self._closed or self._ended:
            return True
        return self._pending is None and not self.loop and self._peek_ns() is None

    def _next_pending(self) -> _Pending | None:
        pending = self._take()
        if pending is None and self.loop and self._sent_in_pass > 0:
            self.loops += 1
            self._sent_in_pass = 0
            self._rewind()
            pending = self._take()
            if pending is not None:
                self._pacer.restart(pending.recording_ns, self._period_ns)
        if pending is None:
            self._ended = True
        elif self._last_recording_ns is not None and pending.recording_ns > (
            self._last_recording_ns
        ):
            self._period_ns = pending.recording_ns - self._last_recording_ns
        if pending is not None:
            self._last_recording_ns = pending.recording_ns
        return pending

    def read(self, now_ns: int) -> list[CapturedFrame]:
        """The newest frame due at ``now_ns`` (at most one); older due frames are skipped."""
        while not self.finished:
            if self._pending is None:
                self._pending = self._next_pending()
                if self._pending is None:
                    break
            pending = self._pending
            if not self._pacer.due(pending.recording_ns, now_ns):
                break
            self._pending = None
            self._sent_in_pass += 1
            following = self._peek_ns() if self._pacer.realtime else None
            if following is not None and self._pacer.due(following, now_ns):
                self.skipped_frames += 1
                continue
            loaded = pending.decode()
            if loaded is None:
                self.bad_frames += 1
                continue
            image, encoding = loaded
            paced = self._pacer.stamp(pending.recording_ns, now_ns)
            self._pacer.sent(paced)
            return [CapturedFrame(paced, image, pending.index, 0, encoding=encoding)]
        return []

    def status_values(self) -> dict[str, int | bool]:
        """Counters for the driver's diagnostics."""
        return {
            "replay_loops": self.loops,
            "replay_finished": self.finished,
            "bad_frames": self.bad_frames,
        }

    def close(self) -> None:
        self._closed = True
        self._pending = None


def _to_rgb(image: np.ndarray) -> tuple[np.ndarray, str] | None:
    """OpenCV's BGR(A)/gray uint8 image as (array, encoding); None for other layouts."""
    if image.dtype != np.uint8:
        return None
    if image.ndim == 2:
        return image, "mono8"
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), "rgb8"
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB), "rgb8"
    return None


class VideoFileFrameSource(_NewestOnlyReplay):
    """Frames of a video file (anything OpenCV's ``VideoCapture`` reads), as rgb8.

    Skipped frames are grabbed but not decoded. The container's frame count decides when the
    newest due frame is the last one; a file that ends before its stated count loses at most its
    last frame to newest-only skipping.

    Args:
        path: the video file.
        realtime: pace frames at the file's frame rate (False: one frame per poll).
        loop: start over at the end.
        fallback_rate_hz: frame rate to assume when the container does not state one.

    Raises:
        SourceUnavailableError: the file is missing, cannot be opened, or holds no frame.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        realtime: bool = True,
        loop: bool = False,
        fallback_rate_hz: float = 30.0,
    ) -> None:
        super().__init__(realtime=realtime, loop=loop)
        self.path = Path(path)
        if not self.path.is_file():
            msg = f"video file {str(self.path)!r} does not exist"
            raise SourceUnavailableError(msg)
        self._capture = self._open()
        ok, first = self._capture.read()
        if not ok or first is None:
            self._capture.release()
            msg = f"cannot read a frame from video file {str(self.path)!r}"
            raise SourceUnavailableError(msg)
        self.height, self.width = first.shape[:2]
        rate = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.rate_hz = rate if np.isfinite(rate) and rate > 0 else float(fallback_rate_hz)
        self.frame_count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self._first: np.ndarray | None = first
        self._grabbed = 0  # frames taken from the capture in this pass

    def _open(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            msg = f"OpenCV cannot open video file {str(self.path)!r}"
            raise SourceUnavailableError(msg)
        return capture

    def _time_ns(self, index: int) -> int:
        return round(index * 1e9 / self.rate_hz)

    def _take(self) -> _Pending | None:
        index = self._grabbed
        if self._first is not None:
            first, self._first = self._first, None
            self._grabbed += 1
            return _Pending(self._time_ns(index), index, lambda: _to_rgb(first))
        if not self._capture.grab():
            return None
        self._grabbed += 1

        def decode() -> tuple[np.ndarray, str] | None:
            ok, image = self._capture.retrieve()
            return _to_rgb(image) if ok and image is not None else None

        return _Pending(self._time_ns(index), index, decode)

    def _peek_ns(self) -> int | None:
        if self.frame_count and self._grabbed >= self.frame_count:
            return None
        return self._time_ns(self._grabbed)

    def _rewind(self) -> None:
        self._capture.release()
        self._capture = self._open()
        self._grabbed = 0

    def close(self) -> None:
        super().close()
        self._capture.release()


def _read_timestamps(path: Path, count: int, unit: str) -> list[int]:
    """Times of ``timestamps.txt`` relative to the first, in ns."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        msg = f"cannot read {str(path)!r}: {err}"
        raise SourceUnavailableError(msg) from err
    stamps: list[int] = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].split()
        if not text:
            continue
        try:
            value = int(text[-1])
        except ValueError:
            try:
                value = float(text[-1])
            except ValueError:
                msg = f"{str(path)!r} line {number}: {line!r} is not a timestamp"
                raise SourceUnavailableError(msg) from None
        stamps.append(round(value * TIMESTAMP_UNITS_NS[unit]))
    if len(stamps) != count:
        msg = f"{str(path)!r} holds {len(stamps)} timestamps for {count} images"
        raise SourceUnavailableError(msg)
    if any(b < a for a, b in itertools.pairwise(stamps)):
        msg = f"{str(path)!r}: timestamps go backwards"
        raise SourceUnavailableError(msg)
    return [s - stamps[0] for s in stamps]


class ImageFolderFrameSource(_NewestOnlyReplay):
    """The PNG/JPEG images of a folder in name order, as rgb8 (mono8 for gray images).

    Stamps follow ``rate_hz``, or a ``timestamps.txt`` in the folder when there is one: one time
    per image in name order (the last number of each line, in ``timestamp_unit``; blank lines
    and ``#`` comments are ignored), as datasets such as DSEC ship them. An image that cannot
    be read later on is counted in ``bad_frames`` and skipped.

    Raises:
        SourceUnavailableError: the folder is missing, holds no image, its first image cannot
            be read, or ``timestamps.txt`` does not match the images.
        ValueError: ``rate_hz`` or ``timestamp_unit`` is invalid.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        rate_hz: float = 10.0,
        realtime: bool = True,
        loop: bool = False,
        timestamp_unit: str = "us",
    ) -> None:
        super().__init__(realtime=realtime, loop=loop)
        if timestamp_unit not in TIMESTAMP_UNITS_NS:
            msg = f"timestamp_unit {timestamp_unit!r} is not one of {sorted(TIMESTAMP_UNITS_NS)}"
            raise ValueError(msg)
        if not rate_hz > 0:
            msg = f"rate_hz must be positive, got {rate_hz!r}"
            raise ValueError(msg)
        self.path = Path(path)
        if not self.path.is_dir():
            msg = f"image folder {str(self.path)!r} does not exist"
            raise SourceUnavailableError(msg)
        self.files = sorted(
            p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        if not self.files:
            msg = f"image folder {str(self.path)!r} holds no {'/'.join(IMAGE_SUFFIXES)} images"
            raise SourceUnavailableError(msg)
        stamps_file = self.path / "timestamps.txt"
        if stamps_file.is_file():
            self._times_ns = _read_timestamps(stamps_file, len(self.files), timestamp_unit)
        else:
            self._times_ns = [round(i * 1e9 / rate_hz) for i in range(len(self.files))]
        first = self._load(0)
        if first is None:
            msg = f"cannot read image {str(self.files[0])!r} as an 8-bit gray or colour image"
            raise SourceUnavailableError(msg)
        self.height, self.width = first[0].shape[:2]
        self._next = 0

    def _load(self, index: int) -> tuple[np.ndarray, str] | None:
        image = cv2.imread(str(self.files[index]), cv2.IMREAD_UNCHANGED)
        converted = None if image is None else _to_rgb(image)
        if converted is None:
            LOGGER.warning("skipping unreadable or non-8-bit image %r", str(self.files[index]))
        return converted

    def _take(self) -> _Pending | None:
        index = self._next
        if index >= len(self.files):
            return None
        self._next += 1
        return _Pending(self._times_ns[index], index, lambda: self._load(index))

    def _peek_ns(self) -> int | None:
        return self._times_ns[self._next] if self._next < len(self.files) else None

    def _rewind(self) -> None:
        self._next = 0


def image_from_msg(msg: Any) -> tuple[np.ndarray, str] | None:
    """A deserialized sensor_msgs/Image as (array, encoding); None if it cannot be one.

    Padded rows (``step`` larger than the pixels) are cropped; unknown encodings, big-endian
    data and truncated buffers give None.
    """
    channels = FRAME_ENCODINGS.get(str(msg.encoding))
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if channels is None or msg.is_bigendian or step < width * channels or not height * width:
        return None
    data = np.asarray(msg.data, dtype=np.uint8).reshape(-1)
    if data.size < step * height:
        return None
    rows = data[: step * height].reshape(height, step)[:, : width * channels]
    image = np.array(rows.reshape(height, width, channels), copy=True)
    return (image[:, :, 0] if channels == 1 else image), str(msg.encoding)
