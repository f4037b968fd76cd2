"""Accumulator node: EventPackets + frames in, one event frame per frame out.

The event frame goes to in-process listeners directly (the co-located segmentation stage, no
serialisation) and is published on ``event_frame`` (32FC3, the frame's exact stamp) only while
something subscribes to it. ``event_frame/status`` says, per frame, whether its window is fit to
fuse (and why not) and whether it is frameless (the camera frame never came: serve it
event-only); the thresholds of that judgement can be changed while the node runs. A managed node
(:mod:`.managed`) builds its decoders (the first numba compile) in ``configure`` and subscribes
in ``activate``.
"""

from __future__ import annotations

from collections.abc import Callable

from diagnostic_msgs.msg import DiagnosticArray
from event_camera_msgs.msg import EventPacket
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from evseg_ros.device import DeviceError
from evseg_ros.events.representations import Representation
from evseg_ros.events.window import WindowConfig, WindowMode
from evseg_ros.geometry.calibration import load_calibration
from evseg_ros.nodes.diagnostics import OK, WARN, CounterDeltas
from evseg_ros.nodes.health_msgs import event_status_msg
from evseg_ros.nodes.image_conversion import ns_to_stamp, stamp_to_ns, to_image_msg
from evseg_ros.nodes.managed import StagedNode, node_class
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
from evseg_ros.pipeline.modality import HealthPolicy

PARAMS: tuple[Param, ...] = (
    Param("calibration_file", "config/calibration/sim_rig.yaml", "rig calibration file"),
    Param(
        "window_duration_us", 30_000, "length of each frame's event window [us]",
        low=100, high=1_000_000, runtime=True,
    ),
    Param(
        "window_end_offset_us", 5_000,
        "window end relative to the frame's trigger [us] (middle of a nominal exposure)",
        low=-1_000_000, high=1_000_000, runtime=True,
    ),
    Param(
        "window_mode", "duration", "how each frame's event window is cut",
        ("duration", "exposure", "count"),
    ),
    Param(
        "window_exposure_us", 10_000, "exposure interval after the trigger [us] (mode exposure)",
        low=1, high=1_000_000,
    ),
    Param(
        "window_event_count", 50_000, "events per window (mode count)", low=1, high=100_000_000
    ),
    Param(
        "representation", "event_frame", "dense event tensor handed to segmentation",
        ("event_frame", "voxel_grid", "polarity_histogram"),
    ),
    Param("voxel_bins", 3, "temporal bins of the voxel grid", low=1, high=64),
    Param(
        "trigger_channel", 0, "external-trigger channel wired to the frame camera", low=0, high=7
    ),
    Param(
        "trigger_tolerance_us", 50_000, "max |trigger - mapped frame stamp| to pair them [us]",
        low=1, high=10_000_000,
    ),
    Param(
        "max_wait_ms", 200.0, "longest a frame waits for its events before going out late",
        low=1.0, high=60_000.0,
    ),
    Param(
        "frame_timeout_ms", 150.0,
        "sensor time the event stream may run past a trigger without its frame before the "
        "trigger is served event-only (the frame stream stopped); 0 = never",
        low=0.0, high=10_000.0, runtime=True,
    ),
    Param(
        "min_events", 200,
        "fewer events in a window is not a plausible event frame: the frame goes frame-only",
        low=0, high=100_000_000, runtime=True,
    ),
    Param(
        "max_packet_loss", 0.25,
        "largest fraction of event packets lost since the previous frame that still fuses",
        low=0.0, high=1.0, runtime=True,
    ),
    Param(
        "device", "auto",
        "where events are decoded and event frames built: cuda or cuda:N (torch on that GPU), "
        "cpu (the compiled fused path; numpy without numba), auto (cuda when torch sees a GPU); "
        "a value this machine cannot serve stops the node",
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

#: A listener gets the ready event frame and the camera Image it belongs to (None: frameless).
FrameListener = Callable[[ReadyFrame, Image | None], None]


class AccumulatorNode(StagedNode):
    """Feed packets and frames to :class:`EventFrameAccumulator`; deliver what it returns."""

    def __init__(self, **kwargs) -> None:
        super().__init__("accumulator", **kwargs)
        self.params = declare_parameters(self, PARAMS, on_change=self._on_param_change)
        self.listeners: list[FrameListener] = []
        self.core: EventFrameAccumulator | None = None
        self._frame_id = "frame_camera"
        self._last_health = None
        self._deltas = CounterDeltas()
        self.start()

    def _configure(self) -> None:
        """Calibration, the accumulator (its decoders compiled), publishers."""
        calibration = load_calibration(resolve_package_path(self.params["calibration_file"]))
        config = AccumulatorConfig(
            **self._runtime_config(self.params),
            representation=Representation(self.params["representation"]),
            voxel_bins=int(self.params["voxel_bins"]),
            trigger_channel=int(self.params["trigger_channel"]),
            trigger_tolerance_us=int(self.params["trigger_tolerance_us"]),
            max_wait_ns=int(self.params["max_wait_ms"] * 1e6),
            device=self.params["device"],
        )
        try:
            self.core = EventFrameAccumulator(calibration, config)
        except DeviceError as err:
            raise DeviceError(f"parameter 'device': {err}") from None
        self.get_logger().info(
            f"event frames built on {self.core.device} ({self.core.path.value} event path)"
        )
        self.event_frame_publisher = self.create_publisher(Image, "event_frame", RESULTS_QOS)
        self.status_publisher = self.create_publisher(
            DiagnosticArray, "event_frame/status", RESULTS_QOS
        )

    def _activate(self) -> None:
        self.create_subscription(EventPacket, "events", self._on_packet, EVENTS_QOS)
        self.create_subscription(Image, "frame/image_raw", self._on_frame, FRAMES_QOS)
        self.timer = self.create_timer(0.01, self._deliver)

    def _cleanup(self) -> None:
        self.core = None
        self._last_health = None

    @staticmethod
    def _runtime_config(values: dict) -> dict:
        """The AccumulatorConfig fields that follow run-time-settable parameters."""
        return {
            "window": WindowConfig(
                duration_us=int(values["window_duration_us"]),
                end_offset_us=int(values["window_end_offset_us"]),
                mode=WindowMode(values["window_mode"]),
                exposure_us=int(values["window_exposure_us"]),
                event_count=int(values["window_event_count"]),
            ),
            "frame_timeout_us": int(values["frame_timeout_ms"] * 1000),
            "health": HealthPolicy(
                min_events=int(values["min_events"]),
                max_packet_loss=float(values["max_packet_loss"]),
            ),
        }

    def _on_param_change(self, changed: dict) -> None:
        """Apply new window / policy values from the next frame on (ValueError rejects them).

        Unconfigured, the values only wait in ``params`` for the next configure.
        """
        config = self._runtime_config({**self.params, **changed})
        if self.core is not None:
            self.core.update_config(**config)

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
        self._frame_id = msg.header.frame_id or self._frame_id
        self.core.on_frame(msg, stamp_to_ns(msg.header))
        self._deliver()

    def _deliver(self) -> None:
        for ready in self.core.poll():
            image_msg: Image | None = ready.key
            header = (
                image_msg.header if image_msg is not None
                else ns_to_stamp(Header(frame_id=self._frame_id), ready.stamp_ns)
            )
            changed = self._last_health is None or self._last_health.ok != ready.health.ok
            self._last_health = ready.health
            if changed:
                self.diagnostics.publish()  # a change is reported now, not within a second
            # the status first: a topic consumer pairs the event frame with it
            self.status_publisher.publish(
                event_status_msg(
                    header, ready.health, frameless=ready.frameless,
                    num_events=ready.num_events, late=ready.late,
                )
            )
            if self.event_frame_publisher.get_subscription_count() > 0:
                frame = host_array(ready.event_frame).transpose(1, 2, 0)
                encoding = f"32FC{frame.shape[2]}"
                self.event_frame_publisher.publish(to_image_msg(frame, encoding, header))
            for listener in self.listeners:
                listener(ready, image_msg)

    def _diagnostics(self):
        values = self.core.diagnostics()
        deltas = self._deltas.since_last({name: values.get(name, 0) for name in WARN_COUNTERS})
        recent = [name for name, delta in deltas.items() if delta]
        health = self._last_health
        values["last_window"] = "none yet" if health is None else (health.reason or "ok")
        problems = []
        if health is not None and not health.ok:
            problems.append(f"last window not fused: {health.reason}")
        if recent:
            problems.append("counted: " + ", ".join(recent))
        if problems:
            return WARN, "; ".join(problems), values
        return OK, "ok", values


def main(args: list[str] | None = None) -> int:
    return run_node(node_class(AccumulatorNode, args), args)


if __name__ == "__main__":
    raise SystemExit(main())
