"""Parameters over DDS: ranges shown by describe, runtime ones settable and checked, others fixed.

A client node asks through the parameter services, as ``ros2 param`` does; the node under test
declares its table with :func:`declare_parameters`, and its value dict must follow every change
that was accepted, and only those.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.signals import SignalHandlerOptions

from evseg_ros.nodes.config_check import remember_params_files
from evseg_ros.nodes.config_errors import ConfigError
from evseg_ros.nodes.evk4_driver import Evk4DriverNode
from evseg_ros.nodes.params import Param, declare_parameters
from evseg_ros.nodes.spin import release_half_built_nodes

WAIT_S = 10.0
TABLE = (
    Param("gain", 1.0, "overlay gain", low=0.0, high=4.0, runtime=True),
    Param("window_us", 30_000, "window length [us]", low=100, high=1_000_000, runtime=True),
    Param("mode", "fast", "how to work", ("fast", "slow"), runtime=True),
    Param("device", "cpu", "where to work (start-up only)", ("cpu", "cuda")),
)
#: what the node's on_change hook refuses: a rule across two parameters
SLOW_MAX_GAIN = 2.0


class TunableNode(Node):
    """A node with runtime parameters and a hook that vetoes one combination of them."""

    def __init__(self, **kwargs) -> None:
        super().__init__("tunable", **kwargs)
        self.changes: list[dict] = []
        self.params = declare_parameters(self, TABLE, on_change=self._on_change)

    def _on_change(self, changed: dict) -> None:
        mode = changed.get("mode", self.params["mode"])
        gain = changed.get("gain", self.params["gain"])
        if mode == "slow" and gain > SLOW_MAX_GAIN:
            msg = f"tunable: mode 'slow' needs gain <= {SLOW_MAX_GAIN}, gain is {gain}"
            raise ValueError(msg)
        self.changes.append(changed)


class Graph:
    """One context and executor for the nodes under test and a parameter client."""

    def __init__(self, args: list[str] | None = None) -> None:
        self.context = Context()
        rclpy.init(
            args=args or [], context=self.context, signal_handler_options=SignalHandlerOptions.NO
        )
        remember_params_files(self.context, args or [])
        self.executor = SingleThreadedExecutor(context=self.context)
        self.nodes: list[Node] = []
        self.client_node = self.add(Node("param_probe", context=self.context))

    def add(self, node: Node) -> Node:
        self.executor.add_node(node)
        self.nodes.append(node)
        return node

    def client(self, node: Node) -> AsyncParameterClient:
        client = AsyncParameterClient(self.client_node, node.get_fully_qualified_name())
        assert client.wait_for_services(timeout_sec=WAIT_S), "parameter services never came"
        return client

    def wait(self, future):
        self.executor.spin_until_future_complete(future, timeout_sec=WAIT_S)
        assert future.done(), "no answer from the parameter service"
        return future.result()

    def close(self) -> None:
        for node in self.nodes:
            self.executor.remove_node(node)
            node.destroy_node()
        self.executor.shutdown()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture
def graph():
    graph = Graph()
    yield graph
    graph.close()


def _sourceless_driver(graph: Graph) -> Evk4DriverNode:
    """The EVK4 driver with source bag and no path: up without a source, nothing to render."""
    overrides = [Parameter("source", value="bag")]
    return graph.add(
        Evk4DriverNode(context=graph.context, namespace="rig", parameter_overrides=overrides)
    )


def _set(graph: Graph, client: AsyncParameterClient, **values):
    results = graph.wait(client.set_parameters([Parameter(k, value=v) for k, v in values.items()]))
    return results.results


def test_describe_shows_the_ranges_of_a_graph_node(graph):
    driver = _sourceless_driver(graph)
    client = graph.client(driver)
    poll, packet, roi = graph.wait(
        client.describe_parameters(["poll_period_ms", "packet_period_us", "roi"])
    ).descriptors
    assert (poll.floating_point_range[0].from_value, poll.floating_point_range[0].to_value) == (
        0.1, 1000.0
    )
    assert (packet.integer_range[0].from_value, packet.integer_range[0].to_value) == (
        1, 1_000_000
    )
    assert poll.read_only and packet.read_only
    # a list's element range is no ROS range; describe states it in words
    assert not roi.integer_range
    assert roi.additional_constraints == "a non-empty list of integers, each in [0, 65535]"


def test_a_read_only_parameter_is_refused_at_runtime(graph):
    driver = _sourceless_driver(graph)
    (result,) = _set(graph, graph.client(driver), poll_period_ms=20.0)
    assert not result.successful
    assert "read-only" in result.reason and "poll_period_ms" in result.reason
    assert driver.params["poll_period_ms"] == 5.0


def test_runtime_parameters_change_the_node_dict_when_accepted(graph):
    node = graph.add(TunableNode(context=graph.context))
    client = graph.client(node)
    half_open = graph.wait(client.describe_parameters(["gain"])).descriptors[0]
    assert not half_open.read_only
    assert half_open.floating_point_range[0].to_value == 4.0

    (result,) = _set(graph, client, window_us=50_000)
    assert result.successful, result.reason
    assert node.params["window_us"] == 50_000
    # an int for a float parameter is a float once set
    (result,) = _set(graph, client, gain=3)
    assert result.successful, result.reason
    assert node.params["gain"] == 3.0 and isinstance(node.params["gain"], float)
    assert node.get_parameter("gain").value == 3.0
    assert node.changes == [{"window_us": 50_000}, {"gain": 3.0}]


@pytest.mark.parametrize(
    ("values", "reason_has"),
    [
        ({"window_us": 50}, ("window_us", "range")),
        ({"gain": math.nan}, ("gain", "range")),
        ({"window_us": "long"}, ("type",)),
        ({"mode": "medium"}, ("'mode' = 'medium'", "one of 'fast', 'slow'")),
        ({"device": "cuda"}, ("read-only", "device")),
    ],
)
def test_bad_runtime_values_are_refused_with_a_reason(graph, values, reason_has):
    node = graph.add(TunableNode(context=graph.context))
    before = dict(node.params)
    (result,) = _set(graph, graph.client(node), **values)
    assert not result.successful
    assert "\n" not in result.reason
    for part in reason_has:
        assert part in result.reason, result.reason
    assert node.params == before and node.changes == []


def test_the_node_hook_can_veto_a_change_with_its_reason(graph):
    node = graph.add(TunableNode(context=graph.context))
    client = graph.client(node)
    assert _set(graph, client, gain=3.0)[0].successful
    (result,) = _set(graph, client, mode="slow")
    assert not result.successful
    assert result.reason == "tunable: mode 'slow' needs gain <= 2.0, gain is 3.0"
    assert node.params["mode"] == "fast" and node.get_parameter("mode").value == "fast"
    # both at once pass the rule together
    atomic = graph.wait(client.set_parameters_atomically(
        [Parameter("gain", value=1.5), Parameter("mode", value="slow")]
    ))
    assert atomic.result.successful, atomic.result.reason
    assert (node.params["gain"], node.params["mode"]) == (1.5, "slow")
    assert node.changes[-1] == {"gain": 1.5, "mode": "slow"}


def test_a_bad_start_value_is_one_line_naming_node_and_parameter(graph):
    with pytest.raises(ConfigError) as info:
        Evk4DriverNode(
            context=graph.context, namespace="rig",
            parameter_overrides=[Parameter("poll_period_ms", value=0.0)],
        )
    release_half_built_nodes(info.value)
    assert str(info.value) == (
        "/rig/evk4_driver: parameter 'poll_period_ms' = 0.0 is out of range: "
        "expected a number in [0.1, 1000.0]"
    )


def test_a_bad_start_value_from_a_file_names_the_file(tmp_path):
    path = Path(tmp_path) / "override.yaml"
    path.write_text("/**:\n  ros__parameters:\n    window_us: 7\n")
    graph = Graph(["--ros-args", "--params-file", str(path)])
    try:
        with pytest.raises(ConfigError) as info:
            TunableNode(context=graph.context)
        release_half_built_nodes(info.value)
    finally:
        graph.close()
    assert str(info.value) == (
        f"/tunable: {path}: parameter 'window_us' = 7 is out of range: "
        "expected an integer in [100, 1000000]"
    )
