"""Side-by-side PNG panels (image | events | prediction | ground truth) for eyeballing results."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from evseg_ros.labels import LabelSet
from evseg_ros.pipeline.overlay import colorize, render_event_frame


def make_panel(
    image: np.ndarray,
    event_frame: np.ndarray,
    mask: np.ndarray,
    truth: np.ndarray,
    label_set: LabelSet,
    *,
    title: str = "",
) -> np.ndarray:
    """Return one RGB strip with a caption row above each tile."""
    tiles = [
        ("image", image),
        ("events", render_event_frame(event_frame)),
        ("prediction", colorize(mask, label_set)),
        ("ground truth", colorize(truth, label_set)),
    ]
    captioned = []
    for name, tile in tiles:
        caption = np.full((22, tile.shape[1], 3), 255, dtype=np.uint8)
        text = f"{name} {title}".strip() if name == "image" else name
        cv2.putText(caption, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
        captioned.append(np.vstack([caption, tile]))
    return np.hstack(captioned)


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB array as PNG, refusing to write nowhere silently."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        msg = f"could not write PNG {str(path)!r}"
        raise OSError(msg)
