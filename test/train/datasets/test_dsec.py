"""DSEC-Semantic loader on small synthetic sequences in the official file layout."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch

from evseg_ros.train.datasets import DatasetError, DsecSemanticDataset, build_dataset
from evseg_ros.train.datasets.dsec import read_window

GRID_H, GRID_W = 8, 10  # rectified event grid (480 x 640 in DSEC)
LABEL_H = 6  # labels cover the top rows (440 in DSEC)
T_OFFSET = 1_000_000  # absolute us of event time 0
LABEL_TIMES = (T_OFFSET + 60_000, T_OFFSET + 130_000)


def shift_map() -> np.ndarray:
    """rectify_map: x -> x + 1.4 (rounds to x + 1), y -> y; column 9 goes off the grid."""
    ys, xs = np.mgrid[0:GRID_H, 0:GRID_W].astype(np.float32)
    return np.stack([xs + 1.4, ys], axis=-1)


def hand_events() -> np.ndarray:
    """(x, y, t relative us, p), sorted by t."""
    rows = [
        (0, 0, 5_000, 1),  # before the first window [10 ms, 60 ms)
        (2, 1, 9_999, 1),  # 1 us before the first window
        (2, 1, 10_000, 1),  # first window, -> rectified (3, 1)
        (2, 1, 20_500, 1),  # -> (3, 1)
        (2, 1, 30_000, 0),  # -> (3, 1) OFF
        (9, 2, 40_000, 1),  # rectifies to x = 10: off the grid
        (4, 7, 45_000, 1),  # rectifies to (5, 7): below the label rows
        (0, 5, 59_999, 0),  # -> (1, 5) OFF, last of window 1
        (0, 5, 60_000, 1),  # at the label time: excluded (window is [start, end))
        (5, 3, 100_000, 1),  # second window [80 ms, 130 ms), -> (6, 3)
        (5, 3, 129_000, 1),
    ]
    return np.array(rows, dtype=np.int64)


def write_events(path: Path, events: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = events[:, 2]
    milliseconds = int(t[-1] // 1000) + 2
    ms_to_idx = np.searchsorted(t, np.arange(milliseconds) * 1000, side="left")
    with h5py.File(path, "w") as data:
        data["events/x"] = events[:, 0].astype(np.uint16)
        data["events/y"] = events[:, 1].astype(np.uint16)
        data["events/t"] = t.astype(np.uint32)
        data["events/p"] = events[:, 3].astype(np.uint8)
        data["ms_to_idx"] = ms_to_idx.astype(np.uint64)
        data["t_offset"] = np.int64(T_OFFSET)


def make_sequence(split_dir: Path, name: str, *, images: tuple[int, int] | None = None) -> Path:
    folder = split_dir / name
    write_events(folder / "events" / "left" / "events.h5", hand_events())
    with h5py.File(folder / "events" / "left" / "rectify_map.h5", "w") as data:
        data["rectify_map"] = shift_map()
    labels = folder / "11classes"
    labels.mkdir(parents=True)
    for index in range(len(LABEL_TIMES)):
        label = np.full((LABEL_H, GRID_W), index + 1, np.uint8)
        cv2.imwrite(str(labels / f"{index:06d}.png"), label)
    (folder / f"{name}_semantic_timestamps.txt").write_text(
        "\n".join(str(t) for t in LABEL_TIMES) + "\n"
    )
    if images is not None:
        frames = folder / "images" / "left" / "rectified"
        frames.mkdir(parents=True)
        for index in range(2):
            cv2.imwrite(str(frames / f"{index:06d}.png"), np.full((*images, 3), 90, np.uint8))
        (folder / "images" / "timestamps.txt").write_text(
            f"{LABEL_TIMES[0] - 1_000}\n{LABEL_TIMES[1] + 20_000}\n"
        )
    return folder


def test_event_counts_per_pixel_match_the_hand_built_case(tmp_path) -> None:
    make_sequence(tmp_path / "train", "zurich_city_00_a")
    dataset = DsecSemanticDataset(tmp_path, "train", window_ms=50)
    assert len(dataset) == 2
    sample = dataset[0]
    events = sample["events"].numpy()
    assert events.shape == (3, LABEL_H, GRID_W)
    on = np.zeros((LABEL_H, GRID_W))
    off = np.zeros((LABEL_H, GRID_W))
    on[1, 3] = 2
    off[1, 3] = 1
    off[5, 1] = 1
    np.testing.assert_array_equal(events[0], on)
    np.testing.assert_array_equal(events[1], off)
    # latest event time over [10 000, 60 000): (3, 1) at 30 000, (1, 5) at 59 999
    assert events[2, 1, 3] == pytest.approx(20_000 / 50_000)
    assert events[2, 5, 1] == pytest.approx(49_999 / 50_000)
    assert np.count_nonzero(events[2]) == 2
    assert dataset.unmapped_events == 2  # off the grid, and below the label rows
    second = dataset[1]["events"].numpy()
    assert second[0, 3, 6] == 2 and second[0].sum() == 2 and second[1].sum() == 0
    assert sample["name"] == "zurich_city_00_a/000000"
    assert sample["label"].shape == (LABEL_H, GRID_W) and int(sample["label"][0, 0]) == 1


def test_read_window_reads_exactly_the_window(tmp_path) -> None:
    path = tmp_path / "events.h5"
    write_events(path, hand_events())
    window = read_window(path, T_OFFSET + 60_000, 50_000)
    assert window.t.tolist() == [10_000, 20_500, 30_000, 40_000, 45_000, 59_999]
    assert (window.t_start_us, window.t_end_us) == (10_000, 60_000)
    mid = read_window(path, T_OFFSET + 20_600, 20_000)  # neither end on a millisecond
    assert mid.t.tolist() == [5_000, 9_999, 10_000, 20_500]
    np.testing.assert_array_equal(mid.x, [0, 2, 2, 2])
    np.testing.assert_array_equal(mid.p, [1, 1, 1, 1])
    early = read_window(path, T_OFFSET + 3_000, 50_000)  # window starts before the file
    assert len(early.t) == 0 and early.t_start_us == -47_000
    late = read_window(path, T_OFFSET + 500_000, 450_000)  # past the last millisecond
    assert late.t.tolist() == [59_999, 60_000, 100_000, 129_000]


def test_event_only_samples_have_zero_image_and_flag(tmp_path) -> None:
    make_sequence(tmp_path / "train", "seq")
    sample = DsecSemanticDataset(tmp_path, "train")[0]
    assert sample["has_image"] is False
    assert sample["image"].shape == (3, LABEL_H, GRID_W) and not sample["image"].any()


def test_aligned_frames_are_used_within_tolerance(tmp_path) -> None:
    make_sequence(tmp_path / "train", "seq", images=(GRID_H, GRID_W))
    dataset = DsecSemanticDataset(tmp_path, "train", image_tolerance_us=5_000)
    first, second = dataset[0], dataset[1]
    assert first["has_image"] is True and first["image"].shape == (3, LABEL_H, GRID_W)
    assert float(first["image"][0, 0, 0]) == pytest.approx(90 / 255)
    assert second["has_image"] is False  # nearest frame is 20 ms away
    assert dataset.frames_out_of_tolerance == 1


def test_unaligned_dsec_frames_are_refused(tmp_path) -> None:
    make_sequence(tmp_path / "train", "seq", images=(12, 16))
    with pytest.raises(DatasetError, match=r"\(12, 16\).*use_images=False"):
        DsecSemanticDataset(tmp_path, "train")
    assert DsecSemanticDataset(tmp_path, "train", use_images=False)[0]["has_image"] is False


def test_broken_sequences_are_skipped_or_reported(tmp_path, caplog) -> None:
    split = tmp_path / "train"
    make_sequence(split, "good")
    bad = make_sequence(split, "bad")
    (bad / "bad_semantic_timestamps.txt").write_text(f"{LABEL_TIMES[0]}\n")
    (split / "no_events").mkdir()
    with caplog.at_level(logging.WARNING):
        dataset = DsecSemanticDataset(tmp_path, "train")
    assert len(dataset) == 2 and dataset.counters.skipped_samples == 2
    assert "2 labels but" in dataset.problems["bad"]
    assert "events.h5" in dataset.problems["no_events"]
    assert "skipping 2 unusable DSEC sequences" in caplog.text
    with pytest.raises(DatasetError, match="no usable DSEC sequence"):
        DsecSemanticDataset(tmp_path, "train", sequences=["bad", "no_events"])
    with pytest.raises(ValueError, match="11 or 19"):
        DsecSemanticDataset(tmp_path, "train", num_classes=12)


def test_semantic_subfolder_layout_and_conditions(tmp_path) -> None:
    folder = make_sequence(tmp_path / "train", "seq")
    (folder / "semantic").mkdir()
    (folder / "11classes").rename(folder / "semantic" / "11classes")
    (folder / "seq_semantic_timestamps.txt").rename(folder / "semantic" / "timestamps.txt")
    (tmp_path / "train" / "conditions.csv").write_text("seq,night\n")
    dataset = DsecSemanticDataset(tmp_path, "train")
    assert len(dataset) == 2 and dataset[0]["condition"] == "night"


def test_factory_builds_dsec_with_crop(tmp_path) -> None:
    make_sequence(tmp_path / "train", "seq")
    spec = {"type": "dsec", "root": str(tmp_path), "crop_size": [4, 4], "window_ms": 50}
    dataset = build_dataset(spec)
    sample = dataset[0]
    assert sample["events"].shape == (3, 4, 4) and sample["label"].shape == (4, 4)
    assert sample["events"].dtype == torch.float32
