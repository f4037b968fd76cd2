from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from evseg_ros.cli import main
from evseg_ros.geometry.calibrate import Checkerboard, mapping_error
from evseg_ros.geometry.calibration import load_calibration
from evseg_ros.sim.calibration_target import render_calibration_shots

REPO_ROOT = Path(__file__).resolve().parents[1]
SIM_RIG = str(REPO_ROOT / "config" / "calibration" / "sim_rig.yaml")


def test_calibrate_sim_writes_the_file_and_refuses_to_overwrite(tmp_path, capsys, sim_calibration):
    out = tmp_path / "rig.yaml"
    base = ["calibrate", "--sim", "--truth", SIM_RIG, "--output", str(out)]
    args = [*base, "--poses", "4"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    print(printed)
    assert "reprojection error" in printed and "mapping error vs the simulated rig" in printed
    calibration = load_calibration(out)
    mean, worst = mapping_error(calibration, sim_calibration)
    assert mean < 0.5 and worst < 0.5
    assert out.read_text().startswith("# Written by `evseg calibrate`.")

    before = out.read_text()
    assert main(args) == 2
    assert "exists" in capsys.readouterr().err
    assert out.read_text() == before
    assert main([*base, "--poses", "3", "--force"]) == 0
    assert out.read_text() != before


def test_calibrate_real_folders_with_pngs_and_raw_events(tmp_path, capsys, sim_calibration):
    board = Checkerboard(9, 6)
    frames, events = tmp_path / "frames", tmp_path / "events"
    frames.mkdir()
    events.mkdir()
    for index, shot in enumerate(render_calibration_shots(sim_calibration, board, count=3)):
        cv2.imwrite(str(frames / f"pose{index}.png"), shot.frame_image)
        if index == 0:  # an event frame image ...
            cv2.imwrite(str(events / f"pose{index}.png"), shot.event_image)
        else:  # ... or the raw events of the blink window
            np.save(events / f"pose{index}.npy", shot.events)
    (frames / "unpaired.png").write_bytes((frames / "pose0.png").read_bytes())
    out = tmp_path / "rig.yaml"
    code = main(
        [
            "calibrate",
            "--frames",
            str(frames),
            "--events",
            str(events),
            "--board",
            "9x6",
            "--event-size",
            "400x225",
            "--output-size",
            "1034x617",
            "--output",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "pose0" in printed and "pose2" in printed and "unpaired" not in printed
    calibration = load_calibration(out)
    assert (calibration.output_width, calibration.output_height) == (1034, 617)
    _x0, _y0, w, h = calibration.output_crop
    assert w == 320.0 and abs(w / h - 1034 / 617) < 1e-9  # largest crop of the output's aspect
    mean, worst = mapping_error(calibration, sim_calibration)
    assert mean < 0.5 and worst < 0.5


def test_calibrate_bad_arguments(tmp_path, capsys):
    out = str(tmp_path / "x.yaml")
    assert main(["calibrate", "--frames", str(tmp_path), "--output", out]) == 2
    assert "--events" in capsys.readouterr().err
    assert (
        main(
            [
                "calibrate",
                "--frames",
                str(tmp_path / "nope"),
                "--events",
                str(tmp_path),
                "--output",
                out,
            ]
        )
        == 2
    )
    assert "not a folder" in capsys.readouterr().err
    (tmp_path / "f").mkdir()
    (tmp_path / "e").mkdir()
    assert (
        main(
            [
                "calibrate",
                "--frames",
                str(tmp_path / "f"),
                "--events",
                str(tmp_path / "e"),
                "--output",
                out,
            ]
        )
        == 2
    )
    assert "no file stem" in capsys.readouterr().err
    assert main(["calibrate", "--sim", "--board", "seven", "--output", out]) == 2
    assert "9x6" in capsys.readouterr().err
    assert main(["calibrate", "--sim", "--poses", "0", "--output", out]) == 2
    assert "--poses" in capsys.readouterr().err
    assert not Path(out).exists()
