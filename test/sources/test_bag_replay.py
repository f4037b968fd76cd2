"""Bag replays of both drivers: bag-time pacing on one shared clock, recorded stamps, loops."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from evseg_ros.events.evt3 import Evt3Decoder
from evseg_ros.sources import SourceUnavailableError
from evseg_ros.sources.bag_replay import BagEventSource, BagFrameSource
from evseg_ros.sources.replay_clock import ReplayClock

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
TRIGGER_BAG = DATA / "event_camera_codecs" / "test_data_evt3_trigger"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"recordings not found in {DATA}")
SECOND = 1_000_000_000
T0 = 50 * SECOND  # wall clock of the tests


def _drain(source, now_ns: int = SECOND, limit: int = 10_000):
    items = []
    for _ in range(limit):
        batch = source.read(now_ns)
        if not batch:
            break
        items += batch
    return items


def test_clock_maps_the_wall_clock_onto_bag_time_at_rate_and_loops():
    clock = ReplayClock("realtime", start_ns=1000 * SECOND, end_ns=1002 * SECOND, rate=0.5,
                        epoch_ns=T0, loop=True)
    assert clock.playhead_ns(T0) == 1000 * SECOND
    assert clock.playhead_ns(T0 + 2 * SECOND) == 1001 * SECOND  # half speed
    span = clock.span_ns
    assert span == 2 * SECOND + 1_000_000
    assert clock.pass_index(T0 + 2 * span) == 1  # wall time for one pass is span / rate
    assert clock.playhead_ns(T0 + 2 * span + 2 * SECOND) == 1001 * SECOND
    lockstep = ReplayClock("lockstep", start_ns=5, end_ns=9)
    assert lockstep.playhead_ns(T0) == 4  # nothing released before the first frame
    lockstep.advance_to(7)
    assert lockstep.playhead_ns(T0 + SECOND) == 7
    assert ReplayClock("fast", start_ns=0, end_ns=1).playhead_ns(T0) is None
    with pytest.raises(ValueError, match="'sometimes'"):
        ReplayClock("sometimes", start_ns=0, end_ns=1)
    with pytest.raises(ValueError, match="rate must be positive, got 0"):
        ReplayClock("realtime", start_ns=0, end_ns=1, rate=0)


def test_an_unset_epoch_starts_at_the_first_poll():
    clock = ReplayClock("realtime", start_ns=0, end_ns=SECOND)
    assert clock.playhead_ns(T0) == 0 and clock.playhead_ns(T0 + 10) == 10
    clock.start(T0 + 100)  # the runner fixes it for both drivers
    assert clock.playhead_ns(T0 + 100) == 0


@needs_data
def test_event_bag_replay_sends_every_packet_in_order_with_recorded_stamps():
    source = BagEventSource(TRIGGER_BAG, pacing="fast")
    assert (source.encoding, source.width, source.height) == ("evt3", 1280, 720)
    packets = _drain(source)
    assert len(packets) == 105 and source.finished
    decoder = Evt3Decoder()
    assert sum(len(decoder.decode(p.data).events) for p in packets) == 82_469
    # the recorded header stamps (the camera's clock in this bag), not the bag or wall time
    assert packets[0].stamp_ns == 1665782665 * SECOND + 852541635
    assert all(b.stamp_ns >= a.stamp_ns for a, b in itertools.pairwise(packets))


def _bag_bytes() -> list[bytes]:
    source = BagEventSource(TRIGGER_BAG, pacing="fast")
    return [p.data for p in _drain(source)]


@needs_data
def test_event_bag_replay_sends_what_is_due_as_one_packet_and_bounds_the_work_per_poll():
    recorded = _bag_bytes()
    source = BagEventSource(TRIGGER_BAG, pacing="realtime", epoch_ns=T0, max_packets_per_read=8)
    start = source.clock.start_ns
    assert source.read(T0 - 1) == []  # before the epoch nothing is due
    (first,) = source.read(T0)
    assert first.data == recorded[0]  # only the first packet is at bag time 0
    (early,) = source.read(T0 + 100_000_000)  # what is due by then, as one packet
    early_packets = _split(early.data, recorded, 1)
    assert 1 < len(early_packets) <= 8 and source.reader.peek_ns() > start
    # far behind: at most 8 recorded packets per call, and the lag says how far behind
    (late,) = source.read(T0 + 10 * SECOND)
    offset = 1 + len(early_packets)
    assert late.data == b"".join(recorded[offset : offset + 8])
    assert source.status_values()["replay_lag_ms"] > 9_000
    rest = _drain(source, T0 + 10 * SECOND)
    assert source.finished and source.status_values()["replay_lag_ms"] == 0
    replayed = first.data + early.data + late.data + b"".join(p.data for p in rest)
    assert replayed == b"".join(recorded)  # the stream is unchanged byte for byte


def _split(data: bytes, recorded: list[bytes], offset: int) -> list[bytes]:
    """The recorded packets (from ``offset``) whose concatenation is ``data``."""
    out, size = [], 0
    for packet in recorded[offset:]:
        if size >= len(data):
            break
        out.append(packet)
        size += len(packet)
    assert size == len(data)
    return out


@needs_data
def test_event_bag_replay_at_half_rate_takes_twice_as_long():
    source = BagEventSource(TRIGGER_BAG, pacing="realtime", rate=0.5, epoch_ns=T0,
                            max_packets_per_read=1000)
    span = source.clock.end_ns - source.clock.start_ns
    source.read(T0 + span // 2)
    assert not source.finished  # the recorded span at half speed is not over yet
    source.read(T0 + 2 * span)
    assert source.finished


@needs_data
def test_event_bag_lockstep_follows_the_clock_and_finishes_a_pass_before_looping():
    recorded = _bag_bytes()
    source = BagEventSource(TRIGGER_BAG, pacing="lockstep", loop=True, max_packets_per_read=1000)
    start = source.clock.start_ns
    assert source.read(T0) == []  # nothing until the frame driver's playhead says so
    source.follow(start + 100_000_000)
    (first,) = source.read(T0)
    assert source.reader.peek_ns() > start + 100_000_000 and source.read(T0) == []
    source.follow(start)  # the frame driver started its next pass
    (rest,) = source.read(T0)  # the old pass's rest, on its own
    assert first.data + rest.data == b"".join(recorded)
    (again,) = source.read(T0)  # then the new pass, up to the playhead
    assert again.data == recorded[0] and source.loops == 1


def test_event_bag_errors_name_the_bag(tmp_path):
    with pytest.raises(SourceUnavailableError, match="no_bag"):
        BagEventSource(tmp_path / "no_bag")
    path = write_image_bag(tmp_path / "frames", [(SECOND, "mono8", np.zeros((2, 2), np.uint8))])
    with pytest.raises(SourceUnavailableError, match=r"no event_camera_msgs/msg/EventPacket"):
        BagEventSource(path)


def write_image_bag(
    path: Path,
    images: list[tuple[int, str, np.ndarray]],
    *,
    storage: str = "mcap",
    topic: str = "/rig/frame/image_raw",
    padding: int = 0,
    log_delay_ns: int = 5_000_000,
) -> Path:
    """Write (header stamp ns, encoding, array) as sensor_msgs/Image to a new rosbag2.

    Each message's bag time is its stamp plus ``log_delay_ns`` (when a driver would have it).
    """
    typestore = get_typestore(Stores.LATEST)
    image_type = typestore.types["sensor_msgs/msg/Image"]
    header_type = typestore.types["std_msgs/msg/Header"]
    time_type = typestore.types["builtin_interfaces/msg/Time"]
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        connection = writer.add_connection(topic, image_type.__msgtype__, typestore=typestore)
        for stamp_ns, encoding, array in images:
            height, width = array.shape[:2]
            row = array.reshape(height, -1)
            rows = np.concatenate([row, np.zeros((height, padding), np.uint8)], axis=1)
            sec, nanosec = divmod(stamp_ns, SECOND)
            msg = image_type(
                header=header_type(stamp=time_type(sec=sec, nanosec=nanosec), frame_id="cam"),
                height=height,
                width=width,
                encoding=encoding,
                is_bigendian=0,
                step=rows.shape[1],
                data=rows.reshape(-1).astype(np.uint8),
            )
            writer.write(
                connection,
                stamp_ns + log_delay_ns,
                typestore.serialize_cdr(msg, image_type.__msgtype__),
            )
    return path


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_images_keep_their_header_stamps_and_encodings(tmp_path, storage):
    recorded = 1_000 * SECOND
    mosaics = [np.full((6, 8), i, np.uint8) for i in range(4)]
    images = [(recorded + i * 33_000_000, "bayer_rggb8", m) for i, m in enumerate(mosaics)]
    images.insert(2, (recorded + 40_000_000, "16UC1", np.zeros((6, 16), np.uint8)))
    images.append((recorded + 200_000_000, "rgb8", np.full((6, 8, 3), 9, np.uint8)))
    path = write_image_bag(tmp_path / "bag", images, storage=storage, padding=4)
    source = BagFrameSource(path, pacing="fast")
    assert (source.width, source.height, source.topic) == (8, 6, "/rig/frame/image_raw")
    frames = [frame for _ in range(6) for frame in source.read(T0)]  # one bad frame gives []
    assert [f.stamp_ns for f in frames] == [
        recorded,
        recorded + 33_000_000,
        recorded + 66_000_000,
        recorded + 99_000_000,
        recorded + 200_000_000,
    ]
    assert [f.encoding for f in frames] == ["bayer_rggb8"] * 4 + ["rgb8"]
    for frame, expected in zip(frames, mosaics):
        np.testing.assert_array_equal(frame.image, expected)  # row padding removed
    assert frames[-1].image.shape == (6, 8, 3)
    assert source.bad_frames == 1 and source.finished
    source.close()


def test_bag_frames_in_real_time_are_newest_only_and_loop_on_the_shared_clock(tmp_path):
    recorded = 7 * SECOND
    images = [(recorded + i * 100_000_000, "mono8", np.full((4, 4), i, np.uint8)) for i in range(5)]
    path = write_image_bag(tmp_path / "bag", images)
    source = BagFrameSource(path, pacing="realtime", epoch_ns=T0, loop=True)
    # bag start = first log time = first stamp + 5 ms
    (first,) = source.read(T0)
    assert first.stamp_ns == recorded  # recorded stamps, whatever the wall clock says
    (newest,) = source.read(T0 + 350_000_000)
    assert newest.frame_id == 3 and source.skipped_frames == 2
    assert source.read(T0 + 360_000_000) == []
    (last,) = source.read(T0 + 400_000_000)
    assert last.frame_id == 4
    span = source.clock.span_ns  # 400 ms + 1 ms
    assert source.read(T0 + span - 1) == []
    (again,) = source.read(T0 + span)  # the next pass starts where the clock says
    assert again.frame_id == 5 and again.stamp_ns == recorded and source.loops == 1


def test_bag_frames_in_lockstep_wait_for_release(tmp_path):
    images = [(SECOND + i * 100_000_000, "mono8", np.full((4, 4), i, np.uint8)) for i in range(3)]
    source = BagFrameSource(write_image_bag(tmp_path / "bag", images), pacing="lockstep")
    (first,) = source.read(T0)
    assert first.stamp_ns == SECOND
    assert source.clock.playhead_ns(T0) == SECOND + 5_000_000  # /clock: the frame's bag time
    assert source.waiting and source.read(T0 + 10 * SECOND) == []  # however long it takes
    source.release_next()
    (second,) = source.read(T0)
    assert second.stamp_ns == SECOND + 100_000_000 and source.skipped_frames == 0
    source.release_next()
    source.read(T0)
    assert source.clock.playhead_ns(T0) == SECOND + 205_000_000  # the third frame
    source.release_next()  # its mask came back: the recording plays out to its end
    assert source.read(T0) == [] and source.finished
    assert source.clock.playhead_ns(T0) == source.clock.end_ns


def test_bag_frames_skip_undecodable_messages_without_blocking_lockstep(tmp_path):
    images = [
        (SECOND, "16UC1", np.zeros((4, 8), np.uint8)),
        (2 * SECOND, "mono8", np.zeros((4, 4), np.uint8)),
    ]
    source = BagFrameSource(write_image_bag(tmp_path / "bag", images), pacing="lockstep")
    assert source.read(T0) == [] and not source.waiting  # no mask to wait for
    (frame,) = source.read(T0)
    assert frame.stamp_ns == 2 * SECOND and source.status_values()["bad_frames"] == 1


def test_bag_frame_errors_name_the_path_and_topics(tmp_path):
    with pytest.raises(SourceUnavailableError, match="no_bag"):
        BagFrameSource(tmp_path / "no_bag")
    path = write_image_bag(tmp_path / "bag", [(SECOND, "mono8", np.zeros((2, 2), np.uint8))])
    with pytest.raises(SourceUnavailableError, match=r"/other.*'/rig/frame/image_raw'"):
        BagFrameSource(path, topic="/other")


def test_without_a_topic_the_camera_stream_is_preferred_over_other_images(tmp_path):
    typestore = get_typestore(Stores.LATEST)
    image_type = typestore.types["sensor_msgs/msg/Image"]
    path = tmp_path / "bag"
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        for topic in ("/rig/frame/ground_truth", "/rig/frame/image_raw"):
            connection = writer.add_connection(topic, image_type.__msgtype__, typestore=typestore)
            msg = image_type(
                header=typestore.types["std_msgs/msg/Header"](
                    stamp=typestore.types["builtin_interfaces/msg/Time"](sec=1, nanosec=0),
                    frame_id=topic,
                ),
                height=2, width=2, encoding="mono8", is_bigendian=0, step=2,
                data=np.zeros(4, np.uint8),
            )
            writer.write(connection, SECOND, typestore.serialize_cdr(msg, image_type.__msgtype__))
    assert BagFrameSource(path).topic == "/rig/frame/image_raw"
    assert BagFrameSource(path, topic="/rig/frame/ground_truth").topic == "/rig/frame/ground_truth"
