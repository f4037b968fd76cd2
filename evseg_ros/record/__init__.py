"""Recordings of the rig: their topics, and the bag writer behind the recorder node (no ROS)."""

from evseg_ros.record.bag_recorder import (
    BagRecorder,
    RecordedFile,
    RecorderError,
    RecordingSummary,
    SplitPolicy,
    TopicCounts,
    format_summary,
    recording_bags,
)
from evseg_ros.record.topics import RecordingTopics

__all__ = [
    "BagRecorder",
    "RecordedFile",
    "RecorderError",
    "RecordingSummary",
    "RecordingTopics",
    "SplitPolicy",
    "TopicCounts",
    "format_summary",
    "recording_bags",
]
