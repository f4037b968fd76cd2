"""Mix Transformer encoder: published sizes, stage shapes for any input, stochastic depth."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from evseg_ros.model.mit import (
    MIN_INPUT_SIZE,
    MIT_CONFIGS,
    PUBLISHED_MIT_SIZES,
    DropPath,
    MitConfig,
    MixTransformerEncoder,
    multi_head_attention,
)

#: Encoder sizes in millions of parameters, SegFormer paper Table 6.
PUBLISHED_MILLIONS = {
    "mit_b0": 3.4,
    "mit_b1": 13.1,
    "mit_b2": 24.2,
    "mit_b3": 44.0,
    "mit_b4": 60.8,
    "mit_b5": 81.4,
}


@pytest.fixture(scope="module")
def encoder_b0() -> MixTransformerEncoder:
    torch.manual_seed(0)
    return MixTransformerEncoder("mit_b0").eval()


@pytest.mark.parametrize("name", sorted(PUBLISHED_MILLIONS))
def test_parameter_count_matches_paper(name: str) -> None:
    # The meta device allocates no memory, so even B5 (81 M) builds instantly.
    with torch.device("meta"):
        encoder = MixTransformerEncoder(name)
    millions = sum(p.numel() for p in encoder.parameters()) / 1e6
    assert millions == pytest.approx(PUBLISHED_MILLIONS[name], rel=0.05), name


def test_configs_follow_design() -> None:
    assert MIT_CONFIGS["mit_b0"].embed_dims == (32, 64, 160, 256)
    assert {MIT_CONFIGS[f"mit_b{i}"].embed_dims for i in range(1, 6)} == {(64, 128, 320, 512)}
    depths = {name: MIT_CONFIGS[name].depths for name in PUBLISHED_MIT_SIZES}
    assert depths == {
        "mit_b0": (2, 2, 2, 2),
        "mit_b1": (2, 2, 2, 2),
        "mit_b2": (3, 4, 6, 3),
        "mit_b3": (3, 4, 18, 3),
        "mit_b4": (3, 8, 27, 3),
        "mit_b5": (3, 6, 40, 3),
    }
    for config in MIT_CONFIGS.values():
        assert config.num_heads == (1, 2, 5, 8)
        assert config.sr_ratios == (8, 4, 2, 1)
        assert config.mlp_ratios == (4, 4, 4, 4)
        assert config.patch_sizes == (7, 3, 3, 3)
        assert config.strides == (4, 2, 2, 2)


@pytest.mark.parametrize(("height", "width"), [(64, 96), (61, 83), (MIN_INPUT_SIZE, 45)])
def test_stage_shapes_for_any_size(encoder_b0, height: int, width: int) -> None:
    with torch.no_grad():
        features = encoder_b0(torch.rand(2, 3, height, width))
    assert len(features) == 4
    for stage, (feature, channels) in enumerate(zip(features, (32, 64, 160, 256))):
        stride = 4 * 2**stage
        expected = (2, channels, math.ceil(height / stride), math.ceil(width / stride))
        assert tuple(feature.shape) == expected, f"stage {stage + 1}"
        assert torch.isfinite(feature).all()


def test_stage_shapes_wide_frame(encoder_b0) -> None:
    # 225 x 400: the DSEC-like aspect with an odd height.
    with torch.no_grad():
        features = encoder_b0(torch.rand(1, 3, 225, 400))
    assert [tuple(f.shape[-2:]) for f in features] == [(57, 100), (29, 50), (15, 25), (8, 13)]


def test_too_small_input_is_rejected(encoder_b0) -> None:
    with pytest.raises(ValueError, match="too small"):
        encoder_b0(torch.rand(1, 3, MIN_INPUT_SIZE - 1, 64))


def test_other_input_channels() -> None:
    torch.manual_seed(0)
    encoder = MixTransformerEncoder("mit_b0", in_channels=2).eval()
    assert encoder.patch_embeddings[0].projection.weight.shape == (32, 2, 7, 7)
    with torch.no_grad():
        features = encoder(torch.rand(1, 2, 40, 40))
    assert [f.shape[1] for f in features] == list(encoder.out_channels)


def test_batch_items_are_independent(encoder_b0) -> None:
    images = torch.rand(2, 3, 48, 64)
    with torch.no_grad():
        both = encoder_b0(images)
        first = encoder_b0(images[:1])
    for batched, single in zip(both, first):
        torch.testing.assert_close(batched[:1], single, atol=1e-5, rtol=1e-4)


def test_unknown_backbone_and_bad_options() -> None:
    with pytest.raises(ValueError, match="'mit_b9'"):
        MixTransformerEncoder("mit_b9")
    with pytest.raises(ValueError, match="drop_path_rate"):
        MixTransformerEncoder("mit_b0", drop_path_rate=1.5)
    with pytest.raises(ValueError, match="in_channels"):
        MixTransformerEncoder("mit_b0", in_channels=0)
    with pytest.raises(ValueError, match="divisible"):
        MitConfig(embed_dims=(30, 64, 160, 256), depths=(1, 1, 1, 1), num_heads=(4, 2, 5, 8))
    with pytest.raises(ValueError, match="depths"):
        MitConfig(embed_dims=(32, 64, 160, 256), depths=(1, 1, 1))


def test_drop_path_schedule_is_linear() -> None:
    with torch.device("meta"):
        encoder = MixTransformerEncoder("mit_b2", drop_path_rate=0.2)
    rates = [block.drop_path.drop_prob for stage in encoder.blocks for block in stage]
    assert len(rates) == sum(MIT_CONFIGS["mit_b2"].depths)
    assert rates[0] == 0.0
    assert rates[-1] == pytest.approx(0.2)
    steps = [b - a for a, b in itertools.pairwise(rates)]
    assert steps == pytest.approx([0.2 / (len(rates) - 1)] * len(steps))


def test_drop_path_drops_whole_samples_only_in_training() -> None:
    torch.manual_seed(0)
    layer = DropPath(0.5)
    hidden = torch.ones(2000, 3, 4)
    dropped = layer.train()(hidden)
    per_sample = dropped.flatten(1)
    # Each sample is either zeroed or scaled by 1 / keep_prob as a whole.
    assert set(per_sample.unique().tolist()) == {0.0, 2.0}
    assert (per_sample.min(dim=1).values == per_sample.max(dim=1).values).all()
    assert 0.4 < (per_sample[:, 0] == 0).float().mean() < 0.6
    assert torch.equal(layer.eval()(hidden), hidden)


def test_encoder_is_deterministic_in_eval_but_not_in_training() -> None:
    torch.manual_seed(0)
    encoder = MixTransformerEncoder("mit_b0", drop_path_rate=0.5)
    images = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        encoder.eval()
        torch.testing.assert_close(encoder(images)[-1], encoder(images)[-1])
        encoder.train()
        assert not torch.allclose(encoder(images)[-1], encoder(images)[-1])


def test_multi_head_attention_matches_explicit_softmax() -> None:
    torch.manual_seed(0)
    queries, keys, values = torch.randn(2, 5, 8), torch.randn(2, 7, 8), torch.randn(2, 7, 8)
    result = multi_head_attention(queries, keys, values, num_heads=2)
    expected = []
    for head in range(2):
        part = slice(4 * head, 4 * head + 4)
        scores = queries[..., part] @ keys[..., part].transpose(1, 2) / 2.0  # sqrt(head_dim 4)
        expected.append(scores.softmax(dim=-1) @ values[..., part])
    torch.testing.assert_close(result, torch.cat(expected, dim=-1), atol=1e-5, rtol=1e-5)
