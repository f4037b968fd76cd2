"""The one way to load a CACD checkpoint outside training: the network plus what it learnt from.

Every consumer of trained weights (the PyTorch runtime backend, ONNX export) goes through
:func:`load_model`, which builds the network with
:func:`~evseg_ros.model.cacd.load_cacd_checkpoint` and reads the provenance the file carries
next to the weights. Two files qualify, both with ``"arch": "cacd"``:

* what ``evseg train`` writes (``Trainer.checkpoint_payload``: weights, config, label set,
  the training config, optimiser state, an optional EMA teacher, ...);
* what :func:`~evseg_ros.model.cacd.save_cacd_checkpoint` writes (weights and config, plus any
  extra keys the caller gave).

Anything else is refused with one :class:`CheckpointError` line naming the file.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from evseg_ros.model.cacd import CACDNet, load_cacd_checkpoint

__all__ = [
    "UNKNOWN",
    "CheckpointError",
    "CheckpointInfo",
    "load_model",
    "save_weights_only",
    "training_data_summary",
]

#: What a checkpoint without a training config says it was trained on.
UNKNOWN = "unknown"


class CheckpointError(ValueError):
    """A file is not a loadable CACD checkpoint (one line, naming the file)."""


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says about its network, next to the weights.

    Attributes:
        path: The file read.
        architecture: Short network name, e.g. ``cacd-mit-b0`` (see
            :meth:`CACDConfig.architecture`).
        variant: ``fused``, ``image_only`` or ``event_only``.
        label_set: Name of the label set the trainer recorded, or None.
        training_data: One line on the training set (:func:`training_data_summary`).
        step: Optimiser step the weights are from, or None (not a trainer checkpoint).
        weights: ``"student"`` (the trained network) or ``"ema"`` (its EMA teacher).
    """

    path: Path
    architecture: str
    variant: str
    label_set: str | None
    training_data: str
    step: int | None
    weights: str = "student"

    def provenance(self) -> str:
        """Which weights of which file, e.g. ``best.pt, step 1200, EMA teacher``."""
        parts = [self.path.name]
        if self.step is not None:
            parts.append(f"step {self.step}")
        parts.append("EMA teacher" if self.weights == "ema" else "student")
        return ", ".join(parts)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


def _seed_ranges(seeds: Sequence[Any]) -> str:
    """``[0, 1, 2, 3, 7]`` -> ``0-3,7`` (runs of three or more consecutive seeds shortened)."""
    try:
        values = sorted({int(seed) for seed in seeds})
    except (TypeError, ValueError):
        return ",".join(str(seed) for seed in seeds)
    parts = []
    for _, run in itertools.groupby(enumerate(values), lambda pair: pair[1] - pair[0]):
        run_values = [value for _, value in run]
        if len(run_values) >= 3:
            parts.append(f"{run_values[0]}-{run_values[-1]}")
        else:
            parts.extend(str(value) for value in run_values)
    return ",".join(parts)


def training_data_summary(train_config: Mapping[str, Any] | None) -> str:
    """One line on the training set of a trainer's ``train_config``: type, source, frames, crop.

    E.g. ``sim seeds 0-3, 30 frames/seed (stride 4), crop 96x96`` or
    ``rpea data/rpea split train, crop 512x512``. The crop is the spec's own ``crop_size``, else
    the ``data.crop_size`` the trainer fills in. ``"unknown"`` without a train spec.
    """
    data = (train_config or {}).get("data") or {}
    spec = data.get("train") if isinstance(data, Mapping) else None
    if not isinstance(spec, Mapping) or not spec.get("type"):
        return UNKNOWN
    head = [str(spec["type"])]
    if spec.get("root"):
        head.append(str(spec["root"]))
    if spec.get("split"):
        head.append(f"split {spec['split']}")
    if spec.get("seeds") is not None:
        head.append(f"seeds {_seed_ranges(spec['seeds'])}")
    parts = [" ".join(head)]
    if spec.get("frames_per_seed") is not None:
        frames = f"{spec['frames_per_seed']} frames/seed"
        if spec.get("frame_stride") not in (None, 1):
            frames += f" (stride {spec['frame_stride']})"
        parts.append(frames)
    crop = spec["crop_size"] if "crop_size" in spec else data.get("crop_size")
    if crop is not None:
        parts.append("crop " + "x".join(str(side) for side in crop))
    return ", ".join(parts)


def _read_checkpoint(path: Path) -> dict:
    """The checkpoint's entries; tensors stay memory-mapped, so a large file costs little."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # a file in the pre-zip format cannot be memory-mapped
        return torch.load(path, map_location="cpu", weights_only=True)


def load_model(path: str | Path, *, ema: bool = False) -> tuple[CACDNet, CheckpointInfo]:
    """Build the network of a CACD checkpoint (eval mode, on CPU) and read its provenance.

    Args:
        path: A checkpoint of ``evseg train`` or :func:`~evseg_ros.model.cacd.save_cacd_checkpoint`.
        ema: Load the EMA teacher's weights instead of the student's (trainer checkpoints
            written with ``semi.ema_teacher`` on).

    Raises:
        CheckpointError: The file cannot be read, is not a CACD checkpoint, its weights do not
            fit its config, or ``ema`` is asked of a file without a teacher.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        model = load_cacd_checkpoint(path)
        data = _read_checkpoint(path)
        if ema:
            teacher = data.get("ema")
            if not teacher:
                msg = f"{str(path)!r} holds no EMA teacher (semi.ema_teacher was off)"
                raise CheckpointError(msg)
            model.load_state_dict(teacher["state_dict"])
    except CheckpointError:
        raise
    except Exception as err:  # noqa: BLE001 - pickle, zip, key and shape errors alike
        reason = _first_line(err)
        if str(path) not in reason:
            reason = f"cannot load {str(path)!r} as a CACD checkpoint: {reason}"
        raise CheckpointError(reason) from None
    config = model.cacd_config
    step = data.get("step")
    info = CheckpointInfo(
        path=path,
        architecture=config.architecture(),
        variant=config.variant,
        label_set=data.get("label_set"),
        training_data=training_data_summary(data.get("train_config")),
        step=int(step) if isinstance(step, int) else None,
        weights="ema" if ema else "student",
    )
    return model.eval(), info


#: What a weights-only checkpoint keeps of a trainer checkpoint: enough to rebuild, run and
#: describe the network, none of the optimiser, scheduler or RNG state of a resumable run.
WEIGHTS_ONLY_KEYS = ("arch", "config", "label_set", "train_config", "step")


def save_weights_only(
    model: CACDNet, info: CheckpointInfo, path: str | Path, *, overwrite: bool = False
) -> Path:
    """Write ``model``, as :func:`load_model` read it with ``info``, alone: what ships beside
    an ONNX export.

    A trainer checkpoint is about three times the size of its weights (Adam's moments); the
    pytorch backend and :func:`load_model` need only the weights and the provenance, which are
    taken from ``info.path`` (memory-mapped: the network is not built again).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        msg = f"{str(path)!r} already exists (pass --overwrite to replace it)"
        raise FileExistsError(msg)
    data = _read_checkpoint(info.path)
    payload = {key: data[key] for key in WEIGHTS_ONLY_KEYS if key in data}
    payload["state_dict"] = model.state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path
