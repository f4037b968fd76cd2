"""The contract every EVT3 decoder keeps, checked the same way for each of them.

The numpy :class:`Evt3Decoder` (the reference), the compiled :class:`FastEvt3Decoder` (the CPU
node's) and :class:`TorchEvt3Accumulator` (the GPU node's, run on the CPU here and on CUDA where
torch sees a GPU) must give the same events, triggers, counters and carried state for the same
stream, however it is split into packets: every test below runs once per decoder. What only one
decoder has (the encoder, ``decode_until``, fused frames, device frames) is tested beside it.

The recordings live in ``<repo>/../shared/data`` (not part of the repository); tests that need
them skip with the reason when that folder is absent.
"""

from __future__ import annotations

import array
import functools
import importlib.util
import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evseg_ros.events import evt3_fast
from evseg_ros.events.errors import EventDecodeError
from evseg_ros.events.evt3 import DecoderCounters, Evt3Decoder, encode_evt3, read_raw_file
from evseg_ros.events.evt3_format import TIME_PERIOD_US
from evseg_ros.events.types import EVENT_DTYPE, TRIGGER_DTYPE

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
SAMPLE_RAW = SHARED_DATA / "expelliarmus" / "evt3_sample.raw"
TRIGGER_BAG = SHARED_DATA / "event_camera_codecs" / "test_data_evt3_trigger"

HAS_TORCH = importlib.util.find_spec("torch") is not None


def _cuda() -> bool:
    if not HAS_TORCH:
        return False
    import torch

    return torch.cuda.is_available()


@functools.cache
def _rig(width: int, height: int):
    """Both cameras on the event camera's grid: what the torch decoder is built from."""
    from evseg_ros.geometry.calibration import calibration_from_dict

    identity = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    camera = {"width": width, "height": height, "camera_matrix": identity}
    return calibration_from_dict(
        {"event_camera": camera, "frame_camera": camera, "event_to_frame_homography": identity}
    )


def _torch(device: str) -> Callable:
    def make(width: int, height: int):
        from evseg_ros.events.evt3_torch import TorchEvt3Accumulator

        return TorchEvt3Accumulator(_rig(width, height), device=device)

    return make


#: name -> factory(width, height) of every EVT3 decoder.
DECODERS: dict[str, Callable] = {
    "numpy": lambda width, height: Evt3Decoder(width=width, height=height),
    "numba": lambda width, height: evt3_fast.FastEvt3Decoder(width=width, height=height),
    "torch-cpu": _torch("cpu"),
    "torch-cuda": _torch("cuda"),
}
ALL = [
    pytest.param("numpy"),
    pytest.param("numba", marks=pytest.mark.skipif(
        not evt3_fast.available(), reason=f"numba is not usable: {evt3_fast.UNAVAILABLE_REASON}"
    )),
    pytest.param("torch-cpu", marks=pytest.mark.skipif(not HAS_TORCH, reason="needs torch")),
    pytest.param("torch-cuda", marks=pytest.mark.skipif(
        not _cuda(), reason="needs a CUDA GPU visible to torch"
    )),
]  # fmt: skip
#: The decoders built from a sensor size rather than a calibration.
SIZED = ALL[:2]

needs_sample = pytest.mark.skipif(
    not SAMPLE_RAW.is_file(), reason=f"recorded EVT3 sample not available ({SAMPLE_RAW})"
)
needs_bag = pytest.mark.skipif(
    not TRIGGER_BAG.is_dir(), reason=f"EVT3 trigger rosbag not available ({TRIGGER_BAG})"
)
FEW = settings(max_examples=30, deadline=None)


def make(name: str, width: int = 1280, height: int = 720):
    return DECODERS[name](width, height)


# ============================================================== the per-word reference


def reference_decode(words, *, width=1280, height=720):
    """Decode EVT3 one word at a time, straight from the format description.

    Deliberately naive (a Python loop and a dict of state) so that it shares no code or
    tricks with the decoders it checks.

    Returns:
        ``(events, triggers, counters, current_time_us)``.
    """
    s = {"y": 0, "base": 0, "pol": 0, "high": 0, "low": 0, "epoch": 0, "stamp": 0}
    c = DecoderCounters()
    events, triggers = [], []

    def emit(x, y, p, t):
        if x < width and y < height:
            events.append((x, y, p, t))
            c.cd_events += 1
        else:
            c.out_of_bounds += 1

    for w in words:
        kind, payload = w >> 12, w & 0xFFF
        now = s["epoch"] + (s["high"] << 12) + s["low"]
        c.words += 1
        if kind == 0x0:
            s["y"] = payload & 0x7FF
            c.address_words += 1
        elif kind == 0x2:
            c.cd_words += 1
            emit(payload & 0x7FF, s["y"], payload >> 11, now)
        elif kind == 0x3:
            s["base"], s["pol"] = payload & 0x7FF, payload >> 11
            c.address_words += 1
        elif kind in (0x4, 0x5):
            c.cd_words += 1
            n_bits = 12 if kind == 0x4 else 8
            for i in range(n_bits):
                if payload >> i & 1:
                    emit(s["base"] + i, s["y"], s["pol"], now)
            s["base"] += n_bits
        elif kind == 0x6:
            c.time_words += 1
            s["low"] = payload
            stamp = s["epoch"] + (s["high"] << 12) + s["low"]
            if stamp < s["stamp"]:
                c.time_backwards += 1
            s["stamp"] = stamp
        elif kind == 0x8:
            c.time_words += 1
            if s["high"] - payload > 2048:
                s["epoch"] += 1 << 24
                c.time_wraps += 1
            s["high"] = payload
        elif kind == 0xA:
            c.trigger_words += 1
            c.triggers += 1
            triggers.append((now, payload >> 8 & 0xF, payload & 1))
        elif kind == 0xE:
            c.other_words += 1
        elif kind == 0xF:
            c.continued_words += 1
        elif kind == 0x7:
            c.continued4_words += 1
        else:
            c.unknown_words += 1
    ev = np.zeros(len(events), dtype=EVENT_DTYPE)
    if events:
        ev["x"], ev["y"], ev["p"], ev["t"] = map(np.array, zip(*events, strict=True))
    tr = np.zeros(len(triggers), dtype=TRIGGER_DTYPE)
    if triggers:
        tr["t"], tr["channel"], tr["value"] = map(np.array, zip(*triggers, strict=True))
    return ev, tr, c, s["epoch"] + (s["high"] << 12) + s["low"]


# ================================================================= shared checks


def word_bytes(words) -> bytes:
    return np.asarray(words, dtype="<u2").tobytes()


def split_at(data: bytes, cuts) -> list[bytes]:
    bounds = [0, *sorted(c for c in cuts if 0 <= c <= len(data)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def odd_cuts(size: int, seed: int, mean: int) -> list[int]:
    """Random cut points, every packet of odd length (a word's byte left dangling)."""
    steps = np.random.default_rng(seed).integers(1, 2 * mean, size=size // mean + 2) | 1
    return [int(c) for c in np.cumsum(steps) if c < size]


def decode_all(decoder, packets) -> tuple[np.ndarray, np.ndarray]:
    """Decode packet after packet; the events and triggers joined, dtypes checked."""
    parts = [decoder.decode(p) for p in packets]
    for part in parts:
        assert part.events.dtype == EVENT_DTYPE and part.triggers.dtype == TRIGGER_DTYPE
    events = np.concatenate([p.events for p in parts]) if parts else np.empty(0, EVENT_DTYPE)
    triggers = np.concatenate([p.triggers for p in parts]) if parts else np.empty(0, TRIGGER_DTYPE)
    return events, triggers


def assert_same_as(decoder, reference) -> None:
    """Counters and carried state (the clock, held-back bytes) equal the reference's."""
    assert decoder.counters == reference.counters
    assert decoder.current_time_us == reference.current_time_us
    assert decoder.buffered_bytes == reference.buffered_bytes


def assert_decodes_like_numpy(name: str, packets, *, width=1280, height=720):
    """Decode ``packets`` with ``name`` and with the numpy reference: everything equal."""
    reference = Evt3Decoder(width=width, height=height)
    want = decode_all(reference, packets)
    decoder = make(name, width, height)
    got = decode_all(decoder, packets)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert_same_as(decoder, reference)
    return want


def announced_events(data: bytes) -> int:
    """CD events the words name (kept or out of bounds), counted without decoding."""
    words = np.frombuffer(data[: len(data) // 2 * 2], dtype="<u2").tolist()
    named = {0x2: lambda v: 1, 0x4: lambda v: v.bit_count(), 0x5: lambda v: (v & 0xFF).bit_count()}
    return sum(named[w >> 12](w & 0xFFF) for w in words if w >> 12 in named)


def random_events(rng, n: int, t_span: int, *, width=1280, height=720, clustered=0):
    """Events sorted by time; ``clustered`` bursts of same-time, same-row, adjacent-x events
    (what the encoder turns into vector words) on top."""
    ev = np.zeros(n, dtype=EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(0, t_span, n))
    ev["x"] = rng.integers(0, width, n)
    ev["y"] = rng.integers(0, height, n)
    ev["p"] = rng.integers(0, 2, n)
    bursts = []
    for t in rng.integers(0, t_span, clustered):
        size = int(rng.integers(3, 30))
        burst = np.zeros(size, dtype=EVENT_DTYPE)
        burst["t"] = t
        burst["y"] = rng.integers(0, height)
        burst["p"] = rng.integers(0, 2)
        burst["x"] = rng.integers(0, width - 120) + np.cumsum(rng.integers(1, 4, size))
        bursts.append(burst)
    out = np.concatenate([ev, *bursts])
    return out[np.argsort(out["t"], kind="stable")]


def random_triggers(rng, n: int, t_span: int) -> np.ndarray:
    tr = np.zeros(n, dtype=TRIGGER_DTYPE)
    tr["t"] = np.sort(rng.integers(0, t_span, n))
    tr["channel"] = rng.integers(0, 16, n)
    tr["value"] = rng.integers(0, 2, n)
    return tr


@pytest.fixture(scope="module")
def sample_payload() -> bytes:
    if not SAMPLE_RAW.is_file():
        pytest.skip(f"recorded EVT3 sample not available ({SAMPLE_RAW})")
    return bytes(read_raw_file(SAMPLE_RAW)[1])


@pytest.fixture(scope="module")
def bag_packets() -> list[bytes]:
    if not TRIGGER_BAG.is_dir():
        pytest.skip(f"EVT3 trigger rosbag not available ({TRIGGER_BAG})")
    from evseg_ros.events.bag import read_event_packets

    return [bytes(msg.events) for _, _, msg in read_event_packets(TRIGGER_BAG)]


# ====================================================================== real recordings


@needs_sample
@pytest.mark.parametrize("name", ALL)
def test_sample_recording_whole_and_in_odd_packets(name, sample_payload):
    """Dense Gen4 data, rich in vector words; then state carried across nearly every word."""
    events, _ = assert_decodes_like_numpy(name, [sample_payload])
    assert len(events) == 219_596
    cuts = odd_cuts(len(sample_payload), 1, 40_001)
    assert_decodes_like_numpy(name, split_at(sample_payload, cuts))
    prefix = sample_payload[:3001]
    assert_decodes_like_numpy(name, split_at(prefix, odd_cuts(len(prefix), 2, 3)))


@needs_sample
@pytest.mark.parametrize("name", ALL)
def test_sample_recording_prefix_matches_the_per_word_reference(name, sample_payload):
    words = np.frombuffer(sample_payload, dtype="<u2")[:40_000]
    ev, tr, counters, now = reference_decode(words.tolist())
    decoder = make(name)
    got = decoder.decode(words)
    np.testing.assert_array_equal(got.events, ev)
    np.testing.assert_array_equal(got.triggers, tr)
    assert decoder.counters == counters and decoder.current_time_us == now


@needs_bag
@pytest.mark.parametrize("name", ALL)
def test_trigger_bag_per_message_and_rechunked(name, bag_packets):
    events, triggers = assert_decodes_like_numpy(name, bag_packets)
    assert len(events) == 82_469
    assert triggers.tolist() == [(14_547_491, 0, 0), (14_549_491, 0, 1)]
    data = b"".join(bag_packets)
    assert_decodes_like_numpy(name, split_at(data, odd_cuts(len(data), 3, 20_001)))
    decoder = make(name)
    decode_all(decoder, bag_packets)
    c = decoder.counters
    assert (c.other_words, c.continued_words, c.continued4_words) == (15_688, 25_024, 12_512)


@pytest.mark.parametrize("name", ALL)
def test_simulated_rig_stream_round_trips(name, sim_calibration):
    """The simulated event camera's packets decode to exactly the events it made."""
    from evseg_ros.events.evt3 import Evt3EncoderState
    from evseg_ros.sim.rig import CoaxialRigSim

    camera = sim_calibration.event_camera
    simulator = CoaxialRigSim(sim_calibration).event_simulator(0)
    state = Evt3EncoderState()
    packets, events, triggers = [], [], []
    for t in range(5_000, 60_001, 5_000):
        ev, tr = simulator.advance_to(t)
        packets.append(encode_evt3(ev, tr, state=state))
        events.append(ev)
        triggers.append(tr)
    got = assert_decodes_like_numpy(name, packets, width=camera.width, height=camera.height)
    np.testing.assert_array_equal(got[0], np.concatenate(events))
    np.testing.assert_array_equal(got[1], np.concatenate(triggers))


# ============================================================ streams made for the purpose


word_types = st.sampled_from(
    [0x0, 0x0, 0x2, 0x2, 0x2, 0x3, 0x4, 0x4, 0x5, 0x6, 0x6, 0x8, 0x8, 0x8, 0xA, 0xE, 0xF, 0x7]
    + [0x1, 0x9, 0xB, 0xC, 0xD]
)
words_strategy = st.lists(
    st.tuples(word_types, st.integers(0, 0xFFF)).map(lambda tp: tp[0] << 12 | tp[1]),
    max_size=300,
)


@pytest.mark.parametrize("name", ALL)
@FEW
@given(
    words=words_strategy,
    cuts=st.lists(st.integers(0, 600), max_size=8),
    size=st.sampled_from([(1, 1), (17, 5), (640, 480), (1000, 700), (2048, 2048)]),
)
def test_any_word_stream_matches_the_per_word_reference(name, words, cuts, size):
    """Every word type in any order: vectors without a base, wraps, glitches, triggers."""
    width, height = size
    ev, tr, counters, now = reference_decode(words, width=width, height=height)
    decoder = make(name, width, height)
    got = decode_all(decoder, split_at(word_bytes(words), cuts))
    np.testing.assert_array_equal(got[0], ev)
    np.testing.assert_array_equal(got[1], tr)
    assert decoder.counters == counters and decoder.current_time_us == now


@pytest.mark.parametrize("name", ALL)
def test_every_word_type_word_by_word_and_byte_by_byte(name):
    words = [
        0x0000 | 5,  # y = 5
        0x2000 | 0x800 | 7,  # ON event x = 7 at t = 0 (no TIME_HIGH seen yet)
        0x8000 | 0xFFE,  # high = 0xFFE
        0x6000 | 0x010,  # low
        0x3000 | 1270,  # base x = 1270, OFF, near the edge of the 1280 sensor
        0x4000 | 0xFFF,  # x = 1270..1281: the last two are out of bounds; base -> 1282
        0x5000 | 0xF01,  # VECT_8 reads bits 7..0 only: x = 1282, out of bounds
        0x8000 | (0xFFE - 2048),  # a drop of exactly half the range: no wrap ...
        0x6000 | 0x010,  # ... so the time steps back: counted, kept
        0x8000 | 0xFFF,
        0x8000 | (0xFFF - 2049),  # one more: a wrap
        0x6000 | 0x001,
        0x0000 | 0x800 | 9,  # bit 11 (system type) is ignored
        0x2000 | 1,
        0xA000 | 0x300 | 1,  # rising edge on channel 3
        0x0000 | 720,  # row out of bounds: vectors and single events are dropped
        0x3800 | 0,
        0x4000 | 0x0F0,
        0x2000 | 3,
        *[0xE019, 0xF123, 0x7001, 0x1000, 0x9ABC, 0xB000, 0xC000, 0xD000],
    ]
    ev, tr, counters, now = reference_decode(words)
    wrap_t = TIME_PERIOD_US + ((0xFFF - 2049) << 12) + 1
    assert ev.tolist() == [(7, 5, 1, 0), (1270, 5, 0, 0xFFE010), (1271, 5, 0, 0xFFE010),
                           (1272, 5, 0, 0xFFE010), (1273, 5, 0, 0xFFE010), (1274, 5, 0, 0xFFE010),
                           (1275, 5, 0, 0xFFE010), (1276, 5, 0, 0xFFE010), (1277, 5, 0, 0xFFE010),
                           (1278, 5, 0, 0xFFE010), (1279, 5, 0, 0xFFE010), (1, 9, 0, wrap_t)]
    assert tr.tolist() == [(wrap_t, 3, 1)]
    assert (counters.time_wraps, counters.time_backwards, counters.out_of_bounds) == (1, 1, 8)
    assert (counters.other_words, counters.continued_words, counters.continued4_words,
            counters.unknown_words) == (1, 1, 1, 5)  # fmt: skip
    data = word_bytes(words)
    for step in (len(data), 2, 1):  # whole, word by word, byte by byte
        decoder = make(name)
        got = decode_all(decoder, split_at(data, range(step, len(data), step)))
        np.testing.assert_array_equal(got[0], ev)
        np.testing.assert_array_equal(got[1], tr)
        assert decoder.counters == counters and decoder.current_time_us == now


@pytest.mark.parametrize("name", ALL)
@FEW
@given(seed=st.integers(0, 2**32 - 1), n_cuts=st.integers(0, 12), tiny=st.booleans())
def test_split_anywhere_gives_the_same(name, seed, n_cuts, tiny):
    """A stream with vectors, triggers and wraps decodes the same cut at any bytes."""
    rng = np.random.default_rng(seed)
    span = int(rng.choice([50_000, 3 * TIME_PERIOD_US]))
    events = random_events(rng, 300, span, width=1400, height=800, clustered=20)
    data = encode_evt3(events, random_triggers(rng, 5, span))
    if tiny:  # one to three bytes at a time over a prefix
        data = data[:401]
        cuts = np.cumsum(rng.integers(1, 4, len(data))).tolist()
    else:
        cuts = rng.integers(0, len(data) + 1, n_cuts).tolist()
    whole = make(name)
    want = decode_all(whole, [data])
    split = make(name)
    got = decode_all(split, split_at(data, cuts))
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert_same_as(split, whole)


@pytest.mark.parametrize("name", ALL)
def test_time_wraps_long_gaps_and_triggers_round_trip(name):
    """Times across several 24-bit wraps, with gaps of many periods: exact, counted."""
    rng = np.random.default_rng(1)
    span = 3 * TIME_PERIOD_US + 12_345
    events = random_events(rng, 20_000, span, width=1280, height=720, clustered=200)
    triggers = random_triggers(rng, 50, span)
    triggers["t"][:5] = events["t"][100:105]  # triggers sharing a time with events go first
    triggers.sort(order="t", kind="stable")
    gap = np.zeros(2, dtype=EVENT_DTYPE)
    gap["t"] = [span + 10 * TIME_PERIOD_US, span + 10 * TIME_PERIOD_US + (1 << 23) + 1]
    events = np.concatenate((events, gap))
    data = encode_evt3(events, triggers)
    decoder = make(name)
    got = decode_all(decoder, split_at(data, odd_cuts(len(data), 4, 10_001)))
    np.testing.assert_array_equal(got[0], events)
    np.testing.assert_array_equal(got[1], triggers)
    assert decoder.counters.time_wraps == int(events["t"][-1]) >> 24 == 13
    assert decoder.counters.time_backwards == 0


@pytest.mark.parametrize("name", ALL)
def test_vector_floods_and_bases_past_any_sensor(name):
    """12 events per word (past any first guess of the output size), then a base that runs
    past the sensor and int32 without a VECT_BASE_X to reset it."""
    dense = [0x8001, 0x6002, 0x0005, 0x3000] + [0x4FFF] * 150 + [0xA101, 0xA000] * 40
    dense += [0x3800] + [0x50FF] * 100
    decoder = make(name, 2048, 2048)
    got = decoder.decode(word_bytes(dense))
    assert len(got.events) == 150 * 12 + 100 * 8 and len(got.triggers) == 80
    runaway = word_bytes([0x3000 | 5] + [0x4FFF] * 3000 + [0x5FFF] * 3000 + [0x3800 | 7, 0x4FFF])
    events, _ = assert_decodes_like_numpy(name, [word_bytes(dense), *[runaway] * 20])
    assert len(events) > 0


# ================================================================ corrupt input, counted


def assert_every_word_counted(decoder, data: bytes, events: np.ndarray) -> None:
    c = decoder.counters
    assert c.words == len(data) // 2 == c.categorised_words()
    assert c.triggers == c.trigger_words
    assert c.cd_events + c.out_of_bounds == announced_events(data)
    assert len(events) == c.cd_events


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=2000), cut=st.integers(0, 2000))
def test_random_bytes_are_counted_never_raised(name, data, cut):
    decoder = make(name, 640, 480)
    events, _ = decode_all(decoder, split_at(data, [cut]))
    assert_every_word_counted(decoder, data, events)
    assert bool(np.all(events["x"] < 640)) and bool(np.all(events["y"] < 480))
    reference = Evt3Decoder(width=640, height=480)
    decode_all(reference, [data])
    assert_same_as(decoder, reference)


@pytest.mark.parametrize("name", ALL)
@FEW
@given(
    seed=st.integers(0, 2**32 - 1),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=20),
    drop=st.integers(0, 50),
)
def test_corrupted_valid_streams_are_counted_never_raised(name, seed, edits, drop):
    rng = np.random.default_rng(seed)
    events = random_events(rng, 200, 3 * TIME_PERIOD_US, clustered=20)
    data = bytearray(encode_evt3(events, random_triggers(rng, 5, 1 << 26)))
    for pos, value in edits:
        data[pos % len(data)] = value
    del data[drop : drop + drop % 7]  # lose a few bytes: the word alignment may shift
    decoder = make(name)
    got, _ = decode_all(decoder, [bytes(data)])
    assert_every_word_counted(decoder, bytes(data), got)


# ======================================================================== the interface


@pytest.mark.parametrize("name", ALL)
def test_buffer_types_dangling_byte_and_reset(name):
    rng = np.random.default_rng(5)
    events = random_events(rng, 300, 50_000)
    data = encode_evt3(events)
    for form in (
        data,
        bytearray(data),
        array.array("B", data),  # rclpy's type for EventPacket.events
        memoryview(data),
        memoryview(bytes(2) + data)[2:],
        np.frombuffer(data, dtype=np.uint8),
        np.frombuffer(data, dtype="<u2"),
        np.frombuffer(data, dtype="<u2").astype(">u2"),
        np.frombuffer(data, dtype="<u2").copy(),  # writable words
        np.frombuffer(b"\x00" + data, dtype=np.uint8)[1:],  # unaligned words
    ):
        np.testing.assert_array_equal(make(name).decode(form).events, events)
    decoder = make(name)
    assert len(decoder.decode(b"").events) == 0
    assert len(decoder.decode(data[:1]).events) == 0
    assert decoder.buffered_bytes == 1 and decoder.counters.words == 0
    np.testing.assert_array_equal(decoder.decode(data[1:] + b"\x01").events, events)
    assert decoder.buffered_bytes == 1 and decoder.current_time_us > 0
    decoder.reset()
    assert decoder.counters == DecoderCounters()
    assert decoder.buffered_bytes == 0 and decoder.current_time_us == 0
    np.testing.assert_array_equal(decoder.decode(data).events, events)


@pytest.mark.parametrize("name", ALL)
def test_events_before_the_first_time_words_are_kept_at_time_zero(name):
    words = [0x0000 | 3, 0x2000 | 4, 0x6000 | 7, 0x2000 | 5, 0x8000 | 2, 0x2000 | 6]
    got = make(name).decode(word_bytes(words)).events
    assert got["t"].tolist() == [0, 7, (2 << 12) + 7]


@pytest.mark.parametrize("name", ALL)
def test_events_off_the_sensor_are_dropped_and_counted(name):
    rng = np.random.default_rng(6)
    events = random_events(rng, 2000, 50_000, width=2048, height=2048, clustered=50)
    decoder = make(name, 640, 480)
    got = decoder.decode(encode_evt3(events)).events
    inside = events[(events["x"] < 640) & (events["y"] < 480)]
    np.testing.assert_array_equal(got, inside)
    assert decoder.counters.out_of_bounds == len(events) - len(inside) > 0


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("bad", ["abc", 12, [1, 2], np.zeros(4, dtype=np.float32)])
def test_rejects_what_is_not_a_buffer(name, bad):
    with pytest.raises(EventDecodeError, match=repr(type(bad).__name__) + "|float32"):
        make(name).decode(bad)


@pytest.mark.parametrize("name", SIZED)
@pytest.mark.parametrize("geometry", [{"width": 0}, {"height": "720"}, {"width": True}])
def test_rejects_bad_geometry(name, geometry):
    size = {"width": 1280, "height": 720, **geometry}
    with pytest.raises(EventDecodeError, match=repr(next(iter(geometry.values())))):
        make(name, **size)
