"""EVT 3.0 codec: real recordings, a slow per-word reference, round trips and fuzzing.

The recordings live in ``<repo>/../shared/data`` (not part of the repository); tests that need
them skip with the reason when that folder is absent.
"""

from __future__ import annotations

import array
import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evseg_ros.events.errors import EventDecodeError
from evseg_ros.events.evt3 import (
    DecoderCounters,
    Evt3Decoder,
    Evt3EncoderState,
    encode_evt3,
    read_raw_file,
)
from evseg_ros.events.types import EVENT_DTYPE, EVT3_TIME_PERIOD_US, TRIGGER_DTYPE

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
EXPELLIARMUS = SHARED_DATA / "expelliarmus"
TRIGGER_BAG = SHARED_DATA / "event_camera_codecs" / "test_data_evt3_trigger"

needs_expelliarmus = pytest.mark.skipif(
    not (EXPELLIARMUS / "evt3_sample.raw").is_file(),
    reason=f"recorded EVT3 sample not available ({EXPELLIARMUS} is absent)",
)
needs_bag = pytest.mark.skipif(
    not TRIGGER_BAG.is_dir(),
    reason=f"EVT3 trigger rosbag not available ({TRIGGER_BAG} is absent)",
)

FAST = settings(max_examples=60, deadline=None)


# ================================================================ slow per-word reference


def reference_decode(words, *, width=1280, height=720):
    """Decode EVT3 one word at a time, straight from the format description.

    Deliberately naive (a Python loop and a dict of state) so that it shares no code or
    tricks with the vectorised decoder it checks.
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


def words_to_bytes(words) -> bytes:
    return np.asarray(words, dtype="<u2").tobytes()


def decode_in_chunks(data: bytes, cuts, **geometry):
    """Decode ``data`` split at the given byte offsets with one decoder."""
    decoder = Evt3Decoder(**geometry)
    bounds = [0, *sorted(cuts), len(data)]
    parts = [decoder.decode(data[a:b]) for a, b in itertools.pairwise(bounds)]
    events = np.concatenate([p.events for p in parts])
    triggers = np.concatenate([p.triggers for p in parts])
    return events, triggers, decoder


def assert_counters_consistent(c: DecoderCounters, n_words: int) -> None:
    assert c.words == n_words
    assert c.categorised_words() == c.words
    assert c.triggers == c.trigger_words


# A word: type drawn from every 4-bit value (state, event and vendor types more often).
word_types = st.sampled_from(
    [0x0, 0x0, 0x2, 0x2, 0x2, 0x3, 0x4, 0x4, 0x5, 0x6, 0x6, 0x8, 0x8, 0xA, 0xE, 0xF, 0x7]
    + [0x1, 0x9, 0xB, 0xC, 0xD]
)
words_strategy = st.lists(
    st.tuples(word_types, st.integers(0, 0xFFF)).map(lambda tp: tp[0] << 12 | tp[1]),
    max_size=300,
)


# ====================================================================== real recordings


def _reference_low_overflow_offsets(words: np.ndarray) -> np.ndarray:
    """Per event: the extra time the expelliarmus reference decoder adds.

    That decoder (which produced ``evt3_sample.npy``) adds 4096 us to the time of every event
    after *each* TIME_LOW lower than the previous TIME_LOW, even when a TIME_HIGH has already
    advanced the clock or the drop is a few microseconds of sensor jitter. Its times are
    therefore ours plus this offset; x, y and p must match exactly.
    """
    offsets = []
    low = drops = 0
    for w in words.tolist():
        kind = w >> 12
        if kind == 0x6:
            if (w & 0xFFF) < low:
                drops += 1
            low = w & 0xFFF
        elif kind == 0x2:
            offsets.append(drops)
        elif kind in (0x4, 0x5):
            offsets.extend([drops] * (w & (0xFFF if kind == 0x4 else 0xFF)).bit_count())
    return np.asarray(offsets, dtype=np.int64) * 4096


@needs_expelliarmus
def test_sample_file_matches_expelliarmus_reference():
    header, payload = read_raw_file(EXPELLIARMUS / "evt3_sample.raw")
    assert header["format"] == "EVT3"
    assert header["evt"] == "3.0"
    assert (header["width"], header["height"]) == (1280, 720)  # Gen4.1 sensor (plugin name)
    ref = np.load(EXPELLIARMUS / "evt3_sample.npy")

    decoder = Evt3Decoder(width=1280, height=720)
    events, triggers = decoder.decode(payload)

    assert events.dtype == EVENT_DTYPE
    assert len(events) == len(ref) == 219_596
    assert len(triggers) == 0
    for field in ("x", "y", "p"):
        np.testing.assert_array_equal(events[field], ref[field], err_msg=field)
    words = np.frombuffer(payload, dtype="<u2")
    offset = _reference_low_overflow_offsets(words)
    # Up to the first TIME_LOW drop the two decoders agree bit for bit ...
    first_drop = int(np.argmax(offset > 0))
    assert first_drop == 20_121
    np.testing.assert_array_equal(events["t"][:first_drop], ref["t"][:first_drop])
    # ... and everywhere once the reference's low-overflow artefact is taken out.
    np.testing.assert_array_equal(events["t"] + offset, ref["t"])
    # 11 TIME_LOW drops: 2 are genuine rollovers next to a TIME_HIGH step, 9 are jitter.
    assert offset[-1] == 11 * 4096
    assert decoder.counters.time_backwards == 9
    assert decoder.counters.time_wraps == 0
    assert decoder.counters.out_of_bounds == 0
    assert decoder.counters.unknown_words == 0
    assert_counters_consistent(decoder.counters, len(payload) // 2)


@needs_expelliarmus
@pytest.mark.parametrize("chunk", [None, 4097, 3])
def test_time_low_rollover_mode_reproduces_reference_exactly(chunk):
    _, payload = read_raw_file(EXPELLIARMUS / "evt3_sample.raw")
    ref = np.load(EXPELLIARMUS / "evt3_sample.npy")
    decoder = Evt3Decoder(width=1280, height=720, time_low_rollover=True)
    data = bytes(payload)
    step = chunk or len(data)
    parts = [decoder.decode(data[i : i + step]).events for i in range(0, len(data), step)]
    events = np.concatenate(parts)
    assert len(events) == len(ref) == 219_596
    for field in ("t", "x", "y", "p"):
        np.testing.assert_array_equal(events[field], ref[field], err_msg=field)
    assert decoder.current_time_us >= int(ref["t"][-1])
    # the mode changes time only: the physical decoder's clock ends 11 rollovers earlier
    physical = Evt3Decoder(width=1280, height=720)
    physical.decode(data)
    assert decoder.current_time_us - physical.current_time_us == 11 * 4096


@needs_expelliarmus
@pytest.mark.parametrize("chunk", [4097, 1, 3])
def test_sample_file_chunked_decoding_is_identical(chunk):
    _, payload = read_raw_file(EXPELLIARMUS / "evt3_sample.raw")
    data = bytes(payload)
    if chunk < 100:  # tiny chunks only over a prefix, to keep the test quick
        data = data[:6001]
    whole = Evt3Decoder()
    expected = whole.decode(data)
    events, triggers, decoder = decode_in_chunks(data, range(chunk, len(data), chunk))
    np.testing.assert_array_equal(events, expected.events)
    np.testing.assert_array_equal(triggers, expected.triggers)
    assert decoder.counters == whole.counters
    assert decoder.current_time_us == whole.current_time_us
    assert decoder.buffered_bytes == len(data) % 2


@needs_expelliarmus
def test_sample_file_agrees_with_slow_reference():
    _, payload = read_raw_file(EXPELLIARMUS / "evt3_sample.raw")
    words = np.frombuffer(payload, dtype="<u2")[:40_000]
    ev, tr, counters, now = reference_decode(words.tolist())
    decoder = Evt3Decoder()
    got = decoder.decode(words)
    np.testing.assert_array_equal(got.events, ev)
    np.testing.assert_array_equal(got.triggers, tr)
    assert decoder.counters == counters
    assert decoder.current_time_us == now


def _bag_packets(path: Path):
    rosbag2 = pytest.importorskip("rosbags.rosbag2")
    typesys = pytest.importorskip("rosbags.typesys")
    msg_def = (
        "std_msgs/Header header\nuint32 height\nuint32 width\nuint64 seq\nuint64 time_base\n"
        "string encoding\nbool is_bigendian\nuint8[] events\n"
    )
    typestore = typesys.get_typestore(typesys.Stores.ROS2_HUMBLE)
    typestore.register(typesys.get_types_from_msg(msg_def, "event_camera_msgs/msg/EventPacket"))
    with rosbag2.Reader(path) as reader:
        connections = [c for c in reader.connections if c.topic == "/event_camera/events"]
        for connection, _, raw in reader.messages(connections=connections):
            yield typestore.deserialize_cdr(raw, connection.msgtype)


@needs_bag
def test_trigger_bag_counts_and_upstream_checksums():
    decoder = Evt3Decoder(width=1280, height=720)
    events, triggers, raw = [], [], []
    for msg in _bag_packets(TRIGGER_BAG):
        assert msg.encoding == "evt3"
        assert (msg.width, msg.height) == (1280, 720)
        out = decoder.decode(msg.events)
        events.append(out.events)
        triggers.append(out.triggers)
        raw.append(np.asarray(msg.events, dtype=np.uint8))
    assert len(raw) == 105
    ev = np.concatenate(events)
    tr = np.concatenate(triggers)
    c = decoder.counters

    assert len(ev) == c.cd_events == 82_469
    assert np.count_nonzero(ev["p"] == 1) == 41_439
    assert np.count_nonzero(ev["p"] == 0) == 41_030
    assert tr.tolist() == [(14_547_491, 0, 0), (14_549_491, 0, 1)]  # falling, then rising
    assert c.triggers == 2
    assert c.other_words == 15_688
    assert c.continued_words == 25_024  # type 0xF (CONTINUED_12)
    assert c.continued4_words == 12_512  # type 0x7 (CONTINUED_4)
    assert c.unknown_words == 0
    assert c.out_of_bounds == 0
    assert c.time_wraps == 0
    assert bool(np.all(np.diff(ev["t"]) >= 0))
    # Checksums of the upstream C++ decoder's own test over this bag (its times are in ns).
    assert int(ev["t"].sum()) * 1000 == 1_222_326_831_810_000
    assert int(ev["x"].astype(np.int64).sum()) == 42_078_718
    assert int(ev["y"].astype(np.int64).sum()) == 31_656_267
    assert int(tr["t"].sum()) * 1000 == 29_096_982_000

    # Word counts per type, from an independent histogram of the raw words.
    words = np.concatenate(raw).view("<u2")
    hist = np.bincount(words >> 12, minlength=16)
    assert_counters_consistent(c, len(words))
    assert c.cd_words == hist[0x2] + hist[0x4] + hist[0x5]
    assert c.address_words == hist[0x0] + hist[0x3]
    assert c.time_words == hist[0x6] + hist[0x8]
    assert (hist[0xE], hist[0xF], hist[0x7]) == (15_688, 25_024, 12_512)


# ============================================================ vectorised vs slow reference


@FAST
@given(words=words_strategy, cuts=st.lists(st.integers(0, 600), max_size=40))
def test_random_word_streams_match_reference(words, cuts):
    data = words_to_bytes(words)
    ev, tr, counters, now = reference_decode(words, width=1000, height=700)
    got_ev, got_tr, decoder = decode_in_chunks(
        data, [c for c in cuts if c <= len(data)], width=1000, height=700
    )
    np.testing.assert_array_equal(got_ev, ev)
    np.testing.assert_array_equal(got_tr, tr)
    assert decoder.counters == counters
    assert decoder.current_time_us == now


def test_every_word_type_against_reference():
    # A hand-made stream exercising each branch, including a wrap and a small backward step.
    words = [
        0x0000 | 5,  # y = 5
        0x2000 | 0x800 | 7,  # ON event x = 7 at t = 0 (no TIME_HIGH seen yet)
        0x8000 | 0xFFE,  # high = 0xFFE
        0x6000 | 0x010,  # low
        0x3000 | 100,  # base x = 100, OFF
        0x4000 | 0b1000_0000_0101,  # x = 100, 102, 111; base -> 112
        0x5000 | 0xF01,  # VECT_8 uses bits 7..0 only: x = 112; base -> 120
        0x2000 | 2000,  # x out of a 1280 sensor
        0xA000 | 0x300 | 1,  # rising edge on channel 3
        0x8000 | 0x001,  # high drops by 4093: wrap
        0x6000 | 0x001,
        0x0000 | 0x800 | 9,  # bit 11 (system type) is ignored
        0x2000 | 1,
        0x6000 | 0x000,  # low steps back by one: counted, kept
        0x2000 | 2,
        0xE000 | 0x019,
        0xF123,
        0x7001,
        0x1000,
        0x9ABC,
        0xD000,
    ]
    ev, tr, counters, now = reference_decode(words)
    decoder = Evt3Decoder()
    got = decoder.decode(words_to_bytes(words))
    np.testing.assert_array_equal(got.events, ev)
    np.testing.assert_array_equal(got.triggers, tr)
    assert decoder.counters == counters
    wrap_t = EVT3_TIME_PERIOD_US + (1 << 12)
    assert got.events.tolist() == [
        (7, 5, 1, 0),
        (100, 5, 0, 0xFFE010),
        (102, 5, 0, 0xFFE010),
        (111, 5, 0, 0xFFE010),
        (112, 5, 0, 0xFFE010),
        (1, 9, 0, wrap_t + 1),
        (2, 9, 0, wrap_t),
    ]
    assert got.triggers.tolist() == [(0xFFE010, 3, 1)]
    assert (counters.time_wraps, counters.time_backwards, counters.out_of_bounds) == (1, 1, 1)
    assert (counters.other_words, counters.continued_words, counters.continued4_words) == (1, 1, 1)
    assert counters.unknown_words == 3
    assert decoder.current_time_us == now == wrap_t
    # Word by word (every state carried across calls) and byte by byte give the same.
    data = words_to_bytes(words)
    for step in (2, 1):
        got_ev, got_tr, split = decode_in_chunks(data, range(step, len(data), step))
        np.testing.assert_array_equal(got_ev, ev)
        np.testing.assert_array_equal(got_tr, tr)
        assert split.counters == counters


# ============================================================================ round trips


def random_events(rng, n, t_span, *, width=1280, height=720):
    ev = np.zeros(n, dtype=EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(0, t_span, n))
    ev["x"] = rng.integers(0, width, n)
    ev["y"] = rng.integers(0, height, n)
    ev["p"] = rng.integers(0, 2, n)
    return ev


def clustered_events(rng, n_groups, *, width=1280, height=720):
    """Bursts of same-time, same-row events with nearby x, as a sensor row readout gives."""
    sizes = rng.integers(1, 30, n_groups)
    g = np.repeat(np.arange(n_groups), sizes)
    first = np.cumsum(sizes) - sizes
    ev = np.zeros(len(g), dtype=EVENT_DTYPE)
    ev["t"] = np.cumsum(rng.integers(0, 3, n_groups))[g]
    ev["y"] = rng.integers(0, height, n_groups)[g]
    ev["p"] = rng.integers(0, 2, n_groups)[g]
    step = rng.integers(1, 4, len(g))
    step[first] = 0
    x0 = rng.integers(0, width - 120, n_groups)[g]
    rank = np.cumsum(step) - np.repeat(np.cumsum(step)[first], sizes)
    ev["x"] = x0 + rank
    return ev


def random_triggers(rng, n, t_span):
    tr = np.zeros(n, dtype=TRIGGER_DTYPE)
    tr["t"] = np.sort(rng.integers(0, t_span, n))
    tr["channel"] = rng.integers(0, 16, n)
    tr["value"] = rng.integers(0, 2, n)
    return tr


def test_round_trip_across_clock_wraps_with_triggers():
    rng = np.random.default_rng(1)
    span = 3 * EVT3_TIME_PERIOD_US + 12_345
    ev = random_events(rng, 20_000, span)
    tr = random_triggers(rng, 50, span)
    tr["t"][:5] = ev["t"][100:105]  # triggers sharing a time with events go first
    tr.sort(order="t", kind="stable")
    data = encode_evt3(ev, tr)
    decoder = Evt3Decoder(width=2048, height=2048)
    got = decoder.decode(data)
    np.testing.assert_array_equal(got.events, ev)
    np.testing.assert_array_equal(got.triggers, tr)
    assert decoder.counters.time_wraps == int(ev["t"][-1]) >> 24 == 3
    assert decoder.counters.time_backwards == 0
    assert decoder.counters.unknown_words == 0
    assert_counters_consistent(decoder.counters, len(data) // 2)


def test_round_trip_uses_vectors_for_row_bursts():
    rng = np.random.default_rng(2)
    ev = clustered_events(rng, 3000)
    data = encode_evt3(ev)
    kinds = np.bincount(np.frombuffer(data, dtype="<u2") >> 12, minlength=16)
    assert kinds[0x3] > 0 and kinds[0x4] > 0  # VECT_BASE_X and VECT_12 were used
    assert len(data) // 2 < len(ev)  # fewer words than events
    got = Evt3Decoder().decode(data)
    np.testing.assert_array_equal(got.events, ev)


def test_encoder_word_layout():
    xs = [24, 25, 30, 37, 50, 75, 76, 77, 5, 100, 101]
    ev = np.zeros(len(xs), dtype=EVENT_DTYPE)
    ev["x"], ev["y"], ev["p"], ev["t"] = xs, 7, 1, 0x1234
    words = np.frombuffer(encode_evt3(ev), dtype="<u2").tolist()
    assert [hex(w) for w in words] == [
        "0x8001",  # TIME_HIGH 0x001
        "0x6234",  # TIME_LOW 0x234
        "0x7",  # EVT_ADDR_Y 7
        "0x3818",  # VECT_BASE_X 24, ON: windows [24, 36), [36, 48), [48, 60)
        "0x4043",  # VECT_12: 24, 25, 30
        "0x4002",  # VECT_12: 37
        "0x4004",  # VECT_12: 50
        "0x3848",  # window [72, 84) is not adjacent: new VECT_BASE_X 72
        "0x4038",  # VECT_12: 75, 76, 77
        "0x2805",  # x drops: new run; a lone event is one EVT_ADDR_X
        "0x2864",  # two events in one window: two EVT_ADDR_X beat base + mask
        "0x2865",
    ]
    np.testing.assert_array_equal(Evt3Decoder().decode(np.array(words, "<u2")).events, ev)


def test_round_trip_chunked_with_state():
    rng = np.random.default_rng(3)
    span = 2 * EVT3_TIME_PERIOD_US
    ev = np.concatenate([random_events(rng, 5000, span), clustered_events(rng, 500)])
    ev.sort(order="t", kind="stable")
    tr = random_triggers(rng, 40, int(ev["t"][-1]))
    # Cut at arbitrary event positions (which may split events sharing one time); each
    # trigger goes with the chunk whose events span its time.
    ev_cuts = np.sort(rng.choice(len(ev), 7, replace=False))
    tr_cuts = np.searchsorted(tr["t"], ev["t"][ev_cuts], side="left")
    state = Evt3EncoderState()
    decoder = Evt3Decoder(width=2048, height=2048)
    got_ev, got_tr = [], []
    for ev_part, tr_part in zip(np.split(ev, ev_cuts), np.split(tr, tr_cuts), strict=True):
        chunk = encode_evt3(ev_part, tr_part, state=state)
        if ev_part.size or tr_part.size:
            assert np.frombuffer(chunk[:2], dtype="<u2")[0] >> 12 == 0x8  # TIME_HIGH first
        out = decoder.decode(chunk)
        got_ev.append(out.events)
        got_tr.append(out.triggers)
    np.testing.assert_array_equal(np.concatenate(got_ev), ev)
    np.testing.assert_array_equal(np.concatenate(got_tr), tr)
    assert state.time_us == max(int(ev["t"][-1]), int(tr["t"][-1]))
    assert state.y == int(ev["y"][-1])


def test_round_trip_across_long_gaps():
    ev = np.zeros(4, dtype=EVENT_DTYPE)
    ev["t"] = [0, 5, 10 * EVT3_TIME_PERIOD_US + 5, 10 * EVT3_TIME_PERIOD_US + (1 << 23) + 1]
    ev["x"] = [1, 2, 3, 4]
    decoder = Evt3Decoder()
    got = decoder.decode(encode_evt3(ev))
    np.testing.assert_array_equal(got.events, ev)
    assert decoder.counters.time_wraps == 10


event_rows = st.lists(
    st.tuples(
        st.one_of(st.integers(0, 40), st.integers(0, 2047)),  # x, often close together
        st.integers(0, 2047),  # y
        st.integers(0, 1),  # p
        st.integers(0, 3 * (1 << 22)),  # time step to the previous event
    ),
    max_size=80,
)


@FAST
@given(rows=event_rows, chunks=st.lists(st.integers(0, 80), max_size=4))
def test_round_trip_property(rows, chunks):
    ev = np.zeros(len(rows), dtype=EVENT_DTYPE)
    if rows:
        x, y, p, dt = (np.array(col) for col in zip(*rows, strict=True))
        dt[dt % 3 == 0] = 0  # many equal times, so runs and vectors happen
        ev["x"], ev["y"], ev["p"], ev["t"] = x, y // 512, p, np.cumsum(dt)
    state = Evt3EncoderState()
    decoder = Evt3Decoder(width=2048, height=2048)
    got = [
        decoder.decode(encode_evt3(part, state=state)).events
        for part in np.split(ev, sorted(c for c in chunks if c <= len(ev)))
    ]
    np.testing.assert_array_equal(np.concatenate(got), ev)


def test_encoder_rejects_what_evt3_cannot_carry():
    ev = np.zeros(3, dtype=EVENT_DTYPE)
    ev["t"] = [0, 10, 20]
    bad = ev.copy()
    bad["t"] = [0, 30, 20]
    with pytest.raises(EventDecodeError, match="20"):
        encode_evt3(bad)
    bad = ev.copy()
    bad["x"][1] = 2048
    with pytest.raises(EventDecodeError, match="2048"):
        encode_evt3(bad)
    bad = ev.copy()
    bad["p"][2] = 2
    with pytest.raises(EventDecodeError, match="'p'"):
        encode_evt3(bad)
    wide = np.zeros(1, dtype=[("x", "<i8"), ("y", "<i8"), ("p", "u1"), ("t", "<i8")])
    wide["x"] = 70_000  # must not wrap silently to 4464
    with pytest.raises(EventDecodeError, match="70000"):
        encode_evt3(wide)
    negative = ev.copy()
    negative["t"] = [-5, 0, 1]
    with pytest.raises(EventDecodeError, match="-5"):
        encode_evt3(negative)
    with pytest.raises(EventDecodeError, match="'t'"):
        encode_evt3(np.zeros(2, dtype=[("x", "<u2"), ("y", "<u2"), ("p", "u1")]))
    tr = np.zeros(1, dtype=TRIGGER_DTYPE)
    tr["channel"] = 16
    with pytest.raises(EventDecodeError, match="16"):
        encode_evt3(ev, tr)
    with pytest.raises(EventDecodeError, match=r"\[1, 2, 3\]"):
        encode_evt3([1, 2, 3])  # type: ignore[arg-type]
    state = Evt3EncoderState(time_us=100)
    with pytest.raises(EventDecodeError, match="100"):
        encode_evt3(ev, state=state)
    assert encode_evt3(ev[:0], state=state) == b""
    assert state == Evt3EncoderState(time_us=100)


# ============================================================================ decode_until


def test_decode_until_cuts_time_windows():
    rng = np.random.default_rng(4)
    ev = np.concatenate([random_events(rng, 3000, 200_000), clustered_events(rng, 300)])
    ev.sort(order="t", kind="stable")
    tr = random_triggers(rng, 30, 200_000)
    data = encode_evt3(ev, tr)
    decoder = Evt3Decoder()
    first, reached, next_t = decoder.decode_until(data, 50_000)
    assert reached
    np.testing.assert_array_equal(first.events, ev[ev["t"] < 50_000])
    np.testing.assert_array_equal(first.triggers, tr[tr["t"] < 50_000])
    later = np.concatenate([ev["t"][ev["t"] >= 50_000], tr["t"][tr["t"] >= 50_000]])
    assert next_t == later.min()
    assert decoder.buffered_bytes > 0
    got_ev, got_tr = [first.events], [first.triggers]
    for limit in range(60_000, 260_000, 10_000):
        out, reached, _ = decoder.decode_until(b"", limit)
        got_ev.append(out.events)
        got_tr.append(out.triggers)
        assert bool(np.all(out.events["t"] < limit))
    assert not reached
    assert decoder.buffered_bytes == 0
    np.testing.assert_array_equal(np.concatenate(got_ev), ev)
    np.testing.assert_array_equal(np.concatenate(got_tr), tr)
    assert decoder.counters.words == len(data) // 2
    with pytest.raises(EventDecodeError, match="'soon'"):
        decoder.decode_until(b"", "soon")  # type: ignore[arg-type]


# ===================================================================== inputs and errors


def test_buffer_types_and_dangling_byte():
    rng = np.random.default_rng(5)
    ev = random_events(rng, 100, 10_000)
    data = encode_evt3(ev)
    for form in (
        data,
        bytearray(data),
        array.array("B", data),  # rclpy's type for EventPacket.events
        memoryview(data),
        np.frombuffer(data, dtype=np.uint8),
        np.frombuffer(data, dtype="<u2"),
        np.frombuffer(data, dtype="<u2").astype(">u2"),
        memoryview(bytes(2) + data)[2:],
        np.frombuffer(b"\x00" + data, dtype=np.uint8)[1:],  # unaligned words
    ):
        np.testing.assert_array_equal(Evt3Decoder().decode(form).events, ev)
    decoder = Evt3Decoder()
    assert len(decoder.decode(data[:1]).events) == 0
    assert decoder.buffered_bytes == 1
    assert decoder.counters.words == 0
    np.testing.assert_array_equal(decoder.decode(data[1:]).events, ev)
    decoder.reset()
    assert decoder.counters == DecoderCounters()
    assert decoder.buffered_bytes == 0


def test_events_before_first_time_high_use_high_zero():
    words = [0x0000 | 3, 0x2000 | 4, 0x6000 | 7, 0x2000 | 5, 0x8000 | 2, 0x2000 | 6]
    got = Evt3Decoder().decode(words_to_bytes(words)).events
    assert got["t"].tolist() == [0, 7, (2 << 12) + 7]


def test_out_of_bounds_events_are_dropped_and_counted():
    rng = np.random.default_rng(6)
    ev = random_events(rng, 2000, 50_000, width=2048, height=2048)
    decoder = Evt3Decoder(width=640, height=480)
    got = decoder.decode(encode_evt3(ev)).events
    inside = ev[(ev["x"] < 640) & (ev["y"] < 480)]
    np.testing.assert_array_equal(got, inside)
    assert decoder.counters.out_of_bounds == len(ev) - len(inside) > 0


@pytest.mark.parametrize("bad", ["abc", 12, [1, 2], np.zeros(4, dtype=np.float32)])
def test_decode_rejects_non_buffers(bad):
    with pytest.raises(EventDecodeError, match=repr(type(bad).__name__) + "|float32"):
        Evt3Decoder().decode(bad)


@pytest.mark.parametrize("geometry", [{"width": 0}, {"height": "720"}, {"width": True}])
def test_decoder_rejects_bad_geometry(geometry):
    with pytest.raises(EventDecodeError, match=repr(next(iter(geometry.values())))):
        Evt3Decoder(**geometry)


# =============================================================================== fuzzing


def expected_cd_events(data: bytes) -> int:
    """CD events the words announce (kept or out of bounds), counted without decoding."""
    words = np.frombuffer(data[: len(data) // 2 * 2], dtype="<u2").tolist()
    per_kind = {
        0x2: lambda v: 1,
        0x4: lambda v: v.bit_count(),
        0x5: lambda v: (v & 0xFF).bit_count(),
    }
    return sum(per_kind[w >> 12](w & 0xFFF) for w in words if w >> 12 in per_kind)


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=2000), cut=st.integers(0, 2000))
def test_random_bytes_never_raise(data, cut):
    decoder = Evt3Decoder(width=640, height=480)
    a = decoder.decode(data[:cut])
    b = decoder.decode(data[cut:])
    c = decoder.counters
    assert_counters_consistent(c, len(data) // 2)
    assert c.cd_events + c.out_of_bounds == expected_cd_events(data)
    assert len(a.events) + len(b.events) == c.cd_events
    for out in (a, b):
        assert out.events.dtype == EVENT_DTYPE and out.triggers.dtype == TRIGGER_DTYPE
        assert bool(np.all(out.events["x"] < 640)) and bool(np.all(out.events["y"] < 480))


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=20),
    drop=st.integers(0, 50),
)
def test_corrupted_valid_streams_never_raise(seed, edits, drop):
    rng = np.random.default_rng(seed)
    ev = np.concatenate(
        [random_events(rng, 200, 3 * EVT3_TIME_PERIOD_US), clustered_events(rng, 20)]
    )
    ev.sort(order="t", kind="stable")
    data = bytearray(encode_evt3(ev, random_triggers(rng, 5, 1 << 26)))
    for pos, value in edits:
        data[pos % len(data)] = value
    del data[drop : drop + drop % 7]  # lose a few bytes: the word alignment may shift
    decoder = Evt3Decoder()
    decoder.decode(data)
    assert_counters_consistent(decoder.counters, len(data) // 2)
    assert decoder.counters.cd_events + decoder.counters.out_of_bounds == expected_cd_events(
        bytes(data)
    )


# ============================================================================ .raw header


def test_read_raw_file_header_variants(tmp_path):
    path = tmp_path / "new.raw"
    body = encode_evt3(np.zeros(1, dtype=EVENT_DTYPE))
    path.write_bytes(
        b"% camera_integrator_name Prophesee\r\n% format EVT3;height=720;width=1280\n"
        b"% geometry 1280x720\n% end\n%" + body  # payload starting with a '%' byte
    )
    header, payload = read_raw_file(path)
    assert header["format"] == "EVT3"
    assert (header["width"], header["height"]) == (1280, 720)
    assert header["camera_integrator_name"] == "Prophesee"
    assert bytes(payload) == b"%" + body

    path.write_bytes(b"% evt 2.0\n% geometry 640x480\n" + body)
    header, payload = read_raw_file(path)
    assert (header["format"], header["width"], header["height"]) == ("EVT2", 640, 480)
    assert bytes(payload) == body

    path.write_bytes(b"% evt 3.0\n% sensor_generation 3.1\n" + body)
    assert read_raw_file(path)[0]["width"] == 640


@pytest.mark.parametrize(
    "content",
    [
        b"% evt 3.0\n% date 2020",  # header line cut short
        b"% evt 3.0\n% name \xff\xfe\n" + bytes(4),  # not text
        b"% evt 3.0\n% geometry 1280 by 720\n" + bytes(4),
        b"% format EVT3;width=wide\n" + bytes(4),
        b"% date 2020\n" + bytes(4),  # no format at all
        b"% evt 9.9\n" + bytes(4),
    ],
)
def test_read_raw_file_damaged_header(tmp_path, content):
    path = tmp_path / "damaged.raw"
    path.write_bytes(content)
    with pytest.raises(EventDecodeError, match=r"damaged\.raw"):
        read_raw_file(path)
