"""DDP on CPU: two gloo processes started by torchrun train a few steps in lockstep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
SIZE = 64

WORKER = """
import json, sys
from pathlib import Path
import torch
from evseg_ros.train.config import TrainConfig
from evseg_ros.train.trainer import Trainer

config = TrainConfig.from_dict(json.loads(Path(sys.argv[1]).read_text()))
trainer = Trainer(config)
result = trainer.fit()
rank = trainer.context.rank
# Parameters only: DDP broadcasts buffers (batch-norm statistics) from rank 0 at the start of
# each forward, so after the last forward they legitimately differ (rank 0's are saved).
def parameters(module):
    return {name: p.detach() for name, p in module.named_parameters()}

state = {"model": parameters(trainer.model), "criterion": parameters(trainer.module.criterion),
         "event_head": parameters(trainer.module.event_head), "world": trainer.context.world_size,
         "frames": result.metrics["overall"]["frames"], "miou": result.metrics["overall"]["miou"]}
torch.save(state, Path(sys.argv[2]) / f"rank{rank}.pt")
trainer.close()
"""


def make_rpea(root: Path, split: str, count: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for sub in ("images", "events", "labels"):
        (root / split / sub).mkdir(parents=True, exist_ok=True)
    for index in range(count):
        label = np.zeros((SIZE, SIZE), np.uint8)
        label[SIZE // 2 :] = 5
        label[rng.integers(0, 20) :][:10, 10:30] = 8
        rgb = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
        cv2.imwrite(str(root / split / "images" / f"s{index}.png"), rgb)
        cv2.imwrite(str(root / split / "labels" / f"s{index}.png"), label)
        events = rng.poisson(0.5, (3, SIZE, SIZE)).astype(np.float32)
        np.save(root / split / "events" / f"s{index}.npy", events)


def test_two_gloo_ranks_stay_identical(tmp_path):
    make_rpea(tmp_path / "data", "train", 4, seed=0)
    make_rpea(tmp_path / "data", "val", 3, seed=1)
    spec = {"type": "rpea", "root": str(tmp_path / "data"), "scale_range": [1.0, 1.0]}
    config = {
        "model": {"backbone": "mit_b0", "variant": "fused", "decoder_channels": 16},
        "data": {
            "train": spec,
            "val": {**spec, "split": "val"},
            "batch_size": 1,
            "num_workers": 0,
            "crop_size": [SIZE, SIZE],
        },
        # Auxiliary heads on (not the Eq. 8 default) so every optional module is synchronised.
        "loss": {"use_hfca": True, "use_jbcd": True, "aux_heads": True, "aux_weight": 0.4},
        "train": {
            "max_steps": 2,
            "output_dir": str(tmp_path / "run"),
            "log_every": 1,
            "threads": 1,
            "device": "cpu",
        },
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "worker.py").write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(tmp_path / "worker.py"),
        str(tmp_path / "config.json"),
        str(tmp_path),
    ]
    done = subprocess.run(
        command, check=False, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]

    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [state["world"] for state in ranks] == [2, 2]
    for key in ("model", "criterion", "event_head"):
        for name, tensor in ranks[0][key].items():
            assert torch.equal(tensor, ranks[1][key][name]), f"{key}.{name} differs across ranks"
    # Validation was sharded (2 + 1 frames) and reduced: both ranks report all 3 frames.
    assert [state["frames"] for state in ranks] == [3, 3]
    assert ranks[0]["miou"] == ranks[1]["miou"]
    # Only rank 0 writes.
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3
    checkpoint = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert checkpoint["world_size"] == 2 and checkpoint["step"] == 2
    assert torch.equal(
        checkpoint["state_dict"]["decoder.classifier.weight"],
        ranks[0]["model"]["decoder.classifier.weight"],
    )
