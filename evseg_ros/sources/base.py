"""Source protocols and records shared by the drivers."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from types import ModuleType
from typing import Protocol

import numpy as np


class SourceUnavailableError(RuntimeError):
    """A source cannot start: missing SDK, device, or file. The message says what to install/fix."""


def import_sdk(module: str, install_hint: str) -> ModuleType:
    """Import a vendor SDK's Python module that cannot come from PyPI (imported only when used).

    Raises:
        SourceUnavailableError: it is not importable; the message ends with ``install_hint``.
    """
    try:
        return import_module(module)
    except ImportError as err:
        msg = f"Python module {module!r} is not importable ({err}); {install_hint}"
        raise SourceUnavailableError(msg) from err


@dataclass(frozen=True)
class RawEventPacket:
    """Raw encoded event bytes as the camera sent them, plus the times the message needs.

    ``stamp_ns`` is the ROS time of the packet's first event (host receive time for hardware);
    ``time_base_ns`` is the sensor time of that event in ns (undefined for evt3 by the message
    standard; we fill it so a reader can check the mapping).
    """

    data: bytes
    stamp_ns: int
    time_base_ns: int


@dataclass(frozen=True)
class CapturedFrame:
    stamp_ns: int
    image: np.ndarray  # (H, W, 3) rgb8/bgr8, or (H, W) mono8 / bayer_* as the camera sent it
    frame_id: int  # camera frame counter (chunk FrameID on hardware)
    exposure_us: int
    ground_truth: np.ndarray | None = None  # (H, W) uint8 class ids (simulator only)
    encoding: str = "rgb8"  # ROS image encoding of ``image``


class EventPacketSource(Protocol):
    encoding: str
    width: int
    height: int

    def read(self, now_ns: int) -> list[RawEventPacket]: ...

    def close(self) -> None: ...


class FrameSource(Protocol):
    width: int
    height: int
    #: frames the source could not deliver because the consumer was too slow (newest-only)
    skipped_frames: int

    def read(self, now_ns: int) -> list[CapturedFrame]: ...

    def close(self) -> None: ...
