"""What both camera drivers share: open a source, poll it on a timer, report, close it."""

from __future__ import annotations

from typing import Any

from rclpy.node import Node

from evseg_ros.nodes.diagnostics import ERROR, OK, DiagnosticsPublisher
from evseg_ros.nodes.params import Param, declare_parameters
from evseg_ros.sources import SourceUnavailableError


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
        self.timer = self.create_timer(self.params["poll_period_ms"] / 1000.0, self._poll_source)
        self.diagnostics = DiagnosticsPublisher(self, self._diagnostics)

    def _open_source(self) -> Any:
        raise NotImplementedError

    def _setup_publishers(self) -> None:
        raise NotImplementedError

    def _poll(self, now_ns: int) -> None:
        raise NotImplementedError

    def _status_values(self) -> dict[str, Any]:
        raise NotImplementedError

    def _poll_source(self) -> None:
        if self.source is not None:
            self._poll(self.get_clock().now().nanoseconds)

    def _diagnostics(self) -> tuple[bytes, str, dict[str, Any]]:
        values = {"source": self.params["source"], **self._status_values()}
        if self.error:
            return ERROR, self.error, values
        return OK, "streaming", values

    def destroy_node(self) -> None:
        if self.source is not None:
            self.source.close()
            self.source = None
        super().destroy_node()
