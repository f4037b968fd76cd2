"""FLIR source against a fake PySpin (the SDK cannot be installed here).

The fake mimics the parts of PySpin the source uses: system, camera list, camera with GenICam
nodes (access mode, SetValue, GetValue), images with chunk data, SpinnakerException with an
error code. The camera plays a script of images and exceptions.
"""

from __future__ import annotations

import sys
import time
import types
from collections import deque
from types import SimpleNamespace

import numpy as np
import pytest

from evseg_ros.sources import SourceUnavailableError
from evseg_ros.sources.spinnaker import SpinnakerConfig, SpinnakerFrameSource

NI, NA, WO, RO, RW = range(5)
TIMEOUT = -1011
ENUMS = {
    "AcquisitionMode": ("Continuous",),
    "StreamBufferHandlingMode": ("NewestOnly", "OldestFirst"),
    "PixelFormat": ("BayerRG8", "BayerGB8", "BayerGR8", "BayerBG8", "RGB8", "BGR8", "Mono8"),
    "ExposureAuto": ("Off", "Continuous"),
    "GainAuto": ("Off", "Continuous"),
    "TriggerMode": ("Off", "On"),
    "TriggerSelector": ("FrameStart", "AcquisitionStart"),
    "TriggerSource": ("Line0", "Line1", "Line2", "Line3"),
    "TriggerActivation": ("RisingEdge", "FallingEdge", "AnyEdge", "LevelHigh", "LevelLow"),
    "TriggerOverlap": ("Off", "ReadOut", "PreviousFrame"),
    "ChunkSelector": ("FrameID", "Timestamp", "ExposureTime"),
}
NODES = (
    "AcquisitionMode",
    "PixelFormat",
    "ExposureAuto",
    "ExposureTime",
    "GainAuto",
    "Gain",
    "AcquisitionFrameRateEnable",
    "AcquisitionFrameRate",
    "TriggerMode",
    "TriggerSelector",
    "TriggerSource",
    "TriggerActivation",
    "TriggerDelay",
    "TriggerOverlap",
    "ChunkModeActive",
    "ChunkSelector",
    "ChunkEnable",
)


class FakeSpinnakerException(Exception):
    def __init__(self, message: str, errorcode: int = -1001) -> None:
        super().__init__(message)
        self.errorcode = errorcode


class FakeNode:
    def __init__(self, camera: FakeCamera, name: str, value=None, access: int = RW) -> None:
        self.camera, self.name, self.value, self.access = camera, name, value, access

    def GetAccessMode(self) -> int:
        return self.access

    def GetValue(self):
        return self.value

    def SetValue(self, value) -> None:
        if self.access not in (RW, WO):
            raise FakeSpinnakerException(f"{self.name} is not writable")
        self.value = value
        self.camera.writes.append((self.name, value))


class FakeChunk:
    def __init__(self, frame_id: int, timestamp_ns: int, exposure_us: float) -> None:
        self._values = frame_id, timestamp_ns, exposure_us

    def GetFrameID(self) -> int:
        return self._values[0]

    def GetTimestamp(self) -> int:
        return self._values[1]

    def GetExposureTime(self) -> float:
        return self._values[2]


class FakeImage:
    def __init__(
        self,
        frame_id: int,
        timestamp_ns: int,
        *,
        exposure_us: float = 1000.0,
        pixel_format: str = "BayerRG8",
        incomplete: bool = False,
        shape=(6, 8),
        dtype=np.uint8,
        received_ns: int | None = None,
    ) -> None:
        self.frame_id, self.timestamp_ns, self.exposure_us = frame_id, timestamp_ns, exposure_us
        self.pixel_format, self.incomplete = pixel_format, incomplete
        self.array = np.full(shape, frame_id % 256, dtype=dtype)
        self.received_ns = received_ns
        self.released = False

    def IsIncomplete(self) -> bool:
        return self.incomplete

    def GetPixelFormatName(self) -> str:
        return self.pixel_format

    def GetNDArray(self) -> np.ndarray:
        return self.array

    def GetChunkData(self) -> FakeChunk:
        return FakeChunk(self.frame_id, self.timestamp_ns, self.exposure_us)

    def GetFrameID(self) -> int:
        return self.frame_id

    def GetTimeStamp(self) -> int:
        return self.timestamp_ns

    def Release(self) -> None:
        self.released = True


class FakeClock:
    def __init__(self) -> None:
        self.now_ns = 1_000_000_000

    def __call__(self) -> int:
        return self.now_ns


class FakeCamera:
    def __init__(self, serial: str, clock: FakeClock, *, block_on_timeout: bool = False) -> None:
        self.serial = serial
        self.clock = clock
        self.block_on_timeout = block_on_timeout
        self.writes: list[tuple[str, object]] = []
        self.calls: list[str] = []
        self.script: deque = deque()
        for name in NODES:
            setattr(self, name, FakeNode(self, name))
        self.Width = FakeNode(self, "Width", 8, RO)
        self.Height = FakeNode(self, "Height", 6, RO)
        self.TLStream = SimpleNamespace(
            StreamBufferHandlingMode=FakeNode(self, "StreamBufferHandlingMode")
        )
        self.TLDevice = SimpleNamespace(
            DeviceSerialNumber=FakeNode(self, "DeviceSerialNumber", serial, RO)
        )

    def IsValid(self) -> bool:
        return True

    def Init(self) -> None:
        self.calls.append("Init")

    def DeInit(self) -> None:
        self.calls.append("DeInit")

    def BeginAcquisition(self) -> None:
        self.calls.append("BeginAcquisition")

    def EndAcquisition(self) -> None:
        self.calls.append("EndAcquisition")

    def GetNextImage(self, timeout_ms: int):
        if not self.script:
            if self.block_on_timeout:
                time.sleep(timeout_ms / 1000.0)
            raise FakeSpinnakerException("Failed waiting for EventData on NEW_BUFFER_DATA", TIMEOUT)
        item = self.script.popleft()
        if isinstance(item, Exception):
            raise item
        if item.received_ns is not None:
            self.clock.now_ns = item.received_ns
        return item


class FakeCameraList:
    def __init__(self, cameras: list[FakeCamera]) -> None:
        self.cameras = list(cameras)

    def GetSize(self) -> int:
        return len(self.cameras)

    def GetByIndex(self, index: int) -> FakeCamera:
        return self.cameras[index]

    def GetBySerial(self, serial: str):
        match = [c for c in self.cameras if c.serial == serial]
        if not match:
            raise FakeSpinnakerException(f"no camera {serial}")
        return match[0]

    def Clear(self) -> None:
        self.cameras = []


class FakeSystem:
    instance: FakeSystem | None = None

    def __init__(self) -> None:
        self.cameras: list[FakeCamera] = []
        self.released = False

    @classmethod
    def GetInstance(cls) -> FakeSystem:
        return cls.instance

    def GetCameras(self) -> FakeCameraList:
        return FakeCameraList(self.cameras)

    def ReleaseInstance(self) -> None:
        self.released = True


@pytest.fixture
def spin(monkeypatch):
    """A fake PySpin module with one camera, serial '1234', that has every node."""
    module = types.ModuleType("PySpin")
    module.SpinnakerException = FakeSpinnakerException
    module.System = FakeSystem
    module.NI, module.NA, module.WO, module.RO, module.RW = NI, NA, WO, RO, RW
    module.SPINNAKER_ERR_TIMEOUT = TIMEOUT
    for node, symbols in ENUMS.items():
        for symbol in symbols:
            setattr(module, f"{node}_{symbol}", f"{node}_{symbol}")
    clock = FakeClock()
    system = FakeSystem()
    system.cameras.append(FakeCamera("1234", clock))
    FakeSystem.instance = system
    module.system, module.clock, module.camera = system, clock, system.cameras[0]
    monkeypatch.setitem(sys.modules, "PySpin", module)
    return module


def _open(spin, **config) -> SpinnakerFrameSource:
    return SpinnakerFrameSource(SpinnakerConfig(**config), threaded=False, clock_ns=spin.clock)


def test_configuration_is_applied_in_a_valid_order(spin):
    source = _open(
        spin,
        serial="1234",
        pixel_format="BayerGB8",
        exposure_auto=False,
        exposure_us=5000.0,
        gain_auto=False,
        gain_db=3.0,
        frame_rate_hz=60.0,
        trigger_mode="on",
        trigger_source="Line2",
        trigger_activation="FallingEdge",
        trigger_delay_us=12.0,
        trigger_overlap="ReadOut",
    )
    writes = spin.camera.writes
    values = dict(writes)
    assert values["PixelFormat"] == "PixelFormat_BayerGB8"
    assert values["StreamBufferHandlingMode"] == "StreamBufferHandlingMode_NewestOnly"
    assert values["AcquisitionMode"] == "AcquisitionMode_Continuous"
    assert values["ExposureAuto"] == "ExposureAuto_Off" and values["ExposureTime"] == 5000.0
    assert values["GainAuto"] == "GainAuto_Off" and values["Gain"] == 3.0
    assert values["AcquisitionFrameRateEnable"] is True
    assert values["AcquisitionFrameRate"] == 60.0
    assert values["TriggerSelector"] == "TriggerSelector_FrameStart"
    assert values["TriggerSource"] == "TriggerSource_Line2"
    assert values["TriggerActivation"] == "TriggerActivation_FallingEdge"
    assert values["TriggerOverlap"] == "TriggerOverlap_ReadOut"
    assert values["TriggerDelay"] == 12.0
    assert values["ChunkModeActive"] is True
    # the trigger is switched off while its source is chosen, and on at the end
    trigger_modes = [i for i, (name, _) in enumerate(writes) if name == "TriggerMode"]
    source_at = writes.index(("TriggerSource", "TriggerSource_Line2"))
    assert writes[trigger_modes[0]][1] == "TriggerMode_Off" and trigger_modes[0] < source_at
    assert writes[trigger_modes[-1]][1] == "TriggerMode_On" and trigger_modes[-1] > source_at
    # each chunk is selected, then enabled
    chunk_writes = [w for w in writes if w[0] in ("ChunkSelector", "ChunkEnable")]
    assert chunk_writes == [
        ("ChunkSelector", "ChunkSelector_FrameID"),
        ("ChunkEnable", True),
        ("ChunkSelector", "ChunkSelector_Timestamp"),
        ("ChunkEnable", True),
        ("ChunkSelector", "ChunkSelector_ExposureTime"),
        ("ChunkEnable", True),
    ]
    assert source.settings_not_applied == []
    assert spin.camera.calls == ["Init", "BeginAcquisition"]
    assert (source.width, source.height) == (8, 6)
    source.close()
    assert spin.camera.calls[-2:] == ["EndAcquisition", "DeInit"] and spin.system.released


def test_auto_exposure_and_free_run_leave_fixed_values_alone(spin):
    _open(spin)
    values = dict(spin.camera.writes)
    assert values["ExposureAuto"] == "ExposureAuto_Continuous"
    assert values["GainAuto"] == "GainAuto_Continuous"
    assert values["TriggerMode"] == "TriggerMode_Off"
    for untouched in ("ExposureTime", "Gain", "TriggerSource", "AcquisitionFrameRate"):
        assert untouched not in values


def test_unwritable_and_missing_nodes_are_reported_not_fatal(spin):
    spin.camera.Gain.access = RO
    del spin.camera.TriggerOverlap
    del spin.TriggerActivation_AnyEdge
    spin.camera.script.append(FakeImage(0, 5_000_000))
    source = _open(
        spin,
        gain_auto=False,
        gain_db=6.0,
        trigger_mode="on",
        trigger_activation="AnyEdge",
    )
    not_applied = source.settings_not_applied
    assert len(not_applied) == 3
    assert any(s.startswith("Gain=6.0") and "not writable" in s for s in not_applied)
    assert any(s.startswith("TriggerOverlap=") and "no such node" in s for s in not_applied)
    assert any("TriggerActivation='AnyEdge'" in s for s in not_applied)
    assert "Gain=6.0" in source.status_values()["settings_not_applied"]
    (frame,) = source.read(0)  # the camera streams anyway
    assert frame.encoding == "bayer_rggb8"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("trigger_source", "Line7"),
        ("exposure_us", -5.0),
        ("pixel_format", "BayerRG12p"),
        ("trigger_mode", "sometimes"),
        ("gain_db", -1.0),
        ("acquisition_timeout_ms", 0),
        ("max_consecutive_timeouts", 0),
        ("trigger_overlap", "Always"),
    ],
)
def test_config_rejects_bad_values_naming_them(field, value):
    with pytest.raises(ValueError, match=rf"{field} = {value!r}".replace(".", r"\.")):
        SpinnakerConfig(**{field: value})


def test_frames_carry_encoding_chunk_values_and_camera_clock_stamps(spin):
    camera_start = 7_000_000_000
    images = [
        FakeImage(
            k,
            camera_start + k * 10_000_000,
            exposure_us=2000.0,
            received_ns=2_000_000_000 + k * 10_000_000 + 2_000_000 + 300_000 + 50_000 * k,
        )
        for k in range(5)
    ]
    spin.camera.script.extend(images)
    source = _open(spin, pixel_format="BayerRG8")
    ros_offset = 1_700_000_000_000_000_000
    frames = [source.read(spin.clock.now_ns + ros_offset)[0] for _ in range(5)]
    assert [f.frame_id for f in frames] == list(range(5))
    assert all(f.exposure_us == 2000 and f.encoding == "bayer_rggb8" for f in frames)
    assert frames[2].image.shape == (6, 8) and frames[2].image.dtype == np.uint8
    # the host delay grows frame by frame; the stamps keep the camera's 10 ms spacing, and
    # sit at the lowest receive time minus the exposure
    stamps = [f.stamp_ns - ros_offset for f in frames]
    assert np.diff(stamps).tolist() == [10_000_000] * 4
    assert stamps[0] == 2_000_000_000 + 300_000
    assert all(image.released for image in images)


def test_chunk_stamps_follow_clock_drift(spin):
    """Camera clock 80 ppm slow, receive delays 0.3 ms + exponential jitter (mean 0.5 ms)."""
    rng = np.random.default_rng(3)
    drift, period, exposure_ns = -80e-6, 10_000_000, 1_000_000
    images = []
    for k in range(600):
        host_start = 5_000_000_000 + k * period  # true exposure start on the host clock
        camera_ns = 123_000_000 + round(k * period * (1 + drift))
        delay = 300_000 + round(rng.exponential(500_000))
        images.append(
            FakeImage(
                k, camera_ns, exposure_us=1000.0, received_ns=host_start + exposure_ns + delay
            )
        )
    spin.camera.script.extend(images)
    source = _open(spin)
    errors = []
    for k in range(600):
        (frame,) = source.read(spin.clock.now_ns)
        errors.append(frame.stamp_ns - (5_000_000_000 + k * period + 300_000))
    late = np.abs(np.asarray(errors[300:]))
    assert late.max() < 60_000, f"stamp error up to {late.max()} ns with drift tracking"
    # without drift tracking (minimum over the same 400-frame window) the error would be
    # ~drift x window = 80e-6 x 4 s = 320 us (test_camera_clock.py shows it)
    assert source.clock.fit is not None
    assert abs(source.clock.fit.drift + drift) < 10e-6


def test_consecutive_timeouts_restart_acquisition(spin):
    spin.camera.script.extend([FakeImage(0, 1_000), FakeImage(1, 2_000)])
    source = _open(spin, max_consecutive_timeouts=3, acquisition_timeout_ms=50)
    assert len(source.read(0)) == 1 and len(source.read(0)) == 1
    for _ in range(3):
        assert source.read(0) == []  # the script is empty: GetNextImage times out
    assert source.timeouts == 3 and source.restarts == 1
    assert spin.camera.calls == [
        "Init",
        "BeginAcquisition",
        "EndAcquisition",
        "DeInit",
        "Init",
        "BeginAcquisition",
    ]
    spin.camera.script.append(FakeImage(0, 3_000))  # the frame counter restarts too
    (frame,) = source.read(0)
    assert frame.frame_id == 0 and source.skipped_frames == 0
    assert source.status_values()["timeouts"] == 3 and source.status_values()["connected"] is True


def test_disconnect_restarts_when_the_camera_comes_back(spin):
    camera = spin.camera
    camera.script.extend([FakeImage(0, 1_000), FakeSpinnakerException("Device removed", -1010)])
    source = _open(spin, acquisition_timeout_ms=100)
    assert len(source.read(0)) == 1
    spin.system.cameras.clear()  # unplugged
    assert source.read(0) == []
    assert source.errors == 1 and source.failed_restarts == 1 and not source.connected
    assert "Device removed" in source.last_error
    assert "reopening failed: no FLIR camera found for any serial" in source.last_error
    assert source.read(0) == []  # no retry before the retry period has passed
    assert source.failed_restarts == 1
    spin.system.cameras.append(camera)  # plugged back in
    spin.clock.now_ns += 100_000_000
    assert source.read(0) == []  # this poll reopens
    assert source.connected and source.restarts == 1
    camera.script.append(FakeImage(0, 5_000))
    assert len(source.read(0)) == 1
    assert camera.calls.count("Init") == 2 and camera.calls.count("BeginAcquisition") == 2


def test_incomplete_and_unsupported_frames_are_counted_and_released(spin):
    bad = [
        FakeImage(0, 1_000, incomplete=True),
        FakeImage(1, 2_000, pixel_format="Mono16", dtype=np.uint16),
        FakeImage(2, 3_000, pixel_format="RGB8", shape=(6, 8)),  # RGB8 must have 3 channels
        FakeImage(3, 4_000, pixel_format="RGB8", shape=(6, 8, 3)),
    ]
    spin.camera.script.extend(bad)
    source = _open(spin)
    assert [len(source.read(0)) for _ in range(4)] == [0, 0, 0, 1]
    assert source.incomplete == 1 and source.unsupported_frames == 2
    assert all(image.released for image in bad)


def test_frame_id_gaps_count_frames_dropped_at_the_camera(spin):
    spin.camera.script.extend(FakeImage(i, 1_000 * (i + 1)) for i in (0, 1, 5, 6))
    source = _open(spin)
    ids = [source.read(0)[0].frame_id for _ in range(4)]
    assert ids == [0, 1, 5, 6] and source.skipped_frames == 3


def test_threaded_acquisition_hands_over_the_newest_frame_only(spin):
    spin.camera.block_on_timeout = True
    spin.camera.script.extend(FakeImage(i, 1_000 * (i + 1)) for i in range(5))
    source = SpinnakerFrameSource(
        SpinnakerConfig(acquisition_timeout_ms=10, max_consecutive_timeouts=1_000_000),
        clock_ns=spin.clock,
    )
    try:
        deadline = time.monotonic() + 10
        while source.skipped_frames < 4 and time.monotonic() < deadline:  # 4 replaced
            time.sleep(0.01)
        frames = source.read(0)
        assert [f.frame_id for f in frames] == [4]
        assert source.skipped_frames == 4
        assert source.read(0) == []
    finally:
        source.close()
    assert spin.system.released


def test_missing_pyspin_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "PySpin", None)
    with pytest.raises(SourceUnavailableError, match=r"'PySpin'.*spinnaker-python"):
        SpinnakerFrameSource(SpinnakerConfig())


def test_unknown_serial_names_it_and_the_connected_ones(spin):
    with pytest.raises(SourceUnavailableError, match=r"serial '999'.*'1234'"):
        _open(spin, serial="999")
    assert spin.system.released
