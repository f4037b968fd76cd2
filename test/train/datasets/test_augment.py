"""Augmentation keeps frame, events, labels and instances aligned; crop pads; determinism."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from evseg_ros.labels import VOID
from evseg_ros.train.datasets.augment import (
    AugmentConfig,
    Augmenter,
    crop,
    hflip,
    pad_to,
    scale,
)
from evseg_ros.train.datasets.sample import SampleArrays

HEIGHT, WIDTH = 24, 32


def coordinate_sample() -> SampleArrays:
    """Every array encodes its source pixel: image/events hold (y, x), instances a pixel id."""
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    image = np.stack([ys / HEIGHT, xs / WIDTH, np.full_like(ys, 0.5)])
    events = np.stack([ys, xs, np.zeros_like(ys)])
    label = ((ys // 4 + xs // 8) % 11).astype(np.int64)
    instances = (ys * WIDTH + xs + 1).astype(np.int64)
    # The reconstruction is a second RGB image of the same pixels: it must move with the frame.
    return SampleArrays(
        image=image, events=events, label=label, instances=instances, reconstructed=image.copy()
    )


def source_pixel(arrays: SampleArrays) -> tuple[np.ndarray, np.ndarray]:
    """Source (y, x) of each output pixel according to the instance ids."""
    ids = arrays.instances - 1
    return ids // WIDTH, ids % WIDTH


def assert_aligned(
    arrays: SampleArrays, image_tolerance: float, events_tolerance: float = 0.0
) -> None:
    valid = arrays.instances > 0
    assert valid.any()
    y, x = source_pixel(arrays)
    expected_label = coordinate_sample().label[y[valid], x[valid]]
    np.testing.assert_array_equal(arrays.label[valid], expected_label)
    assert np.max(np.abs(arrays.events[0][valid] - y[valid])) <= events_tolerance
    assert np.max(np.abs(arrays.events[1][valid] - x[valid])) <= events_tolerance
    image_y = arrays.image[0][valid] * HEIGHT
    image_x = arrays.image[1][valid] * WIDTH
    assert np.max(np.abs(image_y - y[valid])) <= image_tolerance
    assert np.max(np.abs(image_x - x[valid])) <= image_tolerance


@pytest.mark.parametrize("seed", range(6))
def test_crop_and_flip_keep_every_modality_on_the_same_pixel(seed: int) -> None:
    augmenter = Augmenter(AugmentConfig(scale_range=(1.0, 1.0), crop_size=(16, 20)))
    out = augmenter(coordinate_sample(), np.random.default_rng(seed))
    assert out.shape == (16, 20)
    assert_aligned(out, image_tolerance=1e-4)


@pytest.mark.parametrize("seed", range(6))
def test_scaled_samples_stay_aligned(seed: int) -> None:
    """Labels/instances share the nearest grid exactly; image and events within 1/2 px.

    The image is bilinear, and shrunk events are area averages, whose centre is within half a
    pixel of the nearest source pixel. Pixels at the border are excluded: bilinear clamps there
    while nearest does not.
    """
    augmenter = Augmenter(AugmentConfig(scale_range=(0.5, 2.0), crop_size=(16, 20)))
    out = augmenter(coordinate_sample(), np.random.default_rng(seed))
    y, x = source_pixel(out)
    interior = (y > 0) & (y < HEIGHT - 1) & (x > 0) & (x < WIDTH - 1)
    np.testing.assert_allclose(out.reconstructed, out.image, atol=1e-6)
    out = dataclasses.replace(out, instances=np.where(interior, out.instances, 0))
    assert_aligned(out, image_tolerance=0.5 + 1e-4, events_tolerance=0.5 + 1e-4)


def test_scale_changes_size_keeps_counts_integer_up_and_their_mean_down() -> None:
    sample = coordinate_sample()
    counts = np.random.default_rng(0).integers(0, 5, size=(3, HEIGHT, WIDTH)).astype(np.float32)
    sample = dataclasses.replace(sample, events=counts)
    for factor in (0.5, 0.75, 1.5, 2.0):
        out = scale(sample, factor)
        assert out.shape == (round(HEIGHT * factor), round(WIDTH * factor))
        assert out.image.shape[0] == 3
        if factor > 1:
            np.testing.assert_array_equal(out.events, np.round(out.events))
            assert set(np.unique(out.events)) <= set(np.unique(counts))
    # shrinking averages over each output pixel's area: every event still counts
    halved = scale(sample, 0.5).events
    blocks = counts[:, : 2 * halved.shape[1], : 2 * halved.shape[2]]
    expected = blocks.reshape(3, halved.shape[1], 2, halved.shape[2], 2).mean(axis=(2, 4))
    np.testing.assert_allclose(halved, expected, rtol=1e-6)
    single = np.zeros_like(counts)
    single[1, 5, 7] = 4.0  # one pixel's events survive a shrink that nearest would miss
    assert scale(dataclasses.replace(sample, events=single), 0.5).events[
        1
    ].sum() == pytest.approx(1.0)
    doubled = scale(sample, 2.0)
    np.testing.assert_array_equal(doubled.events[:, ::2, ::2], counts)
    np.testing.assert_array_equal(doubled.label[1::2, 1::2], sample.label)


def test_flip_twice_is_identity_and_once_mirrors() -> None:
    sample = coordinate_sample()
    once = hflip(sample)
    np.testing.assert_array_equal(once.events[1][:, 0], WIDTH - 1)
    np.testing.assert_array_equal(once.label, sample.label[:, ::-1])
    twice = hflip(once)
    for name in ("image", "events", "label", "instances"):
        np.testing.assert_array_equal(getattr(twice, name), getattr(sample, name))


def test_crop_pads_label_with_ignore_and_the_rest_with_zero() -> None:
    sample = coordinate_sample()
    augmenter = Augmenter(AugmentConfig(scale_range=(1.0, 1.0), crop_size=(30, 40), hflip=False))
    out = augmenter(sample, np.random.default_rng(0))
    assert out.shape == (30, 40)
    np.testing.assert_array_equal(out.label[:HEIGHT, :WIDTH], sample.label)
    assert np.all(out.label[HEIGHT:] == VOID) and np.all(out.label[:, WIDTH:] == VOID)
    assert np.all(out.image[:, HEIGHT:] == 0) and np.all(out.events[:, :, WIDTH:] == 0)
    assert np.all(out.instances[HEIGHT:] == 0)


def test_pad_then_crop_functions() -> None:
    padded = pad_to(coordinate_sample(), 10, 40)
    assert padded.shape == (HEIGHT, 40)
    window = crop(padded, 2, 3, 5, 6)
    np.testing.assert_array_equal(window.events[0][:, 0], np.arange(2, 7))
    with pytest.raises(ValueError, match="outside"):
        crop(padded, 20, 0, 5, 6)


def test_same_seed_same_result_different_seed_differs() -> None:
    augmenter = Augmenter(AugmentConfig(crop_size=(16, 16)))
    first = augmenter(coordinate_sample(), np.random.default_rng(7))
    again = augmenter(coordinate_sample(), np.random.default_rng(7))
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.instances, again.instances)
    others = [augmenter(coordinate_sample(), np.random.default_rng(s)) for s in range(8, 12)]
    assert any(not np.array_equal(o.instances, first.instances) for o in others)


@pytest.mark.parametrize(
    "kwargs",
    [{"scale_range": (0.0, 1.0)}, {"scale_range": (2.0, 1.0)}, {"crop_size": (0, 4)}],
)
def test_bad_config_raises(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="must"):
        AugmentConfig(**kwargs)
