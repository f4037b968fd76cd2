"""Training datasets: RPEA-style folders, DSEC-Semantic and the simulated rig.

Every dataset returns the same sample dict (see :mod:`.sample`), built from a trainer config
dict by :func:`build_dataset`, and batched by :func:`collate`.
"""

from __future__ import annotations

from evseg_ros.train.datasets.augment import AugmentConfig, Augmenter
from evseg_ros.train.datasets.base import DatasetCounters, SegmentationDataset
from evseg_ros.train.datasets.dsec import DsecSemanticDataset
from evseg_ros.train.datasets.errors import DatasetError
from evseg_ros.train.datasets.factory import DATASET_TYPES, build_dataset
from evseg_ros.train.datasets.instances import (
    InstanceSource,
    instances_from_labels,
    read_instance_file,
    write_instance_file,
)
from evseg_ros.train.datasets.rpea import RpeaDataset
from evseg_ros.train.datasets.sample import SAMPLE_KEYS, collate
from evseg_ros.train.datasets.sim import SimRigDataset

__all__ = [
    "DATASET_TYPES",
    "SAMPLE_KEYS",
    "AugmentConfig",
    "Augmenter",
    "DatasetCounters",
    "DatasetError",
    "DsecSemanticDataset",
    "InstanceSource",
    "RpeaDataset",
    "SegmentationDataset",
    "SimRigDataset",
    "build_dataset",
    "collate",
    "instances_from_labels",
    "read_instance_file",
    "write_instance_file",
]
