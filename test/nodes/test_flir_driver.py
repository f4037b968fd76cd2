"""FLIR driver node with replay sources: real rclpy, frames and camera info over DDS."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import CameraInfo, Image

from evseg_ros.nodes.diagnostics import ERROR, WARN
from evseg_ros.nodes.flir_driver import FlirDriverNode
from evseg_ros.nodes.image_conversion import stamp_to_ns
from evseg_ros.nodes.qos import FRAMES_QOS

SECOND = 1_000_000_000


def _write_folder(folder: Path, count: int) -> list[np.ndarray]:
    """PNG frames of the calibration's size (320x240), with a timestamps.txt in us."""
    folder.mkdir()
    frames = []
    for i in range(count):
        rgb = np.zeros((240, 320, 3), np.uint8)
        rgb[:, :, 0], rgb[:, :, 1], rgb[:, :, 2] = 40 * i, 200 - 40 * i, 7
        cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        frames.append(rgb)
    (folder / "timestamps.txt").write_text(
        "".join(f"{5_000_000 + 25_000 * i}\n" for i in range(count))
    )
    return frames


def _write_bayer_bag(path: Path, stamps_ns: list[int]) -> list[np.ndarray]:
    """A rosbag2 (MCAP) of 64x48 bayer_rggb8 Images: not the calibration's size."""
    typestore = get_typestore(Stores.LATEST)
    image_type = typestore.types["sensor_msgs/msg/Image"]
    header_type = typestore.types["std_msgs/msg/Header"]
    time_type = typestore.types["builtin_interfaces/msg/Time"]
    mosaics = []
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connection = writer.add_connection(
            "/cam/image_raw", image_type.__msgtype__, typestore=typestore
        )
        for i, stamp in enumerate(stamps_ns):
            mosaic = (np.arange(48 * 64).reshape(48, 64) + i).astype(np.uint8)
            sec, nanosec = divmod(stamp, SECOND)
            msg = image_type(
                header=header_type(stamp=time_type(sec=sec, nanosec=nanosec), frame_id="x"),
                height=48,
                width=64,
                encoding="bayer_rggb8",
                is_bigendian=0,
                step=64,
                data=mosaic.reshape(-1),
            )
            writer.write(connection, stamp, typestore.serialize_cdr(msg, image_type.__msgtype__))
            mosaics.append(mosaic)
    return mosaics


def _run_driver(overrides: dict, frames_wanted: int) -> tuple[FlirDriverNode, list, list, list]:
    """Start the driver and a listener in one executor until ``frames_wanted`` images arrived."""
    context = Context()
    rclpy.init(context=context)
    images: list[Image] = []
    infos: list[CameraInfo] = []
    statuses: list = []
    try:
        executor = SingleThreadedExecutor(context=context)
        parameters = [Parameter(k, value=v) for k, v in overrides.items()]
        node = FlirDriverNode(context=context, namespace="flir", parameter_overrides=parameters)
        listener = Node("listener", context=context, namespace="flir")
        listener.create_subscription(Image, "frame/image_raw", images.append, FRAMES_QOS)
        listener.create_subscription(CameraInfo, "frame/camera_info", infos.append, FRAMES_QOS)
        listener.create_subscription(
            DiagnosticArray, "/diagnostics", lambda m: statuses.extend(m.status), 10
        )
        deadline = time.monotonic() + 10  # frames sent before discovery would be lost
        while time.monotonic() < deadline and not (
            node.image_publisher.get_subscription_count()
            and node.info_publisher.get_subscription_count()
        ):
            time.sleep(0.01)
        for n in (node, listener):
            executor.add_node(n)
        wanted = f"evseg_ros: {node.get_fully_qualified_name()}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (
            len(images) >= frames_wanted
            and len(infos) >= frames_wanted
            and any(s.name == wanted for s in statuses)
            and (node.source is None or node.source.finished)
        ):
            executor.spin_once(timeout_sec=0.02)
        statuses = [s for s in statuses if s.name == wanted]
        node.destroy_node()
        listener.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
    return node, images, infos, statuses


def _values(status) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def test_folder_replay_publishes_rgb8_frames_with_recorded_spacing(tmp_path):
    frames = _write_folder(tmp_path / "images", 4)
    node, images, infos, statuses = _run_driver(
        {"source": "folder", "image_folder": str(tmp_path / "images"), "replay_pacing": "fast"},
        4,
    )
    assert node.error == "" and node.frames_published == 4
    assert len(images) == 4 and len(infos) == 4
    stamps = [stamp_to_ns(m.header) for m in images]
    assert np.diff(stamps).tolist() == [25_000_000] * 3  # timestamps.txt spacing
    for msg, rgb in zip(images, frames):
        assert (msg.encoding, msg.width, msg.height, msg.step) == ("rgb8", 320, 240, 960)
        assert msg.header.frame_id == "frame_camera"
        np.testing.assert_array_equal(np.frombuffer(msg.data, np.uint8).reshape(240, 320, 3), rgb)
    for info, msg in zip(infos, images):
        assert stamp_to_ns(info.header) == stamp_to_ns(msg.header)
        assert (info.width, info.height) == (320, 240)
        assert list(info.k) == [260.0, 0.0, 159.5, 0.0, 260.0, 119.5, 0.0, 0.0, 1.0]
    values = _values(statuses[-1])
    assert values["frames_published"] == "4" and values["size_mismatch"] == "0"
    assert values["source"] == "folder" and values["settings_not_applied"] == "none"


def test_bag_replay_keeps_bayer_encoding_and_stamps_and_counts_size_mismatch(tmp_path):
    stamps = [1_000 * SECOND + i * 33_000_000 for i in range(3)]
    mosaics = _write_bayer_bag(tmp_path / "bag", stamps)
    node, images, infos, statuses = _run_driver(
        {"source": "bag", "bag_path": str(tmp_path / "bag"), "replay_pacing": "fast"}, 3
    )
    assert [stamp_to_ns(m.header) for m in images] == stamps
    for msg, mosaic in zip(images, mosaics):
        assert (msg.encoding, msg.width, msg.height, msg.step) == ("bayer_rggb8", 64, 48, 64)
        np.testing.assert_array_equal(np.frombuffer(msg.data, np.uint8).reshape(48, 64), mosaic)
    assert (infos[0].width, infos[0].height) == (320, 240)  # camera info from the calibration
    assert node.size_mismatch == 3
    assert statuses[-1].level == WARN and "differ in size" in statuses[-1].message
    assert _values(statuses[-1])["size_mismatch"] == "3"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"source": "folder", "image_folder": "no/such/folder"}, "no/such/folder"),
        ({"source": "folder", "image_folder": ""}, "needs parameter 'image_folder'"),
        ({"source": "video", "video_file": "missing.avi"}, "missing.avi"),
        ({"source": "bag", "bag_path": "no_bag_here"}, "no_bag_here"),
    ],
)
def test_unusable_recordings_leave_the_node_up_with_an_error(overrides, expected):
    context = Context()
    rclpy.init(context=context)
    try:
        node = FlirDriverNode(
            context=context,
            parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()],
        )
        node._poll_source()  # polling without a source is harmless
        level, message, values = node._diagnostics()
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
    assert level == ERROR and expected in message and node.source is None
    assert values["frames_published"] == 0


def test_hardware_without_pyspin_names_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "PySpin", None)
    context = Context()
    rclpy.init(context=context)
    try:
        node = FlirDriverNode(
            context=context, parameter_overrides=[Parameter("source", value="hardware")]
        )
        level, message, _ = node._diagnostics()
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
    assert level == ERROR and "spinnaker-python" in message and "PySpin" in message


def test_bad_hardware_settings_are_refused_naming_them():
    context = Context()
    rclpy.init(context=context)
    try:
        with pytest.raises(ValueError, match="trigger_source"):
            FlirDriverNode(
                context=context,
                parameter_overrides=[
                    Parameter("source", value="hardware"),
                    Parameter("trigger_source", value="Line9"),
                ],
            )
    finally:
        rclpy.try_shutdown(context=context)
