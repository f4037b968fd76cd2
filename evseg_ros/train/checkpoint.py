"""Training checkpoint files: atomic writes, reading back, pruning, and the random states in them.

The trainer decides *what* goes into a checkpoint; this module holds the file-level rules that
make resuming safe whatever the trainer stores: a crash never leaves a truncated file, a file
that is not a CACD training checkpoint is refused with its path, and every random-number state
is captured in a form ``torch.load(weights_only=True)`` accepts.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evseg_ros.model.cacd import CACD_ARCH

__all__ = [
    "CHECKPOINT_FORMAT",
    "capture_rng_state",
    "load_training_checkpoint",
    "prune_oldest",
    "restore_rng_state",
    "save_atomically",
]

#: Version of the checkpoint layout written by the trainer (``Trainer.save_checkpoint``).
CHECKPOINT_FORMAT = 1


def capture_rng_state() -> dict:
    """Every random-number state a training step consumes: torch, numpy, python (and CUDA).

    The numpy key array is stored as an int64 tensor so the checkpoint loads with
    ``torch.load(weights_only=True)``.
    """
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


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Put back what :func:`capture_rng_state` returned (CUDA states only where CUDA exists)."""
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


def save_atomically(payload: dict, paths: list[Path]) -> None:
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
    """Read a checkpoint written by :class:`~evseg_ros.train.trainer.Trainer` (tensors on CPU).

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


def prune_oldest(paths: list[Path], keep: int) -> None:
    """Delete the oldest files of ``paths`` (oldest first) until ``keep`` remain; 0 keeps all.

    ``paths`` is shortened in place, so the caller's list stays the record of what is on disk.
    """
    while keep and len(paths) > keep:
        paths.pop(0).unlink(missing_ok=True)
