"""ONNX Runtime backend: the default engine, on CPU or (when installed) CUDA.

The model is checked against the I/O contract when it is loaded, not on the first frame, so a
wrong or stale model file fails at node start-up with a message naming the file and the problem.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

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
    to_network_inputs,
)
from evseg_ros.runtime.errors import ModelNotFoundError, RuntimeBackendError

_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"
_DEVICES = ("auto", "cpu", "cuda")


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as err:
        msg = "the onnxruntime backend needs the onnxruntime package (pip install onnxruntime)"
        raise RuntimeBackendError(msg) from err
    return onnxruntime


def select_providers(available: list[str], device: str = "auto") -> list[str]:
    """Execution providers to request: CUDA first when wanted and available, CPU always last.

    Raises:
        RuntimeBackendError: ``device="cuda"`` but the CUDA provider is not installed.
    """
    if device not in _DEVICES:
        msg = f"unknown device {device!r}; expected one of {_DEVICES}"
        raise ValueError(msg)
    if device == "cuda" and _CUDA not in available:
        msg = f"device='cuda' requested but onnxruntime offers only {available}"
        raise RuntimeBackendError(msg)
    if device in ("auto", "cuda") and _CUDA in available:
        return [_CUDA, _CPU]
    return [_CPU]


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
        device: ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda"``.
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
        self.device = "cuda" if self.providers[0] == _CUDA else "cpu"
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

    def infer(self, image: np.ndarray, events: np.ndarray) -> SegmentationResult:
        """Segment one frame (see :class:`evseg_ros.runtime.backend.SegmentationBackend`)."""
        t0 = time.perf_counter()
        image_t, events_t = to_network_inputs(image, events, self.network_size)
        t1 = time.perf_counter()
        outputs = self._engine.run(self._outputs, {"image": image_t, "events": events_t})
        t2 = time.perf_counter()
        mask = resize_mask(outputs[0][0], image.shape[1], image.shape[0])
        logits = outputs[1][0] if len(outputs) > 1 else None
        t3 = time.perf_counter()
        timings = {
            "preprocess": (t1 - t0) * 1e3,
            "inference": (t2 - t1) * 1e3,
            "postprocess": (t3 - t2) * 1e3,
        }
        return SegmentationResult(mask=mask, logits=logits, timings=timings)
