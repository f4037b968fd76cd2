"""``evseg``: the command-line tool (run the graph, the demo; inspect, calibrate, train, export).

ROS imports happen inside the subcommands, so ``evseg --help`` works anywhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

from evseg_ros.cli_args import image_size
from evseg_ros.paths import DEFAULT_CONFIG


def _cmd_run(args: argparse.Namespace) -> int:
    """Run the graph until --duration, the end of --bag, SIGINT or SIGTERM.

    A configuration it cannot start with (missing or malformed config file, unknown parameter,
    value out of range, missing model or calibration file) is one line on stderr and status 2.
    SIGINT and SIGTERM stop it wherever it is (building a node, in a callback, waiting) with
    status 0, skipping the interpreter's module teardown, which takes seconds with torch, numba
    and ONNX Runtime loaded (see :mod:`evseg_ros.nodes.spin`).
    """
    import contextlib  # noqa: PLC0415

    from evseg_ros.nodes.config_check import check_graph_config  # noqa: PLC0415 (needs rclpy)
    from evseg_ros.nodes.config_errors import ConfigError  # noqa: PLC0415
    from evseg_ros.nodes.runner import InProcessGraph, configured_parameter  # noqa: PLC0415
    from evseg_ros.nodes.spin import (  # noqa: PLC0415
        STARTUP_ERRORS,
        exit_process,
        report_startup_error,
        stop_on_signals,
    )
    from evseg_ros.paths import resolve_package_path  # noqa: PLC0415

    overrides: dict[str, dict] = {}
    if args.model:
        overrides.setdefault("segmentation", {})["model_path"] = args.model
    if args.backend:
        overrides.setdefault("segmentation", {})["backend"] = args.backend
    drivers = ("evk4_driver", "flir_driver")
    if args.source:
        for name in drivers:
            overrides.setdefault(name, {})["source"] = args.source
    if args.bag:
        for name in drivers:
            overrides.setdefault(name, {}).update(
                source="bag", bag_path=args.bag, replay_pacing=args.pacing,
                replay_rate=args.rate, replay_loop=args.loop,
            )
    with stop_on_signals() as stop:
        graph = None
        try:
            config = resolve_package_path(args.config)
            if config.is_file():  # a missing one: the graph says where it looked
                check_graph_config(config)  # before trusting the model_path it gives
                model = args.model or configured_parameter(config, "segmentation", "model_path")
                if model and not resolve_package_path(model).is_file():
                    origin = "--model" if args.model else f"model_path in {args.config}"
                    msg = f"model file {model!r} not found ({origin})"
                    raise ConfigError(msg)
            graph = InProcessGraph(args.config, overrides=overrides)
            names = ", ".join(node.get_fully_qualified_name() for node in graph.nodes.values())
            print(f"running {names} (Ctrl-C to stop)", flush=True)
            deadline = time.monotonic() + args.duration if args.duration > 0 else float("inf")
            while time.monotonic() < deadline and not graph.replay_finished:
                graph.spin_once(0.05)
            if graph.replay_finished:
                print(f"recording {args.bag} replayed to its end", flush=True)
        except KeyboardInterrupt:
            pass
        except STARTUP_ERRORS as err:
            if stop.received is None:
                if graph is not None:
                    raise  # from a callback: a bug, with its traceback
                return report_startup_error("evseg run", err)
        finally:
            if graph is not None:
                with contextlib.suppress(KeyboardInterrupt):  # a signal while closing
                    graph.close()
        if stop.received is not None:
            exit_process(0)
    return 0


def _run_and_report(command: str, evaluate, footer: str) -> int:
    """Run ``evaluate()`` (demo or eval), print its report; a bad recording or model is one line.

    Exit status 0 with masks, 1 without any, 2 when it could not run.
    """
    from evseg_ros.eval.recording import RecordingError  # noqa: PLC0415
    from evseg_ros.eval.report import format_report  # noqa: PLC0415
    from evseg_ros.runtime import RuntimeBackendError  # noqa: PLC0415

    try:
        outcome = evaluate()
    except (RecordingError, RuntimeBackendError, FileNotFoundError, ValueError) as err:
        print(f"evseg {command}: {err}", file=sys.stderr)
        return 2
    print(format_report(outcome.report))
    print(footer)
    return 0 if outcome.run.frames.get("masks_received") else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from evseg_ros.nodes.demo import DEMO_RATE, DEMO_RECORDING, run_demo  # noqa: PLC0415

    recording = DEMO_RECORDING
    if args.seconds is not None:
        recording = dataclasses.replace(DEMO_RECORDING, seconds=args.seconds)
    return _run_and_report(
        "demo",
        lambda: run_demo(
            config=args.config, output_dir=args.output,
            rate=DEMO_RATE if args.rate is None else args.rate, mode=args.mode,
            model=args.model, recording=recording,
        ),
        f"\nreport and panels: {args.output}/",
    )


def _cmd_eval(args: argparse.Namespace) -> int:
    from evseg_ros.nodes.evaluate import EvalOptions, run_eval  # noqa: PLC0415 (needs rclpy)
    from evseg_ros.record.topics import RecordingTopics  # noqa: PLC0415

    options = EvalOptions(
        config=args.config,
        model=args.model,
        mode=args.mode,
        rate=args.rate,
        compare_frame_only=args.compare_frame_only,
        frame_only_model=args.frame_only_model,
        labels_dir=args.labels,
        topics=RecordingTopics(
            events=args.events_topic, frames=args.frames_topic,
            camera_info=args.frames_topic.rsplit("/", 1)[0] + "/camera_info",
            ground_truth=args.truth_topic,
        ),
        timeout_s=args.timeout,
        drop_events=args.drop_events,
        drop_frames=args.drop_frames,
        packet_loss=args.packet_loss,
        fault_seed=args.fault_seed,
    )
    return _run_and_report(
        "eval",
        lambda: run_eval(args.bag, args.output, options),
        f"\nreport: {Path(args.output) / 'report.json'} (+ report.md, PNG plots)",
    )


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


def _cmd_calibrate(args: argparse.Namespace) -> int:
    # cv2 and the simulator load only for this subcommand
    from evseg_ros.geometry.calibrate import (  # noqa: PLC0415
        CalibrationEstimateError,
        Checkerboard,
        calibrate_rig,
        format_result,
        load_paired_views,
        mapping_error,
        write_calibration,
    )
    from evseg_ros.geometry.calibration import (  # noqa: PLC0415
        CalibrationError,
        aspect_crop,
        load_calibration,
    )
    from evseg_ros.paths import resolve_package_path  # noqa: PLC0415

    if Path(args.output).exists() and not args.force:  # fail before the work, not after
        print(
            f"evseg calibrate: {args.output!r} exists; pass --force to replace it", file=sys.stderr
        )
        return 2
    try:
        board = Checkerboard.parse(args.board, square_size_m=args.square_mm / 1000.0)
        cameras = {}
        truth = None
        if args.intrinsics:
            known = load_calibration(args.intrinsics)
            cameras = {"event_camera": known.event_camera, "frame_camera": known.frame_camera}
        if args.sim:
            from evseg_ros.sim.calibration_target import simulated_views  # noqa: PLC0415

            if args.poses < 1:
                print(f"evseg calibrate: --poses must be >= 1, got {args.poses}", file=sys.stderr)
                return 2
            truth = load_calibration(resolve_package_path(args.truth))
            views = simulated_views(truth, board, count=args.poses)
            if not (args.intrinsics or args.estimate_intrinsics):
                cameras = {"event_camera": truth.event_camera, "frame_camera": truth.frame_camera}
        else:
            if not args.events:
                print("evseg calibrate: --frames needs --events", file=sys.stderr)
                return 2
            views = load_paired_views(args.frames, args.events, event_size=args.event_size)
        frame_h, frame_w = views[0].frame_image.shape[:2]
        output_size, crop = args.output_size, None
        if truth is not None and output_size is None:
            output_size, crop = (truth.output_width, truth.output_height), truth.output_crop
        elif output_size is not None and not args.stretch:
            crop = aspect_crop((0, 0, frame_w, frame_h), *output_size)
        result = calibrate_rig(
            views,
            board,
            estimate_intrinsics=args.estimate_intrinsics,
            output_size=output_size,
            output_crop=crop,
            **cameras,
        )
        report = format_result(result)
        if truth is not None:
            mean, worst = mapping_error(result.calibration, truth)
            report += (
                f"\nmapping error vs the simulated rig (event pixels -> frame): "
                f"mean {mean:.3f} px, max {worst:.3f} px"
            )
        write_calibration(
            result.calibration,
            args.output,
            force=args.force,
            comment="Written by `evseg calibrate`.\n" + report,
        )
    except (
        CalibrationError,
        CalibrationEstimateError,
        FileExistsError,
        OSError,
        ValueError,
    ) as err:
        print(f"evseg calibrate: {err}", file=sys.stderr)
        return 2
    print(report)
    print(f"wrote {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from evseg_ros.record.topics import RecordingTopics  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="evseg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the rig graph in one process (no ros2 launch needed)")
    run.add_argument("--config", default=DEFAULT_CONFIG, help="ROS 2 parameter file")
    run.add_argument("--source", choices=("sim", "hardware"), help="override both drivers")
    run.add_argument("--backend", choices=("auto", "onnxruntime", "pytorch"))
    run.add_argument("--model", help="override segmentation model_path")
    run.add_argument("--duration", type=float, default=0.0, help="seconds to run (0 = forever)")
    run.add_argument("--bag", help="replay this recording through both drivers (source bag)")
    run.add_argument(
        "--pacing", choices=("realtime", "lockstep", "fast"), default="realtime",
        help="--bag: realtime at --rate, lockstep (every frame), or as fast as consumed",
    )
    run.add_argument("--rate", type=float, default=1.0, help="--bag: replay speed x recorded")
    run.add_argument("--loop", action="store_true", help="--bag: start over at the end")
    run.set_defaults(func=_cmd_run)

    demo = sub.add_parser(
        "demo",
        help="replay the simulated rig's recording through the graph and report figures",
        description=(
            "Render the simulated rig once into a recording (cached), replay it through the "
            "rig's nodes in real time at --rate, and report mIoU (fused vs frame-only), "
            "latency, drops and sync, with PNG panels and plots in --output."
        ),
    )
    demo.add_argument("--config", default=DEFAULT_CONFIG, help="ROS 2 parameter file")
    demo.add_argument(
        "--seconds", type=float, help="recording length [s] (default: the demo recording's)"
    )
    demo.add_argument(
        "--rate", type=float,
        help="replay speed x recorded (default: the demo's, which a busy 2-core machine sustains)",
    )
    demo.add_argument("--mode", choices=("realtime", "lockstep"), default="realtime")
    demo.add_argument("--output", default="output/demo", help="folder for the report and PNGs")
    demo.add_argument("--model", help="override segmentation model_path")
    demo.set_defaults(func=_cmd_demo)

    evaluate = sub.add_parser(
        "eval",
        help="replay a recording through the rig's nodes and score the masks",
        description=(
            "Replay a rosbag2 recording (MCAP or sqlite3) through the same nodes and parameter "
            "file as the live rig, pair every mask with the ground truth by exact stamp, and "
            "write report.json, report.md and PNG plots into --output."
        ),
    )
    evaluate.add_argument("bag", help="rosbag2 folder, .mcap or .db3")
    evaluate.add_argument("--output", required=True, help="folder for the report")
    evaluate.add_argument("--config", default=DEFAULT_CONFIG, help="ROS 2 parameter file")
    evaluate.add_argument("--model", help="override segmentation model_path")
    evaluate.add_argument(
        "--mode", choices=("realtime", "lockstep"), default="realtime",
        help="realtime: at --rate x recorded speed, drops counted; lockstep: every frame",
    )
    evaluate.add_argument("--rate", type=float, default=1.0, help="replay speed (realtime)")
    evaluate.add_argument(
        "--compare-frame-only", action="store_true",
        help="also score the frame-only baseline on the same frames",
    )
    evaluate.add_argument(
        "--frame-only-model", default="",
        help="frame-only baseline for --compare-frame-only: empty (default) = the evaluated "
        "model with an all-zero event frame, as the node's frame-only mode runs it; a path = "
        "a separate ONNX model",
    )
    evaluate.add_argument(
        "--labels", help="folder of label PNGs named <stamp_ns>.png (instead of a label topic)"
    )
    evaluate.add_argument("--events-topic", default=RecordingTopics.events)
    evaluate.add_argument("--frames-topic", default=RecordingTopics.frames)
    evaluate.add_argument("--truth-topic", default=RecordingTopics.ground_truth)
    evaluate.add_argument("--timeout", type=float, help="give up after this many seconds")
    faults = evaluate.add_argument_group(
        "fault injection",
        "faults the replaying drivers inject (times: seconds from the recording's start); the "
        "report gains the frames per mode and the mIoU during the faults",
    )
    faults.add_argument(
        "--drop-events", default="", metavar="START:DURATION[,...]",
        help="the event camera sends nothing in these intervals",
    )
    faults.add_argument(
        "--drop-frames", default="", metavar="START:DURATION[,...]",
        help="the frame camera sends nothing in these intervals",
    )
    faults.add_argument(
        "--packet-loss", type=float, default=0.0, metavar="P",
        help="fraction of EventPackets lost on the way to the accumulator (seeded)",
    )
    faults.add_argument("--fault-seed", type=int, default=0, help="seed of --packet-loss")
    evaluate.set_defaults(func=_cmd_eval)

    info = sub.add_parser("info", help="summarise an event recording (.raw or rosbag2) as JSON")
    info.add_argument("path", help="Prophesee .raw file, or rosbag2 folder / .db3 / .mcap")
    info.add_argument("--topic", help="EventPacket topic (default: the first one)")
    info.add_argument("--pretty", action="store_true", help="indent the JSON")
    info.set_defaults(func=_cmd_info)

    from evseg_ros.doctor import register as add_doctor_parser  # noqa: PLC0415
    from evseg_ros.nodes.record_cli import add_record_parser  # noqa: PLC0415 (no rclpy import)
    from evseg_ros.runtime.cli import add_backends_parser, add_build_engine_parser  # noqa: PLC0415
    from evseg_ros.sim.recording_cli import add_simulate_parser  # noqa: PLC0415
    from evseg_ros.train.cli import add_export_parser, add_train_parser  # no torch import

    add_simulate_parser(sub)
    add_record_parser(sub)
    add_train_parser(sub)
    add_export_parser(sub)
    add_backends_parser(sub)
    add_build_engine_parser(sub)
    add_doctor_parser(sub)

    calibrate = sub.add_parser(
        "calibrate",
        help="estimate the event->frame calibration from paired checkerboard views",
        description=(
            "Estimate the rig calibration (event->frame homography, optional intrinsics) from "
            "paired views of a checkerboard and write it as a calibration YAML. Either --sim "
            "(render a blinking board through the simulated rig of --truth) or --frames DIR "
            "with --events DIR: files are paired by name stem; frames are images, events are "
            "images (.png, an event frame of the blinking board) or .npy (an image array, or "
            "structured events with fields x, y, p, which need --event-size)."
        ),
    )
    source = calibrate.add_mutually_exclusive_group(required=True)
    source.add_argument("--sim", action="store_true", help="use the simulated rig")
    source.add_argument("--frames", help="folder of frame images (one per board pose)")
    calibrate.add_argument("--events", help="folder of event images / .npy, same stems")
    calibrate.add_argument(
        "--truth",
        default="config/calibration/sim_rig.yaml",
        help="--sim: calibration the simulated rig renders through",
    )
    calibrate.add_argument("--poses", type=int, default=6, help="--sim: board poses")
    calibrate.add_argument(
        "--board", default="9x6", help="inner corners COLUMNSxROWS (one odd, one even count)"
    )
    calibrate.add_argument("--square-mm", type=float, default=30.0, help="square size in mm")
    calibrate.add_argument("--event-size", type=image_size, help="WxH of raw-event .npy files")
    calibrate.add_argument(
        "--intrinsics",
        help="take both cameras' intrinsics from this "
        "calibration file (else --estimate-intrinsics or placeholders)",
    )
    calibrate.add_argument(
        "--estimate-intrinsics",
        action="store_true",
        help="cv2.calibrateCamera per camera (needs >= 3 poses)",
    )
    calibrate.add_argument(
        "--output-size", type=image_size,
        help="network grid WxH, e.g. 1034x617 (default: frame size)",
    )
    calibrate.add_argument(
        "--stretch",
        action="store_true",
        help="scale the whole frame onto "
        "--output-size instead of the largest centred crop of its aspect",
    )
    calibrate.add_argument("--output", required=True, help="calibration YAML to write")
    calibrate.add_argument("--force", action="store_true", help="replace an existing --output")
    calibrate.set_defaults(func=_cmd_calibrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
