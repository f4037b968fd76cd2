"""Publish a node's counters as one ``diagnostic_msgs/DiagnosticStatus`` on /diagnostics."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from evseg_ros.nodes.qos import DIAGNOSTICS_QOS

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


class CounterDeltas:
    """How much each counter changed since the previous report.

    A counted problem makes a status WARN while it happens and OK again once it stopped: a
    cumulative counter alone would keep the node WARN for the rest of its life.
    """

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def since_last(self, counters: Mapping[str, int]) -> dict[str, int]:
        deltas = {name: value - self._last.get(name, 0) for name, value in counters.items()}
        self._last = dict(counters)
        return deltas


class DiagnosticsPublisher:
    """Periodically publish ``collect() -> (level, message, values)`` for one node."""

    def __init__(
        self,
        node: Node,
        collect: Callable[[], tuple[bytes, str, dict[str, Any]]],
        *,
        period_s: float = 1.0,
    ) -> None:
        self._node = node
        self._collect = collect
        self._name = f"evseg_ros: {node.get_fully_qualified_name()}"
        self._publisher = node.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS)
        self._timer = node.create_timer(period_s, self.publish)

    def publish(self) -> None:
        level, message, values = self._collect()
        status = DiagnosticStatus(
            level=level,
            name=self._name,
            message=message,
            hardware_id=self._node.get_name(),
            values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()],
        )
        array_msg = DiagnosticArray(status=[status])
        array_msg.header.stamp = self._node.get_clock().now().to_msg()
        self._publisher.publish(array_msg)
