"""Per-frame modality health and the mode policy: fused, frame-only or event-only.

Fusing a frame with an event window that is late, empty or cut at the wrong time gives a worse
mask than the frame alone (measured: 30.4 mIoU fused against 46.3 frame-only under CPU pressure),
so every frame is judged before it is fused. The judgement is made where the facts are: the
accumulator knows whether the window was complete, on time and anchored to the frame's trigger;
the segmentation stage knows whether a usable camera frame came with it. :func:`choose_mode`
turns the two into the mode that is still right, and :class:`ModeTracker` keeps what a status
topic and ``/diagnostics`` report about it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar


class Mode(StrEnum):
    """Which inputs a mask was computed from."""

    FUSED = "fused"
    FRAME_ONLY = "frame_only"
    EVENT_ONLY = "event_only"
    #: neither input was usable: no mask for this frame (counted)
    NONE = "none"


@dataclass(frozen=True)
class HealthPolicy:
    """Thresholds of the event-window judgement (runtime-settable on the accumulator).

    Attributes:
        min_events: Fewer events in a window than this is not a plausible event frame of a
            moving rig (a paused or unplugged camera, a window cut in the wrong place).
        max_packet_loss: Largest fraction of EventPackets lost since the previous frame for
            which the window still counts as complete.
    """

    min_events: int = 200
    max_packet_loss: float = 0.25

    def __post_init__(self) -> None:
        if self.min_events < 0:
            msg = f"min_events must be >= 0, got {self.min_events!r}"
            raise ValueError(msg)
        if not 0.0 <= self.max_packet_loss <= 1.0:
            msg = f"max_packet_loss must be within [0, 1], got {self.max_packet_loss!r}"
            raise ValueError(msg)


@dataclass(frozen=True)
class EventHealth:
    """Whether one frame's event window can be fused, and if not, why (one short phrase)."""

    OK: ClassVar[EventHealth]

    ok: bool
    reason: str = ""

    @staticmethod
    def judge(
        policy: HealthPolicy,
        *,
        has_stream: bool,
        late: bool,
        trigger_missing: bool,
        num_events: int,
        packet_loss: float,
    ) -> EventHealth:
        """Judge a window; the first failed check names the reason."""
        if not has_stream:
            return EventHealth(False, "no event stream")
        if late:
            return EventHealth(False, "events late: window incomplete")
        if trigger_missing:
            return EventHealth(False, "events unsynced: no trigger for the frame")
        if num_events < policy.min_events:
            return EventHealth(False, f"too few events ({num_events} < {policy.min_events})")
        if packet_loss > policy.max_packet_loss:
            return EventHealth(
                False, f"event packets lost ({packet_loss:.0%} > {policy.max_packet_loss:.0%})"
            )
        return EventHealth(True)


EventHealth.OK = EventHealth(True)


def choose_mode(events: EventHealth, frame_ok: bool, frame_reason: str = "") -> tuple[Mode, str]:
    """The policy: fused when both are good, else whichever input is still right.

    Returns:
        The mode and its reason ("" for fused).
    """
    if frame_ok and events.ok:
        return Mode.FUSED, ""
    if frame_ok:
        return Mode.FRAME_ONLY, events.reason
    if events.ok:
        return Mode.EVENT_ONLY, frame_reason or "no camera frame"
    return Mode.NONE, "; ".join(r for r in (frame_reason or "no camera frame", events.reason) if r)


@dataclass
class ModeTracker:
    """Frames per mode, the current mode and reason, and when it changed (for the reports)."""

    current: Mode | None = None
    reason: str = ""
    counts: dict[str, int] = field(default_factory=lambda: {mode.value: 0 for mode in Mode})
    transitions: int = 0

    def record(self, mode: Mode, reason: str) -> bool:
        """Count one frame; return True when the mode or its reason changed (report now)."""
        self.counts[mode.value] += 1
        changed = mode is not self.current or reason != self.reason
        if mode is not self.current and self.current is not None:
            self.transitions += 1
        self.current, self.reason = mode, reason
        return changed

    @property
    def degraded(self) -> bool:
        return self.current is not None and self.current is not Mode.FUSED

    def values(self) -> dict[str, int | str]:
        """Key/values for ``/diagnostics`` and the status topic."""
        values: dict[str, int | str] = {
            "mode": "unknown" if self.current is None else self.current.value,
            "mode_reason": self.reason or "-",
            "mode_transitions": self.transitions,
        }
        values.update({f"frames_{name}": count for name, count in self.counts.items()})
        return values
