"""Pretrained MiT weights: official and HuggingFace layouts, nesting, prefixes, size checks.

The published files are not available offline, so each test writes one from a random encoder
by renaming its keys. The renaming here is written independently of the loader's table:
explicit string rules plus a few spelled-out keys of stage 1, block 0, that a real
``mit_b0.pth`` / ``nvidia/mit-b0`` file contains.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from evseg_ros.model.cacd import CACDConfig, CACDNet
from evseg_ros.model.mit import MixTransformerEncoder
from evseg_ros.model.pretrained import (
    PretrainedWeightsError,
    adapt_input_channels,
    load_mit_pretrained,
)

#: (our block-internal name, official name, HuggingFace name); key_value is split for HF.
_BLOCK_NAMES = [
    ("attention_norm", "norm1", "layer_norm_1"),
    ("attention.query", "attn.q", "attention.self.query"),
    ("attention.output", "attn.proj", "attention.output.dense"),
    ("attention.reduction.conv", "attn.sr", "attention.self.sr"),
    ("attention.reduction.norm", "attn.norm", "attention.self.layer_norm"),
    ("ffn_norm", "norm2", "layer_norm_2"),
    ("ffn.dense1", "mlp.fc1", "mlp.dense1"),
    ("ffn.depthwise_conv", "mlp.dwconv.dwconv", "mlp.dwconv.dwconv"),
    ("ffn.dense2", "mlp.fc2", "mlp.dense2"),
]


def _encoder(seed: int, name: str = "mit_b0", **options) -> MixTransformerEncoder:
    torch.manual_seed(seed)
    return MixTransformerEncoder(name, **options)


def _official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our encoder keys -> NVlabs ``mix_transformer.py`` keys (stages numbered from 1)."""
    renamed = {}
    for key, tensor in state.items():
        parts = key.split(".")
        stage = int(parts[1]) + 1
        if parts[0] == "patch_embeddings":
            part = {"projection": "proj", "norm": "norm"}[parts[2]]
            renamed[f"patch_embed{stage}.{part}.{parts[3]}"] = tensor
        elif parts[0] == "norms":
            renamed[f"norm{stage}.{parts[2]}"] = tensor
        else:
            inner, kind = ".".join(parts[3:-1]), parts[-1]
            name = "attn.kv" if inner == "attention.key_value" else None
            for ours, official, _ in _BLOCK_NAMES:
                if inner == ours:
                    name = official
            renamed[f"block{stage}.{parts[2]}.{name}.{kind}"] = tensor
    return renamed


def _huggingface(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Our encoder keys -> ``SegformerModel`` keys under ``prefix`` (stages from 0)."""
    renamed = {}
    for key, tensor in state.items():
        parts = key.split(".")
        stage = parts[1]
        if parts[0] == "patch_embeddings":
            part = {"projection": "proj", "norm": "layer_norm"}[parts[2]]
            renamed[f"{prefix}patch_embeddings.{stage}.{part}.{parts[3]}"] = tensor
        elif parts[0] == "norms":
            renamed[f"{prefix}layer_norm.{stage}.{parts[2]}"] = tensor
        else:
            inner, kind = ".".join(parts[3:-1]), parts[-1]
            block = f"{prefix}block.{stage}.{parts[2]}"
            if inner == "attention.key_value":
                key_half, value_half = tensor.chunk(2, dim=0)
                renamed[f"{block}.attention.self.key.{kind}"] = key_half
                renamed[f"{block}.attention.self.value.{kind}"] = value_half
                continue
            name = next(hf for ours, _, hf in _BLOCK_NAMES if ours == inner)
            renamed[f"{block}.{name}.{kind}"] = tensor
    return renamed


def _assert_same_weights(loaded: MixTransformerEncoder, source: MixTransformerEncoder) -> None:
    expected = source.state_dict()
    for name, tensor in loaded.state_dict().items():
        torch.testing.assert_close(tensor, expected[name], atol=0, rtol=0, msg=name)


@pytest.fixture(scope="module")
def source() -> MixTransformerEncoder:
    return _encoder(seed=1)


def test_renamed_files_have_published_keys(source) -> None:
    official = _official(source.state_dict())
    for key in (
        "patch_embed1.proj.weight",
        "patch_embed1.norm.bias",
        "block1.0.norm1.weight",
        "block1.0.attn.q.weight",
        "block1.0.attn.kv.weight",
        "block1.0.attn.sr.weight",
        "block1.0.attn.norm.weight",
        "block1.0.attn.proj.bias",
        "block1.0.mlp.fc1.weight",
        "block1.0.mlp.dwconv.dwconv.weight",
        "block1.0.mlp.fc2.bias",
        "block4.1.norm2.weight",
        "norm1.weight",
        "norm4.bias",
    ):
        assert key in official, key
    assert "block4.0.attn.sr.weight" not in official  # stage 4 has no reduction (ratio 1)
    assert official["block1.0.attn.kv.weight"].shape == (64, 32)
    hf = _huggingface(source.state_dict(), "segformer.encoder.")
    for key in (
        "segformer.encoder.patch_embeddings.0.proj.weight",
        "segformer.encoder.patch_embeddings.0.layer_norm.weight",
        "segformer.encoder.block.0.0.layer_norm_1.weight",
        "segformer.encoder.block.0.0.attention.self.query.weight",
        "segformer.encoder.block.0.0.attention.self.key.weight",
        "segformer.encoder.block.0.0.attention.self.value.bias",
        "segformer.encoder.block.0.0.attention.self.sr.weight",
        "segformer.encoder.block.0.0.attention.self.layer_norm.bias",
        "segformer.encoder.block.0.0.attention.output.dense.weight",
        "segformer.encoder.block.0.0.mlp.dense1.weight",
        "segformer.encoder.block.0.0.mlp.dwconv.dwconv.weight",
        "segformer.encoder.block.0.0.mlp.dense2.bias",
        "segformer.encoder.block.0.0.layer_norm_2.weight",
        "segformer.encoder.layer_norm.3.weight",
    ):
        assert key in hf, key
    assert hf["segformer.encoder.block.0.0.attention.self.key.weight"].shape == (32, 32)


def test_official_layout_nested_with_backbone_prefix(tmp_path, source) -> None:
    weights = {f"backbone.{k}": v for k, v in _official(source.state_dict()).items()}
    weights["head.weight"] = torch.zeros(1000, 256)  # the ImageNet classifier
    path = tmp_path / "mit_b0.pth"
    torch.save({"state_dict": weights, "meta": {"epoch": 300}}, path)
    target = _encoder(seed=2)
    report = load_mit_pretrained(target, path, strict=True)
    _assert_same_weights(target, source)
    assert report.layout == "official"
    assert report.missing == ()
    assert report.unexpected == ("head.weight",)
    assert len(report.loaded) == len(source.state_dict())
    assert report.path == path


def test_official_layout_plain(tmp_path, source) -> None:
    path = tmp_path / "mit_b0.pth"
    torch.save(_official(source.state_dict()), path)
    target = _encoder(seed=3)
    report = load_mit_pretrained(target, path)
    _assert_same_weights(target, source)
    assert report.unexpected == ()
    assert "loaded" in report.summary()


@pytest.mark.parametrize("prefix", ["segformer.encoder.", "encoder."])
def test_huggingface_layout(tmp_path, source, prefix: str) -> None:
    weights = _huggingface(source.state_dict(), prefix)
    weights["classifier.weight"] = torch.zeros(1000, 256)
    path = tmp_path / "pytorch_model.bin"
    torch.save(weights, path)
    target = _encoder(seed=4)
    report = load_mit_pretrained(target, path, strict=True)
    _assert_same_weights(target, source)
    assert report.layout == "huggingface"
    assert report.unexpected == ("classifier.weight",)


def test_native_layout(tmp_path, source) -> None:
    path = tmp_path / "encoder.pt"
    torch.save({"model": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    target = _encoder(seed=5)
    assert load_mit_pretrained(target, path, strict=True).layout == "native"
    _assert_same_weights(target, source)


def test_other_size_is_a_shape_error_and_changes_nothing(tmp_path, source) -> None:
    path = tmp_path / "mit_b0.pth"
    torch.save(_official(source.state_dict()), path)
    with torch.device("meta"):
        bigger = MixTransformerEncoder("mit_b2")
    with pytest.raises(PretrainedWeightsError, match=r"mit_b0\.pth.*shape mismatch"):
        load_mit_pretrained(bigger, path)
    target = _encoder(seed=6)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    truncated = _official(source.state_dict())
    truncated["norm4.weight"] = torch.ones(7)
    torch.save(truncated, path)
    with pytest.raises(PretrainedWeightsError, match=r"norms\.3\.weight"):
        load_mit_pretrained(target, path)
    for name, tensor in target.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_partial_file_missing_and_strict(tmp_path, source) -> None:
    weights = _official(source.state_dict())
    stage_one = {k: v for k, v in weights.items() if k.startswith(("patch_embed1.", "block1."))}
    path = tmp_path / "partial.pth"
    torch.save(stage_one, path)
    target = _encoder(seed=7)
    report = load_mit_pretrained(target, path)
    assert len(report.loaded) == len(stage_one)
    assert "norms.0.weight" in report.missing
    assert "patch_embeddings.1.projection.weight" in report.missing
    torch.testing.assert_close(
        target.patch_embeddings[0].projection.weight,
        source.patch_embeddings[0].projection.weight,
    )
    with pytest.raises(PretrainedWeightsError, match="lacks"):
        load_mit_pretrained(target, path, strict=True)


def test_unrelated_or_missing_file(tmp_path) -> None:
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, path)
    with pytest.raises(PretrainedWeightsError, match=r"no MiT encoder weights.*conv1\.weight"):
        load_mit_pretrained(_encoder(seed=0), path)
    with pytest.raises(PretrainedWeightsError, match="do not exist"):
        load_mit_pretrained(_encoder(seed=0), tmp_path / "absent.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedWeightsError, match=r"garbage\.pth"):
        load_mit_pretrained(_encoder(seed=0), garbage)


def test_safetensors_without_package_names_it(tmp_path) -> None:
    if importlib.util.find_spec("safetensors") is not None:
        pytest.skip("safetensors is installed; the missing-package error cannot occur")
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\0" * 16)
    with pytest.raises(PretrainedWeightsError, match="'safetensors' package"):
        load_mit_pretrained(_encoder(seed=0), path)


def test_safetensors_round_trip(tmp_path, source) -> None:
    safetensors_torch = pytest.importorskip("safetensors.torch")
    weights = {k: v.contiguous() for k, v in _huggingface(source.state_dict(), "").items()}
    path = tmp_path / "model.safetensors"
    safetensors_torch.save_file({f"segformer.encoder.{k}": v for k, v in weights.items()}, path)
    target = _encoder(seed=8)
    load_mit_pretrained(target, path, strict=True)
    _assert_same_weights(target, source)


def test_first_projection_adapts_to_other_input_channels(tmp_path, source) -> None:
    path = tmp_path / "mit_b0.pth"
    torch.save(_official(source.state_dict()), path)
    target = _encoder(seed=9, in_channels=2)
    report = load_mit_pretrained(target, path, strict=True)
    assert report.adapted == ("patch_embeddings.0.projection.weight",)
    rgb = source.patch_embeddings[0].projection.weight
    adapted = target.patch_embeddings[0].projection.weight
    assert adapted.shape == (32, 2, 7, 7)
    # A uniform input gives the same response as the RGB kernel did.
    torch.testing.assert_close(adapted.sum(dim=1), rgb.sum(dim=1))
    torch.testing.assert_close(adapted[:, 0], adapted[:, 1])
    torch.testing.assert_close(
        adapt_input_channels(rgb, 3), rgb.mean(1, keepdim=True).repeat(1, 3, 1, 1)
    )
    with pytest.raises(PretrainedWeightsError, match="shape mismatch"):
        load_mit_pretrained(_encoder(seed=9, in_channels=2), path, adapt_channels=False)


def test_cacd_loads_both_encoders(tmp_path, source) -> None:
    path = tmp_path / "mit_b0.pth"
    torch.save({"state_dict": _official(source.state_dict())}, path)
    torch.manual_seed(0)
    net = CACDNet(CACDConfig(backbone="mit_b0", variant="fused"))
    reports = net.load_pretrained_encoders(path, strict=True)
    assert set(reports) == {"image_encoder", "event_encoder"}
    _assert_same_weights(net.image_encoder, source)
    _assert_same_weights(net.event_encoder, source)
    # Separate weights: training one branch must not move the other.
    assert net.image_encoder.norms[0].weight is not net.event_encoder.norms[0].weight
    only_image = CACDNet(CACDConfig(variant="image_only")).load_pretrained_encoders(path)
    assert set(only_image) == {"image_encoder"}
