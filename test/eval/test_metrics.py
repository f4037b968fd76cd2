"""Confusion matrix and latency statistics, checked against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evseg_ros.eval.metrics import ConfusionMatrix, LatencyStats

# 4 classes; class 3 neither occurs nor is predicted, 255 is void.
TARGET = np.array([[0, 0, 1, 1], [2, 2, 255, 255]], dtype=np.uint8)
PRED = np.array([[0, 1, 1, 1], [2, 0, 3, 0]], dtype=np.uint8)
# Counted pixels (t, p): (0,0) (0,1) (1,1) (1,1) (2,2) (2,0); the void pixels predicted 3 and 0
# are ignored, so class 3 stays absent.
# class 0: tp=1, fn=1, fp=1 -> 1/3; class 1: tp=2, fn=0, fp=1 -> 2/3; class 2: tp=1, fn=1 -> 1/2


def test_iou_by_hand() -> None:
    cm = ConfusionMatrix(4)
    cm.update(PRED, TARGET)
    iou = cm.iou()
    np.testing.assert_allclose(iou[:3], [1 / 3, 2 / 3, 1 / 2])
    assert math.isnan(iou[3])
    assert cm.miou() == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert cm.pixel_accuracy() == pytest.approx(4 / 6)
    assert cm.total == 6


def test_prediction_of_absent_class_counts_as_zero_iou() -> None:
    cm = ConfusionMatrix(3)
    cm.update(np.array([2, 1]), np.array([1, 1]))
    np.testing.assert_allclose(cm.iou(), [np.nan, 0.5, 0.0])
    assert cm.miou() == pytest.approx(0.25)


def test_merge_equals_single_update() -> None:
    a, b, whole = ConfusionMatrix(4), ConfusionMatrix(4), ConfusionMatrix(4)
    a.update(PRED[0], TARGET[0])
    b.update(PRED[1], TARGET[1])
    whole.update(PRED, TARGET)
    assert a.merge(b) is a
    np.testing.assert_array_equal(a.matrix, whole.matrix)
    with pytest.raises(ValueError, match="merge"):
        a.merge(ConfusionMatrix(5))


def test_empty_matrix_is_nan() -> None:
    cm = ConfusionMatrix(3)
    cm.update(np.zeros((2, 2), np.uint8), np.full((2, 2), 255, np.uint8))
    assert math.isnan(cm.miou())
    assert math.isnan(cm.pixel_accuracy())


def test_rejects_bad_input() -> None:
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="target"):
        cm.update(np.zeros(2), np.array([0, 7]))
    with pytest.raises(ValueError, match="predicted"):
        cm.update(np.array([0, 3]), np.zeros(2))


def test_latency_summary() -> None:
    stats = LatencyStats()
    for ms in range(1, 101):
        stats.add("inference", float(ms))
    stats.add_all({"preprocess": 2.0})
    summary = stats.summary()
    count, median, p99 = summary["inference"]
    assert count == 100
    assert median == pytest.approx(50.5)
    assert p99 == pytest.approx(np.percentile(np.arange(1, 101), 99))
    assert summary["preprocess"] == (1, 2.0, 2.0)
    assert "inference: n=100" in stats.format()


def test_latency_stats_keep_a_bounded_window_of_the_latest_samples():
    from evseg_ros.eval.metrics import LatencyStats

    stats = LatencyStats(window=3)
    for ms in (100.0, 1.0, 2.0, 3.0):
        stats.add("stage", ms)
    assert stats.samples() == {"stage": [1.0, 2.0, 3.0]}
    assert stats.summary()["stage"][:2] == (3, 2.0)
    with pytest.raises(ValueError, match="window must be at least 1, got 0"):
        LatencyStats(window=0)
