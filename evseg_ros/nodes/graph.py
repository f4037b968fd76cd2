"""The rig's node graph, declared once.

``launch/rig.launch.py`` (separate processes, for ROS 2 installs) and the in-process runner
(``evseg run``: one process, one SingleThreadedExecutor) both start exactly these nodes, under
one namespace, with parameters from the same ``config/*.yaml``; a test checks the launch file
against this table, the console scripts and the config.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

from rclpy.node import Node

NAMESPACE = "rig"



@dataclass(frozen=True)
class NodeSpec:
    name: str  # node name == console script name == key in the config file
    target: str  # "module:Class"

    def load(self) -> type[Node]:
        module, _, cls = self.target.partition(":")
        return getattr(import_module(module), cls)


GRAPH: tuple[NodeSpec, ...] = (
    NodeSpec("evk4_driver", "evseg_ros.nodes.evk4_driver:Evk4DriverNode"),
    NodeSpec("flir_driver", "evseg_ros.nodes.flir_driver:FlirDriverNode"),
    NodeSpec("accumulator", "evseg_ros.nodes.accumulator:AccumulatorNode"),
    NodeSpec("segmentation", "evseg_ros.nodes.segmentation:SegmentationNode"),
)

#: The camera drivers. Simulating the rig they must agree on when sensor time 0 was, replaying
#: a recording on when its start plays.
DRIVERS = ("evk4_driver", "flir_driver")
