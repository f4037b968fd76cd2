"""The accumulator's torch path gives the host path's frames and counters, bit for bit.

The torch path forced onto the CPU (``event_path=TORCH, device="cpu"``) runs the exact code of
the CUDA path, so these tests check it on every machine; the CUDA cases run wherever torch sees
a GPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from evseg_ros.device import DeviceError
from evseg_ros.events import evt3_fast
from evseg_ros.events.event_frame import EventFrameBuilder
from evseg_ros.events.evt2 import Evt2Decoder
from evseg_ros.events.evt3 import Evt3EncoderState, encode_evt3
from evseg_ros.events.evt3_torch import TorchEvt3Accumulator
from evseg_ros.events.representations import Representation
from evseg_ros.events.types import EVENT_DTYPE, TRIGGER_DTYPE
from evseg_ros.events.window import WindowConfig, WindowMode
from evseg_ros.geometry.calibration import calibration_from_dict
from evseg_ros.pipeline import AccumulatorConfig, EventFrameAccumulator
from evseg_ros.pipeline.accumulator import EventPath, choose_event_path

EPOCH_NS = 1_750_000_000_000_000_000
PERIOD_US = 50_000
PACKET_US = 7_000
DURATION_US = 300_000
EVT2_SAMPLE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "expelliarmus" / (
    "evt2_sample.raw"
)

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(
            not torch.cuda.is_available(), reason="needs a CUDA GPU visible to torch"
        ),
    ),
]

WINDOWS = {
    "duration": WindowConfig(),
    "exposure": WindowConfig(mode=WindowMode.EXPOSURE, exposure_us=20_000),
    "count": WindowConfig(mode=WindowMode.COUNT, event_count=3_000),
}


def _bursty_stream(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Events with a varying rate (bursts around each trigger) and a rising edge per period."""
    rng = np.random.default_rng(seed)
    rate = 1 + 8 * (np.arange(DURATION_US) % PERIOD_US < 5_000)  # denser after each trigger
    times = np.flatnonzero(rng.random(DURATION_US) < rate / 60)
    events = np.zeros(len(times), dtype=EVENT_DTYPE)
    events["t"] = times
    events["x"] = rng.integers(0, 400, len(times))
    events["y"] = rng.integers(0, 225, len(times))
    events["p"] = rng.integers(0, 2, len(times))
    starts = np.arange(0, DURATION_US, PERIOD_US)
    triggers = np.zeros(len(starts), dtype=TRIGGER_DTYPE)
    triggers["t"] = starts
    triggers["value"] = 1
    return events, triggers


def _run(calibration, window: WindowConfig, device: str, path: EventPath):
    events, triggers = _bursty_stream()
    config = AccumulatorConfig(window=window, device=device, event_path=path)
    acc = EventFrameAccumulator(calibration, config)
    frames = [k * PERIOD_US for k in range(1, 5)]
    out = []
    state = Evt3EncoderState()
    for seq, t0 in enumerate(range(0, DURATION_US, PACKET_US)):
        t1 = t0 + PACKET_US
        ev = events[(events["t"] >= t0) & (events["t"] < t1)]
        tr = triggers[(triggers["t"] >= t0) & (triggers["t"] < t1)]
        first = min([int(a["t"][0]) for a in (ev, tr) if len(a)], default=t0)
        acc.on_packet(encoding="evt3", data=encode_evt3(ev, tr, state=state), seq=seq,
                      stamp_ns=EPOCH_NS + first * 1000, width=400, height=225)
        for t_frame in frames:
            if t0 <= t_frame + 30_000 < t1:
                acc.on_frame(t_frame, EPOCH_NS + t_frame * 1000, arrival_ns=0)
        out += acc.poll(now_ns=0)
    out += acc.poll(now_ns=10**12)  # whatever still waits for its window end
    assert [r.key for r in out] == frames
    return acc, out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("window_name", sorted(WINDOWS))
def test_device_path_matches_host_path(sim_calibration, device, window_name):
    host, host_out = _run(sim_calibration, WINDOWS[window_name], "cpu", EventPath.HOST)
    dev, dev_out = _run(sim_calibration, WINDOWS[window_name], device, EventPath.TORCH)
    assert dev.path is EventPath.TORCH and dev.device.startswith(device)
    for a, b in zip(host_out, dev_out, strict=True):
        assert isinstance(b.event_frame, torch.Tensor)
        assert str(b.event_frame.device).startswith("cuda" if device == "cuda" else "cpu")
        assert a.window_us == b.window_us and a.num_events == b.num_events > 0
        assert a.match == b.match
        np.testing.assert_array_equal(b.event_frame.cpu().numpy(), a.event_frame)
    host_diag, dev_diag = host.diagnostics(), dev.diagnostics()
    for key in ("events_decoded", "triggers_decoded", "seq_gaps", "frames_out",
                "events_unmapped", "evt3_cd_events", "evt3_time_words", "triggers_matched"):
        assert dev_diag[key] == host_diag[key], key


@pytest.mark.skipif(not EVT2_SAMPLE.exists(), reason=f"recording not found: {EVT2_SAMPLE}")
@pytest.mark.parametrize("device", DEVICES)
def test_host_decoded_events_accumulate_on_the_device_like_the_host_builder(device):
    """Encodings without a device decoder (EVT2) are decoded on the host, then moved over."""
    from evseg_ros.events.evt3 import read_raw_file

    camera = {"width": 640, "height": 480, "camera_matrix": [500, 0, 319.5, 0, 500, 239.5, 0, 0, 1]}
    frame_camera = dict(camera, width=320, height=240)
    calibration = calibration_from_dict({
        "event_camera": camera, "frame_camera": frame_camera,
        "event_to_frame_homography": [0.5, 0, 0, 0, 0.5, 0, 0, 0, 1],
    })
    _, payload = read_raw_file(EVT2_SAMPLE)
    decoded = Evt2Decoder(width=640, height=480).decode(payload)
    assert len(decoded.events) > 100_000
    t0 = int(decoded.events["t"][len(decoded.events) // 3])
    t1 = t0 + 20_000
    window = decoded.events[(decoded.events["t"] >= t0) & (decoded.events["t"] < t1)]
    torch_acc = TorchEvt3Accumulator(calibration, device=device)
    moved = torch_acc.device_events(decoded._replace(events=window))
    assert (moved.first_time_us, moved.last_time_us) == (int(window["t"][0]), int(window["t"][-1]))
    frame = torch_acc.build_frame(moved.times, moved.cells, t0, t1)
    reference = EventFrameBuilder(calibration)
    np.testing.assert_array_equal(frame.cpu().numpy(), reference.build(window, t0, t1))
    assert torch_acc.unmapped_events == reference.unmapped_events


def test_event_path_choice():
    frame, voxels = Representation.EVENT_FRAME, Representation.VOXEL_GRID
    cpu_path = EventPath.FUSED if evt3_fast.available() else EventPath.HOST
    assert choose_event_path("cpu", frame) == (cpu_path, "cpu")
    assert choose_event_path("cpu", voxels) == (EventPath.HOST, "cpu")
    assert choose_event_path(" CPU ", frame, EventPath.TORCH) == (EventPath.TORCH, "cpu")
    assert choose_event_path("cpu", frame, EventPath.HOST) == (EventPath.HOST, "cpu")
    on_gpu = (EventPath.TORCH, "cuda") if torch.cuda.is_available() else (cpu_path, "cpu")
    assert choose_event_path("auto", frame) == on_gpu
    # auto never fails: representations the torch path lacks stay on the host
    assert choose_event_path("auto", voxels) == (EventPath.HOST, "cpu")
    with pytest.raises(ValueError, match="voxel_grid"):
        choose_event_path("cpu", voxels, EventPath.TORCH)
    with pytest.raises(ValueError, match="fused event path builds the event frame only"):
        choose_event_path("cpu", voxels, EventPath.FUSED)
    with pytest.raises(DeviceError, match="'gpu'"):
        choose_event_path("gpu", frame)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_gpu_is_a_clear_error(sim_calibration, device):
    with pytest.raises(DeviceError, match="CUDA is not usable"):
        EventFrameAccumulator(sim_calibration, AccumulatorConfig(device=device))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU visible to torch")
def test_cuda_builds_on_the_gpu_and_the_cpu_paths_refuse_it(sim_calibration):
    acc = EventFrameAccumulator(sim_calibration, AccumulatorConfig(device="cuda"))
    assert (acc.path, acc.device) == (EventPath.TORCH, "cuda")
    with pytest.raises(ValueError, match="runs on the CPU"):
        choose_event_path("cuda", Representation.EVENT_FRAME, EventPath.FUSED)
