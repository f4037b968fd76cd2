"""What inference runs on: torch and the GPU it sees, TensorRT and its engine cache, ONNX Runtime
and its GPU providers, numba for the CPU decoders, and the shipped model file.

A CPU-only torch wheel or an ``onnxruntime`` installed beside ``onnxruntime-gpu`` makes
``device: auto`` fall back to the CPU without an error; these rows say so before the frame rate
does. Each library is imported inside its check, never when this module loads.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from types import ModuleType

from evseg_ros.doctor.check import (
    ERROR,
    MIB,
    MISSING,
    OK,
    Check,
    first_line,
    gib,
    module_check,
    package_path,
)
from evseg_ros.doctor.process import run_command

SHIPPED_MODEL = "models/cacd_b0_sim.onnx"

TORCH_FIX = (
    "pip install torch (x86_64: the CUDA wheel from download.pytorch.org for this "
    "driver; Jetson: NVIDIA's torch wheel for this JetPack)"
)


def _torch_build(torch: ModuleType) -> str:
    built = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU only"
    return f"{torch.__version__} ({built})"


def check_torch() -> Check:
    """torch itself, and which CUDA it was built for."""
    return module_check("torch", "torch", _torch_build, TORCH_FIX)


def check_cuda() -> Check:
    """A GPU torch can use: name, compute capability and memory of each visible one."""
    from evseg_ros.device import cuda_available  # noqa: PLC0415

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    hidden = f"; CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else ""
    if not cuda_available():
        return _no_cuda(hidden)
    import torch  # noqa: PLC0415

    devices = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        devices.append(
            f"cuda:{index} {props.name}, sm_{props.major}{props.minor}, "
            f"{gib(props.total_memory)}"
        )
    return Check("cuda", OK, f"CUDA {torch.version.cuda}: " + "; ".join(devices) + hidden)


def _no_cuda(hidden: str) -> Check:
    try:
        import torch  # noqa: PLC0415
    except ImportError:
        return Check("cuda", MISSING, "torch is not installed", "install torch (see 'torch')")
    if torch.version.cuda is None:
        detail = f"torch {torch.__version__} is a CPU-only build"
        fix = "install a CUDA build of torch (x86_64: download.pytorch.org; Jetson: JetPack's)"
    else:
        detail = f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU"
        fix = (
            "check the NVIDIA driver (nvidia-smi), CUDA_VISIBLE_DEVICES, and in a container "
            "--gpus all / the NVIDIA container runtime"
        )
    smi = run_command(("nvidia-smi", "-L"))
    if smi.returncode == 0 and "GPU" in smi.output:
        detail += f", but nvidia-smi lists {smi.output.count('GPU ')} GPU(s)"
    return Check("cuda", MISSING, detail + hidden, fix)


def _tensorrt_version(tensorrt: ModuleType) -> str:
    return getattr(tensorrt, "__version__", "unknown version")


def check_tensorrt(machine: str | None = None, *, jetson: bool = False) -> Check:
    """The TensorRT Python API (the fastest backend); how to get it differs on x86 and Jetson."""
    hint = tensorrt_install_hint(machine, jetson=jetson)
    try:
        return module_check("tensorrt", "tensorrt", _tensorrt_version, hint)
    except Exception as err:  # a wheel whose libnvinfer does not load
        return Check("tensorrt", ERROR, f"import failed: {first_line(err)}", hint)


def tensorrt_install_hint(machine: str | None = None, *, jetson: bool = False) -> str:
    """Where TensorRT's Python API comes from on this kind of machine."""
    machine = machine or platform.machine()
    if jetson:
        return (
            "JetPack ships TensorRT: sudo apt install python3-libnvinfer, and run with the "
            "system python3 (or a venv made with --system-site-packages)"
        )
    if machine in ("x86_64", "AMD64"):
        return "pip install tensorrt (needs an NVIDIA driver for CUDA 12 or newer)"
    return "install NVIDIA TensorRT with its Python bindings for this platform"


def check_engine_cache(configured: str | Path = "") -> Check:
    """The engine cache folder exists and is writable, or can be created on the first build.

    The folder is the one the TensorRT backend and ``evseg build-engine`` use
    (:func:`evseg_ros.runtime.engine_cache.cache_dir`: ``configured``, else
    ``$EVSEG_ENGINE_CACHE``, else ``~/.cache/evseg/engines``).
    """
    from evseg_ros.runtime.engine_cache import CACHE_ENV, cache_dir  # noqa: PLC0415

    folder = cache_dir(configured)
    source = "given" if str(configured) else CACHE_ENV if os.environ.get(CACHE_ENV) else "default"
    fix = (
        f"mkdir -p {folder} and give it to the user running the rig, or point "
        f"{CACHE_ENV} at a writable folder"
    )
    if folder.exists():
        if not folder.is_dir():
            return Check("engine_cache", ERROR, f"{folder} ({source}) is not a folder", fix)
        if not os.access(folder, os.W_OK | os.X_OK):
            return Check("engine_cache", ERROR, f"{folder} ({source}) is not writable", fix)
        engines = sum(1 for entry in folder.glob("*.engine") if entry.is_file())
        return Check("engine_cache", OK, f"{folder} ({source}), {engines} engine(s)")
    parent = folder.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
        return Check("engine_cache", OK, f"{folder} ({source}), created by the first build")
    return Check("engine_cache", ERROR, f"{folder} ({source}) cannot be created under {parent}",
                 fix)


def _onnxruntime_providers(onnxruntime: ModuleType) -> str:
    providers = ", ".join(onnxruntime.get_available_providers())
    return f"{onnxruntime.__version__}; providers: {providers}"


def check_onnxruntime() -> Check:
    """ONNX Runtime, the backend every machine has, and its version."""
    return module_check(
        "onnxruntime", "onnxruntime", _onnxruntime_providers,
        "pip install onnxruntime (or onnxruntime-gpu for its CUDA provider)",
    )


def check_onnxruntime_gpu() -> Check:
    """Whether ONNX Runtime can run on the GPU (CUDA / TensorRT execution providers)."""
    try:
        import onnxruntime  # noqa: PLC0415
    except ImportError:
        return Check("onnxruntime_gpu", MISSING, "onnxruntime is not installed",
                     "pip install onnxruntime-gpu")
    providers = set(onnxruntime.get_available_providers())
    cuda = "CUDAExecutionProvider" in providers
    tensorrt = "TensorrtExecutionProvider" in providers
    detail = f"CUDAExecutionProvider {'yes' if cuda else 'no'}, " \
             f"TensorrtExecutionProvider {'yes' if tensorrt else 'no'}"
    if cuda:
        return Check("onnxruntime_gpu", OK, detail)
    fix = (
        "pip uninstall onnxruntime && pip install onnxruntime-gpu (x86_64; the two must not be "
        "installed together); Jetson: the onnxruntime-gpu wheel built for this JetPack"
    )
    return Check("onnxruntime_gpu", MISSING, detail, fix)


def check_numba() -> Check:
    """numba, which the CPU event decoders are compiled with."""
    return module_check("numba", "numba", lambda numba: numba.__version__, "pip install numba")


def check_model(relative: str = SHIPPED_MODEL, path: Path | None = None) -> Check:
    """The shipped ONNX model is there, and is the model rather than a Git LFS pointer."""
    path = path or package_path(relative)
    fix = f"restore {relative} (git checkout -- {relative}, or reinstall the package)"
    if not path.is_file():
        return Check("model", MISSING, f"{path} not found", fix)
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(64)
    if head.startswith(b"version https://git-lfs"):
        return Check("model", ERROR, f"{path} is a Git LFS pointer", "git lfs pull")
    return Check("model", OK, f"{path} ({size / MIB:.1f} MiB)")

