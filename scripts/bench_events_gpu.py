#!/usr/bin/env python3
"""Throughput of EVT3 decode + event-frame accumulation with torch, against the numpy path.

The stream is the real ``evt3_sample.raw`` recording, decoded, sorted by time and re-encoded
over and over with shifted times until it holds about ``--events`` events, so that the word mix
(vectors, rows, clock words) is a real sensor's and the run is long enough to time. The times
start shortly before the 24-bit clock wraps, so the wrap handling is part of what is timed.

For each packet size the stream is fed, packet by packet, to
:class:`~evseg_ros.events.evt3_torch.TorchEvt3Accumulator.accumulate` with one window that
holds every event (the most work per byte), from device memory and from host memory (which
adds the host-to-device copy). The numpy path (:class:`Evt3Decoder` then
:class:`EventFrameBuilder`) runs on a prefix of the same stream (``--cpu-mb``), and the torch
frame of that prefix is compared with it bit for bit, so a run on a new GPU also checks
correctness there. Timed regions are bracketed by ``torch.cuda.synchronize()``.

Typical use::

    python scripts/bench_events_gpu.py                         # ~100 M events on CUDA
    python scripts/bench_events_gpu.py --device cpu --events 2000000 --packet-mb 1 4 0
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # runnable from a source checkout without installing
    sys.path.insert(0, str(REPO_ROOT))

import torch

from evseg_ros.events.event_frame import EventFrameBuilder
from evseg_ros.events.evt3 import Evt3Decoder, Evt3EncoderState, encode_evt3, read_raw_file
from evseg_ros.events.evt3_torch import DEVICE_CHOICES, TorchEvt3Accumulator, resolve_device
from evseg_ros.events.types import EVT3_TIME_PERIOD_US
from evseg_ros.geometry.calibration import RigCalibration, calibration_from_dict

DEFAULT_SAMPLE = REPO_ROOT.parent / "shared" / "data" / "expelliarmus" / "evt3_sample.raw"
MB = 1 << 20


def rig_calibration() -> RigCalibration:
    """An EVK4-sized event camera (1280x720) seen through a 640x480 frame camera.

    Half scale with a vertical offset: the whole sensor lands inside the frame, so every
    event is accumulated (the most work per byte).
    """
    intrinsics = [500.0, 0.0, 0.0, 0.0, 500.0, 0.0, 0.0, 0.0, 1.0]
    return calibration_from_dict(
        {
            "event_camera": {"width": 1280, "height": 720, "camera_matrix": intrinsics},
            "frame_camera": {"width": 640, "height": 480, "camera_matrix": intrinsics},
            "event_to_frame_homography": [0.5, 0.0, 0.0, 0.0, 0.5, 60.0, 0.0, 0.0, 1.0],
        },
        source="benchmark rig",
    )


def build_stream(sample: Path, n_events: int) -> tuple[bytes, int, int, int]:
    """Tile the recording to about ``n_events`` events, re-encoded as one EVT3 stream.

    Returns:
        ``(stream, n_events, t_first, t_last)``; times in unwrapped microseconds.
    """
    _, payload = read_raw_file(sample)
    base = Evt3Decoder().decode(payload).events
    base = base[np.argsort(base["t"], kind="stable")]  # the recording has small clock glitches
    rel = base["t"] - base["t"][0]
    period = int(rel[-1]) + 1
    copies = max(1, -(-n_events // base.size))
    start = EVT3_TIME_PERIOD_US - (copies * period) // 2  # wrap half-way through
    state = Evt3EncoderState()
    chunks = []
    group = 16  # copies per encode call: fewer calls, bounded memory
    for first in range(0, copies, group):
        count = min(group, copies - first)
        tiled = np.tile(base, count)
        offsets = np.repeat(np.arange(first, first + count, dtype=np.int64) * period, base.size)
        tiled["t"] = start + np.tile(rel, count) + offsets
        chunks.append(encode_evt3(tiled, state=state))
    return b"".join(chunks), copies * base.size, start, start + (copies - 1) * period + period


def split(n_bytes: int, packet_bytes: int) -> list[tuple[int, int]]:
    """Byte ranges of consecutive packets (0 = one packet); odd sizes are kept as they are."""
    if packet_bytes <= 0 or packet_bytes >= n_bytes:
        return [(0, n_bytes)]
    return [(a, min(a + packet_bytes, n_bytes)) for a in range(0, n_bytes, packet_bytes)]


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so that a timer sees it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(run: Callable[[], object], device: torch.device, repeat: int) -> float:
    """Fastest of ``repeat`` timed runs (after one untimed warm-up run)."""
    run()
    best = float("inf")
    for _ in range(repeat):
        synchronize(device)
        start = time.perf_counter()
        run()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def numpy_frame(
    stream: memoryview, ranges: Sequence[tuple[int, int]], cal: RigCalibration, window: tuple
) -> tuple[np.ndarray, int, float, float]:
    """The reference path: decode each packet with numpy, build one frame of the window.

    Returns:
        ``(frame, events in the window, decode seconds, build seconds)``.
    """
    start = time.perf_counter()
    decoder = Evt3Decoder(width=cal.event_camera.width, height=cal.event_camera.height)
    parts = [decoder.decode(stream[a:b]).events for a, b in ranges]
    events = np.concatenate(parts)
    t0, t1 = window
    events = events[(events["t"] >= t0) & (events["t"] < t1)]
    decoded = time.perf_counter()
    frame = EventFrameBuilder(cal).build(events, t0, t1)
    return frame, int(events.size), decoded - start, time.perf_counter() - decoded


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help=f"one of {DEVICE_CHOICES} or cuda:N")
    parser.add_argument("--events", type=float, default=100e6, help="events in the stream")
    parser.add_argument(
        "--packet-mb",
        type=float,
        nargs="+",
        default=[1, 16, 0],
        help="packet sizes in MiB (0 = the whole stream as one packet)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per case (best kept)")
    parser.add_argument(
        "--cpu-mb", type=float, default=64, help="prefix of the stream timed on the numpy path"
    )
    parser.add_argument("--sample", type=Path, default=DEFAULT_SAMPLE, help="EVT3 .raw file")
    args = parser.parse_args(argv)
    if not args.sample.is_file():
        parser.error(f"recording not found: {args.sample} (the ../shared/data folder)")

    device = resolve_device(args.device)
    print(f"device: {device_name(device)}; torch {torch.__version__}, numpy {np.__version__}")
    start = time.perf_counter()
    stream, n_events, t_first, t_last = build_stream(args.sample, int(args.events))
    window = (t_first, t_last + 1)
    print(
        f"stream: {n_events / 1e6:.1f} M events, {len(stream) / MB:.1f} MiB "
        f"({len(stream) / n_events:.2f} B/event), {(t_last - t_first) / 1e6:.2f} s of sensor "
        f"time across a 24-bit clock wrap; built in {time.perf_counter() - start:.1f} s"
    )
    cal = rig_calibration()
    host = np.frombuffer(stream, dtype=np.uint8)
    view = memoryview(stream)
    host_tensor = torch.from_numpy(host.copy())
    on_device = host_tensor.to(device)
    pinned = host_tensor.pin_memory() if device.type == "cuda" else None

    # numpy reference on a prefix, and the same prefix through torch: rate and identity.
    prefix = min(len(stream), int(args.cpu_mb * MB))
    ref_packet = int(16 * MB)
    ref_ranges = split(prefix, ref_packet)
    ref_frame, ref_events, decode_s, build_s = numpy_frame(view, ref_ranges, cal, window)
    cpu_rate = ref_events / (decode_s + build_s)
    acc = TorchEvt3Accumulator(cal, device=device)
    frame = acc.new_frame()
    for a, b in ref_ranges:
        acc.accumulate(on_device[a:b], *window, frame)
    same = torch.equal(frame.cpu(), torch.from_numpy(ref_frame))
    check = Evt3Decoder(width=cal.event_camera.width, height=cal.event_camera.height)
    small = min(prefix, 4 * MB)
    same_events = np.array_equal(
        TorchEvt3Accumulator(cal, device=device).decode(on_device[:small]).events,
        check.decode(view[:small]).events,
    )
    print(
        f"numpy on {prefix / MB:.1f} MiB in 16 MiB packets: decode + frame "
        f"{cpu_rate / 1e9:.4f} Gev/s (decode {ref_events / decode_s / 1e9:.4f}, "
        f"frame {ref_events / build_s / 1e9:.4f}); torch frame bit-identical: {same}; "
        f"torch events identical ({small / MB:.1f} MiB): {same_events}"
    )

    print(
        f"{'packet':>10} {'source':>7} {'packets':>8} {'time s':>9} {'Gev/s':>8} "
        f"{'GB/s in':>8} {'x numpy':>8}"
    )
    best = 0.0
    for packet_mb in args.packet_mb:
        ranges = split(len(stream), int(packet_mb * MB))
        label = "whole" if packet_mb <= 0 else f"{packet_mb:g} MiB"
        sources = {"device": [on_device[a:b] for a, b in ranges]}
        if pinned is not None:
            # pageable numpy views (what a ROS message gives), and pinned host memory, from
            # which the transfer runs asynchronously
            sources["host"] = [host[a:b] for a, b in ranges]
            sources["pinned"] = [pinned[a:b] for a, b in ranges]
        acc = TorchEvt3Accumulator(cal, device=device)  # tables built once, outside the timing
        for source, packets in sources.items():

            def run(packets: list = packets, acc: TorchEvt3Accumulator = acc) -> torch.Tensor:
                acc.reset()
                frame = acc.new_frame()
                for packet in packets:
                    acc.accumulate(packet, *window, frame)
                return frame

            seconds = best_time(run, device, args.repeat)
            rate = n_events / seconds
            best = max(best, rate)
            print(
                f"{label:>10} {source:>7} {len(ranges):>8} {seconds:>9.4f} {rate / 1e9:>8.3f} "
                f"{len(stream) / seconds / 1e9:>8.2f} {rate / cpu_rate:>8.1f}"
            )
    print(f"best: {best / 1e9:.3f} Gev/s decode + accumulate on {device_name(device)}")
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        print(f"peak device memory: {peak:.1f} GiB")
    return 0 if same and same_events else 1


if __name__ == "__main__":
    sys.exit(main())
