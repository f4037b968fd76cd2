"""A listening node for evaluation runs: keeps masks, ground truth and inputs by stamp.

It only subscribes, so it sees exactly what any other ROS consumer would (it is how the demo
measures end-to-end latency and mIoU over real topics). Subscribing to ``event_frame`` makes the
accumulator publish it, which the demo needs for its PNG panels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image

from evseg_ros.nodes.image_conversion import from_image_msg, stamp_to_ns
from evseg_ros.nodes.qos import FRAMES_QOS, RESULTS_QOS


@dataclass
class Sample:
    stamp_ns: int
    mask: np.ndarray | None = None
    truth: np.ndarray | None = None
    image: np.ndarray | None = None
    event_frame: np.ndarray | None = None
    image_arrival_ns: int | None = None  # when this node received the camera frame
    mask_arrival_ns: int | None = None  # ... and the mask with the same stamp

    @property
    def frame_to_mask_ms(self) -> float | None:
        """Latency of the perception graph as a downstream consumer sees it.

        Measured on this node's wall clock between the frame and its mask arriving, so it does
        not depend on how header stamps relate to the wall clock (they run slower on a
        simulator with ``sim_time_scale`` < 1).
        """
        if self.image_arrival_ns is None or self.mask_arrival_ns is None:
            return None
        return (self.mask_arrival_ns - self.image_arrival_ns) / 1e6

    @property
    def complete(self) -> bool:
        return all(
            v is not None for v in (self.mask, self.truth, self.image, self.event_frame)
        )


@dataclass
class EvalObserver:
    """Holds the samples; the node below fills it."""

    samples: dict[int, Sample] = field(default_factory=dict)

    def sample(self, stamp_ns: int) -> Sample:
        return self.samples.setdefault(stamp_ns, Sample(stamp_ns))

    @property
    def masks_received(self) -> int:
        return sum(1 for s in self.samples.values() if s.mask is not None)

    def complete_samples(self) -> list[Sample]:
        return [s for _, s in sorted(self.samples.items()) if s.complete]


class EvalObserverNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("eval_observer", **kwargs)
        self.observer = EvalObserver()
        self.create_subscription(Image, "segmentation/mask", self._on_mask, RESULTS_QOS)
        self.create_subscription(Image, "frame/ground_truth", self._on_truth, FRAMES_QOS)
        self.create_subscription(Image, "frame/image_raw", self._on_image, FRAMES_QOS)
        self.create_subscription(Image, "event_frame", self._on_event_frame, RESULTS_QOS)

    def _on_mask(self, msg: Image) -> None:
        stamp = stamp_to_ns(msg.header)
        sample = self.observer.sample(stamp)
        sample.mask = from_image_msg(msg, expected=("mono8",)).copy()
        sample.mask_arrival_ns = time.monotonic_ns()

    def _on_truth(self, msg: Image) -> None:
        self.observer.sample(stamp_to_ns(msg.header)).truth = from_image_msg(msg).copy()

    def _on_image(self, msg: Image) -> None:
        sample = self.observer.sample(stamp_to_ns(msg.header))
        sample.image_arrival_ns = time.monotonic_ns()
        sample.image = from_image_msg(msg).copy()

    def _on_event_frame(self, msg: Image) -> None:
        frame = from_image_msg(msg, expected=("32FC3",)).transpose(2, 0, 1).copy()
        self.observer.sample(stamp_to_ns(msg.header)).event_frame = frame
