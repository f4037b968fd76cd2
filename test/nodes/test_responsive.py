"""A stalled or overloaded segmentation stage is reported as such, over DDS, while it lasts.

Inference runs on its own thread, so the node's executor (and with it ``/diagnostics``) keeps
going while a frame is being segmented. Here a frame that never finishes (a job holding the
inference thread) stands in for a hung engine; what is checked is what a monitor sees.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_msgs.msg import Header

from evseg_ros.nodes.image_conversion import to_image_msg
from evseg_ros.nodes.qos import DIAGNOSTICS_QOS
from evseg_ros.nodes.segmentation import SegmentationNode
from evseg_ros.pipeline.modality import EventHealth

ERROR = int.from_bytes(DiagnosticStatus.ERROR, "little")
WARN = int.from_bytes(DiagnosticStatus.WARN, "little")
OK = int.from_bytes(DiagnosticStatus.OK, "little")


class Monitor(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("monitor", **kwargs)
        self.seen: list[tuple[int, str]] = []
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on, DIAGNOSTICS_QOS)

    def _on(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith("/segmentation"):
                self.seen.append((int.from_bytes(status.level, "little"), status.message))


def _spin_until(executor, done, budget_s: float = 30.0) -> bool:
    deadline = time.monotonic() + budget_s
    while not done() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.02)
    return done()


def test_a_stall_and_an_overload_are_reported_while_they_last(tiny_onnx_model):
    context = Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    release = threading.Event()
    try:
        node = SegmentationNode(
            context=context,
            parameter_overrides=[
                Parameter("model_path", value=str(tiny_onnx_model)),
                Parameter("event_frame_input", value="direct"),
                Parameter("stall_timeout_s", value=0.3),
            ],
        )
        monitor = Monitor(context=context)
        executor.add_node(node)
        executor.add_node(monitor)
        started = threading.Event()
        node.worker.submit(lambda: (started.set(), release.wait(60)))  # a hung engine
        assert started.wait(10)
        # frames keep coming: one waits, the others are dropped and counted
        frame = to_image_msg(np.zeros((240, 320, 3), np.uint8), "rgb8", Header())
        for _ in range(3):
            node._submit(frame.header, frame, np.zeros((3, 240, 320), np.float32), EventHealth.OK)
        assert node.counters["frames_dropped_busy"] == 2
        stalled = lambda: any(lvl == ERROR and "stalled" in msg for lvl, msg in monitor.seen)  # noqa: E731
        assert _spin_until(executor, stalled), monitor.seen
        release.set()
        recovered = lambda: monitor.seen[-1][0] == OK if monitor.seen else False  # noqa: E731
        assert _spin_until(executor, recovered), monitor.seen
        # between the stall and the recovery a report named the frames dropped meanwhile
        assert any(lvl >= WARN and "overloaded: 2 frames dropped" in msg
                   for lvl, msg in monitor.seen), monitor.seen
        assert node.counters["frames_out"] == 1  # the frame that waited was segmented
    finally:
        release.set()
        executor.shutdown()
        for each in list(executor.get_nodes()):
            each.destroy_node()
        rclpy.try_shutdown(context=context)
