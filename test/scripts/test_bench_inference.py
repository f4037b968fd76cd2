"""scripts/bench_inference.py prints one ratio line per size, for the shipped configuration."""

from __future__ import annotations

import re


def test_prints_a_ratio_line_per_size_for_the_shipped_configuration(capsys, load_script):
    bench = load_script("bench_inference")
    argv = ["--sizes", "64x64,96x64", "--repeats", "1", "--threads", "1"]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    # The shipped checkpoint's configuration is what is timed: the light event encoder.
    assert '"event_backbone": "mit_e0"' in out
    ratios = re.findall(r"^ratio fused/image_only (\d+x\d+): (\d+\.\d\d)$", out, re.MULTILINE)
    assert [size for size, _ in ratios] == ["64x64", "96x64"]
    assert all(float(value) > 0 for _, value in ratios)
