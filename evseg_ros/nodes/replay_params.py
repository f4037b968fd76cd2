"""Recording-replay parameters both drivers declare, so one launch argument sets both alike."""

from __future__ import annotations

from evseg_ros.nodes.params import Param
from evseg_ros.sources.replay_clock import PACINGS

REPLAY_PARAMS: tuple[Param, ...] = (
    Param(
        "replay_pacing", "realtime",
        "realtime: at replay_rate x recorded speed, drops counted; lockstep: the next frame "
        "(and its events) only once the previous mask came back; fast: as fast as consumed",
        PACINGS,
    ),
    Param(
        "replay_rate", 1.0, "replay speed as a multiple of the recorded speed (realtime)",
        low=0.001, high=1_000.0,
    ),
    Param("replay_loop", False, "start over at the end of the recording"),
    Param(
        "replay_epoch_ns", 0,
        "wall-clock time [ns since the Unix epoch] at which the recording's start plays; both "
        "drivers replaying one bag must agree (launch and the in-process runner set it); "
        "0 = this driver's first poll",
        low=0,
    ),
    Param(
        "replay_publish_clock", False,
        "publish the replay's playhead on /clock (bag time), like `ros2 bag play --clock`",
    ),
)
