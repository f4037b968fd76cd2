"""Build a TensorRT engine from the exported ONNX file, on the machine that will run it.

Written against the standard ``tensorrt`` Python API shared by x86 wheels and JetPack (8.6 and
10.x): explicit-batch network, ONNX parser, one optimisation profile at the network size, FP16
by default, INT8 with an entropy calibrator and its cache, a timing cache kept across builds
(a rebuild after a model change then takes seconds instead of minutes), and build progress
reported through ``IProgressMonitor`` where the release has it. The module ``trt`` is passed in,
so the same code runs against the real library and against the test suite's stand-in.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from evseg_ros.runtime.errors import RuntimeBackendError

_LOG = logging.getLogger(__name__)

#: Builder scratch memory; B5 at 1034x617 fits in 2 GiB, Orin NX has 8-16 GiB shared.
DEFAULT_WORKSPACE_MIB = 2048
#: Install hint quoted whenever ``import tensorrt`` fails.
INSTALL_HINT = (
    "install TensorRT's Python package: `pip install tensorrt` on x86 with an NVIDIA driver "
    "for CUDA 12, or JetPack's python3-libnvinfer on Jetson (`sudo apt install "
    "python3-libnvinfer`); check with `evseg doctor`"
)


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, or one error naming what to install."""
    try:
        import tensorrt
    except ImportError as err:
        msg = f"TensorRT is not installed ({err}); {INSTALL_HINT}"
        raise RuntimeBackendError(msg) from None
    return tensorrt


@dataclass(frozen=True)
class BuildOptions:
    """How to build one engine.

    Attributes:
        precision: ``fp16``, ``fp32`` or ``int8`` (INT8 keeps FP16 for layers without scales).
        workspace_mib: Builder scratch memory limit.
        timing_cache: File the builder's layer timings are read from and written back to.
        calibration_cache: INT8 scales: read when present, else computed from
            ``calibration_batches`` and written here.
        calibration_batches: Callable returning an iterable of ``{input name: host array}``
            at the network size; only called when the cache has to be computed.
    """

    precision: str = "fp16"
    workspace_mib: int = DEFAULT_WORKSPACE_MIB
    timing_cache: Path | None = None
    calibration_cache: Path | None = None
    calibration_batches: Callable[[], Iterable[dict[str, Any]]] | None = None


def _network(trt: ModuleType, builder: Any) -> Any:
    """An explicit-batch network (a flag before TensorRT 10, the only kind since)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    major = int(str(trt.__version__).split(".")[0])
    return builder.create_network(1 << int(flag) if flag is not None and major < 10 else 0)


def _parse(trt: ModuleType, network: Any, onnx_path: Path, logger: Any) -> Any:
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        msg = f"TensorRT cannot parse {str(onnx_path)!r}: {errors or 'no reason given'}"
        raise RuntimeBackendError(msg)
    return parser


def _progress_monitor(trt: ModuleType, stream=sys.stderr) -> Any | None:
    """A monitor printing top-level phases with their step, or None before TensorRT 10."""
    base = getattr(trt, "IProgressMonitor", None)
    if base is None:
        return None

    class _Monitor(base):
        def __init__(self) -> None:
            base.__init__(self)
            self._steps: dict[str, int] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            if parent_phase is None:  # nested phases would flood a terminal
                self._steps[phase_name] = num_steps
                print(f"  building: {phase_name} ({num_steps} steps)", file=stream, flush=True)

        def step_complete(self, phase_name: str, step: int) -> bool:
            total = self._steps.get(phase_name)
            if total and total >= 10 and (step + 1) % max(total // 10, 1) == 0:
                print(f"  building: {phase_name} {step + 1}/{total}", file=stream, flush=True)
            return True  # never cancel

        def phase_finish(self, phase_name: str) -> None:
            self._steps.pop(phase_name, None)

    return _Monitor()


def build_serialized_engine(
    trt: ModuleType,
    onnx_path: Path,
    shapes: dict[str, list[int]],
    options: BuildOptions,
    *,
    progress: bool = True,
) -> bytes:
    """Build and serialise an engine for fixed ``shapes`` (input name -> NCHW).

    Raises:
        RuntimeBackendError: the ONNX file does not parse, INT8 has neither a cache nor
            samples, or the builder gives up (its log says why, on stderr).
    """
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = _network(trt, builder)
    parser = _parse(trt, network, onnx_path, logger)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    profile = builder.create_optimization_profile()
    for name, shape in shapes.items():
        profile.set_shape(name, shape, shape, shape)
    config.add_optimization_profile(profile)
    if options.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    calibrator = None
    if options.precision == "int8":
        from evseg_ros.runtime.int8_calibration import make_calibrator

        if options.calibration_cache is None:
            msg = "INT8 needs a calibration cache file (and samples to fill it the first time)"
            raise RuntimeBackendError(msg)
        calibrator = make_calibrator(
            trt, options.calibration_cache, options.calibration_batches, shapes
        )
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
        if hasattr(config, "set_calibration_profile"):
            config.set_calibration_profile(profile)
    timing = _timing_cache(config, options.timing_cache)
    monitor = _progress_monitor(trt) if progress else None
    if monitor is not None:
        config.progress_monitor = monitor
    start = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        msg = f"TensorRT could not build an engine from {str(onnx_path)!r} (see its log above)"
        raise RuntimeBackendError(msg)
    _LOG.info("engine built from %s in %.1f s", onnx_path.name, time.monotonic() - start)
    if timing is not None and options.timing_cache is not None:
        _write_atomic(options.timing_cache, bytes(config.get_timing_cache().serialize()))
    del parser, calibrator  # alive until the build is over, as TensorRT requires
    return bytes(serialized)


def _timing_cache(config: Any, path: Path | None) -> Any | None:
    """Load (or start) the timing cache; a corrupt one is set aside, not fatal."""
    if path is None:
        return None
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    if cache is None or not config.set_timing_cache(cache, False):
        _LOG.warning("timing cache %s unusable; building without it and replacing it", path)
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    return cache


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


__all__ = [
    "DEFAULT_WORKSPACE_MIB",
    "INSTALL_HINT",
    "BuildOptions",
    "build_serialized_engine",
    "import_tensorrt",
]
