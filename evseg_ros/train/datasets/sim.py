"""Samples of the simulated rig (:mod:`evseg_ros.train.sim_dataset`) as training dicts.

The cached :class:`SimSamples` already hold the frame, the pipeline's 3-channel event frame and
the labels of each trigger; this wraps them into the common sample dict so the simulator can
stand in for a real dataset in the same trainer. ``condition`` is the simulator's lighting
(``normal`` / ``night`` / ``glare``).

Instance ids: the simulator renders object ids and the sample generator adds one id per
connected stuff region; they are used (``instances_source="file"``, i.e. stored with the data)
when the sample set carries an ``instances`` array, else the label-map fallback is used.
``reconstructed`` is the simulator's clean render (privileged: see
:meth:`~evseg_ros.sim.rig.CoaxialRigSim.render_clean_frame`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from evseg_ros.geometry.calibration import RigCalibration
from evseg_ros.train.datasets.augment import AugmentConfig
from evseg_ros.train.datasets.base import RawSample, SegmentationDataset
from evseg_ros.train.sim_dataset import SimDatasetConfig, SimSamples, load_or_generate

__all__ = ["SimRigDataset"]


class SimRigDataset(SegmentationDataset):
    """Training dicts from a stack of simulated samples.

    Args:
        samples: The simulated samples (e.g. from :meth:`from_cache`).
        num_classes: Label ids outside the class set (other than 255) become 255.
        augment: Augmentation, or ``None``.
        seed: Augmentation seed.
        min_instance_area: Fallback instances: smallest component kept.
        instance_classes: Fallback instances: classes that form instances.
    """

    def __init__(
        self,
        samples: SimSamples,
        *,
        num_classes: int = 11,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        min_instance_area: int = 64,
        instance_classes: Sequence[int] | None = None,
    ) -> None:
        super().__init__(
            name="sim",
            num_classes=num_classes,
            augment=augment,
            seed=seed,
            min_instance_area=min_instance_area,
            instance_classes=instance_classes,
        )
        self.samples = samples
        instances = getattr(samples, "instances", None)
        self._stored_instances = None if instances is None else np.asarray(instances)
        self._reconstructed = getattr(samples, "reconstructed", None)

    @classmethod
    def from_cache(
        cls,
        calibration: RigCalibration,
        seeds: Sequence[int],
        config: SimDatasetConfig,
        cache_dir: str | Path,
        **options,
    ) -> SimRigDataset:
        """Load (simulating what is not cached yet) ``seeds`` and wrap them.

        ``options`` are the keyword arguments of the constructor.
        """
        return cls(load_or_generate(calibration, list(seeds), config, cache_dir), **options)

    def __len__(self) -> int:
        return len(self.samples)

    def load_image(self, index: int) -> np.ndarray:
        return np.asarray(self.samples.images[self._sample_index(index)], dtype=np.uint8)

    def load_reconstruction(self, index: int) -> np.ndarray | None:
        if self._reconstructed is None:
            return None
        return np.asarray(self._reconstructed[self._sample_index(index)], dtype=np.uint8)

    def instance_path(self, index: int) -> None:
        """Simulated instances are never files: they are in the samples or derived."""
        return None

    def load_raw(self, index: int) -> RawSample:
        seed = int(self.samples.seeds[index])
        time_us = int(self.samples.times_us[index])
        name = f"sim_seed{seed}_t{time_us}"
        return RawSample(
            image=np.asarray(self.samples.images[index], dtype=np.uint8),
            events=np.asarray(self.samples.events[index], dtype=np.float32),
            label=np.asarray(self.samples.labels[index]),
            instances=None if self._stored_instances is None else self._stored_instances[index],
            name=name,
            condition=str(self.samples.lighting[index]),
            source=f"sim seed {seed} t={time_us} us",
            reconstructed=self.load_reconstruction(index),
        )
