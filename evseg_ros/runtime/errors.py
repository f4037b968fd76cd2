"""Errors raised while loading or running a segmentation backend.

They carry messages meant for the person launching the node: which file, what is wrong, and what
to do about it, instead of the runtime library's internal traceback.
"""

from __future__ import annotations

from pathlib import Path

#: How to get a model when none is found; quoted in :class:`ModelNotFoundError`.
TRAIN_COMMAND = "evseg train --config config/train/cacd_b0_sim.yaml"
#: How to turn the trained checkpoint into the file the node loads.
EXPORT_COMMAND = (
    "evseg export --checkpoint output/train/cacd_b0_sim/last.pt --output models/<name>.onnx"
)


class RuntimeBackendError(RuntimeError):
    """A model cannot be loaded or does not follow the input/output contract."""


class ModelNotFoundError(RuntimeBackendError, FileNotFoundError):
    """The model file does not exist.

    Also a ``FileNotFoundError``, so callers that only care about missing files can catch that.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        super().__init__(
            f"segmentation model not found: {self.path!r}. Train a CACD model with "
            f"`{TRAIN_COMMAND}` and export it with `{EXPORT_COMMAND}`, or set model_path to an "
            "existing ONNX file (or a .pt checkpoint for the pytorch backend)."
        )

    def __str__(self) -> str:
        # OSError formats itself from errno/filename; keep the plain message instead.
        return str(self.args[0])


__all__ = ["EXPORT_COMMAND", "TRAIN_COMMAND", "ModelNotFoundError", "RuntimeBackendError"]
