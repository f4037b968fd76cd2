#!/usr/bin/env python3
"""Soak run: a recording replayed in a loop through the in-process graph for a long time.

A benchmark, not a test: it shows whether memory, queues or latency creep up over half an hour
of realtime replay (``replay_loop: true``), which no short run can. Every ``--interval`` seconds
it prints one line: process RSS, masks received and their rate, frame->mask latency p50/p99 over
the interval, the nodes' queue lengths and drop counters. Queues and drops are read generically
from each node's ``_diagnostics()`` values by key (see QUEUE_WORDS / DROP_WORDS), so a counter a
node gains later shows up here without touching this script. At the end: a summary (RSS growth
after warm-up, max queues, overall latency, masks/s), every sample as JSON and a plot beside it.

    python scripts/soak.py [--minutes 30] [--interval 30] [--rate 1.0] [--bag PATH]
                           [--output output/soak/soak.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from evseg_ros.nodes.demo import DEMO_RECORDING  # noqa: E402
from evseg_ros.nodes.graph import NAMESPACE  # noqa: E402
from evseg_ros.nodes.image_conversion import stamp_to_ns  # noqa: E402
from evseg_ros.nodes.qos import RESULTS_QOS  # noqa: E402
from evseg_ros.nodes.runner import InProcessGraph  # noqa: E402
from evseg_ros.record.topics import RecordingTopics  # noqa: E402
from evseg_ros.sim.recording import (  # noqa: E402
    DEFAULT_CACHE_ROOT,
    cached_recording,
    stored_calibration,
)

#: words (whole ``_``-separated parts of a key) of diagnostics values holding a queue length
#: (current value; the summary keeps the maximum)
QUEUE_WORDS = ("pending", "queue", "buffered", "backlog")
#: words of counters of something lost on the way (cumulative; lines show the increase). Whole
#: parts, not substrings: "late" must not catch ``accumulate_ms`` or ``latency_us``. A key with
#: one of these is a drop counter even if it also names a queue (``frames_dropped_queue_full``).
DROP_WORDS = (
    "dropped", "skipped", "lost", "late", "errors", "failures", "gaps", "bad", "unpaired",
)
#: how often queues are read between samples, so a short peak is not missed by a long interval
QUEUE_POLL_S = 1.0
#: latency samples kept for one interval's percentiles (30 fps for 55 min; bounded regardless)
INTERVAL_LATENCY_MAX = 100_000
#: executor timeout per spin: short enough that samples come on time, long enough not to busy-wait
SPIN_TIMEOUT_S = 0.05
DEFAULT_OUTPUT = REPO / "output" / "soak" / "soak.json"


# -- environment and memory ---------------------------------------------------------------------
def set_ros_environment() -> None:
    """Keep DDS on this machine in a domain of its own, so a running demo or test never joins.

    Must run before the graph's context is initialised (rcl reads the variables then).
    """
    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 99))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


def rss_mb() -> float:
    """Resident set size of this process [MB]: psutil when installed, else /proc (Linux)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return psutil.Process().memory_info().rss / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return float("nan")


# -- latency ------------------------------------------------------------------------------------
class LatencyHistogram:
    """Latencies over the whole run in fixed log-spaced bins: constant memory for any duration.

    Percentiles come back as the bin's geometric centre, within about 0.6 % of the exact value,
    which is plenty for p50/p99 of a half-hour run.
    """

    def __init__(self, low_ms: float = 0.1, high_ms: float = 1e5, bins: int = 1200) -> None:
        self.edges = np.geomspace(low_ms, high_ms, bins + 1)
        self.counts = np.zeros(bins + 2, dtype=np.int64)  # + underflow and overflow bins

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    def add(self, ms: float) -> None:
        self.counts[int(np.searchsorted(self.edges, ms, side="right"))] += 1

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile [ms] (q in 0..100), None without samples."""
        total = self.count
        if total == 0:
            return None
        rank = max(1, math.ceil(q / 100 * total))
        index = int(np.searchsorted(np.cumsum(self.counts), rank))  # bin 0: under, last: over
        if index == 0:
            return float(self.edges[0])
        if index > len(self.edges) - 1:
            return float(self.edges[-1])
        return float(math.sqrt(self.edges[index - 1] * self.edges[index]))


class FrameSendTimes:
    """When the frame of a mask went out, by header stamp, in a looping replay.

    Read off the camera driver's own record of recent publications (like ``evseg eval``): in one
    process the frame's delivery to a subscriber here would queue behind the very inference it
    is meant to time. Every pass of a loop repeats the same stamps, so a mask takes the newest
    publication of its stamp that no mask took yet and that is younger than one pass; anything
    else (an event-only mask for a frame the replay skipped, a second mask for one frame) has no
    frame of this pass and is counted as unmatched instead of as a latency of whole passes.
    """

    def __init__(self, published_at: deque[tuple[int, int]], max_age_ns: int | None) -> None:
        self.published_at = published_at
        self.max_age_ns = max_age_ns
        #: stamp -> send time a mask already took; bounded like the driver's record
        self._taken: OrderedDict[int, int] = OrderedDict()
        self._taken_max = published_at.maxlen or 4096

    def take(self, stamp_ns: int, arrival_ns: int) -> int | None:
        """Send time [monotonic ns] of the frame of a mask with ``stamp_ns``, or None."""
        for stamp, sent_ns in reversed(self.published_at):  # newest first: the scan stops early
            if self.max_age_ns is not None and arrival_ns - sent_ns > self.max_age_ns:
                return None  # every entry from here on is older still
            if stamp != stamp_ns:
                continue
            if self._taken.get(stamp) == sent_ns:
                return None
            self._taken[stamp] = sent_ns
            self._taken.move_to_end(stamp)
            if len(self._taken) > self._taken_max:
                self._taken.popitem(last=False)
            return sent_ns
        return None


class SoakObserver(Node):
    """Counts masks and times each from its frame's publication, in bounded memory.

    Only subscribes to ``segmentation/mask``; the send times come from :class:`FrameSendTimes`.
    """

    def __init__(self, frame_sent_ns: Callable[[int, int], int | None], **kwargs: Any) -> None:
        super().__init__("soak_observer", **kwargs)
        self.frame_sent_ns = frame_sent_ns
        self.masks = 0
        self.unmatched = 0
        self.interval_ms: deque[float] = deque(maxlen=INTERVAL_LATENCY_MAX)
        self.overall = LatencyHistogram()
        self.create_subscription(Image, "segmentation/mask", self._on_mask, RESULTS_QOS)

    def _on_mask(self, msg: Image) -> None:
        arrival = time.monotonic_ns()
        self.masks += 1
        sent = self.frame_sent_ns(stamp_to_ns(msg.header), arrival)
        if sent is None:
            self.unmatched += 1
            return
        ms = (arrival - sent) / 1e6
        self.interval_ms.append(ms)
        self.overall.add(ms)

    def take_interval(self) -> list[float]:
        """This interval's latencies [ms]; the next interval starts empty."""
        samples = list(self.interval_ms)
        self.interval_ms.clear()
        return samples


def percentiles(samples: list[float]) -> dict[str, float | None]:
    """p50/p99 of one interval (None when it saw no mask)."""
    if not samples:
        return {"p50": None, "p99": None}
    p50, p99 = np.percentile(np.asarray(samples), [50, 99])
    return {"p50": float(p50), "p99": float(p99)}


# -- diagnostics --------------------------------------------------------------------------------
def _number(value: Any) -> float | None:
    """A diagnostics value as a number; None for flags and text (a bool is no count)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def key_has_word(key: str, words: Iterable[str]) -> bool:
    """``key`` has one of ``words`` as a whole ``_``-separated part (case-insensitive)."""
    return not set(key.lower().split("_")).isdisjoint(words)


def select_values(
    values_by_node: dict[str, dict[str, Any]], words: Iterable[str],
    exclude: Iterable[str] = (),
) -> dict[str, float]:
    """``{"node.key": number}`` of every numeric value whose key has one of ``words`` and none
    of ``exclude``."""
    words, exclude = frozenset(words), frozenset(exclude)
    selected = {}
    for node, values in values_by_node.items():
        for key, value in values.items():
            number = _number(value)
            if number is None or not key_has_word(key, words) or key_has_word(key, exclude):
                continue
            selected[f"{node}.{key}"] = number
    return selected


def queue_values(values_by_node: dict[str, dict[str, Any]]) -> dict[str, float]:
    return select_values(values_by_node, QUEUE_WORDS, exclude=DROP_WORDS)


def diagnostics_values(graph: InProcessGraph) -> dict[str, dict[str, Any]]:
    """Each node's current diagnostics values, exactly as it would publish them."""
    return {
        name: dict(node._diagnostics()[2])  # noqa: SLF001 (the node's own diagnostics values)
        for name, node in graph.nodes.items()
    }


# -- samples ------------------------------------------------------------------------------------
@dataclass
class Sample:
    """One interval's figures (also one row of the JSON)."""

    elapsed_s: float
    rss_mb: float
    masks: int
    masks_unmatched: int
    masks_per_s: float
    frames_published: int
    replay_loops: int
    latency_ms: dict[str, float | None]
    queues: dict[str, float]
    queues_max: dict[str, float]
    drops: dict[str, float]
    drops_delta: dict[str, float]
    objects: int | None = None


@dataclass
class SoakState:
    """What persists between samples: counters at the last sample and queue peaks since."""

    last_elapsed_s: float = 0.0
    last_masks: int = 0
    last_unmatched: int = 0
    last_frames: int = 0
    last_drops: dict[str, float] = field(default_factory=dict)
    queues_max: dict[str, float] = field(default_factory=dict)

    def note_queues(self, queues: dict[str, float]) -> None:
        for key, value in queues.items():
            self.queues_max[key] = max(value, self.queues_max.get(key, value))


def take_sample(
    graph: InProcessGraph, observer: SoakObserver, state: SoakState, elapsed_s: float,
    *, count_objects: bool,
) -> Sample:
    """Read everything for one line and move ``state`` on to the next interval."""
    values = diagnostics_values(graph)
    queues = queue_values(values)
    drops = select_values(values, DROP_WORDS)
    state.note_queues(queues)
    flir = graph.nodes["flir_driver"]
    span_s = max(elapsed_s - state.last_elapsed_s, 1e-9)
    masks = observer.masks - state.last_masks
    replay = flir.replay
    sample = Sample(
        elapsed_s=round(elapsed_s, 3),
        rss_mb=round(rss_mb(), 2),
        masks=masks,
        masks_unmatched=observer.unmatched - state.last_unmatched,
        masks_per_s=round(masks / span_s, 3),
        frames_published=flir.frames_published - state.last_frames,
        replay_loops=0 if replay is None else int(replay.loops),
        latency_ms=percentiles(observer.take_interval()),
        queues=queues,
        queues_max=dict(state.queues_max),
        drops=drops,
        drops_delta={k: v - state.last_drops.get(k, 0.0) for k, v in drops.items()},
        objects=len(gc.get_objects()) if count_objects else None,
    )
    state.last_elapsed_s, state.last_masks = elapsed_s, observer.masks
    state.last_unmatched = observer.unmatched
    state.last_frames, state.last_drops = flir.frames_published, drops
    state.queues_max = {}
    return sample


def _num(value: float) -> str:
    return f"{value:g}" if value != int(value) else str(int(value))


def format_sample(sample: Sample) -> str:
    """One printed line; drop counters only once they counted something."""
    latency = sample.latency_ms
    lat = (
        "latency -"
        if latency["p50"] is None
        else f"latency p50 {latency['p50']:7.1f} p99 {latency['p99']:7.1f} ms"
    )
    if sample.masks_unmatched:
        lat += f" ({sample.masks_unmatched} masks without a frame of this pass)"
    objects = "" if sample.objects is None else f" objs {sample.objects}"
    queues = " ".join(
        f"{key}={_num(value)}/{_num(sample.queues_max.get(key, value))}"
        for key, value in sample.queues.items()
    )
    drops = " ".join(
        f"{key}={_num(value)}(+{_num(sample.drops_delta.get(key, 0.0))})"
        for key, value in sample.drops.items()
        if value
    )
    return (
        f"[{sample.elapsed_s:7.1f} s] rss {sample.rss_mb:7.1f} MB{objects} | masks "
        f"{sample.masks:5d} ({sample.masks_per_s:5.1f}/s) of {sample.frames_published} frames, "
        f"loop {sample.replay_loops} | {lat} | queues now/max {queues or '-'} | "
        f"drops {drops or 'none'}"
    )


# -- summary ------------------------------------------------------------------------------------
def warmup_seconds(run_s: float, warmup_minutes: float) -> float:
    """``warmup_minutes`` unless that is over half the run; then 10 % of the run.

    Memory grows while the model, allocator pools and caches fill: growth is judged after that.
    """
    warmup_s = warmup_minutes * 60.0
    return warmup_s if warmup_s <= run_s / 2 else 0.1 * run_s


def summarise(
    samples: list[Sample], observer: SoakObserver, *, warmup_s: float, rss_start_mb: float,
) -> dict[str, Any]:
    """Figures of the whole run: RSS after warm-up vs at the end, peaks, overall latency."""
    warm = next((s for s in samples if s.elapsed_s >= warmup_s), None)
    end = samples[-1] if samples else None
    growth = None
    if warm is not None and end is not None and warm.rss_mb > 0:
        growth = 100.0 * (end.rss_mb - warm.rss_mb) / warm.rss_mb
    queues_max: dict[str, float] = {}
    for sample in samples:
        for key, value in sample.queues_max.items():
            queues_max[key] = max(value, queues_max.get(key, value))
    elapsed = end.elapsed_s if end is not None else 0.0
    masks = sum(s.masks for s in samples)
    return {
        "elapsed_s": elapsed,
        "rss_start_mb": round(rss_start_mb, 2),
        "warmup_s": warmup_s,
        "rss_warm_mb": None if warm is None else warm.rss_mb,
        "rss_warm_at_s": None if warm is None else warm.elapsed_s,
        "rss_end_mb": None if end is None else end.rss_mb,
        "rss_growth_after_warmup_pct": None if growth is None else round(growth, 2),
        "rss_max_mb": max((s.rss_mb for s in samples), default=None),
        "queues_max": queues_max,
        "drops": {} if end is None else end.drops,
        "masks": masks,
        "masks_unmatched": observer.unmatched,
        "masks_per_s": round(masks / elapsed, 3) if elapsed > 0 else 0.0,
        "frames_published": sum(s.frames_published for s in samples),
        "replay_loops": 0 if end is None else end.replay_loops,
        "latency_ms": {
            "p50": observer.overall.percentile(50),
            "p99": observer.overall.percentile(99),
            "count": observer.overall.count,
        },
    }


def _opt(value: float | None, unit: str, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f} {unit}"


def format_summary(summary: dict[str, Any]) -> str:
    """The end-of-run block: memory first (what a soak is for), then queues and latency."""
    latency = summary["latency_ms"]
    lines = [
        f"summary after {summary['elapsed_s']:.0f} s ({summary['replay_loops']} loops):",
        f"  rss start {summary['rss_start_mb']:.1f} MB, warm "
        f"{_opt(summary['rss_warm_mb'], 'MB')} (at {_opt(summary['rss_warm_at_s'], 's', 0)}), "
        f"end {_opt(summary['rss_end_mb'], 'MB')}, max {_opt(summary['rss_max_mb'], 'MB')}, "
        f"growth after warm-up {_opt(summary['rss_growth_after_warmup_pct'], '%', 2)}",
        f"  masks {summary['masks']} of {summary['frames_published']} frames published, "
        f"{summary['masks_per_s']:.2f}/s; latency p50 {_opt(latency['p50'], 'ms')} "
        f"p99 {_opt(latency['p99'], 'ms')} over {latency['count']} masks "
        f"({summary['masks_unmatched']} without a frame of their pass)",
        "  max queues: " + (", ".join(
            f"{key}={_num(value)}" for key, value in summary["queues_max"].items()) or "-"),
        "  drops: " + format_drops(summary["drops"]),
    ]
    return "\n".join(lines)


def format_drops(drops: dict[str, float]) -> str:
    """The counters that counted something; the silent ones only by name, to show they exist."""
    counted = ", ".join(f"{key}={_num(value)}" for key, value in drops.items() if value)
    zero = [key for key, value in drops.items() if not value]
    return (counted or "none") + (f" (at 0: {', '.join(zero)})" if zero else "")


# -- output -------------------------------------------------------------------------------------
def write_json(path: Path, settings: dict[str, Any], samples: list[Sample],
               summary: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {"settings": settings, "summary": summary, "samples": [asdict(s) for s in samples]}
    path.write_text(json.dumps(report, indent=2))


def write_plot(path: Path, samples: list[Sample], warmup_s: float) -> bool:
    """RSS and interval latency over time; False (and the run still counts) without matplotlib."""
    try:
        from matplotlib.figure import Figure  # Agg through a bare Figure: no display needed
    except ImportError:
        return False
    minutes = [s.elapsed_s / 60 for s in samples]
    figure = Figure(figsize=(9, 6), layout="constrained")
    rss_axes, latency_axes = figure.subplots(2, 1, sharex=True)
    rss_axes.plot(minutes, [s.rss_mb for s in samples], marker=".")
    rss_axes.axvline(warmup_s / 60, color="grey", linestyle="--", label="warm-up")
    rss_axes.set_ylabel("RSS [MB]")
    rss_axes.legend(loc="lower right")
    for key, style in (("p50", "-"), ("p99", "--")):
        values = [np.nan if s.latency_ms[key] is None else s.latency_ms[key] for s in samples]
        latency_axes.plot(minutes, values, style, marker=".", label=key)
    latency_axes.set_ylabel("frame->mask latency [ms]")
    latency_axes.set_xlabel("elapsed [min]")
    latency_axes.legend(loc="upper right")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100)
    return True


# -- the run ------------------------------------------------------------------------------------
def graph_overrides(bag: Path, rate: float, calibration: Path | None,
                    model: str | None) -> dict[str, dict[str, Any]]:
    """Both drivers replay ``bag`` in a loop, in realtime at ``rate``; the rest as configured."""
    topics = RecordingTopics()
    replay = {
        "source": "bag", "bag_path": str(bag), "replay_pacing": "realtime",
        "replay_rate": float(rate), "replay_loop": True, "replay_epoch_ns": 0,
    }
    overrides: dict[str, dict[str, Any]] = {
        "evk4_driver": {**replay, "bag_topic": topics.events},
        "flir_driver": {**replay, "bag_topic": topics.frames},
        "accumulator": {},
        "segmentation": {} if model is None else {"model_path": model},
    }
    if calibration is not None:
        for values in overrides.values():
            values["calibration_file"] = str(calibration)
    return overrides


def recording_calibration(bag: Path, output_dir: Path) -> Path | None:
    """The calibration a simulated recording was rendered with, written out for the nodes.

    Replaying through another calibration would misplace events and frames alike.
    """
    text = stored_calibration(bag)
    if text is None:
        return None
    path = output_dir / "calibration.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def pass_wall_ns(replay: Any) -> int | None:
    """Wall time one pass of a realtime replay takes (None without a replay)."""
    if replay is None:
        return None
    return int(replay.clock.span_ns / replay.clock.rate)


def startup_problems(graph: InProcessGraph) -> list[str]:
    """Why the graph cannot soak (no model, a driver without its recording); empty when fine."""
    problems = []
    segmentation = graph.nodes["segmentation"]
    if segmentation.segmenter is None:
        problems.append(f"segmentation: {segmentation.error}")
    for name in ("evk4_driver", "flir_driver"):
        if graph.nodes[name].source is None:
            problems.append(f"{name}: {graph.nodes[name].error}")
    return problems


def soak(graph: InProcessGraph, observer: SoakObserver, *, run_s: float, interval_s: float,
         count_objects: bool) -> list[Sample]:
    """Spin the graph for ``run_s``, one sample per ``interval_s`` and one at the end.

    Between samples the queues are read once a second (cheap) so their peaks are caught; the
    executor is never held for longer than one diagnostics read. Ctrl-C ends the run early and
    still gives the summary.
    """
    state, samples = SoakState(), []
    start = time.monotonic()
    next_sample, next_poll = start + interval_s, start + QUEUE_POLL_S
    try:
        while True:
            graph.spin_once(SPIN_TIMEOUT_S)
            now = time.monotonic()
            if now >= next_poll:
                state.note_queues(queue_values(diagnostics_values(graph)))
                next_poll = now + QUEUE_POLL_S
            if now >= next_sample or now - start >= run_s:
                samples.append(take_sample(graph, observer, state, now - start,
                                           count_objects=count_objects))
                print(format_sample(samples[-1]), flush=True)
                next_sample += interval_s
                if now - start >= run_s:
                    break
    except KeyboardInterrupt:
        now = time.monotonic()
        if now - start > state.last_elapsed_s + 1.0:
            samples.append(take_sample(graph, observer, state, now - start,
                                       count_objects=count_objects))
            print(format_sample(samples[-1]), flush=True)
        print("interrupted: summary of the run so far", flush=True)
    return samples


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the run")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--rate", type=float, default=1.0, help="realtime replay rate")
    parser.add_argument("--bag", help="recording to replay (default: the demo recording)")
    parser.add_argument("--config", default=str(REPO / "config" / "rig.yaml"))
    parser.add_argument("--model", help="segmentation model (default: the config's)")
    parser.add_argument("--warmup-minutes", type=float, default=2.0,
                        help="RSS growth is measured from the first sample after this "
                             "(10 %% of the run when it is over half of it)")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT),
                        help="samples as JSON; the plot goes beside it (.png)")
    parser.add_argument("--count-objects", action="store_true",
                        help="also count Python objects tracked by the GC (slow on big heaps)")
    args = parser.parse_args(argv)
    for name in ("minutes", "interval", "rate"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name} must be positive, got {getattr(args, name)!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_ros_environment()
    output = Path(args.output)
    if args.bag:
        bag = Path(args.bag)
    else:
        bag = cached_recording(DEMO_RECORDING, cache_root=REPO / DEFAULT_CACHE_ROOT)
    run_s = args.minutes * 60.0
    warmup_s = warmup_seconds(run_s, args.warmup_minutes)
    calibration = recording_calibration(bag, output.parent)
    overrides = graph_overrides(bag, args.rate, calibration, args.model)
    print(f"soak: {bag} looped at rate {args.rate:g} for {args.minutes:g} min, a sample every "
          f"{args.interval:g} s (ROS_DOMAIN_ID {os.environ['ROS_DOMAIN_ID']})", flush=True)
    with InProcessGraph(args.config, overrides=overrides) as graph:
        problems = startup_problems(graph)
        if problems:
            print("cannot soak: " + "; ".join(problems), file=sys.stderr)
            return 2
        flir = graph.nodes["flir_driver"]
        send_times = FrameSendTimes(flir.published_at, pass_wall_ns(flir.replay))
        observer = SoakObserver(send_times.take, context=graph.context, namespace=NAMESPACE)
        graph.add_node(observer)
        rss_start = rss_mb()
        samples = soak(graph, observer, run_s=run_s, interval_s=args.interval,
                       count_objects=args.count_objects)
        summary = summarise(samples, observer, warmup_s=warmup_s, rss_start_mb=rss_start)
    print(format_summary(summary))
    settings = {
        "bag": str(bag), "rate": args.rate, "minutes": args.minutes, "interval_s": args.interval,
        "config": args.config, "model": args.model, "queue_words": QUEUE_WORDS,
        "drop_words": DROP_WORDS,
    }
    write_json(output, settings, samples, summary)
    plot = output.with_suffix(".png")
    plotted = write_plot(plot, samples, warmup_s)
    print(f"wrote {output}" + (f" and {plot}" if plotted else " (no matplotlib: no plot)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
