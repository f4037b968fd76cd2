"""EVK4 driver node with source 'hardware': real rclpy, a fake ``metavision_hal`` camera.

The fake SDK is injected into ``sys.modules`` (the real one cannot be installed here); the node,
its publisher, DDS and the subscriber are real.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from event_camera_msgs.msg import EventPacket
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter

from evseg_ros.events.evt3 import read_raw_file
from evseg_ros.nodes.diagnostics import ERROR, OK, WARN
from evseg_ros.nodes.evk4_driver import Evk4DriverNode
from evseg_ros.nodes.qos import EVENTS_QOS
from test.sources.test_metavision import EVT3_RAW, FakeCamera, make_fake_hal, random_chunks


@pytest.fixture
def context():
    ctx = Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.try_shutdown(context=ctx)


@pytest.fixture
def payload() -> bytes:
    if not EVT3_RAW.is_file():
        pytest.skip(f"{EVT3_RAW} not found")
    return bytes(read_raw_file(EVT3_RAW)[1])


def _spin_until(executor, condition, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.01)


def test_hardware_source_publishes_the_camera_bytes_unchanged(context, monkeypatch, payload):
    camera = FakeCamera(serial="00050423", width=640, height=480)
    monkeypatch.setitem(sys.modules, "metavision_hal", make_fake_hal(camera))
    driver = Evk4DriverNode(
        context=context,
        namespace="hw",
        parameter_overrides=[
            Parameter("source", value="hardware"),
            Parameter("serial", value="00050423"),
            Parameter("bias_diff_on", value=15),
            Parameter("roi", value=[0, 0, 320, 240]),
            Parameter("erc_enabled", value=True),
            Parameter("erc_rate_ev_s", value=10_000_000),
            Parameter("mipi_frame_period_us", value=400),
            Parameter("packet_bytes", value=32_768),
            Parameter("packet_time_us", value=0),
            Parameter("poll_period_ms", value=1.0),
        ],
    )
    listener = Node("listener", context=context, namespace="hw")
    received: list[EventPacket] = []
    statuses: list = []
    subscription = listener.create_subscription(EventPacket, "events", received.append, EVENTS_QOS)
    listener.create_subscription(
        DiagnosticArray, "/diagnostics", lambda m: statuses.extend(m.status), 10
    )
    executor = SingleThreadedExecutor(context=context)
    try:
        for node in (driver, listener):
            executor.add_node(node)
        _spin_until(executor, lambda: driver.publisher.get_subscription_count() > 0)
        chunks = random_chunks(payload, np.random.default_rng(3))
        camera.push(*chunks)  # the camera starts sending once the subscriber is matched
        _spin_until(executor, lambda: sum(len(m.events) for m in received) >= len(payload))
        wanted = f"evseg_ros: {driver.get_fully_qualified_name()}"
        statuses.clear()
        _spin_until(executor, lambda: any(s.name == wanted for s in statuses))
    finally:
        listener.destroy_subscription(subscription)
        driver.destroy_node()
        listener.destroy_node()
    assert b"".join(bytes(m.events) for m in received) == payload
    assert [m.seq for m in received] == list(range(len(received)))
    assert {(m.encoding, m.width, m.height, m.is_bigendian) for m in received} == {
        ("evt3", 640, 480, False)
    }
    assert max(len(m.events) for m in received) == 32_768
    assert all(m.header.frame_id == "event_camera" and m.time_base == 0 for m in received)
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in received]
    assert stamps == sorted(stamps) and stamps[0] > 0
    assert ("ll_biases", "set", "bias_diff_on", 15) in camera.calls
    assert ("ll_biases", "set", "bias_fo", -1000) not in camera.calls  # sentinel: untouched
    assert ("roi", "set_window", (0, 0, 320, 240)) in camera.calls
    assert ("erc_module", "set_cd_event_rate", 10_000_000) in camera.calls
    assert ("trigger_in", "enable", 0) in camera.calls  # default [0]: the main trigger input
    assert ("hw_register", "write_register", 0xB028, 400) in camera.calls
    assert camera.calls[-1] == ("events_stream", "stop")  # destroy_node released the camera
    status = next(s for s in statuses if s.name == wanted)
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == OK
    assert values["hal_bytes"] == values["bytes_published"] == str(len(payload))
    assert values["hal_buffers"] == str(len(chunks))
    assert values["packets_published"] == str(len(received))
    assert values["stream_errors"] == "0" and values["settings_not_applied"] == ""


def test_refused_settings_and_a_lost_camera_show_as_warnings(context, monkeypatch):
    camera = FakeCamera(missing=("get_i_erc_module",))
    monkeypatch.setitem(sys.modules, "metavision_hal", make_fake_hal(camera))
    driver = Evk4DriverNode(
        context=context,
        parameter_overrides=[
            Parameter("source", value="hardware"),
            Parameter("erc_enabled", value=True),
            Parameter("trigger_in_channels", value=[-1]),
        ],
    )
    try:
        level, message, values = driver._diagnostics()
        assert (level, values["settings_not_applied"]) == (WARN, "erc")
        assert "settings not applied: erc" in message
        assert not any(call[0] == "trigger_in" for call in camera.calls)  # [-1]: none enabled
        camera.buffers.append(-1)
        driver._poll_source()  # the stream fails: counted, the node keeps running
        level, message, values = driver._diagnostics()
        assert level == WARN and "camera stream lost" in message
        assert values["stream_errors"] == 1 and values["connected"] is False
    finally:
        driver.destroy_node()


def test_without_the_sdk_the_node_reports_what_to_install(context, monkeypatch):
    monkeypatch.setitem(sys.modules, "metavision_hal", None)
    driver = Evk4DriverNode(context=context, parameter_overrides=[
        Parameter("source", value="hardware"),
    ])  # fmt: skip
    try:
        driver._poll_source()  # nothing to poll, nothing raised
        level, message, values = driver._diagnostics()
    finally:
        driver.destroy_node()
    assert level == ERROR and values["source"] == "hardware"
    assert "metavision_hal" in message and "OpenEB" in message and "Metavision SDK" in message
    assert driver.source is None


@pytest.mark.parametrize(
    ("parameter", "match"),
    [
        (Parameter("roi", value=[1000, 0, 640, 480]), r"roi \[1000, 0, 640, 480\] .* 1280x720"),
        (Parameter("erc_rate_ev_s", value=0), r"'erc_rate_ev_s' = 0 is out of range"),
        (Parameter("trigger_in_channels", value=[0, 5]), r"\[0, 5\] is out of range.* \[-1, 2\]"),
        (Parameter("packet_bytes", value=1001), r"packet_bytes .* got 1001"),
    ],
)
def test_bad_hardware_parameters_are_clear_errors(context, monkeypatch, parameter, match):
    monkeypatch.setitem(sys.modules, "metavision_hal", make_fake_hal(FakeCamera()))
    with pytest.raises(ValueError, match=match):
        Evk4DriverNode(
            context=context, parameter_overrides=[Parameter("source", value="hardware"), parameter]
        )
