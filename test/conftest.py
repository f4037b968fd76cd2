"""Test set-up shared by the whole tree.

DDS traffic stays on this machine and each test process gets its own domain, so parallel runs
(or a running demo) never cross-talk with the graph a test starts.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))


@pytest.fixture(scope="session")
def sim_calibration():
    from evseg_ros.geometry import load_calibration

    return load_calibration(REPO_ROOT / "config" / "calibration" / "sim_rig.yaml")


#: The network of the graph tests: CACD, fused, at its smallest (both encoders the narrow
#: ``mit_e0``, a 16-channel decoder) so a 320x240 frame takes tens of milliseconds on one core.
TINY_CACD = {"backbone": "mit_e0", "variant": "fused", "num_classes": 11, "decoder_channels": 16}


@pytest.fixture(scope="session")
def tiny_onnx_model(tmp_path_factory) -> Path:
    """A small randomly initialised CACD export; its checkpoint lies beside it as ``tiny.pt``."""
    import torch

    from evseg_ros.model.cacd import CACDConfig, CACDNet, save_cacd_checkpoint
    from evseg_ros.model.export import export_onnx

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model")
    net = CACDNet(CACDConfig.from_dict(TINY_CACD)).eval()
    save_cacd_checkpoint(net, folder / "tiny.pt", label_set="dsec11")
    return export_onnx(net, folder / "tiny.onnx", height=240, width=320)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_onnx_model) -> Path:
    """The checkpoint :func:`tiny_onnx_model` was exported from (for the pytorch backend)."""
    return tiny_onnx_model.with_suffix(".pt")


#: ``train_config["data"]`` of the trainer-shaped test checkpoints; summarised in the model
#: metadata as "sim seeds 0-3, 30 frames/seed (stride 4), crop 96x96".
TRAIN_DATA = {
    "train": {
        "type": "sim",
        "seeds": [0, 1, 2, 3],
        "frames_per_seed": 30,
        "frame_stride": 4,
        "crop_size": [96, 96],
    },
    "val": {"type": "sim", "seeds": [100, 101], "frames_per_seed": 30},
    "unlabelled": None,
    "batch_size": 4,
    "val_batch_size": 4,
    "num_workers": 0,
    "crop_size": None,
}


@pytest.fixture
def write_trainer_checkpoint():
    """Write ``net`` as ``evseg train`` would: laid out like ``Trainer.checkpoint_payload``.

    Call as ``write(path, net, *, step=7, ema_net=None)``; ``ema_net`` becomes the EMA teacher.
    ``net`` takes one optimiser step first, so the optimiser state is a real one; the file holds
    the weights after it.
    """
    import torch

    from evseg_ros.train.checkpoint import capture_rng_state

    def write(path: Path, net, *, step: int = 7, ema_net=None) -> Path:
        optimizer = torch.optim.AdamW(net.parameters(), lr=6e-4)
        optimizer.zero_grad()
        image = torch.rand(1, 3, 32, 32)
        net(image, torch.zeros_like(image)).mean().backward()
        optimizer.step()
        payload = {
            "format": 1,
            "arch": "cacd",
            "config": net.config(),
            "state_dict": net.state_dict(),
            "label_set": "dsec11",
            "train_config": {
                "model": {**net.config(), "label_set": "dsec11", "pretrained": None},
                "data": TRAIN_DATA,
                "optim": {"name": "adamw", "lr": 6e-4},
                "train": {"steps": step, "seed": 0},
            },
            "criterion": {},
            "optimizer": optimizer.state_dict(),
            "scheduler": {"last_epoch": step},
            "scaler": None,
            "ema": None if ema_net is None else {"state_dict": ema_net.state_dict(), "updates": 3},
            "step": step,
            "epoch": 1,
            "batch_in_epoch": 0,
            "unlabelled_position": [0, 0],
            "best_miou": 0.25,
            "val_metrics": {"miou": 0.25},
            "world_size": 1,
            "rng": capture_rng_state(),
        }
        torch.save(payload, path)
        return path

    return write


@pytest.fixture(scope="session")
def short_recording(tmp_path_factory) -> Path:
    """A 0.6 s simulated recording (every lighting condition) at the rig's size, rendered once."""
    from evseg_ros.sim.recording import RecordingSpec, cached_recording

    spec = RecordingSpec(
        seconds=0.6, seed=3, conditions=("normal", "night", "glare"), condition_period_s=0.2
    )
    return cached_recording(spec, cache_root=tmp_path_factory.mktemp("recordings"))
