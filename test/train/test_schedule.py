"""Learning-rate schedule: warm-up then poly decay, checked at the corner steps."""

from __future__ import annotations

import pytest

from evseg_ros.train.schedule import poly_lr_factor


def test_poly_schedule_with_warmup():
    options = {"total_steps": 110, "power": 0.9, "warmup_steps": 10, "warmup_ratio": 0.1}
    assert poly_lr_factor(0, **options) == pytest.approx(0.1)
    assert poly_lr_factor(5, **options) == pytest.approx(0.55)
    assert poly_lr_factor(10, **options) == pytest.approx(1.0)
    assert poly_lr_factor(60, **options) == pytest.approx(0.5**0.9)
    assert poly_lr_factor(110, **options) == pytest.approx(0.0)
