"""Build a training dataset from the plain dict of a trainer config.

One entry point (``build_dataset``) keyed by ``type`` keeps the trainer independent of where
its data comes from. Unknown keys are errors (a typo such as ``crop_sise`` must not silently
train at the default).

Keys (defaults in brackets):

- all types: ``type`` (``rpea`` | ``dsec`` | ``sim``), ``split`` [train], ``num_classes`` [11],
  ``augment`` [true for split ``train``, else false], ``crop_size`` [[512, 512]] as
  ``[height, width]`` or null, ``scale_range`` [[0.5, 2.0]], ``hflip`` [true], ``seed`` [0],
  ``min_instance_area`` [64], ``instance_classes`` [null = all classes].
- ``rpea``: ``root`` (required), ``representation`` [event_frame], ``bins`` [3].
- ``dsec``: ``root`` (required), ``representation``, ``bins``, ``window_ms`` [50],
  ``sequences`` [null = all], ``use_images`` [true], ``image_tolerance_us`` [5000].
- ``sim``: ``calibration`` [config/calibration/sim_rig.yaml], ``seeds`` [[0]],
  ``frames_per_seed`` [60], ``frame_stride`` [1], ``lighting`` [cycle],
  ``cache_dir`` [output/sim_cache].

The augmentation keys only matter when ``augment`` is true.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from evseg_ros.train.datasets.augment import AugmentConfig
from evseg_ros.train.datasets.base import SegmentationDataset

__all__ = ["DATASET_TYPES", "augment_config", "build_dataset"]

_COMMON = {
    "type",
    "split",
    "num_classes",
    "augment",
    "crop_size",
    "scale_range",
    "hflip",
    "seed",
    "min_instance_area",
    "instance_classes",
}
_SPECIFIC = {
    "rpea": {"root", "representation", "bins"},
    "dsec": {
        "root",
        "representation",
        "bins",
        "window_ms",
        "sequences",
        "use_images",
        "image_tolerance_us",
    },
    "sim": {"calibration", "seeds", "frames_per_seed", "frame_stride", "lighting", "cache_dir"},
}
#: Accepted values of ``type``.
DATASET_TYPES = tuple(sorted(_SPECIFIC))


def augment_config(spec: Mapping[str, Any]) -> AugmentConfig | None:
    """The augmentation a spec asks for, or ``None`` when ``augment`` is off."""
    enabled = spec.get("augment", spec.get("split", "train") == "train")
    if not enabled:
        return None
    crop = spec.get("crop_size", (512, 512))
    return AugmentConfig(
        scale_range=tuple(float(v) for v in spec.get("scale_range", (0.5, 2.0))),
        crop_size=None if crop is None else (int(crop[0]), int(crop[1])),
        hflip=bool(spec.get("hflip", True)),
    )


def _require(spec: Mapping[str, Any], key: str) -> Any:
    if key not in spec:
        msg = f"dataset spec of type {spec['type']!r} needs {key!r}; got keys {sorted(spec)}"
        raise ValueError(msg)
    return spec[key]


def build_dataset(spec: Mapping[str, Any]) -> SegmentationDataset:
    """Build the dataset described by ``spec`` (keys in the module docstring).

    Raises:
        ValueError: Unknown ``type``, unknown key or a missing required key (names them).
        DatasetError: The data on disk is missing or inconsistent.
    """
    kind = spec.get("type")
    if kind not in _SPECIFIC:
        msg = f"dataset type must be one of {DATASET_TYPES}, got {kind!r}"
        raise ValueError(msg)
    allowed = _COMMON | _SPECIFIC[kind]
    unknown = sorted(set(spec) - allowed)
    if unknown:
        msg = f"unknown keys {unknown} for dataset type {kind!r}; allowed: {sorted(allowed)}"
        raise ValueError(msg)
    common = {
        "num_classes": int(spec.get("num_classes", 11)),
        "augment": augment_config(spec),
        "seed": int(spec.get("seed", 0)),
        "min_instance_area": int(spec.get("min_instance_area", 64)),
        "instance_classes": spec.get("instance_classes"),
    }
    split = str(spec.get("split", "train"))
    if kind == "rpea":
        from evseg_ros.train.datasets.rpea import RpeaDataset

        return RpeaDataset(
            _require(spec, "root"),
            split,
            representation=spec.get("representation", "event_frame"),
            bins=int(spec.get("bins", 3)),
            **common,
        )
    if kind == "dsec":
        from evseg_ros.train.datasets.dsec import DsecSemanticDataset

        return DsecSemanticDataset(
            _require(spec, "root"),
            split,
            representation=spec.get("representation", "event_frame"),
            bins=int(spec.get("bins", 3)),
            window_ms=float(spec.get("window_ms", 50.0)),
            sequences=spec.get("sequences"),
            use_images=bool(spec.get("use_images", True)),
            image_tolerance_us=int(spec.get("image_tolerance_us", 5_000)),
            **common,
        )
    return _build_sim(spec, common)


def _build_sim(spec: Mapping[str, Any], common: dict[str, Any]) -> SegmentationDataset:
    from evseg_ros.geometry.calibration import load_calibration
    from evseg_ros.paths import resolve_package_path
    from evseg_ros.train.datasets.sim import SimRigDataset
    from evseg_ros.train.sim_dataset import SimDatasetConfig

    calibration = load_calibration(
        resolve_package_path(spec.get("calibration", "config/calibration/sim_rig.yaml"))
    )
    defaults = SimDatasetConfig()
    config = SimDatasetConfig(
        frames_per_seed=int(spec.get("frames_per_seed", defaults.frames_per_seed)),
        frame_stride=int(spec.get("frame_stride", defaults.frame_stride)),
        lighting=str(spec.get("lighting", defaults.lighting)),
    )
    seeds = [int(seed) for seed in spec.get("seeds", [0])]
    cache_dir = spec.get("cache_dir", "output/sim_cache")
    return SimRigDataset.from_cache(calibration, seeds, config, cache_dir, **common)
