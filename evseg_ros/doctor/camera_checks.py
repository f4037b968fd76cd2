"""The cameras: each vendor SDK's Python module, and whether it finds a camera.

Both cameras are checked the same way, two rows each: the SDK imports (else its install hint),
then a discovery through it lists at least one serial. What differs per camera is data, one
:class:`Camera` record each. Discovery runs on a thread with a time limit, because a GigE scan
or a wedged USB device must not hang the command, and with it a systemd start.

The SDK modules are imported directly, not through :mod:`evseg_ros.sources` (which loads the
simulator and the decoders): whether an SDK is installed must not depend on the rest of the
package importing cleanly. The install hints are the sources' own when those import.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import NamedTuple

from evseg_ros.doctor.check import ERROR, MISSING, OK, Check, first_line, module_check
from evseg_ros.doctor.process import call_with_timeout

DISCOVERY_TIMEOUT_S = 10.0
METAVISION_MODULE = "metavision_hal"
PYSPIN_MODULE = "PySpin"


class Camera(NamedTuple):
    """One camera of the rig: its SDK row, its discovery row, and what each says."""

    sdk_row: str  # e.g. "metavision_sdk"
    module: str  # the SDK's Python module
    describe: Callable[[ModuleType], str]  # the SDK row's detail once the module imports
    hint_source: str  # the driver source whose INSTALL_HINT is the SDK row's fix
    sdk_title: str  # what the fallback hint calls the SDK when that source cannot load
    camera_row: str  # e.g. "evk4_camera"
    list_serials: Callable[[], list[str]]  # discovery; ImportError when the SDK is missing
    sdk_name: str  # in "cannot look: <sdk_name> is not installed"
    vendor: str  # in "no <vendor> camera found"
    connect_fix: str  # what to do when the SDK finds no camera


def sdk_install_hint(camera: Camera) -> str:
    """The install hint the driver source gives for the camera's SDK (a short one if it cannot
    load)."""
    try:
        return importlib.import_module(camera.hint_source).INSTALL_HINT
    except Exception:
        return f"install the {camera.sdk_title} so that 'import {camera.module}' works"


def check_sdk(camera: Camera) -> Check:
    """The camera's SDK module imports."""
    return module_check(
        camera.sdk_row, camera.module, camera.describe, lambda: sdk_install_hint(camera)
    )


def check_camera(camera: Camera, timeout_s: float = DISCOVERY_TIMEOUT_S) -> Check:
    """At least one camera of this kind is connected."""
    try:
        serials = call_with_timeout(camera.list_serials, timeout_s)
    except ImportError:
        return Check(camera.camera_row, MISSING, f"cannot look: {camera.sdk_name} is not installed",
                     f"install the SDK first (see '{camera.sdk_row}')")
    except Exception as err:
        return Check(camera.camera_row, ERROR, f"discovery failed: {first_line(err)}",
                     "replug the camera; check dmesg for USB errors")
    if not serials:
        return Check(camera.camera_row, MISSING, f"no {camera.vendor} camera found",
                     camera.connect_fix)
    return Check(camera.camera_row, OK, "serial(s) " + ", ".join(serials))


# Prophesee EVK4 through the Metavision HAL ------------------------------------------------------
def _hal_location(hal: ModuleType) -> str:
    where = getattr(hal, "__file__", None) or "built in"
    return f"{METAVISION_MODULE} from {where}"


def list_evk4_serials() -> list[str]:
    """Serials of the Prophesee cameras the HAL discovers."""
    discovery = importlib.import_module(METAVISION_MODULE).DeviceDiscovery
    return [str(serial) for serial in discovery.list()]


EVK4 = Camera(
    sdk_row="metavision_sdk",
    module=METAVISION_MODULE,
    describe=_hal_location,
    hint_source="evseg_ros.sources.metavision",
    sdk_title="Prophesee Metavision SDK (or OpenEB)",
    camera_row="evk4_camera",
    list_serials=list_evk4_serials,
    sdk_name="the Metavision SDK",
    vendor="Prophesee",
    connect_fix=(
        "connect the EVK4 to a USB 3 port; install the SDK's udev rules and replug; "
        "metavision_platform_info lists what the SDK sees"
    ),
)


# FLIR Blackfly S through Spinnaker --------------------------------------------------------------
def _spinnaker_version(spin: ModuleType) -> str:
    system = spin.System.GetInstance()
    try:
        version = system.GetLibraryVersion()
        text = f"{version.major}.{version.minor}.{version.type}.{version.build}"
    except Exception:  # the version is a nicety; the module imported
        text = "version unknown"
    finally:
        system.ReleaseInstance()
    return f"Spinnaker {text}"


def list_flir_serials() -> list[str]:
    """Serials of the FLIR cameras Spinnaker discovers, the way the frame source finds them."""
    spin = importlib.import_module(PYSPIN_MODULE)
    system = spin.System.GetInstance()
    cameras = system.GetCameras()
    serials: list[str] = []
    try:
        for index in range(cameras.GetSize()):
            camera = cameras.GetByIndex(index)
            try:
                serials.append(str(camera.TLDevice.DeviceSerialNumber.GetValue()))
            except (spin.SpinnakerException, AttributeError):
                serials.append("(serial unreadable)")
            del camera  # Spinnaker refuses to release a system with live camera references
    finally:
        cameras.Clear()
        system.ReleaseInstance()
    return serials


FLIR = Camera(
    sdk_row="pyspin",
    module=PYSPIN_MODULE,
    describe=_spinnaker_version,
    hint_source="evseg_ros.sources.spinnaker",
    sdk_title="FLIR Spinnaker SDK and its spinnaker-python wheel",
    camera_row="flir_camera",
    list_serials=list_flir_serials,
    sdk_name="PySpin",
    vendor="FLIR",
    connect_fix=(
        "connect the Blackfly S to a USB 3 port; add the user to the flirimaging group "
        "(the Spinnaker installer's udev rules) and raise usbfs_memory_mb to 1000"
    ),
)


def check_metavision_sdk() -> Check:
    """The Metavision HAL Python bindings (Metavision SDK or OpenEB)."""
    return check_sdk(EVK4)


def check_evk4_camera(timeout_s: float = DISCOVERY_TIMEOUT_S) -> Check:
    """At least one Prophesee camera is connected."""
    return check_camera(EVK4, timeout_s)


def check_pyspin() -> Check:
    """The Spinnaker SDK's Python module."""
    return check_sdk(FLIR)


def check_flir_camera(timeout_s: float = DISCOVERY_TIMEOUT_S) -> Check:
    """At least one FLIR camera is connected."""
    return check_camera(FLIR, timeout_s)
