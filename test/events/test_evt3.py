"""EVT 3.0 codec beyond the decoder contract: the reference recordings, the encoder, decode_until,
the .raw reader.

What every EVT3 decoder must do (and this one as the reference) is in test_decoder_contract.py.
The recordings live in ``<repo>/../shared/data`` (not part of the repository); tests that need
them skip with the reason when that folder is absent.
"""

from __future__ import annotations

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
from evseg_ros.events.evt3_format import TIME_PERIOD_US
from evseg_ros.events.types import EVENT_DTYPE, TRIGGER_DTYPE

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


def words_to_bytes(words) -> bytes:
    return np.asarray(words, dtype="<u2").tobytes()


def assert_counters_consistent(c: DecoderCounters, n_words: int) -> None:
    assert c.words == n_words
    assert c.categorised_words() == c.words
    assert c.triggers == c.trigger_words


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
    span = 2 * TIME_PERIOD_US
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
