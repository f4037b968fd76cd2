#!/usr/bin/env python3
"""Train the demo segmentation models on simulated data and export them for the node.

Two networks with the same architecture, budget and random seed are trained: ``fused`` (frame +
events) and ``image_only`` (frame alone). Evaluating both on held-out simulator seeds, overall
and per lighting condition, measures what the event camera adds instead of asserting it.

Outputs (in ``--out-dir``, default ``models/``): ``demo_fusion.onnx`` (what the node loads),
``demo_image_only.onnx``, a ``.pt`` checkpoint of each (for the pytorch backend),
``demo_metrics.json`` and ``MODEL_CARD.md``.

Typical use, about 10 minutes on two CPU cores::

    python scripts/train_demo_model.py
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # runnable from a source checkout without installing
    sys.path.insert(0, str(REPO_ROOT))

import torch
import torch.nn.functional as F

from evseg_ros.eval.metrics import ConfusionMatrix
from evseg_ros.geometry.calibration import load_calibration
from evseg_ros.labels import DSEC_11, VOID
from evseg_ros.model.demo_net import DemoFusionNet, count_parameters, save_checkpoint
from evseg_ros.model.export import OPSET, export_onnx
from evseg_ros.runtime.backend import INPUT_CONTRACT
from evseg_ros.train.sim_dataset import (
    SimDatasetConfig,
    SimSamples,
    load_or_generate,
    simulator_version,
)

LIGHTINGS = ("normal", "night", "glare")
MIN_ITERATIONS = 20
#: Variant -> output file stem.
OUTPUTS = {"fused": "demo_fusion", "image_only": "demo_image_only"}


def parse_seeds(text: str) -> list[int]:
    """``"0-5"`` or ``"0,1,7"`` (or a mix) -> list of ints."""
    seeds: list[int] = []
    for part in text.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            seeds.extend(range(int(lo), int(hi) + 1))
        elif part.strip():
            seeds.append(int(part))
    return seeds


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calibration", default="config/calibration/sim_rig.yaml")
    p.add_argument("--train-seeds", default="0-5", help="simulator seeds for training")
    p.add_argument("--test-seeds", default="100-101", help="held-out simulator seeds")
    p.add_argument("--frames-per-seed", type=int, default=60)
    p.add_argument("--frame-stride", type=int, default=2, help="use every k-th trigger")
    p.add_argument("--lighting", default="cycle", help="simulator lighting mode")
    p.add_argument("--cache-dir", default="output/sim_cache", help="cached simulator samples")
    p.add_argument("--out-dir", default="models")
    p.add_argument("--variants", default="fused,image_only")
    p.add_argument("--width", type=int, default=16, help="network base width")
    p.add_argument("--crop", type=int, default=160, help="square training crop [px]")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--iterations", type=int, default=1500, help="optimiser steps per model")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0, help="training seed (same for both models)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument(
        "--card-only",
        action="store_true",
        help="only rewrite MODEL_CARD.md from the saved demo_metrics.json (no training)",
    )
    args = p.parse_args(argv)
    if args.iterations < MIN_ITERATIONS:
        # the one-cycle schedule needs a few warm-up steps (10 % of the run)
        p.error(f"--iterations must be at least {MIN_ITERATIONS}, got {args.iterations}")
    return args


# -- data ------------------------------------------------------------------------------------------
def random_batch(
    data: SimSamples, rng: np.random.Generator, batch_size: int, crop: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random crops with random horizontal flips, applied identically to all modalities.

    Only horizontal flips: a vertical flip would put the road above the sky, a layout the
    camera never sees.
    """
    n, height, width = data.labels.shape
    ch, cw = min(crop, height), min(crop, width)
    idx = rng.integers(0, n, batch_size)
    ys = rng.integers(0, height - ch + 1, batch_size)
    xs = rng.integers(0, width - cw + 1, batch_size)
    flips = rng.random(batch_size) < 0.5
    images, events, labels = [], [], []
    for i, y, x, flip in zip(idx, ys, xs, flips):
        img = data.images[i, y : y + ch, x : x + cw]
        ev = data.events[i, :, y : y + ch, x : x + cw]
        lab = data.labels[i, y : y + ch, x : x + cw]
        if flip:
            img, ev, lab = img[:, ::-1], ev[:, :, ::-1], lab[:, ::-1]
        images.append(img)
        events.append(ev)
        labels.append(lab)
    image_t = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
    events_t = torch.from_numpy(np.stack(events).astype(np.float32))
    labels_t = torch.from_numpy(np.stack(labels).astype(np.int64))
    return image_t.contiguous(), events_t, labels_t


def full_frames(data: SimSamples, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.from_numpy(data.images[start:stop]).permute(0, 3, 1, 2).float().div_(255.0)
    events = torch.from_numpy(data.events[start:stop].astype(np.float32))
    return image.contiguous(), events


def _progress_bar(total: int, name: str):
    """A tqdm bar on an interactive terminal; None (plain log lines) otherwise or without tqdm."""
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=name, unit="step")


# -- training and evaluation -----------------------------------------------------------------------
def train_model(
    variant: str, data: SimSamples, args: argparse.Namespace
) -> tuple[DemoFusionNet, dict]:
    """Train one variant; returns the model (eval mode) and a log of the run."""
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)  # same batches, crops and flips for every variant
    model = DemoFusionNet(num_classes=DSEC_11.num_classes, variant=variant, width=args.width)
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=args.lr, total_steps=args.iterations, pct_start=0.1
    )
    model.train()
    start = time.perf_counter()
    running = None
    progress = _progress_bar(args.iterations, variant)
    log_every = max(args.iterations // 20, 1)
    for step in range(1, args.iterations + 1):
        image, events, labels = random_batch(data, rng, args.batch_size, args.crop)
        loss = F.cross_entropy(model(image, events), labels, ignore_index=VOID)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{running:.3f}", refresh=False)
        elif step % log_every == 0 or step == args.iterations:
            elapsed = time.perf_counter() - start
            eta = elapsed / step * (args.iterations - step)
            print(
                f"[{variant}] step {step}/{args.iterations} loss {running:.3f} "
                f"elapsed {elapsed:.0f}s eta {eta:.0f}s",
                flush=True,
            )
    if progress is not None:
        progress.close()
    seconds = time.perf_counter() - start
    return model.eval(), {"train_seconds": seconds, "final_loss": running}


def evaluate(model: DemoFusionNet, data: SimSamples, batch_size: int = 8) -> dict:
    """mIoU, pixel accuracy and per-class IoU on full frames, overall and per lighting."""
    overall = ConfusionMatrix(DSEC_11.num_classes)
    per_light = {name: ConfusionMatrix(DSEC_11.num_classes) for name in LIGHTINGS}
    model.eval()
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            stop = min(start + batch_size, len(data))
            image, events = full_frames(data, start, stop)
            pred = model(image, events).argmax(1).numpy().astype(np.uint8)
            for k, i in enumerate(range(start, stop)):
                overall.update(pred[k], data.labels[i])
                cm = per_light.get(str(data.lighting[i]))
                if cm is not None:
                    cm.update(pred[k], data.labels[i])

    def summary(cm: ConfusionMatrix) -> dict:
        return {
            "miou": _num(cm.miou()),
            "pixel_accuracy": _num(cm.pixel_accuracy()),
            "pixels": cm.total,
            "iou": {name: _num(v) for name, v in zip(DSEC_11.classes, cm.iou())},
        }

    result = {"overall": summary(overall)}
    for name, cm in per_light.items():
        result[name] = summary(cm)
        result[name]["frames"] = int(np.count_nonzero(data.lighting == name))
    result["overall"]["frames"] = len(data)
    return result


def _num(value: float) -> float | None:
    """JSON has no nan: absent classes become null."""
    return None if np.isnan(value) else float(value)


def onnx_latency(path: Path, threads: int, runs: int = 50) -> dict:
    """Median and p90 ms of one 320x240 frame through ONNX Runtime on the CPU."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    engine = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {
        "image": rng.random((1, 3, 240, 320), dtype=np.float32),
        "events": rng.poisson(0.5, (1, 3, 240, 320)).astype(np.float32),
    }
    for _ in range(5):
        engine.run(["mask"], feeds)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        engine.run(["mask"], feeds)
        times.append((time.perf_counter() - t0) * 1e3)
    return {
        "threads": threads,
        "median_ms": float(np.median(times)),
        "p90_ms": float(np.percentile(times, 90)),
    }


# -- outputs ---------------------------------------------------------------------------------------
def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


_CARD = """# Demo segmentation models (simulated coaxial rig)

`demo_fusion.onnx` (frame + events) is the model the segmentation node loads by default;
`demo_image_only.onnx` is the same architecture trained on the frame alone, the baseline that
shows what the events add. Both were trained only on the simulator in `evseg_ros/sim`: they
demonstrate the pipeline and are not meant for real cameras.

## Held-out results

mIoU in % on {test_frames} frames from held-out seeds {test_seeds} (full {resolution} frames;
void pixels ignored; classes absent from a subset are left out of its mean).

| subset | frames | frame only | events + frame | difference |
| --- | ---: | ---: | ---: | ---: |
{miou_rows}

Change from normal lighting, in mIoU points: {lighting_drop}.

What the held-out frames look like per lighting (means over frames; "saturated" = all RGB
channels >= 250, "dark" = all < 30; events counted inside the window of each frame):

| lighting | events per frame | saturated pixels | dark pixels | mean grey value |
| --- | ---: | ---: | ---: | ---: |
{condition_rows}

Per-class IoU in % (all held-out frames):

| class | frame only | events + frame |
| --- | ---: | ---: |
{class_rows}

Largest per-class gains from the events: {class_gains}. Classes the fused model does not
learn at this budget (IoU below 5 %): {unlearnt}.

Pixel accuracy (all held-out frames): {pixel_accuracy}.

## Data

- Simulator: `evseg_ros.sim` version {simulator_version}; configuration: {sim_config}.
- Training: seeds {train_seeds}, {frames_per_seed} frames per seed (one frame every
  {frame_stride} triggers at {frame_rate_hz} Hz, lighting `{lighting}`): {train_frames} frames;
  lighting mix {train_lighting_counts}.
- Held out: seeds {test_seeds}, {test_frames} frames; lighting mix {test_lighting_counts}.
- Resolution {resolution} (the frame camera's grid). The event frame of frame k holds the events
  in `WindowConfig(duration_us={duration_us}, end_offset_us={end_offset_us}).bounds(t_k)`
  accumulated by `EventFrameBuilder`, exactly as the running pipeline builds it.

## Training

- Command: `{command}`
- Wall time on this machine ({machine}): {train_times}; the whole script took
  {total_minutes:.1f} min including simulation, evaluation and export.
- DemoFusionNet, width {width} ({params}); AdamW, one-cycle learning rate peaking at {lr},
  weight decay {weight_decay}; {iterations} steps of {batch_size} random {crop}x{crop} crops
  with random horizontal flips (the same crop and flip for frame, events and labels);
  cross-entropy ignoring label {void}; seed {seed}; {threads} CPU threads.
- Both variants are trained from the same seed and see the same batches in the same order.

## ONNX interface

- Opset {opset}. Inputs `image`, `events`; outputs `mask` (uint8 class ids, argmax inside the
  graph) and `logits` (float32). Batch, height and width are dynamic.
- Contract: {contract}.
- Normalisation is inside the graph (RGB centring, `log1p` of the event counts), so callers
  feed raw values.
- The frame-only model keeps the (unused) `events` input, so it is a drop-in replacement.
- Metadata keys: `evseg.label_set`, `evseg.classes`, `evseg.variant`, `evseg.input_contract`,
  `evseg.training_data`.
- Classes ({label_set}): {classes}.

| file | size | ONNX Runtime on CPU, 320x240, median / p90 |
| --- | ---: | ---: |
{file_rows}

## Limitations

- Trained and evaluated on simulated scenes only; expect it to fail on real images.
- The held-out set is small: differences of a few mIoU points are within seed-to-seed noise.
- Classes that are rare in the simulated scenes get few training pixels and low IoU.
- The event frame depends on the window settings and on the event rate (sensor biases, scene
  texture, motion); a different window configuration needs retraining.
- The fused model has a second encoder: {param_ratio:.1f}x the parameters of the frame-only one
  and correspondingly more compute, so part of its advantage may come from capacity rather
  than from the events themselves. Both had the same number of steps, not the same wall time.
- Wall times and latencies were measured on a 2-core CPU shared with other jobs; they vary
  from run to run and will differ on other machines.
"""


def model_card(report: dict) -> str:
    """Markdown model card from the metrics report."""
    res = report["results"]
    data = report["data"]
    train = report["training"]
    variants = [v for v in ("image_only", "fused") if v in res]

    def miou(variant: str, subset: str) -> float | None:
        return res[variant][subset]["miou"] if variant in res else None

    miou_rows = []
    for subset in ("overall", *LIGHTINGS):
        a, b = miou("image_only", subset), miou("fused", subset)
        diff = "n/a" if a is None or b is None else f"{100 * (b - a):+.1f}"
        frames = res[variants[0]][subset]["frames"]
        miou_rows.append(f"| {subset} | {frames} | {_fmt(a)} | {_fmt(b)} | {diff} |")
    class_rows = []
    for name in DSEC_11.classes:
        cells = [
            _fmt(res[v]["overall"]["iou"][name]) if v in res else "n/a"
            for v in ("image_only", "fused")
        ]
        class_rows.append(f"| {name} | {cells[0]} | {cells[1]} |")
    drops = []
    for variant, label in (("image_only", "frame only"), ("fused", "events + frame")):
        base = miou(variant, "normal")
        if base is None:
            continue
        parts = [
            f"{100 * (miou(variant, c) - base):+.1f} {where}"
            for c, where in (("night", "at night"), ("glare", "under glare"))
            if miou(variant, c) is not None
        ]
        drops.append(f"{label} {', '.join(parts)}")
    gains, unlearnt = [], []
    if len(variants) == 2:
        for name in DSEC_11.classes:
            a, b = (res[v]["overall"]["iou"][name] for v in ("image_only", "fused"))
            if a is not None and b is not None:
                gains.append((b - a, name))
            if b is not None and b < 0.05:
                unlearnt.append(name)
    class_gains = ", ".join(f"{name} {100 * g:+.1f}" for g, name in sorted(gains)[::-1][:3])
    condition_rows = [
        f"| {name} | {c['events_per_frame']:.0f} | {100 * c['saturated']:.1f} % | "
        f"{100 * c['dark']:.1f} % | {c['mean_grey']:.0f} |"
        for name, c in data.get("test_conditions", {}).items()
    ]
    file_rows = []
    for variant in variants:
        info = report["export"][variant]
        lat = info["latency"]
        file_rows.append(
            f"| {info['file']} | {info['bytes'] / 1e6:.2f} MB | {lat['median_ms']:.1f} / "
            f"{lat['p90_ms']:.1f} ms ({lat['threads']} threads) |"
        )
    return _CARD.format(
        miou_rows="\n".join(miou_rows),
        class_rows="\n".join(class_rows),
        lighting_drop="; ".join(drops) or "n/a",
        class_gains=class_gains or "n/a",
        unlearnt=", ".join(unlearnt) or "none",
        condition_rows="\n".join(condition_rows),
        file_rows="\n".join(file_rows),
        pixel_accuracy=", ".join(
            f"{v} {_fmt(res[v]['overall']['pixel_accuracy'])} %" for v in variants
        ),
        train_times=", ".join(f"{v} {train[v]['train_seconds'] / 60:.1f} min" for v in variants),
        total_minutes=report["total_seconds"] / 60,
        param_ratio=train["param_counts"].get("fused", 0)
        / max(train["param_counts"].get("image_only", 1), 1),
        command=report["command"],
        machine=report["machine"],
        duration_us=data["window"]["duration_us"],
        end_offset_us=data["window"]["end_offset_us"],
        void=VOID,
        opset=OPSET,
        contract=INPUT_CONTRACT,
        label_set=DSEC_11.name,
        classes=", ".join(DSEC_11.classes),
        **{k: v for k, v in data.items() if k != "window"},
        **{k: v for k, v in train.items() if k not in OUTPUTS},
    )


def condition_stats(data: SimSamples) -> dict[str, dict[str, float]]:
    """Per lighting: events per frame and how much of the frame is saturated or dark.

    Recorded with the results because they explain them: where frames saturate or go dark,
    only the events still carry structure.
    """
    stats = {}
    for name in LIGHTINGS:
        keep = data.lighting == name
        if not np.any(keep):
            continue
        images = data.images[keep]
        counts = data.events[keep, :2].astype(np.float32).sum(axis=(1, 2, 3))
        stats[name] = {
            "events_per_frame": float(counts.mean()),
            "saturated": float((images.min(axis=-1) >= 250).mean()),
            "dark": float((images.max(axis=-1) < 30).mean()),
            "mean_grey": float(images.mean()),
        }
    return stats


def _lighting_counts(data: SimSamples) -> dict[str, int]:
    names, counts = np.unique(data.lighting, return_counts=True)
    return {str(n): int(c) for n, c in zip(names, counts)}


def _sim_config_text(seed_free: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in seed_free.items())


def _sim_config(args: argparse.Namespace) -> dict:
    """The simulator configuration used (seed omitted: it varies per sequence)."""
    from evseg_ros.sim import SimConfig

    config = SimConfig(seed=0, frame_rate_hz=10.0, lighting=args.lighting)
    fields = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else vars(config)
    fields.pop("seed", None)
    return fields


def with_cacd_ablation(card: str, out_dir: Path) -> str:
    """Append the CACD ablation (``cacd_ablation.md``, written from ``scripts/run_ablation.py``)."""
    ablation = out_dir / "cacd_ablation.md"
    if not ablation.is_file():
        return card
    text = ablation.read_text().replace("# CACD ablation", "## CACD ablation", 1)
    return card.rstrip() + "\n\n" + text


def rewrite_card(out_dir: Path) -> int:
    """Regenerate the card from the saved report, e.g. after editing the card template."""
    metrics = out_dir / "demo_metrics.json"
    if not metrics.is_file():
        print(f"no {metrics}; train first", file=sys.stderr)
        return 2
    report = json.loads(metrics.read_text())
    (out_dir / "MODEL_CARD.md").write_text(with_cacd_ablation(model_card(report), out_dir))
    print(f"rewrote {out_dir / 'MODEL_CARD.md'} from {metrics}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.card_only:
        return rewrite_card(Path(args.out_dir))
    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    out_dir = Path(args.out_dir)
    targets = [out_dir / f"{OUTPUTS[v]}.{ext}" for v in variants for ext in ("onnx", "pt")]
    targets += [out_dir / "demo_metrics.json", out_dir / "MODEL_CARD.md"]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not args.overwrite:
        print(f"refusing to replace {existing}; pass --overwrite", file=sys.stderr)
        return 2

    calibration = load_calibration(REPO_ROOT / args.calibration)
    config = SimDatasetConfig(
        frames_per_seed=args.frames_per_seed,
        frame_stride=args.frame_stride,
        lighting=args.lighting,
    )
    train_seeds, test_seeds = parse_seeds(args.train_seeds), parse_seeds(args.test_seeds)
    if set(train_seeds) & set(test_seeds):
        print("train and test seeds overlap", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    print(f"simulating/loading train seeds {train_seeds} and test seeds {test_seeds}", flush=True)
    train = load_or_generate(calibration, train_seeds, config, REPO_ROOT / args.cache_dir)
    test = load_or_generate(calibration, test_seeds, config, REPO_ROOT / args.cache_dir)
    data_seconds = time.perf_counter() - t0
    print(
        f"data ready in {data_seconds:.0f}s: train {len(train)} frames {_lighting_counts(train)}, "
        f"test {len(test)} frames {_lighting_counts(test)}",
        flush=True,
    )

    results, training, exports = {}, {}, {}
    for variant in variants:
        model, log = train_model(variant, train, args)
        training[variant] = log
        results[variant] = evaluate(model, test)
        print(
            f"[{variant}] held-out mIoU "
            + " ".join(f"{k} {_fmt(v['miou'])}" for k, v in results[variant].items()),
            flush=True,
        )
        stem = OUTPUTS[variant]
        out_dir.mkdir(parents=True, exist_ok=True)
        save_checkpoint(
            model, out_dir / f"{stem}.pt", heldout_miou=results[variant]["overall"]["miou"]
        )
        onnx_path = export_onnx(
            model,
            out_dir / f"{stem}.onnx",
            height=calibration.frame_camera.height,
            width=calibration.frame_camera.width,
            metadata={"evseg.training_data": f"simulator seeds {args.train_seeds}"},
            overwrite=args.overwrite,
        )
        exports[variant] = {
            "file": onnx_path.name,
            "bytes": onnx_path.stat().st_size,
            "latency": onnx_latency(onnx_path, args.threads),
        }

    counts = {v: count_parameters(DemoFusionNet(variant=v, width=args.width)) for v in OUTPUTS}
    training["param_counts"] = counts
    training["params"] = ", ".join(f"{v} {counts[v] / 1e3:.0f} k parameters" for v in variants)
    training.update(
        {
            k: getattr(args, k)
            for k in ("width", "lr", "weight_decay", "iterations", "batch_size", "crop", "seed")
        }
    )
    training["threads"] = args.threads
    argv_text = sys.argv[1:] if argv is None else argv
    report = {
        "command": shlex.join(["python", "scripts/train_demo_model.py", *argv_text]),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "total_seconds": time.perf_counter() - t_start,
        "data": {
            "simulator_version": simulator_version(),
            "sim_config": _sim_config_text(_sim_config(args)),
            "train_seeds": train_seeds,
            "test_seeds": test_seeds,
            "frames_per_seed": args.frames_per_seed,
            "frame_stride": args.frame_stride,
            "frame_rate_hz": config.frame_rate_hz,
            "lighting": args.lighting,
            "train_frames": len(train),
            "test_frames": len(test),
            "train_lighting_counts": _lighting_counts(train),
            "test_lighting_counts": _lighting_counts(test),
            "resolution": f"{train.images.shape[2]}x{train.images.shape[1]}",
            "window": dataclasses.asdict(config.window),
            "data_seconds": data_seconds,
            "test_conditions": condition_stats(test),
        },
        "training": training,
        "results": results,
        "export": exports,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "demo_metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "MODEL_CARD.md").write_text(with_cacd_ablation(model_card(report), out_dir))
    print(f"wrote {out_dir / 'MODEL_CARD.md'} in {report['total_seconds'] / 60:.1f} min total")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
