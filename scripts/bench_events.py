#!/usr/bin/env python3
"""Throughput of what the accumulator node runs on a CPU: EVT3 packets in, event frames out.

Each stream is fed to :class:`~evseg_ros.pipeline.accumulator.EventFrameAccumulator` exactly as
the node feeds it (``on_packet`` per EventPacket, ``on_frame`` per camera frame, ``poll``), with
frame windows that tile the stream, so every event is decoded once and accumulated once. Lines
(M ev/s = million CD events per second of wall time, best and median of ``--repeat`` runs after
an untimed warm-up run):

* numpy reference: :class:`Evt3Decoder` per packet, each window cut, :class:`EventFrameBuilder`;
* accumulator, host path: the registry's decoder (numba), numpy event buffer and frame builder
  (the CPU path before the fused one);
* accumulator, fused path: packets kept and each window decoded straight into its frame by the
  numba kernel; what ``device: cpu`` (or ``auto`` without a GPU) runs.

The frames of all three are checked to be identical before anything is timed.

Streams: the real recording ``../shared/data/expelliarmus/evt3_sample.raw`` (8.8 ms of a dense
1280x720 Gen4 sensor) tiled ``--copies`` times, copy k's clock moved past copy k - 1 by whole
TIME_HIGH steps, one trigger edge half-way through each copy, 64 KiB packets, through a
homography table onto a 640x480 frame; and the simulated rig (its own calibration) in the 5 ms
packets its source publishes. The process is pinned to one CPU and numba to one thread.

Usage::

    .venv/bin/python scripts/bench_events.py [--repeat 5] [--copies 20] [--no-sim]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # must be set before numba is imported

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # runnable from a source checkout without installing
    sys.path.insert(0, str(REPO_ROOT))

from evseg_ros.events import evt3_fast
from evseg_ros.events.event_frame import EventFrameBuilder
from evseg_ros.events.evt3 import Evt3Decoder, Evt3EncoderState, encode_evt3, read_raw_file
from evseg_ros.events.evt3_format import (
    EXT_TRIGGER,
    PAYLOAD_MASK,
    TIME_HIGH,
    TIME_LOW,
    TYPE_SHIFT,
)
from evseg_ros.events.window import WindowConfig
from evseg_ros.geometry import RigCalibration, load_calibration
from evseg_ros.geometry.calibration import calibration_from_dict
from evseg_ros.pipeline.accumulator import AccumulatorConfig, EventFrameAccumulator, EventPath

SAMPLE_RAW = REPO_ROOT.parent / "shared" / "data" / "expelliarmus" / "evt3_sample.raw"
SIM_CALIBRATION = REPO_ROOT / "config" / "calibration" / "sim_rig.yaml"
PACKET_BYTES = 64 * 1024
EPOCH_NS = 1_700_000_000_000_000_000
#: rising edge on trigger channel 0
TRIGGER_WORD = (EXT_TRIGGER << TYPE_SHIFT) | 1


@dataclass
class Stream:
    """Packets and frames in the order the node would see them, and the windows they make."""

    name: str
    calibration: RigCalibration
    window: WindowConfig
    #: ("packet", seq, stamp_ns, bytes) or ("frame", key, stamp_ns), in arrival order
    feed: list[tuple]
    packets: list[bytes]
    triggers_us: list[int]
    events: int


def make_stream(name, calibration, window: WindowConfig, packets: Sequence[bytes]) -> Stream:
    """Stamp the packets, and add each frame once the events of its window are in."""
    camera = calibration.event_camera
    decoder = Evt3Decoder(width=camera.width, height=camera.height)
    feed, waiting, triggers, events = [], [], [], 0
    for seq, data in enumerate(packets):
        decoded = decoder.decode(data)
        events += len(decoded.events)
        first = min([int(a["t"][0]) for a in decoded if len(a)], default=decoder.current_time_us)
        feed.append(("packet", seq, EPOCH_NS + first * 1000, data))
        waiting += [int(edge["t"]) for edge in decoded.triggers if edge["value"] == 1]
        done = [t for t in waiting if window.bounds(t)[1] <= decoder.current_time_us]
        feed += [("frame", t, EPOCH_NS + t * 1000) for t in done]
        triggers += done
        waiting = [t for t in waiting if t not in done]
    return Stream(name, calibration, window, feed, list(packets), triggers, events)


def recording_stream(copies: int, packet_bytes: int = PACKET_BYTES) -> Stream:
    """The sample recording tiled, with a trigger edge half-way through each copy."""
    _, payload = read_raw_file(SAMPLE_RAW)
    words = np.frombuffer(payload, dtype="<u2")
    kind = words >> TYPE_SHIFT
    high = kind == TIME_HIGH
    span = int(np.ptp(words[high] & PAYLOAD_MASK)) + 1  # copy period, in 4096 us steps
    clock_words = np.flatnonzero(kind == TIME_LOW)
    edge_at = int(clock_words[len(clock_words) // 2])  # mid-recording, before a TIME_LOW
    tiled = np.tile(words, copies)
    high_at = np.flatnonzero(np.tile(high, copies))
    shift = high_at // words.size * span
    tiled[high_at] = (TIME_HIGH << TYPE_SHIFT) | ((tiled[high_at] + shift) & PAYLOAD_MASK)
    stream = np.insert(tiled, edge_at + words.size * np.arange(copies), TRIGGER_WORD).tobytes()
    packets = [stream[i : i + packet_bytes] for i in range(0, len(stream), packet_bytes)]
    period_us = span << 12
    identity = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    calibration = calibration_from_dict({
        "event_camera": {"width": 1280, "height": 720, "camera_matrix": identity},
        "frame_camera": {"width": 640, "height": 480, "camera_matrix": identity},
        "event_to_frame_homography": [0.5, 0.01, 2.0, -0.01, 0.55, 40.0, 0.0, 0.0, 1.0],
    }, source="benchmark rig")  # fmt: skip
    # windows of one copy period each, from half a period before the edge: they tile the stream
    window = WindowConfig(duration_us=period_us, end_offset_us=period_us // 2)
    name = f"recording x{copies}, {packet_bytes >> 10} KiB packets"
    return make_stream(name, calibration, window, packets)


def simulated_stream(duration_us: int) -> Stream:
    """The simulated rig's event camera in 5 ms packets, as its source publishes it."""
    from evseg_ros.sim.rig import CoaxialRigSim

    calibration = load_calibration(SIM_CALIBRATION)
    simulator = CoaxialRigSim(calibration).event_simulator(0)
    state = Evt3EncoderState()
    packets = [encode_evt3(*simulator.advance_to(t), state=state)
               for t in range(5_000, duration_us + 1, 5_000)]  # fmt: skip
    window = WindowConfig(duration_us=100_000, end_offset_us=50_000)  # the 10 Hz trigger
    return make_stream(f"simulated rig {duration_us // 1000} ms", calibration, window, packets)


# ============================================================================== timing


def run_accumulator(stream: Stream, path: EventPath, device: str = "cpu") -> Callable[[], list]:
    """One pass of the stream through a fresh accumulator, as the node drives it."""
    config = AccumulatorConfig(window=stream.window, device=device, event_path=path)
    width, height = stream.calibration.event_camera.width, stream.calibration.event_camera.height
    made: list[EventFrameAccumulator] = []

    def prepare() -> None:  # the calibration table and warm-up are not per-packet work
        made.append(EventFrameAccumulator(stream.calibration, config))

    def run() -> list:
        acc = made.pop()
        out = []
        for kind, key, stamp_ns, *data in stream.feed:
            if kind == "packet":
                acc.on_packet(encoding="evt3", data=data[0], seq=key, stamp_ns=stamp_ns,
                              width=width, height=height)  # fmt: skip
            else:
                acc.on_frame(key, stamp_ns, arrival_ns=0)
            out += acc.poll(now_ns=0)
        return out + acc.poll(now_ns=1 << 62)

    run.prepare = prepare  # type: ignore[attr-defined]
    return run


def run_numpy_reference(stream: Stream) -> Callable[[], list]:
    """Decode every packet with numpy, cut each frame's window, build with numpy."""
    camera = stream.calibration.event_camera
    builder = EventFrameBuilder(stream.calibration)

    def run() -> list:
        decoder = Evt3Decoder(width=camera.width, height=camera.height)
        events = np.concatenate([decoder.decode(p).events for p in stream.packets])
        frames = []
        for t in stream.triggers_us:
            t0, t1 = stream.window.bounds(t)
            lo, hi = np.searchsorted(events["t"], [t0, t1])
            frames.append(builder.build(events[lo:hi], t0, t1))
        return frames

    return run


def rates(stream: Stream, run: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(best, median) M ev/s of ``run`` over ``repeat`` timed runs after a warm-up run."""
    seconds = []
    for k in range(repeat + 1):
        getattr(run, "prepare", lambda: None)()
        start = time.perf_counter()
        run()
        if k:
            seconds.append(time.perf_counter() - start)
    return stream.events / min(seconds) / 1e6, stream.events / statistics.median(seconds) / 1e6


def frames_of(out: list) -> list[np.ndarray]:
    """The event frames of an accumulator run, as numpy arrays (torch frames copied over)."""
    from evseg_ros.pipeline.accumulator import host_array

    return [host_array(ready.event_frame) for ready in out]


def check_same(stream: Stream, runs: dict[str, Callable[[], list]]) -> None:
    """Every path gives the numpy reference's frames, one per trigger edge."""
    want = run_numpy_reference(stream)()
    for label, run in runs.items():
        getattr(run, "prepare", lambda: None)()
        got = frames_of(run())
        if len(got) != len(want) or not all(map(np.array_equal, got, want)):
            raise SystemExit(f"{stream.name}: {label} frames differ from the numpy reference")


def bench_stream(stream: Stream, repeat: int) -> None:
    labels = {
        EventPath.HOST: "accumulator, host path (numba decode, numpy frames)",
        EventPath.FUSED: "accumulator, fused path (what the node runs)",
    }
    runs = {labels[path]: run_accumulator(stream, path) for path in labels}
    check_same(stream, runs)
    print(f"\n[{stream.name}] {stream.events / 1e6:.2f} M events, {len(stream.packets)} packets, "
          f"{len(stream.triggers_us)} frames (identical on every path)")
    print(f"  {'M ev/s':<58} {'best':>7} {'median':>7}")
    reference = rates(stream, run_numpy_reference(stream), repeat)
    print(f"  {'numpy reference (Evt3Decoder, window cut, builder)':<58} "
          f"{reference[0]:7.1f} {reference[1]:7.1f}")
    got = {}
    for label, run in runs.items():
        got[label] = rates(stream, run, repeat)
        print(f"  {label:<58} {got[label][0]:7.1f} {got[label][1]:7.1f}")
    fused, host = got[labels[EventPath.FUSED]], got[labels[EventPath.HOST]]
    print(f"  fused / numpy reference: {fused[1] / reference[1]:.1f}x (median), "
          f"fused / host path: {fused[1] / host[1]:.1f}x")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per line")
    parser.add_argument("--copies", type=int, default=20, help="tiling of the recording")
    parser.add_argument("--sim-ms", type=int, default=600, help="simulated rig duration")
    parser.add_argument("--cpu", type=int, default=0, help="CPU to pin to")
    parser.add_argument("--no-sim", action="store_true", help="skip the simulated rig")
    args = parser.parse_args(argv)

    if not evt3_fast.available():
        print(f"the fused path needs numba: {evt3_fast.UNAVAILABLE_REASON}")
        return 1
    import numba

    numba.set_num_threads(1)
    pinned = "not pinned"
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
        pinned = f"pinned to CPU {args.cpu}"
    evt3_fast.warm_up()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), "unknown CPU") \
        if Path("/proc/cpuinfo").is_file() else "unknown CPU"  # fmt: skip
    print(f"EVT3 packets -> event frames through the accumulator, one core ({pinned}; {cpu}); "
          f"numba {numba.__version__}, numpy {np.__version__}; {args.repeat} runs per line")
    if SAMPLE_RAW.is_file():
        bench_stream(recording_stream(args.copies), args.repeat)
    else:
        print(f"\n[recording] skipped: {SAMPLE_RAW} not found")
    if not args.no_sim:
        bench_stream(simulated_stream(args.sim_ms * 1000), args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
