"""What every event decoder does with its input before decoding: buffers in, whole words out.

A camera driver, a recorder or a file reader may cut an event stream anywhere, also inside a
word, and hands it over as ``bytes``, ``bytearray``, rclpy's ``array('B')``, a ``memoryview`` or
a numpy array. :class:`WordFramer` turns each such packet into the little-endian words it
completes, holding the bytes of an unfinished word back for the next packet, so a decoder sees
the words as if the stream were one buffer. The numpy, numba and torch EVT3 decoders and the
EVT2 decoder all frame their input here, so they agree on every split of a stream.
"""

from __future__ import annotations

import array

import numpy as np

from evseg_ros.events.errors import EventDecodeError

__all__ = ["WordFramer", "as_byte_array", "check_geometry"]

_NO_BYTES = np.empty(0, dtype=np.uint8)
_NO_BYTES.flags.writeable = False


def as_byte_array(data: object) -> np.ndarray:
    """View a caller's buffer as a 1-D ``uint8`` array without copying when possible.

    Accepts ``bytes``, ``bytearray``, ``array.array('B')``, ``memoryview`` and numpy arrays of
    unsigned integers: ``uint8`` bytes, or already assembled words (``uint16`` for EVT3,
    ``uint32`` for EVT2), which are laid out as the little-endian bytes the stream consists
    of. Anything else is a programming error, not a stream error.

    Raises:
        EventDecodeError: ``data`` is not a supported buffer type.
    """
    if isinstance(data, np.ndarray):
        if data.dtype == np.uint8:
            return np.ascontiguousarray(data).reshape(-1)
        if data.dtype.kind == "u" and data.dtype.itemsize in (2, 4, 8):
            little = data.dtype.newbyteorder("<")
            return np.ascontiguousarray(data, dtype=little).reshape(-1).view(np.uint8)
        raise EventDecodeError(
            f"event buffer must be an unsigned integer array, got dtype {str(data.dtype)!r}"
        )
    if isinstance(data, (bytes, bytearray)):
        return np.frombuffer(data, dtype=np.uint8)
    if isinstance(data, array.array) and data.typecode == "B":
        # what rclpy hands out for a ``uint8[]`` field such as EventPacket.events
        return np.frombuffer(data, dtype=np.uint8)
    if isinstance(data, memoryview):
        try:
            return np.frombuffer(data.cast("B"), dtype=np.uint8)
        except (TypeError, ValueError):
            return np.frombuffer(data.tobytes(), dtype=np.uint8)
    raise EventDecodeError(
        f"event buffer must be bytes, bytearray, array('B'), memoryview or a numpy array, "
        f"got {type(data).__name__!r}"
    )


class WordFramer:
    """Whole little-endian words from a byte stream that arrives in packets of any size.

    Args:
        word_bytes: bytes per word (2 for EVT3, 4 for EVT2).
    """

    def __init__(self, word_bytes: int) -> None:
        if word_bytes not in (2, 4):
            raise ValueError(f"word_bytes must be 2 or 4, got {word_bytes!r}")
        self.word_bytes = word_bytes
        self._dtype = np.dtype(f"<u{word_bytes}")
        self._tail = _NO_BYTES

    @property
    def held_bytes(self) -> int:
        """Bytes of an unfinished word held back for the next packet."""
        return int(self._tail.size)

    def reset(self) -> None:
        """Drop the held-back bytes (a new stream starts)."""
        self._tail = _NO_BYTES

    def held(self) -> np.ndarray:
        """The held-back bytes (read-only), to carry over with :meth:`hold`."""
        return self._tail

    def hold(self, held: np.ndarray) -> None:
        """Hold ``held`` (from :meth:`held`) back for the next packet instead."""
        self._tail = held

    def words(self, data: object) -> np.ndarray:
        """The words that the held-back bytes and ``data`` complete, in stream order.

        Returns:
            A read-only 1-D array of little-endian words, aligned: a view of ``data`` when it
            can be (no bytes held back, aligned start), else a copy. Read-only because the
            decoders only read words, and one flag state lets numba compile its kernels once.

        Raises:
            EventDecodeError: ``data`` is not a supported buffer type.
        """
        buf = as_byte_array(data)
        if self._tail.size:
            buf = np.concatenate((self._tail, buf))
        whole = buf.size - buf.size % self.word_bytes
        self._tail = _NO_BYTES
        if whole < buf.size:
            self._tail = buf[whole:].copy()
            self._tail.flags.writeable = False
        words = buf[:whole].view(self._dtype)
        # a copy when unaligned (e.g. a payload after a header of odd length); a view of our
        # own otherwise, so that making it read-only leaves the caller's array alone
        words = words.copy() if not words.flags.aligned else words.view()
        words.flags.writeable = False
        return words


def check_geometry(width: object, height: object) -> tuple[int, int]:
    """Validate the sensor geometry a decoder is built with; return it as ints.

    Raises:
        EventDecodeError: not an int in 1..65535 (bools are not ints here).
    """
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise EventDecodeError(f"{name} must be an int, got {value!r}")
        if not 0 < int(value) <= 0xFFFF:
            raise EventDecodeError(f"{name} must be in 1..65535, got {value!r}")
    return int(width), int(height)  # type: ignore[arg-type]
