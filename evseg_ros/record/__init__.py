"""Recording the rig's topics: the bag writer behind the recorder node (no ROS)."""

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

__all__ = [
    "BagRecorder",
    "RecordedFile",
    "RecorderError",
    "RecordingSummary",
    "SplitPolicy",
    "TopicCounts",
    "format_summary",
    "recording_bags",
]
