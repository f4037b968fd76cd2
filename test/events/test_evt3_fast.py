"""What the compiled EVT3 decoder has beyond the decoder contract: fused frames, saved state.

The numpy :class:`Evt3Decoder` and :class:`EventFrameBuilder` define the semantics; everything
here checks bit-identical events, triggers, counters and frames (the decoding itself, as for
every decoder, is checked in test_decoder_contract.py). The recordings live in
``<repo>/../shared/data`` (not part of the repository); tests that need them skip with the
reason when that folder is absent, and the whole module skips when numba is not installed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evseg_ros.events import evt3_fast
from evseg_ros.events.errors import EventDecodeError
from evseg_ros.events.event_frame import EventFrameBuilder, build_pixel_lut
from evseg_ros.events.evt3 import Evt3Decoder, Evt3EncoderState, encode_evt3, read_raw_file
from evseg_ros.events.types import EVENT_DTYPE, TRIGGER_DTYPE
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


def word_bytes(words) -> bytes:
    return np.asarray(words, dtype="<u2").tobytes()


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


def fused_accumulator(calibration: RigCalibration) -> evt3_fast.FastFrameAccumulator:
    """The fused path's frames, with a builder of its own (whose counter it adds to)."""
    return evt3_fast.FastFrameAccumulator(EventFrameBuilder(calibration))


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


@needs_sample
def test_saved_state_replays_a_packet_exactly():
    """A packet decoded again from the state saved in front of it gives the same events, and
    the same fused frame, as the first time: what the accumulator's packet buffer relies on."""
    _, payload = read_raw_file(SAMPLE_RAW)
    data = bytes(payload)
    packets = [data[i : i + 20_001] for i in range(0, len(data), 20_001)]  # odd: bytes held
    decoder = FastEvt3Decoder()
    first_pass = []
    for packet in packets:
        state = decoder.save_state()
        first_pass.append((packet, state, decoder.decode(packet), decoder.current_time_us))
    calibration = rig((1280, 720), (640, 480), [[0.5, 0, 0], [0, 0.6, 9], [0, 0, 1]])
    accumulator = fused_accumulator(calibration)
    reference = EventFrameBuilder(calibration)
    replay = FastEvt3Decoder()
    for packet, state, decoded, time_after in reversed(first_pass):  # any order
        replay.restore_state(state)
        again = replay.decode(packet)
        np.testing.assert_array_equal(again.events, decoded.events)
        np.testing.assert_array_equal(again.triggers, decoded.triggers)
        assert replay.current_time_us == time_after
        assert replay.counters.cd_events == len(decoded.events)  # counted since the restore
        t0, t1 = int(decoded.events["t"][0]), int(decoded.events["t"][-1])
        replay.restore_state(state)
        frame = accumulator.new_frame()
        accumulator.accumulate(replay, packet, frame, t0, t1)
        want = reference.build(decoded.events[decoded.events["t"] < t1], t0, t1)
        np.testing.assert_array_equal(frame, want)
    assert accumulator.builder.unmapped_events == reference.unmapped_events > 0


# ========================================================================= API and inputs


def test_decode_until_rejects_a_limit_that_is_not_an_int():
    with pytest.raises(EventDecodeError, match="'soon'"):
        FastEvt3Decoder().decode_until(b"", "soon")  # type: ignore[arg-type]


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
    accumulator = fused_accumulator(calibration)
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
    accumulator = fused_accumulator(calibration)
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
    accumulator = fused_accumulator(sim_calibration)
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
