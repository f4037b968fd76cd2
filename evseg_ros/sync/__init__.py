"""Time synchronisation between the event camera's sensor clock and ROS time."""

from __future__ import annotations

from evseg_ros.sync.clock_offset import ClockOffsetEstimator
from evseg_ros.sync.frame_trigger_sync import (
    STATISTICS_KEYS,
    AnchorSource,
    FrameSyncResult,
    FrameTiming,
    FrameTriggerSync,
    MatchResult,
    SyncConfig,
)

__all__ = [
    "STATISTICS_KEYS",
    "AnchorSource",
    "ClockOffsetEstimator",
    "FrameSyncResult",
    "FrameTiming",
    "FrameTriggerSync",
    "MatchResult",
    "SyncConfig",
]
