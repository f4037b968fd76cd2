"""What the torch EVT3 decoder has beyond the decoder contract: event frames on the device.

The accumulator's torch path decodes each packet with :meth:`TorchEvt3Accumulator.
decode_to_device` and builds each window's frame with :meth:`~TorchEvt3Accumulator.build_frame`;
those frames must equal :class:`EventFrameBuilder`'s bit for bit (``torch.equal``), with
``device="cpu"`` here and again with ``device="cuda"`` where torch sees a GPU (the ``cuda``
parameters skip elsewhere). Decoding itself, as for every decoder, is checked in
test_decoder_contract.py. No timing is asserted.

The recordings live in ``<repo>/../shared/data`` (not part of the repository); tests that need
them skip with the reason when that folder is absent.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from evseg_ros.device import DeviceError
from evseg_ros.events.errors import EventDecodeError
from evseg_ros.events.event_frame import EventFrameBuilder
from evseg_ros.events.evt3 import Evt3Decoder, encode_evt3
from evseg_ros.events.evt3_format import TIME_PERIOD_US
from evseg_ros.events.evt3_torch import TorchEvt3Accumulator
from evseg_ros.events.types import EVENT_DTYPE, TRIGGER_DTYPE
from evseg_ros.geometry.calibration import RigCalibration, calibration_from_dict

REPO_ROOT = Path(__file__).resolve().parents[2]
TRIGGER_BAG = REPO_ROOT.parent / "shared" / "data" / "event_camera_codecs" / (
    "test_data_evt3_trigger"
)

needs_bag = pytest.mark.skipif(
    not TRIGGER_BAG.is_dir(),
    reason=f"EVT3 trigger rosbag not available ({TRIGGER_BAG} is absent)",
)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
#: Every frame test runs on both back ends; the CUDA case skips without a GPU.
DEVICES = ["cpu", pytest.param("cuda", marks=needs_cuda)]

FAST = settings(max_examples=40, deadline=None)


# ========================================================================== utilities


def evk4_rig() -> RigCalibration:
    """A 1280x720 event camera whose image covers part of a 640x480 frame.

    The scale and offsets push the sensor's left and bottom edges off the frame, so some
    events have no frame pixel and must be counted as unmapped.
    """
    identity = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    return calibration_from_dict(
        {
            "event_camera": {"width": 1280, "height": 720, "camera_matrix": identity},
            "frame_camera": {"width": 640, "height": 480, "camera_matrix": identity},
            "event_to_frame_homography": [0.55, 0.0, -20.0, 0.0, 0.55, 90.0, 0.0, 0.0, 1.0],
        },
        source="test rig",
    )


def split_at(data: bytes, cuts) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def device_frame(acc: TorchEvt3Accumulator, packets, t0: int, t1: int) -> torch.Tensor:
    """The torch path's frame of ``[t0, t1)``: each packet decoded onto the device, the
    window's events cut there, the frame built there (as the accumulator does)."""
    decoded = [acc.decode_to_device(packet) for packet in packets]
    times = torch.cat([d.times for d in decoded])
    cells = torch.cat([d.cells for d in decoded])
    inside = (times >= t0) & (times < t1)
    return acc.build_frame(times[inside], cells[inside], t0, t1)


def assert_same_frame(packets, cal: RigCalibration, device: str, t0: int, t1: int) -> None:
    """The torch frame of a window equals the numpy builder's, bit for bit."""
    reference = Evt3Decoder(width=cal.event_camera.width, height=cal.event_camera.height)
    events = [reference.decode(packet).events for packet in packets]
    events = np.concatenate(events) if events else np.empty(0, EVENT_DTYPE)
    builder = EventFrameBuilder(cal)
    inside = events[(events["t"] >= t0) & (events["t"] < t1)]
    expected = torch.from_numpy(builder.build(inside, t0, t1))
    acc = TorchEvt3Accumulator(cal, device=device)
    frame = device_frame(acc, packets, t0, t1)
    assert frame.device.type == device and frame.dtype == torch.float32
    assert torch.equal(frame.cpu(), expected), (
        f"window [{t0}, {t1}): {int((frame.cpu() != expected).sum())} cells differ"
    )
    assert acc.unmapped_events == builder.unmapped_events
    assert acc.counters == reference.counters  # the whole stream is decoded, not just the window


# ========================================================================= device choice


def test_auto_device_follows_cuda_availability():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert TorchEvt3Accumulator(evk4_rig()).device.type == expected
    assert TorchEvt3Accumulator(evk4_rig(), device="cpu").device == torch.device("cpu")
    assert TorchEvt3Accumulator(evk4_rig(), device=torch.device("cpu")).device.type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "CUDA"])
def test_cuda_without_a_gpu_is_a_clear_error(device):
    with pytest.raises(DeviceError, match=r"CUDA is not usable.*set device to 'cpu' or 'auto'"):
        TorchEvt3Accumulator(evk4_rig(), device=device)


@pytest.mark.parametrize("device", ["gpu", "tpu", "", "mps"])
def test_unknown_device_is_rejected(device):
    with pytest.raises(DeviceError, match="device must be"):
        TorchEvt3Accumulator(evk4_rig(), device=device)


@needs_cuda
def test_cuda_frames_stay_on_the_gpu():
    cal = evk4_rig()
    rng = np.random.default_rng(3)
    events = random_events(rng, 5000, width=1300, height=740)
    data = encode_evt3(events)
    t0, t1 = int(events["t"][100]), int(events["t"][-100])
    frame = device_frame(TorchEvt3Accumulator(cal, device="cuda"), [data], t0, t1)
    assert frame.is_cuda
    decoded = Evt3Decoder(width=1280, height=720).decode(data).events
    inside = decoded[(decoded["t"] >= t0) & (decoded["t"] < t1)]
    assert torch.equal(frame.cpu(), torch.from_numpy(EventFrameBuilder(cal).build(inside, t0, t1)))


# ====================================================================== real recordings


@needs_bag
@pytest.mark.parametrize("device", DEVICES)
def test_trigger_bag_frames_are_bit_identical(device):
    from evseg_ros.events.bag import read_event_packets

    packets = [bytes(msg.events) for _, _, msg in read_event_packets(TRIGGER_BAG)]
    decoder = Evt3Decoder(width=1280, height=720)
    parts = [decoder.decode(p) for p in packets]
    events = np.concatenate([p.events for p in parts])
    triggers = np.concatenate([p.triggers for p in parts])
    first, last = int(events["t"][0]), int(events["t"][-1])
    windows = [(int(t) - 25_000, int(t) + 5_000) for t in triggers["t"]]  # frame windows
    windows += [
        (first, last + 1),  # everything, the longest span
        (first + 123_457, first + 123_457 + 7_777),
        (first + 1_000, first + 1_001),  # a 1 us window
        (last + 1, last + 30_001),  # after the last event: an empty frame
        (first + 500, first + 500),  # empty window (span clamped to 1 as in the builder)
    ]
    for t0, t1 in windows:
        assert_same_frame(packets, evk4_rig(), device, t0, t1)


# ==================================================================== random streams


def random_events(
    rng: np.random.Generator, n: int, *, width: int, height: int, start: int = 0
) -> np.ndarray:
    """Bursts of events sharing a time and row (which the encoder turns into vectors),
    with time gaps from 0 to several 24-bit clock periods."""
    out = np.zeros(n, dtype=EVENT_DTYPE)
    if n == 0:
        return out
    burst = rng.integers(1, 30, size=n)
    starts = np.flatnonzero(np.cumsum(burst) % 7 == 0)
    new_burst = np.zeros(n, dtype=bool)
    new_burst[starts[starts < n]] = True
    new_burst[0] = True
    gaps = rng.choice([0, 1, 3, 4095, 4096, 70_000, 9_000_000, 20_000_000], size=n)
    t = start + np.cumsum(np.where(new_burst, gaps, 0))
    burst_id = np.cumsum(new_burst) - 1
    y = rng.integers(0, min(height, 2048), size=burst_id[-1] + 1)[burst_id]
    p = rng.integers(0, 2, size=burst_id[-1] + 1)[burst_id]
    base = rng.integers(0, max(1, min(width, 2048) - 40), size=burst_id[-1] + 1)[burst_id]
    x = np.minimum(base + rng.integers(0, 40, size=n), 2047)
    out["t"], out["y"], out["p"], out["x"] = t, y, p, x
    # within a burst, strictly increasing x lets the encoder use VECT_12 words
    order = np.lexsort((out["x"], burst_id))
    out = out[order]
    keep = np.ones(n, dtype=bool)
    same = burst_id[order][1:] == burst_id[order][:-1]
    keep[1:] = ~(same & (out["x"][1:] == out["x"][:-1]))
    return out[keep]


def random_triggers(rng: np.random.Generator, events: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=TRIGGER_DTYPE)
    if n and events.size:
        out["t"] = np.sort(rng.integers(int(events["t"][0]), int(events["t"][-1]) + 1, size=n))
        out["channel"] = rng.integers(0, 16, size=n)
        out["value"] = rng.integers(0, 2, size=n)
    return out


def encoded_stream(seed: int, n_events: int, n_triggers: int, *, width: int, height: int):
    rng = np.random.default_rng(seed)
    start = int(rng.choice([0, TIME_PERIOD_US - 50_000, 3 * TIME_PERIOD_US + 7]))
    events = random_events(rng, n_events, width=width, height=height, start=start)
    triggers = random_triggers(rng, events, n_triggers)
    return events, triggers, encode_evt3(events, triggers), rng


@pytest.mark.parametrize("device", DEVICES)
@FAST
@given(seed=st.integers(0, 2**32 - 1), n_events=st.integers(0, 600))
def test_random_stream_frames_are_bit_identical(sim_calibration, device, seed, n_events):
    # events up to x = 479, y = 269 on a 400x225 sensor: some are dropped as off-sensor, and
    # the sensor's edge rows fall outside the 320x240 frame (unmapped)
    events, _, data, rng = encoded_stream(seed, n_events, 2, width=480, height=270)
    packets = split_at(data, rng.integers(0, len(data) + 1, size=4).tolist())
    if events.size:
        lo, hi = int(events["t"][0]), int(events["t"][-1])
        t0 = int(rng.integers(lo - 10, hi + 1))
        t1 = t0 + int(rng.choice([1, 2, 4096, 30_000, 10_000_000, 40_000_000, 1 << 40]))
    else:
        t0, t1 = 0, 30_000
    assert_same_frame(packets, sim_calibration, device, t0, t1)


word_types = st.sampled_from(
    [0x0, 0x0, 0x2, 0x2, 0x2, 0x3, 0x4, 0x4, 0x5, 0x6, 0x6, 0x8, 0x8, 0x8, 0xA, 0xE, 0xF, 0x7]
    + [0x1, 0x9, 0xB, 0xC, 0xD]
)
garbage_words = st.lists(
    st.tuples(word_types, st.integers(0, 0xFFF)).map(lambda tp: tp[0] << 12 | tp[1]),
    max_size=400,
)


@pytest.mark.parametrize("device", DEVICES)
@FAST
@given(words=garbage_words, cuts=st.lists(st.integers(0, 800), max_size=6))
def test_garbage_word_stream_frames_are_bit_identical(sim_calibration, device, words, cuts):
    """Every word type in any order: vectors without a base, wraps, clock glitches, triggers."""
    data = np.asarray(words, dtype="<u2").tobytes()
    cuts = [c for c in cuts if c <= len(data)]
    assert_same_frame(split_at(data, cuts), sim_calibration, device, 0, 1 << 26)


@pytest.mark.parametrize("device", DEVICES)
@FAST
@given(data=st.binary(max_size=1500), cut=st.integers(0, 1500))
def test_random_bytes_give_finite_frames(sim_calibration, device, data, cut):
    packets = split_at(data, [min(cut, len(data))])
    frame = device_frame(TorchEvt3Accumulator(sim_calibration, device=device), packets, 0, 1 << 30)
    assert frame.shape == (3, 240, 320) and bool(torch.isfinite(frame).all())


def test_device_inputs_are_not_buffers_and_sensors_have_a_limit(sim_calibration):
    acc = TorchEvt3Accumulator(sim_calibration, device="cpu")
    with pytest.raises(EventDecodeError, match="'Tensor'"):
        acc.decode(torch.zeros(4, dtype=torch.uint8))  # packets come from the host
    with pytest.raises(ValueError, match="2048x2048"):
        big = sim_calibration.to_dict()
        big["event_camera"]["width"] = 4096
        TorchEvt3Accumulator(calibration_from_dict(big), device="cpu")
