"""What one doctor check returns, and the few helpers every check shares.

A check looks at one thing and answers with one :class:`Check`; it never raises, so a broken
install shows up as a row with its fix instead of ending the command halfway through the table.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

OK, WARN, MISSING, ERROR = "ok", "warn", "missing", "error"
STATUSES = (OK, WARN, MISSING, ERROR)
#: statuses that fail a needed check; ``warn`` never fails the command
FAILING = (MISSING, ERROR)

GIB = 1024**3
MIB = 1024**2


@dataclass(frozen=True)
class Check:
    """One finding: what was looked at, how it stands, what was seen, and what to do about it."""

    name: str
    status: str  # one of STATUSES
    detail: str
    fix: str = ""


def first_line(err: BaseException) -> str:
    """The first line of an error's message (its type when it has none): a row is one line."""
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def gib(num_bytes: float) -> str:
    """``num_bytes`` in GiB with one decimal, the unit memory and ``/dev/shm`` are sized in."""
    return f"{num_bytes / GIB:.1f} GiB"


def package_path(relative: str) -> Path:
    """A file shipped with the package, in a source checkout or a colcon install alike."""
    from evseg_ros.paths import resolve_package_path  # noqa: PLC0415

    return resolve_package_path(relative).resolve()


def module_check(
    name: str,
    module: str,
    describe: Callable[[ModuleType], str],
    fix: str | Callable[[], str],
) -> Check:
    """Import ``module``: ``ok`` with ``describe(module)``, else ``missing`` with ``fix``.

    The import happens here, inside the check, so that loading the doctor loads none of the
    heavy modules it looks for. ``fix`` may be a callable for a hint that costs an import of
    its own (the camera SDKs' hints come from the driver sources) and is wanted only when the
    module is missing. Errors other than ``ImportError``, from the import or from ``describe``,
    reach the caller.
    """
    try:
        loaded = importlib.import_module(module)
    except ImportError as err:
        hint = fix() if callable(fix) else fix
        return Check(name, MISSING, f"not importable ({first_line(err)})", hint)
    return Check(name, OK, describe(loaded))
