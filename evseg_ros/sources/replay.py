"""Event source that replays a Prophesee ``.raw`` file (rosbag2 replays: :mod:`.bag_replay`).

The replay is paced in sensor time (``realtime``) or runs as fast as the consumer takes it
(one packet per poll, since the receiving executor also takes one message per cycle), and may
loop; a loop restarts sensor time, which the accumulator detects and counts as a reset.
"""

from __future__ import annotations

from pathlib import Path

from evseg_ros.events.decoders import create_decoder
from evseg_ros.events.errors import EventDecodeError
from evseg_ros.events.evt3 import read_raw_file
from evseg_ros.events.types import first_time_us
from evseg_ros.sources.base import RawEventPacket, SourceUnavailableError


class _Pacer:
    """Maps recording time to ROS time at the first packet; decides when a packet is due."""

    def __init__(self, *, realtime: bool) -> None:
        self.realtime = realtime
        self._offset_ns: int | None = None

    def restart(self) -> None:
        self._offset_ns = None

    def stamp(self, recording_ns: int, now_ns: int) -> int | None:
        """ROS stamp for a packet at ``recording_ns``, or None when it is not due yet."""
        if self._offset_ns is None:
            self._offset_ns = now_ns - recording_ns
        stamp = self._offset_ns + recording_ns
        if self.realtime and stamp > now_ns:
            return None
        return stamp if self.realtime else now_ns


class RawFileEventSource:
    """Replay a ``.raw`` recording as packets of ``packet_bytes`` (an even number of bytes).

    Each packet's stamp needs the sensor time of its first item, which only decoding the
    stream up to it gives. The file is decoded once, when it is opened, and the first time of
    every packet kept (8 bytes per packet): replaying, and every loop, then costs no decoding
    at all, so the replay can feed the accumulator at the rate it decodes.
    """

    def __init__(
        self, path: str | Path, *, realtime: bool = True, loop: bool = False,
        packet_bytes: int = 65_536,
    ) -> None:
        try:
            header, self._payload = read_raw_file(path)
        except (OSError, EventDecodeError) as err:
            msg = f"cannot replay {str(path)!r}: {err}"
            raise SourceUnavailableError(msg) from err
        self.encoding = str(header.get("format", "")).lower()
        self.width = int(header.get("width", 1280))
        self.height = int(header.get("height", 720))
        try:
            scanner = create_decoder(self.encoding, width=self.width, height=self.height)
        except KeyError as err:
            msg = f"cannot replay {str(path)!r}: {err}"
            raise SourceUnavailableError(msg) from err
        word = 4 if self.encoding == "evt2" else 2
        self.packet_bytes = max(word, packet_bytes - packet_bytes % word)
        self._first_times_us = []
        for start in range(0, len(self._payload), self.packet_bytes):
            before = scanner.current_time_us
            decoded = scanner.decode(self._payload[start : start + self.packet_bytes])
            self._first_times_us.append(first_time_us(decoded.events, decoded.triggers, before))
        self.loop = loop
        self.loops = 0
        self._pacer = _Pacer(realtime=realtime)
        self._position = 0
        self._pending: tuple[bytes, int] | None = None  # next packet and its first time (us)

    def _next_packet(self) -> tuple[bytes, int] | None:
        if self._position >= len(self._payload):
            if not self.loop or len(self._payload) == 0:
                return None
            self.loops += 1
            self._position = 0
            self._pacer.restart()
        first_us = self._first_times_us[self._position // self.packet_bytes]
        data = bytes(self._payload[self._position : self._position + self.packet_bytes])
        self._position += len(data)
        return data, first_us

    def read(self, now_ns: int) -> list[RawEventPacket]:
        packets: list[RawEventPacket] = []
        while True:
            if self._pending is None:
                self._pending = self._next_packet()
                if self._pending is None:
                    return packets
            data, first_us = self._pending
            stamp = self._pacer.stamp(first_us * 1000, now_ns)
            if stamp is None:
                return packets
            packets.append(RawEventPacket(data, stamp, first_us * 1000))
            self._pending = None
            if not self._pacer.realtime:
                return packets  # one per poll: the consumer takes one per executor cycle

    @property
    def finished(self) -> bool:
        return self._pending is None and self._position >= len(self._payload) and not self.loop

    def close(self) -> None:
        """Nothing to release (the file was read at open)."""
