"""The segmentation backend interface, the model I/O contract and the backend registry.

The node talks to one small interface, :class:`SegmentationBackend`, so the inference engine
(ONNX Runtime on CPU or CUDA, PyTorch, later TensorRT) is a launch parameter, not a code change.
The contract constants live here, in a module that imports neither torch nor onnxruntime, so the
exporter and every backend agree on names without pulling in each other's dependencies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from evseg_ros.runtime.errors import ModelNotFoundError, RuntimeBackendError

_LOG = logging.getLogger(__name__)

#: Graph input names, in order.
INPUT_NAMES = ("image", "events")
#: Required output: per-pixel class id.
MASK_OUTPUT = "mask"
#: Optional output: per-class scores.
LOGITS_OUTPUT = "logits"
#: Human-readable input contract, also stored in each exported model's metadata.
INPUT_CONTRACT = (
    "image: float32 Nx3xHxW RGB in [0,1]; "
    "events: float32 Nx3xHxW event frame (ON count, OFF count, latest time in [0,1]) "
    "on the image grid; mask: uint8 NxHxW class ids; logits: float32 NxCxHxW"
)

#: ONNX metadata keys written by the exporter.
META_LABEL_SET = "evseg.label_set"
META_CLASSES = "evseg.classes"
META_VARIANT = "evseg.variant"
META_CONTRACT = "evseg.input_contract"
#: Short network name, e.g. ``cacd-mit-b0`` or ``cacd-mit-b0+evt-mit-e0``.
META_ARCHITECTURE = "evseg.architecture"
#: One line on the training set (type, seeds or root, frames, crop), or ``unknown``.
META_TRAINING_DATA = "evseg.training_data"
#: Which weights of which checkpoint file were exported (file name, step, student/EMA).
META_CHECKPOINT = "evseg.checkpoint"


def model_description(architecture: str, variant: str, training_data: str) -> str:
    """The one line every backend logs about its model, from the metadata it read."""
    return f"{architecture} {variant}, trained on {training_data}"


@dataclass
class SegmentationResult:
    """One frame's segmentation.

    Attributes:
        mask: ``H x W`` uint8 class ids at the input image's resolution.
        logits: ``C x h x w`` float32 scores at the network's resolution, or None when the model
            has no logits output or they were not requested (they cost a copy per frame).
        timings: Milliseconds spent per stage: ``preprocess``, ``inference``, ``postprocess``.
    """

    mask: np.ndarray
    logits: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)


def stage_timings(t0: float, t1: float, t2: float, t3: float) -> dict[str, float]:
    """Milliseconds per stage from the four ``perf_counter`` readings around them."""
    return {
        "preprocess": (t1 - t0) * 1e3,
        "inference": (t2 - t1) * 1e3,
        "postprocess": (t3 - t2) * 1e3,
    }


@runtime_checkable
class SegmentationBackend(Protocol):
    """What the node needs from an inference engine."""

    #: Registry name of the engine (``"onnxruntime"``, ``"pytorch"``).
    name: str
    #: Where it runs (``"cpu"``, ``"cuda"``).
    device: str
    #: One line naming the network and what it was trained on, for logs.
    description: str
    # create_backend also sets ``selection``: the backend chosen and why better ones were not.

    def infer(self, image: np.ndarray, events: np.ndarray) -> SegmentationResult:
        """Segment one frame.

        Args:
            image: ``H x W x 3`` uint8 RGB, a numpy array or a torch tensor.
            events: ``3 x H x W`` float32 event frame on the image's pixel grid, likewise.
                Tensors on the backend's GPU stay there (no host round trip); the mask of
                the result is always a host array.
        """
        ...


BackendFactory = Callable[..., SegmentationBackend]


def check_inputs(image: np.ndarray, events: np.ndarray) -> None:
    """Raise ``ValueError`` unless ``image`` is HxWx3 uint8 and ``events`` finite 3xHxW on its grid.

    A NaN in an event frame would spread through the network's attention to every pixel of
    the mask; refusing the frame makes it one counted bad input instead.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        msg = f"image must be HxWx3 uint8 RGB, got {image.shape} {image.dtype}"
        raise ValueError(msg)
    if events.ndim != 3 or events.shape != (3, *image.shape[:2]):
        height, width = image.shape[:2]
        msg = f"events must be 3x{height}x{width} (the image grid), got {events.shape}"
        raise ValueError(msg)
    if not np.isfinite(events).all():
        msg = "events contain NaN or inf (a broken event frame): frame skipped"
        raise ValueError(msg)


def to_network_inputs(
    image: np.ndarray, events: np.ndarray, size: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Turn one frame into the network's ``1x3xHxW`` float32 tensors, resized to ``size``.

    Resizing (``size`` is ``(width, height)``; None or the native size skips it):

    * image: ``INTER_AREA`` when shrinking (no aliasing), ``INTER_LINEAR`` when enlarging;
    * event counts: the same interpolation, i.e. the *mean* count over the covered source
      pixels. That keeps the unit the network was trained on (events per pixel of the frame
      grid) instead of the sum, which would inflate counts by the area ratio;
    * event time: ``INTER_NEAREST``, because averaging a "latest event time" with the zeros of
      silent pixels would invent times no event had.
    """
    check_inputs(image, events)
    height, width = image.shape[:2]
    if size is not None and tuple(size) != (width, height):
        shrink = size[0] <= width and size[1] <= height
        interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        image = cv2.resize(image, size, interpolation=interp)
        counts = cv2.resize(
            np.ascontiguousarray(events[:2].transpose(1, 2, 0), dtype=np.float32),
            size,
            interpolation=interp,
        )
        latest = cv2.resize(
            np.ascontiguousarray(events[2], dtype=np.float32),
            size,
            interpolation=cv2.INTER_NEAREST,
        )
        events = np.concatenate([counts.transpose(2, 0, 1), latest[None]], axis=0)
    image_t = (image.astype(np.float32) * np.float32(1.0 / 255.0)).transpose(2, 0, 1)[None]
    events_t = events.astype(np.float32, copy=False)[None]
    return np.ascontiguousarray(image_t), np.ascontiguousarray(events_t)


def resize_mask(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bring a class-id mask to ``width x height`` with nearest neighbour (ids never blend)."""
    if mask.shape == (height, width):
        return mask
    return cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)


@dataclass(frozen=True)
class BackendStatus:
    """One row of ``evseg backends``: can this engine run this model on this device here?"""

    name: str
    device: str
    available: bool
    reason: str


def _factory(name: str) -> BackendFactory:
    """The class of a backend ``(model_path, *, network_width, network_height, device,
    **options)``, imported only when it is asked for: a missing optional engine only matters
    when it is chosen."""
    if name == "tensorrt":
        from evseg_ros.runtime.tensorrt_backend import TensorRTBackend

        return TensorRTBackend
    if name == "pytorch":
        from evseg_ros.runtime.torch_backend import TorchBackend

        return TorchBackend
    from evseg_ros.runtime.onnx_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend


#: The backends' names (besides ``auto``).
BACKENDS = ("tensorrt", "pytorch", "onnxruntime")

#: What ``auto`` tries, best first: (backend, device kind).
AUTO_ORDER = (
    ("tensorrt", "cuda"),
    ("pytorch", "cuda"),
    ("onnxruntime", "cuda"),
    ("onnxruntime", "cpu"),
    ("pytorch", "cpu"),
)


def _accepted(factory: BackendFactory, options: dict) -> dict:
    """The options ``factory`` takes: one option set (the node's) serves every backend."""
    import inspect

    parameters = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return dict(options)
    return {key: value for key, value in options.items() if key in parameters}


def create_backend(
    name: str,
    model_path: str | Path,
    *,
    network_width: int = 0,
    network_height: int = 0,
    device: str = "auto",
    **options,
) -> SegmentationBackend:
    """Build a backend by name, or the best one that works here with ``auto``.

    Args:
        name: ``"auto"`` or a key of :data:`BACKENDS`. ``"auto"`` goes down
            :data:`AUTO_ORDER` (TensorRT, PyTorch CUDA, ONNX Runtime CUDA, ONNX Runtime CPU,
            PyTorch CPU), skipping what is not available and falling through a backend that
            fails to load; the backend it returns carries ``selection`` (one line: what was
            chosen, and why each better one was skipped) for the log and ``/diagnostics``.
        model_path: The ONNX model; the PyTorch backends run the ``.pt`` checkpoint beside it
            (or the checkpoint itself when given one).
        network_width: Width the network runs at; 0 keeps the input's native size.
        network_height: Height the network runs at; 0 keeps the input's native size.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; restricts ``auto`` to that kind.
        **options: Backend options; each backend receives those it takes (``num_threads``,
            ``precision``, ``engine_cache_dir``, ``return_logits``...).

    Raises:
        ValueError: ``name`` is not known (the message lists the known names), or a bad device.
        ModelNotFoundError: ``model_path`` does not exist.
        RuntimeBackendError: The model cannot be loaded by the named backend, or by any with
            ``auto`` (each one's reason is in the message).
    """
    from evseg_ros.runtime.selection import probe_backends

    if name != "auto" and name not in BACKENDS:
        msg = f"unknown segmentation backend {name!r}; known: {['auto', *sorted(BACKENDS)]}"
        raise ValueError(msg)
    if not Path(model_path).is_file():
        raise ModelNotFoundError(model_path)
    sizes = {"network_width": network_width, "network_height": network_height}
    if name != "auto":
        factory = _factory(name)
        backend = factory(model_path, device=device, **sizes, **_accepted(factory, options))
        backend.selection = f"{backend.name} on {backend.device} (requested)"
        _LOG.debug(
            "segmentation backend %s for %s: %s", backend.name, model_path, backend.description
        )
        return backend
    skipped: list[str] = []
    for status in probe_backends(model_path, device):
        label = f"{status.name}/{status.device}"
        if not status.available:
            skipped.append(f"{label}: {status.reason}")
            continue
        factory = _factory(status.name)
        try:
            backend = factory(
                model_path, device=status.device, **sizes, **_accepted(factory, options)
            )
        except RuntimeBackendError as err:
            _LOG.warning("segmentation backend %s failed, trying the next: %s", label, err)
            skipped.append(f"{label}: failed: {err}")
            continue
        backend.selection = f"{backend.name} on {backend.device}" + (
            f" (skipped {'; '.join(skipped)})" if skipped else ""
        )
        _LOG.info(
            "segmentation backend %s for %s: %s", backend.selection, model_path,
            backend.description,
        )
        return backend
    msg = f"no segmentation backend can run {str(model_path)!r} here: " + "; ".join(skipped)
    raise RuntimeBackendError(msg)
