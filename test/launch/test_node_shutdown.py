"""A node process started by ``run_node`` stops within 2 s of SIGINT/SIGTERM and exits 0.

``ros2 launch`` sends SIGINT on Ctrl-C (SIGTERM 5 s later if a process is still there): the node
must stop whether it is still building itself, running a callback or waiting for one, without
publishing into a context that is already gone. An error in a callback still ends the process
with a traceback and a failure status.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STOP_BUDGET_S = 2.0

NODE_SCRIPT = """
import sys
import time

from rclpy.node import Node
from std_msgs.msg import String

from evseg_ros.nodes.spin import run_node

MODE = sys.argv[1]


class Probe(Node):
    def __init__(self):
        super().__init__("shutdown_probe")
        if MODE == "building":
            print("ready", flush=True)
            time.sleep(60.0)  # a long constructor (the accumulator's first numba compile)
        self.publisher = self.create_publisher(String, "probe", 10)
        if MODE != "idle":
            self.create_timer(0.01, self.tick)
        print("ready", flush=True)

    def tick(self):
        if MODE == "raise":
            raise RuntimeError("callback failed")
        end = time.monotonic() + 0.05
        while time.monotonic() < end:  # a busy callback that publishes at its end
            pass
        self.publisher.publish(String(data="tick"))


sys.exit(run_node(Probe, ["shutdown_probe"]))
"""


def _start(mode: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-c", NODE_SCRIPT, mode], cwd=REPO, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    line = process.stdout.readline()  # blocks until the node says it is there
    assert line.strip() == "ready", process.communicate(timeout=30)[1]
    return process


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
@pytest.mark.parametrize("mode", ["building", "busy", "idle"])
def test_stop_signal_ends_the_node_within_2s_with_status_0(mode, stop_signal):
    process = _start(mode)
    time.sleep(0.5)
    signalled = time.monotonic()
    process.send_signal(stop_signal)
    try:
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    stopped_after = time.monotonic() - signalled
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert stopped_after < STOP_BUDGET_S, f"stopped {stopped_after:.2f} s after the signal"


def test_an_error_in_a_callback_still_fails_the_process():
    process = _start("raise")
    try:
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode != 0
    assert "RuntimeError: callback failed" in stderr
