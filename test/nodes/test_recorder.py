"""The recorder over real DDS: what is published comes back from the bag, and every drop is counted.

Bags are read back with rosbags' ``AnyReader`` and, for MCAP, with the ``mcap`` package, which
knows nothing of rosbag2 (the file is standard MCAP). Each test runs in its own rclpy context on
the per-process domain that ``test/conftest.py`` sets.
"""

from __future__ import annotations

import array
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from event_camera_msgs.msg import EventPacket
from mcap.reader import make_reader
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Writer
from sensor_msgs.msg import Image
from std_msgs.msg import Header, String

from evseg_ros.events.bag import event_packet_typestore
from evseg_ros.nodes.diagnostics import WARN
from evseg_ros.nodes.image_conversion import ns_to_stamp, stamp_to_ns, to_image_msg
from evseg_ros.nodes.qos import DIAGNOSTICS_QOS, EVENTS_QOS, FRAMES_QOS
from evseg_ros.nodes.record_cli import add_record_parser, cmd_record
from evseg_ros.nodes.recorder import DEFAULT_TOPICS, RecorderNode
from evseg_ros.record import BagRecorder, RecorderError, SplitPolicy, recording_bags

REPO = Path(__file__).resolve().parents[2]
STAMP0_NS = 1_700_000_000_123_456_789  # header stamps: sensor-side time, unrelated to bag time
EVENTS, IMAGES = "/rig/events", "/rig/frame/image_raw"


def payload(seq: int, size: int) -> bytes:
    return ((np.arange(size) + seq) % 251).astype(np.uint8).tobytes()


def event_packet(seq: int, size: int = 256) -> EventPacket:
    msg = EventPacket()
    ns_to_stamp(msg.header, STAMP0_NS + seq * 1_000_000)
    msg.header.frame_id = "event_camera"
    msg.height, msg.width = 720, 1280
    msg.seq = seq
    msg.time_base = seq * 1_000_000
    msg.encoding = "evt3"
    msg.is_bigendian = False
    data = array.array("B")
    data.frombytes(payload(seq, size))
    msg.events = data
    return msg


def image(index: int) -> Image:
    header = Header()
    ns_to_stamp(header, STAMP0_NS + index * 33_000_000)
    header.frame_id = "frame_camera"
    return to_image_msg(np.full((24, 32, 3), index, np.uint8), "rgb8", header)


class Ros:
    """One context, one executor, and a fake rig publishing the drivers' topics."""

    def __init__(self) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.rig = Node("fake_rig", context=self.context, namespace="rig")
        self.executor.add_node(self.rig)
        self.events = self.rig.create_publisher(EventPacket, "events", EVENTS_QOS)
        self.images = self.rig.create_publisher(Image, "frame/image_raw", FRAMES_QOS)
        self.recorders: list[RecorderNode] = []

    def recorder(self, output_dir: Path, **params) -> RecorderNode:
        overrides = [Parameter("output_dir", value=str(output_dir))]
        overrides += [Parameter(name, value=value) for name, value in params.items()]
        node = RecorderNode(context=self.context, namespace="rig", parameter_overrides=overrides)
        self.recorders.append(node)
        self.executor.add_node(node)
        return node

    def spin_until(self, done: Callable[[], bool], timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            assert time.monotonic() < deadline, "timed out"
            self.executor.spin_once(timeout_sec=0.01)

    def close(self) -> None:
        for node in self.recorders:
            node.close()
        for node in list(self.executor.get_nodes()):
            self.executor.remove_node(node)
            node.destroy_node()
        self.executor.shutdown()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture
def ros() -> Iterator[Ros]:
    ros = Ros()
    try:
        yield ros
    finally:
        ros.close()


def received(recorder: RecorderNode, topic: str) -> int:
    return recorder.summary().topics[topic].received


def read_bags(paths: list[Path]) -> dict[str, list[tuple[int, bytes, object]]]:
    """topic -> [(bag time ns, raw CDR, message)] with rosbags, in bag order."""
    out: dict[str, list[tuple[int, bytes, object]]] = {}
    with AnyReader(paths, default_typestore=event_packet_typestore()) as reader:
        for connection, timestamp, raw in reader.messages():
            message = reader.deserialize(raw, connection.msgtype)
            out.setdefault(connection.topic, []).append((timestamp, bytes(raw), message))
    return out


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_recorded_packets_and_images_read_back_exactly(ros, tmp_path, storage):
    n_packets, n_images = 30, 10
    output = tmp_path / "drive"
    recorder = ros.recorder(output, storage=storage)  # default topics
    ros.spin_until(
        lambda: ros.events.get_subscription_count() and ros.images.get_subscription_count()
    )
    before_ns = recorder.get_clock().now().nanoseconds
    for seq in range(n_packets):
        ros.events.publish(event_packet(seq, size=100 + seq))
        if seq % 3 == 0:
            ros.images.publish(image(seq // 3))
        ros.executor.spin_once(timeout_sec=0)
    ros.spin_until(
        lambda: received(recorder, EVENTS) == n_packets and received(recorder, IMAGES) == n_images
    )
    summary = recorder.close()
    after_ns = recorder.get_clock().now().nanoseconds

    assert summary.topics[EVENTS].recorded == n_packets
    assert summary.topics[IMAGES].recorded == n_images
    assert summary.dropped == 0 and not summary.error and not summary.not_recorded
    assert [f.path for f in summary.files] == [output / "drive_0"] == recording_bags(output)
    assert json.loads((output / "summary.json").read_text())["topics"][EVENTS]["recorded"] == 30

    bag = read_bags(recording_bags(output))
    with AnyReader(recording_bags(output)) as reader:  # every requested topic is listed
        assert {c.topic for c in reader.connections} == {
            recorder.resolve_topic_name(t) for t in DEFAULT_TOPICS
        }
        assert {c.topic: c.msgtype for c in reader.connections}[EVENTS] == (
            "event_camera_msgs/msg/EventPacket"
        )
    packets = bag[EVENTS]
    assert [m.seq for _, _, m in packets] == list(range(n_packets))
    for seq, (_, _, msg) in enumerate(packets):
        assert stamp_to_ns(msg.header) == STAMP0_NS + seq * 1_000_000
        assert msg.header.frame_id == "event_camera"
        assert (msg.width, msg.height, msg.encoding, msg.time_base) == (
            1280, 720, "evt3", seq * 1_000_000,
        )
        assert msg.events.tobytes() == payload(seq, 100 + seq)
    images = bag[IMAGES]
    assert [stamp_to_ns(m.header) for _, _, m in images] == [
        STAMP0_NS + i * 33_000_000 for i in range(n_images)
    ]
    for index, (_, _, msg) in enumerate(images):
        assert (msg.width, msg.height, msg.encoding, msg.step) == (32, 24, "rgb8", 96)
        assert bytes(msg.data) == bytes([index]) * (32 * 24 * 3)
    # bag time is the receive time on the recorder's clock, in order
    for topic in (EVENTS, IMAGES):
        times = [t for t, _, _ in bag[topic]]
        assert times == sorted(times)
        assert before_ns <= times[0] and times[-1] <= after_ns

    if storage == "mcap":  # the same file through a plain MCAP reader
        with (output / "drive_0" / "drive_0.mcap").open("rb") as stream:
            plain: dict[str, list[tuple[int, bytes]]] = {}
            for schema, channel, message in make_reader(stream).iter_messages():
                assert channel.message_encoding == "cdr" and schema.encoding == "ros2msg"
                if channel.topic == EVENTS:
                    assert schema.name == "event_camera_msgs/msg/EventPacket"
                    assert "uint8[] events" in schema.data.decode()
                plain.setdefault(channel.topic, []).append((message.log_time, message.data))
        for topic in (EVENTS, IMAGES):
            assert plain[topic] == [(t, raw) for t, raw, _ in bag[topic]]


def test_split_by_size_gives_readable_bags_whose_counts_add_up(ros, tmp_path):
    n_packets, size = 40, 2_000
    output = tmp_path / "split"
    recorder = ros.recorder(output, topics=["events"], split_size_mb=0.01)  # 10 kB a bag
    ros.spin_until(ros.events.get_subscription_count)
    for seq in range(n_packets):
        ros.events.publish(event_packet(seq, size=size))
        ros.executor.spin_once(timeout_sec=0)
    ros.spin_until(lambda: received(recorder, EVENTS) == n_packets)
    summary = recorder.close()

    bags = recording_bags(output)
    assert bags == [f.path for f in summary.files]
    assert bags == [output / f"split_{i}" for i in range(len(bags))]
    assert len(bags) >= 8  # ~2.1 kB a packet: 4 per bag
    assert all(0 < f.bytes <= 10_000 for f in summary.files)
    assert sum(f.messages for f in summary.files) == summary.topics[EVENTS].recorded == n_packets
    seqs = []
    for path, recorded in zip(bags, summary.files):
        alone = [m.seq for _, _, m in read_bags([path])[EVENTS]]  # each bag stands alone
        assert len(alone) == recorded.messages
        with (path / f"{path.name}.mcap").open("rb") as stream:
            assert sum(1 for _ in make_reader(stream).iter_messages()) == recorded.messages
        seqs += alone
    assert seqs == list(range(n_packets))
    assert [m.seq for _, _, m in read_bags(bags)[EVENTS]] == seqs  # and read together


def test_tiny_queue_under_a_burst_counts_every_drop(ros, tmp_path, monkeypatch):
    burst, queue_length = 60, 4
    gate = threading.Event()  # a stalled disk: the writer blocks until the burst is in
    write = Writer.write

    def stalled_write(self, connection, timestamp, data):
        gate.wait(timeout=20)
        return write(self, connection, timestamp, data)

    monkeypatch.setattr(Writer, "write", stalled_write)
    output = tmp_path / "burst"
    recorder = ros.recorder(output, topics=["events"], queue_length=queue_length)
    ros.spin_until(ros.events.get_subscription_count)
    for seq in range(burst):  # no spinning in between: all 60 wait in DDS (depth 100)
        ros.events.publish(event_packet(seq))
    ros.spin_until(lambda: received(recorder, EVENTS) == burst)
    level, _, values = recorder._diagnostics()
    gate.set()
    summary = recorder.close()

    counts = summary.topics[EVENTS]
    # one message in the stalled write, queue_length waiting (the writer may not have taken
    # the first one yet when the queue filled)
    assert counts.recorded in (queue_length, queue_length + 1)
    assert counts.recorded + counts.dropped_queue_full == burst
    assert counts.dropped_write_error == counts.lost_in_transport == 0
    assert summary.dropped == burst - counts.recorded
    assert level == WARN
    assert values[f"{EVENTS}: dropped_queue_full"] == counts.dropped_queue_full
    seqs = [m.seq for _, _, m in read_bags(recording_bags(output))[EVENTS]]
    assert len(seqs) == counts.recorded and seqs == sorted(seqs)


def test_refuses_an_existing_output_dir(ros, tmp_path):
    output = tmp_path / "kept"
    output.mkdir()
    (output / "drive.mcap").write_bytes(b"precious")
    with pytest.raises(RecorderError, match="refusing to overwrite"):
        ros.recorder(output)
    assert [p.name for p in output.iterdir()] == ["drive.mcap"]
    assert (output / "drive.mcap").read_bytes() == b"precious"
    args = _record_args(["--output", str(output)])
    assert cmd_record(args) == 2
    with pytest.raises(RecorderError, match="cannot create output"):  # under a file
        BagRecorder(output / "drive.mcap" / "new")


def _record_args(argv: list[str]):
    import argparse

    parser = argparse.ArgumentParser()
    add_record_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["record", *argv])


def _string(text: str) -> bytes:
    store = event_packet_typestore()
    message = store.types["std_msgs/msg/String"](data=text)
    return bytes(store.serialize_cdr(message, "std_msgs/msg/String"))


def test_split_by_duration_and_write_errors_counted(tmp_path, monkeypatch):
    """The writer core alone (no DDS): receive times chosen, a failing write injected."""
    write = Writer.write

    def failing_write(self, connection, timestamp, data):
        if b"bad" in bytes(data):
            raise OSError(28, "No space left on device")
        return write(self, connection, timestamp, data)

    monkeypatch.setattr(Writer, "write", failing_write)
    core = BagRecorder(tmp_path / "laps", split=SplitPolicy(duration_ns=1_000_000_000))
    core.register_topic("/lap", "std_msgs/msg/String")
    times_s = {"a": 0.0, "b": 0.5, "bad": 0.9, "c": 1.0, "d": 1.9, "e": 3.5}
    for text, t in times_s.items():
        assert core.offer("/lap", int(t * 1e9), _string(text))
    summary = core.close()

    counts = summary.topics["/lap"]
    assert (counts.received, counts.recorded, counts.dropped_write_error) == (6, 5, 1)
    assert summary.dropped == 1
    bags = recording_bags(tmp_path / "laps")
    assert [f.messages for f in summary.files] == [2, 2, 1]
    per_bag = [[m.data for _, _, m in read_bags([b])["/lap"]] for b in bags]
    assert per_bag == [["a", "b"], ["c", "d"], ["e"]]
    assert core.close() is summary  # idempotent


def test_cli_records_a_discovered_topic_until_sigterm(tmp_path):
    """``evseg record`` in its own process: a topic outside the rig's table is subscribed once
    its publisher shows its type; SIGTERM closes the bag and prints the summary."""
    output = tmp_path / "cli"
    script = (
        "import argparse, sys\n"
        "from evseg_ros.nodes.record_cli import add_record_parser\n"
        "parser = argparse.ArgumentParser()\n"
        "add_record_parser(parser.add_subparsers())\n"
        "args = parser.parse_args(sys.argv[1:])\n"
        "sys.exit(args.func(args))\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    argv = ["record", "--output", str(output), "--topics", "events", "status/text",
            "--duration", "60"]
    process = subprocess.Popen(
        [sys.executable, "-c", script, *argv], env=env, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    context = Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    node = Node("cli_probe", context=context, namespace="rig")
    executor.add_node(node)
    status: dict[str, str] = {}

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for entry in msg.status:
            if entry.hardware_id == "recorder":
                status.update({kv.key: kv.value for kv in entry.values})

    try:
        events = node.create_publisher(EventPacket, "events", EVENTS_QOS)
        text = node.create_publisher(String, "status/text", 10)
        node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, DIAGNOSTICS_QOS)
        deadline = time.monotonic() + 30
        while not (events.get_subscription_count() and text.get_subscription_count()):
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "the recorder never subscribed"
            executor.spin_once(timeout_sec=0.05)
        for seq in range(10):
            events.publish(event_packet(seq))
            text.publish(String(data=f"status {seq}"))
            executor.spin_once(timeout_sec=0.01)
        while not (
            status.get(f"{EVENTS}: recorded") == "10"
            and status.get("/rig/status/text: recorded") == "10"
        ):
            assert time.monotonic() < deadline, f"recorder diagnostics: {status}"
            executor.spin_once(timeout_sec=0.05)
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
        executor.remove_node(node)
        node.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown(context=context)
    assert process.returncode == 0, stdout
    assert "recorded 20 messages" in stdout and "dropped 0" in stdout
    bag = read_bags(recording_bags(output))
    assert [m.seq for _, _, m in bag[EVENTS]] == list(range(10))
    assert [m.data for _, _, m in bag["/rig/status/text"]] == [f"status {i}" for i in range(10)]
    with AnyReader(recording_bags(output)) as reader:
        text_connection = next(c for c in reader.connections if c.topic == "/rig/status/text")
        assert text_connection.msgtype == "std_msgs/msg/String"
        assert text_connection.ext.offered_qos_profiles  # the publisher's, from the graph
