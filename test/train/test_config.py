"""Training config: shipped files, defaults, overrides, and errors that name key and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from evseg_ros.train.config import TrainConfig, load_train_config
from evseg_ros.train.config_overrides import apply_overrides, parse_override

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "train"

MINIMAL = """
model: {backbone: mit_b0, variant: fused}
data:
  train: {type: rpea, root: data/rpea}
train: {max_steps: 10, amp: off}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "name",
    ["cacd_b5_rpea.yaml", "cacd_b2_rpea.yaml", "cacd_b0_sim.yaml", "cacd_b0_sim_quick.yaml"],
)
def test_shipped_configs_load_and_round_trip(name):
    config = load_train_config(CONFIG_DIR / name)
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert config.loss.use_hfca and config.loss.use_jbcd


def test_the_shipped_model_recipe_is_the_light_fused_cacd_with_modality_dropout():
    config = load_train_config(CONFIG_DIR / "cacd_b0_sim.yaml")
    assert config.model.cacd.architecture() == "cacd-mit-b0+evt-mit-e0"
    assert config.model.cacd.fusion_attention_stages == (2, 3)
    assert config.loss.modality_dropout == (0.1, 0.1) and config.loss.hfca_stage == 2
    assert config.data.val["seeds"] == [100, 101]  # held out, as the model card says
    assert not set(config.data.train_spec(seed=0)["seeds"]) & {100, 101}


def test_paper_setting():
    config = load_train_config(CONFIG_DIR / "cacd_b5_rpea.yaml")
    assert config.model.cacd.backbone == "mit_b5"
    assert config.model.cacd.decoder_channels == 768
    assert config.data.train["type"] == "rpea"
    assert config.data.batch_size == 16
    assert config.data.crop_size == (512, 512)
    assert (config.optim.name, config.optim.lr) == ("adam", 1e-4)
    assert config.train.epochs == 200 and config.train.max_steps is None
    assert config.loss.weights.intra == 0.0005 and config.loss.weights.inter == 0.01
    assert config.loss.weights.boundary == 0.001 and config.loss.weights.content == 0.001


def test_defaults_and_yaml_quirks(tmp_path):
    config = load_train_config(write(tmp_path, MINIMAL + "optim: {lr: 1e-4}\n"))
    assert config.optim.lr == 1e-4  # PyYAML reads 1e-4 as a string
    assert config.train.amp == "off"  # YAML 1.1 reads off as false
    assert config.optim.poly_power == 0.9
    # Eq. 8 has no auxiliary heads: off (weight 0) unless a config asks for them.
    assert config.loss.aux_weight == 0.0 and not config.loss.build_aux_heads
    assert config.data.train_spec(seed=3) == {
        "type": "rpea",
        "root": "data/rpea",
        "crop_size": [512, 512],
        "seed": 3,
        "split": "train",
    }


def test_overrides(tmp_path):
    path = write(tmp_path, MINIMAL)
    config = load_train_config(
        path,
        [
            "optim.lr=3e-4",
            "data.train.root=/other",
            "train.grad_accumulation=4",
            "loss.use_jbcd=false",
            "loss.weights.inter=0.02",
        ],
    )
    assert config.optim.lr == 3e-4
    assert config.data.train["root"] == "/other"
    assert config.train.grad_accumulation == 4
    assert not config.loss.use_jbcd and not config.loss.build_aux_heads
    assert config.loss.weights.inter == 0.02
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    with pytest.raises(ValueError, match=r"section\.key=value"):
        parse_override("optim.lr")
    with pytest.raises(ValueError, match="not a section"):
        apply_overrides({"optim": {"lr": 1.0}}, ["optim.lr.x=1"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lerning_rate=0.1", r"unknown key optim\.lerning_rate \(value 0\.1\)"),
        ("model.depth=3", r"unknown key model\.depth"),
        ("train.amp=fp8", r"train\.amp must be one of .*got 'fp8'"),
        ("optim.lr=-1", r"optim\.lr must be a positive number, got -1\.0"),
        ("optim.name=sgd", r"optim\.name must be one of .*got 'sgd'"),
        ("train.grad_accumulation=0", r"train\.grad_accumulation must be .*got 0"),
        ("train.max_steps=ten", r"train\.max_steps must be an integer, got 'ten'"),
        ("data.batch_size=true", r"data\.batch_size must be an integer, got True"),
        ("model.backbone=mit_b9", r"unknown backbone 'mit_b9'"),
        ("model.num_classes=19", r"differs from the 11 classes"),
        ("data.train.type=kitti", r"data\.train\.type must be one of .*got 'kitti'"),
        ("loss.weights.intra=-1", r"intra must be finite and >= 0, got -1\.0"),
        ("semi.ema_teacher.decay=1.5", r"semi\.ema_teacher\.decay must be .*got 1\.5"),
        ("train.max_steps=null", r"train\.epochs and train\.max_steps are both null"),
    ],
)
def test_bad_values_name_key_and_value(tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        load_train_config(write(tmp_path, MINIMAL), [override])


def test_cross_section_checks(tmp_path):
    path = write(tmp_path, MINIMAL)
    with pytest.raises(
        ValueError, match=r"loss\.use_hfca is true but model\.variant is 'image_only'"
    ):
        load_train_config(path, ["model.variant=image_only"])
    config = load_train_config(
        path, ["model.variant=image_only", "loss.use_hfca=false", "loss.use_jbcd=false"]
    )
    assert config.model.cacd.variant == "image_only"
    with pytest.raises(ValueError, match=r"data\.unlabelled is null"):
        load_train_config(path, ["semi.ema_teacher.enabled=true"])
    with pytest.raises(ValueError, match="teacher_checkpoint is null"):
        load_train_config(path, ["semi.pseudo_labels.enabled=true"])


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_train_config(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="config must be a mapping"):
        load_train_config(write(tmp_path, "- a\n- b\n"))


@pytest.mark.parametrize(
    ("name", "backbone"), [("cacd_b5_rpea.yaml", "mit_b5"), ("cacd_b2_rpea.yaml", "mit_b2")]
)
def test_paper_configs_expect_imagenet_weights(name: str, backbone: str) -> None:
    config = load_train_config(CONFIG_DIR / name)
    assert config.model.pretrained == f"weights/{backbone}.pth"
    assert not config.model.from_scratch
    if not Path(config.model.pretrained).is_file():
        with pytest.raises(FileNotFoundError, match=rf"{backbone}\.pth.*--from-scratch"):
            config.model.pretrained_file()
    scratch = load_train_config(CONFIG_DIR / name, ["model.from_scratch=true"])
    assert scratch.model.pretrained_file() is None


@pytest.mark.parametrize(("device", "ok"), [("cuda:1", True), ("CPU", True), ("gpu", False)])
def test_train_device_is_read_like_every_other_device_parameter(device: str, ok: bool) -> None:
    path = CONFIG_DIR / "cacd_b0_sim_quick.yaml"
    if ok:
        assert load_train_config(path, [f"train.device={device}"]).train.device == device
    else:
        with pytest.raises(ValueError, match="cuda:N"):
            load_train_config(path, [f"train.device={device}"])
