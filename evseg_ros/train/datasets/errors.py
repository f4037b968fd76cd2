"""Exceptions raised by the training datasets.

A dataset that cannot be read is a mistake the user can fix (a folder in the wrong place, a
missing download, a label image in colour instead of ids), so the messages name the folder or
file and show the offending value with ``!r``.
"""

from __future__ import annotations

__all__ = ["DatasetError"]


class DatasetError(ValueError):
    """A dataset folder or file is missing, malformed or inconsistent with its neighbours.

    Subclasses :class:`ValueError` so that callers guarding against bad configuration also
    catch it.
    """
