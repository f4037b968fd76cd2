"""Epoch sampler: rank shards cover the epoch, and a resumed shard skips what was done."""

from __future__ import annotations

from evseg_ros.train.sampling import EpochSampler


def test_epoch_sampler_shards_cover_the_epoch_and_skip_on_resume():
    shards = [EpochSampler(7, seed=3, shuffle=True, rank=r, world_size=2) for r in range(2)]
    for sampler in shards:
        sampler.set_epoch(1)
    first, second = (list(s) for s in shards)
    assert len(first) == len(second) == 4
    assert set(first) | set(second) == set(range(7))
    again = EpochSampler(7, seed=3, shuffle=True, rank=0, world_size=2)
    again.set_epoch(1, start=2)
    assert list(again) == first[2:]
    again.set_epoch(2)
    assert list(again) != first
