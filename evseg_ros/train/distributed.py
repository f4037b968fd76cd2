"""Process-group layout and the few collective operations the training loop needs.

Kept apart from the loop so the rest of the trainer sees one small object
(:class:`DistributedContext`) and three plain functions instead of ``torch.distributed`` calls:
on a single process (no ``torchrun``) every function here is a no-op that returns its input.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DistributedContext", "all_ranks_ok", "gather_from_ranks", "mean_over_ranks"]


@dataclass(frozen=True)
class DistributedContext:
    """Rank layout of this process (world size 1 when not started by ``torchrun``)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def enabled(self) -> bool:
        """Whether gradients and metrics are exchanged with other processes."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that logs and writes files."""
        return self.rank == 0

    @classmethod
    def from_environment(cls, device_type: str) -> DistributedContext:
        """Join the process group ``torchrun`` describes in the environment, if any.

        Uses nccl on CUDA and gloo on CPU. An already initialised group is reused.
        """
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1 or "RANK" not in os.environ:
            return cls()
        rank = int(os.environ["RANK"])
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        initialised_here = False
        if not dist.is_initialized():
            backend = "nccl" if device_type == "cuda" else "gloo"
            if device_type == "cuda":
                torch.cuda.set_device(local_rank)
            dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
            initialised_here = True
        return cls(rank, world_size, local_rank, initialised_here)

    def close(self) -> None:
        """Leave the process group if this context created it."""
        if self.initialised_here and dist.is_initialized():
            dist.destroy_process_group()


def mean_over_ranks(
    values: Mapping[str, float], context: DistributedContext, *, device: torch.device
) -> dict[str, float]:
    """Average named scalars over all ranks, so rank 0 logs the loss of the whole batch.

    Every rank must call it with the same names. ``values`` is returned unchanged when not
    distributed.

    Args:
        values: Name -> this rank's value.
        context: Rank layout.
        device: Where the reduction tensor lives (the training device, for nccl).

    Returns:
        Name -> mean over ranks.
    """
    if not context.enabled:
        return values
    names = sorted(values)
    tensor = torch.tensor([values[n] for n in names], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    tensor /= context.world_size
    return dict(zip(names, tensor.tolist()))


def all_ranks_ok(ok: bool, context: DistributedContext, *, device: torch.device) -> bool:
    """Whether ``ok`` holds on every rank; a collective, so every rank must call it.

    Lets one rank's failure stop all of them at the same step instead of leaving the others
    waiting forever in the next collective.

    Args:
        ok: This rank's verdict.
        context: Rank layout; without distribution the verdict is returned as is.
        device: Where the reduction tensor lives.

    Returns:
        ``False`` when any rank passed ``False``.
    """
    if not context.enabled:
        return ok
    flag = torch.tensor([1.0 if ok else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return flag.item() != 0.0


def gather_from_ranks(value: Any, context: DistributedContext) -> list[Any]:
    """Every rank's ``value`` (picklable), in rank order; ``[value]`` when not distributed."""
    if not context.enabled:
        return [value]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered
