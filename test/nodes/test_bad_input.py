"""Bad input reaches the nodes over DDS: it is counted and reported, and the node keeps going."""

from __future__ import annotations

import array
import time
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from event_camera_msgs.msg import EventPacket
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter

from evseg_ros.events.evt3 import encode_evt3
from evseg_ros.events.types import EVENT_DTYPE
from evseg_ros.nodes.accumulator import AccumulatorNode
from evseg_ros.nodes.diagnostics import ERROR
from evseg_ros.nodes.qos import EVENTS_QOS
from evseg_ros.nodes.segmentation import SegmentationNode

REPO = Path(__file__).resolve().parents[2]


def _packet(seq: int, encoding: str, payload: bytes, width: int = 400, height: int = 225):
    msg = EventPacket(seq=seq, encoding=encoding, width=width, height=height)
    msg.header.stamp.sec = 100
    data = array.array("B")
    data.frombytes(payload)
    msg.events = data
    return msg


def test_accumulator_counts_bad_packets_and_keeps_running():
    context = Context()
    rclpy.init(context=context)
    try:
        executor = SingleThreadedExecutor(context=context)
        node = AccumulatorNode(context=context, namespace="bad")
        sender = Node("sender", context=context, namespace="bad")
        statuses: list = []
        sender.create_subscription(
            DiagnosticArray, "/diagnostics", lambda m: statuses.extend(m.status), 10
        )
        publisher = sender.create_publisher(EventPacket, "events", EVENTS_QOS)
        for n in (node, sender):
            executor.add_node(n)
        deadline = time.monotonic() + 10
        while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        events = np.zeros(3, EVENT_DTYPE)
        events["x"], events["y"], events["t"] = [1, 2, 3], [4, 5, 6], [10, 20, 30]
        good = encode_evt3(events)
        publisher.publish(_packet(0, "evt3", good))
        publisher.publish(_packet(1, "unknown-encoding", good))
        publisher.publish(_packet(2, "evt3", good[:-1]))  # truncated mid-word
        publisher.publish(_packet(3, "evt3", good, width=1280, height=720))
        publisher.publish(_packet(7, "evt3", bytes(range(256)) * 4))  # gap + garbage

        def spin_until_packets(count: int) -> None:
            deadline = time.monotonic() + 10
            while node.core.counters["packets"] < count and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.05)

        spin_until_packets(5)
        decoded_before = node.core.counters["events_decoded"]
        publisher.publish(_packet(8, "evt3", good))  # the stream recovers at once
        spin_until_packets(6)
        decoded_last = node.core.counters["events_decoded"] - decoded_before
        wanted = f"evseg_ros: {node.get_fully_qualified_name()}"
        deadline = time.monotonic() + 5
        statuses.clear()
        while not any(s.name == wanted for s in statuses) and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        counters = dict(node.core.counters)  # the node releases its accumulator when destroyed
    finally:
        rclpy.try_shutdown(context=context)
    assert counters["packets"] == 6
    assert counters["unknown_encoding"] == 1
    assert counters["odd_length_packets"] == 1
    assert counters["geometry_mismatch"] == 1
    assert counters["seq_gaps"] == 1 and counters["packets_lost"] == 3
    assert decoded_last == 3
    status = next(s for s in statuses if s.name == wanted)
    values = {kv.key: kv.value for kv in status.values}
    assert values["unknown_encoding"] == "1" and values["seq_gaps"] == "1"
    assert "unknown_encoding" in status.message


def test_missing_model_is_one_clear_error_naming_the_path(tmp_path):
    missing = tmp_path / "no_such_model.onnx"
    context = Context()
    rclpy.init(context=context)
    try:
        node = SegmentationNode(
            context=context, parameter_overrides=[Parameter("model_path", value=str(missing))]
        )
        level, message, _values = node._diagnostics()
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
    assert level == ERROR
    assert str(missing) in message
    assert node.segmenter is None


def test_demo_refuses_a_missing_model_before_starting_anything(tmp_path, capsys):
    from evseg_ros.cli import main

    missing = tmp_path / "absent.onnx"
    assert main(["demo", "--model", str(missing), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count(str(missing)) == 1 and "segmentation model not found" in err
    assert not (tmp_path / "out").exists()
