"""The live simulated rig never blocks its caller: bounded work per poll, skips counted."""

from __future__ import annotations

import time

from evseg_ros.events.evt3 import Evt3Decoder
from evseg_ros.sim import CoaxialRigSim, SimConfig
from evseg_ros.sources import SimEventSource

EPOCH = 1_000_000_000_000


def test_far_behind_the_simulator_skips_ahead_instead_of_catching_up(sim_calibration):
    rig = CoaxialRigSim(sim_calibration, SimConfig(seed=1, lighting="normal"))
    source = SimEventSource(rig, epoch_ns=EPOCH, packet_period_us=10_000, max_lag_us=200_000)
    (first,) = source.read(EPOCH + 50_000_000)  # 50 ms in: one packet of 5 periods
    assert first.time_base_ns < 50_000_000 and source.skips == 0
    start = time.perf_counter()
    packets = source.read(EPOCH + 60 * 1_000_000_000)  # a minute late
    elapsed = time.perf_counter() - start
    assert len(packets) == 1 and source.skips == 1
    # it skipped to one packet period before the present instead of simulating a minute
    assert 59_900_000 <= source.skipped_us <= 60_000_000
    assert packets[0].time_base_ns >= 59_900_000_000
    assert elapsed < 5.0  # a minute of events would take minutes here
    assert source.status_values() == {"sim_skipped_ms": source.skipped_us // 1000, "sim_skips": 1}
    decoder = Evt3Decoder()
    decoder.decode(first.data)
    decoded = decoder.decode(packets[0].data)  # the stream stays decodable across the jump
    assert len(decoded.events) > 0
    assert decoded.events["t"].min() >= 59_900_000


def test_a_poll_simulates_at_most_one_packet(sim_calibration):
    rig = CoaxialRigSim(sim_calibration, SimConfig(seed=1, lighting="normal"))
    source = SimEventSource(rig, epoch_ns=EPOCH, packet_period_us=10_000, max_lag_us=10**9)
    packets = source.read(EPOCH + 500_000_000)  # 50 periods due
    assert len(packets) == 1 and source.skips == 0
    assert rig_time_us(source) == SimEventSource.MAX_PERIODS_PER_PACKET * 10_000


def rig_time_us(source: SimEventSource) -> int:
    return source._simulator.time_us  # noqa: SLF001
