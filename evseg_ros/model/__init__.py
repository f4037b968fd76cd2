"""The CACD segmentation network, its checkpoints and their export to the runtime's ONNX files."""

from __future__ import annotations

from evseg_ros.model.cacd import (
    CACD_VARIANTS,
    CACDConfig,
    CACDNet,
    CACDOutput,
    load_cacd_checkpoint,
    save_cacd_checkpoint,
)
from evseg_ros.model.checkpoint import (
    CheckpointError,
    CheckpointInfo,
    load_model,
    training_data_summary,
)
from evseg_ros.model.export import OPSET, SegmentationExportWrapper, export_checkpoint, export_onnx
from evseg_ros.model.mit import MIT_CONFIGS, MitConfig, MixTransformerEncoder
from evseg_ros.model.pretrained import LoadReport, PretrainedWeightsError, load_mit_pretrained

__all__ = [
    "CACD_VARIANTS",
    "MIT_CONFIGS",
    "OPSET",
    "CACDConfig",
    "CACDNet",
    "CACDOutput",
    "CheckpointError",
    "CheckpointInfo",
    "LoadReport",
    "MitConfig",
    "MixTransformerEncoder",
    "PretrainedWeightsError",
    "SegmentationExportWrapper",
    "export_checkpoint",
    "export_onnx",
    "load_cacd_checkpoint",
    "load_mit_pretrained",
    "load_model",
    "save_cacd_checkpoint",
    "training_data_summary",
]
