"""Which samples each rank trains on, in which order: a pure function of ``(seed, epoch)``.

Kept out of the loop because exact resume depends on it alone: a resumed run rebuilds the same
permutation from the seed and the saved epoch and skips the batches already done, instead of
storing a sampler state in the checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["EpochSampler"]


class EpochSampler(Sampler[int]):
    """Indices of one rank's shard of one epoch, as a pure function of ``(seed, epoch)``.

    Like ``DistributedSampler``: one permutation per epoch (from ``seed`` and ``epoch``),
    padded by repetition to a multiple of ``world_size`` when ``pad`` (training, so every rank
    does the same number of steps), every ``world_size``-th index from ``rank`` on. ``start``
    skips the first indices of the shard, which is how a resumed run continues mid-epoch
    without loading the skipped samples.

    Args:
        size: Dataset length.
        seed: Seed of the permutation.
        shuffle: Permute (training) or keep the dataset order (validation).
        rank: This process's rank.
        world_size: Number of processes.
        pad: Repeat indices so every rank gets the same count.
    """

    def __init__(
        self,
        size: int,
        *,
        seed: int,
        shuffle: bool,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
    ) -> None:
        if size <= 0:
            msg = f"cannot sample from an empty dataset (size {size!r})"
            raise ValueError(msg)
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.pad = pad
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, *, start: int = 0) -> None:
        """Select the epoch and the first index of the shard to yield."""
        self.epoch = int(epoch)
        self.start = int(start)

    def shard(self) -> list[int]:
        """This rank's indices of the current epoch, before ``start`` is applied."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        if self.pad and len(order) % self.world_size:
            missing = self.world_size - len(order) % self.world_size
            order += (order * (missing // len(order) + 1))[:missing]
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.shard()[self.start :])

    def __len__(self) -> int:
        return max(0, len(self.shard()) - self.start)
