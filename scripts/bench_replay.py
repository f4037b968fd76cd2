#!/usr/bin/env python3
"""End-to-end benchmark: a simulated recording replayed through the rig at several rates.

For each rate the graph runs in realtime pacing (drops counted) and reports what fraction of
the recording's frames came back as masks, frame->mask latency (median / p99), the mask rate and
mIoU; a lockstep run of the same recording is the baseline every realtime row is compared with
(accuracy ratio). Figures only, no pass/fail: compare rows of one run on one machine.

    python scripts/bench_replay.py [--rates 0.25,0.5,1.0] [--seconds 6] [--json out.json]

``--hz 30,60`` replays at those frame rates instead (frame->mask on the vehicle's cadences;
``make bench-gpu`` runs it with ``--device cuda``), and ``--backend``/``--device`` choose the
segmentation node's engine. ``--json`` writes each run with ros2_benchmark's metric names
(``BasicPerformanceMetrics``) besides this script's own row.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from evseg_ros.eval.recording import inspect_recording  # noqa: E402
from evseg_ros.nodes.demo import DEMO_RECORDING  # noqa: E402
from evseg_ros.nodes.evaluate import EvalOptions, run_eval  # noqa: E402
from evseg_ros.sim.recording import cached_recording  # noqa: E402


def _row(name: str, report: dict, baseline: dict | None) -> dict:
    frames, latency = report["frames"], report["latency_ms"].get("frame_to_mask", {})
    row = {
        "name": name,
        "mode": report["mode"],
        "rate": report["rate"],
        "offered_fps": report["stream"]["expected_fps"],
        "mask_fps": report["stream"]["mean_frame_rate"],
        "mask_fraction": frames["mask_fraction"],
        "frames_dropped": frames["dropped"],
        "frame_to_mask_median_ms": latency.get("median"),
        "frame_to_mask_p99_ms": latency.get("p99"),
        "jitter_p99_ms": report["stream"]["jitter_ms"]["p99"],
        "miou": report["miou"],
        "sync_matched_fraction": report["sync"]["matched_fraction"],
    }
    if baseline is not None and baseline["miou"] and report["miou"] is not None:
        row["miou_vs_lockstep"] = report["miou"] / baseline["miou"]
    return row


def _ros2_benchmark(row: dict, report: dict) -> dict:
    """One run's figures under ros2_benchmark's BasicPerformanceMetrics names."""
    latency = report["latency_ms"].get("frame_to_mask", {})
    jitter = report["stream"]["jitter_ms"]
    return {
        "Mean Playback Frame Rate (fps)": row["offered_fps"],
        "Mean Frame Rate (fps)": row["mask_fps"],
        "# of Missed Frames": row["frames_dropped"],
        "# of Frames Sent": report["frames"].get("published"),
        "Mean End-to-End Latency (ms)": latency.get("mean"),
        "Median End-to-End Latency (ms)": latency.get("median"),
        "p99 End-to-End Latency (ms)": latency.get("p99"),
        "Max. End-to-End Latency (ms)": latency.get("max"),
        "Max. Frame-to-Frame Jitter (ms)": jitter.get("max"),
        "p99 Frame-to-Frame Jitter (ms)": jitter.get("p99"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="0.25,0.5,1.0", help="realtime replay rates")
    parser.add_argument("--hz", help="replay at these frame rates instead of --rates, e.g. 30,60")
    parser.add_argument("--seconds", type=float, default=DEMO_RECORDING.seconds)
    parser.add_argument("--config", default=str(REPO / "config" / "rig.yaml"))
    parser.add_argument("--backend", help="segmentation backend (default: the config's)")
    parser.add_argument("--device", help="segmentation device (default: the config's)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    bag = cached_recording(dataclasses.replace(DEMO_RECORDING, seconds=args.seconds))
    recorded_fps = inspect_recording(bag).recorded_fps
    if args.hz:
        hz_list = [float(hz) for hz in args.hz.split(",")]
        runs = [(f"realtime {hz:g} Hz", hz / recorded_fps) for hz in hz_list]
    else:
        runs = [(f"realtime x{float(r):g}", float(r)) for r in args.rates.split(",")]
    segmentation = {}
    if args.backend:
        segmentation["backend"] = args.backend
    if args.device:
        segmentation["device"] = args.device
    overrides = {"segmentation": segmentation} if segmentation else {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        options = EvalOptions(config=args.config, mode="lockstep", overrides=overrides)
        baseline = run_eval(bag, Path(tmp) / "lockstep", options).report
        rows.append(_row("lockstep", baseline, None))
        for index, (name, rate) in enumerate(runs):
            options = EvalOptions(config=args.config, rate=rate, overrides=overrides)
            report = run_eval(bag, Path(tmp) / f"rt{index}", options).report
            row = _row(name, report, baseline)
            rows.append({**row, "ros2_benchmark": _ros2_benchmark(row, report)})
    header = (f"{'run':<16}{'offered':>9}{'masks/s':>9}{'masks %':>9}{'p50 ms':>9}"
              f"{'p99 ms':>9}{'mIoU':>8}{'vs lockstep':>13}")
    print(f"\nrecording {bag} ({args.seconds:g} s, 30 fps)\n\n{header}")
    for row in rows:
        ratio = row.get("miou_vs_lockstep")
        print(
            f"{row['name']:<16}{row['offered_fps']:9.1f}{row['mask_fps'] or 0:9.1f}"
            f"{100 * row['mask_fraction']:9.1f}{row['frame_to_mask_median_ms'] or 0:9.1f}"
            f"{row['frame_to_mask_p99_ms'] or 0:9.1f}{100 * (row['miou'] or 0):8.1f}"
            f"{'' if ratio is None else f'{ratio:13.3f}'}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
