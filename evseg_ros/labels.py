"""Label sets: class names, ids and display colours.

The simulator, the model, the overlay and the metrics all speak in class ids; keeping the table
in one place means a mask published by the node and a label rendered by the simulator can be
compared without translation. ``VOID`` (255) marks pixels excluded from training and metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VOID = 255


@dataclass(frozen=True)
class LabelSet:
    """A named list of classes with an RGB colour each."""

    name: str
    classes: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]

    def __post_init__(self) -> None:
        if len(self.classes) != len(self.colors):
            msg = (
                f"label set {self.name!r}: {len(self.classes)} classes but "
                f"{len(self.colors)} colours"
            )
            raise ValueError(msg)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def index(self, name: str) -> int:
        """Return the id of class ``name``; raises ``KeyError`` naming the set."""
        try:
            return self.classes.index(name)
        except ValueError:
            msg = f"class {name!r} is not in label set {self.name!r}: {self.classes}"
            raise KeyError(msg) from None

    def palette(self) -> np.ndarray:
        """Return a (256, 3) uint8 lookup table; ids without a class (void) map to black."""
        lut = np.zeros((256, 3), dtype=np.uint8)
        lut[: self.num_classes] = np.asarray(self.colors, dtype=np.uint8)
        return lut


#: DSEC-Semantic's 11 classes, in its id order.
DSEC_11 = LabelSet(
    name="dsec11",
    classes=(
        "background",
        "building",
        "fence",
        "person",
        "pole",
        "road",
        "sidewalk",
        "vegetation",
        "vehicle",
        "wall",
        "traffic_sign",
    ),
    colors=(
        (70, 130, 180),
        (70, 70, 70),
        (190, 153, 153),
        (220, 20, 60),
        (153, 153, 153),
        (128, 64, 128),
        (244, 35, 232),
        (107, 142, 35),
        (0, 0, 142),
        (102, 102, 156),
        (220, 220, 0),
    ),
)

#: Cityscapes' 19 evaluation classes, in train-id order.
CITYSCAPES_19 = LabelSet(
    name="cityscapes19",
    classes=(
        "road",
        "sidewalk",
        "building",
        "wall",
        "fence",
        "pole",
        "traffic_light",
        "traffic_sign",
        "vegetation",
        "terrain",
        "sky",
        "person",
        "rider",
        "car",
        "truck",
        "bus",
        "train",
        "motorcycle",
        "bicycle",
    ),
    colors=(
        (128, 64, 128),
        (244, 35, 232),
        (70, 70, 70),
        (102, 102, 156),
        (190, 153, 153),
        (153, 153, 153),
        (250, 170, 30),
        (220, 220, 0),
        (107, 142, 35),
        (152, 251, 152),
        (70, 130, 180),
        (220, 20, 60),
        (255, 0, 0),
        (0, 0, 142),
        (0, 0, 70),
        (0, 60, 100),
        (0, 80, 100),
        (0, 0, 230),
        (119, 11, 32),
    ),
)

LABEL_SETS: dict[str, LabelSet] = {s.name: s for s in (DSEC_11, CITYSCAPES_19)}


def get_label_set(name: str) -> LabelSet:
    """Look a preset up by name; the error lists the known names."""
    try:
        return LABEL_SETS[name]
    except KeyError:
        msg = f"unknown label set {name!r}; known: {sorted(LABEL_SETS)}"
        raise ValueError(msg) from None


__all__ = ["CITYSCAPES_19", "DSEC_11", "LABEL_SETS", "VOID", "LabelSet", "get_label_set"]
