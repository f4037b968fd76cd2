"""Fault-injection parameters of the replaying drivers (``evseg eval --drop-events`` and co.).

Declared by both drivers so the same names switch a recording's event stream or frame stream off
for an interval or lose a fraction of its messages; only the ``bag`` source uses them.
"""

from __future__ import annotations

from typing import Any

from evseg_ros.nodes.params import Param
from evseg_ros.sources.replay_faults import ReplayFaults, parse_intervals

FAULT_PARAMS: tuple[Param, ...] = (
    Param(
        "replay_drop", "",
        "fault injection (bag source): recording-time intervals in which this stream is not "
        "sent, 'START:DURATION[,START:DURATION]' in seconds from the recording's start",
    ),
    Param(
        "replay_message_loss", 0.0,
        "fault injection (bag source): fraction of this stream's messages lost at random",
        low=0.0, high=0.99,
    ),
    Param("replay_fault_seed", 0, "seed of the random message loss", low=0),
)


def replay_faults(values: dict[str, Any]) -> ReplayFaults:
    """The faults the declared parameter values ask for (raises FaultSpecError, a ValueError)."""
    return ReplayFaults(
        off=parse_intervals(str(values["replay_drop"])),
        loss=float(values["replay_message_loss"]),
        seed=int(values["replay_fault_seed"]),
    )
