"""Pair streams by exact header stamp (frame image, event frame and its status share one stamp).

Exact equality is the contract between the accumulator and the segmentation node, so no
approximate-time policy is needed; what never finds its partner is aged out and counted.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


class StampPairer:
    """Hold items of named sides until every other side's item with the same stamp arrived."""

    def __init__(self, sides: tuple[str, ...] = ("image", "events"), *, max_pending: int = 30):
        self.sides = sides
        self.max_pending = max_pending
        self._waiting: dict[str, OrderedDict[int, Any]] = {side: OrderedDict() for side in sides}
        self.paired = 0
        self.dropped: dict[str, int] = {side: 0 for side in sides}
        self.duplicates: dict[str, int] = {side: 0 for side in sides}

    def add(self, side: str, stamp_ns: int, item: Any) -> tuple[Any, ...] | None:
        """Add one item; return the items of all sides, in ``sides`` order, once complete."""
        if side not in self._waiting:
            msg = f"unknown side {side!r}; expected one of {self.sides}"
            raise ValueError(msg)
        others = [other for other in self.sides if other != side]
        if all(stamp_ns in self._waiting[other] for other in others):
            found = {other: self._waiting[other].pop(stamp_ns) for other in others}
            found[side] = item
            for name in self.sides:
                self._drop_older(name, stamp_ns)
            self.paired += 1
            return tuple(found[name] for name in self.sides)
        queue = self._waiting[side]
        if stamp_ns in queue:
            self.duplicates[side] += 1
        queue[stamp_ns] = item
        while len(queue) > self.max_pending:
            queue.popitem(last=False)
            self.dropped[side] += 1
        return None

    def _drop_older(self, side: str, stamp_ns: int) -> None:
        """Both streams are in stamp order: anything older than a completed pair is orphaned."""
        queue = self._waiting[side]
        for stamp in [s for s in queue if s < stamp_ns]:
            del queue[stamp]
            self.dropped[side] += 1

    def pending(self, side: str) -> int:
        return len(self._waiting[side])
