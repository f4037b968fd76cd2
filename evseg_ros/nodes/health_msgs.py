"""Per-frame health and mode as stamped ``diagnostic_msgs/DiagnosticArray`` messages.

Two small topics carry what the masks alone cannot say: ``event_frame/status`` (accumulator: is
this frame's event window fit to fuse, and is it frameless?) and ``segmentation/status`` (which
mode produced the mask with this stamp, and why). A ``DiagnosticArray`` has a header, so each
message is tied to its frame by stamp like the images are, and every ROS tool already reads it;
no interface package of our own has to be built for two flags and a reason.
"""

from __future__ import annotations

from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import Header

from evseg_ros.nodes.image_conversion import stamp_to_ns
from evseg_ros.pipeline.modality import EventHealth, Mode

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR
EVENT_STATUS_NAME = "evseg_ros: event window"
MODE_STATUS_NAME = "evseg_ros: segmentation mode"


def _status_array(
    header: Header, name: str, level: bytes, message: str, values: dict[str, Any]
) -> DiagnosticArray:
    status = DiagnosticStatus(
        level=level, name=name, message=message,
        values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()],
    )
    return DiagnosticArray(header=header, status=[status])


def event_status_msg(
    header: Header, health: EventHealth, *, frameless: bool, num_events: int, late: bool
) -> DiagnosticArray:
    """The accumulator's verdict on one frame's event window."""
    values = {"frameless": int(frameless), "num_events": num_events, "late": int(late)}
    return _status_array(
        header, EVENT_STATUS_NAME, OK if health.ok else WARN, health.reason, values
    )


def parse_event_status(msg: DiagnosticArray) -> tuple[int, EventHealth, bool]:
    """``(stamp_ns, health, frameless)`` from :func:`event_status_msg`'s message.

    Raises:
        ValueError: the message is not an event-window status.
    """
    if len(msg.status) != 1 or msg.status[0].name != EVENT_STATUS_NAME:
        msg_text = f"not an event-window status: {[s.name for s in msg.status]!r}"
        raise ValueError(msg_text)
    status = msg.status[0]
    values = {kv.key: kv.value for kv in status.values}
    health = EventHealth(status.level == OK, status.message)
    return stamp_to_ns(msg.header), health, values.get("frameless") == "1"


def mode_status_msg(
    header: Header, mode: Mode, reason: str, values: dict[str, Any]
) -> DiagnosticArray:
    """Which mode produced the mask of this stamp (OK fused, WARN degraded, ERROR no mask)."""
    level = {Mode.FUSED: OK, Mode.NONE: ERROR}.get(mode, WARN)
    return _status_array(header, MODE_STATUS_NAME, level, mode.value, {"reason": reason, **values})


def parse_mode_status(msg: DiagnosticArray) -> tuple[int, Mode, str]:
    """``(stamp_ns, mode, reason)`` from :func:`mode_status_msg`'s message."""
    status = msg.status[0]
    reason = next((kv.value for kv in status.values if kv.key == "reason"), "")
    return stamp_to_ns(msg.header), Mode(status.message), reason
