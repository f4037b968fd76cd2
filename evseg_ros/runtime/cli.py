"""``evseg backends`` and ``evseg build-engine``: what can run here, and the engine for the target.

Neither imports torch, onnxruntime or TensorRT before it runs, so ``--help`` works anywhere.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from evseg_ros.cli_args import image_size

DEFAULT_MODEL = "models/cacd_b0_sim.onnx"
DEFAULT_CALIBRATION_FILE = "config/calibration/sim_rig.yaml"


def _cmd_backends(args: argparse.Namespace) -> int:
    from evseg_ros.device import DeviceError
    from evseg_ros.paths import resolve_package_path
    from evseg_ros.runtime.selection import format_table, probe_backends

    model = resolve_package_path(args.model)
    try:
        rows = probe_backends(model, args.device)
    except DeviceError as err:
        print(f"evseg backends: {err}", file=sys.stderr)
        return 2
    first = next((r for r in rows if r.available), None)
    chosen = f"{first.name}/{first.device}" if first else ""
    if args.json:
        print(
            json.dumps(
                {
                    "model": str(model),
                    "device": args.device,
                    "auto": chosen,
                    "backends": [vars(r) for r in rows],
                },
                indent=2,
            )
        )
        return 0
    print(f"model {model} (device {args.device}); * = what backend auto takes\n")
    print(format_table(rows, chosen))
    if not chosen:
        print("\nno backend can run this model here; see the reasons above", file=sys.stderr)
        return 1
    return 0


def add_backends_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``backends`` (sets ``func``)."""
    parser = subparsers.add_parser(
        "backends",
        help="list the inference backends, whether each can run the model here, and why not",
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="ONNX model (its .pt beside it)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=_cmd_backends)
    return parser


def _network_size(args: argparse.Namespace) -> tuple[int, int]:
    """--size, else the output grid of the rig calibration (what the node feeds the network)."""
    if args.size:
        return args.size
    from evseg_ros.geometry.calibration import load_calibration
    from evseg_ros.paths import resolve_package_path

    calibration = load_calibration(resolve_package_path(args.rig_calibration))
    return calibration.output_width, calibration.output_height


def _cmd_build_engine(args: argparse.Namespace) -> int:
    from evseg_ros.device import DeviceError, resolve_device
    from evseg_ros.paths import resolve_package_path
    from evseg_ros.runtime.engine_builder import BuildOptions, import_tensorrt
    from evseg_ros.runtime.engine_cache import cache_dir, calibration_cache_path, timing_cache_path
    from evseg_ros.runtime.errors import RuntimeBackendError
    from evseg_ros.runtime.int8_calibration import calibration_batches
    from evseg_ros.runtime.tensorrt_engine import (
        GpuFacts,
        describe,
        network_shapes,
        prepare_engine,
    )

    try:
        trt = import_tensorrt()
        device = resolve_device(args.device)
        if device.type != "cuda":
            msg = (
                "evseg build-engine needs a CUDA GPU: engines are built on the machine that "
                "runs them"
            )
            raise RuntimeBackendError(msg)
        model = resolve_package_path(args.model)
        width, height = _network_size(args)
        folder = cache_dir(args.cache_dir)
        calibration_cache = None
        batches = None
        if args.precision == "int8":
            calibration_cache = Path(
                args.calibration_cache or calibration_cache_path(folder, model)
            )
            if args.calibration:
                batches = calibration_batches(Path(args.calibration), (width, height), args.samples)
        options = BuildOptions(
            precision=args.precision,
            workspace_mib=args.workspace_mib,
            timing_cache=Path(args.timing_cache or timing_cache_path(folder)),
            calibration_cache=calibration_cache,
            calibration_batches=batches,
        )
        import torch

        with torch.cuda.device(device):
            prepared = prepare_engine(
                trt,
                model,
                shapes=network_shapes(width, height),
                gpu=GpuFacts.of(device),
                cache_folder=folder,
                options=options,
                force_rebuild=args.force,
            )
    except (RuntimeBackendError, DeviceError, FileNotFoundError, ValueError) as err:
        print(f"evseg build-engine: {err}", file=sys.stderr)
        return 2
    summary = describe(prepared)
    verb = "built" if prepared.built else "valid, kept"
    print(f"{verb}: {prepared.path} ({prepared.decision.reason})")
    print(json.dumps(summary))
    return 0


def add_build_engine_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``build-engine`` (sets ``func``)."""
    parser = subparsers.add_parser(
        "build-engine",
        help="build (or check) the TensorRT engine of a model on this machine",
        description=(
            "Build the TensorRT engine the segmentation node's tensorrt backend loads, on the "
            "machine that will run it. Engines are cached under a key of the ONNX file's "
            "sha256, the TensorRT version, the GPU name and compute capability, the precision "
            "and the input shapes, with a manifest beside each. A valid engine is kept (not "
            "rebuilt); a missing, stale, foreign or corrupt one is rebuilt, saying why."
        ),
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="ONNX model to build from")
    parser.add_argument(
        "--precision",
        default="fp16",
        choices=("fp16", "fp32", "int8"),
        help="fp16 (default); int8 needs --calibration the first time (scales are cached)",
    )
    parser.add_argument(
        "--size",
        type=image_size,
        help="network input WxH (default: the output grid of --rig-calibration)",
    )
    parser.add_argument(
        "--rig-calibration",
        default=DEFAULT_CALIBRATION_FILE,
        help="rig calibration whose output grid is the network size when --size is not given",
    )
    parser.add_argument("--device", default="cuda", help="cuda or cuda:N")
    parser.add_argument(
        "--cache-dir",
        default="",
        help="engine folder (default: $EVSEG_ENGINE_CACHE, else ~/.cache/evseg/engines)",
    )
    parser.add_argument(
        "--calibration",
        metavar="FOLDER_OR_RECORDING",
        help="INT8 samples: a folder of .npz (image HxWx3 uint8, events 3xHxW float32) or a "
        "recording replayed through the graph",
    )
    parser.add_argument(
        "--calibration-cache",
        help="INT8 scales file (default: <cache-dir>/<model>.int8.calib); read when present",
    )
    parser.add_argument("--samples", type=int, default=300, help="INT8 samples to use at most")
    parser.add_argument(
        "--timing-cache", help="builder timing cache (default: <cache-dir>/timing.cache)"
    )
    parser.add_argument("--workspace-mib", type=int, default=2048, help="builder memory limit")
    parser.add_argument("--force", action="store_true", help="rebuild even a valid engine")
    parser.set_defaults(func=_cmd_build_engine)
    return parser


__all__ = ["add_backends_parser", "add_build_engine_parser"]
