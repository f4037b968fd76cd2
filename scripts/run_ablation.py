#!/usr/bin/env python3
"""Ablation of CACD on simulated recordings: what the events, HFCA and JBCD each add.

The rows of the paper's Table 2 (§5.2), each trained from scratch with the same recipe (the
shipped model's, ``config/train/cacd_b0_sim.yaml``: MiT-B0 frame encoder, light MiT event
encoder, batches of full-resolution crops) and the same batches, under several training seeds:

    image_only   the frame encoder and decoder alone
    event_only   the event encoder and decoder alone
    fused        both encoders, concat + attention fusion, cross-entropy only
    fused_hfca   + HFCA (Eq. 1-5)
    fused_jbcd   + JBCD without HFCA (Eq. 6-7 on the raw stage features)
    cacd         + HFCA + JBCD (Eq. 8)

Each row is evaluated on held-out simulator seeds at the full 320x240 frames, overall and per
lighting condition (normal / night / glare), and reported as mean ± standard deviation over the
training seeds. Every loss part (λ-weighted, as summed in Eq. 8) and the L2 norm of its gradient
are logged during training; the report gives their means over the last fifth of the steps, so
one can see whether a term moves the network at all. Modality dropout is off here: each row
trains on exactly the inputs it is evaluated on, as in the paper.

Before training, the instances HFCA can see are counted per encoder stage (instances covering
at least half of one feature cell on the training crops): the measurement behind ``hfca_stage``.

Outputs: ``<output>/cacd_ablation.json`` (settings, per-row and per-seed mIoU, per-class IoU, loss
parts, gradient norms, instance counts) and ``<output>/cacd_ablation.md`` (the tables, also
printed); training runs in ``--work-dir``.

    python scripts/run_ablation.py --output models             # the table in models/
    python scripts/run_ablation.py --quick --output /tmp/abl   # seconds (tests)
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # runnable from a source checkout without installing
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np
import torch

from evseg_ros.train.config import TrainConfig, load_train_config
from evseg_ros.train.datasets import build_dataset
from evseg_ros.train.trainer import Trainer

#: Row -> (model.variant, loss.use_hfca, loss.use_jbcd), in table order.
VARIANTS: dict[str, tuple[str, bool, bool]] = {
    "image_only": ("image_only", False, False),
    "event_only": ("event_only", False, False),
    "fused": ("fused", False, False),
    "fused_hfca": ("fused", True, False),
    "fused_jbcd": ("fused", False, True),
    "cacd": ("fused", True, True),
}
ROW_LABELS = {
    "image_only": "frame only",
    "event_only": "events only",
    "fused": "fused (concat + attention)",
    "fused_hfca": "fused + HFCA",
    "fused_jbcd": "fused + JBCD (no HFCA)",
    "cacd": "fused + HFCA + JBCD (CACD)",
}
SUBSETS = ("overall", "normal", "night", "glare")
LOSS_PARTS = ("ce", "intra", "inter", "boundary", "content")
#: Output strides of the four MiT stages.
STAGE_STRIDES = (4, 8, 16, 32)
BASE_CONFIG = REPO_ROOT / "config" / "train" / "cacd_b0_sim.yaml"


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
    parser.add_argument("--base-config", default=str(BASE_CONFIG), help="recipe every row shares")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps per run")
    parser.add_argument("--seeds", default=None, help="training seeds (one run per row each)")
    parser.add_argument("--train-data-seeds", default=None, help="simulator seeds to train on")
    parser.add_argument("--test-data-seeds", default=None, help="held-out simulator seeds")
    parser.add_argument("--frames-per-seed", type=int, default=None)
    parser.add_argument("--crop", type=int, default=None, help="square training crop [px]")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--grad-every", type=int, default=None, help="log gradient norms every N")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated rows")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--cache-dir", default="output/sim_cache", help="simulator sample cache")
    parser.add_argument("--work-dir", default="output/ablation", help="training runs")
    parser.add_argument("--output", default="output/ablation", help="where the report goes")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report")
    parser.add_argument("--quick", action="store_true", help="tiny data, 2 steps (tests)")
    args = parser.parse_args(argv)
    full = {
        "steps": 120,
        "seeds": "0,1,2",
        "train_data_seeds": "0-7",
        "test_data_seeds": "100-101",
        "frames_per_seed": 60,
        "crop": 160,
        "batch_size": 8,
        "grad_every": 20,
    }
    quick = {
        "steps": 2,
        "seeds": "0,1",
        "train_data_seeds": "0",
        "test_data_seeds": "100",
        "frames_per_seed": 3,
        "crop": 64,
        "batch_size": 2,
        "grad_every": 1,
    }
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.steps < 1 or args.crop < 32 or args.batch_size < 1 or args.grad_every < 1:
        parser.error("--steps, --batch-size and --grad-every must be >= 1, --crop >= 32")
    unknown = [v for v in args.variants.split(",") if v and v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {list(VARIANTS)}")
    if set(parse_seeds(args.train_data_seeds)) & set(parse_seeds(args.test_data_seeds)):
        parser.error("--train-data-seeds and --test-data-seeds overlap")
    return args


def run_config(name: str, seed: int, args: argparse.Namespace, work: Path) -> TrainConfig:
    """One row's config under one training seed: the base recipe with the row's switches."""
    model_variant, use_hfca, use_jbcd = VARIANTS[name]
    stride = 40 if args.quick else 2
    data = {
        "frames_per_seed": args.frames_per_seed,
        "frame_stride": stride,
        "cache_dir": args.cache_dir,
    }
    overrides = {
        "model.variant": model_variant,
        "model.from_scratch": True,
        "loss.use_hfca": use_hfca,
        "loss.use_jbcd": use_jbcd,
        "loss.modality_dropout": [0.0, 0.0],
        "loss.log_grad_norms": args.grad_every if (use_hfca or use_jbcd) else 0,
        "data.train.seeds": parse_seeds(args.train_data_seeds),
        "data.train.crop_size": [args.crop, args.crop],
        "data.val.seeds": parse_seeds(args.test_data_seeds),
        "data.batch_size": args.batch_size,
        "optim.warmup_steps": max(1, args.steps // 10),
        "train.max_steps": args.steps,
        "train.seed": seed,
        "train.val_every": 0,
        "train.checkpoint_every": 0,
        "train.output_dir": str(work / f"{name}_seed{seed}"),
        "train.log_every": max(1, min(10, args.steps // 10)),
        "train.threads": args.threads,
        "train.overwrite": True,
        **{f"data.train.{k}": v for k, v in data.items()},
        **{f"data.val.{k}": v for k, v in data.items()},
    }
    settings = [f"{key}={json.dumps(value)}" for key, value in overrides.items()]
    return load_train_config(args.base_config, settings)


def instance_counts(args: argparse.Namespace, samples: int = 200) -> dict[str, dict[str, float]]:
    """Per stage: mean instances per training crop that own at least half of one feature cell.

    HFCA pools features over instance masks on one stage's grid; an instance covering less than
    half of every cell there contributes a vector dominated by its neighbours.
    """
    spec = {
        "type": "sim",
        "seeds": parse_seeds(args.train_data_seeds),
        "frames_per_seed": args.frames_per_seed,
        "frame_stride": 40 if args.quick else 2,
        "cache_dir": args.cache_dir,
        "crop_size": [args.crop, args.crop],
        "scale_range": [1.0, 1.0],
        "seed": 0,
    }
    dataset = build_dataset(spec)
    counts = {stride: [] for stride in STAGE_STRIDES}
    for index in range(min(samples, len(dataset))):
        instances = torch.as_tensor(dataset[index]["instances"]).long()
        ids = torch.unique(instances[instances > 0])
        if ids.numel() == 0:
            for stride in STAGE_STRIDES:
                counts[stride].append(0)
            continue
        one_hot = (instances.unsqueeze(0) == ids.view(-1, 1, 1)).float()
        for stride in STAGE_STRIDES:
            pooled = torch.nn.functional.avg_pool2d(one_hot.unsqueeze(0), stride, ceil_mode=True)
            counts[stride].append(int((pooled[0].amax(dim=(1, 2)) >= 0.5).sum()))
    return {
        f"stage {i} (1/{stride})": {
            "mean": float(np.mean(counts[stride])),
            "share_with_2_or_more": float(np.mean([c >= 2 for c in counts[stride]])),
        }
        for i, stride in enumerate(STAGE_STRIDES)
    }


def logged_means(metrics_csv: Path) -> dict[str, float]:
    """Means of the loss parts and gradient norms over the last fifth of the logged rows."""
    with metrics_csv.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    tail = rows[-max(1, len(rows) // 5) :]
    means: dict[str, float] = {}
    for column in [*LOSS_PARTS, *(f"grad_{p}" for p in LOSS_PARTS)]:
        values = [float(r[column]) for r in tail if r.get(column) not in (None, "")]
        if values:
            means[column] = float(np.mean(values))
    return means


def run_one(name: str, seed: int, args: argparse.Namespace, work: Path) -> dict:
    trainer = Trainer(run_config(name, seed, args, work))
    try:
        result = trainer.fit()
    finally:
        trainer.close()
    metrics = result.metrics or {"overall": {}, "conditions": {}}
    miou = {"overall": metrics["overall"].get("miou")}
    for subset in SUBSETS[1:]:
        summary = metrics["conditions"].get(subset)
        miou[subset] = summary["miou"] if summary else None
    return {
        "seed": seed,
        "miou": miou,
        "frames": metrics["overall"].get("frames", 0),
        "iou": metrics["overall"].get("iou", {}),
        "logged": logged_means(Path(trainer.config.train.output_dir) / "metrics.csv"),
        "train_seconds": result.seconds,
    }


def summarise(runs: list[dict]) -> dict:
    """Mean and sample standard deviation over the seeds, per subset, class and logged value."""

    def stats(values: list[float]) -> dict[str, float]:
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return {"mean": float(np.mean(values)), "std": float(std)}

    miou = {
        subset: stats([r["miou"][subset] for r in runs])
        for subset in SUBSETS
        if all(r["miou"][subset] is not None for r in runs)
    }
    classes = runs[0]["iou"].keys()
    iou = {
        c: stats([r["iou"][c] for r in runs])
        for c in classes
        if all(r["iou"][c] is not None for r in runs)
    }
    logged = {k: stats([r["logged"][k] for r in runs]) for k in runs[0]["logged"]}
    return {"miou": miou, "iou": iou, "logged": logged}


def _shown(path: str) -> str:
    """``path`` relative to the repository when it is inside it (reports name no host paths)."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(REPO_ROOT)) if resolved.is_relative_to(REPO_ROOT) else path


def _cell(entry: dict | None, scale: float = 100.0, digits: int = 1) -> str:
    if entry is None:
        return "n/a"
    return f"{scale * entry['mean']:.{digits}f} ± {scale * entry['std']:.{digits}f}"


def markdown_tables(results: dict[str, dict], counts: dict[str, dict[str, float]]) -> str:
    lines = [
        "| row | overall | normal | night | glare |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, entry in results.items():
        cells = [_cell(entry["summary"]["miou"].get(s)) for s in SUBSETS]
        lines.append(f"| {ROW_LABELS[name]} | {' | '.join(cells)} |")
    lines += [
        "",
        "Loss parts as logged (unweighted: multiply by λ1-λ4 for their share of Eq. 8) and the L2",
        "norm of the gradient of each λ-weighted part with respect to the network (means over the",
        "last fifth of the steps; mean ± std over seeds):",
        "",
        "| row | "
        + " | ".join(LOSS_PARTS)
        + " | "
        + " | ".join(f"∇{p}" for p in LOSS_PARTS)
        + " |",
        "| --- |" + " ---: |" * (2 * len(LOSS_PARTS)),
    ]
    for name, entry in results.items():
        logged = entry["summary"]["logged"]
        cells = [_cell(logged.get(p), 1.0, 4) for p in LOSS_PARTS]
        cells += [_cell(logged.get(f"grad_{p}"), 1.0, 4) for p in LOSS_PARTS]
        lines.append(f"| {ROW_LABELS[name]} | {' | '.join(cells)} |")
    lines += [
        "",
        "Instances per training crop that cover at least half of one feature cell, per stage",
        "(what HFCA can pool; `loss.hfca_stage` is 0-based):",
        "",
        "| stage | instances per crop | crops with >= 2 |",
        "| --- | ---: | ---: |",
    ]
    for stage, value in counts.items():
        lines.append(
            f"| {stage} | {value['mean']:.1f} | {100 * value['share_with_2_or_more']:.0f} % |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    output, work = Path(args.output), Path(args.work_dir)
    json_path, table_path = output / "cacd_ablation.json", output / "cacd_ablation.md"
    existing = [str(p) for p in (json_path, table_path) if p.exists()]
    if existing and not args.overwrite:
        print(f"refusing to replace {existing}; pass --overwrite", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    counts = instance_counts(args)
    seeds = parse_seeds(args.seeds)
    results: dict[str, dict] = {}
    for name in [v for v in args.variants.split(",") if v]:
        runs = []
        for seed in seeds:
            print(f"[{name} seed {seed}] training {args.steps} steps", flush=True)
            runs.append(run_one(name, seed, args, work))
            cells = " ".join(f"{s} {100 * (runs[-1]['miou'][s] or 0):.1f}" for s in SUBSETS)
            print(f"[{name} seed {seed}] held-out mIoU {cells}", flush=True)
        results[name] = {
            "model_variant": VARIANTS[name][0],
            "use_hfca": VARIANTS[name][1],
            "use_jbcd": VARIANTS[name][2],
            "runs": runs,
            "summary": summarise(runs),
        }
    argv_text = sys.argv[1:] if argv is None else argv
    base = load_train_config(args.base_config)
    report = {
        "command": shlex.join(["python", "scripts/run_ablation.py", *argv_text]),
        "hardware": (
            f"{platform.processor() or platform.machine()} CPU, {args.threads} torch threads, "
            "no GPU"
        ),
        "settings": {
            key: getattr(args, key)
            for key in (
                "steps",
                "seeds",
                "train_data_seeds",
                "test_data_seeds",
                "frames_per_seed",
                "crop",
                "batch_size",
                "grad_every",
                "quick",
            )
        },
        "base_config": _shown(args.base_config),
        "architecture": base.model.cacd.architecture(),
        "hfca_stage": base.loss.hfca_stage,
        "instances_per_stage": counts,
        "total_seconds": time.perf_counter() - started,
        "variants": results,
    }
    output.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    tables = markdown_tables(results, counts)
    heading = (
        "# CACD ablation on simulated recordings\n\n"
        f"mIoU in % on held-out simulator seeds {args.test_data_seeds} at full 320x240 frames, "
        f"mean ± std over training seeds {args.seeds}. Recipe `{_shown(args.base_config)}` "
        f"({report['architecture']}, HFCA/JBCD on stage {base.loss.hfca_stage}), trained from "
        f"scratch on simulator seeds {args.train_data_seeds} ({args.frames_per_seed} frames each): "
        f"{args.steps} steps of batch {args.batch_size}, {args.crop}x{args.crop} crops; "
        f"{report['hardware']}.\n\nReproduce: `{report['command']}`\n\n"
    )
    table_path.write_text(heading + tables + "\n")
    print(tables)
    print(f"wrote {json_path} and {table_path} in {report['total_seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
