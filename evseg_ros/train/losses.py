r"""Training losses of CACD: segmentation cross-entropy, HFCA and JBCD.

CACD trains the two-stream network with

    L = CE + w_intra L_intra + w_inter L_inter + w_boundary L_boundary + w_content L_content

(weights 0.0005, 0.01, 0.001, 0.001 in the paper). HFCA (Heterogeneous Feature Contrastive
Alignment) pulls together the features of one object instance within each modality (Eq. 4) and
across the modalities (Eq. 5); the instances are SAM masks computed offline. JBCD (Joint
Boundary-Content Distillation) aligns the branches at image edges (Eq. 6) and inside over- and
under-exposed regions (Eq. 7). None of this is part of the exported network.

The paper's method text was not available while this was written; each loss below states the
equation as summarised in the design notes and every choice made where the summary leaves room.
The choices, in short:

* HFCA runs on one encoder stage (by default the deepest, the most semantic one) with the
  projection heads P_img and P_evt; prototypes are the projected mask-pooled means; every other
  instance of the batch is a negative.
* Boundary distillation teaches the event branch from the (detached) image branch, on all
  stages, weighted by the image's normalised Sobel magnitude.
* Content distillation teaches the image branch from the (detached) event branch, because inside
  extreme-exposure regions the frame carries little and the events carry the scene; the
  mutual information is the exact MI of the two branches' class variables for a location drawn
  from the region (the IIC estimator), whose joint is built from the per-class spatial
  distributions.

Every loss returns a scalar that stays connected to its inputs, also when it has nothing to
measure (no instance, no extreme pixel, only ignored labels): it is then exactly zero, so a
backward pass and an optimiser step work unchanged and no NaN appears.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Label value that contributes nothing to the cross-entropy (the runtime's void class).
IGNORE_INDEX = 255

#: ITU-R BT.601 luma weights, used to turn the RGB frame into the grey image of Eq. 6.
_LUMA_WEIGHTS = (0.299, 0.587, 0.114)

#: Sobel magnitudes below this are rounding noise, not edges (grey values are in [0, 1]).
_MIN_EDGE_MAGNITUDE = 1e-5

#: Keeps logarithms finite where a probability underflows to zero.
_LOG_EPS = 1e-12

#: Names of the parts a total may contain, in logging order.
LOSS_PARTS = ("ce", "intra", "inter", "boundary", "content")


class InvalidLabelError(ValueError):
    """Labels hold values that are neither a class index nor the ignore index."""

    def __init__(self, bad_values: Sequence[int], count: int, num_classes: int, ignore: int):
        self.bad_values = tuple(bad_values)
        self.count = count
        super().__init__(
            f"labels: {count} pixel(s) outside [0, {num_classes}) and not the ignore index "
            f"{ignore}; values {self.bad_values!r} (map them to a class or to {ignore} "
            "in the label set, they are never clamped)"
        )


class NonFiniteLossError(FloatingPointError):
    """A loss part is NaN or infinite; training must stop before the weights are updated."""

    def __init__(self, part: str, value: float):
        self.part = part
        self.value = value
        super().__init__(
            f"loss part {part!r} is not finite ({value!r}); stopping before the optimiser "
            "step so that no NaN reaches the weights"
        )


# --------------------------------------------------------------------------------------------
# Cross-entropy
# --------------------------------------------------------------------------------------------


def count_invalid_labels(
    labels: Tensor, num_classes: int, *, ignore_index: int = IGNORE_INDEX
) -> int:
    """Count label pixels that are neither in ``[0, num_classes)`` nor ``ignore_index``.

    Lets a data loader or a dataset check report bad pixels as a counter instead of failing.

    Args:
        labels: Integer label tensor of any shape.
        num_classes: Number of classes ``K``.
        ignore_index: Value that marks pixels without a label.

    Returns:
        The number of invalid pixels.
    """
    invalid = (labels != ignore_index) & ((labels < 0) | (labels >= num_classes))
    return int(invalid.sum().item())


def segmentation_cross_entropy(
    logits: Tensor, labels: Tensor, *, ignore_index: int = IGNORE_INDEX
) -> Tensor:
    r"""Pixel-wise cross-entropy of the fused prediction, the CE term of the total loss.

    :math:`CE = -\frac{1}{|\Omega|}\sum_{x \in \Omega} \log \mathrm{softmax}(z(x))_{y(x)}` over the
    labelled pixels :math:`\Omega` (those not equal to ``ignore_index``). With no labelled pixel
    the loss is exactly 0 (``F.cross_entropy`` would return NaN from 0/0).

    Args:
        logits: ``(batch, K, height, width)`` class scores at label resolution.
        labels: ``(batch, height, width)`` integer class indices; ``ignore_index`` is skipped.
        ignore_index: Label value that marks unlabelled pixels.

    Returns:
        Scalar loss.

    Raises:
        ValueError: Shapes disagree or labels are not integers.
        InvalidLabelError: A label is outside ``[0, K)`` and not ``ignore_index``.
    """
    if logits.dim() != 4 or labels.dim() != 3:
        raise ValueError(
            f"logits must be (batch, K, H, W) and labels (batch, H, W); got shapes "
            f"{tuple(logits.shape)!r} and {tuple(labels.shape)!r}"
        )
    if logits.shape[0] != labels.shape[0] or logits.shape[2:] != labels.shape[1:]:
        raise ValueError(
            f"logits {tuple(logits.shape)!r} and labels {tuple(labels.shape)!r} differ in "
            "batch or spatial size; upsample the logits to label size first"
        )
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got dtype {labels.dtype!r}")
    labels = labels.long()
    num_classes = logits.shape[1]
    invalid = (labels != ignore_index) & ((labels < 0) | (labels >= num_classes))
    count = int(invalid.sum().item())
    if count:
        bad_values = torch.unique(labels[invalid])[:8].tolist()
        raise InvalidLabelError(bad_values, count, num_classes, ignore_index)
    labelled = int((labels != ignore_index).sum().item())
    if labelled == 0:
        return logits.sum() * 0.0
    total = F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="sum")
    return total / labelled


# --------------------------------------------------------------------------------------------
# HFCA: projection heads, mask pooling, intra- and inter-domain contrast
# --------------------------------------------------------------------------------------------


class ProjectionHead(nn.Module):
    """P_img / P_evt: two-layer MLP with ReLU, L2-normalised output.

    Contrast is measured in this space rather than on the encoder features, so the alignment
    does not force the two encoders' raw features (which the fusion still needs to keep
    modality-specific) to be identical.

    Args:
        in_channels: Channels of the encoder stage it reads.
        out_dim: Embedding size.
        hidden_dim: Width of the hidden layer; defaults to ``in_channels``.
    """

    def __init__(self, in_channels: int, out_dim: int = 128, *, hidden_dim: int | None = None):
        super().__init__()
        if in_channels <= 0 or out_dim <= 0:
            raise ValueError(
                f"in_channels and out_dim must be positive, got {in_channels!r} and {out_dim!r}"
            )
        hidden_dim = in_channels if hidden_dim is None else hidden_dim
        self.fc1 = nn.Linear(in_channels, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, out_dim)

    def forward(self, features: Tensor) -> Tensor:
        """Map ``(N, in_channels)`` vectors to ``(N, out_dim)`` unit vectors."""
        return F.normalize(self.fc2(F.relu(self.fc1(features))), dim=-1)


class InstanceEmbeddings(NamedTuple):
    """Projected mask-pooled features, one row per instance of the batch.

    Rows are sorted by ``(batch_index, instance_id)``, so two calls with the same masks and
    feature size list the same instances in the same order.
    """

    embeddings: Tensor  #: (N_inst, D)
    batch_index: Tensor  #: (N_inst,) int64, image of the batch the instance belongs to
    instance_ids: Tensor  #: (N_inst,) int64, id in ``instance_masks`` (never 0)


class _InstanceLayout(NamedTuple):
    """Which feature pixels belong to which instance at one feature size."""

    pixel_index: Tensor  # (P,) flat index into (batch * h * w) of every pixel inside an instance
    pixel_instance: Tensor  # (P,) row of that pixel's instance in 0..N-1
    batch_index: Tensor  # (N,)
    instance_ids: Tensor  # (N,)


def _check_features(features: Tensor, name: str) -> None:
    if features.dim() != 4:
        raise ValueError(f"{name} must be (batch, C, H, W), got shape {tuple(features.shape)!r}")


def _instance_layout(instance_masks: Tensor, size: tuple[int, int]) -> _InstanceLayout:
    """Resize instance masks (nearest) to ``size`` and index their pixels per instance."""
    if instance_masks.dim() != 3:
        raise ValueError(
            f"instance_masks must be (batch, H, W), got shape {tuple(instance_masks.shape)!r}"
        )
    if instance_masks.is_floating_point() or instance_masks.dtype == torch.bool:
        raise ValueError(
            f"instance_masks must hold integer ids, got dtype {instance_masks.dtype!r}"
        )
    masks = instance_masks.long()
    if bool((masks < 0).any()):
        raise ValueError(
            f"instance_masks hold negative ids (minimum {int(masks.min())!r}); 0 marks "
            "'no instance', ids start at 1"
        )
    if tuple(masks.shape[1:]) != tuple(size):
        # float32 represents ids exactly up to 2**24, far beyond any mask count.
        masks = F.interpolate(masks[:, None].float(), size=size, mode="nearest")[:, 0].long()
    flat = masks.reshape(-1)
    pixel_index = torch.nonzero(flat > 0).squeeze(1)
    stride = int(flat.max().item()) + 1 if flat.numel() else 1
    batch_of_pixel = pixel_index // (size[0] * size[1])
    keys = batch_of_pixel * stride + flat[pixel_index]
    unique_keys, pixel_instance = torch.unique(keys, sorted=True, return_inverse=True)
    return _InstanceLayout(
        pixel_index=pixel_index,
        pixel_instance=pixel_instance,
        batch_index=unique_keys // stride,
        instance_ids=unique_keys % stride,
    )


def _flat_pixels(features: Tensor) -> Tensor:
    """``(batch, C, h, w) -> (batch * h * w, C)``, batch-major like the mask layout."""
    return features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])


def _pooled_means(flat_features: Tensor, layout: _InstanceLayout) -> Tensor:
    """Mean feature of every instance, ``(N, C)``."""
    num_instances = layout.batch_index.numel()
    channels = flat_features.shape[1]
    sums = flat_features.new_zeros(num_instances, channels)
    sums = sums.index_add(0, layout.pixel_instance, flat_features[layout.pixel_index])
    counts = torch.bincount(layout.pixel_instance, minlength=num_instances)
    return sums / counts.clamp_min(1).unsqueeze(1).to(sums.dtype)


def mask_pooled_embeddings(
    features: Tensor, instance_masks: Tensor, projection: Callable[[Tensor], Tensor]
) -> InstanceEmbeddings:
    """Average the features inside each instance mask and project them (P_img or P_evt).

    The masks are resized with nearest-neighbour sampling to the feature size; an instance
    that no feature pixel samples (smaller than the stage's stride) drops out. Ids are per
    image: id 3 of image 0 and id 3 of image 1 are two instances.

    Args:
        features: ``(batch, C, h, w)`` features of one stage of one modality.
        instance_masks: ``(batch, H, W)`` integer instance ids, 0 = no instance.
        projection: Projection head, ``(N, C) -> (N, D)``.

    Returns:
        The embeddings with their image index and instance id; zero rows when no instance
        survives.
    """
    _check_features(features, "features")
    layout = _instance_layout(instance_masks, tuple(features.shape[2:]))
    means = _pooled_means(_flat_pixels(features), layout)
    return InstanceEmbeddings(projection(means), layout.batch_index, layout.instance_ids)


def sample_per_instance(
    pixel_instance: Tensor,
    max_per_instance: int | None,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Choose at most ``max_per_instance`` pixels of every instance, uniformly at random.

    Caps the cost of Eq. 4 and keeps large instances (road, sky) from outweighing small ones.
    Instances with fewer pixels keep them all, so the result only depends on the generator when
    an instance is larger than the cap.

    Args:
        pixel_instance: ``(P,)`` instance row of every candidate pixel.
        max_per_instance: Cap per instance; ``None`` keeps every pixel.
        generator: Random generator, for reproducible sampling.

    Returns:
        ``(P',)`` positions into ``pixel_instance`` of the kept pixels.
    """
    count = pixel_instance.numel()
    device = pixel_instance.device
    if max_per_instance is None:
        return torch.arange(count, device=device)
    if max_per_instance <= 0:
        raise ValueError(f"max_per_instance must be positive or None, got {max_per_instance!r}")
    rand_device = generator.device if generator is not None else device
    scores = torch.rand(count, generator=generator, device=rand_device).to(device)
    order = torch.argsort(scores)
    # Stable sort by instance keeps the random order inside each instance.
    order = order[torch.argsort(pixel_instance[order], stable=True)]
    grouped = pixel_instance[order]
    sizes = torch.bincount(pixel_instance)
    starts = torch.cumsum(sizes, 0) - sizes
    rank = torch.arange(count, device=device) - starts[grouped]
    return order[rank < max_per_instance]


def _zero(*tensors: Tensor) -> Tensor:
    """An exact zero that is still part of the graph of ``tensors``."""
    zero = tensors[0].sum() * 0.0
    for tensor in tensors[1:]:
        zero = zero + tensor.sum() * 0.0
    return zero


def intra_domain_loss(
    features: Tensor,
    instance_masks: Tensor,
    projection: Callable[[Tensor], Tensor],
    *,
    temperature: float = 0.07,
    max_pixels_per_instance: int | None = 64,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Intra-domain clustering loss of one modality (paper Eq. 4, L_intra).

    Eq. 4 clusters the features of each instance around its prototype and separates the
    prototypes of different instances, with temperature :math:`\tau`. Chosen form
    (prototype-contrastive): with :math:`c_k = P(\bar f_k)` the projected mask-pooled mean of
    instance :math:`k` and :math:`z_p = P(f_p)` the projected feature of a sampled pixel
    :math:`p \in M_k`,

    .. math::
        L_{intra} = -\frac{1}{|S|} \sum_{p \in S}
            \log \frac{\exp(z_p \cdot c_{k(p)} / \tau)}{\sum_{j} \exp(z_p \cdot c_j / \tau)}

    where :math:`j` runs over every instance of the batch and :math:`S` holds at most
    ``max_pixels_per_instance`` pixels of each instance. The numerator pulls a pixel to its own
    prototype, the denominator pushes it (and so its prototype, the mean of such pixels) away
    from the other prototypes. Embeddings are L2-normalised, so the dot products are cosine
    similarities; gradients reach both the pixel embeddings and the prototypes.

    Args:
        features: ``(batch, C, h, w)`` features of one stage of one modality.
        instance_masks: ``(batch, H, W)`` integer instance ids, 0 = no instance.
        projection: The modality's projection head.
        temperature: :math:`\tau`.
        max_pixels_per_instance: Pixel cap per instance, ``None`` for all.
        generator: Random generator for the pixel sampling.

    Returns:
        Scalar loss; 0 when the batch has no instance.
    """
    _check_features(features, "features")
    _check_temperature(temperature)
    layout = _instance_layout(instance_masks, tuple(features.shape[2:]))
    if layout.batch_index.numel() == 0:
        return _zero(features)
    flat = _flat_pixels(features)
    prototypes = F.normalize(projection(_pooled_means(flat, layout)), dim=-1)
    kept = sample_per_instance(layout.pixel_instance, max_pixels_per_instance, generator=generator)
    pixel_embeddings = F.normalize(projection(flat[layout.pixel_index[kept]]), dim=-1)
    similarities = pixel_embeddings @ prototypes.T / temperature  # (pixels, instances)
    return F.cross_entropy(similarities, layout.pixel_instance[kept])


def inter_domain_loss(
    image_embeddings: Tensor, event_embeddings: Tensor, *, temperature: float = 0.07
) -> Tensor:
    r"""Inter-domain InfoNCE between image and event instance embeddings (paper Eq. 5, L_inter).

    Row :math:`i` of both inputs is the same instance (as :func:`mask_pooled_embeddings` lists
    them for the same masks and feature size). With :math:`s_{ij} = u_i \cdot v_j / \tau` for
    L2-normalised image embeddings :math:`u` and event embeddings :math:`v`,

    .. math::
        L_{inter} = \frac{1}{2N} \sum_i \Big(
            -\log \frac{e^{s_{ii}}}{\sum_j e^{s_{ij}}}
            -\log \frac{e^{s_{ii}}}{\sum_j e^{s_{ji}}} \Big)

    i.e. symmetric: image-to-event and event-to-image. Negatives are all other instances of the
    batch, including those of other images.

    Args:
        image_embeddings: ``(N, D)`` from P_img.
        event_embeddings: ``(N, D)`` from P_evt, same instance order.
        temperature: :math:`\tau`.

    Returns:
        Scalar loss; 0 when ``N`` is 0 (and exactly 0 when ``N`` is 1: no negative).

    Raises:
        ValueError: The two inputs differ in shape.
    """
    _check_temperature(temperature)
    if image_embeddings.dim() != 2 or image_embeddings.shape != event_embeddings.shape:
        raise ValueError(
            f"image_embeddings {tuple(image_embeddings.shape)!r} and event_embeddings "
            f"{tuple(event_embeddings.shape)!r} must both be (N, D)"
        )
    count = image_embeddings.shape[0]
    if count == 0:
        return _zero(image_embeddings, event_embeddings)
    image_unit = F.normalize(image_embeddings, dim=-1)
    event_unit = F.normalize(event_embeddings, dim=-1)
    similarities = image_unit @ event_unit.T / temperature
    targets = torch.arange(count, device=similarities.device)
    image_to_event = F.cross_entropy(similarities, targets)
    event_to_image = F.cross_entropy(similarities.T, targets)
    return 0.5 * (image_to_event + event_to_image)


# --------------------------------------------------------------------------------------------
# JBCD: boundary and content distillation
# --------------------------------------------------------------------------------------------


def _check_image(image: Tensor) -> None:
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"image must be (batch, 3, H, W) RGB, got shape {tuple(image.shape)!r}")


def gradient_intensity_map(image: Tensor) -> Tensor:
    """Sobel gradient magnitude of the grey frame, scaled to [0, 1] per image (Eq. 6's weight).

    Grey is BT.601 luma; borders are replicated so the frame edge is not an edge. Each image is
    divided by its own maximum, so a dark frame's edges count as much as a bright frame's; a
    flat image gives all zeros (magnitudes under 1e-5 count as flat). The map is a constant of
    the loss (no gradient).

    Args:
        image: ``(batch, 3, H, W)`` RGB in [0, 1].

    Returns:
        ``(batch, 1, H, W)`` weights in [0, 1].
    """
    _check_image(image)
    with torch.no_grad():
        image = image.detach().float()
        luma = torch.tensor(_LUMA_WEIGHTS, device=image.device).view(1, 3, 1, 1)
        grey = (image * luma).sum(dim=1, keepdim=True)
        sobel_x = torch.tensor(
            [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=image.device
        )
        kernels = torch.stack([sobel_x, sobel_x.T]).unsqueeze(1)  # (2, 1, 3, 3)
        gradients = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kernels)
        magnitude = gradients.pow(2).sum(dim=1, keepdim=True).sqrt()
        # Convolution rounding leaves ~1e-8 on flat areas; scaled by its own maximum that noise
        # would become a full-strength edge. One grey level of 8 bits gives ~0.016.
        magnitude = torch.where(magnitude > _MIN_EDGE_MAGNITUDE, magnitude, 0.0)
        peak = magnitude.amax(dim=(2, 3), keepdim=True)
        return torch.where(peak > 0, magnitude / peak.clamp_min(1e-12), 0.0)


def _check_feature_lists(image_features: Sequence[Tensor], event_features: Sequence[Tensor]):
    if len(image_features) != len(event_features):
        raise ValueError(
            f"image_features has {len(image_features)} stages, event_features {len(event_features)}"
        )
    for stage, (image_stage, event_stage) in enumerate(zip(image_features, event_features)):
        if image_stage.shape != event_stage.shape:
            raise ValueError(
                f"stage {stage}: image features {tuple(image_stage.shape)!r} and event "
                f"features {tuple(event_stage.shape)!r} differ"
            )
        _check_features(image_stage, f"image_features[{stage}]")


def boundary_distillation_loss(
    image_features: Sequence[Tensor],
    event_features: Sequence[Tensor],
    image: Tensor,
    *,
    stages: Sequence[int] | None = None,
    detach_image: bool = True,
) -> Tensor:
    r"""Boundary distillation: edge-weighted L1 between the branches (paper Eq. 6, L_boundary).

    .. math::
        L_{boundary} = \frac{1}{|S|} \sum_{s \in S} \frac{1}{C_s h_s w_s}
            \sum_{c,x} G_s(x)\, \big| F^{img}_{s}(c, x) - F^{evt}_{s}(c, x) \big|

    with :math:`G` from :func:`gradient_intensity_map`, area-resized to stage :math:`s`, and
    :math:`S` the chosen stages (all by default: edges matter at every scale). Direction: the
    image branch is the teacher and is detached (``detach_image=True``), so only the event
    branch is pulled towards the frame's features where the frame shows clear edges; events
    already fire on those edges, and the frame tells them what the edge separates.

    Args:
        image_features: Per-stage ``(batch, C_s, h_s, w_s)`` image-branch features.
        event_features: Same shapes, event branch, before fusion.
        image: ``(batch, 3, H, W)`` RGB in [0, 1].
        stages: Stage indices to use; ``None`` for all.
        detach_image: Stop gradients into the image branch.

    Returns:
        Scalar loss.
    """
    _check_feature_lists(image_features, event_features)
    weights = gradient_intensity_map(image)
    chosen = range(len(image_features)) if stages is None else stages
    losses = []
    for stage in chosen:
        teacher = image_features[stage]
        student = event_features[stage]
        if detach_image:
            teacher = teacher.detach()
        stage_weights = F.interpolate(weights, size=tuple(student.shape[2:]), mode="area")
        stage_weights = stage_weights.to(student.dtype)
        losses.append((stage_weights * (teacher - student).abs()).mean())
    if not losses:
        raise ValueError(f"stages selects no stage: {stages!r}")
    return torch.stack(losses).mean()


def extreme_exposure_mask(image: Tensor, *, low: float = 0.15, high: float = 0.9) -> Tensor:
    """Pixels whose HSV value ``V = max(R, G, B)`` is below ``low`` or above ``high``.

    Args:
        image: ``(batch, 3, H, W)`` RGB in [0, 1].
        low: Under-exposure threshold (alpha).
        high: Over-exposure threshold (beta).

    Returns:
        ``(batch, 1, H, W)`` bool.
    """
    _check_image(image)
    _check_exposure_thresholds(low, high)
    value = image.detach().amax(dim=1, keepdim=True)
    return (value < low) | (value > high)


def content_distillation_loss(
    image_logits: Tensor,
    event_logits: Tensor,
    image: Tensor,
    *,
    low: float = 0.15,
    high: float = 0.9,
    detach_event: bool = True,
) -> Tensor:
    r"""Content distillation: negative MI of the branches inside extreme exposure (Eq. 7).

    Eq. 7 maximises the mutual information of the two branches' per-class spatial distributions
    inside the region :math:`R` where :math:`V < \alpha` or :math:`V > \beta`. Estimator chosen
    (differentiable, exact for the soft predictions): let :math:`r(x) \in [0, 1]` be the share
    of extreme pixels in logit cell :math:`x` (area-resized region mask), :math:`P_i(x)` and
    :math:`Q_j(x)` the softmax maps of the image and event branch. The joint distribution of
    (image class, event class) for a location drawn from the region, pooled over the batch, is

    .. math::
        J_{ij} = \frac{\sum_x r(x) P_i(x) Q_j(x)}{\sum_x r(x)}
               = m_i\, \mathbb{E}_{x \sim \pi_i}[Q_j(x)],
        \qquad \pi_i(x) = \frac{r(x) P_i(x)}{\sum_{x'} r(x') P_i(x')}

    so it is built from the image branch's per-class spatial distribution :math:`\pi_i` in the
    region, weighted by that class's mass :math:`m_i` (and symmetrically for the event branch);
    weighting by mass keeps classes absent from the region from contributing noise. Then

    .. math::
        L_{content} = -\sum_{i,j} J_{ij} \log \frac{J_{ij}}{J_{i\cdot} J_{\cdot j}}

    (the IIC estimator). MI is invariant to relabelling classes, so it transfers structure, not
    class names; the cross-entropy on the branch heads anchors the names. Direction: in extreme
    exposure the events are the reliable side, so the event branch is the teacher and is
    detached (``detach_event=True``).

    Args:
        image_logits: ``(batch, K, h, w)`` image-branch class scores (auxiliary head).
        event_logits: ``(batch, K, h, w)`` event-branch class scores (auxiliary head).
        image: ``(batch, 3, H, W)`` RGB in [0, 1] that defines the region.
        low: alpha, under-exposure threshold on V.
        high: beta, over-exposure threshold on V.
        detach_event: Stop gradients into the event branch.

    Returns:
        Scalar loss (<= 0); exactly 0 when no pixel of the batch is extreme.
    """
    if image_logits.dim() != 4 or image_logits.shape != event_logits.shape:
        raise ValueError(
            f"image_logits {tuple(image_logits.shape)!r} and event_logits "
            f"{tuple(event_logits.shape)!r} must both be (batch, K, h, w)"
        )
    if image.shape[0] != image_logits.shape[0]:
        raise ValueError(
            f"image batch {image.shape[0]!r} differs from logits batch {image_logits.shape[0]!r}"
        )
    region = extreme_exposure_mask(image, low=low, high=high).float()
    region = F.interpolate(region, size=tuple(image_logits.shape[2:]), mode="area")
    region_mass = region.sum()
    if float(region_mass.item()) == 0.0:
        return _zero(image_logits, event_logits)
    if detach_event:
        event_logits = event_logits.detach()
    image_probabilities = torch.softmax(image_logits.float(), dim=1)
    event_probabilities = torch.softmax(event_logits.float(), dim=1)
    joint = torch.einsum("bihw,bjhw->ij", image_probabilities * region, event_probabilities)
    joint = joint / region_mass
    image_marginal = joint.sum(dim=1, keepdim=True)
    event_marginal = joint.sum(dim=0, keepdim=True)
    log_ratio = (
        joint.clamp_min(_LOG_EPS).log()
        - image_marginal.clamp_min(_LOG_EPS).log()
        - event_marginal.clamp_min(_LOG_EPS).log()
    )
    return -(joint * log_ratio).sum()


# --------------------------------------------------------------------------------------------
# Total
# --------------------------------------------------------------------------------------------


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")


def _check_exposure_thresholds(low: float, high: float) -> None:
    if not 0.0 <= low < high <= 1.0:
        raise ValueError(
            f"exposure thresholds must satisfy 0 <= low < high <= 1, got low={low!r}, high={high!r}"
        )


@dataclass(frozen=True)
class CACDLossWeights:
    """Weights and constants of the CACD objective (paper values as defaults).

    Attributes:
        intra: Weight of L_intra (Eq. 4).
        inter: Weight of L_inter (Eq. 5).
        boundary: Weight of L_boundary (Eq. 6).
        content: Weight of L_content (Eq. 7).
        temperature: tau of Eq. 4 and 5; 0.07 (the usual InfoNCE value; the paper's own value
            was not available).
        exposure_low: alpha, V below it is under-exposed.
        exposure_high: beta, V above it is over-exposed.
    """

    intra: float = 0.0005
    inter: float = 0.01
    boundary: float = 0.001
    content: float = 0.001
    temperature: float = 0.07
    exposure_low: float = 0.15
    exposure_high: float = 0.9

    def __post_init__(self) -> None:
        for name in ("intra", "inter", "boundary", "content"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"CACDLossWeights.{name} must be finite and >= 0, got {value!r}")
        _check_temperature(self.temperature)
        _check_exposure_thresholds(self.exposure_low, self.exposure_high)

    def weight_of(self, part: str) -> float:
        """Weight of a named part; the cross-entropy has weight 1."""
        if part == "ce":
            return 1.0
        if part not in LOSS_PARTS:
            raise ValueError(f"unknown loss part {part!r}; expected one of {LOSS_PARTS!r}")
        return getattr(self, part)


def cacd_total_loss(parts: Mapping[str, Tensor], weights: CACDLossWeights) -> Tensor:
    """Weighted sum of the parts present: ``CE + sum(w_part * part)``.

    Args:
        parts: Unweighted loss tensors by name (a subset of :data:`LOSS_PARTS`; ``"ce"``
            required).
        weights: The weights.

    Returns:
        Scalar total.

    Raises:
        ValueError: ``"ce"`` missing or an unknown part name.
    """
    if "ce" not in parts:
        raise ValueError(f"parts must contain 'ce', got {sorted(parts)!r}")
    total = parts["ce"]
    for name, value in parts.items():
        if name != "ce":
            total = total + weights.weight_of(name) * value
    return total


def check_finite(loss_parts: Mapping[str, Tensor | float]) -> None:
    """Raise if any part is NaN or infinite, naming the first such part.

    Args:
        loss_parts: Loss values by name (scalars or tensors).

    Raises:
        NonFiniteLossError: A part is not finite.
    """
    for name, value in loss_parts.items():
        if isinstance(value, Tensor):
            finite = torch.isfinite(value.detach())
            if not bool(finite.all()):
                bad = value.detach()[~finite].reshape(-1)[0]
                raise NonFiniteLossError(name, float(bad))
        elif not math.isfinite(value):
            raise NonFiniteLossError(name, float(value))


class CACDLossOutput(NamedTuple):
    """Total loss to back-propagate and the unweighted parts for logging."""

    total: Tensor
    parts: dict[str, float]  #: detached floats; disabled parts are absent; includes "total"


class CACDLoss(nn.Module):
    """The CACD objective, holding the HFCA projection heads P_img and P_evt.

    The ablation of the paper maps to the switches: fused only (both off), fused + HFCA
    (``use_jbcd=False``), full CACD (both on). A disabled part is neither computed nor
    reported, and its inputs may be ``None``; with HFCA off no projection head exists, so the
    optimiser sees no unused parameters.

    Args:
        stage_channels: Channels of each encoder stage (the same for both modalities).
        weights: Loss weights and constants.
        use_hfca: Add L_intra (image + event) and L_inter.
        use_jbcd: Add L_boundary and L_content.
        hfca_stage: Encoder stage HFCA reads; default the deepest (most semantic). Instances
            smaller than that stage's stride drop out (see :func:`mask_pooled_embeddings`).
        boundary_stages: Stages of L_boundary; ``None`` for all.
        embedding_dim: Output size of the projection heads.
        max_pixels_per_instance: Pixel cap of L_intra.
        raise_on_non_finite: Run :func:`check_finite` on every part and the total.
    """

    def __init__(
        self,
        stage_channels: Sequence[int],
        *,
        weights: CACDLossWeights | None = None,
        use_hfca: bool = True,
        use_jbcd: bool = True,
        hfca_stage: int = -1,
        boundary_stages: Sequence[int] | None = None,
        embedding_dim: int = 128,
        max_pixels_per_instance: int | None = 64,
        raise_on_non_finite: bool = True,
    ):
        super().__init__()
        self.stage_channels = tuple(stage_channels)
        if not self.stage_channels:
            raise ValueError("stage_channels is empty")
        if not -len(self.stage_channels) <= hfca_stage < len(self.stage_channels):
            raise ValueError(
                f"hfca_stage {hfca_stage!r} outside the {len(self.stage_channels)} stages"
            )
        self.weights = weights if weights is not None else CACDLossWeights()
        self.use_hfca = use_hfca
        self.use_jbcd = use_jbcd
        self.hfca_stage = hfca_stage
        self.boundary_stages = None if boundary_stages is None else tuple(boundary_stages)
        self.max_pixels_per_instance = max_pixels_per_instance
        self.raise_on_non_finite = raise_on_non_finite
        self.image_projection: ProjectionHead | None = None
        self.event_projection: ProjectionHead | None = None
        if use_hfca:
            channels = self.stage_channels[hfca_stage]
            self.image_projection = ProjectionHead(channels, embedding_dim)
            self.event_projection = ProjectionHead(channels, embedding_dim)

    def forward(
        self,
        *,
        logits: Tensor,
        labels: Tensor,
        image: Tensor | None = None,
        image_features: Sequence[Tensor] | None = None,
        event_features: Sequence[Tensor] | None = None,
        instance_masks: Tensor | None = None,
        image_logits: Tensor | None = None,
        event_logits: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> CACDLossOutput:
        """Compute the enabled parts and their weighted total.

        Args:
            logits: ``(batch, K, H, W)`` fused class scores at label size.
            labels: ``(batch, H, W)`` labels, 255 = ignore.
            image: ``(batch, 3, H, W)`` RGB in [0, 1]; needed by JBCD.
            image_features: Per-stage image-branch features before fusion; HFCA and JBCD.
            event_features: Per-stage event-branch features before fusion; HFCA and JBCD.
            instance_masks: ``(batch, H, W)`` instance ids; needed by HFCA.
            image_logits: Image-branch auxiliary head scores; needed by JBCD.
            event_logits: Event-branch auxiliary head scores; needed by JBCD.
            generator: Random generator for L_intra's pixel sampling.

        Returns:
            The total and the detached parts.

        Raises:
            ValueError: An input an enabled part needs is missing.
            NonFiniteLossError: A part is NaN or infinite (with ``raise_on_non_finite``).
        """
        parts: dict[str, Tensor] = {"ce": segmentation_cross_entropy(logits, labels)}
        weights = self.weights
        if self.use_hfca:
            _require(
                "HFCA",
                image_features=image_features,
                event_features=event_features,
                instance_masks=instance_masks,
            )
            _check_feature_lists(image_features, event_features)
            image_stage = image_features[self.hfca_stage]
            event_stage = event_features[self.hfca_stage]
            intra_options = {
                "temperature": weights.temperature,
                "max_pixels_per_instance": self.max_pixels_per_instance,
                "generator": generator,
            }
            # Each modality clusters its own features; L_intra is the sum of the two.
            image_intra = intra_domain_loss(
                image_stage, instance_masks, self.image_projection, **intra_options
            )
            event_intra = intra_domain_loss(
                event_stage, instance_masks, self.event_projection, **intra_options
            )
            parts["intra"] = image_intra + event_intra
            image_instances = mask_pooled_embeddings(
                image_stage, instance_masks, self.image_projection
            )
            event_instances = mask_pooled_embeddings(
                event_stage, instance_masks, self.event_projection
            )
            parts["inter"] = inter_domain_loss(
                image_instances.embeddings,
                event_instances.embeddings,
                temperature=weights.temperature,
            )
        if self.use_jbcd:
            _require(
                "JBCD",
                image=image,
                image_features=image_features,
                event_features=event_features,
                image_logits=image_logits,
                event_logits=event_logits,
            )
            parts["boundary"] = boundary_distillation_loss(
                image_features, event_features, image, stages=self.boundary_stages
            )
            parts["content"] = content_distillation_loss(
                image_logits,
                event_logits,
                image,
                low=weights.exposure_low,
                high=weights.exposure_high,
            )
        total = cacd_total_loss(parts, weights)
        logged = {name: float(value.detach()) for name, value in parts.items()}
        logged["total"] = float(total.detach())
        if self.raise_on_non_finite:
            check_finite(logged)
        return CACDLossOutput(total, logged)


def _require(what: str, **inputs: object) -> None:
    missing = [name for name, value in inputs.items() if value is None]
    if missing:
        raise ValueError(
            f"{what} is enabled but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
            f"None; pass them or disable {what}"
        )
