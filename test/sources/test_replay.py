"""Replay sources: bytes go out unchanged, paced in recorded time or as fast as consumed."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter

from evseg_ros.events.evt3 import Evt3Decoder, encode_evt3, read_raw_file
from evseg_ros.events.types import EVENT_DTYPE
from evseg_ros.sources import SourceUnavailableError
from evseg_ros.sources.replay import RawFileEventSource

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
EVT3_RAW = DATA / "expelliarmus" / "evt3_sample.raw"
TRIGGER_BAG = DATA / "event_camera_codecs" / "test_data_evt3_trigger"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"recordings not found in {DATA}")
SECOND = 1_000_000_000


def _synthetic_raw(tmp_path: Path, duration_us: int = 1_000_000) -> Path:
    events = np.zeros(20_000, dtype=EVENT_DTYPE)
    events["t"] = np.linspace(0, duration_us - 1, len(events)).astype(np.int64)
    events["x"] = np.arange(len(events)) % 400
    events["y"] = np.arange(len(events)) % 225
    events["p"] = np.arange(len(events)) % 2
    path = tmp_path / "synthetic.raw"
    path.write_bytes(b"% format EVT3;height=225;width=400\n% end\n" + encode_evt3(events))
    return path


def _drain(source, now_ns: int = SECOND, limit: int = 10_000):
    packets = []
    for _ in range(limit):
        batch = source.read(now_ns)
        if not batch:
            break
        packets += batch
    return packets


@needs_data
def test_raw_replay_as_fast_as_consumed_sends_the_file_unchanged():
    source = RawFileEventSource(EVT3_RAW, realtime=False, packet_bytes=4097)
    assert (source.encoding, source.width, source.height) == ("evt3", 1280, 720)
    assert source.packet_bytes == 4096
    packets = _drain(source)
    assert source.finished
    _, payload = read_raw_file(EVT3_RAW)
    assert b"".join(p.data for p in packets) == bytes(payload)
    decoder = Evt3Decoder()
    events = np.concatenate([decoder.decode(p.data).events for p in packets])
    np.testing.assert_array_equal(events, Evt3Decoder().decode(payload).events)
    assert all(len(source.read(SECOND)) == 0 for _ in range(3))


def test_raw_replay_in_real_time_follows_sensor_time(tmp_path):
    source = RawFileEventSource(_synthetic_raw(tmp_path), realtime=True, packet_bytes=2048)
    start = 5 * SECOND
    first = source.read(start)
    assert len(first) == 1 and first[0].stamp_ns == start  # the first packet sets the offset
    half = _drain(source, start + SECOND // 2)
    assert half, "packets due within the first half second"
    assert all(p.time_base_ns <= SECOND // 2 for p in half)
    assert all(p.stamp_ns <= start + SECOND // 2 for p in half)
    rest = _drain(source, start + 2 * SECOND)
    assert source.finished and min(p.time_base_ns for p in rest) > SECOND // 2 - 20_000_000


def test_raw_replay_loops(tmp_path):
    source = RawFileEventSource(
        _synthetic_raw(tmp_path), realtime=False, loop=True, packet_bytes=1 << 20
    )
    packets = [source.read(SECOND)[0] for _ in range(3)]
    assert source.loops == 2
    assert packets[0].data == packets[1].data == packets[2].data


def test_unreadable_recordings_name_the_path(tmp_path):
    damaged = tmp_path / "damaged.raw"
    damaged.write_bytes(b"% format EVT3;height=720;width=1280\n% broken" + b"x" * 300)
    with pytest.raises(SourceUnavailableError, match=r"damaged\.raw"):
        RawFileEventSource(damaged)
    unknown = tmp_path / "evt4.raw"
    unknown.write_bytes(b"% format EVT4;height=720;width=1280\n% end\n\x00\x00")
    with pytest.raises(SourceUnavailableError, match=r"evt4\.raw"):
        RawFileEventSource(unknown)


@needs_data
def test_driver_replays_a_raw_file_into_the_accumulator_over_dds():
    from evseg_ros.nodes.accumulator import AccumulatorNode
    from evseg_ros.nodes.evk4_driver import Evk4DriverNode

    context = Context()
    rclpy.init(context=context)
    try:
        executor = SingleThreadedExecutor(context=context)
        driver = Evk4DriverNode(
            context=context, namespace="replay",
            parameter_overrides=[
                Parameter("source", value="raw"),
                Parameter("raw_file", value=str(EVT3_RAW)),
                Parameter("replay_pacing", value="fast"),
                Parameter("raw_packet_bytes", value=32_768),
            ],
        )
        calibration = REPO / "test" / "sources" / "evk4_1280x720.yaml"
        accumulator = AccumulatorNode(
            context=context, namespace="replay",
            parameter_overrides=[Parameter("calibration_file", value=str(calibration))],
        )
        executor.add_node(driver)
        executor.add_node(accumulator)
        deadline = time.monotonic() + 30
        while not driver.source.finished and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.01)
        for _ in range(50):
            executor.spin_once(timeout_sec=0.01)
        counters = accumulator.core.counters
    finally:
        rclpy.try_shutdown(context=context)
    assert driver.seq == counters["packets"] == 19
    assert counters["seq_gaps"] == 0 and counters["geometry_mismatch"] == 0
    assert counters["events_decoded"] == 219_596
