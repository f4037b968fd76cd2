"""The sample dict every training dataset returns, and the batch collation for it.

The trainer is written against these keys, so all datasets (folder, DSEC, simulator) build
their samples through :func:`to_sample` and nothing else:

- ``image``: float32 ``(3, H, W)`` RGB in [0, 1] (zeros when the dataset has no frame).
- ``events``: float32 ``(C, H, W)`` event representation, raw counts (the network applies
  ``log1p`` itself, so the dataset never normalises).
- ``label``: int64 ``(H, W)`` class ids, 255 = ignore.
- ``instances``: int64 ``(H, W)`` instance ids, 0 = no instance.
- ``instances_source``: ``"file"`` (stored with the data) or ``"fallback"`` (derived from the
  label map, see :mod:`.instances`).
- ``has_image``: bool, False where ``image`` is a placeholder (event-only DSEC-Semantic).
- ``reconstructed``: float32 ``(3, H, W)`` RGB in [0, 1], a well-exposed image of the scene
  (CACD uses EvLight's reconstruction from frame + events) for JBCD's gradient map and the SAM
  masks; the frame itself where the dataset has none (then ``has_reconstruction`` is False).
- ``has_reconstruction``: bool.
- ``name``: str, unique within the dataset.
- ``condition``: str such as ``"normal"``, ``"night"``, ``"glare"`` or ``"unknown"``, for
  per-condition metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["SAMPLE_KEYS", "SampleArrays", "collate", "to_sample"]

#: Keys of every sample dict, in a fixed order.
SAMPLE_KEYS = (
    "image",
    "events",
    "label",
    "instances",
    "instances_source",
    "has_image",
    "reconstructed",
    "has_reconstruction",
    "name",
    "condition",
)


@dataclass(frozen=True)
class SampleArrays:
    """The pixel arrays of one sample, all on the same ``(H, W)`` grid.

    Attributes:
        image: ``(3, H, W)`` float32 RGB in [0, 1].
        events: ``(C, H, W)`` float32 event representation.
        label: ``(H, W)`` int64 class ids, 255 = ignore.
        instances: ``(H, W)`` int64 instance ids, 0 = none.
        reconstructed: ``(3, H, W)`` float32 well-exposed RGB in [0, 1] (see the module doc).
    """

    image: np.ndarray
    events: np.ndarray
    label: np.ndarray
    instances: np.ndarray
    reconstructed: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of the label grid."""
        return int(self.label.shape[0]), int(self.label.shape[1])

    def check_shapes(self, where: str) -> None:
        """Raise ``ValueError`` naming ``where`` when the arrays are not on one grid."""
        grids = {
            "image": self.image.shape[1:],
            "events": self.events.shape[1:],
            "label": self.label.shape,
            "instances": self.instances.shape,
            "reconstructed": self.reconstructed.shape[1:],
        }
        if len(set(grids.values())) != 1 or self.image.shape[0] != 3:
            msg = f"{where}: arrays are not on one (H, W) grid: {grids!r}"
            raise ValueError(msg)


def to_sample(
    arrays: SampleArrays,
    *,
    name: str,
    condition: str,
    instances_source: str,
    has_image: bool,
    has_reconstruction: bool = False,
) -> dict:
    """Turn the arrays of one sample into the dict the trainer reads (torch tensors)."""
    return {
        "image": torch.from_numpy(np.ascontiguousarray(arrays.image, dtype=np.float32)),
        "events": torch.from_numpy(np.ascontiguousarray(arrays.events, dtype=np.float32)),
        "label": torch.from_numpy(np.ascontiguousarray(arrays.label, dtype=np.int64)),
        "instances": torch.from_numpy(np.ascontiguousarray(arrays.instances, dtype=np.int64)),
        "instances_source": instances_source,
        "has_image": bool(has_image),
        "reconstructed": torch.from_numpy(
            np.ascontiguousarray(arrays.reconstructed, dtype=np.float32)
        ),
        "has_reconstruction": bool(has_reconstruction),
        "name": name,
        "condition": condition,
    }


def collate(samples: Sequence[dict]) -> dict:
    """Batch samples: stack tensors, turn bools into a bool tensor, keep strings as lists.

    Raises:
        ValueError: ``samples`` is empty, or the samples do not share their keys.
    """
    if not samples:
        msg = "collate got no samples"
        raise ValueError(msg)
    keys = list(samples[0])
    for index, sample in enumerate(samples):
        if list(sample) != keys:
            msg = f"sample {index} has keys {list(sample)!r}, sample 0 has {keys!r}"
            raise ValueError(msg)
    batch: dict = {}
    for key in keys:
        values = [sample[key] for sample in samples]
        if isinstance(values[0], torch.Tensor):
            batch[key] = torch.stack(values)
        elif isinstance(values[0], bool):
            batch[key] = torch.tensor(values, dtype=torch.bool)
        else:
            batch[key] = list(values)
    return batch
