"""``evseg info``: what is in an event recording, decoded end to end.

The first thing to run on a new recording: sensor size, encoding, duration, CD event and
trigger-edge counts (per channel), the time span, and every decode problem the decoder counted.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from evseg_ros.events.bag import read_event_packets
from evseg_ros.events.decoders import create_decoder
from evseg_ros.events.evt3 import read_raw_file

#: Decoder counters reported under ``decode_errors`` (the others describe healthy streams).
_ERROR_COUNTERS = ("unknown_words", "out_of_bounds", "time_backwards")


class _Tally:
    """Running counts over decoded chunks, so a recording never has to fit in memory."""

    def __init__(self) -> None:
        self.cd_on = 0
        self.cd_off = 0
        self.first_us: int | None = None
        self.last_us: int | None = None
        self.triggers: dict[int, dict[str, int]] = {}

    def add(self, events: np.ndarray, triggers: np.ndarray) -> None:
        on = int(np.count_nonzero(events["p"]))
        self.cd_on += on
        self.cd_off += len(events) - on
        for times in (events["t"], triggers["t"]):
            if len(times):
                first, last = int(times.min()), int(times.max())
                self.first_us = first if self.first_us is None else min(self.first_us, first)
                self.last_us = last if self.last_us is None else max(self.last_us, last)
        for channel in np.unique(triggers["channel"]).tolist():
            values = triggers["value"][triggers["channel"] == channel]
            counts = self.triggers.setdefault(int(channel), {"rise": 0, "fall": 0})
            rises = int(np.count_nonzero(values))
            counts["rise"] += rises
            counts["fall"] += len(values) - rises

    def summary(self) -> dict[str, Any]:
        span = None
        if self.first_us is not None and self.last_us is not None:
            span = (self.last_us - self.first_us) / 1e6
        return {
            "duration_s": span,
            "first_timestamp_us": self.first_us,
            "last_timestamp_us": self.last_us,
            "cd_events": self.cd_on + self.cd_off,
            "cd_on": self.cd_on,
            "cd_off": self.cd_off,
            "trigger_rise": sum(c["rise"] for c in self.triggers.values()),
            "trigger_fall": sum(c["fall"] for c in self.triggers.values()),
            "triggers_per_channel": {str(k): v for k, v in sorted(self.triggers.items())},
        }


def _decode_all(chunks: Iterable[Any], encoding: str, width: int, height: int) -> dict[str, Any]:
    decoder = create_decoder(encoding, width=width, height=height)
    tally = _Tally()
    for chunk in chunks:
        decoded = decoder.decode(chunk)
        tally.add(decoded.events, decoded.triggers)
    counters = decoder.counters.as_dict()
    info = tally.summary()
    info["decode_errors"] = {name: counters[name] for name in _ERROR_COUNTERS}
    info["decode_errors"]["trailing_bytes"] = decoder.buffered_bytes
    info["decoder_counters"] = counters
    return info


def raw_file_info(path: str | Path, *, chunk_bytes: int = 1 << 20) -> dict[str, Any]:
    """Summarise a Prophesee ``.raw`` file (EVT3 or EVT2)."""
    header, payload = read_raw_file(path)
    encoding = str(header.get("format", "")).lower()
    width, height = int(header.get("width", 1280)), int(header.get("height", 720))
    chunks = (payload[i : i + chunk_bytes] for i in range(0, len(payload), chunk_bytes))
    info = {
        "path": str(path), "kind": "raw", "encoding": encoding, "width": width,
        "height": height, "payload_bytes": len(payload),
    }
    info.update(_decode_all(chunks, encoding, width, height))
    return info


def bag_info(path: str | Path, *, topic: str | None = None) -> dict[str, Any]:
    """Summarise the EventPackets of a rosbag2 recording (one topic; the first if not given)."""
    packets = read_event_packets(path, topic=topic)
    first_topic, first_time, first = next(packets)
    state = {"packets": 0, "seq_gaps": 0, "last_seq": None, "bag_times": [first_time, first_time]}
    mismatched: dict[str, int] = {"encoding": 0, "geometry": 0}

    def chunks():
        for current_topic, bag_time, msg in chain([(first_topic, first_time, first)], packets):
            if current_topic != first_topic:
                continue
            state["packets"] += 1
            state["bag_times"][1] = bag_time
            if state["last_seq"] is not None and msg.seq != state["last_seq"] + 1:
                state["seq_gaps"] += 1
            state["last_seq"] = msg.seq
            if msg.encoding != first.encoding:
                mismatched["encoding"] += 1
                continue
            if (msg.width, msg.height) != (first.width, first.height):
                mismatched["geometry"] += 1
                continue
            yield msg.events

    info: dict[str, Any] = {
        "path": str(path), "kind": "rosbag2", "topic": first_topic, "encoding": first.encoding,
        "width": int(first.width), "height": int(first.height),
    }
    info.update(_decode_all(chunks(), first.encoding, int(first.width), int(first.height)))
    info["packets"] = state["packets"]
    info["bag_duration_s"] = (state["bag_times"][1] - state["bag_times"][0]) / 1e9
    info["decode_errors"]["seq_gaps"] = state["seq_gaps"]
    info["decode_errors"]["packets_with_other_encoding"] = mismatched["encoding"]
    info["decode_errors"]["packets_with_other_geometry"] = mismatched["geometry"]
    return info


def recording_info(path: str | Path, *, topic: str | None = None) -> dict[str, Any]:
    """Dispatch on what ``path`` is: a ``.raw`` file, or a rosbag2 folder / file."""
    path = Path(path)
    if path.suffix == ".raw":
        return raw_file_info(path)
    return bag_info(path, topic=topic)
