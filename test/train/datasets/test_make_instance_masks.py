"""scripts/make_instance_masks.py with a stand-in ``segment_anything`` (not installable here)."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest

from evseg_ros.train.datasets import RpeaDataset, read_instance_file

REPO_ROOT = Path(__file__).resolve().parents[3]
SCRIPT = REPO_ROOT / "scripts" / "make_instance_masks.py"
HEIGHT, WIDTH = 6, 8


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("make_instance_masks", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeSam:
    def __init__(self, checkpoint: str) -> None:
        self.checkpoint = checkpoint
        self.device = None

    def to(self, device: str) -> FakeSam:
        self.device = device
        return self


class FakeGenerator:
    """Two overlapping masks: a large one (rows 0-3) and a small one inside it."""

    calls: ClassVar[list[tuple[int, ...]]] = []

    def __init__(self, model: FakeSam, **options) -> None:
        self.model = model
        self.options = options

    def generate(self, image: np.ndarray) -> list[dict]:
        FakeGenerator.calls.append(image.shape)
        assert image.dtype == np.uint8 and image.shape[2] == 3
        small = np.zeros(image.shape[:2], bool)
        small[1:3, 2:5] = True
        large = np.zeros(image.shape[:2], bool)
        large[0:4, :] = True
        return [{"segmentation": small, "area": 6}, {"segmentation": large, "area": 32}]


@pytest.fixture
def fake_sam(monkeypatch):
    module = types.ModuleType("segment_anything")
    module.sam_model_registry = {"vit_b": FakeSam}
    module.SamAutomaticMaskGenerator = FakeGenerator
    monkeypatch.setitem(sys.modules, "segment_anything", module)
    FakeGenerator.calls = []
    return module


def make_split(root: Path) -> Path:
    folder = root / "train"
    for sub in ("images", "labels", "events"):
        (folder / sub).mkdir(parents=True)
    for name in ("a", "b"):
        cv2.imwrite(
            str(folder / "images" / f"{name}.png"), np.full((HEIGHT, WIDTH, 3), 50, np.uint8)
        )
        cv2.imwrite(str(folder / "labels" / f"{name}.png"), np.zeros((HEIGHT, WIDTH), np.uint8))
        np.save(folder / "events" / f"{name}.npy", np.zeros((3, HEIGHT, WIDTH), np.float32))
    return folder


def test_masks_to_instances_paints_largest_first(script) -> None:
    large = np.zeros((4, 4), bool)
    large[:, :3] = True
    small = np.zeros((4, 4), bool)
    small[1, 1] = True
    ids = script.masks_to_instances(
        [{"segmentation": small}, {"segmentation": large}], (4, 4), min_area=0
    )
    assert ids[1, 1] == 2 and ids[0, 0] == 1 and ids[0, 3] == 0
    dropped = script.masks_to_instances(
        [{"segmentation": small}, {"segmentation": large}], (4, 4), min_area=2
    )
    assert dropped[1, 1] == 0 and dropped[0, 0] == 1
    with pytest.raises(ValueError, match="shape"):
        script.masks_to_instances([{"segmentation": small}], (3, 4))


def test_writes_masks_the_loader_reads_and_keeps_existing(tmp_path, script, fake_sam, capsys):
    folder = make_split(tmp_path)
    checkpoint = tmp_path / "sam.pth"
    checkpoint.write_bytes(b"weights")
    argv = ["--type", "rpea", "--root", str(tmp_path), "--checkpoint", str(checkpoint),
            "--model-type", "vit_b", "--device", "cpu", "--min-area", "1"]  # fmt: skip
    assert script.main(argv) == 0
    assert FakeGenerator.calls == [(HEIGHT, WIDTH, 3)] * 2
    ids = read_instance_file(folder / "instances" / "a.png")
    assert ids[0, 0] == 1 and ids[1, 2] == 2 and ids[5, 0] == 0
    assert set(np.unique(ids)) == {0, 1, 2}
    sample = RpeaDataset(tmp_path, "train")[0]
    assert sample["instances_source"] == "file"
    np.testing.assert_array_equal(sample["instances"].numpy(), ids)
    assert "2 written" in capsys.readouterr().out

    assert script.main(argv) == 0
    assert len(FakeGenerator.calls) == 2  # nothing recomputed
    assert "2 kept" in capsys.readouterr().out
    assert script.main([*argv, "--overwrite"]) == 0
    assert len(FakeGenerator.calls) == 4


def test_missing_checkpoint_names_the_download(tmp_path, script, fake_sam, capsys) -> None:
    make_split(tmp_path)
    argv = ["--type", "rpea", "--root", str(tmp_path), "--checkpoint", str(tmp_path / "x.pth"),
            "--model-type", "vit_b", "--device", "cpu"]  # fmt: skip
    assert script.main(argv) == script.EXIT_MISSING_REQUIREMENT
    err = capsys.readouterr().err
    assert "x.pth" in err and "not found" in err and "download" in err
    assert not (tmp_path / "train" / "instances").exists()


def test_missing_package_names_what_to_install(tmp_path, script, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "segment_anything", None)  # import raises ImportError
    make_split(tmp_path)
    argv = ["--type", "rpea", "--root", str(tmp_path), "--checkpoint", str(tmp_path / "x.pth")]
    assert script.main(argv) == script.EXIT_MISSING_REQUIREMENT
    assert "pip install segment-anything" in capsys.readouterr().err


def test_dataset_errors_are_reported(tmp_path, script, fake_sam, capsys) -> None:
    checkpoint = tmp_path / "sam.pth"
    checkpoint.write_bytes(b"weights")
    argv = ["--type", "rpea", "--root", str(tmp_path / "nowhere"), "--checkpoint",
            str(checkpoint), "--model-type", "vit_b", "--device", "cpu"]  # fmt: skip
    assert script.main(argv) == 1
    assert "does not exist" in capsys.readouterr().err
