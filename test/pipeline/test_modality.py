"""The mode policy: fused when both inputs are good, else the one still right, and why."""

from __future__ import annotations

import pytest

from evseg_ros.pipeline.modality import EventHealth, HealthPolicy, Mode, ModeTracker, choose_mode


def _judge(**changes):
    facts = dict(has_stream=True, late=False, trigger_missing=False, num_events=5000, packet_loss=0)
    facts.update(changes)
    return EventHealth.judge(HealthPolicy(min_events=1000, max_packet_loss=0.2), **facts)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"has_stream": False}, "no event stream"),
        ({"late": True}, "events late"),
        ({"trigger_missing": True}, "unsynced"),
        ({"num_events": 999}, "too few events (999 < 1000)"),
        ({"packet_loss": 0.3}, "event packets lost (30% > 20%)"),
    ],
)
def test_each_unfit_window_names_its_reason(changes, reason):
    health = _judge(**changes)
    assert not health.ok and reason in health.reason


def test_a_fit_window_and_the_policy_bounds():
    assert _judge() == EventHealth.OK
    assert _judge(num_events=1000, packet_loss=0.2).ok  # bounds are inclusive
    with pytest.raises(ValueError, match="max_packet_loss"):
        HealthPolicy(max_packet_loss=1.5)
    with pytest.raises(ValueError, match="min_events"):
        HealthPolicy(min_events=-1)


def test_choose_mode_covers_all_four_cases():
    bad = EventHealth(False, "events late: window incomplete")
    assert choose_mode(EventHealth.OK, True) == (Mode.FUSED, "")
    assert choose_mode(bad, True) == (Mode.FRAME_ONLY, bad.reason)
    assert choose_mode(EventHealth.OK, False, "bad camera frame: x") == (
        Mode.EVENT_ONLY, "bad camera frame: x"
    )
    mode, reason = choose_mode(bad, False)
    assert mode is Mode.NONE and "no camera frame" in reason and bad.reason in reason


def test_tracker_reports_changes_once_and_counts_every_frame():
    tracker = ModeTracker()
    assert tracker.record(Mode.FUSED, "")  # the first frame is news
    assert not tracker.record(Mode.FUSED, "")
    assert tracker.record(Mode.FRAME_ONLY, "events late") and tracker.degraded
    assert not tracker.record(Mode.FRAME_ONLY, "events late")
    assert tracker.record(Mode.FRAME_ONLY, "too few events")  # same mode, new reason
    assert tracker.record(Mode.FUSED, "") and not tracker.degraded
    values = tracker.values()
    assert values["frames_fused"] == 3 and values["frames_frame_only"] == 3
    assert values["mode_transitions"] == 2 and values["mode"] == "fused"
