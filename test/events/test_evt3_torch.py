"""Torch EVT3 decoder and accumulator: identical to the numpy decoder and frame builder.

Every check runs with ``device="cpu"``, and again with ``device="cuda"`` where torch sees a GPU
(the ``cuda`` parameters skip elsewhere), so the same assertions hold on both back ends: events,
triggers and counters equal :class:`Evt3Decoder`'s, and event frames equal
:class:`EventFrameBuilder`'s bit for bit (``torch.equal``). No timing is asserted.

The recordings live in ``<repo>/../shared/data`` (not part of the repository); tests that need
them skip with the reason when that folder is absent.
"""

from __future__ import annotations

import array
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from evseg_ros.events.errors import EventDecodeError
from evseg_ros.events.event_frame import EventFrameBuilder
from evseg_ros.events.evt3 import Evt3Decoder, Evt3EncoderState, encode_evt3, read_raw_file
from evseg_ros.events.evt3_torch import TorchEvt3Accumulator, resolve_device
from evseg_ros.events.types import EVENT_DTYPE, EVT3_TIME_PERIOD_US, TRIGGER_DTYPE
from evseg_ros.geometry.calibration import RigCalibration, calibration_from_dict

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
SAMPLE_RAW = SHARED_DATA / "expelliarmus" / "evt3_sample.raw"
TRIGGER_BAG = SHARED_DATA / "event_camera_codecs" / "test_data_evt3_trigger"

needs_sample = pytest.mark.skipif(
    not SAMPLE_RAW.is_file(), reason=f"recorded EVT3 sample not available ({SAMPLE_RAW} is absent)"
)
needs_bag = pytest.mark.skipif(
    not TRIGGER_BAG.is_dir(),
    reason=f"EVT3 trigger rosbag not available ({TRIGGER_BAG} is absent)",
)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
#: Every identity test runs on both back ends; the CUDA case skips without a GPU.
DEVICES = ["cpu", pytest.param("cuda", marks=needs_cuda)]

FAST = settings(max_examples=40, deadline=None)


# ========================================================================== utilities


def evk4_rig() -> RigCalibration:
    """A 1280x720 event camera whose image covers part of a 640x480 frame.

    The scale and offsets push the sensor's left and bottom edges off the frame, so some
    events have no frame pixel and must be counted as unmapped.
    """
    identity = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    return calibration_from_dict(
        {
            "event_camera": {"width": 1280, "height": 720, "camera_matrix": identity},
            "frame_camera": {"width": 640, "height": 480, "camera_matrix": identity},
            "event_to_frame_homography": [0.55, 0.0, -20.0, 0.0, 0.55, 90.0, 0.0, 0.0, 1.0],
        },
        source="test rig",
    )


def numpy_decoder(cal: RigCalibration) -> Evt3Decoder:
    return Evt3Decoder(width=cal.event_camera.width, height=cal.event_camera.height)


def split_at(data: bytes, cuts) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def odd_cuts(size: int, seed: int, mean: int = 3001) -> list[int]:
    """Random cut points with many odd packet sizes (a byte of a word left dangling)."""
    rng = np.random.default_rng(seed)
    steps = rng.integers(1, 2 * mean, size=size // mean + 2) | 1
    return [int(c) for c in np.cumsum(steps) if c < size]


def decode_all(decoder, packets) -> tuple[np.ndarray, np.ndarray]:
    parts = [decoder.decode(p) for p in packets]
    events = np.concatenate([p.events for p in parts]) if parts else np.empty(0, EVENT_DTYPE)
    triggers = np.concatenate([p.triggers for p in parts]) if parts else np.empty(0, TRIGGER_DTYPE)
    return events, triggers


def assert_same_decoding(packets, cal: RigCalibration, device: str) -> tuple[np.ndarray, ...]:
    """Decode packets with both decoders; everything they report must be identical."""
    reference = numpy_decoder(cal)
    expected = decode_all(reference, packets)
    acc = TorchEvt3Accumulator(cal, device=device)
    got = decode_all(acc, packets)
    assert got[0].dtype == EVENT_DTYPE and got[1].dtype == TRIGGER_DTYPE
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert acc.counters == reference.counters
    assert acc.current_time_us == reference.current_time_us
    assert acc.buffered_bytes == reference.buffered_bytes
    return expected


def window_events(events: np.ndarray, t0: int, t1: int) -> np.ndarray:
    return events[(events["t"] >= t0) & (events["t"] < t1)]


def assert_same_frame(packets, cal: RigCalibration, device: str, t0: int, t1: int) -> None:
    """Accumulate packets into one frame; it must equal the numpy builder's, bit for bit."""
    reference = numpy_decoder(cal)
    events, _ = decode_all(reference, packets)
    builder = EventFrameBuilder(cal)
    expected = torch.from_numpy(builder.build(window_events(events, t0, t1), t0, t1))
    acc = TorchEvt3Accumulator(cal, device=device)
    frame = acc.new_frame()
    for packet in packets:
        out = acc.accumulate(packet, t0, t1, frame)
        assert out is frame
    assert frame.device.type == device and frame.dtype == torch.float32
    assert torch.equal(frame.cpu(), expected), (
        f"window [{t0}, {t1}): {int((frame.cpu() != expected).sum())} cells differ"
    )
    assert acc.unmapped_events == builder.unmapped_events
    assert acc.counters == reference.counters  # the whole stream is decoded, not just the window


def sample_payload() -> bytes:
    _, payload = read_raw_file(SAMPLE_RAW)
    return bytes(payload)


def bag_packets() -> list[bytes]:
    from evseg_ros.events.bag import read_event_packets

    return [bytes(msg.events) for _, _, msg in read_event_packets(TRIGGER_BAG)]


# ========================================================================= device choice


def test_auto_device_follows_cuda_availability():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert TorchEvt3Accumulator(evk4_rig()).device.type == expected
    assert TorchEvt3Accumulator(evk4_rig(), device="cpu").device == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "CUDA"])
def test_cuda_without_a_gpu_is_a_clear_error(device):
    with pytest.raises(RuntimeError, match=r"CUDA is not available.*device='cpu' or 'auto'"):
        TorchEvt3Accumulator(evk4_rig(), device=device)


@pytest.mark.parametrize("device", ["gpu", "tpu", "", "mps"])
def test_unknown_device_is_rejected(device):
    with pytest.raises(ValueError, match="device must be"):
        resolve_device(device)
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@needs_cuda
def test_cuda_results_stay_on_the_gpu_and_accept_gpu_input():
    cal = evk4_rig()
    rng = np.random.default_rng(3)
    events = random_events(rng, 5000, width=1300, height=740)
    data = encode_evt3(events)
    acc = TorchEvt3Accumulator(cal, device="cuda")
    t0, t1 = int(events["t"][100]), int(events["t"][-100])
    frame = acc.accumulate(torch.frombuffer(bytearray(data), dtype=torch.uint8).cuda(), t0, t1)
    assert frame.is_cuda
    expected = EventFrameBuilder(cal).build(
        window_events(numpy_decoder(cal).decode(data).events, t0, t1), t0, t1
    )
    assert torch.equal(frame.cpu(), torch.from_numpy(expected))


# ====================================================================== real recordings


@needs_sample
@pytest.mark.parametrize("device", DEVICES)
def test_sample_file_decodes_identically_whole_and_in_odd_packets(device):
    data = sample_payload()
    cal = evk4_rig()
    events, _ = assert_same_decoding([data], cal, device)
    assert len(events) == 219_596
    assert_same_decoding(split_at(data, odd_cuts(len(data), seed=1, mean=40_001)), cal, device)
    # tiny packets (1 to 6 bytes) over a prefix: state carried across nearly every word
    prefix = data[:3001]
    assert_same_decoding(split_at(prefix, odd_cuts(len(prefix), seed=2, mean=3)), cal, device)


@needs_sample
@pytest.mark.parametrize("device", DEVICES)
def test_sample_file_as_one_list_and_as_other_buffer_types(device):
    data = sample_payload()[:100_001]
    cal = evk4_rig()
    expected = numpy_decoder(cal).decode(data)
    pieces = split_at(data, [1, 2, 7, 50_000, 50_001])
    for value in (
        pieces,
        tuple(pieces),
        bytearray(data),
        memoryview(data),
        array.array("B", data),
        np.frombuffer(data, dtype=np.uint8),
        torch.frombuffer(bytearray(data), dtype=torch.uint8).to(device),
        [
            np.frombuffer(pieces[0], np.uint8),
            torch.tensor(list(pieces[1]), dtype=torch.uint8),
            *pieces[2:],
        ],
    ):
        got = TorchEvt3Accumulator(cal, device=device).decode(value)
        np.testing.assert_array_equal(got.events, expected.events)
    words = np.frombuffer(data[:-1], dtype="<u2")
    got = TorchEvt3Accumulator(cal, device=device).decode(words)
    np.testing.assert_array_equal(got.events, numpy_decoder(cal).decode(words).events)


@needs_bag
@pytest.mark.parametrize("device", DEVICES)
def test_trigger_bag_decodes_identically_per_message_and_in_odd_packets(device):
    packets = bag_packets()
    cal = evk4_rig()
    events, triggers = assert_same_decoding(packets, cal, device)
    assert len(events) == 82_469
    assert triggers["value"].tolist() == [0, 1] and triggers["channel"].tolist() == [0, 0]
    data = b"".join(packets)
    assert_same_decoding(split_at(data, odd_cuts(len(data), seed=3, mean=20_001)), cal, device)


@needs_bag
@pytest.mark.parametrize("device", DEVICES)
def test_trigger_bag_frames_are_bit_identical(device):
    packets = bag_packets()
    cal = evk4_rig()
    events, triggers = decode_all(numpy_decoder(cal), packets)
    first, last = int(events["t"][0]), int(events["t"][-1])
    windows = [(int(t) - 25_000, int(t) + 5_000) for t in triggers["t"]]  # frame windows
    windows += [
        (first, last + 1),  # everything, the longest span
        (first + 123_457, first + 123_457 + 7_777),
        (first + 1_000, first + 1_001),  # a 1 us window
        (last + 1, last + 30_001),  # after the last event: an empty frame
        (first + 500, first + 500),  # empty window (span clamped to 1 as in the builder)
    ]
    for t0, t1 in windows:
        assert_same_frame(packets, cal, device, t0, t1)
    # the whole bag as one list of packets gives the same frame as packet by packet
    t0, t1 = windows[0]
    builder = EventFrameBuilder(cal)
    expected = builder.build(window_events(events, t0, t1), t0, t1)
    frame = TorchEvt3Accumulator(cal, device=device).accumulate(packets, t0, t1)
    assert torch.equal(frame.cpu(), torch.from_numpy(expected))


# ==================================================================== random streams


def random_events(
    rng: np.random.Generator, n: int, *, width: int, height: int, start: int = 0
) -> np.ndarray:
    """Bursts of events sharing a time and row (which the encoder turns into vectors),
    with time gaps from 0 to several 24-bit clock periods."""
    out = np.zeros(n, dtype=EVENT_DTYPE)
    if n == 0:
        return out
    burst = rng.integers(1, 30, size=n)
    starts = np.flatnonzero(np.cumsum(burst) % 7 == 0)
    new_burst = np.zeros(n, dtype=bool)
    new_burst[starts[starts < n]] = True
    new_burst[0] = True
    gaps = rng.choice([0, 1, 3, 4095, 4096, 70_000, 9_000_000, 20_000_000], size=n)
    t = start + np.cumsum(np.where(new_burst, gaps, 0))
    burst_id = np.cumsum(new_burst) - 1
    y = rng.integers(0, min(height, 2048), size=burst_id[-1] + 1)[burst_id]
    p = rng.integers(0, 2, size=burst_id[-1] + 1)[burst_id]
    base = rng.integers(0, max(1, min(width, 2048) - 40), size=burst_id[-1] + 1)[burst_id]
    x = np.minimum(base + rng.integers(0, 40, size=n), 2047)
    out["t"], out["y"], out["p"], out["x"] = t, y, p, x
    # within a burst, strictly increasing x lets the encoder use VECT_12 words
    order = np.lexsort((out["x"], burst_id))
    out = out[order]
    keep = np.ones(n, dtype=bool)
    same = burst_id[order][1:] == burst_id[order][:-1]
    keep[1:] = ~(same & (out["x"][1:] == out["x"][:-1]))
    return out[keep]


def random_triggers(rng: np.random.Generator, events: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=TRIGGER_DTYPE)
    if n and events.size:
        out["t"] = np.sort(rng.integers(int(events["t"][0]), int(events["t"][-1]) + 1, size=n))
        out["channel"] = rng.integers(0, 16, size=n)
        out["value"] = rng.integers(0, 2, size=n)
    return out


def encoded_stream(seed: int, n_events: int, n_triggers: int, *, width: int, height: int):
    rng = np.random.default_rng(seed)
    start = int(rng.choice([0, EVT3_TIME_PERIOD_US - 50_000, 3 * EVT3_TIME_PERIOD_US + 7]))
    events = random_events(rng, n_events, width=width, height=height, start=start)
    triggers = random_triggers(rng, events, n_triggers)
    return events, triggers, encode_evt3(events, triggers), rng


@pytest.mark.parametrize("device", DEVICES)
@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    n_events=st.integers(0, 400),
    n_triggers=st.integers(0, 5),
)
def test_encoder_round_trips_identically_across_wraps(device, seed, n_events, n_triggers):
    cal = evk4_rig()
    events, triggers, data, rng = encoded_stream(seed, n_events, n_triggers, width=1400, height=800)
    cuts = rng.integers(0, len(data) + 1, size=int(rng.integers(0, 8))).tolist()
    got_events, got_triggers = assert_same_decoding(split_at(data, cuts), cal, device)
    on_sensor = (events["x"] < 1280) & (events["y"] < 720)
    np.testing.assert_array_equal(got_events, events[on_sensor])
    np.testing.assert_array_equal(got_triggers, triggers)


@pytest.mark.parametrize("device", DEVICES)
def test_long_stream_in_encoder_chunks_crosses_several_wraps(device):
    """Chunks encoded with carried encoder state, times up to ~4 clock periods."""
    cal = evk4_rig()
    rng = np.random.default_rng(11)
    state = Evt3EncoderState()
    chunks, expected = [], []
    start = EVT3_TIME_PERIOD_US - 1_000
    for _ in range(6):
        events = random_events(rng, 3000, width=1280, height=720, start=start)
        chunks.append(encode_evt3(events, random_triggers(rng, events, 3), state=state))
        expected.append(events)
        start = state.time_us + int(rng.integers(0, 12_000_000))
    data = b"".join(chunks)
    events, _ = assert_same_decoding(split_at(data, odd_cuts(len(data), seed=5)), cal, device)
    np.testing.assert_array_equal(events, np.concatenate(expected))
    assert events["t"][-1] > 3 * EVT3_TIME_PERIOD_US
    acc = TorchEvt3Accumulator(cal, device=device)
    acc.decode(data)
    assert acc.counters.time_wraps >= 3


@pytest.mark.parametrize("device", DEVICES)
@FAST
@given(seed=st.integers(0, 2**32 - 1), n_events=st.integers(0, 600))
def test_random_stream_frames_are_bit_identical(sim_calibration, device, seed, n_events):
    # events up to x = 479, y = 269 on a 400x225 sensor: some are dropped as off-sensor, and
    # the sensor's edge rows fall outside the 320x240 frame (unmapped)
    events, _, data, rng = encoded_stream(seed, n_events, 2, width=480, height=270)
    packets = split_at(data, rng.integers(0, len(data) + 1, size=4).tolist())
    if events.size:
        lo, hi = int(events["t"][0]), int(events["t"][-1])
        t0 = int(rng.integers(lo - 10, hi + 1))
        t1 = t0 + int(rng.choice([1, 2, 4096, 30_000, 10_000_000, 40_000_000, 1 << 40]))
    else:
        t0, t1 = 0, 30_000
    assert_same_frame(packets, sim_calibration, device, t0, t1)


word_types = st.sampled_from(
    [0x0, 0x0, 0x2, 0x2, 0x2, 0x3, 0x4, 0x4, 0x5, 0x6, 0x6, 0x8, 0x8, 0x8, 0xA, 0xE, 0xF, 0x7]
    + [0x1, 0x9, 0xB, 0xC, 0xD]
)
garbage_words = st.lists(
    st.tuples(word_types, st.integers(0, 0xFFF)).map(lambda tp: tp[0] << 12 | tp[1]),
    max_size=400,
)


@pytest.mark.parametrize("device", DEVICES)
@FAST
@given(words=garbage_words, cuts=st.lists(st.integers(0, 800), max_size=6))
def test_garbage_word_streams_match_the_numpy_decoder(sim_calibration, device, words, cuts):
    """Every word type in any order: vectors without a base, wraps, clock glitches, triggers."""
    data = np.asarray(words, dtype="<u2").tobytes()
    cuts = [c for c in cuts if c <= len(data)]
    assert_same_decoding(split_at(data, cuts), sim_calibration, device)
    assert_same_frame(split_at(data, cuts), sim_calibration, device, 0, 1 << 26)


@pytest.mark.parametrize("device", DEVICES)
@FAST
@given(data=st.binary(max_size=1500), cut=st.integers(0, 1500))
def test_random_bytes_never_crash(sim_calibration, device, data, cut):
    packets = split_at(data, [min(cut, len(data))])
    assert_same_decoding(packets, sim_calibration, device)
    acc = TorchEvt3Accumulator(sim_calibration, device=device)
    for packet in packets:
        frame = acc.accumulate(packet, 0, 1 << 30)
        assert frame.shape == (3, 240, 320) and bool(torch.isfinite(frame).all())


@pytest.mark.parametrize("device", DEVICES)
def test_long_runs_of_vector_words_without_a_base(sim_calibration, device):
    """The vector base grows past any sensor (and int32) without a VECT_BASE_X to reset it."""
    words = [0x3000 | 5] + [0x4FFF] * 3000 + [0x5FFF] * 3000 + [0x3800 | 7, 0x4FFF]
    data = np.asarray(words, dtype="<u2").tobytes()
    expected = assert_same_decoding([data] * 50, sim_calibration, device)
    assert len(expected[0]) > 0


# ======================================================================== API behaviour


@pytest.mark.parametrize("device", DEVICES)
def test_reset_forgets_state_and_counters(device):
    cal = evk4_rig()
    events, triggers, data, _ = encoded_stream(7, 300, 3, width=1280, height=720)
    acc = TorchEvt3Accumulator(cal, device=device)
    first = acc.decode(data + b"\x01")
    assert acc.buffered_bytes == 1
    acc.reset()
    assert acc.buffered_bytes == 0 and acc.counters.words == 0 and acc.current_time_us == 0
    second = acc.decode(data)
    np.testing.assert_array_equal(first.events, second.events)
    np.testing.assert_array_equal(second.events, events)
    np.testing.assert_array_equal(second.triggers, triggers)


@pytest.mark.parametrize("device", DEVICES)
def test_empty_and_single_byte_input(device):
    acc = TorchEvt3Accumulator(evk4_rig(), device=device)
    assert acc.decode(b"").events.size == 0
    assert acc.decode(b"\x05").events.size == 0
    assert acc.buffered_bytes == 1
    frame = acc.accumulate(b"", 0, 10)
    assert not frame.any()
    # the held byte is the low byte of the next word: 0x05 | 0x20 << 8 is EVT_ADDR_X x = 5
    got = acc.decode(b"\x20")
    assert got.events[["x", "y", "p", "t"]].tolist() == [(5, 0, 0, 0)]


def test_bad_arguments_raise_the_codec_error(sim_calibration):
    acc = TorchEvt3Accumulator(sim_calibration, device="cpu")
    with pytest.raises(EventDecodeError, match="uint8"):
        acc.decode(torch.zeros(4, dtype=torch.int16))
    with pytest.raises(EventDecodeError):
        acc.decode("not bytes")
    with pytest.raises(EventDecodeError, match="t_start_us"):
        acc.accumulate(b"", 0.5, 10)
    with pytest.raises(EventDecodeError, match="frame must be"):
        acc.accumulate(b"", 0, 10, torch.zeros(3, 10, 10))
    with pytest.raises(ValueError, match="2048x2048"):
        big = sim_calibration.to_dict()
        big["event_camera"]["width"] = 4096
        TorchEvt3Accumulator(calibration_from_dict(big), device="cpu")
