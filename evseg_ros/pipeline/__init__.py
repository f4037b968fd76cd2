"""The processing stages behind the nodes, free of ROS so they run and test on their own.

The nodes only convert messages and hand over to these classes; the in-process runner and the
rosbag evaluation reuse them unchanged.
"""

from __future__ import annotations

from evseg_ros.pipeline.accumulator import AccumulatorConfig, EventFrameAccumulator, ReadyFrame
from evseg_ros.pipeline.segmenter import SegmentationOutput, Segmenter
from evseg_ros.pipeline.stamp_pairing import StampPairer

__all__ = [
    "AccumulatorConfig",
    "EventFrameAccumulator",
    "ReadyFrame",
    "SegmentationOutput",
    "Segmenter",
    "StampPairer",
]
