"""Both drivers replaying one recording over real DDS: /clock, use_sim_time, lockstep."""

from __future__ import annotations

import time

import rclpy
from event_camera_msgs.msg import EventPacket
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image

from evseg_ros.eval.recording import inspect_recording
from evseg_ros.nodes.evk4_driver import Evk4DriverNode
from evseg_ros.nodes.flir_driver import FlirDriverNode
from evseg_ros.nodes.image_conversion import stamp_to_ns
from evseg_ros.nodes.qos import CLOCK_QOS, EVENTS_QOS, FRAMES_QOS, RESULTS_QOS


def _params(recording, **values) -> list[Parameter]:
    values = {"source": "bag", "bag_path": str(recording), **values}
    return [Parameter(name, value=value) for name, value in values.items()]


def _spin(executor, until, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not until() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.01)


def test_a_replay_publishes_recorded_stamps_and_a_clock_that_sim_time_nodes_follow(
    short_recording,
):
    contents = inspect_recording(short_recording)
    context = Context()
    rclpy.init(context=context)
    try:
        executor = SingleThreadedExecutor(context=context)
        flir = FlirDriverNode(
            context=context, namespace="clk",
            parameter_overrides=_params(short_recording, replay_publish_clock=True),
        )
        listener = Node(
            "sim_time_listener", context=context, namespace="clk",
            parameter_overrides=[Parameter("use_sim_time", value=True)],
        )
        stamps: list[int] = []
        clocks: list[int] = []
        listener.create_subscription(
            Image, "frame/image_raw", lambda m: stamps.append(stamp_to_ns(m.header)), FRAMES_QOS
        )
        listener.create_subscription(
            Clock, "/clock", lambda m: clocks.append(m.clock.sec * 10**9 + m.clock.nanosec),
            CLOCK_QOS,
        )
        for node in (flir, listener):
            executor.add_node(node)
        _spin(executor, lambda: flir.replay.finished and len(stamps) >= flir.frames_published)
        sim_now = listener.get_clock().now().nanoseconds
        status = flir._status_values()  # noqa: SLF001
    finally:
        rclpy.try_shutdown(context=context)
    assert status["replay_finished"]
    assert stamps == [s for s in contents.frame_stamps if s in set(stamps)]  # recorded, in order
    assert len(stamps) + status["frames_skipped"] == len(contents.frame_stamps)
    assert clocks == sorted(clocks) and len(clocks) > len(stamps)
    # a node with use_sim_time runs on the recording's clock, not the wall clock
    assert contents.frame_stamps[0] <= sim_now <= contents.frame_stamps[-1] + 10**9
    assert abs(sim_now - time.time_ns()) > 10**9


def test_lockstep_across_two_contexts_releases_a_frame_per_mask_with_its_events(
    short_recording,
):
    """The EVK4 and FLIR drivers in two contexts (as in two processes), a stand-in consumer
    answering each frame with a mask: every frame goes out, one at a time, events first."""
    contexts = [Context(), Context()]
    for context in contexts:
        rclpy.init(context=context)
    try:
        executor_a = SingleThreadedExecutor(context=contexts[0])
        executor_b = SingleThreadedExecutor(context=contexts[1])
        lockstep = {"replay_pacing": "lockstep"}
        evk4 = Evk4DriverNode(
            context=contexts[0], namespace="ls", parameter_overrides=_params(short_recording,
                                                                              **lockstep),
        )
        flir = FlirDriverNode(
            context=contexts[1], namespace="ls",
            parameter_overrides=_params(short_recording, replay_publish_clock=True, **lockstep),
        )
        consumer = Node("consumer", context=contexts[1], namespace="ls")
        mask_pub = consumer.create_publisher(Image, "segmentation/mask", RESULTS_QOS)
        events_at_frame: list[int] = []
        packets: list[int] = []
        frames: list[int] = []

        def on_frame(msg: Image) -> None:
            frames.append(stamp_to_ns(msg.header))
            events_at_frame.append(len(packets))
            mask_pub.publish(Image(header=msg.header, encoding="mono8"))

        consumer.create_subscription(Image, "frame/image_raw", on_frame, FRAMES_QOS)
        consumer.create_subscription(
            EventPacket, "events", lambda m: packets.append(m.seq), EVENTS_QOS
        )
        executor_a.add_node(evk4)
        executor_b.add_node(flir)
        executor_b.add_node(consumer)

        def spin_both() -> bool:
            executor_a.spin_once(timeout_sec=0.005)
            return flir.replay.finished and evk4.replay.finished

        _spin(executor_b, spin_both, timeout_s=60.0)
        status = flir._status_values()  # noqa: SLF001
        events_finished = evk4.replay.finished
    finally:
        for context in contexts:
            rclpy.try_shutdown(context=context)
    contents = inspect_recording(short_recording)
    assert frames == contents.frame_stamps  # every frame, in order, none skipped
    assert status["frames_skipped"] == 0 and status["lockstep_timeouts"] == 0
    assert packets == list(range(len(packets))) and events_finished
    assert events_at_frame == sorted(events_at_frame) and events_at_frame[-1] < len(packets)
