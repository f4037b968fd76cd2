"""``evseg run`` stops within 2 s of SIGINT/SIGTERM with exit status 0, and ends after --duration.

The whole rig runs in the one process (the simulated sensors rendering in callbacks, the model
segmenting), so a stop signal arrives while some callback is busy; like a node process it must
end cleanly and quickly: Ctrl-C used to take 1.3 s of interpreter teardown, SIGTERM killed it
(status -15).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STOP_BUDGET_S = 2.0
#: imports, the models and, on a cold machine, the accumulator's first numba compile (~20 s)
START_TIMEOUT_S = 240
RUNNING_FOR_S = 1.0  # callbacks are busy by then
DURATION_S = 3.0


def _start(tmp_path: Path, duration_s: float) -> tuple[subprocess.Popen, Path]:
    """Start ``evseg run`` on the simulated rig; return once it printed that it is running."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    stderr_path = tmp_path / "stderr.txt"
    with stderr_path.open("w") as stderr:  # a file: a full pipe would block the logging
        process = subprocess.Popen(
            [sys.executable, "-m", "evseg_ros.cli", "run", "--source", "sim",
             "--duration", str(duration_s)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True,
        )
    watchdog = threading.Timer(START_TIMEOUT_S, process.kill)
    watchdog.start()
    try:
        line = process.stdout.readline()  # blocks until the graph is up (or the process died)
    finally:
        watchdog.cancel()
    assert line.startswith("running /rig/"), stderr_path.read_text()
    return process, stderr_path


def _finish(process: subprocess.Popen, stderr_path: Path) -> str:
    try:
        process.wait(timeout=60)
    finally:
        process.kill()
        process.stdout.close()
    return stderr_path.read_text()


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
def test_stop_signal_ends_evseg_run_within_2s_with_status_0(tmp_path, stop_signal):
    process, stderr_path = _start(tmp_path, duration_s=30.0)
    time.sleep(RUNNING_FOR_S)
    signalled = time.monotonic()
    process.send_signal(stop_signal)
    stderr = _finish(process, stderr_path)
    stopped_after = time.monotonic() - signalled
    print(f"evseg run stopped {stopped_after:.2f} s after {stop_signal.name}")
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert stopped_after < STOP_BUDGET_S, f"stopped {stopped_after:.2f} s after the signal"


def test_evseg_run_ends_after_its_duration_with_status_0(tmp_path):
    process, stderr_path = _start(tmp_path, duration_s=DURATION_S)
    running = time.monotonic()
    stderr = _finish(process, stderr_path)
    ran_for = time.monotonic() - running
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    # the duration counts from "running"; ending takes no more than a stop signal's budget
    assert DURATION_S - 0.25 <= ran_for < DURATION_S + STOP_BUDGET_S, f"ran {ran_for:.2f} s"
