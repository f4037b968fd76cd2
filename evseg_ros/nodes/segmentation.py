"""Segmentation node: frame + event frame in, ``segmentation/mask`` (mono8) and overlay out.

Inputs come either in-process from a co-located accumulator (``event_frame_input: direct``) or
as two topics paired by exact stamp (``topic``). Outputs carry the camera frame's header, so a
mask can be matched to its frame by stamp anywhere downstream. The overlay is only computed while
someone subscribes to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image

from evseg_ros.eval.metrics import LatencyStats
from evseg_ros.geometry.calibration import load_calibration
from evseg_ros.geometry.frame_remap import FrameRemapper
from evseg_ros.labels import get_label_set
from evseg_ros.nodes.diagnostics import ERROR, OK, WARN, DiagnosticsPublisher
from evseg_ros.nodes.image_conversion import (
    ImageConversionError,
    from_image_msg,
    stamp_to_ns,
    to_image_msg,
)
from evseg_ros.nodes.params import Param, declare_parameters
from evseg_ros.nodes.qos import FRAMES_QOS, RESULTS_QOS
from evseg_ros.nodes.spin import run_node
from evseg_ros.paths import resolve_package_path
from evseg_ros.pipeline.accumulator import ReadyFrame, host_array
from evseg_ros.pipeline.debayer import SUPPORTED_ENCODINGS, Debayer
from evseg_ros.pipeline.segmenter import Segmenter
from evseg_ros.pipeline.stamp_pairing import StampPairer
from evseg_ros.runtime import RuntimeBackendError, create_backend

PARAMS: tuple[Param, ...] = (
    Param(
        "calibration_file", "config/calibration/sim_rig.yaml",
        "rig calibration: frames are remapped onto its output grid, where the event frames are",
    ),
    Param("model_path", "models/demo_fusion.onnx", "ONNX model (image + events -> mask)"),
    Param("backend", "auto", "inference backend", ("auto", "onnxruntime", "pytorch")),
    Param("network_width", 0, "network input width [px]; 0 = the frame's width"),
    Param("network_height", 0, "network input height [px]; 0 = the frame's height"),
    Param("num_threads", 0, "CPU threads for inference; 0 = backend default"),
    Param("label_set", "dsec11", "class names and colours", ("dsec11", "cityscapes19")),
    Param("overlay_alpha", 0.5, "weight of class colours in the overlay"),
    Param(
        "event_frame_input", "topic", "where event frames come from",
        ("topic", "direct"),
    ),
)


class SegmentationNode(Node):
    """Run the segmentation backend on every frame pair and publish the results."""

    def __init__(self, **kwargs) -> None:
        super().__init__("segmentation", **kwargs)
        self.params = declare_parameters(self, PARAMS)
        self.latency = LatencyStats()
        self.counters = {
            "frames_in": 0, "frames_out": 0, "bad_input": 0, "no_model": 0, "inference_errors": 0,
        }
        self.last_inference_error = ""
        self.error = ""
        self.segmenter: Segmenter | None = None
        model_path = resolve_package_path(self.params["model_path"])
        try:
            options = {}
            if self.params["num_threads"]:
                options["num_threads"] = int(self.params["num_threads"])  # every backend takes it
            backend = create_backend(
                self.params["backend"], model_path,
                network_width=int(self.params["network_width"]),
                network_height=int(self.params["network_height"]), **options,
            )
            self.segmenter = Segmenter(
                backend, get_label_set(self.params["label_set"]),
                overlay_alpha=float(self.params["overlay_alpha"]),
            )
            self.get_logger().info(f"backend {backend.name!r} running {str(model_path)!r}")
        except RuntimeBackendError as err:
            self.error = str(err)
            self.get_logger().error(self.error)
        self.mask_publisher = self.create_publisher(Image, "segmentation/mask", RESULTS_QOS)
        self.overlay_publisher = self.create_publisher(Image, "segmentation/overlay", RESULTS_QOS)
        #: called with (stamp_ns, image on the output grid, event frame) before inference; the
        #: evaluation keeps the frame-only model's inputs this way (same frames, same pixels)
        self.input_listeners: list[Callable[[int, np.ndarray, np.ndarray], None]] = []
        self.pairer = StampPairer(("image", "events"))
        self.debayer = Debayer(device="auto")
        self.remapper = FrameRemapper(
            load_calibration(resolve_package_path(self.params["calibration_file"])), device="cpu"
        )
        if self.params["event_frame_input"] == "topic":
            self.create_subscription(Image, "frame/image_raw", self._on_image, FRAMES_QOS)
            self.create_subscription(Image, "event_frame", self._on_event_frame, RESULTS_QOS)
        self.diagnostics = DiagnosticsPublisher(self, self._diagnostics)

    # -- inputs ----------------------------------------------------------------------------------
    def on_ready_frame(self, ready: ReadyFrame, image_msg: Image) -> None:
        """In-process hand-over from a co-located accumulator (no serialisation)."""
        self.latency.add("accumulate", ready.accumulate_ms)
        # the runtime backends take host arrays today: a frame built on the GPU comes over here
        self._segment(image_msg, host_array(ready.event_frame))

    def _on_image(self, msg: Image) -> None:
        pair = self.pairer.add("image", stamp_to_ns(msg.header), msg)
        if pair is not None:
            self._segment_pair(*pair)

    def _on_event_frame(self, msg: Image) -> None:
        pair = self.pairer.add("events", stamp_to_ns(msg.header), msg)
        if pair is not None:
            self._segment_pair(*pair)

    def _segment_pair(self, image_msg: Image, event_msg: Image) -> None:
        try:
            event_frame = from_image_msg(event_msg, expected=("32FC3",)).transpose(2, 0, 1)
        except ImageConversionError as err:
            self._bad_input(err)
            return
        self._segment(image_msg, event_frame)

    # -- work ------------------------------------------------------------------------------------
    def _segment(self, image_msg: Image, event_frame) -> None:
        self.counters["frames_in"] += 1
        if self.segmenter is None:
            self.counters["no_model"] += 1
            return
        start = time.perf_counter()
        try:
            image = from_image_msg(image_msg, expected=SUPPORTED_ENCODINGS)
            # frames arrive as the camera sent them (Bayer mosaics on hardware); demosaic on
            # the GPU where there is one. The runtime backends read host arrays.
            image = self.remapper.remap(host_array(self.debayer(image, image_msg.encoding)))
            for listener in self.input_listeners:
                listener(stamp_to_ns(image_msg.header), image, event_frame)
            want_overlay = self.overlay_publisher.get_subscription_count() > 0
            output = self.segmenter.process(image, event_frame, want_overlay=want_overlay)
        except (ImageConversionError, ValueError) as err:
            self._bad_input(err)
            return
        except Exception as err:  # an inference failure must not take the shared executor down
            self.counters["inference_errors"] += 1
            self.last_inference_error = f"{type(err).__name__}: {err}"
            self.get_logger().error(
                f"inference failed, frame skipped: {self.last_inference_error}",
                throttle_duration_sec=5.0,
            )
            return
        self.mask_publisher.publish(to_image_msg(output.mask, "mono8", image_msg.header))
        if output.overlay is not None:
            self.overlay_publisher.publish(to_image_msg(output.overlay, "rgb8", image_msg.header))
        self.counters["frames_out"] += 1
        for stage, ms in output.timings_ms.items():
            self.latency.add(stage, ms)
        self.latency.add("segmentation_total", (time.perf_counter() - start) * 1e3)

    def _bad_input(self, err: Exception) -> None:
        self.counters["bad_input"] += 1
        self.get_logger().warning(f"frame skipped: {err}", throttle_duration_sec=5.0)

    def _diagnostics(self):
        values: dict = dict(self.counters)
        values["unpaired_images"] = self.pairer.dropped["image"]
        values["unpaired_event_frames"] = self.pairer.dropped["events"]
        for stage, (_count, median, p99) in self.latency.summary().items():
            values[f"{stage}_ms_median"] = f"{median:.2f}"
            values[f"{stage}_ms_p99"] = f"{p99:.2f}"
        if self.segmenter is not None:
            values["backend"] = self.segmenter.backend.name
        if self.error:
            return ERROR, self.error, values
        if self.counters["inference_errors"]:
            values["last_inference_error"] = self.last_inference_error
            return WARN, f"inference failed on {self.counters['inference_errors']} frames", values
        if self.counters["bad_input"]:
            return WARN, "bad input frames counted", values
        return OK, "ok", values


def main(args: list[str] | None = None) -> int:
    return run_node(SegmentationNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
