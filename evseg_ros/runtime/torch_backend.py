"""PyTorch backend: the CACD checkpoint on the CPU, or on a GPU in FP16/BF16, compiled.

On a GPU without TensorRT this is the fast path: half precision, ``torch.compile`` and CUDA
graphs (``mode="reduce-overhead"`` replays the whole forward pass as one graph launch, which is
what keeps a B0 at a millisecond instead of hundreds of small kernel launches). On the CPU it
runs eager FP32: a reference to check a freshly trained checkpoint against its ONNX export. The
checkpoint is read by :func:`evseg_ros.model.checkpoint.load_model`, the loader export uses too.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from evseg_ros.device import DeviceError, resolve_device
from evseg_ros.runtime.backend import (
    SegmentationResult,
    check_inputs,
    model_description,
    stage_timings,
    to_network_inputs,
)
from evseg_ros.runtime.errors import ModelNotFoundError, RuntimeBackendError

_LOG = logging.getLogger(__name__)

#: Values of ``precision``; ``auto`` is fp16 on a GPU and fp32 on the CPU.
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def checkpoint_for(model_path: str | Path) -> Path:
    """The checkpoint the PyTorch backend runs for ``model_path`` (an ONNX file's ``.pt`` twin)."""
    path = Path(model_path)
    return path.with_suffix(".pt") if path.suffix == ".onnx" else path


class TorchBackend:
    """Run a CACD checkpoint: what ``evseg train`` or ``evseg export --weights-output`` wrote.

    Args:
        model_path: Checkpoint file. An ``.onnx`` path is accepted when a checkpoint with the
            same stem (``.pt``) lies next to it, so switching the node's ``backend`` parameter
            needs no second path.
        network_width: Width to run at; 0 = native.
        network_height: Height to run at; 0 = native.
        num_threads: torch intra-op threads; 0 leaves torch's default.
        return_logits: Copy the logits out with every result.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (:mod:`evseg_ros.device`).
        precision: ``auto`` (fp16 on a GPU, fp32 on the CPU), ``fp32``, ``fp16`` or ``bf16``.
            Half precision on the CPU is refused: it is slower there, not faster.
        compile: ``torch.compile`` the network (GPU only by default: on the CPU it needs a C++
            toolchain and gains little for this network).
        cuda_graphs: With ``compile`` on a GPU, capture CUDA graphs (``reduce-overhead``). It
            needs a fixed input size: set ``network_width``/``network_height``.

    Raises:
        ModelNotFoundError: The file does not exist.
        RuntimeBackendError: torch is missing, the device cannot be used, or the file is not a
            CACD checkpoint (one line each).
    """

    name = "pytorch"

    def __init__(
        self,
        model_path: str | Path,
        *,
        network_width: int = 0,
        network_height: int = 0,
        num_threads: int = 0,
        return_logits: bool = False,
        device: str = "cpu",
        precision: str = "auto",
        compile: bool | None = None,  # noqa: A002 (the option's name in the config)
        cuda_graphs: bool = True,
    ) -> None:
        self.model_path = checkpoint_for(model_path)
        if not self.model_path.is_file():
            raise ModelNotFoundError(self.model_path)
        if precision not in PRECISIONS:
            msg = f"the pytorch backend runs precision {PRECISIONS}, not {precision!r}"
            raise RuntimeBackendError(msg)
        try:
            import torch

            from evseg_ros.model.checkpoint import CheckpointError, load_model
            from evseg_ros.runtime import tensor_inputs
        except ImportError as err:
            msg = "the pytorch backend needs the torch package"
            raise RuntimeBackendError(msg) from err
        try:
            self._device = resolve_device(device)
        except DeviceError as err:
            raise RuntimeBackendError(str(err)) from None
        on_gpu = self._device.type == "cuda"
        if precision == "auto":
            precision = "fp16" if on_gpu else "fp32"
        if precision != "fp32" and not on_gpu:
            msg = f"precision {precision} needs a GPU; on the CPU use fp32 (or auto)"
            raise RuntimeBackendError(msg)
        if num_threads > 0:
            torch.set_num_threads(num_threads)
        try:
            model, info = load_model(self.model_path)
        except CheckpointError as err:
            msg = (
                f"{err}; the pytorch backend runs checkpoints of `evseg train` or "
                "`evseg export --weights-output`"
            )
            raise RuntimeBackendError(msg) from None
        self._torch = torch
        self._io = tensor_inputs
        self.precision = precision
        self.dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[
            precision
        ]
        self.device = str(self._device)
        self._model = model.to(self._device, self.dtype).eval()
        self.variant = info.variant
        self.architecture = info.architecture
        self.training_data = info.training_data
        self.description = model_description(info.architecture, info.variant, info.training_data)
        self.network_size = (network_width, network_height) if network_width else None
        self.return_logits = return_logits
        self.compiled = ""
        if compile if compile is not None else on_gpu:
            self._compile(cuda_graphs and on_gpu)

    def _compile(self, cuda_graphs: bool) -> None:
        """``torch.compile`` the network; a compiler that fails leaves eager mode, said once."""
        if cuda_graphs and self.network_size is None:
            _LOG.warning(
                "pytorch backend: CUDA graphs need a fixed network size (network_width/height); "
                "compiling without them"
            )
            cuda_graphs = False
        mode = "reduce-overhead" if cuda_graphs else "default"
        try:
            self._model = self._torch.compile(self._model, mode=mode, dynamic=False)
        except Exception as err:  # noqa: BLE001 (any compiler fault: eager still works)
            _LOG.warning("pytorch backend: torch.compile failed (%s); running eager", err)
            return
        self.compiled = mode

    def infer(self, image, events) -> SegmentationResult:
        """Segment one frame; numpy arrays or torch tensors (kept on their device) both work."""
        torch = self._torch
        io = self._io
        t0 = time.perf_counter()
        if io.is_tensor(image) or io.is_tensor(events) or self._device.type != "cpu":
            image = io.as_tensor(image, self._device)
            events = io.as_tensor(events, self._device)
            image_t, events_t = io.to_network_tensors(image, events, self.network_size, self.dtype)
        else:
            check_inputs(image, events)
            image_np, events_np = to_network_inputs(image, events, self.network_size)
            image_t, events_t = torch.from_numpy(image_np), torch.from_numpy(events_np)
        height, width = image.shape[:2]
        t1 = time.perf_counter()
        with torch.inference_mode():
            logits = self._model(image_t, events_t)[0]
            labels = logits.argmax(0)
            if self._device.type == "cuda":
                torch.cuda.current_stream(self._device).synchronize()  # inference time, honestly
            t2 = time.perf_counter()
            mask = io.mask_to_host(labels, width, height)
        out_logits = logits.float().cpu().numpy() if self.return_logits else None
        timings = stage_timings(t0, t1, t2, time.perf_counter())
        return SegmentationResult(mask=mask, logits=out_logits, timings=timings)
