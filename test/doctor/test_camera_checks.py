"""Camera checks: the real SDK rows on this machine, and the discovery row for each outcome of a
discovery (serials, none, SDK missing, failing, hanging) through a plain listing function."""

from __future__ import annotations

import threading

import pytest

from evseg_ros.doctor.camera_checks import EVK4, FLIR, check_camera, check_sdk, sdk_install_hint
from evseg_ros.doctor.check import ERROR, MISSING, OK


def test_camera_sdks_missing_are_rows_with_the_install_hint(checks):
    from evseg_ros.sources import metavision, spinnaker

    try:
        import metavision_hal  # noqa: F401
    except ImportError:
        assert checks["metavision_sdk"].status == MISSING
        assert checks["metavision_sdk"].fix == metavision.INSTALL_HINT
        assert "metavision_hal" in checks["metavision_sdk"].detail
        assert checks["evk4_camera"].status == MISSING
    try:
        import PySpin  # noqa: F401
    except ImportError:
        assert checks["pyspin"].status == MISSING
        assert checks["pyspin"].fix == spinnaker.INSTALL_HINT
        assert checks["flir_camera"].status == MISSING


def _serials() -> list[str]:
    return ["00050123", "00050124"]


def _none() -> list[str]:
    return []


def _no_sdk() -> list[str]:
    import evseg_no_such_sdk  # noqa: F401, PLC0415

    return []


def _usb_error() -> list[str]:
    raise RuntimeError("LIBUSB_ERROR_IO\nmore")


@pytest.mark.parametrize("camera", [EVK4, FLIR], ids=["evk4", "flir"])
def test_discovery_outcomes(camera):
    found = check_camera(camera._replace(list_serials=_serials), 1.0)
    assert (found.name, found.status) == (camera.camera_row, OK)
    assert found.detail == "serial(s) 00050123, 00050124"
    none = check_camera(camera._replace(list_serials=_none), 1.0)
    assert none.status == MISSING
    assert none.detail == f"no {camera.vendor} camera found"
    assert none.fix == camera.connect_fix
    no_sdk = check_camera(camera._replace(list_serials=_no_sdk), 1.0)
    assert no_sdk.status == MISSING
    assert no_sdk.detail == f"cannot look: {camera.sdk_name} is not installed"
    assert no_sdk.fix == f"install the SDK first (see '{camera.sdk_row}')"
    failing = check_camera(camera._replace(list_serials=_usb_error), 1.0)
    assert failing.status == ERROR
    assert failing.detail == "discovery failed: LIBUSB_ERROR_IO"


def test_discovery_that_hangs_is_an_error_row():
    release = threading.Event()
    try:
        check = check_camera(EVK4._replace(list_serials=lambda: release.wait() and []), 0.2)
    finally:
        release.set()
    assert check.status == ERROR
    assert check.detail == "discovery failed: no answer within 0.2 s"


def test_sdk_row_of_an_importable_module_and_the_fallback_hint():
    present = check_sdk(FLIR._replace(module="json", describe=lambda module: module.__name__))
    assert (present.name, present.status, present.detail) == ("pyspin", OK, "json")
    orphan = EVK4._replace(hint_source="evseg_ros.no_such_source")
    assert sdk_install_hint(orphan) == (
        "install the Prophesee Metavision SDK (or OpenEB) so that 'import metavision_hal' works"
    )
