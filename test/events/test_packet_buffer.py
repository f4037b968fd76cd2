"""The packet buffer keeps EventBuffer's rules and gives its windows and frames, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from evseg_ros.events import evt3_fast
from evseg_ros.events.event_frame import EventFrameBuilder
from evseg_ros.events.evt3 import Evt3EncoderState, encode_evt3
from evseg_ros.events.packet_buffer import PacketEventBuffer
from evseg_ros.events.types import EVENT_DTYPE
from evseg_ros.events.window import EventBuffer

pytestmark = pytest.mark.skipif(
    not evt3_fast.available(), reason=f"numba is not usable: {evt3_fast.UNAVAILABLE_REASON}"
)


def _packets(seed: int, n_packets: int) -> list[bytes]:
    """2 ms packets of random events on the simulated rig's 400x225 sensor (some off it).

    Every fifth packet has a clock glitch in it: an event 5 us ahead of the clock, then the
    clock as it was, so that its events are not in time order.
    """
    rng = np.random.default_rng(seed)
    state = Evt3EncoderState()
    packets = []
    for k in range(n_packets):
        events = np.zeros(int(rng.integers(0, 400)), dtype=EVENT_DTYPE)
        events["t"] = np.sort(rng.integers(k * 2_000, (k + 1) * 2_000, events.size))
        events["x"] = rng.integers(0, 420, events.size)
        events["y"] = rng.integers(0, 240, events.size)
        events["p"] = rng.integers(0, 2, events.size)
        words = np.frombuffer(encode_evt3(events, state=state), dtype="<u2")
        lows = np.flatnonzero((words >> 12) == 0x6)
        if k % 5 == 4 and lows.size > 2:
            low = int(words[lows[lows.size // 2]])
            glitch = [0x6000 | min((low & 0xFFF) + 5, 0xFFF), 0x2805, low]
            words = np.insert(words, lows[lows.size // 2] + 1, glitch)
        packets.append(words.astype("<u2").tobytes())
    return packets


@pytest.mark.parametrize("seed", [1, 2])
def test_packet_buffer_matches_the_event_buffer(sim_calibration, seed):
    packets = _packets(seed, 120)
    # a packet sent again later: its events are older than the newest held, dropped
    packets.insert(60, packets[50])
    camera = sim_calibration.event_camera
    decoder = evt3_fast.FastEvt3Decoder(width=camera.width, height=camera.height)
    builder = EventFrameBuilder(sim_calibration)
    frames = evt3_fast.FastFrameAccumulator(EventFrameBuilder(sim_calibration))
    kept = PacketEventBuffer(frames, max_span_us=30_000)  # overflow trims cut into packets
    reference = EventBuffer(max_span_us=30_000)
    rng = np.random.default_rng(seed)
    for data in packets:
        state = decoder.save_state()
        events = decoder.decode(data).events
        kept.add_packet(events, data, state)
        reference.add(events)
        assert (len(kept), kept.latest_time_us) == (len(reference), reference.latest_time_us)
        assert (kept.dropped_overflow, kept.dropped_out_of_order) == (
            reference.dropped_overflow, reference.dropped_out_of_order
        )
        if reference.latest_time_us is None:
            continue
        t1 = reference.latest_time_us - int(rng.integers(-100, 8_000))
        t0 = t1 - int(rng.choice([1, 700, 5_000, 40_000]))
        window = reference.window(t0, t1)
        np.testing.assert_array_equal(kept.window(t0, t1), window)
        np.testing.assert_array_equal(kept.last(t0, t1, 50), reference.last(t0, t1, 50))
        frame, count = kept.event_frame(t0, t1)
        np.testing.assert_array_equal(frame, builder.build(window, t0, t1))
        assert count == len(window)
        assert frames.builder.unmapped_events == builder.unmapped_events
        if rng.random() < 0.3:
            kept.discard_before(t0)
            reference.discard_before(t0)
    assert reference.dropped_overflow > 0 and reference.dropped_out_of_order > 0
    assert decoder.counters.time_backwards > 0
