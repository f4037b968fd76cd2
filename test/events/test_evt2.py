"""EVT 2.0 decoder: a real Gen3 recording, a slow per-word reference, fuzzing.

The recording lives in ``<repo>/../shared/data`` (not part of the repository); tests that need
it skip with the reason when that folder is absent.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evseg_ros.events.errors import EventDecodeError
from evseg_ros.events.evt2 import EVT2_TIME_PERIOD_US, Evt2Decoder
from evseg_ros.events.evt3 import DecoderCounters, read_raw_file
from evseg_ros.events.types import EVENT_DTYPE, TRIGGER_DTYPE

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE = REPO_ROOT.parent / "shared" / "data" / "expelliarmus" / "evt2_sample.raw"

needs_sample = pytest.mark.skipif(
    not SAMPLE.is_file(), reason=f"recorded EVT2 sample not available ({SAMPLE} is absent)"
)


def reference_decode(words, *, width=1280, height=720):
    """Decode EVT2 one word at a time, straight from the format description."""
    high = epoch = last_t = low = 0
    c = DecoderCounters()
    events, triggers = [], []
    for w in words:
        kind = w >> 28
        c.words += 1
        t = epoch + (high << 6) + (w >> 22 & 0x3F)
        if kind in (0x0, 0x1, 0xA):
            if t < last_t:
                c.time_backwards += 1
            last_t, low = t, w >> 22 & 0x3F
        if kind in (0x0, 0x1):
            c.cd_words += 1
            x, y = w >> 11 & 0x7FF, w & 0x7FF
            if x < width and y < height:
                events.append((x, y, kind, t))
                c.cd_events += 1
            else:
                c.out_of_bounds += 1
        elif kind == 0x8:
            c.time_words += 1
            new_high = w & 0x0FFF_FFFF
            if high - new_high > 1 << 27:
                epoch += 1 << 34
                c.time_wraps += 1
            high, low = new_high, 0
        elif kind == 0xA:
            c.trigger_words += 1
            c.triggers += 1
            triggers.append((t, w >> 8 & 0x1F, w & 1))
        elif kind == 0xE:
            c.other_words += 1
        elif kind == 0xF:
            c.continued_words += 1
        else:
            c.unknown_words += 1
    ev = np.zeros(len(events), dtype=EVENT_DTYPE)
    if events:
        ev["x"], ev["y"], ev["p"], ev["t"] = map(np.array, zip(*events, strict=True))
    tr = np.zeros(len(triggers), dtype=TRIGGER_DTYPE)
    if triggers:
        tr["t"], tr["channel"], tr["value"] = map(np.array, zip(*triggers, strict=True))
    return ev, tr, c, epoch + (high << 6) + low


def cd(p, x, y, t_low):
    return p << 28 | t_low << 22 | x << 11 | y


def time_high(value):
    return 0x8 << 28 | value


def trigger(channel, value, t_low):
    return 0xA << 28 | t_low << 22 | channel << 8 | value


def to_bytes(words) -> bytes:
    return np.asarray(words, dtype="<u4").tobytes()


def decode_in_chunks(data: bytes, cuts, **geometry):
    decoder = Evt2Decoder(**geometry)
    bounds = [0, *sorted(cuts), len(data)]
    parts = [decoder.decode(data[a:b]) for a, b in itertools.pairwise(bounds)]
    events = np.concatenate([p.events for p in parts])
    triggers = np.concatenate([p.triggers for p in parts])
    return events, triggers, decoder


def assert_counters_consistent(c: DecoderCounters, n_words: int) -> None:
    assert c.words == n_words
    assert c.categorised_words() == c.words
    assert c.triggers == c.trigger_words
    assert c.address_words == 0 and c.continued4_words == 0


# ====================================================================== real recording


@needs_sample
def test_sample_file_header_and_counts():
    header, payload = read_raw_file(SAMPLE)
    assert header["format"] == "EVT2"
    assert header["evt"] == "2.0"
    assert (header["width"], header["height"]) == (640, 480)  # Gen3 sensor (plugin name)
    assert header["plugin_name"] == "hal_plugin_gen3_fx3"
    decoder = Evt2Decoder(width=header["width"], height=header["height"])
    events, triggers = decoder.decode(payload)
    c = decoder.counters

    # Counts checked against an independent histogram of the word types.
    words = np.frombuffer(payload, dtype="<u4")
    hist = np.bincount(words >> 28, minlength=16)
    assert (hist[0x0], hist[0x1], hist[0x8]) == (171_626, 367_855, 3_126)
    assert len(events) == c.cd_events == 539_481
    assert np.count_nonzero(events["p"] == 1) == 367_855
    assert np.count_nonzero(events["p"] == 0) == 171_626
    assert len(triggers) == 0
    assert c.time_words == 3_126
    assert (c.out_of_bounds, c.unknown_words, c.time_wraps, c.time_backwards) == (0, 0, 0, 0)
    assert_counters_consistent(c, len(words))

    assert bool(np.all(np.diff(events["t"]) >= 0))
    assert int(events["x"].max()) < 640 and int(events["y"].max()) < 480
    assert events[:3].tolist() == [(237, 121, 1, 1_317_888), (246, 121, 1, 1_317_888),
                                   (248, 132, 1, 1_317_888)]  # fmt: skip
    assert events[-1].tolist() == (210, 142, 1, 1_367_888)
    assert decoder.current_time_us == 1_367_888


@needs_sample
def test_sample_file_prefix_matches_slow_reference():
    _, payload = read_raw_file(SAMPLE)
    words = np.frombuffer(payload, dtype="<u4")[:60_000]
    ev, tr, counters, now = reference_decode(words.tolist(), width=640, height=480)
    decoder = Evt2Decoder(width=640, height=480)
    got = decoder.decode(words)
    assert len(ev) > 50_000
    np.testing.assert_array_equal(got.events, ev)
    np.testing.assert_array_equal(got.triggers, tr)
    assert decoder.counters == counters
    assert decoder.current_time_us == now


@needs_sample
@pytest.mark.parametrize("chunk", [4099, 3])
def test_sample_file_chunked_decoding_is_identical(chunk):
    _, payload = read_raw_file(SAMPLE)
    data = bytes(payload) if chunk > 100 else bytes(payload)[:12_002]
    whole = Evt2Decoder(width=640, height=480)
    expected = whole.decode(data)
    events, triggers, decoder = decode_in_chunks(
        data, range(chunk, len(data), chunk), width=640, height=480
    )
    np.testing.assert_array_equal(events, expected.events)
    np.testing.assert_array_equal(triggers, expected.triggers)
    assert decoder.counters == whole.counters
    assert decoder.buffered_bytes == len(data) % 4


# ============================================================ vectorised vs slow reference


def test_every_word_type_against_reference():
    words = [
        cd(1, 5, 6, 3),  # before any TIME_HIGH: upper bits are 0
        time_high(0x0FFF_FFF0),
        cd(0, 100, 200, 10),
        trigger(31, 1, 11),
        cd(1, 700, 10, 12),  # outside 640 x 480
        time_high(0x0000_0002),  # drop of more than half the range: wrap
        cd(1, 1, 2, 0),
        time_high(0x0000_0001),  # small drop: kept, and the next stamp counts as backwards
        cd(0, 3, 4, 5),
        0xE000_0001,
        0xF123_4567,
        0x2000_0000,
        0x7FFF_FFFF,
        trigger(2, 0, 63),
    ]
    ev, tr, counters, now = reference_decode(words, width=640, height=480)
    wrap = EVT2_TIME_PERIOD_US
    assert ev.tolist() == [
        (5, 6, 1, 3),
        (100, 200, 0, (0x0FFF_FFF0 << 6) + 10),
        (1, 2, 1, wrap + (2 << 6)),
        (3, 4, 0, wrap + (1 << 6) + 5),
    ]
    assert tr.tolist() == [((0x0FFF_FFF0 << 6) + 11, 31, 1), (wrap + (1 << 6) + 63, 2, 0)]
    assert (counters.time_wraps, counters.time_backwards, counters.out_of_bounds) == (1, 1, 1)
    assert (counters.other_words, counters.continued_words, counters.unknown_words) == (1, 1, 2)
    data = to_bytes(words)
    unaligned = np.frombuffer(b"\x00" + data, dtype=np.uint8)[1:]
    np.testing.assert_array_equal(Evt2Decoder(width=640, height=480).decode(unaligned).events, ev)
    for step in (len(data), 4, 1):  # whole, word by word, byte by byte
        got_ev, got_tr, decoder = decode_in_chunks(
            data, range(step, len(data), step), width=640, height=480
        )
        np.testing.assert_array_equal(got_ev, ev)
        np.testing.assert_array_equal(got_tr, tr)
        assert decoder.counters == counters
        assert decoder.current_time_us == now == wrap + (1 << 6) + 63


word_types = st.sampled_from([0x0, 0x1, 0x0, 0x1, 0x8, 0x8, 0xA, 0xE, 0xF, 0x2, 0x5, 0xB])
words_strategy = st.lists(
    st.tuples(word_types, st.integers(0, 0x0FFF_FFFF)).map(lambda tp: tp[0] << 28 | tp[1]),
    max_size=200,
)


@settings(max_examples=60, deadline=None)
@given(words=words_strategy, cuts=st.lists(st.integers(0, 800), max_size=30))
def test_random_word_streams_match_reference(words, cuts):
    data = to_bytes(words)
    ev, tr, counters, now = reference_decode(words, width=1000, height=700)
    got_ev, got_tr, decoder = decode_in_chunks(
        data, [c for c in cuts if c <= len(data)], width=1000, height=700
    )
    np.testing.assert_array_equal(got_ev, ev)
    np.testing.assert_array_equal(got_tr, tr)
    assert decoder.counters == counters
    assert decoder.current_time_us == now


# =============================================================================== fuzzing


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=2000), cut=st.integers(0, 2000))
def test_random_bytes_never_raise(data, cut):
    decoder = Evt2Decoder(width=640, height=480)
    parts = [decoder.decode(data[:cut]), decoder.decode(data[cut:])]
    c = decoder.counters
    words = np.frombuffer(data[: len(data) // 4 * 4], dtype="<u4")
    assert_counters_consistent(c, len(words))
    assert c.cd_events + c.out_of_bounds == np.count_nonzero((words >> 28) <= 1)
    assert sum(len(p.events) for p in parts) == c.cd_events
    for p in parts:
        assert p.events.dtype == EVENT_DTYPE and p.triggers.dtype == TRIGGER_DTYPE
        assert bool(np.all(p.events["x"] < 640)) and bool(np.all(p.events["y"] < 480))


@pytest.mark.parametrize("bad", ["abc", 3.5, np.zeros(2, dtype=np.int64)])
def test_decode_rejects_non_buffers(bad):
    with pytest.raises(EventDecodeError, match=repr(type(bad).__name__) + "|int64"):
        Evt2Decoder().decode(bad)


def test_current_time_follows_last_time_word():
    decoder = Evt2Decoder()
    decoder.decode(to_bytes([time_high(5), cd(1, 1, 1, 7)]))
    assert decoder.current_time_us == (5 << 6) + 7
    decoder.decode(to_bytes([cd(1, 1, 1, 9), time_high(6)]))
    assert decoder.current_time_us == 6 << 6  # a TIME_HIGH starts its 64 us slot at 0


def test_reset_and_geometry_errors():
    decoder = Evt2Decoder()
    decoder.decode(to_bytes([time_high(5), cd(1, 1, 1, 1)])[:-1])
    assert decoder.buffered_bytes == 3
    assert decoder.counters.words == 1
    decoder.reset()
    assert decoder.counters == DecoderCounters()
    assert (decoder.buffered_bytes, decoder.current_time_us) == (0, 0)
    with pytest.raises(EventDecodeError, match="-1"):
        Evt2Decoder(width=-1)
