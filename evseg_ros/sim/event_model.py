"""DVS event generation from a sequence of luminance images.

Model (ESIM/v2e-like, fully vectorised):

* Each pixel responds to log intensity ``L = log(eps + luminance)`` and remembers a reference
  level. Whenever ``L`` moves one contrast threshold away from it, the pixel emits an event
  (ON = brighter, polarity 1) and the reference moves by that threshold. Thresholds differ per
  pixel (Gaussian mismatch, fixed per seed), as on a real sensor.
* Luminance is rendered every ``substep_us`` on a fixed time grid; in between, ``L`` is taken
  as linear in time, so each threshold crossing gets an interpolated time stamp and a large
  change gives several events per pixel per step.
* After an event a pixel is blind for ``refractory_us``; crossings in that window are lost
  (the reference still follows the signal, so no burst follows the dead time).
* Background activity: Poisson noise events, uniform over pixels and time, polarity 50/50,
  also subject to the refractory period.
* A change of *condition* (the lighting switching in a "cycle" run) is a scene cut, not a
  flash: references are shifted by the change of log level so no global burst is emitted.

Determinism: grid steps, per-pixel thresholds and the noise of each step are all derived from
the seed and absolute grid times, and events of a step are held back until the caller's time
passes them. So the events of ``[a, c)`` are *identical* whether ``advance_to(c)`` is called
once or ``advance_to(b)`` first: chunking only changes how the output is split.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np

from evseg_ros.events.types import EVENT_DTYPE, TRIGGER_DTYPE, empty_events, empty_triggers

#: luminance(t_us, condition) -> (H, W) float array of linear luminance.
LuminanceFn = Callable[[int, Hashable], np.ndarray]


@dataclass(frozen=True)
class EventModelParams:
    """Sensor constants of the simulated event camera."""

    contrast_threshold_on: float = 0.2
    contrast_threshold_off: float = 0.2
    threshold_sigma: float = 0.03  # per-pixel mismatch (std of the thresholds)
    refractory_us: int = 500
    noise_rate_hz: float = 0.1  # background events per pixel per second
    substep_us: int = 5_000  # luminance is sampled on this grid
    log_eps: float = 1e-4  # in luminance units: below this the log response flattens
    min_threshold: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        if self.substep_us <= 0:
            msg = f"substep_us must be positive, got {self.substep_us!r}"
            raise ValueError(msg)
        if self.refractory_us < 0 or self.noise_rate_hz < 0:
            msg = "refractory_us and noise_rate_hz must be non-negative"
            raise ValueError(msg)
        if min(self.contrast_threshold_on, self.contrast_threshold_off) <= 0:
            msg = "contrast thresholds must be positive"
            raise ValueError(msg)
        if self.log_eps <= 0:
            msg = f"log_eps must be positive, got {self.log_eps!r}"
            raise ValueError(msg)


_NO_EVENT_US = -(1 << 40)  # "last event" of a pixel that never fired
_STREAM_THRESHOLDS = 0x7E51
_STREAM_NOISE = 0x5EED


class EventSimulator:
    """Stateful event stream of one simulated event camera.

    Args:
        luminance: Renders linear luminance at a time under a condition.
        shape: ``(height, width)`` of the sensor.
        params: Sensor constants.
        t_start_us: Time of the first luminance sample; events start after it.
        condition: Condition (e.g. lighting) at a time; a change is treated as a scene cut.
        noise_factor: Background-activity multiplier per condition (night is noisier).
        trigger_times: ``(t0, t1) -> int64`` rising-edge times in ``[t0, t1)``.
        trigger_pulse_us: Width of each trigger pulse (the falling edge follows by this much).
    """

    def __init__(
        self,
        luminance: LuminanceFn,
        shape: tuple[int, int],
        params: EventModelParams = EventModelParams(),
        *,
        t_start_us: int = 0,
        condition: Callable[[int], Hashable] | None = None,
        noise_factor: Callable[[Hashable], float] | None = None,
        trigger_times: Callable[[int, int], np.ndarray] | None = None,
        trigger_pulse_us: int = 200,
    ) -> None:
        self._luminance = luminance
        self._height, self._width = int(shape[0]), int(shape[1])
        self._params = params
        self._condition = condition or (lambda _t: None)
        self._noise_factor = noise_factor or (lambda _c: 1.0)
        self._trigger_times = trigger_times
        self._pulse_us = int(trigger_pulse_us)
        self._time = int(t_start_us)
        self._grid = int(t_start_us)
        rng = np.random.default_rng([params.seed & 0xFFFFFFFF, _STREAM_THRESHOLDS])
        n = self._height * self._width
        sigma = params.threshold_sigma
        self._c_on = np.maximum(params.contrast_threshold_on + sigma * rng.standard_normal(n),
                                params.min_threshold).astype(np.float32)
        self._c_off = np.maximum(params.contrast_threshold_off + sigma * rng.standard_normal(n),
                                 params.min_threshold).astype(np.float32)
        self._cond = self._condition(self._grid)
        self._log = self._log_luminance(self._grid, self._cond)
        self._ref = self._log.copy()
        self._last = np.full(n, _NO_EVENT_US, np.int64)
        self._pending: list[np.ndarray] = []

    @property
    def time_us(self) -> int:
        """End of the interval covered by the last ``advance_to`` (start time initially)."""
        return self._time

    @property
    def shape(self) -> tuple[int, int]:
        """Sensor ``(height, width)``."""
        return self._height, self._width

    def advance_to(self, t_us: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the events and trigger edges in ``[time_us, t_us)`` and move time forward.

        Luminance is sampled on a fixed grid (from ``t_start_us`` in ``substep_us`` steps)
        regardless of the call pattern, so splitting an interval into several calls returns
        exactly the same events as one call.

        Returns:
            ``(events, triggers)``: ``EVENT_DTYPE`` sorted by ``t``; ``TRIGGER_DTYPE`` sorted
            by ``t`` (rising edge ``value=1`` at each frame start, falling edge ``value=0`` a
            pulse width later, both on channel 0).
        """
        t_us = int(t_us)
        if t_us < self._time:
            msg = f"advance_to({t_us}) would go back in time (now at {self._time} us)"
            raise ValueError(msg)
        while self._grid < t_us:
            self._step()
        events = self._take(t_us)
        triggers = self._triggers(self._time, t_us)
        self._time = t_us
        return events, triggers

    # -- internals ------------------------------------------------------------------------------
    def _log_luminance(self, t_us: int, cond: Hashable) -> np.ndarray:
        lum = np.asarray(self._luminance(t_us, cond), dtype=np.float32)
        if lum.shape != (self._height, self._width):
            msg = f"luminance has shape {lum.shape}, expected {(self._height, self._width)}"
            raise ValueError(msg)
        return np.log(lum.ravel() + np.float32(self._params.log_eps))

    def _take(self, t_us: int) -> np.ndarray:
        if not self._pending:
            return empty_events()
        events = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        cut = int(np.searchsorted(events["t"], t_us, side="left"))
        self._pending = [events[cut:]] if cut < events.size else []
        return events[:cut]

    def _triggers(self, t0: int, t1: int) -> np.ndarray:
        if self._trigger_times is None or t1 <= t0:
            return empty_triggers()
        rising = np.asarray(self._trigger_times(t0, t1), np.int64)
        falling = np.asarray(self._trigger_times(t0 - self._pulse_us, t1 - self._pulse_us),
                             np.int64) + self._pulse_us
        out = np.empty(rising.size + falling.size, TRIGGER_DTYPE)
        out["t"] = np.concatenate([rising, falling])
        out["channel"] = 0
        out["value"] = np.concatenate([np.ones(rising.size, np.uint8),
                                       np.zeros(falling.size, np.uint8)])
        return out[np.argsort(out["t"], kind="stable")]

    def _step(self) -> None:
        """Process one grid interval ``[g, g + dt]`` and queue its events."""
        p = self._params
        t0, dt = self._grid, p.substep_us
        t1 = t0 + dt
        cond = self._condition(t1)
        if cond != self._cond:
            # Scene cut: re-express the reference in the new condition's log levels.
            log0 = self._log_luminance(t0, cond)
            self._ref += log0 - self._log
            self._log = log0
            self._cond = cond
        log1 = self._log_luminance(t1, cond)
        pix, t_ev, pol = self._crossings(self._log, log1, t0, dt)
        rate = p.noise_rate_hz * float(self._noise_factor(cond))
        if rate > 0:
            pix, t_ev, pol = self._add_noise((pix, t_ev, pol), t0, dt, rate)
        order = np.argsort(t_ev, kind="stable")
        events = np.empty(order.size, EVENT_DTYPE)
        pix = pix[order]
        events["x"] = pix % self._width
        events["y"] = pix // self._width
        events["p"] = pol[order]
        events["t"] = t_ev[order]
        if events.size:
            self._pending.append(events)
        self._log = log1
        self._grid = t1

    def _crossings(
        self, log0: np.ndarray, log1: np.ndarray, t0: int, dt: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Threshold crossings between two samples, thinned by the refractory period.

        For a pixel crossing ``n`` levels ``ref + s*k*C`` (``s`` = +1 ON, -1 OFF) the crossing
        times are an arithmetic progression ``A + k*B`` inside the step, so the events kept
        after a refractory period ``R`` are simply every ``m``-th one from the first allowed,
        with ``m = ceil(R / B)``: no per-event loop is needed.
        """
        p = self._params
        diff = log1 - self._ref
        n_on = np.floor(np.maximum(diff, 0.0) / self._c_on)
        n_off = np.floor(np.maximum(-diff, 0.0) / self._c_off)
        active = np.flatnonzero((n_on + n_off) > 0)
        if active.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint8)
        on = n_on[active] > 0
        n = np.where(on, n_on[active], n_off[active]).astype(np.int64)
        sign = np.where(on, 1.0, -1.0)
        thr = np.where(on, self._c_on[active], self._c_off[active]).astype(np.float64)
        ref = self._ref[active].astype(np.float64)
        l0 = log0[active].astype(np.float64)
        d_log = log1[active].astype(np.float64) - l0
        d_log = np.where(np.abs(d_log) < 1e-12, sign * 1e-12, d_log)
        a = (ref - l0) / d_log * dt  # time of level "k = 0"
        b = sign * thr / d_log * dt  # time between successive levels (> 0)
        refr = float(p.refractory_us)
        eps = 1e-6  # keeps integer time stamps >= the refractory bound after flooring
        last_rel = (self._last[active] - t0).astype(np.float64)
        k0 = np.maximum(np.ceil((last_rel + refr + eps - a) / b), 1.0).astype(np.int64)
        stride = np.maximum(np.ceil((refr + eps) / b), 1.0).astype(np.int64) if refr > 0 else (
            np.ones(active.size, np.int64))
        count = np.where(k0 <= n, (n - k0) // stride + 1, 0)
        # All crossings move the reference, emitted or not.
        self._ref[active] = (ref + sign * n * thr).astype(np.float32)
        fired = np.flatnonzero(count > 0)
        if fired.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint8)
        cnt = count[fired]
        rep = np.repeat(fired, cnt)
        j = np.arange(rep.size) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        k = k0[rep] + j * stride[rep]
        t_rel = np.clip(np.floor(a[rep] + k * b[rep]), 0, dt).astype(np.int64)
        last_k = k0[fired] + (cnt - 1) * stride[fired]
        self._last[active[fired]] = t0 + np.clip(
            np.floor(a[fired] + last_k * b[fired]), 0, dt).astype(np.int64)
        return active[rep], t0 + t_rel, on[rep].astype(np.uint8)

    def _add_noise(
        self, signal: tuple[np.ndarray, np.ndarray, np.ndarray], t0: int, dt: int, rate: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Add background events, dropping any that would break a pixel's refractory period.

        ``signal`` is this step's ``(pixel, time, polarity)``, grouped by pixel and time-sorted
        within a pixel, as ``_crossings`` returns it.
        """
        pix, t_ev, pol = signal
        n_pix = self._height * self._width
        rng = np.random.default_rng([self._params.seed & 0xFFFFFFFF, _STREAM_NOISE,
                                     (t0 + (1 << 62)) & ((1 << 64) - 1)])
        count = int(rng.poisson(rate * n_pix * dt * 1e-6))
        if count == 0:
            return pix, t_ev, pol
        n_pix_ = rng.integers(0, n_pix, count)
        n_t = t0 + rng.integers(0, dt, count)
        n_pol = rng.integers(0, 2, count).astype(np.uint8)
        refr = self._params.refractory_us
        ok = n_t >= self._last[n_pix_] + refr
        # Against this step's signal events at the same pixel (grouped by pixel, time-sorted).
        if pix.size:
            key = pix * (1 << 32) + (t_ev - t0)
            n_key = n_pix_ * (1 << 32) + (n_t - t0)
            pos = np.searchsorted(key, n_key)
            before = np.clip(pos - 1, 0, key.size - 1)
            after = np.clip(pos, 0, key.size - 1)
            for nb in (before, after):
                clash = (pix[nb] == n_pix_) & (np.abs(t_ev[nb] - n_t) < refr)
                ok &= ~clash
        # Against each other (rare): drop both of a too-close pair.
        order = np.lexsort((n_t, n_pix_))
        sp, st = n_pix_[order], n_t[order]
        close = (sp[1:] == sp[:-1]) & (st[1:] - st[:-1] < refr)
        bad = np.zeros(count, bool)
        bad[order[1:][close]] = True
        bad[order[:-1][close]] = True
        ok &= ~bad
        n_pix_, n_t, n_pol = n_pix_[ok], n_t[ok], n_pol[ok]
        np.maximum.at(self._last, n_pix_, n_t)
        return (np.concatenate([pix, n_pix_]), np.concatenate([t_ev, n_t]),
                np.concatenate([pol, n_pol]))


__all__ = ["EventModelParams", "EventSimulator", "LuminanceFn"]
