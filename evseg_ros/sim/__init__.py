"""Simulated coaxial event + frame camera rig (the default source without hardware).

A procedural, infinite driving street is ray-cast through each camera's own intrinsics from one
shared centre, so the calibration homography is exact ground truth. Frames get exposure, noise,
motion blur and saturation per lighting condition (normal, night, glare); events come from a
DVS model fed the un-saturated radiance, so they keep showing edges where frames fail. Labels
(DSEC_11) and instance ids come with every frame. Everything is deterministic per seed.

:mod:`evseg_ros.sim.recording` renders the rig once into a cached rosbag2 recording holding what
the hardware drivers publish plus ground truth (``evseg simulate``).
"""

from __future__ import annotations

from evseg_ros.sim.event_model import EventModelParams, EventSimulator
from evseg_ros.sim.lighting import Lighting, LightingParams, SensorModel
from evseg_ros.sim.recording import RecordingSpec, cached_recording, simulate_recording
from evseg_ros.sim.rig import CoaxialRigSim, SimConfig, SimFrame
from evseg_ros.sim.scene import Illumination, Renderer, World

#: Version of the simulator's output; bump whenever frames, labels or events for a given config
#: change, so caches of simulated data (training sets) are rebuilt.
SIM_VERSION = "1.0"

__all__ = [
    "SIM_VERSION",
    "CoaxialRigSim",
    "EventModelParams",
    "EventSimulator",
    "Illumination",
    "Lighting",
    "LightingParams",
    "RecordingSpec",
    "Renderer",
    "SensorModel",
    "SimConfig",
    "SimFrame",
    "World",
    "cached_recording",
    "simulate_recording",
]
