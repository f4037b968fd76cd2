"""What every training dataset shares: label checks, instance masks, augmentation, the dict.

A concrete dataset only says where its files are and how to read one sample's raw arrays
(:meth:`SegmentationDataset.load_raw`); this base turns them into the sample dict of
:mod:`.sample` the same way for every source, so a folder dataset, DSEC and the simulator cannot
disagree about ignore labels, instance fallbacks or augmentation.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from torch.utils.data import Dataset

from evseg_ros.labels import VOID
from evseg_ros.train.datasets.augment import AugmentConfig, Augmenter
from evseg_ros.train.datasets.errors import DatasetError
from evseg_ros.train.datasets.instances import InstanceProvider
from evseg_ros.train.datasets.sample import SampleArrays, to_sample

__all__ = [
    "UNKNOWN_CONDITION",
    "DatasetCounters",
    "RawSample",
    "SegmentationDataset",
    "check_problems",
    "describe_problems",
    "read_conditions",
    "read_label",
    "read_rgb",
    "sanitize_label",
]

_LOG = logging.getLogger(__name__)

#: Condition of samples that do not declare one.
UNKNOWN_CONDITION = "unknown"


@dataclass(frozen=True)
class RawSample:
    """One sample as read from disk, before checks and augmentation.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB, or ``None`` where the dataset has no frame.
        events: ``(C, H, W)`` float32 event representation.
        label: ``(H, W)`` integer class ids as stored (may hold invalid ids).
        instances: Stored instance mask (PNG path or ids), or ``None`` for the fallback.
        name: Unique sample name.
        condition: Lighting / scene condition, ``"unknown"`` when not declared.
        source: File the label came from, for messages.
        reconstructed: ``(H, W, 3)`` uint8 well-exposed RGB of the scene (an offline EvLight
            run, the simulator's clean render), or ``None``: the frame stands in for it.
    """

    image: np.ndarray | None
    events: np.ndarray
    label: np.ndarray
    instances: Path | np.ndarray | None
    name: str
    condition: str
    source: str
    reconstructed: np.ndarray | None = None


@dataclass
class DatasetCounters:
    """What a dataset had to skip or repair; also logged once as warnings.

    Counts made in ``__getitem__`` are per process: DataLoader workers keep their own.

    Attributes:
        skipped_samples: Incomplete samples left out at construction.
        invalid_label_pixels: Label pixels outside the class set, turned into 255.
        fallback_instances: Samples whose instance ids came from the label-map fallback.
        samples_without_image: Samples served with a zero placeholder image.
        samples_without_reconstruction: Samples whose frame stood in for the well-exposed
            reconstruction (JBCD's gradient map is then computed on the degraded frame).
    """

    skipped_samples: int = 0
    invalid_label_pixels: int = 0
    fallback_instances: int = 0
    samples_without_image: int = 0
    samples_without_reconstruction: int = 0


def read_rgb(path: Path) -> np.ndarray:
    """Read a colour image as ``(H, W, 3)`` uint8 RGB.

    Raises:
        DatasetError: OpenCV cannot read the file.
    """
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        msg = f"cannot read image {str(path)!r}"
        raise DatasetError(msg)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_label(path: Path) -> np.ndarray:
    """Read a class-id PNG (one channel, 8 or 16 bit) as int64.

    Raises:
        DatasetError: Unreadable, or a colour image (colour-coded labels need converting).
    """
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        msg = f"cannot read label {str(path)!r}"
        raise DatasetError(msg)
    if label.ndim != 2:
        msg = (
            f"label {str(path)!r} must be a single-channel image of class ids, got shape "
            f"{label.shape!r} (colour-coded labels must be converted to ids first)"
        )
        raise DatasetError(msg)
    return label.astype(np.int64)


def read_conditions(path: Path) -> dict[str, str]:
    """Read ``name,condition`` rows (an optional ``name,condition`` header is skipped).

    Raises:
        DatasetError: A row does not have exactly two fields.
    """
    conditions: dict[str, str] = {}
    with path.open(newline="") as stream:
        for line_number, row in enumerate(csv.reader(stream), start=1):
            if not row or row[0].startswith("#"):
                continue
            if len(row) != 2:
                msg = f"{str(path)!r} line {line_number}: expected 'name,condition', got {row!r}"
                raise DatasetError(msg)
            name, condition = (value.strip() for value in row)
            if line_number == 1 and (name, condition) == ("name", "condition"):
                continue
            conditions[name] = condition.lower()
    return conditions


def sanitize_label(label: np.ndarray, num_classes: int) -> tuple[np.ndarray, int]:
    """Map ids that are neither a class (``< num_classes``) nor 255 to 255.

    Returns:
        The int64 label and the number of pixels changed.
    """
    label = np.asarray(label, dtype=np.int64)
    invalid = ((label < 0) | (label >= num_classes)) & (label != VOID)
    count = int(np.count_nonzero(invalid))
    if count:
        label = np.where(invalid, VOID, label)
    return label, count


class SegmentationDataset(Dataset):
    """Base of the training datasets; subclasses implement the four ``load``/path methods.

    Augmentation is drawn from ``numpy.random.default_rng([seed, epoch, index])``: the same
    sample gets the same augmentation in any DataLoader worker, and :meth:`set_epoch` gives a
    new draw per epoch.
    """

    def __init__(
        self,
        *,
        name: str,
        num_classes: int,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        min_instance_area: int = 64,
        instance_classes: Sequence[int] | None = None,
    ) -> None:
        if num_classes <= 0 or num_classes > VOID:
            msg = f"{name}: num_classes must be in [1, {VOID}], got {num_classes!r}"
            raise ValueError(msg)
        self.dataset_name = name
        self.num_classes = num_classes
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.counters = DatasetCounters()
        self._augmenter = Augmenter(augment) if augment is not None else None
        self._instances = InstanceProvider(
            name,
            min_area=min_instance_area,
            classes=None if instance_classes is None else tuple(instance_classes),
        )
        self._warned_labels = False
        self._warned_reconstruction = False

    # -- for subclasses ------------------------------------------------------------------
    def __len__(self) -> int:
        raise NotImplementedError

    def load_raw(self, index: int) -> RawSample:
        """Read sample ``index`` from disk (no checks, no augmentation)."""
        raise NotImplementedError

    def load_image(self, index: int) -> np.ndarray | None:
        """``(H, W, 3)`` uint8 RGB frame of sample ``index`` (for SAM), or ``None``."""
        raise NotImplementedError

    def load_reconstruction(self, index: int) -> np.ndarray | None:
        """``(H, W, 3)`` uint8 well-exposed image of sample ``index``, or ``None``."""
        return None

    def load_sam_image(self, index: int) -> np.ndarray | None:
        """The image SAM segments: the well-exposed reconstruction where there is one.

        CACD runs SAM on EvLight's reconstruction because SAM, trained on clear images, gives
        poor masks on over- or under-exposed frames.
        """
        reconstruction = self.load_reconstruction(index)
        return reconstruction if reconstruction is not None else self.load_image(index)

    def instance_path(self, index: int) -> Path | None:
        """Where sample ``index``'s stored instance mask lives (or would), or ``None``."""
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draw of ``epoch`` (call once per epoch)."""
        self.epoch = int(epoch)

    def _sample_index(self, index: int) -> int:
        size = len(self)
        if index < 0:
            index += size
        if not 0 <= index < size:
            msg = f"{self.dataset_name}: index {index!r} out of range for {size} samples"
            raise IndexError(msg)
        return index

    def _check_label(self, raw: RawSample) -> np.ndarray:
        label, invalid = sanitize_label(raw.label, self.num_classes)
        if invalid:
            self.counters.invalid_label_pixels += invalid
            if not self._warned_labels:
                self._warned_labels = True
                bad = sorted(
                    {int(v) for v in np.unique(raw.label) if not (0 <= v < self.num_classes)}
                    - {VOID}
                )
                _LOG.warning(
                    "%s: %d label pixels of %r hold ids outside 0..%d (values %r); mapped to "
                    "255 (ignore); further cases are only counted (invalid_label_pixels)",
                    self.dataset_name,
                    invalid,
                    raw.source,
                    self.num_classes - 1,
                    bad[:10],
                )
        return label

    def _reconstruction(self, raw: RawSample, image: np.ndarray) -> np.ndarray:
        """The sample's well-exposed image as ``(3, H, W)`` float32, or the frame (logged once)."""
        if raw.reconstructed is not None:
            return np.asarray(raw.reconstructed).transpose(2, 0, 1).astype(np.float32) / 255.0
        self.counters.samples_without_reconstruction += 1
        if not self._warned_reconstruction:
            self._warned_reconstruction = True
            _LOG.warning(
                "%s: no well-exposed reconstruction for %r (and possibly others, counted in "
                "samples_without_reconstruction); JBCD's gradient map uses the frame itself. "
                "Put EvLight outputs in a reconstructed/ folder to follow the paper",
                self.dataset_name,
                raw.name,
            )
        return image

    def __getitem__(self, index: int) -> dict:
        index = self._sample_index(index)
        raw = self.load_raw(index)
        label = self._check_label(raw)
        instances, source = self._instances.get(label, raw.instances)
        self.counters.fallback_instances = self._instances.fallback_count
        if raw.image is None:
            self.counters.samples_without_image += 1
            image = np.zeros((3, *label.shape), dtype=np.float32)
        else:
            image = raw.image.transpose(2, 0, 1).astype(np.float32) / 255.0
        arrays = SampleArrays(
            image=image,
            events=np.asarray(raw.events, dtype=np.float32),
            label=label,
            instances=instances,
            reconstructed=self._reconstruction(raw, image),
        )
        try:
            arrays.check_shapes(raw.name)
        except ValueError as err:
            msg = f"{self.dataset_name}: sample {raw.name!r} ({raw.source}): {err}"
            raise DatasetError(msg) from None
        if self._augmenter is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            arrays = self._augmenter(arrays, rng)
        return to_sample(
            arrays,
            name=raw.name,
            condition=raw.condition,
            instances_source=source.value,
            has_image=raw.image is not None,
            has_reconstruction=raw.reconstructed is not None,
        )


def check_problems(
    counters: DatasetCounters, folder: Path, problems: dict[str, str], *, usable: int,
    what: str, empty_message: str,
) -> None:
    """Fail when nothing is usable; otherwise count the skipped items and warn once.

    Raises:
        DatasetError: ``usable`` is 0 (names up to five problems, or ``empty_message``).
    """
    if not usable:
        msg = f"no usable {what} in " + describe_problems(folder, problems)
        raise DatasetError(msg if problems else empty_message)
    if problems:
        counters.skipped_samples = len(problems)
        _LOG.warning(
            "skipping %d unusable %s: %s", len(problems), what, describe_problems(folder, problems)
        )


def describe_problems(folder: Path, problems: dict[str, str], limit: int = 5) -> str:
    """``'name (reason), ...'`` for the first ``limit`` problems, with a count of the rest."""
    shown = [f"{name} ({reason})" for name, reason in list(problems.items())[:limit]]
    rest = len(problems) - len(shown)
    more = f" and {rest} more" if rest > 0 else ""
    return f"{str(folder)!r}: {', '.join(shown)}{more}"
