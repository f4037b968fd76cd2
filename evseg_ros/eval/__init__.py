"""Evaluation: segmentation accuracy (confusion matrix, IoU) and latency statistics."""

from __future__ import annotations

from evseg_ros.eval.metrics import ConfusionMatrix, LatencyStats

__all__ = ["ConfusionMatrix", "LatencyStats"]
