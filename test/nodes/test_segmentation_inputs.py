"""The segmentation node reads frames as cameras send them: Bayer mosaics are demosaiced first.

A frame it cannot use is counted and the frame's events are segmented alone (event-only).
"""

from __future__ import annotations

import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.parameter import Parameter
from std_msgs.msg import Header

from evseg_ros.nodes.image_conversion import to_image_msg
from evseg_ros.nodes.segmentation import SegmentationNode
from evseg_ros.pipeline.debayer import Debayer
from evseg_ros.pipeline.modality import EventHealth


def _segment(node: SegmentationNode, image_msg, events, health=EventHealth.OK) -> None:
    """What the inference thread does with one frame, run here, in the test's thread."""
    node._segment(image_msg.header, image_msg, events, health)


@pytest.fixture
def node(tiny_onnx_model):
    context = Context()
    rclpy.init(context=context)
    node = SegmentationNode(
        context=context, parameter_overrides=[Parameter("model_path", value=str(tiny_onnx_model))]
    )
    masks = []
    node.mask_publisher.publish = masks.append  # what would go out, without a subscriber
    try:
        yield node, masks
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def _mosaic(rgb: np.ndarray) -> np.ndarray:
    """RGGB mosaic of an RGB image: R at (even, even), B at (odd, odd), G elsewhere."""
    mosaic = rgb[:, :, 1].copy()
    mosaic[0::2, 0::2] = rgb[0::2, 0::2, 0]
    mosaic[1::2, 1::2] = rgb[1::2, 1::2, 2]
    return mosaic


def test_bayer_frame_is_segmented_like_its_demosaiced_rgb(node):
    segmentation, masks = node
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    events = rng.random((3, 240, 320), dtype=np.float32)
    header = Header(frame_id="frame_camera")
    mosaic = _mosaic(rgb)
    _segment(segmentation, to_image_msg(mosaic, "bayer_rggb8", header), events)
    demosaiced = np.asarray(Debayer(device="cpu")(mosaic, "bayer_rggb8"))
    _segment(segmentation, to_image_msg(demosaiced, "rgb8", header), events)
    assert segmentation.counters["bad_input"] == 0
    assert len(masks) == 2 and masks[0].encoding == "mono8"
    assert (masks[0].width, masks[0].height) == (320, 240)
    assert bytes(masks[0].data) == bytes(masks[1].data)


def test_unsupported_encoding_is_counted_and_the_events_go_on_alone(node):
    segmentation, masks = node
    frame = np.zeros((240, 320), dtype=np.float32)
    events = np.ones((3, 240, 320), np.float32)
    _segment(segmentation, to_image_msg(frame, "32FC1", Header()), events)
    assert segmentation.counters["bad_input"] == 1 and len(masks) == 1
    assert segmentation.modes.counts["event_only"] == 1
    assert "bad camera frame" in segmentation.modes.reason
    # with events unfit to fuse as well there is nothing left to segment: no mask, counted
    _segment(segmentation, to_image_msg(frame, "32FC1", Header()), events, EventHealth(False, "x"))
    assert len(masks) == 1 and segmentation.modes.counts["none"] == 1


def test_frame_of_another_size_than_the_calibration_is_counted(node):
    segmentation, masks = node
    frame = np.zeros((48, 64, 3), dtype=np.uint8)
    events = np.zeros((3, 240, 320), np.float32)
    _segment(segmentation, to_image_msg(frame, "rgb8", Header()), events)
    assert segmentation.counters["bad_input"] == 1
    assert segmentation.modes.counts["event_only"] == 1 and len(masks) == 1


def _model_failing_at_run_time(path) -> str:
    """A model that honours the ONNX contract at load but fails on any frame but 2x2 pixels."""
    import onnx
    from onnx import TensorProto, helper

    def tensor(name, kind, shape):
        return helper.make_tensor_value_info(name, kind, shape)

    graph = helper.make_graph(
        [
            helper.make_node("Add", ["image", "events"], ["both"]),
            helper.make_node("Reshape", ["both", "fixed"], ["reshaped"]),
            helper.make_node("ArgMax", ["reshaped"], ["best"], axis=1, keepdims=0),
            helper.make_node("Cast", ["best"], ["mask"], to=TensorProto.UINT8),
        ],
        "fails_at_run_time",
        [tensor(n, TensorProto.FLOAT, ["n", 3, "h", "w"]) for n in ("image", "events")],
        [tensor("mask", TensorProto.UINT8, ["n", "h", "w"])],
        [helper.make_tensor("fixed", TensorProto.INT64, [4], [1, 3, 2, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


def test_an_inference_failure_is_counted_and_the_node_keeps_going(tmp_path):
    context = Context()
    rclpy.init(context=context)
    try:
        model = _model_failing_at_run_time(tmp_path / "fails.onnx")
        segmentation = SegmentationNode(
            context=context, parameter_overrides=[Parameter("model_path", value=model)]
        )
        assert segmentation.error == ""
        masks = []
        segmentation.mask_publisher.publish = masks.append
        frame = to_image_msg(np.zeros((240, 320, 3), np.uint8), "rgb8", Header())
        for _ in range(2):
            _segment(segmentation, frame, np.zeros((3, 240, 320), np.float32))
        assert segmentation.counters["inference_errors"] == 2 and not masks
        _, message, values = segmentation._diagnostics()
        assert message == "inference failed on 2 frames" and values["last_inference_error"]
        segmentation.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_the_pytorch_backend_takes_the_thread_count_too():
    context = Context()
    rclpy.init(context=context)
    try:
        node = SegmentationNode(
            context=context,
            parameter_overrides=[
                Parameter("backend", value="pytorch"),
                Parameter("model_path", value="models/cacd_b0_sim.pt"),
                Parameter("num_threads", value=1),
            ],
        )
        assert node.error == "" and node.segmenter.backend.name.startswith("pytorch")
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
