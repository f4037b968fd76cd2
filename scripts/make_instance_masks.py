#!/usr/bin/env python3
"""Compute SAM instance masks for a training dataset and store them where its loader reads them.

The HFCA contrastive losses pool features inside instance masks ``M_k``; the paper takes them
from SAM, computed once, offline. This runs SAM's automatic mask generator
(``segment_anything.SamAutomaticMaskGenerator``) over every frame of a dataset split and writes
one uint16 PNG of instance ids per sample (0 = no instance) to the path the dataset itself
reports (:meth:`SegmentationDataset.instance_path`), e.g. ``root/<split>/instances/<name>.png``
for an RPEA-style folder and ``<sequence>/instances/<label stem>.png`` for DSEC. Samples
without a frame (event-only DSEC) are skipped and counted.

SAM masks overlap; they are painted largest first, so a smaller mask lying on a larger one
(a person in front of a wall) keeps its own id, and masks with fewer than ``--min-area`` visible
pixels are dropped. Ids are renumbered 1..N in painting order.

Requirements (not installed with this package): ``pip install segment-anything`` (the
facebookresearch/segment-anything package) and a checkpoint file, e.g. ``sam_vit_h_4b8939.pth``
for ``--model-type vit_h``, downloaded from that project's README. Text-prompted masks
(GroundedSAM: Grounding DINO boxes fed to SAM) would restrict instances to named object
classes; this script does not implement that.

Existing mask files are kept unless ``--overwrite`` is given.

Example::

    python scripts/make_instance_masks.py --type rpea --root data/rpea --split train \\
        --checkpoint checkpoints/sam_vit_h_4b8939.pth
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # runnable from a source checkout without installing
    sys.path.insert(0, str(REPO_ROOT))

from evseg_ros.train.datasets import DatasetError, build_dataset, write_instance_file
from evseg_ros.train.datasets.instances import MAX_INSTANCE_ID

#: Exit status when SAM or its checkpoint is missing.
EXIT_MISSING_REQUIREMENT = 2


class MissingRequirementError(RuntimeError):
    """``segment_anything`` or the checkpoint is not available; the message says what to get."""


def masks_to_instances(
    masks: Sequence[dict], shape: tuple[int, int], *, min_area: int = 0
) -> np.ndarray:
    """Flatten SAM's overlapping masks into one ``(H, W)`` int64 id map (largest painted first).

    Args:
        masks: SAM records, each with a boolean ``segmentation`` of ``shape`` (``area`` is
            recomputed, not trusted).
        shape: ``(height, width)`` of the frame.
        min_area: Masks with fewer visible pixels after painting are dropped.

    Raises:
        ValueError: A mask is not of ``shape``, or there are more ids than a uint16 PNG holds.
    """
    painted = np.zeros(shape, dtype=np.int64)
    segments = [np.asarray(mask["segmentation"], dtype=bool) for mask in masks]
    for index, segment in enumerate(segments):
        if segment.shape != tuple(shape):
            msg = f"mask {index} has shape {segment.shape!r}, frame is {tuple(shape)!r}"
            raise ValueError(msg)
    order = sorted(range(len(segments)), key=lambda i: -int(segments[i].sum()))
    for rank, index in enumerate(order, start=1):
        painted[segments[index]] = rank
    instances = np.zeros(shape, dtype=np.int64)
    next_id = 1
    for rank in range(1, len(order) + 1):
        visible = painted == rank
        if int(visible.sum()) < max(min_area, 1):
            continue
        if next_id > MAX_INSTANCE_ID:
            msg = f"more than {MAX_INSTANCE_ID} instances in one frame"
            raise ValueError(msg)
        instances[visible] = next_id
        next_id += 1
    return instances


def load_generator(checkpoint: Path, model_type: str, device: str, points_per_side: int):
    """Build SAM's automatic mask generator.

    Raises:
        MissingRequirementError: ``segment_anything`` is not installed, the checkpoint file does
            not exist, or ``model_type`` is unknown.
    """
    try:
        from segment_anything import SamAutomaticMaskGenerator, sam_model_registry
    except ImportError as err:
        msg = (
            "segment_anything is not installed: pip install segment-anything "
            f"(github.com/facebookresearch/segment-anything) [{err}]"
        )
        raise MissingRequirementError(msg) from err
    if not checkpoint.is_file():
        msg = (
            f"SAM checkpoint {str(checkpoint)!r} not found: download the {model_type} checkpoint "
            "listed in the segment-anything README (e.g. sam_vit_h_4b8939.pth) and pass its path"
        )
        raise MissingRequirementError(msg)
    if model_type not in sam_model_registry:
        msg = f"unknown SAM model type {model_type!r}; known: {sorted(sam_model_registry)}"
        raise MissingRequirementError(msg)
    model = sam_model_registry[model_type](checkpoint=str(checkpoint))
    model.to(device=device)
    return SamAutomaticMaskGenerator(model, points_per_side=points_per_side)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--type", choices=("rpea", "dsec"), required=True, help="dataset type")
    parser.add_argument("--root", type=Path, required=True, help="dataset root folder")
    parser.add_argument("--split", default="train", help="split folder name (default train)")
    parser.add_argument("--num-classes", type=int, default=11, help="label set size (11/19)")
    parser.add_argument("--checkpoint", type=Path, required=True, help="SAM checkpoint file")
    parser.add_argument(
        "--model-type", default="vit_h", help="SAM registry key matching the checkpoint"
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda if any)")
    parser.add_argument("--points-per-side", type=int, default=32, help="SAM point grid")
    parser.add_argument("--min-area", type=int, default=64, help="smallest instance, pixels")
    parser.add_argument("--overwrite", action="store_true", help="replace existing mask files")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, int]:
    """Write the masks of one split; returns counts (written, kept, no_image)."""
    device = args.device
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    generator = load_generator(args.checkpoint, args.model_type, device, args.points_per_side)
    dataset = build_dataset(
        {"type": args.type, "root": str(args.root), "split": args.split,
         "num_classes": args.num_classes, "augment": False}
    )  # fmt: skip
    counts = {"written": 0, "kept": 0, "no_image": 0}
    for index in range(len(dataset)):
        path = dataset.instance_path(index)
        if path is None:
            continue
        if path.exists() and not args.overwrite:
            counts["kept"] += 1
            continue
        image = dataset.load_sam_image(index)
        if image is None:
            counts["no_image"] += 1
            continue
        masks = generator.generate(image)
        write_instance_file(
            path, masks_to_instances(masks, image.shape[:2], min_area=args.min_area)
        )
        counts["written"] += 1
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        counts = run(args)
    except MissingRequirementError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_MISSING_REQUIREMENT
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(
        f"instance masks: {counts['written']} written, {counts['kept']} kept (exist; "
        f"--overwrite to replace), {counts['no_image']} samples without a frame"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
