"""What both camera drivers share: open a source, poll it on a timer, report, close it.

Opening the source (SDK, camera, recording, simulated rig) and the publishers are the
``configure`` stage, the poll timer (and the drivers' subscriptions) ``activate``: a managed
driver (:mod:`.managed`) publishes nothing until it is activated, and stops on deactivate with
its source still open. A realtime replay keeps its wall-clock epoch meanwhile, as when the graph
falls behind: what fell due while inactive is skipped, counted, or sent at once (events).
"""

from __future__ import annotations

import time
from typing import Any

from rclpy.clock import Clock, ClockType
from rosgraph_msgs.msg import Clock as ClockMsg

from evseg_ros.nodes.diagnostics import ERROR, OK
from evseg_ros.nodes.managed import StagedNode
from evseg_ros.nodes.params import Param, declare_parameters
from evseg_ros.nodes.qos import CLOCK_QOS
from evseg_ros.sources import SourceUnavailableError
from evseg_ros.sources.bag_replay import BagEventSource, BagFrameSource


class SourceDriverNode(StagedNode):
    """Base of the driver nodes.

    A source that cannot open (missing SDK, no camera) leaves a plain node up, publishing an
    ERROR diagnostic with the reason, instead of taking the rest of the graph down with it (a
    managed one fails its configure with the reason). Subclasses create their publishers in
    ``_setup_publishers``, their subscriptions in ``_subscribe``, and implement
    ``_open_source``, ``_poll`` and ``_status_values``.
    """

    def __init__(self, node_name: str, params: tuple[Param, ...], **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.params = declare_parameters(self, params)
        self.source: Any = None
        self.clock_publisher = None
        self.start()

    def _configure(self) -> None:
        try:
            self.source = self._open_source()
        except SourceUnavailableError as err:
            self.error = str(err)
            self.get_logger().error(f"source {self.params['source']!r} unavailable: {err}")
        self._setup_publishers()
        if self.replay is not None and self.params["replay_publish_clock"]:
            self.clock_publisher = self.create_publisher(ClockMsg, "/clock", CLOCK_QOS)

    def _activate(self) -> None:
        self._subscribe()
        # a steady timer: with use_sim_time the node clock would follow the /clock this very
        # node publishes, and a replay would never start
        self.timer = self.create_timer(
            self.params["poll_period_ms"] / 1000.0, self._poll_source,
            clock=Clock(clock_type=ClockType.STEADY_TIME),
        )

    def _cleanup(self) -> None:
        if self.source is not None:
            self.source.close()
            self.source = None
        self.clock_publisher = None

    def _open_source(self) -> Any:
        raise NotImplementedError

    def _setup_publishers(self) -> None:
        raise NotImplementedError

    def _subscribe(self) -> None:
        """Subscriptions the driver streams with (lockstep replays); none by default."""

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
