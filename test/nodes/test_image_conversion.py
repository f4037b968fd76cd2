from __future__ import annotations

import numpy as np
import pytest
from std_msgs.msg import Header

from evseg_ros.nodes.image_conversion import (
    ImageConversionError,
    from_image_msg,
    ns_to_stamp,
    stamp_to_ns,
    to_image_msg,
)


@pytest.mark.parametrize(
    ("encoding", "shape", "dtype"),
    [
        ("rgb8", (4, 5, 3), np.uint8),
        ("bgr8", (4, 5, 3), np.uint8),
        ("mono8", (4, 5), np.uint8),
        ("32FC3", (4, 5, 3), np.float32),
    ],
)
def test_round_trip_every_encoding(encoding, shape, dtype):
    array = (np.arange(np.prod(shape)) % 251).astype(dtype).reshape(shape)
    header = ns_to_stamp(Header(frame_id="cam"), 1_700_000_000_123_456_789)
    msg = to_image_msg(array, encoding, header)
    assert msg.step == shape[1] * (shape[2] if len(shape) == 3 else 1) * np.dtype(dtype).itemsize
    assert stamp_to_ns(msg.header) == 1_700_000_000_123_456_789
    np.testing.assert_array_equal(from_image_msg(msg), array)


def test_padded_rows_are_read_correctly():
    msg = to_image_msg(np.zeros((2, 3), np.uint8), "mono8", Header())
    msg.step = 4
    msg.data = bytes([1, 2, 3, 99, 4, 5, 6, 99])
    np.testing.assert_array_equal(from_image_msg(msg), [[1, 2, 3], [4, 5, 6]])


def test_bad_images_raise_clear_errors():
    msg = to_image_msg(np.zeros((2, 3, 3), np.uint8), "rgb8", Header())
    with pytest.raises(ImageConversionError, match="not supported here"):
        from_image_msg(msg, expected=("mono8",))
    msg.encoding = "bayer_rggb16"
    with pytest.raises(ImageConversionError, match="unknown image encoding"):
        from_image_msg(msg)
    msg.encoding = "rgb8"
    msg.data = bytes(5)
    with pytest.raises(ImageConversionError, match="inconsistent"):
        from_image_msg(msg)
    with pytest.raises(ImageConversionError, match="needs dtype"):
        to_image_msg(np.zeros((2, 2), np.float64), "mono8", Header())
