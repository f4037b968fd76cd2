"""The engine manager: find a valid engine for this model on this machine, or build one.

What the node and ``evseg build-engine`` share. The decision comes from the cache's manifest
(:mod:`.engine_cache`): a valid engine is loaded, never rebuilt; a missing, stale, foreign or
corrupt one is rebuilt with one log line saying why, never loaded blindly. TensorRT's own
deserialisation is the last check (it refuses an engine of another release): a refusal there
also leads to a rebuild. Builds hold a file lock, so two nodes starting together on a fresh
machine build once, and write the engine atomically, so a crash mid-build leaves no half file.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from evseg_ros.runtime.engine_builder import BuildOptions, build_serialized_engine
from evseg_ros.runtime.engine_cache import (
    ENGINE_PRECISIONS,
    EngineDecision,
    EngineKey,
    decide,
    engine_path,
    file_sha256,
    write_manifest,
)
from evseg_ros.runtime.errors import ModelNotFoundError, RuntimeBackendError

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuFacts:
    """The GPU an engine is built for: part of its cache key."""

    name: str
    compute_capability: str

    @classmethod
    def of(cls, device: Any) -> GpuFacts:
        """The facts of a torch CUDA device."""
        import torch

        major, minor = torch.cuda.get_device_capability(device)
        return cls(torch.cuda.get_device_name(device), f"{major}.{minor}")


@dataclass
class PreparedEngine:
    """An engine ready to run, and how it came to be."""

    path: Path
    engine: Any
    decision: EngineDecision
    built: bool
    build_s: float = 0.0


def network_shapes(width: int, height: int) -> dict[str, list[int]]:
    """The fixed NCHW input shapes of one frame at the network size."""
    return {"image": [1, 3, height, width], "events": [1, 3, height, width]}


def engine_key(
    trt: ModuleType,
    onnx_path: Path,
    gpu: GpuFacts,
    precision: str,
    shapes: dict[str, list[int]],
    calibration_cache: Path | None = None,
) -> EngineKey:
    """The key an engine for these inputs must carry to be loaded here."""
    calibration = ""
    if precision == "int8" and calibration_cache is not None and calibration_cache.is_file():
        calibration = file_sha256(calibration_cache)
    return EngineKey(
        onnx_sha256=file_sha256(onnx_path),
        tensorrt_version=str(trt.__version__),
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
        precision=precision,
        input_shapes={name: list(shape) for name, shape in shapes.items()},
        calibration_sha256=calibration,
    )


@contextlib.contextmanager
def _build_lock(engine: Path) -> Iterator[None]:
    engine.parent.mkdir(parents=True, exist_ok=True)
    with (engine.parent / f".{engine.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _deserialize(trt: ModuleType, runtime: Any, data: bytes) -> Any | None:
    try:
        return runtime.deserialize_cuda_engine(data)
    except Exception:  # noqa: BLE001 (some releases raise, others return None)
        return None


def prepare_engine(
    trt: ModuleType,
    onnx_path: str | Path,
    *,
    shapes: dict[str, list[int]],
    gpu: GpuFacts,
    cache_folder: Path,
    options: BuildOptions,
    force_rebuild: bool = False,
    progress: bool = True,
) -> PreparedEngine:
    """Load the cached engine for ``onnx_path`` if it is valid here, else build and cache one.

    Raises:
        ModelNotFoundError: no ONNX file.
        RuntimeBackendError: an unknown precision, or the build failed.
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ModelNotFoundError(onnx_path)
    if options.precision not in ENGINE_PRECISIONS:
        msg = f"engine precision must be one of {ENGINE_PRECISIONS}, got {options.precision!r}"
        raise RuntimeBackendError(msg)
    path = engine_path(cache_folder, onnx_path, options.precision, shapes)
    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
    with _build_lock(path):  # another process may be building this very slot
        key = engine_key(trt, onnx_path, gpu, options.precision, shapes, options.calibration_cache)
        data = path.read_bytes() if path.is_file() else None
        decision = (
            EngineDecision("build", "rebuild requested")
            if force_rebuild
            else decide(path, data, key)
        )
        if decision.action == "load":
            engine = _deserialize(trt, runtime, data)
            if engine is not None:
                _LOG.info("TensorRT engine %s loaded: %s", path, decision.reason)
                return PreparedEngine(path, engine, decision, built=False)
            decision = EngineDecision(
                "build", f"TensorRT {trt.__version__} refused to deserialize {path.name}"
            )
        _LOG.warning("building TensorRT engine %s: %s", path, decision.reason)
        start = time.monotonic()
        data = build_serialized_engine(trt, onnx_path, shapes, options, progress=progress)
        build_s = time.monotonic() - start
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        if options.precision == "int8":  # the scales exist now if the build computed them
            key = replace(key, calibration_sha256=file_sha256(options.calibration_cache))
        write_manifest(
            path,
            data,
            key,
            onnx_file=str(onnx_path),
            build_seconds=round(build_s, 1),
            workspace_mib=options.workspace_mib,
            timing_cache=str(options.timing_cache or ""),
            calibration_cache=str(options.calibration_cache or ""),
        )
        engine = _deserialize(trt, runtime, data)
        if engine is None:
            msg = f"TensorRT could not load the engine it just built ({path})"
            raise RuntimeBackendError(msg)
        return PreparedEngine(path, engine, decision, built=True, build_s=build_s)


def describe(prepared: PreparedEngine) -> dict[str, Any]:
    """A JSON-able summary for logs and ``evseg build-engine``."""
    return {
        "engine": str(prepared.path),
        "built": prepared.built,
        "build_seconds": round(prepared.build_s, 1),
        **asdict(prepared.decision),
    }


__all__ = [
    "GpuFacts",
    "PreparedEngine",
    "describe",
    "engine_key",
    "network_shapes",
    "prepare_engine",
]
