"""Segmentation accuracy and latency statistics.

Accuracy is accumulated in a confusion matrix rather than averaged per frame, so mIoU over a
sequence weights every pixel equally and partial results from several workers can be merged.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque

import numpy as np

from evseg_ros.labels import VOID


class ConfusionMatrix:
    """Counts of (true class, predicted class) pixel pairs.

    Args:
        num_classes: Number of classes; valid ids are ``0 .. num_classes - 1``.
        ignore_index: Target value excluded from every statistic (void pixels).
    """

    def __init__(self, num_classes: int, ignore_index: int = VOID) -> None:
        if num_classes < 1:
            msg = f"num_classes must be positive, got {num_classes!r}"
            raise ValueError(msg)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        #: ``matrix[t, p]``: pixels of true class ``t`` predicted as ``p``.
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        """Add one batch of predictions (any shape, same as ``target``).

        Raises:
            ValueError: Shapes differ, or a prediction or non-ignored target is out of range
                (silently dropping such pixels would hide a label-set mismatch).
        """
        pred = np.asarray(pred)
        target = np.asarray(target)
        if pred.shape != target.shape:
            msg = f"prediction shape {pred.shape} != target shape {target.shape}"
            raise ValueError(msg)
        keep = target != self.ignore_index
        t = target[keep].astype(np.int64, copy=False)
        p = pred[keep].astype(np.int64, copy=False)
        n = self.num_classes
        if t.size and (t.min() < 0 or t.max() >= n):
            msg = f"target ids must be in [0, {n}) or {self.ignore_index}, got {t.min()}..{t.max()}"
            raise ValueError(msg)
        if p.size and (p.min() < 0 or p.max() >= n):
            msg = f"predicted ids must be in [0, {n}), got {p.min()}..{p.max()}"
            raise ValueError(msg)
        self.matrix += np.bincount(t * n + p, minlength=n * n).reshape(n, n)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add ``other``'s counts into this matrix (in place) and return ``self``."""
        if other.num_classes != self.num_classes or other.ignore_index != self.ignore_index:
            msg = (
                f"cannot merge a {other.num_classes}-class matrix (ignore {other.ignore_index}) "
                f"into a {self.num_classes}-class one (ignore {self.ignore_index})"
            )
            raise ValueError(msg)
        self.matrix += other.matrix
        return self

    def reset(self) -> None:
        """Forget all counts."""
        self.matrix[:] = 0

    @property
    def total(self) -> int:
        """Number of counted (non-ignored) pixels."""
        return int(self.matrix.sum())

    def iou(self) -> np.ndarray:
        """Per-class intersection over union; nan for classes neither present nor predicted."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(axis=0) + self.matrix.sum(axis=1) - tp
        out = np.full(self.num_classes, np.nan)
        np.divide(tp, union, out=out, where=union > 0)
        return out

    def miou(self) -> float:
        """Mean IoU over the classes that occur (nan if none do)."""
        iou = self.iou()
        return float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan")

    def pixel_accuracy(self) -> float:
        """Fraction of counted pixels predicted correctly (nan if none were counted)."""
        total = self.total
        return float(np.trace(self.matrix) / total) if total else float("nan")


class LatencyStats:
    """Per-stage latency samples in milliseconds, summarised as count, median and p99.

    Bounded by construction: each stage keeps its latest ``window`` samples (a node runs for
    days), so the summaries describe the recent past. Thread-safe: an inference thread adds
    while the executor's diagnostics timer summarises.
    """

    def __init__(self, window: int = 10_000) -> None:
        if window < 1:
            msg = f"LatencyStats window must be at least 1, got {window!r}"
            raise ValueError(msg)
        self.window = window
        self._samples: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=window))
        self._lock = threading.Lock()

    def add(self, stage: str, ms: float) -> None:
        """Record one sample of ``stage``."""
        with self._lock:
            self._samples[stage].append(float(ms))

    def add_all(self, timings: dict[str, float]) -> None:
        """Record one sample per stage, e.g. a segmentation result's ``timings``."""
        for stage, ms in timings.items():
            self.add(stage, ms)

    def samples(self) -> dict[str, list[float]]:
        """Every sample per stage (a copy), e.g. for plots of the distribution."""
        with self._lock:
            return {stage: list(values) for stage, values in self._samples.items()}

    def summary(self) -> dict[str, tuple[int, float, float]]:
        """Return ``{stage: (count, median_ms, p99_ms)}`` in insertion order."""
        out = {}
        for stage, values in self.samples().items():
            arr = np.asarray(values)
            out[stage] = (len(arr), float(np.median(arr)), float(np.percentile(arr, 99)))
        return out

    def format(self) -> str:
        """One line per stage, for logs."""
        return "\n".join(
            f"{stage}: n={n} median={med:.2f} ms p99={p99:.2f} ms"
            for stage, (n, med, p99) in self.summary().items()
        )
