"""The segmentation node reads frames as cameras send them: Bayer mosaics are demosaiced first."""

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
    segmentation._segment(to_image_msg(mosaic, "bayer_rggb8", header), events)
    demosaiced = np.asarray(Debayer(device="cpu")(mosaic, "bayer_rggb8"))
    segmentation._segment(to_image_msg(demosaiced, "rgb8", header), events)
    assert segmentation.counters["bad_input"] == 0
    assert len(masks) == 2 and masks[0].encoding == "mono8"
    assert (masks[0].width, masks[0].height) == (320, 240)
    assert bytes(masks[0].data) == bytes(masks[1].data)


def test_unsupported_encoding_is_counted_not_raised(node):
    segmentation, masks = node
    frame = np.zeros((48, 64), dtype=np.float32)
    segmentation._segment(to_image_msg(frame, "32FC1", Header()), np.zeros((3, 48, 64), np.float32))
    assert segmentation.counters["bad_input"] == 1 and not masks


def test_frame_of_another_size_than_the_calibration_is_counted(node):
    segmentation, masks = node
    frame = np.zeros((48, 64, 3), dtype=np.uint8)
    segmentation._segment(to_image_msg(frame, "rgb8", Header()), np.zeros((3, 48, 64), np.float32))
    assert segmentation.counters["bad_input"] == 1 and not masks
