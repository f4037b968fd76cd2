"""scripts/run_ablation.py --quick: all five variants train, evaluate and are tabulated."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "run_ablation.py"


def load_script():
    spec = importlib.util.spec_from_file_location("run_ablation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_ablation_writes_json_and_table(tmp_path, capsys):
    ablation = load_script()
    output = tmp_path / "ablation"
    argv = [
        "--quick",
        "--steps",
        "1",
        "--output",
        str(output),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    assert ablation.main(argv) == 0

    report = json.loads((output / "ablation.json").read_text())
    assert list(report["variants"]) == list(ablation.VARIANTS)
    assert report["settings"]["steps"] == 1 and report["settings"]["quick"] is True
    for name, entry in report["variants"].items():
        assert set(entry["miou"]) == {"overall", "normal", "night", "glare"}, name
        assert 0.0 <= entry["miou"]["overall"] <= 1.0, name
        assert entry["frames"]["overall"] == 3, name
    assert report["variants"]["cacd"]["use_jbcd"] and not report["variants"]["fused"]["use_hfca"]
    # Frame-only and event-only networks have one encoder, the fused ones two.
    params = {name: entry["parameters"] for name, entry in report["variants"].items()}
    assert params["image_only"] < params["fused"] == params["cacd"]

    table = (output / "ablation.md").read_text()
    printed = capsys.readouterr().out
    for label in ablation.ROW_LABELS.values():
        assert f"| {label} |" in table and f"| {label} |" in printed
    assert ablation.main(argv) == 2  # refuses to replace results without --overwrite
