"""FLIR frame camera driver: ``sensor_msgs/Image`` (rgb8) + ``CameraInfo`` per triggered frame.

The stamp is the frame's trigger time (exposure start) in ROS time, which the accumulator maps
back to the trigger event in the event stream. On the simulated rig the driver also publishes the
ground-truth labels (mono8 class ids) on ``frame/ground_truth`` with the same stamp.
"""

from __future__ import annotations

from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from evseg_ros.geometry.calibration import CameraModel, load_calibration
from evseg_ros.nodes.driver_base import SourceDriverNode
from evseg_ros.nodes.image_conversion import ns_to_stamp, to_image_msg
from evseg_ros.nodes.params import Param
from evseg_ros.nodes.qos import FRAMES_QOS
from evseg_ros.nodes.sim_params import SIM_PARAMS, build_rig
from evseg_ros.nodes.spin import run_node
from evseg_ros.paths import resolve_package_path
from evseg_ros.sources import FrameSource, SimFrameSource

PARAMS: tuple[Param, ...] = (
    Param("source", "sim", "where frames come from", ("sim", "hardware")),
    Param("serial", "", "camera serial number (hardware source; empty = first camera)"),
    Param("frame_id", "frame_camera", "TF frame of the frame camera"),
    Param("poll_period_ms", 5.0, "how often the source is polled [ms]"),
    Param("calibration_file", "config/calibration/sim_rig.yaml", "rig calibration file"),
    Param("publish_ground_truth", True, "publish simulator labels on frame/ground_truth"),
    *SIM_PARAMS,
)


def camera_info_msg(camera: CameraModel, header: Header) -> CameraInfo:
    info = CameraInfo()
    info.header = header
    info.width, info.height = camera.width, camera.height
    info.distortion_model = "plumb_bob"
    info.d = [float(v) for v in camera.distortion]
    info.k = [float(v) for v in camera.camera_matrix.reshape(-1)]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [
        camera.fx, 0.0, camera.cx, 0.0,
        0.0, camera.fy, camera.cy, 0.0,
        0.0, 0.0, 1.0, 0.0,
    ]
    return info


class FlirDriverNode(SourceDriverNode):
    """Poll a frame source and publish each frame with its camera info."""

    source: FrameSource | None

    def __init__(self, **kwargs) -> None:
        self.frames_published = 0
        super().__init__("flir_driver", PARAMS, **kwargs)

    def _setup_publishers(self) -> None:
        self.camera = load_calibration(
            resolve_package_path(self.params["calibration_file"])
        ).frame_camera
        self.image_publisher = self.create_publisher(Image, "frame/image_raw", FRAMES_QOS)
        self.info_publisher = self.create_publisher(CameraInfo, "frame/camera_info", FRAMES_QOS)
        self.truth_publisher = None
        if self.params["source"] == "sim" and self.params["publish_ground_truth"]:
            self.truth_publisher = self.create_publisher(Image, "frame/ground_truth", FRAMES_QOS)

    def _open_source(self) -> FrameSource:
        if self.params["source"] == "hardware":
            from evseg_ros.sources.hardware import SpinnakerFrameSource

            return SpinnakerFrameSource(serial=self.params["serial"])
        rig, epoch_ns = build_rig(self.params)
        return SimFrameSource(
            rig, epoch_ns=epoch_ns, with_ground_truth=self.params["publish_ground_truth"],
            time_scale=float(self.params["sim_time_scale"]),
        )

    def _poll(self, now_ns: int) -> None:
        for frame in self.source.read(now_ns):
            header = ns_to_stamp(Header(frame_id=self.params["frame_id"]), frame.stamp_ns)
            self.image_publisher.publish(to_image_msg(frame.image, "rgb8", header))
            self.info_publisher.publish(camera_info_msg(self.camera, header))
            if self.truth_publisher is not None and frame.ground_truth is not None:
                self.truth_publisher.publish(to_image_msg(frame.ground_truth, "mono8", header))
            self.frames_published += 1

    def _status_values(self) -> dict[str, int]:
        skipped = 0 if self.source is None else self.source.skipped_frames
        return {"frames_published": self.frames_published, "frames_skipped": skipped}


def main(args: list[str] | None = None) -> int:
    return run_node(FlirDriverNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
