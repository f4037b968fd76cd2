"""The CACD training loop: data, model, losses, optimiser, validation, checkpoints, DDP.

One :class:`Trainer` runs one :class:`~evseg_ros.train.config.TrainConfig`:

* model :class:`~evseg_ros.model.cacd.CACDNet` + training-only parts: the per-branch auxiliary
  classifiers (:class:`BranchHead`, needed by JBCD's content term) and the HFCA projection
  heads inside :class:`~evseg_ros.train.losses.CACDLoss`; all trainable parts sit in one
  :class:`TrainingModule` so DDP averages every gradient, the projection heads' included;
* Adam/AdamW, warm-up + polynomial learning rate per optimiser step, gradient accumulation,
  autocast (bf16/fp16) on CUDA only, optional gradient clipping;
* validation with :class:`~evseg_ros.eval.metrics.ConfusionMatrix`: mIoU, per-class IoU and
  mIoU per ``condition`` subset (normal / night / glare / ...);
* checkpoints ``step_XXXXXXX.pt`` every N steps, ``last.pt``, ``best.pt`` (best val mIoU),
  holding everything needed to continue exactly: weights, optimiser, scheduler, scaler, EMA
  teacher, position in the data (epoch, batch) and every random-number state;
* a metrics CSV (and TensorBoard when importable), tqdm bars on a terminal of rank 0;
* NaN/inf in any loss part or the gradient norm stops training *before* the optimiser step,
  with :class:`NonFiniteTrainingError` naming the part and the step; no checkpoint is written
  after it, so the files on disk never hold NaN weights;
* DDP when started by ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``): nccl on CUDA, gloo
  on CPU, one data shard per rank, metrics reduced across ranks, only rank 0 writes.

Exact resume: data order is a pure function of ``(seed, epoch)`` (see :class:`EpochSampler`),
augmentation of ``(seed, epoch, index)`` (the datasets' own rule), the DataLoader's worker seed
comes from a generator reseeded per epoch, and the checkpoint restores torch / numpy / python /
CUDA RNG states and the loss sampling generator last, after everything that consumes random
numbers while being built. Resuming after ``k`` steps therefore gives the weights of an
uninterrupted run (bit-identical on CPU).
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

from evseg_ros.eval.metrics import ConfusionMatrix
from evseg_ros.labels import VOID
from evseg_ros.model.cacd import CACD_ARCH, CACDNet
from evseg_ros.train.config import TrainConfig
from evseg_ros.train.losses import (
    CACDLoss,
    NonFiniteLossError,
    check_finite,
    segmentation_cross_entropy,
)
from evseg_ros.train.semi import EmaTeacher, PseudoLabeler, load_frame_teacher, soft_target_loss

__all__ = [
    "CHECKPOINT_FORMAT",
    "CONDITIONS",
    "BranchHead",
    "DistributedContext",
    "EpochSampler",
    "NonFiniteTrainingError",
    "TrainResult",
    "Trainer",
    "TrainingModule",
    "evaluate",
    "poly_lr_factor",
]

_LOG = logging.getLogger(__name__)

#: Version of the checkpoint layout written by :meth:`Trainer.save_checkpoint`.
CHECKPOINT_FORMAT = 1
#: Conditions always reported (as empty when absent) so the CSV columns stay fixed.
CONDITIONS = ("normal", "night", "glare")


class NonFiniteTrainingError(RuntimeError):
    """Training stopped because a loss part or the gradient norm was NaN or infinite."""

    def __init__(self, *, step: int, epoch: int, part: str, value: float, checkpoint: Path | None):
        self.step = step
        self.epoch = epoch
        self.part = part
        self.value = value
        self.checkpoint = checkpoint
        last = f"last good checkpoint: {str(checkpoint)!r}" if checkpoint else "no checkpoint yet"
        super().__init__(
            f"training stopped at step {step} (epoch {epoch}): loss part {part!r} is {value!r}; "
            f"the optimiser step was not taken and nothing was saved ({last}); lower optim.lr, "
            "enable train.clip_grad_norm or check the data of this step"
        )


# --------------------------------------------------------------------------------------------
# Distributed set-up
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DistributedContext:
    """Rank layout of this process (world size 1 when not started by ``torchrun``)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def enabled(self) -> bool:
        """Whether gradients and metrics are exchanged with other processes."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that logs and writes files."""
        return self.rank == 0

    @classmethod
    def from_environment(cls, device_type: str) -> DistributedContext:
        """Join the process group ``torchrun`` describes in the environment, if any.

        Uses nccl on CUDA and gloo on CPU. An already initialised group is reused.
        """
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1 or "RANK" not in os.environ:
            return cls()
        rank = int(os.environ["RANK"])
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        initialised_here = False
        if not dist.is_initialized():
            backend = "nccl" if device_type == "cuda" else "gloo"
            if device_type == "cuda":
                torch.cuda.set_device(local_rank)
            dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
            initialised_here = True
        return cls(rank, world_size, local_rank, initialised_here)

    def close(self) -> None:
        """Leave the process group if this context created it."""
        if self.initialised_here and dist.is_initialized():
            dist.destroy_process_group()


# --------------------------------------------------------------------------------------------
# Data order
# --------------------------------------------------------------------------------------------


class EpochSampler(Sampler[int]):
    """Indices of one rank's shard of one epoch, as a pure function of ``(seed, epoch)``.

    Like ``DistributedSampler``: one permutation per epoch (from ``seed`` and ``epoch``),
    padded by repetition to a multiple of ``world_size`` when ``pad`` (training, so every rank
    does the same number of steps), every ``world_size``-th index from ``rank`` on. ``start``
    skips the first indices of the shard, which is how a resumed run continues mid-epoch
    without loading the skipped samples.

    Args:
        size: Dataset length.
        seed: Seed of the permutation.
        shuffle: Permute (training) or keep the dataset order (validation).
        rank: This process's rank.
        world_size: Number of processes.
        pad: Repeat indices so every rank gets the same count.
    """

    def __init__(
        self,
        size: int,
        *,
        seed: int,
        shuffle: bool,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
    ) -> None:
        if size <= 0:
            msg = f"cannot sample from an empty dataset (size {size!r})"
            raise ValueError(msg)
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.pad = pad
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, *, start: int = 0) -> None:
        """Select the epoch and the first index of the shard to yield."""
        self.epoch = int(epoch)
        self.start = int(start)

    def shard(self) -> list[int]:
        """This rank's indices of the current epoch, before ``start`` is applied."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        if self.pad and len(order) % self.world_size:
            missing = self.world_size - len(order) % self.world_size
            order += (order * (missing // len(order) + 1))[:missing]
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.shard()[self.start :])

    def __len__(self) -> int:
        return max(0, len(self.shard()) - self.start)


def _collate(samples: list[dict]) -> dict:
    from evseg_ros.train.datasets import collate

    return collate(samples)


# --------------------------------------------------------------------------------------------
# Training-only modules
# --------------------------------------------------------------------------------------------


class BranchHead(nn.Module):
    """Class scores of one encoder branch on its own (training-only, never exported).

    JBCD's content term compares the per-class spatial distributions of the image and the
    event branch, which needs class scores from each branch before fusion. The network has
    none, so each branch gets this small SegFormer-like head: every stage is projected to
    ``channels`` by a 1x1 convolution, upsampled to stage 1 (1/4 resolution), summed, and
    classified by a 1x1 convolution. Using all stages (not only the coarsest at 1/32) keeps
    the region maps of Eq. 7 fine enough for small crops.

    Args:
        stage_channels: Channels of the four encoder stages.
        num_classes: Output classes.
        channels: Hidden width.
    """

    def __init__(self, stage_channels: tuple[int, ...], num_classes: int, *, channels: int = 64):
        super().__init__()
        self.projections = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in stage_channels)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, stage_maps: list[Tensor]) -> Tensor:
        """Four stage maps -> ``(batch, num_classes, H / 4, W / 4)``."""
        size = stage_maps[0].shape[-2:]
        summed = None
        for projection, stage in zip(self.projections, stage_maps):
            mapped = F.interpolate(
                projection(stage), size=size, mode="bilinear", align_corners=False
            )
            summed = mapped if summed is None else summed + mapped
        return self.classifier(F.relu(summed))


def _upsample(logits: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


class TrainingModule(nn.Module):
    """Everything that has trainable parameters, behind one ``forward`` (what DDP wraps).

    One forward computes the whole objective of a micro-batch, the unlabelled part included,
    so DDP sees one forward per backward and averages every gradient (network, auxiliary heads,
    HFCA projection heads).

    Args:
        model: The network.
        criterion: The CACD loss (holds the projection heads).
        image_head: Auxiliary classifier of the image branch, or ``None``.
        event_head: Auxiliary classifier of the event branch, or ``None``.
        aux_weight: Weight of each auxiliary head's cross-entropy.
        pseudo_weight: Weight of the pseudo-label cross-entropy.
        consistency_weight: Weight of the EMA-teacher consistency term.
        temperature: Temperature of the consistency term.
    """

    def __init__(
        self,
        model: CACDNet,
        criterion: CACDLoss,
        *,
        image_head: BranchHead | None = None,
        event_head: BranchHead | None = None,
        aux_weight: float = 0.4,
        pseudo_weight: float = 1.0,
        consistency_weight: float = 1.0,
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        self.model = model
        self.criterion = criterion
        self.image_head = image_head
        self.event_head = event_head
        self.aux_weight = aux_weight
        self.pseudo_weight = pseudo_weight
        self.consistency_weight = consistency_weight
        self.temperature = temperature

    def forward(
        self,
        image: Tensor,
        events: Tensor,
        labels: Tensor,
        instances: Tensor,
        *,
        unlabelled_image: Tensor | None = None,
        unlabelled_events: Tensor | None = None,
        pseudo_labels: Tensor | None = None,
        soft_targets: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss and its unweighted parts (detached scalars) for one micro-batch."""
        output = self.model.forward_features(image, events)
        image_logits = event_logits = None
        if self.image_head is not None and output.image_features:
            image_logits = self.image_head(output.image_features)
        if self.event_head is not None and output.event_features:
            event_logits = self.event_head(output.event_features)
        result = self.criterion(
            logits=output.logits,
            labels=labels,
            image=image,
            image_features=output.image_features or None,
            event_features=output.event_features or None,
            instance_masks=instances,
            image_logits=image_logits,
            event_logits=event_logits,
            generator=generator,
        )
        total = result.total
        parts = {name: total.new_tensor(value) for name, value in result.parts.items()}
        size = tuple(labels.shape[-2:])
        for name, logits in (("aux_image", image_logits), ("aux_event", event_logits)):
            if logits is not None:
                value = segmentation_cross_entropy(_upsample(logits, size), labels)
                total = total + self.aux_weight * value
                parts[name] = value.detach()
        if unlabelled_image is not None and unlabelled_events is not None:
            student = self.model.forward_features(unlabelled_image, unlabelled_events)
            if pseudo_labels is not None:
                target_logits = student.logits
                if self.event_head is not None and student.event_features:
                    # The event path: the event branch's own head in the fused network.
                    target_logits = _upsample(
                        self.event_head(student.event_features), tuple(pseudo_labels.shape[-2:])
                    )
                value = segmentation_cross_entropy(target_logits, pseudo_labels)
                total = total + self.pseudo_weight * value
                parts["pseudo"] = value.detach()
            if soft_targets is not None:
                value = soft_target_loss(student.logits, soft_targets, temperature=self.temperature)
                total = total + self.consistency_weight * value
                parts["consistency"] = value.detach()
        parts["total"] = total.detach()
        return total, parts


def poly_lr_factor(
    step: int,
    *,
    total_steps: int,
    power: float,
    warmup_steps: int = 0,
    warmup_ratio: float = 1e-3,
    min_ratio: float = 0.0,
) -> float:
    """Learning-rate factor of optimiser step ``step`` (0-based): warm-up, then poly decay.

    Linear from ``warmup_ratio`` to 1 over ``warmup_steps``; then
    ``min_ratio + (1 - min_ratio) * (1 - progress) ** power`` with progress 0 at the end of
    warm-up and 1 at ``total_steps``.
    """
    if warmup_steps and step < warmup_steps:
        return warmup_ratio + (1.0 - warmup_ratio) * step / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    return min_ratio + (1.0 - min_ratio) * (1.0 - progress) ** power


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


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
        gathered: list[Any] = [None] * context.world_size
        dist.all_gather_object(gathered, {k: (m.matrix, frames[k]) for k, m in matrices.items()})
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


# --------------------------------------------------------------------------------------------
# Checkpoint files and random states
# --------------------------------------------------------------------------------------------


def _rng_state() -> dict:
    name, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["name"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    python_state = state["python"]
    random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_save(payload: dict, paths: list[Path]) -> None:
    """Serialise once, then give the file every name in ``paths`` (hard links where possible).

    Each name is replaced by an atomic rename, so a crash never leaves a truncated checkpoint
    and ``best.pt`` keeps its own content when ``last.pt`` is replaced later.
    """
    first = paths[0]
    tmp = first.with_name(f".{first.name}.tmp")
    torch.save(payload, tmp)
    try:
        for path in paths[1:]:
            link = path.with_name(f".{path.name}.tmp")
            link.unlink(missing_ok=True)
            try:
                os.link(tmp, link)
            except OSError:
                shutil.copyfile(tmp, link)
            link.replace(path)
        tmp.replace(first)
    finally:
        tmp.unlink(missing_ok=True)


def load_training_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by :class:`Trainer` (tensors on CPU).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: Not a trainer checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"checkpoint {str(path)!r} does not exist"
        raise FileNotFoundError(msg)
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("arch") != CACD_ARCH or "train_config" not in data:
        msg = f"{str(path)!r} is not a CACD training checkpoint (no 'train_config')"
        raise ValueError(msg)
    return data


# --------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainResult:
    """What :meth:`Trainer.fit` did.

    Attributes:
        steps: Optimiser steps done in total (including those before a resume).
        epoch: Epoch the last step belonged to.
        best_miou: Best validation mIoU (``None`` without validation).
        metrics: Last validation result (see :func:`evaluate`), or ``None``.
        last_checkpoint: ``last.pt`` (``None`` on ranks other than 0).
        best_checkpoint: ``best.pt``, or ``None``.
        seconds: Wall time of this ``fit`` call.
    """

    steps: int
    epoch: int
    best_miou: float | None
    metrics: dict | None
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    seconds: float


class Trainer:
    """Train one configuration (see the module docstring).

    Args:
        config: The run.
        resume: A checkpoint of this trainer to continue from (weights, optimiser, schedule,
            data position and RNG states); its model section must equal ``config``'s.

    Raises:
        ValueError: The config cannot be trained (e.g. no full batch in the training set),
            or the resume checkpoint belongs to another model.
        FileExistsError: A fresh run would overwrite checkpoints in ``train.output_dir``.
    """

    def __init__(self, config: TrainConfig, *, resume: str | Path | None = None) -> None:
        self.config = config
        train = config.train
        if train.threads:
            torch.set_num_threads(train.threads)
        self.device = self._select_device(train.device)
        if self.device.type == "cpu":
            # Adam's second moments decay into denormal floats, which x86 CPUs handle 10-100x
            # slower (measured: the optimiser step went from 0.1 s to 2.8 s); flush them to 0.
            torch.set_flush_denormal(True)
        self.context = DistributedContext.from_environment(self.device.type)
        if self.context.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.context.local_rank)
        self.autocast_dtype = self._autocast_dtype()
        self.output_dir = Path(train.output_dir)
        checkpoint = load_training_checkpoint(resume) if resume is not None else None
        if checkpoint is not None:
            self._check_resume(checkpoint, Path(resume))
        elif (
            self.context.is_main and (self.output_dir / "last.pt").exists() and not train.overwrite
        ):
            msg = (
                f"{str(self.output_dir)!r} already holds checkpoints; resume with --resume "
                f"{str(self.output_dir / 'last.pt')!r}, set train.overwrite=true or choose "
                "another train.output_dir"
            )
            raise FileExistsError(msg)

        # Everything that draws random numbers while being built comes first; the RNG state
        # of a resumed run is restored at the very end.
        torch.manual_seed(train.seed)
        random.seed(train.seed)
        np.random.seed(train.seed % 2**32)
        self._build_data()
        self._build_model(pretrained=checkpoint is None)
        self._build_optimisation()
        self._build_semi()
        self.loss_generator = torch.Generator().manual_seed(train.seed * 7919 + self.context.rank)

        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.unlabelled_position = (0, 0)
        self.best_miou: float | None = None
        self.last_metrics: dict | None = None
        self.best_checkpoint: Path | None = None
        self.last_checkpoint: Path | None = None
        self._periodic: list[Path] = []
        if checkpoint is not None:
            self._restore(checkpoint)
        else:
            # Different dropout / drop-path draws per rank; identical weights come from DDP.
            torch.manual_seed(train.seed + 1_000 * self.context.rank)
        self._csv_columns = self._metric_columns()
        self._tensorboard = None

    # -- construction ------------------------------------------------------------------------
    @staticmethod
    def _select_device(name: str) -> torch.device:
        if name == "cuda" and not torch.cuda.is_available():
            msg = "train.device is 'cuda' but torch sees no CUDA device"
            raise ValueError(msg)
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        return torch.device(name)

    def _autocast_dtype(self) -> torch.dtype | None:
        amp = self.config.train.amp
        if amp == "off":
            return None
        if self.device.type != "cuda":
            _LOG.info("train.amp=%s ignored on %s: mixed precision is CUDA-only", amp, self.device)
            return None
        return torch.bfloat16 if amp == "bf16" else torch.float16

    def _build_data(self) -> None:
        from evseg_ros.train.datasets import build_dataset

        config, context = self.config, self.context
        seed = config.train.seed
        self.train_set = build_dataset(config.data.train_spec(seed=seed))
        self.train_sampler = EpochSampler(
            len(self.train_set),
            seed=seed,
            shuffle=True,
            rank=context.rank,
            world_size=context.world_size,
        )
        self.loader_generator = torch.Generator()
        self.train_loader = self._loader(
            self.train_set, self.train_sampler, config.data.batch_size, drop_last=True
        )
        batches = len(self.train_sampler.shard()) // config.data.batch_size
        self.steps_per_epoch = batches // config.train.grad_accumulation
        if self.steps_per_epoch < 1:
            msg = (
                f"data.train has {len(self.train_set)} samples: not one optimiser step of "
                f"data.batch_size={config.data.batch_size} x train.grad_accumulation="
                f"{config.train.grad_accumulation} x {context.world_size} process(es)"
            )
            raise ValueError(msg)
        train = config.train
        self.total_steps = train.max_steps or train.epochs * self.steps_per_epoch
        self.val_loader = None
        if config.data.val is not None:
            spec = {"split": "val", **config.data.val}
            val_set = build_dataset(spec)
            sampler = EpochSampler(
                len(val_set),
                seed=seed,
                shuffle=False,
                rank=context.rank,
                world_size=context.world_size,
                pad=False,
            )
            self.val_loader = self._loader(val_set, sampler, config.data.val_batch_size)
        self.unlabelled_loader = None
        if config.semi.any_enabled:
            spec = {"split": "train", **config.data.unlabelled}
            spec.setdefault("seed", seed + 1)
            if config.data.crop_size is not None:
                spec.setdefault("crop_size", list(config.data.crop_size))
            self.unlabelled_set = build_dataset(spec)
            self.unlabelled_sampler = EpochSampler(
                len(self.unlabelled_set),
                seed=seed + 1,
                shuffle=True,
                rank=context.rank,
                world_size=context.world_size,
            )
            self.unlabelled_loader = self._loader(
                self.unlabelled_set,
                self.unlabelled_sampler,
                config.data.batch_size,
                drop_last=True,
            )
            if len(self.unlabelled_sampler) < config.data.batch_size:
                msg = (
                    f"data.unlabelled has {len(self.unlabelled_set)} samples, fewer than one "
                    f"batch of {config.data.batch_size} per process"
                )
                raise ValueError(msg)

    def _loader(
        self, dataset: Dataset, sampler: Sampler, batch_size: int, *, drop_last: bool = False
    ) -> DataLoader:
        workers = self.config.data.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=workers,
            collate_fn=_collate,
            drop_last=drop_last,
            pin_memory=self.device.type == "cuda",
            generator=self.loader_generator if drop_last else None,
            persistent_workers=False,
        )

    def _build_model(self, *, pretrained: bool) -> None:
        config = self.config
        self.model = CACDNet(config.model.cacd)
        if pretrained and config.model.pretrained:
            path = Path(config.model.pretrained)
            if not path.is_file():
                msg = f"model.pretrained file {str(path)!r} does not exist"
                raise FileNotFoundError(msg)
            for name, report in self.model.load_pretrained_encoders(path).items():
                if self.context.is_main:
                    _LOG.info("pretrained %s: %s", name, report.summary())
        loss = config.loss
        stage_channels = self._stage_channels()
        criterion = CACDLoss(
            stage_channels,
            weights=loss.weights,
            use_hfca=loss.use_hfca,
            use_jbcd=loss.use_jbcd,
            hfca_stage=loss.hfca_stage,
            embedding_dim=loss.embedding_dim,
            max_pixels_per_instance=loss.max_pixels_per_instance,
            raise_on_non_finite=False,  # checked here, after the parts of every term
        )
        image_head = event_head = None
        if loss.build_aux_heads:
            num_classes = config.model.cacd.num_classes
            if self.model.image_encoder is not None:
                image_head = BranchHead(stage_channels, num_classes, channels=loss.aux_channels)
            if self.model.event_encoder is not None:
                event_head = BranchHead(stage_channels, num_classes, channels=loss.aux_channels)
        semi = config.semi
        self.module = TrainingModule(
            self.model,
            criterion,
            image_head=image_head,
            event_head=event_head,
            aux_weight=loss.aux_weight,
            pseudo_weight=semi.pseudo_labels.weight,
            consistency_weight=semi.ema_teacher.weight,
            temperature=semi.ema_teacher.temperature,
        ).to(self.device)
        self.wrapped: nn.Module = self.module
        if self.context.enabled:
            if self.device.type == "cuda":
                self.module = nn.SyncBatchNorm.convert_sync_batchnorm(self.module)
            find_unused = loss.use_hfca or loss.build_aux_heads or semi.any_enabled
            self.wrapped = nn.parallel.DistributedDataParallel(
                self.module,
                device_ids=[self.context.local_rank] if self.device.type == "cuda" else None,
                find_unused_parameters=find_unused,
            )

    def _stage_channels(self) -> tuple[int, ...]:
        from evseg_ros.model.mit import mit_config

        return tuple(mit_config(self.config.model.cacd.backbone).embed_dims)

    def _build_optimisation(self) -> None:
        optim = self.config.optim
        parameters = [p for p in self.module.parameters() if p.requires_grad]
        options = {"lr": optim.lr, "betas": optim.betas, "weight_decay": optim.weight_decay}
        if optim.name == "adamw":
            self.optimizer = torch.optim.AdamW(parameters, **options)
        else:
            self.optimizer = torch.optim.Adam(parameters, **options)
        total = self.total_steps
        min_ratio = optim.min_lr / optim.lr

        def factor(step: int) -> float:
            return poly_lr_factor(
                step,
                total_steps=total,
                power=optim.poly_power,
                warmup_steps=optim.warmup_steps,
                warmup_ratio=optim.warmup_ratio,
                min_ratio=min_ratio,
            )

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        use_scaler = self.autocast_dtype == torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None

    def _build_semi(self) -> None:
        semi = self.config.semi
        self.pseudo_labeler = None
        self.ema = None
        if semi.pseudo_labels.enabled:
            teacher = load_frame_teacher(semi.pseudo_labels.teacher_checkpoint).to(self.device)
            self.pseudo_labeler = PseudoLabeler(teacher, threshold=semi.pseudo_labels.threshold)
        if semi.ema_teacher.enabled:
            self.ema = EmaTeacher(self.model, decay=semi.ema_teacher.decay)

    # -- resume ------------------------------------------------------------------------------
    def _check_resume(self, checkpoint: dict, path: Path) -> None:
        saved = TrainConfig.from_dict(checkpoint["train_config"])
        if saved.model != self.config.model:
            msg = (
                f"cannot resume from {str(path)!r}: its model section {saved.to_dict()['model']!r}"
                f" differs from the config's {self.config.to_dict()['model']!r}"
            )
            raise ValueError(msg)
        if checkpoint.get("world_size", 1) != self.context.world_size:
            _LOG.warning(
                "resuming a %d-process run with %d process(es): the data order changes",
                checkpoint.get("world_size", 1),
                self.context.world_size,
            )

    def _restore(self, checkpoint: dict) -> None:
        self.model.load_state_dict(checkpoint["state_dict"])
        self.module.criterion.load_state_dict(checkpoint["criterion"])
        for name in ("image_head", "event_head"):
            head = getattr(self.module, name)
            if head is not None:
                head.load_state_dict(checkpoint[name])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        if self.scaler is not None and checkpoint.get("scaler"):
            self.scaler.load_state_dict(checkpoint["scaler"])
        if self.ema is not None and checkpoint.get("ema"):
            self.ema.load_state_dict(checkpoint["ema"])
        if self.pseudo_labeler is not None and checkpoint.get("pseudo_counters"):
            kept, total, batches = checkpoint["pseudo_counters"]
            counters = self.pseudo_labeler.counters
            counters.kept_pixels, counters.total_pixels, counters.batches = kept, total, batches
        self.step = int(checkpoint["step"])
        self.epoch = int(checkpoint["epoch"])
        self.batch_in_epoch = int(checkpoint["batch_in_epoch"])
        self.unlabelled_position = tuple(checkpoint.get("unlabelled_position", (0, 0)))
        self.best_miou = checkpoint.get("best_miou")
        self.last_metrics = checkpoint.get("val_metrics")
        self.loss_generator.set_state(checkpoint["loss_generator"])
        _set_rng_state(checkpoint["rng"])
        if self.context.is_main:
            _LOG.info(
                "resumed at step %d (epoch %d, batch %d)",
                self.step,
                self.epoch,
                self.batch_in_epoch,
            )

    # -- checkpoints -------------------------------------------------------------------------
    def checkpoint_payload(self) -> dict:
        """Everything a resumed run needs; readable by ``load_cacd_checkpoint`` too."""
        payload = {
            "format": CHECKPOINT_FORMAT,
            "arch": CACD_ARCH,
            "config": self.model.config(),
            "state_dict": self.model.state_dict(),
            "label_set": self.config.model.label_set,
            "train_config": self.config.to_dict(),
            "criterion": self.module.criterion.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "unlabelled_position": list(self.unlabelled_position),
            "best_miou": self.best_miou,
            "val_metrics": self.last_metrics,
            "world_size": self.context.world_size,
            "loss_generator": self.loss_generator.get_state(),
            "rng": _rng_state(),
        }
        for name in ("image_head", "event_head"):
            head = getattr(self.module, name)
            if head is not None:
                payload[name] = head.state_dict()
        if self.pseudo_labeler is not None:
            counters = self.pseudo_labeler.counters
            payload["pseudo_counters"] = [
                counters.kept_pixels,
                counters.total_pixels,
                counters.batches,
            ]
        return payload

    def save_checkpoint(self, *, periodic: bool, best: bool) -> None:
        """Write ``last.pt`` (+ ``step_XXXXXXX.pt`` / ``best.pt``) on rank 0."""
        if not self.context.is_main:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        payload = self.checkpoint_payload()
        last = self.output_dir / "last.pt"
        paths = [last]
        if periodic:
            paths.append(self.output_dir / f"step_{self.step:07d}.pt")
        if best:
            paths.append(self.output_dir / "best.pt")
        _atomic_save(payload, paths)
        self.last_checkpoint = last
        if best:
            self.best_checkpoint = paths[-1]
        if periodic:
            self._periodic.append(paths[1])
            keep = self.config.train.keep_checkpoints
            while keep and len(self._periodic) > keep:
                self._periodic.pop(0).unlink(missing_ok=True)

    # -- logging -----------------------------------------------------------------------------
    def _metric_columns(self) -> list[str]:
        config = self.config
        parts = ["total", "ce"]
        if config.loss.use_hfca:
            parts += ["intra", "inter"]
        if config.loss.use_jbcd:
            parts += ["boundary", "content"]
        if self.module.image_head is not None:
            parts.append("aux_image")
        if self.module.event_head is not None:
            parts.append("aux_event")
        if self.pseudo_labeler is not None:
            parts += ["pseudo", "pseudo_kept_fraction"]
        if self.ema is not None:
            parts.append("consistency")
        columns = ["step", "epoch", "lr", "step_seconds", *parts]
        if self.val_loader is not None:
            columns += ["val_miou", "val_pixel_accuracy"]
            columns += [f"val_miou_{name}" for name in CONDITIONS]
            columns += [f"val_iou_{name}" for name in self.config.model.labels.classes]
        return columns

    def _write_row(self, row: dict[str, Any]) -> None:
        if not self.context.is_main:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / "metrics.csv"
        new_file = not path.exists()
        with path.open("a", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=self._csv_columns, extrasaction="ignore")
            if new_file:
                writer.writeheader()
            writer.writerow({key: "" if value is None else value for key, value in row.items()})
        if self._tensorboard is not None:
            for key, value in row.items():
                if key not in ("step", "epoch") and isinstance(value, (int, float)):
                    self._tensorboard.add_scalar(key, value, row["step"])

    def _prepare_logs(self) -> None:
        if not self.context.is_main:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / "config.yaml").write_text(self.config.to_yaml())
        path = self.output_dir / "metrics.csv"
        if path.exists():
            # Drop rows a crashed run wrote after the checkpoint being resumed, and rows of
            # another layout (an overwritten run), so the file describes this run only.
            with path.open(newline="") as stream:
                reader = csv.DictReader(stream)
                same_layout = reader.fieldnames == self._csv_columns
                rows = [r for r in reader if same_layout and int(r["step"]) <= self.step]
            with path.open("w", newline="") as stream:
                writer = csv.DictWriter(stream, fieldnames=self._csv_columns)
                writer.writeheader()
                writer.writerows(rows)
        if self.config.train.log == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                _LOG.warning("train.log=tensorboard but tensorboard is not installed; CSV only")
            else:
                self._tensorboard = SummaryWriter(str(self.output_dir / "tensorboard"))

    def _reduce_parts(self, parts: dict[str, float]) -> dict[str, float]:
        if not self.context.enabled:
            return parts
        names = sorted(parts)
        values = torch.tensor([parts[n] for n in names], dtype=torch.float64, device=self.device)
        dist.all_reduce(values)
        values /= self.context.world_size
        return dict(zip(names, values.tolist()))

    # -- the loop ----------------------------------------------------------------------------
    def _to_device(self, batch: dict) -> dict:
        return {
            key: value.to(self.device, non_blocking=True) if isinstance(value, Tensor) else value
            for key, value in batch.items()
        }

    def _unlabelled_batches(self) -> Iterator[dict]:
        """Endless unlabelled batches, continuing at the saved position after a resume."""
        epoch, start = self.unlabelled_position
        batch_size = self.config.data.batch_size
        while True:
            self.unlabelled_set.set_epoch(epoch)
            self.unlabelled_sampler.set_epoch(epoch, start=start * batch_size)
            for offset, batch in enumerate(self.unlabelled_loader, start=start + 1):
                self.unlabelled_position = (epoch, offset)
                yield batch
            epoch, start = epoch + 1, 0
            self.unlabelled_position = (epoch, 0)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def _micro_step(self, batch: dict, unlabelled: dict | None, *, sync: bool) -> dict[str, float]:
        batch = self._to_device(batch)
        extra: dict[str, Any] = {}
        if unlabelled is not None:
            unlabelled = self._to_device(unlabelled)
            extra["unlabelled_image"] = unlabelled["image"]
            extra["unlabelled_events"] = unlabelled["events"]
            with torch.no_grad(), self._autocast():
                if self.pseudo_labeler is not None:
                    extra["pseudo_labels"] = self.pseudo_labeler(
                        unlabelled["image"], unlabelled["events"]
                    ).labels
                if self.ema is not None:
                    extra["soft_targets"] = self.ema.predict(
                        unlabelled["image"], unlabelled["events"]
                    ).float()
        no_sync = (
            self.wrapped.no_sync()
            if self.context.enabled and not sync
            else contextlib.nullcontext()
        )
        with no_sync:
            with self._autocast():
                total, parts = self.wrapped(
                    batch["image"],
                    batch["events"],
                    batch["label"],
                    batch["instances"],
                    generator=self.loss_generator,
                    **extra,
                )
            values = {name: float(value) for name, value in parts.items()}
            self._stop_if_non_finite(values)
            scaled = total / self.config.train.grad_accumulation
            if self.scaler is not None:
                self.scaler.scale(scaled).backward()
            else:
                scaled.backward()
        return values

    def _stop_if_non_finite(self, values: Mapping[str, float]) -> None:
        """Raise on every rank when any rank saw a non-finite part (no rank may hang)."""
        problem: tuple[str, float] | None = None
        try:
            check_finite(values)
        except NonFiniteLossError as err:
            problem = (err.part, err.value)
        if self.context.enabled:
            flag = torch.tensor([0.0 if problem else 1.0], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            if problem is None and flag.item() == 0.0:
                problem = ("(non-finite on another rank)", float("nan"))
        if problem is not None:
            raise NonFiniteTrainingError(
                step=self.step + 1,
                epoch=self.epoch,
                part=problem[0],
                value=problem[1],
                checkpoint=self.last_checkpoint,
            )

    def _optimizer_step(self) -> float:
        parameters = [p for p in self.module.parameters() if p.requires_grad]
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        clip = self.config.train.clip_grad_norm
        norm = torch.nn.utils.clip_grad_norm_(parameters, clip if clip else float("inf"))
        norm_value = float(norm)
        if not math.isfinite(norm_value) and self.scaler is None:
            # fp16's scaler skips such steps by design; anywhere else it is divergence.
            self._stop_if_non_finite({"grad_norm": norm_value})
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return norm_value

    def validate(self) -> dict | None:
        """Run validation now (all ranks must call it); ``None`` without a val set."""
        if self.val_loader is None:
            return None
        labels = self.config.model.labels
        return evaluate(
            self.model,
            self.val_loader,
            num_classes=self.config.model.cacd.num_classes,
            class_names=labels.classes,
            device=self.device,
            autocast_dtype=self.autocast_dtype,
            context=self.context,
        )

    def _progress(self):
        if not (self.config.train.progress and self.context.is_main and sys.stderr.isatty()):
            return None
        try:
            from tqdm import tqdm
        except ImportError:
            return None
        return tqdm(total=self.total_steps, initial=self.step, unit="step", dynamic_ncols=True)

    def fit(self, *, stop_after: int | None = None) -> TrainResult:
        """Train until ``total_steps`` (or ``stop_after`` more steps, e.g. for a time budget).

        Raises:
            NonFiniteTrainingError: A loss part or the gradient norm became NaN/inf.
        """
        started = time.perf_counter()
        config = self.config
        train = config.train
        accumulation = train.grad_accumulation
        self._prepare_logs()
        self.module.train()
        unlabelled = self._unlabelled_batches() if self.unlabelled_loader is not None else None
        progress = self._progress()
        logged: dict[str, float] = {}
        logged_steps = 0
        step_times: list[float] = []
        target = (
            self.total_steps
            if stop_after is None
            else min(self.total_steps, self.step + stop_after)
        )
        try:
            while self.step < target:
                if self.batch_in_epoch // accumulation >= self.steps_per_epoch:
                    self.epoch += 1
                    self.batch_in_epoch = 0
                self.train_set.set_epoch(self.epoch)
                self.train_sampler.set_epoch(
                    self.epoch, start=self.batch_in_epoch * config.data.batch_size
                )
                self.loader_generator.manual_seed(train.seed * 1_000_003 + self.epoch)
                batches = iter(self.train_loader)
                while (
                    self.step < target
                    and self.batch_in_epoch // accumulation < self.steps_per_epoch
                ):
                    tick = time.perf_counter()
                    self.optimizer.zero_grad(set_to_none=True)
                    parts: dict[str, float] = {}
                    for micro in range(accumulation):
                        batch = next(batches)
                        extra = next(unlabelled) if unlabelled is not None else None
                        values = self._micro_step(batch, extra, sync=micro == accumulation - 1)
                        for name, value in values.items():
                            parts[name] = parts.get(name, 0.0) + value / accumulation
                    lr = self.optimizer.param_groups[0]["lr"]
                    self._optimizer_step()
                    self.step += 1
                    self.batch_in_epoch += accumulation
                    step_times.append(time.perf_counter() - tick)
                    for name, value in parts.items():
                        logged[name] = logged.get(name, 0.0) + value
                    logged_steps += 1
                    if progress is not None:
                        progress.update(1)
                        progress.set_postfix(loss=f"{parts['total']:.3f}", lr=f"{lr:.2e}")
                    last = self.step == self.total_steps
                    validate = self.val_loader is not None and (
                        last or (train.val_every and self.step % train.val_every == 0)
                    )
                    periodic = (
                        bool(train.checkpoint_every) and self.step % train.checkpoint_every == 0
                    )
                    row: dict[str, Any] | None = None
                    if self.step % train.log_every == 0 or validate or last or self.step == target:
                        mean = {k: v / logged_steps for k, v in logged.items()}
                        row = {
                            "step": self.step,
                            "epoch": self.epoch,
                            "lr": lr,
                            "step_seconds": sum(step_times) / len(step_times),
                            **self._reduce_parts(mean),
                        }
                        if self.pseudo_labeler is not None:
                            row["pseudo_kept_fraction"] = self.pseudo_labeler.counters.kept_fraction
                        logged, logged_steps, step_times = {}, 0, []
                    best = False
                    if validate:
                        metrics = self.validate()
                        self.last_metrics = metrics
                        miou = metrics["overall"]["miou"]
                        if miou is not None and (self.best_miou is None or miou > self.best_miou):
                            self.best_miou = miou
                            best = True
                        row = {
                            **(row or {"step": self.step, "epoch": self.epoch, "lr": lr}),
                            **self._metric_row(metrics),
                        }
                    if row is not None:
                        self._write_row(row)
                        if self.context.is_main:
                            _LOG.info("%s", _format_row(row, self.total_steps))
                    if periodic or best or last or self.step == target:
                        self.save_checkpoint(periodic=periodic, best=best)
        finally:
            if progress is not None:
                progress.close()
            if self._tensorboard is not None:
                self._tensorboard.close()
        return TrainResult(
            steps=self.step,
            epoch=self.epoch,
            best_miou=self.best_miou,
            metrics=self.last_metrics,
            last_checkpoint=self.last_checkpoint,
            best_checkpoint=self.best_checkpoint,
            seconds=time.perf_counter() - started,
        )

    def _metric_row(self, metrics: dict) -> dict[str, Any]:
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

    def close(self) -> None:
        """Leave the process group (if this trainer joined it)."""
        self.context.close()


def _format_row(row: Mapping[str, Any], total_steps: int) -> str:
    shown = []
    for key, value in row.items():
        if key in ("step", "epoch") or key.startswith("val_iou_") or value is None:
            continue
        shown.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return f"step {row['step']}/{total_steps} epoch {row['epoch']}: " + ", ".join(shown)
