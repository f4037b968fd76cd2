"""TensorRT backend: the exported ONNX model as an engine built on the target, run on a stream.

Inputs and outputs are torch tensors on the GPU, handed to TensorRT by address and run on
torch's current CUDA stream: frames demosaiced and remapped on the GPU and event frames built
there reach the engine with no host round trip, and only the mask comes back. The engine comes
from :func:`evseg_ros.runtime.tensorrt_engine.prepare_engine` (cached, checked, rebuilt only
when it must be). The network size is fixed per engine: set ``network_width``/``network_height``,
or the engine is prepared for the size of the first frame, which the node's warm-up provides.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from evseg_ros.device import DeviceError, resolve_device
from evseg_ros.runtime.backend import (
    INPUT_NAMES,
    LOGITS_OUTPUT,
    MASK_OUTPUT,
    SegmentationResult,
    model_description,
    stage_timings,
)
from evseg_ros.runtime.engine_builder import BuildOptions, import_tensorrt
from evseg_ros.runtime.engine_cache import (
    ENGINE_PRECISIONS,
    cache_dir,
    calibration_cache_path,
    timing_cache_path,
)
from evseg_ros.runtime.errors import ModelNotFoundError, RuntimeBackendError
from evseg_ros.runtime.tensorrt_engine import GpuFacts, network_shapes, prepare_engine

_LOG = logging.getLogger(__name__)


def _torch_dtype(trt: ModuleType, dtype: Any) -> Any:
    import torch

    table = {
        "FLOAT": torch.float32,
        "HALF": torch.float16,
        "BF16": torch.bfloat16,
        "INT32": torch.int32,
        "INT64": torch.int64,
        "INT8": torch.int8,
        "UINT8": torch.uint8,
        "BOOL": torch.bool,
    }
    for name, torch_dtype in table.items():
        if getattr(trt.DataType, name, None) == dtype:
            return torch_dtype
    msg = f"engine tensor type {dtype} has no torch equivalent"
    raise RuntimeBackendError(msg)


class EngineRunner:
    """One execution context of an engine, with its output buffers, bound to torch tensors.

    Args:
        trt: The TensorRT module.
        engine: A deserialised ``ICudaEngine`` with inputs ``image``/``events``.
        device: Torch device of the buffers (CUDA on a vehicle; the test suite's stand-in
            engine runs on CPU buffers).
    """

    def __init__(self, trt: ModuleType, engine: Any, device: Any) -> None:
        import torch

        self._torch = torch
        self.device = device
        self.context = engine.create_execution_context()
        if self.context is None:
            msg = "TensorRT could not create an execution context (GPU memory exhausted?)"
            raise RuntimeBackendError(msg)
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if sorted(inputs) != sorted(INPUT_NAMES) or MASK_OUTPUT not in names:
            expected = f"inputs {list(INPUT_NAMES)} and output {MASK_OUTPUT!r}"
            msg = f"engine tensors are {names}; expected {expected}"
            raise RuntimeBackendError(msg)
        self.input_dtype = {n: _torch_dtype(trt, engine.get_tensor_dtype(n)) for n in inputs}
        # the exported graph keeps H and W dynamic (-1 in the engine): the engine's one
        # profile fixes them, and the context then knows every output's shape
        self.input_shape = {n: tuple(engine.get_tensor_profile_shape(n, 0)[1]) for n in inputs}
        for name in inputs:
            self.context.set_input_shape(name, self.input_shape[name])
        self.outputs: dict[str, Any] = {}
        for name in names:
            if name in inputs:
                continue
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = _torch_dtype(trt, engine.get_tensor_dtype(name))
            self.outputs[name] = torch.empty(shape, dtype=dtype, device=device)
            self.context.set_tensor_address(name, self.outputs[name].data_ptr())

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) the engine was built for."""
        _, _, height, width = self.input_shape["image"]
        return width, height

    def run(self, tensors: dict[str, Any]) -> dict[str, Any]:
        """Run on ``tensors`` (input name -> NCHW tensor on the device); returns the outputs."""
        torch = self._torch
        keep = []
        for name, tensor in tensors.items():
            if tuple(tensor.shape) != self.input_shape[name]:
                shape, built = tuple(tensor.shape), self.input_shape[name]
                msg = f"input {name!r} is {shape}, the engine takes {built}"
                raise ValueError(msg)
            bound = tensor.to(self.input_dtype[name]).contiguous()
            keep.append(bound)  # alive until the engine has read it
            self.context.set_tensor_address(name, bound.data_ptr())
        stream = torch.cuda.current_stream(self.device) if self.device.type == "cuda" else None
        handle = stream.cuda_stream if stream is not None else 0
        if not self.context.execute_async_v3(handle):
            msg = "TensorRT execution failed (see its log)"
            raise RuntimeBackendError(msg)
        if stream is not None:
            stream.synchronize()
        return self.outputs


class TensorRTBackend:
    """Segment frames with a TensorRT engine built from the exported ONNX model.

    Args:
        model_path: The ONNX file (the engine is derived from it and cached).
        network_width / network_height: Engine input size; 0 = the first frame's size.
        device: ``auto``/``cuda``/``cuda:N``; TensorRT needs a GPU.
        precision: ``fp16`` (default; also for ``auto``), ``fp32`` or ``int8``.
        engine_cache_dir: Folder of engines; "" = ``$EVSEG_ENGINE_CACHE`` or the default.
        calibration_cache: INT8 scales file (an INT8 engine needs it, see ``evseg build-engine``).
        return_logits: Copy the logits out when the engine has them.
        num_threads: Accepted for a uniform interface; TensorRT runs on the GPU.

    Raises:
        ModelNotFoundError: no ONNX file.
        RuntimeBackendError: TensorRT missing, no GPU, or the engine cannot be built/loaded.
    """

    name = "tensorrt"

    def __init__(
        self,
        model_path: str | Path,
        *,
        network_width: int = 0,
        network_height: int = 0,
        device: str = "cuda",
        precision: str = "auto",
        engine_cache_dir: str = "",
        calibration_cache: str = "",
        return_logits: bool = False,
        num_threads: int = 0,  # noqa: ARG002 (uniform backend options)
        trt: ModuleType | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        if self.model_path.suffix != ".onnx":
            msg = f"the tensorrt backend builds engines from ONNX files, got {str(model_path)!r}"
            raise RuntimeBackendError(msg)
        if not self.model_path.is_file():
            raise ModelNotFoundError(self.model_path)
        self._trt = trt or import_tensorrt()
        try:
            self._device = resolve_device(device)
        except DeviceError as err:
            raise RuntimeBackendError(f"tensorrt backend: {err}") from None
        if self._device.type != "cuda":
            msg = "the tensorrt backend needs a CUDA GPU; use backend onnxruntime or pytorch here"
            raise RuntimeBackendError(msg)
        self.device = str(self._device)
        self.precision = "fp16" if precision == "auto" else precision
        if self.precision not in ENGINE_PRECISIONS:
            msg = f"the tensorrt backend builds {ENGINE_PRECISIONS} engines, not {precision!r}"
            raise RuntimeBackendError(msg)
        self.cache_folder = cache_dir(engine_cache_dir)
        scales = None
        if self.precision == "int8":  # the scales evseg build-engine --calibration computed
            scales = Path(
                calibration_cache or calibration_cache_path(self.cache_folder, self.model_path)
            )
        self.options = BuildOptions(
            precision=self.precision,
            timing_cache=timing_cache_path(self.cache_folder),
            calibration_cache=scales,
        )
        self.return_logits = return_logits
        self.description = model_description(*self._metadata())
        self.prepared = None
        self._runner: EngineRunner | None = None
        if network_width and network_height:
            self._prepare(network_width, network_height)

    def _metadata(self) -> tuple[str, str, str]:
        """What the exporter recorded about the network (the ONNX file's metadata)."""
        from evseg_ros.runtime.backend import META_ARCHITECTURE, META_TRAINING_DATA, META_VARIANT

        try:
            import onnx

            model = onnx.load(str(self.model_path), load_external_data=False)
            meta = {p.key: p.value for p in model.metadata_props}
        except Exception:  # noqa: BLE001 (metadata is for the log line only)
            meta = {}
        return (
            meta.get(META_ARCHITECTURE, "unknown"),
            meta.get(META_VARIANT, "unknown"),
            meta.get(META_TRAINING_DATA, "unknown"),
        )

    def _prepare(self, width: int, height: int) -> None:
        import torch

        with torch.cuda.device(self._device):
            self.prepared = prepare_engine(
                self._trt,
                self.model_path,
                shapes=network_shapes(width, height),
                gpu=GpuFacts.of(self._device),
                cache_folder=self.cache_folder,
                options=self.options,
            )
            self._runner = EngineRunner(self._trt, self.prepared.engine, self._device)

    def infer(self, image, events) -> SegmentationResult:
        """Segment one frame; tensors on the GPU stay there, host arrays are uploaded once."""
        from evseg_ros.runtime import tensor_inputs as io

        t0 = time.perf_counter()
        image = io.as_tensor(image, self._device)
        events = io.as_tensor(events, self._device)
        io.check_tensor_inputs(image, events)
        height, width = image.shape[:2]
        if self._runner is None:
            self._prepare(width, height)
        image_t, events_t = io.to_network_tensors(image, events, self._runner.size)
        t1 = time.perf_counter()
        outputs = self._runner.run({"image": image_t, "events": events_t})
        t2 = time.perf_counter()
        mask = io.mask_to_host(outputs[MASK_OUTPUT][0], width, height)
        logits = None
        if self.return_logits and LOGITS_OUTPUT in outputs:
            logits = outputs[LOGITS_OUTPUT][0].float().cpu().numpy()
        timings = stage_timings(t0, t1, t2, time.perf_counter())
        return SegmentationResult(mask=mask, logits=logits, timings=timings)


__all__ = ["EngineRunner", "TensorRTBackend"]
