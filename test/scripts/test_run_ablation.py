"""scripts/run_ablation.py --quick: every row trains under two seeds, is evaluated and tabulated."""

from __future__ import annotations

import json


def test_quick_ablation_writes_json_and_tables(tmp_path, capsys, load_script):
    ablation = load_script("run_ablation")
    output = tmp_path / "report"
    argv = [
        "--quick",
        "--output",
        str(output),
        "--work-dir",
        str(tmp_path / "runs"),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    assert ablation.main(argv) == 0

    report = json.loads((output / "cacd_ablation.json").read_text())
    assert list(report["variants"]) == list(ablation.VARIANTS)
    assert report["settings"]["steps"] == 2 and report["settings"]["quick"] is True
    assert "no GPU" in report["hardware"]
    for name, entry in report["variants"].items():
        assert [run["seed"] for run in entry["runs"]] == [0, 1], name
        summary = entry["summary"]["miou"]
        assert set(summary) == {"overall", "normal", "night", "glare"}, name
        assert 0.0 <= summary["overall"]["mean"] <= 1.0 and summary["overall"]["std"] >= 0.0
    rows = report["variants"]
    assert rows["fused_jbcd"]["use_jbcd"] and not rows["fused_jbcd"]["use_hfca"]
    # Every weighted part of Eq. 8 is logged with its gradient norm where it is switched on.
    logged = rows["cacd"]["summary"]["logged"]
    for part in ("ce", "intra", "inter", "boundary", "content"):
        assert part in logged and f"grad_{part}" in logged, part
    assert "intra" not in rows["fused_jbcd"]["summary"]["logged"]
    assert "grad_boundary" in rows["fused_jbcd"]["summary"]["logged"]
    # The stage measurement behind loss.hfca_stage: coarser stages see fewer instances.
    counts = [v["mean"] for v in report["instances_per_stage"].values()]
    assert len(counts) == 4 and counts == sorted(counts, reverse=True) and counts[0] > 0

    table = (output / "cacd_ablation.md").read_text()
    printed = capsys.readouterr().out
    for label in ablation.ROW_LABELS.values():
        assert f"| {label} |" in table and f"| {label} |" in printed
    assert " ± " in table
    assert ablation.main(argv) == 2  # refuses to replace results without --overwrite
