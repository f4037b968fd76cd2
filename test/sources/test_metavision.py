"""EVK4 hardware source against a fake ``metavision_hal`` (the SDK cannot be installed here).

The fake mirrors the bindings' shape (``DeviceDiscovery.open``, ``get_i_*`` facilities that are
``None`` when a camera lacks them, ``I_ROI.Window``, ``I_TriggerIn.Channel``) and records every
call, so the tests check what the source asks of the camera. The bytes it streams are a real
EVT3 recording cut into HAL buffers of random sizes.
"""

from __future__ import annotations

import enum
import itertools
import logging
import sys
from collections import deque
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from evseg_ros.events.evt3 import Evt3Decoder, read_raw_file
from evseg_ros.sources import SourceUnavailableError
from evseg_ros.sources.metavision import (
    MetavisionConfig,
    MetavisionEventSource,
    PacketCutter,
    TriggerChannel,
    config_from_lists,
    raw_bytes,
)

REPO = Path(__file__).resolve().parents[2]
EVT3_RAW = REPO.parent / "shared" / "data" / "expelliarmus" / "evt3_sample.raw"
needs_recording = pytest.mark.skipif(not EVT3_RAW.is_file(), reason=f"{EVT3_RAW} not found")
MS = 1_000_000  # ns


class _Channel(enum.IntEnum):
    MAIN = 0
    AUX = 1
    LOOPBACK = 2


class _Window:
    def __init__(self, x: int, y: int, width: int, height: int) -> None:
        self.x, self.y, self.width, self.height = x, y, width, height


class FakeCamera:
    """One camera: its facilities, the buffers it will stream, and a log of calls."""

    def __init__(
        self,
        *,
        serial: str = "00050423",
        width: int = 1280,
        height: int = 720,
        sensor: str = "IMX636",
        missing: tuple[str, ...] = (),
        trigger_channels: tuple[_Channel, ...] = tuple(_Channel),
    ) -> None:
        self.serial, self.width, self.height, self.sensor = serial, width, height, sensor
        self.missing = set(missing)
        self.trigger_channels = trigger_channels
        self.calls: list[tuple[Any, ...]] = []
        self.biases = {
            "bias_diff": 0, "bias_diff_off": 0, "bias_diff_on": 0, "bias_fo": 0,
            "bias_hpf": 0, "bias_refr": 0,
        }  # fmt: skip
        self.buffers: deque[Any] = deque()  # np.ndarray, or an exception / int status to return
        self.opens = 0
        self.running = False

    def push(self, *chunks: bytes) -> None:
        self.buffers.extend(np.frombuffer(c, dtype=np.uint8) for c in chunks)


class _Facility:
    def __init__(self, camera: FakeCamera, name: str) -> None:
        self._camera, self._name = camera, name

    def _log(self, *call: Any) -> None:
        self._camera.calls.append((self._name, *call))


class _Biases(_Facility):
    def get_all_biases(self) -> dict[str, int]:
        return dict(self._camera.biases)

    def get(self, name: str) -> int:
        return self._camera.biases[name]

    def set(self, name: str, value: int) -> bool:
        self._log("set", name, value)
        if not -100 <= value <= 100:  # the real HAL raises for values out of range
            msg = f"bias {name} value {value} out of range"
            raise RuntimeError(msg)
        self._camera.biases[name] = value
        return True


class _Roi(_Facility):
    def set_window(self, window: _Window) -> bool:
        self._log("set_window", (window.x, window.y, window.width, window.height))
        return True

    def enable(self, state: bool) -> bool:
        self._log("enable", state)
        return True


class _Erc(_Facility):
    rate = 0
    enabled = True

    def set_cd_event_rate(self, rate: int) -> bool:
        self._log("set_cd_event_rate", rate)
        self.rate = rate
        return True

    def get_cd_event_rate(self) -> int:
        return self.rate

    def enable(self, state: bool) -> bool:
        self._log("enable", state)
        self.enabled = state
        return True

    def is_enabled(self) -> bool:
        return self.enabled


class _TriggerIn(_Facility):
    def get_available_channels(self) -> dict[_Channel, int]:
        return {c: int(c) for c in self._camera.trigger_channels}

    def enable(self, channel: _Channel) -> bool:
        self._log("enable", channel)
        return True


class _Registers(_Facility):
    values: dict[int, int]

    def write_register(self, address: int, value: int) -> None:
        self._log("write_register", address, value)
        self.values = {address: value}

    def read_register(self, address: int) -> int:
        return self.values[address]


class _Identification(_Facility):
    def get_current_data_encoding_format(self) -> str:
        return "EVT3"

    def get_sensor_info(self) -> Any:
        return type("SensorInfo", (), {"name": self._camera.sensor})()


class _Geometry(_Facility):
    def get_width(self) -> int:
        return self._camera.width

    def get_height(self) -> int:
        return self._camera.height


class _Stream(_Facility):
    def start(self) -> None:
        self._log("start")
        self._camera.running = True

    def stop(self) -> None:
        self._log("stop")
        self._camera.running = False

    def poll_buffer(self) -> int:
        if not self._camera.buffers:
            return 0
        head = self._camera.buffers[0]
        if isinstance(head, int):
            self._camera.buffers.popleft()
            return head
        if isinstance(head, Exception):
            self._camera.buffers.popleft()
            raise head
        return 1

    def get_latest_raw_data(self) -> np.ndarray:
        return self._camera.buffers.popleft()


_FACILITIES = {
    "get_i_ll_biases": _Biases,
    "get_i_roi": _Roi,
    "get_i_erc_module": _Erc,
    "get_i_trigger_in": _TriggerIn,
    "get_i_hw_register": _Registers,
    "get_i_hw_identification": _Identification,
    "get_i_geometry": _Geometry,
    "get_i_events_stream": _Stream,
}


class _Device:
    def __init__(self, camera: FakeCamera) -> None:
        self._facilities = {
            getter: None if getter in camera.missing else cls(camera, getter.removeprefix("get_i_"))
            for getter, cls in _FACILITIES.items()
        }

    def __getattr__(self, name: str) -> Any:
        if name not in _FACILITIES:
            raise AttributeError(name)
        return lambda: self._facilities[name]


def make_fake_hal(*cameras: FakeCamera) -> ModuleType:
    """A module shaped like ``metavision_hal`` that opens the given cameras by serial."""
    hal = ModuleType("metavision_hal")
    hal.open_calls = []  # (serial, format)
    hal.fail_opens = 0  # the next N opens raise, as the HAL does for a vanished camera

    class DeviceConfig:
        format = ""

        def set_format(self, name: str) -> None:
            self.format = name

    class DeviceDiscovery:
        @staticmethod
        def open(serial: str, config: DeviceConfig | None = None) -> _Device | None:
            hal.open_calls.append((serial, config.format if config else None))
            if hal.fail_opens:
                hal.fail_opens -= 1
                msg = "Camera not found. Check that a camera is plugged into your system"
                raise RuntimeError(msg)
            for camera in cameras:
                if serial in ("", camera.serial):
                    camera.opens += 1
                    return _Device(camera)
            return None

    hal.DeviceConfig = DeviceConfig
    hal.DeviceDiscovery = DeviceDiscovery
    hal.I_ROI = type("I_ROI", (), {"Window": _Window})
    hal.I_TriggerIn = type("I_TriggerIn", (), {"Channel": _Channel})
    return hal


@pytest.fixture
def payload() -> bytes:
    if not EVT3_RAW.is_file():
        pytest.skip(f"{EVT3_RAW} not found")
    header, data = read_raw_file(EVT3_RAW)
    assert str(header["format"]).upper() == "EVT3"
    return bytes(data)


def random_chunks(data: bytes, rng: np.random.Generator, max_size: int = 8_000) -> list[bytes]:
    """Cut ``data`` into HAL-buffer-like pieces of random even sizes (EVT3 words)."""
    chunks, position = [], 0
    while position < len(data):
        size = 2 * int(rng.integers(1, max_size // 2))
        chunks.append(data[position : position + size])
        position += size
    return chunks


def drain(source: MetavisionEventSource, camera: FakeCamera, chunks: list[bytes], rng) -> list:
    """Deliver ``chunks`` 0 to 2 per poll, 1 ms apart; then poll until all is out."""
    packets, now, pending = [], 0, deque(chunks)
    while pending:
        camera.push(*(pending.popleft() for _ in range(min(len(pending), rng.integers(0, 3)))))
        packets += source.read(now)
        now += MS
    packets += source.read(now + 10**9)
    return packets


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"biases": {"bias_diff": 3}}, r"unknown bias name 'bias_diff'"),
        ({"biases": {"bias_on": 3}}, r"'bias_on'"),
        ({"roi": (0, 0, 0, 10)}, r"roi .*\(0, 0, 0, 10\)"),
        ({"roi": (-1, 0, 10, 10)}, r"roi"),
        ({"roi": (0, 0, 10)}, r"roi"),
        ({"erc_rate_ev_s": 0}, r"erc_rate_ev_s .* got 0"),
        ({"erc_rate_ev_s": -5}, r"got -5"),
        ({"trigger_in_channels": (7,)}, r"unknown channel 7"),
        ({"trigger_in_channels": ("external",)}, r"unknown channel 'external'"),
        ({"mipi_frame_period_us": 0}, r"mipi_frame_period_us .* got 0"),
        ({"packet_bytes": 1001}, r"packet_bytes .* got 1001"),
        ({"packet_time_us": -1}, r"packet_time_us .* got -1"),
    ],
)
def test_bad_configuration_names_the_value(options, match):
    with pytest.raises(ValueError, match=match):
        MetavisionConfig(**options)


def test_parameter_shaped_values_map_to_the_config():
    config = config_from_lists(
        biases={"bias_fo": -4}, roi=[0, 0, 0, 0], trigger_in_channels=[-1], packet_bytes=64
    )
    assert (
        config.roi is None and config.trigger_in_channels == () and config.biases == {"bias_fo": -4}
    )
    config = config_from_lists(roi=[1, 2, 3, 4], trigger_in_channels=[0, "aux", 0])
    assert config.roi == (1, 2, 3, 4)
    assert config.trigger_in_channels == (TriggerChannel.MAIN, TriggerChannel.AUX)
    with pytest.raises(ValueError, match="outside the 1280x720 sensor"):
        MetavisionConfig(roi=(1000, 0, 300, 10)).check_sensor(1280, 720)
    MetavisionConfig(roi=(980, 0, 300, 720)).check_sensor(1280, 720)  # touches the edge: fine


# -- packet cutting --------------------------------------------------------------------------


def test_cutter_cuts_by_size_with_the_stamp_of_each_packets_first_byte():
    cutter = PacketCutter(packet_bytes=1000, packet_time_ns=10 * MS)
    first = cutter.add(bytes(range(250)) * 10, arrival_ns=5)  # 2500 bytes
    assert [(len(p.data), p.stamp_ns, p.time_base_ns) for p in first] == [(1000, 5, 0)] * 2
    second = cutter.add(b"\x01" * 700, arrival_ns=7)
    assert [(len(p.data), p.stamp_ns) for p in second] == [(1000, 5)]  # 500 old + 500 new
    assert cutter.pending_bytes == 200
    assert cutter.flush_due(7 + 10 * MS - 1) == []
    (late,) = cutter.flush_due(7 + 10 * MS)
    assert (len(late.data), late.stamp_ns) == (200, 7)  # the remainder arrived at 7
    assert (
        b"".join(p.data for p in first + second + [late]) == bytes(range(250)) * 10 + b"\x01" * 700
    )


def test_source_cuts_by_time_since_the_first_byte():
    camera = FakeCamera()
    config = MetavisionConfig(packet_bytes=1 << 20, packet_time_us=10_000)
    source = MetavisionEventSource(config, hal=make_fake_hal(camera))
    camera.push(b"\x00\x01" * 100)
    assert source.read(0) == []
    camera.push(b"\x02\x03" * 50)
    assert source.read(4 * MS) == []  # 4 ms old: keep filling
    (packet,) = source.read(10 * MS)  # 10 ms after its first byte: closed, no new data needed
    assert packet.data == b"\x00\x01" * 100 + b"\x02\x03" * 50 and packet.stamp_ns == 0
    camera.push(b"\x04\x05" * 10)
    assert source.read(12 * MS) == []
    camera.push(b"\x06\x07" * 10)
    (packet,) = source.read(22 * MS)  # due: closed before the bytes that came after its time
    assert packet.data == b"\x04\x05" * 10 and packet.stamp_ns == 12 * MS
    assert source.read(31 * MS) == []
    (packet,) = source.read(32 * MS)
    assert packet.data == b"\x06\x07" * 10 and packet.stamp_ns == 22 * MS
    assert source.packets == 3 and source.buffers == 4


def test_packet_time_zero_publishes_every_poll():
    camera = FakeCamera()
    source = MetavisionEventSource(MetavisionConfig(packet_time_us=0), hal=make_fake_hal(camera))
    camera.push(b"ab", b"cd")
    (packet,) = source.read(3)
    assert (packet.data, packet.stamp_ns) == (b"abcd", 3)


# -- streaming real EVT3 ---------------------------------------------------------------------


@needs_recording
@pytest.mark.parametrize("seed", [0, 1])
def test_every_byte_comes_out_once_in_order(payload, seed):
    rng = np.random.default_rng(seed)
    camera = FakeCamera()
    config = MetavisionConfig(packet_bytes=16_384, packet_time_us=3_000)
    source = MetavisionEventSource(config, hal=make_fake_hal(camera))
    chunks = random_chunks(payload, rng)
    packets = drain(source, camera, chunks, rng)
    assert b"".join(p.data for p in packets) == payload
    sizes = [len(p.data) for p in packets]
    assert max(sizes) == 16_384, "packets closed by size"
    assert min(sizes[:-1]) < 16_384, "packets closed by time"
    for packet, following in itertools.pairwise(packets):
        if len(packet.data) < 16_384:  # closed by time: only once it was 3 ms old
            assert following.stamp_ns - packet.stamp_ns >= 3 * MS
    stamps = [p.stamp_ns for p in packets]
    assert stamps == sorted(stamps)
    assert (source.buffers, source.bytes_received, source.packets) == (
        len(chunks),
        len(payload),
        len(packets),
    )
    assert source.encoding == "evt3" and (source.width, source.height) == (1280, 720)
    decoder = Evt3Decoder()
    events = np.concatenate([decoder.decode(p.data).events for p in packets])
    np.testing.assert_array_equal(events, Evt3Decoder().decode(payload).events)


# -- settings ------------------------------------------------------------------------------


def test_settings_are_applied_as_configured_before_the_stream_starts():
    camera = FakeCamera()
    hal = make_fake_hal(camera)
    config = MetavisionConfig(
        serial="00050423",
        biases={"bias_diff_on": 12, "bias_diff_off": -7, "bias_fo": 1, "bias_hpf": 2,
                "bias_refr": 3},
        roi=(10, 20, 640, 360),
        erc_enabled=True,
        erc_rate_ev_s=15_000_000,
        trigger_in_channels=(TriggerChannel.MAIN, TriggerChannel.LOOPBACK),
        mipi_frame_period_us=512,
    )  # fmt: skip
    source = MetavisionEventSource(config, hal=hal)
    assert hal.open_calls == [("00050423", "EVT3")]
    assert camera.calls == [
        ("ll_biases", "set", "bias_diff_off", -7),
        ("ll_biases", "set", "bias_diff_on", 12),
        ("ll_biases", "set", "bias_fo", 1),
        ("ll_biases", "set", "bias_hpf", 2),
        ("ll_biases", "set", "bias_refr", 3),
        ("roi", "set_window", (10, 20, 640, 360)),
        ("roi", "enable", True),
        ("erc_module", "set_cd_event_rate", 15_000_000),
        ("erc_module", "enable", True),
        ("trigger_in", "enable", _Channel.MAIN),
        ("trigger_in", "enable", _Channel.LOOPBACK),
        ("hw_register", "write_register", 0xB028, 512),
        ("events_stream", "start"),
    ]
    assert source.settings_not_applied == ()
    assert source.applied["bias_diff_on"] == 12 and source.applied["bias_diff_off"] == -7
    assert source.applied["erc_rate_ev_s"] == 15_000_000 and source.applied["erc_enabled"] is True
    assert source.applied["mipi_frame_period_us"] == 512
    source.close()
    assert camera.calls[-1] == ("events_stream", "stop") and not source.connected


def test_nothing_is_touched_by_default_and_erc_can_be_switched_off():
    camera = FakeCamera()
    MetavisionEventSource(hal=make_fake_hal(camera))
    assert camera.calls == [("events_stream", "start")]
    camera = FakeCamera()
    MetavisionEventSource(
        MetavisionConfig(erc_enabled=False, erc_rate_ev_s=1000), hal=make_fake_hal(camera)
    )
    assert camera.calls == [("erc_module", "enable", False), ("events_stream", "start")]


def test_unsupported_settings_are_reported_not_fatal(caplog):
    camera = FakeCamera(
        sensor="Gen3.1",
        missing=("get_i_erc_module", "get_i_roi"),
        trigger_channels=(_Channel.MAIN,),
    )
    del camera.biases["bias_hpf"]
    config = MetavisionConfig(
        biases={"bias_hpf": 5, "bias_fo": 500, "bias_refr": 4},
        roi=(0, 0, 100, 100),
        erc_enabled=True,
        erc_rate_ev_s=10_000_000,
        trigger_in_channels=(TriggerChannel.MAIN, TriggerChannel.AUX),
        mipi_frame_period_us=1000,
    )
    with caplog.at_level(logging.WARNING, logger="evseg_ros.sources.metavision"):
        source = MetavisionEventSource(config, hal=make_fake_hal(camera))
    assert source.settings_not_applied == (
        "bias_fo",  # out of range: the HAL raised
        "bias_hpf",  # this sensor has no such bias
        "roi",
        "erc",
        "trigger_in_aux",
        "mipi_frame_period_us",  # no register known for Gen3.1
    )
    assert source.applied == {"bias_refr": 4, "trigger_in_main": True}
    assert source.connected and ("events_stream", "start") in camera.calls
    warned = caplog.text
    for word in ("bias_fo", "bias_hpf", "I_ROI", "I_ErcModule", "trigger_in_aux", "Gen3.1"):
        assert word in warned
    assert "settings_not_applied" in source.status_values()


def test_roi_outside_the_sensor_is_refused_naming_both():
    camera = FakeCamera(width=640, height=480)
    with pytest.raises(ValueError, match=r"roi \[600, 0, 100, 100\] .* 640x480 sensor"):
        MetavisionEventSource(MetavisionConfig(roi=(600, 0, 100, 100)), hal=make_fake_hal(camera))
    assert ("events_stream", "start") not in camera.calls


# -- failures --------------------------------------------------------------------------------


def test_stream_errors_are_counted_and_the_camera_reopened_with_backoff():
    camera = FakeCamera()
    hal = make_fake_hal(camera)
    config = MetavisionConfig(
        biases={"bias_fo": 3}, packet_bytes=1 << 20, packet_time_us=50_000,
        reopen_backoff_s=1.0, reopen_backoff_max_s=4.0,
    )  # fmt: skip
    source = MetavisionEventSource(config, hal=hal)
    camera.push(b"\x01\x02" * 8)
    camera.buffers.append(-1)  # poll_buffer() < 0: the camera went away
    (flushed,) = source.read(0)  # what arrived before the error still goes out
    assert flushed.data == b"\x01\x02" * 8
    assert source.stream_errors == 1 and not source.connected
    assert camera.calls[-1] == ("events_stream", "stop")
    hal.fail_opens = 1
    assert source.read(999 * MS) == [] and source.reopen_attempts == 0  # backoff 1 s
    assert source.read(1000 * MS) == [] and source.reopen_attempts == 1 and source.reopens == 0
    assert source.read(2999 * MS) == [] and source.reopen_attempts == 1  # backoff doubled: 2 s
    camera.push(b"\x03\x04")
    assert source.read(3000 * MS) == []
    assert source.reopens == 1 and source.connected and camera.opens == 2
    assert camera.calls.count(("ll_biases", "set", "bias_fo", 3)) == 2  # settings re-applied
    camera.buffers.append(OSError("LIBUSB_ERROR_NO_DEVICE"))  # exceptions count the same
    (flushed,) = source.read(3001 * MS)
    assert flushed.data == b"\x03\x04" and source.stream_errors == 2
    assert "LIBUSB_ERROR_NO_DEVICE" in source.status_values()["last_stream_error"]
    assert source.read(3001 * MS + 999 * MS) == []  # backoff back to 1 s after a success
    assert source.read(4001 * MS) == [] and source.reopens == 2


def test_no_camera_and_missing_sdk_are_clear_errors(monkeypatch):
    with pytest.raises(SourceUnavailableError, match=r"no Prophesee camera .*'12345'"):
        MetavisionEventSource(MetavisionConfig(serial="12345"), hal=make_fake_hal(FakeCamera()))
    with pytest.raises(SourceUnavailableError, match="no event stream facility"):
        MetavisionEventSource(hal=make_fake_hal(FakeCamera(missing=("get_i_events_stream",))))
    hal = make_fake_hal(FakeCamera())
    hal.fail_opens = 1
    with pytest.raises(SourceUnavailableError, match="Camera not found"):
        MetavisionEventSource(hal=hal)
    monkeypatch.setitem(sys.modules, "metavision_hal", None)  # import fails as if not installed
    with pytest.raises(SourceUnavailableError) as raised:
        MetavisionEventSource()
    message = str(raised.value)
    assert "'metavision_hal' is not importable" in message
    assert "Metavision SDK" in message and "OpenEB" in message


def test_the_fake_module_is_what_the_source_imports(monkeypatch):
    camera = FakeCamera()
    monkeypatch.setitem(sys.modules, "metavision_hal", make_fake_hal(camera))
    source = MetavisionEventSource()
    assert source.connected and camera.opens == 1


class _OpaqueRawBuffer:
    """What the newest bindings return: a handle with only ``size()``."""

    def size(self) -> int:
        return 4


def test_raw_buffers_of_every_binding_generation_or_a_clear_stop():
    assert raw_bytes(np.array([1, 2, 255], dtype=np.uint8)) == b"\x01\x02\xff"
    assert raw_bytes(np.arange(8, dtype=np.uint8)[::2]) == b"\x00\x02\x04\x06"
    assert raw_bytes([7, 8, 9]) == b"\x07\x08\x09"  # RawDataBuffer: a list-like of ints
    camera = FakeCamera()
    hal = make_fake_hal(camera)
    source = MetavisionEventSource(MetavisionConfig(packet_time_us=0), hal=hal)
    camera.push(b"ok")
    camera.buffers.append(_OpaqueRawBuffer())
    (packet,) = source.read(1)
    assert packet.data == b"ok"
    assert "'_OpaqueRawBuffer' without byte access" in source.fatal_error
    assert not source.connected and camera.calls[-1] == ("events_stream", "stop")
    assert source.read(10**12) == [] and source.reopen_attempts == 0  # reopening cannot help
    assert source.status_values()["fatal_error"] == source.fatal_error
