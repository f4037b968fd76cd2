"""Simulated coaxial rig as driver sources.

Both drivers share one scene that is a pure function of (seed, sensor time), so an EVK4 driver
and a FLIR driver in different processes stay consistent as long as they agree on the epoch: the
ROS time at which sensor time 0 happened (the launch file passes one value to both; the
in-process runner shares it directly). Sensor time runs from 0 and is written into EVT3 words,
so after ~16.8 s the 24-bit counter wraps just like a real camera's.
"""

from __future__ import annotations

from evseg_ros.events.evt3 import Evt3EncoderState, encode_evt3
from evseg_ros.sim import CoaxialRigSim
from evseg_ros.sources.base import CapturedFrame, RawEventPacket


class SimEventSource:
    """EVT3 packets from the simulated event camera, cut every ``packet_period_us``."""

    encoding = "evt3"

    def __init__(self, rig: CoaxialRigSim, *, epoch_ns: int, packet_period_us: int = 10_000):
        if packet_period_us <= 0:
            msg = f"packet_period_us must be positive, got {packet_period_us!r}"
            raise ValueError(msg)
        self.width = rig.calibration.event_camera.width
        self.height = rig.calibration.event_camera.height
        self.epoch_ns = int(epoch_ns)
        self.packet_period_us = packet_period_us
        self._simulator = rig.event_simulator(0)
        self._encoder_state = Evt3EncoderState()

    def read(self, now_ns: int) -> list[RawEventPacket]:
        """Simulate up to ``now_ns`` (whole packet periods only) and encode the new packets."""
        now_us = (int(now_ns) - self.epoch_ns) // 1000
        packets: list[RawEventPacket] = []
        t = self._simulator.time_us
        while t + self.packet_period_us <= now_us:
            t_end = t + self.packet_period_us
            events, triggers = self._simulator.advance_to(t_end)
            data = encode_evt3(events, triggers, state=self._encoder_state)
            first = t
            if len(events):
                first = int(events["t"][0])
            if len(triggers):
                first = min(first, int(triggers["t"][0]))
            packets.append(RawEventPacket(data, self.epoch_ns + first * 1000, first * 1000))
            t = t_end
        return packets

    def close(self) -> None:
        """Nothing to release."""


class SimFrameSource:
    """Frames of the simulated frame camera, stamped with their trigger time.

    A frame becomes available once its exposure has ended in ROS time. When the consumer polls
    too slowly for several to be ready, only the newest is delivered and the rest are counted as
    skipped, like a camera driver with a newest-only buffer.
    """

    def __init__(self, rig: CoaxialRigSim, *, epoch_ns: int, with_ground_truth: bool = True):
        self.rig = rig
        self.width = rig.calibration.frame_camera.width
        self.height = rig.calibration.frame_camera.height
        self.epoch_ns = int(epoch_ns)
        self.with_ground_truth = with_ground_truth
        self.skipped_frames = 0
        self._next_index = 0

    def read(self, now_ns: int) -> list[CapturedFrame]:
        now_us = (int(now_ns) - self.epoch_ns) // 1000
        period = self.rig.frame_period_us()
        # frame k is complete when its (longest) exposure is over
        settle_us = 4 * self.rig.config.exposure_us
        last_ready = (now_us - settle_us) // period
        if last_ready < self._next_index:
            return []
        self.skipped_frames += int(last_ready - self._next_index)
        index = int(last_ready)
        self._next_index = index + 1
        t_us = index * period
        frame = self.rig.render_frame(t_us)
        truth = frame.labels if self.with_ground_truth else None
        stamp = self.epoch_ns + t_us * 1000
        return [CapturedFrame(stamp, frame.image, index, frame.exposure_us, truth)]

    def close(self) -> None:
        """Nothing to release."""
