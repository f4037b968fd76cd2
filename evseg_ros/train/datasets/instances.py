"""Instance masks for the contrastive losses: stored masks, or a documented fallback.

The HFCA losses pool features inside instance masks ``M_k``. The intended masks come from SAM,
computed offline (``scripts/make_instance_masks.py``) and stored next to the data as uint16 PNGs
(0 = no instance). Where a sample has no stored mask the loader derives one from the label map
instead, so training still runs:

Fallback: every 8-connected component of every class region of the label map is one instance
(``cv2.connectedComponents``); ignore pixels (255) never belong to an instance, components
smaller than ``min_area`` pixels are dropped (left at 0), and only ``classes`` are used when
given. Ids are numbered 1.. in class order, then in OpenCV's scan order within a class. This is
coarser than SAM (touching cars of one class merge into one instance), which is why it is
reported per sample (``instances_source``) and warned about once per dataset.

An all-zero mask is a valid result (no instance in view).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import cv2
import numpy as np

from evseg_ros.labels import VOID
from evseg_ros.train.datasets.errors import DatasetError

__all__ = [
    "MAX_INSTANCE_ID",
    "InstanceProvider",
    "InstanceSource",
    "add_stuff_instances",
    "instances_from_labels",
    "read_instance_file",
    "write_instance_file",
]

_LOG = logging.getLogger(__name__)

#: Largest id a uint16 instance PNG can hold.
MAX_INSTANCE_ID = np.iinfo(np.uint16).max


class InstanceSource(Enum):
    """Where a sample's instance ids came from."""

    FILE = "file"
    FALLBACK = "fallback"


def instances_from_labels(
    label: np.ndarray,
    *,
    min_area: int = 0,
    classes: Sequence[int] | None = None,
    ignore_index: int = VOID,
) -> np.ndarray:
    """Instance ids from the connected components of each class region (the fallback).

    Args:
        label: ``(H, W)`` integer class ids.
        min_area: Components with fewer pixels are dropped (left at 0).
        classes: Class ids that form instances; ``None`` = every class present.
        ignore_index: Label value never part of an instance.

    Returns:
        ``(H, W)`` int64 ids, 0 = none, 1.. = instances.
    """
    label = np.asarray(label)
    instances = np.zeros(label.shape, dtype=np.int64)
    present = [int(c) for c in np.unique(label) if int(c) != ignore_index]
    if classes is not None:
        wanted = {int(c) for c in classes}
        present = [c for c in present if c in wanted]
    next_id = 1
    for class_id in present:
        region = (label == class_id).astype(np.uint8)
        count, components, stats, _ = cv2.connectedComponentsWithStats(region, connectivity=8)
        for component in range(1, count):  # 0 is the background of ``region``
            if stats[component, cv2.CC_STAT_AREA] < min_area:
                continue
            instances[components == component] = next_id
            next_id += 1
    return instances


def add_stuff_instances(
    label: np.ndarray, object_ids: np.ndarray, *, min_area: int = 64, ignore_index: int = VOID
) -> np.ndarray:
    """Object ids completed with one instance per connected region of every "stuff" class.

    A renderer (the simulator) knows its objects but gives road, buildings or sky id 0. HFCA
    needs instances to pool and contrast, and SAM masks cover stuff regions too, so each
    connected component (8-connected, at least ``min_area`` pixels) of each class among the
    pixels without an object id becomes an instance, numbered after the largest object id.

    Returns:
        ``(H, W)`` int64 ids, 0 = none.
    """
    object_ids = np.asarray(object_ids, dtype=np.int64)
    stuff = np.where(object_ids == 0, np.asarray(label), ignore_index)
    regions = instances_from_labels(stuff, min_area=min_area, ignore_index=ignore_index)
    offset = int(object_ids.max(initial=0))
    return np.where(regions > 0, regions + offset, object_ids)


def read_instance_file(path: Path) -> np.ndarray:
    """Read a single-channel instance PNG (uint8 or uint16 ids) as int64.

    Raises:
        DatasetError: The file cannot be read or has colour channels.
    """
    ids = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if ids is None:
        msg = f"cannot read instance mask {str(path)!r}"
        raise DatasetError(msg)
    if ids.ndim != 2:
        msg = f"instance mask {str(path)!r} must be single-channel ids, got shape {ids.shape!r}"
        raise DatasetError(msg)
    return ids.astype(np.int64)


def write_instance_file(path: Path, instances: np.ndarray) -> None:
    """Write ``(H, W)`` instance ids as a uint16 PNG (the layout the loaders read).

    Raises:
        ValueError: Ids are negative or exceed :data:`MAX_INSTANCE_ID`.
        DatasetError: OpenCV could not write the file.
    """
    instances = np.asarray(instances)
    if instances.ndim != 2:
        msg = f"instance ids must be (H, W), got shape {instances.shape!r}"
        raise ValueError(msg)
    if instances.size and (instances.min() < 0 or instances.max() > MAX_INSTANCE_ID):
        msg = (
            f"instance ids for {str(path)!r} must lie in [0, {MAX_INSTANCE_ID}], got "
            f"[{instances.min()!r}, {instances.max()!r}]"
        )
        raise ValueError(msg)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), instances.astype(np.uint16)):
        msg = f"cannot write instance mask {str(path)!r}"
        raise DatasetError(msg)


@dataclass
class InstanceProvider:
    """Stored instance masks where present, the fallback otherwise; one per dataset.

    Attributes:
        dataset: Name used in the one warning about the fallback.
        min_area: Fallback: smallest component kept, in pixels.
        classes: Fallback: class ids that form instances (``None`` = all).
        fallback_count: Samples that used the fallback so far (in this process: DataLoader
            workers keep their own counts).
    """

    dataset: str
    min_area: int = 64
    classes: tuple[int, ...] | None = None
    fallback_count: int = field(default=0, init=False)
    _warned: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.min_area < 0:
            msg = f"min_area must be >= 0, got {self.min_area!r}"
            raise ValueError(msg)

    def get(
        self, label: np.ndarray, stored: Path | np.ndarray | None
    ) -> tuple[np.ndarray, InstanceSource]:
        """Instance ids for one sample on the label's grid, and where they came from.

        Args:
            label: ``(H, W)`` class ids of the sample (after invalid ids became 255).
            stored: The stored mask (a path to a PNG, or ids), or ``None`` for the fallback.

        Raises:
            DatasetError: A stored mask cannot be read or is not on the label's grid.
        """
        if stored is not None:
            ids = read_instance_file(stored) if isinstance(stored, Path) else np.asarray(stored)
            if ids.shape != label.shape:
                where = str(stored) if isinstance(stored, Path) else f"{self.dataset} instances"
                msg = f"{where!r}: instance mask shape {ids.shape!r} != label {label.shape!r}"
                raise DatasetError(msg)
            return ids.astype(np.int64), InstanceSource.FILE
        self.fallback_count += 1
        if not self._warned:
            self._warned = True
            _LOG.warning(
                "%s: no stored instance masks for some samples; using connected components of "
                "the label map instead (min_area=%d); run scripts/make_instance_masks.py for "
                "SAM masks",
                self.dataset,
                self.min_area,
            )
        ids = instances_from_labels(label, min_area=self.min_area, classes=self.classes)
        return ids, InstanceSource.FALLBACK
