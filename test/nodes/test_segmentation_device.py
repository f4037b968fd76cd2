"""The segmentation node's ``device``: where a frame is demosaiced, remapped and segmented.

On the CPU the frame stays numpy; on a GPU the raw bytes go up once and everything up to the
mask stays there. A device the machine cannot serve leaves the node up in ERROR saying what to
set. The GPU tests run where torch sees one and are skipped (with the reason) elsewhere.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from evseg_ros.labels import get_label_set
from evseg_ros.nodes.diagnostics import ERROR
from evseg_ros.nodes.health_msgs import event_status_msg
from evseg_ros.nodes.image_conversion import ns_to_stamp, to_image_msg
from evseg_ros.nodes.qos import FRAMES_QOS, RESULTS_QOS
from evseg_ros.nodes.segmentation import SegmentationNode, zeros_on
from evseg_ros.pipeline.modality import EventHealth, Mode
from evseg_ros.pipeline.segmenter import Segmenter
from evseg_ros.runtime import create_backend

NO_GPU = "needs a CUDA device (torch sees none here)"


@pytest.fixture
def context():
    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        rclpy.try_shutdown(context=context)


def _node(context, **parameters) -> SegmentationNode:
    overrides = [Parameter(name, value=value) for name, value in parameters.items()]
    return SegmentationNode(context=context, namespace="device", parameter_overrides=overrides)


def _inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    return image, rng.random((3, 240, 320), dtype=np.float32)


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        ("gpu", "device must be one of auto, cpu, cuda or cuda:N, got 'gpu'"),
        ("cuda:x", "got 'cuda:x'"),
    ],
)
def test_a_malformed_device_leaves_the_node_up_in_error(context, tiny_onnx_model, device, expected):
    node = _node(context, model_path=str(tiny_onnx_model), device=device)
    try:
        level, message, _values = node._diagnostics()
        assert level == ERROR and "parameter 'device'" in message and expected in message
        assert node.segmenter is None
        # the node keeps taking frames and counts them as unserved
        image, events = _inputs()
        frame = to_image_msg(image, "rgb8", Header())
        node._submit(frame.header, frame, events, EventHealth.OK)
        assert node.counters["frames_in"] == 1 and node.counters["no_model"] == 1
    finally:
        node.destroy_node()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a GPU")
def test_cuda_on_a_machine_without_a_gpu_is_an_error_naming_the_fix(context, tiny_onnx_model):
    node = _node(context, model_path=str(tiny_onnx_model), device="cuda")
    try:
        level, message, _values = node._diagnostics()
    finally:
        node.destroy_node()
    assert level == ERROR
    assert "CUDA is not usable" in message and "set device to 'cpu' or 'auto'" in message


class Probe(Node):
    """Feeds a frame pair over DDS and keeps what comes back."""

    def __init__(self, **kwargs) -> None:
        super().__init__("device_probe", namespace="device", **kwargs)
        self.masks: list[Image] = []
        self.overlays: list[Image] = []
        self.create_subscription(Image, "segmentation/mask", self.masks.append, RESULTS_QOS)
        self.create_subscription(Image, "segmentation/overlay", self.overlays.append, RESULTS_QOS)
        self.image = self.create_publisher(Image, "frame/image_raw", FRAMES_QOS)
        self.events = self.create_publisher(Image, "event_frame", RESULTS_QOS)
        self.status = self.create_publisher(DiagnosticArray, "event_frame/status", RESULTS_QOS)

    def send(self, stamp_ns: int, image: np.ndarray, events: np.ndarray, encoding: str) -> None:
        header = ns_to_stamp(Header(frame_id="frame_camera"), stamp_ns)
        self.status.publish(
            event_status_msg(header, EventHealth.OK, frameless=False, num_events=900, late=False)
        )
        self.events.publish(to_image_msg(events.transpose(1, 2, 0), "32FC3", header))
        self.image.publish(to_image_msg(image, encoding, header))


def _round_trip(context, model, device: str, **parameters) -> tuple[SegmentationNode, Probe]:
    """One Bayer frame and its event frame through the node over DDS; (node, probe) after."""
    node = _node(context, model_path=str(model), device=device, **parameters)
    probe = Probe(context=context)
    executor = SingleThreadedExecutor(context=context)
    for each in (node, probe):
        executor.add_node(each)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (
        probe.events.get_subscription_count() and node.overlay_publisher.get_subscription_count()
    ):
        executor.spin_once(timeout_sec=0.02)
    image, events = _inputs(3)
    mosaic = image[:, :, 1].copy()  # a bayer_rggb8 frame, as the FLIR driver publishes it
    probe.send(2_000_000_000, mosaic, events, "bayer_rggb8")
    while time.monotonic() < deadline and not (probe.masks and probe.overlays):
        executor.spin_once(timeout_sec=0.02)
    executor.shutdown()
    return node, probe


def test_cpu_works_end_to_end_over_dds(context, tiny_onnx_model):
    node, probe = _round_trip(context, tiny_onnx_model, "cpu", event_frame_input="topic")
    try:
        assert node.error == "" and node.device == "cpu"
        assert node.remapper.device == "cpu" and node.debayer.backend == "opencv"
        assert len(probe.masks) == 1 and len(probe.overlays) == 1, node.counters
        mask, overlay = probe.masks[0], probe.overlays[0]
        assert (mask.encoding, mask.width, mask.height) == ("mono8", 320, 240)
        assert overlay.encoding == "rgb8" and overlay.header.stamp == mask.header.stamp
        _level, _message, values = node._diagnostics()
        assert values["device"] == "cpu" and values["backend_device"] == "cpu"
    finally:
        node.destroy_node()
        probe.destroy_node()


@pytest.mark.parametrize("backend", ["onnxruntime", "pytorch"])
def test_the_segmenter_gives_the_same_mask_for_torch_cpu_tensors_as_for_numpy(
    tiny_onnx_model, backend
):
    engine = create_backend(backend, tiny_onnx_model, device="cpu")
    segmenter = Segmenter(engine, get_label_set("dsec11"))
    image, events = _inputs(5)
    from_numpy = segmenter.process(image, events)
    from_tensors = segmenter.process(torch.from_numpy(image), torch.from_numpy(events))
    np.testing.assert_array_equal(from_tensors.mask, from_numpy.mask)
    np.testing.assert_array_equal(from_tensors.overlay, from_numpy.overlay)  # image came down
    assert isinstance(from_tensors.mask, np.ndarray) and from_tensors.mask.dtype == np.uint8


def test_missing_modalities_are_zeros_made_where_the_other_input_is(context, tiny_onnx_model):
    assert isinstance(zeros_on((2, 3), "uint8", None), np.ndarray)
    on_cpu = zeros_on((3, 2, 2), "float32", torch.device("cpu"))
    assert isinstance(on_cpu, torch.Tensor) and on_cpu.dtype == torch.float32
    assert not on_cpu.any()
    node = _node(context, model_path=str(tiny_onnx_model), device="cpu")
    try:
        image, events = _inputs(7)
        for mode in (Mode.FUSED, Mode.FRAME_ONLY, Mode.EVENT_ONLY):
            from_numpy = node._infer(mode, image, events)
            from_tensors = node._infer(mode, torch.from_numpy(image), torch.from_numpy(events))
            np.testing.assert_array_equal(from_tensors.mask, from_numpy.mask, err_msg=mode.value)
    finally:
        node.destroy_node()


def test_input_listeners_get_host_arrays(context, tiny_onnx_model):
    node = _node(context, model_path=str(tiny_onnx_model), device="cpu")
    node.mask_publisher.publish = lambda msg: None
    seen = []
    node.input_listeners.append(lambda stamp, image, events: seen.append((image, events)))
    try:
        image, events = _inputs(9)
        frame = to_image_msg(image, "rgb8", Header())
        node._segment(frame.header, frame, torch.from_numpy(events), EventHealth.OK)
        (got_image, got_events), = seen
        assert isinstance(got_image, np.ndarray) and isinstance(got_events, np.ndarray)
        np.testing.assert_array_equal(got_events, events)
    finally:
        node.destroy_node()


# -- on a GPU -------------------------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_GPU)
def test_gpu_keeps_the_frame_on_the_device_and_matches_the_cpu(context, tiny_checkpoint):
    gpu = _node(context, model_path=str(tiny_checkpoint), backend="pytorch", device="cuda")
    cpu = _node(context, model_path=str(tiny_checkpoint), backend="pytorch", device="cpu")
    try:
        assert gpu.error == "" and gpu.on_gpu and gpu.debayer.backend == "torch"
        assert gpu.segmenter.backend.device.startswith("cuda")
        image, events = _inputs(11)
        frame = to_image_msg(image, "rgb8", Header())
        on_device, reason = gpu._frame(frame)
        assert reason == "" and on_device.device.type == "cuda"
        assert on_device.dtype == torch.uint8 and tuple(on_device.shape) == (240, 320, 3)
        # an event frame the accumulator built on the GPU is handed on as it is
        built = torch.from_numpy(events).cuda()
        assert gpu._events_on_device(built).data_ptr() == built.data_ptr()
        # one from a topic (an (H, W, C) message viewed as (C, H, W)) goes up once
        topic_view = np.ascontiguousarray(events.transpose(1, 2, 0)).transpose(2, 0, 1)
        uploaded = gpu._events_on_device(topic_view)
        assert uploaded.device.type == "cuda"
        torch.testing.assert_close(uploaded.cpu(), torch.from_numpy(events))
        masks = {}
        for name, node, events_in in (("gpu", gpu, built), ("cpu", cpu, events)):
            node._infer(Mode.FUSED, node._frame(frame)[0], events_in)  # warm
            masks[name] = node._infer(Mode.FUSED, node._frame(frame)[0], events_in).mask
        agree = float((masks["gpu"] == masks["cpu"]).mean())
        print(f"\nGPU (fp16) vs CPU (fp32) mask agreement: {agree:.4f}")
        assert agree > 0.9  # a random tiny network: fp16 flips a few near-tied pixels
        # zeros for the missing modality are made on the GPU
        for mode in (Mode.FRAME_ONLY, Mode.EVENT_ONLY):
            output = gpu._infer(mode, on_device, built)
            assert isinstance(output.mask, np.ndarray) and output.mask.shape == (240, 320)
    finally:
        gpu.destroy_node()
        cpu.destroy_node()


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_GPU)
def test_gpu_node_segments_a_bayer_frame_over_dds_with_the_overlay(context, tiny_checkpoint):
    node, probe = _round_trip(
        context, tiny_checkpoint, "cuda", backend="pytorch", event_frame_input="topic"
    )
    try:
        assert node.error == "" and node.device.startswith("cuda")
        assert len(probe.masks) == 1 and len(probe.overlays) == 1, node.counters
        assert probe.masks[0].encoding == "mono8" and probe.overlays[0].encoding == "rgb8"
    finally:
        node.destroy_node()
        probe.destroy_node()
