#!/usr/bin/env python3
"""Ablation of CACD on the simulated rig: what the events, HFCA and JBCD each add.

Five networks are trained with the same budget (steps, batch, crops), the same seed and the
same batches in the same order, then evaluated on held-out simulator seeds, overall and per
lighting condition (night and glare are where the frame alone fails):

    image_only, event_only, fused, fused_hfca (fused + HFCA), cacd (fused + HFCA + JBCD)

This mirrors CACD Table 2 at toy scale (MiT-B0, frames scaled down to ``--size`` pixels high,
a few hundred steps on a CPU). Differences of a few mIoU points are within seed-to-seed noise
at this scale; the table says what this run measured, not what the method is worth.

Outputs in ``--output`` (default ``output/ablation``): ``ablation.json`` (settings, per-variant
mIoU overall / normal / night / glare, per-class IoU, training time), ``ablation.md`` (the
table, also printed) and one training folder per variant.

Typical use (about 15 minutes on two CPU cores with the defaults)::

    python scripts/run_ablation.py
    python scripts/run_ablation.py --quick --output output/ablation_quick   # seconds
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shlex
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # runnable from a source checkout without installing
    sys.path.insert(0, str(REPO_ROOT))

import torch

from evseg_ros.train.config import TrainConfig
from evseg_ros.train.trainer import Trainer

#: Variant name -> (model.variant, loss.use_hfca, loss.use_jbcd), in table order.
VARIANTS: dict[str, tuple[str, bool, bool]] = {
    "image_only": ("image_only", False, False),
    "event_only": ("event_only", False, False),
    "fused": ("fused", False, False),
    "fused_hfca": ("fused", True, False),
    "cacd": ("fused", True, True),
}
#: Human-readable row labels of the table.
ROW_LABELS = {
    "image_only": "frame only",
    "event_only": "events only",
    "fused": "fused",
    "fused_hfca": "fused + HFCA",
    "cacd": "fused + HFCA + JBCD (CACD)",
}
SUBSETS = ("overall", "normal", "night", "glare")
#: Height of the simulator's frame camera (config/calibration/sim_rig.yaml).
SIM_HEIGHT = 240


def parse_seeds(text: str) -> list[int]:
    """``"0-3"`` or ``"0,1,7"`` (or a mix) -> list of ints."""
    seeds: list[int] = []
    for part in text.split(","):
        if "-" in part:
            low, high = part.split("-")
            seeds.extend(range(int(low), int(high) + 1))
        elif part.strip():
            seeds.append(int(part))
    return seeds


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps per variant")
    parser.add_argument("--size", type=int, default=None, help="frame height after scaling [px]")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=6e-4, help="peak learning rate (Adam)")
    parser.add_argument("--train-seeds", default=None, help="simulator seeds for training")
    parser.add_argument("--test-seeds", default=None, help="held-out simulator seeds")
    parser.add_argument("--frames-per-seed", type=int, default=None)
    parser.add_argument("--frame-stride", type=int, default=None, help="use every k-th trigger")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    parser.add_argument("--seed", type=int, default=0, help="training seed (same for all)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--cache-dir", default="output/sim_cache", help="simulator sample cache")
    parser.add_argument("--output", default="output/ablation")
    parser.add_argument("--overwrite", action="store_true", help="replace existing results")
    parser.add_argument(
        "--quick", action="store_true", help="tiny data and 2 steps per variant (tests)"
    )
    args = parser.parse_args(argv)
    # Defaults: the full run (measured to fit ~15 min on 2 CPU cores) or the quick one.
    full = {
        "steps": 300,
        "size": 96,
        "batch_size": 4,
        "train_seeds": "0-3",
        "test_seeds": "100-101",
        "frames_per_seed": 30,
        "frame_stride": 4,
    }
    quick = {
        "steps": 2,
        "size": 48,
        "batch_size": 2,
        "train_seeds": "0",
        "test_seeds": "100",
        "frames_per_seed": 3,
        "frame_stride": 40,
    }
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.steps < 1 or args.size < 32 or args.batch_size < 1:
        parser.error("--steps must be >= 1, --size >= 32 and --batch-size >= 1")
    unknown = [v for v in args.variants.split(",") if v and v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {list(VARIANTS)}")
    if set(parse_seeds(args.train_seeds)) & set(parse_seeds(args.test_seeds)):
        parser.error("--train-seeds and --test-seeds overlap")
    return args


def variant_config(name: str, args: argparse.Namespace, output: Path) -> TrainConfig:
    """The training config of one variant; everything but the switches is shared."""
    model_variant, use_hfca, use_jbcd = VARIANTS[name]
    scale = args.size / SIM_HEIGHT
    sim = {
        "type": "sim",
        "frames_per_seed": args.frames_per_seed,
        "frame_stride": args.frame_stride,
        "cache_dir": args.cache_dir,
    }
    train_spec = {
        **sim,
        "seeds": parse_seeds(args.train_seeds),
        "scale_range": [scale, scale],
        "crop_size": [args.size, args.size],
        "hflip": True,
    }
    # Validation: whole frames, only scaled (augment on, with neither crop nor flip).
    val_spec = {
        **sim,
        "split": "val",
        "seeds": parse_seeds(args.test_seeds),
        "augment": True,
        "scale_range": [scale, scale],
        "crop_size": None,
        "hflip": False,
    }
    return TrainConfig.from_dict(
        {
            "model": {"backbone": "mit_b0", "variant": model_variant, "num_classes": 11},
            "data": {
                "train": train_spec,
                "val": val_spec,
                "batch_size": args.batch_size,
                "val_batch_size": 4,
                "num_workers": 0,
                "crop_size": None,
            },
            "optim": {
                "name": "adamw",
                "lr": args.lr,
                "weight_decay": 0.01,
                "warmup_steps": max(1, args.steps // 20),
            },
            "loss": {"use_hfca": use_hfca, "use_jbcd": use_jbcd},
            "train": {
                "max_steps": args.steps,
                "seed": args.seed,
                "val_every": 0,
                "checkpoint_every": 0,
                "output_dir": str(output / name),
                "log_every": max(1, args.steps // 10),
                "threads": args.threads,
                "overwrite": True,
            },
        }
    )


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def markdown_table(results: dict[str, dict]) -> str:
    """The ablation table: mIoU in % per subset, and training time."""
    lines = [
        "| variant | overall | normal | night | glare | train time |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, result in results.items():
        cells = [_percent(result["miou"].get(subset)) for subset in SUBSETS]
        lines.append(
            f"| {ROW_LABELS[name]} | {' | '.join(cells)} | {result['train_seconds']:.0f} s |"
        )
    return "\n".join(lines)


def run_variant(name: str, args: argparse.Namespace, output: Path) -> dict:
    """Train and evaluate one variant; returns its entry of ``ablation.json``."""
    trainer = Trainer(variant_config(name, args, output))
    try:
        cpu_start = time.process_time()
        result = trainer.fit()
        cpu_seconds = time.process_time() - cpu_start
    finally:
        trainer.close()
    metrics = result.metrics or {"overall": {}, "conditions": {}}
    miou = {"overall": metrics["overall"].get("miou")}
    frames = {"overall": metrics["overall"].get("frames", 0)}
    for subset in SUBSETS[1:]:
        summary = metrics["conditions"].get(subset)
        miou[subset] = summary["miou"] if summary else None
        frames[subset] = summary["frames"] if summary else 0
    return {
        "model_variant": VARIANTS[name][0],
        "use_hfca": VARIANTS[name][1],
        "use_jbcd": VARIANTS[name][2],
        "miou": miou,
        "frames": frames,
        "pixel_accuracy": metrics["overall"].get("pixel_accuracy"),
        "iou": metrics["overall"].get("iou", {}),
        "train_seconds": result.seconds,
        "process_cpu_seconds": cpu_seconds,
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
    }


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    output = Path(args.output)
    json_path, table_path = output / "ablation.json", output / "ablation.md"
    existing = [str(p) for p in (json_path, table_path) if p.exists()]
    if existing and not args.overwrite:
        print(f"refusing to replace {existing}; pass --overwrite", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    results: dict[str, dict] = {}
    for name in [v for v in args.variants.split(",") if v]:
        print(f"[{name}] training {args.steps} steps", flush=True)
        results[name] = run_variant(name, args, output)
        cells = " ".join(f"{s} {_percent(results[name]['miou'][s])}" for s in SUBSETS)
        print(f"[{name}] held-out mIoU {cells}", flush=True)
    table = markdown_table(results)
    argv_text = sys.argv[1:] if argv is None else argv
    report = {
        "command": shlex.join(["python", "scripts/run_ablation.py", *argv_text]),
        "machine": f"{platform.machine()}, {args.threads} torch threads",
        "settings": {
            key: getattr(args, key)
            for key in (
                "steps",
                "size",
                "batch_size",
                "lr",
                "train_seeds",
                "test_seeds",
                "frames_per_seed",
                "frame_stride",
                "seed",
                "quick",
            )
        },
        "backbone": "mit_b0",
        "total_seconds": time.perf_counter() - started,
        "variants": results,
    }
    output.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    heading = (
        f"# CACD ablation on the simulated rig\n\nmIoU in % on held-out seeds "
        f"{args.test_seeds}; MiT-B0, {args.steps} steps of batch {args.batch_size}, frames "
        f"scaled to {args.size} px high, seed {args.seed}.\n\nReproduce: `{report['command']}`\n\n"
    )
    table_path.write_text(heading + table + "\n")
    print(table)
    print(f"wrote {json_path} and {table_path} in {report['total_seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
