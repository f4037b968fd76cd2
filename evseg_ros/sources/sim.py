"""Simulated coaxial rig as driver sources.

Both drivers share one scene that is a pure function of (seed, sensor time), so an EVK4 driver
and a FLIR driver in different processes stay consistent as long as they agree on the epoch: the
ROS time at which sensor time 0 happened (the launch file passes one value to both; the
in-process runner shares it directly). Sensor time runs from 0 and is written into EVT3 words,
so after ~16.8 s the 24-bit counter wraps just like a real camera's.

Simulating events costs more than real time on a small CPU, so sensor time may advance at
``time_scale`` times the wall clock (like ``ros2 bag play --rate``). Header stamps stay
``epoch + sensor time``: every consumer sees one consistent clock, it just runs slower than the
wall clock.

Rendering in the loop is for interactive use (recordings, :mod:`evseg_ros.sim.recording`, are
what the demo and evaluation replay). It never blocks the executor: one call simulates at most
one packet, and when the simulator has fallen further behind than ``max_lag_us`` it jumps ahead
to the present, counting the sensor time it skipped.
"""

from __future__ import annotations

from evseg_ros.events.evt3 import Evt3EncoderState, encode_evt3
from evseg_ros.events.types import first_time_us
from evseg_ros.sim import CoaxialRigSim
from evseg_ros.sources.base import CapturedFrame, RawEventPacket


def _check_scale(time_scale: float) -> float:
    if not 0.0 < time_scale <= 10.0:
        msg = f"sim time_scale must be within (0, 10], got {time_scale!r}"
        raise ValueError(msg)
    return float(time_scale)


def sensor_time_us(now_ns: int, epoch_ns: int, time_scale: float) -> int:
    """Simulated sensor time reached at ROS time ``now_ns`` (negative before the epoch)."""
    return int((int(now_ns) - epoch_ns) * time_scale) // 1000


class SimEventSource:
    """EVT3 packets from the simulated event camera, cut at multiples of ``packet_period_us``."""

    encoding = "evt3"
    MAX_PERIODS_PER_PACKET = 5

    def __init__(
        self, rig: CoaxialRigSim, *, epoch_ns: int, packet_period_us: int = 10_000,
        time_scale: float = 1.0, max_lag_us: int = 1_000_000,
    ):
        if packet_period_us <= 0:
            msg = f"packet_period_us must be positive, got {packet_period_us!r}"
            raise ValueError(msg)
        self.width = rig.calibration.event_camera.width
        self.height = rig.calibration.event_camera.height
        self.epoch_ns = int(epoch_ns)
        self.time_scale = _check_scale(time_scale)
        self.packet_period_us = packet_period_us
        self.max_lag_us = max(int(max_lag_us), packet_period_us)
        self.rig = rig
        self._simulator = rig.event_simulator(0)
        self._encoder_state = Evt3EncoderState()
        #: sensor time jumped over because simulating fell behind, and how many jumps
        self.skipped_us = 0
        self.skips = 0

    def read(self, now_ns: int) -> list[RawEventPacket]:
        """Simulate up to ``now_ns`` (whole packet periods, one packet at most) and encode it.

        What became due since the last poll goes into one packet (up to
        ``MAX_PERIODS_PER_PACKET`` periods), the way a camera driver's packets grow when its
        time threshold is exceeded between two SDK buffers. More than ``max_lag_us`` behind,
        the simulator restarts at the present instead of catching up.
        """
        now_us = sensor_time_us(now_ns, self.epoch_ns, self.time_scale)
        t = self._simulator.time_us
        if now_us - t > self.max_lag_us:
            periods_behind = (now_us - t) // self.packet_period_us
            t_new = t + (periods_behind - 1) * self.packet_period_us
            self.skipped_us += t_new - t
            self.skips += 1
            self._simulator = self.rig.event_simulator(t_new)
            t = t_new
        periods = min((now_us - t) // self.packet_period_us, self.MAX_PERIODS_PER_PACKET)
        if periods <= 0:
            return []
        t_end = t + periods * self.packet_period_us
        events, triggers = self._simulator.advance_to(t_end)
        data = encode_evt3(events, triggers, state=self._encoder_state)
        first = first_time_us(events, triggers, t)
        return [RawEventPacket(data, self.epoch_ns + first * 1000, first * 1000)]

    def status_values(self) -> dict[str, int]:
        return {"sim_skipped_ms": self.skipped_us // 1000, "sim_skips": self.skips}

    def close(self) -> None:
        """Nothing to release."""


class SimFrameSource:
    """Frames of the simulated frame camera, stamped with their trigger time.

    A frame becomes available once its exposure has ended in ROS time. When the consumer polls
    too slowly for several to be ready, only the newest is delivered and the rest are counted as
    skipped, like a camera driver with a newest-only buffer.
    """

    def __init__(
        self, rig: CoaxialRigSim, *, epoch_ns: int, with_ground_truth: bool = True,
        time_scale: float = 1.0,
    ):
        self.rig = rig
        self.width = rig.calibration.frame_camera.width
        self.height = rig.calibration.frame_camera.height
        self.epoch_ns = int(epoch_ns)
        self.time_scale = _check_scale(time_scale)
        self.with_ground_truth = with_ground_truth
        self.skipped_frames = 0
        self._next_index = 0

    def read(self, now_ns: int) -> list[CapturedFrame]:
        now_us = sensor_time_us(now_ns, self.epoch_ns, self.time_scale)
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
