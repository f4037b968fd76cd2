"""Pair each camera frame with the external-trigger edge that started its exposure.

Frame k of a hardware-triggered camera belongs to trigger edge k, but neither stream is clean:
frames get dropped on the host, the event camera can miss or double an edge (a loose cable, a
bouncing contact), and the event stream is decoded later than the frame arrives. Matching each
frame to the *nearest* trigger in time breaks as soon as the frame latency or the stamp jitter
nears half a frame period, so this module keeps a lock instead:

* The triggers of one channel and edge form a grid of period ``P`` in sensor time (median of the
  trigger intervals, so missing and extra edges do not bias it).
* Once a frame is matched, the next frame's slot is ``previous + n * P``, where ``n`` comes from
  the camera's FrameID when it has one (immune to stamp jitter), else from the camera's chunk
  timestamp, else from the ROS stamp mapped into sensor time. ``n - 1`` frames were dropped.
* The edge nearest that slot within a fraction of a period is the frame's trigger; an empty slot is
  a missing trigger (the frame is anchored at the slot itself), and an edge off the grid is
  spurious. Edges repeated within a debounce interval are duplicates and never enter the grid.
* ROS stamp versus trigger time of the matched pairs is fitted with a robust line over a sliding
  window: offset and drift of the frame path, which predicts the next frame's trigger far better
  than the packet-stamp lower envelope (that one only bounds the clock offset from below).
* Without triggers the frame is anchored at its stamp mapped through the packet clock
  (:class:`~evseg_ros.sync.clock_offset.ClockOffsetEstimator`) and flagged unmatched.

After any anomaly the next frame is matched to its own trigger again (the lock survives drops and
missing or extra edges; a clock jump starts a new epoch that the next frame acquires from the
packet clock). Frames must be resolved in arrival order; :meth:`FrameTriggerSync.resolve`
returns None until the decoded event stream has passed the frame's trigger slot.
"""

from __future__ import annotations

import bisect
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

import numpy as np

from evseg_ros.sync.clock_offset import ClockOffsetEstimator

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MatchResult:
    """Where the window of a frame is anchored, in sensor time (what a ready frame carries)."""

    t_anchor_us: int
    matched_trigger: bool
    offset_error_us: int  # trigger time minus mapped frame stamp (0 without a trigger)

#: Keys of :meth:`FrameTriggerSync.statistics`, in the order they are reported.
STATISTICS_KEYS = (
    "frames",
    "matched",
    "unmatched",
    "dropped_frames",
    "missing_triggers",
    "spurious_triggers",
    "duplicate_triggers",
    "out_of_order_triggers",
    "unused_triggers",
    "triggers",
    "clock_jumps",
    "relocks",
    "frame_id_resets",
    "chunk_time_resets",
    "frameless_triggers",
    "locked",
    "period_us",
    "offset_us",
    "drift_ppm",
    "jitter_us",
    "mean_abs_offset_us",
    "frame_latency_us",
)

_MAD_TO_SIGMA = 1.4826  # median absolute deviation -> standard deviation of a normal


def _inliers(residual: np.ndarray) -> np.ndarray:
    """Residuals within four robust sigmas (at least 20 µs) of their median."""
    center = float(np.median(residual))
    sigma = _MAD_TO_SIGMA * float(np.median(np.abs(residual - center)))
    return np.abs(residual - center) <= max(4.0 * sigma, 20.0)


class AnchorSource(Enum):
    """Where a frame's anchor time came from."""

    TRIGGER = "trigger"  # its own trigger edge
    PREDICTED_SLOT = "predicted_slot"  # the locked trigger grid; the edge itself is missing
    CLOCK = "clock"  # no lock: the stamp mapped through the packet clock


@dataclass(frozen=True)
class FrameTiming:
    """What is known about one camera frame when it arrives.

    Attributes:
        stamp_ns: Header stamp (ROS time, ns).
        frame_id: Camera frame counter (chunk FrameID); it may wrap or restart.
        chunk_time_ns: Camera clock time of the frame (chunk timestamp, ns); only its
            differences are used, so its epoch does not matter.
        exposure_us: Exposure time, passed through to the result for exposure windows.
    """

    stamp_ns: int
    frame_id: int | None = None
    chunk_time_ns: int | None = None
    exposure_us: int | None = None


@dataclass(frozen=True)
class FrameSyncResult:
    """Where a frame's event window is anchored, in sensor time, and how it got there.

    Attributes:
        t_anchor_us: Sensor time of the trigger (or of its predicted slot, or the mapped stamp).
        matched: Whether a trigger edge was found for this frame.
        source: Where ``t_anchor_us`` came from.
        trigger_index: Running index of the matched edge (counts every accepted edge).
        offset_error_us: ``t_anchor_us`` minus the stamp mapped through the packet clock
            (0 while there is no packet clock).
        dropped_before: Frames missing between the previous frame and this one.
        trigger_missing: Triggers were running but this frame's slot was empty.
        relocked: This frame regained the lock after it had been lost.
        exposure_us: The frame's exposure time, when it was given.
    """

    t_anchor_us: int
    matched: bool
    source: AnchorSource
    trigger_index: int | None
    offset_error_us: int
    dropped_before: int = 0
    trigger_missing: bool = False
    relocked: bool = False
    exposure_us: int | None = None

    @property
    def after_frame_drop(self) -> bool:
        """True when frames were dropped right before this one."""
        return self.dropped_before > 0

    def as_match_result(self) -> MatchResult:
        """The anchor in the compact :class:`MatchResult` form a ready frame carries."""
        return MatchResult(self.t_anchor_us, self.matched, self.offset_error_us)


@dataclass(frozen=True, kw_only=True)
class SyncConfig:
    """Options of :class:`FrameTriggerSync`.

    Attributes:
        channel: Trigger input channel whose edges start the exposures.
        rising: Use rising edges (else falling).
        period_us: Frame period in sensor µs; None estimates it from the trigger intervals.
        frame_latency_us: Expected ROS stamp minus trigger time before the first match; later
            it is learned from the matched pairs.
        tolerance_fraction: How far (fraction of a period) an edge may sit from the locked
            slot and still belong to it; edges further off the grid are spurious.
        acquire_tolerance_us: Search radius while no period is known yet (after that, half a
            period) when acquiring the lock.
        debounce_us: A second edge this close to an accepted one is a duplicate.
        jump_threshold_us: Trigger time going back by more than this is a clock restart.
        trigger_timeout_us: Triggers count as running while the newest edge is this close to
            a frame's slot; outside it a frame without edge is not a "missing trigger".
        max_missing_before_unlock: Consecutive empty slots after which the lock is dropped and
            the next frame acquires again around its predicted time.
        max_frame_id_gap: A FrameID step beyond this (or not positive) is a counter reset.
        frame_id_modulus: Where the FrameID wraps (e.g. ``2**32``); None if it never wraps.
        fit_window: Matched pairs kept for the offset/drift fit.
        history: Trigger edges kept for matching.
    """

    channel: int = 0
    rising: bool = True
    period_us: float | None = None
    frame_latency_us: int = 0
    tolerance_fraction: float = 0.3
    acquire_tolerance_us: int = 50_000
    debounce_us: int = 200
    jump_threshold_us: int = 1_000_000
    trigger_timeout_us: int = 1_000_000
    max_missing_before_unlock: int = 3
    max_frame_id_gap: int = 10_000
    frame_id_modulus: int | None = None
    fit_window: int = 256
    history: int = 1024

    def __post_init__(self) -> None:
        if not 0.0 < self.tolerance_fraction < 0.5:
            msg = f"tolerance_fraction must be in (0, 0.5), got {self.tolerance_fraction!r}"
            raise ValueError(msg)
        if self.period_us is not None and self.period_us <= 0:
            msg = f"period_us must be positive or None, got {self.period_us!r}"
            raise ValueError(msg)
        positive = {
            "acquire_tolerance_us": self.acquire_tolerance_us,
            "jump_threshold_us": self.jump_threshold_us,
            "trigger_timeout_us": self.trigger_timeout_us,
            "max_missing_before_unlock": self.max_missing_before_unlock,
            "max_frame_id_gap": self.max_frame_id_gap,
            "fit_window": self.fit_window,
            "history": self.history,
        }
        for name, value in positive.items():
            if value <= 0:
                msg = f"{name} must be positive, got {value!r}"
                raise ValueError(msg)
        if self.debounce_us < 0:
            msg = f"debounce_us must not be negative, got {self.debounce_us!r}"
            raise ValueError(msg)
        if self.frame_id_modulus is not None and self.frame_id_modulus <= 1:
            msg = f"frame_id_modulus must be > 1 or None, got {self.frame_id_modulus!r}"
            raise ValueError(msg)


@dataclass(frozen=True)
class _Anchor:
    """The previous resolved frame: the reference of the trigger grid."""

    t_us: float
    matched: bool
    frame_id: int | None
    chunk_time_ns: int | None


@dataclass(frozen=True)
class _Fit:
    """``stamp_us - trigger_us = offset + drift * (trigger_us - reference_us)`` (+ residual)."""

    reference_us: int
    offset_us: float
    drift: float
    jitter_us: float | None

    def trigger_of(self, stamp_us: int) -> float:
        return self.reference_us + (stamp_us - self.reference_us - self.offset_us) / (
            1.0 + self.drift
        )


@dataclass(frozen=True)
class _Step:
    """How many trigger slots lie between the previous frame and this one, and why."""

    slots: int
    frame_id_reset: bool = False
    chunk_time_reset: bool = False


class FrameTriggerSync:
    """Match frames to trigger edges with a lock, count every anomaly, and report the quality.

    Feed it the packet clock samples (:meth:`add_clock_sample`), the decoded trigger edges
    (:meth:`add_trigger_records`) and, in arrival order, the frames (:meth:`resolve`).

    Args:
        config: Matching options.
        clock: Packet clock to use; pass the one an owner already feeds to share it (its
            jumps are noticed here). A new one is made if None.
    """

    def __init__(
        self, config: SyncConfig | None = None, *, clock: ClockOffsetEstimator | None = None
    ) -> None:
        self.config = config or SyncConfig()
        self.clock = clock if clock is not None else ClockOffsetEstimator()
        self._seen_clock_jumps = self.clock.clock_jumps
        # trigger edges of the current epoch, ascending; global index = _first_index + position
        self._times: list[int] = []
        self._first_index = 0
        self._next_index = 0
        self._consumed_index = -1
        self._examined_index = -1
        self._intervals: deque[int] = deque(maxlen=64)
        self._frame_intervals: deque[int] = deque(maxlen=64)
        # frame-side state of the current epoch
        self._previous: _Anchor | None = None
        self._last_stamp_us: int | None = None
        self._pairs: deque[tuple[int, int]] = deque(maxlen=self.config.fit_window)
        self._fit_cache: _Fit | None = None
        self._offset_errors: deque[int] = deque(maxlen=64)
        self._locked = False
        self._ever_locked = False
        self._missing_run = 0
        self._fresh_epoch = False
        self._abs_offset_sum = 0
        self._abs_offset_count = 0
        self.counters: dict[str, int] = {
            "frames": 0,
            "matched": 0,
            "dropped_frames": 0,
            "missing_triggers": 0,
            "spurious_triggers": 0,
            "duplicate_triggers": 0,
            "out_of_order_triggers": 0,
            "unused_triggers": 0,
            "triggers": 0,
            "clock_jumps": 0,
            "relocks": 0,
            "frame_id_resets": 0,
            "chunk_time_resets": 0,
            "frameless_triggers": 0,
        }

    # -- inputs --------------------------------------------------------------------------------
    def add_clock_sample(self, ros_time_us: int, sensor_time_us: int) -> None:
        """Add one EventPacket stamp: ROS time (µs) of the packet's first item at sensor time."""
        self.clock.add(ros_time_us, sensor_time_us)
        self._check_clock_jump()

    def add_trigger_records(self, records: np.ndarray) -> int:
        """Add decoded trigger records (TRIGGER_DTYPE); other channels and edges are ignored.

        Returns:
            The number of edges accepted (duplicates and out-of-order edges are counted, not
            kept).
        """
        if len(records) == 0:
            return 0
        wanted = (records["channel"] == self.config.channel) & (
            records["value"] == int(self.config.rising)
        )
        return self.add_trigger_times(records["t"][wanted].tolist())

    def add_trigger_times(self, times_us: Iterable[int]) -> int:
        """Add edge times (sensor µs) of the configured channel and edge, in decode order."""
        accepted = 0
        for value in times_us:
            accepted += self._add_trigger(int(value))
        overflow = len(self._times) - 2 * self.config.history
        if overflow > 0:  # nobody resolves frames: keep the newest edges only
            self._drop_oldest(overflow)
        return accepted

    def _add_trigger(self, t_us: int) -> int:
        times = self._times
        debounce = self.config.debounce_us
        if times and t_us < times[-1] - self.config.jump_threshold_us:
            logger.info("trigger time went back from %d to %d us: new epoch", times[-1], t_us)
            self._new_epoch(clear_triggers=True)
            times = self._times
        if times:
            position = bisect.bisect_left(times, t_us)
            near = [times[i] for i in (position - 1, position) if 0 <= i < len(times)]
            if any(abs(t_us - other) <= debounce for other in near):
                self.counters["duplicate_triggers"] += 1
                return 0
            if t_us < times[-1]:
                self.counters["out_of_order_triggers"] += 1
                return 0
            self._intervals.append(t_us - times[-1])
        times.append(t_us)
        self._next_index += 1
        self.counters["triggers"] += 1
        return 1

    # -- frames --------------------------------------------------------------------------------
    def resolve(
        self, frame: FrameTiming, *, decoded_until_us: int | None, force: bool = False
    ) -> FrameSyncResult | None:
        """Decide where ``frame`` is anchored, once the event stream allows it.

        Call it for the frames in arrival order, again and again for the oldest undecided one
        as more events are decoded; nothing changes until it returns a result.

        Args:
            frame: The oldest frame not decided yet.
            decoded_until_us: Sensor time up to which events (and trigger edges) have been
                decoded; None if nothing was decoded yet.
            force: Decide with what is there (the frame waited too long).

        Returns:
            The decision, or None while the frame's trigger slot (plus tolerance) lies beyond
            ``decoded_until_us``, or while the frame cannot be placed in sensor time at all (no
            packet clock sample and no matched frame yet).
        """
        self._check_clock_jump()
        stamp_us = int(frame.stamp_ns) // 1000
        period = self.period_us
        if self._last_stamp_us is not None and stamp_us < self._last_stamp_us - (
            period / 2 if period else 0
        ):
            logger.info(
                "frame stamp went back from %d to %d us: new epoch", self._last_stamp_us, stamp_us
            )
            self._new_epoch(clear_triggers=False)
        predicted = self._predict_trigger(stamp_us)
        if predicted is None:
            return None
        step = self._step(frame, predicted, period)
        previous = self._previous
        on_grid = self._locked and step is not None and previous is not None and period
        if on_grid:
            center = previous.t_us + step.slots * period
            radius = self.config.tolerance_fraction * period
        else:
            center = predicted
            radius = period / 2 if period else float(self.config.acquire_tolerance_us)
        if not force and (decoded_until_us is None or decoded_until_us < center + radius):
            return None
        return self._decide(frame, stamp_us, step, center, radius, bool(on_grid))

    def _decide(
        self,
        frame: FrameTiming,
        stamp_us: int,
        step: _Step | None,
        center: float,
        radius: float,
        on_grid: bool,
    ) -> FrameSyncResult:
        index = self._nearest_unused(center, radius)
        running = self._triggers_running(center)
        matched = index is not None
        if matched:
            anchor = self._times[index - self._first_index]
            source = AnchorSource.TRIGGER
        else:
            anchor = round(center)
            source = AnchorSource.PREDICTED_SLOT if on_grid else AnchorSource.CLOCK
        dropped = step.slots - 1 if step is not None and step.slots > 1 else 0
        mapped = self.clock.to_sensor(stamp_us)
        offset_error = 0 if mapped is None else int(anchor) - mapped
        relocked = matched and not self._locked and self._ever_locked

        # counters and lock state change only here, once per frame
        counters = self.counters
        counters["frames"] += 1
        counters["dropped_frames"] += dropped
        counters["frame_id_resets"] += int(step is not None and step.frame_id_reset)
        counters["chunk_time_resets"] += int(step is not None and step.chunk_time_reset)
        self._classify_passed(anchor, index, step)
        if matched:
            counters["matched"] += 1
            counters["relocks"] += int(relocked)
            self._consumed_index = index
            self._locked = self._ever_locked = True
            self._missing_run = 0
            self._fresh_epoch = False
            self._pairs.append((anchor, stamp_us))
            self._fit_cache = None
            if mapped is not None:
                self._offset_errors.append(offset_error)
                self._abs_offset_sum += abs(offset_error)
                self._abs_offset_count += 1
        else:
            counters["missing_triggers"] += int(running)
            self._missing_run += 1
            if self._missing_run >= self.config.max_missing_before_unlock or not on_grid:
                self._locked = False
        if self._last_stamp_us is not None and stamp_us > self._last_stamp_us:
            self._frame_intervals.append(stamp_us - self._last_stamp_us)
        self._last_stamp_us = stamp_us
        self._previous = _Anchor(anchor, matched, frame.frame_id, frame.chunk_time_ns)
        self._prune()
        return FrameSyncResult(
            t_anchor_us=int(anchor),
            matched=matched,
            source=source,
            trigger_index=index,
            offset_error_us=int(offset_error),
            dropped_before=dropped,
            trigger_missing=not matched and running,
            relocked=relocked,
            exposure_us=frame.exposure_us,
        )

    # -- frames that never came -----------------------------------------------------------
    def predict_trigger_us(self, stamp_ns: int) -> float | None:
        """Sensor time of the trigger a frame stamped ``stamp_ns`` belongs to (None: unknown)."""
        return self._predict_trigger(int(stamp_ns) // 1000)

    def frameless_triggers(
        self, *, after_us: float | None, decoded_until_us: int, timeout_us: int
    ) -> list[tuple[int, int]]:
        """Edges no frame took although the decoded stream is ``timeout_us`` past them.

        Only edges later than ``after_us`` (the newest frame's trigger) count: an edge before a
        frame that did arrive belongs to a dropped frame, not to a camera that stopped.

        Returns:
            ``(global index, sensor time)`` of each such edge, oldest first; they stay
            unclaimed until :meth:`claim_frameless`.
        """
        lowest = max(0, self._consumed_index + 1 - self._first_index)
        found = []
        for position in range(lowest, len(self._times)):
            t_us = self._times[position]
            if t_us + timeout_us > decoded_until_us:
                break
            if after_us is None or t_us > after_us:
                found.append((position + self._first_index, t_us))
        return found

    def claim_frameless(self, index: int) -> int:
        """Serve edge ``index`` without a frame (event-only); later frames step from it."""
        t_us = self._times[index - self._first_index]
        self._consumed_index = max(self._consumed_index, index)
        self._examined_index = max(self._examined_index, index)
        self._previous = _Anchor(t_us, True, None, None)
        self.counters["frameless_triggers"] += 1
        return t_us

    def stamp_ns_of(self, trigger_us: int) -> int | None:
        """The header stamp a frame of this trigger would have had (None: no clock yet).

        From the matched pairs' fit where there is one, else through the packet clock plus the
        learned frame latency.
        """
        fit = self._fit()
        if fit is not None:
            stamp_us = trigger_us + fit.offset_us + fit.drift * (trigger_us - fit.reference_us)
            return round(stamp_us * 1000)
        offset = self.clock.offset_us
        if offset is None:
            return None
        return round((trigger_us + offset + self.frame_latency_us) * 1000)

    def _step(self, frame: FrameTiming, predicted: float, period: float | None) -> _Step | None:
        """Trigger slots from the previous frame to this one; None without a grid."""
        previous = self._previous
        if previous is None or not period:
            return None
        frame_id_reset = chunk_time_reset = False
        if frame.frame_id is not None and previous.frame_id is not None:
            delta = int(frame.frame_id) - previous.frame_id
            if self.config.frame_id_modulus is not None:
                delta %= self.config.frame_id_modulus
            if 1 <= delta <= self.config.max_frame_id_gap:
                return _Step(delta)
            frame_id_reset = True
        if frame.chunk_time_ns is not None and previous.chunk_time_ns is not None:
            slots = round((int(frame.chunk_time_ns) - previous.chunk_time_ns) / 1000 / period)
            if slots >= 1:
                return _Step(slots, frame_id_reset=frame_id_reset)
            chunk_time_reset = True
        slots = max(1, round((predicted - previous.t_us) / period))
        return _Step(slots, frame_id_reset=frame_id_reset, chunk_time_reset=chunk_time_reset)

    def _predict_trigger(self, stamp_us: int) -> float | None:
        """Sensor time of the trigger a frame stamped ``stamp_us`` most likely belongs to."""
        fit = self._fit()
        if fit is not None:
            return fit.trigger_of(stamp_us)
        mapped = self.clock.to_sensor(stamp_us)
        if mapped is None:
            return None
        return float(mapped - self.frame_latency_us)

    def _nearest_unused(self, center: float, radius: float) -> int | None:
        """Global index of the unconsumed edge nearest ``center`` within ``radius``."""
        times = self._times
        lowest = max(0, self._consumed_index + 1 - self._first_index)
        position = bisect.bisect_left(times, center, lo=min(lowest, len(times)))
        best: int | None = None
        for i in (position - 1, position):
            if (
                lowest <= i < len(times)
                and abs(times[i] - center) <= radius
                and (best is None or abs(times[i] - center) < abs(times[best] - center))
            ):
                best = i
        return None if best is None else best + self._first_index

    def _triggers_running(self, center: float) -> bool:
        return bool(self._times) and self._times[-1] >= center - self.config.trigger_timeout_us

    def _classify_passed(
        self, anchor: float, matched_index: int | None, step: _Step | None
    ) -> None:
        """Sort the edges passed since the previous frame: spurious, or a dropped frame's."""
        period = self.period_us
        previous = self._previous
        limit = anchor + self.config.tolerance_fraction * (period or 0)
        start = max(0, self._examined_index + 1 - self._first_index)
        for position in range(start, len(self._times)):
            t_us = self._times[position]
            if t_us > limit:
                break
            index = position + self._first_index
            self._examined_index = index
            if index == matched_index or step is None or previous is None or not period:
                continue  # before the lock of this epoch nothing can be judged
            slot = round((t_us - previous.t_us) / period)
            off_grid = abs(t_us - previous.t_us - slot * period) > (
                self.config.tolerance_fraction * period
            )
            taken = (slot <= 0 and previous.matched) or (
                slot >= step.slots and matched_index is not None
            )
            if off_grid or taken:
                self.counters["spurious_triggers"] += 1
            else:
                self.counters["unused_triggers"] += 1

    # -- epochs and bookkeeping ----------------------------------------------------------------
    def _check_clock_jump(self) -> None:
        if self.clock.clock_jumps != self._seen_clock_jumps:
            self._seen_clock_jumps = self.clock.clock_jumps
            logger.info("packet clock jumped: new epoch")
            self._new_epoch(clear_triggers=False)

    def _new_epoch(self, *, clear_triggers: bool) -> None:
        """Forget everything tied to the old clock; the next frame acquires the lock again."""
        if not self._fresh_epoch:
            self.counters["clock_jumps"] += 1
            self._fresh_epoch = True
        if clear_triggers:
            self._first_index = self._next_index
            self._times = []
            self._intervals.clear()
            self._consumed_index = self._examined_index = self._next_index - 1
        self._previous = None
        self._last_stamp_us = None
        self._pairs.clear()
        self._fit_cache = None
        self._locked = False
        self._missing_run = 0

    def reset_epoch(self) -> None:
        """Start over after an outside-detected restart of the sensor clock (kept counters)."""
        self._new_epoch(clear_triggers=True)

    def _drop_oldest(self, count: int) -> None:
        del self._times[:count]
        self._first_index += count

    def _prune(self) -> None:
        overflow = len(self._times) - self.config.history
        done = self._examined_index + 1 - self._first_index
        if overflow > 0 and done > 0:
            self._drop_oldest(min(overflow, done))

    def _fit(self) -> _Fit | None:
        """Robust line through the matched pairs (cached until the next match)."""
        if self._fit_cache is not None or not self._pairs:
            return self._fit_cache
        pairs = np.asarray(self._pairs, dtype=np.int64)
        reference_x, reference_y = int(pairs[-1, 0]), int(pairs[-1, 1] - pairs[-1, 0])
        x = (pairs[:, 0] - reference_x).astype(np.float64)
        y = (pairs[:, 1] - pairs[:, 0] - reference_y).astype(np.float64)
        drift, offset = 0.0, float(np.median(y))
        keep = np.ones(len(x), dtype=bool)
        # a slope needs spread in time: below ~0.1 s the jitter would swamp it
        if len(x) >= 4 and x[-1] - x[0] >= 100_000:
            for _ in range(2):  # fit, drop outliers (a wrong match, a stalled stamp), refit
                drift, offset = (float(v) for v in np.polyfit(x[keep], y[keep], 1))
                keep = _inliers(y - (offset + drift * x))
                if keep.sum() < 4:
                    keep[:] = True
                    break
        residual = y - (offset + drift * x)
        jitter = float(np.std(residual[_inliers(residual)])) if len(x) >= 2 else None
        self._fit_cache = _Fit(reference_x, offset + reference_y, drift, jitter)
        return self._fit_cache

    # -- reporting -----------------------------------------------------------------------------
    @property
    def period_us(self) -> float | None:
        """Frame period in sensor µs: configured, else from triggers, else from frame stamps."""
        if self.config.period_us is not None:
            return float(self.config.period_us)
        if self._intervals:
            return float(np.median(self._intervals))
        if self._frame_intervals:
            return float(np.median(self._frame_intervals))
        return None

    @property
    def locked(self) -> bool:
        """Whether the last frames were matched to the trigger grid."""
        return self._locked

    @property
    def frame_latency_us(self) -> float:
        """ROS stamp minus trigger time (through the packet clock): learned, else configured."""
        if self._offset_errors:
            return -float(np.median(self._offset_errors))
        return float(self.config.frame_latency_us)

    def statistics(self) -> dict[str, int | float | bool | None]:
        """Match quality for /diagnostics; the keys are :data:`STATISTICS_KEYS`.

        ``offset_us`` is ROS stamp minus trigger time from the fit of matched pairs (else the
        packet clock offset), ``drift_ppm`` its slope, ``jitter_us`` the spread of the stamps
        around it, ``mean_abs_offset_us`` the mean |trigger - stamp mapped by the packet
        clock| over matched frames. Values not known yet are None.
        """
        counters = self.counters
        fit = self._fit()
        offset: float | None
        if fit is not None:
            offset = fit.offset_us
        else:
            offset = None if self.clock.offset_us is None else float(self.clock.offset_us)
        values: dict[str, int | float | bool | None] = {
            name: counters[name] for name in STATISTICS_KEYS if name in counters
        }
        values.update(
            unmatched=counters["frames"] - counters["matched"],
            locked=self._locked,
            period_us=self.period_us,
            offset_us=offset,
            drift_ppm=None if fit is None else fit.drift * 1e6,
            jitter_us=None if fit is None else fit.jitter_us,
            mean_abs_offset_us=(
                self._abs_offset_sum / self._abs_offset_count if self._abs_offset_count else None
            ),
            frame_latency_us=self.frame_latency_us,
        )
        return {name: values[name] for name in STATISTICS_KEYS}
