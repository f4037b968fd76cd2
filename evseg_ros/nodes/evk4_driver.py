"""EVK4 event camera driver: publishes raw EVT3 bytes in ``event_camera_msgs/EventPacket``.

Packets are not decoded here (like metavision_driver), so bags stay interoperable and the driver
costs almost nothing per event. ``seq`` counts packets from 0 so receivers can detect losses.

Stamp policy:

* ``header.stamp``: the ROS time of the packet's first event. On hardware that is the host time
  of the poll that received the packet's first byte (late by up to ``poll_period_ms`` plus the
  USB transfer; the accumulator's offset estimate absorbs the jitter). On the simulated rig it
  is exact; bag replays publish the recorded stamp (the FLIR driver's frames do too, and
  ``/clock`` carries the playhead); ``.raw`` replays map the recorded time onto now.
* ``time_base``: the sensor time of that event in ns on the simulated rig and replays; 0 on
  hardware, where EVT3 carries its own sensor time and finding the first one would mean decoding
  every packet in the driver.

Hardware packets are cut at ``packet_bytes`` or when their first byte is ``packet_time_us`` old,
whichever comes first (metavision_driver's message size and time thresholds).

Hardware parameters a ROS 2 parameter file cannot leave empty use sentinels: a bias of
``-1000`` keeps the camera's own value, ``roi: [0, 0, 0, 0]`` is the full sensor,
``trigger_in_channels: [-1]`` enables none, ``mipi_frame_period_us: 0`` keeps the default.
"""

from __future__ import annotations

import array
from dataclasses import replace
from typing import Any

from event_camera_msgs.msg import EventPacket
from rosgraph_msgs.msg import Clock as ClockMsg

from evseg_ros.nodes.diagnostics import ERROR, OK, WARN
from evseg_ros.nodes.driver_base import SourceDriverNode
from evseg_ros.nodes.fault_params import FAULT_PARAMS, replay_faults
from evseg_ros.nodes.image_conversion import ns_to_stamp
from evseg_ros.nodes.managed import node_class
from evseg_ros.nodes.params import Param
from evseg_ros.nodes.qos import CLOCK_QOS, EVENTS_QOS
from evseg_ros.nodes.replay_params import REPLAY_PARAMS
from evseg_ros.nodes.sim_params import SIM_PARAMS, build_rig
from evseg_ros.nodes.spin import run_node
from evseg_ros.sources import EventPacketSource, SimEventSource, SourceUnavailableError
from evseg_ros.sources.bag_replay import BagEventSource
from evseg_ros.sources.replay import RawFileEventSource
from evseg_ros.sources.replay_clock import ReplayPacing
from evseg_ros.sources.replay_faults import FaultInjector

#: bias parameter value that leaves the camera's own setting (IMX636 bias offsets are small
#: signed numbers, so no valid offset is this far out)
BIAS_KEEP_DEFAULT = -1000
IMX636_BIAS_PARAMS = ("bias_diff_on", "bias_diff_off", "bias_fo", "bias_hpf", "bias_refr")

PARAMS: tuple[Param, ...] = (
    Param("source", "sim", "where events come from", ("sim", "hardware", "raw", "bag")),
    Param("serial", "", "camera serial number (hardware source; empty = first camera)"),
    Param("frame_id", "event_camera", "TF frame of the event camera"),
    Param(
        "packet_period_us", 10_000, "sensor time covered by one EventPacket [us]",
        low=1, high=1_000_000,
    ),
    Param("poll_period_ms", 5.0, "how often the source is polled [ms]", low=0.1, high=1_000.0),
    Param("calibration_file", "config/calibration/sim_rig.yaml", "rig calibration (sim source)"),
    Param("raw_file", "", "Prophesee .raw recording to replay (source 'raw')"),
    Param(
        "raw_packet_bytes", 65_536, "bytes per EventPacket when replaying a .raw file",
        low=2, high=64 * 1024 * 1024,
    ),
    Param("bag_path", "", "rosbag2 with EventPackets to replay (source 'bag')"),
    Param("bag_topic", "", "EventPacket topic in the bag; empty = the first one"),
    *REPLAY_PARAMS,
    *FAULT_PARAMS,
    *(
        Param(
            name, BIAS_KEEP_DEFAULT, f"EVK4 {name} offset ({BIAS_KEEP_DEFAULT} = camera default)",
            low=BIAS_KEEP_DEFAULT, high=-BIAS_KEEP_DEFAULT,
        )
        for name in IMX636_BIAS_PARAMS
    ),
    Param(
        "roi", [0, 0, 0, 0], "hardware ROI [x, y, width, height] in px; [0, 0, 0, 0] = full",
        low=0, high=65_535,
    ),
    Param("erc_enabled", False, "hardware event rate controller on (false: every event is sent)"),
    Param(
        "erc_rate_ev_s", 20_000_000, "event rate controller limit [events/s] when enabled",
        low=1,
    ),
    Param(
        "trigger_in_channels", [0], "trigger inputs to enable: 0 main, 1 aux, 2 loopback, -1 none",
        low=-1, high=2,
    ),
    Param(
        "mipi_frame_period_us", 0, "sensor MIPI frame period [us] (hardware; 0 = keep default)",
        low=0, high=1_000_000,
    ),
    Param(
        "packet_bytes", 65_536, "hardware: close a packet at this many bytes (even)",
        low=2, high=64 * 1024 * 1024,
    ),
    Param(
        "packet_time_us", 1_000, "hardware: close a packet this long after its first byte [us]",
        low=0, high=1_000_000,
    ),
    *SIM_PARAMS,
)


class Evk4DriverNode(SourceDriverNode):
    """Poll an event source and publish what it returns, numbered and stamped."""

    source: EventPacketSource | None

    def __init__(self, **kwargs) -> None:
        self.seq = 0
        self.bytes_published = 0
        #: fault injection: EventPackets lost between this driver and its subscribers
        self.link_loss: FaultInjector | None = None
        super().__init__("evk4_driver", PARAMS, **kwargs)

    def _setup_publishers(self) -> None:
        self.publisher = self.create_publisher(EventPacket, "events", EVENTS_QOS)

    def _subscribe(self) -> None:
        if self.replay is not None and self.replay.pacing is ReplayPacing.LOCKSTEP:
            # lockstep: the frame driver moves the playhead and publishes it on /clock
            self.create_subscription(ClockMsg, "/clock", self._on_clock, CLOCK_QOS)

    def _on_clock(self, msg: ClockMsg) -> None:
        if self.replay is not None:
            self.replay.follow(msg.clock.sec * 1_000_000_000 + msg.clock.nanosec)

    def _open_source(self) -> EventPacketSource:
        source = self.params["source"]
        if source == "hardware":
            return self._open_hardware()
        pacing = self.params["replay_pacing"]
        if source == "raw":
            if pacing == ReplayPacing.LOCKSTEP:
                msg = "replay_pacing 'lockstep' needs source 'bag' (a .raw file has no frames)"
                raise SourceUnavailableError(msg)
            return RawFileEventSource(
                self.params["raw_file"],
                realtime=pacing == ReplayPacing.REALTIME,
                loop=self.params["replay_loop"],
                packet_bytes=self.params["raw_packet_bytes"],
            )
        if source == "bag":
            if not self.params["bag_path"]:
                msg = "source 'bag' needs parameter 'bag_path' (it is empty)"
                raise SourceUnavailableError(msg)
            faults = replay_faults(self.params)
            if faults.loss:
                # lost on the link: after numbering, so the receiver sees the gap in seq
                self.link_loss = FaultInjector(replace(faults, off=()), start_ns=0)
            return BagEventSource(
                self.params["bag_path"],
                topic=self.params["bag_topic"] or None,
                pacing=pacing,
                rate=float(self.params["replay_rate"]),
                epoch_ns=int(self.params["replay_epoch_ns"]),
                loop=self.params["replay_loop"],
                faults=replace(faults, loss=0.0),  # the camera sends nothing while "off"
            )
        rig, epoch_ns = build_rig(self.params)
        return SimEventSource(
            rig,
            epoch_ns=epoch_ns,
            packet_period_us=int(self.params["packet_period_us"]),
            time_scale=float(self.params["sim_time_scale"]),
        )

    def _open_hardware(self) -> EventPacketSource:
        """Validate the hardware parameters, then open the camera (the SDK is imported here).

        Raises:
            ValueError: a hardware parameter is invalid (names it and shows the value).
            SourceUnavailableError: the SDK or the camera is missing.
        """
        from evseg_ros.sources.metavision import MetavisionEventSource, config_from_lists

        params = self.params
        config = config_from_lists(
            serial=params["serial"],
            biases={
                name: value
                for name in IMX636_BIAS_PARAMS
                if (value := params[name]) != BIAS_KEEP_DEFAULT
            },
            roi=params["roi"],
            trigger_in_channels=params["trigger_in_channels"],
            erc_enabled=params["erc_enabled"],
            erc_rate_ev_s=params["erc_rate_ev_s"],
            mipi_frame_period_us=params["mipi_frame_period_us"] or None,
            packet_bytes=params["packet_bytes"],
            packet_time_us=params["packet_time_us"],
        )
        source = MetavisionEventSource(config)
        self.get_logger().info(
            f"EVK4 open: {source.width}x{source.height} {source.encoding}, applied {source.applied}"
        )
        if source.settings_not_applied:
            self.get_logger().warning(
                f"EVK4 settings not applied: {', '.join(source.settings_not_applied)}"
            )
        return source

    def _poll(self, now_ns: int) -> None:
        for packet in self.source.read(now_ns):
            msg = EventPacket()
            ns_to_stamp(msg.header, packet.stamp_ns)
            msg.header.frame_id = self.params["frame_id"]
            msg.height = self.source.height
            msg.width = self.source.width
            msg.seq = self.seq
            msg.time_base = packet.time_base_ns
            msg.encoding = self.source.encoding
            msg.is_bigendian = False
            payload = array.array("B")
            payload.frombytes(packet.data)
            msg.events = payload
            if self.link_loss is None or not self.link_loss.drops(packet.stamp_ns):
                self.publisher.publish(msg)
            self.seq += 1
            self.bytes_published += len(packet.data)

    def _status_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "packets_published": self.seq,
            "bytes_published": self.bytes_published,
        }
        if hasattr(self.source, "loops"):
            values["replay_loops"] = self.source.loops
            values["replay_finished"] = self.source.finished
        if hasattr(self.source, "status_values"):
            values.update(self.source.status_values())
        if self.link_loss is not None:
            values["fault_dropped_loss"] = self.link_loss.dropped_loss
        return values

    def _diagnostics(self) -> tuple[bytes, str, dict[str, Any]]:
        """ERROR when the source could not open or gave up; WARN while it reopens or a setting
        was refused."""
        level, message, values = super()._diagnostics()
        if level != OK:
            return level, message, values
        if getattr(self.source, "fatal_error", ""):
            return ERROR, f"camera stream stopped: {self.source.fatal_error}", values
        if getattr(self.source, "connected", True) is False:
            return WARN, f"camera stream lost, reopening: {self.source.last_error}", values
        not_applied = getattr(self.source, "settings_not_applied", ())
        if not_applied:
            return WARN, f"streaming; settings not applied: {', '.join(not_applied)}", values
        return level, message, values


def main(args: list[str] | None = None) -> int:
    return run_node(node_class(Evk4DriverNode, args), args)


if __name__ == "__main__":
    raise SystemExit(main())
