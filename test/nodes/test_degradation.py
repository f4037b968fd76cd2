"""Degrade, don't collapse: faults injected into a replayed recording, the graph over real DDS.

Each test replays a simulated recording through the rig's own nodes (in one process, talking
over DDS) with a fault on the way: a stream switched off for seconds, packets lost, a sequence
jump, a driver restart, a loop of the recording, malformed messages. What is asserted are counts
and modes, never times: every frame is served in the mode that is still right, every fault is
counted, and the graph recovers without a restart.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from event_camera_msgs.msg import EventPacket
from rclpy.node import Node
from sensor_msgs.msg import Image

from evseg_ros.nodes.evaluate import EvalOptions, run_eval
from evseg_ros.nodes.health_msgs import parse_mode_status
from evseg_ros.nodes.image_conversion import ns_to_stamp, stamp_to_ns
from evseg_ros.nodes.qos import DIAGNOSTICS_QOS, EVENTS_QOS, FRAMES_QOS, RESULTS_QOS
from evseg_ros.nodes.runner import InProcessGraph

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config" / "rig.yaml"
FPS = 30.0
#: events off for 5 s, later frames off for 5 s, then a second of recovery
EVENTS_OFF = (0.5, 5.0)
FRAMES_OFF = (6.0, 5.0)


@pytest.fixture(scope="module")
def fault_recording(tmp_path_factory) -> Path:
    """12 s of the simulated rig at half its resolution (rendered once, ~1 min)."""
    from evseg_ros.sim.recording import RecordingSpec, cached_recording

    spec = RecordingSpec(
        seconds=12.0, seed=5, conditions=("normal", "night"), condition_period_s=3.0, fps=FPS,
        size=(160, 120),
    )
    return cached_recording(spec, cache_root=tmp_path_factory.mktemp("fault_recordings"))


@pytest.fixture(scope="module")
def fault_report(fault_recording, tiny_onnx_model, tmp_path_factory) -> dict:
    """``evseg eval`` of that recording with events off, then frames off."""
    options = EvalOptions(
        model=str(tiny_onnx_model), mode="realtime", rate=1.0, compare_frame_only=True,
        drop_events="{}:{}".format(*EVENTS_OFF), drop_frames="{}:{}".format(*FRAMES_OFF),
        panels=0,
    )
    output = tmp_path_factory.mktemp("fault_eval")
    outcome = run_eval(fault_recording, output, options)
    assert json.loads((output / "report.json").read_text())["modes"] == outcome.report["modes"]
    return outcome.report


def test_events_off_go_frame_only_and_frames_off_go_event_only(fault_report):
    modes = fault_report["modes"]
    off_frames = EVENTS_OFF[1] * FPS  # 150 frames in each fault
    # most frames of each fault are served in the mode still right (realtime: a few may drop)
    assert modes["frame_only"] >= 0.6 * off_frames
    assert modes["event_only"] >= 0.5 * off_frames
    # fused before, between and after the faults
    assert modes["fused"] >= 0.5 * FPS
    assert fault_report["degraded_frames"] == sum(n for m, n in modes.items() if m != "fused")
    assert set(fault_report["miou_by_mode"]) >= {"fused", "frame_only", "event_only"}
    # on the frames that had a camera frame the frame-only frames are the frame-only model's
    assert fault_report["miou_on_frame_only_frames"] is not None


def test_the_report_scores_the_frames_inside_the_faults(fault_report):
    assert fault_report["faults"]["off_intervals_s"] == [list(EVENTS_OFF), list(FRAMES_OFF)]
    assert fault_report["fault_frames"] > 1.2 * EVENTS_OFF[1] * FPS  # both faults scored
    assert fault_report["miou_during_fault"] is not None
    # the frame-only model has the events-off frames, and nothing while the frames were off
    assert 0 < fault_report["frame_only_fault_frames"] <= EVENTS_OFF[1] * FPS + 2
    assert fault_report["frame_only_miou_during_fault"] is not None
    assert fault_report["frames"]["in_bag"] == pytest.approx(12 * FPS, abs=5)


class Probe(Node):
    """Sees what any consumer sees: modes per frame, diagnostics of the segmentation node."""

    def __init__(self, **kwargs) -> None:
        super().__init__("fault_probe", **kwargs)
        self.modes: list[tuple[int, str]] = []
        self.diagnostics: list[tuple[int, str]] = []  # segmentation's (level, message)
        self.frames: list[int] = []
        self.masks = 0
        self.create_subscription(DiagnosticArray, "segmentation/status", self._status, RESULTS_QOS)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._diag, DIAGNOSTICS_QOS)
        self.create_subscription(Image, "segmentation/mask", self._mask, RESULTS_QOS)
        self.create_subscription(Image, "frame/image_raw", self._frame, FRAMES_QOS)
        self.events = self.create_publisher(EventPacket, "events", EVENTS_QOS)
        self.images = self.create_publisher(Image, "frame/image_raw", FRAMES_QOS)

    def _status(self, msg: DiagnosticArray) -> None:
        stamp, mode, _ = parse_mode_status(msg)
        self.modes.append((stamp, mode.value))

    def _diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith("/rig/segmentation"):
                self.diagnostics.append((int.from_bytes(status.level, "little"), status.message))

    def _mask(self, msg: Image) -> None:
        self.masks += 1

    def _frame(self, msg: Image) -> None:
        self.frames.append(stamp_to_ns(msg.header))


def _spin_until(graph: InProcessGraph, done, budget_s: float = 60.0) -> None:
    deadline = time.monotonic() + budget_s
    while not done() and time.monotonic() < deadline:
        graph.spin_once(0.02)


def _graph(recording: Path, model: Path, *, evk4: dict | None = None, loop: bool = False):
    replay = {"source": "bag", "bag_path": str(recording), "replay_rate": 0.5, "replay_loop": loop}
    return InProcessGraph(
        CONFIG,
        overrides={
            "segmentation": {"model_path": str(model)},
            "evk4_driver": {**replay, **(evk4 or {})},
            "flir_driver": replay,
        },
    )


def test_diagnostics_warn_with_the_reason_and_recover(short_recording, tiny_onnx_model):
    """Events off for a third of the recording: frame-only there, WARN saying so, then OK."""
    with _graph(short_recording, tiny_onnx_model, evk4={"replay_drop": "0.2:0.2"}) as graph:
        probe = Probe(context=graph.context, namespace="rig")
        graph.add_node(probe)
        _spin_until(graph, lambda: graph.replay_finished)
        _spin_until(graph, lambda: False, budget_s=1.5)  # the last frames and a diagnostics period
    modes = [mode for _, mode in sorted(probe.modes)]
    assert "frame_only" in modes
    first_degraded = modes.index("frame_only")
    assert "fused" in modes[first_degraded:]  # recovered
    warn = [i for i, (level, msg) in enumerate(probe.diagnostics)
            if level == int.from_bytes(DiagnosticStatus.WARN, "little") and "frame_only" in msg]
    assert warn, probe.diagnostics
    ok_after = [level for level, _ in probe.diagnostics[warn[0]:]
                if level == int.from_bytes(DiagnosticStatus.OK, "little")]
    assert ok_after, probe.diagnostics


def test_lost_packets_are_counted_exactly_and_never_fused_blindly(short_recording, tiny_onnx_model):
    evk4 = {"replay_message_loss": 0.1, "replay_fault_seed": 4}
    with _graph(short_recording, tiny_onnx_model, evk4=evk4) as graph:
        probe = Probe(context=graph.context, namespace="rig")
        graph.add_node(probe)
        _spin_until(graph, lambda: graph.replay_finished)
        _spin_until(graph, lambda: False, budget_s=1.0)
        lost_at_driver = graph.nodes["evk4_driver"]._status_values()["fault_dropped_loss"]  # noqa: SLF001
        counters = graph.nodes["accumulator"].core.diagnostics()
    assert lost_at_driver > 0
    assert counters["packets_lost"] == lost_at_driver  # every lost packet seen as a seq gap
    assert counters["seq_resets"] == 0
    assert probe.masks > 0 and probe.modes


def _event_packet(seq: int, *, encoding: str = "evt3", data: bytes = b"", width: int = 1280,
                  height: int = 720) -> EventPacket:
    msg = EventPacket(encoding=encoding, seq=seq, width=width, height=height)
    msg.events = list(data)
    return msg


def test_seq_jump_malformed_input_restart_and_loop_are_counted_and_survived(
    short_recording, tiny_onnx_model, sim_calibration
):
    event_cam = sim_calibration.event_camera
    size = {"width": event_cam.width, "height": event_cam.height}
    with _graph(short_recording, tiny_onnx_model, loop=True) as graph:
        probe = Probe(context=graph.context, namespace="rig")
        graph.add_node(probe)
        _spin_until(graph, lambda: probe.masks >= 3)
        accumulator = graph.nodes["accumulator"].core
        segmentation = graph.nodes["segmentation"]
        bad_input_before = segmentation.counters["bad_input"]
        # malformed EventPackets: absurd seq, foreign encoding, another sensor, odd length
        probe.events.publish(_event_packet(2**63 - 1, **size))
        probe.events.publish(_event_packet(1, encoding="evt4", data=b"\0" * 8, **size))
        probe.events.publish(_event_packet(2, data=b"\0" * 8, width=64, height=48))
        probe.events.publish(_event_packet(3, data=b"\0" * 7, **size))
        # malformed Images between two real frames: wrong encoding, step, zero size, short data
        bad = [
            Image(encoding="32FC1", width=320, height=240, step=1280, data=bytes(1280 * 240)),
            Image(encoding="rgb8", width=320, height=240, step=10, data=bytes(960 * 240)),
            Image(encoding="rgb8", width=0, height=0, step=0, data=b""),
            Image(encoding="rgb8", width=320, height=240, step=960, data=bytes(100)),
        ]
        for count, image in enumerate(bad, start=1):  # one at a time: none waits behind another
            ns_to_stamp(image.header, probe.frames[-1] + 5_000_000)
            image.header.frame_id = "frame_camera"
            probe.images.publish(image)
            _spin_until(
                graph, lambda n=count: segmentation.counters["bad_input"] >= bad_input_before + n
            )
        _spin_until(graph, lambda: accumulator.counters["odd_length_packets"] >= 1)
        # a driver restart: a new EVK4 node, sequence numbers from 0 again
        old = graph.nodes["evk4_driver"]
        graph.executor.remove_node(old)
        overrides = list(old._parameter_overrides.values())  # noqa: SLF001 (same parameters)
        epoch_ns = old.replay.clock.epoch_ns
        old.destroy_node()
        restarted = type(old)(context=graph.context, namespace="rig", parameter_overrides=overrides)
        graph.nodes["evk4_driver"] = restarted
        graph.executor.add_node(restarted)
        restarted.start_replay(epoch_ns)  # it comes back where the recording plays now
        masks_at_restart = probe.masks
        # the recording loops at least once more and masks keep coming, fused again
        _spin_until(graph, lambda: accumulator.counters["sensor_time_resets"] >= 2, 90.0)
        _spin_until(graph, lambda: probe.masks >= masks_at_restart + 10, 60.0)
        counters = accumulator.diagnostics()
    assert counters["seq_resets"] >= 2  # the absurd jump (and back), the restart
    assert counters["packets_lost"] < 1_000_000  # not 9e18
    assert counters["unknown_encoding"] == 1 and counters["geometry_mismatch"] == 1
    assert counters["odd_length_packets"] >= 1
    assert segmentation.counters["bad_input"] >= bad_input_before + 4
    assert counters["sensor_time_resets"] >= 2  # the loop(s) and the restart
    assert probe.masks >= masks_at_restart + 10
    assert "fused" in [mode for _, mode in probe.modes[-5:]]


def test_a_frame_timeout_of_zero_never_serves_triggers_event_only(short_recording, tiny_onnx_model):
    """The policy's knob: with frame_timeout_ms 0 a frame gap leaves no event-only masks."""
    with InProcessGraph(
        CONFIG,
        overrides={
            "segmentation": {"model_path": str(tiny_onnx_model)},
            "accumulator": {"frame_timeout_ms": 0.0},
            "evk4_driver": {"source": "bag", "bag_path": str(short_recording), "replay_rate": 0.5},
            "flir_driver": {
                "source": "bag", "bag_path": str(short_recording), "replay_rate": 0.5,
                "replay_drop": "0.2:0.3",
            },
        },
    ) as graph:
        probe = Probe(context=graph.context, namespace="rig")
        graph.add_node(probe)
        _spin_until(graph, lambda: graph.replay_finished)
        _spin_until(graph, lambda: False, budget_s=1.0)
        counters = graph.nodes["accumulator"].core.counters
    assert counters["frameless_out"] == 0
    assert "event_only" not in {mode for _, mode in probe.modes}
    assert np.count_nonzero([mode == "fused" for _, mode in probe.modes]) > 0
