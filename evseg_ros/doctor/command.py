"""The ``evseg doctor`` command line: ``--json`` and ``--need``, run every check, print, exit.

The same parser serves the ``evseg`` subcommand (:func:`register`) and ``python -m
evseg_ros.doctor`` (:func:`main`), so a unit file may call either.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from evseg_ros.doctor.report import NEEDS, exit_code, format_json, format_table, run_checks

SUMMARY = (
    "``evseg doctor``: what this machine has, and what the rig still needs before it can run "
    "here."
)


def parse_needs(text: str) -> list[str]:
    """``gpu,tensorrt`` -> ``["gpu", "tensorrt"]``; argparse type for ``--need``."""
    needs = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [need for need in needs if need not in NEEDS]
    if unknown:
        msg = f"unknown need {unknown[0]!r}; choose from {', '.join(NEEDS)}"
        raise argparse.ArgumentTypeError(msg)
    return list(dict.fromkeys(needs))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--json`` and ``--need``, shared by the subcommand and the module's own parser."""
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    parser.add_argument(
        "--need", type=parse_needs, default=[], metavar="LIST",
        help=f"comma-separated: what this configuration needs ({', '.join(NEEDS)}); exit "
        "status 1 when one of them (or a Python dependency) is missing",
    )


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``doctor`` to the ``evseg`` command's subparsers."""
    parser = subparsers.add_parser(
        "doctor", help="check this machine for what the rig needs (GPU, TensorRT, SDKs, DDS)",
        description=SUMMARY,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run every check, print them; 1 when something needed is missing, else 0."""
    needs = list(args.need or [])
    checks = run_checks()
    print(format_json(checks, needs) if args.json else format_table(checks, needs))
    return exit_code(checks, needs)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m evseg_ros.doctor``: parse ``argv`` and run."""
    parser = argparse.ArgumentParser(prog="evseg doctor", description=SUMMARY)
    add_arguments(parser)
    return run(parser.parse_args(argv))
