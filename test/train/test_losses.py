"""CACD losses (paper Eq. 1-8): hand-computed values, distillation direction, empty cases, totals.

Every expected number is worked out in the test with plain ``math`` from small inputs whose
unit vectors and distributions are known, following each equation as written.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from evseg_ros.model.cacd import CACDConfig, CACDNet
from evseg_ros.train.losses import (
    CACDLoss,
    CACDLossWeights,
    InstanceWeights,
    InvalidLabelError,
    NonFiniteLossError,
    ProjectionHead,
    boundary_distillation_loss,
    cacd_total_loss,
    check_finite,
    content_distillation_loss,
    count_invalid_labels,
    exposure_region,
    extreme_exposure_mask,
    gradient_intensity_map,
    instance_features,
    instance_weights,
    inter_domain_loss,
    intra_domain_loss,
    project_features,
    segmentation_cross_entropy,
    weighted_loss_parts,
)
from evseg_ros.train.training_module import TrainingModule, gradient_norm

SQRT20 = math.sqrt(20.0)


def pixels(*vectors: tuple[float, ...]) -> torch.Tensor:
    """Features of one image with one row: ``(1, C, 1, len(vectors))``."""
    return torch.tensor(vectors, dtype=torch.float32).T.reshape(1, len(vectors[0]), 1, -1)


def instances(*images: list[tuple[float, ...]], dim: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Instance vectors per image, padded: ``(batch, K, dim)`` and the ``(batch, K)`` mask."""
    count = max(len(rows) for rows in images)
    vectors = torch.zeros(len(images), count, dim)
    valid = torch.zeros(len(images), count, dtype=torch.bool)
    for index, rows in enumerate(images):
        for row, vector in enumerate(rows):
            vectors[index, row] = torch.tensor(vector)
            valid[index, row] = True
    return vectors, valid


# ------------------------------------------------------------------ cross-entropy (Eq. 8's CE)


def test_cross_entropy_hand_value_skips_ignored_pixels():
    logits = pixels((0.0, 0.0), (1.0, 0.0), (7.0, -3.0))
    labels = torch.tensor([[[0, 1, 255]]])
    expected = (math.log(2.0) + math.log(1.0 + math.e)) / 2  # third pixel ignored
    loss = segmentation_cross_entropy(logits, labels)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_cross_entropy_all_ignored_is_zero_with_gradient():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    labels = torch.full((2, 4, 4), 255)
    loss = segmentation_cross_entropy(logits, labels)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_cross_entropy_rejects_labels_outside_class_set():
    logits = torch.zeros(1, 3, 2, 2)
    labels = torch.tensor([[[0, 3], [255, -1]]])
    assert count_invalid_labels(labels, 3) == 2
    with pytest.raises(InvalidLabelError, match=r"2 pixel\(s\) outside \[0, 3\)") as caught:
        segmentation_cross_entropy(logits, labels)
    assert isinstance(caught.value, ValueError)
    assert caught.value.bad_values == (-1, 3)


def test_cross_entropy_rejects_size_mismatch():
    with pytest.raises(ValueError, match="upsample"):
        segmentation_cross_entropy(torch.zeros(1, 3, 2, 2), torch.zeros(1, 4, 4, dtype=torch.long))


# ------------------------------------------------------------------ Eq. 1


def test_eq1_projection_is_per_position_and_unit_length():
    torch.manual_seed(0)
    head = ProjectionHead(8, 16)
    features = torch.randn(2, 8, 3, 4)
    projected = project_features(features, head)
    assert projected.shape == (2, 16, 3, 4)
    torch.testing.assert_close(projected.norm(dim=1), torch.ones(2, 3, 4))
    # Changing one position changes that position's output only.
    changed = features.clone()
    changed[1, :, 2, 3] += 5.0
    difference = (project_features(changed, head) - projected).abs().sum(dim=1)
    assert difference[1, 2, 3] > 0
    difference[1, 2, 3] = 0
    assert torch.equal(difference, torch.zeros(2, 3, 4))


# ------------------------------------------------------------------ Eq. 2-3


def test_instance_weights_are_covered_fractions_largest_first_and_capped():
    masks = torch.zeros(1, 4, 4, dtype=torch.long)
    masks[0, :, :2] = 7  # left half: 8 pixels
    masks[0, 0:2, 2:4] = 3  # top-right cell: 4 pixels
    masks[0, 3, 3] = 9  # one pixel of the bottom-right cell
    weights = instance_weights(masks, (2, 2))
    assert weights.instance_ids.tolist() == [[7, 3, 9]]  # by size: 8, 4, 1
    assert weights.valid.tolist() == [[True, True, True]]
    torch.testing.assert_close(weights.weights[0, 0], torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    torch.testing.assert_close(weights.weights[0, 1], torch.tensor([[0.0, 1.0], [0.0, 0.0]]))
    # Smaller than a cell, still counted: a quarter of the bottom-right cell.
    torch.testing.assert_close(weights.weights[0, 2], torch.tensor([[0.0, 0.0], [0.0, 0.25]]))

    capped = instance_weights(masks, (2, 2), max_instances=2)
    assert capped.instance_ids.tolist() == [[7, 3]]


def test_instance_weights_pad_images_with_fewer_instances():
    masks = torch.zeros(3, 2, 2, dtype=torch.long)
    masks[0] = torch.tensor([[1, 2], [2, 0]])
    masks[1, 0, 0] = 4
    weights = instance_weights(masks, (2, 2))
    assert weights.weights.shape == (3, 2, 2, 2)
    assert weights.valid.tolist() == [[True, True], [True, False], [False, False]]
    assert weights.instance_ids.tolist() == [[2, 1], [4, 0], [0, 0]]
    assert torch.equal(weights.weights[1, 1], torch.zeros(2, 2))
    with pytest.raises(ValueError, match="negative ids"):
        instance_weights(-masks, (2, 2))


def test_eq2_eq3_instance_vector_is_the_renormalised_weighted_mean():
    # Three positions: (1, 0), (0, 1), (0.6, 0.8); instance weights 1, 1, 0.5.
    features = pixels((1.0, 0.0), (0.0, 1.0), (0.6, 0.8))
    weights = InstanceWeights(
        weights=torch.tensor([[[[1.0, 1.0, 0.5]]]]),
        valid=torch.tensor([[True]]),
        instance_ids=torch.tensor([[1]]),
    )
    # mean = (1 + 0.3, 1 + 0.4) / 2.5 = (0.52, 0.56); unit: / sqrt(0.52^2 + 0.56^2)
    norm = math.hypot(0.52, 0.56)
    pooled = instance_features(features, weights)
    torch.testing.assert_close(pooled, torch.tensor([[[0.52 / norm, 0.56 / norm]]]))


# ------------------------------------------------------------------ Eq. 4


def test_eq4_intra_hand_value_sums_ordered_pairs_and_averages_images_with_two():
    event, valid = instances(
        [(1.0, 0.0), (0.0, 1.0), (0.6, 0.8)],
        [(1.0, 0.0)],  # one instance: no pair, not in the mean
        [(1.0, 0.0), (-1.0, 0.0)],
    )
    image, _ = instances(
        [(0.0, 1.0), (0.8, 0.6), (-1.0, 0.0)],
        [(0.0, 1.0)],
        [(0.0, 1.0), (0.0, 1.0)],
    )
    # image 0: events 0, 0.6, 0.8; frames 0.6, 0, -0.8 (each pair twice: i != j is ordered)
    first = 2 * (math.exp(0) + math.exp(0.6) + math.exp(0.8)) + 2 * (
        math.exp(0.6) + math.exp(0) + math.exp(-0.8)
    )
    # image 2: events -1, frames 1
    third = 2 * math.exp(-1) + 2 * math.exp(1)
    loss = intra_domain_loss(image, event, valid)
    assert loss.item() == pytest.approx((first + third) / 2, rel=1e-6)


def test_eq4_without_pairs_is_zero_and_connected():
    event, valid = instances([(1.0, 0.0)], [])
    event.requires_grad_()
    image = torch.zeros_like(event, requires_grad=True)
    loss = intra_domain_loss(image, event, valid)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(event.grad, torch.zeros_like(event))
    assert torch.equal(image.grad, torch.zeros_like(image))


# ------------------------------------------------------------------ Eq. 5


def test_eq5_inter_hand_value_event_anchors_same_image_negatives_sum_over_instances():
    event, valid = instances([(1.0, 0.0), (0.6, 0.8)], [(0.0, 1.0)], [])
    image, _ = instances([(1.0, 0.0), (0.0, 1.0)], [(1.0, 0.0)], [])
    tau = 0.5
    # image 0, anchor 1: dots 1 (own), 0; anchor 2: dots 0.6, 0.8 (own)
    anchor_1 = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + math.exp(0 / tau)))
    anchor_2 = -math.log(math.exp(0.8 / tau) / (math.exp(0.6 / tau) + math.exp(0.8 / tau)))
    # image 1: one instance, the softmax over one entry is 1 -> 0 (but it is in the mean);
    # image 2 has no instance and is left out.
    expected = (anchor_1 + anchor_2 + 0.0) / 2
    loss = inter_domain_loss(image, event, valid, temperature=tau)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # One direction: frame anchors would give another value.
    swapped = inter_domain_loss(event, image, valid, temperature=tau)
    assert swapped.item() != pytest.approx(expected, rel=1e-3)


def test_eq5_trains_both_branches_and_is_zero_without_instances():
    event, valid = instances([(1.0, 0.0), (0.6, 0.8)])
    image, _ = instances([(1.0, 0.0), (0.0, 1.0)])
    event.requires_grad_()
    image.requires_grad_()
    inter_domain_loss(image, event, valid).backward()
    assert event.grad.abs().sum() > 0 and image.grad.abs().sum() > 0

    empty = torch.zeros(2, 0, 4, requires_grad=True)
    loss = inter_domain_loss(empty, empty, torch.zeros(2, 0, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0
    with pytest.raises(ValueError, match="temperature must be positive"):
        inter_domain_loss(image, event, valid, temperature=0.0)


# ------------------------------------------------------------------ Eq. 6


def step_image(contrast: float = 1.0) -> torch.Tensor:
    """3x3 grey image whose rows read 0, 0, c: a vertical edge between columns 1 and 2."""
    return torch.tensor([0.0, 0.0, contrast]).expand(1, 3, 3, 3).clone()


def test_gradient_intensity_map_uses_a_constant_scale():
    # Replicated border, each row 0 0 0 1 1: Sobel x = 0, 4, 4; Sobel y = 0; / sqrt(20).
    expected = torch.tensor([0.0, 4 / SQRT20, 4 / SQRT20]).expand(1, 1, 3, 3)
    torch.testing.assert_close(gradient_intensity_map(step_image()), expected)
    # Half the contrast, half the weight (no per-image maximum).
    torch.testing.assert_close(gradient_intensity_map(step_image(0.5)), expected / 2)
    # A flat image has no edge (convolution rounding leaves ~1e-8, not scaled up).
    flat = gradient_intensity_map(torch.full((2, 3, 5, 5), 0.4))
    torch.testing.assert_close(flat, torch.zeros(2, 1, 5, 5), rtol=0, atol=1e-6)
    # The steepest possible patch reaches exactly 1: gx = 4, gy = 2 at its centre.
    steepest = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    centre = gradient_intensity_map(steepest.expand(1, 3, 3, 3))[0, 0, 1, 1]
    assert centre.item() == pytest.approx(1.0, abs=1e-6)


def test_eq6_boundary_hand_value_is_an_l1_norm_per_image():
    edge = 4 / SQRT20
    reconstructed = torch.cat([step_image(), torch.full((1, 3, 3, 3), 0.5)])  # 2nd: no edge
    image_features = torch.zeros(2, 2, 3, 3)
    event_features = torch.zeros(2, 2, 3, 3)
    event_features[:, 0] = torch.tensor([1.0, 2.0, 3.0])  # per column
    event_features[:, 1] = -1.0
    # image 0: M = 0, e, e per column. Channel 0: 3 rows * (2e + 3e); channel 1: 3 rows * 2e
    first = 3 * (2 * edge + 3 * edge) + 3 * (edge + edge)
    loss = boundary_distillation_loss(image_features, event_features, reconstructed)
    assert loss.item() == pytest.approx((first + 0.0) / 2, rel=1e-6)
    # On a 1x1 grid the map is area-pooled: M = (0 + e + e) / 3; |0 - 3| * M = 2e.
    pooled = boundary_distillation_loss(
        torch.zeros(1, 1, 1, 1), torch.full((1, 1, 1, 1), 3.0), step_image()
    )
    assert pooled.item() == pytest.approx(2 * edge, rel=1e-6)


def test_eq6_teaches_the_image_branch_from_the_detached_event_branch():
    image_features = torch.randn(1, 2, 3, 3, requires_grad=True)
    event_features = torch.randn(1, 2, 3, 3, requires_grad=True)
    boundary_distillation_loss(image_features, event_features, step_image()).backward()
    assert event_features.grad is None
    assert image_features.grad.abs().sum() > 0
    # Column 0 has no edge: no gradient there.
    assert torch.equal(image_features.grad[..., 0], torch.zeros(1, 2, 3))


# ------------------------------------------------------------------ Eq. 7


def exposure_image() -> torch.Tensor:
    """1x3 RGB image with V = 0.05 (dark), 0.95 (bright), 0.5 (normal)."""
    return torch.tensor([0.05, 0.95, 0.5]).expand(1, 3, 1, 3).clone()


def test_extreme_exposure_mask_thresholds_are_strict_and_region_needs_a_majority():
    image = torch.tensor([0.1, 0.15, 0.5, 0.9, 0.95]).expand(1, 3, 1, 5)
    mask = extreme_exposure_mask(image, low=0.15, high=0.9)
    assert mask[0, 0, 0].tolist() == [True, False, False, False, True]
    frame = torch.full((1, 3, 2, 4), 0.5)
    frame[0, :, :, 0] = 0.0  # left cell: 2 of 4 pixels dark -> not a majority
    frame[0, :, 0, 2:] = 1.0  # right cell: 3 of 4 pixels bright -> in R
    frame[0, :, 1, 3] = 1.0
    assert exposure_region(frame, (1, 2)).tolist() == [[[False, True]]]


def test_eq7_content_hand_value_negative_mutual_information_of_class_pairs():
    identity = nn.Identity()
    log3 = math.log(3.0)
    # Two class channels; positions 0, 1 are extreme, position 2 is normal (outside R: its
    # very different scores must not matter).
    image_features = pixels((log3, 0.0), (0.0, log3), (9.0, -9.0))
    event_features = pixels((log3, 0.0), (0.0, log3), (-9.0, 9.0))
    # Spatial softmax per channel over R: p_0 = (3/4, 1/4), p_1 = (1/4, 3/4) in both branches.
    # J(c, c') = sum_x p_c^evt(x) p_c'^img(x): J00 = J11 = 9/16 + 1/16, J01 = J10 = 6/16;
    # normalised: 10/32 and 6/32; marginals 1/2.
    on, off = 10 / 32, 6 / 32
    mutual_information = 2 * on * math.log(on / 0.25) + 2 * off * math.log(off / 0.25)
    loss = content_distillation_loss(
        image_features, event_features, exposure_image(), image_head=identity, event_head=identity
    )
    assert loss.item() == pytest.approx(-mutual_information, rel=1e-5)


def test_eq7_hand_value_with_different_branches_and_an_image_without_region():
    identity = nn.Identity()
    log3 = math.log(3.0)
    image_features = torch.zeros(2, 2, 1, 3)
    event_features = torch.zeros(2, 2, 1, 3)
    image_features[0, 1, 0, 1] = log3  # frame: p_0 = (1/2, 1/2), p_1 = (1/4, 3/4)
    event_features[0, 0, 0, 0] = log3  # events: p_0 = (3/4, 1/4), p_1 = (1/4, 3/4)
    event_features[0, 1, 0, 1] = log3
    frames = torch.cat([exposure_image(), torch.full((1, 3, 1, 3), 0.5)])  # image 1: no R
    # J before normalising (rows: event class, columns: frame class):
    #   J00 = 3/4*1/2 + 1/4*1/2 = 1/2, J01 = 3/4*1/4 + 1/4*3/4 = 3/8,
    #   J10 = 1/4*1/2 + 3/4*1/2 = 1/2, J11 = 1/4*1/4 + 3/4*3/4 = 5/8; sum 2.
    joint = [[0.25, 0.1875], [0.25, 0.3125]]
    rows = [0.4375, 0.5625]
    columns = [0.5, 0.5]
    mutual_information = sum(
        joint[c][k] * math.log(joint[c][k] / (rows[c] * columns[k]))
        for c in range(2)
        for k in range(2)
    )
    loss = content_distillation_loss(
        image_features, event_features, frames, image_head=identity, event_head=identity
    )
    assert loss.item() == pytest.approx(-mutual_information, rel=1e-5)  # mean over image 0


def test_eq7_teaches_the_image_branch_from_the_detached_event_branch():
    torch.manual_seed(0)
    image_head, event_head = nn.Conv2d(4, 3, 1), nn.Conv2d(4, 3, 1)
    image_features = torch.randn(1, 4, 1, 3, requires_grad=True)
    event_features = torch.randn(1, 4, 1, 3, requires_grad=True)
    content_distillation_loss(
        image_features,
        event_features,
        exposure_image(),
        image_head=image_head,
        event_head=event_head,
    ).backward()
    assert event_features.grad is None
    assert image_features.grad[..., :2].abs().sum() > 0
    # The normal pixel is outside the region: no gradient.
    assert torch.equal(image_features.grad[..., 2], torch.zeros(1, 4, 1))
    # Both content heads learn (the event head reads the detached features).
    assert image_head.weight.grad.abs().sum() > 0
    assert event_head.weight.grad.abs().sum() > 0


def test_eq7_without_extreme_pixels_is_zero_and_connected():
    head = nn.Conv2d(4, 3, 1)
    image_features = torch.randn(2, 4, 2, 2, requires_grad=True)
    loss = content_distillation_loss(
        image_features,
        torch.randn(2, 4, 2, 2),
        torch.full((2, 3, 8, 8), 0.5),
        image_head=head,
        event_head=head,
    )
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(image_features.grad, torch.zeros_like(image_features))
    assert torch.equal(head.weight.grad, torch.zeros_like(head.weight))


# ------------------------------------------------------------------ Eq. 8


def test_paper_weights_and_validation():
    weights = CACDLossWeights()
    assert (weights.intra, weights.inter, weights.boundary, weights.content) == (
        0.0005,
        0.01,
        0.001,
        0.001,
    )
    assert (weights.temperature, weights.exposure_low, weights.exposure_high) == (0.1, 0.15, 0.9)
    with pytest.raises(ValueError, match="temperature must be positive, got 0"):
        CACDLossWeights(temperature=0)
    with pytest.raises(ValueError, match=r"low=0\.9, high=0\.5"):
        CACDLossWeights(exposure_low=0.9, exposure_high=0.5)
    with pytest.raises(ValueError, match=r"CACDLossWeights\.inter"):
        CACDLossWeights(inter=-1.0)


def test_eq8_total_weights_each_part():
    parts = {
        "ce": torch.tensor(1.0),
        "intra": torch.tensor(2.0),
        "inter": torch.tensor(3.0),
        "boundary": torch.tensor(4.0),
        "content": torch.tensor(-5.0),
    }
    expected = 1 + 0.0005 * 2 + 0.01 * 3 + 0.001 * 4 + 0.001 * (-5)
    assert cacd_total_loss(parts, CACDLossWeights()).item() == pytest.approx(expected, abs=1e-6)
    summands = weighted_loss_parts(parts, CACDLossWeights())
    assert summands["inter"].item() == pytest.approx(0.03)
    only_ce = {"ce": torch.tensor(1.5), "inter": torch.tensor(2.0)}
    assert cacd_total_loss(only_ce, CACDLossWeights()).item() == pytest.approx(1.52, abs=1e-6)
    with pytest.raises(ValueError, match="unknown loss part 'dice'"):
        cacd_total_loss({"ce": torch.tensor(1.0), "dice": torch.tensor(1.0)}, CACDLossWeights())


# ------------------------------------------------------------------ CACDLoss

STAGES = (4, 6)
CLASSES = 3


def cacd_inputs(seed: int = 0, batch: int = 2) -> dict[str, object]:
    generator = torch.Generator().manual_seed(seed)
    size = 16
    image = torch.rand(batch, 3, size, size, generator=generator)
    image[:, :, :8] = 0.02  # an under-exposed band covering the top half
    masks = torch.zeros(batch, size, size, dtype=torch.long)
    masks[:, :8, :8] = 1
    masks[:, 8:, 4:] = 2
    masks[:, :8, 8:] = 3
    labels = torch.randint(0, CLASSES, (batch, size, size), generator=generator)
    labels[:, 0] = 255

    def features(channels: int, side: int) -> torch.Tensor:
        values = torch.randn(batch, channels, side, side, generator=generator)
        return values.requires_grad_()

    return {
        "logits": torch.randn(
            batch, CLASSES, size, size, generator=generator, requires_grad=True
        ),
        "labels": labels,
        "image": image,
        "reconstructed": torch.rand(batch, 3, size, size, generator=generator),
        "image_features": [features(4, 8), features(6, 4)],
        "event_features": [features(4, 8), features(6, 4)],
        "instance_masks": masks,
    }


def test_cacd_loss_full_objective_matches_its_parts_and_trains_every_head():
    torch.manual_seed(0)
    criterion = CACDLoss(STAGES, CLASSES, hfca_stage=1)
    inputs = cacd_inputs()
    output = criterion(**inputs)
    parts = output.parts
    assert set(parts) == {"ce", "intra", "inter", "boundary", "content", "total"}
    assert all(value != 0.0 for value in parts.values())
    weighted = (
        parts["ce"]
        + 0.0005 * parts["intra"]
        + 0.01 * parts["inter"]
        + 0.001 * parts["boundary"]
        + 0.001 * parts["content"]
    )
    assert parts["total"] == pytest.approx(weighted, rel=1e-6)
    assert output.weighted["boundary"].item() == pytest.approx(0.001 * parts["boundary"], rel=1e-6)
    output.total.backward()
    for head in (criterion.image_projection, criterion.event_projection):
        assert head.fc1.weight.grad.abs().sum() > 0
    for head in (criterion.image_content, criterion.event_content):
        assert head.weight.grad.abs().sum() > 0
    assert criterion.image_content.in_channels == 128  # reads F of Eq. 1
    # Only the HFCA stage is read.
    assert inputs["image_features"][0].grad is None
    assert inputs["image_features"][1].grad.abs().sum() > 0


def test_cacd_loss_distillation_reaches_only_the_image_branch():
    torch.manual_seed(0)
    for use_hfca in (True, False):
        criterion = CACDLoss(STAGES, CLASSES, hfca_stage=1, use_hfca=use_hfca)
        inputs = cacd_inputs()
        output = criterion(**inputs)
        image_stage, event_stage = inputs["image_features"][1], inputs["event_features"][1]
        for part in ("boundary", "content"):
            image_grad, event_grad = torch.autograd.grad(
                output.weighted[part], [image_stage, event_stage], retain_graph=True,
                allow_unused=True,
            )
            assert image_grad.abs().sum() > 0, part
            assert event_grad is None or not event_grad.any(), part


def test_jbcd_without_hfca_compares_the_raw_stage_features():
    criterion = CACDLoss(STAGES, CLASSES, use_hfca=False, hfca_stage=0)
    assert criterion.image_projection is None
    assert criterion.image_content.in_channels == STAGES[0]
    inputs = cacd_inputs()
    output = criterion(**inputs)
    assert set(output.parts) == {"ce", "boundary", "content", "total"}
    direct = boundary_distillation_loss(
        inputs["image_features"][0], inputs["event_features"][0], inputs["reconstructed"]
    )
    assert output.parts["boundary"] == pytest.approx(direct.item(), rel=1e-6)


def test_cacd_loss_switches_and_missing_inputs():
    inputs = cacd_inputs()
    fused = CACDLoss(STAGES, CLASSES, use_hfca=False, use_jbcd=False)
    assert list(fused.parameters()) == []
    out = fused(logits=inputs["logits"], labels=inputs["labels"])
    assert set(out.parts) == {"ce", "total"}
    assert out.parts["total"] == out.parts["ce"]

    hfca = CACDLoss(STAGES, CLASSES, use_jbcd=False, hfca_stage=1)
    assert hfca.image_content is None
    out = hfca(**{**inputs, "image": None, "reconstructed": None})
    assert set(out.parts) == {"ce", "intra", "inter", "total"}
    with pytest.raises(ValueError, match="JBCD is enabled but reconstructed is None"):
        CACDLoss(STAGES, CLASSES, hfca_stage=1)(**{**inputs, "reconstructed": None})
    with pytest.raises(ValueError, match="HFCA is enabled but instance_masks is None"):
        hfca(**{**inputs, "instance_masks": None})
    with pytest.raises(ValueError, match="hfca_stage 2 is not a stage index"):
        CACDLoss(STAGES, CLASSES, hfca_stage=2)


def test_cacd_loss_rejects_branches_with_different_channels():
    inputs = cacd_inputs()
    inputs["event_features"][1] = torch.randn(2, 5, 4, 4)
    with pytest.raises(ValueError, match=r"need 6 channels in both, got image 6 and event 5"):
        CACDLoss(STAGES, CLASSES, hfca_stage=1)(**inputs)


def test_cacd_loss_uses_only_paired_samples_for_hfca_and_jbcd():
    torch.manual_seed(0)
    criterion = CACDLoss(STAGES, CLASSES, hfca_stage=1)
    inputs = cacd_inputs()
    paired = criterion(**inputs, paired=torch.tensor([True, False]))
    first_only = {
        key: ([f[:1] for f in value] if isinstance(value, list) else value[:1])
        for key, value in inputs.items()
    }
    alone = criterion(**first_only)
    full = criterion(**inputs)
    for part in ("intra", "inter", "boundary", "content"):
        assert paired.parts[part] == pytest.approx(alone.parts[part], rel=1e-5), part
    assert paired.parts["ce"] == pytest.approx(full.parts["ce"])  # CE on every sample
    alignment = sum(paired.weighted[p] for p in ("intra", "inter", "boundary", "content"))
    (image_grad,) = torch.autograd.grad(alignment, [inputs["image_features"][1]])
    assert image_grad[0].abs().sum() > 0
    assert not image_grad[1].any()


def test_cacd_loss_with_nothing_to_measure_is_zero_and_connected():
    torch.manual_seed(0)
    criterion = CACDLoss(STAGES, CLASSES, hfca_stage=1)
    for inputs in (
        {**cacd_inputs(), "paired": torch.tensor([False, False])},
        {
            **cacd_inputs(),
            "instance_masks": torch.zeros(2, 16, 16, dtype=torch.long),
            "image": torch.full((2, 3, 16, 16), 0.5),
        },
    ):
        out = criterion(**inputs)
        assert out.parts["intra"] == out.parts["inter"] == out.parts["content"] == 0.0
        assert math.isfinite(out.parts["total"])
        criterion.zero_grad()
        out.total.backward()
        assert criterion.image_projection.fc1.weight.grad is not None
        assert criterion.image_content.weight.grad is not None


def test_check_finite_names_the_bad_part():
    boundary = boundary_distillation_loss(
        torch.full((1, 1, 3, 3), float("nan")), torch.zeros(1, 1, 3, 3), step_image()
    )
    with pytest.raises(NonFiniteLossError, match="loss part 'boundary' is not finite") as caught:
        check_finite({"ce": torch.tensor(0.5), "boundary": boundary})
    assert caught.value.part == "boundary"
    with pytest.raises(NonFiniteLossError, match="'content'"):
        check_finite({"ce": 1.0, "content": float("inf")})
    check_finite({"ce": 1.0, "intra": torch.tensor(0.0)})


def test_cacd_loss_raises_on_nan_features():
    inputs = cacd_inputs()
    inputs["event_features"][1] = torch.full_like(inputs["event_features"][1], float("nan"))
    with pytest.raises(NonFiniteLossError, match="'intra'"):
        CACDLoss(STAGES, CLASSES, hfca_stage=1)(**inputs)


# ------------------------------------------------------------------ TrainingModule

SIZE = 64


def training_module(**options) -> TrainingModule:
    torch.manual_seed(0)
    model = CACDNet(CACDConfig(variant="fused", decoder_channels=16))
    criterion = CACDLoss(model.stage_channels, 11, hfca_stage=2)
    return TrainingModule(model, criterion, **options)


def training_batch(batch: int = 4) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    image = torch.rand(batch, 3, SIZE, SIZE, generator=generator)
    image[:, :, : SIZE // 2] *= 0.1  # dark top half: a region for Eq. 7
    masks = torch.zeros(batch, SIZE, SIZE, dtype=torch.long)
    masks[:, : SIZE // 2] = 1
    masks[:, SIZE // 2 :, : SIZE // 2] = 2
    masks[:, SIZE // 2 :, SIZE // 2 :] = 3
    return {
        "image": image,
        "events": torch.rand(batch, 3, SIZE, SIZE, generator=generator) * 3 + 0.5,
        "labels": torch.randint(0, 11, (batch, SIZE, SIZE), generator=generator),
        "instances": masks,
    }


def test_modality_dropout_zeroes_one_modality_per_sample_deterministically():
    module = training_module(modality_dropout=(0.4, 0.4))
    batch = training_batch(batch=32)
    image, events, dropped = module.drop_modalities(
        batch["image"], batch["events"], generator=torch.Generator().manual_seed(5)
    )
    assert not (dropped.image & dropped.events).any()
    assert dropped.image.any() and dropped.events.any() and dropped.paired.any()
    assert torch.equal(dropped.paired, ~(dropped.image | dropped.events))
    assert not image[dropped.image].any() and not events[dropped.events].any()  # exact zeros
    assert torch.equal(image[~dropped.image], batch["image"][~dropped.image])
    assert torch.equal(events[~dropped.events], batch["events"][~dropped.events])
    again = module.drop_modalities(
        batch["image"], batch["events"], generator=torch.Generator().manual_seed(5)
    )[2]
    assert torch.equal(again.image, dropped.image) and torch.equal(again.events, dropped.events)

    off = training_module()
    generator = torch.Generator().manual_seed(5)
    state = generator.get_state()
    _, _, none = off.drop_modalities(batch["image"], batch["events"], generator=generator)
    assert not (none.image.any() or none.events.any())
    assert torch.equal(generator.get_state(), state)  # nothing drawn
    with pytest.raises(ValueError, match="sum of at most 1"):
        training_module(modality_dropout=(0.7, 0.4))


def test_modality_dropout_skips_hfca_and_jbcd_but_not_ce():
    batch = training_batch(batch=2)
    alignment = ("intra", "inter", "boundary", "content")
    _, parts = training_module().eval()(**batch)
    assert all(parts[name].item() != 0.0 for name in alignment)
    for probabilities in ((1.0, 0.0), (0.0, 1.0)):
        module = training_module(modality_dropout=probabilities).eval()
        _, parts = module(**batch, generator=torch.Generator().manual_seed(0))
        assert parts["ce"].item() > 0
        assert all(parts[name].item() == 0.0 for name in alignment), probabilities
    # A placeholder frame (has_image False) is skipped the same way.
    _, parts = training_module().eval()(**batch, has_image=torch.tensor([False, False]))
    assert all(parts[name].item() == 0.0 for name in alignment)


def test_gradient_norms_per_weighted_part():
    batch = training_batch(batch=2)
    module = training_module().eval()  # no dropout / drop-path: repeated forwards agree
    total, parts = module(**batch, grad_norms=True)
    names = ("ce", "intra", "inter", "boundary", "content")
    for name in names:
        value = parts[f"grad_{name}"].item()
        assert math.isfinite(value) and value > 0, name
    # The graph survives: the real backward gives the gradients of a run without the option.
    total.backward()
    with_norms = [p.grad.clone() for p in module.model.parameters()]
    module.zero_grad()
    total, plain = module(**batch)
    assert not any(name.startswith("grad_") for name in plain)
    total.backward()
    for measured, reference in zip(with_norms, (p.grad for p in module.model.parameters())):
        torch.testing.assert_close(measured, reference)
    # grad_ce is the norm of the cross-entropy's gradient alone.
    module.zero_grad()
    output = module.model.forward_features(batch["image"], batch["events"])
    segmentation_cross_entropy(output.logits, batch["labels"]).backward()
    squares = sum(p.grad.pow(2).sum() for p in module.model.parameters() if p.grad is not None)
    assert parts["grad_ce"].item() == pytest.approx(math.sqrt(squares.item()), rel=1e-4)


def test_gradient_norm_of_a_term_without_graph_is_zero():
    weight = torch.ones(3, requires_grad=True)
    assert gradient_norm(torch.tensor(2.0), [weight]).item() == 0.0
    assert gradient_norm((weight * torch.tensor([3.0, 0.0, 4.0])).sum(), [weight]).item() == 5.0
