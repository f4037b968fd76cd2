"""INT8 calibration: samples in, a calibration cache out, reused by every later build.

TensorRT's entropy calibrator needs a few hundred representative inputs once; the scales it
derives are written to a cache file, and any later build (another machine with the same
TensorRT, a rebuild after a driver update) reads the cache instead of the samples. Samples come
from a folder of ``.npz`` files (``image``: HxWx3 uint8 RGB on the output grid, ``events``:
3xHxW float32 event frame) or from a recording, replayed through the graph with the node's own
inputs kept (:mod:`evseg_ros.nodes.sample_capture`), so the scales see what the node sees.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from evseg_ros.runtime.backend import to_network_inputs
from evseg_ros.runtime.errors import RuntimeBackendError

_LOG = logging.getLogger(__name__)

#: Samples used when a folder or recording offers more; the entropy calibrator saturates here.
DEFAULT_CALIBRATION_SAMPLES = 300


def is_recording(path: Path) -> bool:
    """A rosbag2 folder (``metadata.yaml``) or a single MCAP / sqlite3 file."""
    return (path / "metadata.yaml").is_file() or path.suffix in (".mcap", ".db3")


def samples_from_folder(folder: Path, limit: int = DEFAULT_CALIBRATION_SAMPLES) -> Iterator[tuple]:
    """``(image, events)`` pairs from the ``.npz`` files of ``folder``, in name order.

    Raises:
        RuntimeBackendError: no ``.npz`` files, or one without ``image``/``events``.
    """
    files = sorted(folder.glob("*.npz"))[:limit]
    if not files:
        msg = f"no .npz calibration samples in {str(folder)!r} (each: arrays 'image', 'events')"
        raise RuntimeBackendError(msg)
    for path in files:
        with np.load(path) as data:
            if "image" not in data or "events" not in data:
                msg = f"calibration sample {path.name} lacks 'image' or 'events' (has {list(data)})"
                raise RuntimeBackendError(msg)
            yield data["image"], data["events"]


def calibration_batches(
    source: Path, size: tuple[int, int], limit: int = DEFAULT_CALIBRATION_SAMPLES
) -> Callable[[], Iterable[dict[str, np.ndarray]]]:
    """A callable giving network-ready ``{"image", "events"}`` batches at ``size`` (w, h).

    It is only called when the calibration cache has to be computed, so naming a recording
    costs nothing on a machine whose cache exists.
    """

    def batches() -> Iterator[dict[str, np.ndarray]]:
        if is_recording(source):
            from evseg_ros.nodes.sample_capture import capture_inputs

            pairs: Iterable[tuple] = capture_inputs(source, limit=limit)
        else:
            pairs = samples_from_folder(source, limit)
        for image, events in pairs:
            image_t, events_t = to_network_inputs(image, events, size)
            yield {"image": image_t, "events": events_t}

    return batches


def make_calibrator(
    trt: ModuleType,
    cache_path: Path,
    batches: Callable[[], Iterable[dict[str, Any]]] | None,
    shapes: dict[str, list[int]],
) -> Any:
    """An ``IInt8EntropyCalibrator2`` reading ``cache_path`` or, without it, ``batches``.

    Device memory comes from torch: one buffer per input, filled per batch, so TensorRT reads
    the samples where the engine will later read frames.
    """
    import torch

    if not cache_path.is_file() and batches is None:
        msg = (
            f"no INT8 calibration cache at {str(cache_path)!r} and no samples to compute one: "
            "pass --calibration FOLDER_OR_RECORDING"
        )
        raise RuntimeBackendError(msg)
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")

    class _Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._iter: Iterator[dict[str, Any]] | None = None
            self._buffers = {
                name: torch.empty(shape, dtype=torch.float32, device=device)
                for name, shape in shapes.items()
            }
            self.used = 0

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self._iter is None:
                self._iter = iter(batches() if batches is not None else ())
            sample = next(self._iter, None)
            if sample is None:
                _LOG.info("INT8 calibration used %d samples", self.used)
                return None
            for name in names:
                self._buffers[name].copy_(torch.from_numpy(np.ascontiguousarray(sample[name])))
            self.used += 1
            return [int(self._buffers[name].data_ptr()) for name in names]

        def read_calibration_cache(self) -> bytes | None:
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            cache_path.write_bytes(bytes(cache))

    return _Calibrator()


__all__ = [
    "DEFAULT_CALIBRATION_SAMPLES",
    "calibration_batches",
    "is_recording",
    "make_calibrator",
    "samples_from_folder",
]
