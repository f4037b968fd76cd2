"""Simulated-rig samples as training dicts: wrapping, instances, the factory with a tiny cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evseg_ros.labels import VOID
from evseg_ros.train.datasets import (
    SAMPLE_KEYS,
    AugmentConfig,
    SimRigDataset,
    build_dataset,
    collate,
)
from evseg_ros.train.sim_dataset import SimSamples

HEIGHT, WIDTH = 10, 12


def tiny_samples() -> SimSamples:
    images = np.zeros((2, HEIGHT, WIDTH, 3), np.uint8)
    images[1, ..., 1] = 255
    events = np.zeros((2, 3, HEIGHT, WIDTH), np.float16)
    events[0, 0, 2, 3] = 7
    events[1, 2, 4, 5] = 0.25
    labels = np.zeros((2, HEIGHT, WIDTH), np.uint8)
    labels[:, :, 6:] = 8
    labels[1, 0, 0] = VOID
    labels[1, 9, 11] = 42  # not a DSEC_11 class
    return SimSamples(
        images=images,
        events=events,
        labels=labels,
        lighting=np.asarray(["normal", "night"]),
        seeds=np.asarray([4, 4], np.int64),
        times_us=np.asarray([100_000, 200_000], np.int64),
    )


def test_wraps_samples_into_the_common_dict() -> None:
    dataset = SimRigDataset(tiny_samples(), min_instance_area=1)
    assert len(dataset) == 2
    first, second = dataset[0], dataset[1]
    assert tuple(first) == SAMPLE_KEYS
    assert first["name"] == "sim_seed4_t100000" and second["condition"] == "night"
    assert first["events"].dtype == torch.float32 and float(first["events"][0, 2, 3]) == 7.0
    assert float(second["events"][2, 4, 5]) == 0.25
    assert float(second["image"][1, 0, 0]) == 1.0 and float(second["image"][0, 0, 0]) == 0.0
    assert first["has_image"] is True
    assert int(second["label"][0, 0]) == VOID and int(second["label"][9, 11]) == VOID
    assert dataset.counters.invalid_label_pixels == 1


def test_instances_fall_back_to_label_components_until_the_cache_stores_them() -> None:
    dataset = SimRigDataset(tiny_samples(), min_instance_area=1)
    sample = dataset[0]
    assert sample["instances_source"] == "fallback"
    ids = sample["instances"].numpy()
    assert len(np.unique(ids[:, :6])) == 1 and len(np.unique(ids[:, 6:])) == 1
    assert ids[0, 0] != ids[0, 6] and ids.min() > 0

    samples = tiny_samples()
    stored = np.zeros((2, HEIGHT, WIDTH), np.int32)
    stored[:, 3:5, 3:5] = 17
    samples.instances = stored  # the simulator renders ids; a cache that keeps them is used
    with_ids = SimRigDataset(samples)[1]
    assert with_ids["instances_source"] == "file"
    np.testing.assert_array_equal(with_ids["instances"].numpy(), stored[1])


def test_augmented_batches_keep_shapes() -> None:
    spec_crop = (8, 8)
    dataset = SimRigDataset(tiny_samples(), augment=AugmentConfig(crop_size=spec_crop), seed=1)
    batch = collate([dataset[0], dataset[1]])
    assert batch["image"].shape == (2, 3, *spec_crop)
    assert batch["instances"].shape == (2, *spec_crop)
    assert batch["condition"] == ["normal", "night"]


def test_factory_simulates_a_tiny_cache(tmp_path) -> None:
    pytest.importorskip("evseg_ros.sim")
    spec = {"type": "sim", "seeds": [3], "frames_per_seed": 1, "frame_stride": 1,
            "cache_dir": str(tmp_path), "augment": False}  # fmt: skip
    dataset = build_dataset(spec)
    assert len(dataset) == 1 and len(list(tmp_path.glob("*.npz"))) == 1
    sample = dataset[0]
    assert sample["image"].shape == (3, 240, 320) and sample["events"].shape == (3, 240, 320)
    assert sample["condition"] in ("normal", "night", "glare")
    assert float(sample["events"][:2].sum()) > 0  # the simulated window has events
    assert sample["instances_source"] == "file"  # the simulator's own object ids
    assert sample["instances"].shape == (240, 320) and int(sample["instances"].max()) > 0
    labels = np.unique(sample["label"].numpy())
    assert np.all((labels < 11) | (labels == VOID))
