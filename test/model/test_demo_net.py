"""DemoFusionNet: shapes, variants and gradient flow."""

from __future__ import annotations

import pytest
import torch

from evseg_ros.model.demo_net import (
    DemoFusionNet,
    count_parameters,
    load_checkpoint,
    save_checkpoint,
)


@pytest.mark.parametrize("variant", ["fused", "image_only"])
@pytest.mark.parametrize(("height", "width"), [(64, 64), (240, 320), (37, 53)])
def test_logits_have_input_size(variant: str, height: int, width: int) -> None:
    torch.manual_seed(0)
    net = DemoFusionNet(num_classes=11, variant=variant, width=8).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, height, width), torch.rand(2, 3, height, width))
    assert out.shape == (2, 11, height, width)
    assert out.dtype == torch.float32


def test_image_only_ignores_events() -> None:
    torch.manual_seed(0)
    net = DemoFusionNet(variant="image_only", width=8).eval()
    image = torch.rand(1, 3, 48, 64)
    with torch.no_grad():
        a = net(image, torch.zeros(1, 3, 48, 64))
        b = net(image, torch.rand(1, 3, 48, 64) * 50)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert net.event_encoder is None


def test_fused_uses_events() -> None:
    torch.manual_seed(0)
    net = DemoFusionNet(variant="fused", width=8).eval()
    image = torch.rand(1, 3, 48, 64)
    with torch.no_grad():
        a = net(image, torch.zeros(1, 3, 48, 64))
        b = net(image, torch.rand(1, 3, 48, 64) * 5)
    assert not torch.allclose(a, b)


def test_gradients_reach_both_encoders() -> None:
    torch.manual_seed(0)
    net = DemoFusionNet(variant="fused", width=8).train()
    logits = net(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32) * 3)
    target = torch.randint(0, 11, (2, 32, 32))
    torch.nn.functional.cross_entropy(logits, target).backward()
    for encoder in (net.image_encoder, net.event_encoder):
        grads = [p.grad for p in encoder.parameters()]
        assert all(g is not None for g in grads)
        assert sum(float(g.abs().sum()) for g in grads) > 0


def test_negative_counts_do_not_produce_nan() -> None:
    net = DemoFusionNet(width=8).eval()
    events = torch.full((1, 3, 16, 16), -5.0)
    with torch.no_grad():
        assert torch.isfinite(net(torch.rand(1, 3, 16, 16), events)).all()


def test_model_is_small() -> None:
    assert count_parameters(DemoFusionNet(variant="fused")) < 1_000_000


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="variant"):
        DemoFusionNet(variant="events_only")
    with pytest.raises(ValueError, match="positive"):
        DemoFusionNet(num_classes=0)


def test_checkpoint_round_trip(tmp_path) -> None:
    torch.manual_seed(1)
    net = DemoFusionNet(num_classes=5, variant="image_only", width=8).eval()
    save_checkpoint(net, tmp_path / "m.pt")
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert loaded.config() == net.config()
    x, e = torch.rand(1, 3, 20, 24), torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, e), net(x, e))
