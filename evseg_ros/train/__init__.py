"""Training data for the demo model, generated from the simulated rig."""

from __future__ import annotations

from evseg_ros.train.sim_dataset import (
    SimDatasetConfig,
    SimSamples,
    generate_sequence,
    load_or_generate,
)

__all__ = ["SimDatasetConfig", "SimSamples", "generate_sequence", "load_or_generate"]
