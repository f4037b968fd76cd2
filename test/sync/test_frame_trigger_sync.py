"""Frame <-> trigger matching on simulated rig timings with injected faults, and on a real bag."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest

from evseg_ros.events.types import TRIGGER_DTYPE
from evseg_ros.geometry import load_calibration
from evseg_ros.sim import CoaxialRigSim, SimConfig
from evseg_ros.sync import (
    STATISTICS_KEYS,
    AnchorSource,
    ClockOffsetEstimator,
    FrameSyncResult,
    FrameTiming,
    FrameTriggerSync,
    MatchResult,
    SyncConfig,
)

REPO = Path(__file__).resolve().parents[2]
TRIGGER_BAG = REPO.parent / "shared" / "data" / "event_camera_codecs" / "test_data_evt3_trigger"

SENSOR_START_US = 10_000_000  # sensor clock at the first simulated instant
SENSOR_RESTART_US = 5_000  # sensor clock right after a restart (bag loop, camera reset)
ROS_START_US = 1_700_000_000_000_000  # ROS time (µs) at the first simulated instant
PACKET_US = 1_000  # sensor time covered by one EventPacket


@pytest.fixture(scope="module")
def rig() -> CoaxialRigSim:
    calibration = load_calibration(REPO / "config" / "calibration" / "sim_rig.yaml")
    return CoaxialRigSim(calibration, SimConfig(frame_rate_hz=30.0))


@dataclass(frozen=True)
class Faults:
    """What goes wrong in one simulated run (k = frame/trigger number)."""

    frames: int = 90
    dropped_frames: tuple[int, ...] = ()
    missing_triggers: tuple[int, ...] = ()
    spurious_after: tuple[tuple[int, float], ...] = ()  # (k, fraction of a period after it)
    duplicated: tuple[int, ...] = ()
    drift_ppm: float = 0.0
    jitter_us: float = 0.0
    jump_after: int | None = None  # sensor clock restarts half a period after trigger k
    ros_restarts_too: bool = False  # bag loop: header stamps jump back together with sensor time
    frame_ids: bool = False
    frame_id_start: int = 1000
    frame_id_reset_at: int | None = None  # FrameID restarts at 0 from this frame on
    frame_id_modulus: int | None = None
    chunk_times: bool = False
    uniform_jitter_fraction: float = 0.0  # stamp jitter, uniform +- this fraction of a period
    latency_us: int = 4_000  # frame stamp minus trigger time
    seed: int = 0


@dataclass
class Run:
    """A simulated run: what went in, what came out."""

    sync: FrameTriggerSync
    frame_numbers: list[int]
    trigger_sensor_us: dict[int, int]  # k -> sensor time of the true trigger edge
    results: dict[int, FrameSyncResult] = field(default_factory=dict)
    undecided_checks: int = 0


def simulate(rig: CoaxialRigSim, faults: Faults, config: SyncConfig | None = None) -> Run:
    """Stream packets and frames in ROS arrival order; resolve frames as the events allow."""
    rng = np.random.default_rng(faults.seed)
    period = rig.frame_period_us()
    # trigger k fires at elapsed time (k + 1) * period of the rig's own trigger schedule
    elapsed_triggers = rig.trigger_times(period, (faults.frames + 1) * period)
    assert len(elapsed_triggers) == faults.frames
    end = int(elapsed_triggers[-1]) + 3 * period
    jump = None
    if faults.jump_after is not None:
        jump = round((int(elapsed_triggers[faults.jump_after]) + period // 2) / PACKET_US)
        jump *= PACKET_US

    def sensor(elapsed: float) -> int:
        if jump is not None and elapsed >= jump:
            return SENSOR_RESTART_US + round(elapsed - jump)
        return SENSOR_START_US + round(elapsed)

    def arrival(elapsed: float) -> int:
        return ROS_START_US + round(elapsed * (1.0 + faults.drift_ppm * 1e-6))

    def ros(elapsed: float) -> int:  # header stamp: arrival time, unless the bag looped
        if jump is not None and elapsed >= jump and faults.ros_restarts_too:
            return arrival(elapsed - jump)
        return arrival(elapsed)

    edges: list[float] = []
    truth: dict[int, int] = {}
    for k, elapsed in enumerate(elapsed_triggers.tolist()):
        truth[k] = sensor(elapsed)
        if k not in faults.missing_triggers:
            edges.append(elapsed)
        if k in faults.duplicated:
            edges.append(elapsed + 3)  # contact bounce, inside the debounce interval
    edges += [elapsed_triggers[k] + f * period for k, f in faults.spurious_after]
    edges.sort()

    timeline: list[tuple[int, int, object]] = []  # (ROS arrival µs, order, item)
    for start in range(0, end, PACKET_US):
        in_packet = [sensor(e) for e in edges if start <= e < start + PACKET_US]
        delay = int(rng.integers(0, 300))  # one-sided host delay
        packet = ("packet", ros(start) + delay, sensor(start), sensor(start) + PACKET_US, in_packet)
        timeline.append((arrival(start) + delay, 0, packet))
    frame_numbers = [k for k in range(faults.frames) if k not in faults.dropped_frames]
    for k in frame_numbers:
        elapsed = float(elapsed_triggers[k])
        noise = rng.normal(0.0, faults.jitter_us) if faults.jitter_us else 0.0
        if faults.uniform_jitter_fraction:
            width = faults.uniform_jitter_fraction * period
            noise += rng.uniform(-width, width)
        stamp_us = ros(elapsed) + faults.latency_us + round(noise)
        arrives_us = arrival(elapsed) + faults.latency_us + round(noise)
        frame_id = None
        if faults.frame_ids:
            frame_id = faults.frame_id_start + k
            if faults.frame_id_reset_at is not None and k >= faults.frame_id_reset_at:
                frame_id = k - faults.frame_id_reset_at
            if faults.frame_id_modulus is not None:
                frame_id %= faults.frame_id_modulus
        chunk = 7_000_000_000 + round(elapsed * 1000 * (1 + 20e-6)) if faults.chunk_times else None
        timing = FrameTiming(stamp_us * 1000, frame_id=frame_id, chunk_time_ns=chunk)
        timeline.append((arrives_us, 1, ("frame", k, timing)))
    timeline.sort(key=lambda item: (item[0], item[1]))

    sync = FrameTriggerSync(config or SyncConfig(frame_id_modulus=faults.frame_id_modulus))
    run = Run(sync, frame_numbers, truth)
    pending: list[tuple[int, FrameTiming]] = []
    decoded_until: int | None = None

    def drain(*, force: bool = False) -> None:
        while pending:
            k, timing = pending[0]
            result = sync.resolve(timing, decoded_until_us=decoded_until, force=force)
            if result is None:
                run.undecided_checks += 1
                return
            run.results[k] = result
            pending.pop(0)

    for _, _, item in timeline:
        if item[0] == "packet":
            _, stamp, first, last, triggers = item
            sync.add_clock_sample(stamp, first)
            records = np.zeros(len(triggers), dtype=TRIGGER_DTYPE)
            records["t"], records["value"] = triggers, 1
            sync.add_trigger_records(records)
            decoded_until = last
        else:
            pending.append((item[1], item[2]))
        drain()
    drain(force=True)
    return run


def assert_each_frame_on_its_own_trigger(run: Run, faults: Faults, *, slot_error_us: int) -> None:
    assert sorted(run.results) == run.frame_numbers
    for k in run.frame_numbers:
        result = run.results[k]
        if k in faults.missing_triggers:
            assert not result.matched and result.trigger_missing, k
            assert result.source is AnchorSource.PREDICTED_SLOT, k
            assert abs(result.t_anchor_us - run.trigger_sensor_us[k]) <= slot_error_us, k
        else:
            assert result.matched, f"frame {k} unmatched: {result}"
            assert result.source is AnchorSource.TRIGGER
            assert result.t_anchor_us == run.trigger_sensor_us[k], f"frame {k}: {result}"


CASES = {
    "clean": (Faults(), {}),
    "dropped_frames": (
        Faults(dropped_frames=(10, 20, 21, 22)),
        {"dropped_frames": 4, "unused_triggers": 4},
    ),
    "missing_triggers": (Faults(missing_triggers=(15, 40, 41)), {"missing_triggers": 3}),
    "spurious_triggers": (
        # mid-period, off the grid, and right beside a real edge (past the debounce interval)
        Faults(spurious_after=((12, 0.5), (30, 0.35), (31, 0.65), (50, 0.1), (60, 0.9))),
        {"spurious_triggers": 5},
    ),
    "duplicate_triggers": (Faults(duplicated=(5, 33, 34)), {"duplicate_triggers": 3}),
    "drop_then_missing": (
        Faults(dropped_frames=(10,), missing_triggers=(11,)),
        {"dropped_frames": 1, "missing_triggers": 1, "unused_triggers": 1},
    ),
    "drift_and_jitter": (Faults(frames=240, drift_ppm=50.0, jitter_us=300.0), {}),
    "sensor_clock_restart": (Faults(jump_after=44), {"clock_jumps": 1, "relocks": 1}),
    "bag_loop": (
        Faults(jump_after=44, ros_restarts_too=True),
        {"clock_jumps": 1, "relocks": 1},
    ),
    "everything_at_once": (
        Faults(
            frames=150,
            dropped_frames=(10, 60, 61),
            missing_triggers=(20, 90),
            spurious_after=((30, 0.5),),
            duplicated=(40,),
            drift_ppm=-50.0,
            jitter_us=200.0,
            jump_after=120,
        ),
        {
            "dropped_frames": 3,
            "unused_triggers": 3,
            "missing_triggers": 2,
            "spurious_triggers": 1,
            "duplicate_triggers": 1,
            "clock_jumps": 1,
            "relocks": 1,
        },
    ),
}
ZERO_COUNTERS = dict.fromkeys(
    [
        "dropped_frames",
        "missing_triggers",
        "spurious_triggers",
        "duplicate_triggers",
        "out_of_order_triggers",
        "unused_triggers",
        "clock_jumps",
        "relocks",
        "frame_id_resets",
        "chunk_time_resets",
    ],
    0,
)


@pytest.mark.parametrize("name", list(CASES))
def test_simulated_rig_faults_are_counted_and_every_frame_keeps_its_trigger(rig, name):
    faults, expected = CASES[name]
    run = simulate(rig, faults)
    stats = run.sync.statistics()
    assert_each_frame_on_its_own_trigger(run, faults, slot_error_us=5)
    counts = {key: stats[key] for key in ZERO_COUNTERS}
    assert counts == {**ZERO_COUNTERS, **expected}
    assert stats["frames"] == len(run.frame_numbers)
    assert stats["matched"] == len(run.frame_numbers) - len(faults.missing_triggers)
    assert stats["locked"] is True
    assert stats["period_us"] == pytest.approx(rig.frame_period_us(), abs=1)
    # trigger vs stamp mapped by the packet clock: the frame latency the rig injected
    # (minus the packet clock's smallest host delay, at most a few µs here)
    assert stats["mean_abs_offset_us"] == pytest.approx(
        faults.latency_us, abs=10 + 1.5 * faults.jitter_us
    )
    assert run.undecided_checks > 0  # frames did wait for their events


def test_drift_and_jitter_are_measured(rig):
    faults = Faults(frames=240, drift_ppm=50.0, jitter_us=300.0, seed=3)
    stats = simulate(rig, faults).sync.statistics()
    assert stats["drift_ppm"] == pytest.approx(50.0, abs=15.0)
    assert stats["jitter_us"] == pytest.approx(300.0, rel=0.3)
    clean = simulate(rig, Faults()).sync.statistics()
    assert abs(clean["drift_ppm"]) < 1.0 and clean["jitter_us"] < 5.0
    # ROS stamp minus trigger time of the frame path: ROS epoch - sensor epoch + latency
    assert clean["offset_us"] == pytest.approx(
        ROS_START_US - SENSOR_START_US + faults.latency_us, abs=5
    )


FRAME_ID_CASES = {
    # FrameID steps decide the slot, so stamp jitter near half a period does not matter
    "jumps_under_heavy_jitter": (
        Faults(frame_ids=True, dropped_frames=(10, 11, 12, 40), uniform_jitter_fraction=0.4),
        {"dropped_frames": 4, "unused_triggers": 4},
    ),
    "counter_reset": (
        Faults(frame_ids=True, frame_id_reset_at=50, dropped_frames=(70,)),
        {"frame_id_resets": 1, "dropped_frames": 1, "unused_triggers": 1},
    ),
    "counter_wrap": (
        Faults(
            frame_ids=True,
            frame_id_start=65_500,
            frame_id_modulus=1 << 16,
            dropped_frames=(36,),  # FrameID 65535, the last before the wrap
            uniform_jitter_fraction=0.4,
        ),
        {"dropped_frames": 1, "unused_triggers": 1},
    ),
    "chunk_time_under_heavy_jitter": (
        Faults(chunk_times=True, dropped_frames=(7, 50, 51), uniform_jitter_fraction=0.4),
        {"dropped_frames": 3, "unused_triggers": 3},
    ),
}


@pytest.mark.parametrize("name", list(FRAME_ID_CASES))
def test_frame_counters_place_frames_exactly(rig, name):
    faults, expected = FRAME_ID_CASES[name]
    run = simulate(rig, faults)
    assert_each_frame_on_its_own_trigger(run, faults, slot_error_us=5)
    stats = run.sync.statistics()
    assert {key: stats[key] for key in ZERO_COUNTERS} == {**ZERO_COUNTERS, **expected}


def test_stamp_jitter_near_half_a_period_needs_the_frame_counter(rig):
    """The same heavy jitter without FrameID puts some frames on a neighbour's slot."""
    faults = Faults(dropped_frames=(10, 11, 12, 40), uniform_jitter_fraction=0.45, seed=1)
    run = simulate(rig, faults)
    wrong = [k for k, r in run.results.items() if r.t_anchor_us != run.trigger_sensor_us[k]]
    assert wrong, "expected some frames to land on a neighbouring trigger"
    with_ids = simulate(rig, replace(faults, frame_ids=True))
    assert all(r.t_anchor_us == with_ids.trigger_sensor_us[k] for k, r in with_ids.results.items())


def test_without_triggers_frames_are_anchored_at_the_mapped_stamp(rig):
    faults = Faults(frames=30, missing_triggers=tuple(range(30)), latency_us=0)
    run = simulate(rig, faults)
    stats = run.sync.statistics()
    assert stats["matched"] == 0 and stats["frames"] == 30
    assert stats["missing_triggers"] == 0  # no trigger stream at all: nothing is "missing"
    assert stats["locked"] is False and stats["offset_us"] is not None
    assert stats["period_us"] == pytest.approx(rig.frame_period_us(), abs=1)
    for k, result in run.results.items():
        assert result.source is AnchorSource.CLOCK and not result.matched
        assert not result.trigger_missing and result.trigger_index is None
        # packet stamps carry up to 300 µs of host delay; the lower envelope removes most
        assert abs(result.t_anchor_us - run.trigger_sensor_us[k]) <= 300
        assert result.as_match_result() == MatchResult(result.t_anchor_us, False, 0)


def test_a_frame_waits_until_the_events_pass_its_trigger_slot():
    sync = FrameTriggerSync(SyncConfig(period_us=10_000))
    offset = 1_000_000_000
    sync.add_clock_sample(offset + 0, 0)
    sync.add_trigger_times([0, 10_000])
    first = sync.resolve(FrameTiming((offset + 500) * 1000), decoded_until_us=10_000)
    assert first is not None and first.matched and first.t_anchor_us == 0
    # frame 1 arrives, but its trigger (at 20 000) has not been decoded yet
    frame = FrameTiming((offset + 20_500) * 1000)
    tolerance = 0.3 * 10_000
    assert sync.resolve(frame, decoded_until_us=15_000) is None
    assert sync.resolve(frame, decoded_until_us=20_000 + tolerance - 1) is None
    assert sync.statistics()["frames"] == 1  # asking does not change anything
    sync.add_trigger_times([20_000])
    result = sync.resolve(frame, decoded_until_us=20_000 + tolerance)
    assert result is not None and result.matched and result.t_anchor_us == 20_000
    assert result.dropped_before == 1 and result.after_frame_drop  # frame of trigger 10 000
    # the next slot stays empty: decided (as missing) only once the events are past it
    frame = FrameTiming((offset + 30_400) * 1000)
    assert sync.resolve(frame, decoded_until_us=32_000) is None
    result = sync.resolve(frame, decoded_until_us=33_000)
    assert result is not None and result.trigger_missing and result.t_anchor_us == 30_000
    # a frame that waited too long is decided with what is there
    frame = FrameTiming((offset + 40_400) * 1000)
    forced = sync.resolve(frame, decoded_until_us=None, force=True)
    assert forced is not None and forced.source is AnchorSource.PREDICTED_SLOT
    assert sync.statistics()["missing_triggers"] == 2


def test_a_frame_cannot_be_placed_before_any_clock_sample():
    sync = FrameTriggerSync()
    sync.add_trigger_times([1_000])
    assert sync.resolve(FrameTiming(5_000_000), decoded_until_us=10**9, force=True) is None


def test_bad_trigger_streams_are_counted_not_fatal():
    sync = FrameTriggerSync(SyncConfig(debounce_us=200))
    assert sync.add_trigger_times([]) == 0
    assert sync.add_trigger_records(np.zeros(0, dtype=TRIGGER_DTYPE)) == 0
    accepted = sync.add_trigger_times(
        [1_000, 1_000, 1_150, 11_000, 5_000, 21_000, 10_900, 31_000, 31_000, 41_000]
    )
    stats = sync.statistics()
    assert accepted == 5  # 1 000, 11 000, 21 000, 31 000, 41 000
    assert stats["duplicate_triggers"] == 4  # 1 000, 1 150, 10 900 (near 11 000), 31 000
    assert stats["out_of_order_triggers"] == 1  # 5 000
    assert stats["triggers"] == 5 and stats["clock_jumps"] == 0
    assert stats["period_us"] == 10_000
    # a trigger far in the past is a restarted sensor clock, not an out-of-order edge
    sync.add_trigger_times([100, 10_100])
    assert sync.statistics()["clock_jumps"] == 0  # 41 000 -> 100 is within the threshold
    sync = FrameTriggerSync(SyncConfig(jump_threshold_us=20_000))
    sync.add_trigger_times([100_000, 110_000, 50, 10_050])
    stats = sync.statistics()
    assert stats["clock_jumps"] == 1 and stats["out_of_order_triggers"] == 0
    assert stats["triggers"] == 4


def test_only_the_configured_channel_and_edge_are_used():
    records = np.zeros(4, dtype=TRIGGER_DTYPE)
    records["t"] = [100, 300, 500, 700]
    records["channel"] = [0, 0, 1, 0]
    records["value"] = [1, 0, 1, 1]
    assert FrameTriggerSync().add_trigger_records(records) == 2
    assert FrameTriggerSync(SyncConfig(rising=False)).add_trigger_records(records) == 1
    assert FrameTriggerSync(SyncConfig(channel=1)).add_trigger_records(records) == 1


def test_statistics_keys_and_empty_values():
    stats = FrameTriggerSync().statistics()
    assert tuple(stats) == STATISTICS_KEYS
    assert stats["frames"] == 0 and stats["locked"] is False
    for key in ("period_us", "offset_us", "drift_ppm", "jitter_us", "mean_abs_offset_us"):
        assert stats[key] is None, key


def test_a_shared_packet_clock_jump_starts_a_new_epoch():
    clock = ClockOffsetEstimator()
    sync = FrameTriggerSync(SyncConfig(period_us=10_000), clock=clock)
    clock.add(1_000_000, 0)
    sync.add_trigger_times([0, 10_000])
    assert sync.resolve(FrameTiming(1_000_000_000), decoded_until_us=20_000).matched
    clock.add(9_000_000, 20_000)  # owner feeds the clock directly; the jump is seen anyway
    sync.add_trigger_times([20_000])
    result = sync.resolve(FrameTiming(9_000_000_000), decoded_until_us=30_000)
    assert result.matched and result.t_anchor_us == 20_000
    assert sync.statistics()["clock_jumps"] == 1


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("tolerance_fraction", 0.5),
        ("period_us", 0),
        ("debounce_us", -1),
        ("fit_window", 0),
        ("frame_id_modulus", 1),
    ],
)
def test_bad_config_names_the_option(option, value):
    with pytest.raises(ValueError, match=f"{option}.*{value!r}"):
        SyncConfig(**{option: value})


@functools.cache
def _decode_trigger_bag():
    from evseg_ros.events.bag import read_event_packets
    from evseg_ros.events.decoders import create_decoder
    from evseg_ros.events.types import first_time_us

    decoder = None
    packets = []
    for _, _, msg in read_event_packets(TRIGGER_BAG):
        if decoder is None:
            decoder = create_decoder(msg.encoding, width=msg.width, height=msg.height)
        decoded = decoder.decode(msg.events)
        stamp_us = (msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec) // 1000
        first = first_time_us(decoded.events, decoded.triggers, decoder.current_time_us)
        packets.append((stamp_us, first, decoded.triggers, int(decoder.current_time_us)))
    return packets


@pytest.mark.skipif(not TRIGGER_BAG.is_dir(), reason=f"recording not found: {TRIGGER_BAG}")
@pytest.mark.parametrize(("rising", "edge_us"), [(True, 14_549_491), (False, 14_547_491)])
def test_real_trigger_bag_frame_matches_its_edge(rising, edge_us):
    packets = _decode_trigger_bag()
    triggers = np.concatenate([p[2] for p in packets])
    assert triggers.tolist() == [(14_547_491, 0, 0), (14_549_491, 0, 1)]  # fall, then rise
    sync = FrameTriggerSync(SyncConfig(rising=rising))
    for stamp_us, first, records, _ in packets:
        sync.add_clock_sample(stamp_us, first)
        sync.add_trigger_records(records)
    # packet stamps are host times: their lower envelope is the clock offset
    offset = min(stamp_us - first for stamp_us, first, _, _ in packets)
    assert offset == 1_665_782_651_623_691
    latency_us = 3_000
    frame = FrameTiming((edge_us + offset + latency_us) * 1000)
    result = sync.resolve(frame, decoded_until_us=packets[-1][3])
    assert result is not None and result.matched
    assert (result.t_anchor_us, result.trigger_index) == (edge_us, 0)
    assert result.offset_error_us == -latency_us
    stats = sync.statistics()
    assert (stats["frames"], stats["matched"], stats["triggers"]) == (1, 1, 1)
    assert stats["duplicate_triggers"] == stats["out_of_order_triggers"] == 0
    assert stats["mean_abs_offset_us"] == latency_us
    assert stats["offset_us"] == offset + latency_us
