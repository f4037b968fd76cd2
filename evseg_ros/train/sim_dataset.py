"""Paired training samples (frame, event frame, labels) from the simulated rig.

Each sample is made exactly the way the running pipeline makes its inputs: the frame rendered
at trigger time ``t_k`` and the event frame of the events in ``WindowConfig().bounds(t_k)``
accumulated by :class:`~evseg_ros.events.event_frame.EventFrameBuilder`. Any difference here
(window, accumulation, mapping) would be a train/deploy mismatch the metrics could not show.

Simulating events is the slow part, so sequences are cached per seed in ``.npz`` files whose
names include a hash of everything that determines their content.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np

from evseg_ros.events.event_frame import EventFrameBuilder
from evseg_ros.events.window import WindowConfig
from evseg_ros.geometry.calibration import RigCalibration

_LOG = logging.getLogger(__name__)

#: Bump when the sample format or generation procedure changes, to invalidate caches.
#: 3: clean renders (``reconstructed``) and instance ids for stuff regions.
DATASET_FORMAT = 3

#: Smallest stuff region (pixels at the frame camera's resolution) that becomes an instance.
STUFF_MIN_AREA = 64


@dataclass(frozen=True)
class SimDatasetConfig:
    """How sequences are sampled from the simulator.

    Attributes:
        frames_per_seed: Frames taken from each seed's sequence.
        frame_stride: Use every ``frame_stride``-th trigger; >1 spreads a fixed number of frames
            over a longer stretch of the scene (more variety per simulated frame).
        frame_rate_hz: Trigger rate of the simulated frame camera.
        lighting: Simulator lighting mode (``"cycle"`` visits normal, night and glare).
        start_us: Sensor time of the first trigger considered; leaves room for the first
            event window, which starts before its trigger.
        warmup_us: The event simulator starts this long before each window, so the window
            itself is not affected by the simulator's start-up.
        window: Event window of a frame, as in the pipeline.
    """

    frames_per_seed: int = 60
    frame_stride: int = 1
    frame_rate_hz: float = 10.0
    lighting: str = "cycle"
    start_us: int = 100_000
    warmup_us: int = 10_000
    window: WindowConfig = field(default_factory=WindowConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class SimSamples:
    """A stack of samples; every array has the sample index first."""

    images: np.ndarray  # (N, H, W, 3) uint8 RGB
    events: np.ndarray  # (N, 3, H, W) float16 event frames
    labels: np.ndarray  # (N, H, W) uint8 class ids (255 = void)
    lighting: np.ndarray  # (N,) str
    seeds: np.ndarray  # (N,) int64
    times_us: np.ndarray  # (N,) int64 trigger times
    #: (N, H, W) int32 instance ids for HFCA: the simulator's object ids, completed by one
    #: id per connected stuff region (``add_stuff_instances``); 0 = none. None in sample sets
    #: made without them (the training datasets then derive instances from the labels)
    instances: np.ndarray | None = None
    #: (N, H, W, 3) uint8 clean renders (``CoaxialRigSim.render_clean_frame``): the stand-in
    #: for CACD's EvLight reconstruction, privileged information only training targets use
    reconstructed: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)

    @staticmethod
    def concatenate(parts: list[SimSamples]) -> SimSamples:
        """Stack several sample sets (e.g. one per seed)."""
        names = [f.name for f in dataclasses.fields(SimSamples)]
        stacked = {}
        for name in names:
            arrays = [getattr(p, name) for p in parts]
            stacked[name] = None if any(a is None for a in arrays) else np.concatenate(arrays)
        return SimSamples(**stacked)

    def save(self, path: Path) -> None:
        arrays = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        np.savez_compressed(path, **{k: v for k, v in arrays.items() if v is not None})

    @staticmethod
    def load(path: Path) -> SimSamples:
        with np.load(path, allow_pickle=False) as data:
            fields = dataclasses.fields(SimSamples)
            return SimSamples(**{f.name: data[f.name] for f in fields if f.name in data})


def lighting_name(lighting: object) -> str:
    """Plain lower-case name of a simulator lighting value (enum, object with a name, or str)."""
    if isinstance(lighting, Enum):
        value = lighting.value
        return (value if isinstance(value, str) else lighting.name).lower()
    name = getattr(lighting, "name", lighting)
    return str(name).lower()


def simulator_version() -> str:
    """The simulator's ``SIM_VERSION``, recorded in cache keys and the model card.

    A simulator without one is identified by the package version, so its caches are still
    invalidated by a release.
    """
    import evseg_ros
    from evseg_ros import sim

    version = getattr(sim, "SIM_VERSION", None)
    return str(version) if version else f"unversioned (evseg_ros {evseg_ros.__version__})"


def _make_rig(calibration: RigCalibration, seed: int, config: SimDatasetConfig):
    from evseg_ros.sim import CoaxialRigSim, SimConfig

    sim_config = SimConfig(seed=seed, frame_rate_hz=config.frame_rate_hz, lighting=config.lighting)
    return CoaxialRigSim(calibration, sim_config)


def generate_sequence(
    calibration: RigCalibration, seed: int, config: SimDatasetConfig
) -> SimSamples:
    """Simulate one seed's samples (deterministic for a given seed and config)."""
    from evseg_ros.train.datasets.instances import add_stuff_instances  # (imports this module)

    rig = _make_rig(calibration, seed, config)
    period = int(rig.frame_period_us())
    span = period * (config.frames_per_seed * config.frame_stride + 1)
    triggers = rig.trigger_times(config.start_us, config.start_us + span)
    triggers = np.asarray(triggers, dtype=np.int64)[:: config.frame_stride]
    triggers = triggers[: config.frames_per_seed]
    if len(triggers) < config.frames_per_seed:
        msg = f"seed {seed}: simulator gave {len(triggers)} triggers, need {config.frames_per_seed}"
        raise RuntimeError(msg)
    builder = EventFrameBuilder(calibration)
    images, events, labels, instances, lighting, clean = [], [], [], [], [], []
    for t_us in triggers:
        frame = rig.render_frame(int(t_us))
        start, end = config.window.bounds(int(t_us))
        simulator = rig.event_simulator(start - config.warmup_us)
        chunk, _ = simulator.advance_to(end)
        times = chunk["t"]
        chunk = chunk[np.searchsorted(times, start) : np.searchsorted(times, end)]
        images.append(np.asarray(frame.image, dtype=np.uint8))
        events.append(builder.build(chunk, start, end).astype(np.float16))
        labels.append(np.asarray(frame.labels, dtype=np.uint8))
        instances.append(
            add_stuff_instances(frame.labels, frame.instances, min_area=STUFF_MIN_AREA).astype(
                np.int32
            )
        )
        clean.append(rig.render_clean_frame(int(t_us)))
        lighting.append(lighting_name(frame.lighting))
    n = len(triggers)
    return SimSamples(
        images=np.stack(images),
        events=np.stack(events),
        labels=np.stack(labels),
        lighting=np.asarray(lighting, dtype=np.str_),
        seeds=np.full(n, seed, dtype=np.int64),
        times_us=triggers.astype(np.int64),
        instances=np.stack(instances),
        reconstructed=np.stack(clean),
    )


def cache_key(calibration: RigCalibration, seed: int, config: SimDatasetConfig) -> str:
    """Short hash of everything that determines a sequence's content."""
    payload = json.dumps(
        {
            "format": DATASET_FORMAT,
            "simulator": simulator_version(),
            "calibration": calibration.to_dict(),
            "config": config.to_dict(),
            "seed": seed,
        },
        sort_keys=True,
        default=str,  # enums (window mode) by name
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def load_or_generate(
    calibration: RigCalibration,
    seeds: list[int],
    config: SimDatasetConfig,
    cache_dir: str | Path,
) -> SimSamples:
    """Return the samples of ``seeds``, simulating only those not cached yet."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    for seed in seeds:
        path = cache_dir / f"sim_seed{seed}_{cache_key(calibration, seed, config)}.npz"
        if path.is_file():
            parts.append(SimSamples.load(path))
            continue
        _LOG.info("simulating seed %d (%d frames) -> %s", seed, config.frames_per_seed, path)
        samples = generate_sequence(calibration, seed, config)
        tmp = path.with_suffix(".tmp.npz")
        samples.save(tmp)
        tmp.replace(path)
        parts.append(samples)
    return SimSamples.concatenate(parts)
