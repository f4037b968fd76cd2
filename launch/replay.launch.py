"""Replay a recording through the rig: ``rig_core.launch.py`` with ``source:=replay``.

Both drivers replay the rosbag2 recording ``bag`` with their own bag sources (recorded stamps,
``/clock`` from the frame driver), so the rest of the graph runs exactly as on the cameras. A
recording rendered at another size than the config's calibration carries its own: pass it with
``calibration:=...``.

    ros2 launch evseg_ros replay.launch.py bag:=/path/to/recording
    ros2 launch evseg_ros replay.launch.py bag:=/path/to/recording pacing:=lockstep rviz:=true
    ros2 launch evseg_ros replay.launch.py bag:=/path/to/recording rate:=0.5 loop:=true
    ros2 launch evseg_ros replay.launch.py bag:=/path/to/recording managed:=true

The other arguments (``managed``, ``model``, ``backend``, ...) are the core's, passed through.
"""

from __future__ import annotations

from pathlib import Path

from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource

from launch import LaunchDescription

CORE = Path(__file__).with_name("rig_core.launch.py")


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "bag", description="rosbag2 recording (folder, MCAP or sqlite3) to replay"
            ),
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(str(CORE)),
                launch_arguments={"source": "replay"}.items(),
            ),
        ]
    )
