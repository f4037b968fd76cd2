"""Camera clock mapping: offset and drift from receive times with one-sided jitter."""

from __future__ import annotations

import numpy as np
import pytest

from evseg_ros.sources.camera_clock import CameraClockMapper

PERIOD_NS = 10_000_000
MIN_DELAY_NS = 300_000


def _errors(mapper: CameraClockMapper, drift: float, frames: int = 600, seed: int = 3):
    """Stamp error per frame against the true host time plus the minimum delay."""
    rng = np.random.default_rng(seed)
    errors = []
    for k in range(frames):
        host_ns = 5_000_000_000 + k * PERIOD_NS
        camera_ns = 123_000_000 + round(k * PERIOD_NS * (1 + drift))
        delay = MIN_DELAY_NS + round(rng.exponential(500_000))
        mapper.add(camera_ns, host_ns + delay)
        errors.append(mapper.to_host(camera_ns) - host_ns - MIN_DELAY_NS)
    return np.abs(np.asarray(errors[300:]))


@pytest.mark.parametrize("drift", [80e-6, -80e-6, 0.0])
def test_drift_tracking_keeps_stamps_on_the_delay_floor(drift):
    errors = _errors(CameraClockMapper(), drift)
    assert errors.max() < 40_000, errors.max()


def test_a_plain_minimum_lags_a_slow_camera_clock():
    """The same samples with drift fitting disabled: the envelope lags by drift x window."""
    plain = _errors(CameraClockMapper(min_span_ns=10**18), -80e-6)
    tracked = _errors(CameraClockMapper(), -80e-6)
    assert plain.max() > 250_000
    assert tracked.max() < plain.max() / 5


def test_before_enough_span_the_minimum_is_used():
    mapper = CameraClockMapper()
    assert mapper.to_host(0) is None and mapper.fit is None
    mapper.add(1_000, 10_500)
    mapper.add(2_000, 11_200)
    mapper.add(3_000, 12_100)
    assert mapper.fit.drift == 0.0
    assert mapper.to_host(4_000) == 4_000 + 9_100


def test_clock_restart_and_offset_jumps_restart_the_window():
    mapper = CameraClockMapper()
    for k in range(50):
        mapper.add(1_000_000_000 + k * PERIOD_NS, 9_000_000_000 + k * PERIOD_NS)
    mapper.add(5_000, 9_000_000_000 + 50 * PERIOD_NS)  # camera power-cycled: clock from ~0
    assert mapper.clock_jumps == 1
    assert mapper.to_host(5_000) == 9_000_000_000 + 50 * PERIOD_NS
    mapper.add(5_000 + PERIOD_NS, 9_000_000_000 + 51 * PERIOD_NS + 500_000_000)  # host step
    assert mapper.clock_jumps == 2


def test_window_must_hold_two_samples_per_bin():
    with pytest.raises(ValueError, match="window"):
        CameraClockMapper(window=10, bins=8)
