"""The segmentation node's own inputs from a recording: samples for INT8 calibration.

Calibration scales must be derived from what the engine will see: frames remapped onto the
output grid and event frames cut at the triggers by the real accumulator. So the recording is
replayed through the graph exactly as ``evseg eval`` does (lockstep: no frame dropped), and the
segmentation node's input listener keeps the first ``limit`` fused pairs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from evseg_ros.eval.recording import inspect_recording
from evseg_ros.nodes.evaluate import EvalOptions, _replay


class _Keep:
    """Input listener keeping up to ``limit`` (image, event frame) pairs as host arrays."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.pairs: list[tuple[np.ndarray, np.ndarray]] = []

    def __call__(self, stamp_ns: int, image, event_frame) -> None:  # noqa: ARG002
        if len(self.pairs) < self.limit:
            self.pairs.append((np.array(image, np.uint8), np.array(event_frame, np.float32)))


def capture_inputs(
    recording: str | Path, *, limit: int, config: str | Path = "config/rig.yaml"
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Replay ``recording`` through the graph and return up to ``limit`` network inputs.

    Raises:
        RecordingError: the recording cannot be read or has no frames.
    """
    recording = Path(recording)
    contents = inspect_recording(recording)
    options = EvalOptions(config=config, mode="lockstep", panels=0)
    keep = _Keep(limit)
    with tempfile.TemporaryDirectory() as folder:
        calibration = None
        if contents.calibration_yaml:  # the recording's own rig, as evseg eval does
            calibration = Path(folder) / "calibration.yaml"
            calibration.write_text(contents.calibration_yaml)
        _replay(recording, contents, options, calibration, keep)
    return keep.pairs


__all__ = ["capture_inputs"]
