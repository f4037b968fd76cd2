"""Trainer: a few real steps on a tiny RPEA-style folder, metrics, checkpoints, exact resume."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from evseg_ros.labels import DSEC_11
from evseg_ros.model.cacd import load_cacd_checkpoint
from evseg_ros.train.config import TrainConfig
from evseg_ros.train.trainer import NonFiniteTrainingError, Trainer

SIZE = 64
CONDITIONS = ("normal", "night", "glare")


def make_rpea(root: Path, split: str, count: int, *, seed: int, nan_events: bool = False) -> None:
    """Sky / road / one car box per sample; night and glare samples darken or wash out."""
    rng = np.random.default_rng(seed)
    folder = root / split
    for sub in ("images", "events", "labels"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    palette = np.zeros((11, 3), np.float32)
    palette[0], palette[5], palette[8] = (70, 130, 180), (128, 64, 128), (0, 0, 142)
    rows = ["name,condition"]
    for index in range(count):
        name = f"s{index:03d}"
        label = np.zeros((SIZE, SIZE), np.uint8)
        label[SIZE // 2 :] = 5
        top, left = rng.integers(SIZE // 4, SIZE // 2), rng.integers(0, SIZE // 2)
        label[top : top + SIZE // 4, left : left + SIZE // 3] = 8
        image = palette[label] + rng.normal(0, 8, (SIZE, SIZE, 3))
        condition = CONDITIONS[index % 3]
        if condition == "night":
            image *= 0.1
        elif condition == "glare":
            image = image * 0.3 + 200
        rgb = np.clip(image, 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / "images" / f"{name}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(folder / "labels" / f"{name}.png"), label)
        events = np.zeros((3, SIZE, SIZE), np.float32)
        edges = cv2.Canny(label * 20, 10, 30) > 0
        events[0][edges], events[1][edges], events[2][edges] = 2.0, 1.0, 0.5
        if nan_events:
            events[0, 0, 0] = np.nan
        np.save(folder / "events" / f"{name}.npy", events)
        rows.append(f"{name},{condition}")
    (folder / "conditions.csv").write_text("\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rpea")
    make_rpea(root, "train", 4, seed=0)
    make_rpea(root, "val", 3, seed=1)
    return root


def tiny_config(root: Path, output: Path, **sections) -> TrainConfig:
    values = {
        "model": {"backbone": "mit_b0", "variant": "fused", "decoder_channels": 32},
        "data": {
            "train": {"type": "rpea", "root": str(root), "scale_range": [1.0, 1.0]},
            "val": {"type": "rpea", "root": str(root)},
            "batch_size": 2,
            "val_batch_size": 3,
            "num_workers": 0,
            "crop_size": [SIZE, SIZE],
        },
        "optim": {"lr": 1e-3},
        "loss": {"use_hfca": True, "use_jbcd": True},
        "train": {"max_steps": 2, "output_dir": str(output), "log_every": 1, "threads": 2},
    }
    for name, entries in sections.items():
        values[name] = {**values.get(name, {}), **entries}
    return TrainConfig.from_dict(values)


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


def test_training_steps_write_metrics_and_checkpoints(data_root, tmp_path):
    config = tiny_config(
        data_root, tmp_path / "run", train={"max_steps": 3, "val_every": 2, "checkpoint_every": 2}
    )
    trainer = Trainer(config)
    result = trainer.fit()

    assert result.steps == 3
    overall = result.metrics["overall"]
    assert set(overall) == {"miou", "pixel_accuracy", "iou", "frames", "pixels"}
    assert 0.0 <= overall["miou"] <= 1.0
    assert list(overall["iou"]) == list(DSEC_11.classes)
    assert overall["frames"] == 3
    assert sorted(result.metrics["conditions"]) == sorted(CONDITIONS)
    assert all(result.metrics["conditions"][c]["frames"] == 1 for c in CONDITIONS)

    rows = read_rows(tmp_path / "run" / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    for part in ("total", "ce", "intra", "inter", "boundary", "content"):
        assert all(np.isfinite(float(r[part])) for r in rows), part
    # Eq. 8 has no auxiliary heads: they are off unless a config asks for them.
    assert "aux_image" not in rows[0] and "aux_event" not in rows[0]
    assert rows[0]["val_miou"] == "" and rows[1]["val_miou"] != ""
    assert float(rows[2]["val_miou"]) == pytest.approx(overall["miou"])
    assert {"val_miou_night", "val_miou_glare", "val_iou_vehicle"} <= set(rows[0])

    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == ["best.pt", "config.yaml", "last.pt", "metrics.csv", "step_0000002.pt"]
    # Trainer checkpoints load as plain CACD checkpoints (what export and the runtime read).
    model = load_cacd_checkpoint(tmp_path / "run" / "last.pt")
    assert model.config() == config.model.cacd.to_dict()
    assert torch.equal(
        model.state_dict()["decoder.classifier.weight"],
        trainer.model.state_dict()["decoder.classifier.weight"],
    )


def test_cross_entropy_decreases_on_a_repeated_batch(data_root, tmp_path):
    config = tiny_config(
        data_root,
        tmp_path / "run",
        model={"variant": "image_only", "decoder_dropout": 0.0, "drop_path_rate": 0.0},
        data={"val": None, "batch_size": 4},
        loss={"use_hfca": False, "use_jbcd": False},
        train={"max_steps": 6},
    )
    Trainer(config).fit()
    ce = [float(r["ce"]) for r in read_rows(tmp_path / "run" / "metrics.csv")]
    assert len(ce) == 6
    assert ce[-1] < ce[0]


def test_resume_gives_the_weights_of_an_uninterrupted_run(data_root, tmp_path):
    # 2 steps per epoch; the resume point (step 3) is in the middle of epoch 1, after a
    # validation (which must not disturb any random state).
    sections = {
        "train": {"max_steps": 5, "checkpoint_every": 3, "val_every": 2, "keep_checkpoints": 0}
    }
    full = Trainer(tiny_config(data_root, tmp_path / "full", **sections))
    full.fit()

    torch.manual_seed(12345)  # a resumed process starts with unrelated random states
    np.random.seed(54321)
    resumed = Trainer(
        tiny_config(data_root, tmp_path / "resumed", **sections),
        resume=tmp_path / "full" / "step_0000003.pt",
    )
    assert (resumed.step, resumed.epoch, resumed.batch_in_epoch) == (3, 1, 1)
    resumed.fit()

    expected = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    actual = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)
    assert actual["step"] == expected["step"] == 5
    assert "image_head" not in expected  # no auxiliary heads in Eq. 8's default run
    for key in ("state_dict", "criterion"):
        for name, tensor in expected[key].items():
            assert torch.equal(actual[key][name], tensor), f"{key}.{name}"
    for index, state in expected["optimizer"]["state"].items():
        assert torch.equal(actual["optimizer"]["state"][index]["exp_avg_sq"], state["exp_avg_sq"])
    assert actual["scheduler"]["last_epoch"] == expected["scheduler"]["last_epoch"]
    rows = read_rows(tmp_path / "resumed" / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [4, 5]
    full_rows = read_rows(tmp_path / "full" / "metrics.csv")
    assert rows[-1]["total"] == full_rows[-1]["total"]


def test_non_finite_loss_stops_before_any_save(tmp_path):
    root = tmp_path / "data"
    make_rpea(root, "train", 2, seed=0, nan_events=True)
    config = tiny_config(root, tmp_path / "run", data={"val": None}, train={"checkpoint_every": 1})
    trainer = Trainer(config)
    with pytest.raises(NonFiniteTrainingError, match=r"step 1 .*'ce' is nan") as caught:
        trainer.fit()
    assert (caught.value.step, caught.value.part) == (1, "ce")
    assert not list((tmp_path / "run").glob("*.pt"))


def test_fresh_run_refuses_to_overwrite_checkpoints(data_root, tmp_path):
    output = tmp_path / "run"
    output.mkdir()
    (output / "last.pt").write_bytes(b"")
    with pytest.raises(FileExistsError, match="already holds checkpoints"):
        Trainer(tiny_config(data_root, output))


def test_resume_rejects_a_checkpoint_of_another_model(data_root, tmp_path):
    config = tiny_config(data_root, tmp_path / "a", data={"val": None})
    Trainer(config).save_checkpoint(periodic=False, best=False)
    other = tiny_config(data_root, tmp_path / "b", model={"decoder_channels": 16})
    with pytest.raises(ValueError, match="model section"):
        Trainer(other, resume=tmp_path / "a" / "last.pt")
