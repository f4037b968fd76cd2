"""Managed (lifecycle) nodes: the transitions over their real services, with a real executor.

A managed node is the plain node's twin: the same parameters and topics, but nothing loads
before ``configure`` and nothing streams before ``activate``. What is checked is what a ROS
user sees: the node's state, which publishers and subscriptions exist on the graph, what is
published in each state, and ``/diagnostics``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import cv2
import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from evseg_ros.nodes.diagnostics import ERROR, OK
from evseg_ros.nodes.flir_driver import FlirDriverNode
from evseg_ros.nodes.health_msgs import event_status_msg
from evseg_ros.nodes.image_conversion import ns_to_stamp, to_image_msg
from evseg_ros.nodes.managed import (
    Stage,
    managed_requested,
    managed_variant,
    node_class,
)
from evseg_ros.nodes.qos import DIAGNOSTICS_QOS, FRAMES_QOS, RESULTS_QOS
from evseg_ros.nodes.segmentation import SegmentationNode
from evseg_ros.pipeline.modality import EventHealth

NAMESPACE = "managed"


class Operator(Node):
    """Drives a managed node through its lifecycle services and feeds it a frame pair."""

    def __init__(self, target: str, **kwargs) -> None:
        super().__init__("operator", namespace=NAMESPACE, **kwargs)
        self.change = self.create_client(ChangeState, f"{target}/change_state")
        self.get = self.create_client(GetState, f"{target}/get_state")
        self.masks: list[Image] = []
        self.frames: list[Image] = []
        self.statuses: list = []
        self.create_subscription(Image, "segmentation/mask", self.masks.append, RESULTS_QOS)
        self.create_subscription(Image, "frame/image_raw", self.frames.append, FRAMES_QOS)
        self.create_subscription(
            DiagnosticArray, "/diagnostics", lambda m: self.statuses.extend(m.status),
            DIAGNOSTICS_QOS,
        )
        self.image = self.create_publisher(Image, "frame/image_raw", FRAMES_QOS)
        self.event_frame = self.create_publisher(Image, "event_frame", RESULTS_QOS)
        self.event_status = self.create_publisher(
            DiagnosticArray, "event_frame/status", RESULTS_QOS
        )

    def send_pair(self, stamp_ns: int) -> None:
        header = ns_to_stamp(Header(frame_id="frame_camera"), stamp_ns)
        rng = np.random.default_rng(stamp_ns % 1000)
        events = rng.random((240, 320, 3), dtype=np.float32)
        image = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
        self.event_status.publish(
            event_status_msg(header, EventHealth.OK, frameless=False, num_events=500, late=False)
        )
        self.event_frame.publish(to_image_msg(events, "32FC3", header))
        self.image.publish(to_image_msg(image, "rgb8", header))


class Session:
    """One context, one executor, the managed node and its operator."""

    def __init__(self, node: Node, operator: Operator, executor, context) -> None:
        self.node, self.operator, self.executor, self.context = node, operator, executor, context

    def spin_until(self, done: Callable[[], bool], budget_s: float = 30.0) -> bool:
        deadline = time.monotonic() + budget_s
        while not done() and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)
        return done()

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.02)

    def transition(self, transition_id: int) -> bool:
        """Ask for a transition over the node's change_state service; its success."""
        assert self.spin_until(self.operator.change.service_is_ready)
        future = self.operator.change.call_async(ChangeState.Request(
            transition=Transition(id=transition_id)
        ))
        assert self.spin_until(future.done, 120.0)
        return future.result().success

    def state(self) -> str:
        assert self.spin_until(self.operator.get.service_is_ready)
        future = self.operator.get.call_async(GetState.Request())
        assert self.spin_until(future.done)
        return future.result().current_state.label

    def report(self) -> tuple[bytes, str]:
        """The node's next /diagnostics status as (level, message)."""
        wanted = f"evseg_ros: {self.node.get_fully_qualified_name()}"
        self.operator.statuses.clear()
        assert self.spin_until(lambda: any(s.name == wanted for s in self.operator.statuses))
        status = [s for s in self.operator.statuses if s.name == wanted][-1]
        return status.level, status.message

    def topic_count(self, kind: str, topic: str) -> int:
        operator = self.operator
        counter = operator.count_publishers if kind == "pub" else operator.count_subscribers
        self.spin_for(0.3)  # graph changes reach this participant
        return counter(f"/{NAMESPACE}/{topic}")


@pytest.fixture
def session_of():
    """Build a managed node (class, parameters) with its operator; shut down at the end."""
    context = Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    built: list[Session] = []

    def build(plain, parameters: dict) -> Session:
        overrides = [Parameter(name, value=value) for name, value in parameters.items()]
        node = managed_variant(plain)(
            context=context, namespace=NAMESPACE, parameter_overrides=overrides
        )
        operator = Operator(node.get_fully_qualified_name(), context=context)
        for each in (node, operator):
            executor.add_node(each)
        built.append(Session(node, operator, executor, context))
        return built[-1]

    try:
        yield build
    finally:
        executor.shutdown()
        for session in built:
            session.node.destroy_node()
            session.operator.destroy_node()
        rclpy.try_shutdown(context=context)


def test_segmentation_loads_in_configure_streams_in_activate_and_releases_in_cleanup(
    session_of, tiny_onnx_model
):
    session = session_of(SegmentationNode, {"model_path": str(tiny_onnx_model), "device": "cpu"})
    node, operator = session.node, session.operator
    assert session.state() == "unconfigured" and node.segmenter is None
    assert session.report() == (OK, "unconfigured")
    assert session.topic_count("pub", "segmentation/mask") == 0

    assert session.transition(Transition.TRANSITION_CONFIGURE)
    assert session.state() == "inactive" and node.segmenter is not None
    assert session.topic_count("pub", "segmentation/mask") == 1
    assert session.topic_count("sub", "event_frame") == 0  # nothing streams yet
    assert session.report() == (OK, "inactive")

    assert session.transition(Transition.TRANSITION_ACTIVATE)
    assert session.state() == "active"
    assert session.spin_until(lambda: operator.event_frame.get_subscription_count() == 1)
    stamp = 1_000_000_000
    operator.send_pair(stamp)
    assert session.spin_until(lambda: len(operator.masks) == 1), node.counters
    assert operator.masks[0].encoding == "mono8" and operator.masks[0].width == 320

    assert session.transition(Transition.TRANSITION_DEACTIVATE)
    assert session.state() == "inactive" and node.worker is None
    assert session.topic_count("sub", "event_frame") == 0
    operator.send_pair(stamp + 100_000_000)
    session.spin_for(0.5)
    assert len(operator.masks) == 1  # inactive: nothing received, nothing segmented

    assert session.transition(Transition.TRANSITION_ACTIVATE)  # again, same models
    assert session.spin_until(lambda: operator.event_frame.get_subscription_count() == 1)
    operator.send_pair(stamp + 200_000_000)
    assert session.spin_until(lambda: len(operator.masks) == 2), node.counters

    assert session.transition(Transition.TRANSITION_DEACTIVATE)
    assert session.transition(Transition.TRANSITION_CLEANUP)
    assert session.state() == "unconfigured" and node.segmenter is None
    assert session.topic_count("pub", "segmentation/mask") == 0
    assert session.transition(Transition.TRANSITION_CONFIGURE)  # configure after cleanup
    assert node.segmenter is not None


def test_a_configure_that_fails_leaves_the_node_unconfigured_alive_with_the_reason(
    session_of, tmp_path
):
    missing = tmp_path / "no_such_model.onnx"
    session = session_of(SegmentationNode, {"model_path": str(missing)})
    assert not session.transition(Transition.TRANSITION_CONFIGURE)
    assert session.state() == "unconfigured"
    level, message = session.report()
    assert level == ERROR and message.startswith("unconfigured: ") and str(missing) in message
    assert session.topic_count("pub", "segmentation/mask") == 0  # what configure made is gone
    assert not session.transition(Transition.TRANSITION_CONFIGURE)  # still alive: try again
    assert session.transition(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
    assert session.state() == "finalized"


def test_a_bad_device_fails_configure_with_what_to_set(session_of, tiny_onnx_model):
    session = session_of(
        SegmentationNode, {"model_path": str(tiny_onnx_model), "device": "gpu0"}
    )
    assert not session.transition(Transition.TRANSITION_CONFIGURE)
    level, message = session.report()
    assert level == ERROR and "parameter 'device'" in message and "cuda:N" in message


def test_a_driver_publishes_only_while_active(session_of, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((240, 320, 3), 40 * i, np.uint8))
    session = session_of(
        FlirDriverNode,
        {"source": "folder", "image_folder": str(folder), "image_folder_rate_hz": 50.0,
         "replay_loop": True},
    )
    node, operator = session.node, session.operator
    assert node.source is None  # nothing opened before configure
    assert session.transition(Transition.TRANSITION_CONFIGURE)
    assert node.source is not None and node.stage is Stage.INACTIVE
    assert session.spin_until(lambda: node.image_publisher.get_subscription_count() == 1)
    session.spin_for(0.5)
    assert operator.frames == []  # configured, not streaming
    assert session.transition(Transition.TRANSITION_ACTIVATE)
    assert session.spin_until(lambda: len(operator.frames) >= 3)
    assert session.transition(Transition.TRANSITION_DEACTIVATE)
    session.spin_for(0.3)  # frames already in flight arrive
    received = len(operator.frames)
    session.spin_for(0.5)
    assert len(operator.frames) == received
    assert session.transition(Transition.TRANSITION_CLEANUP)
    assert node.source is None  # the recording closed


def test_the_command_line_picks_the_plain_node_or_its_managed_twin():
    assert node_class(SegmentationNode, ["segmentation"]) is SegmentationNode
    twin = node_class(SegmentationNode, ["segmentation", "--managed", "--ros-args", "-r", "x:=y"])
    assert twin is managed_variant(SegmentationNode) and twin.managed_from is SegmentationNode
    assert issubclass(twin, SegmentationNode) and twin.managed
    assert not managed_requested(["segmentation", "--ros-args", "--managed"])  # a ROS argument
    assert not SegmentationNode.managed


def test_the_managed_twin_is_checked_against_its_parameter_table(tmp_path):
    from evseg_ros.nodes.config_check import check_node_args
    from evseg_ros.nodes.config_errors import ConfigError

    params = tmp_path / "params.yaml"
    params.write_text("segmentation:\n  ros__parameters:\n    model_pth: x.onnx\n")
    twin = managed_variant(SegmentationNode)
    with pytest.raises(ConfigError, match="model_pth"):
        check_node_args(twin, ["segmentation", "--managed", "--ros-args", "--params-file",
                               str(params)])


def test_plain_nodes_are_configured_and_active_when_built(tiny_onnx_model):
    context = Context()
    rclpy.init(context=context)
    try:
        model = Parameter("model_path", value=str(tiny_onnx_model))
        node = SegmentationNode(context=context, parameter_overrides=[model])
        assert node.stage is Stage.ACTIVE and node.worker is not None
        assert not hasattr(node, "trigger_configure")  # no lifecycle interface at all
        node.destroy_node()
        assert node.stage is Stage.UNCONFIGURED and node.worker is None
    finally:
        rclpy.try_shutdown(context=context)


def test_every_graph_node_has_a_managed_twin():
    from evseg_ros.nodes.graph import GRAPH
    from evseg_ros.nodes.managed import StagedNode

    for spec in GRAPH:
        plain = spec.load()
        assert issubclass(plain, StagedNode) and not plain.managed
        assert managed_variant(plain).__name__ == f"Managed{plain.__name__}"
