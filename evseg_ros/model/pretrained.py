"""Load ImageNet-pretrained MiT weights from a local file into a :class:`MixTransformerEncoder`.

Two published layouts are understood, plus this package's own:

* **official** (NVlabs SegFormer / mmsegmentation ``mit_b*.pth``): ``patch_embed1.proj.weight``,
  ``block1.0.attn.q.weight``, ``block1.0.attn.kv.weight``, ``block1.0.attn.sr.weight``,
  ``block1.0.mlp.dwconv.dwconv.weight``, ``norm1.weight``; stages are numbered from 1. Keys may
  sit under ``"state_dict"`` / ``"model"`` and carry ``backbone.`` or ``module.`` prefixes.
* **huggingface** (``SegformerModel`` / ``SegformerFor*``): ``segformer.encoder.patch_embeddings.0
  .proj.weight``, ``segformer.encoder.block.0.0.attention.self.query.weight``, separate ``key`` and
  ``value`` linears (concatenated here into the fused ``key_value``, keys first, which is the
  official ``kv`` order), ``attention.self.sr``/``layer_norm``, ``mlp.dense1``/``dense2``,
  ``layer_norm_1``/``2`` and stage norms ``encoder.layer_norm.{i}``; stages are numbered from 0.
* **native**: keys already named as in :mod:`evseg_ros.model.mit` (e.g. an encoder's own
  ``state_dict``), optionally under the same prefixes.

Classification and decode heads in the file are reported as unexpected and otherwise ignored.
No file is downloaded here: the runtime machine has no network, so the caller passes a path.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from evseg_ros.model.mit import MixTransformerEncoder

#: Wrappers of the state dict in training checkpoints, unwrapped in this order.
_NESTING_KEYS = ("state_dict", "model", "module")

#: Prefixes dropped from official/native keys (mmseg segmentors, DataParallel, CACDNet parts).
_PREFIXES = ("module.", "backbone.", "image_encoder.", "encoder.")

#: The encoder parameter whose input channels may differ from the file's (RGB) weights.
FIRST_PROJECTION = "patch_embeddings.0.projection.weight"


class PretrainedWeightsError(ValueError):
    """A weights file cannot be read or does not fit the encoder."""


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_mit_pretrained` did.

    Attributes:
        path: The file read.
        layout: ``"official"``, ``"huggingface"`` or ``"native"`` (the layout most keys had).
        loaded: Encoder parameter names that received a tensor.
        missing: Encoder parameter names the file had nothing for (kept at initialisation).
        unexpected: File keys that map to no encoder parameter (heads, decoders, ...).
        adapted: Encoder parameter names whose tensor was reshaped to fit (input channels).
    """

    path: Path
    layout: str
    loaded: tuple[str, ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    adapted: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line for logs."""
        return (
            f"{self.path.name}: {self.layout} layout, {len(self.loaded)} loaded, "
            f"{len(self.missing)} missing, {len(self.unexpected)} unexpected, "
            f"{len(self.adapted)} adapted"
        )


# --- file reading ----------------------------------------------------------------------------


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the tensors of a ``.pth``/``.pt``/``.bin`` or ``.safetensors`` file.

    Pickled files are opened with ``weights_only=True`` (no code from the file runs). Nested
    ``state_dict``/``model`` wrappers are unwrapped; non-tensor entries are dropped.

    Raises:
        PretrainedWeightsError: Missing file, unreadable content, or ``.safetensors`` without
            the ``safetensors`` package.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"pretrained weights {str(path)!r} do not exist or are not a file"
        raise PretrainedWeightsError(msg)
    if path.suffix == ".safetensors":
        if importlib.util.find_spec("safetensors") is None:
            msg = (
                f"cannot read {str(path)!r}: the 'safetensors' package is not installed "
                "(install it, or convert the file to .pth)"
            )
            raise PretrainedWeightsError(msg)
        from safetensors.torch import load_file

        try:
            data: object = load_file(str(path), device="cpu")
        except Exception as exc:  # the package raises its own error types
            msg = f"cannot read {str(path)!r} as safetensors: {exc}"
            raise PretrainedWeightsError(msg) from exc
    else:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle, zip and weights-only errors have no common base
            msg = f"cannot read {str(path)!r} as a torch weights file: {exc}"
            raise PretrainedWeightsError(msg) from exc
    while isinstance(data, Mapping):
        inner = next((data[k] for k in _NESTING_KEYS if isinstance(data.get(k), Mapping)), None)
        if inner is None:
            break
        data = inner
    if not isinstance(data, Mapping):
        msg = f"{str(path)!r} holds a {type(data).__name__}, not a state dict"
        raise PretrainedWeightsError(msg)
    return {str(k): v for k, v in data.items() if isinstance(v, torch.Tensor)}


# --- key mapping -----------------------------------------------------------------------------

#: Official names inside one block -> this package's names.
_OFFICIAL_BLOCK = {
    "norm1": "attention_norm",
    "attn.q": "attention.query",
    "attn.kv": "attention.key_value",
    "attn.proj": "attention.output",
    "attn.sr": "attention.reduction.conv",
    "attn.norm": "attention.reduction.norm",
    "norm2": "ffn_norm",
    "mlp.fc1": "ffn.dense1",
    "mlp.dwconv.dwconv": "ffn.depthwise_conv",
    "mlp.fc2": "ffn.dense2",
}

#: HuggingFace names inside one block -> this package's names (``key``/``value`` handled apart).
_HF_BLOCK = {
    "layer_norm_1": "attention_norm",
    "attention.self.query": "attention.query",
    "attention.output.dense": "attention.output",
    "attention.self.sr": "attention.reduction.conv",
    "attention.self.layer_norm": "attention.reduction.norm",
    "layer_norm_2": "ffn_norm",
    "mlp.dense1": "ffn.dense1",
    "mlp.dwconv.dwconv": "ffn.depthwise_conv",
    "mlp.dense2": "ffn.dense2",
}

_OFFICIAL_PATCH = re.compile(r"patch_embed([1-4])\.(proj|norm)\.(weight|bias)")
_OFFICIAL_BLOCK_KEY = re.compile(r"block([1-4])\.(\d+)\.(.+)\.(weight|bias)")
_OFFICIAL_NORM = re.compile(r"norm([1-4])\.(weight|bias)")
_HF_ENCODER = re.compile(r"(?:^|.*\.)encoder\.(patch_embeddings|block|layer_norm)\.(.+)")
_HF_PATCH = re.compile(r"patch_embeddings\.([0-3])\.(proj|layer_norm)\.(weight|bias)")
_HF_BLOCK_KEY = re.compile(r"block\.([0-3])\.(\d+)\.(.+)\.(weight|bias)")
_HF_NORM = re.compile(r"layer_norm\.([0-3])\.(weight|bias)")
_HF_KEY_VALUE = re.compile(r"attention\.self\.(key|value)")


def _strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def _map_official(key: str) -> str | None:
    key = _strip_prefixes(key)
    if match := _OFFICIAL_PATCH.fullmatch(key):
        stage, part, kind = match.groups()
        name = "projection" if part == "proj" else "norm"
        return f"patch_embeddings.{int(stage) - 1}.{name}.{kind}"
    if match := _OFFICIAL_BLOCK_KEY.fullmatch(key):
        stage, index, part, kind = match.groups()
        if part in _OFFICIAL_BLOCK:
            return f"blocks.{int(stage) - 1}.{index}.{_OFFICIAL_BLOCK[part]}.{kind}"
        return None
    if match := _OFFICIAL_NORM.fullmatch(key):
        stage, kind = match.groups()
        return f"norms.{int(stage) - 1}.{kind}"
    return None


def _map_huggingface(key: str) -> str | tuple[str, str] | None:
    """Map one HF key; ``key``/``value`` linears return ``(key_value name, "key"|"value")``."""
    encoder = _HF_ENCODER.fullmatch(key)
    if encoder is None:
        return None
    key = f"{encoder.group(1)}.{encoder.group(2)}"
    name = None
    if match := _HF_PATCH.fullmatch(key):
        stage, part, kind = match.groups()
        name = f"patch_embeddings.{stage}.{'projection' if part == 'proj' else 'norm'}.{kind}"
    elif match := _HF_BLOCK_KEY.fullmatch(key):
        stage, index, part, kind = match.groups()
        if half := _HF_KEY_VALUE.fullmatch(part):
            return f"blocks.{stage}.{index}.attention.key_value.{kind}", half.group(1)
        if part in _HF_BLOCK:
            name = f"blocks.{stage}.{index}.{_HF_BLOCK[part]}.{kind}"
    elif match := _HF_NORM.fullmatch(key):
        stage, kind = match.groups()
        name = f"norms.{stage}.{kind}"
    return name


def _map_native(key: str, targets: Mapping[str, torch.Tensor]) -> str | None:
    key = _strip_prefixes(key)
    return key if key in targets else None


def map_to_encoder_keys(
    source: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], list[str], str]:
    """Rename a published state dict to encoder parameter names.

    Args:
        source: The file's tensors.
        targets: The encoder's ``state_dict()`` (names that may be produced).

    Returns:
        ``(mapped tensors, unexpected source keys, layout)``; HuggingFace ``key``/``value``
        pairs are concatenated into one ``key_value`` tensor.
    """
    mapped: dict[str, torch.Tensor] = {}
    halves: dict[str, dict[str, torch.Tensor]] = {}
    unexpected: list[str] = []
    votes = {"official": 0, "huggingface": 0, "native": 0}
    mappers: tuple[tuple[str, Callable[[str], str | tuple[str, str] | None]], ...] = (
        ("native", lambda k: _map_native(k, targets)),
        ("official", _map_official),
        ("huggingface", _map_huggingface),
    )
    for key, tensor in source.items():
        for layout, mapper in mappers:
            name = mapper(key)
            if name is None:
                continue
            votes[layout] += 1
            if isinstance(name, tuple):
                halves.setdefault(name[0], {})[name[1]] = tensor
            else:
                mapped[name] = tensor
            break
        else:
            unexpected.append(key)
    for name, pair in halves.items():
        if set(pair) == {"key", "value"}:
            mapped[name] = torch.cat([pair["key"], pair["value"]], dim=0)
        else:  # half a projection cannot be used; report the file key as unexpected
            unexpected.extend(f"{name} ({half} only)" for half in pair)
    layout = max(votes, key=lambda k: votes[k])
    return mapped, unexpected, layout


def adapt_input_channels(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Fit a first-layer kernel ``(out, c, k, k)`` trained on RGB to ``in_channels`` inputs.

    The kernel is averaged over its input channels and repeated ``in_channels`` times, scaled by
    ``c / in_channels`` so that a uniform input gives the same response as before. The event
    encoder uses this when its input is not 3 channels; with 3 channels the RGB kernels are
    copied as they are (the usual practice for non-RGB inputs with ImageNet initialisation).
    """
    mean = weight.mean(dim=1, keepdim=True)
    return mean.repeat(1, in_channels, 1, 1) * (weight.shape[1] / in_channels)


# --- loading ---------------------------------------------------------------------------------


def load_mit_pretrained(
    encoder: MixTransformerEncoder,
    path: str | Path,
    *,
    strict: bool = False,
    adapt_channels: bool = True,
) -> LoadReport:
    """Copy pretrained MiT weights from ``path`` into ``encoder`` (in place).

    Args:
        encoder: The encoder to fill.
        path: A local ``.pth``/``.pt``/``.bin`` or ``.safetensors`` file in any layout of the
            module docstring.
        strict: Also fail when an encoder parameter has no weights in the file (unexpected
            file keys such as classification heads are always tolerated and reported).
        adapt_channels: Allow the first projection to differ in input channels (see
            :func:`adapt_input_channels`); otherwise that is a shape error.

    Returns:
        What was loaded, missing, unexpected and adapted.

    Raises:
        PretrainedWeightsError: Unreadable file, no key matches the encoder, a shape differs
            (typically a file of another MiT size), or ``strict`` and parameters are missing.
            Nothing is copied when an error is raised.
    """
    path = Path(path)
    source = read_state_dict(path)
    targets = encoder.state_dict()
    mapped, unexpected, layout = map_to_encoder_keys(source, targets)
    unexpected.extend(name for name in mapped if name not in targets)
    mapped = {name: tensor for name, tensor in mapped.items() if name in targets}
    if not mapped:
        preview = ", ".join(repr(k) for k in list(source)[:5])
        msg = f"no MiT encoder weights found in {str(path)!r} (first keys: {preview})"
        raise PretrainedWeightsError(msg)

    adapted: list[str] = []
    mismatches: list[str] = []
    for name, tensor in mapped.items():
        expected = targets[name].shape
        if tensor.shape == expected:
            continue
        channels_only = (
            name == FIRST_PROJECTION
            and tensor.ndim == 4
            and tensor.shape[0] == expected[0]
            and tensor.shape[2:] == expected[2:]
        )
        if adapt_channels and channels_only:
            mapped[name] = adapt_input_channels(tensor, expected[1])
            adapted.append(name)
        else:
            mismatches.append(f"{name}: file {tuple(tensor.shape)} vs encoder {tuple(expected)}")
    if mismatches:
        msg = (
            f"{str(path)!r} does not fit this encoder ({len(mismatches)} shape mismatches, "
            f"is it another MiT size?): " + "; ".join(mismatches[:3])
        )
        raise PretrainedWeightsError(msg)
    missing = tuple(name for name in targets if name not in mapped)
    if strict and missing:
        msg = f"{str(path)!r} lacks {len(missing)} encoder parameters, e.g. {missing[:3]!r}"
        raise PretrainedWeightsError(msg)

    with torch.no_grad():
        for name, tensor in mapped.items():
            targets[name].copy_(tensor)
    return LoadReport(
        path=path,
        layout=layout,
        loaded=tuple(name for name in targets if name in mapped),
        missing=missing,
        unexpected=tuple(unexpected),
        adapted=tuple(adapted),
    )
