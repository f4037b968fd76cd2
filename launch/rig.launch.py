"""Launch the evseg_ros rig: EVK4 + FLIR drivers, accumulator, segmentation (+ RViz).

The nodes, arguments and checks live in ``rig_core.launch.py``; this file includes it as is.
Every node reads ``config/rig.yaml`` (or ``config:=...``), the file the in-process runner
(``evseg run``) reads. ``ros2 launch evseg_ros rig.launch.py --show-args`` lists the arguments.

    ros2 launch evseg_ros rig.launch.py                                   # simulated rig
    ros2 launch evseg_ros rig.launch.py source:=hardware rviz:=true       # EVK4 + Blackfly S
    ros2 launch evseg_ros rig.launch.py source:=replay bag:=/path/to/recording pacing:=lockstep
    ros2 launch evseg_ros rig.launch.py managed:=true   # lifecycle nodes, brought up in order
"""

from __future__ import annotations

from pathlib import Path

from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource

from launch import LaunchDescription

CORE = Path(__file__).with_name("rig_core.launch.py")


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([IncludeLaunchDescription(PythonLaunchDescriptionSource(str(CORE)))])
