"""The demo: the whole rig on the simulated source, then figures and PNG panels.

Runs the in-process graph until a fixed number of masks has come back over ROS, then reports
per-stage latency (median / p99), frames in / out / dropped, and mIoU against the simulator's
labels, for the fused model live and for the frame-only model on the very same inputs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evseg_ros.eval.metrics import ConfusionMatrix
from evseg_ros.eval.panels import make_panel, write_png
from evseg_ros.nodes.eval_observer import EvalObserverNode, Sample
from evseg_ros.nodes.graph import NAMESPACE
from evseg_ros.nodes.runner import InProcessGraph, configured_parameter
from evseg_ros.paths import resolve_package_path
from evseg_ros.runtime import ModelNotFoundError, RuntimeBackendError, create_backend


@dataclass
class DemoReport:
    counts: dict[str, Any] = field(default_factory=dict)
    sync: dict[str, Any] = field(default_factory=dict)
    latency_ms: dict[str, tuple[int, float, float]] = field(default_factory=dict)
    miou: dict[str, dict[str, float]] = field(default_factory=dict)
    panels: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "sync": self.sync,
            "latency_ms": {
                k: {"count": c, "median": m, "p99": p} for k, (c, m, p) in self.latency_ms.items()
            },
            "miou": self.miou,
            "panels": self.panels,
            "wall_s": self.wall_s,
        }


def _miou_by_lighting(
    samples: list[Sample], masks: list[np.ndarray], lighting: list[str], num_classes: int
) -> dict[str, float]:
    groups: dict[str, ConfusionMatrix] = {"all": ConfusionMatrix(num_classes)}
    for sample, mask, light in zip(samples, masks, lighting):
        for key in ("all", light):
            groups.setdefault(key, ConfusionMatrix(num_classes)).update(mask, sample.truth)
    return {key: float(matrix.miou()) for key, matrix in groups.items()}


def run_demo(
    *,
    config: str | Path,
    frames: int,
    output_dir: str | Path,
    model: str | None = None,
    frame_only_model: str | None = "models/demo_image_only.onnx",
    timeout_s: float | None = None,
    panels: int = 4,
) -> DemoReport:
    """Run the rig on the simulator until ``frames`` masks arrived (or ``timeout_s``)."""
    overrides: dict[str, dict[str, Any]] = {}
    if model:
        overrides["segmentation"] = {"model_path": model}
    model_path = resolve_package_path(
        model or configured_parameter(config, "segmentation", "model_path") or ""
    )
    if not model_path.is_file():
        raise ModelNotFoundError(model_path)  # before any node starts: one clear error
    report = DemoReport()
    start = time.monotonic()
    with InProcessGraph(config, overrides=overrides) as graph:
        segmentation = graph.nodes["segmentation"]
        if segmentation.segmenter is None:
            raise RuntimeBackendError(segmentation.error)
        observer_node = EvalObserverNode(context=graph.context, namespace=NAMESPACE)
        graph.add_node(observer_node)
        observer = observer_node.observer
        flir_params = graph.nodes["flir_driver"].params
        # frames per wall-clock second: the simulator may run slower than real time
        rate = float(flir_params["sim_frame_rate_hz"]) * float(flir_params["sim_time_scale"])
        deadline = start + (timeout_s if timeout_s else 30.0 + 2.0 * frames / rate)
        while observer.masks_received < frames and time.monotonic() < deadline:
            graph.spin_once(0.02)
        # let in-flight messages of the last frames land
        settle = time.monotonic() + 0.3
        while time.monotonic() < settle:
            graph.spin_once(0.02)
        flir = graph.nodes["flir_driver"]
        accumulator = graph.nodes["accumulator"].core.diagnostics()
        rig, epoch_ns = flir.source.rig, flir.source.epoch_ns
        report.counts = {
            "frames_published": flir.frames_published,
            "frames_skipped_at_camera": flir.source.skipped_frames,
            "event_packets": accumulator["packets"],
            "events_decoded": accumulator["events_decoded"],
            "event_seq_gaps": accumulator["seq_gaps"],
            "triggers_matched": accumulator["triggers_matched"],
            "frames_without_trigger": accumulator["frames_without_trigger"],
            "event_frames_late": accumulator["frames_late"],
            "event_frames_out": accumulator["frames_out"],
            "masks_published": segmentation.counters["frames_out"],
            "masks_received": observer.masks_received,
        }
        report.counts["frames_dropped"] = (
            report.counts["frames_published"] - report.counts["masks_received"]
        )
        report.sync = {key: accumulator[f"sync_{key}"] for key in SYNC_REPORT_KEYS}
        latency = segmentation.latency  # the run is over: add the observer's view to it
        for sample in observer.samples.values():
            if sample.frame_to_mask_ms is not None:
                latency.add("frame_to_mask (observer)", sample.frame_to_mask_ms)
        report.latency_ms = latency.summary()
        samples = observer.complete_samples()
        label_set = segmentation.segmenter.label_set
        lighting = [rig.lighting_at((s.stamp_ns - epoch_ns) // 1000).value for s in samples]
    report.wall_s = time.monotonic() - start
    report.counts["samples_evaluated"] = len(samples)
    num_classes = label_set.num_classes
    report.miou["fused (live)"] = _miou_by_lighting(
        samples, [s.mask for s in samples], lighting, num_classes
    )
    if frame_only_model and resolve_package_path(frame_only_model).is_file():
        backend = create_backend("onnxruntime", resolve_package_path(frame_only_model))
        masks = [backend.infer(s.image, s.event_frame).mask for s in samples]
        report.miou["frame-only (same inputs)"] = _miou_by_lighting(
            samples, masks, lighting, num_classes
        )
    report.panels = _write_panels(samples, lighting, Path(output_dir), label_set, panels)
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    (Path(output_dir) / "summary.json").write_text(json.dumps(report.to_json(), indent=2))
    return report


def _write_panels(samples, lighting, output_dir: Path, label_set, count: int) -> list[str]:
    """One panel per lighting condition first (middle sample of each), then evenly spaced."""
    chosen: list[int] = []
    for light in ("normal", "night", "glare"):
        indices = [i for i, name in enumerate(lighting) if name == light]
        if indices:
            chosen.append(indices[len(indices) // 2])
    for index in np.linspace(0, len(samples) - 1, num=max(count, 1), dtype=int).tolist():
        if len(chosen) >= count:
            break
        if index not in chosen and samples:
            chosen.append(index)
    paths = []
    for index in chosen[:count]:
        sample = samples[index]
        panel = make_panel(
            sample.image, sample.event_frame, sample.mask, sample.truth, label_set,
            title=f"({lighting[index]})",
        )
        path = output_dir / f"panel_{index:04d}_{lighting[index]}.png"
        write_png(path, panel)
        paths.append(str(path))
    return paths


#: Frame/trigger sync figures of the accumulator that the demo reports.
SYNC_REPORT_KEYS = (
    "frames", "matched", "dropped_frames", "missing_triggers", "spurious_triggers",
    "duplicate_triggers", "mean_abs_offset_us", "jitter_us", "period_us", "locked",
)


def format_report(report: DemoReport) -> str:
    lines = ["", "== evseg_ros demo: simulated coaxial rig ==", "", "frames and events:"]
    for key, value in report.counts.items():
        lines.append(f"  {key:<28} {value}")
    lines += ["", "frame/trigger sync:"]
    for key, value in report.sync.items():
        shown = f"{value:.1f}" if isinstance(value, float) else value
        lines.append(f"  {key:<28} {shown}")
    lines += ["", "latency per stage [ms]        count   median      p99"]
    for stage, (count, median, p99) in report.latency_ms.items():
        lines.append(f"  {stage:<28} {count:5d} {median:8.2f} {p99:8.2f}")
    lines += ["", "mIoU vs simulator labels [%]:"]
    conditions = sorted({k for values in report.miou.values() for k in values})
    lines.append("  " + " " * 28 + "".join(f"{c:>9}" for c in conditions))
    for model, values in report.miou.items():
        row = "".join(
            f"{100 * values[c]:9.1f}" if c in values else f"{'-':>9}" for c in conditions
        )
        lines.append(f"  {model:<28}{row}")
    lines += ["", "panels:"] + [f"  {p}" for p in report.panels]
    lines.append(f"\nwall time {report.wall_s:.1f} s")
    return "\n".join(lines)
