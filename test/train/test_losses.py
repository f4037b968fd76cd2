"""CACD losses: hand-computed values on tiny inputs, gradient direction, edge cases, totals."""

from __future__ import annotations

import math

import pytest
import torch

from evseg_ros.train.losses import (
    CACDLoss,
    CACDLossWeights,
    InvalidLabelError,
    NonFiniteLossError,
    ProjectionHead,
    boundary_distillation_loss,
    cacd_total_loss,
    check_finite,
    content_distillation_loss,
    count_invalid_labels,
    extreme_exposure_mask,
    gradient_intensity_map,
    inter_domain_loss,
    intra_domain_loss,
    mask_pooled_embeddings,
    sample_per_instance,
    segmentation_cross_entropy,
)


def identity_head(channels: int = 2) -> ProjectionHead:
    """A projection head that only L2-normalises non-negative inputs (W1 = W2 = I, no bias)."""
    head = ProjectionHead(channels, channels)
    with torch.no_grad():
        for layer in (head.fc1, head.fc2):
            layer.weight.copy_(torch.eye(channels))
            layer.bias.zero_()
    return head


def pixels(*vectors: tuple[float, ...]) -> torch.Tensor:
    """Features of one image with one row: ``(1, C, 1, len(vectors))``."""
    return torch.tensor(vectors, dtype=torch.float32).T.reshape(1, len(vectors[0]), 1, -1)


# ------------------------------------------------------------------ cross-entropy


def test_cross_entropy_hand_value_skips_ignored_pixels():
    logits = pixels((0.0, 0.0), (1.0, 0.0), (7.0, -3.0))
    labels = torch.tensor([[[0, 1, 255]]])
    # pixel 0: -log(1/2) = ln 2 = 0.693147; pixel 1: -log(e^0 / (e^1 + e^0)) = ln(1 + e)
    # = 1.313262; pixel 2 ignored -> (0.693147 + 1.313262) / 2 = 1.003204
    loss = segmentation_cross_entropy(logits, labels)
    assert loss.item() == pytest.approx(1.003204, abs=1e-6)


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


# ------------------------------------------------------------------ pooling and sampling


def test_mask_pooled_embeddings_resizes_masks_nearest_and_lists_per_image_instances():
    # Features 2x2; masks 4x4, nearest sampling reads mask pixels (0,0) (0,2) (2,0) (2,2).
    features = torch.zeros(2, 2, 2, 2)
    features[0, :, 0, 0] = torch.tensor([1.0, 0.0])
    features[0, :, 0, 1] = torch.tensor([0.0, 1.0])
    features[1, :, 1, 0] = torch.tensor([0.0, 2.0])
    features[1, :, 0, 1] = torch.tensor([3.0, 4.0])
    masks = torch.zeros(2, 4, 4, dtype=torch.long)
    masks[0, 0:2, :] = 5  # image 0: top row of features
    masks[1, 2:4, 0:2] = 5  # image 1: bottom-left feature pixel, same id as image 0
    masks[1, 0, 2:4] = 7  # image 1: top-right feature pixel
    masks[1, 1, 1] = 9  # never sampled -> drops out
    pooled = mask_pooled_embeddings(features, masks, identity_head())
    assert pooled.batch_index.tolist() == [0, 1, 1]
    assert pooled.instance_ids.tolist() == [5, 5, 7]
    expected = torch.tensor(
        [
            [0.5**0.5, 0.5**0.5],  # mean (0.5, 0.5) normalised
            [0.0, 1.0],  # (0, 2) normalised
            [0.6, 0.8],  # (3, 4) / 5
        ]
    )
    torch.testing.assert_close(pooled.embeddings, expected)


def test_mask_pooled_embeddings_empty_masks_give_zero_rows():
    head = ProjectionHead(4)
    pooled = mask_pooled_embeddings(
        torch.randn(2, 4, 3, 3), torch.zeros(2, 6, 6, dtype=torch.long), head
    )
    assert pooled.embeddings.shape == (0, 128)
    assert pooled.batch_index.numel() == 0


def test_projection_head_output_is_unit_length():
    head = ProjectionHead(8, 16)
    out = head(torch.randn(5, 8))
    assert out.shape == (5, 16)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(5))


def test_sample_per_instance_caps_each_instance_and_is_reproducible():
    pixel_instance = torch.tensor([0] * 10 + [1] * 2 + [2] * 40)
    kept = sample_per_instance(pixel_instance, 5, generator=torch.Generator().manual_seed(1))
    assert torch.bincount(pixel_instance[kept]).tolist() == [5, 2, 5]
    assert kept.unique().numel() == kept.numel()
    again = sample_per_instance(pixel_instance, 5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(kept, again)
    other = sample_per_instance(pixel_instance, 5, generator=torch.Generator().manual_seed(2))
    assert not torch.equal(kept.sort().values, other.sort().values)
    assert sample_per_instance(pixel_instance, None).numel() == 52


# ------------------------------------------------------------------ HFCA


def test_intra_domain_loss_hand_value():
    # Instance 1: pixels (3,4), (4,3) -> prototype (3.5,3.5)/|.| = (1,1)/sqrt2; instance 2:
    # pixel (1,0) -> prototype (1,0); the last pixel has id 0 and is not used.
    features = pixels((3.0, 4.0), (4.0, 3.0), (1.0, 0.0), (0.0, 5.0))
    masks = torch.tensor([[[1, 1, 2, 0]]])
    # tau = 0.5. Unit pixel embeddings (.6,.8), (.8,.6), (1,0).
    # (.6,.8): own 1.4/sqrt2 = 0.989949, other 0.6 -> ln(1 + e^((0.6 - 0.989949)/0.5)) = 0.377376
    # (.8,.6): own 0.989949, other 0.8 -> ln(1 + e^((0.8 - 0.989949)/0.5)) = 0.521131
    # (1,0): own 1, other 0.707107 -> ln(1 + e^((0.707107 - 1)/0.5)) = 0.442548
    # mean = (0.377376 + 0.521131 + 0.442548) / 3 = 0.447018
    loss = intra_domain_loss(features, masks, identity_head(), temperature=0.5)
    assert loss.item() == pytest.approx(0.447018, abs=1e-5)


def test_intra_domain_loss_sampling_cap_is_deterministic_with_generator():
    torch.manual_seed(0)
    features = torch.randn(2, 4, 8, 8)
    masks = torch.zeros(2, 8, 8, dtype=torch.long)
    masks[:, :4] = 1
    masks[:, 4:, :3] = 2
    head = ProjectionHead(4, 8)
    values = [
        intra_domain_loss(
            features,
            masks,
            head,
            max_pixels_per_instance=3,
            generator=torch.Generator().manual_seed(7),
        ).item()
        for _ in range(2)
    ]
    assert values[0] == values[1]
    full = intra_domain_loss(features, masks, head, max_pixels_per_instance=None).item()
    assert values[0] != full


def test_intra_domain_loss_without_instances_is_zero_and_differentiable():
    features = torch.randn(1, 4, 4, 4, requires_grad=True)
    loss = intra_domain_loss(features, torch.zeros(1, 4, 4, dtype=torch.long), ProjectionHead(4))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(features.grad).all()


def test_inter_domain_loss_hand_value():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    event = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # tau = 1, s = image @ event.T = [[1, 0.6], [0, 0.8]], positives on the diagonal.
    # rows:    ln(1 + e^(0.6 - 1)) = 0.513015,   ln(1 + e^(0 - 0.8)) = 0.371101
    # columns: ln(1 + e^(0 - 1))  = 0.313262,   ln(1 + e^(0.6 - 0.8)) = 0.598139
    # 0.5 * ((0.513015 + 0.371101) / 2 + (0.313262 + 0.598139) / 2) = 0.448879
    loss = inter_domain_loss(image, event, temperature=1.0)
    assert loss.item() == pytest.approx(0.448879, abs=1e-5)


def test_inter_domain_loss_trains_both_projection_heads():
    torch.manual_seed(0)
    image_head, event_head = ProjectionHead(6, 8), ProjectionHead(6, 8)
    masks = torch.zeros(2, 8, 8, dtype=torch.long)
    masks[0, :4] = 1
    masks[0, 4:] = 2
    masks[1, :, :4] = 3
    image_pooled = mask_pooled_embeddings(torch.randn(2, 6, 4, 4), masks, image_head)
    event_pooled = mask_pooled_embeddings(torch.randn(2, 6, 4, 4), masks, event_head)
    assert torch.equal(image_pooled.instance_ids, event_pooled.instance_ids)
    inter_domain_loss(image_pooled.embeddings, event_pooled.embeddings).backward()
    for head in (image_head, event_head):
        assert head.fc1.weight.grad is not None
        assert head.fc1.weight.grad.abs().sum() > 0


def test_inter_domain_loss_edge_counts():
    empty = torch.zeros(0, 8, requires_grad=True)
    loss = inter_domain_loss(empty, torch.zeros(0, 8))
    loss.backward()
    assert loss.item() == 0.0
    # One instance: no negative, the softmax over one entry is 1 -> -log 1 = 0.
    single = inter_domain_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]))
    assert single.item() == 0.0
    with pytest.raises(ValueError, match="must both be"):
        inter_domain_loss(torch.zeros(2, 8), torch.zeros(3, 8))


# ------------------------------------------------------------------ JBCD


def step_image() -> torch.Tensor:
    """3x3 grey image whose rows read 0, 0, 1: a vertical edge between columns 1 and 2."""
    return torch.tensor([0.0, 0.0, 1.0]).expand(1, 3, 3, 3).clone()


def test_gradient_intensity_map_of_a_step_and_of_a_flat_image():
    # Replicated border, each row 0 0 0 1 1: Sobel x = 4 * (right - left) = 0, 4, 4; Sobel y
    # = 0 -> magnitude 0, 4, 4, divided by its maximum 4.
    expected = torch.tensor([0.0, 1.0, 1.0]).expand(1, 1, 3, 3)
    torch.testing.assert_close(gradient_intensity_map(step_image()), expected)
    flat = gradient_intensity_map(torch.full((2, 3, 5, 5), 0.4))
    assert torch.equal(flat, torch.zeros(2, 1, 5, 5))


def test_boundary_distillation_hand_value():
    # Stage 0 (3x3): image 0, event columns 1, 2, 3; weights 0, 1, 1
    #   -> 3 rows * (0*1 + 1*2 + 1*3) / 9 = 15 / 9 = 1.666667
    # Stage 1 (1x1): weight = area mean of the map = 6 / 9; image 0, event 3 -> 2.0
    # mean over stages = (1.666667 + 2.0) / 2 = 1.833333
    image_features = [torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 1, 1)]
    event_features = [
        torch.tensor([1.0, 2.0, 3.0]).expand(1, 1, 3, 3).clone(),
        torch.full((1, 1, 1, 1), 3.0),
    ]
    loss = boundary_distillation_loss(image_features, event_features, step_image())
    assert loss.item() == pytest.approx(1.833333, abs=1e-5)
    only_first = boundary_distillation_loss(
        image_features, event_features, step_image(), stages=[0]
    )
    assert only_first.item() == pytest.approx(1.666667, abs=1e-5)


def test_boundary_distillation_teaches_only_the_event_branch():
    image_features = [torch.randn(1, 2, 3, 3, requires_grad=True)]
    event_features = [torch.randn(1, 2, 3, 3, requires_grad=True)]
    boundary_distillation_loss(image_features, event_features, step_image()).backward()
    assert image_features[0].grad is None
    assert event_features[0].grad.abs().sum() > 0
    # Column 0 has weight 0: no gradient there.
    assert torch.equal(event_features[0].grad[..., 0], torch.zeros(1, 2, 3))

    both = [torch.randn(1, 2, 3, 3, requires_grad=True)]
    boundary_distillation_loss(both, event_features, step_image(), detach_image=False).backward()
    assert both[0].grad.abs().sum() > 0


def exposure_image() -> torch.Tensor:
    """1x3 RGB image with V = 0.05 (dark), 0.95 (bright), 0.5 (normal)."""
    values = torch.tensor([0.05, 0.95, 0.5])
    return values.expand(1, 3, 1, 3).clone()


def log_probabilities(*rows: tuple[float, float]) -> torch.Tensor:
    """Logits whose softmax equals the given per-pixel probabilities, ``(1, 2, 1, n)``."""
    return pixels(*rows).log()


def test_extreme_exposure_mask_thresholds_are_strict():
    image = torch.tensor([0.1, 0.15, 0.5, 0.9, 0.95]).expand(1, 3, 1, 5)
    mask = extreme_exposure_mask(image, low=0.15, high=0.9)
    assert mask[0, 0, 0].tolist() == [True, False, False, False, True]


def test_content_distillation_hand_value_ignores_normal_pixels():
    image_logits = log_probabilities((0.9, 0.1), (0.1, 0.9), (0.5, 0.5)).requires_grad_()
    # the third pixel disagrees completely but lies outside the region
    event_logits = log_probabilities((0.9, 0.1), (0.1, 0.9), (1e-6, 1.0 - 1e-6))
    # J = 0.5 * (outer(.9,.1 ; .9,.1) + outer(.1,.9 ; .1,.9)) = [[0.41, 0.09], [0.09, 0.41]];
    # marginals 0.5, 0.5 -> MI = 2 * 0.41 * ln(0.41 / 0.25) + 2 * 0.09 * ln(0.09 / 0.25)
    # = 0.82 * 0.494696 + 0.18 * (-1.021651) = 0.221754 -> loss -0.221754
    loss = content_distillation_loss(image_logits, event_logits, exposure_image())
    assert loss.item() == pytest.approx(-0.221754, abs=1e-5)


def test_content_distillation_teaches_only_the_image_branch():
    image_logits = torch.randn(1, 3, 1, 3, requires_grad=True)
    event_logits = torch.randn(1, 3, 1, 3, requires_grad=True)
    content_distillation_loss(image_logits, event_logits, exposure_image()).backward()
    assert event_logits.grad is None
    assert image_logits.grad[..., :2].abs().sum() > 0
    # the normal pixel is outside the region: no gradient
    assert torch.equal(image_logits.grad[..., 2], torch.zeros(1, 3, 1))


def test_content_distillation_without_extreme_pixels_is_zero_with_gradient():
    image_logits = torch.randn(2, 4, 2, 2, requires_grad=True)
    loss = content_distillation_loss(
        image_logits, torch.randn(2, 4, 2, 2), torch.full((2, 3, 8, 8), 0.5)
    )
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(image_logits.grad, torch.zeros_like(image_logits))


# ------------------------------------------------------------------ totals and checks


def test_paper_weights_and_validation():
    weights = CACDLossWeights()
    assert (weights.intra, weights.inter, weights.boundary, weights.content) == (
        0.0005,
        0.01,
        0.001,
        0.001,
    )
    assert (weights.temperature, weights.exposure_low, weights.exposure_high) == (0.07, 0.15, 0.9)
    with pytest.raises(ValueError, match="temperature must be positive, got 0"):
        CACDLossWeights(temperature=0)
    with pytest.raises(ValueError, match=r"low=0\.9, high=0\.5"):
        CACDLossWeights(exposure_low=0.9, exposure_high=0.5)
    with pytest.raises(ValueError, match=r"CACDLossWeights\.inter"):
        CACDLossWeights(inter=-1.0)


def test_total_loss_weights_each_part():
    parts = {
        "ce": torch.tensor(1.0),
        "intra": torch.tensor(2.0),
        "inter": torch.tensor(3.0),
        "boundary": torch.tensor(4.0),
        "content": torch.tensor(-5.0),
    }
    # 1 + 0.0005*2 + 0.01*3 + 0.001*4 + 0.001*(-5) = 1 + 0.001 + 0.03 + 0.004 - 0.005 = 1.03
    assert cacd_total_loss(parts, CACDLossWeights()).item() == pytest.approx(1.03, abs=1e-6)
    only_ce = {"ce": torch.tensor(1.5), "inter": torch.tensor(2.0)}
    # 1.5 + 0.01 * 2 = 1.52
    assert cacd_total_loss(only_ce, CACDLossWeights()).item() == pytest.approx(1.52, abs=1e-6)
    with pytest.raises(ValueError, match="unknown loss part 'dice'"):
        cacd_total_loss({"ce": torch.tensor(1.0), "dice": torch.tensor(1.0)}, CACDLossWeights())


def cacd_inputs(seed: int = 0) -> dict[str, object]:
    generator = torch.Generator().manual_seed(seed)
    batch, classes, size = 2, 3, 16
    image = torch.rand(batch, 3, size, size, generator=generator)
    image[:, :, :4] = 0.02  # an under-exposed band
    masks = torch.zeros(batch, size, size, dtype=torch.long)
    masks[:, :8, :8] = 1
    masks[:, 8:, 4:] = 2
    masks[1, :8, 8:] = 3
    labels = torch.randint(0, classes, (batch, size, size), generator=generator)
    labels[:, 0] = 255
    return {
        "logits": torch.randn(batch, classes, size, size, generator=generator, requires_grad=True),
        "labels": labels,
        "image": image,
        "image_features": [
            torch.randn(batch, 4, 8, 8, generator=generator, requires_grad=True),
            torch.randn(batch, 6, 4, 4, generator=generator, requires_grad=True),
        ],
        "event_features": [
            torch.randn(batch, 4, 8, 8, generator=generator, requires_grad=True),
            torch.randn(batch, 6, 4, 4, generator=generator, requires_grad=True),
        ],
        "instance_masks": masks,
        "image_logits": torch.randn(batch, classes, 4, 4, generator=generator, requires_grad=True),
        "event_logits": torch.randn(batch, classes, 4, 4, generator=generator, requires_grad=True),
    }


def test_cacd_loss_full_objective_matches_its_parts_and_trains_every_branch():
    torch.manual_seed(0)
    criterion = CACDLoss((4, 6), max_pixels_per_instance=8)
    inputs = cacd_inputs()
    output = criterion(**inputs, generator=torch.Generator().manual_seed(3))
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
    output.total.backward()
    for head in (criterion.image_projection, criterion.event_projection):
        assert head.fc1.weight.grad.abs().sum() > 0
    assert inputs["image_logits"].grad.abs().sum() > 0
    assert inputs["event_features"][0].grad.abs().sum() > 0


def test_cacd_loss_switches_skip_disabled_parts():
    inputs = cacd_inputs()
    fused = CACDLoss((4, 6), use_hfca=False, use_jbcd=False)
    assert fused.image_projection is None
    assert list(fused.parameters()) == []
    out = fused(logits=inputs["logits"], labels=inputs["labels"])
    assert set(out.parts) == {"ce", "total"}
    assert out.parts["total"] == out.parts["ce"]

    hfca = CACDLoss((4, 6), use_jbcd=False)
    without_jbcd_inputs = {
        key: value
        for key, value in inputs.items()
        if key not in {"image", "image_logits", "event_logits"}
    }
    out = hfca(**without_jbcd_inputs)
    assert set(out.parts) == {"ce", "intra", "inter", "total"}

    with pytest.raises(ValueError, match="JBCD is enabled but image_logits, event_logits are None"):
        CACDLoss((4, 6))(**{**inputs, "image_logits": None, "event_logits": None})
    with pytest.raises(ValueError, match="HFCA is enabled but instance_masks is None"):
        hfca(**{**without_jbcd_inputs, "instance_masks": None})


def test_cacd_loss_without_instances_or_extreme_pixels_is_finite():
    inputs = cacd_inputs()
    inputs["instance_masks"] = torch.zeros_like(inputs["instance_masks"])
    inputs["image"] = torch.full_like(inputs["image"], 0.5)
    out = CACDLoss((4, 6))(**inputs)
    assert out.parts["intra"] == 0.0
    assert out.parts["inter"] == 0.0
    assert out.parts["content"] == 0.0
    assert math.isfinite(out.parts["total"])
    out.total.backward()


def test_check_finite_names_the_bad_part():
    image_features = [torch.full((1, 1, 3, 3), float("nan"))]
    event_features = [torch.zeros(1, 1, 3, 3)]
    boundary = boundary_distillation_loss(image_features, event_features, step_image())
    parts = {"ce": torch.tensor(0.5), "boundary": boundary}
    with pytest.raises(NonFiniteLossError, match="loss part 'boundary' is not finite") as caught:
        check_finite(parts)
    assert caught.value.part == "boundary"
    with pytest.raises(NonFiniteLossError, match="'content'"):
        check_finite({"ce": 1.0, "content": float("inf")})
    check_finite({"ce": 1.0, "intra": torch.tensor(0.0)})


def test_cacd_loss_raises_on_nan_features():
    inputs = cacd_inputs()
    inputs["event_features"][1] = torch.full_like(inputs["event_features"][1], float("nan"))
    with pytest.raises(NonFiniteLossError, match="'intra'"):
        CACDLoss((4, 6))(**inputs)
