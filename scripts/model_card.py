#!/usr/bin/env python3
"""Score exported models on held-out simulated recordings and write the model card's tables.

Every model runs through the node's own inference path (ONNX Runtime on CPU, the runtime's
pre- and post-processing) on the same full 320x240 frames of held-out simulator seeds. Each one
is scored in the modes the segmentation node serves: ``fused`` (frame + events), ``frame_only``
(an all-zero event frame, what the node feeds when the events are not fit to fuse) and
``event_only`` (a black frame), overall and per lighting condition. A ``--baseline`` is scored
the same way on fused input, so the card's comparison is measured on the same frames, not
quoted from another run.

    git show d34f35b:models/demo_fusion.onnx > output/demo_fusion.onnx   # the retired demo net
    python scripts/model_card.py --model models/cacd_b0_sim.onnx \\
        --baseline demo=output/demo_fusion.onnx --output models/cacd_b0_sim_metrics.json

Prints the markdown tables; ``--output`` also keeps every figure as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # runnable from a source checkout without installing
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np

from evseg_ros.eval.metrics import ConfusionMatrix
from evseg_ros.labels import DSEC_11
from evseg_ros.runtime import create_backend
from evseg_ros.train.datasets import build_dataset

MODES = ("fused", "frame_only", "event_only")
SUBSETS = ("overall", "normal", "night", "glare")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="ONNX model to describe")
    parser.add_argument(
        "--baseline", action="append", default=[], help="NAME=PATH of an ONNX model to compare"
    )
    parser.add_argument("--seeds", default="100,101", help="held-out simulator seeds")
    parser.add_argument("--frames-per-seed", type=int, default=60)
    parser.add_argument("--frame-stride", type=int, default=2)
    parser.add_argument("--cache-dir", default="output/sim_cache")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--output", help="JSON file for every figure")
    return parser.parse_args(argv)


def held_out_frames(args: argparse.Namespace) -> list[dict]:
    """The held-out samples as the camera delivers them: uint8 RGB, event frame, labels."""
    dataset = build_dataset(
        {
            "type": "sim",
            "split": "val",
            "seeds": [int(s) for s in args.seeds.split(",")],
            "frames_per_seed": args.frames_per_seed,
            "frame_stride": args.frame_stride,
            "cache_dir": args.cache_dir,
        }
    )
    frames = []
    for index in range(len(dataset)):
        sample = dataset[index]
        rgb = np.asarray(sample["image"]).transpose(1, 2, 0) * 255.0
        frames.append(
            {
                "image": np.clip(np.rint(rgb), 0, 255).astype(np.uint8),
                "events": np.asarray(sample["events"], dtype=np.float32),
                "label": np.asarray(sample["label"]),
                "condition": sample["condition"],
            }
        )
    return frames


def score(path: str, modes: tuple[str, ...], frames: list[dict], threads: int) -> dict:
    """mIoU per mode and subset, per-class IoU and latency of one model."""
    backend = create_backend("onnxruntime", path, device="cpu", intra_op_num_threads=threads)
    result: dict = {"description": backend.description, "modes": {}}
    for mode in modes:
        matrices = {subset: ConfusionMatrix(DSEC_11.num_classes) for subset in SUBSETS}
        times = []
        for frame in frames:
            image, events = frame["image"], frame["events"]
            if mode == "frame_only":
                events = np.zeros_like(events)
            elif mode == "event_only":
                image = np.zeros_like(image)
            start = time.perf_counter()
            mask = backend.infer(image, events).mask
            times.append(time.perf_counter() - start)
            for subset in ("overall", frame["condition"]):
                matrices[subset].update(mask, frame["label"])
        result["modes"][mode] = {
            "miou": {s: 100 * m.miou() for s, m in matrices.items() if m.total > 0},
            "iou": dict(zip(DSEC_11.classes, (100 * matrices["overall"].iou()).tolist())),
            "pixel_accuracy": 100 * matrices["overall"].pixel_accuracy(),
            "median_ms": 1000 * float(np.median(times)),
        }
    return result


def tables(model: dict, baselines: dict[str, dict]) -> str:
    lines = [
        "| network, mode | overall | normal | night | glare |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    rows = [(f"shipped, {mode}", model["modes"][mode]) for mode in MODES]
    rows += [
        (f"{name}, {mode}", r["modes"][mode])
        for name, r in baselines.items()
        for mode in r["modes"]
    ]
    for label, entry in rows:
        cells = [f"{entry['miou'].get(s, float('nan')):.1f}" for s in SUBSETS]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    lines += ["", "| class | " + " | ".join(MODES) + " |", "| --- |" + " ---: |" * len(MODES)]
    for name in DSEC_11.classes:
        cells = [f"{model['modes'][mode]['iou'][name]:.1f}" for mode in MODES]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    specs = [spec.partition("=") for spec in args.baseline]
    bad = [name for name, _, path in specs if not name or not path]
    if bad:
        print(f"--baseline wants NAME=PATH, got {args.baseline!r}", file=sys.stderr)
        return 2
    frames = held_out_frames(args)
    model = score(args.model, MODES, frames, args.threads)
    baselines = {name: score(path, ("fused",), frames, args.threads) for name, _, path in specs}
    conditions = {c: sum(f["condition"] == c for f in frames) for c in SUBSETS[1:]}
    report = {
        "model": args.model,
        "held_out": {"seeds": args.seeds, "frames": len(frames), "conditions": conditions},
        "shipped": model,
        "baselines": baselines,
    }
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(f"{len(frames)} held-out frames {conditions}; {model['description']}")
    print(tables(model, baselines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
