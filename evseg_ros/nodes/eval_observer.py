"""A listening node for evaluation runs: masks by stamp, and when each arrived.

It only subscribes, so it sees exactly what any other ROS consumer would: the frame-to-mask
latency is measured up to a mask's arrival here (monotonic clock, independent of how header
stamps relate to the wall clock on a replay).
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import Image

from evseg_ros.nodes.health_msgs import parse_mode_status
from evseg_ros.nodes.image_conversion import ImageConversionError, from_image_msg, stamp_to_ns
from evseg_ros.nodes.qos import RESULTS_QOS


@dataclass
class EvalObserver:
    """What the node below saw; plain data, read after the run.

    Masks are kept PNG-compressed (a few KB instead of a full image each), so a long recording
    fits in memory.
    """

    masks_png: dict[int, bytes] = field(default_factory=dict)
    mask_arrival_ns: dict[int, int] = field(default_factory=dict)
    bad_masks: int = 0
    #: the mode (``segmentation/status``) of every frame, masked or not, by stamp
    modes: dict[int, str] = field(default_factory=dict)
    _event_only: tuple[int, list[int]] = field(default=(-1, []), repr=False)

    @property
    def masks_received(self) -> int:
        return len(self.masks_png)

    def keep(self, stamp_ns: int, mask: np.ndarray, arrival_ns: int) -> None:
        ok, png = cv2.imencode(".png", mask)
        if not ok:
            self.bad_masks += 1
            return
        self.masks_png[stamp_ns] = png.tobytes()
        self.mask_arrival_ns[stamp_ns] = arrival_ns

    def mask(self, stamp_ns: int) -> np.ndarray | None:
        """The class-id mask received with ``stamp_ns``, or None."""
        png = self.masks_png.get(stamp_ns)
        if png is None:
            return None
        return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)

    def stamp_near(self, stamp_ns: int, tolerance_ns: int) -> int | None:
        """The mask stamp equal to ``stamp_ns``, else the nearest event-only one within tolerance.

        An event-only mask has no camera frame to take a stamp from: it carries the stamp its
        frame would have had, predicted from the trigger, which lands within the stamp jitter.
        """
        if stamp_ns in self.masks_png:
            return stamp_ns
        event_only = self._event_only_stamps()
        position = bisect.bisect_left(event_only, stamp_ns)
        near = [event_only[i] for i in (position - 1, position) if 0 <= i < len(event_only)]
        best = min(near, key=lambda s: abs(s - stamp_ns), default=None)
        return best if best is not None and abs(best - stamp_ns) <= tolerance_ns else None

    def _event_only_stamps(self) -> list[int]:
        if self._event_only[0] != len(self.masks_png):  # sorted once per new mask count
            stamps = sorted(s for s in self.masks_png if self.modes.get(s) == "event_only")
            self._event_only = (len(self.masks_png), stamps)
        return self._event_only[1]

    def frame_to_mask_ms(self, frame_sent_ns: dict[int, int]) -> list[float]:
        """Latency of every mask from when its frame was sent, in mask arrival order.

        ``frame_sent_ns``: monotonic ns at which the camera driver published each frame (an
        in-process run reads it off the driver; in one process the frame's own delivery to this
        node would be queued behind the very work it is meant to time).
        """
        return [
            (arrival - frame_sent_ns[stamp]) / 1e6
            for stamp, arrival in sorted(self.mask_arrival_ns.items(), key=lambda kv: kv[1])
            if stamp in frame_sent_ns
        ]


class EvalObserverNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("eval_observer", **kwargs)
        self.observer = EvalObserver()
        self.create_subscription(Image, "segmentation/mask", self._on_mask, RESULTS_QOS)
        self.create_subscription(
            DiagnosticArray, "segmentation/status", self._on_status, RESULTS_QOS
        )

    def _on_status(self, msg: DiagnosticArray) -> None:
        try:
            stamp, mode, _reason = parse_mode_status(msg)
        except (IndexError, ValueError):
            return
        self.observer.modes[stamp] = mode.value

    def _on_mask(self, msg: Image) -> None:
        arrival = time.monotonic_ns()
        stamp = stamp_to_ns(msg.header)
        try:
            self.observer.keep(stamp, from_image_msg(msg, expected=("mono8",)), arrival)
        except ImageConversionError:
            self.observer.bad_masks += 1
