"""``evseg eval``: replay a recording through the rig's own nodes and score what comes out.

The graph is the one ``evseg run`` and the launch file start, with the same parameter file;
only the drivers' sources change to the recording (``source: bag``, both drivers in step, see
:mod:`evseg_ros.sources.replay_clock`). Masks are collected over ROS by an observer node and
paired with the ground truth by exact stamp. ``realtime`` pacing measures what the machine
sustains at ``rate`` (drops counted); ``lockstep`` waits for every mask and gives the same
accuracy on any machine.

The frame-only comparison runs the frame-only baseline on exactly the frames the fused model got
a mask for, on the same preprocessed pixels (taken from the segmentation node's input), after
the replay, so it costs the live graph nothing. The baseline is the evaluated model itself with
an all-zero event frame (what the node's frame-only mode runs), unless ``frame_only_model``
names a separate model; ``report.json`` names it under ``frame_only_baseline``.

Faults (``--drop-events``, ``--drop-frames``, ``--packet-loss``) are injected by the replaying
drivers themselves (:mod:`evseg_ros.sources.replay_faults`); the report says which mode served
each frame (``segmentation/status``), the mIoU per mode and over the frames inside a fault, next
to the frame-only model's on the same frames.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evseg_ros.eval.metrics import ConfusionMatrix
from evseg_ros.eval.panels import make_panel, write_png
from evseg_ros.eval.recording import RecordingContents, inspect_recording
from evseg_ros.eval.report import EvalRun, build_report, write_report
from evseg_ros.labels import get_label_set
from evseg_ros.nodes.eval_observer import EvalObserver, EvalObserverNode
from evseg_ros.nodes.graph import NAMESPACE
from evseg_ros.nodes.runner import InProcessGraph, configured_parameter
from evseg_ros.paths import resolve_package_path
from evseg_ros.record.topics import RecordingTopics
from evseg_ros.runtime import (
    ModelNotFoundError,
    RuntimeBackendError,
    SegmentationBackend,
    create_backend,
)
from evseg_ros.sources.replay_clock import PACINGS
from evseg_ros.sources.replay_faults import ReplayFaults, parse_intervals

LOGGER = logging.getLogger(__name__)

#: Frame/trigger sync figures of the accumulator that the report carries.
SYNC_REPORT_KEYS = (
    "frames", "matched", "dropped_frames", "missing_triggers", "spurious_triggers",
    "duplicate_triggers", "mean_abs_offset_us", "jitter_us", "period_us", "locked",
)
#: lockstep: how long the accumulator may wait for a frame's events (the replay waits anyway)
LOCKSTEP_MAX_WAIT_MS = 5000.0
#: lockstep: frames that may wait for inference (none is dropped for being late there)
LOCKSTEP_QUEUE_DEPTH = 1000
#: after the replay ended: how long in-flight frames may take to come back as masks (plus the
#: accumulator's max_wait_ms)
SETTLE_S = 3.0


@dataclass(frozen=True)
class EvalOptions:
    """Everything ``evseg eval`` takes besides the bag and the output folder."""

    config: str | Path = "config/rig.yaml"
    model: str | None = None
    mode: str = "realtime"
    rate: float = 1.0
    compare_frame_only: bool = False
    #: the frame-only baseline: empty = the evaluated model with an all-zero event frame
    frame_only_model: str = ""
    labels_dir: str | Path | None = None
    topics: RecordingTopics = field(default_factory=RecordingTopics)
    timeout_s: float | None = None
    panels: int = 4
    #: faults: recording-time intervals "START:DURATION[,...]" (s) with no events / no frames,
    #: and the fraction of event packets lost at random (seeded)
    drop_events: str = ""
    drop_frames: str = ""
    packet_loss: float = 0.0
    fault_seed: int = 0
    #: extra parameter overrides per node (tests, benchmarks)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class EvalOutcome:
    report: dict[str, Any]
    run: EvalRun
    files: list[Path]


class _InputTap:
    """Keeps the segmentation node's inputs (image on the output grid, event frame) by stamp.

    Bounded by what is asked for: images of every frame only for the frame-only comparison
    (~230 KB per 320x240 frame), event frames only for the panels' stamps.
    """

    def __init__(self, *, all_images: bool, panel_stamps: set[int]) -> None:
        self.all_images = all_images
        self.panel_stamps = panel_stamps
        self.images: dict[int, np.ndarray] = {}
        self.event_frames: dict[int, np.ndarray] = {}

    def __call__(self, stamp_ns: int, image: np.ndarray, event_frame: np.ndarray) -> None:
        if self.all_images or stamp_ns in self.panel_stamps:
            self.images[stamp_ns] = image
        if stamp_ns in self.panel_stamps:
            self.event_frames[stamp_ns] = np.array(event_frame, dtype=np.float32)


@dataclass
class _ReplayResult:
    counts: dict[str, Any]
    sync: dict[str, Any]
    latency_ms: dict[str, list[float]]
    tap: _InputTap
    observer: EvalObserver
    problems: list[str]
    #: the segmentation node's backend (the evaluated model), usable after the graph is gone
    backend: SegmentationBackend


def _panel_stamps(contents: RecordingContents, count: int) -> dict[int, str]:
    """Frames the panels show: the middle frame of each condition, then evenly spaced ones."""
    if count <= 0 or not contents.frame_stamps:
        return {}
    by_condition: dict[str, list[int]] = {}
    for stamp in contents.frame_stamps:
        by_condition.setdefault(contents.conditions.get(stamp, "unknown"), []).append(stamp)
    chosen = {
        stamps[len(stamps) // 2]: name for name, stamps in sorted(by_condition.items())
    }
    chosen = dict(list(chosen.items())[:count])
    stride = max(1, len(contents.frame_stamps) // count)
    for stamp in contents.frame_stamps[stride // 2 :: stride]:
        if len(chosen) >= count:
            break
        chosen.setdefault(stamp, contents.conditions.get(stamp, "unknown"))
    return chosen


def _overrides(bag: Path, options: EvalOptions, calibration: Path | None) -> dict[str, dict]:
    replay = {
        "source": "bag",
        "bag_path": str(bag),
        "replay_pacing": options.mode,
        "replay_rate": float(options.rate),
        "replay_loop": False,
        "replay_epoch_ns": 0,
    }
    overrides: dict[str, dict[str, Any]] = {
        "evk4_driver": {**replay, "bag_topic": options.topics.events},
        "flir_driver": {
            **replay, "bag_topic": options.topics.frames, "replay_publish_clock": True,
        },
        "accumulator": {},
        "segmentation": {},
    }
    if options.mode == "lockstep":
        overrides["accumulator"]["max_wait_ms"] = LOCKSTEP_MAX_WAIT_MS
        # a gap in the frames releases its events at once: every event-only frame waits its turn
        overrides["segmentation"]["inference_queue_depth"] = LOCKSTEP_QUEUE_DEPTH
    overrides["evk4_driver"].update(
        replay_drop=options.drop_events, replay_message_loss=float(options.packet_loss),
        replay_fault_seed=int(options.fault_seed),
    )
    overrides["flir_driver"]["replay_drop"] = options.drop_frames
    if options.model:
        overrides["segmentation"]["model_path"] = options.model
    if calibration is not None:
        for values in overrides.values():
            values["calibration_file"] = str(calibration)
    for node, values in options.overrides.items():
        overrides.setdefault(node, {}).update(values)
    return overrides


def check_model(options: EvalOptions) -> Path:
    """The model file the segmentation node will load; raises ModelNotFoundError if absent."""
    model = options.model or configured_parameter(options.config, "segmentation", "model_path")
    path = resolve_package_path(model or "")
    if not path.is_file():
        raise ModelNotFoundError(path)  # before any node starts: one clear error
    return path


def _replay(
    bag: Path, contents: RecordingContents, options: EvalOptions, calibration: Path | None,
    tap: _InputTap,
) -> _ReplayResult:
    """Run the graph over the recording and collect what it did."""
    problems: list[str] = []
    with InProcessGraph(options.config, overrides=_overrides(bag, options, calibration)) as graph:
        segmentation = graph.nodes["segmentation"]
        if segmentation.segmenter is None:
            raise RuntimeBackendError(segmentation.error)
        backend = segmentation.segmenter.backend
        for name in ("evk4_driver", "flir_driver"):
            if graph.nodes[name].source is None:
                problems.append(f"{name}: {graph.nodes[name].error}")
        segmentation.input_listeners.append(tap)
        observer_node = EvalObserverNode(context=graph.context, namespace=NAMESPACE)
        graph.add_node(observer_node)
        observer = observer_node.observer
        # the recording starts playing a second after the graph is up: meet the observer first,
        # so the first masks' modes are not lost to discovery
        matched_by = time.monotonic() + 5.0
        while time.monotonic() < matched_by and not all(
            publisher.get_subscription_count()
            for publisher in (segmentation.mask_publisher, segmentation.status_publisher)
        ):
            graph.spin_once(0.01)
        flir = graph.nodes["flir_driver"]
        span_s = (contents.frame_stamps[-1] - contents.frame_stamps[0]) / 1e9
        if options.timeout_s is not None:
            budget = options.timeout_s
        elif options.mode == "lockstep":
            budget = 60.0 + 15.0 * len(contents.frame_stamps)
        else:
            budget = 60.0 + 2.0 * span_s / options.rate
        deadline = time.monotonic() + budget
        # in-flight frames may wait for their events up to max_wait_ms before coming back
        settle_s = SETTLE_S + graph.nodes["accumulator"].core.config.max_wait_ns / 1e9
        settle_until = None
        while time.monotonic() < deadline:
            graph.spin_once(0.01)
            if flir.replay is None or flir.replay.finished:
                if settle_until is None:
                    settle_until = time.monotonic() + settle_s
                published = flir.frames_published
                if observer.masks_received >= published or time.monotonic() > settle_until:
                    break
        else:
            problems.append(f"the replay did not finish within {budget:.0f} s; reporting so far")
        accumulator = graph.nodes["accumulator"].core.diagnostics()
        flir_status = flir._status_values()  # noqa: SLF001 (the driver's own diagnostics values)
        counts = {
            "published": flir.frames_published,
            "skipped_at_replay": int(flir_status.get("frames_skipped", 0)),
            "bad_frames": int(flir_status.get("bad_frames", 0)),
            "lockstep_timeouts": int(flir_status.get("lockstep_timeouts", 0)),
            "event_packets": int(accumulator["packets"]),
            "event_seq_gaps": int(accumulator["seq_gaps"]),
            "event_frames_late": int(accumulator["frames_late"]),
            "event_frames_out": int(accumulator["frames_out"]),
            "event_windows_degraded": int(accumulator["windows_degraded"]),
            "frameless_event_frames": int(accumulator["frameless_out"]),
            "frames_superseded": int(accumulator["frames_superseded"]),
            "frames_dropped_busy": int(segmentation.counters["frames_dropped_busy"]),
            "masks_published": int(segmentation.counters["frames_out"]),
            "masks_received": observer.masks_received,
        }
        sync = {key: accumulator.get(f"sync_{key}") for key in SYNC_REPORT_KEYS}
        latency = segmentation.latency.samples()
        latency["frame_to_mask"] = observer.frame_to_mask_ms(dict(flir.published_at))
    return _ReplayResult(counts, sync, latency, tap, observer, problems, backend)


def run_eval(bag: str | Path, output_dir: str | Path, options: EvalOptions) -> EvalOutcome:
    """Replay ``bag`` through the graph, score it, and write the report into ``output_dir``.

    Raises:
        RecordingError: the recording cannot be read or has no frames (one line).
        ModelNotFoundError, RuntimeBackendError: the model cannot run.
        ValueError: a bad mode or rate (names the value).
    """
    if options.mode not in ("realtime", "lockstep"):
        msg = f"mode must be 'realtime' or 'lockstep' (of {PACINGS!r}), got {options.mode!r}"
        raise ValueError(msg)
    if not options.rate > 0:
        msg = f"rate must be positive, got {options.rate!r}"
        raise ValueError(msg)
    start = time.monotonic()
    bag = Path(bag)
    faults = _faults(options)  # a malformed fault is one line, before anything runs
    model_path = check_model(options)
    contents = inspect_recording(bag, topics=options.topics, labels_dir=options.labels_dir)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    calibration = None
    if contents.calibration_yaml:  # render and replay through the same calibration
        calibration = output_dir / "calibration.yaml"
        calibration.write_text(contents.calibration_yaml)
    panel_stamps = _panel_stamps(contents, options.panels)
    tap = _InputTap(all_images=options.compare_frame_only, panel_stamps=set(panel_stamps))
    replayed = _replay(bag, contents, options, calibration, tap)
    observer, counts = replayed.observer, replayed.counts
    problems = contents.problems + replayed.problems
    label_set_name = configured_parameter(options.config, "segmentation", "label_set")
    label_set = get_label_set(label_set_name or "dsec11")
    fused = _Scores(label_set.num_classes)
    frame_only_backend, frame_only_baseline = _frame_only_backend(
        options, replayed.backend, model_path, problems
    )
    frame_only = None if frame_only_backend is None else _Scores(label_set.num_classes)
    degradation = _Degradation(
        label_set.num_classes, faults, contents.start_ns, compared=frame_only is not None
    )
    # an event-only mask carries the stamp its frame would have had, predicted from the trigger
    tolerance_ns = int(1e9 / contents.recorded_fps / 3) if contents.recorded_fps else 0
    evaluated: list[int] = []
    panel_truth: dict[int, np.ndarray] = {}
    mismatched: list[tuple[int, tuple, tuple]] = []
    for stamp, truth in contents.truth():  # one pass: ground truth is decoded once
        mask_stamp = observer.stamp_near(stamp, tolerance_ns)
        if mask_stamp is None:
            continue
        mask = observer.mask(mask_stamp)
        if mask.shape != truth.shape:
            mismatched.append((stamp, mask.shape, truth.shape))
            continue
        condition = contents.conditions.get(stamp, "unknown")
        fused.add(condition, mask, truth)
        evaluated.append(stamp)
        degradation.add(stamp, observer.modes.get(mask_stamp, "unknown"), mask, truth)
        image = tap.images.get(stamp)
        if frame_only is not None and image is not None:  # no frame, no frame-only mask
            events = np.zeros((3, *image.shape[:2]), np.float32)
            frame_only_mask = frame_only_backend.infer(image, events).mask
            frame_only.add(condition, frame_only_mask, truth)
            degradation.add_frame_only(stamp, frame_only_mask, mask, truth)
        if stamp in panel_stamps:
            panel_truth[stamp] = truth
    if mismatched:
        stamp, mask_shape, truth_shape = mismatched[0]
        problems.append(
            f"{len(mismatched)} masks differ in size from their ground truth (first at stamp "
            f"{stamp}: mask {mask_shape}, truth {truth_shape}): not scored; does the config's "
            "calibration match the recording's?"
        )
    arrivals = sorted(observer.mask_arrival_ns.items(), key=lambda kv: kv[1])
    frames = {
        "in_bag": len(contents.frame_stamps),
        **counts,
        "evaluated": len(evaluated),
        "dropped": len(contents.frame_stamps) - len(evaluated),
    }
    if not contents.has_truth:
        frames["dropped"] = len(contents.frame_stamps) - counts["masks_received"]
    run = EvalRun(
        bag=str(bag),
        model=str(model_path),
        mode=options.mode,
        rate=float(options.rate),
        recorded_fps=contents.recorded_fps,
        class_names=list(label_set.classes),
        fused=fused.all,
        wall_s=0.0,
        fused_by_condition=fused.by_condition,
        frame_only=None if frame_only is None else frame_only.all,
        frame_only_by_condition=None if frame_only is None else frame_only.by_condition,
        latency_ms=replayed.latency_ms,
        frames=frames,
        sync=replayed.sync,
        mask_stamps_ns=[stamp for stamp, _ in arrivals],
        mask_arrival_ns=[arrival for _, arrival in arrivals],
        problems=problems,
        degradation=degradation.summary(observer.modes),
    )
    files = _write_panels(observer, tap, panel_stamps, panel_truth, label_set, output_dir)
    run.wall_s = time.monotonic() - start
    report = build_report(run)
    report["frame_only_baseline"] = frame_only_baseline
    report["panels"] = [str(p) for p in files]
    files += write_report(report, run, output_dir)
    return EvalOutcome(report, run, files)


def _faults(options: EvalOptions) -> ReplayFaults:
    """All injected faults as one spec (for timing the "during fault" frames); validates them."""
    return ReplayFaults(
        off=parse_intervals(options.drop_events) + parse_intervals(options.drop_frames),
        loss=float(options.packet_loss), seed=int(options.fault_seed),
    )


class _Degradation:
    """Scores per mode, and over the frames inside an injected fault, fused and frame-only."""

    def __init__(
        self, num_classes: int, faults: ReplayFaults, start_ns: int, *, compared: bool
    ) -> None:
        self.faults = faults
        self.start_ns = start_ns
        self.num_classes = num_classes
        self.by_mode: dict[str, ConfusionMatrix] = {}
        self.during_fault = ConfusionMatrix(num_classes)
        self.frame_only_during_fault = ConfusionMatrix(num_classes) if compared else None
        #: the pipeline's masks on exactly the frames the frame-only model scored
        self.same_frames = ConfusionMatrix(num_classes) if compared else None
        self.fault_frames = 0
        self.frame_only_fault_frames = 0

    def in_fault(self, stamp_ns: int) -> bool:
        return self.faults.in_off_interval((stamp_ns - self.start_ns) / 1e9)

    def add(self, stamp_ns: int, mode: str, mask: np.ndarray, truth: np.ndarray) -> None:
        self.by_mode.setdefault(mode, ConfusionMatrix(self.num_classes)).update(mask, truth)
        if self.in_fault(stamp_ns):
            self.fault_frames += 1
            self.during_fault.update(mask, truth)

    def add_frame_only(
        self, stamp_ns: int, mask: np.ndarray, pipeline_mask: np.ndarray, truth: np.ndarray
    ) -> None:
        if self.same_frames is not None:
            self.same_frames.update(pipeline_mask, truth)
        if self.frame_only_during_fault is not None and self.in_fault(stamp_ns):
            self.frame_only_fault_frames += 1
            self.frame_only_during_fault.update(mask, truth)

    def summary(self, modes_seen: dict[int, str]) -> dict[str, Any]:
        """What report.json carries about modes and faults (matrices left to the report)."""
        modes = {mode: 0 for mode in ("fused", "frame_only", "event_only", "none")}
        for mode in modes_seen.values():
            modes[mode] = modes.get(mode, 0) + 1
        return {
            "modes": modes,
            "degraded_frames": sum(n for mode, n in modes.items() if mode != "fused"),
            "by_mode": self.by_mode,
            "faults": {
                "off_intervals_s": [list(interval) for interval in self.faults.off],
                "packet_loss": self.faults.loss,
                "seed": self.faults.seed,
            },
            "on_frame_only_frames": self.same_frames,
            "fault_frames": self.fault_frames,
            "frame_only_fault_frames": self.frame_only_fault_frames,
            "during_fault": self.during_fault if self.faults.off else None,
            "frame_only_during_fault": (
                self.frame_only_during_fault if self.faults.off else None
            ),
        }


class _Scores:
    """Confusion matrices of one model: over everything and per lighting condition."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.all = ConfusionMatrix(num_classes)
        self.by_condition: dict[str, ConfusionMatrix] = {}

    def add(self, condition: str, mask: np.ndarray, truth: np.ndarray) -> None:
        self.all.update(mask, truth)
        matrix = self.by_condition.setdefault(condition, ConfusionMatrix(self.num_classes))
        matrix.update(mask, truth)


def _frame_only_backend(
    options: EvalOptions, evaluated: SegmentationBackend, model_path: Path, problems: list[str]
) -> tuple[SegmentationBackend | None, str | None]:
    """The frame-only baseline of ``--compare-frame-only`` and a line saying what it is.

    Without ``frame_only_model`` it is the evaluated model's own backend (same engine, same
    network size) fed an all-zero event frame, as the node's frame-only mode runs it; with one,
    that separate model on ONNX Runtime. ``(None, None)`` without the comparison.
    """
    if not options.compare_frame_only:
        return None, None
    if not options.frame_only_model:
        return evaluated, f"{model_path} with an all-zero event frame (the evaluated model)"
    path = resolve_package_path(options.frame_only_model)
    if not path.is_file():
        problems.append(f"frame-only model {str(path)!r} does not exist: no comparison")
        return None, None
    return create_backend("onnxruntime", path), f"{path} (a separate frame-only model)"


def _write_panels(
    observer: EvalObserver, tap: _InputTap, panel_stamps: dict[int, str],
    panel_truth: dict[int, np.ndarray], label_set, output_dir: Path,
) -> list[Path]:
    """One panel (frame, events, mask, truth) per chosen frame that was evaluated."""
    paths = []
    for stamp, condition in sorted(panel_stamps.items()):
        if stamp not in panel_truth or stamp not in tap.event_frames:
            continue
        panel = make_panel(
            tap.images[stamp], tap.event_frames[stamp], observer.mask(stamp), panel_truth[stamp],
            label_set, title=f"({condition})",
        )
        path = output_dir / f"panel_{stamp}_{condition}.png"
        write_png(path, panel)
        paths.append(path)
    return paths
