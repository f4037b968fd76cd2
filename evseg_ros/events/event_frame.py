"""Event frames: the dense tensor the segmentation network reads next to each camera frame.

Events arrive in event-camera pixels; the network wants them on the network's output grid.
A lookup table from every event pixel to its frame pixel (built once from the calibration with
OpenCV) makes the mapping one gather per event, done in the same pass as the accumulation.
"""

from __future__ import annotations

import numpy as np

from evseg_ros.geometry.calibration import RigCalibration

#: Channel order of the 3-channel event frame.
EVENT_FRAME_CHANNELS = ("positive_count", "negative_count", "normalized_time")


def build_pixel_lut(calibration: RigCalibration) -> np.ndarray:
    """Map each event pixel to the flat index of the OUTPUT-grid pixel it images, or -1.

    The output grid is the network's (``calibration.output_width x output_height``); each event
    pixel is undistorted, mapped by the event-to-frame homography and scaled/cropped onto that
    grid (:meth:`RigCalibration.event_to_output_pixels`), then rounded to the nearest pixel.
    Built once, so the per-event cost is a single gather.

    Returns:
        (event_height * event_width,) int64 array indexed by ``y * event_width + x``, holding
        ``v * output_width + u`` or -1 where the event pixel images no output pixel.
    """
    event = calibration.event_camera
    width, height = calibration.output_width, calibration.output_height
    ys, xs = np.mgrid[0 : event.height, 0 : event.width]
    u, v = calibration.event_to_output_pixels(xs.ravel(), ys.ravel())
    valid = np.isfinite(u) & np.isfinite(v)
    ou = np.rint(np.clip(np.where(valid, u, -1.0), -1, width)).astype(np.int64)
    ov = np.rint(np.clip(np.where(valid, v, -1.0), -1, height)).astype(np.int64)
    inside = valid & (ou >= 0) & (ou < width) & (ov >= 0) & (ov < height)
    return np.where(inside, ov * width + ou, -1)


class EventFrameBuilder:
    """Accumulate a window of events into a (3, H, W) float32 frame on the frame camera's grid.

    Channels: ON count, OFF count, and the time of each pixel's latest event normalised to
    [0, 1] over the window (0 where the pixel saw nothing), the skeleton representation that
    keeps both how much changed and how recently.
    """

    def __init__(self, calibration: RigCalibration) -> None:
        self.event_width = calibration.event_camera.width
        self.event_height = calibration.event_camera.height
        self.width = calibration.output_width
        self.height = calibration.output_height
        #: Flat frame pixel of every event pixel (``y * event_width + x``), -1 for none.
        self.lut = build_pixel_lut(calibration)
        #: Events whose pixel has no frame pixel (outside the shared field of view) or whose
        #: coordinates are outside the sensor; counted, not silently dropped.
        self.unmapped_events = 0

    def map_events(self, events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flat frame-pixel index of every mappable event, and the mask of those events.

        Events off the sensor or outside the shared field of view are counted in
        ``unmapped_events``.
        """
        x = events["x"].astype(np.int64)
        y = events["y"].astype(np.int64)
        on_sensor = (x < self.event_width) & (y < self.event_height)
        target = np.full(len(events), -1, dtype=np.int64)
        target[on_sensor] = self.lut[y[on_sensor] * self.event_width + x[on_sensor]]
        keep = target >= 0
        self.unmapped_events += int(len(events) - np.count_nonzero(keep))
        return target[keep], keep

    def build(self, events: np.ndarray, t_start_us: int, t_end_us: int) -> np.ndarray:
        """Return the event frame of ``events`` (already cut to ``[t_start_us, t_end_us)``)."""
        size = self.width * self.height
        frame = np.zeros((3, size), dtype=np.float32)
        if len(events) == 0:
            return frame.reshape(3, self.height, self.width)
        target, keep = self.map_events(events)
        polarity = events["p"][keep] != 0
        frame[0] = np.bincount(target[polarity], minlength=size)
        frame[1] = np.bincount(target[~polarity], minlength=size)
        span = max(int(t_end_us) - int(t_start_us), 1)
        times = (events["t"][keep] - t_start_us).astype(np.float32) / span
        np.maximum.at(frame[2], target, np.clip(times, 1e-6, 1.0))
        return frame.reshape(3, self.height, self.width)
