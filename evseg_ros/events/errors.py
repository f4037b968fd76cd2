"""Exceptions raised by the event codecs.

Decoders are deliberately forgiving about the *content* of a stream (a camera link can deliver
garbage and a live pipeline must keep running), so :class:`EventDecodeError` is reserved for
mistakes a caller can fix: an argument of the wrong type or shape, events that cannot be
represented in the target format, or a recording file whose header cannot be understood.
"""

from __future__ import annotations

__all__ = ["EventDecodeError"]


class EventDecodeError(ValueError):
    """An event codec was given an argument or file it cannot work with.

    Subclasses :class:`ValueError` so that generic callers that only guard against bad values
    still catch it. Messages quote the offending value with ``!r`` so that logs show exactly
    what was passed.
    """
