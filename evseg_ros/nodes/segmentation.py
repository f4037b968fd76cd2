"""Segmentation node: frame + event frame in, ``segmentation/mask`` (mono8) and overlay out.

Inputs come either in-process from a co-located accumulator (``event_frame_input: direct``) or
as three topics paired by exact stamp (``topic``: image, event frame, the event frame's status).
Outputs carry the camera frame's header, so a mask can be matched to its frame by stamp anywhere
downstream. The overlay is only computed while someone subscribes to it.

Each frame runs in the mode that is still right (:mod:`evseg_ros.pipeline.modality`): fused when
the frame and its event window are both good, frame-only when the events are missing, late or
unsynced, and event-only when no usable frame came (a frameless event frame from the
accumulator, or a malformed image). One network serves all three: the missing modality is fed as
exact zeros (an all-zero event frame, a black image), which is what it saw for a dropped
modality in training; ``frame_only_model_path`` may still name a separate frame-only model.
``segmentation/status`` says which, per
mask; ``/diagnostics`` goes WARN with the reason at once (not at the next period) and back to OK
at the first fused frame. Inference runs on a worker thread (:mod:`.inference_worker`), so the
executor and the diagnostics keep going while a frame is being segmented, and an overloaded or
stalled stage is reported as such.

``device`` says where a frame is processed. On a GPU the camera frame's raw bytes (the Bayer
mosaic: a third of the RGB) go up once, through page-locked memory, inside the inference job
(a frame dropped for a newer one never costs a transfer); they are demosaiced, remapped and
segmented there, and an event frame built on the GPU by a co-located accumulator never leaves
it. Only the mask comes back, plus the image when someone subscribes to the overlay or an
input listener is attached. On the CPU everything stays numpy, without a copy more than before.
A device that is malformed or absent leaves the node up in ERROR saying what to set, like a
missing model. A managed node (:mod:`.managed`) loads the models in ``configure`` and starts
the inference thread and the subscriptions in ``activate``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from evseg_ros.device import DeviceError, check_device_text, is_cuda, resolve_device_name
from evseg_ros.eval.metrics import LatencyStats
from evseg_ros.geometry.calibration import load_calibration
from evseg_ros.geometry.frame_remap import FrameRemapper
from evseg_ros.labels import get_label_set
from evseg_ros.nodes.diagnostics import ERROR, OK, WARN, CounterDeltas
from evseg_ros.nodes.health_msgs import mode_status_msg, parse_event_status
from evseg_ros.nodes.image_conversion import (
    ImageConversionError,
    from_image_msg,
    ns_to_stamp,
    stamp_to_ns,
    to_image_msg,
)
from evseg_ros.nodes.managed import StagedNode, node_class
from evseg_ros.nodes.params import Param, declare_parameters
from evseg_ros.nodes.qos import FRAMES_QOS, RESULTS_QOS
from evseg_ros.nodes.spin import run_node
from evseg_ros.paths import resolve_package_path
from evseg_ros.pipeline.accumulator import ReadyFrame, host_array
from evseg_ros.pipeline.debayer import SUPPORTED_ENCODINGS, Debayer
from evseg_ros.pipeline.inference_worker import InferenceWorker
from evseg_ros.pipeline.modality import EventHealth, Mode, ModeTracker, choose_mode
from evseg_ros.pipeline.segmenter import Segmenter
from evseg_ros.pipeline.stamp_pairing import StampPairer
from evseg_ros.runtime import RuntimeBackendError, create_backend

PARAMS: tuple[Param, ...] = (
    Param(
        "calibration_file", "config/calibration/sim_rig.yaml",
        "rig calibration: frames are remapped onto its output grid, where the event frames are",
    ),
    Param(
        "model_path", "models/cacd_b0_sim.onnx",
        "CACD model (image + events -> mask): an ONNX export, or a .pt checkpoint for the "
        "pytorch backend",
    ),
    Param(
        "frame_only_model_path", "",
        "frames whose events are missing, late or unsynced (frame-only mode): empty = model_path "
        "with an all-zero event frame; a path = a separate model for them",
    ),
    Param(
        "backend", "auto",
        "inference backend; auto = the best that works here (tensorrt, pytorch on CUDA, "
        "onnxruntime CUDA/CPU, pytorch on CPU), said in the log and /diagnostics",
        ("auto", "tensorrt", "pytorch", "onnxruntime"),
    ),
    Param(
        "precision", "auto",
        "network precision on a GPU: auto (fp16), fp16, bf16 (pytorch), fp32, int8 (tensorrt, "
        "with a calibration cache from evseg build-engine); the CPU runs fp32",
        ("auto", "fp16", "bf16", "fp32", "int8"),
    ),
    Param(
        "engine_cache_dir", "",
        "folder of TensorRT engines and their manifests; empty = $EVSEG_ENGINE_CACHE, else "
        "~/.cache/evseg/engines",
    ),
    Param("network_width", 0, "network input width [px]; 0 = the frame's width", low=0),
    Param("network_height", 0, "network input height [px]; 0 = the frame's height", low=0),
    Param("num_threads", 0, "CPU threads for inference; 0 = backend default", low=0, high=256),
    Param("label_set", "dsec11", "class names and colours", ("dsec11", "cityscapes19")),
    Param(
        "overlay_alpha", 0.5, "weight of class colours in the overlay", low=0.0, high=1.0,
        runtime=True,
    ),
    Param(
        "representation", "event_frame",
        "event tensor the model takes; must be what the accumulator builds",
        ("event_frame", "voxel_grid", "polarity_histogram"),
    ),
    Param(
        "event_frame_input", "topic", "where event frames come from",
        ("topic", "direct"),
    ),
    Param(
        "inference_queue_depth", 1,
        "frames that may wait while one is segmented; when full the oldest waiting frame is "
        "dropped (frames_dropped_busy)", low=1, high=1000,
    ),
    Param(
        "stall_timeout_s", 2.0, "one frame's inference running longer than this is a stall",
        low=0.1, high=600.0, runtime=True,
    ),
    Param(
        "device", "auto",
        "where frames are demosaiced, remapped and segmented: auto (cuda when torch sees a "
        "GPU), cpu, cuda or cuda:N; a value this machine cannot serve leaves the node in ERROR",
    ),
)

#: What the shipped models take (runtime.backend.INPUT_CONTRACT): the 3-channel event frame.
MODEL_REPRESENTATION = "event_frame"


class SegmentationNode(StagedNode):
    """Run the segmentation backend on every frame pair and publish the results."""

    def __init__(self, **kwargs) -> None:
        super().__init__("segmentation", **kwargs)
        self.params = declare_parameters(self, PARAMS, on_change=self._on_param_change)
        self.latency = LatencyStats()
        self.counters = {
            "frames_in": 0, "frames_out": 0, "bad_input": 0, "no_model": 0, "inference_errors": 0,
            "frames_dropped_busy": 0,
        }
        self.modes = ModeTracker()
        self._deltas = CounterDeltas()
        self.last_inference_error = ""
        self._frame_id = "frame_camera"
        #: called with (stamp_ns, image on the output grid, event frame), host arrays, before
        #: inference; the evaluation keeps the frame-only model's inputs this way (same frames,
        #: same pixels)
        self.input_listeners: list[Callable[[int, np.ndarray, np.ndarray], None]] = []
        self.pairer = StampPairer(("image", "events", "status"))
        #: where frames are processed, resolved once in configure ("cpu", "cuda", "cuda:1")
        self.device = "cpu"
        self.segmenter: Segmenter | None = None
        self.frame_only: Segmenter | None = None
        self.remapper: FrameRemapper | None = None
        self.debayer: Debayer | None = None
        self.worker: InferenceWorker | None = None
        self.start()

    # -- stages ----------------------------------------------------------------------------------
    def _configure(self) -> None:
        """Calibration, publishers, the device, then the models loaded and warmed up on it."""
        calibration = load_calibration(resolve_package_path(self.params["calibration_file"]))
        self.mask_publisher = self.create_publisher(Image, "segmentation/mask", RESULTS_QOS)
        self.overlay_publisher = self.create_publisher(Image, "segmentation/overlay", RESULTS_QOS)
        self.status_publisher = self.create_publisher(
            DiagnosticArray, "segmentation/status", RESULTS_QOS
        )
        self.pairer = StampPairer(("image", "events", "status"))
        try:
            self.device = resolve_device_name(check_device_text(self.params["device"]))
        except DeviceError as err:
            self.error = f"parameter 'device': {err}"
            self.get_logger().error(self.error)
            return
        self.remapper = FrameRemapper(calibration, device=self.device)
        self.debayer = Debayer(device=self.device)
        self.get_logger().info(f"frames processed on {self.device}")
        self._load_models((calibration.output_height, calibration.output_width))

    def _activate(self) -> None:
        self.worker = InferenceWorker(
            depth=int(self.params["inference_queue_depth"]), on_error=self._on_inference_error
        )
        if self.params["event_frame_input"] == "topic":
            self.create_subscription(Image, "frame/image_raw", self._on_image, FRAMES_QOS)
            self.create_subscription(Image, "event_frame", self._on_event_frame, RESULTS_QOS)
            self.create_subscription(
                DiagnosticArray, "event_frame/status", self._on_event_status, RESULTS_QOS
            )

    def _deactivate(self) -> None:
        # the worker publishes: it ends before the publishers (and later the context) go away
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def _cleanup(self) -> None:
        self.segmenter = self.frame_only = None
        self.remapper = self.debayer = None
        if is_cuda(self.device):
            import torch

            torch.cuda.empty_cache()  # the models' memory back to the driver, for others

    @property
    def on_gpu(self) -> bool:
        return is_cuda(self.device)

    def _load_models(self, size: tuple[int, int]) -> None:
        """The model, and a separate frame-only one if named; a failure leaves the node in ERROR.

        Each runs once on a blank frame of the output ``size`` (height, width) on the node's
        device here, so the first camera frames do not wait behind the engine's warm-up (and
        get dropped).
        """
        options: dict[str, Any] = {"engine_cache_dir": self.params["engine_cache_dir"]}
        if self.params["num_threads"]:
            options["num_threads"] = int(self.params["num_threads"])  # every backend takes it
        if self.on_gpu and self.params["precision"] != "auto":
            options["precision"] = self.params["precision"]  # the CPU backends run fp32
        label_set = get_label_set(self.params["label_set"])

        width, height = int(self.params["network_width"]), int(self.params["network_height"])
        if self.on_gpu and not width:
            # "the frame's size" made explicit: a TensorRT engine is built for it here, in
            # configure, and torch's CUDA graphs need a fixed size
            height, width = size

        def segmenter(path: str) -> Segmenter:
            backend = create_backend(
                self.params["backend"], resolve_package_path(path), network_width=width,
                network_height=height, device=self.device, **options,
            )
            if is_cuda(backend.device) != self.on_gpu:
                msg = (
                    f"backend {backend.name!r} runs on {backend.device!r}, but frames are "
                    f"processed on {self.device!r}: set the parameter 'device' to where the "
                    "backend runs"
                )
                raise RuntimeBackendError(msg)
            self.get_logger().info(
                f"backend {backend.selection} running {path!r}: {backend.description}"
            )
            model = Segmenter(backend, label_set, overlay_alpha=float(self.params["overlay_alpha"]))
            device = self.device if self.on_gpu else None
            try:
                model.process(
                    zeros_on((*size, 3), "uint8", device), zeros_on((3, *size), "float32", device)
                )
            except Exception as err:  # noqa: BLE001 (it may fail on real frames only: counted then)
                self.get_logger().warning(f"warm-up of {path!r} failed: {err}")
            return model

        representation = self.params["representation"]
        if representation != MODEL_REPRESENTATION:
            self.error = (
                f"parameter 'representation' is {representation!r}, but the segmentation models "
                f"take {MODEL_REPRESENTATION!r} (3 channels: ON count, OFF count, latest time); "
                f"set representation: {MODEL_REPRESENTATION} for the accumulator and segmentation"
            )
            self.get_logger().error(self.error)
            return
        try:
            self.segmenter = segmenter(self.params["model_path"])
            if self.params["frame_only_model_path"]:
                self.frame_only = segmenter(self.params["frame_only_model_path"])
            else:
                self.get_logger().info("frame-only mode: the same model, all-zero event frame")
        except RuntimeBackendError as err:
            self.segmenter = self.frame_only = None
            self.error = str(err)
            self.get_logger().error(self.error)

    def _on_param_change(self, changed: dict) -> None:
        if "overlay_alpha" in changed:
            for model in (self.segmenter, self.frame_only):
                if model is not None:
                    model.overlay_alpha = float(changed["overlay_alpha"])

    # -- inputs ----------------------------------------------------------------------------------
    def on_ready_frame(self, ready: ReadyFrame, image_msg: Image | None) -> None:
        """In-process hand-over from a co-located accumulator (no serialisation).

        The event frame is handed on as it is: a tensor built on the GPU stays there when the
        node runs on the GPU; the inference job brings it to the node's device otherwise.
        """
        self.latency.add("accumulate", ready.accumulate_ms)
        header = image_msg.header if image_msg is not None else self._header(ready.stamp_ns)
        self._submit(header, image_msg, ready.event_frame, ready.health)

    def _on_image(self, msg: Image) -> None:
        self._frame_id = msg.header.frame_id or self._frame_id
        self._pair("image", stamp_to_ns(msg.header), msg)

    def _on_event_frame(self, msg: Image) -> None:
        self._pair("events", stamp_to_ns(msg.header), msg)

    def _on_event_status(self, msg: DiagnosticArray) -> None:
        try:
            stamp, health, frameless = parse_event_status(msg)
        except ValueError as err:
            self._bad_input(err)
            return
        self._pair("status", stamp, health)
        if frameless:  # no camera frame will come for this stamp
            self._pair("image", stamp, None)

    def _pair(self, side: str, stamp_ns: int, item) -> None:
        triple = self.pairer.add(side, stamp_ns, item)
        if triple is None:
            return
        image_msg, event_msg, health = triple
        try:
            # a view of the message: (C, H, W) over its (H, W, C) bytes, nothing copied yet
            event_frame = from_image_msg(event_msg, expected=("32FC3",)).transpose(2, 0, 1)
        except ImageConversionError as err:
            self._bad_input(err)
            return
        header = image_msg.header if image_msg is not None else event_msg.header
        self._submit(header, image_msg, event_frame, health)

    def _header(self, stamp_ns: int) -> Header:
        return ns_to_stamp(Header(frame_id=self._frame_id), stamp_ns)

    # -- work ------------------------------------------------------------------------------------
    def _submit(
        self, header: Header, image_msg: Image | None, event_frame, health: EventHealth
    ) -> None:
        """Hand one frame to the inference thread; the executor goes back to its callbacks."""
        worker = self.worker
        if worker is None:
            return  # not active: a co-located accumulator may still deliver
        self.counters["frames_in"] += 1
        if image_msg is not None:
            self._frame_id = image_msg.header.frame_id or self._frame_id
        if self.segmenter is None:
            self.counters["no_model"] += 1
            return
        if not worker.submit(lambda: self._segment(header, image_msg, event_frame, health)):
            self.counters["frames_dropped_busy"] += 1

    def _segment(
        self, header: Header, image_msg: Image | None, event_frame, health: EventHealth
    ) -> None:
        """Decide the mode, run its model, publish mask, overlay and status (worker thread).

        The frame's inputs reach the node's device here, in the job, so a frame dropped for a
        newer one was never uploaded.
        """
        start = time.perf_counter()
        stamp = stamp_to_ns(header)
        event_frame = self._events_on_device(event_frame)
        image, frame_reason = self._frame(image_msg)
        mode, reason = choose_mode(health, image is not None, frame_reason)
        if image is not None and self.input_listeners:
            host_image, host_events = host_array(image), host_array(event_frame)
            for listener in self.input_listeners:
                listener(stamp, host_image, host_events)
        output = None
        if mode is not Mode.NONE:
            output = self._infer(mode, image, event_frame)
            if output is None:
                return  # counted and reported as an inference error
        if self.modes.record(mode, reason):
            self.diagnostics.publish()  # a change of mode is reported now, not within a second
        self.status_publisher.publish(
            mode_status_msg(header, mode, reason, {"events": "ok" if health.ok else "degraded"})
        )
        if output is None:
            return
        self.mask_publisher.publish(to_image_msg(output.mask, "mono8", header))
        if output.overlay is not None:
            self.overlay_publisher.publish(to_image_msg(output.overlay, "rgb8", header))
        self.counters["frames_out"] += 1
        for stage, ms in output.timings_ms.items():
            self.latency.add(stage, ms)
        self.latency.add("segmentation_total", (time.perf_counter() - start) * 1e3)

    def _events_on_device(self, event_frame: Any) -> Any:
        """The (3, H, W) event frame where frames are processed: numpy on the CPU, else a
        tensor on the GPU (one page-locked upload of a host frame; a GPU frame stays)."""
        if not self.on_gpu:
            return host_array(event_frame)
        import torch

        from evseg_ros.runtime.tensor_inputs import as_tensor

        device = torch.device(self.device)
        if not isinstance(event_frame, np.ndarray):
            return event_frame.to(device, non_blocking=True)
        channels_last = event_frame.transpose(1, 2, 0)
        if not event_frame.flags.c_contiguous and channels_last.flags.c_contiguous:
            # a topic's frame: upload the message's (H, W, C) bytes as they lie, permute there
            return as_tensor(channels_last, device).permute(2, 0, 1)
        return as_tensor(event_frame, device)

    def _frame(self, image_msg: Image | None) -> tuple[Any, str]:
        """The camera frame on the output grid (numpy, or a tensor on the GPU), or None and why
        it cannot be used."""
        if image_msg is None:
            return None, "no camera frame"
        try:
            raw = from_image_msg(image_msg, expected=SUPPORTED_ENCODINGS)
            # frames arrive as the camera sent them (Bayer mosaics on hardware); on a GPU the
            # raw bytes go up once and are demosaiced and remapped there
            return self.remapper.remap_image(self.debayer(raw, image_msg.encoding)), ""
        except (ImageConversionError, ValueError) as err:
            self._bad_input(err)
            return None, f"bad camera frame: {err}"

    def _infer(self, mode: Mode, image: Any, event_frame: Any):
        """Run the mode's model; the modality the mode leaves out goes in as exact zeros.

        A black uint8 image reaches the network as 0.0 and an all-zero event frame as 0.0
        counts and times: the input a dropped modality had in training. The zeros are made
        where the other input is (on the GPU there), never uploaded.
        """
        want_overlay = self.overlay_publisher.get_subscription_count() > 0
        segmenter = self.segmenter
        if mode is Mode.EVENT_ONLY:
            shape = (*event_frame.shape[1:], 3)
            image = zeros_on(shape, "uint8", _device_of(event_frame))
        elif mode is Mode.FRAME_ONLY:
            event_frame = zeros_on(tuple(event_frame.shape), "float32", _device_of(image))
            segmenter = self.frame_only or self.segmenter
        try:
            return segmenter.process(image, event_frame, want_overlay=want_overlay)
        except ValueError as err:
            self._bad_input(err)
        except Exception as err:  # noqa: BLE001 (an inference failure must not end the node)
            self._on_inference_error(err)
        return None

    def _on_inference_error(self, err: BaseException) -> None:
        self.counters["inference_errors"] += 1
        self.last_inference_error = f"{type(err).__name__}: {err}"
        self.get_logger().error(
            f"inference failed, frame skipped: {self.last_inference_error}",
            throttle_duration_sec=5.0,
        )

    def _bad_input(self, err: Exception) -> None:
        self.counters["bad_input"] += 1
        self.get_logger().warning(f"frame skipped: {err}", throttle_duration_sec=5.0)

    def _diagnostics(self):
        values: dict = dict(self.counters)
        recent = self._deltas.since_last(self.counters)
        worker = self.worker
        values["inference_queued"] = 0 if worker is None else worker.queued
        busy_s = 0.0 if worker is None else worker.busy_s()
        values["inference_busy_ms"] = f"{busy_s * 1e3:.0f}"
        values["unpaired_images"] = self.pairer.dropped["image"]
        values["unpaired_event_frames"] = self.pairer.dropped["events"]
        values.update(self.modes.values())
        for stage, (_count, median, p99) in self.latency.summary().items():
            values[f"{stage}_ms_median"] = f"{median:.2f}"
            values[f"{stage}_ms_p99"] = f"{p99:.2f}"
        values["device"] = self.device
        if self.segmenter is not None:
            values["backend"] = self.segmenter.backend.name
            values["backend_device"] = self.segmenter.backend.device
            values["backend_selection"] = self.segmenter.backend.selection
        problems = []
        if self.error:
            problems.append(self.error)
        if busy_s > self.params["stall_timeout_s"]:
            problems.append(f"inference stalled: one frame running for {busy_s:.1f} s")
        level = ERROR if problems else WARN
        if self.modes.degraded:
            problems.append(f"mode {self.modes.current.value}: {self.modes.reason}")
        if recent["frames_dropped_busy"]:
            problems.append(
                f"overloaded: {recent['frames_dropped_busy']} frames dropped since the last report"
            )
        if self.counters["inference_errors"]:
            values["last_inference_error"] = self.last_inference_error
        if recent["inference_errors"]:
            problems.append(f"inference failed on {recent['inference_errors']} frames")
        if recent["bad_input"]:
            problems.append(f"{recent['bad_input']} bad input frames")
        if problems:
            return level, "; ".join(problems), values
        return OK, "ok", values


def _device_of(value: Any) -> Any:
    """The torch device of a tensor; None for a host array."""
    return None if isinstance(value, np.ndarray) else value.device


def zeros_on(shape: tuple[int, ...], dtype: str, device: Any) -> Any:
    """Exact zeros of ``shape`` and ``dtype``: a host array for ``device`` None, else a tensor
    made on ``device`` (nothing uploaded)."""
    if device is None:
        return np.zeros(shape, dtype)
    import torch

    return torch.zeros(shape, dtype=getattr(torch, dtype), device=device)


def main(args: list[str] | None = None) -> int:
    return run_node(node_class(SegmentationNode, args), args)


if __name__ == "__main__":
    raise SystemExit(main())
