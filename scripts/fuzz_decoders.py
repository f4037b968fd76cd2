#!/usr/bin/env python3
"""Fuzz the event decoders with mutated packets: nothing may raise, every word must be counted.

A camera link, a recorder or a bag can hand a decoder any bytes, and a live pipeline must keep
running on all of them with bounded memory and time. This script streams packets through each
CPU decoder, one decoder per subprocess (so that peak memory is per decoder), and checks after
every packet that

* no exception escaped ``decode`` (or ``decode_until``);
* the counters are exact: the words consumed (bytes fed, minus what the decoder holds back, over
  the word size) equal ``counters.words``, and the word categories add up to it; the events and
  triggers returned equal ``cd_events`` and ``triggers``;
* every returned event lies on the sensor, and with ``decode_until`` before the time limit;

and at the end that the totals of the per-packet figures equal the decoder's own counters.

Packets (the same sequence for every decoder of one word size, from ``--seed``): slices of
valid streams (``encode_evt3`` over synthetic row bursts, which make vector words, and over the
event simulator's output; a small EVT2 encoder for ``evt2``), with bit flips, byte insertions
and deletions, truncations and splices; storms of one word type; random words and bytes;
all-zero and all-one packets; VECT_12 floods (up to 12 events named per word, almost all off
the sensor), rows and vector bases interleaved with full VECT_12 masks, TIME_HIGH storms; and,
rarely, huge packets of up to ``--max-bytes``. Most packets are small, as on a ROS link.

Decoders: ``numpy`` (Evt3Decoder), ``numba`` (FastEvt3Decoder, when numba is installed),
``evt2`` (Evt2Decoder, fed EVT2 streams), ``torch`` (TorchEvt3Accumulator on the CPU; slow per
packet, so give it fewer ``--packets``). numpy and numba see identical packets and must end with
identical counters, which is checked too.

Usage::

    .venv/bin/python scripts/fuzz_decoders.py [--packets 1000000] [--decoders numpy,numba]
        [--seed 0] [--max-bytes 16777216]

Exit status 1 when any decoder raised, miscounted, or numpy and numba disagree.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # runnable from a source checkout without installing
    sys.path.insert(0, str(REPO_ROOT))

from evseg_ros.events import evt3_fast
from evseg_ros.events.evt2 import Evt2Decoder
from evseg_ros.events.evt3 import (
    WORD_CATEGORIES,
    DecodedEvents,
    DecoderCounters,
    Evt3Decoder,
    Evt3EncoderState,
    encode_evt3,
)
from evseg_ros.events.types import EVENT_DTYPE, TRIGGER_DTYPE

DECODERS = ("numpy", "numba", "evt2", "torch")
DEFAULT_DECODERS = "numpy,numba"
COUNTER_NAMES = tuple(f.name for f in fields(DecoderCounters))
#: Failures described in full in a report; the rest are only counted.
MAX_FAILURES_KEPT = 20
#: Share of packets decoded with ``decode_until`` by decoders that have it.
DECODE_UNTIL_SHARE = 0.1
#: Share of packets of a size up to ``--max-bytes`` (the others are at most 256 KiB).
HUGE_SHARE = 2e-5
#: Size of each corpus of valid encoded streams that packets are cut from.
CORPUS_BYTES = 4 << 20


# ============================================================================ valid streams


def _burst_events(rng: np.random.Generator, n_bursts: int, width: int, height: int) -> np.ndarray:
    """Row bursts (events of one time, row and polarity, x increasing) and single events.

    Bursts are what the EVT3 encoder turns into VECT_BASE_X/VECT_12 chains. Time gaps are
    mostly small, sometimes far past the 24-bit clock (wraps and the encoder's fill words);
    rows and columns reach past the sensor (up to EVT3's 2047) now and then.
    """
    gaps = rng.choice([0, 1, 7, 300, 5000, 1 << 23, 1 << 25], n_bursts, p=[0.3, 0.3, 0.2, 0.1, 0.08,
                                                                           0.015, 0.005])
    t = np.cumsum(gaps)
    y = np.where(rng.random(n_bursts) < 0.97, rng.integers(0, height, n_bursts),
                 rng.integers(0, 2048, n_bursts))  # fmt: skip
    length = np.where(rng.random(n_bursts) < 0.5, 1, rng.integers(2, 40, n_bursts))
    x0 = rng.integers(0, width, n_bursts)
    idx = np.repeat(np.arange(n_bursts), length)
    step = rng.integers(1, 3, idx.size)
    first = np.cumsum(length) - length
    offset = np.cumsum(step) - np.repeat(np.cumsum(step)[first] - step[first], length)
    events = np.empty(idx.size, dtype=EVENT_DTYPE)
    events["x"] = np.minimum(x0[idx] + offset - 1, 2047)
    events["y"] = y[idx]
    events["p"] = rng.integers(0, 2, n_bursts)[idx]
    events["t"] = t[idx]
    # keep x strictly increasing inside a burst after clipping: drop the clipped repeats
    dup = np.zeros(idx.size, dtype=bool)
    dup[1:] = (idx[1:] == idx[:-1]) & (events["x"][1:] <= events["x"][:-1])
    return events[~dup]


def _triggers_between(rng: np.random.Generator, t_end: int, n: int) -> np.ndarray:
    """``n`` trigger edges at sorted random times in ``[0, t_end]``."""
    triggers = np.empty(n, dtype=TRIGGER_DTYPE)
    triggers["t"] = np.sort(rng.integers(0, t_end + 1, n))
    triggers["channel"] = rng.integers(0, 16, n)
    triggers["value"] = rng.integers(0, 2, n)
    return triggers


def _encode_in_chunks(events: np.ndarray, triggers: np.ndarray, chunks: int) -> bytes:
    """``encode_evt3`` over consecutive time slices, carrying the encoder state as a driver does."""
    state = Evt3EncoderState()
    cuts = np.linspace(0, int(events["t"][-1]) + 1, chunks + 1).astype(np.int64)
    parts = []
    for t0, t1 in itertools.pairwise(cuts):
        ev = events[(events["t"] >= t0) & (events["t"] < t1)]
        tr = triggers[(triggers["t"] >= t0) & (triggers["t"] < t1)]
        parts.append(encode_evt3(ev, tr, state=state))
    return b"".join(parts)


def _simulated_evt3(seed: int, steps: int = 12) -> bytes:
    """The event simulator's output for a bright bar sweeping a small sensor, EVT3-encoded."""
    from evseg_ros.sim.event_model import EventModelParams, EventSimulator

    height, width = 120, 160
    xs = np.arange(width, dtype=np.float32)
    rows = 1.0 + 0.3 * np.sin(np.arange(height, dtype=np.float32) / 7.0)

    def luminance(t_us: int, _condition: object) -> np.ndarray:
        bar = 0.05 + np.exp(-0.5 * ((xs - (t_us / 1000.0) % width) / 4.0) ** 2)
        return rows[:, None] * bar[None, :]

    def trigger_times(t0: int, t1: int) -> np.ndarray:
        return np.arange(-(-t0 // 10_000) * 10_000, t1, 10_000, dtype=np.int64)

    simulator = EventSimulator(
        luminance, (height, width), EventModelParams(noise_rate_hz=5.0, seed=seed),
        trigger_times=trigger_times,
    )  # fmt: skip
    state = Evt3EncoderState()
    parts = []
    for k in range(1, steps + 1):
        events, triggers = simulator.advance_to(k * 10_000)
        parts.append(encode_evt3(events, triggers, state=state))
    return b"".join(parts)


def evt3_corpus(seed: int, width: int, height: int) -> bytes:
    """Valid EVT3 bytes: encoded synthetic bursts, then the simulator's stream."""
    rng = np.random.default_rng([seed, 3])
    events = _burst_events(rng, 60_000, width, height)
    triggers = _triggers_between(rng, int(events["t"][-1]), 2_000)
    return _encode_in_chunks(events, triggers, 16) + _simulated_evt3(seed)


def encode_evt2(events: np.ndarray, triggers: np.ndarray) -> bytes:
    """EVT 2.0 words for time-sorted events and triggers (a TIME_HIGH whenever t >> 6 changes)."""
    t = np.concatenate((events["t"], triggers["t"])).astype(np.int64)
    kind = np.concatenate((events["p"].astype(np.int64), np.full(len(triggers), 0xA)))
    payload = np.concatenate((
        (events["x"].astype(np.int64) << 11) | events["y"],
        (triggers["channel"].astype(np.int64) << 8) | triggers["value"],
    ))  # fmt: skip
    order = np.argsort(t, kind="stable")
    t, kind, payload = t[order], kind[order], payload[order]
    high = t >> 6
    new_high = np.ones(t.size, dtype=bool)
    new_high[1:] = high[1:] != high[:-1]
    words = np.zeros((t.size, 2), dtype=np.int64)
    words[:, 0] = (0x8 << 28) | (high & 0x0FFFFFFF)
    words[:, 1] = (kind << 28) | ((t & 0x3F) << 22) | payload
    used = np.stack((new_high, np.ones(t.size, dtype=bool)), axis=1)
    return words[used].astype("<u4").tobytes()


def evt2_corpus(seed: int, width: int, height: int) -> bytes:
    """Valid EVT2 bytes for synthetic bursts (EVT2 has no vectors: one word per event)."""
    rng = np.random.default_rng([seed, 2])
    events = _burst_events(rng, 40_000, width, height)
    triggers = _triggers_between(rng, int(events["t"][-1]), 2_000)
    return encode_evt2(events, triggers)


# ============================================================================ packet maker


class PacketMaker:
    """An endless, reproducible sequence of mutated packets for one word size.

    Args:
        word_bytes: 2 for EVT3, 4 for EVT2 (word-level patterns are built at that size).
        corpus: valid encoded stream that slices are cut from.
        seed: everything random follows from it.
        max_bytes: size of the largest (huge) packets.
        width: sensor width, to aim floods just inside and outside it.
        height: sensor height.
    """

    def __init__(
        self, word_bytes: int, corpus: bytes, seed: int, max_bytes: int, width: int, height: int
    ) -> None:
        self.word_bytes = word_bytes
        self.corpus = np.frombuffer(corpus, dtype=np.uint8)
        self.max_bytes = max(int(max_bytes), 16)
        self.width, self.height = width, height
        self.random = random.Random(seed)
        self.rng = np.random.default_rng([seed, word_bytes])
        evt3 = word_bytes == 2
        self.mutations: list[tuple[str, float, Callable[[int], np.ndarray]]] = [
            ("valid", 20, self._valid),
            ("bit_flips", 12, self._bit_flips),
            ("insertions", 6, self._insertions),
            ("deletions", 6, self._deletions),
            ("truncated", 6, self._truncated),
            ("splice", 8, self._splice),
            ("type_storm", 10, self._type_storm),
            ("random_words", 8, self._random_bytes),
            ("zeros", 2, lambda n: np.zeros(n, dtype=np.uint8)),
            ("ones", 2, lambda n: np.full(n, 0xFF, dtype=np.uint8)),
            ("vect12_flood", 6, self._vect12_flood if evt3 else self._off_sensor_cd),
            ("row_base_vect12", 6, self._row_base_vect12 if evt3 else self._dense_cd),
            ("time_high_storm", 6, self._time_high_storm),
        ]
        self.names = [name for name, _, _ in self.mutations]
        self.weights = [weight for _, weight, _ in self.mutations]

    def next(self) -> tuple[str, bytes, int | None]:
        """``(mutation, packet, limit offset)``; the offset, when not None, asks for
        ``decode_until(packet, current_time_us + offset)``."""
        r = self.random
        huge = r.random() < HUGE_SHARE
        size = r.randint(self.max_bytes // 4, self.max_bytes) if huge else self._small_size()
        index = r.choices(range(len(self.mutations)), self.weights)[0]
        name, _, make = self.mutations[index]
        packet = make(size).tobytes()
        offset = r.randint(-2_000, 60_000) if r.random() < DECODE_UNTIL_SHARE else None
        return ("huge_" + name if huge else name), packet, offset

    def _small_size(self) -> int:
        """Mostly tens to hundreds of bytes, sometimes KiB, rarely up to 256 KiB."""
        r = self.random.random()
        if r < 0.6:
            return self.random.randint(0, 256)
        if r < 0.94:
            return self.random.randint(0, 4096)
        if r < 0.995:
            return self.random.randint(0, 65536)
        return self.random.randint(0, 262144)

    # -- slices of valid streams and their mutations

    def _valid(self, size: int) -> np.ndarray:
        """A slice of the corpus at any byte offset, repeated when the packet is longer."""
        start = self.random.randrange(self.corpus.size)
        piece = self.corpus[start : start + size]
        if piece.size < size:
            piece = np.resize(np.concatenate((piece, self.corpus)), size)
        return piece

    def _bit_flips(self, size: int) -> np.ndarray:
        data = self._valid(size).copy()
        if data.size:
            n = self.random.randint(1, max(1, data.size // 64))
            at = self.rng.integers(0, data.size, n)
            data[at] ^= (1 << self.rng.integers(0, 8, n)).astype(np.uint8)
        return data

    def _insertions(self, size: int) -> np.ndarray:
        data = self._valid(size)
        n = self.random.randint(1, 8)
        at = self.rng.integers(0, data.size + 1, n)
        return np.insert(data, at, self.rng.integers(0, 256, n, dtype=np.uint8))

    def _deletions(self, size: int) -> np.ndarray:
        data = self._valid(size)
        if data.size == 0:
            return data
        n = self.random.randint(1, min(8, data.size))
        return np.delete(data, self.rng.choice(data.size, n, replace=False))

    def _truncated(self, size: int) -> np.ndarray:
        return self._valid(size)[: self.random.randint(0, min(size, 7))]

    def _splice(self, size: int) -> np.ndarray:
        parts = [self._valid(size // 3 + 1) for _ in range(self.random.randint(2, 4))]
        return np.concatenate(parts)[:size]

    # -- word-level patterns

    def _words(self, values: np.ndarray) -> np.ndarray:
        """Words as little-endian bytes of this word size."""
        dtype = "<u2" if self.word_bytes == 2 else "<u4"
        return values.astype(dtype).view(np.uint8)

    def _n_words(self, size: int) -> int:
        return size // self.word_bytes

    def _type_storm(self, size: int) -> np.ndarray:
        """One word type throughout, with random or extreme payloads."""
        n = self._n_words(size)
        shift = 12 if self.word_bytes == 2 else 28
        kind = self.random.randrange(16)
        full = (1 << shift) - 1
        if self.random.random() < 0.5:
            payload = self.rng.integers(0, full + 1, n, dtype=np.int64)
        else:
            payload = np.full(n, self.random.choice([0, full, full >> 1, (full >> 1) + 1]))
        return self._words((kind << shift) | payload)

    def _random_bytes(self, size: int) -> np.ndarray:
        return self.rng.integers(0, 256, size, dtype=np.uint8)

    def _vect12_flood(self, size: int) -> np.ndarray:
        """VECT_12 words with full masks, sometimes after a row or base near the sensor edge."""
        words = np.full(self._n_words(size), 0x4FFF, dtype=np.int64)
        if words.size >= 2 and self.random.random() < 0.5:
            words[0] = self.random.choice([self.height - 1, self.height, 2047]) & 0x7FF  # row
            words[1] = 0x3000 | (self.random.choice([0, self.width - 12, self.width - 1]) & 0x7FF)
        return self._words(words)

    def _row_base_vect12(self, size: int) -> np.ndarray:
        """EVT_ADDR_Y and VECT_BASE_X interleaved with full VECT_12 masks (dense and valid)."""
        run = self.random.randint(1, 120)
        y = self.random.choice([0, self.height - 1, self.height, 2047]) & 0x7FF
        unit = np.array([y, 0x3000 | self.random.randrange(2048)] + [0x4FFF] * run)
        return self._words(np.resize(unit, self._n_words(size)))

    def _time_high_storm(self, size: int) -> np.ndarray:
        """TIME_HIGH words going up, down (wraps), or at random, with some TIME_LOW."""
        n = self._n_words(size)
        shift, bits = (12, 12) if self.word_bytes == 2 else (28, 28)
        style = self.random.randrange(3)
        if style == 0:
            values = self.rng.integers(0, 1 << bits, n, dtype=np.int64)
        else:
            step = (1 << (bits - 1)) + 1 if style == 1 else -1
            values = (np.arange(n, dtype=np.int64) * step) & ((1 << bits) - 1)
        words = (0x8 << shift) | values
        if self.word_bytes == 2 and n:
            low = self.rng.random(n) < 0.3
            words[low] = (0x6 << 12) | (values[low] & 0xFFF)
        return self._words(words)

    def _off_sensor_cd(self, size: int) -> np.ndarray:
        """EVT2 CD words all off the sensor (the EVT2 counterpart of a vector flood)."""
        n = self._n_words(size)
        xy = (2047 << 11) | 2047 if self.random.random() < 0.5 else (min(self.width, 2047) << 11)
        return self._words(np.full(n, xy, dtype=np.int64))

    def _dense_cd(self, size: int) -> np.ndarray:
        """EVT2 CD words all on the sensor (one event per word, all kept)."""
        n = self._n_words(size)
        x = self.rng.integers(0, self.width, n)
        y = self.rng.integers(0, self.height, n)
        p = self.rng.integers(0, 2, n)
        return self._words((p << 28) | (x << 11) | y)


# ============================================================================ decoders


def make_decoder(name: str, width: int, height: int) -> Any:
    """A fresh decoder by name (numba kernels compiled first, so timing excludes that)."""
    if name == "numpy":
        return Evt3Decoder(width=width, height=height)
    if name == "numba":
        if not evt3_fast.available():
            raise RuntimeError(str(evt3_fast.UNAVAILABLE_REASON))
        evt3_fast.warm_up()
        return evt3_fast.FastEvt3Decoder(width=width, height=height)
    if name == "evt2":
        return Evt2Decoder(width=width, height=height)
    if name == "torch":
        from evseg_ros.events.evt3_torch import TorchEvt3Accumulator
        from evseg_ros.geometry.calibration import calibration_from_dict

        identity = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        camera = {"width": width, "height": height, "camera_matrix": identity}
        calibration = calibration_from_dict(
            {"event_camera": camera, "frame_camera": camera, "event_to_frame_homography": identity},
            source="fuzz rig",
        )
        return TorchEvt3Accumulator(calibration, device="cpu")
    raise ValueError(f"unknown decoder {name!r}; known: {', '.join(DECODERS)}")


def word_bytes_of(name: str) -> int:
    """Word size of a decoder's encoding."""
    return 4 if name == "evt2" else 2


def corpus_for(name: str, seed: int, width: int, height: int) -> bytes:
    """Valid stream for a decoder's encoding."""
    if word_bytes_of(name) == 4:
        return evt2_corpus(seed, width, height)
    return evt3_corpus(seed, width, height)


# ============================================================================ checking


@dataclass
class FuzzReport:
    """What one decoder did with the packets; ``exceptions`` and ``mismatches`` must be 0."""

    decoder: str
    packets: int = 0
    bytes: int = 0
    largest_packet: int = 0
    events: int = 0
    triggers: int = 0
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTER_NAMES, 0))
    mutations: dict[str, int] = field(default_factory=dict)
    exceptions: int = 0
    mismatches: int = 0
    failures: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    baseline_rss_mib: float = 0.0
    peak_rss_mib: float = 0.0

    def fail(self, text: str) -> None:
        """Keep the first few failure descriptions."""
        if len(self.failures) < MAX_FAILURES_KEPT:
            self.failures.append(text)


def packet_problems(
    decoder: Any,
    before: dict[str, int],
    buffered_before: int,
    packet_bytes: int,
    out: DecodedEvents,
    word_bytes: int,
    limit: int | None,
) -> tuple[dict[str, int], list[str]]:
    """The counter changes one packet made, and everything wrong with them and its output."""
    after = decoder.counters.as_dict()
    delta = {name: after[name] - before[name] for name in COUNTER_NAMES}
    problems = []
    consumed = buffered_before + packet_bytes - decoder.buffered_bytes
    if consumed % word_bytes or delta["words"] != consumed // word_bytes:
        problems.append(f"{delta['words']} words counted for {consumed} bytes consumed")
    categorised = sum(delta[name] for name in WORD_CATEGORIES)
    if categorised != delta["words"]:
        problems.append(f"{categorised} words categorised of {delta['words']}")
    if len(out.events) != delta["cd_events"] or out.events.dtype != EVENT_DTYPE:
        problems.append(f"{len(out.events)} events returned, {delta['cd_events']} counted")
    if not len(out.triggers) == delta["triggers"] == delta["trigger_words"]:
        problems.append(f"{len(out.triggers)} triggers returned, {delta['triggers']} counted")
    events = out.events
    if len(events) and (
        int(events["x"].max()) >= decoder_width(decoder)
        or int(events["y"].max()) >= decoder_height(decoder)
        or int(events["p"].max()) > 1
    ):
        problems.append("an event off the sensor or with a bad polarity was returned")
    if limit is not None and any(len(a) and int(a["t"].max()) >= limit for a in out):
        problems.append(f"decode_until returned an item at or past its limit {limit}")
    return delta, problems


def decoder_width(decoder: Any) -> int:
    """Sensor width of any of the decoders (the torch one names it ``event_width``)."""
    return int(getattr(decoder, "event_width", getattr(decoder, "width", 0)))


def decoder_height(decoder: Any) -> int:
    """Sensor height of any of the decoders."""
    return int(getattr(decoder, "event_height", getattr(decoder, "height", 0)))


def _feed(decoder: Any, packet: bytes, offset: int | None) -> tuple[DecodedEvents, int | None]:
    """Decode one packet, with ``decode_until`` when asked for and available."""
    if offset is not None and hasattr(decoder, "decode_until"):
        limit = decoder.current_time_us + offset
        out, _, _ = decoder.decode_until(packet, limit)
        return out, limit
    return decoder.decode(packet), None


def fuzz(
    name: str,
    packets: int,
    *,
    seed: int = 0,
    max_bytes: int = 16 << 20,
    width: int = 1280,
    height: int = 720,
    progress: bool = False,
) -> FuzzReport:
    """Stream ``packets`` mutated packets through one decoder and check each (see the module)."""
    from tqdm import tqdm

    decoder = make_decoder(name, width, height)
    word_bytes = word_bytes_of(name)
    maker = PacketMaker(
        word_bytes, corpus_for(name, seed, width, height), seed, max_bytes, width, height
    )
    report = FuzzReport(decoder=name, baseline_rss_mib=_rss_mib("VmRSS"))
    _reset_peak_rss()  # so that the peak is the fuzzing's, not the corpus building's
    bar = tqdm(total=packets, unit="pkt", desc=f"fuzz {name}", file=sys.stderr,
               disable=not progress, mininterval=1.0, smoothing=0.05)  # fmt: skip
    start = time.perf_counter()
    with bar:
        for i in range(packets):
            kind, packet, offset = maker.next()
            _run_one(decoder, report, i, kind, packet, offset, word_bytes)
            if i % 1024 == 1023:
                bar.update(1024)
        bar.update(packets - bar.n)
    report.wall_s = time.perf_counter() - start
    _check_totals(decoder, report, word_bytes)
    report.peak_rss_mib = _rss_mib("VmHWM")
    return report


def _run_one(
    decoder: Any,
    report: FuzzReport,
    index: int,
    kind: str,
    packet: bytes,
    offset: int | None,
    word_bytes: int,
) -> None:
    """Feed one packet, check it, and add its figures to the report."""
    report.packets += 1
    report.bytes += len(packet)
    report.largest_packet = max(report.largest_packet, len(packet))
    report.mutations[kind] = report.mutations.get(kind, 0) + 1
    before = decoder.counters.as_dict()
    buffered = decoder.buffered_bytes
    try:
        out, limit = _feed(decoder, packet, offset)
    except Exception as exc:  # the point of fuzzing: report, never stop
        report.exceptions += 1
        report.fail(f"packet {index} ({kind}, {len(packet)} bytes): {exc!r}")
        return
    delta, problems = packet_problems(decoder, before, buffered, len(packet), out, word_bytes,
                                      limit)  # fmt: skip
    for key in COUNTER_NAMES:
        report.counters[key] += delta[key]
    report.events += len(out.events)
    report.triggers += len(out.triggers)
    if problems:
        report.mismatches += 1
        report.fail(f"packet {index} ({kind}, {len(packet)} bytes): {'; '.join(problems)}")


def _check_totals(decoder: Any, report: FuzzReport, word_bytes: int) -> None:
    """The per-packet figures must add up to the decoder's own running totals."""
    final = decoder.counters.as_dict()
    if report.exceptions:
        return  # an exception's packet may have been partly counted; already a failure
    fed_words, rest = divmod(report.bytes - decoder.buffered_bytes, word_bytes)
    if final != report.counters or rest or final["words"] != fed_words:
        report.mismatches += 1
        report.fail(f"totals differ: decoder {final}, per packet {report.counters}, "
                    f"{fed_words} words fed")  # fmt: skip
    if sum(final[name] for name in WORD_CATEGORIES) != final["words"]:
        report.mismatches += 1
        report.fail("total word categories do not add up to the words")


def _reset_peak_rss() -> None:
    """Restart the kernel's peak-RSS mark of this process (Linux 4.0+; elsewhere a no-op)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _rss_mib(key: str) -> float:
    """Resident memory now (``VmRSS``) or at its peak (``VmHWM``), in MiB.

    Read from ``/proc/self/status``; where that is missing, the peak from ``getrusage``
    (Linux reports its ``ru_maxrss`` in KiB), which also covers the set-up.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ============================================================================ reporting


def format_report(r: FuzzReport) -> str:
    """Human-readable summary of one decoder's run."""
    c = r.counters
    mb = r.bytes / 1e6
    rate = r.packets / r.wall_s if r.wall_s else 0.0
    huge = sum(n for kind, n in r.mutations.items() if kind.startswith("huge_"))
    lines = [
        f"{r.decoder}: {r.packets:,} packets, {mb:,.1f} MB, {c['words']:,} words, "
        f"{r.events:,} events, {r.triggers:,} triggers ({huge} huge packets, the largest "
        f"{r.largest_packet / 2**20:.1f} MiB)",
        "  words by category: " + ", ".join(
            f"{name.removesuffix('_words')} {c[name]:,}" for name in WORD_CATEGORIES
        ),
        f"  bad: unknown words {c['unknown_words']:,}, out-of-bounds events "
        f"{c['out_of_bounds']:,}, time backwards {c['time_backwards']:,}, clock wraps "
        f"{c['time_wraps']:,}",
        f"  exceptions {r.exceptions}, counter mismatches {r.mismatches}",
        f"  wall {r.wall_s:,.1f} s, {rate:,.0f} packets/s, {mb / r.wall_s if r.wall_s else 0:,.1f}"
        f" MB/s, peak RSS {r.peak_rss_mib:,.0f} MiB (at the start {r.baseline_rss_mib:,.0f} MiB)",
    ]
    lines += [f"  FAILURE {text}" for text in r.failures]
    return "\n".join(lines)


def run_in_subprocess(name: str, args: argparse.Namespace) -> FuzzReport:
    """Fuzz one decoder in a fresh interpreter, so that its peak memory is its own."""
    command = [
        sys.executable, str(Path(__file__).resolve()), "--worker", name,
        "--packets", str(args.packets), "--seed", str(args.seed),
        "--max-bytes", str(args.max_bytes), "--width", str(args.width),
        "--height", str(args.height),
    ]  # fmt: skip
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        report = FuzzReport(decoder=name, exceptions=1)
        report.fail(f"worker exited with status {done.returncode}")
        return report
    return FuzzReport(**json.loads(lines[-1]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=1_000_000, help="packets per decoder")
    parser.add_argument("--decoders", default=DEFAULT_DECODERS,
                        help=f"comma-separated, of {', '.join(DECODERS)}")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-bytes", type=int, default=16 << 20, help="largest packet size")
    parser.add_argument("--width", type=int, default=1280, help="sensor width")
    parser.add_argument("--height", type=int, default=720, help="sensor height")
    parser.add_argument("--worker", choices=DECODERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.decoders.split(",") if n.strip()]
    unknown = sorted(set(names) - set(DECODERS))
    if unknown:
        parser.error(f"unknown decoders {unknown}; known: {', '.join(DECODERS)}")
    args.decoder_names = names
    return args


def main(argv: list[str] | None = None) -> int:
    """Fuzz every requested decoder, print the reports; 1 when anything failed."""
    args = parse_args(argv)
    if args.worker:
        if args.worker == "torch":
            import torch

            torch.set_num_threads(1)  # small packets: a thread pool only adds hand-offs
        report = fuzz(args.worker, args.packets, seed=args.seed, max_bytes=args.max_bytes,
                      width=args.width, height=args.height, progress=True)  # fmt: skip
        print(json.dumps(asdict(report)))
        return 0
    print(f"fuzzing {', '.join(args.decoder_names)}: {args.packets:,} packets each, seed "
          f"{args.seed}, packets up to {args.max_bytes:,} bytes")  # fmt: skip
    reports = {}
    for name in args.decoder_names:
        if name == "numba" and not evt3_fast.available():
            print(f"numba: skipped, {evt3_fast.UNAVAILABLE_REASON}")
            continue
        reports[name] = run_in_subprocess(name, args)
        print(format_report(reports[name]), flush=True)
    failed = any(r.exceptions or r.mismatches for r in reports.values())
    if "numpy" in reports and "numba" in reports:
        same = reports["numpy"].counters == reports["numba"].counters
        print(f"numpy and numba counters identical: {'yes' if same else 'NO'}")
        failed |= not same
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
