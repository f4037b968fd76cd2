"""RPEA-style folder dataset: file pairing, event files, label checks, instances, the factory."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from evseg_ros.events.event_frame import EventFrameBuilder
from evseg_ros.labels import VOID
from evseg_ros.train.datasets import (
    SAMPLE_KEYS,
    DatasetError,
    RpeaDataset,
    build_dataset,
    collate,
    write_instance_file,
)
from evseg_ros.train.datasets.event_grid import identity_calibration, structured_events

HEIGHT, WIDTH = 6, 8


def write_image(path: Path, value: int) -> np.ndarray:
    rgb = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    rgb[..., 0] = value
    rgb[..., 2] = 255 - value
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return rgb


def write_label(path: Path, label: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), label.astype(np.uint8))


def raw_events() -> dict[str, np.ndarray]:
    """Two ON at (x=2, y=1), one OFF at (x=0, y=3), one off the grid (x=20)."""
    return {
        "x": np.array([2, 0, 2, 20]),
        "y": np.array([1, 3, 1, 1]),
        "t": np.array([1_000, 1_500, 3_000, 2_000]),
        "p": np.array([1, 0, 1, 1]),
    }


def make_split(root: Path, split: str = "train") -> Path:
    """Three complete samples: .npy (C,H,W), .npy (H,W,C), .npz raw events."""
    folder = root / split
    label = np.zeros((HEIGHT, WIDTH), np.int64)
    label[:, 4:] = 5
    label[0, 0] = VOID
    counts = np.arange(3 * HEIGHT * WIDTH, dtype=np.float32).reshape(3, HEIGHT, WIDTH)
    for index, name in enumerate(("a", "b", "c")):
        write_image(folder / "images" / f"{name}.png", 40 * index)
        write_label(folder / "labels" / f"{name}.png", label)
    (folder / "events").mkdir(parents=True)
    np.save(folder / "events" / "a.npy", counts)
    np.save(folder / "events" / "b.npy", counts.transpose(1, 2, 0))
    np.savez(folder / "events" / "c.npz", **raw_events())
    (folder / "conditions.csv").write_text("name,condition\na,Night\nb,glare\n")
    return folder


def test_samples_have_the_trainer_keys_and_types(tmp_path) -> None:
    make_split(tmp_path)
    dataset = RpeaDataset(tmp_path, "train")
    assert len(dataset) == 3
    sample = dataset[0]
    assert tuple(sample) == SAMPLE_KEYS
    assert sample["image"].dtype == torch.float32 and sample["image"].shape == (3, HEIGHT, WIDTH)
    assert float(sample["image"][0, 0, 0]) == 0.0 and float(sample["image"][2, 0, 0]) == 1.0
    assert sample["events"].dtype == torch.float32 and sample["events"].shape == (3, HEIGHT, WIDTH)
    assert sample["label"].dtype == torch.int64 and int(sample["label"][0, 0]) == VOID
    assert sample["instances"].dtype == torch.int64
    assert sample["instances_source"] == "fallback"
    assert sample["has_image"] is True
    assert [dataset[i]["condition"] for i in range(3)] == ["night", "glare", "unknown"]
    assert [dataset[i]["name"] for i in range(3)] == ["a", "b", "c"]


def test_precomputed_frames_in_both_layouts_are_raw_counts(tmp_path) -> None:
    make_split(tmp_path)
    dataset = RpeaDataset(tmp_path, "train")
    expected = np.arange(3 * HEIGHT * WIDTH, dtype=np.float32).reshape(3, HEIGHT, WIDTH)
    np.testing.assert_array_equal(dataset[0]["events"].numpy(), expected)
    np.testing.assert_array_equal(dataset[1]["events"].numpy(), expected)


def test_raw_events_are_accumulated_over_the_file_span(tmp_path) -> None:
    make_split(tmp_path)
    dataset = RpeaDataset(tmp_path, "train")
    frame = dataset[2]["events"].numpy()
    assert frame[0, 1, 2] == 2 and frame[1, 3, 0] == 1
    assert frame[0].sum() == 2 and frame[1].sum() == 1  # x=20 is off the grid
    assert dataset.unmapped_events == 1
    # span [1000, 3001): latest event at (2, 1) is t=3000, at (0, 3) t=1500
    assert frame[2, 1, 2] == pytest.approx(2000 / 2001)
    assert frame[2, 3, 0] == pytest.approx(500 / 2001)
    # the pipeline's builder gives the same frame for the on-grid events
    events = raw_events()
    packed = structured_events(events["x"][:3], events["y"][:3], events["t"][:3], events["p"][:3])
    builder = EventFrameBuilder(identity_calibration(HEIGHT, WIDTH))
    np.testing.assert_allclose(frame, builder.build(packed, 1_000, 3_001))


def test_voxel_representation_from_raw_events_and_channel_check(tmp_path) -> None:
    make_split(tmp_path)
    voxel = RpeaDataset(tmp_path, "train", representation="voxel_grid", bins=4)
    assert voxel[2]["events"].shape == (4, HEIGHT, WIDTH)
    with pytest.raises(DatasetError, match="3 channels"):
        voxel[0]  # the stored .npy has 3 channels, the voxel grid 4


def test_invalid_label_ids_become_ignore_with_counter_and_one_warning(tmp_path, caplog) -> None:
    folder = make_split(tmp_path)
    label = np.full((HEIGHT, WIDTH), 3, np.int64)
    label[0, :3] = 11  # not a class of an 11-class set
    label[1, 0] = 200
    write_label(folder / "labels" / "a.png", label)
    write_label(folder / "labels" / "b.png", label)
    dataset = RpeaDataset(tmp_path, "train", num_classes=11)
    with caplog.at_level(logging.WARNING):
        first = dataset[0]["label"].numpy()
        dataset[1]
    assert np.all(first[0, :3] == VOID) and first[1, 0] == VOID and first[2, 2] == 3
    assert dataset.counters.invalid_label_pixels == 8
    warnings = [r.getMessage() for r in caplog.records if "outside 0..10" in r.getMessage()]
    assert len(warnings) == 1 and "[11, 200]" in warnings[0]


def test_incomplete_samples_are_skipped_with_warning(tmp_path, caplog) -> None:
    folder = make_split(tmp_path)
    (folder / "labels" / "b.png").unlink()
    (folder / "events" / "c.npz").unlink()
    np.save(folder / "events" / "orphan.npy", np.zeros((3, HEIGHT, WIDTH)))
    with caplog.at_level(logging.WARNING):
        dataset = RpeaDataset(tmp_path, "train")
    assert [s.name for s in dataset.samples] == ["a"]
    assert dataset.counters.skipped_samples == 3
    assert set(dataset.problems) == {"b", "c", "orphan"}
    message = " ".join(r.getMessage() for r in caplog.records)
    assert "skipping 3 unusable samples" in message and "no labels/<name>.png" in message


def test_nothing_usable_raises_naming_folder_and_five_names(tmp_path) -> None:
    folder = tmp_path / "val"
    for index in range(7):
        write_image(folder / "images" / f"s{index}.png", 0)
    (folder / "labels").mkdir()
    (folder / "events").mkdir()
    with pytest.raises(DatasetError) as info:
        RpeaDataset(tmp_path, "val")
    message = str(info.value)
    assert str(folder) in message and "s0 (no labels" in message and "s4" in message
    assert "s5" not in message and "and 2 more" in message
    with pytest.raises(DatasetError, match="does not exist"):
        RpeaDataset(tmp_path, "test")
    (tmp_path / "empty" / "images").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no 'events' folder"):
        RpeaDataset(tmp_path, "empty")


def test_mismatched_event_frame_names_the_file(tmp_path) -> None:
    folder = make_split(tmp_path)
    np.save(folder / "events" / "a.npy", np.zeros((3, HEIGHT + 1, WIDTH)))
    with pytest.raises(DatasetError, match=r"a\.npy.*shape"):
        RpeaDataset(tmp_path, "train")[0]


def test_stored_instances_are_used(tmp_path) -> None:
    folder = make_split(tmp_path)
    ids = np.zeros((HEIGHT, WIDTH), np.int64)
    ids[2:4, 1:6] = 300
    write_instance_file(folder / "instances" / "b.png", ids)
    dataset = RpeaDataset(tmp_path, "train")
    sample = dataset[1]
    assert sample["instances_source"] == "file"
    np.testing.assert_array_equal(sample["instances"].numpy(), ids)
    assert dataset.instance_path(1) == folder / "instances" / "b.png"
    assert dataset[0]["instances_source"] == "fallback"
    assert dataset.counters.fallback_instances == 1


def test_factory_augments_and_batches(tmp_path) -> None:
    make_split(tmp_path)
    spec = {"type": "rpea", "root": str(tmp_path), "split": "train", "num_classes": 11,
            "crop_size": [4, 4], "seed": 3}  # fmt: skip
    dataset = build_dataset(spec)
    assert dataset.augment is not None and dataset.augment.crop_size == (4, 4)
    batch = next(iter(DataLoader(dataset, batch_size=3, collate_fn=collate)))
    assert batch["image"].shape == (3, 3, 4, 4) and batch["events"].shape == (3, 3, 4, 4)
    assert batch["label"].shape == (3, 4, 4) and batch["label"].dtype == torch.int64
    assert batch["has_image"].dtype == torch.bool and batch["has_image"].all()
    assert batch["name"] == ["a", "b", "c"] and batch["condition"][0] == "night"
    again = build_dataset(spec)
    torch.testing.assert_close(again[2]["events"], dataset[2]["events"])
    val = build_dataset({**spec, "split": "train", "augment": False})
    assert val[0]["image"].shape == (3, HEIGHT, WIDTH)


def test_factory_rejects_bad_specs(tmp_path) -> None:
    with pytest.raises(ValueError, match="crop_sise"):
        build_dataset({"type": "rpea", "root": str(tmp_path), "crop_sise": [4, 4]})
    with pytest.raises(ValueError, match="needs 'root'"):
        build_dataset({"type": "rpea"})
    with pytest.raises(ValueError, match="one of"):
        build_dataset({"type": "kitti"})


def test_collate_rejects_mixed_samples() -> None:
    with pytest.raises(ValueError, match="no samples"):
        collate([])
    with pytest.raises(ValueError, match="keys"):
        collate([{"a": torch.zeros(1)}, {"b": torch.zeros(1)}])


def test_reconstructed_folder_is_used_and_its_absence_is_counted_and_warned_once(
    tmp_path, caplog
) -> None:
    folder = make_split(tmp_path)
    clean = write_image(folder / "reconstructed" / "a.png", 200)  # only sample a has one
    dataset = RpeaDataset(tmp_path, "train", num_classes=11)
    with caplog.at_level(logging.WARNING):
        samples = [dataset[i] for i in range(3)]
    assert [s["has_reconstruction"] for s in samples] == [True, False, False]
    expected = torch.from_numpy(clean.transpose(2, 0, 1).astype(np.float32) / 255.0)
    torch.testing.assert_close(samples[0]["reconstructed"], expected)
    assert not torch.equal(samples[0]["reconstructed"], samples[0]["image"])
    # Without one the frame stands in, counted per sample and warned once.
    assert torch.equal(samples[1]["reconstructed"], samples[1]["image"])
    assert dataset.counters.samples_without_reconstruction == 2
    warnings = [r for r in caplog.records if "reconstructed/" in r.getMessage()]
    assert len(warnings) == 1
    # SAM segments the well-exposed image where there is one.
    np.testing.assert_array_equal(dataset.load_sam_image(0), clean)
    np.testing.assert_array_equal(dataset.load_sam_image(1), dataset.load_image(1))
