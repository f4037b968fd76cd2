"""CACD: two Mix Transformer encoders (frame, events) fused per stage, SegFormer decoder.

Inference graph (DESIGN §5): the image and the event frame each run through their own MiT
encoder (separate weights: the modalities have different statistics and the training losses
compare the two branches, which needs two branches to compare); at each of the four stages the
two feature maps are fused by :class:`CrossModalFusion`; the all-MLP decoder of SegFormer turns
the four fused maps into class logits at 1/4 resolution, upsampled to the input size.

The input contract is the runtime's (:data:`evseg_ros.runtime.backend.INPUT_CONTRACT`), so the
ONNX export and every runtime backend take any variant unchanged. The event encoder may be a
lighter MiT than the frame's (``event_backbone``); 1x1 convolutions lift its stages to the
frame's widths before fusion.

Training-only parts (HFCA projection heads, JBCD) live with the losses; they read the per-stage
features of :meth:`CACDNet.forward_features`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from evseg_ros.model.mit import (
    MIT_CONFIGS,
    MixTransformerEncoder,
    SequenceReduction,
    init_weights,
    map_to_tokens,
    mit_config,
    multi_head_attention,
    tokens_to_map,
)
from evseg_ros.model.pretrained import LoadReport, load_mit_pretrained

#: Accepted values of :attr:`CACDConfig.variant`.
CACD_VARIANTS = ("fused", "image_only", "event_only")

#: Value of the ``"arch"`` entry of CACD checkpoints.
CACD_ARCH = "cacd"

#: ImageNet statistics: the encoders start from ImageNet-pretrained weights, which expect them.
_IMAGE_MEAN = (0.485, 0.456, 0.406)
_IMAGE_STD = (0.229, 0.224, 0.225)

#: Decoder width of the published SegFormer heads: 256 for the small B0/B1, 768 otherwise.
_SMALL_DECODER_BACKBONES = ("mit_b0", "mit_b1")


@dataclass(frozen=True)
class CACDConfig:
    """Constructor arguments of :class:`CACDNet`; stored in checkpoints.

    Attributes:
        backbone: MiT size of the image encoder (and of the event encoder unless
            ``event_backbone`` says otherwise), ``"mit_b0"`` ... ``"mit_b5"``.
        variant: ``"fused"``, ``"image_only"`` (no event encoder, events ignored) or
            ``"event_only"`` (no image encoder, image ignored).
        num_classes: Output classes (11 for DSEC-Semantic).
        fusion_heads: Attention heads of the four fusion modules.
        decoder_channels: Width of the all-MLP decoder; ``None`` picks the published value
            (256 for B0/B1, 768 otherwise) and is resolved at construction.
        drop_path_rate: Stochastic depth of the encoders' last block.
        decoder_dropout: Dropout before the classifier.
        event_channels: Channels of the event tensor; the first two are ON/OFF counts.
        event_backbone: MiT size of the event encoder; ``None`` = ``backbone`` (the paper's
            symmetric design). A narrower size (``"mit_e0"``) is what keeps the fused model
            within 1.3x the image-only cost; its stage maps are lifted to the image encoder's
            channels by a 1x1 convolution per stage, which belongs to the event branch, so
            fusion, decoder and training losses see one channel count per stage.
        fusion_attention_stages: Stages (0-3) whose fusion adds cross-modal attention to the
            concatenation; the others fuse by concatenation + projection only. Attention on
            the fine stages costs most (stage 0 has 16x the tokens of stage 2) and adds least:
            the decoder already mixes every position of the coarse stages into the fine map.
    """

    backbone: str = "mit_b0"
    variant: str = "fused"
    num_classes: int = 11
    fusion_heads: tuple[int, int, int, int] = (1, 2, 5, 8)
    decoder_channels: int | None = None
    drop_path_rate: float = 0.1
    decoder_dropout: float = 0.1
    event_channels: int = 3
    event_backbone: str | None = None
    fusion_attention_stages: tuple[int, ...] = (0, 1, 2, 3)

    def __post_init__(self) -> None:
        if self.backbone not in MIT_CONFIGS:
            msg = f"unknown backbone {self.backbone!r}; expected one of {tuple(MIT_CONFIGS)}"
            raise ValueError(msg)
        if self.variant not in CACD_VARIANTS:
            msg = f"unknown variant {self.variant!r}; expected one of {CACD_VARIANTS}"
            raise ValueError(msg)
        if not _is_positive_int(self.num_classes):
            msg = f"num_classes must be a positive integer, got {self.num_classes!r}"
            raise ValueError(msg)
        heads = tuple(self.fusion_heads)
        dims = MIT_CONFIGS[self.backbone].embed_dims
        if len(heads) != 4 or not all(_is_positive_int(h) for h in heads):
            msg = f"fusion_heads needs 4 positive integers, got {self.fusion_heads!r}"
            raise ValueError(msg)
        for dim, head in zip(dims, heads, strict=True):
            if dim % head:
                msg = f"fusion_heads {heads!r} do not divide {self.backbone} channels {dims!r}"
                raise ValueError(msg)
        object.__setattr__(self, "fusion_heads", heads)
        if self.event_backbone is not None and self.event_backbone not in MIT_CONFIGS:
            msg = (
                f"unknown event_backbone {self.event_backbone!r}; "
                f"expected one of {tuple(MIT_CONFIGS)} or None"
            )
            raise ValueError(msg)
        stages = tuple(self.fusion_attention_stages)
        if any(not _is_non_negative_int(i) or i > 3 for i in stages) or len(set(stages)) != len(
            stages
        ):
            msg = f"fusion_attention_stages needs distinct stage indices 0-3, got {stages!r}"
            raise ValueError(msg)
        object.__setattr__(self, "fusion_attention_stages", tuple(sorted(stages)))
        if self.decoder_channels is None:
            default = 256 if self.backbone in _SMALL_DECODER_BACKBONES else 768
            object.__setattr__(self, "decoder_channels", default)
        elif not _is_positive_int(self.decoder_channels):
            msg = f"decoder_channels must be a positive integer, got {self.decoder_channels!r}"
            raise ValueError(msg)
        for name in ("drop_path_rate", "decoder_dropout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                msg = f"{name} must be in [0, 1), got {value!r}"
                raise ValueError(msg)
        if not _is_positive_int(self.event_channels) or self.event_channels < 2:
            msg = (
                "event_channels must be an integer >= 2 (ON, OFF, ...), "
                f"got {self.event_channels!r}"
            )
            raise ValueError(msg)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CACDConfig:
        """Rebuild from :meth:`to_dict` output (lists become tuples again).

        Raises:
            ValueError: Unknown keys or invalid values.
        """
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            msg = f"unknown CACDConfig keys {unknown!r}; expected some of {sorted(known)!r}"
            raise ValueError(msg)
        values = dict(values)
        for name in ("fusion_heads", "fusion_attention_stages"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for checkpoints and metadata."""
        values = dataclasses.asdict(self)
        values["fusion_heads"] = list(self.fusion_heads)
        values["fusion_attention_stages"] = list(self.fusion_attention_stages)
        return values

    @property
    def event_size(self) -> str:
        """MiT size of the event encoder."""
        return self.event_backbone or self.backbone

    def architecture(self) -> str:
        """Short architecture name for model metadata, e.g. ``cacd-mit-b0+evt-mit-e0``."""
        name = "cacd-" + self.backbone.replace("_", "-")
        if self.variant == "fused" and self.event_size != self.backbone:
            name += "+evt-" + self.event_size.replace("_", "-")
        return name


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_non_negative_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class CACDOutput(NamedTuple):
    """Everything :meth:`CACDNet.forward_features` exposes to the training losses.

    Attributes:
        logits: ``(batch, num_classes, H, W)``.
        image_features: Four image-encoder maps ``(batch, C_i, H / s_i, W / s_i)`` before
            fusion; empty for ``event_only``.
        event_features: The same for the event encoder; empty for ``image_only``.
        fused_features: The four maps the decoder reads (the single encoder's own maps in the
            single-modality variants).
        decoder_features: ``(batch, decoder_channels, H / 4, W / 4)``, the fused decoder map
            right before dropout and the classifier.
    """

    logits: torch.Tensor
    image_features: list[torch.Tensor]
    event_features: list[torch.Tensor]
    fused_features: list[torch.Tensor]
    decoder_features: torch.Tensor


def normalize_image(image: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] -> ImageNet-normalised RGB."""
    return (image - mean) / std


def normalize_events(events: torch.Tensor) -> torch.Tensor:
    """Compress the ON/OFF counts (channels 0, 1) with ``log1p``; pass the rest through.

    Counts span orders of magnitude depending on texture and motion; the time channel is
    already in [0, 1]. Negative counts (corrupt input) clamp to zero.
    """
    counts = torch.log1p(events[:, 0:2].clamp(min=0.0))
    return torch.cat([counts, events[:, 2:]], dim=1)


class CrossModalFusion(nn.Module):
    """Fuse one stage's image and event maps: channel concatenation + cross-modal attention.

    Design. Both maps are concatenated along channels and projected back to ``C`` channels
    (``concat_projection``); this per-pixel mix is the fused map. Its tokens then query, with
    multi-head attention, a context made of *both* modalities' tokens placed side by side in
    one sequence: each modality's map is spatially reduced by the stage's MiT ratio (8, 4, 2,
    1, a strided convolution + layer norm, exactly like MiT's keys and values) and tagged with
    a learnt modality embedding. The attention output is added to the fused map (residual).

    Why this design. Full self-attention over the ``2 * N`` tokens of both stage-1 maps
    (``N = H/4 * W/4 = 4800`` at 240x320) compares ~92 M pairs per head. Here ``N`` queries meet
    ``2 * N / r**2`` keys (150 at stage 1 for 240x320): 0.7 M pairs, 1/128 of full attention
    and twice what one of the stage's own MiT blocks compares (``N * N / r**2``). Keeping the
    two modalities as separate key sets (instead of reducing the concatenated map) lets every
    head choose, per query position, how much it draws from the frame and how much from the
    events, which is what frame/event fusion must learn under over- and under-exposure (a
    saturated image region should turn to event tokens). Channel attention alone would be
    cheaper but has no spatial selectivity, which the extreme-exposure regions need.

    Args:
        channels: ``C``, channels of both inputs and of the output.
        num_heads: Attention heads (must divide ``channels``).
        reduction_ratio: Spatial reduction of the key/value context; 1 keeps every token.
        attention: ``False`` keeps only the concatenation + projection (no attention layers).
    """

    def __init__(
        self, channels: int, *, num_heads: int, reduction_ratio: int, attention: bool = True
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.concat_projection = nn.Linear(2 * channels, channels)
        self.attention = attention
        if not attention:
            return
        self.query_norm = nn.LayerNorm(channels)
        if reduction_ratio > 1:
            self.image_reduction: nn.Module | None = SequenceReduction(channels, reduction_ratio)
            self.event_reduction: nn.Module | None = SequenceReduction(channels, reduction_ratio)
        else:
            self.image_reduction = self.event_reduction = None
        self.context_norm = nn.LayerNorm(channels)
        self.modality_embedding = nn.Parameter(torch.zeros(2, channels))
        self.query = nn.Linear(channels, channels)
        self.key_value = nn.Linear(channels, 2 * channels)
        self.output = nn.Linear(channels, channels)
        nn.init.trunc_normal_(self.modality_embedding, std=0.02)

    def _context(
        self, feature_map: torch.Tensor, reduction: nn.Module | None, modality: int
    ) -> torch.Tensor:
        tokens = map_to_tokens(feature_map)
        if reduction is not None:
            tokens = reduction(tokens, feature_map.shape[-2], feature_map.shape[-1])
        return tokens + self.modality_embedding[modality]

    def project_maps(
        self, image_map: torch.Tensor, event_map: torch.Tensor, lift: nn.Conv2d | None = None
    ) -> torch.Tensor:
        """``concat_projection`` of ``[image, lift(events)]`` as one 1x1 convolution on the maps.

        The same linear map as the token path, computed where the maps already are: no
        transposes to tokens and back, and the event branch's lift (itself a 1x1 convolution)
        folded into the projection's weights, so the lifted map is never built. On the large
        stage-1 and stage-2 grids those copies cost more than the arithmetic (measured with
        ``scripts/bench_inference.py``).
        """
        weight = self.concat_projection.weight  # (C, 2C): [image | lifted events]
        bias = self.concat_projection.bias
        channels = image_map.shape[1]
        image_weight, event_weight = weight[:, :channels], weight[:, channels:]
        if lift is not None:
            bias = bias + event_weight @ lift.bias
            event_weight = event_weight @ lift.weight.flatten(1)
        kernel = torch.cat([image_weight, event_weight], dim=1)[:, :, None, None]
        return F.conv2d(torch.cat([image_map, event_map], dim=1), kernel, bias)

    def forward(
        self, image_map: torch.Tensor, event_map: torch.Tensor, lift: nn.Conv2d | None = None
    ) -> torch.Tensor:
        """``2 x (batch, C, height, width) -> (batch, C, height, width)``.

        ``lift``: the 1x1 convolution that brings ``event_map`` to ``C`` channels, or ``None``
        when it has them already.
        """
        if not self.attention:
            return self.project_maps(image_map, event_map, lift)
        if lift is not None:
            event_map = lift(event_map)
        height, width = image_map.shape[-2:]
        concatenated = map_to_tokens(torch.cat([image_map, event_map], dim=1))  # (B, N, 2C)
        fused = self.concat_projection(concatenated)  # (B, N, C)
        context = torch.cat(
            [
                self._context(image_map, self.image_reduction, 0),
                self._context(event_map, self.event_reduction, 1),
            ],
            dim=1,
        )  # (B, 2 * N / r**2, C)
        keys, values = self.key_value(self.context_norm(context)).chunk(2, dim=-1)
        queries = self.query(self.query_norm(fused))
        fused = fused + self.output(multi_head_attention(queries, keys, values, self.num_heads))
        return tokens_to_map(fused, height, width)


class AllMLPDecoder(nn.Module):
    """SegFormer's decode head: per-stage linear projection, upsample to 1/4, concat, fuse.

    The per-stage "linear" layers are 1x1 convolutions, which compute the same per-pixel
    projection without flattening the maps to tokens and back.
    """

    def __init__(
        self,
        in_channels: tuple[int, ...],
        *,
        channels: int,
        num_classes: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.projections = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.fuse = nn.Sequential(
            nn.Conv2d(len(in_channels) * channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def features(self, stage_maps: list[torch.Tensor]) -> torch.Tensor:
        """Four stage maps -> ``(batch, channels, H / 4, W / 4)``, before the classifier."""
        size = stage_maps[0].shape[-2:]
        upsampled = [
            F.interpolate(projection(stage), size=size, mode="bilinear", align_corners=False)
            for projection, stage in zip(self.projections, stage_maps)
        ]
        # Deepest first, as in the published head, so pretrained decoders would line up.
        return self.fuse(torch.cat(upsampled[::-1], dim=1))

    def classify(self, decoder_features: torch.Tensor) -> torch.Tensor:
        """Decoder map -> logits at 1/4 resolution."""
        return self.classifier(self.dropout(decoder_features))


class CACDNet(nn.Module):
    """Frame + event segmentation network with per-stage cross-modal fusion (CACD).

    Input contract (the runtime's, :data:`~evseg_ros.runtime.backend.INPUT_CONTRACT`):

    * ``image``: float32 ``N x 3 x H x W``, RGB in [0, 1]; normalised inside the network.
    * ``events``: float32 ``N x 3 x H x W``, the raw event frame (ON count, OFF count, latest
      time in [0, 1]); counts are compressed with ``log1p`` inside the network.

    Output of :meth:`forward`: logits ``N x num_classes x H x W`` for any ``H, W`` of at least
    :data:`~evseg_ros.model.mit.MIN_INPUT_SIZE`. ``image_only`` builds no event encoder and no
    fusion and ignores ``events``; ``event_only`` mirrors it. Both still take both inputs so any
    variant is a drop-in replacement for another.

    Args:
        config: Hyper-parameters; defaults to ``CACDConfig()`` (B0, fused, 11 classes).
    """

    def __init__(self, config: CACDConfig | None = None) -> None:
        super().__init__()
        config = config or CACDConfig()
        self.cacd_config = config
        self.variant = config.variant
        self.num_classes = config.num_classes
        backbone = mit_config(config.backbone)
        self.register_buffer(
            "image_mean", torch.tensor(_IMAGE_MEAN).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "image_std", torch.tensor(_IMAGE_STD).view(1, 3, 1, 1), persistent=False
        )
        self.image_encoder = (
            MixTransformerEncoder(backbone, drop_path_rate=config.drop_path_rate)
            if config.variant != "event_only"
            else None
        )
        event_backbone = mit_config(config.event_size)
        self.event_encoder = (
            MixTransformerEncoder(
                event_backbone,
                in_channels=config.event_channels,
                drop_path_rate=config.drop_path_rate,
            )
            if config.variant != "image_only"
            else None
        )
        #: The event branch's maps lifted to the image encoder's channels (1x1 per stage);
        #: ``None`` when both encoders have the same widths.
        self.event_lift = (
            nn.ModuleList(
                nn.Conv2d(event_dim, dim, 1)
                for event_dim, dim in zip(event_backbone.embed_dims, backbone.embed_dims)
            )
            if self.event_encoder is not None and event_backbone.embed_dims != backbone.embed_dims
            else None
        )
        #: Channels of the per-stage maps both branches hand to fusion and the losses.
        self.stage_channels = tuple(backbone.embed_dims)
        self.fusion = (
            nn.ModuleList(
                CrossModalFusion(
                    dim,
                    num_heads=heads,
                    reduction_ratio=ratio,
                    attention=stage in config.fusion_attention_stages,
                )
                for stage, (dim, heads, ratio) in enumerate(
                    zip(backbone.embed_dims, config.fusion_heads, backbone.sr_ratios)
                )
            )
            if config.variant == "fused"
            else None
        )
        self.decoder = AllMLPDecoder(
            backbone.embed_dims,
            channels=int(config.decoder_channels or 0),
            num_classes=config.num_classes,
            dropout=config.decoder_dropout,
        )
        if self.fusion is not None:
            self.fusion.apply(init_weights)  # the modality embedding keeps its own init
        if self.event_lift is not None:
            self.event_lift.apply(init_weights)
        self.decoder.apply(init_weights)
        # near-zero class scores at the start (SegFormer's decode-head rule): with the He
        # rule the initial cross-entropy was ~4x ln(num_classes), which slows early training
        nn.init.normal_(self.decoder.classifier.weight, 0.0, 0.01)

    def config(self) -> dict[str, Any]:
        """Constructor arguments as plain values, for checkpoints and model metadata."""
        return self.cacd_config.to_dict()

    def forward_features(
        self, image: torch.Tensor, events: torch.Tensor, *, keep_features: bool = True
    ) -> CACDOutput:
        """Run the network and keep every intermediate the training losses use.

        ``keep_features=False`` (inference) skips building the lifted event maps the losses
        compare; ``event_features`` are then the event encoder's own maps.
        """
        reference = events if self.image_encoder is None else image
        image_features: list[torch.Tensor] = []
        event_features: list[torch.Tensor] = []
        if self.image_encoder is not None:
            normalized = normalize_image(image, self.image_mean, self.image_std)
            image_features = self.image_encoder(normalized)
        raw_event_features: list[torch.Tensor] = []
        if self.event_encoder is not None:
            raw_event_features = self.event_encoder(normalize_events(events))
            event_features = raw_event_features
            # Fusion lifts inside itself; without fusion (event_only) the decoder needs them.
            if self.event_lift is not None and (keep_features or self.fusion is None):
                event_features = [
                    lift(stage) for lift, stage in zip(self.event_lift, raw_event_features)
                ]
        if self.fusion is not None:
            lifts = self.event_lift or [None] * len(self.fusion)
            # Fusion lifts the event maps itself (folded into its projection where it can).
            fused = [
                fuse(image_map, event_map, lift)
                for fuse, image_map, event_map, lift in zip(
                    self.fusion, image_features, raw_event_features, lifts
                )
            ]
        else:
            fused = image_features or event_features
        decoder_features = self.decoder.features(fused)
        logits = self.decoder.classify(decoder_features)  # (batch, classes, H / 4, W / 4)
        logits = F.interpolate(
            logits, size=reference.shape[-2:], mode="bilinear", align_corners=False
        )
        return CACDOutput(logits, image_features, event_features, fused, decoder_features)

    def forward(self, image: torch.Tensor, events: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, num_classes, H, W)``."""
        return self.forward_features(image, events, keep_features=False).logits

    def encoders(self) -> dict[str, MixTransformerEncoder]:
        """The encoders this variant built, by part name."""
        parts = {"image_encoder": self.image_encoder, "event_encoder": self.event_encoder}
        return {name: encoder for name, encoder in parts.items() if encoder is not None}

    def load_pretrained_encoders(
        self, path: str | Path, *, strict: bool = False
    ) -> dict[str, LoadReport]:
        """Load one ImageNet MiT file into every encoder (same weights, trained apart after).

        The event encoder gets the RGB kernels as they are when it has 3 input channels, else
        their channel mean tiled to its channel count (see
        :func:`evseg_ros.model.pretrained.adapt_input_channels`).

        Raises:
            PretrainedWeightsError: The file does not fit (see :func:`load_mit_pretrained`).
        """
        config = self.cacd_config
        sizes = {"image_encoder": config.backbone, "event_encoder": config.event_size}
        return {
            name: load_mit_pretrained(encoder, path, strict=strict)
            for name, encoder in self.encoders().items()
            # a narrower event encoder has no published weights: it starts from scratch
            if sizes[name] == config.backbone
        }

    def parameter_summary(self) -> dict[str, int]:
        """Trainable parameters per part and in total (absent parts count 0)."""
        parts: dict[str, nn.Module | None] = {
            "image_encoder": self.image_encoder,
            "event_encoder": self.event_encoder,
            "event_lift": self.event_lift,
            "fusion": self.fusion,
            "decoder": self.decoder,
        }
        summary = {
            name: sum(p.numel() for p in part.parameters() if p.requires_grad) if part else 0
            for name, part in parts.items()
        }
        summary["total"] = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return summary

    def describe(self) -> str:
        """Multi-line human-readable summary: configuration and parameters per part."""
        config = self.cacd_config
        lines = [
            f"CACD {config.backbone} {config.variant} (event encoder {config.event_size}): "
            f"{config.num_classes} classes, "
            f"decoder {config.decoder_channels} channels"
        ]
        lines += [
            f"  {name:<14}{count / 1e6:8.2f} M" for name, count in self.parameter_summary().items()
        ]
        return "\n".join(lines)


def save_cacd_checkpoint(model: CACDNet, path: str | Path, **extra: Any) -> None:
    """Save weights, config and ``"arch": "cacd"`` so loading needs no other file."""
    torch.save(
        {"arch": CACD_ARCH, "config": model.config(), "state_dict": model.state_dict(), **extra},
        path,
    )


def load_cacd_checkpoint(path: str | Path, *, map_location: str = "cpu") -> CACDNet:
    """Rebuild a :class:`CACDNet` from :func:`save_cacd_checkpoint` output (in eval mode).

    Raises:
        ValueError: The file is not a CACD checkpoint or its config is invalid.
    """
    data = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(data, dict) or data.get("arch") != CACD_ARCH:
        arch = data.get("arch") if isinstance(data, dict) else type(data).__name__
        msg = f"{str(path)!r} is not a CACD checkpoint (arch {arch!r}, expected {CACD_ARCH!r})"
        raise ValueError(msg)
    if "config" not in data or "state_dict" not in data:
        msg = f"{str(path)!r} lacks 'config' or 'state_dict'"
        raise ValueError(msg)
    model = CACDNet(CACDConfig.from_dict(data["config"]))
    model.load_state_dict(data["state_dict"])
    return model.eval()
