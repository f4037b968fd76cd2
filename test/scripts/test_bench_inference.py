"""scripts/bench_inference.py prints one ratio line per size, for the shipped configuration."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_inference.py"


def test_prints_a_ratio_line_per_size_for_the_shipped_configuration(capsys):
    spec = importlib.util.spec_from_file_location("bench_inference", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    argv = ["--sizes", "64x64,96x64", "--repeats", "1", "--threads", "1"]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    # The shipped checkpoint's configuration is what is timed: the light event encoder.
    assert '"event_backbone": "mit_e0"' in out
    ratios = re.findall(r"^ratio fused/image_only (\d+x\d+): (\d+\.\d\d)$", out, re.MULTILINE)
    assert [size for size, _ in ratios] == ["64x64", "96x64"]
    assert all(float(value) > 0 for _, value in ratios)
