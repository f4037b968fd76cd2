"""evseg_ros: semantic segmentation for a coaxial event + frame camera rig on ROS 2.

Everything outside :mod:`evseg_ros.nodes` is plain Python (numpy, OpenCV, torch, onnxruntime) and
imports no rclpy, so the core can be tested and reused without a ROS graph.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
