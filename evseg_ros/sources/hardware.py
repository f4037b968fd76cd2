"""Hardware sources behind guarded imports: Metavision HAL for the EVK4, PySpin for the FLIR.

Neither SDK can be installed from PyPI, so importing this module never fails; opening a device
without its SDK raises :class:`SourceUnavailableError` that names what to install, and every
other source keeps working.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

import numpy as np

from evseg_ros.sources.base import CapturedFrame, RawEventPacket, SourceUnavailableError


def _require(module: str, install_hint: str) -> ModuleType:
    try:
        return import_module(module)
    except ImportError as err:
        msg = f"Python module {module!r} is not importable ({err}); {install_hint}"
        raise SourceUnavailableError(msg) from err


class SpinnakerFrameSource:
    """Frames from a FLIR camera through PySpin (Spinnaker SDK), newest frame only."""

    def __init__(self, *, serial: str = "", timeout_ms: int = 1000) -> None:
        spin = _require(
            "PySpin",
            "install the FLIR Spinnaker SDK and its matching spinnaker-python wheel to use "
            "source 'hardware'",
        )
        self._system = spin.System.GetInstance()
        cameras = self._system.GetCameras()
        camera = cameras.GetBySerial(serial) if serial else (
            cameras.GetByIndex(0) if cameras.GetSize() else None
        )
        if camera is None or not camera.IsValid():
            cameras.Clear()
            self._system.ReleaseInstance()
            msg = f"no FLIR camera found for serial {serial!r}"
            raise SourceUnavailableError(msg)
        self._camera = camera
        self._camera.Init()
        self._camera.BeginAcquisition()
        self.width, self.height = int(camera.Width.GetValue()), int(camera.Height.GetValue())
        self.skipped_frames = 0
        self._timeout_ms = timeout_ms

    def read(self, now_ns: int) -> list[CapturedFrame]:
        image = self._camera.GetNextImage(self._timeout_ms)
        try:
            if image.IsIncomplete():
                self.skipped_frames += 1
                return []
            rgb = np.array(image.GetNDArray(), copy=True)
            if rgb.ndim == 2:
                rgb = np.repeat(rgb[:, :, None], 3, axis=2)
            return [CapturedFrame(int(now_ns), rgb, int(image.GetFrameID()), 0)]
        finally:
            image.Release()

    def close(self) -> None:
        self._camera.EndAcquisition()
        self._camera.DeInit()
        del self._camera
        self._system.ReleaseInstance()
