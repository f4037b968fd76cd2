"""EVK4 (IMX636) hardware source through the Prophesee Metavision HAL Python bindings.

The camera's raw EVT3 bytes are published undecoded, as metavision_driver does, so bags from
this source are readable by every ``event_camera_msgs`` tool. ``metavision_hal`` is not on PyPI
(it ships with the Metavision SDK and with OpenEB), so importing this module never touches it:
only opening a camera does, and without it :class:`SourceUnavailableError` names what to install.

Reading never blocks the executor: each ``read(now_ns)`` drains the HAL buffers that are ready
(``poll_buffer`` / ``get_latest_raw_data``) and cuts them into packets.

Packets and times:

* A packet is closed when it holds ``packet_bytes`` bytes (HAL buffers are split exactly at that
  size, on a 2-byte EVT3 word boundary) or when ``packet_time_us`` of host time has passed since
  its first byte arrived, whichever comes first. The time limit is checked at every poll, so in
  practice a packet is at least one poll period old; ``packet_time_us = 0`` publishes whatever
  arrived at every poll.
* ``stamp_ns`` is the host (ROS) time of the poll that received the packet's first byte: the
  receive time, late by at most one poll period plus the USB transfer.
* ``time_base_ns`` is 0: EVT3 carries its own 24-bit sensor time (the message standard leaves
  ``time_base`` undefined for evt3), and finding the first event time would mean decoding every
  byte here, which is what the accumulator downstream does anyway.

A stream error (``poll_buffer() < 0`` or an exception from the HAL, e.g. the USB cable pulled)
never escapes ``read``: it is counted, the pending bytes are published, the device is released
and reopened with exponential backoff, and every setting is applied again. Only bindings that
give Python no access to the buffer bytes stop the source for good (``fatal_error``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from types import ModuleType
from typing import Any

from evseg_ros.sources.base import RawEventPacket, SourceUnavailableError, import_sdk

LOGGER = logging.getLogger(__name__)
_Refuse = Callable[[str, str], None]  # (setting name, reason): record a setting not applied

#: Bias names the IMX636 (EVK4) exposes through ``I_LL_Biases``; values are offsets from the
#: factory setting, so they may be negative. ``bias_diff`` is left alone (as metavision_driver
#: does): the contrast thresholds are set relative to it.
IMX636_BIASES: tuple[str, ...] = (
    "bias_diff_off",
    "bias_diff_on",
    "bias_fo",
    "bias_hpf",
    "bias_refr",
)

#: MIPI frame period register per sensor name. The HAL has no facility for it; metavision_driver
#: writes this register through ``I_HW_Register`` too. Other sensors: not applied, with a warning.
MIPI_FRAME_PERIOD_REGISTERS: dict[str, int] = {"IMX636": 0xB028}

HAL_MODULE = "metavision_hal"
INSTALL_HINT = (
    "install the Prophesee Metavision SDK (or OpenEB, github.com/prophesee-ai/openeb) with its "
    "Python bindings so that 'import metavision_hal' works, to use source 'hardware'"
)


class TriggerChannel(IntEnum):
    """Trigger-in channels of ``I_TriggerIn`` (EVK4: MAIN is the external pin)."""

    MAIN = 0
    AUX = 1
    LOOPBACK = 2


def _trigger_channel(value: int | str | TriggerChannel) -> TriggerChannel:
    if isinstance(value, str):
        try:
            return TriggerChannel[value.upper()]
        except KeyError:
            pass
    elif isinstance(value, int):
        try:
            return TriggerChannel(value)
        except ValueError:
            pass
    names = ", ".join(f"{c.value} ({c.name.lower()})" for c in TriggerChannel)
    msg = f"trigger_in_channels: unknown channel {value!r}; known: {names}"
    raise ValueError(msg)


@dataclass(frozen=True)
class MetavisionConfig:
    """What to open and how to set it up; validated at construction.

    ``None`` (or an empty ``biases``) means "leave the camera's own setting".

    Raises:
        ValueError: a bias name the IMX636 does not have, a malformed ROI, an ERC rate <= 0,
            an unknown trigger channel, a MIPI frame period <= 0, ``packet_bytes`` not a
            positive even number, a negative ``packet_time_us`` or backoff; the message names
            the field and shows the bad value.
    """

    serial: str = ""  # empty: the first camera found
    biases: Mapping[str, int] = field(default_factory=dict, hash=False)
    roi: tuple[int, int, int, int] | None = None  # x, y, width, height [px]
    erc_enabled: bool | None = None
    erc_rate_ev_s: int | None = None
    trigger_in_channels: tuple[TriggerChannel, ...] = ()
    mipi_frame_period_us: int | None = None
    packet_bytes: int = 65_536
    packet_time_us: int = 1_000
    reopen_backoff_s: float = 0.5  # first retry after a stream error; doubles per failure
    reopen_backoff_max_s: float = 8.0
    max_buffers_per_read: int = 4096  # bounds one poll's work so the executor stays responsive

    def __post_init__(self) -> None:
        unknown = sorted(set(self.biases) - set(IMX636_BIASES))
        if unknown:
            msg = f"biases: unknown bias name {unknown[0]!r}; the EVK4 has {IMX636_BIASES!r}"
            raise ValueError(msg)
        biases = {name: int(value) for name, value in sorted(self.biases.items())}
        object.__setattr__(self, "biases", biases)
        if self.roi is not None:
            roi = tuple(int(v) for v in self.roi)
            if len(roi) != 4 or min(roi[:2]) < 0 or min(roi[2:]) <= 0:
                msg = f"roi must be [x >= 0, y >= 0, width > 0, height > 0], got {self.roi!r}"
                raise ValueError(msg)
            object.__setattr__(self, "roi", roi)
        if self.erc_rate_ev_s is not None and self.erc_rate_ev_s <= 0:
            msg = f"erc_rate_ev_s must be > 0 events/s, got {self.erc_rate_ev_s!r}"
            raise ValueError(msg)
        channels = tuple(dict.fromkeys(_trigger_channel(c) for c in self.trigger_in_channels))
        object.__setattr__(self, "trigger_in_channels", channels)
        if self.mipi_frame_period_us is not None and self.mipi_frame_period_us <= 0:
            msg = f"mipi_frame_period_us must be > 0, got {self.mipi_frame_period_us!r}"
            raise ValueError(msg)
        if self.packet_bytes < 2 or self.packet_bytes % 2:
            msg = f"packet_bytes must be positive and even (EVT3 words), got {self.packet_bytes!r}"
            raise ValueError(msg)
        if self.packet_time_us < 0:
            msg = f"packet_time_us must be >= 0, got {self.packet_time_us!r}"
            raise ValueError(msg)
        if not 0 < self.reopen_backoff_s <= self.reopen_backoff_max_s:
            msg = (
                f"need 0 < reopen_backoff_s <= reopen_backoff_max_s, got "
                f"{self.reopen_backoff_s!r} and {self.reopen_backoff_max_s!r}"
            )
            raise ValueError(msg)
        if self.max_buffers_per_read < 1:
            msg = f"max_buffers_per_read must be >= 1, got {self.max_buffers_per_read!r}"
            raise ValueError(msg)

    def check_sensor(self, width: int, height: int) -> None:
        """Check the ROI against the sensor the camera reports.

        Raises:
            ValueError: the ROI reaches outside ``width`` x ``height`` (names both).
        """
        if self.roi is None:
            return
        x, y, roi_width, roi_height = self.roi
        if x + roi_width > width or y + roi_height > height:
            msg = f"roi {list(self.roi)!r} reaches outside the {width}x{height} sensor"
            raise ValueError(msg)


class PacketCutter:
    """Concatenate HAL buffers and cut them into packets by size or by age.

    Every byte handed to :meth:`add` comes out exactly once, in order, in the packets returned
    by :meth:`add`, :meth:`flush_due` and :meth:`flush`.
    """

    def __init__(self, *, packet_bytes: int, packet_time_ns: int) -> None:
        self.packet_bytes = packet_bytes
        self.packet_time_ns = packet_time_ns
        self._pending = bytearray()
        self._stamp_ns = 0

    @property
    def pending_bytes(self) -> int:
        return len(self._pending)

    def add(self, chunk: bytes | memoryview, arrival_ns: int) -> list[RawEventPacket]:
        """Append one buffer that arrived at ``arrival_ns``; return the packets it filled."""
        packets: list[RawEventPacket] = []
        view = memoryview(chunk)
        while view:
            if not self._pending:
                self._stamp_ns = arrival_ns
            take = min(len(view), self.packet_bytes - len(self._pending))
            self._pending += view[:take]
            view = view[take:]
            if len(self._pending) >= self.packet_bytes:
                packets.append(self._emit())
        return packets

    def flush_due(self, now_ns: int) -> list[RawEventPacket]:
        """Close the pending packet if its first byte is ``packet_time_ns`` old or older."""
        if self._pending and now_ns - self._stamp_ns >= self.packet_time_ns:
            return [self._emit()]
        return []

    def flush(self) -> list[RawEventPacket]:
        """Close the pending packet whatever its size and age."""
        return [self._emit()] if self._pending else []

    def _emit(self) -> RawEventPacket:
        packet = RawEventPacket(bytes(self._pending), self._stamp_ns, 0)
        self._pending.clear()
        return packet


class NoByteAccessError(TypeError):
    """The bindings return raw buffers whose bytes Python cannot read."""


def raw_bytes(data: Any) -> bytes:
    """Copy one HAL raw buffer into ``bytes`` (it may be recycled by the next HAL call).

    The bindings changed what ``get_latest_raw_data`` returns: a numpy array (buffer protocol,
    copied at memory speed), a ``RawDataBuffer`` list-like of ints (copied element by element:
    slow at high event rates), or an opaque ``RawBuffer`` with only ``size()``.

    Raises:
        NoByteAccessError: the buffer exposes no bytes (names its type).
    """
    try:
        return memoryview(data).tobytes()
    except TypeError:
        pass
    try:
        return bytes(data)
    except (TypeError, ValueError) as err:
        msg = (
            f"metavision_hal returned raw data of type {type(data).__name__!r} without byte "
            f"access ({err}); this driver needs bindings whose get_latest_raw_data() returns "
            "an array (numpy) or a list of bytes"
        )
        raise NoByteAccessError(msg) from err


def import_hal() -> ModuleType:
    """Import ``metavision_hal``.

    Raises:
        SourceUnavailableError: it is not importable; the message says what to install.
    """
    return import_sdk(HAL_MODULE, INSTALL_HINT)


class MetavisionEventSource:
    """Raw EVT3 packets from a Prophesee EVK4 through ``metavision_hal``.

    Counters (all since construction): ``buffers`` and ``bytes_received`` from the HAL,
    ``packets`` returned, ``stream_errors``, ``reopen_attempts`` and ``reopens`` (successful).
    ``settings_not_applied`` names what the camera refused or lacks (warned in the log, never
    fatal); ``applied`` holds the values read back after setting them. ``fatal_error`` is set
    when the source stopped for good (bindings without byte access to raw buffers).
    """

    def __init__(self, config: MetavisionConfig | None = None, *, hal: ModuleType | None = None):
        """Open the camera, apply the settings and start streaming.

        Args:
            config: what to open and set; defaults to the first camera with its own settings.
            hal: the ``metavision_hal`` module; imported when not given.

        Raises:
            SourceUnavailableError: ``metavision_hal`` is missing or no camera could be opened.
            ValueError: the configured ROI does not fit the sensor.
        """
        self.config = config if config is not None else MetavisionConfig()
        self._hal = hal if hal is not None else import_hal()
        self.encoding = "evt3"
        self.width = self.height = 0
        self.buffers = self.bytes_received = self.packets = 0
        self.stream_errors = self.reopen_attempts = self.reopens = 0
        self.last_error = ""
        self.fatal_error = ""
        self.settings_not_applied: tuple[str, ...] = ()
        self.applied: dict[str, int | bool | list[int] | str] = {}
        self._device: Any = None
        self._stream: Any = None
        self._closed = False
        self._backoff_s = self.config.reopen_backoff_s
        self._next_reopen_ns = 0
        self._cutter = PacketCutter(
            packet_bytes=self.config.packet_bytes,
            packet_time_ns=self.config.packet_time_us * 1000,
        )
        self._open()

    @property
    def connected(self) -> bool:
        return self._stream is not None

    # -- opening and settings ----------------------------------------------------------------

    def _open(self) -> None:
        serial = self.config.serial
        try:
            device = self._open_device(serial)
        except Exception as err:  # the HAL raises its own exception types
            msg = f"cannot open the Prophesee camera with serial {serial!r}: {err}"
            raise SourceUnavailableError(msg) from err
        if device is None:
            msg = f"no Prophesee camera found for serial {serial!r} (empty = first camera)"
            raise SourceUnavailableError(msg)
        try:
            geometry = device.get_i_geometry()
            width, height = int(geometry.get_width()), int(geometry.get_height())
            self.config.check_sensor(width, height)
            stream = device.get_i_events_stream()
            if stream is None:
                msg = f"camera {serial!r} has no event stream facility"
                raise SourceUnavailableError(msg)
            self.encoding = self._encoding(device)
            self._apply_settings(device)
            stream.start()
        except (SourceUnavailableError, ValueError):
            del device  # releases the camera (the bindings close it on destruction)
            raise
        except Exception as err:  # the HAL's own exception types
            del device
            msg = f"cannot start the Prophesee camera with serial {serial!r}: {err}"
            raise SourceUnavailableError(msg) from err
        self._device, self._stream = device, stream
        self.width, self.height = width, height

    def _open_device(self, serial: str) -> Any:
        discovery = self._hal.DeviceDiscovery
        device_config = getattr(self._hal, "DeviceConfig", None)
        if device_config is None:
            return discovery.open(serial)
        hints = device_config()
        hints.set_format("EVT3")  # the EVK4 default; asked for explicitly as the driver needs it
        return discovery.open(serial, hints)

    @staticmethod
    def _encoding(device: Any) -> str:
        identification = device.get_i_hw_identification()
        if identification is None:
            return "evt3"
        try:
            return str(identification.get_current_data_encoding_format()).lower() or "evt3"
        except Exception:  # older bindings lack it: the format asked for at open
            return "evt3"

    def _apply_settings(self, device: Any) -> None:
        """Apply every configured setting; record what could not be applied instead of failing."""
        self.applied = {}
        refused: list[str] = []

        def refuse(name: str, reason: str) -> None:
            LOGGER.warning("EVK4 setting %s not applied: %s", name, reason)
            refused.append(name)

        self._apply_biases(device, refuse)
        self._apply_roi(device, refuse)
        self._apply_erc(device, refuse)
        self._apply_trigger_in(device, refuse)
        self._apply_mipi_frame_period(device, refuse)
        self.settings_not_applied = tuple(refused)

    def _apply_biases(self, device: Any, refuse: _Refuse) -> None:
        if not self.config.biases:
            return
        facility = device.get_i_ll_biases()
        if facility is None:
            for name in self.config.biases:
                refuse(name, "the camera has no I_LL_Biases facility")
            return
        available = dict(facility.get_all_biases())
        for name, value in self.config.biases.items():
            if name not in available:
                refuse(name, f"the camera has no such bias (it has {sorted(available)!r})")
                continue
            try:
                accepted = facility.set(name, value)
            except Exception as err:  # out-of-range values raise in the HAL
                refuse(name, f"set({value!r}) failed: {err}")
                continue
            if accepted is False:
                refuse(name, f"the camera refused {value!r}")
                continue
            self.applied[name] = int(facility.get(name))

    def _apply_roi(self, device: Any, refuse: _Refuse) -> None:
        if self.config.roi is None:
            return
        facility = device.get_i_roi()
        if facility is None:
            refuse("roi", "the camera has no I_ROI facility")
            return
        try:
            facility.set_window(self._hal.I_ROI.Window(*self.config.roi))
            facility.enable(True)
        except Exception as err:
            refuse("roi", f"{list(self.config.roi)!r} failed: {err}")
            return
        self.applied["roi"] = list(self.config.roi)

    def _apply_erc(self, device: Any, refuse: _Refuse) -> None:
        enabled, rate = self.config.erc_enabled, self.config.erc_rate_ev_s
        if enabled is None and rate is None:
            return
        facility = device.get_i_erc_module()
        if facility is None:
            refuse("erc", "the camera has no I_ErcModule facility")
            return
        try:
            if rate is not None and enabled is not False:
                facility.set_cd_event_rate(int(rate))
                self.applied["erc_rate_ev_s"] = int(facility.get_cd_event_rate())
            if enabled is not None:
                facility.enable(bool(enabled))
                self.applied["erc_enabled"] = bool(facility.is_enabled())
        except Exception as err:
            refuse("erc", f"enabled={enabled!r}, rate={rate!r} ev/s failed: {err}")

    def _apply_trigger_in(self, device: Any, refuse: _Refuse) -> None:
        if not self.config.trigger_in_channels:
            return
        facility = device.get_i_trigger_in()
        if facility is None:
            for channel in self.config.trigger_in_channels:
                refuse(f"trigger_in_{channel.name.lower()}", "the camera has no I_TriggerIn")
            return
        hal_channels = self._hal.I_TriggerIn.Channel
        try:
            available = set(facility.get_available_channels())
        except Exception:  # older bindings: try every channel and let enable() answer
            available = None
        for channel in self.config.trigger_in_channels:
            name = f"trigger_in_{channel.name.lower()}"
            hal_channel = getattr(hal_channels, channel.name)
            if available is not None and hal_channel not in available:
                refuse(name, "the camera does not have this channel")
                continue
            try:
                accepted = facility.enable(hal_channel)
            except Exception as err:
                refuse(name, f"enable failed: {err}")
                continue
            if accepted is False:
                refuse(name, "the camera refused to enable it")
                continue
            self.applied[name] = True

    def _apply_mipi_frame_period(self, device: Any, refuse: _Refuse) -> None:
        period = self.config.mipi_frame_period_us
        if period is None:
            return
        name = "mipi_frame_period_us"
        identification = device.get_i_hw_identification()
        try:
            sensor = str(identification.get_sensor_info().name) if identification else ""
        except Exception as err:
            sensor = f"<unknown: {err}>"
        address = MIPI_FRAME_PERIOD_REGISTERS.get(sensor)
        registers = device.get_i_hw_register()
        if address is None:
            refuse(name, f"no known MIPI frame period register for sensor {sensor!r}")
            return
        if registers is None:
            refuse(name, "the camera has no I_HW_Register facility")
            return
        try:
            # best effort: a raw register write, as the SDK offers no facility for it
            registers.write_register(address, int(period))
            self.applied[name] = int(registers.read_register(address))
        except Exception as err:
            refuse(name, f"writing {period!r} to register {address:#06x} failed: {err}")

    # -- streaming --------------------------------------------------------------------------

    def read(self, now_ns: int) -> list[RawEventPacket]:
        """Return the packets completed by ``now_ns`` (host time); never raises."""
        packets = self._cutter.flush_due(now_ns)
        if self._stream is None and not self._closed and now_ns >= self._next_reopen_ns:
            self._reopen(now_ns)
        if self._stream is not None:
            packets += self._drain(now_ns)
        packets += self._cutter.flush_due(now_ns)
        self.packets += len(packets)
        return packets

    def _drain(self, now_ns: int) -> list[RawEventPacket]:
        packets: list[RawEventPacket] = []
        for _ in range(self.config.max_buffers_per_read):
            try:
                status = self._stream.poll_buffer()
                if status == 0:
                    break
                if status < 0:
                    msg = f"poll_buffer() returned {status} (camera disconnected?)"
                    raise ConnectionError(msg)
                chunk = raw_bytes(self._stream.get_latest_raw_data())
            except NoByteAccessError as err:
                packets += self._give_up(str(err))
                break
            except Exception as err:  # any HAL failure: reopen instead of taking the node down
                packets += self._on_stream_error(err, now_ns)
                break
            if chunk:
                self.buffers += 1
                self.bytes_received += len(chunk)
                packets += self._cutter.add(chunk, now_ns)
        return packets

    def _on_stream_error(self, err: BaseException, now_ns: int) -> list[RawEventPacket]:
        self.stream_errors += 1
        self.last_error = f"{type(err).__name__}: {err}"
        LOGGER.warning(
            "EVK4 stream error (%d so far): %s; reopening in %.1f s",
            self.stream_errors,
            self.last_error,
            self._backoff_s,
        )
        self._release()
        self._schedule_reopen(now_ns)
        return self._cutter.flush()  # what arrived before the error is valid: send it

    def _give_up(self, reason: str) -> list[RawEventPacket]:
        """Stop for good: a failure that reopening cannot fix (reported as ``fatal_error``)."""
        self.fatal_error = reason
        LOGGER.error("EVK4 source stopped: %s", reason)
        self._closed = True
        self._release()
        return self._cutter.flush()

    def _schedule_reopen(self, now_ns: int) -> None:
        self._next_reopen_ns = now_ns + int(self._backoff_s * 1e9)
        self._backoff_s = min(2.0 * self._backoff_s, self.config.reopen_backoff_max_s)

    def _reopen(self, now_ns: int) -> None:
        self.reopen_attempts += 1
        try:
            self._open()
        except Exception as err:
            self.last_error = f"reopen failed: {err}"
            LOGGER.warning("EVK4 %s; next try in %.1f s", self.last_error, self._backoff_s)
            self._schedule_reopen(now_ns)
            return
        self.reopens += 1
        self._backoff_s = self.config.reopen_backoff_s
        LOGGER.info("EVK4 stream reopened (%d reopens)", self.reopens)

    def _release(self) -> None:
        stream, self._stream, self._device = self._stream, None, None
        if stream is not None:
            try:
                stream.stop()
            except Exception as err:  # a vanished camera may fail to stop; it is gone anyway
                LOGGER.debug("stopping the EVK4 stream failed: %s", err)

    def status_values(self) -> dict[str, int | bool | str]:
        """Counters and settings for the node's diagnostics."""
        values: dict[str, int | bool | str] = {
            "connected": self.connected,
            "hal_buffers": self.buffers,
            "hal_bytes": self.bytes_received,
            "packets_cut": self.packets,
            "pending_bytes": self._cutter.pending_bytes,
            "stream_errors": self.stream_errors,
            "reopen_attempts": self.reopen_attempts,
            "reopens": self.reopens,
            "settings_not_applied": ", ".join(self.settings_not_applied),
        }
        if self.last_error:
            values["last_stream_error"] = self.last_error
        if self.fatal_error:
            values["fatal_error"] = self.fatal_error
        values.update({f"applied_{k}": str(v) for k, v in self.applied.items()})
        return values

    def close(self) -> None:
        """Stop streaming and release the camera (bytes still pending are dropped)."""
        self._closed = True
        self._release()


def config_from_lists(
    *,
    serial: str = "",
    biases: Mapping[str, int] | None = None,
    roi: Iterable[int] = (),
    trigger_in_channels: Iterable[int | str] = (),
    **options: Any,
) -> MetavisionConfig:
    """Build a :class:`MetavisionConfig` from ROS-parameter-shaped values.

    An empty or zero-size ``roi`` (``[0, 0, 0, 0]``) means the full sensor.
    ``trigger_in_channels`` may name channels by number (0 main, 1 aux, 2 loopback) or name;
    negative numbers are ignored (a ROS 2 integer array parameter cannot be empty, so ``[-1]``
    is how a parameter file enables none).

    Raises:
        ValueError: as :class:`MetavisionConfig`.
    """
    roi_values = tuple(int(v) for v in roi)
    if roi_values == (0, 0, 0, 0):
        roi_values = ()
    channels = tuple(c for c in trigger_in_channels if not (isinstance(c, int) and c < 0))
    return MetavisionConfig(
        serial=serial,
        biases=dict(biases or {}),
        roi=roi_values or None,
        trigger_in_channels=channels,
        **options,
    )
