"""In-process runner: every node of the graph in one process and one SingleThreadedExecutor.

For machines without ``ros2 launch``, and the fastest configuration anyway: one executor beat a
multi-threaded one for this chain (the GIL), and the accumulator hands event frames to the
segmentation node directly instead of serialising them. Parameters come from the same YAML file
the launch file passes, through rcl's own ``--params-file`` handling, once the file has been
checked against every node's parameter table (a misspelt key or a value out of range stops the
graph before any node starts). rclpy installs no signal handlers here: SIGINT and SIGTERM are the
caller's (``evseg run`` stops on both, see :mod:`evseg_ros.nodes.spin`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import rclpy
import yaml
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions

from evseg_ros.nodes.config_check import check_graph_config, remember_params_files
from evseg_ros.nodes.config_errors import ConfigError
from evseg_ros.nodes.graph import DRIVERS, GRAPH, NAMESPACE
from evseg_ros.nodes.spin import release_half_built_nodes
from evseg_ros.paths import package_path_candidates, resolve_package_path

#: between the last node being up and the recording's start playing (first spins settle)
REPLAY_START_DELAY_NS = 1_000_000_000


def configured_parameter(config_file: str | Path, node_name: str, name: str) -> Any:
    """Value a parameter file gives ``name`` for ``node_name`` (node key, then ``/**``).

    Lets a tool check, before starting anything, what the nodes are about to load.
    """
    data = yaml.safe_load(resolve_package_path(config_file).read_text()) or {}
    for key in (f"/**/{node_name}", node_name, f"/{node_name}", "/**"):
        params = (data.get(key) or {}).get("ros__parameters", {})
        if name in params:
            return params[name]
    return None


def _check_representation(accumulator: Node, segmentation: Node) -> None:
    """The event tensor the accumulator builds is the one the model takes, or a ConfigError."""
    built = accumulator.params["representation"]
    taken = segmentation.params["representation"]
    if built != taken:
        msg = (
            f"the accumulator builds representation {built!r} but the segmentation node takes "
            f"{taken!r}: set one 'representation' for both (under /** in the parameter file)"
        )
        raise ConfigError(msg)


class InProcessGraph:
    """Start the graph's nodes in one context; use as a context manager to clean up.

    Raises:
        ConfigError: the config file is missing, malformed, names an unknown parameter or gives
            one a value it does not allow (checked before anything starts), or a node rejects
            an override; one line naming what to fix.
    """

    def __init__(
        self,
        config_file: str | Path,
        *,
        overrides: dict[str, dict[str, Any]] | None = None,
        namespace: str = NAMESPACE,
        direct_handover: bool = True,
    ) -> None:
        config = resolve_package_path(config_file)
        if not config.is_file():
            candidates = package_path_candidates(config_file)
            looked = ", ".join(str(path.absolute()) for path in candidates)
            msg = f"config file {str(config_file)!r} not found (looked for {looked})"
            raise ConfigError(msg)
        check_graph_config(config)
        self.context = Context()
        args = ["--ros-args", "--params-file", str(config)]
        rclpy.init(
            args=args, context=self.context, signal_handler_options=SignalHandlerOptions.NO
        )
        remember_params_files(self.context, args)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.nodes: dict[str, Node] = {}
        per_node = {name: dict(values) for name, values in (overrides or {}).items()}
        epoch = time.time_ns()
        for name in DRIVERS:
            per_node.setdefault(name, {}).setdefault("sim_epoch_ns", epoch)
        if direct_handover:
            per_node.setdefault("segmentation", {})["event_frame_input"] = "direct"
        try:
            for spec in GRAPH:
                params = [Parameter(k, value=v) for k, v in per_node.get(spec.name, {}).items()]
                node = spec.load()(
                    context=self.context, namespace=namespace, parameter_overrides=params
                )
                self.nodes[spec.name] = node
                self.executor.add_node(node)
            _check_representation(self.nodes["accumulator"], self.nodes["segmentation"])
            if direct_handover:
                self.nodes["accumulator"].add_listener(self.nodes["segmentation"].on_ready_frame)
        except BaseException as err:
            release_half_built_nodes(err)
            self.close()
            raise
        # a recording starts playing now that every node (and its model) is loaded, in both
        # drivers at once
        replay_epoch = time.time_ns() + REPLAY_START_DELAY_NS
        for name in DRIVERS:
            self.nodes[name].start_replay(replay_epoch)

    @property
    def replay_finished(self) -> bool:
        """Every driver that replays a recording has sent all of it (False when none does)."""
        replays = [self.nodes[name].replay for name in DRIVERS]
        replays = [replay for replay in replays if replay is not None]
        return bool(replays) and all(replay.finished for replay in replays)

    def add_node(self, node: Node) -> None:
        """Spin an extra node (an observer, a test probe) in the same executor."""
        self.executor.add_node(node)

    def spin_once(self, timeout_sec: float = 0.05) -> None:
        self.executor.spin_once(timeout_sec=timeout_sec)

    def close(self) -> None:
        for node in list(self.executor.get_nodes()):
            self.executor.remove_node(node)
            node.destroy_node()
        self.executor.shutdown()
        rclpy.try_shutdown(context=self.context)

    def __enter__(self) -> InProcessGraph:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
