"""QoS profiles, chosen per stream rather than left at defaults.

- Event packets: reliable with a deep queue. EVT3 is stateful (time high words, row addresses
  carry across packets), so a lost packet corrupts the start of the next one; losses still show
  up as EventPacket.seq gaps and are counted.
- Camera frames: reliable, shallow queue: a frame that cannot be delivered promptly is worth
  less than the next one, but best-effort over Fast DDS's default UDP transport delivers only a
  small fraction of large images between processes (measured), so the rig uses reliable delivery
  with the shared-memory transport profile in ``config/fastdds_shm.xml``.
- Results (mask, overlay, event frame): reliable, shallow, volatile: the newest result matters.
- ``/clock`` of a recording replay: reliable, like ``ros2 bag play --clock``.
"""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy


def _reliable_volatile(depth: int) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


EVENTS_QOS = _reliable_volatile(1000)
FRAMES_QOS = _reliable_volatile(5)
RESULTS_QOS = _reliable_volatile(5)
DIAGNOSTICS_QOS = _reliable_volatile(10)
#: /clock of a replay: reliable like ``ros2 bag play``'s; best-effort subscribers (rclpy's time
#: source) match it too
CLOCK_QOS = _reliable_volatile(10)
