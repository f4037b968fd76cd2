"""Decoders stay bounded on adversarial input: memory, exact counters, and a fuzzing run.

A VECT_12 word names up to 12 events, but only those whose x stays inside the sensor exist;
a packet made only of VECT_12 words once made the numpy decoder expand every named event
(7.5 GB for 16 MB). Each decoder must now keep its working memory within 4x the packet (plus
the events it returns) on any bytes, and still count every word in exactly one category.

Memory is measured with tracemalloc for the numpy decoders (numpy reports its buffers to it)
and as the growth of the peak resident set in a fresh interpreter for numba and torch (their
buffers are invisible to tracemalloc; Linux only). Packets are 8 MiB (16 MiB for torch):
large enough that the decoders' fixed-size block temporaries (a few MiB, up to ~40 MiB for
torch) stay below the bound; smaller packets are a single block, bounded by that size.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from evseg_ros.events import evt3_fast
from evseg_ros.events.evt2 import Evt2Decoder
from evseg_ros.events.evt3 import (
    BLOCK_WORDS,
    WORD_CATEGORIES,
    DecodedEvents,
    DecoderCounters,
    Evt3Decoder,
    OutputRecords,
)
from evseg_ros.events.types import EVENT_DTYPE, TRIGGER_DTYPE

REPO_ROOT = Path(__file__).resolve().parents[2]
FUZZ_SCRIPT = REPO_ROOT / "scripts" / "fuzz_decoders.py"
WIDTH, HEIGHT = 1280, 720
PACKET_BYTES = 8 << 20
#: Working memory allowed beyond the returned events, in packets.
MEMORY_FACTOR = 4


needs_numba = pytest.mark.skipif(not evt3_fast.available(), reason="numba is not installed")
needs_proc = pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to measure peak RSS"
)


# ===================================================================== adversarial packets


def vect12_flood(n: int) -> np.ndarray:
    """VECT_12 words with full masks and no base: 12 events named per word."""
    return np.full(n, 0x4FFF, dtype="<u2")


def all_ones(n: int) -> np.ndarray:
    return np.full(n, 0xFFFF, dtype="<u2")


def all_zeros(n: int) -> np.ndarray:
    return np.zeros(n, dtype="<u2")


def time_high_storm(n: int) -> np.ndarray:
    """TIME_HIGH words with random values: thousands of wraps and glitches."""
    return (0x8000 | np.random.default_rng(5).integers(0, 4096, n)).astype("<u2")


def rows_and_bases_with_full_vectors(n: int) -> np.ndarray:
    """Row 5, base 0, six full VECT_12 masks: 72 events per 8 words, all on the sensor."""
    return np.resize(np.array([0x0005, 0x3000] + [0x4FFF] * 6, dtype="<u2"), n)


def vectors_across_the_edges(n: int) -> np.ndarray:
    """Per 16 words: base 10 pixels before the right edge on the last row, six full masks
    (10 events kept, 62 named past the edge), then a row past the sensor and six more."""
    unit = [HEIGHT - 1, 0x3000 | (WIDTH - 10)] + [0x4FFF] * 6 + [2047, 0x3000] + [0x4FFF] * 6
    return np.resize(np.array(unit, dtype="<u2"), n)


def random_words(n: int) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 1 << 16, n, dtype=np.uint16).astype("<u2")


EVT3_PATTERNS: dict[str, Callable[[int], np.ndarray]] = {
    "vect12_flood": vect12_flood,
    "all_ones": all_ones,
    "all_zeros": all_zeros,
    "time_high_storm": time_high_storm,
    "rows_and_bases_with_full_vectors": rows_and_bases_with_full_vectors,
    "vectors_across_the_edges": vectors_across_the_edges,
    "random_words": random_words,
}


def expected_evt3(name: str, words: np.ndarray) -> dict[str, int]:
    """Counters each pattern must produce, worked out from its construction."""
    n = int(words.size)
    high = (words & 0xFFF).astype(np.int64)
    drops = np.concatenate(([0], high[:-1])) - high
    expected = {
        # bases 0, 12, ..., 1272: pixels 0..1279 exist, the rest of the named events do not
        "vect12_flood": {"cd_words": n, "cd_events": WIDTH, "out_of_bounds": 12 * n - WIDTH},
        "all_ones": {"continued_words": n, "cd_events": 0},
        "all_zeros": {"address_words": n, "cd_events": 0},
        "time_high_storm": {"time_words": n, "time_wraps": int(np.count_nonzero(drops > 2048))},
        "rows_and_bases_with_full_vectors": {
            "cd_words": 6 * n // 8, "cd_events": 72 * n // 8, "out_of_bounds": 0,
        },
        "vectors_across_the_edges": {
            "cd_words": 12 * n // 16, "cd_events": 10 * n // 16, "out_of_bounds": 134 * n // 16,
        },
    }  # fmt: skip
    return expected.get(name, {})


def evt2_words(name: str, n: int) -> np.ndarray:
    """EVT2 counterparts: off-sensor CD floods, CD events that all exist, type storms."""
    rng = np.random.default_rng(3)
    values = {
        "off_sensor_cd": np.full(n, (2047 << 11) | 2047),
        "all_ones": np.full(n, 0xFFFFFFFF),
        "all_zeros": np.zeros(n, dtype=np.int64),  # CD_OFF at (0, 0): every word an event
        "time_high_storm": 0x80000000 | rng.integers(0, 1 << 28, n),
        "random_words": rng.integers(0, 1 << 32, n),
    }[name]
    return values.astype("<u4")


# ===================================================================== helpers


def assert_words_partitioned(counters: DecoderCounters, n_words: int) -> None:
    """Every word counted once, in exactly one category."""
    assert counters.words == n_words
    assert counters.categorised_words() == n_words


def assert_on_sensor(decoded: DecodedEvents) -> None:
    events = decoded.events
    assert events.dtype == EVENT_DTYPE and decoded.triggers.dtype == TRIGGER_DTYPE
    if len(events):
        assert int(events["x"].max()) < WIDTH and int(events["y"].max()) < HEIGHT


def traced_decode(decoder, data: bytes) -> tuple[DecodedEvents, int]:
    """Decode under tracemalloc; the peak of numpy's buffers during the call."""
    tracemalloc.start()
    try:
        decoded = decoder.decode(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return decoded, peak


def output_bytes(decoded: DecodedEvents) -> int:
    return int(decoded.events.nbytes + decoded.triggers.nbytes)


#: Run in a fresh interpreter: decode each packet file once and report the growth of the
#: peak resident set during the call (the kernel's high-water mark, reset just before).
RSS_PROBE = r"""
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
kind, files = sys.argv[2], sys.argv[3:]

def status(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key + ":"))

if kind == "numba":
    from evseg_ros.events.evt3_fast import FastEvt3Decoder, warm_up
    warm_up()
    make = lambda: FastEvt3Decoder(width=1280, height=720)
else:
    import torch
    torch.set_num_threads(1)
    from evseg_ros.events.evt3_torch import TorchEvt3Accumulator
    from evseg_ros.geometry.calibration import calibration_from_dict
    eye = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    cam = {"width": 1280, "height": 720, "camera_matrix": eye}
    rig = calibration_from_dict(
        {"event_camera": cam, "frame_camera": cam, "event_to_frame_homography": eye})
    make = lambda: TorchEvt3Accumulator(rig, device="cpu")
make().decode(np.random.default_rng(0).integers(0, 256, 1 << 16, dtype=np.uint8).tobytes())
try:  # hand freed heap back first, or reusing it would hide part of the growth
    import ctypes
    trim = ctypes.CDLL("libc.so.6").malloc_trim
except (OSError, AttributeError):
    trim = lambda _pad: None
results = {}
for path in files:
    data = open(path, "rb").read()
    decoder = make()
    trim(0)
    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    out = decoder.decode(data)
    growth = status("VmHWM") - before
    c = decoder.counters
    results[path] = {"growth": growth, "output": out.events.nbytes + out.triggers.nbytes,
                     "counters": c.as_dict(), "events": len(out.events),
                     "max_x": int(out.events["x"].max()) if len(out.events) else -1,
                     "max_y": int(out.events["y"].max()) if len(out.events) else -1}
    del out, decoder
print(json.dumps(results))
"""


def probe_rss(kind: str, packets: dict[str, np.ndarray], tmp_path: Path) -> dict[str, dict]:
    """:data:`RSS_PROBE` over the given packets; results by pattern name."""
    files = {}
    for name, words in packets.items():
        files[name] = tmp_path / f"{name}.bin"
        files[name].write_bytes(words.tobytes())
    done = subprocess.run(
        [sys.executable, "-c", RSS_PROBE, str(REPO_ROOT), kind, *map(str, files.values())],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    raw = json.loads(done.stdout.strip().splitlines()[-1])
    return {name: raw[str(path)] for name, path in files.items()}


# ===================================================================== numpy decoders


@pytest.mark.parametrize("name", sorted(EVT3_PATTERNS))
def test_numpy_evt3_memory_stays_within_four_packets(name):
    words = EVT3_PATTERNS[name](PACKET_BYTES // 2)
    data = words.tobytes()
    decoder = Evt3Decoder(width=WIDTH, height=HEIGHT)
    decoded, peak = traced_decode(decoder, data)
    assert peak <= MEMORY_FACTOR * len(data) + output_bytes(decoded), (peak, output_bytes(decoded))
    assert_words_partitioned(decoder.counters, words.size)
    assert_on_sensor(decoded)
    counters = decoder.counters.as_dict()
    for key, value in expected_evt3(name, words).items():
        assert counters[key] == value, key
    assert counters["cd_events"] == len(decoded.events)


@pytest.mark.parametrize(
    "name", ["off_sensor_cd", "all_ones", "all_zeros", "time_high_storm", "random_words"]
)
def test_numpy_evt2_memory_stays_within_four_packets(name):
    words = evt2_words(name, PACKET_BYTES // 4)
    data = words.tobytes()
    decoder = Evt2Decoder(width=WIDTH, height=HEIGHT)
    decoded, peak = traced_decode(decoder, data)
    assert peak <= MEMORY_FACTOR * len(data) + output_bytes(decoded), (peak, output_bytes(decoded))
    assert_words_partitioned(decoder.counters, words.size)
    assert_on_sensor(decoded)
    c = decoder.counters
    assert c.cd_events == len(decoded.events)
    if name == "off_sensor_cd":
        assert (c.cd_words, c.cd_events, c.out_of_bounds) == (words.size, 0, words.size)
    if name == "all_zeros":
        assert c.cd_events == words.size
    if name == "time_high_storm":
        assert c.time_words == words.size


def test_vector_flood_memory_does_not_grow_with_the_packet():
    """Four times the flood: the same 1280 events, and the same block temporaries."""
    peaks = []
    for n_bytes in (PACKET_BYTES // 4, PACKET_BYTES):
        decoder = Evt3Decoder(width=WIDTH, height=HEIGHT)
        decoded, peak = traced_decode(decoder, vect12_flood(n_bytes // 2).tobytes())
        assert len(decoded.events) == WIDTH
        assert decoder.counters.out_of_bounds == 12 * (n_bytes // 2) - WIDTH
        peaks.append(peak)
    # block temporaries do not grow with the packet
    assert peaks[1] <= peaks[0] + PACKET_BYTES // 4


def test_long_packets_decode_as_if_cut_into_small_ones():
    """A multi-block packet (dense vectors, so blocks expand in pieces) and decode_until
    stopping in a later block give what small packets give, bit for bit."""
    rng = np.random.default_rng(11)
    dense = rows_and_bases_with_full_vectors(3 * BLOCK_WORDS)
    noise = rng.integers(0, 1 << 16, 2 * BLOCK_WORDS, dtype=np.uint16).astype("<u2")
    clock = np.resize(np.array([0x8000, 0x6000, 0x2805, 0xA101], dtype="<u2"), BLOCK_WORDS)
    clock[1::4] = 0x6000 | (np.arange(clock[1::4].size) & 0xFFF)
    clock[0::4] = 0x8000 | ((np.arange(clock[0::4].size) >> 12) & 0xFFF)
    data = np.concatenate((dense, clock, noise, clock)).tobytes()

    whole = Evt3Decoder(width=WIDTH, height=HEIGHT)
    got = whole.decode(data)
    small = Evt3Decoder(width=WIDTH, height=HEIGHT)
    parts = [small.decode(data[i : i + 4001]) for i in range(0, len(data), 4001)]
    np.testing.assert_array_equal(got.events, np.concatenate([p.events for p in parts]))
    np.testing.assert_array_equal(got.triggers, np.concatenate([p.triggers for p in parts]))
    assert whole.counters == small.counters
    assert whole.current_time_us == small.current_time_us

    limit = int(got.triggers["t"][len(got.triggers) // 2])
    cut = Evt3Decoder(width=WIDTH, height=HEIGHT)
    first, reached, next_time = cut.decode_until(data, limit)
    assert reached and next_time >= limit
    assert 0 < cut.buffered_bytes < len(data) - 2 * 3 * BLOCK_WORDS  # past the dense blocks
    rest = cut.decode(b"")
    np.testing.assert_array_equal(np.concatenate((first.events, rest.events)), got.events)
    np.testing.assert_array_equal(np.concatenate((first.triggers, rest.triggers)), got.triggers)
    assert int(first.events["t"].max()) < limit and int(first.triggers["t"].max()) < limit
    assert cut.counters == whole.counters


def test_output_records_grow_in_place_and_keep_what_was_written():
    records = OutputRecords(EVENT_DTYPE, max_spare=5)
    written = []
    for size in (3, 0, 7, 1, 20):
        view = records.take(size)
        view["x"] = np.arange(len(written), len(written) + size)
        written.extend(range(len(written), len(written) + size))
    result = records.result()
    assert result.dtype == EVENT_DTYPE and result.flags.owndata
    np.testing.assert_array_equal(result["x"], written)
    exact = OutputRecords(TRIGGER_DTYPE, max_spare=100)
    assert exact.take(4).size == 4 and exact.result().size == 4


# ===================================================================== numba and torch


@needs_numba
@pytest.mark.parametrize("name", sorted(EVT3_PATTERNS))
def test_numba_counters_exact_and_identical_to_numpy(name):
    words = EVT3_PATTERNS[name](PACKET_BYTES // 8)
    data = words.tobytes()
    fast = evt3_fast.FastEvt3Decoder(width=WIDTH, height=HEIGHT)
    reference = Evt3Decoder(width=WIDTH, height=HEIGHT)
    got, want = fast.decode(data), reference.decode(data)
    np.testing.assert_array_equal(got.events, want.events)
    np.testing.assert_array_equal(got.triggers, want.triggers)
    assert fast.counters == reference.counters
    assert_words_partitioned(fast.counters, words.size)


@needs_numba
def test_numba_growth_counts_only_events_on_the_sensor():
    """When the first output guess overflows, the array is grown to the exact number of
    events still to come: a VECT_12 flood after the overflow reserves nothing more."""
    dense = rows_and_bases_with_full_vectors(1 << 16)
    words = np.concatenate((dense, vect12_flood(1 << 18), [0xA101, 0xA100])).astype("<u2")
    decoder = evt3_fast.FastEvt3Decoder(width=WIDTH, height=HEIGHT)
    more_events, more_triggers = evt3_fast._count_outputs(
        words, 0, decoder._state, decoder.width, decoder.height
    )
    reference = Evt3Decoder(width=WIDTH, height=HEIGHT)
    decoded = reference.decode(words)
    assert (more_events, more_triggers) == (len(decoded.events), len(decoded.triggers))
    np.testing.assert_array_equal(decoder.decode(words).events, decoded.events)


@needs_numba
@needs_proc
def test_numba_resident_memory_stays_within_four_packets(tmp_path):
    packets = {name: EVT3_PATTERNS[name](PACKET_BYTES // 2) for name in EVT3_PATTERNS}
    packets["dense_then_flood"] = np.concatenate(
        (rows_and_bases_with_full_vectors(PACKET_BYTES // 4), vect12_flood(PACKET_BYTES // 4))
    )
    for name, result in probe_rss("numba", packets, tmp_path).items():
        n_words = packets[name].size
        assert result["growth"] <= MEMORY_FACTOR * 2 * n_words + result["output"], name
        assert result["counters"]["words"] == n_words
        assert sum(result["counters"][k] for k in WORD_CATEGORIES) == n_words
        assert result["max_x"] < WIDTH and result["max_y"] < HEIGHT


#: what torch's block temporaries and host allocator keep whatever the packet size (measured
#: up to ~40 MiB); the bound is about growth with the packet, which this does not add to
TORCH_SCRATCH_BYTES = 48 * 2**20


@needs_proc
def test_torch_cpu_resident_memory_stays_within_four_packets(tmp_path):
    """16 MiB packets: the torch blocks' temporaries (up to ~40 MiB with what the host
    allocator keeps) are larger than the numpy ones. The dense pattern is left out: its
    1 GB of events would only repeat what the numpy and numba tests show."""
    pytest.importorskip("torch")
    names = [name for name in EVT3_PATTERNS if name != "rows_and_bases_with_full_vectors"]
    packets = {name: EVT3_PATTERNS[name](PACKET_BYTES) for name in names}
    results = probe_rss("torch", packets, tmp_path)
    for name, result in results.items():
        words = packets[name]
        # plus the blocks' fixed scratch, which does not grow with the packet
        limit = MEMORY_FACTOR * 2 * words.size + result["output"] + TORCH_SCRATCH_BYTES
        assert result["growth"] <= limit, name
        assert sum(result["counters"][k] for k in WORD_CATEGORIES) == words.size
        for key, value in expected_evt3(name, words).items():
            assert result["counters"][key] == value, (name, key)


# ===================================================================== the fuzzer


def load_fuzzer():
    spec = importlib.util.spec_from_file_location("fuzz_decoders", FUZZ_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fuzzer():
    return load_fuzzer()


FUZZ_PACKETS = {"numpy": 2000, "numba": 2000, "evt2": 2000, "torch": 400}


@pytest.mark.parametrize("name", sorted(FUZZ_PACKETS))
def test_fuzzing_run_raises_nothing_and_counts_every_word(fuzzer, name):
    if name == "numba" and not evt3_fast.available():
        pytest.skip("numba is not installed")
    if name == "torch":
        pytest.importorskip("torch")
    packets = FUZZ_PACKETS[name]
    report = fuzzer.fuzz(name, packets, seed=3, max_bytes=1 << 20, width=WIDTH, height=HEIGHT)
    assert (report.exceptions, report.mismatches) == (0, 0), report.failures
    assert report.packets == packets and sum(report.mutations.values()) == packets
    c = report.counters
    assert c["words"] == sum(c[k] for k in WORD_CATEGORIES) > 0
    assert report.events == c["cd_events"] and report.triggers == c["triggers"]
    assert c["out_of_bounds"] > 0 and c["unknown_words"] > 0  # the garbage did arrive


@needs_numba
def test_fuzzing_numpy_and_numba_agree_on_every_counter(fuzzer):
    reports = [fuzzer.fuzz(name, 1500, seed=9, max_bytes=1 << 18) for name in ("numpy", "numba")]
    assert reports[0].counters == reports[1].counters
    assert reports[0].events == reports[1].events


def test_fuzzer_packets_are_reproducible_and_cover_every_mutation(fuzzer):
    def kinds(seed: int) -> list[tuple[str, bytes, int | None]]:
        corpus = fuzzer.evt3_corpus(seed, WIDTH, HEIGHT)
        maker = fuzzer.PacketMaker(2, corpus, seed, 1 << 16, WIDTH, HEIGHT)
        return [maker.next() for _ in range(3000)]

    first = kinds(1)
    assert first == kinds(1)
    seen = {kind for kind, _, _ in first}
    assert seen >= set(fuzzer.PacketMaker(2, b"\0" * 64, 0, 64, WIDTH, HEIGHT).names)
    assert any(offset is not None for _, _, offset in first)
    # the corpus is valid EVT3: it decodes with vectors and triggers and nothing unknown
    decoder = Evt3Decoder(width=WIDTH, height=HEIGHT)
    decoded = decoder.decode(fuzzer.evt3_corpus(1, WIDTH, HEIGHT))
    assert decoder.counters.unknown_words == 0 and len(decoded.triggers) > 0
    assert decoder.counters.cd_events > decoder.counters.cd_words  # vectors were used


def test_fuzzer_command_line_reports_every_decoder(tmp_path):
    done = subprocess.run(
        [sys.executable, str(FUZZ_SCRIPT), "--packets", "300", "--decoders", "numpy,evt2",
         "--seed", "4", "--max-bytes", "65536"],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    for name in ("numpy", "evt2"):
        assert f"{name}: 300 packets" in done.stdout
    assert done.stdout.count("exceptions 0, counter mismatches 0") == 2
