"""PyTorch backend: runs a CACD checkpoint on CPU, as ``evseg train`` wrote it.

Useful to check a freshly trained checkpoint before exporting it, and as a reference to compare
the ONNX graph against; the node's default remains ONNX Runtime. The checkpoint is read by
:func:`evseg_ros.model.checkpoint.load_model`, the loader export uses too.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from evseg_ros.runtime.backend import (
    SegmentationResult,
    model_description,
    resize_mask,
    to_network_inputs,
)
from evseg_ros.runtime.errors import ModelNotFoundError, RuntimeBackendError


class TorchBackend:
    """Run a CACD checkpoint: what ``evseg train`` or ``save_cacd_checkpoint`` wrote.

    Args:
        model_path: Checkpoint file. An ``.onnx`` path is accepted when a checkpoint with the
            same stem (``.pt``) lies next to it, so switching the node's ``backend`` parameter
            needs no second path.
        network_width: Width to run at; 0 = native.
        network_height: Height to run at; 0 = native.
        num_threads: torch intra-op threads; 0 leaves torch's default.
        return_logits: Copy the logits out with every result.

    Raises:
        ModelNotFoundError: The file does not exist.
        RuntimeBackendError: torch is missing, or the file is not a CACD checkpoint (one line).
    """

    name = "pytorch"
    device = "cpu"

    def __init__(
        self,
        model_path: str | Path,
        *,
        network_width: int = 0,
        network_height: int = 0,
        num_threads: int = 0,
        return_logits: bool = False,
    ) -> None:
        self.model_path = Path(model_path)
        if self.model_path.suffix == ".onnx":
            self.model_path = self.model_path.with_suffix(".pt")
        if not self.model_path.is_file():
            raise ModelNotFoundError(self.model_path)
        try:
            import torch

            from evseg_ros.model.checkpoint import CheckpointError, load_model
        except ImportError as err:
            msg = "the pytorch backend needs the torch package"
            raise RuntimeBackendError(msg) from err
        if num_threads > 0:
            torch.set_num_threads(num_threads)
        try:
            self._model, info = load_model(self.model_path)
        except CheckpointError as err:
            msg = (
                f"{err}; the pytorch backend runs checkpoints of `evseg train` or "
                "save_cacd_checkpoint"
            )
            raise RuntimeBackendError(msg) from None
        self._torch = torch
        self.variant = info.variant
        self.architecture = info.architecture
        self.training_data = info.training_data
        self.description = model_description(info.architecture, info.variant, info.training_data)
        self.network_size = (network_width, network_height) if network_width else None
        self.return_logits = return_logits

    def infer(self, image: np.ndarray, events: np.ndarray) -> SegmentationResult:
        """Segment one frame (see :class:`evseg_ros.runtime.backend.SegmentationBackend`)."""
        torch = self._torch
        t0 = time.perf_counter()
        image_t, events_t = to_network_inputs(image, events, self.network_size)
        t1 = time.perf_counter()
        with torch.inference_mode():
            logits = self._model(torch.from_numpy(image_t), torch.from_numpy(events_t))[0]
            mask = logits.argmax(0).to(torch.uint8).numpy()
        t2 = time.perf_counter()
        mask = resize_mask(mask, image.shape[1], image.shape[0])
        out_logits = logits.numpy() if self.return_logits else None
        t3 = time.perf_counter()
        timings = {
            "preprocess": (t1 - t0) * 1e3,
            "inference": (t2 - t1) * 1e3,
            "postprocess": (t3 - t2) * 1e3,
        }
        return SegmentationResult(mask=mask, logits=out_logits, timings=timings)
