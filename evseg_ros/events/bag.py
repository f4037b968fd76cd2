"""EventPackets in rosbag2 recordings (sqlite3 or MCAP), read and written with ``rosbags``.

Also the one way this package opens a bag (:func:`open_bag`: every reader gets the EventPacket
type) and reads a message's header stamp.

Many event-camera bags (rosbag2 format 5 and older) carry no message definitions, so the
``event_camera_msgs/msg/EventPacket`` type is registered here from its definition instead of
relying on the bag or on an installed ROS workspace.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

EVENT_PACKET_MSGTYPE = "event_camera_msgs/msg/EventPacket"

#: Field list of event_camera_msgs/msg/EventPacket (the vendored .msg under scripts/interfaces
#: is the build source; a test keeps the two identical).
EVENT_PACKET_DEFINITION = """\
std_msgs/Header header
uint32 height
uint32 width
uint64 seq
uint64 time_base
string encoding
bool is_bigendian
uint8[] events
"""


class BagError(ValueError):
    """A bag cannot be opened or holds no event packets.

    ``reason`` is what went wrong without the bag's name, for callers that name it their way.
    """

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


def open_bag(path: str | Path) -> AnyReader:
    """An opened ``AnyReader`` with the standard ROS 2 types plus EventPacket.

    Raises:
        BagError: not a readable bag (names it; a truncated MCAP says how to repair it).
    """
    try:
        reader = AnyReader([Path(path)], default_typestore=event_packet_typestore())
        reader.open()
    except Exception as err:  # rosbags raises several unrelated types for unreadable bags
        reason = str(err)
        if "magic" in reason.lower() or "truncat" in reason.lower():
            reason += " (truncated: a recording cut off mid-write; `mcap recover` repairs an MCAP)"
        raise BagError(f"cannot open bag {str(path)!r}: {reason}", reason=reason) from err
    return reader


def header_stamp_ns(msg: Any) -> int:
    """Header stamp in ns of a deserialised message, or of a bare ``std_msgs/Header``."""
    stamp = msg.stamp if hasattr(msg, "stamp") else msg.header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def event_packet_typestore() -> Any:
    """A typestore with the standard ROS 2 types plus EventPacket."""
    typestore = get_typestore(Stores.LATEST)
    typestore.register(get_types_from_msg(EVENT_PACKET_DEFINITION, EVENT_PACKET_MSGTYPE))
    return typestore


def read_event_packets(
    path: str | Path, *, topic: str | None = None
) -> Iterator[tuple[str, int, Any]]:
    """Yield ``(topic, bag_time_ns, EventPacket)`` in bag order.

    Args:
        path: rosbag2 folder (with metadata.yaml), sqlite3 or MCAP.
        topic: one topic to read; default every EventPacket topic.

    Raises:
        BagError: the path is not a readable bag, or the topic holds no EventPackets.
    """
    reader = open_bag(path)
    try:
        connections = [
            c for c in reader.connections
            if c.msgtype == EVENT_PACKET_MSGTYPE and (topic is None or c.topic == topic)
        ]
        if not connections:
            found = sorted({(c.topic, c.msgtype) for c in reader.connections})
            msg = f"bag {str(path)!r} has no {EVENT_PACKET_MSGTYPE} on {topic or 'any topic'}; "
            msg += f"it has {found!r}"
            raise BagError(msg)
        for connection, timestamp, raw in reader.messages(connections=connections):
            yield connection.topic, timestamp, reader.deserialize(raw, connection.msgtype)
    finally:
        reader.close()


def write_event_packets(
    path: str | Path, packets: Iterable[tuple[int, Any]], *, topic: str = "/rig/events",
    storage: str = "mcap",
) -> None:
    """Write ``(bag_time_ns, EventPacket)`` pairs to a new rosbag2 folder at ``path``.

    ``packets`` are instances of the typestore's EventPacket class (see
    :func:`event_packet_typestore`). Refuses to overwrite an existing path.
    """
    typestore = event_packet_typestore()
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    if Path(path).exists():
        msg = f"refusing to overwrite existing bag {str(path)!r}"
        raise BagError(msg)
    with Writer(Path(path), version=9, storage_plugin=plugin) as writer:
        connection = writer.add_connection(topic, EVENT_PACKET_MSGTYPE, typestore=typestore)
        for timestamp, packet in packets:
            writer.write(
                connection, timestamp, typestore.serialize_cdr(packet, EVENT_PACKET_MSGTYPE)
            )
