"""Recorder node: the rig's topics to rosbag2 (MCAP or sqlite3), what a vehicle keeps from a drive.

Subscriptions are raw (the serialized CDR bytes as they arrived: nothing is deserialised) and
only enqueue into one bounded queue; a writer thread writes with ``rosbags``' rosbag2 writer
(format version 9, message definitions from the ``rosbags`` typestore plus EventPacket). The bag
time of a message (its MCAP log time) is its receive time on the node's clock, in ns (sim time
when ``use_sim_time`` is set); header stamps are inside the messages, untouched.

Layout: the recording is a folder ``DIR`` holding one complete rosbag2 bag per split,
``DIR/<name>_0/``, ``DIR/<name>_1/``, ... (``<name>`` is DIR's own name; each bag folder holds
``metadata.yaml`` and ``<name>_<i>.mcap`` or ``.db3``), plus ``DIR/summary.json`` written at
close. Every finished split is a bag of its own, so a drive cut short (power loss) keeps all
splits but the last; :func:`recording_bags` lists them in order and ``AnyReader`` reads them
together. A new split starts before a message that would take the current one past
``split_size_mb`` of serialized message bytes (MB = 10**6 bytes; the MCAP index adds a little),
or whose receive time is ``split_duration_s`` or more after the split's first message. A split
is never empty: a single message larger than the limit gets a split of its own.

Nothing is dropped silently. Per topic: ``dropped_queue_full`` (the queue was full when the
message arrived), ``dropped_write_error`` (writing it raised) and ``lost_in_transport`` (samples
the middleware reports lost before they reached the node). For every topic
``received == recorded + dropped_queue_full + dropped_write_error`` once the recorder is closed.
The counts are in ``/diagnostics``, in the summary the node logs at close and in
``summary.json``.
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

from rclpy.event_handler import SubscriptionEventCallbacks, UnsupportedEventTypeError
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)
from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)

from evseg_ros.nodes.diagnostics import ERROR, OK, WARN, DiagnosticsPublisher
from evseg_ros.nodes.params import Param, declare_parameters
from evseg_ros.nodes.qos import DIAGNOSTICS_QOS, EVENTS_QOS, FRAMES_QOS, RESULTS_QOS
from evseg_ros.nodes.spin import run_node
from evseg_ros.record.bag_recorder import (
    STORAGE_PLUGINS,
    BagRecorder,
    RecorderError,
    RecordingSummary,
    SplitPolicy,
    format_summary,
)

logger = logging.getLogger(__name__)

#: The rig's inputs and results: what is recorded unless ``topics`` says otherwise.
DEFAULT_TOPICS = (
    "events",
    "frame/image_raw",
    "frame/camera_info",
    "segmentation/mask",
    "segmentation/overlay",
    "/diagnostics",
)

#: Topics of the rig whose type and publisher QoS are known without asking the graph, so they
#: are subscribed at start, before their publishers are up. Relative names are in the node's
#: namespace. Other topics (``/clock`` too: players offer it reliable, simulators often best
#: effort) are subscribed once a publisher shows their type, with a QoS matching every publisher.
KNOWN_TOPICS: dict[str, tuple[str, QoSProfile]] = {
    "events": ("event_camera_msgs/msg/EventPacket", EVENTS_QOS),
    "frame/image_raw": ("sensor_msgs/msg/Image", FRAMES_QOS),
    "frame/camera_info": ("sensor_msgs/msg/CameraInfo", FRAMES_QOS),
    "frame/ground_truth": ("sensor_msgs/msg/Image", FRAMES_QOS),
    "segmentation/mask": ("sensor_msgs/msg/Image", RESULTS_QOS),
    "segmentation/overlay": ("sensor_msgs/msg/Image", RESULTS_QOS),
    "event_frame": ("sensor_msgs/msg/Image", RESULTS_QOS),
    "/diagnostics": ("diagnostic_msgs/msg/DiagnosticArray", DIAGNOSTICS_QOS),
}

#: History depth of the recorder's subscriptions (at least the publisher's): the executor only
#: enqueues, so this is slack for a stalled executor, not a second buffer.
MIN_SUBSCRIPTION_DEPTH = 100
#: How often topics not in KNOWN_TOPICS are looked up in the graph until a publisher appears.
DISCOVERY_PERIOD_S = 0.5

PARAMS: tuple[Param, ...] = (
    Param(
        "output_dir", "",
        "folder to create for the recording (must not exist); empty = evseg_<date>-<time> here",
    ),
    Param(
        "topics", list(DEFAULT_TOPICS),
        "topics to record; relative names resolve in the node's namespace",
    ),
    Param("storage", "mcap", "rosbag2 storage format", tuple(STORAGE_PLUGINS)),
    Param(
        "split_size_mb", 0.0,
        "start a new bag before one would exceed this many MB of messages (0 = no split)",
    ),
    Param(
        "split_duration_s", 0.0,
        "start a new bag when one spans this many seconds of receive time (0 = no split)",
    ),
    Param(
        "queue_length", 1000,
        "messages waiting for the writer thread at most; beyond, messages are dropped (counted)",
    ),
)


def bag_qos(profile: QoSProfile) -> Qos:
    """An rclpy QoS profile as rosbags writes it into the bag's offered_qos_profiles."""

    def span(duration: Any) -> QosTime:
        return QosTime(*divmod(int(duration.nanoseconds), 1_000_000_000))

    return Qos(
        history=QosHistory(int(profile.history)),
        depth=int(profile.depth),
        reliability=QosReliability(int(profile.reliability)),
        durability=QosDurability(int(profile.durability)),
        deadline=span(profile.deadline),
        lifespan=span(profile.lifespan),
        liveliness=QosLiveliness(int(profile.liveliness)),
        liveliness_lease_duration=span(profile.liveliness_lease_duration),
        avoid_ros_namespace_conventions=bool(profile.avoid_ros_namespace_conventions),
    )


def subscription_qos(offered: Sequence[QoSProfile]) -> QoSProfile:
    """A subscription profile compatible with every offered one (like ``ros2 bag record``).

    Reliable only if every publisher is; transient local only if every publisher is.
    """
    reliable = all(p.reliability == ReliabilityPolicy.RELIABLE for p in offered)
    latched = all(p.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in offered)
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=max([MIN_SUBSCRIPTION_DEPTH, *(p.depth for p in offered)]),
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


def message_class(msgtype: str) -> type:
    """The rclpy message class of ``pkg/msg/Name``.

    Raises:
        RecorderError: the type is malformed or its Python package is not installed.
    """
    package, kind, name = (msgtype.split("/") + ["", ""])[:3]
    try:
        if kind != "msg" or not name:
            raise ValueError(msgtype)
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError, ValueError) as err:
        msg = f"message type {msgtype!r} is not available to rclpy here: {err}"
        raise RecorderError(msg) from err


class RecorderNode(Node):
    """Subscribe raw to the configured topics and hand every message to a :class:`BagRecorder`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("recorder", **kwargs)
        self.params = declare_parameters(self, PARAMS)
        split_size_mb = float(self.params["split_size_mb"])
        split_duration_s = float(self.params["split_duration_s"])
        if split_size_mb < 0 or split_duration_s < 0:
            msg = (
                f"split_size_mb = {split_size_mb!r} and split_duration_s = {split_duration_s!r} "
                "must both be >= 0"
            )
            raise ValueError(msg)
        output_dir = self.params["output_dir"] or time.strftime("evseg_%Y%m%d-%H%M%S")
        self.core = BagRecorder(
            output_dir,
            storage=self.params["storage"],
            split=SplitPolicy(
                size_bytes=round(split_size_mb * 1e6),
                duration_ns=round(split_duration_s * 1e9),
            ),
            queue_length=int(self.params["queue_length"]),
        )
        self._recorded: dict[str, Any] = {}  # resolved topic -> subscription
        self._waiting: list[str] = []  # resolved topics whose type comes from the graph
        try:
            known = {self.resolve_topic_name(name): spec for name, spec in KNOWN_TOPICS.items()}
            for name in self.params["topics"]:
                topic = self.resolve_topic_name(name)
                if topic in self._recorded or topic in self._waiting:
                    continue
                if topic in known:
                    msgtype, profile = known[topic]
                    self._subscribe(topic, msgtype, profile, [profile])
                else:
                    self._waiting.append(topic)
                    self.core.note_not_recorded(topic, "waiting for a publisher")
            self._discovery_timer = self.create_timer(DISCOVERY_PERIOD_S, self._discover)
            self.diagnostics = DiagnosticsPublisher(self, self._diagnostics)
        except BaseException:
            self.core.close()
            raise
        self.get_logger().info(
            f"recording {', '.join(self._recorded) or 'nothing yet'} to {self.core.output_dir}"
            + (f"; waiting for publishers on {', '.join(self._waiting)}" if self._waiting else "")
        )

    def _subscribe(
        self, topic: str, msgtype: str, profile: QoSProfile, offered: Sequence[QoSProfile]
    ) -> None:
        """Raises RecorderError when the type is unknown to rclpy or to the typestore."""
        cls = message_class(msgtype)
        self.core.register_topic(topic, msgtype, [bag_qos(p) for p in offered])
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=max(profile.depth, MIN_SUBSCRIPTION_DEPTH),
            reliability=profile.reliability,
            durability=profile.durability,
        )
        callback = partial(self._on_message, topic)
        lost = SubscriptionEventCallbacks(message_lost=partial(self._on_lost, topic))
        try:
            sub = self.create_subscription(
                cls, topic, callback, qos, raw=True, event_callbacks=lost
            )
        except UnsupportedEventTypeError:  # a middleware without loss reports
            sub = self.create_subscription(cls, topic, callback, qos, raw=True)
        self._recorded[topic] = sub

    def _on_message(self, topic: str, data: bytes) -> None:
        self.core.offer(topic, self.get_clock().now().nanoseconds, data)

    def _on_lost(self, topic: str, info: Any) -> None:
        self.core.add_lost(topic, info.total_count_change)

    def _discover(self) -> None:
        """Subscribe to waiting topics once the graph shows a publisher and its type."""
        if not self._waiting:
            return
        types = dict(self.get_topic_names_and_types())
        for topic in list(self._waiting):
            found = types.get(topic)
            if not found:
                continue
            publishers = self.get_publishers_info_by_topic(topic)
            if not publishers:  # only subscribers so far
                continue
            self._waiting.remove(topic)
            try:
                if len(found) != 1:
                    msg = f"published with several types {sorted(found)!r}"
                    raise RecorderError(msg)
                offered = [p.qos_profile for p in publishers]
                self._subscribe(topic, found[0], subscription_qos(offered), offered)
            except RecorderError as err:
                self.core.note_not_recorded(topic, str(err))
                self.get_logger().error(f"not recording {topic}: {err}")
                continue
            self.get_logger().info(f"recording {topic} ({found[0]})")

    def _diagnostics(self) -> tuple[bytes, str, dict[str, Any]]:
        summary = self.core.summary()
        values: dict[str, Any] = {
            "output_dir": str(summary.output_dir),
            "storage": summary.storage,
            "files": len(summary.files),
            "current_file": str(summary.files[-1].path) if summary.files else "",
            "bytes_written": summary.bytes,
            "messages_recorded": summary.recorded,
            "messages_dropped": summary.dropped,
            "queue_fill": f"{self.core.queue_fill}/{self.core.queue_length}",
        }
        for topic, counts in sorted(summary.topics.items()):
            values[f"{topic}: recorded"] = counts.recorded
            values[f"{topic}: bytes"] = counts.bytes
            values[f"{topic}: dropped_queue_full"] = counts.dropped_queue_full
            values[f"{topic}: dropped_write_error"] = counts.dropped_write_error
            values[f"{topic}: lost_in_transport"] = counts.lost_in_transport
        for topic, reason in sorted(summary.not_recorded.items()):
            values[f"{topic}: not_recorded"] = reason
        text = f"{summary.recorded} messages recorded, {summary.dropped} dropped"
        if summary.error:
            return ERROR, f"{summary.error}; {text}", values
        if summary.dropped or summary.not_recorded:
            return WARN, f"{text}; {len(summary.not_recorded)} topic(s) not recorded", values
        return OK, text, values

    def summary(self) -> RecordingSummary:
        return self.core.summary()

    def close(self) -> RecordingSummary:
        """Stop the subscriptions, let the writer drain, close the bag; idempotent."""
        for sub in self._recorded.values():
            self.destroy_subscription(sub)
        self._recorded.clear()
        self._discovery_timer.cancel()
        return self.core.close()

    def destroy_node(self) -> None:
        """Close the recording first (logging its summary unless :meth:`close` ran before)."""
        closed_before = self.core.closed
        summary = self.close()
        if not closed_before and self.context.ok():
            self.get_logger().info(format_summary(summary))
        elif not closed_before:  # after Ctrl-C / SIGTERM: rosout is gone with the context
            print(format_summary(summary), file=sys.stderr, flush=True)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(RecorderNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
