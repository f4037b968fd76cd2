"""Frame replay sources: video file, image folder, rosbag2 Images; newest-only and stamped."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from evseg_ros.sources import SourceUnavailableError
from evseg_ros.sources.frame_replay import (
    ImageFolderFrameSource,
    VideoFileFrameSource,
)

SECOND = 1_000_000_000
T0 = 50 * SECOND


def _colour(i: int) -> tuple[int, int, int]:
    """RGB of frame ``i``: far apart, so lossy compression cannot confuse two frames."""
    return (20 * i % 256, 255 - 20 * i % 256, 128)


def write_video(path: Path, frames: int = 10, rate_hz: float = 20.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), rate_hz, (64, 48))
    assert writer.isOpened()
    for i in range(frames):
        rgb = np.empty((48, 64, 3), np.uint8)
        rgb[:] = _colour(i)
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _drain(source, now_ns: int = T0, limit: int = 100) -> list:
    frames = []
    for _ in range(limit):
        batch = source.read(now_ns)
        if not batch:
            break
        frames += batch
    return frames


def test_video_as_fast_as_consumed_keeps_the_file_rate_in_its_stamps(tmp_path):
    source = VideoFileFrameSource(write_video(tmp_path / "clip.avi"), realtime=False)
    assert (source.width, source.height, source.rate_hz) == (64, 48, 20.0)
    frames = _drain(source)
    assert [f.frame_id for f in frames] == list(range(10))
    assert [f.stamp_ns - T0 for f in frames] == [i * 50_000_000 for i in range(10)]
    for i, frame in enumerate(frames):
        assert frame.encoding == "rgb8" and frame.image.shape == (48, 64, 3)
        assert np.abs(frame.image[24, 32].astype(int) - _colour(i)).max() < 12
    assert source.finished and source.read(T0) == [] and source.skipped_frames == 0
    source.close()


def test_video_in_real_time_sends_the_newest_due_frame(tmp_path):
    source = VideoFileFrameSource(write_video(tmp_path / "clip.avi"), realtime=True)
    (first,) = source.read(T0)
    assert (first.frame_id, first.stamp_ns) == (0, T0)
    assert source.read(T0 + 40_000_000) == []  # frame 1 is due at +50 ms
    (newest,) = source.read(T0 + 175_000_000)  # frames 1, 2, 3 are due
    assert (newest.frame_id, newest.stamp_ns) == (3, T0 + 150_000_000)
    assert source.skipped_frames == 2
    assert np.abs(newest.image[10, 10].astype(int) - _colour(3)).max() < 12
    (last,) = source.read(T0 + 10 * SECOND)
    assert last.frame_id == 9 and source.skipped_frames == 7 and source.finished


def test_video_loop_continues_the_stamps(tmp_path):
    source = VideoFileFrameSource(
        write_video(tmp_path / "clip.avi", frames=4), loop=True, realtime=False
    )
    frames = [source.read(T0)[0] for _ in range(10)]
    assert [f.frame_id for f in frames] == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    assert source.loops == 2 and not source.finished
    assert np.diff([f.stamp_ns for f in frames]).tolist() == [50_000_000] * 9


def test_missing_or_broken_video_is_a_clear_error(tmp_path):
    with pytest.raises(SourceUnavailableError, match=r"nothing\.avi.*does not exist"):
        VideoFileFrameSource(tmp_path / "nothing.avi")
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage" * 10)
    with pytest.raises(SourceUnavailableError, match=r"broken\.avi"):
        VideoFileFrameSource(broken)


def _folder(tmp_path: Path, count: int = 5) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(count):
        rgb = np.empty((30, 40, 3), np.uint8)
        rgb[:] = _colour(i)
        cv2.imwrite(str(folder / f"frame_{i:04d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_image_folder_in_name_order_at_a_fixed_rate(tmp_path):
    folder = _folder(tmp_path)
    cv2.imwrite(str(folder / "frame_0005.png"), np.full((30, 40), 77, np.uint8))  # gray
    source = ImageFolderFrameSource(folder, rate_hz=5.0, realtime=False)
    frames = _drain(source)
    assert [f.frame_id for f in frames] == list(range(6))
    assert [f.stamp_ns - T0 for f in frames] == [i * 200_000_000 for i in range(6)]
    for i in range(5):  # PNG is lossless
        assert frames[i].encoding == "rgb8"
        assert tuple(frames[i].image[0, 0]) == _colour(i)
    assert frames[5].encoding == "mono8" and frames[5].image.shape == (30, 40)
    assert (source.width, source.height) == (40, 30)


def test_image_folder_timestamps_file_and_bad_images(tmp_path):
    folder = _folder(tmp_path, count=4)
    (folder / "frame_0002.png").write_bytes(b"not a png")  # damaged after the first
    (folder / "timestamps.txt").write_text("# t [us]\n1000000\n1010000\n\n1030000\n1070000\n")
    source = ImageFolderFrameSource(folder, realtime=True)
    (first,) = source.read(T0)
    assert first.stamp_ns == T0
    # frames 1 (+10 ms) and 2 (+30 ms) are due: 1 is skipped for 2, which cannot be read
    assert source.read(T0 + 40_000_000) == []
    assert (source.skipped_frames, source.bad_frames) == (1, 1)
    rest = _drain(source, T0 + SECOND)
    assert [f.frame_id for f in rest] == [3] and rest[0].stamp_ns == T0 + 70_000_000
    assert source.status_values()["bad_frames"] == source.bad_frames


def test_image_folder_errors_name_the_path(tmp_path):
    with pytest.raises(SourceUnavailableError, match=r"missing.*does not exist"):
        ImageFolderFrameSource(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceUnavailableError, match=r"empty.*holds no"):
        ImageFolderFrameSource(empty)
    folder = _folder(tmp_path, count=3)
    (folder / "timestamps.txt").write_text("1\n2\n")
    with pytest.raises(SourceUnavailableError, match=r"timestamps\.txt.*2 timestamps for 3"):
        ImageFolderFrameSource(folder)
    (folder / "timestamps.txt").write_text("1\n2\nthree\n")
    with pytest.raises(SourceUnavailableError, match=r"line 3: 'three'"):
        ImageFolderFrameSource(folder)
    with pytest.raises(ValueError, match="rate_hz"):
        ImageFolderFrameSource(folder, rate_hz=0.0)
