"""Where a recording of the rig keeps each stream: the drivers' topics, plus ground truth.

One table for the writer of simulated recordings, the replay and the evaluation, so a topic
renamed in one place cannot silently leave the others reading an empty stream.
"""

from __future__ import annotations

from dataclasses import dataclass

TOPIC_CALIBRATION = "/rig/calibration"
TOPIC_EVENTS = "/rig/events"
TOPIC_IMAGE = "/rig/frame/image_raw"
TOPIC_CAMERA_INFO = "/rig/frame/camera_info"
TOPIC_GROUND_TRUTH = "/rig/frame/ground_truth"
TOPIC_CONDITION = "/rig/frame/condition"


@dataclass(frozen=True)
class RecordingTopics:
    """The topics of one recording (a vehicle's bag may name them otherwise)."""

    events: str = TOPIC_EVENTS
    frames: str = TOPIC_IMAGE
    camera_info: str = TOPIC_CAMERA_INFO
    ground_truth: str = TOPIC_GROUND_TRUTH
    condition: str = TOPIC_CONDITION
    calibration: str = TOPIC_CALIBRATION
