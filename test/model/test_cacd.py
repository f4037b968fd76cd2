"""CACDNet: variants, input contract, intermediate features, gradients, ONNX export, checkpoints."""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest
import torch

from evseg_ros.model.cacd import (
    CACD_VARIANTS,
    CACDConfig,
    CACDNet,
    load_cacd_checkpoint,
    normalize_events,
    save_cacd_checkpoint,
)
from evseg_ros.model.export import export_onnx

HEIGHT, WIDTH = 48, 64


def _net(variant: str = "fused", **options) -> CACDNet:
    torch.manual_seed(0)
    return CACDNet(CACDConfig(variant=variant, **options))


def _inputs(batch: int = 1, height: int = HEIGHT, width: int = WIDTH, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, height, width, generator=generator)
    events = torch.rand(batch, 3, height, width, generator=generator) * 4
    return image, events


def _trained_looking(net: CACDNet) -> CACDNet:
    """Give batch norm non-identity running statistics, as after training."""
    net.train()
    with torch.no_grad():
        for seed in range(3):
            net(*_inputs(batch=2, seed=seed))
    return net.eval()


@pytest.fixture(scope="module")
def nets() -> dict[str, CACDNet]:
    """One network per variant, built once for the module (read-only in the tests)."""
    return {variant: _trained_looking(_net(variant)) for variant in CACD_VARIANTS}


@pytest.fixture(scope="module")
def fused_net(nets) -> CACDNet:
    return nets["fused"]


@pytest.mark.parametrize("variant", CACD_VARIANTS)
def test_variants_give_logits_at_input_size(nets, variant: str) -> None:
    with torch.no_grad():
        logits = nets[variant](*_inputs(batch=2, height=37, width=53))
    assert logits.shape == (2, 11, 37, 53)
    assert torch.isfinite(logits).all()


def test_image_only_ignores_events(nets) -> None:
    net = nets["image_only"]
    image, events = _inputs()
    with torch.no_grad():
        reference = net(image, events)
        torch.testing.assert_close(net(image, events * 7 + 1), reference, atol=0, rtol=0)
        assert not torch.allclose(net(image.flip(-1), events), reference)
    assert net.event_encoder is None
    assert net.fusion is None


def test_event_only_ignores_image(nets) -> None:
    net = nets["event_only"]
    image, events = _inputs()
    with torch.no_grad():
        reference = net(image, events)
        torch.testing.assert_close(net(1 - image, events), reference, atol=0, rtol=0)
        assert not torch.allclose(net(image, events.flip(-1)), reference)
    assert net.image_encoder is None


def test_fused_depends_on_both_inputs(fused_net) -> None:
    image, events = _inputs()
    with torch.no_grad():
        reference = fused_net(image, events)
        assert not torch.allclose(fused_net(1 - image, events), reference, atol=1e-4)
        assert not torch.allclose(fused_net(image, events.flip(-1)), reference, atol=1e-4)


def test_forward_features_shapes(fused_net) -> None:
    height, width = 61, 83
    with torch.no_grad():
        output = fused_net.forward_features(*_inputs(batch=2, height=height, width=width))
    assert output.logits.shape == (2, 11, height, width)
    for name in ("image_features", "event_features", "fused_features"):
        maps = getattr(output, name)
        assert len(maps) == 4, name
        for stage, (feature, channels) in enumerate(zip(maps, (32, 64, 160, 256))):
            stride = 4 * 2**stage
            expected = (2, channels, math.ceil(height / stride), math.ceil(width / stride))
            assert tuple(feature.shape) == expected, f"{name} stage {stage + 1}"
    assert output.decoder_features.shape == (2, 256, math.ceil(height / 4), math.ceil(width / 4))
    # Fusion changes the maps: the decoder does not just read one modality.
    assert not torch.allclose(output.fused_features[0], output.image_features[0])
    with torch.no_grad():
        torch.testing.assert_close(fused_net(*_inputs(2, height, width)), output.logits)


@pytest.mark.parametrize(("variant", "present"), [("image_only", "image"), ("event_only", "event")])
def test_forward_features_single_modality(nets, variant: str, present: str) -> None:
    with torch.no_grad():
        output = nets[variant].forward_features(*_inputs())
    own = output.image_features if present == "image" else output.event_features
    other = output.event_features if present == "image" else output.image_features
    assert len(own) == 4
    assert other == []
    assert all(a is b for a, b in zip(output.fused_features, own))


def test_gradients_reach_both_encoders_and_fusion() -> None:
    net = _net("fused").train()
    image, events = _inputs(batch=2)
    logits = net(image, events)
    target = torch.randint(0, 11, (2, HEIGHT, WIDTH))
    torch.nn.functional.cross_entropy(logits, target).backward()
    for part in ("image_encoder", "event_encoder", "fusion", "decoder"):
        module = getattr(net, part)
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads), part
        assert sum(float(g.abs().sum()) for g in grads) > 0, part
    # The first layers of both encoders learn, not just the last ones.
    assert net.image_encoder.patch_embeddings[0].projection.weight.grad.abs().sum() > 0
    assert net.event_encoder.patch_embeddings[0].projection.weight.grad.abs().sum() > 0


def test_input_normalisation_is_log_of_clamped_counts() -> None:
    events = torch.rand(2, 3, 8, 8) * 50
    events[0, 0, 0, 0] = -1.0  # a negative count is corrupt input: clamped, not propagated
    out = normalize_events(events)
    assert float(out[0, 0, 0, 0]) == 0.0
    assert torch.isfinite(out).all()
    # Monotone in the count, so more events never read as fewer.
    counts = torch.tensor([0.0, 1.0, 5.0, 50.0]).view(1, 1, 1, 4).expand(1, 3, 1, 4)
    ordered = normalize_events(counts)
    assert bool((ordered[0, :2, 0].diff() > 0).all())
    # The time channel is already in [0, 1] and passes through untouched.
    torch.testing.assert_close(ordered[:, 2], counts[:, 2])


def test_onnx_export_matches_torch(tmp_path, fused_net) -> None:
    path = export_onnx(fused_net, tmp_path / "cacd.onnx", height=HEIGHT, width=WIDTH)
    engine = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # The export size, then another size: height and width are dynamic axes.
    for batch, height, width in ((1, HEIGHT, WIDTH), (2, 72, 101)):
        image, events = _inputs(batch, height, width, seed=5)
        mask, logits = engine.run(None, {"image": image.numpy(), "events": events.numpy()})
        with torch.no_grad():
            expected = fused_net(image, events).numpy()
        assert mask.dtype == np.uint8
        assert mask.shape == (batch, height, width)
        np.testing.assert_allclose(logits, expected, atol=1e-3, rtol=0)
        assert (mask == expected.argmax(axis=1)).mean() >= 0.999


def test_event_only_exports_with_both_inputs(tmp_path, nets) -> None:
    net = nets["event_only"]
    path = export_onnx(net, tmp_path / "e.onnx", height=40, width=40, with_logits=False)
    engine = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in engine.get_inputs()] == ["image", "events"]
    image, events = _inputs(1, 40, 40)
    (mask,) = engine.run(None, {"image": image.numpy(), "events": events.numpy()})
    with torch.no_grad():
        expected = net(image, events).argmax(dim=1).numpy()
    assert (mask == expected).mean() >= 0.999


def test_checkpoint_round_trip(tmp_path, fused_net) -> None:
    path = tmp_path / "cacd.pt"
    save_cacd_checkpoint(fused_net, path, epoch=3)
    data = torch.load(path, weights_only=True)
    assert data["arch"] == "cacd"
    assert data["epoch"] == 3
    loaded = load_cacd_checkpoint(path)
    assert not loaded.training
    assert loaded.config() == fused_net.config()
    image, events = _inputs(seed=9)
    with torch.no_grad():
        torch.testing.assert_close(loaded(image, events), fused_net(image, events))


def test_checkpoint_round_trip_other_config(tmp_path) -> None:
    variant = "event_only"
    net = _net(variant, num_classes=5, decoder_channels=64, fusion_heads=(2, 2, 5, 4)).eval()
    save_cacd_checkpoint(net, tmp_path / "m.pt")
    loaded = load_cacd_checkpoint(tmp_path / "m.pt")
    assert loaded.config() == net.config()
    assert loaded.variant == variant
    image, events = _inputs(seed=2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(image, events), net(image, events))


def test_foreign_checkpoint_is_not_a_cacd_checkpoint(tmp_path) -> None:
    torch.save({"state_dict": {"w": torch.zeros(1)}, "width": 8}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a CACD checkpoint"):
        load_cacd_checkpoint(tmp_path / "other.pt")


@pytest.mark.parametrize(
    ("options", "bad"),
    [
        ({"backbone": "mit_b7"}, "'mit_b7'"),
        ({"variant": "late_fusion"}, "'late_fusion'"),
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 2.5}, "num_classes"),
        ({"fusion_heads": (1, 2, 5)}, "fusion_heads"),
        ({"fusion_heads": (3, 2, 5, 8)}, "fusion_heads"),
        ({"decoder_channels": 0}, "decoder_channels"),
        ({"drop_path_rate": 1.0}, "drop_path_rate"),
        ({"decoder_dropout": -0.1}, "decoder_dropout"),
        ({"event_channels": 1}, "event_channels"),
    ],
)
def test_bad_config_raises(options: dict, bad: str) -> None:
    with pytest.raises(ValueError, match=bad):
        CACDConfig(**options)


def test_config_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="'width'"):
        CACDConfig.from_dict({"width": 8})
    config = CACDConfig(backbone="mit_b2", fusion_heads=(2, 4, 5, 8))
    assert CACDConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("backbone", "channels"), [("mit_b0", 256), ("mit_b1", 256), ("mit_b3", 768)]
)
def test_default_decoder_width(backbone: str, channels: int) -> None:
    assert CACDConfig(backbone=backbone).decoder_channels == channels


def test_parameter_summary_adds_up(nets) -> None:
    net = nets["fused"]
    summary = net.parameter_summary()
    assert summary["total"] == sum(p.numel() for p in net.parameters())
    assert summary["total"] == sum(v for k, v in summary.items() if k != "total")
    assert summary["image_encoder"] == summary["event_encoder"]
    assert summary["image_encoder"] == pytest.approx(3.4e6, rel=0.05)
    assert summary["fusion"] > 0
    text = net.describe()
    for part in ("image_encoder", "event_encoder", "fusion", "decoder", "total", "mit_b0"):
        assert part in text
    single = nets["image_only"].parameter_summary()
    assert single["event_encoder"] == single["fusion"] == 0


def test_light_event_branch_lifts_to_image_channels_and_fuses_cheaply() -> None:
    """A narrower event encoder hands fusion and the losses maps of the image's channels."""
    config = CACDConfig(event_backbone="mit_e0", fusion_attention_stages=(2, 3))
    net = CACDNet(config).eval()
    image, events = torch.rand(1, 3, 64, 96), torch.rand(1, 3, 64, 96)
    output = net.forward_features(image, events)
    assert [f.shape[1] for f in output.event_features] == list(net.stage_channels)
    assert [f.shape for f in output.event_features] == [f.shape for f in output.image_features]
    assert output.logits.shape == (1, 11, 64, 96)
    assert [fuse.attention for fuse in net.fusion] == [False, False, True, True]
    summary = net.parameter_summary()
    assert summary["event_encoder"] < summary["image_encoder"] / 4
    assert summary["event_lift"] > 0
    assert config.architecture() == "cacd-mit-b0+evt-mit-e0"
    assert CACDConfig().architecture() == "cacd-mit-b0"
    assert CACDConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="fusion_attention_stages"):
        CACDConfig(fusion_attention_stages=(4,))
    with pytest.raises(ValueError, match="event_backbone"):
        CACDConfig(event_backbone="mit_x")


@pytest.mark.parametrize(
    "options", [{}, {"event_backbone": "mit_e0", "fusion_attention_stages": (2, 3)}]
)
def test_a_dropped_modality_gives_finite_gradients_at_initialisation(options: dict) -> None:
    """Exact zeros (modality dropout, the runtime's missing input) must train from step one.

    With zero patch-embedding biases every token of an all-zero input is the zero vector, and
    the layer norms' backward overflowed float32 on the very first step.
    """
    net = _net(**options)
    image, events = _inputs(batch=2, height=96, width=96)
    image[0] = 0.0  # event-only sample
    events[1] = 0.0  # frame-only sample
    logits = net(image, events)
    target = torch.randint(
        0, logits.shape[1], (2, 96, 96), generator=torch.Generator().manual_seed(0)
    )
    torch.nn.functional.cross_entropy(logits, target).backward()
    bad = [
        n for n, p in net.named_parameters() if p.grad is not None and not p.grad.isfinite().all()
    ]
    assert bad == []


def test_fusion_without_attention_folds_the_lift_into_one_convolution() -> None:
    """The inference fast path computes exactly the token path's concat projection."""
    from evseg_ros.model.cacd import CrossModalFusion
    from evseg_ros.model.mit import map_to_tokens, tokens_to_map

    torch.manual_seed(0)
    fusion = CrossModalFusion(32, num_heads=1, reduction_ratio=8, attention=False)
    lift = torch.nn.Conv2d(16, 32, 1)
    image_map, event_map = torch.randn(2, 32, 12, 20), torch.randn(2, 16, 12, 20)
    lifted = lift(event_map)
    tokens = map_to_tokens(torch.cat([image_map, lifted], dim=1))
    expected = tokens_to_map(fusion.concat_projection(tokens), 12, 20)
    torch.testing.assert_close(fusion(image_map, event_map, lift), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fusion(image_map, lifted), expected, rtol=1e-5, atol=1e-5)


def test_inference_skips_the_lifted_maps_but_not_their_effect() -> None:
    net = _net(event_backbone="mit_e0", fusion_attention_stages=(2, 3)).eval()
    image, events = _inputs(batch=1, height=64, width=64)
    with torch.no_grad():
        training_view = net.forward_features(image, events)
        logits = net(image, events)
    torch.testing.assert_close(logits, training_view.logits)
    # The losses get the event maps at the frame's widths, inference the encoder's own.
    assert [f.shape[1] for f in training_view.event_features] == list(net.stage_channels)


def test_a_light_event_only_network_runs_in_inference_and_training_alike() -> None:
    net = _net("event_only", event_backbone="mit_e0").eval()
    image, events = _inputs(batch=1, height=64, width=64)
    with torch.no_grad():
        torch.testing.assert_close(net(image, events), net.forward_features(image, events).logits)
