"""Segmentation networks and their export to the ONNX files the runtime loads."""

from __future__ import annotations

from evseg_ros.model.cacd import (
    CACD_VARIANTS,
    CACDConfig,
    CACDNet,
    CACDOutput,
    load_cacd_checkpoint,
    save_cacd_checkpoint,
)
from evseg_ros.model.demo_net import (
    VARIANTS,
    DemoFusionNet,
    count_parameters,
    load_checkpoint,
    save_checkpoint,
)
from evseg_ros.model.export import OPSET, SegmentationExportWrapper, export_onnx
from evseg_ros.model.mit import MIT_CONFIGS, MitConfig, MixTransformerEncoder
from evseg_ros.model.pretrained import LoadReport, PretrainedWeightsError, load_mit_pretrained

__all__ = [
    "CACD_VARIANTS",
    "MIT_CONFIGS",
    "OPSET",
    "VARIANTS",
    "CACDConfig",
    "CACDNet",
    "CACDOutput",
    "DemoFusionNet",
    "LoadReport",
    "MitConfig",
    "MixTransformerEncoder",
    "PretrainedWeightsError",
    "SegmentationExportWrapper",
    "count_parameters",
    "export_onnx",
    "load_cacd_checkpoint",
    "load_checkpoint",
    "load_mit_pretrained",
    "save_cacd_checkpoint",
    "save_checkpoint",
]
