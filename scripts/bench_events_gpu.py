#!/usr/bin/env python3
"""Throughput of what the accumulator node runs on a GPU: the torch event path.

The tiled real recording of ``bench_events.py`` (one trigger edge per copy, windows that tile
the stream, a homography table onto a 640x480 frame) is fed to
:class:`~evseg_ros.pipeline.accumulator.EventFrameAccumulator` with ``device: cuda`` exactly as
the node feeds it (``on_packet``, ``on_frame``, ``poll``): each packet is decoded on the GPU, its
events stay there, and each frame's event frame is built there. Timed runs end with
``torch.cuda.synchronize()``. The numpy reference (:class:`Evt3Decoder`, window cut,
:class:`EventFrameBuilder`) runs in the same process on the same stream, and the frames of both
are checked to be identical first.

Without a GPU (``--device cpu``, or ``auto`` on a machine without one) the same torch path runs
on the CPU: that checks its logic and frames anywhere, and says so; its speed means nothing for
a GPU.

Usage::

    .venv/bin/python scripts/bench_events_gpu.py [--device auto] [--copies 200] \\
        [--packet-kb 64 1024] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

import torch
from bench_events import (
    SAMPLE_RAW,
    check_same,
    rates,
    recording_stream,
    run_accumulator,
    run_numpy_reference,
)

from evseg_ros.device import DEVICE_CHOICES, resolve_device
from evseg_ros.pipeline.accumulator import EventPath


def synchronized(run: Callable[[], list], device: torch.device) -> Callable[[], list]:
    """``run``, returning only once the device has done the work it queued."""

    def timed() -> list:
        out = run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return out

    timed.prepare = run.prepare  # type: ignore[attr-defined]
    return timed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", help=f"one of {DEVICE_CHOICES} or cuda:N")
    parser.add_argument("--copies", type=int, default=None,
                        help="tiling of the recording (default 200 on a GPU, 5 on the CPU)")
    parser.add_argument("--packet-kb", type=int, nargs="+", default=[64, 1024],
                        help="EventPacket sizes in KiB")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per line")
    args = parser.parse_args(argv)
    if not SAMPLE_RAW.is_file():
        parser.error(f"recording not found: {SAMPLE_RAW} (the ../shared/data folder)")

    device = resolve_device(args.device)
    if device.type == "cuda":
        name = f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
        copies = args.copies or 200
    else:
        name = "CPU: the torch path run on the CPU to check its logic; its speed says nothing "
        name += "about a GPU"
        copies = args.copies or 5
    print(f"torch event path of the accumulator on {name}; torch {torch.__version__}")
    status = 0
    for packet_kb in args.packet_kb:
        stream = recording_stream(copies, packet_kb << 10)
        run = synchronized(run_accumulator(stream, EventPath.TORCH, str(device)), device)
        try:
            check_same(stream, {"torch path": run})
            same = "identical"
        except SystemExit as failure:
            print(failure)
            same, status = "DIFFERENT", 1
        reference = rates(stream, run_numpy_reference(stream), args.repeat)
        got = rates(stream, run, args.repeat)
        print(f"[{stream.name}] {stream.events / 1e6:.1f} M events, {len(stream.triggers_us)} "
              f"frames ({same}): numpy reference {reference[0]:.1f} M ev/s, torch path "
              f"{got[0]:.1f} M ev/s (best of {args.repeat}), {got[0] / reference[0]:.1f}x")
    if device.type == "cuda":
        print(f"peak device memory: {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
    return status


if __name__ == "__main__":
    sys.exit(main())
