"""Proof of life: the real node graph over DDS returns one mask per published frame.

Two set-ups: the in-process runner (one executor, event frames handed over directly) and
separate processes over the shared-memory Fast DDS profile, as ``ros2 launch`` would run them.
Both use a small randomly initialised model: what is checked is the plumbing (stamps, encodings,
sizes), not accuracy.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import Image

from evseg_ros.nodes.graph import GRAPH
from evseg_ros.nodes.health_msgs import parse_mode_status
from evseg_ros.nodes.image_conversion import from_image_msg, stamp_to_ns
from evseg_ros.nodes.qos import FRAMES_QOS, RESULTS_QOS
from evseg_ros.nodes.runner import InProcessGraph
from evseg_ros.pipeline.modality import Mode

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config" / "rig.yaml"
N_MASKS = 5


class Probe(Node):
    """Records frame stamps and masks as any downstream consumer would see them."""

    def __init__(self, **kwargs) -> None:
        super().__init__("probe", **kwargs)
        self.frame_stamps: list[int] = []
        self.masks: list[Image] = []
        self.overlays: list[Image] = []
        self.event_only: set[int] = set()  # stamps segmentation/status says were event-only
        self.create_subscription(Image, "frame/image_raw", self._frame, FRAMES_QOS)
        self.create_subscription(DiagnosticArray, "segmentation/status", self._status, RESULTS_QOS)
        self.create_subscription(Image, "segmentation/mask", self.masks.append, RESULTS_QOS)
        self.create_subscription(Image, "segmentation/overlay", self.overlays.append, RESULTS_QOS)

    def _frame(self, msg: Image) -> None:
        self.frame_stamps.append(stamp_to_ns(msg.header))

    def _status(self, msg: DiagnosticArray) -> None:
        stamp, mode, _ = parse_mode_status(msg)
        if mode is Mode.EVENT_ONLY:
            self.event_only.add(stamp)

    def masks_since_first_frame(self) -> list[Image]:
        """Masks of frames this probe saw too (it may join after the first frames went out)."""
        if not self.frame_stamps:
            return []
        return [m for m in self.masks if stamp_to_ns(m.header) >= self.frame_stamps[0]]

    def framed_masks(self) -> list[Image]:
        """Those of the masks that carry a camera frame's stamp (not event-only ones)."""
        frames = set(self.frame_stamps)
        return [m for m in self.masks_since_first_frame() if stamp_to_ns(m.header) in frames]


def _check_masks(probe: Probe) -> None:
    masks = probe.masks_since_first_frame()
    assert len(masks) >= N_MASKS
    all_stamps = [stamp_to_ns(m.header) for m in masks]
    assert all_stamps == sorted(all_stamps)
    # a frame late by more than frame_timeout_ms (a loaded machine rendering the simulated rig)
    # is served event-only at its trigger, stamped as the frame would have been, and says so
    invented = set(all_stamps) - set(probe.frame_stamps)
    assert invented <= probe.event_only
    # every other mask carries the exact stamp of a published frame, in order, and a frame in
    # between without one was served event-only (its mask stamped within half a period of it)
    mask_stamps = [stamp for stamp in all_stamps if stamp not in invented]
    assert len(mask_stamps) >= N_MASKS
    first = probe.frame_stamps.index(mask_stamps[0])
    last = probe.frame_stamps.index(mask_stamps[N_MASKS - 1])
    half_period = (probe.frame_stamps[1] - probe.frame_stamps[0]) // 2
    for stamp in probe.frame_stamps[first : last + 1]:
        assert stamp in mask_stamps or any(abs(stamp - e) < half_period for e in invented)
    for mask in masks:
        array = from_image_msg(mask, expected=("mono8",))
        assert array.shape == (240, 320)
        assert array.max() < 11
        assert mask.header.frame_id == "frame_camera"
    assert probe.overlays and probe.overlays[0].encoding == "rgb8"


def test_in_process_graph_returns_a_mask_per_frame(tiny_onnx_model, short_recording):
    replay = {"source": "bag", "bag_path": str(short_recording), "replay_rate": 0.5}
    overrides = {
        "segmentation": {"model_path": str(tiny_onnx_model)},
        "evk4_driver": replay,
        "flir_driver": replay,
    }
    with InProcessGraph(CONFIG, overrides=overrides) as graph:
        assert [n.get_fully_qualified_name() for n in graph.nodes.values()] == [
            f"/rig/{spec.name}" for spec in GRAPH
        ]
        probe = Probe(context=graph.context, namespace="rig")
        graph.add_node(probe)
        deadline = time.monotonic() + 60
        while len(probe.framed_masks()) < N_MASKS and time.monotonic() < deadline:
            graph.spin_once(0.02)
        for _ in range(10):  # the statuses of the last masks
            graph.spin_once(0.02)
        accumulator = graph.nodes["accumulator"].core.diagnostics()
    _check_masks(probe)
    assert accumulator["seq_gaps"] == 0
    assert accumulator["triggers_matched"] >= N_MASKS
    assert accumulator["unknown_encoding"] == 0


def test_the_live_simulator_keeps_the_graph_responsive(tiny_onnx_model):
    """Rendering in the loop falls behind on a small machine: it skips, it never blocks."""
    overrides = {"segmentation": {"model_path": str(tiny_onnx_model)}}
    with InProcessGraph(CONFIG, overrides=overrides) as graph:
        probe = Probe(context=graph.context, namespace="rig")
        graph.add_node(probe)
        deadline = time.monotonic() + 60
        while len(probe.masks_since_first_frame()) < 2 and time.monotonic() < deadline:
            graph.spin_once(0.02)
        status = graph.nodes["evk4_driver"]._status_values()  # noqa: SLF001
    assert len(probe.masks_since_first_frame()) >= 2
    assert {"sim_skipped_ms", "sim_skips"} <= set(status)  # what it skipped is counted


def test_separate_processes_over_shared_memory_dds(tiny_onnx_model):
    env = dict(os.environ)
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(REPO / "config" / "fastdds_shm.xml")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    epoch = time.time_ns() + 4_000_000_000  # sensor time 0 once every process is up
    extra = {
        "evk4_driver": [f"sim_epoch_ns:={epoch}"],
        "flir_driver": [f"sim_epoch_ns:={epoch}"],
        "accumulator": [],
        "segmentation": [f"model_path:={tiny_onnx_model}"],
    }
    processes = []
    context = Context()
    try:
        for spec in GRAPH:
            module = spec.target.partition(":")[0]
            args = [
                sys.executable,
                "-m",
                module,
                "--ros-args",
                "--params-file",
                str(CONFIG),
                "-r",
                "__ns:=/rig",
            ]
            for value in extra[spec.name]:
                args += ["-p", value]
            processes.append(subprocess.Popen(args, env=env, cwd=REPO))
        rclpy.init(context=context)
        executor = SingleThreadedExecutor(context=context)
        probe = Probe(context=context, namespace="rig")
        executor.add_node(probe)
        deadline = time.monotonic() + 90
        while len(probe.framed_masks()) < N_MASKS and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
            assert all(p.poll() is None for p in processes), "a node process died"
        for _ in range(10):  # the statuses of the last masks
            executor.spin_once(timeout_sec=0.02)
        _check_masks(probe)
    finally:
        for process in processes:
            process.send_signal(signal.SIGINT)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        rclpy.try_shutdown(context=context)
    assert [p.returncode for p in processes] == [0] * len(processes)
