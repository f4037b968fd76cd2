"""Where driver nodes get their data: hardware SDKs, recordings, or the simulated rig.

Sources are plain Python (no rclpy) and are polled by the driver nodes with the current ROS time;
a driver only wraps what they return in messages.
"""

from __future__ import annotations

from evseg_ros.sources.base import (
    CapturedFrame,
    EventPacketSource,
    FrameSource,
    RawEventPacket,
    SourceUnavailableError,
)
from evseg_ros.sources.sim import SimEventSource, SimFrameSource

__all__ = [
    "CapturedFrame",
    "EventPacketSource",
    "FrameSource",
    "RawEventPacket",
    "SimEventSource",
    "SimFrameSource",
    "SourceUnavailableError",
]
