r"""Training losses of CACD (paper §4, Eq. 1-8): cross-entropy, HFCA and JBCD.

The network is trained with Eq. 8,

    L_total = CE + λ1 L_intra + λ2 L_inter + λ3 L_boundary + λ4 L_content

with λ = 0.0005, 0.01, 0.001, 0.001 (§4.3). HFCA (Heterogeneous Feature Contrastive Alignment,
§4.1) projects both encoders' features into one space (Eq. 1), averages them inside SAM instance
masks (Eq. 2-3), spreads the instances of one domain apart (Eq. 4) and matches each event
instance to the same instance of the frame (Eq. 5). JBCD (Joint Boundary-Content Distillation,
§4.2) carries event knowledge to the frame branch: features at edges of a well-exposed
reconstruction (Eq. 6) and class-channel content inside over- or under-exposed regions (Eq. 7).
Projection and content heads are training-only (§5.2: inference needs encoders, fusion and
decoder only); they live in :class:`CACDLoss`, so the optimiser and the checkpoint hold them.

There is one function per equation; each docstring restates its equation and names every
choice the paper leaves open. In short:

* **Scale.** Every term is a sum or a norm exactly as written (Eq. 4 and 5 sum over instances,
  Eq. 6 is an L1 norm over channels and positions) and only the batch is averaged. The λs of
  Eq. 8 were chosen for terms of that size; mean-reduced terms would make the distillation
  gradients vanish next to the cross-entropy's.
* **One stage.** HFCA and JBCD read one encoder stage (``hfca_stage``; stage 2, 1/16 of the
  input, by default). With HFCA off (ablation "+JBCD without HFCA", §5.2) JBCD reads the raw
  encoder features of that stage.
* **Unit sphere.** F of Eq. 1 and the instance vectors of Eq. 2-3 are L2-normalised.
* **Teacher.** Eq. 6 and 7 transfer from events to the frame (§4.2: "from event to image"):
  the event side is detached, the image branch alone receives their gradient.
* **Nothing to measure.** Every term returns a scalar that stays connected to its inputs; with
  nothing to measure (no image with two instances, no extreme-exposure region, no sample with
  both modalities) it is exactly zero, so backward, DDP and the optimiser step run unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DEFAULT_MAX_INSTANCES",
    "IGNORE_INDEX",
    "LOSS_PARTS",
    "CACDLoss",
    "CACDLossOutput",
    "CACDLossWeights",
    "InstanceWeights",
    "InvalidLabelError",
    "NonFiniteLossError",
    "ProjectionHead",
    "boundary_distillation_loss",
    "cacd_total_loss",
    "check_finite",
    "content_distillation_loss",
    "count_invalid_labels",
    "exposure_region",
    "extreme_exposure_mask",
    "gradient_intensity_map",
    "instance_features",
    "instance_weights",
    "inter_domain_loss",
    "intra_domain_loss",
    "project_features",
    "segmentation_cross_entropy",
    "weighted_loss_parts",
]

#: Label value that contributes nothing to the cross-entropy (the runtime's void class).
IGNORE_INDEX = 255

#: Names of the parts of Eq. 8, in logging order.
LOSS_PARTS = ("ce", "intra", "inter", "boundary", "content")

#: Instances per image that HFCA uses (the largest ones), see :func:`instance_weights`.
DEFAULT_MAX_INSTANCES = 32

#: ITU-R BT.601 luma weights; they sum to 1, so the luma of RGB in [0, 1] is in [0, 1].
_LUMA_WEIGHTS = (0.299, 0.587, 0.114)

#: Largest Sobel magnitude of an image in [0, 1]. On a 3x3 patch ``a`` the responses are
#: gx = (a02 + 2 a12 + a22) - (a00 + 2 a10 + a20) and gy = (a20 + 2 a21 + a22) - (a00 + 2 a01 +
#: a02); gx^2 + gy^2 is convex, so its maximum lies on a corner of [0, 1]^9: a22 = a12 = a21 = 1,
#: a00 = a10 = a01 = 0 and a02 - a20 = +-1 give gx, gy = 4, 2 (or 2, 4): sqrt(20).
_SOBEL_MAX_MAGNITUDE = math.sqrt(20.0)

#: Keeps logarithms finite where a probability underflows to zero.
_LOG_EPS = 1e-12


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


def _zero(*tensors: Tensor) -> Tensor:
    """An exact zero that is still part of the graph of ``tensors``."""
    zero = tensors[0].sum() * 0.0
    for tensor in tensors[1:]:
        zero = zero + tensor.sum() * 0.0
    return zero


def _check_map(tensor: Tensor, name: str) -> None:
    if tensor.dim() != 4:
        raise ValueError(f"{name} must be (batch, C, h, w), got shape {tuple(tensor.shape)!r}")


def _check_rgb(image: Tensor, name: str) -> None:
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"{name} must be (batch, 3, H, W) RGB, got shape {tuple(image.shape)!r}")


def _check_pair(image_side: Tensor, event_side: Tensor, what: str) -> None:
    if image_side.shape != event_side.shape:
        raise ValueError(
            f"{what}: image branch {tuple(image_side.shape)!r} and event branch "
            f"{tuple(event_side.shape)!r} differ"
        )


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")


def _check_exposure_thresholds(low: float, high: float) -> None:
    if not 0.0 <= low < high <= 1.0:
        raise ValueError(
            f"exposure thresholds must satisfy 0 <= low < high <= 1, got low={low!r}, high={high!r}"
        )


# --------------------------------------------------------------------------------------------
# Cross-entropy (the CE of Eq. 8)
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
    r"""Pixel-wise cross-entropy of the fused prediction, the CE term of Eq. 8.

    :math:`CE = -\frac{1}{|\Omega|}\sum_{x \in \Omega} \log \mathrm{softmax}(z(x))_{y(x)}` over the
    labelled pixels :math:`\Omega` (those not equal to ``ignore_index``): the usual pixel mean,
    which is the scale the λs of Eq. 8 are relative to. With no labelled pixel the loss is
    exactly 0 (``F.cross_entropy`` would return NaN from 0/0).

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
# HFCA (§4.1): Eq. 1-5
# --------------------------------------------------------------------------------------------


class ProjectionHead(nn.Module):
    """P_img / P_evt of Eq. 1: a per-position two-layer MLP (1x1 conv, ReLU, 1x1 conv).

    Use it through :func:`project_features`, which adds the normalisation to the unit sphere.
    A 1x1 convolution is a linear layer applied at every position, so each position is projected
    on its own, as Eq. 1 states per coordinate (i, j).

    Args:
        in_channels: Channels of the encoder stage it reads.
        out_dim: Channels of the common space.
        hidden_dim: Width of the hidden layer; defaults to ``in_channels``.
    """

    def __init__(self, in_channels: int, out_dim: int = 128, *, hidden_dim: int | None = None):
        super().__init__()
        if in_channels <= 0 or out_dim <= 0:
            raise ValueError(
                f"in_channels and out_dim must be positive, got {in_channels!r} and {out_dim!r}"
            )
        hidden_dim = in_channels if hidden_dim is None else hidden_dim
        self.fc1 = nn.Conv2d(in_channels, hidden_dim, 1)
        self.fc2 = nn.Conv2d(hidden_dim, out_dim, 1)

    def forward(self, features: Tensor) -> Tensor:
        """``(batch, in_channels, h, w) -> (batch, out_dim, h, w)``, not normalised."""
        return self.fc2(F.relu(self.fc1(features)))


def project_features(features: Tensor, projection: Callable[[Tensor], Tensor]) -> Tensor:
    r"""Eq. 1: map one branch's encoder features into the common space, position by position.

    The paper sends the features of every coordinate through a projection layer, one per
    modality (P_evt for events, P_img for the frame): :math:`F_{(i,j)} = P(f_{(i,j)})`.

    Choice the paper leaves open: the output is L2-normalised at every position (unit sphere).
    Otherwise Eq. 4 could be lowered by inflating the norms (large anti-aligned vectors drive
    ``exp`` of their dot product to 0) and Eq. 6 could be met by shrinking F towards 0 in both
    branches, neither of which aligns anything.

    Args:
        features: ``(batch, C, h, w)`` encoder features f of one stage of one modality.
        projection: That modality's :class:`ProjectionHead`.

    Returns:
        ``(batch, D, h, w)`` unit vectors F.
    """
    _check_map(features, "features")
    return F.normalize(projection(features), dim=1)


class InstanceWeights(NamedTuple):
    """The instance masks of a batch on one feature grid (see :func:`instance_weights`).

    Images have different instance counts; rows past an image's count are padding (all-zero
    weights, ``valid`` False, id 0).
    """

    weights: Tensor  #: (batch, K, h, w) share of each grid cell covered by instance k
    valid: Tensor  #: (batch, K) bool, False on padding rows
    instance_ids: Tensor  #: (batch, K) int64 ids from the masks, 0 on padding rows


def instance_weights(
    instance_masks: Tensor, size: tuple[int, int], *, max_instances: int = DEFAULT_MAX_INSTANCES
) -> InstanceWeights:
    """Bring the instance masks M_k of Eq. 2-3 from label resolution to a feature grid.

    Choices the paper leaves open (its masks are at the features' resolution):

    * Each instance's one-hot mask is area-pooled to the grid, so a cell's weight is the share
      of it the instance covers. An instance smaller than one cell still gets a (small) weight
      instead of vanishing, as it would with nearest sampling; a cell shared by two instances
      counts for both in proportion.
    * At most ``max_instances`` instances per image are kept, the largest by pixel count at
      label resolution (ties: smaller id first). This bounds the K x K terms of Eq. 4-5 (whose
      sums grow with K^2); the smallest instances are dropped first, they carry the least
      feature support on a coarse grid.

    Ids are per image: id 3 of image 0 and id 3 of image 1 are two instances.

    Args:
        instance_masks: ``(batch, H, W)`` integer ids, 0 = no instance.
        size: ``(h, w)`` of the feature grid.
        max_instances: Instances kept per image.

    Returns:
        Weights, validity and ids, padded to the largest kept count of the batch.

    Raises:
        ValueError: Bad shape, dtype, a negative id or ``max_instances < 1``.
    """
    if instance_masks.dim() != 3:
        raise ValueError(
            f"instance_masks must be (batch, H, W), got shape {tuple(instance_masks.shape)!r}"
        )
    if instance_masks.is_floating_point() or instance_masks.dtype == torch.bool:
        raise ValueError(
            f"instance_masks must hold integer ids, got dtype {instance_masks.dtype!r}"
        )
    if max_instances < 1:
        raise ValueError(f"max_instances must be >= 1, got {max_instances!r}")
    masks = instance_masks.long()
    if masks.numel() and bool((masks < 0).any()):
        raise ValueError(
            f"instance_masks hold negative ids (minimum {int(masks.min())!r}); 0 marks "
            "'no instance', ids start at 1"
        )
    batch = masks.shape[0]
    height, width = int(size[0]), int(size[1])
    chosen_ids: list[Tensor] = []
    for mask in masks:
        ids, counts = torch.unique(mask[mask > 0], return_counts=True)  # ids ascending
        order = torch.argsort(-counts, stable=True)[:max_instances]
        chosen_ids.append(ids[order])
    count = max((ids.numel() for ids in chosen_ids), default=0)
    weights = masks.new_zeros((batch, count, height, width), dtype=torch.float32)
    valid = torch.zeros(batch, count, dtype=torch.bool, device=masks.device)
    instance_ids = masks.new_zeros((batch, count))
    for index, (mask, ids) in enumerate(zip(masks, chosen_ids)):
        kept = ids.numel()
        if kept == 0:
            continue
        one_hot = (mask.unsqueeze(0) == ids.view(-1, 1, 1)).float()  # (kept, H, W)
        weights[index, :kept] = F.adaptive_avg_pool2d(one_hot, (height, width))
        valid[index, :kept] = True
        instance_ids[index, :kept] = ids
    return InstanceWeights(weights, valid, instance_ids)


def instance_features(features: Tensor, weights: InstanceWeights) -> Tensor:
    r"""Eq. 2 (events) and Eq. 3 (frame): one vector per instance, the mask-weighted mean of F.

    The paper averages the projected features over the positions of each instance mask,
    :math:`F_k = \sum_{i,j} M_k(i,j) F_{(i,j)} / \sum_{i,j} M_k(i,j)`: projection first
    (Eq. 1), pooling second. Here :math:`M_k` is the covered share of each cell (see
    :func:`instance_weights`).

    Choice the paper leaves open: :math:`F_k` is re-normalised to unit length. The mean of
    unit vectors is shorter the more they scatter; without re-normalising, Eq. 4 could be
    lowered by scattering the positions inside one instance (its mean shrinks towards 0, every
    dot product towards 0) instead of separating the instances, and the dot products of Eq. 5
    would mix alignment with how compact an instance is.

    Args:
        features: ``(batch, D, h, w)`` projected features F (or raw f without HFCA).
        weights: The instances on the same ``(h, w)`` grid.

    Returns:
        ``(batch, K, D)`` unit vectors; padding rows are zero.
    """
    _check_map(features, "features")
    if tuple(weights.weights.shape[-2:]) != tuple(features.shape[-2:]) or (
        weights.weights.shape[0] != features.shape[0]
    ):
        raise ValueError(
            f"instance weights {tuple(weights.weights.shape)!r} are not on the grid of "
            f"features {tuple(features.shape)!r}"
        )
    mask = weights.weights.to(features.dtype)
    sums = torch.einsum("bkhw,bdhw->bkd", mask, features)
    area = mask.sum(dim=(2, 3)).clamp_min(1e-12).unsqueeze(-1)
    return F.normalize(sums / area, dim=-1)


def _check_instances(image_instances: Tensor, event_instances: Tensor, valid: Tensor) -> None:
    _check_pair(image_instances, event_instances, "instance features")
    if image_instances.dim() != 3 or tuple(valid.shape) != tuple(image_instances.shape[:2]):
        raise ValueError(
            f"instance features must be (batch, K, D) with valid (batch, K); got "
            f"{tuple(image_instances.shape)!r} and {tuple(valid.shape)!r}"
        )


def intra_domain_loss(image_instances: Tensor, event_instances: Tensor, valid: Tensor) -> Tensor:
    r"""Eq. 4, L_intra: push apart the different instances of one image within each domain.

    The paper penalises how similar the vectors of two different instances of the same domain
    are, summing :math:`\exp(F_i \cdot F_j)` over all ordered pairs :math:`i \ne j` of the
    image's K instances, for events and for the frame:

    .. math::
        L_b = \sum_{i \ne j} \exp(F^{evt}_i \cdot F^{evt}_j) + \exp(F^{img}_i \cdot F^{img}_j)

    A pure repulsion: no temperature, no attracting term (Eq. 5 does the attracting).

    Choice the paper leaves open (it states the loss for one image): the batch value is the
    mean of :math:`L_b` over the images with at least two instances; an image with fewer has
    no pair, and counting it as 0 would make the term depend on how many such images a batch
    happens to hold.

    Args:
        image_instances: ``(batch, K, D)`` frame instance vectors (Eq. 3), unit length.
        event_instances: ``(batch, K, D)`` event instance vectors (Eq. 2), same instances.
        valid: ``(batch, K)`` bool, False on padding rows.

    Returns:
        Scalar loss; exactly 0 (and connected) when no image has two instances.
    """
    _check_instances(image_instances, event_instances, valid)
    count = image_instances.shape[1]
    distinct = ~torch.eye(count, dtype=torch.bool, device=valid.device)
    pairs = valid.unsqueeze(2) & valid.unsqueeze(1) & distinct  # (batch, K, K)
    used = valid.sum(dim=1) >= 2
    if not bool(used.any()):
        return _zero(image_instances, event_instances)
    total = image_instances.new_zeros(image_instances.shape[0])
    for instances in (event_instances, image_instances):
        similarity = instances @ instances.transpose(1, 2)  # (batch, K, K)
        total = total + torch.where(pairs, similarity.exp(), 0.0).sum(dim=(1, 2))
    return total[used].mean()


def inter_domain_loss(
    image_instances: Tensor, event_instances: Tensor, valid: Tensor, *, temperature: float = 0.1
) -> Tensor:
    r"""Eq. 5, L_inter: match every event instance to the same instance of the frame.

    The paper pulls together the event and frame vectors of one instance and pushes apart
    those of different instances, contrastively: each event instance :math:`i` is the anchor,
    its frame vector the positive, the frame vectors of the image's other instances the
    negatives, and the terms are summed over the K instances of the image:

    .. math::
        L_b = -\sum_{i=1}^{K} \log \frac{\exp(F^{evt}_i \cdot F^{img}_i / \tau)}
                                       {\sum_{j=1}^{K} \exp(F^{evt}_i \cdot F^{img}_j / \tau)}

    One direction only (event anchors), negatives only from the same image, as written.
    Gradients reach both branches: alignment moves both towards each other.

    Choices the paper leaves open:

    * :math:`\tau` = 0.1 by default. The vectors are unit length, so the dot products lie in
      [-1, 1]; with :math:`\tau` = 1 the logits span at most 2 and even a perfect match keeps
      a large loss (32 instances: the positive's softmax share cannot exceed
      e / (e + 31/e) ≈ 0.19), so the term never settles. 0.1 (logit span 20) is in the range
      that contrastive learning on the unit sphere commonly uses (0.07-0.2, SimCLR / MoCo).
    * The batch value is the mean of :math:`L_b` over the images with at least one instance
      (with one, :math:`L_b` is exactly 0: the softmax over one entry is 1).

    Args:
        image_instances: ``(batch, K, D)`` frame instance vectors (Eq. 3), unit length.
        event_instances: ``(batch, K, D)`` event instance vectors (Eq. 2), same instances.
        valid: ``(batch, K)`` bool, False on padding rows.
        temperature: :math:`\tau`.

    Returns:
        Scalar loss; exactly 0 (and connected) when no image has an instance.
    """
    _check_instances(image_instances, event_instances, valid)
    _check_temperature(temperature)
    used = valid.any(dim=1)
    if not bool(used.any()):
        return _zero(image_instances, event_instances)
    # logits[b, i, j] = F_i^evt . F_j^img / tau, j restricted to the image's instances.
    logits = event_instances @ image_instances.transpose(1, 2) / temperature
    logits = logits.masked_fill(~valid.unsqueeze(1), float("-inf"))
    # Padding anchors would be rows of -inf only (NaN softmax); they are dropped below.
    logits = torch.where(valid.unsqueeze(2), logits, 0.0)
    log_probability = torch.log_softmax(logits, dim=2).diagonal(dim1=1, dim2=2)  # (batch, K)
    per_image = -torch.where(valid, log_probability, 0.0).sum(dim=1)
    return per_image[used].mean()


# --------------------------------------------------------------------------------------------
# JBCD (§4.2): Eq. 6-7
# --------------------------------------------------------------------------------------------


def gradient_intensity_map(reconstructed: Tensor) -> Tensor:
    """M_GIM of Eq. 6: Sobel gradient magnitude of a well-exposed frame, in [0, 1].

    The paper computes gradients on the frame reconstructed from frame and events (EvLight),
    not on the degraded frame, so blur and clipped exposure do not hide the edges. Choices it
    leaves open:

    * Grey value = BT.601 luma of the RGB input (clamped to [0, 1]); borders are replicated,
      so the frame's own border is not an edge.
    * The magnitude is divided by the largest Sobel magnitude any [0, 1] image can have
      (sqrt(20)), a constant, so the map is in [0, 1] and a low-contrast frame keeps weaker
      edges than a high-contrast one (a per-image maximum would inflate faint edges and noise).

    The map is a constant of the loss (no gradient).

    Args:
        reconstructed: ``(batch, 3, H, W)`` RGB in [0, 1].

    Returns:
        ``(batch, 1, H, W)`` weights in [0, 1].
    """
    _check_rgb(reconstructed, "reconstructed")
    with torch.no_grad():
        image = reconstructed.detach().float().clamp(0.0, 1.0)
        luma = torch.tensor(_LUMA_WEIGHTS, device=image.device).view(1, 3, 1, 1)
        grey = (image * luma).sum(dim=1, keepdim=True)
        sobel_x = torch.tensor(
            [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=image.device
        )
        kernels = torch.stack([sobel_x, sobel_x.T]).unsqueeze(1)  # (2, 1, 3, 3)
        gradients = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kernels)
        magnitude = gradients.pow(2).sum(dim=1, keepdim=True).sqrt()
        return (magnitude / _SOBEL_MAX_MAGNITUDE).clamp(0.0, 1.0)


def _check_distillation_inputs(
    image_features: Tensor, event_features: Tensor, rgb: Tensor, rgb_name: str
) -> None:
    """Both branches' maps alike, and an RGB batch of the same size (Eq. 6 and 7)."""
    _check_map(image_features, "image_features")
    _check_pair(image_features, event_features, f"{rgb_name} distillation features")
    _check_rgb(rgb, rgb_name)
    if rgb.shape[0] != image_features.shape[0]:
        raise ValueError(
            f"{rgb_name} batch {rgb.shape[0]!r} differs from the features' batch "
            f"{image_features.shape[0]!r}"
        )


def boundary_distillation_loss(
    image_features: Tensor, event_features: Tensor, reconstructed: Tensor
) -> Tensor:
    r"""Eq. 6, L_boundary: make the frame's features match the events' at edges.

    The paper weights both branches' features by the gradient intensity map and asks for
    pixel-wise agreement under an L1 norm, so the sharp edges the event camera records reach
    the frame branch:

    .. math::
        L_b = \big\| F^{img} \odot M_{GIM} - \mathrm{sg}(F^{evt}) \odot M_{GIM} \big\|_1
            = \sum_{c, x} \big| M(x) F^{img}(c, x) - M(x)\, \mathrm{sg}(F^{evt}(c, x)) \big|

    Choices the paper leaves open:

    * Direction: sg (stop-gradient) on the event branch. §4.2 transfers boundary knowledge
      from events to the frame, so the event branch is the teacher and only the image branch
      (its encoder and P_img) receives this gradient.
    * F: the features of the HFCA stage after Eq. 1 (both unit length per position), or the
      raw encoder features of that stage when HFCA is off.
    * :math:`M_{GIM}` (:func:`gradient_intensity_map` of ``reconstructed``) is area-pooled to
      the feature grid: a cell's weight is the mean edge strength inside it.
    * L1 norm = sum over channels and positions of one image; the batch value is the mean
      over images.

    Args:
        image_features: ``(batch, C, h, w)`` frame branch F.
        event_features: ``(batch, C, h, w)`` event branch F (detached here).
        reconstructed: ``(batch, 3, H, W)`` well-exposed RGB in [0, 1] on the input grid.

    Returns:
        Scalar loss; exactly 0 (and connected) for an empty batch.
    """
    _check_distillation_inputs(image_features, event_features, reconstructed, "reconstructed")
    if image_features.shape[0] == 0:
        return _zero(image_features, event_features)
    weights = gradient_intensity_map(reconstructed)
    weights = F.adaptive_avg_pool2d(weights, tuple(image_features.shape[-2:]))
    weights = weights.to(image_features.dtype)
    teacher = event_features.detach()
    per_image = (image_features * weights - teacher * weights).abs().sum(dim=(1, 2, 3))
    return per_image.mean()


def extreme_exposure_mask(image: Tensor, *, low: float = 0.15, high: float = 0.9) -> Tensor:
    """Pixels whose HSV value ``V = max(R, G, B)`` is below ``low`` or above ``high``.

    §4.2 marks under-exposed (V < alpha) and over-exposed (V > beta) areas of the frame this
    way; alpha = 0.15 and beta = 0.9 are our defaults (the paper gives no values).

    Args:
        image: ``(batch, 3, H, W)`` RGB in [0, 1].
        low: alpha.
        high: beta.

    Returns:
        ``(batch, 1, H, W)`` bool.
    """
    _check_rgb(image, "image")
    _check_exposure_thresholds(low, high)
    value = image.detach().amax(dim=1, keepdim=True)
    return (value < low) | (value > high)


def exposure_region(
    image: Tensor, size: tuple[int, int], *, low: float = 0.15, high: float = 0.9
) -> Tensor:
    """The extreme-exposure region R of Eq. 7 on a feature grid.

    A cell belongs to R when more than half of its pixels are extreme (area pooling of
    :func:`extreme_exposure_mask`, then a strict majority); on the input grid this is the mask
    itself.

    Args:
        image: ``(batch, 3, H, W)`` RGB in [0, 1], the (degraded) input frame.
        size: ``(h, w)`` of the grid.
        low: alpha.
        high: beta.

    Returns:
        ``(batch, h, w)`` bool.
    """
    extreme = extreme_exposure_mask(image, low=low, high=high).float()
    return F.adaptive_avg_pool2d(extreme, (int(size[0]), int(size[1])))[:, 0] > 0.5


def content_distillation_loss(
    image_features: Tensor,
    event_features: Tensor,
    image: Tensor,
    *,
    image_head: Callable[[Tensor], Tensor],
    event_head: Callable[[Tensor], Tensor],
    low: float = 0.15,
    high: float = 0.9,
) -> Tensor:
    r"""Eq. 7, L_content: share the events' content with the frame inside extreme exposure.

    The paper restricts both branches' content features (one channel per class) to the region
    R where the frame is over- or under-exposed, turns every class channel into a probability
    distribution, and maximises the KL divergence between the joint distribution of the two
    branches and the product of their own distributions, i.e. their mutual information:

    .. math::
        L_b = -\sum_{c, c'} J(c, c') \log \frac{J(c, c')}{J^{evt}(c)\, J^{img}(c')}

    Construction (choices the paper leaves open):

    * Content features: a training-only content head per branch (a 1x1 convolution to one
      channel per class) applied to F (or to the raw stage features without HFCA).
    * Within each class channel c, a softmax over the positions x of R gives the spatial
      distributions :math:`p^{evt}_c(x)` and :math:`p^{img}_c(x)` ("within each channel ...
      the spatial distribution of each semantic concept").
    * The joint is over pairs of class channels,
      :math:`J(c, c') \propto \sum_{x \in R} p^{evt}_c(x)\, p^{img}_{c'}(x)` normalised to
      sum 1: how much the event branch's concept c and the frame's concept c' occupy the same
      places. The product is the outer product of J's marginals, so the KL is the mutual
      information of J, and Eq. 7's minus sign makes minimising L maximise it: maximal when
      every event concept overlaps one frame concept and no other, i.e. when the frame
      branch lays out the region's content as the events do.
    * Why not a per-position joint: pairing the two distributions position by position,
      :math:`q_c(x) \propto p^{evt}_c(x)\, p^{img}_c(x)` against the product
      :math:`p^{evt}_c(x)\, p^{img}_c(x)`, gives
      :math:`KL = -\log \sum_x p^{evt}_c(x)\, p^{img}_c(x)`; maximising it minimises the
      overlap of the two branches, pushing them apart, the opposite of distillation.
    * Direction: the event features are detached (teacher; §4.2 takes knowledge "from event
      to image domain"), so the event branch gets nothing from Eq. 7 and the frame branch
      gets all of it. The event content head itself still learns (it reads the detached
      features): a head frozen at its random initialisation gives nearly uniform spatial
      distributions (small weights), hence a near-zero mutual information to match.
    * Per image (R and its softmax are per image); the batch value is the mean over images
      whose R is not empty.

    Args:
        image_features: ``(batch, C, h, w)`` frame branch F.
        event_features: ``(batch, C, h, w)`` event branch F (detached here).
        image: ``(batch, 3, H, W)`` RGB in [0, 1], the input frame that defines R.
        image_head: Frame content head, ``(batch, C, h, w) -> (batch, K, h, w)``.
        event_head: Event content head, same shapes.
        low: alpha of :func:`extreme_exposure_mask`.
        high: beta of :func:`extreme_exposure_mask`.

    Returns:
        Scalar loss (<= 0); exactly 0 (and connected) when no image has an extreme region.
    """
    _check_distillation_inputs(image_features, event_features, image, "image")
    image_content = image_head(image_features)
    event_content = event_head(event_features.detach())
    _check_pair(image_content, event_content, "content scores")
    batch, classes = image_content.shape[:2]
    region = exposure_region(image, tuple(image_content.shape[-2:]), low=low, high=high)
    losses = []
    for index in range(batch):
        cells = region[index].reshape(-1)
        if not bool(cells.any()):
            continue
        frame_scores = image_content[index].reshape(classes, -1)[:, cells]  # (K, |R|)
        event_scores = event_content[index].reshape(classes, -1)[:, cells]
        frame_spatial = torch.softmax(frame_scores, dim=1)  # p_c'^img(x), sums to 1 over x
        event_spatial = torch.softmax(event_scores, dim=1)  # p_c^evt(x)
        joint = event_spatial @ frame_spatial.T  # (K, K): J(c, c') before normalising
        joint = joint / joint.sum()
        event_marginal = joint.sum(dim=1, keepdim=True)
        frame_marginal = joint.sum(dim=0, keepdim=True)
        log_ratio = (
            joint.clamp_min(_LOG_EPS).log()
            - event_marginal.clamp_min(_LOG_EPS).log()
            - frame_marginal.clamp_min(_LOG_EPS).log()
        )
        losses.append(-(joint * log_ratio).sum())
    if not losses:
        return _zero(image_content, event_content)
    return torch.stack(losses).mean()


# --------------------------------------------------------------------------------------------
# Eq. 8: the total
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CACDLossWeights:
    """λ1-λ4 of Eq. 8 (paper values as defaults) and the constants of Eq. 5 and 7.

    Attributes:
        intra: λ1, weight of L_intra (Eq. 4).
        inter: λ2, weight of L_inter (Eq. 5).
        boundary: λ3, weight of L_boundary (Eq. 6).
        content: λ4, weight of L_content (Eq. 7).
        temperature: τ of Eq. 5 (Eq. 4 has none); the paper gives no value, see
            :func:`inter_domain_loss` for why 0.1.
        exposure_low: alpha of Eq. 7's region, V below it is under-exposed.
        exposure_high: beta of Eq. 7's region, V above it is over-exposed.
    """

    intra: float = 0.0005
    inter: float = 0.01
    boundary: float = 0.001
    content: float = 0.001
    temperature: float = 0.1
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
        """λ of a named part; the cross-entropy has weight 1."""
        if part == "ce":
            return 1.0
        if part not in LOSS_PARTS:
            raise ValueError(f"unknown loss part {part!r}; expected one of {LOSS_PARTS!r}")
        return getattr(self, part)


def weighted_loss_parts(parts: Mapping[str, Tensor], weights: CACDLossWeights) -> dict[str, Tensor]:
    """The summands of Eq. 8: ``{"ce": CE, "intra": λ1 L_intra, ...}`` for the parts present.

    Raises:
        ValueError: ``"ce"`` missing or an unknown part name.
    """
    if "ce" not in parts:
        raise ValueError(f"parts must contain 'ce', got {sorted(parts)!r}")
    return {name: weights.weight_of(name) * value for name, value in parts.items()}


def cacd_total_loss(parts: Mapping[str, Tensor], weights: CACDLossWeights) -> Tensor:
    r"""Eq. 8: the total, cross-entropy plus the four CACD terms with fixed weights.

    .. math::
        L_{total} = CE + λ_1 L_{intra} + λ_2 L_{inter} + λ_3 L_{boundary} + λ_4 L_{content}

    The paper balances the terms with fixed weights. The terms it weights are the sums and
    norms of Eq. 4-7 as written (see the module docstring); a disabled term is simply absent.

    Args:
        parts: Unweighted loss tensors by name (a subset of :data:`LOSS_PARTS`; ``"ce"``
            required).
        weights: The λs.

    Returns:
        Scalar total.

    Raises:
        ValueError: ``"ce"`` missing or an unknown part name.
    """
    summands = weighted_loss_parts(parts, weights)
    total = summands["ce"]
    for name, value in summands.items():
        if name != "ce":
            total = total + value
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
    """Total loss to back-propagate, the unweighted parts for logging, and Eq. 8's summands."""

    total: Tensor
    parts: dict[str, float]  #: detached floats; disabled parts are absent; includes "total"
    weighted: dict[str, Tensor]  #: ``weight * part`` with its graph, by part name (ce included)


class CACDLoss(nn.Module):
    """The CACD objective (Eq. 8), holding the training-only heads.

    Heads: P_img and P_evt of Eq. 1 (with HFCA) and one content head per branch for Eq. 7
    (with JBCD): a 1x1 convolution from F (or, without HFCA, from the raw stage features) to
    one channel per class. The paper's ablation maps to the switches: fused only (both off),
    +HFCA (``use_jbcd=False``), +JBCD without HFCA (``use_hfca=False``), full CACD (both on).
    A disabled part is neither computed nor reported, and its inputs may be ``None``.

    All HFCA / JBCD arithmetic runs in float32 with autocast off (exp, log and the K x K sums
    of Eq. 4-7 lose too much in bf16/fp16); the network's features are cast up first.

    Args:
        stage_channels: Channels of each encoder stage (the same for both branches).
        num_classes: Classes; channels of the content heads.
        weights: λs and constants.
        use_hfca: Add L_intra and L_inter (Eq. 4-5).
        use_jbcd: Add L_boundary and L_content (Eq. 6-7).
        hfca_stage: 0-based encoder stage that HFCA and JBCD read.
        embedding_dim: Channels of the common space of Eq. 1.
        max_instances: Instances per image used by Eq. 2-5 (the largest).
        raise_on_non_finite: Run :func:`check_finite` on every part and the total.

    Raises:
        ValueError: ``hfca_stage`` outside the stages, or a non-positive size.
    """

    def __init__(
        self,
        stage_channels: Sequence[int],
        num_classes: int,
        *,
        weights: CACDLossWeights | None = None,
        use_hfca: bool = True,
        use_jbcd: bool = True,
        hfca_stage: int = 2,
        embedding_dim: int = 128,
        max_instances: int = DEFAULT_MAX_INSTANCES,
        raise_on_non_finite: bool = True,
    ):
        super().__init__()
        self.stage_channels = tuple(int(c) for c in stage_channels)
        if not self.stage_channels:
            raise ValueError("stage_channels is empty")
        # The stage matters only to HFCA/JBCD; a CE-only loss accepts any encoder depth.
        if (use_hfca or use_jbcd) and not 0 <= hfca_stage < len(self.stage_channels):
            raise ValueError(
                f"hfca_stage {hfca_stage!r} is not a stage index of the "
                f"{len(self.stage_channels)} stages {self.stage_channels!r} (0-based)"
            )
        if num_classes < 1 or max_instances < 1:
            raise ValueError(
                f"num_classes and max_instances must be >= 1, got {num_classes!r} and "
                f"{max_instances!r}"
            )
        self.weights = weights if weights is not None else CACDLossWeights()
        self.use_hfca = use_hfca
        self.use_jbcd = use_jbcd
        self.hfca_stage = hfca_stage
        self.max_instances = max_instances
        self.raise_on_non_finite = raise_on_non_finite
        channels = self.stage_channels[hfca_stage] if (use_hfca or use_jbcd) else 0
        self.image_projection: ProjectionHead | None = None
        self.event_projection: ProjectionHead | None = None
        self.image_content: nn.Conv2d | None = None
        self.event_content: nn.Conv2d | None = None
        if use_hfca:
            self.image_projection = ProjectionHead(channels, embedding_dim)
            self.event_projection = ProjectionHead(channels, embedding_dim)
        if use_jbcd:
            content_in = embedding_dim if use_hfca else channels
            self.image_content = nn.Conv2d(content_in, num_classes, 1)
            self.event_content = nn.Conv2d(content_in, num_classes, 1)

    def forward(
        self,
        *,
        logits: Tensor,
        labels: Tensor,
        image: Tensor | None = None,
        reconstructed: Tensor | None = None,
        image_features: Sequence[Tensor] | None = None,
        event_features: Sequence[Tensor] | None = None,
        instance_masks: Tensor | None = None,
        paired: Tensor | None = None,
    ) -> CACDLossOutput:
        """Compute the enabled parts and Eq. 8's total.

        Args:
            logits: ``(batch, K, H, W)`` fused class scores at label size.
            labels: ``(batch, H, W)`` labels, 255 = ignore. CE uses every sample.
            image: ``(batch, 3, H, W)`` input RGB in [0, 1]; Eq. 7's region (JBCD).
            reconstructed: ``(batch, 3, H, W)`` well-exposed RGB in [0, 1]; Eq. 6's M_GIM
                (JBCD).
            image_features: Per-stage frame-branch features before fusion (HFCA, JBCD).
            event_features: Per-stage event-branch features before fusion (HFCA, JBCD).
            instance_masks: ``(batch, H, W)`` instance ids, 0 = none (HFCA).
            paired: ``(batch,)`` bool, the samples that carry both modalities; HFCA and JBCD
                only use those. ``None`` = all.

        Returns:
            The total, the detached parts and the weighted summands.

        Raises:
            ValueError: An input an enabled part needs is missing, or the branches' features
                differ in shape at the HFCA stage.
            NonFiniteLossError: A part is NaN or infinite (with ``raise_on_non_finite``).
        """
        parts: dict[str, Tensor] = {"ce": segmentation_cross_entropy(logits, labels)}
        if self.use_hfca or self.use_jbcd:
            parts.update(
                self._alignment_parts(
                    image=image,
                    reconstructed=reconstructed,
                    image_features=image_features,
                    event_features=event_features,
                    instance_masks=instance_masks,
                    paired=paired,
                )
            )
        weighted = weighted_loss_parts(parts, self.weights)
        total = cacd_total_loss(parts, self.weights)
        logged = {name: float(value.detach()) for name, value in parts.items()}
        logged["total"] = float(total.detach())
        if self.raise_on_non_finite:
            check_finite(logged)
        return CACDLossOutput(total, logged, weighted)

    def _stage_pair(
        self, image_features: Sequence[Tensor], event_features: Sequence[Tensor]
    ) -> tuple[Tensor, Tensor]:
        stage = self.hfca_stage
        if len(image_features) <= stage or len(event_features) <= stage:
            raise ValueError(
                f"hfca_stage {stage} needs stage {stage} of both branches; got "
                f"{len(image_features)} image and {len(event_features)} event stages"
            )
        image_stage, event_stage = image_features[stage], event_features[stage]
        _check_map(image_stage, f"image_features[{stage}]")
        _check_map(event_stage, f"event_features[{stage}]")
        expected = self.stage_channels[stage]
        if image_stage.shape[1] != expected or event_stage.shape[1] != expected:
            raise ValueError(
                f"stage {stage}: HFCA/JBCD compare the branches channel by channel and need "
                f"{expected} channels in both, got image {image_stage.shape[1]} and event "
                f"{event_stage.shape[1]} (lift the event features to the image encoder's "
                "channels)"
            )
        _check_pair(image_stage, event_stage, f"stage {stage} features")
        return image_stage, event_stage

    def _alignment_parts(
        self,
        *,
        image: Tensor | None,
        reconstructed: Tensor | None,
        image_features: Sequence[Tensor] | None,
        event_features: Sequence[Tensor] | None,
        instance_masks: Tensor | None,
        paired: Tensor | None,
    ) -> dict[str, Tensor]:
        _require("HFCA/JBCD", image_features=image_features, event_features=event_features)
        if self.use_hfca:
            _require("HFCA", instance_masks=instance_masks)
        if self.use_jbcd:
            _require("JBCD", image=image, reconstructed=reconstructed)
        image_stage, event_stage = self._stage_pair(image_features, event_features)
        if paired is not None:
            if tuple(paired.shape) != (image_stage.shape[0],) or paired.dtype != torch.bool:
                raise ValueError(
                    f"paired must be a (batch,) bool tensor for batch {image_stage.shape[0]}, "
                    f"got shape {tuple(paired.shape)!r} and dtype {paired.dtype!r}"
                )
            if not bool(paired.all()):

                def select(tensor: Tensor | None) -> Tensor | None:
                    return None if tensor is None else tensor[paired]

                image_stage, event_stage = select(image_stage), select(event_stage)
                image, reconstructed = select(image), select(reconstructed)
                instance_masks = select(instance_masks)
        parts: dict[str, Tensor] = {}
        with torch.autocast(device_type=image_stage.device.type, enabled=False):
            image_stage, event_stage = image_stage.float(), event_stage.float()
            if self.use_hfca:
                # Eq. 1
                image_space = project_features(image_stage, self.image_projection)
                event_space = project_features(event_stage, self.event_projection)
                # Eq. 2-3
                instances = instance_weights(
                    instance_masks,
                    tuple(image_space.shape[-2:]),
                    max_instances=self.max_instances,
                )
                image_instances = instance_features(image_space, instances)
                event_instances = instance_features(event_space, instances)
                parts["intra"] = intra_domain_loss(
                    image_instances, event_instances, instances.valid
                )
                parts["inter"] = inter_domain_loss(
                    image_instances,
                    event_instances,
                    instances.valid,
                    temperature=self.weights.temperature,
                )
            else:
                image_space, event_space = image_stage, event_stage
            if self.use_jbcd:
                parts["boundary"] = boundary_distillation_loss(
                    image_space, event_space, reconstructed.float()
                )
                parts["content"] = content_distillation_loss(
                    image_space,
                    event_space,
                    image.float(),
                    image_head=self.image_content,
                    event_head=self.event_content,
                    low=self.weights.exposure_low,
                    high=self.weights.exposure_high,
                )
        return parts


def _require(what: str, **inputs: object) -> None:
    missing = [name for name, value in inputs.items() if value is None]
    if missing:
        raise ValueError(
            f"{what} is enabled but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
            f"None; pass them or disable {what}"
        )
