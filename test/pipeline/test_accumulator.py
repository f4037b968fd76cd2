"""The accumulator stage on an encoded EVT3 stream with hardware-style triggers."""

from __future__ import annotations

import numpy as np
import pytest

from evseg_ros.events.event_frame import EventFrameBuilder
from evseg_ros.events.evt3 import Evt3EncoderState, encode_evt3
from evseg_ros.events.representations import Representation
from evseg_ros.events.types import EVENT_DTYPE, TRIGGER_DTYPE
from evseg_ros.events.window import WindowConfig, WindowMode
from evseg_ros.pipeline import AccumulatorConfig, EventFrameAccumulator
from evseg_ros.pipeline.modality import HealthPolicy

EPOCH_NS = 1_700_000_000_000_000_000
PERIOD_US = 100_000
PACKET_US = 10_000


def _stream(duration_us: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = duration_us // 20
    events = np.zeros(n, dtype=EVENT_DTYPE)
    events["t"] = np.sort(rng.integers(0, duration_us, n))
    events["x"] = rng.integers(0, 400, n)
    events["y"] = rng.integers(0, 225, n)
    events["p"] = rng.integers(0, 2, n)
    starts = np.arange(0, duration_us, PERIOD_US)
    triggers = np.zeros(2 * len(starts), dtype=TRIGGER_DTYPE)
    triggers["t"] = np.stack([starts, starts + 500], axis=1).ravel()
    triggers["value"] = np.tile([1, 0], len(starts))
    return events, triggers


def _packets(events, triggers, duration_us):
    state = Evt3EncoderState()
    for seq, t0 in enumerate(range(0, duration_us, PACKET_US)):
        t1 = t0 + PACKET_US
        ev = events[(events["t"] >= t0) & (events["t"] < t1)]
        tr = triggers[(triggers["t"] >= t0) & (triggers["t"] < t1)]
        first = min([int(a["t"][0]) for a in (ev, tr) if len(a)], default=t0)
        yield seq, first, t1, encode_evt3(ev, tr, state=state)


def _send(acc, seq, first, data):
    """One EventPacket, stamped with the ROS time of its first item (the drivers' policy)."""
    acc.on_packet(encoding="evt3", data=data, seq=seq, stamp_ns=EPOCH_NS + first * 1000,
                  width=400, height=225)


def _feed(acc, events, triggers, duration_us, *, skip_seq=()):
    for seq, first, _, data in _packets(events, triggers, duration_us):
        if seq in skip_seq:
            continue
        _send(acc, seq, first, data)


def test_every_frame_gets_exactly_its_trigger_window(sim_calibration):
    duration = 600_000
    events, triggers = _stream(duration)
    acc = EventFrameAccumulator(sim_calibration)
    window = WindowConfig()
    reference = EventFrameBuilder(sim_calibration)
    frames = [k * PERIOD_US for k in range(5)]
    out = []
    packets = list(_packets(events, triggers, duration))
    # interleave as on a live rig: frame k arrives after the packets up to its exposure end
    for seq, first, t1, data in packets:
        _send(acc, seq, first, data)
        for k, t_frame in enumerate(frames):
            if t_frame + 10_000 == t1:
                acc.on_frame(("frame", k), EPOCH_NS + t_frame * 1000, arrival_ns=0)
        out += acc.poll(now_ns=0)
    assert [r.key for r in out] == [("frame", k) for k in range(5)]
    for ready, t_frame in zip(out, frames):
        assert ready.match.matched_trigger and ready.match.t_anchor_us == t_frame
        assert not ready.late
        t_start, t_end = window.bounds(t_frame)
        assert ready.window_us == (t_start, t_end)
        in_window = events[(events["t"] >= t_start) & (events["t"] < t_end)]
        assert ready.num_events == len(in_window)
        np.testing.assert_array_equal(ready.event_frame, reference.build(in_window, t_start, t_end))
    counters = acc.diagnostics()
    assert counters["seq_gaps"] == 0 and counters["frames_out"] == 5
    assert counters["triggers_matched"] == 5
    assert counters["clock_offset_us"] == EPOCH_NS // 1000


def test_frame_waits_for_its_events_then_times_out_as_late(sim_calibration):
    events, triggers = _stream(100_000)
    acc = EventFrameAccumulator(sim_calibration, AccumulatorConfig(max_wait_ns=1_000))
    _feed(acc, events, triggers, 100_000)
    acc.on_frame("f", EPOCH_NS + 150_000 * 1000, arrival_ns=0)  # its events never come
    assert acc.poll(now_ns=500) == []
    (ready,) = acc.poll(now_ns=2_000)
    assert ready.late and not ready.match.matched_trigger
    assert acc.counters["frames_late"] == 1


def test_lost_packets_and_bad_packets_are_counted_not_fatal(sim_calibration):
    events, triggers = _stream(200_000)
    acc = EventFrameAccumulator(sim_calibration)
    _feed(acc, events, triggers, 200_000, skip_seq={3, 4})
    acc.on_packet(
        encoding="mono", data=b"\x00" * 8, seq=20, stamp_ns=EPOCH_NS, width=400, height=225
    )
    acc.on_packet(
        encoding="evt3", data=b"\x01\x02\x03", seq=21, stamp_ns=EPOCH_NS, width=400, height=225
    )
    acc.on_packet(
        encoding="evt3", data=b"\x00" * 4, seq=22, stamp_ns=EPOCH_NS, width=1280, height=720
    )
    garbage = np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    acc.on_packet(encoding="evt3", data=garbage, seq=23, stamp_ns=EPOCH_NS, width=400, height=225)
    counters = acc.diagnostics()
    assert counters["seq_gaps"] == 1  # 2 -> 5; 19 -> 20 is in sequence
    assert counters["packets_lost"] == 2
    assert counters["unknown_encoding"] == 1
    assert counters["odd_length_packets"] == 1
    assert counters["geometry_mismatch"] == 1
    assert counters["packets"] == 18 + 4


def test_a_seq_that_jumps_back_or_absurdly_far_is_a_stream_reset_not_losses(sim_calibration):
    acc = EventFrameAccumulator(sim_calibration)
    for seq in (0, 1, 2**63 - 1, 0, 1, 5):  # corrupt header, driver restart, then 3 lost
        acc.on_packet(encoding="evt3", data=b"", seq=seq, stamp_ns=EPOCH_NS, width=400, height=225)
    counters = acc.diagnostics()
    assert counters["seq_resets"] == 2 and counters["packets_lost"] == 3
    assert counters["seq_gaps"] == 3


def test_invalid_window_config_is_rejected():
    with pytest.raises(ValueError, match="duration_us"):
        AccumulatorConfig(window=WindowConfig(duration_us=-5))


def test_frames_without_any_event_stream_go_out_empty_and_counted(sim_calibration):
    acc = EventFrameAccumulator(sim_calibration, AccumulatorConfig(max_wait_ns=1_000))
    acc.on_frame("f", EPOCH_NS, arrival_ns=0)
    assert acc.poll(now_ns=0) == []
    (ready,) = acc.poll(now_ns=5_000)
    assert ready.late and ready.num_events == 0 and not ready.event_frame.any()
    assert acc.counters["frames_without_events"] == 1


@pytest.mark.parametrize("mode", list(WindowMode))
def test_every_window_mode_cuts_what_it_says(sim_calibration, mode):
    duration = 300_000
    events, triggers = _stream(duration, seed=2)
    window = WindowConfig(mode=mode, exposure_us=12_000, event_count=700)
    acc = EventFrameAccumulator(sim_calibration, AccumulatorConfig(window=window))
    _feed(acc, events, triggers, duration)
    acc.on_frame("f", EPOCH_NS + 100_000 * 1000, arrival_ns=0)
    (ready,) = acc.poll(now_ns=0)
    t0, t1 = ready.window_us
    if mode is WindowMode.EXPOSURE:
        assert (t0, t1) == (100_000, 112_000)
    elif mode is WindowMode.DURATION:
        assert (t0, t1) == (75_000, 105_000)
    else:
        assert t1 == 105_000 and ready.num_events == 700
        before = events[events["t"] < t1]
        assert t0 == before["t"][-700]
    expected = events[(events["t"] >= t0) & (events["t"] < t1)]
    if mode is not WindowMode.COUNT:
        assert ready.num_events == len(expected)
    assert ready.event_frame[:2].sum() <= ready.num_events


def test_voxel_grid_representation_goes_through_the_stage(sim_calibration):
    events, triggers = _stream(200_000, seed=3)
    config = AccumulatorConfig(representation=Representation.VOXEL_GRID, voxel_bins=5)
    acc = EventFrameAccumulator(sim_calibration, config)
    _feed(acc, events, triggers, 200_000)
    acc.on_frame("f", EPOCH_NS + 100_000 * 1000, arrival_ns=0)
    (ready,) = acc.poll(now_ns=0)
    assert ready.event_frame.shape == (5, 240, 320)


# -- modality health and frameless event frames -----------------------------------------------
def _run_live(acc, events, triggers, duration, frame_ks, *, frame_after_us=10_000):
    """Packets in order, frame k ``frame_after_us`` after its trigger; host time = sensor time."""
    out = []
    for seq, first, t1, data in _packets(events, triggers, duration):
        _send(acc, seq, first, data)
        now = t1 * 1000
        for k in frame_ks:
            if k * PERIOD_US + frame_after_us == t1:
                acc.on_frame(("frame", k), EPOCH_NS + k * PERIOD_US * 1000, arrival_ns=now)
        out += acc.poll(now_ns=now)
    return out


def test_complete_matched_windows_are_fit_to_fuse_and_starved_ones_are_not(sim_calibration):
    duration = 600_000
    events, triggers = _stream(duration)
    # frames ahead of their window's end (+5 ms) that may not wait: judged late, counted
    config = AccumulatorConfig(max_wait_ns=0)
    acc = EventFrameAccumulator(sim_calibration, config)
    out = _run_live(acc, events, triggers, duration, range(1, 5), frame_after_us=0)
    assert [r.key for r in out] == [("frame", k) for k in range(1, 5)]
    assert all(not r.health.ok and "late" in r.health.reason for r in out)
    acc = EventFrameAccumulator(sim_calibration)  # frames wait for their events: all fit
    out = _run_live(acc, events, triggers, duration, range(1, 5), frame_after_us=0)
    assert len(out) == 4 and all(r.health.ok for r in out)
    assert acc.counters["windows_degraded"] == 0
    # a policy asking for more events than a window holds: too few events, counted
    acc = EventFrameAccumulator(
        sim_calibration, AccumulatorConfig(health=HealthPolicy(min_events=10**7))
    )
    out = _run_live(acc, events, triggers, duration, range(5))
    assert all(r.health.reason.startswith("too few events") for r in out)
    assert acc.counters["windows_degraded"] == 5


def test_lost_packets_in_a_frame_period_make_its_window_unfit(sim_calibration):
    duration = 300_000
    events, triggers = _stream(duration)
    acc = EventFrameAccumulator(sim_calibration)
    out = []
    for seq, first, t1, data in _packets(events, triggers, duration):
        if 120_000 <= first < 170_000:  # five of the 10 ms packets after frame 1 never arrive
            continue
        _send(acc, seq, first, data)
        if t1 % PERIOD_US == 10_000:
            k = t1 // PERIOD_US
            acc.on_frame(("frame", k), EPOCH_NS + k * PERIOD_US * 1000, arrival_ns=0)
        out += acc.poll(now_ns=0)
    assert acc.counters["packets_lost"] == 5
    health = {r.key[1]: r.health for r in out}
    # the gap is seen when the packet after it arrives, before frame 1 goes out; then recovery
    assert health[0].ok and "lost (42%" in health[1].reason and health[2].ok


def test_a_stopped_frame_stream_goes_on_as_frameless_event_frames(sim_calibration):
    duration = 1_000_000
    events, triggers = _stream(duration)
    acc = EventFrameAccumulator(sim_calibration)
    out = _run_live(acc, events, triggers, duration, range(3))  # frames 3..9 never come
    framed = [r for r in out if not r.frameless]
    frameless = [r for r in out if r.frameless]
    assert [r.key for r in framed] == [("frame", k) for k in range(3)]
    # every later trigger whose timeout passed is served, in order, stamped as its frame would be
    timeout = acc.config.frame_timeout_us
    served = [k for k in range(3, 10) if k * PERIOD_US + timeout <= duration - PACKET_US]
    assert [r.match.t_anchor_us for r in frameless] == [k * PERIOD_US for k in served]
    assert all(r.key is None and r.health.ok for r in frameless)
    assert [r.stamp_ns for r in frameless] == [EPOCH_NS + k * PERIOD_US * 1000 for k in served]
    assert acc.counters["frameless_out"] == len(served)
    # the camera comes back: a frame for an already served slot is a duplicate, a new one is not
    acc.on_frame("late", frameless[-1].stamp_ns, arrival_ns=duration * 1000)
    assert acc.counters["frames_superseded"] == 1


def test_frames_that_keep_coming_are_never_replaced_by_frameless_ones(sim_calibration):
    """Frames arriving (host time) but stamped off the grid are unsynced, not missing."""
    duration = 1_000_000
    events, triggers = _stream(duration)
    acc = EventFrameAccumulator(sim_calibration, AccumulatorConfig(max_wait_ns=0))
    out = []
    for seq, first, t1, data in _packets(events, triggers, duration):
        _send(acc, seq, first, data)
        if t1 % 30_000 == 0:  # a frame every 30 ms of host time, stamps far from any trigger
            acc.on_frame(("frame", t1), EPOCH_NS + (t1 + 37_000) * 1000, arrival_ns=t1 * 1000)
        out += acc.poll(now_ns=t1 * 1000)
    assert acc.counters["frameless_out"] == 0 and not any(r.frameless for r in out)
    assert any("unsynced" in r.health.reason or "late" in r.health.reason for r in out)
