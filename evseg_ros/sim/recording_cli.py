"""``evseg simulate``: render the simulated rig once into a rosbag2 recording.

``evseg simulate`` renders (or finds in ``output/sim_cache/recordings``) the recording of the
given parameters and prints its folder; ``--output DIR`` writes it to ``DIR`` instead, reusing a
``DIR`` that already holds the same recording and refusing one that holds anything else unless
``--force``. See :mod:`evseg_ros.sim.recording` for what the recording contains.

The top-level ``evseg`` command line adds it with :func:`add_simulate_parser`;
``python -m evseg_ros.sim.recording_cli [options]`` runs it on its own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evseg_ros.cli_args import image_size
from evseg_ros.sim.recording import (
    DEFAULT_CACHE_ROOT,
    DEFAULT_CALIBRATION,
    STORAGES,
    RecordingExistsError,
    RecordingSpec,
    cached_recording,
    simulate_recording,
    stored_recording_key,
)

__all__ = ["add_simulate_parser", "main", "run_simulate"]


def _conditions(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(","))
    valid = ("normal", "night", "glare")
    bad = [name for name in names if name not in valid]
    if bad:
        msg = f"unknown condition(s) {bad!r} in {text!r}; choose from {','.join(valid)}"
        raise argparse.ArgumentTypeError(msg)
    return names


def add_simulate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``simulate`` command to an ``add_subparsers()`` object (sets ``func``)."""
    defaults = RecordingSpec()
    parser = subparsers.add_parser(
        "simulate",
        help="render the simulated rig into a rosbag2 recording (cached)",
        description=(
            "Render the simulated rig into a rosbag2 recording holding what the drivers publish "
            "plus ground truth. Without --output the recording is cached under "
            f"{DEFAULT_CACHE_ROOT}/ and its folder printed; --output DIR reuses a DIR holding "
            "the same recording and refuses one holding anything else unless --force."
        ),
    )
    parser.add_argument(
        "--output", metavar="DIR",
        help=f"rosbag2 folder to write (default: the cache under {DEFAULT_CACHE_ROOT}/)",
    )
    parser.add_argument(
        "--seconds", type=float, default=defaults.seconds,
        help="simulated duration in seconds (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help="simulator seed (default: %(default)s)"
    )
    parser.add_argument(
        "--conditions", type=_conditions, default=defaults.conditions, metavar="LIST",
        help="lighting conditions visited in this order, comma-separated "
        "(default: normal,night,glare)",
    )
    parser.add_argument(
        "--condition-period", type=float, default=defaults.condition_period_s, metavar="S",
        help="seconds per condition segment (default: %(default)s)",
    )
    parser.add_argument(
        "--fps", type=float, default=defaults.fps,
        help="frame (trigger) rate in Hz (default: %(default)s)",
    )
    parser.add_argument(
        "--size", type=image_size, metavar="WxH",
        help="frame camera size; both cameras and the output grid scale by the same factor "
        "(default: the calibration's)",
    )
    parser.add_argument(
        "--calibration", default=DEFAULT_CALIBRATION, metavar="YAML",
        help="rig calibration to render with (default: %(default)s)",
    )
    parser.add_argument(
        "--packet-us", type=int, default=defaults.packet_us,
        metavar="US",
        help="sensor time per EventPacket, the EVK4 driver's packet_time_us (default: %(default)s)",
    )
    parser.add_argument(
        "--storage", choices=STORAGES, default=defaults.storage,
        help="rosbag2 storage (default: %(default)s)",
    )
    parser.add_argument(
        "--workers", type=int, metavar="N",
        help="frame-rendering processes (default: spare CPUs, at most 3; 0 = none)",
    )
    parser.add_argument(
        "--force", action="store_true",
        help="render again and replace whatever --output holds",
    )
    parser.set_defaults(func=run_simulate)
    return parser


def run_simulate(args: argparse.Namespace) -> int:
    """Run ``evseg simulate``; prints the recording's folder. Exit status 2 for bad input."""
    try:
        spec = RecordingSpec(
            seconds=args.seconds,
            seed=args.seed,
            conditions=args.conditions,
            condition_period_s=args.condition_period,
            fps=args.fps,
            size=args.size,
            calibration=args.calibration,
            packet_us=args.packet_us,
            storage=args.storage,
        )
        if args.output is None:
            path = cached_recording(spec, workers=args.workers)
        else:
            output = Path(args.output)
            if not args.force and stored_recording_key(output) == spec.key():
                print(f"evseg simulate: {str(output)!r} already holds this recording; reusing it",
                      file=sys.stderr)
            path = simulate_recording(spec, output, force=args.force, workers=args.workers)
    except (RecordingExistsError, ValueError, OSError) as err:  # CalibrationError: ValueError
        print(f"evseg simulate: {err}", file=sys.stderr)
        return 2
    print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m evseg_ros.sim.recording_cli [options]``: the ``simulate`` command alone."""
    parser = argparse.ArgumentParser(prog="evseg")
    sub = parser.add_subparsers(dest="command", required=True)
    add_simulate_parser(sub)
    args = parser.parse_args(["simulate", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
