"""Parameters of the simulated rig, shared by both driver nodes so they render one scene."""

from __future__ import annotations

import time
from typing import Any

from evseg_ros.geometry.calibration import load_calibration
from evseg_ros.nodes.params import Param
from evseg_ros.paths import resolve_package_path
from evseg_ros.sim import CoaxialRigSim, SimConfig

SIM_PARAMS: tuple[Param, ...] = (
    Param(
        "sim_seed", 0, "seed of the simulated scene (same seed: same world)",
        low=0, high=2**32 - 1,
    ),
    Param(
        "sim_frame_rate_hz", 10.0, "trigger / frame rate of the simulated rig [Hz]",
        low=0.1, high=1_000.0,
    ),
    Param(
        "sim_exposure_us", 10_000, "nominal frame exposure [us] (night uses a longer one)",
        low=1, high=1_000_000,
    ),
    Param(
        "sim_lighting", "cycle", "lighting of the simulated scene",
        ("normal", "night", "glare", "cycle"),
    ),
    Param(
        "sim_lighting_period_s", 4.0, "time between lighting changes in 'cycle' mode [s]",
        low=0.01, high=3_600.0,
    ),
    Param(
        "sim_ego_speed_mps", 12.0, "speed of the simulated ego vehicle [m/s]",
        low=0.0, high=100.0,
    ),
    Param(
        "sim_time_scale", 1.0,
        "simulated seconds per wall-clock second (< 1 where the CPU cannot simulate events in "
        "real time; stamps stay consistent, like a bag played at a lower rate)",
        low=0.001, high=10.0,
    ),
    Param(
        "sim_epoch_ns", 0,
        "ROS time [ns] at which simulated sensor time 0 happened; both drivers must agree. "
        "0 = the node's start time (use only with a single driver)",
        low=0,
    ),
)


def build_rig(values: dict[str, Any]) -> tuple[CoaxialRigSim, int]:
    """Build the simulated rig and its epoch from declared parameter values."""
    calibration = load_calibration(resolve_package_path(values["calibration_file"]))
    config = SimConfig(
        seed=int(values["sim_seed"]),
        frame_rate_hz=float(values["sim_frame_rate_hz"]),
        exposure_us=int(values["sim_exposure_us"]),
        lighting=str(values["sim_lighting"]),
        lighting_period_s=float(values["sim_lighting_period_s"]),
        ego_speed_mps=float(values["sim_ego_speed_mps"]),
    )
    epoch = int(values["sim_epoch_ns"]) or time.time_ns()
    return CoaxialRigSim(calibration, config), epoch
