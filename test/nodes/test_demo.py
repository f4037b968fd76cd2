"""The README's main job, shortened: the demo replays a simulated recording and reports."""

from __future__ import annotations

from pathlib import Path

import cv2

from evseg_ros.eval.report import format_report
from evseg_ros.nodes.demo import DEMO_RECORDING, run_demo
from evseg_ros.sim.recording import RecordingSpec

REPO = Path(__file__).resolve().parents[2]


def test_demo_replays_a_recording_and_writes_the_report_and_panels(tmp_path, tiny_onnx_model):
    recording = RecordingSpec(seconds=0.5, seed=5, conditions=("night",), fps=30.0)
    outcome = run_demo(
        config=REPO / "config" / "rig.yaml", output_dir=tmp_path / "demo", rate=0.5,
        model=str(tiny_onnx_model), recording=recording, panels=1,
        cache_root=tmp_path / "cache",
    )
    report = outcome.report
    assert report["mode"] == "realtime" and report["rate"] == 0.5
    assert report["frames"]["in_bag"] == 12 and report["frames"]["evaluated"] > 0
    assert report["frame_only_miou"] is not None  # the same model, all-zero events, same frames
    assert list(report["per_condition_miou"]) == ["night"]
    assert report["sync"]["period_us"] == 33333.0  # the recording's 30 Hz trigger
    (panel,) = report["panels"]
    assert cv2.imread(panel).shape == (240 + 22, 4 * 320, 3)
    text = format_report(report)
    assert "frame-only" in text and "frame_to_mask" in text
    assert (tmp_path / "demo" / "report.json").is_file()
    assert (tmp_path / "cache").is_dir() and len(list((tmp_path / "cache").iterdir())) == 1


def test_the_demo_recording_covers_every_condition_at_the_camera_rate():
    assert DEMO_RECORDING.conditions == ("normal", "night", "glare")
    assert DEMO_RECORDING.fps == 30.0 and DEMO_RECORDING.seconds >= 6.0
