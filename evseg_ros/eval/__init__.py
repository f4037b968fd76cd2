"""Evaluation: segmentation accuracy (confusion matrix, IoU), latency statistics and the report.

:mod:`~evseg_ros.eval.report` turns one ``evseg eval`` replay (:class:`EvalRun`) into
``report.json``, a Markdown summary and plots; :func:`accuracy_part` is the part of a report
that does not depend on the machine it ran on.
"""

from __future__ import annotations

from evseg_ros.eval.metrics import ConfusionMatrix, LatencyStats
from evseg_ros.eval.report import (
    EvalRun,
    accuracy_part,
    build_report,
    format_report,
    write_report,
)

__all__ = [
    "ConfusionMatrix",
    "EvalRun",
    "LatencyStats",
    "accuracy_part",
    "build_report",
    "format_report",
    "write_report",
]
