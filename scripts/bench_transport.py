#!/usr/bin/env python3
"""Event transport throughput, evk4_driver -> accumulator, in one process and over DDS.

The question: do events flow from the driver node into the accumulator node at >= 100 M ev/s
with no lost packet (``EventPacket.seq`` gaps, counted by the accumulator), and if not, what
stops them. Runs, each for ``--seconds`` of wall time per packet size:

* ``in-process``: the real ``Evk4DriverNode`` and ``AccumulatorNode`` in one
  ``SingleThreadedExecutor`` (what ``evseg run`` does), one thread for both;
* ``dds-shm``: the two nodes in two processes over Fast DDS with ``config/fastdds_shm.xml``
  (the profile ``launch/rig.launch.py`` uses: shared memory only, 256 MiB segment);
* ``dds-shm-lh``: the same profile with ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` (as the
  Makefile exports it): rmw_fastrtps then adds its own default shared-memory and UDPv4
  transports to the profile's (not in ``--quick``);
* ``dds-udp``: the two processes over UDPv4 on 127.0.0.1 only: the baseline;
* ``dds-default``: no profile, range LOCALHOST: what the rmw sets up by itself (not in
  ``--quick``);
* ``decode-only``: the accumulator's decoder on the same packets, no ROS at all: the ceiling.

The driver publishes as fast as it can (``--offered-mev 0``) or paced to an offered event rate.
A reliable KEEP_LAST(100) reader that falls behind a faster writer loses packets, which the
accumulator counts as seq gaps: a flat-out run with gaps shows the driver outran the
accumulator; ``--offered-mev 100`` asks the exact question "are 100 M ev/s delivered whole".

Every figure counts CD events the accumulator decoded (its ``events_decoded`` counter), not
bytes times a constant; MB/s counts the payload bytes handed to it. The accumulator is the real
node (``evseg_ros.nodes.accumulator``) with no frame input: it decodes and buffers every packet
and counts seq gaps, but never builds an event frame (only event intake is measured). The
driver is the real node replaying a ``.raw`` file as fast as it is consumed (one packet per
timer tick, ``poll_period_ms`` at its minimum unless paced), looped.

Data: ``../shared/data/expelliarmus/evt3_sample.raw`` (219,596 events in 618 KB covering 8.8 ms
of sensor time) tiled ``--copies`` times; each copy's EVT_TIME_HIGH words are advanced so that a
pass of the file covers ~2.5 s of sensor time. The camera's word mix is untouched; the idle time
between copies only keeps the accumulator's 2 s event buffer small (a frame-less accumulator
never trims it) and makes each loop of the replay look like a camera restart.

To show where the time goes, each stage of the path is also timed alone on the same packets
(driver: source read incl. its time-stamping decode, ``EventPacket`` fill, ``serialize_message``;
accumulator: ``deserialize_message``, ``np.frombuffer``, decode, ``on_packet``), and the rate
each process could reach if it did nothing else is printed next to the measured one.

DDS runs use a random ``ROS_DOMAIN_ID`` (or ``--domain-id``) and a private namespace, and
never leave the machine: discovery range LOCALHOST, or a profile whose only transport is shared
memory or UDP on 127.0.0.1. The Fast DDS segments each pair of processes maps (from
``/proc/<pid>/maps``) are printed, to show which transport carried the data. Child processes
are stopped on exit and Ctrl-C, and stop by themselves if this process dies.

Usage::

    .venv/bin/python scripts/bench_transport.py [--seconds 5] [--packet-kib 64 256 1024]
    .venv/bin/python scripts/bench_transport.py --quick     # 1 s runs, 256 KiB packets
"""

from __future__ import annotations

import argparse
import array
import enum
import itertools
import json
import os
import platform
import queue
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # one core per process, as the nodes run

import numpy as np
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # runnable from a source checkout without installing
    sys.path.insert(0, str(REPO_ROOT))

from evseg_ros.events import evt3_fast
from evseg_ros.events.decoders import create_decoder
from evseg_ros.events.evt3 import read_raw_file

SAMPLE_RAW = REPO_ROOT.parent / "shared" / "data" / "expelliarmus" / "evt3_sample.raw"
SHM_PROFILE = REPO_ROOT / "config" / "fastdds_shm.xml"
TARGET_MEV_S = 100.0
TIME_HIGH = 0x8
TIME_HIGH_STEP_US = 4096
PASS_SPAN_US = 2_500_000  # sensor time one pass of the tiled file covers (> 2 s buffer span)
PROTOCOL_PREFIX = "BENCH-TRANSPORT "
STARTUP_TIMEOUT_S = 60.0
WARM_UP_S = 0.3
FASTDDS_ENV = (
    "FASTDDS_DEFAULT_PROFILES_FILE",
    "FASTRTPS_DEFAULT_PROFILES_FILE",
    "FASTDDS_BUILTIN_TRANSPORTS",
    "RMW_FASTRTPS_USE_QOS_FROM_XML",
)


class BenchError(RuntimeError):
    """A run could not produce a figure (a worker failed, nothing arrived, data missing)."""


class Run(enum.Enum):
    """The rows of the table; the value is the row label."""

    IN_PROCESS = "in-process"
    DDS_SHM = "dds-shm"
    DDS_SHM_LOCALHOST = "dds-shm-lh"
    DDS_UDP = "dds-udp"
    DDS_DEFAULT = "dds-default"
    DECODE_ONLY = "decode-only"

    def environment(self, folder: Path) -> dict[str, str]:
        """DDS settings of a run (the variables of ``FASTDDS_ENV`` are cleared first).

        With ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` rmw_fastrtps adds its own transports
        (a default shared-memory one and UDPv4) to the profile's, so the runs that must use
        exactly one transport set ``SYSTEM_DEFAULT``, under which the profile is applied as
        written; their profiles only have transports that stay on this machine.
        """
        if self is Run.DDS_SHM:
            return {
                "FASTDDS_DEFAULT_PROFILES_FILE": str(SHM_PROFILE),
                "ROS_AUTOMATIC_DISCOVERY_RANGE": "SYSTEM_DEFAULT",
            }
        if self is Run.DDS_SHM_LOCALHOST:
            return {
                "FASTDDS_DEFAULT_PROFILES_FILE": str(SHM_PROFILE),
                "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
            }
        if self is Run.DDS_UDP:
            profile = folder / "udp_localhost.xml"
            profile.write_text(UDP_LOCALHOST_PROFILE)
            return {
                "FASTDDS_DEFAULT_PROFILES_FILE": str(profile),
                "ROS_AUTOMATIC_DISCOVERY_RANGE": "SYSTEM_DEFAULT",
            }
        return {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


DESCRIPTIONS = {
    Run.IN_PROCESS: "both nodes in one SingleThreadedExecutor (one thread)",
    Run.DDS_SHM: "two processes, config/fastdds_shm.xml as written: shared memory only "
    "(discovery range SYSTEM_DEFAULT)",
    Run.DDS_SHM_LOCALHOST: "two processes, config/fastdds_shm.xml + discovery range LOCALHOST "
    "(rmw adds a default SHM and a UDPv4 transport)",
    Run.DDS_UDP: "two processes, UDPv4 on 127.0.0.1 only (generated profile, range "
    "SYSTEM_DEFAULT): the baseline",
    Run.DDS_DEFAULT: "two processes, no profile, discovery range LOCALHOST (rmw's default "
    "SHM + UDPv4)",
    Run.DECODE_ONLY: "the accumulator's decoder on the same packets, no ROS",
}

#: UDPv4 only, bound to the loopback interface, discovery by unicast to 127.0.0.1.
UDP_LOCALHOST_PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<dds xmlns="http://www.eprosima.com">
  <profiles>
    <transport_descriptors>
      <transport_descriptor>
        <transport_id>bench_udp</transport_id>
        <type>UDPv4</type>
        <interfaceWhiteList><address>127.0.0.1</address></interfaceWhiteList>
      </transport_descriptor>
    </transport_descriptors>
    <participant profile_name="bench_udp_participant" is_default_profile="true">
      <rtps>
        <builtin>
          <initialPeersList>
            <locator><udpv4><address>127.0.0.1</address></udpv4></locator>
          </initialPeersList>
        </builtin>
        <userTransports><transport_id>bench_udp</transport_id></userTransports>
        <useBuiltinTransports>false</useBuiltinTransports>
      </rtps>
    </participant>
  </profiles>
</dds>
"""


@dataclass(frozen=True)
class Stream:
    """The tiled recording: a ``.raw`` file for the driver and its packets for the timings."""

    raw_path: Path
    calibration_path: Path
    payload: bytes
    events: int
    width: int
    height: int

    def packets(self, packet_bytes: int) -> list[bytes]:
        return [
            self.payload[i : i + packet_bytes] for i in range(0, len(self.payload), packet_bytes)
        ]


@dataclass(frozen=True)
class Result:
    """What one run delivered into the accumulator during its measured window."""

    run: Run
    packet_bytes: int
    seconds: float
    packets: int
    events: int
    payload_bytes: int
    seq_gaps: int
    packets_lost: int
    cpu_s: dict[str, float] = field(default_factory=dict)
    note: str = ""

    @property
    def mev_s(self) -> float:
        return self.events / self.seconds / 1e6 if self.seconds > 0 else 0.0

    @property
    def mb_s(self) -> float:
        return self.payload_bytes / self.seconds / 1e6 if self.seconds > 0 else 0.0

    @property
    def busiest(self) -> tuple[str, float]:
        """The process that used the most CPU in the window, and its CPU seconds."""
        return max(self.cpu_s.items(), key=lambda kv: kv[1], default=("", 0.0))

    @property
    def mev_per_cpu_s(self) -> float:
        """Events per CPU second of the busiest process: what a core of its own would give.

        On a machine shared with other programs a process gets only part of a core, which
        lowers M ev/s but not this figure (as long as the process never waits for its peer).
        """
        cpu = self.busiest[1]
        return self.events / cpu / 1e6 if cpu > 0 else 0.0


# ================================================================================== data


def tile_with_gaps(words: np.ndarray, copies: int, step_high: int) -> np.ndarray:
    """Repeat an EVT3 word stream, copy k with its clock ``k * step_high`` TIME_HIGH steps later.

    Only the 12-bit EVT_TIME_HIGH field changes (modulo 4096, so a 24-bit wrap looks as on a live
    camera); ``step_high`` must cover the recording's own span so time never goes backwards.
    """
    high = (words >> 12) == TIME_HIGH
    if not high.any():
        msg = "cannot tile an EVT3 stream without EVT_TIME_HIGH words"
        raise BenchError(msg)
    out = np.empty((copies, words.size), dtype=np.uint16)
    for k in range(copies):
        out[k] = words
        out[k, high] = (TIME_HIGH << 12) | (((words[high] & 0xFFF) + k * step_high) % 4096)
    return out.reshape(-1)


def identity_calibration(width: int, height: int) -> dict[str, Any]:
    """Calibration dict of a rig whose frame camera is the event camera (the geometry only
    has to match the recording; no event frame is built here)."""
    camera = {
        "width": width,
        "height": height,
        "camera_matrix": [
            1000.0,
            0.0,
            (width - 1) / 2,
            0.0,
            1000.0,
            (height - 1) / 2,
            0.0,
            0.0,
            1.0,
        ],
        "distortion": [0.0] * 5,
    }
    return {
        "event_camera": camera,
        "frame_camera": camera,
        "event_to_frame_homography": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        "output": {"width": width, "height": height},
    }


def build_stream(source: Path, copies: int, folder: Path) -> Stream:
    """Write the tiled ``.raw`` file and a matching calibration into ``folder``."""
    if not source.is_file():
        msg = f"recording {str(source)!r} not found (see ../shared/data/README)"
        raise BenchError(msg)
    header, payload = read_raw_file(source)
    raw = source.read_bytes()
    width, height = int(header.get("width", 1280)), int(header.get("height", 720))
    words = np.frombuffer(payload, dtype="<u2")
    decoder = create_decoder("evt3", width=width, height=height)
    events_per_copy = len(decoder.decode(payload).events)
    high = words[(words >> 12) == TIME_HIGH] & 0xFFF
    own_span = int(high.max() - high.min()) + 1
    step = max(own_span + 1, -(-PASS_SPAN_US // (TIME_HIGH_STEP_US * copies)))
    tiled = tile_with_gaps(words, copies, step).astype("<u2").tobytes()
    raw_path = folder / f"tiled_x{copies}.raw"
    raw_path.write_bytes(raw[: len(raw) - len(payload)] + tiled)
    calibration_path = folder / "calibration.yaml"
    calibration_path.write_text(yaml.safe_dump(identity_calibration(width, height)))
    return Stream(raw_path, calibration_path, tiled, events_per_copy * copies, width, height)


# ====================================================================== stage timings


@dataclass(frozen=True)
class StageCosts:
    """Seconds per pass over the stream of each stage alone (best of the repeats)."""

    seconds: dict[str, float]
    events: int

    def rate(self, *names: str) -> float:
        """M ev/s of the named stages run one after the other on one core."""
        total = sum(self.seconds[name] for name in names)
        return self.events / total / 1e6 if total > 0 else float("inf")


DRIVER_STAGES = (
    "source read + time-stamping decode",
    "EventPacket fill (array.array)",
    "serialize_message (as publish)",
)
ACCUMULATOR_STAGES = ("deserialize_message (as take)", "EventFrameAccumulator.on_packet")
#: parts of ``on_packet``, shown but not added again
INSIDE_ON_PACKET = ("np.frombuffer(msg.events)", "decode only (FastEvt3Decoder)")


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    """Best wall time of ``repeat`` runs of ``fn`` after one untimed warm-up run."""
    fn()
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return min(runs)


def time_stages(stream: Stream, packet_bytes: int, repeat: int) -> StageCosts:
    """Time every stage of the driver -> accumulator path alone, on one pass of the stream."""
    from event_camera_msgs.msg import EventPacket
    from rclpy.serialization import deserialize_message, serialize_message

    from evseg_ros.geometry import load_calibration
    from evseg_ros.pipeline.accumulator import EventFrameAccumulator
    from evseg_ros.sources.replay import RawFileEventSource

    packets = stream.packets(packet_bytes)
    width, height = stream.width, stream.height

    source = RawFileEventSource(
        stream.raw_path, realtime=False, loop=True, packet_bytes=packet_bytes
    )

    def source_read() -> None:  # one pass of the looped replay, one packet per read
        loops = source.loops
        while source.loops == loops:
            source.read(0)

    def fill(data: bytes) -> EventPacket:
        msg = EventPacket(encoding="evt3", width=width, height=height)
        payload = array.array("B")
        payload.frombytes(data)
        msg.events = payload
        return msg

    messages = [fill(p) for p in packets]
    serialized = [serialize_message(m) for m in messages]
    received = [deserialize_message(s, EventPacket) for s in serialized]

    def decode_only() -> None:
        decoder = create_decoder("evt3", width=width, height=height)
        for packet in packets:
            decoder.decode(packet)

    core = EventFrameAccumulator(load_calibration(stream.calibration_path))
    sequence = itertools.count()

    def on_packet() -> None:  # one pass; sensor time restarts per pass as in the replay
        for msg in received:
            seq = next(sequence)
            core.on_packet(
                encoding=msg.encoding,
                data=msg.events,
                seq=seq,
                stamp_ns=seq,
                width=msg.width,
                height=msg.height,
            )

    stages: dict[str, Callable[[], object]] = {
        DRIVER_STAGES[0]: source_read,
        DRIVER_STAGES[1]: lambda: [fill(p) for p in packets],
        DRIVER_STAGES[2]: lambda: [serialize_message(m) for m in messages],
        ACCUMULATOR_STAGES[0]: lambda: [deserialize_message(s, EventPacket) for s in serialized],
        ACCUMULATOR_STAGES[1]: on_packet,
        INSIDE_ON_PACKET[0]: lambda: [np.frombuffer(m.events, np.uint8) for m in received],
        INSIDE_ON_PACKET[1]: decode_only,
    }
    return StageCosts({name: best_of(repeat, fn) for name, fn in stages.items()}, stream.events)


def decode_only_result(stream: Stream, packet_bytes: int, seconds: float) -> Result:
    """Row (d): the accumulator's decoder over the packets for ``seconds``, looping."""
    packets = stream.packets(packet_bytes)
    decoder = create_decoder("evt3", width=stream.width, height=stream.height)
    for packet in packets[:4]:
        decoder.decode(packet)
    decoder.reset()
    events = n_bytes = n_packets = 0
    cpu0, start = process_cpu_s(), time.perf_counter()
    while time.perf_counter() - start < seconds:
        decoder.reset()  # each pass starts over in sensor time, like the looped replay
        for packet in packets:
            events += len(decoder.decode(packet).events)
            n_bytes += len(packet)
        n_packets += len(packets)
    elapsed = time.perf_counter() - start
    cpu = {"decoder": process_cpu_s() - cpu0}
    return Result(Run.DECODE_ONLY, packet_bytes, elapsed, n_packets, events, n_bytes, 0, 0, cpu)


# ============================================================================ processes


def process_cpu_s(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (this one by default), from os.times or /proc."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ros_args(namespace: str, params: dict[str, Any]) -> list[str]:
    args = ["--ros-args", "-r", f"__ns:={namespace}"]
    for name, value in params.items():
        args += ["-p", f"{name}:={value}"]
    return args


def driver_params(stream: Stream, packet_bytes: int, poll_period_ms: float) -> dict[str, Any]:
    return {
        "source": "raw",
        "raw_file": str(stream.raw_path),
        "raw_packet_bytes": packet_bytes,
        "replay_pacing": "fast",
        "replay_loop": True,
        "poll_period_ms": float(poll_period_ms),
    }


#: the driver's shortest poll period (its parameter's range): a tick per executor cycle
UNPACED_PERIOD_MS = 0.1


def pacing_period_ms(stream: Stream, packet_bytes: int, offered_mev: float) -> float:
    """Driver timer period that offers ``offered_mev`` (one packet per tick; <= 0: no pacing)."""
    if offered_mev <= 0:
        return UNPACED_PERIOD_MS
    events_per_packet = stream.events * packet_bytes / len(stream.payload)
    return max(UNPACED_PERIOD_MS, events_per_packet / (offered_mev * 1e6) * 1e3)


def accumulator_params(stream: Stream) -> dict[str, Any]:
    return {"calibration_file": str(stream.calibration_path)}


class IntakeProbe:
    """Counts the payload bytes the accumulator node hands to its core (the node counts packets
    and events itself), by wrapping the core's ``on_packet`` on that one instance."""

    def __init__(self, node: Any) -> None:
        self.core = node.core
        self.payload_bytes = 0
        self._on_packet = node.core.on_packet
        node.core.on_packet = self._count

    def _count(self, **kwargs: Any) -> None:
        self.payload_bytes += len(kwargs["data"])
        self._on_packet(**kwargs)

    def snapshot(self) -> dict[str, int]:
        counters = self.core.counters
        return {
            "packets": counters["packets"],
            "events": counters["events_decoded"],
            "payload_bytes": self.payload_bytes,
            "seq_gaps": counters["seq_gaps"],
            "packets_lost": counters["packets_lost"],
            "sensor_time_resets": counters["sensor_time_resets"],
        }


def window_delta(start: dict[str, int], end: dict[str, int]) -> dict[str, int]:
    return {name: end[name] - start[name] for name in ("packets", "events", "payload_bytes")}


def spin_window(
    executor: Any,
    probe: IntakeProbe,
    seconds: float,
    *,
    alive: Callable[[], bool] = lambda: True,
    on_start: Callable[[dict[str, int]], None] | None = None,
) -> tuple[dict[str, int], dict[str, int], float]:
    """Spin until the first packet, a short warm-up, then exactly ``seconds`` measured.

    Returns the probe's counters at the start and end of the window and its length.

    Raises:
        BenchError: no packet arrived within ``STARTUP_TIMEOUT_S``.
    """
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while probe.core.counters["packets"] == 0:
        if time.monotonic() > deadline or not alive():
            msg = f"no EventPacket reached the accumulator within {STARTUP_TIMEOUT_S:.0f} s"
            raise BenchError(msg)
        executor.spin_once(timeout_sec=0.05)
    warm_end = time.perf_counter() + WARM_UP_S
    while time.perf_counter() < warm_end:
        executor.spin_once(timeout_sec=0.05)
    start = probe.snapshot()
    if on_start is not None:
        on_start(start)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds and alive():
        executor.spin_once(timeout_sec=0.05)
    elapsed = time.perf_counter() - t0
    return start, probe.snapshot(), elapsed


def in_process_result(
    stream: Stream, packet_bytes: int, seconds: float, namespace: str, poll_period_ms: float
) -> Result:
    """Row (a): both real nodes in one context and one SingleThreadedExecutor."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from evseg_ros.nodes.accumulator import AccumulatorNode
    from evseg_ros.nodes.evk4_driver import Evk4DriverNode

    def overrides(params: dict[str, Any]) -> list[Parameter]:
        return [Parameter(name, value=value) for name, value in params.items()]

    context = Context()
    rclpy.init(args=[], context=context)
    executor = SingleThreadedExecutor(context=context)
    nodes = []
    try:
        accumulator = AccumulatorNode(
            context=context,
            namespace=namespace,
            parameter_overrides=overrides(accumulator_params(stream)),
        )
        nodes.append(accumulator)
        driver = Evk4DriverNode(
            context=context,
            namespace=namespace,
            parameter_overrides=overrides(driver_params(stream, packet_bytes, poll_period_ms)),
        )
        nodes.append(driver)
        if driver.source is None:
            msg = f"driver source unavailable: {driver.error}"
            raise BenchError(msg)
        probe = IntakeProbe(accumulator)
        for node in nodes:
            executor.add_node(node)
        cpu0: list[float] = []
        start, end, elapsed = spin_window(
            executor, probe, seconds, on_start=lambda _: cpu0.append(process_cpu_s())
        )
        cpu = {"both nodes": process_cpu_s() - cpu0[0]}
    finally:
        for node in nodes:
            executor.remove_node(node)
            node.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown(context=context)
    delta = window_delta(start, end)
    return Result(
        Run.IN_PROCESS,
        packet_bytes,
        elapsed,
        delta["packets"],
        delta["events"],
        delta["payload_bytes"],
        end["seq_gaps"],
        end["packets_lost"],
        cpu,
    )


class Worker:
    """A child process running one node of a DDS run; its protocol lines arrive on a queue."""

    def __init__(self, role: str, args: list[str], env: dict[str, str], log: TextIO) -> None:
        self.role = role
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", role, *args],
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(PROTOCOL_PREFIX):
                self.lines.put(json.loads(line[len(PROTOCOL_PREFIX) :]))

    def expect(self, kind: str, timeout_s: float, *, watch: Worker | None = None) -> dict[str, Any]:
        """Wait for the worker's next ``kind`` line (while ``watch``, its peer, stays up).

        Raises:
            BenchError: either worker exited or reported an error, or nothing came in time.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if watch is not None and watch.process.poll() is not None:
                msg = (
                    f"{watch.role} worker exited with code {watch.process.returncode} "
                    f"while waiting for the {self.role}'s {kind!r}; its log:\n{watch.tail()}"
                )
                raise BenchError(msg)
            try:
                message = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            if message.get("kind") == "error":
                msg = f"{self.role} worker: {message.get('error')}"
                raise BenchError(msg)
            if message.get("kind") == kind:
                return message
        msg = (
            f"{self.role} worker sent no {kind!r} within {timeout_s:.0f} s "
            f"(exit code {self.process.poll()!r}); its log:\n{self.tail()}"
        )
        raise BenchError(msg)

    def tail(self, lines: int = 15) -> str:
        self.log.flush()
        with suppress(OSError):
            return "\n".join(Path(self.log.name).read_text(errors="replace").splitlines()[-lines:])
        return ""

    def cpu_s(self) -> float:
        try:
            return process_cpu_s(self.process.pid)
        except (OSError, IndexError, ValueError):
            return float("nan")

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGINT (the nodes' clean shutdown), then SIGKILL if it does not exit."""
        if self.process.poll() is None:
            with suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def child_environment(run: Run, domain_id: int, folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in FASTDDS_ENV}
    env.update(run.environment(folder))
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


def mapped_shm_segments(pids: Sequence[int]) -> dict[str, int]:
    """Fast DDS shared-memory segments the given processes have mapped (name -> bytes).

    Read from ``/proc/<pid>/maps``, so other programs' segments in /dev/shm do not count.
    """
    found: dict[str, int] = {}
    for pid in pids:
        with suppress(OSError):
            for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
                parts = line.split()
                name = parts[-1].rsplit("/", 1)[-1] if len(parts) >= 6 else ""
                if not parts[-1].startswith("/dev/shm/fastdds_") or "port" in name:
                    continue
                start, end = (int(v, 16) for v in parts[0].split("-"))
                found[name] = max(found.get(name, 0), end - start)
    return found


def dds_result(
    run: Run,
    stream: Stream,
    packet_bytes: int,
    seconds: float,
    namespace: str,
    domain_id: int,
    poll_period_ms: float,
    log_folder: Path,
) -> Result:
    """Rows (b, c): the two real nodes in two processes over DDS."""
    env = child_environment(run, domain_id, log_folder)
    common = ["--seconds", str(seconds)]
    workers: list[Worker] = []
    with (
        open(log_folder / f"{run.value}_{packet_bytes}_accumulator.log", "w") as acc_log,
        open(log_folder / f"{run.value}_{packet_bytes}_driver.log", "w") as drv_log,
    ):
        try:
            accumulator = Worker(
                "accumulator",
                [*common, "--", *ros_args(namespace, accumulator_params(stream))],
                env,
                acc_log,
            )
            workers.append(accumulator)
            driver = Worker(  # starts publishing once the accumulator's reader has matched
                "driver",
                [
                    *common,
                    "--",
                    *ros_args(namespace, driver_params(stream, packet_bytes, poll_period_ms)),
                ],
                env,
                drv_log,
            )
            workers.append(driver)
            accumulator.expect("start", 2 * STARTUP_TIMEOUT_S, watch=driver)
            cpu0 = {w.role: w.cpu_s() for w in workers}
            segments = mapped_shm_segments([w.process.pid for w in workers])
            end = accumulator.expect("end", seconds + 30, watch=driver)
            cpu = {w.role: w.cpu_s() - cpu0[w.role] for w in workers}
        finally:
            for worker in reversed(workers):
                worker.stop()
    if segments:
        note = (
            f"the two processes map {len(segments)} Fast DDS SHM segment(s), largest "
            f"{max(segments.values()) / 2**20:.0f} MiB"
        )
    else:
        note = "the two processes map no Fast DDS SHM segment"
    counters = end["counters"]
    return Result(
        run,
        packet_bytes,
        end["elapsed"],
        counters["packets"],
        counters["events"],
        counters["payload_bytes"],
        end["seq_gaps"],
        end["packets_lost"],
        cpu,
        note,
    )


# ============================================================================== workers


def emit(kind: str, **values: Any) -> None:
    print(PROTOCOL_PREFIX + json.dumps({"kind": kind, **values}), flush=True)


def worker_main(role: str, seconds: float, ros_argv: list[str]) -> int:
    """Body of a child process: run one real node, report over stdout, stop on SIGINT."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    parent = os.getppid()

    def alive() -> bool:
        return os.getppid() == parent  # re-parented: the benchmark died, stop too

    signal.signal(signal.SIGTERM, signal.default_int_handler)
    rclpy.init(args=ros_argv)
    executor = SingleThreadedExecutor()
    node = None
    try:
        if role == "accumulator":
            from evseg_ros.nodes.accumulator import AccumulatorNode

            node = AccumulatorNode()
            probe = IntakeProbe(node)
            executor.add_node(node)
            emit("ready")
            start, end, elapsed = spin_window(
                executor, probe, seconds, alive=alive, on_start=lambda s: emit("start", counters=s)
            )
            emit(
                "end",
                elapsed=elapsed,
                counters=window_delta(start, end),
                seq_gaps=end["seq_gaps"],
                packets_lost=end["packets_lost"],
                sensor_time_resets=end["sensor_time_resets"],
            )
            return 0
        from evseg_ros.nodes.evk4_driver import Evk4DriverNode

        node = Evk4DriverNode()
        if node.source is None:
            emit("error", error=f"driver source unavailable: {node.error}")
            return 2
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while node.publisher.get_subscription_count() == 0:  # nothing is lost before matching
            if time.monotonic() > deadline or not alive():
                emit("error", error="no subscriber matched the driver's publisher")
                return 2
            time.sleep(0.01)
        executor.add_node(node)
        emit("ready")
        stop_at = time.monotonic() + seconds + 2 * STARTUP_TIMEOUT_S  # never outlive a hang
        while time.monotonic() < stop_at and alive():
            executor.spin_once(timeout_sec=0.05)
        return 0
    except BenchError as err:
        emit("error", error=str(err))
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    finally:
        if node is not None:
            executor.remove_node(node)
            node.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown()


# ============================================================================== report


def kib(n_bytes: int) -> str:
    return f"{n_bytes // 1024}KiB"


def print_table(results: Sequence[Result]) -> None:
    print(
        f"\n  {'run':<12} {'packet':>8} {'seconds':>7} {'packets':>8} {'Mev':>8} "
        f"{'Mev/s':>8} {'MB/s':>8} {'seq_gaps':>8} {'lost':>6} {'Mev/cpu-s':>9}  cpu seconds "
        "(share of a core)"
    )
    for r in results:
        cpu = ", ".join(
            f"{name} {value:.2f} ({value / r.seconds:.0%})" for name, value in r.cpu_s.items()
        )
        print(
            f"  {r.run.value:<12} {kib(r.packet_bytes):>8} {r.seconds:7.2f} {r.packets:8d} "
            f"{r.events / 1e6:8.2f} {r.mev_s:8.1f} {r.mb_s:8.1f} {r.seq_gaps:8d} "
            f"{r.packets_lost:6d} {r.mev_per_cpu_s:9.1f}  {cpu}"
        )
    notes = [r for r in results if r.note]
    for r in notes:
        print(f"    {r.run.value} {kib(r.packet_bytes)}: {r.note}")


def print_ratios(results: Sequence[Result]) -> None:
    by_key = {(r.run, r.packet_bytes): r for r in results}
    pairs = (
        (Run.DDS_SHM, Run.DDS_UDP),
        (Run.DDS_SHM, Run.IN_PROCESS),
        (Run.DDS_SHM, Run.DDS_SHM_LOCALHOST),
        (Run.DDS_SHM, Run.DDS_DEFAULT),
        (Run.IN_PROCESS, Run.DECODE_ONLY),
        (Run.DDS_SHM, Run.DECODE_ONLY),
    )
    print()
    for size in sorted({r.packet_bytes for r in results}):
        parts = []
        for top, bottom in pairs:
            a, b = by_key.get((top, size)), by_key.get((bottom, size))
            if a is not None and b is not None and b.mev_s > 0:
                parts.append(f"{top.value}/{bottom.value} {a.mev_s / b.mev_s:.2f}x")
        if parts:
            print(f"  ratios {kib(size)}: " + ", ".join(parts))


def print_stages(costs: dict[int, StageCosts]) -> None:
    """Each stage alone, and the rate each process could reach if it did nothing else."""
    for size, stage in costs.items():
        print(f"\n  stages alone on {kib(size)} packets (M ev/s if the stage ran alone, one core)")
        for name in (*DRIVER_STAGES, *ACCUMULATOR_STAGES, *INSIDE_ON_PACKET):
            side = "driver" if name in DRIVER_STAGES else "accumulator"
            inside = "  (part of on_packet)" if name in INSIDE_ON_PACKET else ""
            print(f"    {side:<12} {name:<40} {stage.rate(name):8.1f}{inside}")
        driver, accumulator = stage.rate(*DRIVER_STAGES), stage.rate(*ACCUMULATOR_STAGES)
        both = stage.rate(*DRIVER_STAGES, *ACCUMULATOR_STAGES)
        print(
            f"    => driver process work {driver:.1f}, accumulator process work "
            f"{accumulator:.1f}, both on one thread {both:.1f} M ev/s "
            "(no executor, DDS or scheduling cost)"
        )


def bottleneck_lines(results: Sequence[Result], costs: dict[int, StageCosts]) -> list[str]:
    """Plain statements of what limits each measured row, from the stage costs and CPU use."""
    lines = []
    decode = [r for r in results if r.run is Run.DECODE_ONLY and r.seconds > 0]
    if decode:
        share = min(r.busiest[1] / r.seconds for r in decode)
        lines.append(
            f"  a busy single thread got {share:.0%} of a core during decode-only: "
            + (
                "the machine is shared, absolute rates are low by about that factor; "
                "Mev/cpu-s is the figure that does not depend on it"
                if share < 0.9
                else "the machine was quiet"
            )
        )
    for r in results:
        stage = costs.get(r.packet_bytes)
        if stage is None or r.run is Run.DECODE_ONLY:
            continue
        name, cpu = r.busiest
        load = cpu / r.seconds if r.seconds else 0.0
        driver, accumulator = stage.rate(*DRIVER_STAGES), stage.rate(*ACCUMULATOR_STAGES)
        if r.run is Run.IN_PROCESS:
            model = stage.rate(*DRIVER_STAGES, *ACCUMULATOR_STAGES)
            why = "one thread does the driver's and the accumulator's work in turn"
        else:
            model = min(driver, accumulator)
            slower = "driver" if driver < accumulator else "accumulator"
            why = f"the {slower}'s own work is the slower side"
        lines.append(
            f"  {r.run.value} {kib(r.packet_bytes)}: {r.mev_s:.1f} M ev/s measured, "
            f"{r.mev_per_cpu_s:.1f} per CPU-second of the busiest process ({name}, {load:.0%} "
            f"of a core), {model:.1f} from the stages alone ({why}); the gap to the stages is "
            "executor, DDS and waiting"
        )
    return lines


def verdict(results: Sequence[Result]) -> str:
    transport = [r for r in results if r.run is not Run.DECODE_ONLY]
    clean = [r for r in transport if r.seq_gaps == 0]
    if not transport:
        return "verdict: no transport run"
    best = max(clean or transport, key=lambda r: r.mev_s)
    met = bool(clean) and best.mev_s >= TARGET_MEV_S
    gaps = sum(r.seq_gaps for r in transport)
    gappy = sum(r.seq_gaps > 0 for r in transport)
    status = "MET" if met else "NOT MET"
    ceiling = max(
        (r for r in results if r.run is Run.DECODE_ONLY), key=lambda r: r.mev_s, default=None
    )
    text = (
        f"verdict: {TARGET_MEV_S:.0f} M ev/s with 0 seq gaps: {status}; best "
        f"{best.run.value} {kib(best.packet_bytes)} {best.mev_s:.1f} M ev/s, "
        f"{best.seq_gaps} seq gaps; runs with seq gaps: {gappy} ({gaps} gaps)"
    )
    if ceiling is not None:
        text += f"; decode-only ceiling {ceiling.mev_s:.1f} M ev/s ({kib(ceiling.packet_bytes)})"
    return text


# ================================================================================= main


@contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so the ``finally`` blocks stop the children."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per run [s]")
    parser.add_argument(
        "--packet-kib",
        type=int,
        nargs="+",
        default=[64, 256, 1024],
        help="EventPacket payload sizes [KiB]",
    )
    parser.add_argument(
        "--runs",
        nargs="+",
        choices=[r.value for r in Run],
        default=[r.value for r in Run],
        help="which rows to measure",
    )
    parser.add_argument("--copies", type=int, default=16, help="tiling factor of the recording")
    parser.add_argument("--repeat", type=int, default=3, help="repeats of each stage timing")
    parser.add_argument(
        "--offered-mev",
        type=float,
        default=0.0,
        help="pace the driver to this many M ev/s (its timer period); "
        "0: one packet per executor cycle, as fast as it can",
    )
    parser.add_argument(
        "--domain-id",
        type=int,
        default=None,
        help="ROS_DOMAIN_ID for every run (default: random in 1..99)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 s runs, 256 KiB packets, one repeat, at most 8 copies, "
        "without the rows dds-shm-lh and dds-default",
    )
    parser.add_argument("--worker", choices=["driver", "accumulator"], help=argparse.SUPPRESS)
    parser.add_argument("ros_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.packet_kib, args.repeat = 1.0, [256], 1
        args.copies = min(args.copies, 8)
        args.runs = [
            r for r in args.runs if r not in (Run.DDS_DEFAULT.value, Run.DDS_SHM_LOCALHOST.value)
        ]
    if args.seconds <= 0 or min(args.packet_kib) <= 0 or args.copies < 1:
        parser.error(
            f"--seconds {args.seconds!r}, --packet-kib {args.packet_kib!r} and "
            f"--copies {args.copies!r} must be positive"
        )
    if args.offered_mev < 0:
        parser.error(f"--offered-mev {args.offered_mev!r} must be >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        ros_argv = [a for a in args.ros_args if a != "--"]
        return worker_main(args.worker, args.seconds, ["bench_transport", *ros_argv])

    domain_id = args.domain_id if args.domain_id is not None else random.randint(1, 99)
    os.environ["ROS_DOMAIN_ID"] = str(domain_id)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    for name in FASTDDS_ENV:
        os.environ.pop(name, None)
    namespace = f"/bench_transport_{os.getpid()}"
    runs = [Run(value) for value in args.runs]
    sizes = [k * 1024 for k in args.packet_kib]

    import rclpy.utilities

    if not evt3_fast.available():
        print(f"note: numba decoder unavailable ({evt3_fast.UNAVAILABLE_REASON}); numpy decodes")
    else:
        evt3_fast.warm_up()
    cpu = platform.processor() or platform.machine()
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    print(
        f"Transport benchmark evk4_driver -> accumulator: {args.seconds:g} s per run, "
        f"packets {', '.join(kib(s) for s in sizes)}, target {TARGET_MEV_S:.0f} M ev/s"
    )
    print(
        f"CPU: {cpu}, {os.cpu_count()} logical CPUs, load average "
        f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}; "
        f"rmw {rclpy.utilities.get_rmw_implementation_identifier()}, ROS_DOMAIN_ID "
        f"{domain_id}, namespace {namespace}; nothing leaves this machine"
    )
    print(
        "accumulator: the real AccumulatorNode (evseg_ros.nodes.accumulator), no frame input; "
        "driver: the real Evk4DriverNode, source raw, replay as fast as consumed, looped, "
        + (
            f"paced to {args.offered_mev:g} M ev/s offered"
            if args.offered_mev
            else f"not paced (poll_period_ms {UNPACED_PERIOD_MS:g})"
        )
    )
    for run in runs:
        print(f"  {run.value:<12} {DESCRIPTIONS[run]}")

    results: list[Result] = []
    costs: dict[int, StageCosts] = {}
    with terminate_on_sigterm(), tempfile.TemporaryDirectory(prefix="bench_transport_") as tmp:
        folder = Path(tmp)
        try:
            stream = build_stream(SAMPLE_RAW, args.copies, folder)
        except BenchError as err:
            print(f"error: {err}")
            return 1
        print(
            f"stream: {SAMPLE_RAW.name} tiled x{args.copies}: {stream.events:,} events, "
            f"{len(stream.payload) / 1e6:.1f} MB, {stream.events / len(stream.payload):.3f} "
            "events per byte"
        )
        failures = 0
        for size in sizes:
            costs[size] = time_stages(stream, size, args.repeat)
            period_ms = pacing_period_ms(stream, size, args.offered_mev)
            for run in runs:
                try:
                    if run is Run.DECODE_ONLY:
                        result = decode_only_result(stream, size, args.seconds)
                    elif run is Run.IN_PROCESS:
                        result = in_process_result(stream, size, args.seconds, namespace, period_ms)
                    else:
                        result = dds_result(
                            run, stream, size, args.seconds, namespace, domain_id, period_ms, folder
                        )
                except BenchError as err:
                    print(f"  {run.value} {kib(size)} failed: {err}")
                    failures += 1
                    continue
                results.append(result)
                print(
                    f"  done: {result.run.value:<12} {kib(size):>8} {result.mev_s:8.1f} M ev/s, "
                    f"{result.seq_gaps} seq gaps",
                    flush=True,
                )
    print_stages(costs)
    print_table(results)
    print_ratios(results)
    print("\n  what limits the rate:")
    for line in bottleneck_lines(results, costs):
        print(line)
    print("\n" + verdict(results))
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        raise SystemExit(130) from None
