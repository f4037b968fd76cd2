"""QoS profiles, chosen per stream rather than left at defaults.

- Event packets: reliable with a deep queue. EVT3 is stateful (time high words, row addresses
  carry across packets), so a lost packet corrupts the start of the next one; losses still show
  up as EventPacket.seq gaps and are counted.
- Camera frames: reliable, shallow queue: a frame that cannot be delivered promptly is worth
  less than the next one, but best-effort over Fast DDS's default UDP transport delivers only a
  small fraction of large images between processes (measured), so the rig uses reliable delivery
  with the shared-memory transport profile in ``config/fastdds_shm.xml``.
- Results (mask, overlay, event frame): reliable, shallow, volatile: the newest result matters.
"""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

EVENTS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=100,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

FRAMES_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=5,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

RESULTS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=5,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

DIAGNOSTICS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
