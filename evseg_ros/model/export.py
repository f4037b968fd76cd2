"""Export a segmentation network to the ONNX file the runtime backends load.

The argmax runs inside the graph and the mask leaves it as uint8, so the node's hot path copies
one byte per pixel instead of ``num_classes`` floats and needs no numpy post-processing. The
label set, input contract, architecture and training data are stored as ONNX metadata so a model
file documents itself and the runtime can refuse a model trained for another label set.
:func:`export_checkpoint` is ``evseg export``: a checkpoint in, the node's ONNX file out.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from evseg_ros.labels import DSEC_11, LabelSet, get_label_set
from evseg_ros.model.cacd import CACDNet
from evseg_ros.model.checkpoint import UNKNOWN, CheckpointInfo, load_model
from evseg_ros.runtime.backend import (
    INPUT_CONTRACT,
    INPUT_NAMES,
    LOGITS_OUTPUT,
    MASK_OUTPUT,
    META_ARCHITECTURE,
    META_CHECKPOINT,
    META_CLASSES,
    META_CONTRACT,
    META_LABEL_SET,
    META_TRAINING_DATA,
    META_VARIANT,
)

#: ONNX opset used for every export; 17 is supported by all current ONNX Runtime and TensorRT
#: releases the node targets.
OPSET = 17


class SegmentationExportWrapper(nn.Module):
    """Append argmax + uint8 cast (and optionally keep the logits) to a logits network."""

    def __init__(self, model: nn.Module, *, with_logits: bool = True) -> None:
        super().__init__()
        self.model = model
        self.with_logits = with_logits

    def forward(
        self, image: torch.Tensor, events: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(image, events)
        mask = torch.argmax(logits, dim=1).to(torch.uint8)
        if self.with_logits:
            return mask, logits
        return mask


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _restore_unused_inputs(proto: onnx.ModelProto) -> None:
    """Put back contract inputs the tracer dropped because the graph never reads them.

    The single-modality variants ignore one input; keeping it as a graph input makes such a
    model a drop-in replacement for the fused one (same feeds, and the runtime's contract check
    holds).
    """
    present = {value.name: value for value in proto.graph.input}
    ordered = []
    for name in INPUT_NAMES:
        value = present.pop(name, None)
        if value is None:
            value = onnx.helper.make_tensor_value_info(
                name, onnx.TensorProto.FLOAT, ["batch", 3, "height", "width"]
            )
        ordered.append(value)
    ordered.extend(present.values())
    del proto.graph.input[:]
    proto.graph.input.extend(ordered)


def _set_class_dim(proto: onnx.ModelProto, num_classes: int) -> None:
    """Record the logits' class axis as a fixed size instead of a tracer-generated symbol."""
    for value in proto.graph.output:
        if value.name == LOGITS_OUTPUT:
            dim = value.type.tensor_type.shape.dim[1]
            dim.Clear()
            dim.dim_value = num_classes


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    height: int,
    width: int,
    with_logits: bool = True,
    label_set: LabelSet = DSEC_11,
    variant: str | None = None,
    architecture: str | None = None,
    training_data: str = UNKNOWN,
    metadata: dict[str, str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` as an ONNX file following the runtime's input/output contract.

    Args:
        model: Module mapping ``(image, events)`` to ``N x C x H x W`` logits.
        path: Output file; its parent folder is created if needed.
        height: Height of the example input used for tracing (the axis stays dynamic).
        width: Width of the example input used for tracing (the axis stays dynamic).
        with_logits: Also output ``logits`` (float32); the node only needs ``mask``.
        label_set: Classes the model predicts, recorded in the metadata.
        variant: Recorded in the metadata; defaults to ``model.variant`` if present.
        architecture: Recorded in the metadata; defaults to the CACD config's name (e.g.
            ``cacd-mit-b0``), ``"unknown"`` for another network.
        training_data: One line on the training set (see
            :func:`~evseg_ros.model.checkpoint.training_data_summary`).
        metadata: Extra string key/values to store; they win over the ones above.
        overwrite: Replace an existing file; without it an existing file is an error, because
            a shipped model silently replaced by a test export is hard to notice.

    Returns:
        The path written.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    if architecture is None:
        architecture = model.cacd_config.architecture() if isinstance(model, CACDNet) else UNKNOWN
    if path.exists() and not overwrite:
        msg = f"{str(path)!r} already exists; pass overwrite=True to replace it"
        raise FileExistsError(msg)
    path.parent.mkdir(parents=True, exist_ok=True)

    wrapper = SegmentationExportWrapper(model, with_logits=with_logits)
    was_training = model.training
    wrapper.eval()  # the outermost module, so batch norm uses running statistics everywhere
    example = (torch.rand(1, 3, height, width), torch.zeros(1, 3, height, width))
    output_names = [MASK_OUTPUT, LOGITS_OUTPUT] if with_logits else [MASK_OUTPUT]
    spatial = {0: "batch", 2: "height", 3: "width"}
    dynamic_axes = {name: spatial for name in INPUT_NAMES}
    dynamic_axes[MASK_OUTPUT] = {0: "batch", 1: "height", 2: "width"}
    if with_logits:
        dynamic_axes[LOGITS_OUTPUT] = spatial

    # Export into a temporary file next to the target and rename at the end, so a failed
    # export never leaves a truncated model where a runtime would pick it up.
    fd, tmp_name = tempfile.mkstemp(suffix=".onnx.tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The TorchScript exporter is chosen on purpose (stable output for opset 17 with
            # dynamic axes); its deprecation notices are not actionable for callers.
            warnings.simplefilter("ignore", DeprecationWarning)
            num_classes = int(model(*example).shape[1])
            torch.onnx.export(
                wrapper,
                example,
                str(tmp),
                input_names=list(INPUT_NAMES),
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        proto = onnx.load(str(tmp))
        _restore_unused_inputs(proto)
        if with_logits:
            _set_class_dim(proto, num_classes)
        props = {
            META_LABEL_SET: label_set.name,
            META_CLASSES: ",".join(label_set.classes),
            META_VARIANT: str(variant or getattr(model, "variant", UNKNOWN)),
            META_ARCHITECTURE: architecture,
            META_TRAINING_DATA: training_data,
            META_CONTRACT: INPUT_CONTRACT,
            **(metadata or {}),
        }
        del proto.metadata_props[:]
        for key, value in props.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = str(key), str(value)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        tmp.chmod(_default_file_mode())  # mkstemp creates 0600; give the usual permissions
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
        model.train(was_training)
    return path


def export_checkpoint(
    checkpoint: str | Path,
    path: str | Path,
    *,
    height: int = 240,
    width: int = 320,
    with_logits: bool = True,
    ema: bool = False,
    overwrite: bool = False,
) -> Path:
    """Export a CACD checkpoint (``evseg train`` or ``save_cacd_checkpoint``) to ONNX.

    The network comes from :func:`~evseg_ros.model.checkpoint.load_model`; the metadata name its
    architecture, the label set the trainer recorded (DSEC-11 when none), the training data and
    the checkpoint the weights came from.

    Args:
        checkpoint: Checkpoint file.
        path: ONNX file to write.
        height: Tracing height (the axis stays dynamic).
        width: Tracing width (the axis stays dynamic).
        with_logits: Also output ``logits``.
        ema: Export the EMA teacher's weights instead of the student's.
        overwrite: Replace an existing ``path``.

    Raises:
        CheckpointError: The checkpoint cannot be loaded (a ``ValueError``).
        FileExistsError: ``path`` exists and ``overwrite`` is false.
    """
    model, info = load_model(checkpoint, ema=ema)
    return export_loaded(
        model, info, path, height=height, width=width, with_logits=with_logits,
        overwrite=overwrite,
    )


def export_loaded(
    model: CACDNet,
    info: CheckpointInfo,
    path: str | Path,
    *,
    height: int = 240,
    width: int = 320,
    with_logits: bool = True,
    overwrite: bool = False,
) -> Path:
    """:func:`export_checkpoint` of a network :func:`load_model` already read with ``info``.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
    """
    label_set = get_label_set(info.label_set) if info.label_set else DSEC_11
    return export_onnx(
        model,
        path,
        height=height,
        width=width,
        with_logits=with_logits,
        label_set=label_set,
        variant=info.variant,
        architecture=info.architecture,
        training_data=info.training_data,
        metadata={META_CHECKPOINT: info.provenance()},
        overwrite=overwrite,
    )
