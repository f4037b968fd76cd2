"""Which inference backends can run a model on this machine, and why the others cannot.

``backend: auto`` and ``evseg backends`` ask the same question, so the table a user prints is
the decision the node takes. Probing is cheap: imports and file checks, no model is loaded
(a backend that is available but then fails to load is the caller's fall-through case).
"""

from __future__ import annotations

from pathlib import Path

from evseg_ros.device import check_device_text, cuda_available
from evseg_ros.runtime.backend import AUTO_ORDER, BackendStatus
from evseg_ros.runtime.torch_backend import checkpoint_for


def _tensorrt_version() -> tuple[str, str]:
    """(version, "") when ``import tensorrt`` works, else ("", why not)."""
    try:
        import tensorrt
    except ImportError as err:
        return "", f"TensorRT not installed ({err.name or err})"
    except Exception as err:  # noqa: BLE001 (a broken install raises anything)
        return "", f"TensorRT does not import: {err}"
    return str(tensorrt.__version__), ""


def _onnxruntime_providers() -> tuple[list[str], str]:
    try:
        import onnxruntime
    except ImportError:
        return [], "onnxruntime not installed (pip install onnxruntime, or onnxruntime-gpu)"
    return list(onnxruntime.get_available_providers()), ""


def _torch_missing() -> str:
    try:
        import torch  # noqa: F401
    except ImportError:
        return "torch not installed"
    return ""


def _gpu_device(device: str) -> str:
    """The CUDA device a GPU row runs on: the one asked for, else the default one."""
    return device if device.startswith("cuda") else "cuda"


def probe_backends(model_path: str | Path, device: str = "auto") -> list[BackendStatus]:
    """One row per (backend, device) of :data:`AUTO_ORDER`, best first, with the reason.

    ``device`` restricts the rows that count: ``cpu`` marks the GPU rows unavailable ("device
    is cpu"), ``cuda[:N]`` the CPU rows.
    """
    device = check_device_text(device)
    path = Path(model_path)
    onnx = path.suffix == ".onnx"
    checkpoint = checkpoint_for(path)
    gpu = cuda_available()
    rows = []
    for name, kind in AUTO_ORDER:
        row_device = _gpu_device(device) if kind == "cuda" else "cpu"
        reasons = []
        if device != "auto" and (kind == "cuda") != device.startswith("cuda"):
            reasons.append(f"device is {device}")
        elif kind == "cuda" and not gpu:
            reasons.append("no CUDA GPU visible to torch")
        if name in ("tensorrt", "onnxruntime") and not onnx:
            reasons.append(f"{path.name} is not an ONNX file")
        if name == "pytorch":
            reasons.append(_torch_missing())
            if not checkpoint.is_file():
                reasons.append(f"no checkpoint {checkpoint.name} beside the model")
        elif name == "tensorrt":
            reasons.append(_tensorrt_version()[1])
        else:
            providers, missing = _onnxruntime_providers()
            reasons.append(missing)
            if not missing and kind == "cuda" and "CUDAExecutionProvider" not in providers:
                reasons.append("onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)")
        reason = "; ".join(r for r in reasons if r)
        rows.append(BackendStatus(name, row_device, not reason, reason or "available"))
    return rows


def format_table(rows: list[BackendStatus], chosen: str = "") -> str:
    """The rows as an aligned text table; ``chosen`` (``name/device``) is marked with ``*``."""
    header = ("", "backend", "device", "available", "reason")
    lines = [header]
    for row in rows:
        mark = "*" if f"{row.name}/{row.device}" == chosen else ""
        lines.append((mark, row.name, row.device, "yes" if row.available else "no", row.reason))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True))
        + "  " + line[-1]
        for line in lines
    )


__all__ = ["format_table", "probe_backends"]
