from __future__ import annotations

import numpy as np

from evseg_ros.events.types import TRIGGER_DTYPE
from evseg_ros.sync import ClockOffsetEstimator, TriggerMatcher


def _triggers(times, *, channel=0, value=1):
    triggers = np.zeros(len(times), dtype=TRIGGER_DTYPE)
    triggers["t"] = times
    triggers["channel"] = channel
    triggers["value"] = value
    return triggers


def test_offset_is_the_lower_envelope_and_recovers_from_jumps():
    clock = ClockOffsetEstimator()
    for sensor, delay in [(0, 300), (10_000, 50), (20_000, 900)]:
        clock.add(1_000_000 + sensor + delay, sensor)
    assert clock.offset_us == 1_000_050
    assert clock.to_sensor(1_500_050) == 500_000
    clock.add(50_000_000, 0)  # bag loop / camera restart
    assert clock.clock_jumps == 1
    assert clock.offset_us == 50_000_000


def test_frames_match_their_own_trigger_despite_drops_on_both_sides():
    period = 100_000
    matcher = TriggerMatcher(tolerance_us=period // 2)
    trigger_times = [k * period + 7 for k in range(10) if k != 4]  # trigger 4 lost
    matcher.add_triggers(_triggers(trigger_times))
    matcher.add_triggers(_triggers([450_000], value=0))  # falling edges are ignored
    matcher.add_triggers(_triggers([460_000], channel=1))  # other channels too
    frames = [k * period for k in range(10) if k != 6]  # frame 6 lost
    results = {k: matcher.match(t) for k, t in zip([k for k in range(10) if k != 6], frames)}
    assert results[3].matched_trigger and results[3].t_anchor_us == 300_007
    assert results[3].offset_error_us == 7
    assert not results[4].matched_trigger and results[4].t_anchor_us == 400_000
    assert results[7].t_anchor_us == 700_007
    assert matcher.matched == 8 and matcher.unmatched_frames == 1
