"""The README's main job, shortened: the demo runs the graph and writes its figures and PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2

from evseg_ros.nodes.demo import format_report, run_demo

REPO = Path(__file__).resolve().parents[2]


def test_demo_reports_figures_and_writes_panels(tmp_path, tiny_onnx_model):
    report = run_demo(
        config=REPO / "config" / "rig.yaml", frames=4, output_dir=tmp_path,
        model=str(tiny_onnx_model), panels=2,
    )
    counts = report.counts
    assert counts["masks_received"] >= 4
    assert counts["samples_evaluated"] >= 4
    assert counts["frames_dropped"] == counts["frames_published"] - counts["masks_received"]
    assert {"accumulate", "inference", "frame_to_mask (observer)"} <= set(report.latency_ms)
    fused = report.miou["fused (live)"]
    assert 0.0 <= fused["all"] <= 1.0
    assert "frame-only (same inputs)" in report.miou  # the shipped frame-only model
    assert len(report.panels) == 2
    for path in report.panels:
        panel = cv2.imread(path)
        assert panel.shape == (240 + 22, 4 * 320, 3)
    sync = report.sync
    # the simulated camera stamps each frame at its trigger: every frame that reached the
    # accumulator in time is paired with its own trigger
    assert sync["frames"] >= 4 and sync["matched"] >= 1 and sync["duplicate_triggers"] == 0
    assert sync["period_us"] == 100_000  # the rig's 10 Hz trigger
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["counts"] == counts and summary["sync"] == sync
    text = format_report(report)
    assert "mIoU vs simulator labels" in text and "frame_to_mask" in text
    assert "frame/trigger sync" in text and "mean_abs_offset_us" in text
