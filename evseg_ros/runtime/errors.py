"""Errors raised while loading or running a segmentation backend.

They carry messages meant for the person launching the node: which file, what is wrong, and what
to do about it, instead of the runtime library's internal traceback.
"""

from __future__ import annotations

from pathlib import Path

#: How to get a model when none is found; quoted in :class:`ModelNotFoundError`.
TRAIN_COMMAND = "python scripts/train_demo_model.py"


class RuntimeBackendError(RuntimeError):
    """A model cannot be loaded or does not follow the input/output contract."""


class ModelNotFoundError(RuntimeBackendError, FileNotFoundError):
    """The model file does not exist.

    Also a ``FileNotFoundError``, so callers that only care about missing files can catch that.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        super().__init__(
            f"segmentation model not found: {self.path!r}. Train and export the demo model with "
            f"`{TRAIN_COMMAND}` (writes models/demo_fusion.onnx), or set model_path to an "
            "existing ONNX file."
        )

    def __str__(self) -> str:
        # OSError formats itself from errno/filename; keep the plain message instead.
        return str(self.args[0])


__all__ = ["TRAIN_COMMAND", "ModelNotFoundError", "RuntimeBackendError"]
