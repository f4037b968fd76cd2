#!/usr/bin/env python3
"""Inference cost: the event branch's price (ratio mode), and every backend x MiT size x size.

Ratio mode (default): fused CACD against its image-only twin, ONNX Runtime CPU.

Both graphs are exported from the same configuration (only ``variant`` differs), so the ratio
is the price of the event branch and the fusion alone. They run in the same process,
interleaved (fused, image-only, image-only, fused, ...), so a machine that gets busier or
cooler during the run shifts both alike; the figure is the ratio of medians.

Prints, per size, one line ``ratio fused/image_only WxH: X.XX`` (the performance target is
<= 1.3) after the two medians.

    python scripts/bench_inference.py                      # the shipped model's configuration
    python scripts/bench_inference.py --config '{"event_backbone": null}'   # paper's symmetric

Matrix mode (``--matrix``, ``make bench-gpu`` on a GPU machine): each backend (``name/device``,
``/precision`` optional) x MiT size (B0 = the shipped configuration, B2/B5 = the configurations
of config/train/cacd_b{2,5}_rpea.yaml, random weights: speed does not depend on them) x size,
through the runtime's own ``create_backend`` and ``infer`` (resize, normalise, inference, mask
back to the host): latency median/p99 of the whole call and of the network alone, throughput.
On the GPU the inputs are CUDA tensors, as the node hands them over. ``--json`` writes the rows
with ros2_benchmark-style metadata.

    python scripts/bench_inference.py --matrix --backends onnxruntime/cpu,pytorch/cpu --mit b0
    python scripts/bench_inference.py --matrix --backends tensorrt/cuda,pytorch/cuda/fp16,\
        onnxruntime/cuda --mit b0,b2,b5 --json output/bench/inference.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

#: The shipped model (models/cacd_b0_sim.pt); its configuration is what is timed by default.
DEFAULT_CHECKPOINT = _ROOT / "models" / "cacd_b0_sim.pt"


def _parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def _base_config(args: argparse.Namespace) -> dict:
    from evseg_ros.model.cacd import CACDConfig

    if args.checkpoint and Path(args.checkpoint).is_file():
        import torch

        data = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
        values = dict(data["config"])
    else:
        values = CACDConfig().to_dict()
    values.update(json.loads(args.config))
    return values


def _session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _export(values: dict, variant: str, path: Path, width: int, height: int) -> None:
    import torch

    from evseg_ros.model.cacd import CACDConfig, CACDNet
    from evseg_ros.model.export import export_onnx

    torch.manual_seed(0)
    model = CACDNet(CACDConfig.from_dict({**values, "variant": variant})).eval()
    export_onnx(model, path, height=height, width=width, with_logits=False, overwrite=True)


#: MiT size -> where its configuration comes from (b0: the shipped checkpoint).
MIT_CONFIGS = {
    "b0": DEFAULT_CHECKPOINT,
    "b2": _ROOT / "config" / "train" / "cacd_b2_rpea.yaml",
    "b5": _ROOT / "config" / "train" / "cacd_b5_rpea.yaml",
}


def _mit_config(size: str) -> dict:
    """The CACDConfig fields of one MiT size (see :data:`MIT_CONFIGS`)."""
    import yaml

    from evseg_ros.model.cacd import CACDConfig

    source = MIT_CONFIGS[size]
    if source.suffix == ".pt":
        return _base_config(argparse.Namespace(checkpoint=str(source), config="{}"))
    model = yaml.safe_load(source.read_text())["model"]
    known = set(CACDConfig().to_dict())
    return {**CACDConfig().to_dict(), **{k: v for k, v in model.items() if k in known}}


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _time_backend(spec: str, model: Path, width: int, height: int, repeats: int) -> dict:
    """One row: ``spec`` (name/device[/precision]) running ``model`` at ``width x height``."""
    import torch

    from evseg_ros.runtime import create_backend

    name, device, *rest = spec.split("/")
    options = {"precision": rest[0]} if rest else {}
    backend = create_backend(
        name, model, device=device, network_width=width, network_height=height, **options
    )
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    events = rng.poisson(0.3, (3, height, width)).astype(np.float32)
    if backend.device.startswith("cuda"):  # as the node hands frames over on a GPU
        image = torch.from_numpy(image).to(backend.device)
        events = torch.from_numpy(events).to(backend.device)
    for _ in range(5):  # warm-up: engine/compile/CUDA graph capture, untimed
        backend.infer(image, events)
    total, network = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        result = backend.infer(image, events)
        total.append((time.perf_counter() - start) * 1e3)
        network.append(result.timings["inference"])
    median = statistics.median(total)
    return {
        "backend": backend.name, "device": backend.device,
        "precision": getattr(backend, "precision", "fp32"), "size": f"{width}x{height}",
        "call_ms_median": round(median, 3), "call_ms_p99": round(_percentile(total, 99), 3),
        "network_ms_median": round(statistics.median(network), 3),
        "network_ms_p99": round(_percentile(network, 99), 3),
        "throughput_fps": round(1e3 / median, 1),
    }


def _metadata(name: str) -> dict:
    """The run's context, with ros2_benchmark's metadata names."""
    import platform

    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
    return {
        "Benchmark Name": name, "Test Datetime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "Device Hostname": platform.node(), "Device Architecture": platform.machine(),
        "Device OS": platform.platform(), "GPU": gpu, "CPU cores": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
    }


def run_matrix(args: argparse.Namespace) -> int:
    """Every backend x MiT size x size; a table, and the rows as JSON with ``--json``."""
    import torch

    from evseg_ros.model.cacd import CACDConfig, CACDNet, save_cacd_checkpoint
    from evseg_ros.model.export import export_onnx

    rows = []
    header = (f"{'backend':<12}{'device':<8}{'prec':<6}{'MiT':<5}{'size':<10}{'call p50':>9}"
              f"{'call p99':>9}{'net p50':>9}{'net p99':>9}{'fps':>8}")
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for mit in args.mit.split(","):
            torch.manual_seed(0)
            net = CACDNet(CACDConfig.from_dict(_mit_config(mit))).eval()
            save_cacd_checkpoint(net, Path(tmp) / f"cacd_{mit}.pt", label_set="dsec11")
            model = export_onnx(net, Path(tmp) / f"cacd_{mit}.onnx", height=64, width=64)
            for size in args.sizes.split(","):
                width, height = _parse_size(size)
                for spec in args.backends.split(","):
                    try:
                        row = _time_backend(spec, model, width, height, args.repeats)
                    except Exception as err:  # noqa: BLE001 (a backend missing here is a row)
                        print(f"{spec:<26}{mit:<5}{size:<10} unavailable: {err}", flush=True)
                        rows.append({"spec": spec, "mit": mit, "size": size, "error": str(err)})
                        continue
                    row = {"spec": spec, "mit": mit, **row}
                    rows.append(row)
                    print(
                        f"{row['backend']:<12}{row['device']:<8}{row['precision']:<6}{mit:<5}"
                        f"{size:<10}{row['call_ms_median']:9.2f}{row['call_ms_p99']:9.2f}"
                        f"{row['network_ms_median']:9.2f}{row['network_ms_p99']:9.2f}"
                        f"{row['throughput_fps']:8.1f}", flush=True,
                    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        report = {"metadata": _metadata("evseg inference matrix"), "results": rows}
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="512x512,1034x617", help="WxH list (default %(default)s)"
    )
    parser.add_argument("--threads", type=int, default=2, help="ORT intra-op threads")
    parser.add_argument("--repeats", type=int, default=12, help="timed runs per model and size")
    parser.add_argument(
        "--checkpoint",
        default=str(DEFAULT_CHECKPOINT),
        help="take the configuration from this checkpoint (default: the shipped model; "
        "the CACDConfig defaults when it is missing)",
    )
    parser.add_argument(
        "--config", default="{}", help="JSON of CACDConfig fields that override the base"
    )
    parser.add_argument("--matrix", action="store_true", help="backend x MiT size x size table")
    parser.add_argument(
        "--backends", default="onnxruntime/cpu,pytorch/cpu",
        help="--matrix: name/device[/precision] list (default %(default)s)",
    )
    parser.add_argument("--mit", default="b0", help="--matrix: MiT sizes among b0,b2,b5")
    parser.add_argument("--json", help="--matrix: also write the rows (and run metadata) here")
    args = parser.parse_args(argv)
    if args.matrix:
        return run_matrix(args)
    values = _base_config(args)
    print(f"config: {json.dumps(values, sort_keys=True)}")
    print(f"onnxruntime CPU, {args.threads} threads, {args.repeats} interleaved runs per model")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            width, height = _parse_size(size)
            sessions = {}
            for variant in ("fused", "image_only"):
                path = Path(tmp) / f"{variant}_{width}x{height}.onnx"
                _export(values, variant, path, width, height)
                sessions[variant] = _session(path, args.threads)
            feeds = {
                "image": rng.random((1, 3, height, width), dtype=np.float32),
                "events": rng.poisson(0.3, (1, 3, height, width)).astype(np.float32),
            }
            times: dict[str, list[float]] = {name: [] for name in sessions}
            for session in sessions.values():  # warm-up, untimed
                session.run(None, feeds)
            for repeat in range(args.repeats):
                order = list(sessions) if repeat % 2 == 0 else list(sessions)[::-1]
                for name in order:
                    start = time.perf_counter()
                    sessions[name].run(None, feeds)
                    times[name].append(time.perf_counter() - start)
            medians = {name: statistics.median(values) for name, values in times.items()}
            for name, median in medians.items():
                print(f"{name} {width}x{height}: {median * 1e3:.1f} ms (median)")
            ratio = medians["fused"] / medians["image_only"]
            print(f"ratio fused/image_only {width}x{height}: {ratio:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
