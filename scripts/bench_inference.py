#!/usr/bin/env python3
"""What the events cost at inference: fused CACD against its image-only twin, ONNX Runtime CPU.

Both graphs are exported from the same configuration (only ``variant`` differs), so the ratio
is the price of the event branch and the fusion alone. They run in the same process,
interleaved (fused, image-only, image-only, fused, ...), so a machine that gets busier or
cooler during the run shifts both alike; the figure is the ratio of medians.

Prints, per size, one line ``ratio fused/image_only WxH: X.XX`` (the performance target is
<= 1.3) after the two medians.

    python scripts/bench_inference.py                      # the shipped model's configuration
    python scripts/bench_inference.py --config '{"event_backbone": null}'   # paper's symmetric
"""

from __future__ import annotations

import argparse
import json
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
    args = parser.parse_args(argv)
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
