"""Asking the outside world with a time limit: query commands and SDK calls that may hang.

A doctor that hangs is worse than one that fails: it runs as a systemd ``ExecStartPre``, where a
wedged ``nvpmodel`` or a GigE scan with no answer would hold the whole rig's start.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

COMMAND_TIMEOUT_S = 2.0


class CommandResult(NamedTuple):
    """What an external command said; ``found`` False when it is not installed."""

    found: bool
    timed_out: bool
    returncode: int | None
    output: str


def run_command(command: Sequence[str], timeout_s: float = COMMAND_TIMEOUT_S) -> CommandResult:
    """Run a short query command with a time limit; never raises."""
    try:
        done = subprocess.run(
            list(command), capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except FileNotFoundError:
        return CommandResult(False, False, None, "")
    except subprocess.TimeoutExpired:
        return CommandResult(True, True, None, "")
    except OSError as err:  # not executable, ...
        return CommandResult(True, False, None, str(err))
    return CommandResult(True, False, done.returncode, (done.stdout or "") + (done.stderr or ""))


def call_with_timeout(function: Callable[[], Any], timeout_s: float) -> Any:
    """``function()`` on a daemon thread, so a hung SDK call cannot hang the caller.

    Raises:
        TimeoutError: it did not return within ``timeout_s`` (it is left running).
        Exception: whatever ``function`` raised.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = function()
        except BaseException as err:  # handed to the caller below
            outcome["error"] = err

    thread = threading.Thread(target=target, name="evseg-doctor-discovery", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        msg = f"no answer within {timeout_s:g} s"
        raise TimeoutError(msg)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
