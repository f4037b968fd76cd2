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


def test_three_sides_complete_only_together_and_a_placeholder_counts():
    pairer = StampPairer(("image", "events", "status"))
    assert pairer.add("events", 5, "e5") is None
    assert pairer.add("status", 5, "s5") is None
    assert pairer.add("image", 5, None) == (None, "e5", "s5")  # a frameless stamp
    assert pairer.add("status", 6, "s6") is None and pairer.add("image", 6, "i6") is None
    assert pairer.add("events", 6, "e6") == ("i6", "e6", "s6")
    assert pairer.paired == 2 and all(pairer.pending(side) == 0 for side in pairer.sides)
