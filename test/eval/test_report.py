"""The eval report, checked against hand-computed IoUs, rates and jitter."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from evseg_ros.eval.metrics import ConfusionMatrix
from evseg_ros.eval.report import (
    ACCURACY_KEYS,
    REPORT_FILES,
    TIMING_KEYS,
    EvalRun,
    accuracy_part,
    build_report,
    format_report,
    write_report,
)

CLASSES = ["road", "vehicle", "person", "sky"]  # "sky" never occurs nor is predicted

# matrix[t, p]. day: road tp 3 fn 1 -> 3/4; vehicle tp 2 fp 1 -> 2/3; person and sky absent.
FUSED_DAY = [[3, 1, 0, 0], [0, 2, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
# night: road tp 1 fp 1 -> 1/2; vehicle tp 1 fn 1 -> 1/2; person 2/2 -> 1.
FUSED_NIGHT = [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 2, 0], [0, 0, 0, 0]]
# sum: road 4 / (5 + 5 - 4) = 2/3; vehicle 3 / (4 + 4 - 3) = 3/5; person 1; sky absent.
FUSED_IOU = [2 / 3, 3 / 5, 1.0]
# Frame-only: the same by day, road and vehicle swapped at night (0 IoU each, person 1).
FRAME_ONLY_NIGHT = [[0, 1, 0, 0], [2, 0, 0, 0], [0, 0, 2, 0], [0, 0, 0, 0]]
# sum [[3, 2], [2, 2]] + person 2: road 3/7, vehicle 2/6, person 1.
FRAME_ONLY_IOU = [3 / 7, 1 / 3, 1.0]

MS = 1_000_000  # ns per ms


def matrix(*counts: list[list[int]]) -> ConfusionMatrix:
    cm = ConfusionMatrix(len(CLASSES))
    for c in counts:
        cm.matrix += np.asarray(c, dtype=np.int64)
    return cm


def make_run(*, compare: bool = True, **overrides) -> EvalRun:
    fields = {
        "bag": "drive_0007",
        "model": "fused_b0.onnx",
        "mode": "lockstep",
        "rate": 2.0,
        "recorded_fps": 10.0,
        "class_names": list(CLASSES),
        "fused": matrix(FUSED_DAY, FUSED_NIGHT),
        "fused_by_condition": {"night": matrix(FUSED_NIGHT), "day": matrix(FUSED_DAY)},
        "latency_ms": {
            "accumulate": [1.0, 2.0, 3.0, 4.0],
            "inference": [10.0, 10.0, 12.0, 30.0],
            "frame_to_mask": [],
        },
        "frames": {"dropped": 1, "evaluated": 5, "published": 6, "in_bag": 8, "skipped": 2},
        "sync": {"frames": 6, "matched": 4, "dropped_frames": 2, "missing_triggers": 0},
        # Arrivals 0, 50, 101, 150, 200, 260 ms against a 50 ms period (10 fps x 2):
        # |delta - 50| = 0, 1, 1, 0, 10 ms.
        "mask_arrival_ns": [0, 50 * MS, 101 * MS, 150 * MS, 200 * MS, 260 * MS],
        "mask_stamps_ns": [1000, 1100, 1300, 1200, 1400, 1400],
        "problems": ["no ground truth for 1 frame"],
        "wall_s": 3.5,
    }
    if compare:
        fields["frame_only"] = matrix(FUSED_DAY, FRAME_ONLY_NIGHT)
        fields["frame_only_by_condition"] = {
            "day": matrix(FUSED_DAY),
            "night": matrix(FRAME_ONLY_NIGHT),
        }
    fields.update(overrides)
    return EvalRun(**fields)


def test_accuracy_values_by_hand() -> None:
    report = build_report(make_run())
    assert report["class_names"] == CLASSES
    assert report["miou"] == pytest.approx(sum(FUSED_IOU) / 3)
    assert list(report["per_class_iou"]) == CLASSES
    assert [report["per_class_iou"][c] for c in CLASSES[:3]] == pytest.approx(FUSED_IOU)
    assert report["per_class_iou"]["sky"] is None
    # Conditions come out sorted whatever order they were given in.
    assert list(report["per_condition_miou"]) == ["day", "night"]
    assert report["per_condition_miou"]["day"] == pytest.approx((3 / 4 + 2 / 3) / 2)
    assert report["per_condition_miou"]["night"] == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)
    assert report["confusion_matrix"] == (np.asarray(FUSED_DAY) + np.asarray(FUSED_NIGHT)).tolist()

    assert report["frame_only_miou"] == pytest.approx(sum(FRAME_ONLY_IOU) / 3)
    fo_iou = report["frame_only_per_class_iou"]
    assert [fo_iou[c] for c in CLASSES[:3]] == pytest.approx(FRAME_ONLY_IOU)
    assert fo_iou["sky"] is None
    assert report["frame_only_per_condition_miou"]["day"] == pytest.approx((3 / 4 + 2 / 3) / 2)
    assert report["frame_only_per_condition_miou"]["night"] == pytest.approx(1 / 3)
    assert (
        report["frame_only_confusion_matrix"]
        == (np.asarray(FUSED_DAY) + np.asarray(FRAME_ONLY_NIGHT)).tolist()
    )


def test_run_description_frames_sync_and_latency() -> None:
    report = build_report(make_run())
    assert report["bag"] == "drive_0007"
    assert report["model"] == "fused_b0.onnx"
    assert report["mode"] == "lockstep"
    assert report["rate"] == 2.0
    assert report["recorded_fps"] == 10.0
    assert report["problems"] == ["no ground truth for 1 frame"]
    assert report["wall_s"] == 3.5

    # The four standard counters first, extras after them, then the derived fraction.
    assert report["frames"] == {
        "in_bag": 8,
        "published": 6,
        "evaluated": 5,
        "dropped": 1,
        "skipped": 2,
        "mask_fraction": 5 / 8,
    }
    assert list(report["frames"]) == [
        "in_bag", "published", "evaluated", "dropped", "skipped", "mask_fraction"
    ]  # fmt: skip
    assert report["sync"] == {
        "frames": 6,
        "matched": 4,
        "dropped_frames": 2,
        "missing_triggers": 0,
        "matched_fraction": 4 / 6,
        "matched_fraction_of": "sync.frames",
    }

    latency = report["latency_ms"]
    assert list(latency) == ["accumulate", "inference", "frame_to_mask"]  # order as given
    assert latency["accumulate"] == {
        "count": 4,
        "median": 2.5,
        "p99": pytest.approx(3.97),  # linear: 3 + 0.99 * 3 - 2 = 2.97 of the way -> 3.97
        "mean": 2.5,
        "max": 4.0,
    }
    assert latency["inference"]["median"] == 11.0
    assert latency["inference"]["p99"] == pytest.approx(12.0 + 0.97 * 18.0)
    assert latency["inference"]["mean"] == 15.5
    assert latency["inference"]["max"] == 30.0
    assert latency["frame_to_mask"] == {
        "count": 0, "median": None, "p99": None, "mean": None, "max": None
    }  # fmt: skip


def test_stream_rate_and_jitter_of_a_synthetic_arrival_sequence() -> None:
    stream = build_report(make_run())["stream"]
    assert stream["expected_fps"] == 20.0
    assert stream["expected_period_ms"] == pytest.approx(50.0)
    assert stream["masks_received"] == 6
    assert stream["received_duration_s"] == pytest.approx(0.26)
    assert stream["mean_frame_rate"] == pytest.approx(5 / 0.26)
    deviations = [0.0, 1.0, 1.0, 0.0, 10.0]
    jitter = stream["jitter_ms"]
    assert jitter["count"] == 5
    assert jitter["mean"] == pytest.approx(2.4)
    # Population std: sqrt(mean(d^2) - mean(d)^2) = sqrt(102 / 5 - 2.4^2).
    assert jitter["std"] == pytest.approx(math.sqrt(102 / 5 - 2.4**2))
    assert jitter["std"] == pytest.approx(float(np.std(deviations)))
    # Sorted 0, 0, 1, 1, 10; p99 sits at 0.99 * 4 = 3.96 -> 1 + 0.96 * 9.
    assert jitter["p99"] == pytest.approx(1 + 0.96 * 9)
    assert jitter["max"] == pytest.approx(10.0)
    assert stream["drops"] == 8 - 5
    assert stream["stamp_span_s"] == pytest.approx(400e-9)
    assert stream["out_of_order_stamps"] == 1  # 1300 then 1200
    assert stream["duplicate_stamps"] == 1  # 1400 twice


def test_stream_without_a_rate_or_with_one_mask() -> None:
    stream = build_report(
        make_run(recorded_fps=float("nan"), mask_arrival_ns=[5], mask_stamps_ns=[7])
    )["stream"]
    assert stream["expected_fps"] is None
    assert stream["expected_period_ms"] is None
    assert stream["masks_received"] == 1
    assert stream["received_duration_s"] is None
    assert stream["mean_frame_rate"] is None
    assert stream["jitter_ms"] == {"count": 0, "mean": None, "std": None, "p99": None, "max": None}
    assert stream["stamp_span_s"] == 0.0
    # Two masks but no expected period: the rate is measured, the jitter is not.
    stream = build_report(
        make_run(recorded_fps=0.0, mask_arrival_ns=[0, 100 * MS], mask_stamps_ns=[1, 2])
    )["stream"]
    assert stream["mean_frame_rate"] == pytest.approx(10.0)
    assert stream["jitter_ms"]["count"] == 0


def test_nothing_evaluated_gives_nulls() -> None:
    run = make_run(
        compare=False,
        fused=ConfusionMatrix(len(CLASSES)),
        fused_by_condition={},
        latency_ms={},
        frames={"in_bag": 0, "published": 0, "evaluated": 0, "dropped": 0},
        sync={},
        mask_arrival_ns=[],
        mask_stamps_ns=[],
        problems=["no masks received on /rig/segmentation/mask"],
    )
    report = build_report(run)
    assert report["miou"] is None
    assert report["per_class_iou"] == dict.fromkeys(CLASSES)
    assert report["per_condition_miou"] == {}
    assert report["confusion_matrix"] == [[0] * 4 for _ in range(4)]
    for key in ACCURACY_KEYS:
        if key.startswith("frame_only_"):
            assert report[key] is None, key
    assert report["frames"]["mask_fraction"] is None  # 0 / 0
    assert report["sync"]["matched_fraction"] is None
    assert report["sync"]["matched_fraction_of"] is None
    assert report["latency_ms"] == {}
    assert report["stream"]["masks_received"] == 0
    assert report["stream"]["mean_frame_rate"] is None
    assert report["stream"]["stamp_span_s"] is None
    assert report["stream"]["drops"] == 0
    json.dumps(report, allow_nan=False)
    text = format_report(report)
    assert "n/a" in text
    assert "no masks received" in text


def test_frames_evaluated_some_of_the_bag() -> None:
    report = build_report(make_run(frames={"in_bag": 10, "evaluated": 0}, sync={"matched": 3}))
    assert report["frames"]["mask_fraction"] == 0.0
    assert report["stream"]["drops"] == 10
    # Without the accumulator's frame count the fraction falls back to the evaluated frames,
    # and evaluating none leaves it undefined.
    assert report["sync"]["matched_fraction"] is None
    report = build_report(make_run(frames={"in_bag": 10, "evaluated": 4}, sync={"matched": 3}))
    assert report["sync"]["matched_fraction"] == 3 / 4
    assert report["sync"]["matched_fraction_of"] == "frames.evaluated"


def test_frame_only_without_conditions_and_absent_conditions() -> None:
    run = make_run(frame_only_by_condition=None)
    report = build_report(run)
    assert report["frame_only_miou"] == pytest.approx(sum(FRAME_ONLY_IOU) / 3)
    assert report["frame_only_per_condition_miou"] == {"day": None, "night": None}
    run = make_run(frame_only_by_condition={"dusk": matrix(FUSED_DAY)})
    report = build_report(run)
    assert list(report["per_condition_miou"]) == ["day", "dusk", "night"]
    assert report["per_condition_miou"]["dusk"] is None
    assert report["frame_only_per_condition_miou"]["day"] is None


def test_report_is_plain_json_with_a_fixed_key_order() -> None:
    run = make_run(
        sync={"frames": np.int64(6), "matched": np.int32(4), "locked": np.bool_(True),
              "mean_abs_offset_us": float("nan"), "period_us": np.float32(50000.0)},
    )  # fmt: skip
    report = build_report(run)
    text = json.dumps(report, allow_nan=False)
    assert json.loads(text) == report
    assert report["sync"]["locked"] is True
    assert report["sync"]["mean_abs_offset_us"] is None
    assert text == json.dumps(build_report(run), allow_nan=False)
    keys = list(report)
    assert keys[:7] == [
        "report_version", "bag", "model", "mode", "rate", "recorded_fps", "class_names"
    ]  # fmt: skip
    assert keys[-3:] == list(TIMING_KEYS)
    assert set(ACCURACY_KEYS) <= set(keys)


def test_accuracy_part_ignores_timings_only() -> None:
    a = build_report(make_run())
    b = build_report(
        make_run(
            mode="realtime",
            rate=1.0,
            latency_ms={"accumulate": [9.0], "inference": [99.0]},
            mask_arrival_ns=[0, 7 * MS, 90 * MS],
            mask_stamps_ns=[1, 2, 3],
            frames={"in_bag": 8, "published": 8, "evaluated": 5, "dropped": 0},
            sync={"frames": 8, "matched": 8},
            wall_s=99.0,
        )
    )
    assert a != b
    assert accuracy_part(a) == accuracy_part(b)
    part = accuracy_part(a)
    assert list(part) == [*ACCURACY_KEYS, "frames"]
    assert part["frames"] == {"in_bag": 8, "evaluated": 5}
    for key in TIMING_KEYS:
        assert key not in part
    # Round trip through JSON keeps it comparable.
    assert accuracy_part(json.loads(json.dumps(a))) == accuracy_part(b)
    # The part is a copy: editing it leaves the report alone.
    part["per_class_iou"]["road"] = 0.0
    assert a["per_class_iou"]["road"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("change", ["fused", "frame_only", "condition", "evaluated", "compare"])
def test_accuracy_part_sees_a_different_matrix(change: str) -> None:
    overrides = {
        "fused": {"fused": matrix(FUSED_DAY, FUSED_DAY)},
        "frame_only": {"frame_only": matrix(FUSED_DAY, FUSED_NIGHT)},
        "condition": {"fused_by_condition": {"day": matrix(FUSED_NIGHT)}},
        "evaluated": {"frames": {"in_bag": 8, "evaluated": 6}},
        "compare": {"compare": False},
    }[change]
    assert accuracy_part(build_report(make_run())) != accuracy_part(
        build_report(make_run(**overrides))
    )


def test_bad_runs_are_refused() -> None:
    with pytest.raises(ValueError, match="'fast'"):
        make_run(mode="fast")
    with pytest.raises(ValueError, match="3 class names"):
        make_run(class_names=CLASSES[:3])
    with pytest.raises(ValueError, match=r"frame_only\['night'\]"):
        make_run(frame_only_by_condition={"night": ConfusionMatrix(5)})
    with pytest.raises(ValueError, match="without the overall"):
        make_run(compare=False, frame_only_by_condition={})
    with pytest.raises(ValueError, match="2 mask stamps but 1"):
        make_run(mask_stamps_ns=[1, 2], mask_arrival_ns=[1])


def assert_png(path: Path, min_width: int = 200, min_height: int = 200) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    image = cv2.imread(str(path))
    assert image is not None, path
    height, width = image.shape[:2]
    assert width >= min_width and height >= min_height, (path, image.shape)
    assert image.std() > 0, path  # not a blank canvas


@pytest.mark.parametrize("compare", [True, False])
def test_files_written(tmp_path: Path, compare: bool) -> None:
    run = make_run(compare=compare)
    report = build_report(run)
    output_dir = tmp_path / "eval" / "drive_0007"  # created, parents included
    paths = write_report(report, run, output_dir)
    assert paths == [output_dir / name for name in REPORT_FILES]
    assert sorted(p.name for p in output_dir.iterdir()) == sorted(REPORT_FILES)  # no leftovers
    assert json.loads((output_dir / "report.json").read_text(encoding="utf-8")) == report
    for name in ("confusion_matrix.png", "per_class_iou.png", "latency.png"):
        assert_png(output_dir / name)

    md = (output_dir / "report.md").read_text(encoding="utf-8")
    assert "drive_0007" in md
    assert f"| all | {100 * sum(FUSED_IOU) / 3:.1f} |" in md  # 75.6
    assert "| day | 70.8 |" in md
    assert "| night | 66.7 |" in md
    assert "| road | 66.7 |" in md
    assert "| sky | n/a |" in md
    assert "| accumulate | 4 | 2.50 | 3.97 | 2.50 | 4.00 |" in md
    assert "| frame_to_mask | 0 | n/a | n/a | n/a | n/a |" in md
    assert "| frames.mask_fraction | 0.625 |" in md
    assert "| sync.matched_fraction | 0.6667 |" in md
    assert "- no ground truth for 1 frame" in md
    assert "![confusion matrix](confusion_matrix.png)" in md
    if compare:
        assert f"| all | 75.6 | {100 * sum(FRAME_ONLY_IOU) / 3:.1f} | +16.8 |" in md
        assert "| night | 66.7 | 33.3 | +33.3 |" in md
        assert "| road | 66.7 | 42.9 |" in md
        assert "| sky | n/a | n/a |" in md
    else:
        assert "frame-only" not in md


def test_existing_files_are_replaced(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text("stale", encoding="utf-8")
    (tmp_path / "latency.png").write_bytes(b"stale")
    (tmp_path / "notes.txt").write_text("kept", encoding="utf-8")
    run = make_run()
    write_report(build_report(run), run, tmp_path)
    assert json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))["bag"] == "drive_0007"
    assert_png(tmp_path / "latency.png")
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "kept"


def test_files_of_an_empty_run(tmp_path: Path) -> None:
    run = make_run(
        compare=False,
        fused=ConfusionMatrix(len(CLASSES)),
        fused_by_condition={},
        latency_ms={"inference": []},
        frames={},
        sync={},
        mask_arrival_ns=[],
        mask_stamps_ns=[],
    )
    paths = write_report(build_report(run), run, tmp_path)
    for path in paths[2:]:
        assert_png(path)
    assert "| all | n/a |" in (tmp_path / "report.md").read_text(encoding="utf-8")


def test_a_report_with_nan_is_not_written(tmp_path: Path) -> None:
    run = make_run()
    report = build_report(run)
    report["miou"] = float("nan")
    with pytest.raises(ValueError, match="JSON"):
        write_report(report, run, tmp_path)


def test_terminal_summary() -> None:
    text = format_report(build_report(make_run()))
    assert "drive_0007" in text
    assert "lockstep" in text
    lines = text.splitlines()
    (all_row,) = [line for line in lines if line.strip().startswith("all ")]
    assert all_row.split()[:3] == ["all", "75.6", "58.7"]  # (3/7 + 1/3 + 1) / 3 = 58.7 %
    (night_row,) = [line for line in lines if line.strip().startswith("night ")]
    assert night_row.split()[:3] == ["night", "66.7", "33.3"]
    assert "in_bag 8  published 6  evaluated 5  dropped 1" in text
    assert "62.5 %" in text  # masks for 5 of 8 frames
    assert "matched 4 = 66.7 % of sync.frames" in text
    (inference,) = [line for line in lines if line.strip().startswith("inference ")]
    assert inference.split() == ["inference", "4", "11.00", f"{12 + 0.97 * 18:.2f}"]
    assert "expected 20 fps" in text
    assert f"received {5 / 0.26:.4g} fps" in text
    assert f"jitter std {math.sqrt(102 / 5 - 2.4**2):.2f} ms p99 9.64 ms" in text
    assert "drops 3" in text
    assert "no ground truth for 1 frame" in text
    no_compare = format_report(build_report(make_run(compare=False)))
    assert "frame-only" not in no_compare
