"""``evseg``: the command-line tool (run the graph in-process, run the demo, inspect recordings).

ROS imports happen inside the subcommands, so ``evseg --help`` works anywhere.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from evseg_ros.paths import DEFAULT_CONFIG


def _cmd_run(args: argparse.Namespace) -> int:
    from evseg_ros.nodes.runner import InProcessGraph  # noqa: PLC0415 (needs rclpy)

    overrides: dict[str, dict] = {}
    if args.model:
        overrides.setdefault("segmentation", {})["model_path"] = args.model
    if args.backend:
        overrides.setdefault("segmentation", {})["backend"] = args.backend
    if args.source:
        for name in ("evk4_driver", "flir_driver"):
            overrides.setdefault(name, {})["source"] = args.source
    with InProcessGraph(args.config, overrides=overrides) as graph:
        names = ", ".join(node.get_fully_qualified_name() for node in graph.nodes.values())
        print(f"running {names} (Ctrl-C to stop)", flush=True)
        deadline = time.monotonic() + args.duration if args.duration > 0 else float("inf")
        try:
            while time.monotonic() < deadline:
                graph.spin_once(0.05)
        except KeyboardInterrupt:
            pass
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from evseg_ros.nodes.demo import format_report, run_demo  # noqa: PLC0415 (needs rclpy)
    from evseg_ros.runtime import RuntimeBackendError  # noqa: PLC0415

    try:
        report = run_demo(
            config=args.config, frames=args.frames, output_dir=args.output, model=args.model
        )
    except (RuntimeBackendError, FileNotFoundError) as err:
        print(f"evseg demo: {err}", file=sys.stderr)
        return 2
    print(format_report(report))
    return 0 if report.counts.get("masks_received") else 1


def _cmd_info(args: argparse.Namespace) -> int:
    from evseg_ros.events.bag import BagError  # noqa: PLC0415
    from evseg_ros.events.errors import EventDecodeError  # noqa: PLC0415
    from evseg_ros.events.recording_info import recording_info  # noqa: PLC0415

    try:
        info = recording_info(args.path, topic=args.topic)
    except (BagError, EventDecodeError, OSError, KeyError) as err:
        print(f"evseg info: {err}", file=sys.stderr)
        return 2
    print(json.dumps(info, indent=2 if args.pretty else None))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evseg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the rig graph in one process (no ros2 launch needed)")
    run.add_argument("--config", default=DEFAULT_CONFIG, help="ROS 2 parameter file")
    run.add_argument("--source", choices=("sim", "hardware"), help="override both drivers")
    run.add_argument("--backend", choices=("auto", "onnxruntime", "pytorch"))
    run.add_argument("--model", help="override segmentation model_path")
    run.add_argument("--duration", type=float, default=0.0, help="seconds to run (0 = forever)")
    run.set_defaults(func=_cmd_run)

    demo = sub.add_parser("demo", help="run the rig on the simulator and report figures")
    demo.add_argument("--config", default=DEFAULT_CONFIG, help="ROS 2 parameter file")
    demo.add_argument("--frames", type=int, default=100, help="masks to collect")
    demo.add_argument("--output", default="output/demo", help="folder for PNGs and summary.json")
    demo.add_argument("--model", help="override segmentation model_path")
    demo.set_defaults(func=_cmd_demo)

    info = sub.add_parser("info", help="summarise an event recording (.raw or rosbag2) as JSON")
    info.add_argument("path", help="Prophesee .raw file, or rosbag2 folder / .db3 / .mcap")
    info.add_argument("--topic", help="EventPacket topic (default: the first one)")
    info.add_argument("--pretty", action="store_true", help="indent the JSON")
    info.set_defaults(func=_cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
