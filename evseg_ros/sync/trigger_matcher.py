"""Pair camera frames with the external-trigger events that started their exposure.

The frame's stamp, mapped into sensor time with :class:`ClockOffsetEstimator`, lands near its own
trigger; the nearest trigger within a tolerance (half a frame period by default) is taken. This
tolerates dropped frames and dropped triggers on either side without losing lock, and a frame with
no trigger falls back to its mapped stamp (the no-trigger mode of the design) and is counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MatchResult:
    """Where the window of a frame is anchored, in sensor time."""

    t_anchor_us: int
    matched_trigger: bool
    offset_error_us: int  # trigger time minus mapped frame stamp (0 without a trigger)


class TriggerMatcher:
    """Keep recent trigger times of one channel/edge and match frames to them."""

    def __init__(
        self, *, channel: int = 0, rising: bool = True, tolerance_us: int = 50_000,
        history: int = 256,
    ) -> None:
        self.channel = channel
        self.rising = rising
        self.tolerance_us = tolerance_us
        self._history = history
        self._times = np.empty(0, dtype=np.int64)
        self.matched = 0
        self.unmatched_frames = 0
        self.unused_triggers = 0
        self._used: set[int] = set()

    def add_triggers(self, triggers: np.ndarray) -> None:
        """Add decoded trigger records (TRIGGER_DTYPE); other channels/edges are ignored."""
        if len(triggers) == 0:
            return
        wanted = (triggers["channel"] == self.channel) & (triggers["value"] == int(self.rising))
        times = triggers["t"][wanted].astype(np.int64)
        if len(times) == 0:
            return
        merged = np.concatenate([self._times, times])
        if len(merged) > self._history:
            dropped = merged[: len(merged) - self._history]
            self.unused_triggers += sum(1 for t in dropped.tolist() if t not in self._used)
            self._used.difference_update(dropped.tolist())
            merged = merged[len(merged) - self._history :]
        self._times = merged

    @property
    def latest_trigger_us(self) -> int | None:
        return int(self._times[-1]) if len(self._times) else None

    def find(self, t_expected_us: int) -> int | None:
        """Return the trigger nearest ``t_expected_us`` within tolerance, without consuming it."""
        if len(self._times) == 0:
            return None
        index = int(np.argmin(np.abs(self._times - t_expected_us)))
        candidate = int(self._times[index])
        if abs(candidate - t_expected_us) > self.tolerance_us:
            return None
        return candidate

    def match(self, t_expected_us: int) -> MatchResult:
        """Anchor a frame: its trigger if one is close enough, else the mapped stamp itself."""
        trigger = self.find(t_expected_us)
        if trigger is None:
            self.unmatched_frames += 1
            return MatchResult(int(t_expected_us), False, 0)
        self.matched += 1
        self._used.add(trigger)
        return MatchResult(trigger, True, trigger - int(t_expected_us))
