#!/usr/bin/env python3
"""Throughput of EVT3 decoding, and of decoding + event-frame accumulation, on one CPU core.

Paths compared (M ev/s = million CD events per second of wall time, best and median of
``--repeat`` runs, each after an untimed warm-up run that also compiles the numba kernels):

* decode only: the numpy ``Evt3Decoder``, the numba ``FastEvt3Decoder`` and, if installed,
  ``expelliarmus`` (``Wizard.read``; GPL-2.0, a baseline only, never imported by the
  package: ``.venv/bin/pip install expelliarmus``). expelliarmus only reads whole files, so
  the ratio that compares like with like is "file -> events" for both (the file is read from
  the page cache in both cases); ours is also timed in memory, on 64 KiB packets as a camera
  driver delivers them and on the whole stream in one call (whose single large output array
  costs page faults);
* decode + accumulate into a (3, H, W) float32 event frame: numpy decode, window cut and
  ``EventFrameBuilder.build`` against the fused ``decode_and_accumulate``. The real recordings
  are 1280x720 and use a 1280x720 identity mapping (which the fused path recognises and runs
  without table reads) and, to show what a real table costs, a full-size non-identity
  homography table; the simulated rig uses its own calibration's table (400x225 -> 320x240).
  The window spans the whole stream, so every event is accumulated.

Data. The recordings in ``../shared/data`` are small (0.6 MB, 0.76 MB), so each is tiled: its
16-bit word stream is repeated ``--copies`` times, and in copy k every EVT_TIME_HIGH word is
advanced by k times the recording's span (in 4096 us steps, modulo the 12-bit field). The
camera's word mix (vectors, vendor words, clock words) is untouched and time keeps increasing
across copies (the 24-bit clock wraps and is unwrapped as on a live stream). The bag is
replayed packet by packet with its own packet sizes. expelliarmus rejects EXT_TRIGGER words,
so the bag file written for it (and for our "file -> events" line) has them removed. The bag
is a sparse recording (4.6 words per event, most of them clock and vendor words), and the
simulated rig's encoder gives most events their own time word, so both yield far fewer
events per second than the dense sample for every decoder: per word the work is similar.

The process is pinned to one CPU (``os.sched_setaffinity``) and numba to one thread.

Usage::

    .venv/bin/python scripts/bench_events.py [--repeat 7] [--copies 20] [--no-sim]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # must be set before numba is imported

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # runnable from a source checkout without installing
    sys.path.insert(0, str(REPO_ROOT))

from evseg_ros.events import evt3_fast
from evseg_ros.events.event_frame import EventFrameBuilder
from evseg_ros.events.evt3 import Evt3Decoder, Evt3EncoderState, encode_evt3, read_raw_file
from evseg_ros.geometry import CameraModel, RigCalibration, load_calibration

DATA = REPO_ROOT.parent / "shared" / "data"
SAMPLE_RAW = DATA / "expelliarmus" / "evt3_sample.raw"
TRIGGER_BAG = DATA / "event_camera_codecs" / "test_data_evt3_trigger"
SIM_CALIBRATION = REPO_ROOT / "config" / "calibration" / "sim_rig.yaml"
PACKET_BYTES = 64 * 1024
TIME_HIGH = 0x8
EXT_TRIGGER = 0xA

try:
    from expelliarmus import Wizard
except ImportError:
    Wizard = None


# =================================================================================== data


def tile_words(words: np.ndarray, copies: int) -> np.ndarray:
    """Repeat an EVT3 word stream, shifting each copy's clock past the previous copy.

    Only TIME_HIGH words change: copy k gets ``k * span`` added to their 12-bit value (mod
    4096), where ``span`` is the number of 4096 us steps the stream covers, so time keeps
    increasing across copies and a wrap of the 24-bit clock looks as it does on a live camera.
    """
    high = (words >> 12) == TIME_HIGH
    if not high.any():
        raise SystemExit("cannot tile a stream without EVT_TIME_HIGH words")
    decoder = Evt3Decoder()
    decoder.decode(words)
    span = (decoder.current_time_us >> 12) - int(words[high][0] & 0xFFF) + 1
    out = np.empty((copies, words.size), dtype=np.uint16)
    for k in range(copies):
        out[k] = words
        out[k, high] = (TIME_HIGH << 12) | (((words[high] & 0xFFF) + k * span) % 4096)
    return out.reshape(-1)


def split_like(data: bytes, sizes: Sequence[int]) -> list[memoryview]:
    """Cut ``data`` into packets of the given sizes, cycling through them."""
    view = memoryview(data)
    packets, pos, k = [], 0, 0
    while pos < len(data):
        size = sizes[k % len(sizes)]
        packets.append(view[pos : pos + size])
        pos += size
        k += 1
    return packets


def identity_calibration(width: int, height: int, homography=None) -> RigCalibration:
    """Both cameras on one ``width`` x ``height`` grid (identity mapping unless given)."""
    camera = CameraModel(width, height, np.eye(3), np.zeros(5))
    return RigCalibration(
        event_camera=camera,
        frame_camera=camera,
        event_to_frame=np.eye(3) if homography is None else np.asarray(homography, float),
        output_width=width,
        output_height=height,
    )


def simulated_stream(duration_us: int) -> bytes:
    """EVT3 bytes of the simulated rig's event camera (as the simulated source encodes it)."""
    from evseg_ros.sim.rig import CoaxialRigSim

    simulator = CoaxialRigSim(load_calibration(SIM_CALIBRATION)).event_simulator(0)
    state = Evt3EncoderState()
    parts = []
    for t in range(5_000, duration_us + 1, 5_000):
        events, triggers = simulator.advance_to(t)
        parts.append(encode_evt3(events, triggers, state=state))
    return b"".join(parts)


# ============================================================================== timing


class Bench:
    """Runs, times and prints the measurements."""

    def __init__(self, repeat: int) -> None:
        self.repeat = repeat

    def time(self, fn: Callable[[], object]) -> list[float]:
        """Seconds per run of ``fn``, after one untimed warm-up run."""
        fn()
        runs = []
        for _ in range(self.repeat):
            start = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - start)
        return runs

    def rate(self, label: str, n_events: int, fn: Callable[[], object]) -> tuple[float, float]:
        """Print and return (best, median) M ev/s of ``fn`` handling ``n_events`` events."""
        runs = self.time(fn)
        best = n_events / min(runs) / 1e6
        median = n_events / statistics.median(runs) / 1e6
        print(f"    {label:<62} {best:8.1f} {median:8.1f}")
        return best, median


def ratio_line(label: str, ours: tuple[float, float], base: tuple[float, float]) -> None:
    print(
        f"    ratio {label}: best {ours[0] / base[0]:.2f}x, "
        f"median {ours[1] / base[1]:.2f}x"
    )


def header(title: str) -> None:
    print(f"  {title:<64} {'best':>8} {'median':>8}")


# =========================================================================== scenarios


def decode_rates(
    bench: Bench,
    packets: Sequence[memoryview],
    stream: bytes,
    raw_path: Path,
    n_events: int,
    width: int,
    height: int,
    packet_label: str,
) -> None:
    """Decode-only lines and the ratio to expelliarmus."""
    header("decode only (M ev/s)")

    def packets_with(decoder_cls) -> Callable[[], None]:
        def run() -> None:
            decoder = decoder_cls(width=width, height=height)
            for packet in packets:
                decoder.decode(packet)

        return run

    bench.rate(f"numpy Evt3Decoder, {packet_label}", n_events, packets_with(Evt3Decoder))
    fast_packets = bench.rate(
        f"numba FastEvt3Decoder, {packet_label}",
        n_events,
        packets_with(evt3_fast.FastEvt3Decoder),
    )
    bench.rate(
        "numpy Evt3Decoder, whole stream in one call",
        n_events,
        lambda: Evt3Decoder(width=width, height=height).decode(stream),
    )
    bench.rate(
        "numba FastEvt3Decoder, whole stream in one call",
        n_events,
        lambda: evt3_fast.FastEvt3Decoder(width=width, height=height).decode(stream),
    )
    fast_file = bench.rate(
        "numba file -> events (read_raw_file + decode)",
        n_events,
        lambda: evt3_fast.FastEvt3Decoder(width=width, height=height).decode(
            read_raw_file(raw_path)[1]
        ),
    )
    if Wizard is None:
        print("    expelliarmus: not installed (.venv/bin/pip install expelliarmus), no ratio")
        return
    wizard = Wizard(encoding="evt3")
    got = wizard.read(raw_path)
    if got is None or len(got) != n_events:
        print(f"    expelliarmus: decoded {None if got is None else len(got)} events, "
              f"expected {n_events}; no ratio")
        return
    base = bench.rate("expelliarmus Wizard.read, file -> events", n_events,
                      lambda: wizard.read(raw_path))
    ratio_line("numba / expelliarmus, file -> events (same file)", fast_file, base)
    ratio_line(f"numba {packet_label} / expelliarmus file", fast_packets, base)


def accumulate_rates(
    bench: Bench,
    packets: Sequence[memoryview],
    n_events: int,
    tables: Sequence[tuple[str, RigCalibration]],
    width: int,
    height: int,
) -> None:
    """Decode + accumulate lines: numpy decode/cut/build against the fused path."""
    reference = Evt3Decoder(width=width, height=height)
    events = np.concatenate([reference.decode(p).events for p in packets])
    t0, t1 = int(events["t"][0]), int(events["t"][-1]) + 1

    for name, calibration in tables:
        header(f"decode + accumulate, {name} (M ev/s)")
        builder = EventFrameBuilder(calibration)
        accumulator = evt3_fast.FastFrameAccumulator(calibration)

        def numpy_path(builder: EventFrameBuilder = builder) -> np.ndarray:
            decoder = Evt3Decoder(width=width, height=height)
            decoded = np.concatenate([decoder.decode(p).events for p in packets])
            times = decoded["t"]
            return builder.build(decoded[(times >= t0) & (times < t1)], t0, t1)

        def fused_path(accumulator: evt3_fast.FastFrameAccumulator = accumulator) -> np.ndarray:
            decoder = evt3_fast.FastEvt3Decoder(width=width, height=height)
            frame = accumulator.new_frame()
            for packet in packets:
                accumulator.accumulate(decoder, packet, frame, t0, t1)
            return frame

        if not np.array_equal(numpy_path(), fused_path()):
            raise SystemExit(f"fused frame differs from EventFrameBuilder ({name})")
        bench.rate("numpy decode + window cut + EventFrameBuilder.build", n_events, numpy_path)
        table = "no table (identity)" if accumulator.lut is None else "int32 table"
        bench.rate(f"numba decode_and_accumulate, {table}", n_events, fused_path)


def check_decoders(packets: Sequence[memoryview], width: int, height: int) -> int:
    """Both decoders agree on the tiled stream; return its number of events."""
    ref = Evt3Decoder(width=width, height=height)
    fast = evt3_fast.FastEvt3Decoder(width=width, height=height)
    n = 0
    for packet in packets:
        want, got = ref.decode(packet), fast.decode(packet)
        if not (
            np.array_equal(want.events, got.events)
            and np.array_equal(want.triggers, got.triggers)
        ):
            raise SystemExit("numba decoder output differs from the numpy decoder")
        n += len(want.events)
    if fast.counters != ref.counters:
        raise SystemExit("numba decoder counters differ from the numpy decoder")
    return n


def scenario(
    bench: Bench,
    title: str,
    words: np.ndarray,
    raw_header: bytes,
    tmp: Path,
    packet_sizes: Sequence[int],
    packet_label: str,
    tables: Sequence[tuple[str, RigCalibration]],
    width: int,
    height: int,
) -> None:
    stream = words.astype("<u2").tobytes()
    packets = split_like(stream, packet_sizes)
    n_events = check_decoders(packets, width, height)
    raw_path = tmp / "stream.raw"
    kept = words[(words >> 12) != EXT_TRIGGER]  # expelliarmus rejects trigger words
    raw_path.write_bytes(raw_header + kept.astype("<u2").tobytes())
    note = "" if kept.size == words.size else f", file without its {words.size - kept.size} " \
        "trigger words"
    print(f"\n[{title}] {n_events:,} events, {len(stream) / 1e6:.1f} MB, "
          f"{len(packets)} packets{note}")
    decode_rates(bench, packets, stream, raw_path, n_events, width, height, packet_label)
    accumulate_rates(bench, packets, n_events, tables, width, height)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per line")
    parser.add_argument("--copies", type=int, default=20, help="tiling factor of each recording")
    parser.add_argument("--cpu", type=int, default=0, help="CPU to pin to")
    parser.add_argument("--no-sim", action="store_true", help="skip the simulated rig")
    args = parser.parse_args(argv)

    if not evt3_fast.available():
        print(f"numba path unavailable: {evt3_fast.UNAVAILABLE_REASON}")
        return 1
    import numba

    numba.set_num_threads(1)
    pinned = "not pinned (no sched_setaffinity)"
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
        pinned = f"pinned to CPU {args.cpu}"
    evt3_fast.warm_up()
    try:
        import expelliarmus

        exp_version = getattr(expelliarmus, "__version__", "installed")
    except ImportError:
        exp_version = "not installed"
    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").is_file():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    print(f"EVT3 benchmark: one core ({pinned}), numba {numba.__version__} (1 thread), "
          f"numpy {np.__version__}, expelliarmus {exp_version}")
    print(f"CPU: {cpu}, {os.cpu_count()} logical CPUs; best and median of {args.repeat} runs; "
          f"recordings tiled x{args.copies}")

    bench = Bench(args.repeat)
    full = [("1280x720 identity", identity_calibration(1280, 720))]
    table = identity_calibration(1280, 720, [[0.98, 0.02, 8.0], [-0.02, 0.98, 12.0], [0, 0, 1]])
    full.append(("1280x720 homography table", table))
    with tempfile.TemporaryDirectory(prefix="bench_events_") as tmp_name:
        tmp = Path(tmp_name)
        if SAMPLE_RAW.is_file():
            _, payload = read_raw_file(SAMPLE_RAW)
            raw = SAMPLE_RAW.read_bytes()
            words = tile_words(np.frombuffer(payload, dtype="<u2"), args.copies)
            scenario(bench, f"{SAMPLE_RAW.name} x{args.copies}", words,
                     raw[: len(raw) - len(payload)], tmp, [PACKET_BYTES], "64 KiB packets",
                     full, 1280, 720)
        else:
            print(f"\n[{SAMPLE_RAW.name}] skipped: {SAMPLE_RAW} not found")
        if TRIGGER_BAG.is_dir():
            from evseg_ros.events.bag import read_event_packets

            bag = [np.asarray(m.events, np.uint8) for _, _, m in read_event_packets(TRIGGER_BAG)]
            sizes = [len(p) for p in bag]
            words = tile_words(np.concatenate(bag).view("<u2"), args.copies)
            raw_header = b"% evt 3.0\n% format EVT3;height=720;width=1280\n% end\n"
            scenario(bench, f"trigger bag x{args.copies}", words, raw_header, tmp, sizes,
                     "bag packets", full, 1280, 720)
        else:
            print(f"\n[trigger bag] skipped: {TRIGGER_BAG} not found")
        if not args.no_sim:
            calibration = load_calibration(SIM_CALIBRATION)
            event = calibration.event_camera
            stream = simulated_stream(200_000)
            words = tile_words(np.frombuffer(stream, dtype="<u2"), max(args.copies // 4, 1))
            raw_header = (f"% evt 3.0\n% format EVT3;height={event.height};"
                          f"width={event.width}\n% end\n").encode()
            scenario(bench, f"simulated rig 200 ms x{max(args.copies // 4, 1)}", words,
                     raw_header, tmp, [PACKET_BYTES], "64 KiB packets",
                     [("sim rig table 400x225 -> 320x240", calibration)],
                     event.width, event.height)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
