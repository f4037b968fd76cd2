"""A stand-in for the ``tensorrt`` module, which cannot be installed on the development machines.

It implements the part of the TensorRT Python API the project calls (builder, ONNX parser,
builder config with profiles, timing cache, INT8 calibrator and progress monitor, runtime,
engine and execution context) and behaves like the library where the project's logic depends on
it: an engine carries the release that built it and a runtime of another release refuses it
(returns None), corrupt bytes are refused, INT8 reads the calibrator's cache or pulls batches.
"Inference" runs the ONNX graph with ONNX Runtime on the CPU, reading and writing the tensors
at the addresses the caller bound, so buffer handling is exercised for real.
"""

from __future__ import annotations

import ctypes
import enum
import json
import types

import numpy as np
import onnx
import onnxruntime

_MAGIC = b"FAKETRT\0"


class _Logger:
    VERBOSE, INFO, WARNING, ERROR, INTERNAL_ERROR = range(5)

    def __init__(self, level: int = 2) -> None:
        self.level = level


class DataType(enum.Enum):
    FLOAT = "float32"
    HALF = "float16"
    INT32 = "int32"
    INT64 = "int64"
    INT8 = "int8"
    UINT8 = "uint8"
    BOOL = "bool"


class TensorIOMode(enum.Enum):
    INPUT = 1
    OUTPUT = 2


class BuilderFlag(enum.Enum):
    FP16 = 1
    INT8 = 2


class MemoryPoolType(enum.Enum):
    WORKSPACE = 1


class NetworkDefinitionCreationFlag(enum.IntEnum):
    EXPLICIT_BATCH = 0


class IInt8EntropyCalibrator2:
    def __init__(self) -> None:
        pass


class IProgressMonitor:
    def __init__(self) -> None:
        pass


_ONNX_TYPES = {
    onnx.TensorProto.FLOAT: DataType.FLOAT, onnx.TensorProto.UINT8: DataType.UINT8,
    onnx.TensorProto.INT64: DataType.INT64, onnx.TensorProto.INT32: DataType.INT32,
}


class _Network:
    def __init__(self) -> None:
        self.onnx: bytes | None = None


class _Parser:
    def __init__(self, network: _Network, logger: _Logger) -> None:
        self.network = network
        self.errors: list[str] = []

    def parse(self, data: bytes) -> bool:
        try:
            onnx.checker.check_model(onnx.load_from_string(data))
        except Exception as err:  # noqa: BLE001
            self.errors.append(f"ModelImporter: {type(err).__name__}")
            return False
        self.network.onnx = bytes(data)
        return True

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, index: int) -> str:
        return self.errors[index]


class _Profile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple] = {}

    def set_shape(self, name: str, low, opt, high) -> None:
        assert list(low) == list(opt) == list(high), "the project builds fixed shapes"
        self.shapes[name] = tuple(opt)


class _TimingCache:
    def __init__(self, data: bytes) -> None:
        self.entries = int(data.decode() or 0) if data.isdigit() or not data else -1

    def serialize(self) -> bytes:
        return str(self.entries).encode()


class _Config:
    def __init__(self) -> None:
        self.flags: set[BuilderFlag] = set()
        self.profiles: list[_Profile] = []
        self.int8_calibrator = None
        self.progress_monitor = None
        self.timing_cache: _TimingCache | None = None
        self.pool: dict = {}

    def set_memory_pool_limit(self, pool, size: int) -> None:
        self.pool[pool] = size

    def set_flag(self, flag: BuilderFlag) -> None:
        self.flags.add(flag)

    def add_optimization_profile(self, profile: _Profile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def set_calibration_profile(self, profile: _Profile) -> bool:
        return True

    def create_timing_cache(self, data: bytes) -> _TimingCache | None:
        cache = _TimingCache(bytes(data))
        return None if cache.entries < 0 else cache

    def set_timing_cache(self, cache: _TimingCache, ignore_mismatch: bool) -> bool:
        self.timing_cache = cache
        return True

    def get_timing_cache(self) -> _TimingCache:
        return self.timing_cache


def make_module(version: str = "10.3.0") -> types.ModuleType:
    """A fresh fake ``tensorrt`` of ``version``; ``module.builds`` counts engines built."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.builds = 0
    trt.calibration_batches = 0

    class Builder:
        def __init__(self, logger: _Logger) -> None:
            self.logger = logger

        def create_network(self, flags: int = 0) -> _Network:
            return _Network()

        def create_builder_config(self) -> _Config:
            return _Config()

        def create_optimization_profile(self) -> _Profile:
            return _Profile()

        def build_serialized_network(self, network: _Network, config: _Config) -> bytes | None:
            if network.onnx is None or not config.profiles:
                return None
            monitor = config.progress_monitor
            if monitor is not None:
                monitor.phase_start("Building engine", None, 10)
                for step in range(10):
                    monitor.step_complete("Building engine", step)
                monitor.phase_finish("Building engine")
            precision = "fp32"
            if BuilderFlag.INT8 in config.flags:
                precision = "int8"
                _calibrate(config.int8_calibrator, config.profiles[0].shapes)
            elif BuilderFlag.FP16 in config.flags:
                precision = "fp16"
            if config.timing_cache is not None:
                config.timing_cache.entries += 1
            trt.builds += 1
            header = {
                "version": trt.__version__,
                "precision": precision,
                "shapes": {k: list(v) for k, v in config.profiles[0].shapes.items()},
            }
            return _MAGIC + json.dumps(header).encode() + b"\0" + network.onnx

    def _calibrate(calibrator, shapes: dict[str, tuple]) -> None:
        if calibrator.read_calibration_cache() is not None:
            return
        names = sorted(shapes)
        seen = 0
        while calibrator.get_batch(names) is not None:
            seen += 1
        trt.calibration_batches += seen
        calibrator.write_calibration_cache(f"fake-calibration:{seen}".encode())

    class Runtime:
        def __init__(self, logger: _Logger) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, data: bytes):
            if not bytes(data).startswith(_MAGIC):
                return None  # the real one logs "magic tag does not match" and returns None
            header, _, model = bytes(data)[len(_MAGIC) :].partition(b"\0")
            try:
                meta = json.loads(header)
            except ValueError:
                return None
            if meta["version"] != trt.__version__:
                return None  # "serialization version" mismatch
            return _Engine(meta, model)

    class _Engine:
        def __init__(self, meta: dict, model: bytes) -> None:
            self.session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
            self.inputs = {k: tuple(v) for k, v in meta["shapes"].items()}
            feeds = {k: np.zeros(v, np.float32) for k, v in self.inputs.items()}
            names = [o.name for o in self.session.get_outputs()]
            results = self.session.run(names, feeds)
            self.outputs = {n: (r.shape, r.dtype) for n, r in zip(names, results, strict=True)}
            self.names = [*self.inputs, *self.outputs]
            self.dtypes = {n: DataType.FLOAT for n in self.inputs}
            self.dtypes.update({n: DataType(str(d)) for n, (_, d) in self.outputs.items()})

        @property
        def num_io_tensors(self) -> int:
            return len(self.names)

        def get_tensor_name(self, index: int) -> str:
            return self.names[index]

        def get_tensor_mode(self, name: str) -> TensorIOMode:
            return TensorIOMode.INPUT if name in self.inputs else TensorIOMode.OUTPUT

        def get_tensor_shape(self, name: str) -> tuple:
            """As built from the project's exports: height and width dynamic (-1)."""
            shape = self.inputs[name] if name in self.inputs else self.outputs[name][0]
            return (*shape[:-2], -1, -1)

        def get_tensor_profile_shape(self, name: str, profile: int) -> tuple:
            shape = self.inputs[name]
            return shape, shape, shape

        def get_tensor_dtype(self, name: str) -> DataType:
            return self.dtypes[name]

        def create_execution_context(self):
            return _Context(self)

    class _Context:
        def __init__(self, engine: _Engine) -> None:
            self.engine = engine
            self.addresses: dict[str, int] = {}
            self.shapes: dict[str, tuple] = {}
            self.runs = 0

        def set_input_shape(self, name: str, shape) -> bool:
            self.shapes[name] = tuple(shape)
            return tuple(shape) == self.engine.inputs[name]

        def get_tensor_shape(self, name: str) -> tuple:
            """Resolved once every input shape is set, as TensorRT does."""
            if set(self.shapes) != set(self.engine.inputs):
                return self.engine.get_tensor_shape(name)
            if name in self.engine.inputs:
                return self.shapes[name]
            return self.engine.outputs[name][0]

        def set_tensor_address(self, name: str, address: int) -> bool:
            self.addresses[name] = int(address)
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            feeds = {}
            for name, shape in self.engine.inputs.items():
                count = int(np.prod(shape))
                buffer = (ctypes.c_float * count).from_address(self.addresses[name])
                feeds[name] = np.ctypeslib.as_array(buffer).reshape(shape).copy()
            names = list(self.engine.outputs)
            for name, result in zip(names, self.engine.session.run(names, feeds), strict=True):
                data = np.ascontiguousarray(result)
                ctypes.memmove(self.addresses[name], data.ctypes.data, data.nbytes)
            self.runs += 1
            return True

    trt.Logger = _Logger
    trt.Builder = Builder
    trt.Runtime = Runtime
    trt.OnnxParser = _Parser
    trt.DataType = DataType
    trt.TensorIOMode = TensorIOMode
    trt.BuilderFlag = BuilderFlag
    trt.MemoryPoolType = MemoryPoolType
    trt.NetworkDefinitionCreationFlag = NetworkDefinitionCreationFlag
    trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    trt.IProgressMonitor = IProgressMonitor
    return trt
