"""The demo: a simulated recording replayed through the rig in real time, then the figures.

The simulated rig is rendered once into a rosbag2 recording (cached, :mod:`evseg_ros.sim.
recording`) and replayed by :func:`evseg_ros.nodes.evaluate.run_eval` through the same nodes a
vehicle runs, at a rate this machine sustains, with the frame-only model scored on the very same
frames. Rendering in the loop is no part of it: what the demo measures is perception.
"""

from __future__ import annotations

from pathlib import Path

from evseg_ros.nodes.evaluate import EvalOptions, EvalOutcome, check_model, run_eval
from evseg_ros.sim.recording import DEFAULT_CACHE_ROOT, RecordingSpec, cached_recording

#: the recording the demo replays: every lighting condition, 30 fps, the rig's calibration
DEMO_RECORDING = RecordingSpec(
    seconds=6.0, seed=7, conditions=("normal", "night", "glare"), condition_period_s=2.0,
    fps=30.0,
)
#: replay speed the demo runs at: what a 2-core machine sustains with two busy processes beside
#: it (masks for >= 90 % of the frames); ``--rate`` changes it
DEMO_RATE = 0.15


def run_demo(
    *,
    config: str | Path,
    output_dir: str | Path,
    rate: float = DEMO_RATE,
    mode: str = "realtime",
    model: str | None = None,
    recording: RecordingSpec = DEMO_RECORDING,
    panels: int = 4,
    timeout_s: float | None = None,
    cache_root: Path = DEFAULT_CACHE_ROOT,
) -> EvalOutcome:
    """Render (or reuse) the demo recording and evaluate it; see :func:`run_eval`."""
    options = EvalOptions(
        config=config, model=model, mode=mode, rate=rate, compare_frame_only=True,
        panels=panels, timeout_s=timeout_s,
    )
    check_model(options)  # one clear error before minutes of rendering
    bag = cached_recording(recording, cache_root=cache_root)
    return run_eval(bag, output_dir, options)
