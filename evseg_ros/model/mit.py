"""Mix Transformer (MiT) encoder of SegFormer, B0 to B5.

The encoder is a four-stage hierarchy of transformer blocks. Each stage starts with an
overlapping patch embedding (a strided convolution whose kernel is larger than its stride, so
neighbouring patches share pixels and local continuity survives), runs ``depth`` blocks of
efficient self-attention and Mix-FFN, and ends with a layer norm. Stage ``i`` returns features
at ``1 / 4``, ``1 / 8``, ``1 / 16``, ``1 / 32`` of the input size.

Two choices make the encoder independent of the input size, which the runtime needs because
camera resolutions differ: there is no positional embedding (the 3x3 depth-wise convolution in
Mix-FFN leaks enough position information), and every reshape takes its height and width from
the tensor it reshapes. Keys and values are computed from a spatially reduced copy of the
tokens (a ``ratio x ratio`` strided convolution), which cuts the attention cost at stage 1 by
``ratio**2 = 64``.

The B0-B5 sizes differ only in :data:`MIT_CONFIGS`. Module names follow this file's own
vocabulary; :mod:`evseg_ros.model.pretrained` maps the published checkpoints onto them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: Layer-norm epsilon of the transformer blocks and stage norms (as in the published models).
_BLOCK_NORM_EPS = 1e-6

#: Smallest input side: stage 1 (stride 4) must keep at least ``sr_ratio = 8`` positions so that
#: the spatial reduction of its keys and values has one output.
MIN_INPUT_SIZE = 29


@dataclass(frozen=True)
class MitConfig:
    """Hyper-parameters of one MiT size; every tuple has one entry per stage."""

    embed_dims: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    num_heads: tuple[int, int, int, int] = (1, 2, 5, 8)
    sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)
    mlp_ratios: tuple[int, int, int, int] = (4, 4, 4, 4)
    patch_sizes: tuple[int, int, int, int] = (7, 3, 3, 3)
    strides: tuple[int, int, int, int] = (4, 2, 2, 2)

    def __post_init__(self) -> None:
        for field in ("embed_dims", "depths", "num_heads", "sr_ratios", "mlp_ratios"):
            values = getattr(self, field)
            if len(values) != 4 or any(int(v) < 1 for v in values):
                msg = f"MitConfig.{field} needs 4 positive values, got {values!r}"
                raise ValueError(msg)
        for dim, heads in zip(self.embed_dims, self.num_heads, strict=True):
            if dim % heads:
                msg = f"embed dim {dim!r} is not divisible by num_heads {heads!r}"
                raise ValueError(msg)


_SMALL_DIMS = (32, 64, 160, 256)
_LARGE_DIMS = (64, 128, 320, 512)

#: The six published sizes (SegFormer paper, Table 6); encoder parameters without the ImageNet
#: classifier: 3.4 M, 13.1 M, 24.2 M, 44.0 M, 60.8 M, 81.4 M.
MIT_CONFIGS: dict[str, MitConfig] = {
    "mit_b0": MitConfig(embed_dims=_SMALL_DIMS, depths=(2, 2, 2, 2)),
    "mit_b1": MitConfig(embed_dims=_LARGE_DIMS, depths=(2, 2, 2, 2)),
    "mit_b2": MitConfig(embed_dims=_LARGE_DIMS, depths=(3, 4, 6, 3)),
    "mit_b3": MitConfig(embed_dims=_LARGE_DIMS, depths=(3, 4, 18, 3)),
    "mit_b4": MitConfig(embed_dims=_LARGE_DIMS, depths=(3, 8, 27, 3)),
    "mit_b5": MitConfig(embed_dims=_LARGE_DIMS, depths=(3, 6, 40, 3)),
    # Not a published size: half of B0's width and depth, for the event branch of the shipped
    # fused model. An event frame is sparse and colourless, so a narrower encoder sees what it
    # holds (edges, motion) at 1/7 of B0's cost; see CACDConfig.event_backbone.
    "mit_e0": MitConfig(embed_dims=(16, 32, 80, 128), depths=(1, 1, 1, 1)),
}

#: Sizes with published ImageNet weights (the others always train from scratch).
PUBLISHED_MIT_SIZES = ("mit_b0", "mit_b1", "mit_b2", "mit_b3", "mit_b4", "mit_b5")


def mit_config(name: str) -> MitConfig:
    """Look up a size by name (``"mit_b0"`` ... ``"mit_b5"``).

    Raises:
        ValueError: Unknown name.
    """
    try:
        return MIT_CONFIGS[name]
    except KeyError:
        msg = f"unknown MiT backbone {name!r}; expected one of {tuple(MIT_CONFIGS)}"
        raise ValueError(msg) from None


def init_weights(module: nn.Module) -> None:
    """The one initialisation rule of the MiT family, applied with ``module.apply``.

    Linear layers get a truncated normal (std 0.02), convolutions a fan-out normal (He), layer
    norms the identity; the same rule is used for the fusion and decoder layers built on top.
    """
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
        fan_out //= module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    if isinstance(module, OverlapPatchEmbedding):
        # ``apply`` visits children first, so this overrides the zero bias set just above. An
        # all-zero input (a dropped or missing modality, what the runtime feeds) makes every
        # token equal to this bias; a zero bias gives the layer norm a zero-variance vector,
        # whose backward scales by 1/sqrt(eps) at every norm down the stack and overflows
        # float32. A small non-constant bias keeps those tokens well conditioned.
        bound = 1.0 / math.sqrt(module.projection.weight[0].numel())
        nn.init.uniform_(module.projection.bias, -bound, bound)


def tokens_to_map(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(batch, height * width, channels) -> (batch, channels, height, width)``."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, height, width)


def map_to_tokens(feature_map: torch.Tensor) -> torch.Tensor:
    """``(batch, channels, height, width) -> (batch, height * width, channels)``."""
    return feature_map.flatten(2).transpose(1, 2)


def multi_head_attention(
    queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, num_heads: int
) -> torch.Tensor:
    """Scaled dot-product attention over ``num_heads`` heads.

    Args:
        queries: ``(batch, query_length, channels)``.
        keys: ``(batch, key_length, channels)``.
        values: ``(batch, key_length, channels)``.
        num_heads: Heads; ``channels`` is split evenly between them.

    Returns:
        ``(batch, query_length, channels)``.
    """
    batch_size, _, channels = queries.shape
    head_dim = channels // num_heads

    def split_heads(tokens: torch.Tensor) -> torch.Tensor:
        # (batch, length, channels) -> (batch, heads, length, head_dim)
        return tokens.reshape(batch_size, -1, num_heads, head_dim).transpose(1, 2)

    attended = F.scaled_dot_product_attention(
        split_heads(queries), split_heads(keys), split_heads(values)
    )
    return attended.transpose(1, 2).reshape(batch_size, -1, channels)


class DropPath(nn.Module):
    """Stochastic depth: skip a residual branch for a random subset of samples while training.

    Surviving samples are scaled by ``1 / keep_prob`` so the expected output is unchanged and
    evaluation needs no rescaling.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return hidden_states
        keep_prob = 1.0 - self.drop_prob
        shape = (hidden_states.shape[0],) + (1,) * (hidden_states.ndim - 1)
        keep = torch.empty(shape, dtype=hidden_states.dtype, device=hidden_states.device)
        return hidden_states * keep.bernoulli_(keep_prob) / keep_prob

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class OverlapPatchEmbedding(nn.Module):
    """Strided convolution with a kernel larger than its stride, then a layer norm."""

    def __init__(self, in_channels: int, embed_dim: int, *, patch_size: int, stride: int) -> None:
        super().__init__()
        self.projection = nn.Conv2d(
            in_channels, embed_dim, patch_size, stride=stride, padding=patch_size // 2
        )
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """Return tokens ``(batch, height * width, embed_dim)`` and the token grid size."""
        embeddings = self.projection(pixel_values)
        height, width = embeddings.shape[-2:]
        return self.norm(map_to_tokens(embeddings)), height, width


class SequenceReduction(nn.Module):
    """Shrink a token grid by ``ratio`` in both directions (strided conv + layer norm)."""

    def __init__(self, channels: int, ratio: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, ratio, stride=ratio)
        self.norm = nn.LayerNorm(channels)

    def forward(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """``(batch, height * width, C) -> (batch, (height // r) * (width // r), C)``."""
        return self.norm(map_to_tokens(self.conv(tokens_to_map(tokens, height, width))))


class EfficientSelfAttention(nn.Module):
    """Multi-head self-attention whose keys and values come from a reduced token grid.

    Keys and values share one projection (``key_value``, keys first) because they are always
    computed from the same reduced tokens; one matrix product instead of two.
    """

    def __init__(self, channels: int, *, num_heads: int, reduction_ratio: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Linear(channels, channels)
        self.key_value = nn.Linear(channels, 2 * channels)
        self.output = nn.Linear(channels, channels)
        self.reduction = (
            SequenceReduction(channels, reduction_ratio) if reduction_ratio > 1 else None
        )

    def forward(self, hidden_states: torch.Tensor, height: int, width: int) -> torch.Tensor:
        context = hidden_states
        if self.reduction is not None:
            context = self.reduction(hidden_states, height, width)
        keys, values = self.key_value(context).chunk(2, dim=-1)
        attended = multi_head_attention(self.query(hidden_states), keys, values, self.num_heads)
        return self.output(attended)


class MixFFN(nn.Module):
    """Linear -> 3x3 depth-wise conv -> GELU -> linear; the convolution supplies position."""

    def __init__(self, channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.dense1 = nn.Linear(channels, hidden_channels)
        self.depthwise_conv = nn.Conv2d(
            hidden_channels, hidden_channels, 3, padding=1, groups=hidden_channels
        )
        self.dense2 = nn.Linear(hidden_channels, channels)

    def forward(self, hidden_states: torch.Tensor, height: int, width: int) -> torch.Tensor:
        hidden_states = self.dense1(hidden_states)
        hidden_states = self.depthwise_conv(tokens_to_map(hidden_states, height, width))
        return self.dense2(F.gelu(map_to_tokens(hidden_states)))


class MixTransformerBlock(nn.Module):
    """Pre-norm transformer block: attention and Mix-FFN, each as a residual branch."""

    def __init__(
        self,
        channels: int,
        *,
        num_heads: int,
        reduction_ratio: int,
        mlp_ratio: int,
        drop_path: float,
    ) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(channels, eps=_BLOCK_NORM_EPS)
        self.attention = EfficientSelfAttention(
            channels, num_heads=num_heads, reduction_ratio=reduction_ratio
        )
        self.ffn_norm = nn.LayerNorm(channels, eps=_BLOCK_NORM_EPS)
        self.ffn = MixFFN(channels, channels * mlp_ratio)
        self.drop_path = DropPath(drop_path)

    def forward(self, hidden_states: torch.Tensor, height: int, width: int) -> torch.Tensor:
        attended = self.attention(self.attention_norm(hidden_states), height, width)
        hidden_states = hidden_states + self.drop_path(attended)
        mixed = self.ffn(self.ffn_norm(hidden_states), height, width)
        return hidden_states + self.drop_path(mixed)


class MixTransformerEncoder(nn.Module):
    """SegFormer's hierarchical encoder, without the ImageNet classification head.

    Args:
        config: A :class:`MitConfig` or a name from :data:`MIT_CONFIGS`.
        in_channels: Channels of the input tensor (3 for RGB; event frames may differ).
        drop_path_rate: Stochastic-depth probability of the last block; it grows linearly from
            0 at the first block, so shallow blocks (which every later one depends on) are
            dropped least.

    Raises:
        ValueError: Unknown config name, ``in_channels < 1`` or a rate outside ``[0, 1)``.
    """

    def __init__(
        self, config: MitConfig | str, *, in_channels: int = 3, drop_path_rate: float = 0.1
    ) -> None:
        super().__init__()
        if isinstance(config, str):
            config = mit_config(config)
        if in_channels < 1:
            msg = f"in_channels must be positive, got {in_channels!r}"
            raise ValueError(msg)
        if not 0.0 <= drop_path_rate < 1.0:
            msg = f"drop_path_rate must be in [0, 1), got {drop_path_rate!r}"
            raise ValueError(msg)
        self.config = config
        self.in_channels = in_channels
        self.drop_path_rate = drop_path_rate
        total_depth = sum(config.depths)
        rates = [drop_path_rate * i / max(total_depth - 1, 1) for i in range(total_depth)]

        patch_embeddings, stages, norms = [], [], []
        channels = in_channels
        for stage in range(4):
            embed_dim = config.embed_dims[stage]
            patch_embeddings.append(
                OverlapPatchEmbedding(
                    channels,
                    embed_dim,
                    patch_size=config.patch_sizes[stage],
                    stride=config.strides[stage],
                )
            )
            first = sum(config.depths[:stage])
            stages.append(
                nn.ModuleList(
                    MixTransformerBlock(
                        embed_dim,
                        num_heads=config.num_heads[stage],
                        reduction_ratio=config.sr_ratios[stage],
                        mlp_ratio=config.mlp_ratios[stage],
                        drop_path=rates[first + index],
                    )
                    for index in range(config.depths[stage])
                )
            )
            norms.append(nn.LayerNorm(embed_dim, eps=_BLOCK_NORM_EPS))
            channels = embed_dim
        self.patch_embeddings = nn.ModuleList(patch_embeddings)
        self.blocks = nn.ModuleList(stages)
        self.norms = nn.ModuleList(norms)
        self.apply(init_weights)

    @property
    def out_channels(self) -> tuple[int, int, int, int]:
        """Channels of the four stage outputs."""
        return self.config.embed_dims

    def forward(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """Return the four stage maps ``(batch, C_i, ceil(H / s_i), ceil(W / s_i))``, s = 4..32.

        Raises:
            ValueError: An input side below :data:`MIN_INPUT_SIZE` (stage 1 would be smaller
                than its key/value reduction window).
        """
        if not torch.jit.is_tracing() and min(pixel_values.shape[-2:]) < MIN_INPUT_SIZE:
            msg = (
                f"input size {tuple(pixel_values.shape[-2:])!r} is too small; "
                f"both sides must be at least {MIN_INPUT_SIZE}"
            )
            raise ValueError(msg)
        features = []
        hidden_states = pixel_values
        for embedding, blocks, norm in zip(self.patch_embeddings, self.blocks, self.norms):
            tokens, height, width = embedding(hidden_states)
            for block in blocks:
                tokens = block(tokens, height, width)
            hidden_states = tokens_to_map(norm(tokens), height, width)
            features.append(hidden_states)
        return features
