"""DSEC-Semantic: labelled event windows of the DSEC driving sequences.

Layout assumed, i.e. the official downloads (``train_events.zip``,
``train_semantic_segmentation.zip``, optionally ``train_images.zip``) extracted into one folder
per sequence (https://dsec.ifi.uzh.ch/data-format/)::

    root/
      train/                                      # the split name (train / test)
        conditions.csv                            # optional: 'sequence,condition' rows
        zurich_city_00_a/                         # one folder per sequence
          events/left/events.h5                   # events/{x,y,t,p}, ms_to_idx, t_offset
          events/left/rectify_map.h5              # rectify_map (480, 640, 2) float32
          11classes/000000.png ...                # label ids (or 19classes/), 640 x 440
          zurich_city_00_a_semantic_timestamps.txt  # one absolute us time per label image
          images/left/rectified/000000.png ...    # optional frames
          images/timestamps.txt                   # optional: one absolute us time per frame
          instances/000000.png ...                # optional: uint16 ids named like labels

Also accepted: the labels under ``semantic/`` or ``semantic/left/`` of the sequence, with the
timestamps file named ``<sequence>_semantic_timestamps.txt``, ``semantic_timestamps.txt`` or
``timestamps.txt`` beside the ``11classes`` folder (the layouts public loaders use).

Events of a label are those of the ``window_ms`` before its timestamp: the label time minus
``t_offset`` gives event time, ``ms_to_idx`` narrows the read to the milliseconds needed and a
binary search cuts the window exactly, so only that slice is read from the file. Event pixels go
through ``rectify_map`` (rounded to the nearest pixel) onto the rectified left-event grid that
the labels are drawn on; the labels cover its top ``440`` rows, so events outside the label's
``H x W`` are dropped and counted like events that rectify off the sensor.

DSEC-Semantic is event-only: the DSEC frames are 1440 x 1080 on the *frame* camera's rectified
grid, not the event camera's, so they are used only when they already have the label's (or the
event grid's) size, e.g. after warping them onto the event camera; other frames make the
constructor raise (set ``use_images=False``). Without frames ``image`` is zeros and
``has_image`` is False.

Real DSEC files are Blosc-compressed: reading them needs the ``hdf5plugin`` package.
"""

from __future__ import annotations

import contextlib
import logging
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
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

with contextlib.suppress(ImportError):  # registers the Blosc filter of real DSEC files
    import hdf5plugin  # noqa: F401

__all__ = [
    "DsecSemanticDataset",
    "DsecSequence",
    "EventSlice",
    "find_sequence",
    "png_size",
    "read_window",
    "rectify",
]

_LOG = logging.getLogger(__name__)

_LABEL_PARENTS = (".", "semantic", "semantic/left")
_TIMESTAMP_NAMES = (
    "{sequence}_semantic_timestamps.txt",
    "semantic_timestamps.txt",
    "timestamps.txt",
)


@dataclass(frozen=True)
class DsecSequence:
    """Files of one DSEC sequence and its label times.

    Attributes:
        name: Sequence name (its folder name).
        folder: The sequence folder.
        events: ``events.h5``.
        rectify_map: ``rectify_map.h5``.
        labels: Label PNGs in time order.
        label_times_us: Absolute µs timestamp of each label.
        images: Frame PNGs in time order (empty when not used).
        image_times_us: Absolute µs timestamp of each frame.
    """

    name: str
    folder: Path
    events: Path
    rectify_map: Path
    labels: tuple[Path, ...]
    label_times_us: np.ndarray
    images: tuple[Path, ...] = ()
    image_times_us: np.ndarray | None = None


@dataclass(frozen=True)
class EventSlice:
    """Events of one window, event-camera pixels, event time (µs, relative to ``t_offset``)."""

    x: np.ndarray
    y: np.ndarray
    t: np.ndarray
    p: np.ndarray
    t_start_us: int
    t_end_us: int


def _read_times(path: Path) -> np.ndarray:
    try:
        return np.atleast_1d(np.loadtxt(path, dtype=np.int64, comments="#", ndmin=1))
    except (OSError, ValueError) as err:
        msg = f"cannot read timestamps {str(path)!r}: {err}"
        raise DatasetError(msg) from err


def find_sequence(folder: Path, num_classes: int, *, use_images: bool) -> DsecSequence:
    """Locate the files of one sequence folder.

    Raises:
        DatasetError: A required file is missing or labels and timestamps disagree; the message
            names the file or folder.
    """
    events = folder / "events" / "left" / "events.h5"
    rectify_map = folder / "events" / "left" / "rectify_map.h5"
    for path in (events, rectify_map):
        if not path.is_file():
            msg = f"missing {str(path)!r}"
            raise DatasetError(msg)
    label_dir = next(
        (
            folder / parent / f"{num_classes}classes"
            for parent in _LABEL_PARENTS
            if (folder / parent / f"{num_classes}classes").is_dir()
        ),
        None,
    )
    if label_dir is None:
        msg = f"no {num_classes}classes label folder in {str(folder)!r}"
        raise DatasetError(msg)
    stamps = [label_dir.parent / n.format(sequence=folder.name) for n in _TIMESTAMP_NAMES]
    stamp_file = next((path for path in stamps if path.is_file()), None)
    if stamp_file is None:
        msg = f"no label timestamps file in {str(label_dir.parent)!r} (tried {_TIMESTAMP_NAMES})"
        raise DatasetError(msg)
    labels = tuple(sorted(label_dir.glob("*.png")))
    times = _read_times(stamp_file)
    if len(labels) != len(times):
        msg = (
            f"{str(label_dir)!r} has {len(labels)} labels but {str(stamp_file)!r} "
            f"{len(times)} times"
        )
        raise DatasetError(msg)
    images: tuple[Path, ...] = ()
    image_times = None
    image_dir = folder / "images" / "left" / "rectified"
    if use_images and image_dir.is_dir():
        images = tuple(sorted(image_dir.glob("*.png")))
        image_times = _read_times(folder / "images" / "timestamps.txt")
        if len(images) != len(image_times):
            msg = (
                f"{str(image_dir)!r} has {len(images)} frames but images/timestamps.txt "
                f"{len(image_times)} times"
            )
            raise DatasetError(msg)
    return DsecSequence(
        folder.name, folder, events, rectify_map, labels, times, images, image_times
    )


def png_size(path: Path) -> tuple[int, int] | None:
    """``(height, width)`` from a PNG header without decoding it, or ``None`` if not a PNG."""
    with path.open("rb") as stream:
        header = stream.read(24)
    if len(header) < 24 or header[:8] != b"\x89PNG\r\n\x1a\n" or header[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", header[16:24])
    return int(height), int(width)


def _unaligned_message(
    path: Path, frame: tuple[int, ...], grid: tuple[int, ...], label: tuple[int, ...]
) -> str:
    return (
        f"frame {str(path)!r} is {tuple(frame)!r}, not on the event grid {tuple(grid)!r} or the "
        f"label grid {tuple(label)!r}: DSEC frames must be warped onto the event camera "
        "first, or set use_images=False"
    )


def _ms_index(ms_to_idx: h5py.Dataset, ms: int, size: int) -> int:
    """Index of the first event at or after millisecond ``ms`` (clamped to the file)."""
    if ms <= 0:
        return 0
    if ms >= len(ms_to_idx):
        return size
    return int(ms_to_idx[ms])


def read_window(path: Path, t_end_abs_us: int, window_us: int) -> EventSlice:
    """Read the events of ``[t_end - window_us, t_end)`` (absolute µs) from a DSEC ``events.h5``.

    ``ms_to_idx[ms]`` is the first event with ``t >= ms * 1000``, so the events between the
    indices of ``floor(start / 1000)`` and ``ceil(end / 1000)`` contain the window; a binary
    search on that slice's times cuts it exactly, and only then are x, y and p read.

    Raises:
        DatasetError: The file cannot be read (names it; a missing Blosc filter names
            ``hdf5plugin``).
    """
    try:
        with h5py.File(path, "r") as data:
            t_offset = int(np.asarray(data["t_offset"][()]).reshape(-1)[0])
            end = int(t_end_abs_us) - t_offset
            start = end - int(window_us)
            times = data["events/t"]
            ms_to_idx = data["ms_to_idx"]
            first = _ms_index(ms_to_idx, math.floor(start / 1000), len(times))
            last = _ms_index(ms_to_idx, math.ceil(end / 1000), len(times))
            t = np.asarray(times[first:last], dtype=np.int64)
            lo = first + int(np.searchsorted(t, start, side="left"))
            hi = first + int(np.searchsorted(t, end, side="left"))
            return EventSlice(
                x=np.asarray(data["events/x"][lo:hi], dtype=np.int64),
                y=np.asarray(data["events/y"][lo:hi], dtype=np.int64),
                t=t[lo - first : hi - first],
                p=np.asarray(data["events/p"][lo:hi]),
                t_start_us=start,
                t_end_us=end,
            )
    except (OSError, KeyError) as err:
        hint = " (real DSEC files need the hdf5plugin package)" if "filter" in str(err) else ""
        msg = f"cannot read events from {str(path)!r}: {err}{hint}"
        raise DatasetError(msg) from err


def _read_rectify_map(path: Path) -> np.ndarray:
    try:
        with h5py.File(path, "r") as data:
            mapping = np.asarray(data["rectify_map"], dtype=np.float32)
    except (OSError, KeyError) as err:
        msg = f"cannot read rectify_map from {str(path)!r}: {err}"
        raise DatasetError(msg) from err
    if mapping.ndim != 3 or mapping.shape[2] != 2:
        msg = f"{str(path)!r}: rectify_map must be (H, W, 2), got {mapping.shape!r}"
        raise DatasetError(msg)
    return mapping


def rectify(x: np.ndarray, y: np.ndarray, mapping: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rectified pixel of each event, rounded to nearest; -1 for pixels off the map."""
    height, width = mapping.shape[:2]
    inside = (x >= 0) & (y >= 0) & (x < width) & (y < height)
    rx = np.full(len(x), -1, dtype=np.int64)
    ry = np.full(len(x), -1, dtype=np.int64)
    coords = mapping[y[inside], x[inside]]
    rx[inside] = np.rint(coords[:, 0]).astype(np.int64)
    ry[inside] = np.rint(coords[:, 1]).astype(np.int64)
    return rx, ry


class DsecSemanticDataset(SegmentationDataset):
    """Labelled event windows of DSEC-Semantic (layout in the module docstring).

    Args:
        root: Folder holding one folder per split.
        split: Split folder name.
        num_classes: 11 or 19 (selects ``11classes`` / ``19classes``).
        window_ms: Event window before each label time.
        sequences: Sequence names to use; ``None`` = every sequence folder of the split.
        use_images: Use frames where present (they must be on the event grid, see above).
        image_tolerance_us: Largest |frame time - label time| accepted; else no image.
        augment: Augmentation, or ``None``.
        seed: Augmentation seed.
        representation: Event representation.
        bins: Voxel-grid bins.
        min_instance_area: Fallback instances: smallest component kept.
        instance_classes: Fallback instances: classes that form instances.

    Raises:
        DatasetError: The split folder is missing, or no sequence is usable (names up to five
            and why); unusable sequences among usable ones are skipped with a warning.
        ValueError: ``num_classes`` is not 11 or 19, or ``window_ms`` is not positive.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        num_classes: int = 11,
        window_ms: float = 50.0,
        sequences: Sequence[str] | None = None,
        use_images: bool = True,
        image_tolerance_us: int = 5_000,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        representation: str | Representation = Representation.EVENT_FRAME,
        bins: int = 3,
        min_instance_area: int = 64,
        instance_classes: Sequence[int] | None = None,
    ) -> None:
        if num_classes not in (11, 19):
            msg = f"DSEC-Semantic has 11 or 19 classes, got num_classes={num_classes!r}"
            raise ValueError(msg)
        if window_ms <= 0:
            msg = f"window_ms must be positive, got {window_ms!r}"
            raise ValueError(msg)
        self.split_dir = Path(root) / split
        super().__init__(
            name=f"dsec:{self.split_dir}",
            num_classes=num_classes,
            augment=augment,
            seed=seed,
            min_instance_area=min_instance_area,
            instance_classes=instance_classes,
        )
        if not self.split_dir.is_dir():
            msg = f"DSEC split folder {str(self.split_dir)!r} does not exist"
            raise DatasetError(msg)
        self.window_us = round(window_ms * 1000)
        self.image_tolerance_us = image_tolerance_us
        self.representation = representation
        self.bins = bins
        names = (
            sorted(p.name for p in self.split_dir.iterdir() if p.is_dir())
            if sequences is None
            else list(sequences)
        )
        self.sequences: list[DsecSequence] = []
        self.problems: dict[str, str] = {}
        for name in names:
            try:
                self.sequences.append(
                    find_sequence(self.split_dir / name, num_classes, use_images=use_images)
                )
            except DatasetError as err:
                self.problems[name] = str(err)
        self.index = [
            (s, i) for s, sequence in enumerate(self.sequences) for i in range(len(sequence.labels))
        ]
        check_problems(
            self.counters, self.split_dir, self.problems, usable=len(self.index),
            what="DSEC sequences",
            empty_message=f"no labelled sequence in {str(self.split_dir)!r}",
        )
        self._check_frame_sizes()
        conditions_file = self.split_dir / "conditions.csv"
        self.conditions = read_conditions(conditions_file) if conditions_file.is_file() else {}
        self._rectify_maps: dict[Path, np.ndarray] = {}
        self._accumulators: dict[tuple[int, int], GridAccumulator] = {}
        self.frames_out_of_tolerance = 0

    def __len__(self) -> int:
        return len(self.index)

    @property
    def unmapped_events(self) -> int:
        """Events that rectified off the label grid (this process)."""
        return sum(acc.unmapped_events for acc in self._accumulators.values())

    def instance_path(self, index: int) -> Path:
        sequence, i = self.index[self._sample_index(index)]
        entry = self.sequences[sequence]
        return entry.folder / "instances" / f"{entry.labels[i].stem}.png"

    def load_image(self, index: int, shape: tuple[int, int] | None = None) -> np.ndarray | None:
        """The frame nearest the label time (on the label grid), or ``None``.

        Raises:
            DatasetError: The frame is not on the label's or the event grid (unaligned DSEC
                frames; warp them first or set ``use_images=False``).
        """
        sequence_index, i = self.index[self._sample_index(index)]
        sequence = self.sequences[sequence_index]
        if not sequence.images:
            return None
        gaps = np.abs(sequence.image_times_us - sequence.label_times_us[i])
        nearest = int(np.argmin(gaps))
        if gaps[nearest] > self.image_tolerance_us:
            self.frames_out_of_tolerance += 1
            return None
        image = read_rgb(sequence.images[nearest])
        if shape is None:
            shape = read_label(sequence.labels[i]).shape
        grid = self._rectify_map(sequence).shape[:2]
        if image.shape[:2] != shape and image.shape[:2] != grid:
            path = sequence.images[nearest]
            raise DatasetError(_unaligned_message(path, image.shape[:2], grid, shape))
        return image[: shape[0], : shape[1]]

    def _check_frame_sizes(self) -> None:
        """Refuse unaligned frames when the dataset is built, not at the first sample.

        Reads only PNG headers and the rectify map's shape.
        """
        for sequence in self.sequences:
            if not sequence.images:
                continue
            frame = png_size(sequence.images[0])
            label = png_size(sequence.labels[0])
            if frame is None or label is None:
                continue  # not PNG: checked per sample in load_image
            try:
                with h5py.File(sequence.rectify_map, "r") as data:
                    grid = tuple(data["rectify_map"].shape[:2])
            except (OSError, KeyError) as err:
                msg = f"cannot read rectify_map from {str(sequence.rectify_map)!r}: {err}"
                raise DatasetError(msg) from err
            if frame not in (label, grid):
                raise DatasetError(_unaligned_message(sequence.images[0], frame, grid, label))

    def _rectify_map(self, sequence: DsecSequence) -> np.ndarray:
        mapping = self._rectify_maps.get(sequence.rectify_map)
        if mapping is None:
            mapping = _read_rectify_map(sequence.rectify_map)
            self._rectify_maps[sequence.rectify_map] = mapping
        return mapping

    def load_raw(self, index: int) -> RawSample:
        sequence_index, i = self.index[index]
        sequence = self.sequences[sequence_index]
        label = read_label(sequence.labels[i])
        mapping = self._rectify_map(sequence)
        if label.shape[0] > mapping.shape[0] or label.shape[1] > mapping.shape[1]:
            msg = (
                f"label {str(sequence.labels[i])!r} is {label.shape!r}, larger than the "
                f"rectified event grid {mapping.shape[:2]!r}"
            )
            raise DatasetError(msg)
        window = read_window(sequence.events, int(sequence.label_times_us[i]), self.window_us)
        rx, ry = rectify(window.x, window.y, mapping)
        accumulator = self._accumulators.get(label.shape)
        if accumulator is None:
            accumulator = GridAccumulator(*label.shape, self.representation, bins=self.bins)
            self._accumulators[label.shape] = accumulator
        events = accumulator.build_arrays(
            rx, ry, window.t, window.p, window.t_start_us, window.t_end_us
        )
        instances = self.instance_path(index)
        return RawSample(
            image=self.load_image(index, label.shape),
            events=events,
            label=label,
            instances=instances if instances.is_file() else None,
            name=f"{sequence.name}/{sequence.labels[i].stem}",
            condition=self.conditions.get(sequence.name, UNKNOWN_CONDITION),
            source=str(sequence.labels[i]),
        )
