"""Sensor-time to ROS-time mapping from EventPacket stamps.

A packet's header stamp is taken when the host receives it, so ``stamp - sensor_time`` is the
true clock offset plus a non-negative transport delay. The lower envelope over a sliding window
therefore tracks the offset, and the window lets it follow slow drift between the clocks.
"""

from __future__ import annotations

from collections import deque


class ClockOffsetEstimator:
    """Track ``ros_time_us - sensor_time_us`` as the minimum over recent samples."""

    def __init__(self, *, window: int = 200, jump_threshold_us: int = 1_000_000) -> None:
        self._samples: deque[int] = deque(maxlen=window)
        self.jump_threshold_us = jump_threshold_us
        #: Number of times the offset moved by more than ``jump_threshold_us`` (bag loop,
        #: camera restart, clock step): the window is restarted so the estimate recovers.
        self.clock_jumps = 0

    def add(self, ros_time_us: int, sensor_time_us: int) -> None:
        sample = int(ros_time_us) - int(sensor_time_us)
        if self._samples and abs(sample - min(self._samples)) > self.jump_threshold_us:
            self.clock_jumps += 1
            self._samples.clear()
        self._samples.append(sample)

    @property
    def offset_us(self) -> int | None:
        """Current estimate, or None before the first sample."""
        return min(self._samples) if self._samples else None

    def to_sensor(self, ros_time_us: int) -> int | None:
        offset = self.offset_us
        return None if offset is None else int(ros_time_us) - offset
