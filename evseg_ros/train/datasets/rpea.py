"""Paired frame + event samples from a plain folder (the RPEA-style layout).

Layout of one split (``root/<split>/``); a sample is named by its image's file stem::

    root/
      train/                      # the split name, e.g. train / val / test
        images/<name>.png|.jpg    # RGB frame (8-bit), on the label grid
        events/<name>.npy         # precomputed event representation, (C, H, W) or (H, W, C)
        events/<name>.npz         # ...or raw events: arrays x, y, t (us), p (0/1), already on
                                  #    the frame's pixel grid; accumulated over the whole
                                  #    file's time span [min(t), max(t) + 1)
        labels/<name>.png         # class ids (8 or 16 bit, one channel), 255 = ignore
        instances/<name>.png      # optional: uint16 instance ids, 0 = none (SAM, see
                                  #    scripts/make_instance_masks.py); else the fallback
        reconstructed/<name>.png|.jpg  # optional: well-exposed RGB of the scene made from
                                  #    frame + events (e.g. an offline EvLight run); JBCD's
                                  #    gradient map and the SAM masks use it, else the frame
        conditions.csv            # optional: rows 'name,condition' (e.g. night, glare);
                                  #    samples not listed get 'unknown'

Every file of a sample has the same ``H x W``. When both ``.npy`` and ``.npz`` exist the
precomputed ``.npy`` is used. A ``.npy`` must have the channel count of the configured
representation (3 for the event frame), so a folder cannot silently feed the network a
different input than it was built for.

Incomplete samples (an image without label or events, a label or event file without image)
are listed when the dataset is built: if none is usable a :class:`DatasetError` names the folder
and up to five of them, otherwise they are skipped with one warning and counted in
``counters.skipped_samples``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evseg_ros.events.representations import Representation
from evseg_ros.train.datasets.augment import AugmentConfig
from evseg_ros.train.datasets.base import (
    UNKNOWN_CONDITION,
    RawSample,
    SegmentationDataset,
    check_problems,
    read_conditions,
    read_label,
    read_rgb,
)
from evseg_ros.train.datasets.errors import DatasetError
from evseg_ros.train.datasets.event_grid import GridAccumulator

__all__ = ["IMAGE_SUFFIXES", "FolderSample", "RpeaDataset", "scan_split"]

_LOG = logging.getLogger(__name__)

#: Image file endings accepted in ``images/`` (compared lower-case).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_RAW_EVENT_KEYS = ("x", "y", "t", "p")


@dataclass(frozen=True)
class FolderSample:
    """The files of one complete sample."""

    name: str
    image: Path
    events: Path
    label: Path
    instances: Path | None
    reconstructed: Path | None = None


def _stems(folder: Path, suffixes: Sequence[str]) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix.lower() in suffixes:
                found.setdefault(path.stem, []).append(path)
    return found


def scan_split(split_dir: Path) -> tuple[list[FolderSample], dict[str, str]]:
    """Pair the files of ``split_dir``; return the complete samples and the problems.

    Returns:
        Complete samples sorted by name, and ``{name: reason}`` for every incomplete one.

    Raises:
        DatasetError: ``split_dir`` or one of its required sub-folders does not exist.
    """
    if not split_dir.is_dir():
        msg = f"dataset split folder {str(split_dir)!r} does not exist"
        raise DatasetError(msg)
    for sub in ("images", "events", "labels"):
        if not (split_dir / sub).is_dir():
            msg = f"dataset split {str(split_dir)!r} has no {sub!r} folder"
            raise DatasetError(msg)
    images = _stems(split_dir / "images", IMAGE_SUFFIXES)
    events = _stems(split_dir / "events", (".npy", ".npz"))
    labels = _stems(split_dir / "labels", (".png",))
    instances = _stems(split_dir / "instances", (".png",))
    reconstructed = _stems(split_dir / "reconstructed", IMAGE_SUFFIXES)
    problems: dict[str, str] = {}
    samples: list[FolderSample] = []
    for name in sorted(images):
        if len(images[name]) > 1:
            problems[name] = f"several images: {[p.name for p in images[name]]}"
        elif name not in labels:
            problems[name] = "no labels/<name>.png"
        elif name not in events:
            problems[name] = "no events/<name>.npy or .npz"
        else:
            event_files = sorted(events[name], key=lambda p: p.suffix != ".npy")
            samples.append(
                FolderSample(
                    name=name,
                    image=images[name][0],
                    events=event_files[0],
                    label=labels[name][0],
                    instances=instances[name][0] if name in instances else None,
                    reconstructed=reconstructed[name][0] if name in reconstructed else None,
                )
            )
    for name in sorted((set(labels) | set(events)) - set(images)):
        problems[name] = "label/events without an image"
    return samples, problems


class RpeaDataset(SegmentationDataset):
    """Samples of one split of an RPEA-style folder (layout in the module docstring).

    Args:
        root: Dataset root (holding one folder per split).
        split: Split folder name.
        num_classes: Ids ``>= num_classes`` other than 255 become 255 (counted, warned once).
        augment: Augmentation, or ``None`` for the samples as stored.
        seed: Augmentation seed.
        representation: Event representation built from ``.npz`` raw events (and the channel
            count a ``.npy`` must have).
        bins: Temporal bins of the voxel grid.
        min_instance_area: Fallback instances: smallest component kept (pixels).
        instance_classes: Fallback instances: classes that form instances (``None`` = all).

    Raises:
        DatasetError: The split folder is missing or holds no complete sample.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        num_classes: int = 11,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        representation: str | Representation = Representation.EVENT_FRAME,
        bins: int = 3,
        min_instance_area: int = 64,
        instance_classes: Sequence[int] | None = None,
    ) -> None:
        self.split_dir = Path(root) / split
        super().__init__(
            name=f"rpea:{self.split_dir}",
            num_classes=num_classes,
            augment=augment,
            seed=seed,
            min_instance_area=min_instance_area,
            instance_classes=instance_classes,
        )
        self.representation = representation
        self.bins = bins
        self.channels = GridAccumulator(1, 1, representation, bins=bins).channels
        self.samples, self.problems = scan_split(self.split_dir)
        check_problems(
            self.counters, self.split_dir, self.problems, usable=len(self.samples),
            what="samples",
            empty_message=f"no images in {str(self.split_dir / 'images')!r}",
        )
        conditions_file = self.split_dir / "conditions.csv"
        self.conditions = read_conditions(conditions_file) if conditions_file.is_file() else {}
        self._accumulators: dict[tuple[int, int], GridAccumulator] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def load_image(self, index: int) -> np.ndarray:
        return read_rgb(self.samples[self._sample_index(index)].image)

    def load_reconstruction(self, index: int) -> np.ndarray | None:
        path = self.samples[self._sample_index(index)].reconstructed
        return None if path is None else read_rgb(path)

    def instance_path(self, index: int) -> Path:
        return self.split_dir / "instances" / f"{self.samples[self._sample_index(index)].name}.png"

    def load_raw(self, index: int) -> RawSample:
        sample = self.samples[index]
        label = read_label(sample.label)
        return RawSample(
            image=read_rgb(sample.image),
            events=self._read_events(sample.events, label.shape),
            label=label,
            instances=sample.instances,
            name=sample.name,
            condition=self.conditions.get(sample.name, UNKNOWN_CONDITION),
            source=str(sample.label),
            reconstructed=None if sample.reconstructed is None else read_rgb(sample.reconstructed),
        )

    @property
    def unmapped_events(self) -> int:
        """Raw events dropped because they were off the label grid (this process)."""
        return sum(acc.unmapped_events for acc in self._accumulators.values())

    def _read_events(self, path: Path, shape: tuple[int, int]) -> np.ndarray:
        try:
            if path.suffix == ".npy":
                return self._precomputed(np.load(path, allow_pickle=False), path, shape)
            with np.load(path, allow_pickle=False) as data:
                missing = [key for key in _RAW_EVENT_KEYS if key not in data.files]
                if missing:
                    msg = f"raw event file {str(path)!r} lacks arrays {missing!r} ({data.files})"
                    raise DatasetError(msg)
                arrays = {key: np.asarray(data[key]).reshape(-1) for key in _RAW_EVENT_KEYS}
        except (OSError, ValueError) as err:
            if isinstance(err, DatasetError):
                raise
            msg = f"cannot read event file {str(path)!r}: {err}"
            raise DatasetError(msg) from err
        return self._accumulate(arrays, path, shape)

    def _precomputed(self, frame: np.ndarray, path: Path, shape: tuple[int, int]) -> np.ndarray:
        if frame.ndim == 2 and frame.shape == shape:
            frame = frame[None]
        elif frame.ndim == 3 and frame.shape[1:] == shape:
            pass
        elif frame.ndim == 3 and frame.shape[:2] == shape:
            frame = frame.transpose(2, 0, 1)
        else:
            msg = (
                f"event frame {str(path)!r} has shape {frame.shape!r}; expected (C, H, W) or "
                f"(H, W, C) with (H, W) = {shape!r} of its label"
            )
            raise DatasetError(msg)
        if frame.shape[0] != self.channels:
            msg = (
                f"event frame {str(path)!r} has {frame.shape[0]} channels; the configured "
                f"representation {self.representation!r} has {self.channels}"
            )
            raise DatasetError(msg)
        return frame.astype(np.float32)

    def _accumulate(
        self, arrays: dict[str, np.ndarray], path: Path, shape: tuple[int, int]
    ) -> np.ndarray:
        lengths = {key: len(value) for key, value in arrays.items()}
        if len(set(lengths.values())) != 1:
            msg = f"raw event file {str(path)!r}: arrays differ in length: {lengths!r}"
            raise DatasetError(msg)
        accumulator = self._accumulators.get(shape)
        if accumulator is None:
            accumulator = GridAccumulator(*shape, self.representation, bins=self.bins)
            self._accumulators[shape] = accumulator
        t = arrays["t"].astype(np.int64)
        t_start, t_end = (int(t.min()), int(t.max()) + 1) if len(t) else (0, 1)
        return accumulator.build_arrays(arrays["x"], arrays["y"], t, arrays["p"], t_start, t_end)
