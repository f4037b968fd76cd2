"""Compiled EVT3 decoder and fused frame accumulation against the numpy reference.

The numpy :class:`Evt3Decoder` and :class:`EventFrameBuilder` define the semantics; everything
here checks bit-identical events, triggers, counters and frames. The recordings live in
``<repo>/../shared/data`` (not part of the repository); tests that need them skip with the
reason when that folder is absent, and the whole module skips when numba is not installed.
"""

from __future__ import annotations

import array
import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evseg_ros.events import evt3_fast
from evseg_ros.events.errors import EventDecodeError
from evseg_ros.events.event_frame import EventFrameBuilder, build_pixel_lut
from evseg_ros.events.evt3 import Evt3Decoder, Evt3EncoderState, encode_evt3, read_raw_file
from evseg_ros.events.types import EVENT_DTYPE, EVT3_TIME_PERIOD_US, TRIGGER_DTYPE
from evseg_ros.geometry import CameraModel, RigCalibration

pytestmark = pytest.mark.skipif(
    not evt3_fast.available(), reason=f"compiled EVT3 path off: {evt3_fast.UNAVAILABLE_REASON}"
)

FastEvt3Decoder = evt3_fast.FastEvt3Decoder
decode_and_accumulate = evt3_fast.decode_and_accumulate

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
SAMPLE_RAW = SHARED_DATA / "expelliarmus" / "evt3_sample.raw"
TRIGGER_BAG = SHARED_DATA / "event_camera_codecs" / "test_data_evt3_trigger"

needs_sample = pytest.mark.skipif(
    not SAMPLE_RAW.is_file(), reason=f"recorded EVT3 sample not available ({SAMPLE_RAW})"
)
needs_bag = pytest.mark.skipif(
    not TRIGGER_BAG.is_dir(), reason=f"EVT3 trigger rosbag not available ({TRIGGER_BAG})"
)

FEW = settings(max_examples=40, deadline=None)


# ========================================================================= shared checks


def assert_same_decoders(fast: FastEvt3Decoder, ref: Evt3Decoder) -> None:
    """Counters and carried state agree (the state shows in the clock and the buffer)."""
    assert fast.counters == ref.counters
    assert fast.current_time_us == ref.current_time_us
    assert fast.buffered_bytes == ref.buffered_bytes


def assert_same_output(got, want) -> None:
    """Events and triggers equal, dtype included."""
    assert got.events.dtype == EVENT_DTYPE and got.triggers.dtype == TRIGGER_DTYPE
    np.testing.assert_array_equal(got.events, want.events)
    np.testing.assert_array_equal(got.triggers, want.triggers)


def decode_chunks(decoder, data: bytes, size: int):
    """Decode ``data`` in pieces of ``size`` bytes; return events and triggers joined."""
    parts = [decoder.decode(data[i : i + size]) for i in range(0, len(data), size)]
    parts.append(decoder.decode(b""))
    return (
        np.concatenate([p.events for p in parts]),
        np.concatenate([p.triggers for p in parts]),
    )


def camera(width: int, height: int) -> CameraModel:
    return CameraModel(width, height, np.eye(3), np.zeros(5))


def rig(event_size, frame_size, homography) -> RigCalibration:
    """A calibration with the given grids and event-to-frame homography."""
    return RigCalibration(
        event_camera=camera(*event_size),
        frame_camera=camera(*frame_size),
        event_to_frame=np.asarray(homography, dtype=np.float64),
        output_width=frame_size[0],
        output_height=frame_size[1],
    )


def reference_frame(builder: EventFrameBuilder, events: np.ndarray, t0: int, t1: int):
    """What the numpy path gives: cut the window, then build."""
    inside = events[(events["t"] >= t0) & (events["t"] < t1)]
    before = builder.unmapped_events
    frame = builder.build(inside, t0, t1)
    return frame, len(inside), builder.unmapped_events - before


def fused_frame(packets, accumulator, t0: int, t1: int, *, width=1280, height=720):
    """Fused path over every packet with a fresh decoder; frame, figures and decoder."""
    decoder = FastEvt3Decoder(width=width, height=height)
    frame = accumulator.new_frame()
    results = [accumulator.accumulate(decoder, p, frame, t0, t1) for p in packets]
    return frame, results, decoder


@pytest.fixture(scope="module")
def bag_packets() -> list[np.ndarray]:
    if not TRIGGER_BAG.is_dir():
        pytest.skip(f"EVT3 trigger rosbag not available ({TRIGGER_BAG})")
    from evseg_ros.events.bag import read_event_packets

    return [np.asarray(msg.events, dtype=np.uint8) for _, _, msg in read_event_packets(TRIGGER_BAG)]


@pytest.fixture(scope="module")
def bag_events(bag_packets) -> np.ndarray:
    decoder = Evt3Decoder(width=1280, height=720)
    return np.concatenate([decoder.decode(p).events for p in bag_packets])


# ========================================================================= real recordings


@needs_sample
def test_sample_file_identical_to_numpy_decoder():
    _, payload = read_raw_file(SAMPLE_RAW)
    ref = Evt3Decoder(width=1280, height=720)
    want = ref.decode(payload)
    fast = FastEvt3Decoder(width=1280, height=720)
    got = fast.decode(payload)
    assert len(got.events) == 219_596
    assert_same_output(got, want)
    assert_same_decoders(fast, ref)


@needs_sample
@pytest.mark.parametrize("size", [7, 333, 4_095, 65_537])
def test_sample_file_chunked_at_odd_sizes(size):
    _, payload = read_raw_file(SAMPLE_RAW)
    data = bytes(payload)
    ref = Evt3Decoder()
    want = ref.decode(data)
    fast = FastEvt3Decoder()
    events, triggers = decode_chunks(fast, data, size)
    np.testing.assert_array_equal(events, want.events)
    np.testing.assert_array_equal(triggers, want.triggers)
    assert_same_decoders(fast, ref)


@needs_bag
def test_trigger_bag_packet_by_packet(bag_packets):
    ref = Evt3Decoder(width=1280, height=720)
    fast = FastEvt3Decoder(width=1280, height=720)
    for packet in bag_packets:
        assert_same_output(fast.decode(packet), ref.decode(packet))
        assert_same_decoders(fast, ref)
    c = fast.counters
    assert (c.cd_events, c.triggers) == (82_469, 2)
    assert (c.other_words, c.continued_words, c.continued4_words) == (15_688, 25_024, 12_512)


@needs_bag
@pytest.mark.parametrize("size", [1, 5, 999, 12_289])
def test_trigger_bag_rechunked(bag_packets, size):
    data = np.concatenate(bag_packets).tobytes()
    if size == 1:
        data = data[:20_001]  # byte by byte is slow in Python; the start has every word kind
    ref = Evt3Decoder()
    want = ref.decode(data)
    fast = FastEvt3Decoder()
    events, triggers = decode_chunks(fast, data, size)
    np.testing.assert_array_equal(events, want.events)
    np.testing.assert_array_equal(triggers, want.triggers)
    assert_same_decoders(fast, ref)


@needs_bag
def test_trigger_bag_decode_until(bag_packets, bag_events):
    """Windows cut with decode_until agree with numpy, held-back words included."""
    ref, fast = Evt3Decoder(), FastEvt3Decoder()
    t_first, t_last = int(bag_events["t"][0]), int(bag_events["t"][-1])
    limits = iter(range(t_first + 20_000, t_last + 40_000, 37_000))
    limit = next(limits)
    for packet in bag_packets:
        data = packet
        while True:
            want = ref.decode_until(data, limit)
            got = fast.decode_until(data, limit)
            assert_same_output(got[0], want[0])
            assert got[1:] == want[1:]
            assert_same_decoders(fast, ref)
            if not got[1]:
                break
            limit = next(limits)
            data = b""


# ================================================================== synthetic streams


def word_bytes(words) -> bytes:
    return np.asarray(words, dtype="<u2").tobytes()


# Every 4-bit word type, the state and event types more often.
word_types = st.sampled_from(
    [0x0, 0x0, 0x2, 0x2, 0x2, 0x3, 0x4, 0x4, 0x5, 0x6, 0x6, 0x8, 0x8, 0xA, 0xE, 0xF, 0x7]
    + [0x1, 0x9, 0xB, 0xC, 0xD]
)
words_strategy = st.lists(
    st.tuples(word_types, st.integers(0, 0xFFF)).map(lambda tp: tp[0] << 12 | tp[1]),
    max_size=400,
)


@FEW
@given(
    words=words_strategy,
    cuts=st.lists(st.integers(0, 800), max_size=8),
    width=st.integers(1, 2048),
    height=st.integers(1, 2048),
)
def test_random_word_streams_identical(words, cuts, width, height):
    data = word_bytes(words)
    bounds = [0, *sorted(c for c in cuts if c <= len(data)), len(data)]
    ref = Evt3Decoder(width=width, height=height)
    fast = FastEvt3Decoder(width=width, height=height)
    for a, b in itertools.pairwise(bounds):
        assert_same_output(fast.decode(data[a:b]), ref.decode(data[a:b]))
        assert_same_decoders(fast, ref)


@settings(max_examples=80, deadline=None)
@given(data=st.binary(max_size=3000), cut=st.integers(0, 3000))
def test_random_bytes_counters_identical(data, cut):
    ref = Evt3Decoder(width=640, height=480)
    fast = FastEvt3Decoder(width=640, height=480)
    for part in (data[:cut], data[cut:]):
        assert_same_output(fast.decode(part), ref.decode(part))
        assert_same_decoders(fast, ref)
    c = fast.counters
    assert c.words == len(data) // 2 == c.categorised_words()


event_rows = st.lists(
    st.tuples(
        st.one_of(st.integers(0, 40), st.integers(0, 2047)),  # x, often close together
        st.integers(0, 2047),  # y
        st.integers(0, 1),  # p
        st.integers(0, 3 * (1 << 22)),  # time step to the previous event
    ),
    max_size=120,
)
trigger_rows = st.lists(
    st.tuples(st.integers(0, 1 << 26), st.integers(0, 15), st.integers(0, 1)), max_size=6
)


@FEW
@given(
    rows=event_rows,
    trig=trigger_rows,
    chunks=st.lists(st.integers(0, 120), max_size=4),
    cut_every=st.integers(1, 64),
)
def test_encoder_round_trip(rows, trig, chunks, cut_every):
    ev = np.zeros(len(rows), dtype=EVENT_DTYPE)
    if rows:
        x, y, p, dt = (np.array(col) for col in zip(*rows, strict=True))
        dt[dt % 3 == 0] = 0  # many equal times, so runs and vectors happen
        ev["x"], ev["y"], ev["p"], ev["t"] = x, y // 512, p, np.cumsum(dt)
    tr = np.array(sorted(trig), dtype=TRIGGER_DTYPE)
    tr["t"] += int(ev["t"][-1]) if len(ev) else 0  # after the events: all go in the last part
    state = Evt3EncoderState()
    parts = np.split(ev, sorted(c for c in chunks if c <= len(ev)))
    data = b"".join(
        encode_evt3(part, tr if k == len(parts) - 1 else None, state=state)
        for k, part in enumerate(parts)
    )
    ref = Evt3Decoder(width=2048, height=2048)
    want = ref.decode(data)
    np.testing.assert_array_equal(want.events, ev)  # the reference inverts the encoder
    fast = FastEvt3Decoder(width=2048, height=2048)
    events, triggers = decode_chunks(fast, data, 2 * cut_every + 1)  # odd: words split too
    np.testing.assert_array_equal(events, want.events)
    np.testing.assert_array_equal(triggers, want.triggers)
    assert_same_decoders(fast, ref)


def test_hand_made_stream_hits_every_branch():
    words = [
        0x0000 | 5,  # y = 5
        0x2800 | 7,  # ON event before any time word: t = 0
        0x8000 | 0xFFE,  # high = 0xFFE
        0x6000 | 0x010,
        0x3000 | 1270,  # vector base near the edge of a 1280 sensor, OFF
        0x4000 | 0xFFF,  # x = 1270..1281: the last two are out of bounds
        0x5000 | 0xF01,  # VECT_8 reads bits 7..0 only: x = 1282, out of bounds
        0x8000 | (0xFFE - 2048),  # a drop of exactly half the range: no wrap
        0x6000 | 0x010,  # ... so the time steps back: counted
        0x8000 | 0xFFF,
        0x8000 | (0xFFF - 2049),  # one more: a wrap
        0x6000 | 0x001,
        0x0000 | 0x800 | 9,  # bit 11 (system type) is ignored
        0x2000 | 1,
        0x0000 | 719,
        0x3800 | 0,
        0x4000 | 0x00F,
        0x0000 | 720,  # row out of bounds: vectors and single events are dropped
        0x4000 | 0x0F0,
        0x2000 | 3,
        0xA000 | 0x300 | 1,
        *[0xE019, 0xF123, 0x7001, 0x1000, 0x9ABC, 0xB000, 0xC000, 0xD000],
    ]
    data = word_bytes(words)
    ref, fast = Evt3Decoder(), FastEvt3Decoder()
    got = fast.decode(data)
    assert_same_output(got, ref.decode(data))
    assert_same_decoders(fast, ref)
    c = fast.counters
    assert (c.time_wraps, c.time_backwards, c.out_of_bounds) == (1, 1, 8)
    assert (c.other_words, c.continued_words, c.continued4_words, c.unknown_words) == (1, 1, 1, 5)
    assert got.events["x"].tolist()[:2] == [7, 1270] and got.events["t"][0] == 0
    # Word by word: every piece of state carried across calls.
    fast = FastEvt3Decoder()
    events, triggers = decode_chunks(fast, data, 1)
    np.testing.assert_array_equal(events, got.events)
    np.testing.assert_array_equal(triggers, got.triggers)
    assert_same_decoders(fast, ref)


def test_outputs_grow_past_the_first_guess():
    """Full 12-bit vectors carry 12 events per word, far above the 1.5 per word guess."""
    words = [0x8001, 0x6002, 0x0005, 0x3000]
    words += [0x4FFF] * 150 + [0xA101, 0xA000] * 40 + [0x3800] + [0x50FF] * 100
    data = word_bytes(words)
    ref, fast = Evt3Decoder(width=2048), FastEvt3Decoder(width=2048)
    got = fast.decode(data)
    assert_same_output(got, ref.decode(data))
    assert_same_decoders(fast, ref)
    assert len(got.events) == 150 * 12 + 100 * 8 and len(got.triggers) == 80


def test_clock_wraps_and_triggers_round_trip():
    rng = np.random.default_rng(3)
    span = 3 * EVT3_TIME_PERIOD_US + 777
    ev = np.zeros(30_000, dtype=EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(0, span, ev.size))
    ev["x"] = rng.integers(0, 1280, ev.size)
    ev["y"] = rng.integers(0, 720, ev.size)
    ev["p"] = rng.integers(0, 2, ev.size)
    tr = np.zeros(40, dtype=TRIGGER_DTYPE)
    tr["t"] = np.sort(rng.integers(0, span, tr.size))
    tr["channel"] = rng.integers(0, 16, tr.size)
    tr["value"] = rng.integers(0, 2, tr.size)
    fast = FastEvt3Decoder()
    got = fast.decode(encode_evt3(ev, tr))
    np.testing.assert_array_equal(got.events, ev)
    np.testing.assert_array_equal(got.triggers, tr)
    assert fast.counters.time_wraps == max(int(ev["t"][-1]), int(tr["t"][-1])) >> 24 >= 2


# ========================================================================= API and inputs


def test_buffer_types_dangling_byte_and_reset():
    rng = np.random.default_rng(5)
    ev = np.zeros(300, dtype=EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(0, 50_000, ev.size))
    ev["x"] = rng.integers(0, 1280, ev.size)
    ev["y"] = rng.integers(0, 720, ev.size)
    data = encode_evt3(ev)
    for form in (
        data,
        bytearray(data),
        array.array("B", data),  # rclpy's type for EventPacket.events
        memoryview(data),
        np.frombuffer(data, dtype=np.uint8),
        np.frombuffer(data, dtype="<u2"),
        np.frombuffer(data, dtype="<u2").astype(">u2"),
        np.frombuffer(data, dtype="<u2").copy(),  # writable words
        np.frombuffer(b"\x00" + data, dtype=np.uint8)[1:],  # unaligned words
    ):
        np.testing.assert_array_equal(FastEvt3Decoder().decode(form).events, ev)
    fast = FastEvt3Decoder()
    assert len(fast.decode(data[:1]).events) == 0
    assert fast.buffered_bytes == 1 and fast.counters.words == 0
    np.testing.assert_array_equal(fast.decode(data[1:]).events, ev)
    fast.reset()
    assert fast.counters == Evt3Decoder().counters
    assert fast.buffered_bytes == 0 and fast.current_time_us == 0


@pytest.mark.parametrize("bad", ["abc", 12, [1, 2], np.zeros(4, dtype=np.float32)])
def test_rejects_what_the_numpy_decoder_rejects(bad):
    with pytest.raises(EventDecodeError):
        FastEvt3Decoder().decode(bad)
    with pytest.raises(EventDecodeError, match="'soon'"):
        FastEvt3Decoder().decode_until(b"", "soon")  # type: ignore[arg-type]


@pytest.mark.parametrize("geometry", [{"width": 0}, {"height": "720"}, {"width": True}])
def test_rejects_bad_geometry(geometry):
    with pytest.raises(EventDecodeError, match=repr(next(iter(geometry.values())))):
        FastEvt3Decoder(**geometry)


def test_fused_rejects_bad_frames_and_tables():
    decoder = FastEvt3Decoder()
    with pytest.raises(TypeError, match="FastEvt3Decoder"):
        decode_and_accumulate(Evt3Decoder(), b"", np.zeros((3, 2, 2), np.float32), 0, 1)
    bad_frames = [np.zeros((3, 2, 2)), np.zeros((2, 2, 2), np.float32)]
    bad_frames += [np.zeros((3, 0, 2), np.float32), np.zeros((3, 4, 4), np.float32)[:, ::2]]
    for frame in bad_frames:
        with pytest.raises(TypeError, match="frame"):
            decode_and_accumulate(decoder, b"", frame, 0, 1)
    frame = np.zeros((3, 2, 2), np.float32)
    with pytest.raises(TypeError, match="lut"):
        decode_and_accumulate(decoder, b"", frame, 0, 1, lut=np.zeros(4), lut_width=2)
    with pytest.raises(TypeError, match="lut_width"):
        decode_and_accumulate(decoder, b"", frame, 0, 1, lut=np.zeros(4, np.int32))
    for lut in (np.zeros(5, np.int32), np.zeros(0, np.int32)):
        with pytest.raises(ValueError, match="whole number"):
            decode_and_accumulate(decoder, b"", frame, 0, 1, lut=lut, lut_width=2)


def test_bad_table_entries_count_as_unmapped():
    """A table pointing outside the frame cannot make the kernel write out of bounds."""
    words = word_bytes([0x8000, 0x6005, 0x0001, 0x2000, 0x2001, 0x2002, 0x2003])
    lut = np.array([0, 1, 2, 3, 4, 5, -1, 999], dtype=np.int64)  # frame has 4 pixels
    frame = np.zeros((3, 2, 2), np.float32)
    decoder = FastEvt3Decoder()
    res = decode_and_accumulate(decoder, words, frame, 0, 10, lut=lut, lut_width=4)
    assert (res.accumulated, res.unmapped, res.outside_window) == (0, 4, 0)
    assert not frame.any()
    assert decoder.counters.cd_events == 4


# ======================================================================= fused accumulation


@needs_bag
@pytest.mark.parametrize(
    ("event_size", "frame_size", "homography"),
    [
        ((1280, 720), (1280, 720), np.eye(3)),  # identity: no table reads
        ((1280, 720), (640, 480), [[0.5, 0, 0.2], [0.02, 0.55, 30], [0, 0, 1]]),  # full table
        ((400, 225), (320, 240), [[0.8, 0, -0.1], [0, 0.8, 29.9], [0, 0, 1]]),  # sim rig
    ],
)
def test_fused_frames_equal_builder_on_trigger_bag(
    bag_packets, bag_events, event_size, frame_size, homography
):
    calibration = rig(event_size, frame_size, homography)
    builder = EventFrameBuilder(calibration)
    accumulator = evt3_fast.FastFrameAccumulator(calibration)
    assert (accumulator.lut is None) == (event_size == frame_size)
    t = bag_events["t"]
    t0, t_end = int(t[0]), int(t[-1])
    windows = [
        (t0, t_end + 1),  # everything
        (t0 + 100_000, t0 + 130_000),  # a typical 30 ms window
        (t0 + 400_001, t0 + 400_002),  # 1 us: clipping at both ends of the time channel
        (t_end + 10, t_end + 20),  # empty
    ]
    for w0, w1 in windows:
        want, n_in, n_unmapped = reference_frame(builder, bag_events, w0, w1)
        got, results, decoder = fused_frame(bag_packets, accumulator, w0, w1)
        np.testing.assert_array_equal(got, want)
        assert sum(r.accumulated for r in results) == n_in - n_unmapped
        assert sum(r.unmapped for r in results) == n_unmapped
        assert sum(r.outside_window for r in results) == len(bag_events) - n_in
        assert [tr for r in results for tr in r.triggers.tolist()] == [
            (14_547_491, 0, 0),
            (14_549_491, 0, 1),
        ]
        assert decoder.counters.cd_events == len(bag_events)  # as if decoded


@needs_sample
@pytest.mark.parametrize(
    ("frame_size", "homography"),
    [((1280, 720), np.eye(3)), ((960, 540), [[0.75, 0.01, 3], [0, 0.75, -2], [0, 0, 1]])],
)
def test_fused_frames_equal_builder_on_sample_file(frame_size, homography):
    """The sample is dense and rich in vector words, which the bag has none of."""
    _, payload = read_raw_file(SAMPLE_RAW)
    data = bytes(payload)
    events = Evt3Decoder().decode(data).events
    calibration = rig((1280, 720), frame_size, homography)
    builder = EventFrameBuilder(calibration)
    accumulator = evt3_fast.FastFrameAccumulator(calibration)
    t = events["t"]
    for w0, w1 in [(int(t[0]), int(t[-1]) + 1), (int(t[0]) + 2_000, int(t[0]) + 5_000)]:
        want, n_in, n_unmapped = reference_frame(builder, events, w0, w1)
        packets = [data[i : i + 65_537] for i in range(0, len(data), 65_537)]
        got, results, _ = fused_frame(packets, accumulator, w0, w1)
        np.testing.assert_array_equal(got, want)
        assert sum(r.accumulated for r in results) == n_in - n_unmapped


@needs_bag
def test_fused_int64_table_and_chunking(bag_packets, bag_events):
    """The builder's own int64 table, fed through odd-sized pieces of the stream."""
    calibration = rig((1280, 720), (640, 360), [[0.5, 0, 0], [0, 0.5, 0], [0, 0, 1]])
    builder = EventFrameBuilder(calibration)
    lut = build_pixel_lut(calibration)
    assert lut.dtype == np.int64
    t0 = int(bag_events["t"][0]) + 50_000
    want, _, _ = reference_frame(builder, bag_events, t0, t0 + 200_000)
    data = np.concatenate(bag_packets).tobytes()
    decoder = FastEvt3Decoder()
    frame = np.zeros((3, 360, 640), np.float32)
    for i in range(0, len(data), 4_097):
        decode_and_accumulate(
            decoder, data[i : i + 4_097], frame, t0, t0 + 200_000, lut=lut, lut_width=1280
        )
    np.testing.assert_array_equal(frame, want)


@needs_bag
def test_fused_consecutive_windows_with_stop_at_end(bag_packets, bag_events):
    """stop_at_end hands each window's remainder to the next one, like decode_until."""
    calibration = rig((1280, 720), (1280, 720), np.eye(3))
    builder = EventFrameBuilder(calibration)
    accumulator = evt3_fast.FastFrameAccumulator(calibration)
    ref = Evt3Decoder()
    decoder = FastEvt3Decoder()
    start = int(bag_events["t"][0])
    bounds = [*range(start, int(bag_events["t"][-1]) + 33_333, 33_333)]
    packets = iter(bag_packets)
    windows = 0
    for w0, w1 in itertools.pairwise(bounds):
        frame = accumulator.new_frame()
        result = accumulator.accumulate(decoder, b"", frame, w0, w1, stop_at_end=True)
        while not result.reached_end:
            packet = next(packets, None)
            if packet is None:
                break
            ref.decode(packet)
            result = accumulator.accumulate(decoder, packet, frame, w0, w1, stop_at_end=True)
            assert result.outside_window == 0  # nothing before the window, nothing after
        want, _, _ = reference_frame(builder, bag_events, w0, w1)
        np.testing.assert_array_equal(frame, want)
        windows += 1
    assert windows == len(bounds) - 1 > 20
    assert decoder.counters == ref.counters


@pytest.fixture(scope="module")
def sim_stream(sim_calibration):
    """100 ms of the simulated rig's events and triggers, encoded in 5 ms packets."""
    from evseg_ros.sim.rig import CoaxialRigSim

    simulator = CoaxialRigSim(sim_calibration).event_simulator(0)
    state = Evt3EncoderState()
    packets, events, triggers = [], [], []
    for t in range(5_000, 100_001, 5_000):
        ev, tr = simulator.advance_to(t)
        packets.append(encode_evt3(ev, tr, state=state))
        events.append(ev)
        triggers.append(tr)
    return packets, np.concatenate(events), np.concatenate(triggers)


def test_fused_frames_equal_builder_on_simulated_rig(sim_calibration, sim_stream):
    packets, events, triggers = sim_stream
    assert len(events) > 10_000 and len(triggers) > 0
    builder = EventFrameBuilder(sim_calibration)
    accumulator = evt3_fast.FastFrameAccumulator(sim_calibration)
    event_camera = sim_calibration.event_camera
    for w0, w1 in [(0, 100_000), (20_000, 50_000), (65_000, 95_000), (99_999, 100_000)]:
        want, n_in, _ = reference_frame(builder, events, w0, w1)
        decoder = FastEvt3Decoder(width=event_camera.width, height=event_camera.height)
        frame = accumulator.new_frame()
        results = [accumulator.accumulate(decoder, p, frame, w0, w1) for p in packets]
        np.testing.assert_array_equal(frame, want)
        assert sum(r.accumulated + r.unmapped for r in results) == n_in
        np.testing.assert_array_equal(np.concatenate([r.triggers for r in results]), triggers)


def test_warm_up_compiles_without_data():
    evt3_fast.warm_up()
