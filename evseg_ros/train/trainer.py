"""The CACD training loop: builds data, model and optimiser from a config and runs the steps.

One :class:`Trainer` runs one :class:`~evseg_ros.train.config.TrainConfig`:

* model :class:`~evseg_ros.model.cacd.CACDNet` + training-only parts: the HFCA projection
  heads and the JBCD content heads inside :class:`~evseg_ros.train.losses.CACDLoss` (the
  paper's Eq. 8) and, when enabled, the per-branch auxiliary classifiers
  (:class:`~evseg_ros.train.heads.BranchHead`); all trainable parts sit in one
  :class:`~evseg_ros.train.training_module.TrainingModule` so DDP averages every gradient, the
  heads' included, and the checkpoint holds them;
* modality dropout (``loss.modality_dropout``) and, every ``loss.log_grad_norms`` steps, the
  gradient norm of each weighted part of Eq. 8 (``grad_*`` columns);
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

Exact resume: data order is a pure function of ``(seed, epoch)`` (see
:class:`~evseg_ros.train.sampling.EpochSampler`), augmentation of ``(seed, epoch, index)`` (the
datasets' own rule), the DataLoader's worker seed comes from a generator reseeded per epoch, and
the checkpoint restores torch / numpy / python / CUDA RNG states and the loss generator (the
modality-dropout draws) last, after everything that consumes random numbers while being built.
Resuming after ``k`` steps therefore gives the weights of an uninterrupted run (bit-identical on
CPU).

The parts with one job each live beside this module: :mod:`.distributed` (rank layout and
reductions), :mod:`.sampling` (data order), :mod:`.heads` and :mod:`.training_module` (what DDP
wraps), :mod:`.schedule` (learning rate), :mod:`.evaluation` (validation metrics),
:mod:`.checkpoint` (files and random states) and :mod:`.metrics_log` (``metrics.csv``); this
module only wires them into the loop.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

from evseg_ros.device import DeviceError, resolve_device
from evseg_ros.model.cacd import CACD_ARCH, CACDNet
from evseg_ros.train.checkpoint import (
    CHECKPOINT_FORMAT,
    capture_rng_state,
    load_training_checkpoint,
    prune_oldest,
    restore_rng_state,
    save_atomically,
)
from evseg_ros.train.config import TrainConfig
from evseg_ros.train.distributed import DistributedContext, all_ranks_ok, mean_over_ranks
from evseg_ros.train.evaluation import evaluate, validation_columns, validation_row
from evseg_ros.train.heads import BranchHead
from evseg_ros.train.losses import CACDLoss, NonFiniteLossError, check_finite
from evseg_ros.train.metrics_log import MetricsLog, format_row
from evseg_ros.train.sampling import EpochSampler
from evseg_ros.train.schedule import poly_lr_factor
from evseg_ros.train.semi import EmaTeacher, PseudoLabeler, load_frame_teacher
from evseg_ros.train.training_module import TrainingModule

__all__ = ["NonFiniteTrainingError", "TrainResult", "Trainer"]

_LOG = logging.getLogger(__name__)


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


def _collate(samples: list[dict]) -> dict:
    from evseg_ros.train.datasets import collate

    return collate(samples)


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
        metrics: Last validation result (see
            :func:`~evseg_ros.train.evaluation.evaluate`), or ``None``.
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
        self.metrics_log = MetricsLog(
            self.output_dir,
            self._metric_columns(),
            enabled=self.context.is_main,
            tensorboard=train.log == "tensorboard",
        )

    # -- construction ------------------------------------------------------------------------
    @staticmethod
    def _select_device(name: str) -> torch.device:
        try:
            return resolve_device(name)
        except DeviceError as err:
            raise ValueError(f"train.device: {err}") from None

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
        if self.context.is_main:
            _LOG.info("%s", self.model.describe())  # parameter counts per part
        # A resumed run has its weights already; a fresh one needs its ImageNet file present
        # (pretrained_file raises naming what to download) unless it trains from scratch.
        path = config.model.pretrained_file() if pretrained else None
        if path is not None:
            for name, report in self.model.load_pretrained_encoders(path).items():
                if self.context.is_main:
                    _LOG.info("pretrained %s: %s", name, report.summary())
        loss = config.loss
        stage_channels = self._stage_channels()
        num_classes = config.model.cacd.num_classes
        criterion = CACDLoss(
            stage_channels,
            num_classes,
            weights=loss.weights,
            use_hfca=loss.use_hfca,
            use_jbcd=loss.use_jbcd,
            hfca_stage=loss.hfca_stage,
            embedding_dim=loss.embedding_dim,
            max_instances=loss.max_instances,
            raise_on_non_finite=False,  # checked here, after the parts of every term
        )
        image_head = event_head = None
        if loss.build_aux_heads:
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
            modality_dropout=loss.modality_dropout,
        ).to(self.device)
        self.wrapped: nn.Module = self.module
        if self.context.enabled:
            if self.device.type == "cuda":
                self.module = nn.SyncBatchNorm.convert_sync_batchnorm(self.module)
            find_unused = loss.use_hfca or loss.use_jbcd or loss.build_aux_heads or semi.any_enabled
            self.wrapped = nn.parallel.DistributedDataParallel(
                self.module,
                device_ids=[self.context.local_rank] if self.device.type == "cuda" else None,
                find_unused_parameters=find_unused,
            )

    def _stage_channels(self) -> tuple[int, ...]:
        """Channels per stage of the branch features the losses and heads read.

        The model's own ``stage_channels`` where it states them (a narrower event encoder is
        lifted to the image encoder's channels, so both branches share them), else the
        backbone's widths.
        """
        channels = getattr(self.model, "stage_channels", None)
        if channels is not None:
            return tuple(int(c) for c in channels)
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
        restore_rng_state(checkpoint["rng"])
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
            "rng": capture_rng_state(),
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
        save_atomically(payload, paths)
        self.last_checkpoint = last
        if best:
            self.best_checkpoint = paths[-1]
        if periodic:
            self._periodic.append(paths[1])
            prune_oldest(self._periodic, self.config.train.keep_checkpoints)

    # -- logging -----------------------------------------------------------------------------
    def _metric_columns(self) -> list[str]:
        config = self.config
        parts = ["total", "ce"]
        if config.loss.use_hfca:
            parts += ["intra", "inter"]
        if config.loss.use_jbcd:
            parts += ["boundary", "content"]
        if config.loss.log_grad_norms:
            parts += [f"grad_{name}" for name in parts if name != "total"]
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
            columns += validation_columns(self.config.model.labels.classes)
        return columns

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

    def _micro_step(
        self, batch: dict, unlabelled: dict | None, *, sync: bool, grad_norms: bool = False
    ) -> dict[str, float]:
        batch = self._to_device(batch)
        extra: dict[str, Any] = {
            # Eq. 6's gradient map reads a well-exposed frame; the frame itself where a
            # dataset has no reconstruction.
            "reconstructed": batch.get("reconstructed", batch["image"]),
            "has_image": batch.get("has_image"),
            "grad_norms": grad_norms,
        }
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
        ok_everywhere = all_ranks_ok(problem is None, self.context, device=self.device)
        if problem is None and not ok_everywhere:
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
        loss_config = config.loss
        self.metrics_log.open(config_yaml=self.config.to_yaml(), step=self.step)
        self.module.train()
        unlabelled = self._unlabelled_batches() if self.unlabelled_loader is not None else None
        progress = self._progress()
        logged: dict[str, float] = {}
        logged_counts: dict[str, int] = {}
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
                    grad_norms = bool(loss_config.log_grad_norms) and (
                        (self.step + 1) % loss_config.log_grad_norms == 0
                    )
                    for micro in range(accumulation):
                        batch = next(batches)
                        extra = next(unlabelled) if unlabelled is not None else None
                        values = self._micro_step(
                            batch, extra, sync=micro == accumulation - 1, grad_norms=grad_norms
                        )
                        for name, value in values.items():
                            parts[name] = parts.get(name, 0.0) + value / accumulation
                    lr = self.optimizer.param_groups[0]["lr"]
                    self._optimizer_step()
                    self.step += 1
                    self.batch_in_epoch += accumulation
                    step_times.append(time.perf_counter() - tick)
                    for name, value in parts.items():
                        logged[name] = logged.get(name, 0.0) + value
                        # grad_* parts exist on measured steps only: average over those.
                        logged_counts[name] = logged_counts.get(name, 0) + 1
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
                        mean = {k: v / logged_counts[k] for k, v in logged.items()}
                        row = {
                            "step": self.step,
                            "epoch": self.epoch,
                            "lr": lr,
                            "step_seconds": sum(step_times) / len(step_times),
                            **mean_over_ranks(mean, self.context, device=self.device),
                        }
                        if self.pseudo_labeler is not None:
                            row["pseudo_kept_fraction"] = self.pseudo_labeler.counters.kept_fraction
                        logged, logged_counts, step_times = {}, {}, []
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
                            **validation_row(metrics),
                        }
                    if row is not None:
                        self.metrics_log.write(row)
                        if self.context.is_main:
                            _LOG.info("%s", format_row(row, self.total_steps))
                    if periodic or best or last or self.step == target:
                        self.save_checkpoint(periodic=periodic, best=best)
        finally:
            if progress is not None:
                progress.close()
            self.metrics_log.close()
        return TrainResult(
            steps=self.step,
            epoch=self.epoch,
            best_miou=self.best_miou,
            metrics=self.last_metrics,
            last_checkpoint=self.last_checkpoint,
            best_checkpoint=self.best_checkpoint,
            seconds=time.perf_counter() - started,
        )

    def close(self) -> None:
        """Leave the process group (if this trainer joined it)."""
        self.context.close()
