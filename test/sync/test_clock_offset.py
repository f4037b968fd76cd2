from __future__ import annotations

from evseg_ros.sync import ClockOffsetEstimator


def test_offset_is_the_lower_envelope_and_recovers_from_jumps():
    clock = ClockOffsetEstimator()
    for sensor, delay in [(0, 300), (10_000, 50), (20_000, 900)]:
        clock.add(1_000_000 + sensor + delay, sensor)
    assert clock.offset_us == 1_000_050
    assert clock.to_sensor(1_500_050) == 500_000
    clock.add(50_000_000, 0)  # bag loop / camera restart
    assert clock.clock_jumps == 1
    assert clock.offset_us == 50_000_000
