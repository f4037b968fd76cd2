"""Training configuration: one YAML file, six sections, every value checked when it is read.

A file looks like ``config/train/cacd_b0_sim.yaml``::

    model:  {backbone: mit_b0, variant: fused, num_classes: 11, pretrained: null, ...}
    data:   {train: {type: sim, ...}, val: {...}, unlabelled: null, batch_size: 8, ...}
    optim:  {name: adam, lr: 1.0e-4, weight_decay: 0.0, poly_power: 0.9, warmup_steps: 0}
    loss:   {use_hfca: true, use_jbcd: true, weights: {intra: 0.0005, ...}, hfca_stage: 2}
    train:  {max_steps: 300, grad_accumulation: 1, amp: off, seed: 0, output_dir: ..., ...}
    semi:   {pseudo_labels: {enabled: false, ...}, ema_teacher: {enabled: false, ...}}

Missing keys take the defaults of the dataclasses below; unknown keys and bad values raise
``ValueError`` naming the dotted key and the value, because a typo (``lerning_rate``) that
silently trains at the default wastes a whole run. ``--set a.b=value`` overrides are applied to
the parsed YAML before checking, with the value parsed as YAML (``--set optim.lr=3e-4``; see
:mod:`.config_overrides`). The generic YAML-to-field conversion lives in :mod:`.config_values`.

The ``model`` section holds the fields of :class:`~evseg_ros.model.cacd.CACDConfig` plus
``pretrained`` (a local ImageNet MiT file) and ``label_set``; dataset specs are the dicts
:func:`~evseg_ros.train.datasets.build_dataset` reads and are checked by it when the trainer
builds them (only their ``type`` is checked here).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from evseg_ros.device import DEVICE_CHOICES, DeviceError, check_device_text
from evseg_ros.labels import LABEL_SETS, LabelSet, get_label_set
from evseg_ros.model.cacd import CACDConfig
from evseg_ros.train.config_overrides import apply_overrides
from evseg_ros.train.config_values import (
    as_mapping,
    build_dataclass,
    check_value,
    convert_value,
    plain_values,
    reject_unknown_keys,
)
from evseg_ros.train.losses import CACDLossWeights

__all__ = [
    "AMP_MODES",
    "LOG_BACKENDS",
    "OPTIMIZERS",
    "DataSection",
    "EmaTeacherSection",
    "LossSection",
    "ModelSection",
    "OptimSection",
    "PseudoLabelSection",
    "SemiSection",
    "TrainConfig",
    "TrainSection",
    "load_train_config",
]

#: Accepted ``optim.name`` values.
OPTIMIZERS = ("adam", "adamw")
#: Accepted ``train.amp`` values; mixed precision only applies on CUDA.
AMP_MODES = ("off", "bf16", "fp16")
#: Accepted ``train.log`` values; the CSV file is always written.
LOG_BACKENDS = ("csv", "tensorboard")
#: Accepted ``train.device`` values (and ``cuda:N``), as everywhere: :mod:`evseg_ros.device`.
DEVICES = DEVICE_CHOICES
#: Dataset types :func:`~evseg_ros.train.datasets.build_dataset` knows.
_DATASET_TYPES = ("dsec", "rpea", "sim")


def _device_ok(device: str) -> bool:
    try:
        check_device_text(device)
    except DeviceError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSection:
    """The network: a :class:`CACDConfig`, its pretrained encoder file and its label set.

    Attributes:
        cacd: Constructor arguments of :class:`~evseg_ros.model.cacd.CACDNet`.
        pretrained: ImageNet MiT weights (local file) loaded into the encoders of the
            published sizes, or ``None`` to start from random weights. The paper's numbers
            imply ImageNet initialisation, so its configs name the file; a missing file is an
            error naming what to download (:meth:`pretrained_file`), never a silent fallback.
        from_scratch: Train from random weights even though ``pretrained`` names a file: the
            explicit opt-out (``evseg train --from-scratch``).
        label_set: Name of the label set (``dsec11``, ``cityscapes19``); its class count must
            equal ``num_classes``. Names the per-class IoU columns and the ONNX metadata.
    """

    cacd: CACDConfig = field(default_factory=CACDConfig)
    pretrained: str | None = None
    from_scratch: bool = False
    label_set: str = "dsec11"

    def __post_init__(self) -> None:
        check_value(
            self.label_set in LABEL_SETS,
            "model.label_set",
            self.label_set,
            f"one of {sorted(LABEL_SETS)}",
        )
        count = get_label_set(self.label_set).num_classes
        if count != self.cacd.num_classes:
            msg = (
                f"model.num_classes {self.cacd.num_classes!r} differs from the "
                f"{count} classes of model.label_set {self.label_set!r}"
            )
            raise ValueError(msg)

    @property
    def labels(self) -> LabelSet:
        """The label set object."""
        return get_label_set(self.label_set)

    def pretrained_file(self) -> Path | None:
        """The ImageNet weights to load, or ``None`` (none named, or ``from_scratch``).

        Raises:
            FileNotFoundError: ``pretrained`` names a file that is not there; the message
                says which file to download and how to train from scratch instead.
        """
        if self.from_scratch or not self.pretrained:
            return None
        path = Path(self.pretrained)
        if not path.is_file():
            name = self.cacd.backbone.replace("_", "-")
            msg = (
                f"model.pretrained {str(path)!r} does not exist: download the ImageNet-1k "
                f"{name.upper()} encoder weights ({self.cacd.backbone}.pth of the SegFormer "
                f"release, or the Hugging Face model nvidia/{name}) to that path, or train "
                "from random weights with --from-scratch (model.from_scratch: true)"
            )
            raise FileNotFoundError(msg)
        return path


@dataclass(frozen=True)
class DataSection:
    """Datasets and loading.

    Attributes:
        train: Spec of the labelled training set (see ``build_dataset``).
        val: Spec of the validation set, or ``None`` for no validation.
        unlabelled: Spec of the unlabelled set used by ``semi`` (labels are not read).
        batch_size: Samples per optimiser micro-step and process.
        val_batch_size: Samples per validation batch (frames of one set share one size).
        num_workers: DataLoader worker processes (0 loads in the training process).
        crop_size: ``[height, width]`` random crop of the training set, used where the
            train spec does not set ``crop_size`` itself; ``None`` leaves it to the spec.
    """

    train: dict = field(default_factory=lambda: {"type": "sim"})
    val: dict | None = None
    unlabelled: dict | None = None
    batch_size: int = 16
    val_batch_size: int = 1
    num_workers: int = 4
    crop_size: tuple[int, int] | None = (512, 512)

    def __post_init__(self) -> None:
        for name in ("train", "val", "unlabelled"):
            spec = getattr(self, name)
            if spec is None:
                check_value(name != "train", "data.train", spec, "a dataset spec")
                continue
            check_value(isinstance(spec, Mapping), f"data.{name}", spec, "a mapping (dataset spec)")
            check_value(
                spec.get("type") in _DATASET_TYPES,
                f"data.{name}.type",
                spec.get("type"),
                f"one of {_DATASET_TYPES}",
            )
        check_value(self.batch_size >= 1, "data.batch_size", self.batch_size, "a positive integer")
        check_value(
            self.val_batch_size >= 1,
            "data.val_batch_size",
            self.val_batch_size,
            "a positive integer",
        )
        check_value(self.num_workers >= 0, "data.num_workers", self.num_workers, "an integer >= 0")
        if self.crop_size is not None:
            check_value(
                len(self.crop_size) == 2 and min(self.crop_size) >= 1,
                "data.crop_size",
                self.crop_size,
                "[height, width] with positive sides, or null",
            )

    def train_spec(self, *, seed: int) -> dict:
        """The train spec with ``crop_size`` and ``seed`` filled in where it lacks them."""
        spec = dict(self.train)
        if self.crop_size is not None:
            spec.setdefault("crop_size", list(self.crop_size))
        spec.setdefault("seed", seed)
        spec.setdefault("split", "train")
        return spec


@dataclass(frozen=True)
class OptimSection:
    """Optimiser and learning-rate schedule.

    The schedule is linear warm-up over ``warmup_steps`` (from ``warmup_ratio * lr``), then
    polynomial decay ``lr * (1 - progress) ** poly_power`` to ``min_lr`` at the last step.

    Attributes:
        name: ``adam`` (the paper) or ``adamw``.
        lr: Peak learning rate (paper: 1e-4).
        weight_decay: Weight decay (L2 for Adam, decoupled for AdamW).
        betas: Adam betas.
        poly_power: Exponent of the polynomial decay.
        warmup_steps: Optimiser steps of linear warm-up (0 = none).
        warmup_ratio: Learning-rate factor at the first warm-up step.
        min_lr: Learning rate reached at the end of training.
    """

    name: str = "adam"
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    poly_power: float = 0.9
    warmup_steps: int = 0
    warmup_ratio: float = 1e-3
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        check_value(self.name in OPTIMIZERS, "optim.name", self.name, f"one of {OPTIMIZERS}")
        check_value(
            math.isfinite(self.lr) and self.lr > 0, "optim.lr", self.lr, "a positive number"
        )
        check_value(
            math.isfinite(self.weight_decay) and self.weight_decay >= 0,
            "optim.weight_decay",
            self.weight_decay,
            "a number >= 0",
        )
        check_value(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            "optim.betas",
            self.betas,
            "two numbers in [0, 1)",
        )
        check_value(self.poly_power >= 0, "optim.poly_power", self.poly_power, "a number >= 0")
        check_value(
            self.warmup_steps >= 0, "optim.warmup_steps", self.warmup_steps, "an integer >= 0"
        )
        check_value(
            0 < self.warmup_ratio <= 1,
            "optim.warmup_ratio",
            self.warmup_ratio,
            "a number in (0, 1]",
        )
        check_value(
            0 <= self.min_lr <= self.lr, "optim.min_lr", self.min_lr, f"in [0, lr={self.lr}]"
        )


@dataclass(frozen=True)
class LossSection:
    """The CACD objective (paper Eq. 8, see :mod:`evseg_ros.train.losses`) and its options.

    Attributes:
        use_hfca: Add HFCA's L_intra and L_inter, Eq. 4-5 (needs ``model.variant: fused``).
        use_jbcd: Add JBCD's L_boundary and L_content, Eq. 6-7 (needs ``model.variant:
            fused``); without HFCA they compare the raw encoder features of ``hfca_stage``.
        weights: λ1-λ4 of Eq. 8 (paper values by default), τ of Eq. 5, alpha/beta of Eq. 7.
        hfca_stage: 0-based encoder stage that HFCA and JBCD read. Default 2 (1/16 of the
            input), by measurement: on 160x160 crops of the simulated recordings 20.3 / 15.1 /
            8.1 / 4.0 instances per crop own at least half of one feature cell at stages
            0-3 (``scripts/run_ablation.py``); 2 is the deepest stage that keeps ~8.
        embedding_dim: Channels of the common space of Eq. 1 (projection heads).
        max_instances: Instances per image used by Eq. 2-5, the largest ones.
        modality_dropout: ``[p_image, p_events]``: per sample, the probability that the frame
            (or the events) is replaced by zeros before the forward pass, so one network learns
            fused, frame-only and event-only input (the runtime feeds zeros for a missing
            modality). Never both in one sample, so ``p_image + p_events <= 1``. CE uses every
            sample, HFCA and JBCD only those with both modalities.
        log_grad_norms: Every this many optimiser steps, also log the L2 norm of the gradient
            of each weighted part of Eq. 8 with respect to the network's parameters
            (``grad_ce``, ``grad_intra``, ...); 0 = never. Each costs one extra backward pass.
        aux_heads: Build the per-branch auxiliary classifiers (not part of Eq. 8; off by
            default). With ``semi.pseudo_labels`` the event head gives the event path its
            own prediction.
        aux_weight: Weight of the cross-entropy of each auxiliary head (0 = Eq. 8 exactly).
        aux_channels: Width of the auxiliary heads.
    """

    use_hfca: bool = True
    use_jbcd: bool = True
    weights: CACDLossWeights = field(default_factory=CACDLossWeights)
    hfca_stage: int = 2
    embedding_dim: int = 128
    max_instances: int = 32
    modality_dropout: tuple[float, float] = (0.0, 0.0)
    log_grad_norms: int = 0
    aux_heads: bool = False
    aux_weight: float = 0.0
    aux_channels: int = 64

    def __post_init__(self) -> None:
        check_value(
            math.isfinite(self.aux_weight) and self.aux_weight >= 0,
            "loss.aux_weight",
            self.aux_weight,
            "a number >= 0",
        )
        check_value(
            self.aux_channels >= 1, "loss.aux_channels", self.aux_channels, "an integer >= 1"
        )
        check_value(0 <= self.hfca_stage <= 3, "loss.hfca_stage", self.hfca_stage, "in [0, 3]")
        check_value(
            self.embedding_dim >= 1, "loss.embedding_dim", self.embedding_dim, "an integer >= 1"
        )
        check_value(
            self.max_instances >= 1, "loss.max_instances", self.max_instances, "an integer >= 1"
        )
        dropout = tuple(self.modality_dropout)
        check_value(
            len(dropout) == 2
            and all(math.isfinite(p) and 0.0 <= p <= 1.0 for p in dropout)
            and dropout[0] + dropout[1] <= 1.0,
            "loss.modality_dropout",
            self.modality_dropout,
            "[p_image, p_events], each in [0, 1] with p_image + p_events <= 1 (a sample never "
            "loses both)",
        )
        check_value(
            self.log_grad_norms >= 0,
            "loss.log_grad_norms",
            self.log_grad_norms,
            "an integer >= 0 (0 = off)",
        )

    @property
    def build_aux_heads(self) -> bool:
        """Whether the trainer builds the auxiliary branch classifiers."""
        return self.aux_heads


@dataclass(frozen=True)
class TrainSection:
    """Loop, precision, validation, checkpoints and logging.

    Attributes:
        epochs: Passes over the training set; used when ``max_steps`` is null.
        max_steps: Optimiser steps in total; wins over ``epochs``.
        grad_accumulation: Micro-batches per optimiser step.
        amp: ``off``, ``bf16`` or ``fp16`` autocast; applies on CUDA only (off on CPU).
        clip_grad_norm: Clip the global gradient norm to this value (null = no clipping).
        seed: Seed of weights, data order, augmentation and loss sampling.
        val_every: Validate every this many steps (0 = only after the last step).
        checkpoint_every: Write ``step_XXXXXXX.pt`` every this many steps (0 = never);
            ``last.pt`` is written with it and at the end, ``best.pt`` on a new best val mIoU.
        keep_checkpoints: Periodic checkpoints kept (oldest removed first; 0 = keep all).
        output_dir: Folder for checkpoints, ``metrics.csv`` and ``config.yaml``.
        log: ``csv``, or ``tensorboard`` (in addition to the CSV, when importable).
        log_every: Write a metrics row every this many steps.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        threads: torch CPU threads (null = torch's default).
        progress: Show tqdm bars (only on a terminal and on rank 0 anyway).
        overwrite: Allow a fresh run into an ``output_dir`` that already holds checkpoints.
    """

    epochs: int | None = None
    max_steps: int | None = None
    grad_accumulation: int = 1
    amp: str = "off"
    clip_grad_norm: float | None = None
    seed: int = 0
    val_every: int = 0
    checkpoint_every: int = 0
    keep_checkpoints: int = 3
    output_dir: str = "output/train"
    log: str = "csv"
    log_every: int = 10
    device: str = "auto"
    threads: int | None = None
    progress: bool = True
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.epochs is None and self.max_steps is None:
            msg = "train.epochs and train.max_steps are both null; set one of them"
            raise ValueError(msg)
        for name in ("epochs", "max_steps", "threads"):
            value = getattr(self, name)
            check_value(
                value is None or value >= 1, f"train.{name}", value, "an integer >= 1 or null"
            )
        check_value(
            self.grad_accumulation >= 1,
            "train.grad_accumulation",
            self.grad_accumulation,
            "an integer >= 1",
        )
        check_value(self.amp in AMP_MODES, "train.amp", self.amp, f"one of {AMP_MODES}")
        if self.clip_grad_norm is not None:
            check_value(
                self.clip_grad_norm > 0,
                "train.clip_grad_norm",
                self.clip_grad_norm,
                "a positive number or null",
            )
        for name in ("val_every", "checkpoint_every", "keep_checkpoints"):
            check_value(
                getattr(self, name) >= 0, f"train.{name}", getattr(self, name), "an integer >= 0"
            )
        check_value(self.log_every >= 1, "train.log_every", self.log_every, "an integer >= 1")
        check_value(self.log in LOG_BACKENDS, "train.log", self.log, f"one of {LOG_BACKENDS}")
        check_value(
            _device_ok(self.device), "train.device", self.device, f"one of {DEVICES} or cuda:N"
        )
        check_value(bool(self.output_dir), "train.output_dir", self.output_dir, "a folder path")


@dataclass(frozen=True)
class PseudoLabelSection:
    """Frame-branch pseudo-labels for the event path on unlabelled data (CMESS-style).

    Attributes:
        enabled: Switch.
        teacher_checkpoint: CACD checkpoint of the frozen frame teacher (an ``image_only``
            or ``fused`` model); it sees the frame of each unlabelled sample.
        threshold: Keep a pixel when the teacher's softmax confidence is at least this;
            the rest become 255 (ignored).
        weight: Weight of the cross-entropy on the pseudo-labels.
    """

    enabled: bool = False
    teacher_checkpoint: str | None = None
    threshold: float = 0.9
    weight: float = 1.0

    def __post_init__(self) -> None:
        check_value(
            0 <= self.threshold <= 1,
            "semi.pseudo_labels.threshold",
            self.threshold,
            "a number in [0, 1]",
        )
        check_value(self.weight >= 0, "semi.pseudo_labels.weight", self.weight, "a number >= 0")
        if self.enabled and not self.teacher_checkpoint:
            msg = (
                "semi.pseudo_labels.enabled is true but semi.pseudo_labels.teacher_checkpoint "
                "is null"
            )
            raise ValueError(msg)


@dataclass(frozen=True)
class EmaTeacherSection:
    """Mean-teacher consistency on unlabelled data (Drive&Segment-style soft targets).

    Attributes:
        enabled: Switch.
        decay: EMA decay: ``teacher = decay * teacher + (1 - decay) * student`` per step.
        temperature: Softmax temperature of both predictions in the KL term.
        weight: Weight of the consistency term.
    """

    enabled: bool = False
    decay: float = 0.999
    temperature: float = 1.0
    weight: float = 1.0

    def __post_init__(self) -> None:
        check_value(0 <= self.decay < 1, "semi.ema_teacher.decay", self.decay, "a number in [0, 1)")
        check_value(
            self.temperature > 0,
            "semi.ema_teacher.temperature",
            self.temperature,
            "a positive number",
        )
        check_value(self.weight >= 0, "semi.ema_teacher.weight", self.weight, "a number >= 0")


@dataclass(frozen=True)
class SemiSection:
    """Semi-supervised options; each is off unless enabled."""

    pseudo_labels: PseudoLabelSection = field(default_factory=PseudoLabelSection)
    ema_teacher: EmaTeacherSection = field(default_factory=EmaTeacherSection)

    @property
    def any_enabled(self) -> bool:
        """Whether the trainer needs the unlabelled stream."""
        return self.pseudo_labels.enabled or self.ema_teacher.enabled


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run (see the module docstring for the file layout)."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    loss: LossSection = field(default_factory=LossSection)
    train: TrainSection = field(default_factory=lambda: TrainSection(max_steps=1000))
    semi: SemiSection = field(default_factory=SemiSection)

    def __post_init__(self) -> None:
        variant = self.model.cacd.variant
        for name in ("use_hfca", "use_jbcd"):
            if getattr(self.loss, name) and variant != "fused":
                msg = (
                    f"loss.{name} is true but model.variant is {variant!r}; HFCA and JBCD "
                    "compare the two branches and need variant 'fused'"
                )
                raise ValueError(msg)
        if self.semi.any_enabled and self.data.unlabelled is None:
            msg = "semi: pseudo_labels or ema_teacher is enabled but data.unlabelled is null"
            raise ValueError(msg)
        if self.semi.pseudo_labels.enabled and variant == "image_only":
            msg = "semi.pseudo_labels trains the event path but model.variant is 'image_only'"
            raise ValueError(msg)

    # -- conversion ------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build and check a config from parsed YAML.

        Raises:
            ValueError: Unknown key or bad value (names the dotted key and the value).
        """
        values = as_mapping(values, "config")
        reject_unknown_keys(values, [f.name for f in dataclasses.fields(cls)], "")
        sections: dict[str, Any] = {}
        if "model" in values:
            sections["model"] = _model_section(as_mapping(values["model"], "model"))
        if "loss" in values:
            loss = dict(as_mapping(values["loss"], "loss"))
            if "weights" in loss:
                loss["weights"] = build_dataclass(CACDLossWeights, loss["weights"], "loss.weights")
            sections["loss"] = build_dataclass(LossSection, loss, "loss")
        if "semi" in values:
            semi = dict(as_mapping(values["semi"], "semi"))
            reject_unknown_keys(semi, ["pseudo_labels", "ema_teacher"], "semi.")
            if "pseudo_labels" in semi:
                semi["pseudo_labels"] = build_dataclass(
                    PseudoLabelSection, semi["pseudo_labels"], "semi.pseudo_labels"
                )
            if "ema_teacher" in semi:
                semi["ema_teacher"] = build_dataclass(
                    EmaTeacherSection, semi["ema_teacher"], "semi.ema_teacher"
                )
            sections["semi"] = SemiSection(**semi)
        for name, section in (("data", DataSection), ("optim", OptimSection)):
            if name in values:
                sections[name] = build_dataclass(section, values[name], name)
        if "train" in values:
            sections["train"] = build_dataclass(TrainSection, values["train"], "train")
        return cls(**sections)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-safe values; ``from_dict(to_dict())`` gives an equal config."""
        model = {
            **self.model.cacd.to_dict(),
            "pretrained": self.model.pretrained,
            "from_scratch": self.model.from_scratch,
            "label_set": self.model.label_set,
        }
        return plain_values(
            {
                "model": model,
                "data": dataclasses.asdict(self.data),
                "optim": dataclasses.asdict(self.optim),
                "loss": dataclasses.asdict(self.loss),
                "train": dataclasses.asdict(self.train),
                "semi": dataclasses.asdict(self.semi),
            }
        )

    def to_yaml(self) -> str:
        """The config as YAML text (what the trainer writes next to its checkpoints)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_train_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML training config, apply ``--set`` overrides and check everything.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: Invalid YAML structure, unknown key or bad value.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"training config {str(path)!r} does not exist"
        raise FileNotFoundError(msg)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        msg = f"{str(path)!r} is not valid YAML: {err}"
        raise ValueError(msg) from None
    try:
        return TrainConfig.from_dict(apply_overrides(as_mapping(values, "config"), overrides))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def _model_section(values: Mapping[str, Any]) -> ModelSection:
    values = dict(values)
    own = ("pretrained", "from_scratch", "label_set")
    extra = {name: values.pop(name) for name in own if name in values}
    known = [f.name for f in dataclasses.fields(CACDConfig)]
    reject_unknown_keys(values, [*known, *own], "model.")
    hints = typing.get_type_hints(CACDConfig)
    converted = {k: convert_value(v, hints[k], f"model.{k}") for k, v in values.items()}
    try:
        cacd = CACDConfig.from_dict(converted)
    except (TypeError, ValueError) as err:
        raise ValueError(f"model: {err}") from None
    if "pretrained" in extra:
        extra["pretrained"] = convert_value(extra["pretrained"], str | None, "model.pretrained")
    if "label_set" in extra:
        extra["label_set"] = convert_value(extra["label_set"], str, "model.label_set")
    if "from_scratch" in extra:
        extra["from_scratch"] = convert_value(extra["from_scratch"], bool, "model.from_scratch")
    return ModelSection(cacd=cacd, **extra)
