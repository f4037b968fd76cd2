"""``evseg simulate``: the simulated rig rendered into a rosbag2 recording, read back twice.

One tiny recording (0.4 s, 160x120 frames, 0.1 s condition segments so all three conditions
appear) is rendered once per module and read with the ``mcap`` package and with rosbags'
``AnyReader``; the cache, output-folder and storage tests render a few more, equally small.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import yaml
from mcap.reader import make_reader
from rosbags.highlevel import AnyReader

from evseg_ros.events.bag import EVENT_PACKET_MSGTYPE, event_packet_typestore
from evseg_ros.events.evt3 import Evt3Decoder
from evseg_ros.geometry.calibration import (
    calibration_from_dict,
    homography_from_intrinsics,
    load_calibration,
)
from evseg_ros.pipeline.debayer import debayer_opencv
from evseg_ros.sim import CoaxialRigSim, Lighting, SimConfig
from evseg_ros.sim import recording as rec
from evseg_ros.sim.lighting import lighting_schedule, lighting_sequence
from evseg_ros.sim.recording import (
    CUSTOM_DATA_CALIBRATION,
    CUSTOM_DATA_RECORDING,
    EPOCH_NS,
    FIRST_FRAME_US,
    READOUT_DELAY_US,
    TOPICS,
    RecordingExistsError,
    RecordingSpec,
    bayer_mosaic,
    cached_recording,
    read_recording_info,
    scale_calibration,
    simulate_recording,
    stored_recording_key,
)
from evseg_ros.sim.recording_cli import add_simulate_parser, main

REPO_ROOT = Path(__file__).resolve().parents[2]
CALIBRATION = REPO_ROOT / "config" / "calibration" / "sim_rig.yaml"
SPEC = RecordingSpec(seconds=0.4, seed=3, size=(160, 120), condition_period_s=0.1)
#: CLI options giving SPEC
SPEC_ARGS = ["--seconds", "0.4", "--seed", "3", "--size", "160x120", "--condition-period", "0.1"]
FRAME_TOPICS = ("/rig/frame/image_raw", "/rig/frame/camera_info", "/rig/frame/ground_truth",
                "/rig/frame/condition")


def stamp(msg) -> int:
    """Header stamp in ns of a message (or of a bare Header)."""
    header = getattr(msg, "header", msg)
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def read_all(path: Path) -> dict[str, list[tuple[int, bytes, object]]]:
    """topic -> [(log time, raw CDR, message)] in bag order, read with rosbags' AnyReader."""
    out: dict[str, list] = defaultdict(list)
    with AnyReader([path], default_typestore=event_packet_typestore()) as reader:
        for connection, log_ns, raw in reader.messages():
            msg = reader.deserialize(raw, connection.msgtype)
            out[connection.topic].append((log_ns, bytes(raw), msg))
    return dict(out)


def raw_by_topic(path: Path) -> dict[str, list[bytes]]:
    return {topic: [raw for _, raw, _ in items] for topic, items in read_all(path).items()}


def mtime(path: Path) -> int:
    return max(f.stat().st_mtime_ns for f in path.iterdir())


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    # default worker count: frames come from the process pool (0 workers on a 1-CPU machine)
    return simulate_recording(SPEC, tmp_path_factory.mktemp("sim") / "rec", progress=False)


@pytest.fixture(scope="module")
def messages(recording):
    return read_all(recording)


@pytest.fixture(scope="module")
def rig() -> CoaxialRigSim:
    return CoaxialRigSim(SPEC.rig_calibration(), SPEC.sim_config())


# -- the spec and the calibration it renders with --------------------------------------------------
def test_spec_defaults_match_the_command_line():
    parser = argparse.ArgumentParser()
    add_simulate_parser(parser.add_subparsers())
    args = parser.parse_args(["simulate"])
    assert (args.seconds, args.seed, args.fps, args.packet_us, args.storage) == (
        6.0, 0, 30.0, 1000, "mcap")
    assert args.conditions == ("normal", "night", "glare") and args.condition_period == 2.0
    assert args.size is None and args.calibration == "config/calibration/sim_rig.yaml"
    spec = RecordingSpec()
    assert (spec.seconds, spec.seed, spec.fps, spec.packet_us, spec.storage) == (
        6.0, 0, 30.0, 1000, "mcap")
    assert spec.conditions == ("normal", "night", "glare") and spec.condition_period_s == 2.0


def test_spec_rejects_bad_values_naming_them(tmp_path):
    with pytest.raises(ValueError, match="'dusk'"):
        RecordingSpec(conditions=("normal", "dusk"))
    with pytest.raises(ValueError, match="seconds"):
        RecordingSpec(seconds=0)
    with pytest.raises(ValueError, match="packet_us"):
        RecordingSpec(packet_us=0)
    with pytest.raises(ValueError, match="storage"):
        RecordingSpec(storage="rosbag1")
    with pytest.raises(ValueError, match=r"aspect ratio.*expected 160x120"):
        RecordingSpec(size=(160, 100)).rig_calibration()
    with pytest.raises(ValueError, match="holds no frame"):
        simulate_recording(RecordingSpec(seconds=0.1, size=(160, 120)), tmp_path / "short")
    assert list(tmp_path.iterdir()) == []
    assert RecordingSpec(conditions="night, glare").conditions == ("night", "glare")


def test_key_covers_content_not_spelling(tmp_path):
    key = SPEC.key()
    assert len(key) == 16 and key == SPEC.key()
    for change in ({"seed": 4}, {"fps": 20.0}, {"conditions": ("night",)}, {"packet_us": 500},
                   {"storage": "sqlite3"}, {"seconds": 0.5}, {"size": (320, 240)}):
        assert dataclasses.replace(SPEC, **change).key() != key, change
    # the calibration enters by content: an identical copy elsewhere and an explicit default
    # size give the same key, an edited copy does not
    copy = tmp_path / "copy.yaml"
    copy.write_text(CALIBRATION.read_text())
    default = RecordingSpec()
    assert RecordingSpec(calibration=str(copy)).key() == default.key()
    assert RecordingSpec(size=(320, 240)).key() == default.key()
    copy.write_text(CALIBRATION.read_text().replace("325.0, 0.0, 199.5", "326.0, 0.0, 199.5"))
    assert RecordingSpec(calibration=str(copy)).key() != default.key()


def test_scaled_calibration_keeps_the_rig_exact():
    original = load_calibration(CALIBRATION)
    half = scale_calibration(original, (160, 120))
    assert (half.frame_camera.width, half.frame_camera.height) == (160, 120)
    assert (half.event_camera.width, half.event_camera.height) == (200, 113)  # 112.5 rounds up
    assert (half.output_width, half.output_height) == (160, 120)
    # pixel centres at integers: an edge at -0.5 stays at -0.5, so cx' = s (cx + 0.5) - 0.5
    assert half.frame_camera.cx == pytest.approx(0.5 * (159.5 + 0.5) - 0.5)
    assert half.frame_camera.fx == pytest.approx(130.0)
    exact = homography_from_intrinsics(half.event_camera, half.frame_camera)
    np.testing.assert_allclose(half.event_to_frame, exact, atol=1e-12)
    assert scale_calibration(original, (320, 240)).to_dict() == original.to_dict()


# -- lighting: condition lists without changing the existing modes ---------------------------------
def test_condition_list_cycles_in_order_and_old_modes_are_unchanged():
    seq = [lighting_schedule("night,glare,normal", 5, 0.5, t) for t in range(0, 3_000_000, 500_000)]
    assert seq == [Lighting.NIGHT, Lighting.GLARE, Lighting.NORMAL] * 2
    assert lighting_sequence("normal") == (Lighting.NORMAL,)
    assert lighting_sequence("cycle") is None
    for mode in ("normal", "night", "glare"):
        assert lighting_schedule(mode, 0, 0.0, 123) is Lighting(mode)
    # "cycle" keeps its seed-dependent order (all three within three periods)
    cycle = {lighting_schedule("cycle", 9, 1.0, t) for t in (0, 1_000_000, 2_000_000)}
    assert cycle == set(Lighting)
    with pytest.raises(ValueError, match="unknown lighting mode"):
        lighting_schedule("night,dusk", 0, 1.0, 0)
    with pytest.raises(ValueError, match="lighting"):
        SimConfig(lighting="night,,glare")
    assert SimConfig(lighting="night,glare").lighting == "night,glare"


# -- the recording, read by a second reader --------------------------------------------------------
def test_mcap_reader_sees_topics_schemas_and_counts(recording, rig):
    (mcap_file,) = recording.glob("*.mcap")
    with mcap_file.open("rb") as stream:
        reader = make_reader(stream)
        summary = reader.get_summary()
        channels = {c.id: c for c in summary.channels.values()}
        topics = {c.topic: summary.schemas[c.schema_id] for c in channels.values()}
        assert {t: s.name for t, s in topics.items()} == TOPICS
        assert all(s.encoding == "ros2msg" for s in topics.values())
        assert all(c.message_encoding == "cdr" for c in channels.values())
        counts = {channels[i].topic: n
                  for i, n in summary.statistics.channel_message_counts.items()}
        log_times = [message.log_time for _, _, message in reader.iter_messages(
            log_time_order=False)]
    frames = len(rec._plan(SPEC, rig).frame_times_us)
    assert frames == 9
    assert counts["/rig/calibration"] == 1
    assert all(counts[topic] == frames for topic in FRAME_TOPICS)
    assert 300 <= counts["/rig/events"] <= 400  # at most one packet per 1 ms slice
    assert log_times == sorted(log_times)  # written in log-time order
    assert log_times[0] == EPOCH_NS


def test_event_packets_are_what_the_driver_publishes(messages):
    packets = messages["/rig/events"]
    calibration = SPEC.rig_calibration()
    assert [msg.seq for _, _, msg in packets] == list(range(len(packets)))
    for log_ns, _, msg in packets:
        assert msg.header.frame_id == "event_camera" and msg.encoding == "evt3"
        assert (msg.width, msg.height) == (200, 113) == (
            calibration.event_camera.width, calibration.event_camera.height)
        assert not msg.is_bigendian
        assert msg.time_base == stamp(msg) - EPOCH_NS
        # log time = end of the packet's 1 ms slice, which holds the first event
        assert (log_ns - EPOCH_NS) % 1_000_000 == 0
        assert log_ns - 1_000_000 <= stamp(msg) < log_ns
        assert len(msg.events) > 0


def test_events_decode_to_one_trigger_per_frame(messages):
    decoder = Evt3Decoder(width=200, height=113)
    events, triggers, packet_first = [], [], []
    for _, _, msg in messages["/rig/events"]:
        decoded = decoder.decode(msg.events)
        events.append(decoded.events)
        triggers.append(decoded.triggers)
        items = np.concatenate([decoded.events["t"], decoded.triggers["t"]])
        packet_first.append((int(items.min()), msg.time_base // 1000))
    events, triggers = np.concatenate(events), np.concatenate(triggers)
    counters = decoder.counters.as_dict()
    assert counters["unknown_words"] == counters["out_of_bounds"] == 0
    assert counters["time_backwards"] == 0
    assert all(first == base for first, base in packet_first)
    assert events.size > 10_000 and np.all(np.diff(events["t"]) >= 0)
    assert events["t"][0] >= 0 and events["t"][-1] < 400_000
    frame_stamps = [stamp(msg) for _, _, msg in messages["/rig/frame/image_raw"]]
    rising = triggers[triggers["value"] == 1]
    falling = triggers[triggers["value"] == 0]
    assert np.all(triggers["channel"] == 0)
    assert [EPOCH_NS + 1000 * int(t) for t in rising["t"]] == frame_stamps
    assert len(rising) == len(frame_stamps) == 9
    np.testing.assert_array_equal(falling["t"], rising["t"] + SimConfig().trigger_pulse_us)
    assert rising["t"][0] == FIRST_FRAME_US


def test_frames_are_stamped_at_the_trigger_and_logged_after_readout(messages, recording, rig):
    images = messages["/rig/frame/image_raw"]
    period = rig.frame_period_us()
    for k, (log_ns, _, msg) in enumerate(images):
        t_us = FIRST_FRAME_US + k * period
        exposure = rig.exposure_us(rig.lighting_at(t_us))
        assert stamp(msg) == EPOCH_NS + 1000 * t_us
        assert log_ns == stamp(msg) + 1000 * (exposure + READOUT_DELAY_US)
        assert msg.header.frame_id == "frame_camera" and msg.encoding == "bayer_rggb8"
        assert (msg.width, msg.height, msg.step) == (160, 120, 160)
        assert len(msg.data) == 160 * 120
        for topic in FRAME_TOPICS[1:]:
            other_log, _, other = messages[topic][k]
            assert (other_log, stamp(other)) == (log_ns, stamp(msg)), topic
    # every event packet up to the end of an exposure comes before that frame (bag order)
    (mcap_file,) = recording.glob("*.mcap")
    with mcap_file.open("rb") as stream:
        order = [(channel.topic, message.log_time) for _, channel, message in
                 make_reader(stream).iter_messages(log_time_order=False)]
    last_packet_end = 0
    for topic, log_ns in order:
        if topic == "/rig/events":
            last_packet_end = log_ns
        elif topic == "/rig/frame/image_raw":
            assert last_packet_end >= log_ns - 1000 * READOUT_DELAY_US


def test_bayer_frame_round_trips_through_the_consumers_debayer(messages, rig):
    _, _, msg = messages["/rig/frame/image_raw"][4]
    t_us = (stamp(msg) - EPOCH_NS) // 1000
    frame = rig.render_frame(t_us)
    mosaic = np.frombuffer(msg.data, np.uint8).reshape(120, 160)
    np.testing.assert_array_equal(mosaic, bayer_mosaic(frame.image))
    rgb = debayer_opencv(mosaic, "bayer_rggb8")
    inner = (slice(2, -2), slice(2, -2))
    # every sampled colour comes back where it was sampled: R at even/even, B at odd/odd,
    # G on the other two sites (a wrong pattern would swap them)
    for (dy, dx), colour in (((0, 0), 0), ((0, 1), 1), ((1, 0), 1), ((1, 1), 2)):
        got = rgb[dy::2, dx::2, colour][inner]
        want = frame.image[dy::2, dx::2, colour][inner]
        np.testing.assert_array_equal(got, want)
    error = np.abs(rgb.astype(int) - frame.image.astype(int))[inner].mean()
    assert error < 12, error


def test_ground_truth_and_camera_info(messages, rig):
    calibration = SPEC.rig_calibration()
    _, _, image = messages["/rig/frame/image_raw"][2]
    _, _, truth = messages["/rig/frame/ground_truth"][2]
    _, _, info = messages["/rig/frame/camera_info"][2]
    assert truth.encoding == "mono8" and (truth.width, truth.height, truth.step) == (160, 120, 160)
    frame = rig.render_frame((stamp(image) - EPOCH_NS) // 1000)
    np.testing.assert_array_equal(np.frombuffer(truth.data, np.uint8).reshape(120, 160),
                                  frame.labels)
    camera = calibration.frame_camera
    assert (info.width, info.height, info.distortion_model) == (160, 120, "plumb_bob")
    assert info.header.frame_id == "frame_camera"
    np.testing.assert_array_equal(info.k, camera.camera_matrix.reshape(-1))
    np.testing.assert_array_equal(info.d, camera.distortion)
    np.testing.assert_array_equal(info.r, np.eye(3).reshape(-1))
    np.testing.assert_array_equal(
        info.p, [camera.fx, 0, camera.cx, 0, 0, camera.fy, camera.cy, 0, 0, 0, 1, 0])


def test_condition_topic_names_each_frames_lighting(messages):
    names = []
    for (_, _, header), (_, _, image) in zip(messages["/rig/frame/condition"],
                                             messages["/rig/frame/image_raw"]):
        assert stamp(header) == stamp(image)
        t_us = (stamp(header) - EPOCH_NS) // 1000
        expected = SPEC.conditions[math.floor(t_us / 100_000) % 3]
        assert header.frame_id == expected
        names.append(header.frame_id)
    assert set(names) == {"normal", "night", "glare"}


def test_calibration_topic_and_metadata(messages, recording):
    ((log_ns, _, text),) = messages["/rig/calibration"]
    assert log_ns == EPOCH_NS
    calibration = calibration_from_dict(yaml.safe_load(text.data), source="bag")
    assert calibration.to_dict() == SPEC.rig_calibration().to_dict()
    metadata = yaml.safe_load((recording / "metadata.yaml").read_text())
    custom = metadata["rosbag2_bagfile_information"]["custom_data"]
    assert custom[CUSTOM_DATA_CALIBRATION] == text.data
    info = json.loads(custom[CUSTOM_DATA_RECORDING])
    assert info == read_recording_info(recording)
    assert info["key"] == SPEC.key() == stored_recording_key(recording)
    assert info["spec"] == SPEC.to_dict()
    assert info["frames"] == 9 and info["event_packets"] == len(messages["/rig/events"])
    assert info["frames_per_condition"] == {"glare": 3, "night": 4, "normal": 2}
    assert info["epoch_ns"] == EPOCH_NS and info["event_size"] == [200, 113]


# -- determinism, cache, output folders, storage ---------------------------------------------------
def test_same_spec_gives_identical_messages_with_or_without_workers(recording, tmp_path):
    again = simulate_recording(SPEC, tmp_path / "again", progress=False, workers=0)
    first, second = raw_by_topic(recording), raw_by_topic(again)
    assert set(first) == set(TOPICS)
    for topic in TOPICS:
        assert first[topic] == second[topic], topic


def test_cache_renders_once(tmp_path, monkeypatch):
    spec = RecordingSpec(seconds=0.2, seed=1, size=(160, 120), conditions=("night",))
    path = cached_recording(spec, tmp_path / "cache", progress=False)
    assert path == tmp_path / "cache" / f"sim_{spec.key()}"
    assert stored_recording_key(path) == spec.key()
    before = mtime(path)

    def fail(*_args, **_kwargs):
        raise AssertionError("rendered again")

    monkeypatch.setattr(rec, "_write_bag", fail)
    assert cached_recording(spec, tmp_path / "cache", progress=False) == path
    assert mtime(path) == before
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [path.name]  # no leftovers


def test_a_crash_leaves_no_half_recording(tmp_path, monkeypatch):
    from evseg_ros.events import evt3

    calls = {"n": 0}
    real = evt3.encode_evt3

    def crash_later(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 50:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(evt3, "encode_evt3", crash_later)
    spec = RecordingSpec(seconds=0.2, size=(160, 120))
    with pytest.raises(RuntimeError, match="simulated crash"):
        simulate_recording(spec, tmp_path / "out", progress=False, workers=0)
    assert list(tmp_path.iterdir()) == []  # neither the output nor the staging folder


def test_output_folder_reuse_refusal_and_force(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["--output", str(out), *SPEC_ARGS, "--conditions", "glare"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--force" in err[0] and str(out) in err[0]
    assert (out / "notes.txt").read_text() == "mine"
    with pytest.raises(RecordingExistsError):
        simulate_recording(RecordingSpec(seconds=0.2), out, progress=False)

    args = ["--output", str(out), "--seconds", "0.2", "--size", "160x120", "--workers", "0"]
    assert main([*args, "--force"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert not (out / "notes.txt").exists()
    spec = RecordingSpec(seconds=0.2, size=(160, 120))
    assert stored_recording_key(out) == spec.key()
    rendered = mtime(out)

    assert main(args) == 0  # same parameters: reused, said so
    captured = capsys.readouterr()
    assert "reusing" in captured.err and captured.out.strip() == str(out)
    assert mtime(out) == rendered

    assert main([*args, "--seed", "1"]) == 2  # a different recording is refused too
    assert "--force" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0  # force renders again, same content
    assert mtime(out) > rendered and stored_recording_key(out) == spec.key()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_sqlite3_storage_holds_the_same_messages(recording, tmp_path):
    spec = dataclasses.replace(SPEC, storage="sqlite3")
    path = simulate_recording(spec, tmp_path / "db", progress=False)
    assert len(list(path.glob("*.db3"))) == 1 and not list(path.glob("*.mcap"))
    assert stored_recording_key(path) == spec.key() != SPEC.key()
    sqlite_raw, mcap_raw = raw_by_topic(path), raw_by_topic(recording)
    for topic in TOPICS:
        assert sqlite_raw[topic] == mcap_raw[topic], topic
    with AnyReader([path], default_typestore=event_packet_typestore()) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
    assert types["/rig/events"] == EVENT_PACKET_MSGTYPE and types == TOPICS
