"""Lighting conditions and the frame camera's exposure and sensor model.

The rig exists to show where events help: at night frames are dark and noisy, under a low sun
they bloom and saturate, and long exposures smear motion, while the event camera (about 120 dB
of dynamic range, log response) keeps seeing edges. This module turns one scene radiance into
those frame failure modes. The scene itself only changes its light *scales* between conditions
(see :class:`~evseg_ros.sim.scene.Illumination`), so geometry and labels never depend on the
lighting, and the event camera is fed the un-saturated radiance.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

from evseg_ros.sim.scene import Illumination, hash_uniform


class Lighting(enum.Enum):
    """Lighting condition of a frame."""

    NORMAL = "normal"
    NIGHT = "night"
    GLARE = "glare"


#: Lighting modes accepted by the simulator configuration. A comma-separated list of condition
#: names (``"night,glare"``) is accepted too: see :func:`lighting_sequence`.
LIGHTING_MODES = ("normal", "night", "glare", "cycle")


@dataclass(frozen=True)
class LightingParams:
    """Scene light plus how the frame camera exposes under one condition.

    ``exposure_factor`` and ``gain`` stand in for a fixed auto-exposure policy: at night the
    camera exposes longer (more motion blur) and amplifies (more noise) but still ends up dark;
    under glare it is set for the bright sky and road detail drowns in bloom and saturation.
    """

    illumination: Illumination
    exposure_factor: float  # times the configured NORMAL exposure
    gain: float  # analogue gain (multiplies signal and noise alike)
    bloom: float  # strength of the low-sun bloom added to frames (0 = none)
    event_noise_factor: float  # multiplier on the event camera's background activity


_DAY_SUN = (-0.4, 0.8, -0.45)


def lighting_params(lighting: Lighting, *, night_exposure_factor: float = 4.0,
                    night_noise_factor: float = 3.0) -> LightingParams:
    """Return the light and exposure settings for ``lighting``."""
    if lighting is Lighting.NORMAL:
        return LightingParams(Illumination(sun=1.0, sky=1.0, sun_direction=_DAY_SUN),
                              exposure_factor=1.0, gain=1.0, bloom=0.0, event_noise_factor=1.0)
    if lighting is Lighting.NIGHT:
        # Moon/city glow ~150x darker than day, streetlight pools, lit lamp heads; vehicle
        # lights keep their emission and so dominate.
        illum = Illumination(sun=0.005, sky=0.002, ambient=0.6, sun_direction=(0.0, 1.0, 0.0),
                             lamps=0.07, lamp_heads=1.0, vehicle_lights=1.0)
        return LightingParams(illum, exposure_factor=night_exposure_factor, gain=2.0, bloom=0.0,
                              event_noise_factor=night_noise_factor)
    if lighting is Lighting.GLARE:
        # Low sun straight ahead: the street faces away from it, the sky is very bright.
        illum = Illumination(sun=1.3, sky=1.5, ambient=0.3, sun_direction=(0.15, 0.1, 1.0))
        return LightingParams(illum, exposure_factor=1.0, gain=1.8, bloom=1.0,
                              event_noise_factor=1.0)
    msg = f"unknown lighting {lighting!r}"
    raise ValueError(msg)


def lighting_sequence(mode: str) -> tuple[Lighting, ...] | None:
    """The conditions a fixed-order ``mode`` visits; None for the seed-dependent ``"cycle"``.

    ``"normal"``, ``"night"`` and ``"glare"`` are one-condition sequences; a comma-separated list
    such as ``"normal,night,glare"`` visits its conditions in the listed order (repeats allowed).

    Raises:
        ValueError: An empty or unknown condition name (the message lists the valid ones).
    """
    if mode == "cycle":
        return None
    try:
        return tuple(Lighting(name.strip()) for name in str(mode).split(","))
    except ValueError:
        msg = (
            f"unknown lighting mode {mode!r}; expected one of {LIGHTING_MODES} or a "
            f"comma-separated list of {tuple(light.value for light in Lighting)}"
        )
        raise ValueError(msg) from None


def lighting_schedule(mode: str, seed: int, period_s: float, t_us: int) -> Lighting:
    """Lighting at ``t_us`` for a configured ``mode``.

    ``"cycle"`` visits all three conditions in a seed-dependent order, switching every
    ``period_s``, so any few seconds of a sequence exercise every failure mode of the frames.
    A comma-separated list (``"normal,night,glare"``) visits its conditions in the listed order
    instead, also switching every ``period_s`` from sensor time 0.
    """
    sequence = lighting_sequence(mode)
    if sequence is not None and len(sequence) == 1:
        return sequence[0]
    if period_s <= 0:
        msg = f"lighting_period_s must be positive for {mode!r}, got {period_s!r}"
        raise ValueError(msg)
    k = math.floor(t_us / (period_s * 1e6))
    if sequence is not None:
        return sequence[k % len(sequence)]
    order = np.argsort(hash_uniform(seed, 77, np.arange(3))[:, 0])
    modes = (Lighting.NORMAL, Lighting.NIGHT, Lighting.GLARE)
    return modes[int(order[k % 3])]


def glare_sun_direction(seed: int) -> np.ndarray:
    """World direction of the low sun used for the glare bloom (a few degrees above the road).

    Fixed per seed, so the glare stays put in the world while the ego sways.
    """
    u = hash_uniform(seed, 78, 0, 3)[0]
    azimuth = math.radians((4.0 + 12.0 * u[0]) * (1 if u[1] < 0.5 else -1))
    elevation = math.radians(2.0 + 5.0 * u[2])
    return np.array([math.sin(azimuth) * math.cos(elevation), math.sin(elevation),
                     math.cos(azimuth) * math.cos(elevation)])


def bloom(rays: tuple[np.ndarray, np.ndarray, np.ndarray], sun: np.ndarray,
          strength: float) -> np.ndarray:
    """Additive radiance of a low sun seen through the frame lens: core, halo and veil.

    Modelled on the frame camera only: for the event camera an additive veil would lower log
    contrast but create no edges, and we want its HDR advantage to show.

    Args:
        rays: World ray directions ``(dx, dy, dz)`` of the frame camera's pixels.
        sun: Unit world direction towards the sun.
        strength: Overall scale (0 = no bloom).
    """
    dx, dy, dz = rays
    cos = dx * np.float32(sun[0]) + dy * np.float32(sun[1]) + dz * np.float32(sun[2])
    theta2 = np.maximum(2.0 * (1.0 - cos), 0.0)  # ~ angle^2 for small angles
    core = 40.0 * np.exp(-theta2 / 0.03**2)
    halo = 0.8 / (1.0 + theta2 / 0.24**2)
    glow = core + halo + 0.05
    return (strength * glow).astype(np.float32)


@dataclass(frozen=True)
class SensorModel:
    """Linear CMOS sensor: photo-electrons, shot and read noise, gain, clipping, gamma.

    ``sensitivity`` is electrons per second per unit scene radiance; with the defaults a
    sunlit asphalt road lands near 10 % of full scale at the NORMAL 10 ms exposure and the
    bright sky below saturation.
    """

    full_well_e: float = 10_000.0
    sensitivity: float = 1.3e6
    read_noise_e: float = 10.0
    adc_noise: float = 0.002  # after gain, fraction of full scale
    gamma: float = 2.2


def expose(radiance: np.ndarray, exposure_us: float, gain: float,
           rng: np.random.Generator | None, sensor: SensorModel = SensorModel()) -> np.ndarray:
    """Turn mean scene radiance over the exposure into an 8-bit RGB frame.

    Shot noise scales with the square root of the collected electrons and read noise is added
    before the gain, so a dark scene exposed with high gain comes out grainy, as real ones do.

    Args:
        radiance: (H, W, 3) float32 linear radiance averaged over the exposure.
        exposure_us: Exposure time in microseconds.
        gain: Analogue gain.
        rng: Source of the sensor noise (seeded by the caller for reproducible frames);
            ``None`` exposes without noise (the simulator's clean reference render).
        sensor: Sensor constants.
    """
    electrons = np.minimum(radiance * np.float32(exposure_us * 1e-6 * sensor.sensitivity),
                           np.float32(sensor.full_well_e))
    scale = np.float32(gain / sensor.full_well_e)
    sigma = np.sqrt(scale * scale * (electrons + np.float32(sensor.read_noise_e**2))
                    + np.float32(sensor.adc_noise**2))
    value = electrons * scale
    if rng is not None:
        value = value + sigma * rng.standard_normal(radiance.shape, dtype=np.float32)
    np.clip(value, 0.0, 1.0, out=value)
    code = (value * np.float32(4095.0) + np.float32(0.5)).astype(np.uint16)
    return _gamma_lut(sensor.gamma)[code]


_GAMMA_CACHE: dict[float, np.ndarray] = {}


def _gamma_lut(gamma: float) -> np.ndarray:
    lut = _GAMMA_CACHE.get(gamma)
    if lut is None:
        lut = np.round(255.0 * (np.arange(4096) / 4095.0) ** (1.0 / gamma)).astype(np.uint8)
        _GAMMA_CACHE[gamma] = lut
    return lut


__all__ = [
    "LIGHTING_MODES",
    "Lighting",
    "LightingParams",
    "SensorModel",
    "bloom",
    "expose",
    "glare_sun_direction",
    "lighting_params",
    "lighting_schedule",
    "lighting_sequence",
]
