"""What both camera drivers share: open a source, poll it on a timer, report, close it."""

from __future__ import annotations

import time
from typing import Any

from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rosgraph_msgs.msg import Clock as ClockMsg

from evseg_ros.nodes.diagnostics import ERROR, OK, DiagnosticsPublisher
from evseg_ros.nodes.params import Param, declare_parameters
from evseg_ros.nodes.qos import CLOCK_QOS
from evseg_ros.sources import SourceUnavailableError
from evseg_ros.sources.bag_replay import BagEventSource, BagFrameSource


class SourceDriverNode(Node):
    """Base of the driver nodes.

    A source that cannot open (missing SDK, no camera) leaves the node up, publishing an ERROR
    diagnostic with the reason, instead of taking the rest of the graph down with it.
    Subclasses create their publishers in ``_setup_publishers`` and implement ``_open_source``,
    ``_poll`` and ``_status_values``.
    """

    def __init__(self, node_name: str, params: tuple[Param, ...], **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.params = declare_parameters(self, params)
        self.source: Any = None
        self.error = ""
        try:
            self.source = self._open_source()
        except SourceUnavailableError as err:
            self.error = str(err)
            self.get_logger().error(f"source {self.params['source']!r} unavailable: {err}")
        self._setup_publishers()
        self.clock_publisher = None
        if self.replay is not None and self.params["replay_publish_clock"]:
            self.clock_publisher = self.create_publisher(ClockMsg, "/clock", CLOCK_QOS)
        # a steady timer: with use_sim_time the node clock would follow the /clock this very
        # node publishes, and a replay would never start
        self.timer = self.create_timer(
            self.params["poll_period_ms"] / 1000.0, self._poll_source,
            clock=Clock(clock_type=ClockType.STEADY_TIME),
        )
        self.diagnostics = DiagnosticsPublisher(self, self._diagnostics)

    def _open_source(self) -> Any:
        raise NotImplementedError

    def _setup_publishers(self) -> None:
        raise NotImplementedError

    def _poll(self, now_ns: int) -> None:
        raise NotImplementedError

    def _status_values(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def replay(self) -> BagEventSource | BagFrameSource | None:
        """The source when it replays a recording (bag), else None."""
        return self.source if isinstance(self.source, BagEventSource | BagFrameSource) else None

    def start_replay(self, epoch_ns: int) -> None:
        """Fix when the recording's start plays, unless ``replay_epoch_ns`` already did.

        The in-process runner calls this on both drivers once every node is up, so model
        loading does not eat into the replay.
        """
        if self.replay is not None and not self.params["replay_epoch_ns"]:
            self.replay.clock.start(epoch_ns)

    def _poll_source(self) -> None:
        if self.source is None:
            return
        if self.replay is not None:
            # replays are paced on the wall clock their epoch is given in, never on ROS time
            now_ns = time.time_ns()
            self._poll(now_ns)
            self._publish_clock(now_ns)
        else:
            self._poll(self.get_clock().now().nanoseconds)

    def _publish_clock(self, now_ns: int) -> None:
        if self.clock_publisher is None:
            return
        playhead = self.replay.clock.playhead_ns(now_ns)
        if playhead is not None and playhead >= self.replay.clock.start_ns:
            msg = ClockMsg()
            msg.clock.sec, msg.clock.nanosec = divmod(int(playhead), 1_000_000_000)
            self.clock_publisher.publish(msg)

    def _diagnostics(self) -> tuple[bytes, str, dict[str, Any]]:
        values = {"source": self.params["source"], **self._status_values()}
        if self.error:
            return ERROR, self.error, values
        return OK, "streaming", values

    def destroy_node(self) -> None:
        if getattr(self, "source", None) is not None:  # None too when the constructor failed
            self.source.close()
            self.source = None
        super().destroy_node()
