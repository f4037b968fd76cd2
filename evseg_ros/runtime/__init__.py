"""Inference backends behind one interface, selected by name at launch.

Importing this package loads neither torch nor onnxruntime; each backend imports its engine
when it is created.
"""

from __future__ import annotations

from evseg_ros.runtime.backend import (
    BACKENDS,
    INPUT_NAMES,
    LOGITS_OUTPUT,
    MASK_OUTPUT,
    SegmentationBackend,
    SegmentationResult,
    create_backend,
)
from evseg_ros.runtime.errors import ModelNotFoundError, RuntimeBackendError

__all__ = [
    "BACKENDS",
    "INPUT_NAMES",
    "LOGITS_OUTPUT",
    "MASK_OUTPUT",
    "ModelNotFoundError",
    "RuntimeBackendError",
    "SegmentationBackend",
    "SegmentationResult",
    "create_backend",
]
