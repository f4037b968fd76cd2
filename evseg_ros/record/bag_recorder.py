"""Writing a recording: a bounded queue and one writer thread in front of ``rosbags``' writer.

Plain Python (no rclpy): :class:`~evseg_ros.nodes.recorder.RecorderNode` feeds it serialized
messages. See that module for the layout of a recording (one complete rosbag2 bag per split) and
the drop counters (nothing is dropped silently).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rosbags.interfaces import Qos
from rosbags.rosbag2 import StoragePlugin, Writer

from evseg_ros.events.bag import event_packet_typestore

logger = logging.getLogger(__name__)

STORAGE_PLUGINS = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}

class RecorderError(ValueError):
    """A recording cannot be created, or a topic cannot be recorded."""


@dataclass(frozen=True)
class SplitPolicy:
    """When to start the next bag of a recording (0 = never for that criterion)."""

    size_bytes: int = 0  # serialized message bytes per bag
    duration_ns: int = 0  # receive-time span per bag

    def __post_init__(self) -> None:
        if self.size_bytes < 0 or self.duration_ns < 0:
            msg = (
                f"split limits must be >= 0, got size_bytes={self.size_bytes!r}, "
                f"duration_ns={self.duration_ns!r}"
            )
            raise ValueError(msg)


@dataclass
class TopicCounts:
    """What happened to one topic's messages."""

    msgtype: str
    received: int = 0  # handed to the recorder by the subscription
    recorded: int = 0  # written to a bag
    bytes: int = 0  # serialized bytes written
    dropped_queue_full: int = 0  # the writer's queue was full (or closing) on arrival
    dropped_write_error: int = 0  # writing raised
    lost_in_transport: int = 0  # reported lost by the middleware, never received

    @property
    def dropped(self) -> int:
        return self.dropped_queue_full + self.dropped_write_error + self.lost_in_transport


@dataclass
class RecordedFile:
    """One split: a complete rosbag2 bag folder."""

    path: Path
    messages: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class RecordingSummary:
    """Counts of a recording, per topic and per file (a snapshot)."""

    output_dir: Path
    storage: str
    topics: dict[str, TopicCounts]
    files: tuple[RecordedFile, ...]
    not_recorded: dict[str, str] = field(default_factory=dict)  # topic -> reason
    error: str = ""  # the first error that lost data (writer failure), if any

    @property
    def recorded(self) -> int:
        return sum(c.recorded for c in self.topics.values())

    @property
    def dropped(self) -> int:
        return sum(c.dropped for c in self.topics.values())

    @property
    def bytes(self) -> int:
        return sum(c.bytes for c in self.topics.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "output_dir": str(self.output_dir),
            "storage": self.storage,
            "messages_recorded": self.recorded,
            "messages_dropped": self.dropped,
            "bytes": self.bytes,
            "topics": {
                topic: {**dataclasses.asdict(counts), "dropped": counts.dropped}
                for topic, counts in self.topics.items()
            },
            "files": [
                {"path": str(f.path), "messages": f.messages, "bytes": f.bytes}
                for f in self.files
            ],
            "not_recorded": dict(self.not_recorded),
            "error": self.error,
        }


def format_summary(summary: RecordingSummary) -> str:
    """Human-readable summary: messages per topic, drops, files."""
    lines = [
        f"recorded {summary.recorded} messages ({summary.bytes / 1e6:.1f} MB) in "
        f"{len(summary.files)} file(s) under {summary.output_dir}, dropped {summary.dropped}"
    ]
    width = max([len(t) for t in summary.topics] + [5])
    lines.append(
        f"  {'topic':<{width}}  {'recorded':>9}  {'queue_full':>10}  {'write_err':>9}  "
        f"{'lost':>6}  {'MB':>9}  type"
    )
    for topic, c in sorted(summary.topics.items()):
        lines.append(
            f"  {topic:<{width}}  {c.recorded:>9}  {c.dropped_queue_full:>10}  "
            f"{c.dropped_write_error:>9}  {c.lost_in_transport:>6}  {c.bytes / 1e6:>9.3f}  "
            f"{c.msgtype}"
        )
    for topic, reason in sorted(summary.not_recorded.items()):
        lines.append(f"  not recorded: {topic}: {reason}")
    lines.extend(
        f"  file {f.path}: {f.messages} messages, {f.bytes / 1e6:.3f} MB" for f in summary.files
    )
    if summary.error:
        lines.append(f"  ERROR: {summary.error}")
    return "\n".join(lines)


def recording_bags(output_dir: str | Path) -> list[Path]:
    """The split bags of a recording folder, in recording order (``<name>_0``, ``<name>_1``...).

    ``AnyReader(recording_bags(DIR))`` reads a whole recording as one.
    """
    root = Path(output_dir)
    prefix = f"{root.absolute().name}_"
    splits = []
    for path in root.iterdir() if root.is_dir() else ():
        index = path.name.removeprefix(prefix)
        if path.name.startswith(prefix) and index.isdigit() and (path / "metadata.yaml").is_file():
            splits.append((int(index), path))
    return [path for _, path in sorted(splits)]


_STOP = object()


class BagRecorder:
    """Serialized messages in, rosbag2 bags out: a bounded queue and one writer thread.

    :meth:`offer` never blocks (it is called from subscription callbacks); :meth:`close` lets the
    writer drain the queue and closes the last bag. Plain Python, no ROS: the node feeds it.
    """

    def __init__(
        self,
        output_dir: str | Path,
        *,
        storage: str = "mcap",
        split: SplitPolicy = SplitPolicy(),
        queue_length: int = 1000,
    ) -> None:
        """Create ``output_dir`` and its first bag, and start the writer thread.

        Raises:
            RecorderError: ``output_dir`` exists already, or the first bag cannot be created.
            ValueError: unknown ``storage`` or ``queue_length`` < 1.
        """
        if storage not in STORAGE_PLUGINS:
            msg = f"storage {storage!r} is not one of {tuple(STORAGE_PLUGINS)!r}"
            raise ValueError(msg)
        if queue_length < 1:
            msg = f"queue_length must be >= 1, got {queue_length!r}"
            raise ValueError(msg)
        self.output_dir = Path(output_dir)
        self.storage = storage
        self.split = split
        self.name = self.output_dir.absolute().name
        self.typestore = event_packet_typestore()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_length)
        self._lock = threading.Lock()  # guards everything below that both threads touch
        self._topics: dict[str, tuple[str, tuple[Qos, ...]]] = {}
        self._counts: dict[str, TopicCounts] = {}
        self._not_recorded: dict[str, str] = {}
        self._files: list[RecordedFile] = []
        self._accepting = True
        self._closed = False
        self._summary: RecordingSummary | None = None
        self.error = ""
        # writer-thread state
        self._writer: Writer | None = None
        self._connections: dict[str, Any] = {}
        self._split_start_ns = 0
        self._failed_topics: set[str] = set()
        try:
            self.output_dir.mkdir(parents=True)
        except FileExistsError:
            msg = f"refusing to overwrite existing output {str(self.output_dir)!r}"
            raise RecorderError(msg) from None
        except OSError as err:
            msg = f"cannot create output {str(self.output_dir)!r}: {err}"
            raise RecorderError(msg) from err
        # The writer thread opens the first bag (sqlite3 connections belong to the thread that
        # made them); an unwritable place fails here, not at the first message.
        self._opened = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bag writer", daemon=True)
        self._thread.start()
        self._opened.wait()
        if self.error:
            self._thread.join()
            shutil.rmtree(self.output_dir, ignore_errors=True)  # created just above: ours
            msg = f"cannot create a bag in {str(self.output_dir)!r}: {self.error}"
            raise RecorderError(msg)

    # -- called from the node's thread -------------------------------------------------------

    def register_topic(
        self, topic: str, msgtype: str, offered_qos: Sequence[Qos] = ()
    ) -> None:
        """Announce a topic before offering its messages.

        Raises:
            RecorderError: the typestore has no definition of ``msgtype`` (the bag needs it).
        """
        if msgtype not in self.typestore.fielddefs:
            msg = f"no message definition for {msgtype!r} (topic {topic!r}) in the typestore"
            raise RecorderError(msg)
        with self._lock:
            self._topics[topic] = (msgtype, tuple(offered_qos))
            self._counts.setdefault(topic, TopicCounts(msgtype))
            self._not_recorded.pop(topic, None)

    def note_not_recorded(self, topic: str, reason: str) -> None:
        """Keep why a requested topic is not being recorded (for diagnostics and summary)."""
        with self._lock:
            self._not_recorded[topic] = reason

    def offer(self, topic: str, log_time_ns: int, data: bytes) -> bool:
        """Enqueue one serialized message; False (and counted) when the queue is full."""
        with self._lock:
            counts = self._counts[topic]
            counts.received += 1
            if self._accepting:
                try:
                    self._queue.put_nowait((topic, log_time_ns, data))
                    return True
                except queue.Full:
                    pass
            counts.dropped_queue_full += 1
            return False

    def add_lost(self, topic: str, count: int) -> None:
        """Count messages the middleware reports lost on ``topic``."""
        with self._lock:
            self._counts[topic].lost_in_transport += int(count)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def queue_fill(self) -> int:
        return self._queue.qsize()

    @property
    def queue_length(self) -> int:
        return self._queue.maxsize

    def summary(self) -> RecordingSummary:
        with self._lock:
            return RecordingSummary(
                output_dir=self.output_dir,
                storage=self.storage,
                topics={t: dataclasses.replace(c) for t, c in self._counts.items()},
                files=tuple(dataclasses.replace(f) for f in self._files),
                not_recorded=dict(self._not_recorded),
                error=self.error,
            )

    def close(self) -> RecordingSummary:
        """Stop accepting, write what is queued, close the last bag, write ``summary.json``.

        Idempotent; returns the final summary.
        """
        with self._lock:
            if self._closed:
                assert self._summary is not None
                return self._summary
            self._accepting = False
        while self._thread.is_alive():  # the writer drains, so a full queue frees up
            try:
                self._queue.put(_STOP, timeout=0.2)
                break
            except queue.Full:
                continue
        self._thread.join()
        summary = self.summary()
        try:
            (self.output_dir / "summary.json").write_text(
                json.dumps(summary.to_dict(), indent=2) + "\n"
            )
        except OSError as err:
            logger.error("cannot write %s: %s", self.output_dir / "summary.json", err)
        with self._lock:
            self._closed = True
            self._summary = summary
        return summary

    # -- writer thread -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._start_split()
        except Exception as err:
            with self._lock:
                self.error = self.error or str(err)
            return
        finally:
            self._opened.set()
        try:
            while (item := self._queue.get()) is not _STOP:
                self._write(*item)
        finally:
            self._finish_split()

    def _write(self, topic: str, log_time_ns: int, data: bytes) -> None:
        size = len(data)
        try:
            if self._writer is not None and self._split_due(log_time_ns, size):
                self._finish_split()
            if self._writer is None:
                if self.error:
                    msg = f"no bag to write to after an earlier failure ({self.error})"
                    raise RecorderError(msg)
                self._start_split()
            assert self._writer is not None
            connection = self._connections.get(topic) or self._add_connection(topic)
            self._writer.write(connection, log_time_ns, data)
        except Exception as err:  # disk full, unwritable, bad type: count it, keep going
            with self._lock:
                self._counts[topic].dropped_write_error += 1
            if topic not in self._failed_topics:  # log the first failure per topic
                self._failed_topics.add(topic)
                logger.error("writing %s to %s failed: %s", topic, self.output_dir, err)
            return
        with self._lock:
            counts = self._counts[topic]
            counts.recorded += 1
            counts.bytes += size
            current = self._files[-1]
            if current.messages == 0:
                self._split_start_ns = log_time_ns
            current.messages += 1
            current.bytes += size

    def _split_due(self, log_time_ns: int, size: int) -> bool:
        current = self._files[-1]
        if current.messages == 0:  # never leave an empty bag behind
            return False
        if self.split.size_bytes and current.bytes + size > self.split.size_bytes:
            return True
        return bool(
            self.split.duration_ns and log_time_ns - self._split_start_ns >= self.split.duration_ns
        )

    def _start_split(self) -> None:
        path = self.output_dir / f"{self.name}_{len(self._files)}"
        writer = Writer(path, version=9, storage_plugin=STORAGE_PLUGINS[self.storage])
        try:
            writer.open()
        except Exception as err:
            with self._lock:
                self.error = f"cannot open bag {str(path)!r}: {err}"
            raise
        self._writer = writer
        self._connections = {}
        with self._lock:
            self._files.append(RecordedFile(path))
            topics = list(self._topics)
        for topic in topics:
            self._add_connection(topic)

    def _add_connection(self, topic: str) -> Any:
        assert self._writer is not None
        with self._lock:
            msgtype, offered_qos = self._topics[topic]
        connection = self._writer.add_connection(
            topic, msgtype, typestore=self.typestore, offered_qos_profiles=offered_qos
        )
        self._connections[topic] = connection
        return connection

    def _finish_split(self) -> None:
        writer = self._writer
        if writer is None:
            return
        try:
            with self._lock:  # every topic is listed in every bag, with 0 messages if none came
                missing = [t for t in self._topics if t not in self._connections]
            for topic in missing:
                self._add_connection(topic)
            writer.close()
        except Exception as err:
            with self._lock:
                self.error = self.error or f"closing bag {str(writer.path)!r} failed: {err}"
            logger.error("closing bag %s failed: %s", writer.path, err)
            try:
                writer.abort()
            except Exception as abort_err:
                logger.error("aborting bag %s failed: %s", writer.path, abort_err)
        finally:
            self._writer = None


