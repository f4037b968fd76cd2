#!/usr/bin/env python3
"""Degradation benchmark: ``evseg eval`` with injected faults, on a quiet and on a busy machine.

A simulated recording (every lighting condition) is replayed through the rig's nodes at
``--rate`` with, in turn: no fault; the events off for 5 s and later the frames off for 5 s;
10 % of the EventPackets lost. Each runs once on a quiet machine and once with ``--busy``
processes spinning beside it (a vehicle computer is never idle). The table gives the frames per
mode, the pipeline's mIoU next to the frame-only model's on the same frames, the mIoU per mode
and during the faults. A benchmark, not a test: it prints figures, it asserts nothing.

    .venv/bin/python scripts/bench_faults.py [--seconds 14] [--rate 0.25] [--busy 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from evseg_ros.nodes.evaluate import EvalOptions, run_eval  # noqa: E402
from evseg_ros.sim.recording import RecordingSpec, cached_recording  # noqa: E402


def scenarios(seconds: float) -> dict[str, dict]:
    """Fault sets by name; the off intervals sit inside the recording with time to recover."""
    events_off = (1.0, 5.0)
    frames_off = (events_off[0] + events_off[1] + 1.5, 5.0)
    if frames_off[0] + frames_off[1] > seconds - 0.5:
        msg = f"--seconds {seconds} is too short for two 5 s faults (needs >= 14)"
        raise SystemExit(msg)
    return {
        "clean": {},
        "events_off+frames_off": {
            "drop_events": "{}:{}".format(*events_off),
            "drop_frames": "{}:{}".format(*frames_off),
        },
        "packet_loss_10%": {"packet_loss": 0.1, "fault_seed": 1},
    }


@contextmanager
def busy_processes(count: int):
    """``count`` shell loops spinning on the CPU for the duration of the block."""
    loops = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(count)]
    try:
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def _percent(value: float | None) -> str:
    return "  n/a" if value is None else f"{100 * value:5.1f}"


def summary(report: dict) -> dict:
    keys = (
        "modes", "degraded_frames", "miou", "frame_only_miou", "miou_on_frame_only_frames",
        "miou_by_mode", "fault_frames",
        "miou_during_fault", "frame_only_fault_frames", "frame_only_miou_during_fault",
    )
    result = {key: report.get(key) for key in keys}
    result["mask_fraction"] = report["frames"].get("mask_fraction")
    result["frame_to_mask_ms"] = report["latency_ms"].get("frame_to_mask")
    return result


def row(load: str, name: str, result: dict) -> str:
    modes = result["modes"]
    by_mode = result["miou_by_mode"]
    return (
        f"{load:<6} {name:<22} {modes.get('fused', 0):5d} {modes.get('frame_only', 0):5d} "
        f"{modes.get('event_only', 0):5d} {modes.get('none', 0):4d}  "
        f"{_percent(result['mask_fraction'])}  {_percent(result['miou'])} "
        f"{_percent(result['miou_on_frame_only_frames'])} {_percent(result['frame_only_miou'])}  "
        f"{_percent(by_mode.get('fused'))} {_percent(by_mode.get('frame_only'))} "
        f"{_percent(by_mode.get('event_only'))}  "
        f"{_percent(result['miou_during_fault'])} "
        f"{_percent(result['frame_only_miou_during_fault'])}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=14.0, help="recording length [s]")
    parser.add_argument("--rate", type=float, default=0.25, help="replay rate (realtime)")
    parser.add_argument("--busy", type=int, default=2, help="busy processes in the loaded runs")
    parser.add_argument("--model", help="fused model (default: the config's)")
    parser.add_argument("--only", help="run only this scenario")
    parser.add_argument("--output", default="output/bench_faults", help="reports and JSON")
    args = parser.parse_args(argv)

    spec = RecordingSpec(
        seconds=args.seconds, seed=11, conditions=("normal", "night", "glare"),
        condition_period_s=args.seconds / 3,
    )
    print(f"rendering (or reusing) a {args.seconds:g} s recording ...", flush=True)
    recording = cached_recording(spec)
    output = Path(args.output)
    results: dict[str, dict] = {}
    runs = scenarios(args.seconds)
    if args.only:
        runs = {args.only: runs[args.only]}
    for load, count in (("quiet", 0), ("busy", args.busy)):
        for name, faults in runs.items():
            options = EvalOptions(
                model=args.model, rate=args.rate, compare_frame_only=True, panels=0, **faults
            )
            print(f"{load}: {name} ...", flush=True)
            with busy_processes(count):
                report = run_eval(recording, output / load / name, options).report
            results[f"{load}/{name}"] = summary(report)
    header = (
        f"{'load':<6} {'faults':<22} {'fused':>5} {'f-only':>5} {'e-only':>5} {'none':>4}  "
        f"masks%  mIoU  same f-only  by mode: fused f-only e-only  in fault: mIoU f-only"
    )
    print(
        f"\nrecording {recording} at {args.rate:g}x; mIoU in % (f-only = frame-only model; "
        "same = the pipeline on the frames the frame-only model had)"
    )
    print(header)
    for key, result in results.items():
        load, name = key.split("/", 1)
        print(row(load, name, result))
    output.mkdir(parents=True, exist_ok=True)
    (output / "bench_faults.json").write_text(json.dumps(results, indent=2))
    print(f"\nwrote {output / 'bench_faults.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
