"""Simulated coaxial event + frame camera rig: the public facade of :mod:`evseg_ros.sim`.

One procedural world is rendered through both cameras' own intrinsics from one centre of
projection, so the calibration homography ``K_frame @ inv(K_event)`` maps event pixels onto
frame pixels exactly. The frame camera is hardware-triggered: each trigger pulse starts an
exposure and is also recorded by the event camera as an external-trigger edge, exactly as on
the real rig, so downstream code can pair frames with event slices by trigger time.

Frames are pure functions of ``(seed, t)`` (sensor noise is seeded from both); events come
from a stateful :class:`EventSimulator` that is itself deterministic per seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from evseg_ros.geometry.calibration import RigCalibration
from evseg_ros.sim.event_model import EventModelParams, EventSimulator
from evseg_ros.sim.lighting import (
    LIGHTING_MODES,
    Lighting,
    LightingParams,
    bloom,
    expose,
    glare_sun_direction,
    lighting_params,
    lighting_schedule,
    lighting_sequence,
)
from evseg_ros.sim.scene import Illumination, Renderer, World

_STREAM_FRAME_NOISE = 0xF4A3E


@dataclass(frozen=True)
class SimConfig:
    """Everything that shapes a simulated sequence; same config + seed = same data."""

    seed: int = 0
    frame_rate_hz: float = 10.0
    exposure_us: int = 10_000  # NORMAL exposure; NIGHT multiplies it (more motion blur)
    lighting: str = "cycle"  # "normal" | "night" | "glare" | "cycle" | e.g. "night,glare"
    lighting_period_s: float = 4.0  # for "cycle" and condition lists
    ego_speed_mps: float = 12.0
    num_vehicles: int = 6  # moving vehicles per ~100 m of road (both directions)
    num_persons: int = 4  # pedestrians per ~100 m (sidewalks, plus some crossing)
    blur_substeps: int = 4  # renders averaged over a NORMAL exposure (scaled with exposure)
    # event camera model
    contrast_threshold_on: float = 0.2
    contrast_threshold_off: float = 0.2
    threshold_sigma: float = 0.03  # per-pixel threshold mismatch (fixed per seed)
    refractory_us: int = 500
    noise_rate_hz: float = 0.1  # background activity per pixel per second
    event_substep_us: int = 5_000  # luminance sampling step of the event model
    # additions
    trigger_pulse_us: int = 200  # trigger pulse width (falling edge after the rising one)
    log_eps: float = 1e-4  # event model log offset, in scene luminance units
    night_exposure_factor: float = 4.0  # NIGHT exposure = this x exposure_us
    night_noise_factor: float = 3.0  # NIGHT background activity = this x noise_rate_hz
    max_blur_substeps: int = 16  # cap on renders per frame for long exposures

    def __post_init__(self) -> None:
        if self.frame_rate_hz <= 0:
            msg = f"frame_rate_hz must be positive, got {self.frame_rate_hz!r}"
            raise ValueError(msg)
        if self.exposure_us <= 0:
            msg = f"exposure_us must be positive, got {self.exposure_us!r}"
            raise ValueError(msg)
        if self.lighting not in LIGHTING_MODES:
            try:
                lighting_sequence(self.lighting)
            except ValueError:
                msg = (
                    f"lighting must be one of {LIGHTING_MODES} or a comma-separated list of "
                    f"conditions, got {self.lighting!r}"
                )
                raise ValueError(msg) from None
        if self.blur_substeps < 1 or self.max_blur_substeps < 1:
            msg = "blur_substeps and max_blur_substeps must be at least 1"
            raise ValueError(msg)
        if self.num_vehicles < 0 or self.num_persons < 0:
            msg = "num_vehicles and num_persons must be non-negative"
            raise ValueError(msg)

    def event_params(self) -> EventModelParams:
        """Return the event-camera part of the config, for :class:`EventSimulator`."""
        return EventModelParams(
            contrast_threshold_on=self.contrast_threshold_on,
            contrast_threshold_off=self.contrast_threshold_off,
            threshold_sigma=self.threshold_sigma,
            refractory_us=self.refractory_us,
            noise_rate_hz=self.noise_rate_hz,
            substep_us=self.event_substep_us,
            log_eps=self.log_eps,
            seed=self.seed,
        )


@dataclass(frozen=True)
class SimFrame:
    """One triggered frame with its ground truth."""

    t_us: int  # trigger time = exposure start, sensor us
    image: np.ndarray  # (H_f, W_f, 3) uint8 RGB as the frame camera sees it
    labels: np.ndarray  # (H_f, W_f) uint8 DSEC_11 ids at the exposure mid-point
    instances: np.ndarray  # (H_f, W_f) int32, 0 = stuff, >0 stable object id
    lighting: Lighting
    exposure_us: int


class CoaxialRigSim:
    """The simulated rig: triggered frames, event streams and ground-truth labels.

    Args:
        calibration: Both cameras' intrinsics; each is rendered through its own.
        config: Scene, lighting and sensor settings.
    """

    def __init__(self, calibration: RigCalibration, config: SimConfig = SimConfig()) -> None:
        self.calibration = calibration
        self.config = config
        self.world = World(config.seed, config.ego_speed_mps, config.num_vehicles,
                           config.num_persons)
        self._event_renderer = Renderer(self.world, calibration.event_camera)
        self._frame_renderer = Renderer(self.world, calibration.frame_camera)
        self._sun = glare_sun_direction(config.seed)
        self._params = {
            light: lighting_params(light, night_exposure_factor=config.night_exposure_factor,
                                   night_noise_factor=config.night_noise_factor)
            for light in Lighting
        }

    # -- timing --------------------------------------------------------------------------------
    def frame_period_us(self) -> int:
        """Trigger period in microseconds."""
        return round(1e6 / self.config.frame_rate_hz)

    def trigger_times(self, t_start_us: int, t_end_us: int) -> np.ndarray:
        """Frame start (trigger) times ``k * period`` in ``[t_start_us, t_end_us)``, int64."""
        period = self.frame_period_us()
        k0 = -(-int(t_start_us) // period)  # ceil division
        k1 = -(-int(t_end_us) // period)
        return np.arange(k0, max(k1, k0), dtype=np.int64) * period

    def lighting_at(self, t_us: int) -> Lighting:
        """Lighting condition at ``t_us`` (constant, or the seed's cycle)."""
        c = self.config
        return lighting_schedule(c.lighting, c.seed, c.lighting_period_s, int(t_us))

    def lighting_params(self, lighting: Lighting) -> LightingParams:
        """Scene light and frame exposure settings used for ``lighting``."""
        return self._params[lighting]

    def exposure_us(self, lighting: Lighting) -> int:
        """Frame exposure under ``lighting``, capped to leave 1 ms of every frame period."""
        exposure = round(self.config.exposure_us * self._params[lighting].exposure_factor)
        return max(1, min(exposure, self.frame_period_us() - 1000))

    # -- frames --------------------------------------------------------------------------------
    def render_frame(self, t_us: int) -> SimFrame:
        """Render the frame whose exposure starts at ``t_us``.

        Radiance is averaged over renders spread across the exposure (motion blur), the low
        sun's bloom is added under GLARE, then the sensor model exposes, adds seeded noise and
        saturates. Labels and instances are rendered at the exposure mid-point
        ``t_us + exposure_us // 2``.
        """
        t_us = int(t_us)
        light = self.lighting_at(t_us)
        params = self._params[light]
        exposure = self.exposure_us(light)
        c = self.config
        n_sub = max(1, min(c.max_blur_substeps,
                           round(c.blur_substeps * exposure / c.exposure_us)))
        acc = None
        for t_i in blur_substep_times(t_us, exposure, n_sub):
            rgb = self._frame_renderer.render(t_i, params.illumination, "rgb").radiance
            acc = rgb if acc is None else acc + rgb
        radiance = acc * np.float32(1.0 / n_sub)
        t_mid = t_us + exposure // 2
        if params.bloom > 0:
            glow = bloom(self._frame_renderer.world_rays(t_mid), self._sun, params.bloom)
            radiance += glow[..., None] * np.array([1.0, 0.93, 0.8], np.float32)
        rng = np.random.default_rng([c.seed & 0xFFFFFFFF, _STREAM_FRAME_NOISE,
                                     (t_us + (1 << 62)) & ((1 << 64) - 1)])
        image = expose(radiance, exposure, params.gain, rng)
        truth = self._frame_renderer.render(t_mid, params.illumination, "labels")
        return SimFrame(t_us=t_us, image=image, labels=truth.labels.copy(),
                        instances=truth.instances.copy(), lighting=light, exposure_us=exposure)

    def render_clean_frame(self, t_us: int) -> np.ndarray:
        """The frame of ``t_us`` as a well-exposed camera would have taken it: uint8 RGB.

        The scene at the exposure mid-point of :meth:`render_frame` (the instant its labels
        show), under NORMAL light and exposure, without motion blur, bloom or sensor noise.
        Training uses it where CACD uses EvLight's reconstruction from frame + events; it is
        privileged information a real rig never has (a reconstruction network only
        approximates it), so it may only feed training-time targets, never the network input.
        """
        t_us = int(t_us)
        t_mid = t_us + self.exposure_us(self.lighting_at(t_us)) // 2
        params = self._params[Lighting.NORMAL]
        radiance = self._frame_renderer.render(t_mid, params.illumination, "rgb").radiance
        return expose(radiance, self.exposure_us(Lighting.NORMAL), params.gain, None)

    def render_frame_labels(self, t_us: int) -> tuple[np.ndarray, np.ndarray]:
        """Labels and instances through the frame camera at exactly ``t_us`` (no exposure)."""
        truth = self._frame_renderer.render(int(t_us), self._illumination(int(t_us)), "labels")
        return truth.labels.copy(), truth.instances.copy()

    # -- event camera --------------------------------------------------------------------------
    def render_event_labels(self, t_us: int) -> np.ndarray:
        """DSEC_11 labels through the EVENT camera at exactly ``t_us``.

        To compare with a frame's labels use ``frame.t_us + frame.exposure_us // 2``, the time
        frame labels are rendered at.
        """
        truth = self._event_renderer.render(int(t_us), self._illumination(int(t_us)), "labels")
        return truth.labels.copy()

    def render_event_luminance(self, t_us: int, lighting: Lighting | None = None) -> np.ndarray:
        """Linear, un-saturated luminance the event camera sees at ``t_us``."""
        light = self.lighting_at(t_us) if lighting is None else lighting
        out = self._event_renderer.render(int(t_us), self._params[light].illumination,
                                          "luminance")
        return out.luminance

    def event_simulator(
        self, t_start_us: int = 0, *,
        trigger_times: Callable[[int, int], np.ndarray] | None = None,
    ) -> EventSimulator:
        """Start a fresh event stream at ``t_start_us`` (deterministic per seed).

        Trigger edges are reported at every ``trigger_times`` instant (rising) and a pulse
        width later (falling). ``trigger_times`` defaults to :meth:`trigger_times`, the free
        running trigger; a recording that starts its frames later passes its own schedule
        (``(t0, t1) -> int64`` rising-edge times in ``[t0, t1)``).
        """
        shape = (self.calibration.event_camera.height, self.calibration.event_camera.width)
        return EventSimulator(
            self.render_event_luminance, shape, self.config.event_params(),
            t_start_us=int(t_start_us), condition=self.lighting_at,
            noise_factor=lambda light: self._params[light].event_noise_factor,
            trigger_times=self.trigger_times if trigger_times is None else trigger_times,
            trigger_pulse_us=self.config.trigger_pulse_us,
        )

    def _illumination(self, t_us: int) -> Illumination:
        return self._params[self.lighting_at(t_us)].illumination


def blur_substep_times(t_us: int, exposure_us: int, n_sub: int) -> list[int]:
    """Render times used to integrate one exposure (mid-points of ``n_sub`` equal slices)."""
    return [t_us + round((i + 0.5) * exposure_us / n_sub) for i in range(n_sub)]


__all__ = ["CoaxialRigSim", "SimConfig", "SimFrame", "blur_substep_times"]
