"""Core of the rig launch files: the four nodes of the graph (+ RViz) under one namespace.

Included by ``rig.launch.py`` (any source) and ``replay.launch.py`` (a recording); usable on its
own too. Every node reads ``config`` (``config/rig.yaml``), the file the in-process runner
(``evseg run``) reads; the launch arguments only override a few parameters:

- ``source:=sim``: both drivers simulate one rig (they share ``sim_epoch_ns``, fixed here);
- ``source:=hardware``: EVK4 + Blackfly S;
- ``source:=replay bag:=<recording>``: both drivers replay the recording with their own bag
  sources (not ``ros2 bag play``): ``pacing`` realtime (at ``rate`` x recorded speed, drops
  counted) or lockstep (every frame), optionally looped. Both drivers play the recording's
  start at the same wall-clock instant, ``replay_start_delay_s`` after launch (node processes
  take seconds to start), and the frame driver publishes the playhead on ``/clock`` like
  ``ros2 bag play --clock``.

``calibration:=<file>`` replaces the config's calibration in all four nodes; a replayed
recording that carries its calibration (simulated ones do, in their metadata) gets that one by
default. Processes talk over Fast DDS shared memory (``config/fastdds_shm.xml``): large images
between processes need it. ``rviz:=true`` starts RViz with the overlay and the mask on the topics
of ``namespace``; where rviz2 is not installed the rig starts without it and says so.

``managed:=true`` starts the four nodes as managed (lifecycle) nodes and drives their
transitions: each is configured as soon as its process is up (models, decoders, sources
loaded), the accumulator and the segmentation node are activated once configured, and the two
drivers once both of those are active, so no frame is published into a graph that is not yet
listening. A node whose configure fails stays unconfigured with the reason in its log; the rest
wait for it, and ``ros2 lifecycle set`` can retry it. With ``source:=replay`` the recording's
start is still ``replay_start_delay_s`` after launch: give the models time to load.
"""

from __future__ import annotations

import hashlib
import math
import re
import tempfile
import time
from pathlib import Path

from ament_index_python.packages import (
    PackageNotFoundError,
    get_package_prefix,
    get_package_share_directory,
)
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    OpaqueFunction,
    RegisterEventHandler,
    SetEnvironmentVariable,
)
from launch.event_handlers import OnProcessStart, OnShutdown
from launch.events import matches_action
from launch.launch_context import LaunchContext
from launch.logging import get_logger
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition

from launch import LaunchDescription

PACKAGE = "evseg_ros"
#: the namespace config/rig.rviz is written for
RVIZ_NAMESPACE = "rig"
#: the command-line flag that makes a node executable start its managed twin
#: (evseg_ros.nodes.managed.MANAGED_FLAG)
MANAGED_FLAG = "--managed"
#: managed:=true brings these up first (activated once configured) ...
CONSUMERS = ("accumulator", "segmentation")
#: ... and these once every consumer is active
DRIVERS = ("evk4_driver", "flir_driver")


class RigLaunchError(RuntimeError):
    """A launch argument that cannot work: reported in one line, before any node starts."""


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare(PACKAGE)
    arguments = [
        DeclareLaunchArgument(
            "source", default_value="sim", choices=["sim", "hardware", "replay"],
            description="sim: simulated coaxial rig; hardware: EVK4 + FLIR; replay: the drivers "
            "replay the recording `bag`",
        ),
        DeclareLaunchArgument(
            "bag", default_value="",
            description="rosbag2 recording (folder, MCAP or sqlite3) to replay; needed by "
            "source:=replay",
        ),
        DeclareLaunchArgument(
            "rate", default_value="1.0",
            description="replay speed as a multiple of the recorded speed (pacing realtime)",
        ),
        DeclareLaunchArgument(
            "pacing", default_value="realtime", choices=["realtime", "lockstep"],
            description="realtime: the recording plays on the wall clock at `rate`, frames the "
            "graph cannot keep up with are dropped and counted; lockstep: the next frame only "
            "once the previous mask came back (every frame, whatever the machine)",
        ),
        DeclareLaunchArgument(
            "loop", default_value="false", choices=["true", "false"],
            description="start the recording over at its end",
        ),
        DeclareLaunchArgument(
            "replay_start_delay_s", default_value="3.0",
            description="the recording's start plays this long after launch [s], once the node "
            "processes are up; both drivers start together",
        ),
        DeclareLaunchArgument(
            "calibration", default_value="",
            description="rig calibration file for all four nodes; empty: the config's",
        ),
        DeclareLaunchArgument(
            "model", default_value="models/cacd_b0_sim.onnx",
            description="ONNX model (relative paths resolve against the package share)",
        ),
        DeclareLaunchArgument(
            "backend", default_value="auto", choices=["auto", "tensorrt", "pytorch", "onnxruntime"],
            description="segmentation inference backend",
        ),
        DeclareLaunchArgument(
            "device", default_value="",
            description="where the accumulator and segmentation run: auto, cpu, cuda or cuda:N; "
            "empty: the config's",
        ),
        DeclareLaunchArgument(
            "namespace", default_value="rig", description="namespace of every node and topic",
        ),
        DeclareLaunchArgument(
            "config", default_value=PathJoinSubstitution([share, "config", "rig.yaml"]),
            description="parameter file for every node",
        ),
        DeclareLaunchArgument(
            "rviz", default_value="false", choices=["true", "false"],
            description="start RViz with the overlay and mask displays (skipped, with a warning, "
            "where rviz2 is not installed)",
        ),
        DeclareLaunchArgument(
            "managed", default_value="false", choices=["true", "false"],
            description="start the nodes as managed (lifecycle) nodes: each is configured when "
            "its process is up, the accumulator and segmentation activated once configured, "
            "the drivers once both are active",
        ),
    ]
    return LaunchDescription(
        [
            *arguments,
            SetEnvironmentVariable(
                "FASTDDS_DEFAULT_PROFILES_FILE",
                PathJoinSubstitution([share, "config", "fastdds_shm.xml"]),
            ),
            OpaqueFunction(function=launch_setup),
        ]
    )


def launch_setup(context: LaunchContext) -> list:
    """The nodes for the launch arguments' values, checked first.

    Raises:
        RigLaunchError: an argument that cannot work (e.g. source:=replay without a bag).
    """

    def value(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    source = value("source")
    namespace = value("namespace")
    config = value("config")
    calibration = value("calibration")
    if not calibration and source == "replay" and value("bag"):
        calibration = _recording_calibration(value("bag"))
    shared = {"calibration_file": calibration} if calibration else {}
    on_device = {"device": value("device")} if value("device") else {}
    if source == "sim":
        # both simulated drivers must agree on when sensor time 0 was: fixed once, here
        sim_epoch_ns = time.time_ns()
        evk4 = {"source": "sim", "sim_epoch_ns": sim_epoch_ns}
        flir = {"source": "sim", "sim_epoch_ns": sim_epoch_ns}
    elif source == "hardware":
        evk4 = {"source": "hardware"}
        flir = {"source": "hardware"}
    else:
        bag = _existing_bag(value("bag"))
        delay_s = _number(value("replay_start_delay_s"), "replay_start_delay_s", positive=False)
        evk4 = {
            "source": "bag",
            "bag_path": bag,
            "replay_pacing": value("pacing"),
            "replay_rate": _number(value("rate"), "rate", positive=True),
            "replay_loop": value("loop") == "true",
            "replay_epoch_ns": time.time_ns() + round(delay_s * 1e9),
        }
        # the frame driver's playhead on /clock, like `ros2 bag play --clock`
        flir = {**evk4, "replay_publish_clock": True}

    managed = value("managed") == "true"
    nodes = [
        _node(
            managed,
            package=PACKAGE, executable="evk4_driver", name="evk4_driver", namespace=namespace,
            parameters=[config, shared, evk4], output="screen",
        ),
        _node(
            managed,
            package=PACKAGE, executable="flir_driver", name="flir_driver", namespace=namespace,
            parameters=[config, shared, flir], output="screen",
        ),
        _node(
            managed,
            package=PACKAGE, executable="accumulator", name="accumulator", namespace=namespace,
            parameters=[config, shared, on_device], output="screen",
        ),
        _node(
            managed,
            package=PACKAGE, executable="segmentation", name="segmentation",
            namespace=namespace,
            parameters=[
                config,
                shared,
                on_device,
                {
                    "backend": value("backend"),
                    "model_path": value("model"),
                    "event_frame_input": "topic",
                },
            ],
            output="screen",
        ),
    ]
    if managed:
        nodes += ManagedBringup(nodes).actions()
    if value("rviz") == "true":
        nodes += _rviz(namespace)
    return nodes


def _node(managed: bool, **kwargs) -> Node:
    """A graph node: launch_ros's Node, or a LifecycleNode running the node's managed twin."""
    if managed:
        return LifecycleNode(**kwargs, arguments=[MANAGED_FLAG])
    return Node(**kwargs)


class ManagedBringup:
    """The transitions that bring managed nodes up, consumers before drivers.

    Every node is configured when its process has started. The consumers are activated as
    soon as they are configured (inactive); the drivers, which start the streams, are activated
    when they are configured and every consumer is active, whichever happens last.
    """

    def __init__(self, nodes: list) -> None:
        self.consumers = [node for node in nodes if node.node_executable in CONSUMERS]
        self.drivers = [node for node in nodes if node.node_executable in DRIVERS]
        self._inactive_consumers = {id(node) for node in self.consumers}
        self._configured_drivers: list = []

    def actions(self) -> list:
        actions = [
            RegisterEventHandler(
                OnProcessStart(
                    target_action=node, on_start=[_change(node, Transition.TRANSITION_CONFIGURE)]
                )
            )
            for node in (*self.consumers, *self.drivers)
        ]
        for node in self.consumers:
            actions.append(
                _on_transition(node, "configuring", "inactive",
                               [_change(node, Transition.TRANSITION_ACTIVATE)])
            )
            actions.append(
                _on_transition(node, "activating", "active",
                               [OpaqueFunction(function=self._consumer_active, args=[node])])
            )
        for node in self.drivers:
            actions.append(
                _on_transition(node, "configuring", "inactive",
                               [OpaqueFunction(function=self._driver_configured, args=[node])])
            )
        return actions

    def _consumer_active(self, _context: LaunchContext, node) -> list:
        self._inactive_consumers.discard(id(node))
        return self._release_drivers()

    def _driver_configured(self, _context: LaunchContext, node) -> list:
        self._configured_drivers.append(node)
        return self._release_drivers()

    def _release_drivers(self) -> list:
        if self._inactive_consumers:
            return []
        drivers, self._configured_drivers = self._configured_drivers, []
        return [_change(node, Transition.TRANSITION_ACTIVATE) for node in drivers]


def _change(node, transition_id: int) -> EmitEvent:
    return EmitEvent(
        event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition_id)
    )


def _on_transition(node, start: str, goal: str, entities: list) -> RegisterEventHandler:
    return RegisterEventHandler(
        OnStateTransition(
            target_lifecycle_node=node, start_state=start, goal_state=goal, entities=entities
        )
    )


def _recording_calibration(bag: str) -> str:
    """A file with the calibration the recording carries (simulated ones do), or ""."""
    from evseg_ros.sim.recording import stored_calibration  # noqa: PLC0415

    text = stored_calibration(bag)
    if text is None:
        return ""
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"evseg_recording_calibration_{digest}.yaml"
    path.write_text(text)
    return str(path)


def _existing_bag(bag: str) -> str:
    if not bag:
        msg = (
            "source:=replay needs a recording: pass bag:=<rosbag2 folder> (e.g. one written by "
            "`evseg record` or `evseg simulate`); no node was started"
        )
        raise RigLaunchError(msg)
    path = Path(bag).expanduser().resolve()
    if not path.exists():
        msg = f"bag:={bag} does not exist ({path}); no node was started"
        raise RigLaunchError(msg)
    return str(path)


def _number(text: str, name: str, *, positive: bool) -> float:
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not (number > 0.0 if positive else number >= 0.0):
        bound = "> 0" if positive else ">= 0"
        msg = f"{name}:={text} must be a number {bound}; no node was started"
        raise RigLaunchError(msg)
    return number


def _rviz(namespace: str) -> list:
    """RViz on ``namespace``'s topics, or nothing (and a warning) where rviz2 is missing."""
    try:
        executable = Path(get_package_prefix("rviz2")) / "lib" / "rviz2" / "rviz2"
    except (PackageNotFoundError, OSError):
        executable = None
    if executable is None or not executable.is_file():
        get_logger("launch.user").warning(
            "rviz:=true, but rviz2 is not installed: the rig runs without RViz"
        )
        return []
    rviz_config = Path(get_package_share_directory(PACKAGE)) / "config" / "rig.rviz"
    actions = []
    if namespace.strip("/") != RVIZ_NAMESPACE:
        rviz_config = _rviz_config_for(rviz_config, namespace)
        actions.append(
            RegisterEventHandler(
                OnShutdown(on_shutdown=lambda *_: rviz_config.unlink(missing_ok=True))
            )
        )
    actions.append(
        Node(
            package="rviz2", executable="rviz2", name="rviz2", namespace=namespace,
            arguments=["-d", str(rviz_config)], output="screen",
        )
    )
    return actions


def _rviz_config_for(template: Path, namespace: str) -> Path:
    """A copy of the RViz config whose topics live under ``namespace`` (a temporary file)."""
    prefix = f"/{namespace.strip('/')}/" if namespace.strip("/") else "/"
    text = re.sub(
        rf"^(\s*Value: )/{RVIZ_NAMESPACE}/", rf"\g<1>{prefix}", template.read_text(), flags=re.M
    )
    with tempfile.NamedTemporaryFile(
        "w", prefix="evseg_rig_", suffix=".rviz", delete=False
    ) as file:
        file.write(text)
    return Path(file.name)
