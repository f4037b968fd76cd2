"""Resolve the relative paths that appear in config files (models, calibration, profiles).

A path in ``config/*.yaml`` is written relative to the package (``config/calibration/...``,
``models/...``) so that one file works from a source checkout and from a colcon install,
where those folders live in ``share/evseg_ros``.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_NAME = "evseg_ros"
SOURCE_ROOT = Path(__file__).resolve().parent.parent
#: The rig parameter file used by `evseg run`, `evseg demo` and the launch file.
DEFAULT_CONFIG = "config/rig.yaml"


def package_share() -> Path | None:
    """The installed share folder, or None when running from a source checkout."""
    try:
        from ament_index_python.packages import (
            PackageNotFoundError,
            get_package_share_directory,
        )
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory(PACKAGE_NAME))
    except (PackageNotFoundError, OSError):
        # OSError: AMENT_PREFIX_PATH unset (no ROS environment sourced), which for this
        # question means the same as not installed
        return None


def package_path_candidates(path: str | Path) -> list[Path]:
    """Where :func:`resolve_package_path` looks for ``path``, in order.

    A relative path is tried against the current directory first (what the user typed), then
    the source tree, then share/ when installed; an absolute path is only itself.
    """
    candidate = Path(path).expanduser()
    if candidate.is_absolute():
        return [candidate]
    candidates = [candidate, SOURCE_ROOT / candidate]
    share = package_share()
    if share is not None:
        candidates.append(share / candidate)
    return candidates


def resolve_package_path(path: str | Path) -> Path:
    """Absolute paths and existing relative paths win; then the source tree; then share/.

    Returns the best candidate even when it does not exist, so the caller's error message
    names a concrete path.
    """
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or candidate.exists():
        return candidate
    in_source = SOURCE_ROOT / candidate
    if in_source.exists():
        return in_source
    share = package_share()
    if share is not None and (share / candidate).exists():
        return share / candidate
    return in_source
