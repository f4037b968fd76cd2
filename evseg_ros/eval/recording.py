"""What an evaluation needs from a recording besides the replay: frames, ground truth, conditions.

Read once before the replay starts, with ``rosbags``, so that the report can say what is missing
(a topic, the ground truth, a known event encoding) instead of ending silently empty. Ground
truth comes from the recording's label topic (mono8 class ids with the frame's exact stamp) or
from a folder of label PNGs named by stamp (``<stamp_ns>.png``), as a labelled vehicle drive
would have it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rosbags.highlevel import AnyReader

from evseg_ros.events.bag import EVENT_PACKET_MSGTYPE, BagError, header_stamp_ns, open_bag
from evseg_ros.events.decoders import DECODERS
from evseg_ros.record.topics import RecordingTopics
from evseg_ros.sources.frame_replay import IMAGE_MSGTYPE, image_from_msg

LOGGER = logging.getLogger(__name__)

CAMERA_INFO_MSGTYPE = "sensor_msgs/msg/CameraInfo"
#: the rig's own topic names (simulated recordings and the drivers' defaults)
RIG_TOPICS = RecordingTopics()


class RecordingError(ValueError):
    """The recording cannot be evaluated at all (unreadable, no frames); names the bag."""


@dataclass
class RecordingContents:
    """The parts of a recording the evaluation scores against, and what is wrong with it."""

    path: Path
    topics: dict[str, tuple[str, int]]  # topic -> (msgtype, message count)
    frame_stamps: list[int]
    #: bag time of the first message: replay faults are timed from here
    start_ns: int = 0
    event_encoding: str | None = None
    calibration_yaml: str | None = None
    conditions: dict[int, str] = field(default_factory=dict)
    truth_topic: str | None = None
    labels_dir: Path | None = None
    label_files: dict[int, Path] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def recorded_fps(self) -> float:
        """Median frame rate of the recording's stamps (0 with fewer than two frames)."""
        if len(self.frame_stamps) < 2:
            return 0.0
        period_ns = float(np.median(np.diff(np.asarray(self.frame_stamps, dtype=np.int64))))
        return 1e9 / period_ns if period_ns > 0 else 0.0

    @property
    def has_truth(self) -> bool:
        return self.truth_topic is not None or bool(self.label_files)

    def truth(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(stamp_ns, class ids)`` of every labelled frame (read lazily, one at a time)."""
        if self.label_files:
            for stamp, path in sorted(self.label_files.items()):
                labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
                if labels is None or labels.ndim != 2:
                    LOGGER.warning("label file %s is not a single-channel image: skipped", path)
                    continue
                yield stamp, labels
            return
        if self.truth_topic is None:
            return
        for _, _, msg in _messages(self.path, self.truth_topic):
            decoded = image_from_msg(msg)
            if decoded is None or decoded[1] != "mono8":
                LOGGER.warning("ground truth on %s is not mono8: skipped", self.truth_topic)
                continue
            yield header_stamp_ns(msg), decoded[0]


def _open(path: Path) -> AnyReader:
    try:
        return open_bag(path)
    except BagError as err:
        msg = f"cannot read recording {str(path)!r}: {err.reason}"
        raise RecordingError(msg) from err


def _messages(path: Path, *topics: str) -> Iterator[tuple[str, int, Any]]:
    """``(topic, bag_ns, message)`` of ``topics`` in bag order, in one pass over the bag."""
    reader = _open(path)
    try:
        connections = [c for c in reader.connections if c.topic in topics]
        for connection, bag_ns, raw in reader.messages(connections=connections):
            try:
                yield connection.topic, bag_ns, reader.deserialize(raw, connection.msgtype)
            except Exception as err:  # one bad message: say so, go on
                LOGGER.warning("skipping a message on %s of %s: %s", connection.topic, path, err)
    finally:
        reader.close()


def _label_files(labels_dir: Path) -> dict[int, Path]:
    files: dict[int, Path] = {}
    for path in sorted(labels_dir.glob("*.png")):
        try:
            files[int(path.stem)] = path
        except ValueError:
            LOGGER.warning("label file %s is not named by its stamp in ns: skipped", path)
    return files


def inspect_recording(
    path: str | Path,
    *,
    topics: RecordingTopics = RIG_TOPICS,
    labels_dir: str | Path | None = None,
) -> RecordingContents:
    """Read a recording's layout, frame stamps, conditions and calibration; list its problems.

    Raises:
        RecordingError: the bag cannot be opened or holds no frames to evaluate (one line
            naming the bag and the topic).
    """
    path = Path(path)
    reader = _open(path)
    try:
        found = {c.topic: c.msgtype for c in reader.connections}
        counts = {topic: 0 for topic in found}
        for connection in reader.connections:
            counts[connection.topic] += connection.msgcount
        listing = {topic: (found[topic], counts[topic]) for topic in sorted(found)}
        start_ns = int(reader.start_time)
    finally:
        reader.close()
    problems: list[str] = []
    if found.get(topics.frames) != IMAGE_MSGTYPE:
        msg = (
            f"recording {str(path)!r} has no {IMAGE_MSGTYPE} on {topics.frames}; "
            f"it has {sorted(listing.items())!r}"
        )
        raise RecordingError(msg)
    contents = RecordingContents(path, listing, [], start_ns=start_ns)
    stamp_topic = topics.camera_info if found.get(topics.camera_info) == CAMERA_INFO_MSGTYPE \
        else topics.frames  # camera infos carry the frame's stamp and are cheaper to read
    # the frames' stamps, conditions and calibration in one pass
    for topic, _, msg in _messages(path, stamp_topic, topics.condition, topics.calibration):
        if topic == stamp_topic:
            contents.frame_stamps.append(header_stamp_ns(msg))
        elif topic == topics.condition:
            contents.conditions[header_stamp_ns(msg)] = str(msg.frame_id)
        elif contents.calibration_yaml is None:
            contents.calibration_yaml = str(msg.data)
    if found.get(topics.events) != EVENT_PACKET_MSGTYPE:
        problems.append(
            f"recording {str(path)!r} has no {EVENT_PACKET_MSGTYPE} on {topics.events}: "
            "the fused model runs without events"
        )
    else:
        for _, _, msg in _messages(path, topics.events):
            contents.event_encoding = str(getattr(msg, "encoding", ""))
            break
        if contents.event_encoding not in DECODERS:
            problems.append(
                f"recording {str(path)!r}: {topics.events} is encoded "
                f"{contents.event_encoding!r}, not one of {sorted(DECODERS)!r}: the accumulator "
                "counts and drops those packets"
            )
    if labels_dir is not None:
        contents.labels_dir = Path(labels_dir)
        if not contents.labels_dir.is_dir():
            msg = f"labels folder {str(labels_dir)!r} does not exist"
            raise RecordingError(msg)
        contents.label_files = _label_files(contents.labels_dir)
        if not contents.label_files:
            problems.append(f"labels folder {str(labels_dir)!r} holds no <stamp_ns>.png files")
    elif found.get(topics.ground_truth) == IMAGE_MSGTYPE:
        contents.truth_topic = topics.ground_truth
    else:
        problems.append(
            f"recording {str(path)!r} has no ground truth on {topics.ground_truth} (and no "
            "--labels folder): latency, drops and sync are reported, accuracy is not"
        )
    contents.problems = problems
    return contents
