"""ROS 2 nodes: thin adapters between topics and the plain-Python stages in :mod:`evseg_ros`.

Each node reads its parameters once, converts messages, and hands over to the core; the graph
table in :mod:`evseg_ros.nodes.graph` is what both the launch file and the in-process runner
start.
"""

from __future__ import annotations
