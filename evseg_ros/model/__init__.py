"""Segmentation networks and their export to the ONNX files the runtime loads."""

from __future__ import annotations

from evseg_ros.model.demo_net import (
    VARIANTS,
    DemoFusionNet,
    count_parameters,
    load_checkpoint,
    save_checkpoint,
)
from evseg_ros.model.export import OPSET, SegmentationExportWrapper, export_onnx

__all__ = [
    "OPSET",
    "VARIANTS",
    "DemoFusionNet",
    "SegmentationExportWrapper",
    "count_parameters",
    "export_onnx",
    "load_checkpoint",
    "save_checkpoint",
]
