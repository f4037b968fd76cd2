"""The accumulator stage on an encoded EVT3 stream with hardware-style triggers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from evseg_ros.events import evt3_fast
from evseg_ros.events.event_frame import EventFrameBuilder
from evseg_ros.events.evt3 import Evt3EncoderState, encode_evt3
from evseg_ros.events.representations import Representation
from evseg_ros.events.types import EVENT_DTYPE, TRIGGER_DTYPE
from evseg_ros.events.window import WindowConfig, WindowMode
from evseg_ros.pipeline import AccumulatorConfig, EventFrameAccumulator
from evseg_ros.pipeline.accumulator import EventPath
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


# -- the fused path (what a CPU node runs) against the host path ------------------------------
SAMPLE_RAW = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "expelliarmus" / (
    "evt3_sample.raw"
)
needs_numba = pytest.mark.skipif(not evt3_fast.available(), reason="numba is not installed")
WINDOW_MODES = {
    "duration": WindowConfig(duration_us=30_000, end_offset_us=5_000),
    "exposure": WindowConfig(mode=WindowMode.EXPOSURE, exposure_us=20_000),
    "count": WindowConfig(mode=WindowMode.COUNT, event_count=20_000),
}


@pytest.fixture(scope="module")
def sim_packets(sim_calibration):
    """330 ms of the simulated rig in 5 ms packets, and its rising trigger edges."""
    from evseg_ros.sim.rig import CoaxialRigSim

    simulator = CoaxialRigSim(sim_calibration).event_simulator(0)
    state = Evt3EncoderState()
    packets, rising = [], []
    for t in range(5_000, 330_001, 5_000):
        events, triggers = simulator.advance_to(t)
        first = min([int(a["t"][0]) for a in (events, triggers) if len(a)], default=t - 5_000)
        packets.append((first, t, encode_evt3(events, triggers, state=state)))
        rising += [int(edge["t"]) for edge in triggers if edge["value"] == 1]
    return packets, rising


def _sim_feed(sim_packets, *, loops: int = 1) -> list[tuple]:
    """Packets in order, each frame once the events of its exposure are in.

    With ``loops`` > 1 the recording starts over (sensor time restarts), as a looped replay.
    """
    packets, rising = sim_packets
    feed, seq = [], 0
    for loop in range(loops):
        epoch = EPOCH_NS + loop * 10**12  # host time goes on while sensor time restarts
        for first, t_end, data in packets:
            feed.append(("packet", seq, epoch + first * 1000, data))
            seq += 1
            feed += [("frame", (loop, t), epoch + t * 1000) for t in rising if t + 25_000 == t_end]
    return feed


def _with_triggers_and_glitches(words: np.ndarray, edges_us: np.ndarray) -> np.ndarray:
    """``words`` with an EXT_TRIGGER word where the clock reaches each of ``edges_us``, and a
    clock glitch after every 997th TIME_LOW: an event 5 us ahead of the clock, then the
    TIME_LOW again (Gen4 firmware re-sends time words so, and time steps back in a packet)."""
    kind, index = words >> 12, np.arange(words.size)
    last_high = np.maximum.accumulate(np.where(kind == 0x8, index, 0))
    last_low = np.maximum.accumulate(np.where(kind == 0x6, index, 0))
    clock = ((words[last_high] & 0xFFF).astype(np.int64) << 12) + (words[last_low] & 0xFFF)
    edges = np.searchsorted(clock, edges_us)
    lows = np.flatnonzero(kind == 0x6)[::997]
    lows = lows[(words[lows] & 0xFFF) < 0xFF0]
    at = np.concatenate((edges, np.repeat(lows + 1, 3)))
    inserted = np.concatenate((
        np.full(edges.size, 0xA001),  # rising edge, channel 0
        np.stack((0x6000 | ((words[lows] & 0xFFF) + 5), np.full(lows.size, 0x2805), words[lows]),
                 axis=1).ravel(),
    )).astype("<u2")
    order = np.argsort(at, kind="stable")
    return np.insert(words, at[order], inserted[order])


def _recording_feed(copies: int, *, packet_bytes: int) -> list[tuple]:
    """The real EVT3 sample (a dense 1280x720 Gen4 recording), tiled, with trigger edges.

    Copy k of the 8.8 ms recording has its clock moved past copy k - 1 (by whole TIME_HIGH
    steps, 12.3 ms), and a trigger edge 4 ms into it: one frame per copy.
    """
    from evseg_ros.events.evt3 import Evt3Decoder, read_raw_file

    _, payload = read_raw_file(SAMPLE_RAW)
    words = np.frombuffer(payload, dtype="<u2")
    high = (words >> 12) == 0x8
    span = int(np.ptp(words[high] & 0xFFF)) + 1  # in 4096 us steps
    tiled = np.tile(words, copies)
    high_at = np.flatnonzero(np.tile(high, copies))
    tiled[high_at] = 0x8000 | (((tiled[high_at] & 0xFFF) + high_at // words.size * span) & 0xFFF)
    period_us = span << 12
    first_us = (int(words[high][0] & 0xFFF) << 12) + 4_000
    edges_us = first_us + period_us * np.arange(copies)
    stream = _with_triggers_and_glitches(tiled, edges_us).tobytes()
    decoder = Evt3Decoder(width=1280, height=720)
    feed, edges = [], []
    for seq, start in enumerate(range(0, len(stream), packet_bytes)):
        data = stream[start : start + packet_bytes]
        decoded = decoder.decode(data)
        first = min([int(a["t"][0]) for a in decoded if len(a)], default=decoder.current_time_us)
        feed.append(("packet", seq, EPOCH_NS + first * 1000, data))
        edges += [int(t) for t in decoded.triggers["t"]]
        feed += [("frame", t, EPOCH_NS + t * 1000) for t in edges
                 if t + 2_000 <= decoder.current_time_us]
        edges = [t for t in edges if t + 2_000 > decoder.current_time_us]
    assert decoder.counters.time_backwards > copies and decoder.counters.triggers == copies
    return feed


def _drive(calibration, feed, config: AccumulatorConfig):
    """Feed packets and frames as they come; everything that comes out, in order."""
    width, height = calibration.event_camera.width, calibration.event_camera.height
    acc = EventFrameAccumulator(calibration, config)
    out = []
    for kind, key, stamp_ns, *data in feed:
        if kind == "packet":
            acc.on_packet(encoding="evt3", data=data[0], seq=key, stamp_ns=stamp_ns,
                          width=width, height=height)
        else:
            acc.on_frame(key, stamp_ns, arrival_ns=0)
        out += acc.poll(now_ns=0)
    return acc, out + acc.poll(now_ns=10**18)


def _assert_same_as_host_path(calibration, feed, config: AccumulatorConfig) -> list:
    """The fused path gives the host path's frames, figures and counters; return them."""
    fused, fused_out = _drive(calibration, feed, replace(config, event_path=EventPath.FUSED))
    host, host_out = _drive(calibration, feed, replace(config, event_path=EventPath.HOST))
    assert (fused.path, host.path) == (EventPath.FUSED, EventPath.HOST)
    assert len(fused_out) == len(host_out) > 0
    for got, want in zip(fused_out, host_out, strict=True):
        assert (got.key, got.stamp_ns, got.window_us, got.match) == (
            want.key, want.stamp_ns, want.window_us, want.match
        )
        assert (got.num_events, got.late, got.health, got.frameless) == (
            want.num_events, want.late, want.health, want.frameless
        )
        np.testing.assert_array_equal(got.event_frame, want.event_frame)
    got_diag, want_diag = fused.diagnostics(), host.diagnostics()
    assert got_diag.pop("event_path") == "fused" and want_diag.pop("event_path") == "host"
    assert got_diag == want_diag
    return host_out


@needs_numba
@pytest.mark.parametrize("mode", sorted(WINDOW_MODES))
def test_fused_path_matches_host_path_on_the_simulated_rig(sim_calibration, sim_packets, mode):
    config = AccumulatorConfig(window=WINDOW_MODES[mode])
    assert EventFrameAccumulator(sim_calibration, config).path is EventPath.FUSED  # the default
    # two loops: the second restarts sensor time, which must start the buffer over
    feed = _sim_feed(sim_packets, loops=2)
    out = _assert_same_as_host_path(sim_calibration, feed, config)
    matched = [r for r in out if r.match.matched_trigger]
    # the last frame of the first loop is still waiting for its trigger when time restarts
    assert len(out) == 8 and len(matched) == 7 and all(r.num_events > 0 for r in matched)


@needs_numba
def test_fused_path_keeps_the_buffer_rules(sim_calibration, sim_packets):
    """Overflow trims that cut into kept packets, a resent (out-of-order) packet, lost ones."""
    feed = _sim_feed(sim_packets)
    packets = [item for item in feed if item[0] == "packet"]
    resent = ("packet", 1_000, packets[30][2], packets[28][3])
    feed = [item for item in feed if item not in packets[40:42]]
    feed.insert(feed.index(packets[31]), resent)
    config = AccumulatorConfig(buffer_span_us=42_000)
    _assert_same_as_host_path(sim_calibration, feed, config)
    acc, _ = _drive(sim_calibration, feed, config)
    counters = acc.diagnostics()
    assert counters["events_dropped_overflow"] > 0 and counters["events_dropped_out_of_order"] > 0


@needs_numba
@pytest.mark.skipif(not SAMPLE_RAW.is_file(), reason=f"recording not found: {SAMPLE_RAW}")
@pytest.mark.parametrize("mode", ["duration", "count"])
def test_fused_path_matches_host_path_on_a_real_recording(mode):
    """Dense Gen4 data with vector words, a homography table and clock glitches."""
    from evseg_ros.geometry.calibration import calibration_from_dict

    identity = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    calibration = calibration_from_dict({
        "event_camera": {"width": 1280, "height": 720, "camera_matrix": identity},
        "frame_camera": {"width": 640, "height": 480, "camera_matrix": identity},
        "event_to_frame_homography": [0.55, 0.0, -20.0, 0.0, 0.55, 90.0, 0.0, 0.0, 1.0],
    })
    window = {
        "duration": WindowConfig(duration_us=3_000, end_offset_us=1_000),
        "count": WindowConfig(mode=WindowMode.COUNT, duration_us=3_000, event_count=30_000),
    }[mode]
    feed = _recording_feed(8, packet_bytes=12_288)
    out = _assert_same_as_host_path(calibration, feed, AccumulatorConfig(window=window))
    assert len(out) == 8 and all(r.match.matched_trigger and r.num_events > 0 for r in out)
