"""``evseg info`` on the real recordings in ../shared/data and on bags written here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evseg_ros.cli import main
from evseg_ros.events.bag import (
    EVENT_PACKET_DEFINITION,
    EVENT_PACKET_MSGTYPE,
    BagError,
    event_packet_typestore,
    write_event_packets,
)
from evseg_ros.events.evt3 import Evt3EncoderState, encode_evt3
from evseg_ros.events.recording_info import recording_info
from evseg_ros.events.types import EVENT_DTYPE, TRIGGER_DTYPE

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
TRIGGER_BAG = DATA / "event_camera_codecs" / "test_data_evt3_trigger"
EVT3_RAW = DATA / "expelliarmus" / "evt3_sample.raw"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"recordings not found in {DATA}")


@needs_data
def test_trigger_bag_golden_counts():
    info = recording_info(TRIGGER_BAG)
    assert info["kind"] == "rosbag2" and info["topic"] == "/event_camera/events"
    assert (info["encoding"], info["width"], info["height"]) == ("evt3", 1280, 720)
    assert info["packets"] == 105
    assert (info["cd_events"], info["cd_on"], info["cd_off"]) == (82_469, 41_439, 41_030)
    assert (info["trigger_rise"], info["trigger_fall"]) == (1, 1)
    assert info["triggers_per_channel"] == {"0": {"rise": 1, "fall": 1}}
    assert info["decoder_counters"]["other_words"] == 15_688
    assert info["decoder_counters"]["continued_words"] == 25_024
    assert all(value == 0 for value in info["decode_errors"].values())
    assert info["bag_duration_s"] == pytest.approx(0.84, abs=0.01)
    assert info["last_timestamp_us"] - info["first_timestamp_us"] == pytest.approx(
        info["duration_s"] * 1e6
    )


@needs_data
def test_raw_file_counts_match_the_reference_decode():
    reference = np.load(DATA / "expelliarmus" / "evt3_sample.npy")
    info = recording_info(EVT3_RAW)
    assert (info["kind"], info["encoding"], info["width"], info["height"]) == (
        "raw", "evt3", 1280, 720,
    )
    assert info["cd_events"] == len(reference) == 219_596
    assert info["cd_on"] == int(np.count_nonzero(reference["p"]))
    assert info["first_timestamp_us"] == int(reference["t"][0])
    assert info["decode_errors"]["unknown_words"] == 0


@needs_data
def test_evt2_raw_file():
    info = recording_info(DATA / "expelliarmus" / "evt2_sample.raw")
    assert (info["encoding"], info["width"], info["height"]) == ("evt2", 640, 480)
    assert info["cd_events"] == 539_481


def test_vendored_message_definition_matches():
    vendored = REPO / "scripts/interfaces/event_camera_msgs/msg/EventPacket.msg"
    fields = [
        line.split("#")[0].split() for line in vendored.read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    assert fields == [line.split() for line in EVENT_PACKET_DEFINITION.splitlines()]


def _stream(rng):
    events = np.zeros(5000, dtype=EVENT_DTYPE)
    events["t"] = np.sort(rng.integers(0, 1_000_000, len(events)))
    events["x"] = rng.integers(0, 400, len(events))
    events["y"] = rng.integers(0, 225, len(events))
    events["p"] = rng.integers(0, 2, len(events))
    triggers = np.zeros(6, dtype=TRIGGER_DTYPE)
    triggers["t"] = [100, 300, 500_000, 500_200, 900_000, 900_100]
    triggers["channel"] = [0, 0, 0, 0, 2, 2]
    triggers["value"] = [1, 0, 1, 0, 1, 0]
    return events, triggers


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_round_trip_for_every_storage(tmp_path, storage):
    events, triggers = _stream(np.random.default_rng(3))
    cls = event_packet_typestore().types[EVENT_PACKET_MSGTYPE]
    header_cls = event_packet_typestore().types["std_msgs/msg/Header"]
    time_cls = event_packet_typestore().types["builtin_interfaces/msg/Time"]
    state = Evt3EncoderState()
    packets = []
    for seq, start in enumerate(range(0, 1_000_000, 100_000)):
        end = start + 100_000
        chunk = encode_evt3(
            events[(events["t"] >= start) & (events["t"] < end)],
            triggers[(triggers["t"] >= start) & (triggers["t"] < end)], state=state,
        )
        if seq == 7:
            continue  # a lost packet: reported as a seq gap
        msg = cls(
            header=header_cls(stamp=time_cls(sec=1, nanosec=start), frame_id="ev"),
            height=225, width=400, seq=seq, time_base=0, encoding="evt3", is_bigendian=False,
            events=np.frombuffer(chunk, dtype=np.uint8),
        )
        packets.append((1_000_000_000 + start * 1000, msg))
    bag = tmp_path / "bag"
    write_event_packets(bag, packets, storage=storage)
    info = recording_info(bag)
    lost = (events["t"] >= 700_000) & (events["t"] < 800_000)
    assert info["packets"] == 9 and info["decode_errors"]["seq_gaps"] == 1
    assert info["cd_events"] == int(np.count_nonzero(~lost))
    assert info["cd_on"] == int(np.count_nonzero(events["p"][~lost]))
    assert info["triggers_per_channel"] == {
        "0": {"rise": 2, "fall": 2},
        "2": {"rise": 1, "fall": 1},
    }
    assert info["bag_duration_s"] == pytest.approx(0.9)
    with pytest.raises(BagError, match="refusing to overwrite"):
        write_event_packets(bag, packets, storage=storage)


def test_cli_prints_json_and_reports_bad_input(tmp_path, capsys):
    damaged = tmp_path / "damaged.raw"
    damaged.write_bytes(b"% format EVT3;height=720;width=1280\n% no line end" + b"x" * 300)
    assert main(["info", str(damaged)]) == 2
    assert "damaged.raw" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "missing_bag")]) == 2
    assert "missing_bag" in capsys.readouterr().err
    raw = tmp_path / "ok.raw"
    events, triggers = _stream(np.random.default_rng(4))
    raw.write_bytes(b"% format EVT3;height=225;width=400\n% end\n" + encode_evt3(events, triggers))
    assert main(["info", str(raw)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["width"], info["height"], info["cd_events"]) == (400, 225, 5000)
    assert info["trigger_rise"] == 3 and info["trigger_fall"] == 3
