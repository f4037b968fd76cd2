"""``scripts/soak.py`` on a short looping recording: samples come out with memory and masks.

Only that the run measures something is checked, never how fast or how much memory: the
figures depend on the machine and its load.
"""

from __future__ import annotations

import json
from collections import deque

#: wall time of the run: a few intervals and several passes of the 0.6 s recording
RUN_SECONDS = 20.0


def test_soak_writes_samples_with_memory_and_masks(
    short_recording, tiny_onnx_model, tmp_path, capsys, load_script
):
    soak = load_script("soak")
    output = tmp_path / "soak" / "soak.json"
    argv = [
        "--bag", str(short_recording),
        "--model", str(tiny_onnx_model),
        "--minutes", str(RUN_SECONDS / 60),
        "--interval", "5",
        "--output", str(output),
    ]
    assert soak.main(argv) == 0

    report = json.loads(output.read_text())
    samples = report["samples"]
    assert len(samples) >= 3
    assert all(sample["rss_mb"] > 0 for sample in samples)
    assert sum(sample["masks"] for sample in samples) > 0
    assert report["summary"]["masks"] == sum(sample["masks"] for sample in samples)
    assert report["summary"]["replay_loops"] > 0  # the recording was looped, not played once
    assert output.with_suffix(".png").is_file()
    printed = capsys.readouterr().out
    assert "summary after" in printed and "growth after warm-up" in printed


def test_keys_are_matched_by_whole_words_and_drops_are_no_queues(load_script):
    soak = load_script("soak")
    values = {
        "accumulator": {
            "frames_pending": 3, "events_buffered": 10, "frames_dropped_queue_full": 1,
            "frames_late": 2, "accumulate_ms_median": "0.1", "sync_frame_latency_us": 5,
            "device": "cpu", "replay_finished": True,
        },
    }
    assert soak.queue_values(values) == {
        "accumulator.frames_pending": 3.0, "accumulator.events_buffered": 10.0,
    }
    assert soak.select_values(values, soak.DROP_WORDS) == {
        "accumulator.frames_dropped_queue_full": 1.0, "accumulator.frames_late": 2.0,
    }


def test_a_mask_takes_its_frame_of_this_pass_once(load_script):
    soak = load_script("soak")
    published = deque([(10, 1_000), (20, 2_000), (10, 7_000)], maxlen=8)  # stamp 10 twice
    send_times = soak.FrameSendTimes(published, max_age_ns=5_000)
    assert send_times.take(10, 7_500) == 7_000  # the newest pass's frame
    assert send_times.take(10, 7_600) is None  # that frame already has its mask
    assert send_times.take(20, 7_600) is None  # older than one pass: an earlier pass's frame
    assert send_times.take(30, 7_600) is None  # never published
