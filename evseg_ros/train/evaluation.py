"""Validation: mIoU, pixel accuracy and per-class IoU, overall and per lighting ``condition``.

Separate from the loop because it is a pure measurement of a model on a loader (usable on any
``(image, events) -> logits`` network) and because its result layout also fixes the validation
columns of the metrics CSV (:data:`CONDITIONS`, :func:`validation_row`).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from evseg_ros.eval.metrics import ConfusionMatrix
from evseg_ros.labels import VOID
from evseg_ros.train.distributed import DistributedContext, gather_from_ranks

__all__ = ["CONDITIONS", "evaluate", "validation_columns", "validation_row"]

#: Conditions always reported (as empty when absent) so the CSV columns stay fixed.
CONDITIONS = ("normal", "night", "glare")


def _nan_to_none(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _summary(matrix: ConfusionMatrix, class_names: tuple[str, ...], frames: int) -> dict:
    iou = matrix.iou()
    return {
        "miou": _nan_to_none(matrix.miou()),
        "pixel_accuracy": _nan_to_none(matrix.pixel_accuracy()),
        "iou": {name: _nan_to_none(v) for name, v in zip(class_names, iou)},
        "frames": frames,
        "pixels": matrix.total,
    }


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    *,
    num_classes: int,
    class_names: tuple[str, ...],
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    context: DistributedContext | None = None,
) -> dict:
    """mIoU, pixel accuracy and per-class IoU, overall and per ``condition``.

    The confusion matrices of all ranks are summed before the statistics are taken, so a
    distributed validation reports exactly what one process over the whole set would.

    Args:
        model: ``(image, events) -> logits``; evaluated in eval mode (restored after).
        loader: Batches of sample dicts (``image``, ``events``, ``label``, ``condition``).
        num_classes: Classes of the model.
        class_names: Names for the per-class IoU entries.
        device: Where the model runs.
        autocast_dtype: CUDA autocast dtype, or ``None`` for full precision.
        context: Rank layout; matrices are gathered when distributed.

    Returns:
        ``{"overall": summary, "conditions": {name: summary}}`` where a summary has
        ``miou``, ``pixel_accuracy``, ``iou`` (by class name), ``frames`` and ``pixels``;
        undefined values (nothing labelled) are ``None``.
    """
    was_training = model.training
    model.eval()
    matrices: dict[str, ConfusionMatrix] = {}
    frames: dict[str, int] = {}
    try:
        for batch in loader:
            image = batch["image"].to(device, non_blocking=True)
            events = batch["events"].to(device, non_blocking=True)
            autocast = (
                torch.autocast(device_type=device.type, dtype=autocast_dtype)
                if autocast_dtype is not None
                else contextlib.nullcontext()
            )
            with autocast:
                logits = model(image, events)
            prediction = logits.argmax(dim=1).cpu().numpy()
            labels = batch["label"].numpy()
            for index, condition in enumerate(batch["condition"]):
                for key in ("__all__", str(condition)):
                    matrix = matrices.setdefault(key, ConfusionMatrix(num_classes, VOID))
                    matrix.update(prediction[index], labels[index])
                    frames[key] = frames.get(key, 0) + 1
    finally:
        model.train(was_training)
    if context is not None and context.enabled:
        local = {key: (matrix.matrix, frames[key]) for key, matrix in matrices.items()}
        gathered = gather_from_ranks(local, context)
        matrices, frames = {}, {}
        for part in gathered:
            for key, (counts, count) in part.items():
                matrix = matrices.setdefault(key, ConfusionMatrix(num_classes, VOID))
                matrix.matrix += counts
                frames[key] = frames.get(key, 0) + count
    overall = matrices.get("__all__", ConfusionMatrix(num_classes, VOID))
    conditions = {
        key: _summary(matrix, class_names, frames[key])
        for key, matrix in sorted(matrices.items())
        if key != "__all__"
    }
    return {
        "overall": _summary(overall, class_names, frames.get("__all__", 0)),
        "conditions": conditions,
    }


def validation_columns(class_names: tuple[str, ...]) -> list[str]:
    """CSV columns of :func:`validation_row`, in order (fixed, whatever conditions occur)."""
    columns = ["val_miou", "val_pixel_accuracy"]
    columns += [f"val_miou_{name}" for name in CONDITIONS]
    columns += [f"val_iou_{name}" for name in class_names]
    return columns


def validation_row(metrics: dict) -> dict[str, Any]:
    """Flatten an :func:`evaluate` result into the metrics-CSV columns.

    Args:
        metrics: What :func:`evaluate` returned.

    Returns:
        ``val_*`` column -> value; a condition without frames is ``None``.
    """
    overall = metrics["overall"]
    row: dict[str, Any] = {
        "val_miou": overall["miou"],
        "val_pixel_accuracy": overall["pixel_accuracy"],
    }
    for name in CONDITIONS:
        subset = metrics["conditions"].get(name)
        row[f"val_miou_{name}"] = subset["miou"] if subset else None
    for name, value in overall["iou"].items():
        row[f"val_iou_{name}"] = value
    return row
