"""Accumulator node: EventPackets + frames in, one event frame per frame out.

The event frame goes to in-process listeners directly (the co-located segmentation stage, no
serialisation) and is published on ``event_frame`` (32FC3, the frame's exact stamp) only while
something subscribes to it.
"""

from __future__ import annotations

from collections.abc import Callable

from event_camera_msgs.msg import EventPacket
from rclpy.node import Node
from sensor_msgs.msg import Image

from evseg_ros.events.representations import Representation
from evseg_ros.events.window import WindowConfig, WindowMode
from evseg_ros.geometry.calibration import load_calibration
from evseg_ros.nodes.diagnostics import OK, WARN, DiagnosticsPublisher
from evseg_ros.nodes.image_conversion import stamp_to_ns, to_image_msg
from evseg_ros.nodes.params import Param, declare_parameters
from evseg_ros.nodes.qos import EVENTS_QOS, FRAMES_QOS, RESULTS_QOS
from evseg_ros.nodes.spin import run_node
from evseg_ros.paths import resolve_package_path
from evseg_ros.pipeline.accumulator import (
    AccumulatorConfig,
    EventFrameAccumulator,
    ReadyFrame,
    host_array,
)

PARAMS: tuple[Param, ...] = (
    Param("calibration_file", "config/calibration/sim_rig.yaml", "rig calibration file"),
    Param("window_duration_us", 30_000, "length of each frame's event window [us]"),
    Param(
        "window_end_offset_us", 5_000,
        "window end relative to the frame's trigger [us] (middle of a nominal exposure)",
    ),
    Param(
        "window_mode", "duration", "how each frame's event window is cut",
        ("duration", "exposure", "count"),
    ),
    Param("window_exposure_us", 10_000, "exposure interval after the trigger [us] (mode exposure)"),
    Param("window_event_count", 50_000, "events per window (mode count)"),
    Param(
        "representation", "event_frame", "dense event tensor handed to segmentation",
        ("event_frame", "voxel_grid", "polarity_histogram"),
    ),
    Param("voxel_bins", 3, "temporal bins of the voxel grid"),
    Param("trigger_channel", 0, "external-trigger channel wired to the frame camera"),
    Param("trigger_tolerance_us", 50_000, "max |trigger - mapped frame stamp| to pair them [us]"),
    Param("max_wait_ms", 200.0, "longest a frame waits for its events before going out late"),
    Param(
        "device", "auto",
        "where events are decoded and accumulated: cuda (torch on the GPU), cpu (numba/numpy), "
        "auto (cuda when torch sees a GPU)",
        ("auto", "cpu", "cuda"),
    ),
)

#: Counters that turn the node's diagnostic status to WARN while non-zero.
WARN_COUNTERS = (
    "seq_gaps",
    "unknown_encoding",
    "geometry_mismatch",
    "decode_failures",
    "frames_late",
    "frames_without_trigger",
    "frames_without_events",
)

#: A listener gets the ready event frame and the camera Image it belongs to.
FrameListener = Callable[[ReadyFrame, Image], None]


class AccumulatorNode(Node):
    """Feed packets and frames to :class:`EventFrameAccumulator`; deliver what it returns."""

    def __init__(self, **kwargs) -> None:
        super().__init__("accumulator", **kwargs)
        self.params = declare_parameters(self, PARAMS)
        calibration = load_calibration(resolve_package_path(self.params["calibration_file"]))
        config = AccumulatorConfig(
            window=WindowConfig(
                duration_us=int(self.params["window_duration_us"]),
                end_offset_us=int(self.params["window_end_offset_us"]),
                mode=WindowMode(self.params["window_mode"]),
                exposure_us=int(self.params["window_exposure_us"]),
                event_count=int(self.params["window_event_count"]),
            ),
            representation=Representation(self.params["representation"]),
            voxel_bins=int(self.params["voxel_bins"]),
            trigger_channel=int(self.params["trigger_channel"]),
            trigger_tolerance_us=int(self.params["trigger_tolerance_us"]),
            max_wait_ns=int(self.params["max_wait_ms"] * 1e6),
            device=self.params["device"],
        )
        self.core = EventFrameAccumulator(calibration, config)
        self.get_logger().info(f"event frames built on {self.core.device}")
        self.listeners: list[FrameListener] = []
        self.event_frame_publisher = self.create_publisher(Image, "event_frame", RESULTS_QOS)
        self.create_subscription(EventPacket, "events", self._on_packet, EVENTS_QOS)
        self.create_subscription(Image, "frame/image_raw", self._on_frame, FRAMES_QOS)
        self.timer = self.create_timer(0.01, self._deliver)
        self.diagnostics = DiagnosticsPublisher(self, self._diagnostics)

    def add_listener(self, listener: FrameListener) -> None:
        """Receive event frames in-process (co-located segmentation)."""
        self.listeners.append(listener)

    def _on_packet(self, msg: EventPacket) -> None:
        self.core.on_packet(
            encoding=msg.encoding, data=msg.events, seq=msg.seq,
            stamp_ns=stamp_to_ns(msg.header), width=msg.width, height=msg.height,
        )
        self._deliver()

    def _on_frame(self, msg: Image) -> None:
        self.core.on_frame(msg, stamp_to_ns(msg.header))
        self._deliver()

    def _deliver(self) -> None:
        for ready in self.core.poll():
            image_msg: Image = ready.key
            if self.event_frame_publisher.get_subscription_count() > 0:
                frame = host_array(ready.event_frame).transpose(1, 2, 0)
                encoding = f"32FC{frame.shape[2]}"
                self.event_frame_publisher.publish(to_image_msg(frame, encoding, image_msg.header))
            for listener in self.listeners:
                listener(ready, image_msg)

    def _diagnostics(self):
        values = self.core.diagnostics()
        problems = [name for name in WARN_COUNTERS if values.get(name)]
        if problems:
            return WARN, "counted: " + ", ".join(problems), values
        return OK, "ok", values


def main(args: list[str] | None = None) -> int:
    return run_node(AccumulatorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
