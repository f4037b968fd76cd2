"""DVS model on synthetic luminance: polarity, counts, timing, refractory, noise, chunking."""

from __future__ import annotations

import numpy as np
import pytest

from evseg_ros.events.types import EVENT_DTYPE, TRIGGER_DTYPE
from evseg_ros.sim.event_model import EventModelParams, EventSimulator

H, W = 20, 30


def quiet(**kw) -> EventModelParams:
    """Noise-free, mismatch-free sensor unless overridden."""
    base = {"threshold_sigma": 0.0, "noise_rate_hz": 0.0, "refractory_us": 0}
    base.update(kw)
    return EventModelParams(**base)


def ramp(rate_per_s: float, columns: slice = slice(None)):
    """Luminance growing as exp(rate * t) on ``columns`` and constant elsewhere."""

    def lum(t_us: int, _cond) -> np.ndarray:
        out = np.full((H, W), 0.5, np.float32)
        out[:, columns] = 0.5 * np.exp(rate_per_s * t_us * 1e-6)
        return out

    return lum


def by_pixel(events: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
    out: dict[tuple[int, int], list[int]] = {}
    for x, y, t in zip(events["x"].tolist(), events["y"].tolist(), events["t"].tolist(),
                       strict=True):
        out.setdefault((x, y), []).append(t)
    return {k: np.asarray(v) for k, v in out.items()}


def test_brightening_gives_on_events_only_where_it_brightens() -> None:
    sim = EventSimulator(ramp(5.0, slice(0, W // 2)), (H, W), quiet())
    events, triggers = sim.advance_to(210_000)  # log change 1.05 -> 5 crossings of 0.2
    assert events.dtype == EVENT_DTYPE and triggers.dtype == TRIGGER_DTYPE
    assert triggers.size == 0
    assert events.size > 0
    assert np.all(events["p"] == 1)
    assert np.all(events["x"] < W // 2)
    counts = np.bincount(events["y"].astype(int) * W + events["x"], minlength=H * W)
    counts = counts.reshape(H, W)[:, : W // 2]
    assert np.all(counts == 5)
    # The k-th crossing happens when the log change reaches k * 0.2, i.e. at k * 40 ms (up to
    # the log offset eps, which slows the log ramp by eps / luminance = 0.02 %).
    times = by_pixel(events)[(3, 4)]
    np.testing.assert_allclose(times, [40_000, 80_000, 120_000, 160_000, 200_000], rtol=5e-4)


def test_darkening_gives_off_events() -> None:
    sim = EventSimulator(ramp(-5.0), (H, W), quiet())
    events, _ = sim.advance_to(100_000)
    assert events.size == H * W * 2
    assert np.all(events["p"] == 0)


def test_large_change_gives_several_interpolated_events_per_step() -> None:
    """A 1.1 log step inside one 5 ms substep: 5 events spread evenly across it."""
    sim = EventSimulator(ramp(220.0), (H, W), quiet(substep_us=5_000))
    events, _ = sim.advance_to(5_000)
    times = by_pixel(events)[(0, 0)]
    np.testing.assert_allclose(times, np.arange(1, 6) * 0.2 / 220.0 * 1e6, atol=2)
    assert events["t"].min() >= 0 and events["t"].max() < 5_000


def test_refractory_period_thins_fast_changes() -> None:
    params = quiet(refractory_us=1_000)
    sim = EventSimulator(ramp(400.0), (H, W), params)  # a crossing every 500 us
    events, _ = sim.advance_to(20_000)
    for times in by_pixel(events).values():
        assert np.all(np.diff(times) >= 1_000)
        assert 18 <= times.size <= 21  # about every second crossing survives
    no_refr = EventSimulator(ramp(400.0), (H, W), quiet()).advance_to(20_000)[0]
    assert no_refr.size > 1.8 * events.size


def test_threshold_mismatch_spreads_counts_per_pixel() -> None:
    events, _ = EventSimulator(ramp(5.0), (H, W), quiet(threshold_sigma=0.03)).advance_to(
        1_000_000)
    counts = np.bincount(events["y"].astype(int) * W + events["x"], minlength=H * W)
    assert counts.std() > 0.5
    assert abs(counts.mean() - 25) < 2.0


def test_background_noise_rate_polarity_and_refractory() -> None:
    params = EventModelParams(noise_rate_hz=20.0, refractory_us=500, seed=3)
    static = lambda t, c: np.full((H, W), 0.3, np.float32)  # noqa: E731
    events, _ = EventSimulator(static, (H, W), params).advance_to(2_000_000)
    expected = 20.0 * H * W * 2.0
    assert abs(events.size - expected) < 5 * np.sqrt(expected) + 0.02 * expected
    assert 0.45 < events["p"].mean() < 0.55
    assert np.all(np.diff(events["t"]) >= 0)
    for times in by_pixel(events).values():
        assert np.all(np.diff(times) >= 500)


def test_refractory_holds_between_noise_and_signal_events() -> None:
    params = EventModelParams(noise_rate_hz=200.0, refractory_us=2_000, threshold_sigma=0.0)
    events, _ = EventSimulator(ramp(30.0), (H, W), params).advance_to(500_000)
    assert events.size > 0
    for times in by_pixel(events).values():
        assert np.all(np.diff(times) >= 2_000)


def test_chunked_advance_gives_identical_events() -> None:
    params = EventModelParams(noise_rate_hz=5.0, seed=11)
    lum = lambda t, c: (0.2 + 0.1 * np.sin(  # noqa: E731
        np.arange(H * W).reshape(H, W) * 0.3 + t * 2e-5)).astype(np.float32)
    whole, _ = EventSimulator(lum, (H, W), params).advance_to(300_000)
    sim = EventSimulator(lum, (H, W), params)
    parts = [sim.advance_to(t)[0] for t in (1, 7_777, 7_777, 150_003, 212_000, 300_000)]
    assert sim.time_us == 300_000
    chunked = np.concatenate(parts)
    assert whole.size > 1000
    assert np.array_equal(whole, chunked)
    for part, (lo, hi) in zip(parts, [(0, 1), (1, 7_777), (7_777, 7_777), (7_777, 150_003),
                                      (150_003, 212_000), (212_000, 300_000)], strict=True):
        assert np.all((part["t"] >= lo) & (part["t"] < hi))


def test_same_seed_same_events_other_seed_differs() -> None:
    lum = ramp(3.0)
    a = EventSimulator(lum, (H, W), EventModelParams(seed=1)).advance_to(200_000)[0]
    b = EventSimulator(lum, (H, W), EventModelParams(seed=1)).advance_to(200_000)[0]
    c = EventSimulator(lum, (H, W), EventModelParams(seed=2)).advance_to(200_000)[0]
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_condition_change_is_a_scene_cut_not_a_burst() -> None:
    """Lighting switching scales luminance 100x; no global burst of events may follow."""

    def lum(t_us: int, cond) -> np.ndarray:
        scale = 1.0 if cond == "day" else 0.01
        return np.full((H, W), 0.4 * scale, np.float32)

    cond = lambda t: "day" if t < 50_000 else "night"  # noqa: E731
    sim = EventSimulator(lum, (H, W), quiet(), condition=cond)
    events, _ = sim.advance_to(100_000)
    assert events.size == 0
    # Without the condition hook the same luminance drop is a real change: a burst of OFF.
    drop = lambda t, _c: lum(t, cond(t))  # noqa: E731
    events, _ = EventSimulator(drop, (H, W), quiet()).advance_to(100_000)
    assert events.size >= 20 * H * W and np.all(events["p"] == 0)


def test_noise_factor_follows_condition() -> None:
    params = EventModelParams(noise_rate_hz=10.0, seed=5)
    static = lambda t, c: np.full((H, W), 0.3, np.float32)  # noqa: E731
    loud = EventSimulator(static, (H, W), params, condition=lambda t: "night",
                          noise_factor=lambda c: 4.0 if c == "night" else 1.0)
    quiet_sim = EventSimulator(static, (H, W), params)
    n_loud = loud.advance_to(1_000_000)[0].size
    n_quiet = quiet_sim.advance_to(1_000_000)[0].size
    assert 3.0 < n_loud / n_quiet < 5.0


def test_triggers_come_as_rising_and_falling_pairs() -> None:
    period = 100_000

    def times(t0: int, t1: int) -> np.ndarray:
        k0, k1 = -(-t0 // period), -(-t1 // period)
        return np.arange(k0, max(k0, k1), dtype=np.int64) * period

    static = lambda t, c: np.ones((H, W), np.float32)  # noqa: E731
    sim = EventSimulator(static, (H, W), quiet(), trigger_times=times, trigger_pulse_us=300)
    first = sim.advance_to(100_100)[1]
    second = sim.advance_to(350_000)[1]
    trig = np.concatenate([first, second])
    assert trig["t"].tolist() == [0, 300, 100_000, 100_300, 200_000, 200_300, 300_000, 300_300]
    assert trig["value"].tolist() == [1, 0] * 4
    assert np.all(trig["channel"] == 0)
    assert first["t"].tolist() == [0, 300, 100_000]  # the falling edge lands in the next call


def test_going_back_in_time_is_rejected() -> None:
    sim = EventSimulator(ramp(1.0), (H, W), quiet(), t_start_us=1_000)
    assert sim.time_us == 1_000
    sim.advance_to(5_000)
    with pytest.raises(ValueError, match="back in time"):
        sim.advance_to(4_000)


def test_wrong_luminance_shape_is_reported() -> None:
    with pytest.raises(ValueError, match="shape"):
        EventSimulator(lambda t, c: np.ones((3, 3)), (H, W), quiet())
