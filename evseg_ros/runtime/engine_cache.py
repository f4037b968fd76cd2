"""Where TensorRT engines are kept, and whether the one found there may be loaded.

A serialized engine is only valid for the exact TensorRT release and GPU (model and compute
capability) that built it, for the ONNX file it came from, its precision and its input shapes.
Loading a foreign one either fails deep inside TensorRT with an assertion about serialization
versions or, worse, runs; rebuilding on every start costs minutes on a Jetson. So every engine
is written with a manifest beside it that records all of that, and a start compares the manifest
with this machine before it trusts the file: valid -> load, anything else -> rebuild, with one
line saying why. Nothing here imports TensorRT, so this logic is tested on any machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

#: Environment variable naming the engine cache folder.
CACHE_ENV = "EVSEG_ENGINE_CACHE"
#: Where engines go when neither the node nor the environment names a folder.
DEFAULT_CACHE_DIR = Path("~/.cache/evseg/engines")
#: Precisions an engine can be built at.
ENGINE_PRECISIONS = ("fp16", "fp32", "int8")
#: Bumped when the manifest's meaning changes; older manifests then read as stale.
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine's validity depends on.

    Attributes:
        onnx_sha256: Hash of the ONNX file it was built from.
        tensorrt_version: ``tensorrt.__version__`` of the builder.
        gpu_name: The GPU's marketing name (``NVIDIA H100 80GB HBM3``, ``Orin``).
        compute_capability: ``major.minor`` (``9.0``, ``8.7``).
        precision: One of :data:`ENGINE_PRECISIONS`.
        input_shapes: Input name -> shape it was built for (``{"image": [1, 3, 617, 1034]}``).
        calibration_sha256: For INT8, the hash of the calibration cache used; else "".
    """

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    input_shapes: dict[str, list[int]]
    calibration_sha256: str = ""

    def mismatch(self, other: EngineKey) -> str:
        """Why an engine built for ``other`` cannot serve ``self``; "" when it can."""
        reasons = {
            "onnx_sha256": lambda a, b: f"the ONNX file changed (sha256 {b[:12]} -> {a[:12]})",
            "tensorrt_version": lambda a, b: f"built by TensorRT {b}, this machine has {a}",
            "gpu_name": lambda a, b: f"built for GPU {b!r}, this machine has {a!r}",
            "compute_capability": lambda a, b: f"built for compute capability {b}, this GPU is {a}",
            "precision": lambda a, b: f"built at {b}, {a} requested",
            "input_shapes": lambda a, b: f"built for input shapes {b}, {a} requested",
            "calibration_sha256": lambda a, b: "built with another INT8 calibration cache",
        }
        for item in fields(self):
            mine, theirs = getattr(self, item.name), getattr(other, item.name)
            if mine != theirs:
                return reasons[item.name](mine, theirs)
        return ""


@dataclass(frozen=True)
class EngineDecision:
    """What to do with the cache slot of one model: ``load`` the engine or ``build`` one."""

    action: str  # "load" or "build"
    reason: str  # why, in one line for the log


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, read in 1 MiB chunks (ONNX files of B5 are ~300 MB)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_dir(configured: str | Path = "") -> Path:
    """The engine folder: the node's parameter, else ``$EVSEG_ENGINE_CACHE``, else the default."""
    text = str(configured) or os.environ.get(CACHE_ENV, "") or str(DEFAULT_CACHE_DIR)
    return Path(text).expanduser()


def engine_path(
    folder: Path, onnx_path: Path, precision: str, shapes: dict[str, list[int]]
) -> Path:
    """One slot per model, precision and size; the manifest says which machine filled it.

    The file name leaves the TensorRT version and the GPU out on purpose: an engine copied over
    from another machine lands in the same slot and is then recognised as foreign, with the
    reason, instead of lying unseen next to the one this machine builds.
    """
    height, width = shapes["image"][2:]
    return folder / f"{onnx_path.stem}.{precision}.{width}x{height}.engine"


def timing_cache_path(folder: Path) -> Path:
    """The builder's layer timings, shared by every engine built in ``folder``."""
    return folder / "timing.cache"


def calibration_cache_path(folder: Path, onnx_path: Path) -> Path:
    """Where a model's INT8 scales live by default: shared by every size and GPU of one model."""
    return folder / f"{onnx_path.stem}.int8.calib"


def manifest_path(engine: Path) -> Path:
    """The manifest written beside ``engine``."""
    return engine.with_suffix(".json")


def write_manifest(engine: Path, data: bytes, key: EngineKey, **details) -> Path:
    """Record ``key``, the hash of the engine's bytes ``data`` (as just written to ``engine``)
    and how it was built; written atomically."""
    record = {
        "format": MANIFEST_FORMAT,
        "key": asdict(key),
        "engine_sha256": hashlib.sha256(data).hexdigest(),
        "engine_bytes": len(data),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **details,
    }
    path = manifest_path(engine)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def read_manifest(engine: Path) -> dict:
    """The manifest beside ``engine``.

    Raises:
        FileNotFoundError: none there.
        ValueError: unreadable, of another format, or without a complete key.
    """
    path = manifest_path(engine)
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        msg = f"manifest {path.name} is not valid JSON ({err.msg})"
        raise ValueError(msg) from None
    if not isinstance(record, dict) or record.get("format") != MANIFEST_FORMAT:
        msg = f"manifest {path.name} is of another format (expected format {MANIFEST_FORMAT})"
        raise ValueError(msg)
    try:
        record["key"] = EngineKey(**record["key"])
    except (KeyError, TypeError) as err:
        msg = f"manifest {path.name} has no complete key ({err})"
        raise ValueError(msg) from None
    return record


def decide(engine: Path, data: bytes | None, expected: EngineKey) -> EngineDecision:
    """Whether the engine in ``engine``'s slot, read as ``data`` (None: no file), may be loaded
    for ``expected``, and why not.

    The bytes are hashed against the manifest, which catches a truncated copy or a disk fault
    before TensorRT is handed them (the deserialisation that follows is the final check); the
    caller reads the file once and hands TensorRT the same bytes.
    """
    if data is None:
        return EngineDecision("build", f"no engine yet at {engine}")
    try:
        record = read_manifest(engine)
    except FileNotFoundError:
        return EngineDecision("build", f"{engine.name} has no manifest: origin unknown, not loaded")
    except ValueError as err:
        return EngineDecision("build", str(err))
    why = expected.mismatch(record["key"])
    if why:
        return EngineDecision("build", f"{engine.name} is stale or foreign: {why}")
    if hashlib.sha256(data).hexdigest() != record.get("engine_sha256"):
        return EngineDecision(
            "build", f"{engine.name} does not match its manifest's sha256: corrupt or modified"
        )
    return EngineDecision("load", f"{engine.name} matches this model, TensorRT and GPU")


__all__ = [
    "CACHE_ENV",
    "DEFAULT_CACHE_DIR",
    "ENGINE_PRECISIONS",
    "EngineDecision",
    "EngineKey",
    "cache_dir",
    "calibration_cache_path",
    "decide",
    "engine_path",
    "file_sha256",
    "manifest_path",
    "read_manifest",
    "timing_cache_path",
    "write_manifest",
]
