"""The playhead of a recording replay, shared by both drivers so their streams stay in step.

A recording is replayed by two drivers (EVK4 events, FLIR frames), possibly in two processes.
They agree without talking to each other by sharing two numbers: the recording's start (bag
time, from the bag's metadata, the same for every topic) and the wall-clock instant at which that
start plays (``epoch_ns``). The playhead is then a pure function of the wall clock, like
``ros2 bag play --rate``: ``start + (wall - epoch) * rate``, wrapping around the recording's span
when looping. A message is due once its bag (log) time is at or behind the playhead.

Pacing modes:

* ``realtime``: the playhead follows the wall clock; a consumer that falls behind loses frames
  (newest-only, counted), never events.
* ``lockstep``: the playhead moves only when told (:meth:`ReplayClock.advance_to`): the frame
  driver releases the next frame once the previous mask came back, and the event driver follows
  the ``/clock`` the frame driver publishes. Every frame is processed whatever the machine.
* ``fast``: no playhead; one message per poll, as fast as the consumer takes them.

Header stamps are never rewritten: the replay publishes the recorded stamps and a ``/clock``
with the playhead, exactly what ``ros2 bag play --clock`` users expect (nodes with
``use_sim_time`` follow it).
"""

from __future__ import annotations

from enum import StrEnum


class ReplayPacing(StrEnum):
    REALTIME = "realtime"
    LOCKSTEP = "lockstep"
    FAST = "fast"


PACINGS: tuple[str, ...] = tuple(p.value for p in ReplayPacing)


class ReplayClock:
    """Wall clock -> bag time of the recording being replayed.

    Args:
        pacing: one of :data:`PACINGS`.
        start_ns: bag time the replay starts at (the recording's first log time).
        end_ns: bag time of the recording's last message (sets the loop span).
        rate: replay speed as a multiple of the recorded speed (realtime only).
        epoch_ns: wall-clock ns (``time.time_ns``) at which ``start_ns`` plays; 0 = the first
            :meth:`playhead_ns` call (a driver replaying alone).
        loop: wrap around at the end.

    Raises:
        ValueError: an unknown pacing or a rate that is not positive (names the value).
    """

    def __init__(
        self,
        pacing: str | ReplayPacing,
        *,
        start_ns: int,
        end_ns: int,
        rate: float = 1.0,
        epoch_ns: int = 0,
        loop: bool = False,
    ) -> None:
        try:
            self.pacing = ReplayPacing(pacing)
        except ValueError:
            msg = f"replay pacing must be one of {PACINGS!r}, got {pacing!r}"
            raise ValueError(msg) from None
        if not rate > 0.0:
            msg = f"replay rate must be positive, got {rate!r}"
            raise ValueError(msg)
        self.rate = float(rate)
        self.start_ns = int(start_ns)
        self.end_ns = max(int(end_ns), self.start_ns)
        self.loop = loop
        self.epoch_ns: int | None = int(epoch_ns) or None
        #: lockstep: how far the replay may go (bag ns); starts before the first message
        self._allowed_ns = self.start_ns - 1

    @property
    def span_ns(self) -> int:
        """Length of one pass: the recording plus one millisecond, so passes never overlap."""
        return self.end_ns - self.start_ns + 1_000_000

    def start(self, epoch_ns: int) -> None:
        """Fix when the recording's start plays (both drivers get the same value)."""
        self.epoch_ns = int(epoch_ns)

    def elapsed_ns(self, wall_ns: int) -> int | None:
        """Bag time played since the start over all passes; None for lockstep and fast."""
        if self.pacing is not ReplayPacing.REALTIME:
            return None
        if self.epoch_ns is None:
            self.epoch_ns = int(wall_ns)
        return int((int(wall_ns) - self.epoch_ns) * self.rate)

    def playhead_ns(self, wall_ns: int) -> int | None:
        """Bag time due at ``wall_ns``, within the current pass; None when pacing is fast."""
        if self.pacing is ReplayPacing.FAST:
            return None
        if self.pacing is ReplayPacing.LOCKSTEP:
            return self._allowed_ns
        elapsed = self.elapsed_ns(wall_ns)
        if self.loop and elapsed >= self.span_ns:
            elapsed %= self.span_ns
        return self.start_ns + elapsed

    def pass_index(self, wall_ns: int) -> int:
        """Which pass of a looping realtime replay ``wall_ns`` is in (0 when not looping)."""
        elapsed = self.elapsed_ns(wall_ns)
        if not self.loop or elapsed is None or elapsed < 0:
            return 0
        return elapsed // self.span_ns

    def advance_to(self, bag_ns: int) -> None:
        """Lockstep: allow everything up to ``bag_ns`` (a new pass may move it backwards)."""
        self._allowed_ns = int(bag_ns)
