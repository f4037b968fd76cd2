"""Instance masks: the connected-component fallback, the PNG round trip, the provider."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from evseg_ros.labels import VOID
from evseg_ros.train.datasets.errors import DatasetError
from evseg_ros.train.datasets.instances import (
    InstanceProvider,
    InstanceSource,
    instances_from_labels,
    read_instance_file,
    write_instance_file,
)


def blobs_label() -> np.ndarray:
    label = np.zeros((12, 12), dtype=np.int64)  # class 0 everywhere ...
    label[1:4, 1:4] = 1  # class 1, blob A (9 px)
    label[1:4, 7:10] = 1  # class 1, blob B (9 px), separate from A
    label[8:11, 1:5] = 2  # class 2 (12 px)
    label[10, 10] = 2  # class 2, 1 px: below min_area
    label[6:8, 6:12] = VOID  # ignore
    return label


def test_fallback_splits_each_class_into_components() -> None:
    label = blobs_label()
    ids = instances_from_labels(label, min_area=2)
    assert np.all(ids[label == VOID] == 0)
    assert ids[10, 10] == 0  # too small
    a, b, c = ids[2, 2], ids[2, 8], ids[9, 2]
    assert len({a, b, c}) == 3 and min(a, b, c) > 0
    assert np.all(ids[1:4, 1:4] == a) and np.all(ids[1:4, 7:10] == b)
    assert np.all(ids[8:11, 1:5] == c)
    background = ids[label == 0]
    assert len(np.unique(background)) == 1 and background[0] > 0  # class 0 is one component
    assert set(np.unique(ids)) == {0, 1, 2, 3, 4}


def test_fallback_uses_8_connectivity() -> None:
    label = np.full((4, 4), 5, dtype=np.int64)
    label[0, 0] = label[1, 1] = label[2, 2] = 3  # diagonal chain: one component
    ids = instances_from_labels(label, classes=[3])
    assert ids[0, 0] == ids[1, 1] == ids[2, 2] == 1
    assert np.count_nonzero(ids) == 3  # class 5 excluded by ``classes``


def test_fallback_empty_label_gives_empty_mask() -> None:
    ids = instances_from_labels(np.full((5, 6), VOID, dtype=np.int64))
    assert ids.dtype == np.int64 and not ids.any()


def test_png_round_trip_keeps_16_bit_ids(tmp_path) -> None:
    ids = np.zeros((6, 7), dtype=np.int64)
    ids[1:3, 2:5] = 40_000
    ids[4, 6] = 2
    path = tmp_path / "deep" / "mask.png"
    write_instance_file(path, ids)
    np.testing.assert_array_equal(read_instance_file(path), ids)
    with pytest.raises(ValueError, match="65535"):
        write_instance_file(tmp_path / "big.png", ids + 70_000)


def test_colour_instance_file_is_rejected(tmp_path) -> None:
    path = tmp_path / "rgb.png"
    cv2.imwrite(str(path), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DatasetError, match="single-channel"):
        read_instance_file(path)
    with pytest.raises(DatasetError, match="cannot read"):
        read_instance_file(tmp_path / "missing.png")


def test_provider_prefers_file_and_warns_once_for_fallback(tmp_path, caplog) -> None:
    label = blobs_label()
    provider = InstanceProvider("toy", min_area=2)
    stored = np.arange(label.size).reshape(label.shape) % 3
    path = tmp_path / "ids.png"
    write_instance_file(path, stored)
    ids, source = provider.get(label, path)
    assert source is InstanceSource.FILE
    np.testing.assert_array_equal(ids, stored)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            ids, source = provider.get(label, None)
    assert source is InstanceSource.FALLBACK
    np.testing.assert_array_equal(ids, instances_from_labels(label, min_area=2))
    assert provider.fallback_count == 3
    assert sum("connected components" in r.getMessage() for r in caplog.records) == 1


def test_provider_rejects_mask_of_other_size(tmp_path) -> None:
    path = tmp_path / "small.png"
    write_instance_file(path, np.zeros((3, 3), np.int64))
    with pytest.raises(DatasetError, match="instance mask shape"):
        InstanceProvider("toy").get(blobs_label(), path)
