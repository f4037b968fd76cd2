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
    OpaqueFunction,
    RegisterEventHandler,
    SetEnvironmentVariable,
)
from launch.event_handlers import OnShutdown
from launch.launch_context import LaunchContext
from launch.logging import get_logger
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PACKAGE = "evseg_ros"
#: the namespace config/rig.rviz is written for
RVIZ_NAMESPACE = "rig"


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
            "backend", default_value="auto", choices=["auto", "onnxruntime", "pytorch"],
            description="segmentation inference backend",
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

    nodes = [
        Node(
            package=PACKAGE, executable="evk4_driver", name="evk4_driver", namespace=namespace,
            parameters=[config, shared, evk4], output="screen",
        ),
        Node(
            package=PACKAGE, executable="flir_driver", name="flir_driver", namespace=namespace,
            parameters=[config, shared, flir], output="screen",
        ),
        Node(
            package=PACKAGE, executable="accumulator", name="accumulator", namespace=namespace,
            parameters=[config, shared], output="screen",
        ),
        Node(
            package=PACKAGE, executable="segmentation", name="segmentation",
            namespace=namespace,
            parameters=[
                config,
                shared,
                {
                    "backend": value("backend"),
                    "model_path": value("model"),
                    "event_frame_input": "topic",
                },
            ],
            output="screen",
        ),
    ]
    if value("rviz") == "true":
        nodes += _rviz(namespace)
    return nodes


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
