"""The report of ``evseg eval``: accuracy, latency and stream figures of one replayed recording.

The eval runner replays a recording through the ROS nodes and fills an :class:`EvalRun`;
:func:`build_report` turns it into the content of ``report.json``, :func:`write_report` writes
that with a short Markdown summary and three plots, and :func:`format_report` renders the
headline numbers for the terminal.

What a machine measures (``latency_ms``, ``stream``, ``wall_s``) is kept under its own keys,
apart from what the recording and the model decide, so :func:`accuracy_part` of two lockstep
replays of the same bag with the same model compares equal on any machine. A float that is not
a number (the IoU of a class that never occurs, the mIoU of a run that evaluated nothing) is
written as ``null``, never as ``NaN``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evseg_ros.eval.metrics import ConfusionMatrix

logger = logging.getLogger(__name__)

#: Bumped when a key of ``report.json`` changes meaning or disappears.
REPORT_VERSION = 1

#: Replay modes: recorded timing scaled by ``rate``, or one frame at a time as fast as consumed.
MODES = ("realtime", "lockstep")

#: Top-level keys holding measured times; they differ between machines and between runs.
TIMING_KEYS = ("latency_ms", "stream", "wall_s")

#: Top-level keys that depend only on the recording and the model (plus ``frames`` counts).
ACCURACY_KEYS = (
    "class_names",
    "miou",
    "per_class_iou",
    "per_condition_miou",
    "confusion_matrix",
    "frame_only_miou",
    "frame_only_per_class_iou",
    "frame_only_per_condition_miou",
    "frame_only_confusion_matrix",
)

#: Frame counters reported first, in this order; any others follow in the order given.
FRAME_KEYS = ("in_bag", "published", "evaluated", "dropped")

#: Files :func:`write_report` writes, in the order it returns them.
REPORT_FILES = (
    "report.json",
    "report.md",
    "confusion_matrix.png",
    "per_class_iou.png",
    "latency.png",
)


@dataclass(kw_only=True)
class EvalRun:
    """Everything one ``evseg eval`` replay measured, as the eval runner collected it.

    Keyword-only; not frozen, so the runner can set ``wall_s`` last. The checks below run when
    the record is built.

    Args:
        bag: The recording replayed (as given on the command line).
        model: The model the segmentation node ran.
        mode: ``"realtime"`` (recorded timing scaled by ``rate``) or ``"lockstep"``.
        rate: Replay rate as a multiple of recorded speed.
        recorded_fps: Frame rate of the recording, from its frame stamps.
        class_names: Class names in id order; one per row of every confusion matrix.
        fused: Confusion matrix of the model the node ran, over all evaluated frames.
        wall_s: Wall-clock duration of the replay in seconds.
        fused_by_condition: The same, split by recording condition (e.g. day / night).
        frame_only: Frame-only model on the very same frames (``--compare-frame-only``).
        frame_only_by_condition: The same, split by condition; only with ``frame_only``.
        latency_ms: Samples in milliseconds per stage (e.g. ``accumulate``, ``inference``,
            ``segmentation_total``, ``frame_to_mask``), stages in the order to report them.
        frames: Frame counters: ``in_bag``, ``published``, ``evaluated``, ``dropped`` and any
            extra ones.
        sync: The accumulator's frame/trigger sync statistics (``frames``, ``matched``,
            ``dropped_frames``, ``missing_triggers``, ...).
        mask_stamps_ns: Header stamps of the masks received, in arrival order.
        mask_arrival_ns: Monotonic wall-clock arrival time of each of those masks.
        problems: One line per thing that went wrong (missing topic, no ground truth, ...).
        degradation: Modes and injected faults: ``modes`` (frames per mode), ``degraded_frames``,
            ``by_mode`` (confusion matrix per mode), ``faults`` (the injected faults),
            ``fault_frames``, ``during_fault`` / ``frame_only_during_fault`` (matrices over the
            frames inside a fault interval, None without one).

    Raises:
        ValueError: Unknown mode, class names that do not match a matrix, per-condition
            frame-only matrices without the overall one, or stamps and arrivals of different
            lengths.
    """

    bag: str
    model: str
    mode: str
    rate: float
    recorded_fps: float
    class_names: list[str]
    fused: ConfusionMatrix
    wall_s: float
    fused_by_condition: dict[str, ConfusionMatrix] = field(default_factory=dict)
    frame_only: ConfusionMatrix | None = None
    frame_only_by_condition: dict[str, ConfusionMatrix] | None = None
    latency_ms: dict[str, list[float]] = field(default_factory=dict)
    frames: dict[str, int] = field(default_factory=dict)
    sync: dict[str, Any] = field(default_factory=dict)
    mask_stamps_ns: list[int] = field(default_factory=list)
    mask_arrival_ns: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    degradation: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            msg = f"mode must be one of {MODES}, got {self.mode!r}"
            raise ValueError(msg)
        num_classes = len(self.class_names)
        matrices = {"fused": self.fused, "frame_only": self.frame_only}
        matrices.update({f"fused[{c!r}]": m for c, m in self.fused_by_condition.items()})
        matrices.update(
            {f"frame_only[{c!r}]": m for c, m in (self.frame_only_by_condition or {}).items()}
        )
        for name, matrix in matrices.items():
            if matrix is not None and matrix.num_classes != num_classes:
                msg = (
                    f"{name} confusion matrix has {matrix.num_classes} classes but "
                    f"{num_classes} class names were given: {self.class_names!r}"
                )
                raise ValueError(msg)
        if self.frame_only_by_condition is not None and self.frame_only is None:
            msg = "frame_only_by_condition was given without the overall frame_only matrix"
            raise ValueError(msg)
        if len(self.mask_stamps_ns) != len(self.mask_arrival_ns):
            msg = (
                f"{len(self.mask_stamps_ns)} mask stamps but "
                f"{len(self.mask_arrival_ns)} mask arrival times"
            )
            raise ValueError(msg)

    @property
    def compared_frame_only(self) -> bool:
        """Whether the frame-only model ran on the same frames."""
        return self.frame_only is not None


# -- report.json ----------------------------------------------------------------------------------


def build_report(run: EvalRun) -> dict[str, Any]:
    """Return the content of ``report.json`` for ``run``.

    The key order is fixed (conditions sorted by name, latency stages and extra counters in
    the order given), every value is plain JSON (no numpy types, ``null`` for non-finite
    floats), and the measured times sit under :data:`TIMING_KEYS` only.

    The frame-only keys are always present and ``null`` when the frame-only model was not
    compared. ``sync.matched_fraction`` divides ``matched`` by the frames the accumulator saw
    (``sync.frames``), or by ``frames.evaluated`` when the sync gives no frame count;
    ``sync.matched_fraction_of`` names the one used.
    """
    names = list(run.class_names)
    conditions = sorted(set(run.fused_by_condition) | set(run.frame_only_by_condition or {}))
    report: dict[str, Any] = {
        "report_version": REPORT_VERSION,
        "bag": str(run.bag),
        "model": str(run.model),
        "mode": run.mode,
        "rate": _number(run.rate),
        "recorded_fps": _number(run.recorded_fps),
        "class_names": names,
        "miou": _number(run.fused.miou()),
        "per_class_iou": _per_class_iou(run.fused, names),
        "per_condition_miou": _per_condition_miou(run.fused_by_condition, conditions),
        "confusion_matrix": run.fused.matrix.tolist(),
        "frame_only_miou": None,
        "frame_only_per_class_iou": None,
        "frame_only_per_condition_miou": None,
        "frame_only_confusion_matrix": None,
    }
    if run.frame_only is not None:
        report["frame_only_miou"] = _number(run.frame_only.miou())
        report["frame_only_per_class_iou"] = _per_class_iou(run.frame_only, names)
        report["frame_only_per_condition_miou"] = _per_condition_miou(
            run.frame_only_by_condition or {}, conditions
        )
        report["frame_only_confusion_matrix"] = run.frame_only.matrix.tolist()
    report.update(_degradation(run.degradation))
    report["frames"] = _frames(run.frames)
    report["sync"] = _sync(run.sync, report["frames"])
    report["problems"] = [str(line) for line in run.problems]
    report["latency_ms"] = {
        str(stage): _summary(samples) for stage, samples in run.latency_ms.items()
    }
    report["stream"] = _stream(run, report["frames"])
    report["wall_s"] = _number(run.wall_s)
    return report


def accuracy_part(report: Mapping[str, Any]) -> dict[str, Any]:
    """Return the machine-independent part of a report (built, or loaded from JSON).

    That is every key of :data:`ACCURACY_KEYS` and ``frames.in_bag`` / ``frames.evaluated``:
    two lockstep replays of one bag with one model give equal parts on any machine. In
    realtime mode which frames get evaluated depends on the machine's speed, so there the parts
    only agree when neither run dropped a frame.
    """
    part = {key: copy.deepcopy(report.get(key)) for key in ACCURACY_KEYS}
    frames = report.get("frames") or {}
    part["frames"] = {"in_bag": frames.get("in_bag"), "evaluated": frames.get("evaluated")}
    return part


def _degradation(given: Mapping[str, Any]) -> dict[str, Any]:
    """Modes and faults: frames per mode, mIoU per mode and during the faults (null if none)."""

    def miou(matrix: ConfusionMatrix | None) -> float | None:
        return None if matrix is None or not matrix.matrix.any() else _number(matrix.miou())

    by_mode = given.get("by_mode") or {}
    return {
        "modes": {str(k): int(v) for k, v in (given.get("modes") or {}).items()},
        "degraded_frames": int(given.get("degraded_frames", 0)),
        "miou_by_mode": {str(mode): miou(matrix) for mode, matrix in sorted(by_mode.items())},
        # the pipeline on exactly the frames the frame-only model had (frames-off frames have no
        # frame-only mask): the like-for-like comparison with frame_only_miou
        "miou_on_frame_only_frames": miou(given.get("on_frame_only_frames")),
        "faults": _jsonable(given.get("faults") or {}),
        "fault_frames": int(given.get("fault_frames", 0)),
        "miou_during_fault": miou(given.get("during_fault")),
        "frame_only_fault_frames": int(given.get("frame_only_fault_frames", 0)),
        "frame_only_miou_during_fault": miou(given.get("frame_only_during_fault")),
    }


def _per_class_iou(matrix: ConfusionMatrix, names: Sequence[str]) -> dict[str, float | None]:
    return {name: _number(iou) for name, iou in zip(names, matrix.iou())}


def _per_condition_miou(
    by_condition: Mapping[str, ConfusionMatrix], conditions: Sequence[str]
) -> dict[str, float | None]:
    return {
        str(c): _number(by_condition[c].miou()) if c in by_condition else None for c in conditions
    }


def _frames(given: Mapping[str, Any]) -> dict[str, Any]:
    frames = {key: _jsonable(given[key]) for key in FRAME_KEYS if key in given}
    frames.update({str(k): _jsonable(v) for k, v in given.items() if k not in frames})
    frames["mask_fraction"] = _ratio(frames.get("evaluated"), frames.get("in_bag"))
    return frames


def _sync(given: Mapping[str, Any], frames: Mapping[str, Any]) -> dict[str, Any]:
    sync = {str(k): _jsonable(v) for k, v in given.items()}
    denominator, of = None, None
    if _count(sync.get("frames")) is not None:
        denominator, of = sync["frames"], "sync.frames"
    elif _count(frames.get("evaluated")) is not None:
        denominator, of = frames["evaluated"], "frames.evaluated"
    fraction = _ratio(sync.get("matched"), denominator)
    sync["matched_fraction"] = fraction
    sync["matched_fraction_of"] = of if fraction is not None else None
    return sync


def _summary(samples: Sequence[float]) -> dict[str, Any]:
    """Count, median, p99, mean and max of the finite samples (``null`` without any)."""
    values = np.asarray([float(s) for s in samples if s is not None], dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"count": 0, "median": None, "p99": None, "mean": None, "max": None}
    return {
        "count": int(values.size),
        "median": _number(np.median(values)),
        "p99": _number(np.percentile(values, 99)),
        "mean": _number(values.mean()),
        "max": _number(values.max()),
    }


def _stream(run: EvalRun, frames: Mapping[str, Any]) -> dict[str, Any]:
    """Rate and regularity of the masks as they arrived (ros2_benchmark / NITROS style).

    Jitter is ``|Δ - T|`` per pair of consecutive arrivals, with ``T`` the period the replay
    should deliver at (``1 / (recorded_fps * rate)``), as NITROS topic statistics define it. A
    mask missing from the stream therefore shows as one jitter sample of about ``T``.
    """
    expected_fps = _number(run.recorded_fps * run.rate)
    if expected_fps is not None and expected_fps <= 0:
        expected_fps = None
    period_ms = 1000.0 / expected_fps if expected_fps is not None else None
    arrivals = np.sort(np.asarray(run.mask_arrival_ns, dtype=np.int64))
    duration_s = (arrivals[-1] - arrivals[0]) / 1e9 if arrivals.size >= 2 else None
    achieved = (arrivals.size - 1) / duration_s if duration_s else None
    if period_ms is not None and arrivals.size >= 2:
        deviation_ms = np.abs(np.diff(arrivals) / 1e6 - period_ms)
        jitter = {
            "count": int(deviation_ms.size),
            "mean": _number(deviation_ms.mean()),
            "std": _number(deviation_ms.std()),
            "p99": _number(np.percentile(deviation_ms, 99)),
            "max": _number(deviation_ms.max()),
        }
    else:
        jitter = {"count": 0, "mean": None, "std": None, "p99": None, "max": None}
    stamps = np.asarray(run.mask_stamps_ns, dtype=np.int64)
    in_bag, evaluated = _count(frames.get("in_bag")), _count(frames.get("evaluated"))
    return {
        "expected_fps": expected_fps,
        "expected_period_ms": _number(period_ms),
        "masks_received": int(arrivals.size),
        "received_duration_s": _number(duration_s),
        "mean_frame_rate": _number(achieved),
        "jitter_ms": jitter,
        "drops": in_bag - evaluated if in_bag is not None and evaluated is not None else None,
        "stamp_span_s": _number((stamps.max() - stamps.min()) / 1e9) if stamps.size else None,
        "out_of_order_stamps": int(np.count_nonzero(np.diff(stamps) < 0)),
        "duplicate_stamps": int(stamps.size - np.unique(stamps).size),
    }


def _number(value: Any) -> float | None:
    """A plain float, or ``None`` for a missing or non-finite value."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _count(value: Any) -> int | None:
    """An integer counter, or ``None`` for anything else (bools included)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        return None
    return int(value)


def _ratio(numerator: Any, denominator: Any) -> float | None:
    numerator, denominator = _number_or_none(numerator), _number_or_none(denominator)
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _number_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return None
    return _number(value)


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: numpy scalars unwrapped, non-finite floats as ``None``."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


# -- files ----------------------------------------------------------------------------------------


def write_report(report: Mapping[str, Any], run: EvalRun, output_dir: Path | str) -> list[Path]:
    """Write ``report.json``, ``report.md`` and the PNG plots into ``output_dir``.

    The directory is created; files of the same names in it are replaced (each is written to
    a temporary name first, so a failed write leaves the old file whole). Whether an existing
    report may be overwritten is the caller's decision.

    Args:
        report: What :func:`build_report` returned for ``run``.
        run: The run, for what the report only summarises (the latency samples).
        output_dir: Where to write.

    Returns:
        The paths written, in the order of :data:`REPORT_FILES`.

    Raises:
        ValueError: The report holds a non-finite float (it was not built by
            :func:`build_report`).
        OSError: A file could not be written.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, allow_nan=False, ensure_ascii=False) + "\n"
    writers: dict[str, Callable[[Path], None]] = {
        "report.json": lambda path: path.write_text(text, encoding="utf-8"),
        "report.md": lambda path: path.write_text(_markdown(report), encoding="utf-8"),
        "confusion_matrix.png": lambda path: _plot_confusion_matrix(path, report),
        "per_class_iou.png": lambda path: _plot_per_class_iou(path, report),
        "latency.png": lambda path: _plot_latency(path, run.latency_ms),
    }
    paths = []
    for name in REPORT_FILES:
        path = output_dir / name
        _replace(path, writers[name])
        paths.append(path)
    logger.info("eval report written to %s", output_dir)
    return paths


def _replace(path: Path, write: Callable[[Path], None]) -> None:
    partial = path.with_name(f".{path.name}.partial")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _figure(width: float, height: float) -> Any:
    # A bare Figure renders through Agg without pyplot: no display, no global state.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _save(figure: Any, path: Path) -> None:
    figure.savefig(path, format="png", dpi=100)


def _plot_confusion_matrix(path: Path, report: Mapping[str, Any]) -> None:
    names = list(report["class_names"])
    counts = np.asarray(report["confusion_matrix"], dtype=np.float64).reshape(len(names), -1)
    row_sums = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, row_sums, out=np.zeros_like(counts), where=row_sums > 0)
    size = max(4.5, 0.5 * len(names) + 2.5)
    figure = _figure(size + 1.2, size)
    axes = figure.add_subplot()
    image = axes.imshow(normalised, vmin=0.0, vmax=1.0, cmap="Blues")
    ticks = list(range(len(names)))
    axes.set_xticks(ticks, names, rotation=45, ha="right")
    axes.set_yticks(ticks, names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"fused, row-normalised ({int(counts.sum())} pixels)")
    if len(names) <= 24:
        for t, p in np.ndindex(normalised.shape):
            if row_sums[t, 0] > 0:
                value = normalised[t, p]
                colour = "white" if value > 0.5 else "black"
                axes.text(p, t, f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    _save(figure, path)


def _plot_per_class_iou(path: Path, report: Mapping[str, Any]) -> None:
    names = list(report["class_names"])
    series = [("fused", report["per_class_iou"], report["miou"])]
    if report.get("frame_only_per_class_iou") is not None:
        series.append(
            ("frame-only", report["frame_only_per_class_iou"], report.get("frame_only_miou"))
        )
    figure = _figure(max(6.0, 0.7 * len(names) + 2.0), 4.5)
    axes = figure.add_subplot()
    x = np.arange(len(names), dtype=np.float64)
    width = 0.8 / len(series)
    for index, (label, ious, miou) in enumerate(series):
        offset = (index - (len(series) - 1) / 2) * width
        heights = [ious.get(name) for name in names]
        bars = axes.bar(
            x + offset,
            [h if h is not None else 0.0 for h in heights],
            width,
            label=f"{label} (mIoU {_percent(miou)} %)",
        )
        for bar, height in zip(bars, heights):
            if height is None:
                axes.text(
                    bar.get_x() + bar.get_width() / 2,
                    0.01,
                    "n/a",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    rotation=90,
                )
    axes.set_xticks(list(x), names, rotation=45, ha="right")
    axes.set_ylim(0.0, 1.15)  # headroom for the legend above IoU 1
    axes.set_yticks(np.linspace(0.0, 1.0, 6))
    axes.set_ylabel("IoU")
    axes.set_title("per-class IoU")
    axes.legend(loc="upper left", ncol=len(series), fontsize=8)
    _save(figure, path)


def _plot_latency(path: Path, latency_ms: Mapping[str, Sequence[float]]) -> None:
    stages = []
    for stage, samples in latency_ms.items():
        values = np.asarray([float(s) for s in samples if s is not None], dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size:
            stages.append((str(stage), values))
    figure = _figure(max(6.0, 1.3 * len(stages) + 2.0), 4.5)
    axes = figure.add_subplot()
    if not stages:
        axes.text(0.5, 0.5, "no latency samples", ha="center", va="center")
        axes.set_axis_off()
    else:
        # Whiskers at p1 / p99: the tail the report quotes stays visible as the whisker end.
        axes.boxplot([values for _, values in stages], whis=(1, 99), showmeans=True)
        axes.set_xticks(
            list(range(1, len(stages) + 1)),
            [f"{stage}\nn={values.size}" for stage, values in stages],
        )
        if all(values.min() > 0 for _, values in stages):
            axes.set_yscale("log")
        axes.set_ylabel("latency [ms]")
        axes.grid(axis="y", which="both", alpha=0.3)
    axes.set_title("latency per stage\n(box: quartiles, whiskers: p1 to p99, triangle: mean)")
    _save(figure, path)


# -- text -----------------------------------------------------------------------------------------


def _percent(value: float | None) -> str:
    return f"{100.0 * value:.1f}" if value is not None else "n/a"


def _points(fused: float | None, frame_only: float | None) -> str:
    if fused is None or frame_only is None:
        return "n/a"
    return f"{100.0 * (fused - frame_only):+.1f}"


def _ms(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "n/a"


def _value(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _miou_rows(report: Mapping[str, Any]) -> list[tuple[str, float | None, float | None]]:
    """(condition, fused mIoU, frame-only mIoU) for ``all`` and each condition."""
    frame_only = report.get("frame_only_per_condition_miou") or {}
    rows = [("all", report.get("miou"), report.get("frame_only_miou"))]
    rows += [
        (condition, miou, frame_only.get(condition))
        for condition, miou in (report.get("per_condition_miou") or {}).items()
    ]
    return rows


def _markdown(report: Mapping[str, Any]) -> str:
    compared = report.get("frame_only_per_class_iou") is not None
    frames, sync, stream = report["frames"], report["sync"], report["stream"]
    lines = [
        f"# evseg eval: {report['bag']}",
        "",
        f"model `{report['model']}`, {report['mode']} replay at {_value(report['rate'])}x "
        f"(recorded {_value(report['recorded_fps'])} fps), wall time {_value(report['wall_s'])} s",
        "",
        "## mIoU [%]",
        "",
    ]
    if compared:
        lines += ["| condition | fused | frame-only | fused - frame-only |", "|---|---:|---:|---:|"]
        lines += [
            f"| {c} | {_percent(f)} | {_percent(o)} | {_points(f, o)} |"
            for c, f, o in _miou_rows(report)
        ]
    else:
        lines += ["| condition | fused |", "|---|---:|"]
        lines += [f"| {c} | {_percent(f)} |" for c, f, _ in _miou_rows(report)]
    lines += ["", "## IoU per class [%]", ""]
    fused_iou = report["per_class_iou"]
    if compared:
        frame_only_iou = report["frame_only_per_class_iou"]
        lines += ["| class | fused | frame-only |", "|---|---:|---:|"]
        lines += [
            f"| {name} | {_percent(fused_iou[name])} | {_percent(frame_only_iou.get(name))} |"
            for name in report["class_names"]
        ]
    else:
        lines += ["| class | fused |", "|---|---:|"]
        lines += [f"| {name} | {_percent(fused_iou[name])} |" for name in report["class_names"]]
    lines += [
        "",
        "## Latency [ms]",
        "",
        "| stage | count | median | p99 | mean | max |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {stage} | {s['count']} | {_ms(s['median'])} | {_ms(s['p99'])} | {_ms(s['mean'])} "
        f"| {_ms(s['max'])} |"
        for stage, s in report["latency_ms"].items()
    ]
    jitter = stream["jitter_ms"]
    lines += [
        "",
        "## Frames, sync and stream",
        "",
        "| figure | value |",
        "|---|---:|",
    ]
    lines += [f"| frames.{key} | {_value(value)} |" for key, value in frames.items()]
    lines += [f"| sync.{key} | {_value(value)} |" for key, value in sync.items()]
    lines += [
        f"| stream.expected_fps | {_value(stream['expected_fps'])} |",
        f"| stream.mean_frame_rate | {_value(stream['mean_frame_rate'])} |",
        f"| stream.jitter_ms std / p99 | {_ms(jitter['std'])} / {_ms(jitter['p99'])} |",
        f"| stream.drops | {_value(stream['drops'])} |",
        "",
        "## Problems",
        "",
    ]
    lines += [f"- {line}" for line in report["problems"]] or ["none"]
    lines += [
        "",
        "## Plots",
        "",
        "![confusion matrix](confusion_matrix.png)",
        "![per-class IoU](per_class_iou.png)",
        "![latency](latency.png)",
        "",
    ]
    return "\n".join(lines)


def format_report(report: Mapping[str, Any]) -> str:
    """Return the headline numbers of a report as lines for the terminal."""
    compared = report.get("frame_only_per_class_iou") is not None
    frames, sync, stream = report["frames"], report["sync"], report["stream"]
    lines = [
        "",
        f"== evseg eval: {report['bag']} ==",
        f"model {report['model']}  |  {report['mode']} at {_value(report['rate'])}x  |  "
        f"recorded {_value(report['recorded_fps'])} fps  |  wall {_value(report['wall_s'])} s",
        "",
        "mIoU [%]                  fused" + ("  frame-only" if compared else ""),
    ]
    for condition, fused, frame_only in _miou_rows(report):
        row = f"  {condition:<22} {_percent(fused):>6}"
        if compared:
            row += f"  {_percent(frame_only):>10}  ({_points(fused, frame_only)} points)"
        lines.append(row)
    modes = report.get("modes") or {}
    if modes:
        lines += [
            "",
            "modes: " + "  ".join(f"{mode} {count}" for mode, count in modes.items())
            + f"  (degraded {report.get('degraded_frames', 0)})",
            "mIoU by mode [%]: " + "  ".join(
                f"{mode} {_percent(value)}" for mode, value in report["miou_by_mode"].items()
            ),
        ]
        if report.get("miou_on_frame_only_frames") is not None:
            lines.append(
                "on the frames the frame-only model had: "
                f"{_percent(report['miou_on_frame_only_frames'])} % vs frame-only "
                f"{_percent(report['frame_only_miou'])} %"
            )
    if report.get("faults", {}).get("off_intervals_s"):
        lines.append(
            f"during faults ({report['fault_frames']} frames): mIoU "
            f"{_percent(report['miou_during_fault'])} %, frame-only "
            f"{_percent(report['frame_only_miou_during_fault'])} % "
            f"({report['frame_only_fault_frames']} frames with a camera frame)"
        )
    lines += [
        "",
        "frames: "
        + "  ".join(f"{key} {_value(frames.get(key))}" for key in FRAME_KEYS)
        + f"  (masks for {_percent(frames.get('mask_fraction'))} % of the bag)",
        f"sync: matched {_value(sync.get('matched'))}"
        f" = {_percent(sync.get('matched_fraction'))} % of {sync.get('matched_fraction_of')}",
        "",
        "latency [ms]                count   median      p99",
    ]
    for stage, s in report["latency_ms"].items():
        lines.append(f"  {stage:<24} {s['count']:7d} {_ms(s['median']):>8} {_ms(s['p99']):>8}")
    jitter = stream["jitter_ms"]
    lines += [
        "",
        f"stream: expected {_value(stream['expected_fps'])} fps, received "
        f"{_value(stream['mean_frame_rate'])} fps, jitter std {_ms(jitter['std'])} ms "
        f"p99 {_ms(jitter['p99'])} ms, drops {_value(stream['drops'])}",
    ]
    problems = report["problems"]
    lines += ["", f"problems ({len(problems)}):" if problems else "problems: none"]
    lines += [f"  - {line}" for line in problems]
    return "\n".join(lines)
