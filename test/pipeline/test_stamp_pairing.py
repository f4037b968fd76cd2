from __future__ import annotations

import pytest

from evseg_ros.pipeline import StampPairer


def test_pairs_by_exact_stamp_in_either_order_and_counts_orphans():
    pairer = StampPairer(("image", "events"))
    assert pairer.add("image", 1, "i1") is None
    assert pairer.add("image", 2, "i2") is None
    assert pairer.add("events", 2, "e2") == ("i2", "e2")
    assert pairer.dropped["image"] == 1  # image 1 can no longer be paired
    assert pairer.add("events", 3, "e3") is None
    assert pairer.add("image", 3, "i3") == ("i3", "e3")
    assert pairer.paired == 2
    assert pairer.pending("image") == 0 and pairer.pending("events") == 0


def test_bounded_queue_and_bad_side():
    pairer = StampPairer(max_pending=2)
    for stamp in range(4):
        pairer.add("events", stamp, stamp)
    assert pairer.dropped["events"] == 2
    with pytest.raises(ValueError, match="unknown side"):
        pairer.add("mask", 0, None)
