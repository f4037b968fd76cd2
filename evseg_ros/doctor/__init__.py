"""``evseg doctor``: what this machine has, and what the rig still needs before it can run here.

Bring-up on a vehicle fails in ways that surface late and far from their cause: a CPU-only torch
wheel makes ``device: auto`` fall back silently, a 64 MiB container ``/dev/shm`` crashes Fast DDS
at the first full frame, a Jetson left in a low power mode halves the frame rate. Each check here
is one small function that looks at one thing, returns one :class:`Check` and never raises; the
command prints them as a table (or JSON) with the fix for each problem and exits 1 only when
something the chosen configuration needs (``--need``) is missing, so a systemd unit can refuse to
start a rig that cannot work.

The checks are grouped by what they look at (``platform_checks``, ``compute_checks``,
``ros_checks``, ``camera_checks``); ``report`` orders them and prints them, ``command`` is the
command line. Everything heavy (torch, TensorRT, ONNX Runtime, rclpy, the camera SDKs) is
imported inside its check, so the package itself imports nothing beyond the standard library,
and it runs on an older Python far enough to say that the Python is too old.
"""

from __future__ import annotations

from evseg_ros.doctor.check import ERROR, MISSING, OK, STATUSES, WARN, Check
from evseg_ros.doctor.command import add_arguments, main, register, run
from evseg_ros.doctor.compute_checks import check_engine_cache
from evseg_ros.doctor.platform_checks import check_platform, check_power_mode, read_jetson_info
from evseg_ros.doctor.report import BASE_NEEDS, NEEDS, run_checks
from evseg_ros.doctor.ros_checks import check_shm, judge_shm

__all__ = [
    "BASE_NEEDS",
    "ERROR",
    "MISSING",
    "NEEDS",
    "OK",
    "STATUSES",
    "WARN",
    "Check",
    "add_arguments",
    "check_engine_cache",
    "check_platform",
    "check_power_mode",
    "check_shm",
    "judge_shm",
    "main",
    "read_jetson_info",
    "register",
    "run",
    "run_checks",
]
