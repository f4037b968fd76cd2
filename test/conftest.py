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


@pytest.fixture(scope="session")
def tiny_onnx_model(tmp_path_factory) -> Path:
    """A small randomly initialised dual-input model honouring the ONNX contract."""
    import torch

    from evseg_ros.model.demo_net import DemoFusionNet
    from evseg_ros.model.export import export_onnx

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    export_onnx(DemoFusionNet(num_classes=11, width=8), path, height=240, width=320)
    return path


@pytest.fixture(scope="session")
def short_recording(tmp_path_factory) -> Path:
    """A 0.6 s simulated recording (every lighting condition) at the rig's size, rendered once."""
    from evseg_ros.sim.recording import RecordingSpec, cached_recording

    spec = RecordingSpec(
        seconds=0.6, seed=3, conditions=("normal", "night", "glare"), condition_period_s=0.2
    )
    return cached_recording(spec, cache_root=tmp_path_factory.mktemp("recordings"))
