"""Query commands and SDK calls under a time limit: absent, failing and hanging ones."""

from __future__ import annotations

import sys
import threading

import pytest

from evseg_ros.doctor.process import call_with_timeout, run_command


def test_run_command_absent_failing_and_hanging(tmp_path):
    absent = run_command([str(tmp_path / "no-such-command")])
    assert (absent.found, absent.timed_out, absent.returncode) == (False, False, None)
    failing = run_command([sys.executable, "-c", "import sys; print('out'); sys.exit('err')"])
    assert failing.found and failing.returncode == 1
    assert failing.output == "out\nerr\n"
    hanging = run_command([sys.executable, "-c", "import time; time.sleep(30)"], timeout_s=0.3)
    assert hanging.found and hanging.timed_out and hanging.returncode is None


def test_discovery_that_hangs_is_cut_off():
    release = threading.Event()
    with pytest.raises(TimeoutError):
        call_with_timeout(release.wait, 0.2)
    release.set()
    assert call_with_timeout(lambda: ["1"], 1.0) == ["1"]


def test_an_error_in_the_call_reaches_the_caller():
    def broken() -> list[str]:
        raise ValueError("no bus")

    with pytest.raises(ValueError, match="no bus"):
        call_with_timeout(broken, 1.0)
