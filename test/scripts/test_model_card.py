"""scripts/model_card.py: every mode of the model and a baseline scored on the same frames."""

from __future__ import annotations

import json


def test_modes_and_baseline_on_the_same_held_out_frames(
    tmp_path, tiny_onnx_model, capsys, load_script
):
    card = load_script("model_card")
    output = tmp_path / "metrics.json"
    argv = [
        "--model", str(tiny_onnx_model), "--baseline", f"again={tiny_onnx_model}",
        "--seeds", "100", "--frames-per-seed", "3", "--frame-stride", "40",
        "--cache-dir", str(tmp_path / "cache"), "--threads", "1", "--output", str(output),
    ]  # fmt: skip
    assert card.main(argv) == 0
    report = json.loads(output.read_text())
    assert report["held_out"]["frames"] == 3
    modes = report["shipped"]["modes"]
    assert list(modes) == ["fused", "frame_only", "event_only"]
    for mode in modes.values():
        assert 0.0 <= mode["miou"]["overall"] <= 100.0
        assert set(mode["iou"]) >= {"road", "vehicle"}
    # The same file as baseline scores exactly what the model scored on fused input.
    assert report["baselines"]["again"]["modes"]["fused"]["miou"] == modes["fused"]["miou"]
    printed = capsys.readouterr().out
    assert "| shipped, frame_only |" in printed and "| again, fused |" in printed
    assert card.main([*argv, "--baseline", "no-path"]) == 2
