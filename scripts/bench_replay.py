#!/usr/bin/env python3
"""End-to-end benchmark: a simulated recording replayed through the rig at several rates.

For each rate the graph runs in realtime pacing (drops counted) and reports what fraction of
the recording's frames came back as masks, frame->mask latency (median / p99), the mask rate and
mIoU; a lockstep run of the same recording is the baseline every realtime row is compared with
(accuracy ratio). Figures only, no pass/fail: compare rows of one run on one machine.

    python scripts/bench_replay.py [--rates 0.25,0.5,1.0] [--seconds 6] [--json out.json]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="0.25,0.5,1.0", help="realtime replay rates")
    parser.add_argument("--seconds", type=float, default=DEMO_RECORDING.seconds)
    parser.add_argument("--config", default=str(REPO / "config" / "rig.yaml"))
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    bag = cached_recording(dataclasses.replace(DEMO_RECORDING, seconds=args.seconds))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        baseline = run_eval(
            bag, Path(tmp) / "lockstep", EvalOptions(config=args.config, mode="lockstep")
        ).report
        rows.append(_row("lockstep", baseline, None))
        for rate in (float(r) for r in args.rates.split(",")):
            report = run_eval(
                bag, Path(tmp) / f"rt{rate}", EvalOptions(config=args.config, rate=rate)
            ).report
            rows.append(_row(f"realtime x{rate:g}", report, baseline))
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
