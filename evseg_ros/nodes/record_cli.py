"""``evseg record``: record the rig's topics into a rosbag2 folder with the recorder node alone.

The node runs in its own rclpy context and executor until Ctrl-C, SIGTERM or ``--duration``;
then the writer drains its queue and closes the bag, and the summary (messages per topic,
drops, files) is printed. rclpy is imported inside the command only, so ``evseg --help`` works
without ROS.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

STORAGES = ("mcap", "sqlite3")
RECORD_DESCRIPTION = (
    "Record topics into DIR as rosbag2 bags (MCAP by default): DIR/<name>_0/, DIR/<name>_1/, "
    "... one complete bag per split, plus DIR/summary.json. Messages are stored as received "
    "(serialized, bag time = receive time); every message dropped on the way (writer queue "
    "full, write errors, lost in transport) is counted and reported."
)


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        msg = f"expected a number, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if value < 0:
        msg = f"must be >= 0, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        msg = f"expected an integer, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if value < 1:
        msg = f"must be >= 1, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def add_record_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``record`` subcommand to ``evseg``'s subparsers."""
    record = sub.add_parser(
        "record", help="record the rig's topics to a rosbag2 folder (MCAP)",
        description=RECORD_DESCRIPTION,
    )
    record.add_argument("--output", required=True, help="folder to create (must not exist)")
    record.add_argument(
        "--topics", nargs="+",
        help="topics to record; relative names are in --namespace (default: events, "
        "frame/image_raw, frame/camera_info, segmentation/mask, segmentation/overlay, "
        "/diagnostics)",
    )
    record.add_argument(
        "--split-size-mb", type=_non_negative, default=0.0,
        help="start a new bag before one exceeds this many MB of messages (0 = never)",
    )
    record.add_argument(
        "--split-duration-s", type=_non_negative, default=0.0,
        help="start a new bag every this many seconds (0 = never)",
    )
    record.add_argument("--storage", choices=STORAGES, default="mcap", help="rosbag2 storage")
    record.add_argument(
        "--duration", type=_non_negative, default=0.0,
        help="seconds to record (0 = until Ctrl-C / SIGTERM)",
    )
    record.add_argument(
        "--queue-length", type=_positive_int, default=1000,
        help="messages waiting for the writer at most (beyond: dropped and counted)",
    )
    record.add_argument("--namespace", default="rig", help="namespace of the recorder node")
    record.set_defaults(func=cmd_record)
    return record


def cmd_record(args: argparse.Namespace) -> int:
    """Run the recorder until stopped; print the summary. 2 when it cannot start."""
    if Path(args.output).exists():  # fail before starting ROS
        print(f"evseg record: refusing to overwrite existing {args.output!r}", file=sys.stderr)
        return 2

    import rclpy  # noqa: PLC0415 (ROS only for this command)
    from rclpy.context import Context  # noqa: PLC0415
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor  # noqa: PLC0415
    from rclpy.parameter import Parameter  # noqa: PLC0415
    from rclpy.signals import SignalHandlerOptions  # noqa: PLC0415

    from evseg_ros.nodes.recorder import RecorderNode  # noqa: PLC0415
    from evseg_ros.record import RecorderError, format_summary  # noqa: PLC0415

    overrides = [
        Parameter("output_dir", value=str(args.output)),
        Parameter("storage", value=args.storage),
        Parameter("split_size_mb", value=float(args.split_size_mb)),
        Parameter("split_duration_s", value=float(args.split_duration_s)),
        Parameter("queue_length", value=int(args.queue_length)),
    ]
    if args.topics:
        overrides.append(Parameter("topics", value=list(args.topics)))

    context = Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    executor = SingleThreadedExecutor(context=context)
    # Ctrl-C and SIGTERM end the loop between callbacks, so no message is half-handed over
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():  # only there can Python trap them
        previous = {
            signum: signal.signal(signum, lambda *_: stop.set())
            for signum in (signal.SIGINT, signal.SIGTERM)
        }
    node = None
    summary = None
    try:
        try:
            node = RecorderNode(
                context=context, namespace=args.namespace, parameter_overrides=overrides
            )
        except (RecorderError, ValueError) as err:
            print(f"evseg record: {err}", file=sys.stderr)
            return 2
        executor.add_node(node)
        until = f"for {args.duration:g} s" if args.duration else "Ctrl-C to stop"
        print(f"recording to {args.output} ({until})", flush=True)
        deadline = time.monotonic() + args.duration if args.duration else float("inf")
        try:
            while not stop.is_set() and context.ok() and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.1)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
    finally:
        if node is not None:
            executor.remove_node(node)
            summary = node.close()  # drains the queue, closes the bag (printed below, not logged)
            node.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown(context=context)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if summary is not None:
        print(format_summary(summary))
    return 0
