"""Faults injected into a recording's replay: a stream switched off for a while, lost packets.

They happen where a real fault would, before the driver publishes, so everything downstream
(DDS, the accumulator's sequence check, the mode policy, the evaluation) sees what it would see
on a vehicle: a camera that stops sending, a link that loses packets. Times are seconds of
recording time from the recording's first message, the same on every pass of a loop; the lost
packets are drawn from a seeded generator, so a run can be repeated exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class FaultSpecError(ValueError):
    """A fault specification that cannot be parsed (the message names it)."""


def parse_intervals(text: str) -> tuple[tuple[float, float], ...]:
    """``"START:DURATION[,START:DURATION...]"`` in seconds -> ``((start, duration), ...)``.

    Raises:
        FaultSpecError: malformed, negative start or non-positive duration.
    """
    intervals = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        start_text, sep, duration_text = part.partition(":")
        try:
            if not sep:
                raise ValueError
            start, duration = float(start_text), float(duration_text)
        except ValueError:
            msg = f"fault interval {part!r} is not START:DURATION in seconds (e.g. 2:5)"
            raise FaultSpecError(msg) from None
        if start < 0 or duration <= 0:
            msg = f"fault interval {part!r}: start must be >= 0 and duration > 0"
            raise FaultSpecError(msg)
        intervals.append((start, duration))
    return tuple(intervals)


@dataclass(frozen=True)
class ReplayFaults:
    """What to drop: messages inside ``off`` intervals, and a fraction ``loss`` of the rest."""

    off: tuple[tuple[float, float], ...] = ()
    loss: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss < 1.0:
            msg = f"packet loss must be within [0, 1), got {self.loss!r}"
            raise FaultSpecError(msg)

    @property
    def any(self) -> bool:
        return bool(self.off) or self.loss > 0.0

    def in_off_interval(self, offset_s: float) -> bool:
        return any(start <= offset_s < start + duration for start, duration in self.off)


class FaultInjector:
    """Decides, message by message, what a faulty link or camera would not have delivered."""

    def __init__(self, faults: ReplayFaults, start_ns: int) -> None:
        self.faults = faults
        self.start_ns = int(start_ns)
        self._random = np.random.default_rng(faults.seed)
        #: messages dropped inside an off interval, and by random loss
        self.dropped_off = 0
        self.dropped_loss = 0

    def drops(self, bag_ns: int) -> bool:
        """Whether the message recorded at ``bag_ns`` is lost (counted)."""
        if self.faults.in_off_interval((bag_ns - self.start_ns) / 1e9):
            self.dropped_off += 1
            return True
        if self.faults.loss and self._random.random() < self.faults.loss:
            self.dropped_loss += 1
            return True
        return False

    def status_values(self) -> dict[str, int]:
        return {"fault_dropped_off": self.dropped_off, "fault_dropped_loss": self.dropped_loss}
