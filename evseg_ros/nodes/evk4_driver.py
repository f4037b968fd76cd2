"""EVK4 event camera driver: publishes raw EVT3 bytes in ``event_camera_msgs/EventPacket``.

Packets are not decoded here (like metavision_driver), so bags stay interoperable and the driver
costs almost nothing per event. Stamp policy: ``header.stamp`` is the ROS time of the packet's
first event (host receive time on hardware; exact on the simulated rig), ``time_base`` the
sensor time of that event in ns, ``seq`` counts packets so receivers can detect losses.
"""

from __future__ import annotations

import array

from event_camera_msgs.msg import EventPacket
from rclpy.node import Node

from evseg_ros.nodes.diagnostics import ERROR, OK, DiagnosticsPublisher
from evseg_ros.nodes.image_conversion import ns_to_stamp
from evseg_ros.nodes.params import Param, declare_parameters
from evseg_ros.nodes.qos import EVENTS_QOS
from evseg_ros.nodes.sim_params import SIM_PARAMS, build_rig
from evseg_ros.nodes.spin import run_node
from evseg_ros.sources import EventPacketSource, SimEventSource, SourceUnavailableError

PARAMS: tuple[Param, ...] = (
    Param("source", "sim", "where events come from", ("sim", "hardware")),
    Param("serial", "", "camera serial number (hardware source; empty = first camera)"),
    Param("frame_id", "event_camera", "TF frame of the event camera"),
    Param("packet_period_us", 10_000, "sensor time covered by one EventPacket [us]"),
    Param("poll_period_ms", 5.0, "how often the source is polled [ms]"),
    Param("calibration_file", "config/calibration/sim_rig.yaml", "rig calibration (sim source)"),
    *SIM_PARAMS,
)


class Evk4DriverNode(Node):
    """Poll an event source and publish what it returns, numbered and stamped."""

    def __init__(self, **kwargs) -> None:
        super().__init__("evk4_driver", **kwargs)
        self.params = declare_parameters(self, PARAMS)
        self.source: EventPacketSource | None = None
        self.error = ""
        try:
            self.source = self._open_source()
        except SourceUnavailableError as err:
            self.error = str(err)
            self.get_logger().error(f"source {self.params['source']!r} unavailable: {err}")
        self.seq = 0
        self.bytes_published = 0
        self.publisher = self.create_publisher(EventPacket, "events", EVENTS_QOS)
        self.timer = self.create_timer(self.params["poll_period_ms"] / 1000.0, self._poll)
        self.diagnostics = DiagnosticsPublisher(self, self._diagnostics)

    def _open_source(self) -> EventPacketSource:
        if self.params["source"] == "hardware":
            from evseg_ros.sources.hardware import MetavisionEventSource

            return MetavisionEventSource(serial=self.params["serial"])
        rig, epoch_ns = build_rig(self.params)
        return SimEventSource(
            rig, epoch_ns=epoch_ns, packet_period_us=int(self.params["packet_period_us"]),
            time_scale=float(self.params["sim_time_scale"]),
        )

    def _poll(self) -> None:
        if self.source is None:
            return
        now_ns = self.get_clock().now().nanoseconds
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

    def _diagnostics(self):
        values = {
            "source": self.params["source"],
            "packets_published": self.seq,
            "bytes_published": self.bytes_published,
        }
        if self.error:
            return ERROR, self.error, values
        return OK, "streaming", values

    def destroy_node(self) -> None:
        if self.source is not None:
            self.source.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(Evk4DriverNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
