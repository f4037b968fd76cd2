"""Launch the evseg_ros rig: EVK4 + FLIR drivers, accumulator, segmentation (+ RViz).

Every node reads ``config/rig.yaml`` (or ``config:=...``); the in-process runner
(``evseg run``) starts the same nodes from the same file. Processes talk over Fast DDS
shared memory (``config/fastdds_shm.xml``): large images between processes need it.

    ros2 launch evseg_ros rig.launch.py                      # simulated rig
    ros2 launch evseg_ros rig.launch.py source:=hardware     # EVK4 + Blackfly S
    ros2 launch evseg_ros rig.launch.py source:=replay bag:=/path/to/bag
"""

from __future__ import annotations

import time

from launch.actions import DeclareLaunchArgument, ExecuteProcess, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PACKAGE = "evseg_ros"


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare(PACKAGE)
    config = LaunchConfiguration("config")
    namespace = LaunchConfiguration("namespace")
    source = LaunchConfiguration("source")
    live = PythonExpression(["'", source, "' != 'replay'"])
    # both simulated drivers must agree on when sensor time 0 was: fix it once, here
    sim_epoch_ns = time.time_ns()

    arguments = [
        DeclareLaunchArgument(
            "source", default_value="sim", choices=["sim", "hardware", "replay"],
            description="sim: simulated coaxial rig; hardware: EVK4 + FLIR; replay: play `bag`",
        ),
        DeclareLaunchArgument(
            "backend", default_value="auto", choices=["auto", "onnxruntime", "pytorch"],
            description="segmentation inference backend",
        ),
        DeclareLaunchArgument(
            "model", default_value="models/demo_fusion.onnx",
            description="ONNX model (relative paths resolve against the package share)",
        ),
        DeclareLaunchArgument(
            "rviz", default_value="false", choices=["true", "false"],
            description="start RViz with the overlay and mask displays",
        ),
        DeclareLaunchArgument(
            "config", default_value=PathJoinSubstitution([share, "config", "rig.yaml"]),
            description="parameter file for every node",
        ),
        DeclareLaunchArgument("namespace", default_value="rig", description="node namespace"),
        DeclareLaunchArgument(
            "bag", default_value="", description="rosbag2 to play when source:=replay"
        ),
    ]

    evk4_driver = Node(
        package=PACKAGE, executable="evk4_driver", name="evk4_driver", namespace=namespace,
        parameters=[config, {"source": source, "sim_epoch_ns": sim_epoch_ns}],
        condition=IfCondition(live), output="screen",
    )
    flir_driver = Node(
        package=PACKAGE, executable="flir_driver", name="flir_driver", namespace=namespace,
        parameters=[config, {"source": source, "sim_epoch_ns": sim_epoch_ns}],
        condition=IfCondition(live), output="screen",
    )
    accumulator = Node(
        package=PACKAGE, executable="accumulator", name="accumulator", namespace=namespace,
        parameters=[config], output="screen",
    )
    segmentation = Node(
        package=PACKAGE, executable="segmentation", name="segmentation", namespace=namespace,
        parameters=[
            config,
            {
                "backend": LaunchConfiguration("backend"),
                "model_path": LaunchConfiguration("model"),
                "event_frame_input": "topic",
            },
        ],
        output="screen",
    )
    replay = ExecuteProcess(
        cmd=["ros2", "bag", "play", LaunchConfiguration("bag")],
        condition=IfCondition(PythonExpression(["'", source, "' == 'replay'"])),
        output="screen",
    )
    rviz = Node(
        package="rviz2", executable="rviz2", name="rviz2",
        arguments=["-d", PathJoinSubstitution([share, "config", "rig.rviz"])],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription(
        [
            *arguments,
            SetEnvironmentVariable(
                "FASTDDS_DEFAULT_PROFILES_FILE",
                PathJoinSubstitution([share, "config", "fastdds_shm.xml"]),
            ),
            evk4_driver,
            flir_driver,
            accumulator,
            segmentation,
            replay,
            rviz,
        ]
    )
