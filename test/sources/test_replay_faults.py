"""Fault specifications for a replay: parsed strictly, applied by recording time, repeatable."""

from __future__ import annotations

import pytest

from evseg_ros.sources.replay_faults import (
    FaultInjector,
    FaultSpecError,
    ReplayFaults,
    parse_intervals,
)


def test_intervals_parse_and_bad_ones_name_themselves():
    assert parse_intervals("") == ()
    assert parse_intervals("2:5, 10.5:0.25") == ((2.0, 5.0), (10.5, 0.25))
    for bad in ("5", "a:b", "-1:2", "1:0"):
        with pytest.raises(FaultSpecError, match="fault interval"):
            parse_intervals(bad)
    with pytest.raises(FaultSpecError, match="packet loss"):
        ReplayFaults(loss=1.0)


def test_off_intervals_drop_by_recording_time_and_loss_is_seeded():
    start = 1_000_000_000_000
    faults = ReplayFaults(off=((1.0, 2.0),), loss=0.25, seed=3)
    injector = FaultInjector(faults, start)
    times = [start + k * 10_000_000 for k in range(500)]  # 5 s, a message every 10 ms
    dropped = [t for t in times if injector.drops(t)]
    assert injector.dropped_off == 200  # [1 s, 3 s)
    assert {t for t in times if 1e9 <= t - start < 3e9} <= set(dropped)
    assert 0.15 * 300 < injector.dropped_loss < 0.35 * 300
    again = FaultInjector(faults, start)
    assert [t for t in times if again.drops(t)] == dropped  # the same run twice
    assert injector.status_values() == {
        "fault_dropped_off": 200, "fault_dropped_loss": injector.dropped_loss,
    }
