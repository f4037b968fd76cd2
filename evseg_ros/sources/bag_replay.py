"""Driver sources that replay one topic of a rosbag2 recording (sqlite3 or MCAP) in step.

The EVK4 driver replays the EventPackets and the FLIR driver the Images of the same recording;
a :class:`~evseg_ros.sources.replay_clock.ReplayClock` built from the bag's metadata keeps them
in step (see there for the pacing modes). Messages are released by their **bag (log) time**,
the time the recording driver had them, and published with their **recorded header stamps**:
events and frames keep the stamps they were recorded with, so the pairing of a frame with its
trigger is exactly the recorded one, and a ``/clock`` carries the playhead.

Bounded work per poll: an event replay sends what became due since the last poll as one packet
of at most ``max_packets_per_read`` recorded packets and reports how far behind it is
(``replay_lag_ms``) instead of blocking the executor; a frame replay that fell behind
publishes the newest due frame and counts the others in ``skipped_frames``. A message that
cannot be read is counted (``bad_messages``) and skipped; a damaged file ends the pass with an
error line.

Faults for testing the pipeline's degradation (:mod:`.replay_faults`: a stream off for an
interval, a fraction of its messages lost) are applied as the messages are read, so a dropped
message is never sent, in any pacing, and counted (``fault_dropped_off``, ``fault_dropped_loss``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.highlevel import AnyReader

from evseg_ros.events.bag import EVENT_PACKET_MSGTYPE, BagError, header_stamp_ns, open_bag
from evseg_ros.sources.base import CapturedFrame, RawEventPacket, SourceUnavailableError
from evseg_ros.sources.frame_replay import IMAGE_MSGTYPE, image_from_msg
from evseg_ros.sources.replay_clock import ReplayClock, ReplayPacing
from evseg_ros.sources.replay_faults import FaultInjector, ReplayFaults

LOGGER = logging.getLogger(__name__)


class BagTopicReader:
    """``(bag_ns, message)`` of one topic with one message of lookahead, rewindable.

    Args:
        path: rosbag2 folder, ``.db3`` or ``.mcap``.
        msgtype: message type to replay.
        topic: topic name; default the first topic of ``msgtype`` whose name ends with
            ``prefer_suffix`` (a bag of Images also holds ground truth, masks...), else the first.

    Raises:
        SourceUnavailableError: not a readable bag, or no such topic (names the bag and shows
            what it has).
    """

    def __init__(
        self, path: str | Path, msgtype: str, *, topic: str | None = None,
        prefer_suffix: str = "",
    ) -> None:
        self.path = Path(path)
        self.msgtype = msgtype
        self.topic = topic
        self.prefer_suffix = prefer_suffix
        self.bad_messages = 0
        #: set by the replay to drop messages as a faulty camera or link would
        self.faults: FaultInjector | None = None
        self._reader: AnyReader | None = None
        self._messages: Iterator[Any] | None = None
        self._lookahead: tuple[int, Any] | None = None
        self._connection: Any = None
        self.rewind()
        if self._lookahead is None:
            self.close()
            msg = f"bag {str(self.path)!r} has no readable {msgtype} message on {self.topic!r}"
            raise SourceUnavailableError(msg)

    def rewind(self) -> None:
        """Start over at the first message.

        The bag is opened once and kept open: a loop only starts a new pass over its messages
        (re-opening it on every pass of a short recording grew the process by ~50 KB a pass).
        """
        if self._reader is not None and self._connection is not None:
            self._messages = self._reader.messages(connections=[self._connection])
            self._lookahead = self._read()
            return
        self.close()
        try:
            reader = open_bag(self.path)
        except BagError as err:
            raise SourceUnavailableError(str(err)) from err
        self._reader = reader
        connections = [
            c for c in reader.connections
            if c.msgtype == self.msgtype and (self.topic is None or c.topic == self.topic)
        ]
        if not connections:
            found = sorted({(c.topic, c.msgtype) for c in reader.connections})
            self.close()
            msg = (
                f"bag {str(self.path)!r} has no {self.msgtype} on "
                f"{self.topic or 'any topic'}; it has {found!r}"
            )
            raise SourceUnavailableError(msg)
        preferred = [c for c in connections if c.topic.endswith(self.prefer_suffix)]
        connections = preferred or connections
        self.topic = connections[0].topic
        self.start_ns = int(reader.start_time)
        self.end_ns = int(reader.end_time)
        self._connection = connections[0]
        self._messages = reader.messages(connections=[self._connection])
        self._lookahead = self._read()

    def _read(self) -> tuple[int, Any] | None:
        while self._messages is not None:
            try:
                item = next(self._messages, None)
            except Exception as err:  # a damaged chunk or a truncated file ends this pass
                LOGGER.error("cannot read bag %r past here: %s", str(self.path), err)
                self.bad_messages += 1
                return None
            if item is None:
                return None
            connection, bag_ns, raw = item
            if self.faults is not None and self.faults.drops(bag_ns):
                continue
            try:
                return int(bag_ns), self._reader.deserialize(raw, connection.msgtype)
            except Exception as err:  # one bad message (another definition version, damage)
                self.bad_messages += 1
                LOGGER.warning(
                    "skipping a %s on %s of bag %r: %s",
                    connection.msgtype, connection.topic, str(self.path), err,
                )
        return None

    def peek_ns(self) -> int | None:
        """Bag time of the next message, without taking it."""
        return None if self._lookahead is None else self._lookahead[0]

    def peek(self) -> Any | None:
        """The next message, without taking it."""
        return None if self._lookahead is None else self._lookahead[1]

    def take(self) -> tuple[int, Any] | None:
        item = self._lookahead
        if item is not None:
            self._lookahead = self._read()
        return item

    def close(self) -> None:
        self._messages = None
        self._lookahead = None
        # forgotten before it is closed: a stop signal landing inside close() must not leave a
        # half-closed reader for the node's shutdown to close again (rosbags raises then)
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()


class _BagReplay:
    """What both bag sources share: the reader, the clock, loops and the end."""

    def __init__(
        self, path: str | Path, msgtype: str, *, topic: str | None, pacing: str, rate: float,
        epoch_ns: int, loop: bool, prefer_suffix: str = "", faults: ReplayFaults | None = None,
    ) -> None:
        self.reader = BagTopicReader(path, msgtype, topic=topic, prefer_suffix=prefer_suffix)
        if faults is not None and faults.any:
            self.reader.faults = FaultInjector(faults, self.reader.start_ns)
            self.reader.rewind()  # the first message was read ahead before the faults were set
        self.topic = self.reader.topic
        self.clock = ReplayClock(
            pacing, start_ns=self.reader.start_ns, end_ns=self.reader.end_ns, rate=rate,
            epoch_ns=epoch_ns, loop=loop,
        )
        self.loops = 0
        self._pass = 0
        self._closed = False

    @property
    def pacing(self) -> ReplayPacing:
        return self.clock.pacing

    @property
    def loop(self) -> bool:
        return self.clock.loop

    @property
    def finished(self) -> bool:
        """Closed, or every message sent and no loop to start over."""
        return self._closed or (self.reader.peek_ns() is None and not self.loop)

    def _start_next_pass(self) -> bool:
        """Rewind for the next pass of a loop; False when there is none."""
        if not self.loop or self._closed:
            return False
        self.loops += 1
        self._pass += 1
        self.reader.rewind()
        return self.reader.peek_ns() is not None

    def status_values(self) -> dict[str, Any]:
        values = {
            "replay_pacing": self.pacing.value,
            "replay_rate": self.clock.rate,
            "replay_loops": self.loops,
            "replay_finished": self.finished,
            "bad_messages": self.reader.bad_messages,
        }
        if self.reader.faults is not None:
            values.update(self.reader.faults.status_values())
        return values

    def close(self) -> None:
        self._closed = True
        self.reader.close()


class BagEventSource(_BagReplay):
    """EventPackets of one topic, released by bag time, with their recorded stamps.

    ``lockstep`` replays follow the playhead given to :meth:`follow` (the ``/clock`` of the
    frame driver); a playhead that moves backwards means the frame driver started a new pass.
    """

    def __init__(
        self, path: str | Path, *, topic: str | None = None, pacing: str = "realtime",
        rate: float = 1.0, epoch_ns: int = 0, loop: bool = False,
        max_packets_per_read: int = 64, faults: ReplayFaults | None = None,
    ) -> None:
        super().__init__(
            path, EVENT_PACKET_MSGTYPE, topic=topic, pacing=pacing, rate=rate,
            epoch_ns=epoch_ns, loop=loop, faults=faults,
        )
        first = self.reader.peek()
        try:
            self.encoding = str(first.encoding)
            self.width, self.height = int(first.width), int(first.height)
        except AttributeError as err:
            self.close()
            msg = f"bag {str(path)!r}: {self.topic} is not a known EventPacket version: {err}"
            raise SourceUnavailableError(msg) from err
        self.max_packets_per_read = max(1, int(max_packets_per_read))
        self.lag_ns = 0
        self._followed_ns: int | None = None
        self._finish_pass = False  # lockstep: the frame driver looped; send the rest first

    def follow(self, playhead_ns: int) -> None:
        """Lockstep: the frame driver's playhead (from ``/clock``)."""
        if self._followed_ns is not None and playhead_ns < self._followed_ns:
            self._finish_pass = self.loop
        self._followed_ns = int(playhead_ns)
        self.clock.advance_to(playhead_ns)

    def read(self, now_ns: int) -> list[RawEventPacket]:
        """What became due at wall time ``now_ns``, as one packet (or none).

        The recorded packets due since the last poll (at most ``max_packets_per_read``) go out
        as one EventPacket: their bytes concatenated, the first one's stamp and time base. EVT3
        and EVT2 are byte streams whose state carries across packets, so the decoded events are
        exactly the recorded ones; a live driver's packets grow the same way when it is polled
        late, and a consumer serviced once per executor cycle keeps up.
        """
        packets: list[RawEventPacket] = []
        limit = 1 if self.pacing is ReplayPacing.FAST else self.max_packets_per_read
        while len(packets) < limit and not self._closed:
            due = self._due_ns(now_ns)
            next_ns = self.reader.peek_ns()
            if next_ns is None:
                # a new pass starts with a packet of its own (its times restart)
                if not packets and self._pass_over(now_ns) and self._start_next_pass():
                    continue
                break
            if due is not None and next_ns > due:
                break
            _, msg = self.reader.take()
            packet = self._packet(msg)
            if packet is not None:
                packets.append(packet)
        playhead = self._due_ns(now_ns)
        next_ns = self.reader.peek_ns()
        self.lag_ns = 0 if playhead is None or next_ns is None else max(0, playhead - next_ns)
        if len(packets) <= 1:
            return packets
        first = packets[0]
        return [RawEventPacket(b"".join(p.data for p in packets), first.stamp_ns,
                               first.time_base_ns)]

    def _due_ns(self, now_ns: int) -> int | None:
        """Newest bag time to release now; None = anything (fast, or a pass to finish)."""
        if self.pacing is ReplayPacing.FAST:
            return None
        if self.pacing is ReplayPacing.LOCKSTEP:
            return None if self._finish_pass else self.clock.playhead_ns(now_ns)
        if self.clock.pass_index(now_ns) > self._pass:
            return None  # the playhead is in a later pass: this one is overdue entirely
        return self.clock.playhead_ns(now_ns)

    def _pass_over(self, now_ns: int) -> bool:
        if self.pacing is ReplayPacing.LOCKSTEP:
            over, self._finish_pass = self._finish_pass, False
            return over
        if self.pacing is ReplayPacing.REALTIME:
            return self.clock.pass_index(now_ns) > self._pass
        return True

    def _packet(self, msg: Any) -> RawEventPacket | None:
        try:
            data = np.asarray(msg.events, dtype=np.uint8).tobytes()
            return RawEventPacket(data, header_stamp_ns(msg), int(msg.time_base))
        except (AttributeError, TypeError, ValueError) as err:
            self.reader.bad_messages += 1
            LOGGER.warning("skipping an EventPacket of %r: %s", str(self.reader.path), err)
            return None

    def status_values(self) -> dict[str, Any]:
        return {**super().status_values(), "replay_lag_ms": round(self.lag_ns / 1e6, 3)}


class BagFrameSource(_BagReplay):
    """Images of one topic, newest-only like the camera, with their recorded stamps.

    ``lockstep``: one frame per :meth:`release_next`; the node calls it when the previous
    frame's mask came back (or its wait timed out).
    """

    def __init__(
        self, path: str | Path, *, topic: str | None = None, pacing: str = "realtime",
        rate: float = 1.0, epoch_ns: int = 0, loop: bool = False,
        faults: ReplayFaults | None = None,
    ) -> None:
        super().__init__(
            path, IMAGE_MSGTYPE, topic=topic, pacing=pacing, rate=rate, epoch_ns=epoch_ns,
            loop=loop, prefer_suffix="image_raw", faults=faults,
        )
        first = self.reader.peek()
        self.width, self.height = int(first.width), int(first.height)
        self.skipped_frames = 0
        self.bad_frames = 0
        self._index = 0
        self._gate_open = True

    def release_next(self) -> None:
        """Lockstep: let the next frame go."""
        self._gate_open = True

    @property
    def waiting(self) -> bool:
        """Lockstep: a frame is out and the next one waits for :meth:`release_next`."""
        return not self._gate_open

    def read(self, now_ns: int) -> list[CapturedFrame]:
        """The newest frame due at wall time ``now_ns`` (at most one); older due ones skipped."""
        if self._closed:
            return []
        if self.reader.peek_ns() is None:
            if self.pacing is ReplayPacing.LOCKSTEP and self._gate_open and not self.loop:
                # the last mask came back: let the other streams play out to the end
                self.clock.advance_to(self.clock.end_ns)
            if not self._pass_over(now_ns) or not self._start_next_pass():
                return []
        if self.pacing is ReplayPacing.LOCKSTEP:
            if not self._gate_open:
                return []
            bag_ns, msg = self.reader.take()
            self.clock.advance_to(bag_ns)
            frames = self._frame(msg)
            self._gate_open = not frames  # a bad frame brings no mask to wait for
            return frames
        if self.pacing is ReplayPacing.FAST:
            return self._frame(self.reader.take()[1])
        playhead = self.clock.playhead_ns(now_ns)
        if self.clock.pass_index(now_ns) > self._pass:
            playhead = None  # later pass: every remaining frame of this one is overdue
        chosen = None
        while (next_ns := self.reader.peek_ns()) is not None and (
            playhead is None or next_ns <= playhead
        ):
            if chosen is not None:
                self.skipped_frames += 1
                self._index += 1  # frame ids count the recording's frames, sent or not
            chosen = self.reader.take()[1]
        return [] if chosen is None else self._frame(chosen)

    def _pass_over(self, now_ns: int) -> bool:
        if self.pacing is ReplayPacing.REALTIME:
            return self.clock.pass_index(now_ns) > self._pass
        return True

    def _frame(self, msg: Any) -> list[CapturedFrame]:
        index = self._index
        self._index += 1
        try:
            decoded = image_from_msg(msg)
        except (AttributeError, TypeError, ValueError):
            decoded = None
        if decoded is None:
            self.bad_frames += 1
            LOGGER.warning(
                "skipping image %d of %r: encoding %r, %sx%s, step %s is not supported",
                index, str(self.reader.path), getattr(msg, "encoding", None),
                getattr(msg, "width", None), getattr(msg, "height", None),
                getattr(msg, "step", None),
            )
            return []
        image, encoding = decoded
        return [CapturedFrame(header_stamp_ns(msg), image, index, 0, encoding=encoding)]

    def status_values(self) -> dict[str, Any]:
        values = super().status_values()
        values["bad_frames"] = self.bad_frames + values.pop("bad_messages")
        values["replay_waiting_for_mask"] = self.pacing is ReplayPacing.LOCKSTEP and self.waiting
        return values
