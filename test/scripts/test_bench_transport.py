"""``scripts/bench_transport.py --quick`` runs end to end on the real nodes and the real DDS.

What is checked is that every row is measured and printed and that nothing is lost in process,
never how fast: the figures depend on the machine and its load.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "bench_transport.py"
SAMPLE_RAW = REPO / ".." / "shared" / "data" / "expelliarmus" / "evt3_sample.raw"
QUICK_ROWS = {"in-process", "dds-shm", "dds-udp", "decode-only"}
#: run, packet, seconds, packets, Mev, Mev/s, MB/s, seq_gaps, lost, then the CPU column
ROW = re.compile(
    r"^\s+(?P<run>[a-z-]+)\s+(?P<packet>\d+KiB)\s+(?P<seconds>[\d.]+)\s+(?P<packets>\d+)\s+"
    r"(?P<mev>[\d.]+)\s+(?P<rate>[\d.]+)\s+(?P<mb_s>[\d.]+)\s+(?P<gaps>\d+)\s+(?P<lost>\d+)\s"
)


@pytest.mark.skipif(not SAMPLE_RAW.is_file(), reason=f"recording not found: {SAMPLE_RAW}")
def test_quick_run_measures_every_row_without_in_process_losses():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    output = done.stdout
    assert done.returncode == 0, output[-4000:] + done.stderr[-4000:]

    rows = {m["run"]: m for m in map(ROW.match, output.splitlines()) if m}
    assert set(rows) == QUICK_ROWS, output[-4000:]
    for run, row in rows.items():
        assert row["packet"] == "256KiB", run
        assert int(row["packets"]) > 0, run
        assert float(row["mev"]) > 0, run
        assert float(row["rate"]) > 0, run
        assert float(row["mb_s"]) > 0, run
    # one executor alternates publish and take: nothing may be lost in process
    assert rows["in-process"]["gaps"] == "0"
    assert rows["in-process"]["lost"] == "0"
    assert rows["decode-only"]["gaps"] == "0"
    # the DDS runs say which transport carried the data
    assert re.search(r"dds-shm 256KiB: the two processes map \d+ Fast DDS SHM segment", output)
    assert "dds-udp 256KiB: the two processes map no Fast DDS SHM segment" in output
    assert re.search(r"ratios 256KiB: dds-shm/dds-udp [\d.]+x, dds-shm/in-process [\d.]+x", output)
    assert re.search(r"^verdict: 100 M ev/s with 0 seq gaps: (MET|NOT MET);", output, re.M)
