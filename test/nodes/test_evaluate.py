"""`evseg eval`: a simulated recording replayed through the real nodes, scored by stamp."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from rosbags.rosbag2 import Reader, Writer

from evseg_ros.cli import main as evseg
from evseg_ros.eval.recording import RecordingError, inspect_recording
from evseg_ros.eval.report import accuracy_part
from evseg_ros.events.bag import event_packet_typestore
from evseg_ros.nodes.evaluate import EvalOptions, run_eval

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config" / "rig.yaml"


def _options(model: Path, **kwargs) -> EvalOptions:
    return EvalOptions(
        config=CONFIG, model=str(model), frame_only_model=str(model), panels=1, **kwargs
    )


def test_recording_contents_list_frames_truth_conditions_and_calibration(short_recording):
    contents = inspect_recording(short_recording)
    assert len(contents.frame_stamps) == 15
    assert contents.recorded_fps == pytest.approx(30.0, rel=1e-3)
    assert contents.event_encoding == "evt3" and contents.problems == []
    assert sorted(set(contents.conditions.values())) == ["glare", "night", "normal"]
    truth = dict(contents.truth())
    assert sorted(truth) == contents.frame_stamps  # ground truth has the frames' exact stamps
    assert next(iter(truth.values())).shape == (240, 320)
    assert "event_to_frame_homography" in contents.calibration_yaml


def test_lockstep_evaluates_every_frame_and_repeats_exactly(short_recording, tmp_path,
                                                            tiny_onnx_model):
    options = _options(tiny_onnx_model, mode="lockstep", compare_frame_only=True)
    first = run_eval(short_recording, tmp_path / "a", options)
    report = first.report
    assert report["frames"]["in_bag"] == report["frames"]["evaluated"] == 15
    assert report["frames"]["dropped"] == 0 and report["frames"]["lockstep_timeouts"] == 0
    assert report["sync"]["matched"] == 15 and report["sync"]["missing_triggers"] == 0
    assert report["frames"]["event_frames_late"] == 0
    assert 0.0 <= report["miou"] <= 1.0 and report["frame_only_miou"] is not None
    assert set(report["per_condition_miou"]) == {"glare", "night", "normal"}
    assert {"accumulate", "inference", "frame_to_mask"} <= set(report["latency_ms"])
    assert report["latency_ms"]["frame_to_mask"]["count"] == 15
    for name in ("report.json", "report.md", "confusion_matrix.png", "per_class_iou.png",
                 "latency.png"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    assert json.loads((tmp_path / "a" / "report.json").read_text())["miou"] == report["miou"]
    assert len(report["panels"]) == 1 and Path(report["panels"][0]).is_file()
    second = run_eval(short_recording, tmp_path / "b", options)
    assert accuracy_part(second.report) == accuracy_part(report)  # machine-independent


def test_frame_only_baseline_is_the_model_itself_with_zero_events(short_recording, tmp_path,
                                                                  tiny_onnx_model):
    """One network serves both modes: by default the baseline is not a second model file."""
    own = EvalOptions(config=CONFIG, model=str(tiny_onnx_model), mode="lockstep",
                      compare_frame_only=True, panels=0)
    report = run_eval(short_recording, tmp_path / "own", own).report
    assert "all-zero event frame" in report["frame_only_baseline"]
    assert report["frame_only_miou"] is not None
    # The same file named as a separate frame-only model scores exactly the same frames alike.
    separate = run_eval(short_recording, tmp_path / "separate", _options(
        tiny_onnx_model, mode="lockstep", compare_frame_only=True)).report
    assert "separate" in separate["frame_only_baseline"]
    assert separate["frame_only_miou"] == report["frame_only_miou"]


def test_realtime_counts_every_frame_of_the_bag(short_recording, tmp_path, tiny_onnx_model):
    report = run_eval(short_recording, tmp_path, _options(tiny_onnx_model, rate=0.5)).report
    frames = report["frames"]
    assert frames["in_bag"] == 15 and frames["evaluated"] > 0
    assert frames["evaluated"] + frames["dropped"] == frames["in_bag"]
    assert frames["published"] + frames["skipped_at_replay"] == frames["in_bag"]
    assert report["stream"]["expected_fps"] == pytest.approx(15.0, rel=1e-3)
    assert report["frame_only_miou"] is None  # not asked for


def _copy_bag(
    source: Path, target: Path, *, drop: tuple[str, ...] = (), encoding: str = ""
) -> Path:
    """Copy a recording, leaving out topics or re-labelling the event encoding."""
    typestore = event_packet_typestore()
    with Reader(source) as reader, Writer(target, version=9) as writer:
        connections = {}
        for connection in reader.connections:
            if connection.topic not in drop:
                connections[connection.id] = writer.add_connection(
                    connection.topic, connection.msgtype, typestore=typestore
                )
        for connection, bag_ns, raw in reader.messages():
            if connection.id not in connections:
                continue
            data = raw
            if encoding and connection.topic == "/rig/events":
                msg = typestore.deserialize_cdr(raw, connection.msgtype)
                msg.encoding = encoding
                data = typestore.serialize_cdr(msg, connection.msgtype)
            writer.write(connections[connection.id], bag_ns, data)
    return target


def test_a_bag_without_ground_truth_still_reports_latency_and_says_why(
    short_recording, tmp_path, tiny_onnx_model
):
    bag = _copy_bag(short_recording, tmp_path / "no_truth", drop=("/rig/frame/ground_truth",))
    report = run_eval(bag, tmp_path / "out", _options(tiny_onnx_model, mode="lockstep")).report
    assert report["miou"] is None and report["frames"]["masks_received"] == 15
    assert any("no ground truth on /rig/frame/ground_truth" in p for p in report["problems"])


def test_a_foreign_event_encoding_is_named_and_the_frames_still_come_back(
    short_recording, tmp_path, tiny_onnx_model
):
    bag = _copy_bag(short_recording, tmp_path / "evt4", encoding="evt4")
    options = _options(
        tiny_onnx_model, mode="lockstep", overrides={"accumulator": {"max_wait_ms": 300.0}}
    )
    report = run_eval(bag, tmp_path / "out", options).report
    assert any("encoded 'evt4'" in p for p in report["problems"])
    assert report["frames"]["masks_received"] == 15  # the accumulator's wait ran out, counted
    assert report["frames"]["event_frames_late"] == 15


def test_labels_from_a_folder_of_pngs_named_by_stamp(short_recording, tmp_path, tiny_onnx_model):
    import cv2

    contents = inspect_recording(short_recording)
    labels = tmp_path / "labels"
    labels.mkdir()
    for stamp, truth in list(contents.truth())[:5]:
        cv2.imwrite(str(labels / f"{stamp}.png"), truth)
    (labels / "notes.png").write_bytes(b"not named by a stamp")
    report = run_eval(
        short_recording, tmp_path / "out",
        _options(tiny_onnx_model, mode="lockstep", labels_dir=labels),
    ).report
    assert report["frames"]["evaluated"] == 5


def test_unreadable_recordings_are_one_line_errors(tmp_path, capsys, short_recording):
    assert evseg(["eval", str(tmp_path / "missing"), "--output", str(tmp_path / "o")]) == 2
    assert "cannot read recording" in capsys.readouterr().err
    frames_missing = _copy_bag(short_recording, tmp_path / "events_only",
                               drop=("/rig/frame/image_raw", "/rig/frame/camera_info"))
    with pytest.raises(RecordingError, match=r"no sensor_msgs/msg/Image on /rig/frame/image_raw"):
        inspect_recording(frames_missing)
    truncated = tmp_path / "truncated"
    shutil.copytree(short_recording, truncated)
    (mcap,) = truncated.glob("*.mcap")
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) // 2])  # a crash mid-write
    assert evseg(["eval", str(truncated), "--output", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("evseg eval: cannot read recording") and "truncated" in err
    assert "\n" not in err  # one line
