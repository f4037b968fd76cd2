"""``evseg train`` and ``evseg export``: train CACD from a YAML config, export a checkpoint.

``evseg train --config config/train/cacd_b0_sim.yaml [--resume PATH] [--set key=value ...]``
runs :class:`~evseg_ros.train.trainer.Trainer` (under ``torchrun`` too); ``--resume`` alone
continues with the configuration stored in the checkpoint.

``evseg export --checkpoint PATH --output model.onnx`` writes the ONNX file the segmentation
node loads (inputs ``image``, ``events``; outputs ``mask`` and, unless ``--no-logits``,
``logits``), with the label set and training provenance in its metadata.

torch is imported inside the commands, so ``evseg --help`` stays fast and works without it.
The top-level ``evseg`` tool adds these two commands with :func:`add_train_parser` and
:func:`add_export_parser`.
"""

from __future__ import annotations

import argparse
import logging
import sys

__all__ = [
    "add_export_parser",
    "add_train_parser",
    "run_export",
    "run_train",
]

_LOG = logging.getLogger(__name__)


def add_train_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``train`` command to an ``add_subparsers()`` object (sets ``func``)."""
    parser = subparsers.add_parser(
        "train", help="train CACD from a YAML config (config/train/*.yaml)"
    )
    parser.add_argument("--config", help="training config; optional with --resume")
    parser.add_argument("--resume", help="checkpoint to continue from (e.g. <output_dir>/last.pt)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.lr=3e-4 (repeatable)",
    )
    parser.add_argument(
        "--from-scratch",
        action="store_true",
        help="train from random weights even where the config names ImageNet weights "
        "(model.pretrained)",
    )
    parser.set_defaults(func=run_train)
    return parser


def add_export_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``export`` command to an ``add_subparsers()`` object (sets ``func``)."""
    parser = subparsers.add_parser("export", help="export a CACD checkpoint to ONNX for the node")
    parser.add_argument("--checkpoint", required=True, help="checkpoint written by evseg train")
    parser.add_argument("--output", required=True, help="ONNX file to write")
    parser.add_argument(
        "--height", type=int, default=240, help="tracing height (axis stays dynamic)"
    )
    parser.add_argument("--width", type=int, default=320, help="tracing width (axis stays dynamic)")
    parser.add_argument("--no-logits", action="store_true", help="output the mask only")
    parser.add_argument("--ema", action="store_true", help="export the EMA teacher's weights")
    parser.add_argument(
        "--weights-output",
        help="also write a weights-only checkpoint (no optimiser state) for the pytorch backend",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    parser.set_defaults(func=run_export)
    return parser


def run_train(args: argparse.Namespace) -> int:
    """Run ``evseg train``; returns the exit status (2 for a bad config or checkpoint)."""
    from evseg_ros.train.checkpoint import load_training_checkpoint
    from evseg_ros.train.config import TrainConfig, load_train_config
    from evseg_ros.train.config_overrides import apply_overrides
    from evseg_ros.train.trainer import NonFiniteTrainingError, Trainer

    try:
        overrides = [*args.overrides, *(["model.from_scratch=true"] if args.from_scratch else [])]
        if args.config:
            config = load_train_config(args.config, overrides)
        elif args.resume:
            stored = load_training_checkpoint(args.resume)["train_config"]
            config = TrainConfig.from_dict(apply_overrides(stored, overrides))
        else:
            print("evseg train: pass --config (or --resume with a checkpoint)", file=sys.stderr)
            return 2
        trainer = Trainer(config, resume=args.resume)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"evseg train: {err}", file=sys.stderr)
        return 2
    try:
        result = trainer.fit()
    except NonFiniteTrainingError as err:
        print(f"evseg train: {err}", file=sys.stderr)
        return 1
    finally:
        trainer.close()
    if trainer.context.is_main:
        best = "n/a" if result.best_miou is None else f"{100 * result.best_miou:.1f}"
        print(
            f"trained {result.steps} steps in {result.seconds / 60:.1f} min; best val mIoU "
            f"{best}; checkpoints in {str(trainer.output_dir)!r}"
        )
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Run ``evseg export``; returns the exit status (2 for a bad checkpoint or target)."""
    from evseg_ros.model.checkpoint import load_model, save_weights_only
    from evseg_ros.model.export import export_loaded

    try:
        model, info = load_model(args.checkpoint, ema=args.ema)  # once, for both outputs
        if args.weights_output:  # first: a refused target must not leave half the outputs
            save_weights_only(model, info, args.weights_output, overwrite=args.overwrite)
        written = export_loaded(
            model,
            info,
            args.output,
            height=args.height,
            width=args.width,
            with_logits=not args.no_logits,
            overwrite=args.overwrite,
        )
    except (ValueError, FileNotFoundError, FileExistsError, KeyError, RuntimeError) as err:
        print(f"evseg export: {err}", file=sys.stderr)
        return 2
    print(
        f"wrote {written} ({model.cacd_config.backbone} {info.variant}, "
        f"{info.label_set or 'dsec11'}; {info.architecture}, trained on {info.training_data})"
    )
    return 0
