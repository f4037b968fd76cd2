"""EVK4 event camera driver: publishes raw EVT3 bytes in ``event_camera_msgs/EventPacket``.

Packets are not decoded here (like metavision_driver), so bags stay interoperable and the driver
costs almost nothing per event. Stamp policy: ``header.stamp`` is the ROS time of the packet's
first event (host receive time on hardware; exact on the simulated rig), ``time_base`` the
sensor time of that event in ns, ``seq`` counts packets so receivers can detect losses.
"""

from __future__ import annotations

import array

from event_camera_msgs.msg import EventPacket

from evseg_ros.nodes.driver_base import SourceDriverNode
from evseg_ros.nodes.image_conversion import ns_to_stamp
from evseg_ros.nodes.params import Param
from evseg_ros.nodes.qos import EVENTS_QOS
from evseg_ros.nodes.sim_params import SIM_PARAMS, build_rig
from evseg_ros.nodes.spin import run_node
from evseg_ros.sources import EventPacketSource, SimEventSource
from evseg_ros.sources.replay import BagEventSource, RawFileEventSource

PARAMS: tuple[Param, ...] = (
    Param("source", "sim", "where events come from", ("sim", "hardware", "raw", "bag")),
    Param("serial", "", "camera serial number (hardware source; empty = first camera)"),
    Param("frame_id", "event_camera", "TF frame of the event camera"),
    Param("packet_period_us", 10_000, "sensor time covered by one EventPacket [us]"),
    Param("poll_period_ms", 5.0, "how often the source is polled [ms]"),
    Param("calibration_file", "config/calibration/sim_rig.yaml", "rig calibration (sim source)"),
    Param("raw_file", "", "Prophesee .raw recording to replay (source 'raw')"),
    Param("raw_packet_bytes", 65_536, "bytes per EventPacket when replaying a .raw file"),
    Param("bag_path", "", "rosbag2 with EventPackets to replay (source 'bag')"),
    Param("bag_topic", "", "EventPacket topic in the bag; empty = the first one"),
    Param("replay_realtime", True, "replay at recorded speed (false: as fast as consumed)"),
    Param("replay_loop", False, "start over at the end of the recording"),
    *SIM_PARAMS,
)


class Evk4DriverNode(SourceDriverNode):
    """Poll an event source and publish what it returns, numbered and stamped."""

    source: EventPacketSource | None

    def __init__(self, **kwargs) -> None:
        self.seq = 0
        self.bytes_published = 0
        super().__init__("evk4_driver", PARAMS, **kwargs)

    def _setup_publishers(self) -> None:
        self.publisher = self.create_publisher(EventPacket, "events", EVENTS_QOS)

    def _open_source(self) -> EventPacketSource:
        source = self.params["source"]
        if source == "hardware":
            from evseg_ros.sources.hardware import MetavisionEventSource

            return MetavisionEventSource(serial=self.params["serial"])
        if source == "raw":
            return RawFileEventSource(
                self.params["raw_file"], realtime=self.params["replay_realtime"],
                loop=self.params["replay_loop"], packet_bytes=self.params["raw_packet_bytes"],
            )
        if source == "bag":
            return BagEventSource(
                self.params["bag_path"], topic=self.params["bag_topic"] or None,
                realtime=self.params["replay_realtime"], loop=self.params["replay_loop"],
            )
        rig, epoch_ns = build_rig(self.params)
        return SimEventSource(
            rig, epoch_ns=epoch_ns, packet_period_us=int(self.params["packet_period_us"]),
            time_scale=float(self.params["sim_time_scale"]),
        )

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
            self.publisher.publish(msg)
            self.seq += 1
            self.bytes_published += len(packet.data)

    def _status_values(self) -> dict[str, int | bool]:
        values: dict[str, int | bool] = {
            "packets_published": self.seq, "bytes_published": self.bytes_published,
        }
        if hasattr(self.source, "loops"):
            values["replay_loops"] = self.source.loops
            values["replay_finished"] = self.source.finished
        return values


def main(args: list[str] | None = None) -> int:
    return run_node(Evk4DriverNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
