"""The one place a ``device`` parameter (``auto``, ``cpu``, ``cuda``, ``cuda:N``) becomes a device.

Every stage that can run on a GPU (event decoding, demosaicing, remapping, inference, training)
takes the same parameter and must read it the same way: ``auto`` means CUDA when torch sees a
GPU, so one configuration serves the vehicle and a laptop, while an explicit ``cuda`` on a
machine without one is a configuration error, said once with what to do, rather than a silent
fall back to a path several times slower.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

#: Values a ``device`` parameter takes; ``cuda:N`` picks one of several GPUs.
DEVICE_CHOICES = ("auto", "cpu", "cuda")


class DeviceError(ValueError):
    """A ``device`` value that is malformed or names a GPU this machine does not have."""


def check_device_text(device: str) -> str:
    """Validate the spelling of a device value without importing torch; returns it normalised.

    Config checks and ROS parameter validation use this: they must reject ``gpu`` or ``cuda:x``
    on a machine without torch, before any stage starts.

    Raises:
        DeviceError: not ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (N >= 0).
    """
    text = str(device).strip().lower()
    if text in DEVICE_CHOICES:
        return text
    head, _, index = text.partition(":")
    if head == "cuda" and index.isdigit():
        return f"cuda:{int(index)}"
    msg = f"device must be one of {', '.join(DEVICE_CHOICES)} or cuda:N, got {device!r}"
    raise DeviceError(msg)


def cuda_available() -> bool:
    """Whether torch can use a GPU here; False when torch itself is missing."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_device(device: str | torch.device) -> torch.device:
    """Turn a ``device`` value into the torch device it means on this machine.

    Raises:
        DeviceError: a malformed value, or ``cuda``/``cuda:N`` that this machine cannot serve
            (torch built without CUDA, no GPU visible, or fewer GPUs than N + 1).
    """
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    text = check_device_text(device)
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        built = (
            "without CUDA support"
            if torch.version.cuda is None
            else f"for CUDA {torch.version.cuda}"
        )
        msg = (
            f"device {device!r} requested but CUDA is not usable: torch {torch.__version__} is "
            f"built {built} and sees no GPU; set device to 'cpu' or 'auto' (or run `evseg doctor`)"
        )
        raise DeviceError(msg)
    resolved = torch.device(text)
    count = torch.cuda.device_count()
    if resolved.index is not None and resolved.index >= count:
        msg = f"device {device!r} requested but only {count} CUDA device(s) are visible"
        raise DeviceError(msg)
    return resolved


def resolve_device_name(device: str) -> str:
    """:func:`resolve_device` as text (``cpu``, ``cuda``, ``cuda:1``), for non-torch consumers."""
    return str(resolve_device(device))


def is_cuda(device: str | torch.device) -> bool:
    """Whether a resolved device (text or torch) is a GPU."""
    return str(device).startswith("cuda")


__all__ = [
    "DEVICE_CHOICES",
    "DeviceError",
    "check_device_text",
    "cuda_available",
    "is_cuda",
    "resolve_device",
    "resolve_device_name",
]
