"""ONNX Runtime backend: the default engine, on CPU or (when installed) CUDA.

The model is checked against the I/O contract when it is loaded, not on the first frame, so a
wrong or stale model file fails at node start-up with a message naming the file and the problem.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from evseg_ros.device import check_device_text
from evseg_ros.runtime.backend import (
    INPUT_NAMES,
    LOGITS_OUTPUT,
    MASK_OUTPUT,
    META_ARCHITECTURE,
    META_CLASSES,
    META_LABEL_SET,
    META_TRAINING_DATA,
    META_VARIANT,
    SegmentationResult,
    model_description,
    resize_mask,
    stage_timings,
    to_network_inputs,
)
from evseg_ros.runtime.errors import ModelNotFoundError, RuntimeBackendError

_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as err:
        msg = "the onnxruntime backend needs the onnxruntime package (pip install onnxruntime)"
        raise RuntimeBackendError(msg) from err
    return onnxruntime


def select_providers(available: list[str], device: str = "auto") -> list:
    """Execution providers to request: CUDA first when wanted and available, CPU always last.

    ``cuda:N`` asks the CUDA provider for GPU N (its ``device_id`` option).

    Raises:
        DeviceError: a malformed device value.
        RuntimeBackendError: ``cuda`` requested but the CUDA provider is not installed.
    """
    device = check_device_text(device)
    if device.startswith("cuda") and _CUDA not in available:
        msg = (
            f"device={device!r} requested but onnxruntime offers only {available}; install "
            "onnxruntime-gpu (matching the CUDA of this machine) or use device 'cpu'"
        )
        raise RuntimeBackendError(msg)
    if device == "cpu" or _CUDA not in available:
        return [_CPU]
    if ":" in device:
        return [(_CUDA, {"device_id": int(device.split(":")[1])}), _CPU]
    return [_CUDA, _CPU]


def _dim(value) -> int | None:
    """A static dimension as int; symbolic or unknown ones as None."""
    return value if isinstance(value, int) and value > 0 else None


class OnnxRuntimeBackend:
    """Run an exported segmentation model with ONNX Runtime.

    Args:
        model_path: ONNX file written by :func:`evseg_ros.model.export.export_onnx` (or any
            model with the same inputs/outputs).
        network_width: Width to run the network at; 0 = the input's native width (or the
            model's static width, if it has one).
        network_height: Height to run the network at; 0 likewise.
        intra_op_num_threads: ONNX Runtime's thread count; 0 lets it choose. Set it when the
            node shares the CPU with the event decoder.
        num_threads: Backend-neutral alias of ``intra_op_num_threads`` (the node's parameter);
            used when ``intra_op_num_threads`` is 0.
        device: ``"auto"`` (CUDA if the provider is installed), ``"cpu"``, ``"cuda"`` or
            ``"cuda:N"``.
        return_logits: Copy the logits out with every result (only if the model has them).
        expected_label_set: If given, refuse a model whose metadata names another label set.

    Raises:
        ModelNotFoundError: The file does not exist.
        RuntimeBackendError: The file is not a loadable ONNX model or breaks the contract.
    """

    name = "onnxruntime"

    def __init__(
        self,
        model_path: str | Path,
        *,
        network_width: int = 0,
        network_height: int = 0,
        intra_op_num_threads: int = 0,
        num_threads: int = 0,
        device: str = "auto",
        return_logits: bool = False,
        expected_label_set: str | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise ModelNotFoundError(self.model_path)
        if network_width < 0 or network_height < 0 or (network_width == 0) != (network_height == 0):
            msg = (
                "network_width and network_height must both be positive or both 0 (native), "
                f"got {network_width}x{network_height}"
            )
            raise ValueError(msg)
        ort = _import_onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(intra_op_num_threads or num_threads)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # warnings about unused providers are noise here
        providers = select_providers(ort.get_available_providers(), device)
        try:
            self._engine = ort.InferenceSession(
                str(self.model_path), sess_options=options, providers=providers
            )
        except Exception as err:  # noqa: BLE001 - onnxruntime raises unrelated types per fault
            reason = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err)
            msg = f"cannot load {str(self.model_path)!r} as an ONNX model: {reason}"
            raise RuntimeBackendError(msg) from None
        self.providers = self._engine.get_providers()
        self.device = "cpu"
        if self.providers[0] == _CUDA:
            cuda_options = self._engine.get_provider_options().get(_CUDA, {})
            self.device = f"cuda:{cuda_options.get('device_id', 0)}"
        self.metadata: dict[str, str] = dict(self._engine.get_modelmeta().custom_metadata_map)
        self.class_names = tuple(c for c in self.metadata.get(META_CLASSES, "").split(",") if c)
        self.variant = self.metadata.get(META_VARIANT, "unknown")
        #: What the exporter recorded about the network and its training set ("unknown" for a
        #: model exported without them).
        self.architecture = self.metadata.get(META_ARCHITECTURE, "unknown")
        self.training_data = self.metadata.get(META_TRAINING_DATA, "unknown")
        self.description = model_description(self.architecture, self.variant, self.training_data)
        self._has_logits = self._validate(expected_label_set)
        static = self._static_size
        requested = (network_width, network_height) if network_width else None
        if static is not None and requested is not None and requested != static:
            msg = (
                f"{str(self.model_path)!r} has a fixed input size {static[0]}x{static[1]} "
                f"but network size {requested[0]}x{requested[1]} was requested"
            )
            raise RuntimeBackendError(msg)
        #: (width, height) the network runs at; None = each input's native size.
        self.network_size: tuple[int, int] | None = requested or static
        self._outputs = [MASK_OUTPUT]
        if return_logits and self._has_logits:
            self._outputs.append(LOGITS_OUTPUT)

    def _fail(self, problem: str) -> RuntimeBackendError:
        return RuntimeBackendError(
            f"{str(self.model_path)!r} does not follow the segmentation model contract: {problem}"
        )

    def _validate(self, expected_label_set: str | None) -> bool:
        """Check names, types and ranks; record a static input size. Returns: has logits."""
        inputs = {i.name: i for i in self._engine.get_inputs()}
        if sorted(inputs) != sorted(INPUT_NAMES):
            raise self._fail(f"inputs are {sorted(inputs)}, expected {sorted(INPUT_NAMES)}")
        sizes = set()
        for name, info in inputs.items():
            shape = list(info.shape)
            if info.type != "tensor(float)" or len(shape) != 4:
                raise self._fail(f"input {name!r} is {info.type} {shape}, expected float32 Nx3xHxW")
            if _dim(shape[1]) not in (None, 3):
                raise self._fail(f"input {name!r} has {shape[1]} channels, expected 3")
            sizes.add((_dim(shape[3]), _dim(shape[2])))
        if len(sizes) != 1:
            raise self._fail(f"inputs disagree on their spatial size: {sorted(sizes, key=str)}")
        size = sizes.pop()
        self._static_size = size if None not in size else None
        outputs = {o.name: o for o in self._engine.get_outputs()}
        mask = outputs.get(MASK_OUTPUT)
        if mask is None:
            raise self._fail(f"no {MASK_OUTPUT!r} output (outputs: {sorted(outputs)})")
        if mask.type != "tensor(uint8)" or len(mask.shape) != 3:
            raise self._fail(f"output 'mask' is {mask.type} {mask.shape}, expected uint8 NxHxW")
        logits = outputs.get(LOGITS_OUTPUT)
        if logits is not None and (logits.type != "tensor(float)" or len(logits.shape) != 4):
            raise self._fail(f"output 'logits' is {logits.type} {logits.shape}, expected NxCxHxW")
        label_set = self.metadata.get(META_LABEL_SET)
        if expected_label_set is not None and label_set != expected_label_set:
            raise self._fail(f"label set is {label_set!r}, expected {expected_label_set!r}")
        return logits is not None

    def infer(self, image, events) -> SegmentationResult:
        """Segment one frame (see :class:`evseg_ros.runtime.backend.SegmentationBackend`).

        Host arrays go through the host path. Torch tensors on the GPU of a CUDA session stay
        there: resized and normalised with torch, bound to the session by address (I/O
        binding), and only the mask comes back. Tensors anywhere else are brought to the host.
        """
        if not isinstance(image, np.ndarray) or not isinstance(events, np.ndarray):
            if self.device != "cpu" and _on_cuda(image) and _on_cuda(events):
                return self._infer_bound(image, events)
            image, events = _host(image), _host(events)
        t0 = time.perf_counter()
        image_t, events_t = to_network_inputs(image, events, self.network_size)
        t1 = time.perf_counter()
        outputs = self._engine.run(self._outputs, {"image": image_t, "events": events_t})
        t2 = time.perf_counter()
        mask = resize_mask(outputs[0][0], image.shape[1], image.shape[0])
        logits = outputs[1][0] if len(outputs) > 1 else None
        timings = stage_timings(t0, t1, t2, time.perf_counter())
        return SegmentationResult(mask=mask, logits=logits, timings=timings)

    def _infer_bound(self, image, events) -> SegmentationResult:
        """The CUDA-session path for GPU tensors: no host round trip of the inputs."""
        import torch

        from evseg_ros.runtime import tensor_inputs

        t0 = time.perf_counter()
        image_t, events_t = tensor_inputs.to_network_tensors(image, events, self.network_size)
        batch, _, height, width = image_t.shape
        mask_t = torch.empty((batch, height, width), dtype=torch.uint8, device=image_t.device)
        binding = self._engine.io_binding()
        index = image_t.device.index or 0
        for name, tensor in (("image", image_t), ("events", events_t)):
            binding.bind_input(
                name, "cuda", index, np.float32, list(tensor.shape), tensor.data_ptr()
            )
        binding.bind_output(
            MASK_OUTPUT, "cuda", index, np.uint8, list(mask_t.shape), mask_t.data_ptr()
        )
        if len(self._outputs) > 1:
            binding.bind_output(LOGITS_OUTPUT)  # on the host: only asked for by tools
        torch.cuda.current_stream(image_t.device).synchronize()  # inputs ready before ORT reads
        t1 = time.perf_counter()
        self._engine.run_with_iobinding(binding)
        t2 = time.perf_counter()
        mask = tensor_inputs.mask_to_host(mask_t[0], image.shape[1], image.shape[0])
        logits = binding.copy_outputs_to_cpu()[1][0] if len(self._outputs) > 1 else None
        timings = stage_timings(t0, t1, t2, time.perf_counter())
        return SegmentationResult(mask=mask, logits=logits, timings=timings)


def _on_cuda(value) -> bool:
    return getattr(getattr(value, "device", None), "type", "") == "cuda"


def _host(value) -> np.ndarray:
    """A torch tensor (any device) as a host array; numpy arrays pass through."""
    if isinstance(value, np.ndarray):
        return value
    return value.detach().cpu().numpy()
