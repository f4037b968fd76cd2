"""The learning-rate schedule: linear warm-up, then polynomial ("poly") decay per optimiser step.

A plain function of the step, so ``LambdaLR`` can wrap it and a resumed scheduler lands on the
same value without storing anything but the step count.
"""

from __future__ import annotations

__all__ = ["poly_lr_factor"]


def poly_lr_factor(
    step: int,
    *,
    total_steps: int,
    power: float,
    warmup_steps: int = 0,
    warmup_ratio: float = 1e-3,
    min_ratio: float = 0.0,
) -> float:
    """Learning-rate factor of optimiser step ``step`` (0-based): warm-up, then poly decay.

    Linear from ``warmup_ratio`` to 1 over ``warmup_steps``; then
    ``min_ratio + (1 - min_ratio) * (1 - progress) ** power`` with progress 0 at the end of
    warm-up and 1 at ``total_steps``.
    """
    if warmup_steps and step < warmup_steps:
        return warmup_ratio + (1.0 - warmup_ratio) * step / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    return min_ratio + (1.0 - min_ratio) * (1.0 - progress) ** power
