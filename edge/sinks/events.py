"""JSON lines, one per label change of a region; flushed at once:
{"time", "camera", "region", "label", "score", "frame", "latency_ms"} ("region" is "frame" for the whole frame).

The file is appended to, so a restarted service keeps its history; "-" writes to standard output.
"""

from __future__ import annotations

import datetime
import json
import sys
import time
from pathlib import Path
from typing import TextIO

import numpy as np

from edge.errors import EdgerecError
from edge.result import FrameResult, Result
from edge.sinks.base import why_unwritable


class EventsSink:
    wants_overlay = False

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.events = 0
        if self.path == "-":
            self._file: TextIO = sys.stdout
            return
        try:
            self._file = open(self.path, "a", encoding="utf-8")
        except OSError as error:
            raise EdgerecError(f"--events {self.path}: cannot write it: {why_unwritable(self.path, error)}") from None

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        for region in result.regions:
            if region.changed:
                self._append(event(region))

    def _append(self, record: dict) -> None:
        try:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        except OSError as error:
            raise EdgerecError(f"--events {self.path}: cannot write ({error.strerror})") from None
        self.events += 1

    def close(self) -> None:
        if self._file is not sys.stdout:
            self._file.close()


def event(result: Result) -> dict:
    """A region's label change as events and MQTT give it."""
    return {
        "time": wall_clock(result.captured).isoformat(timespec="milliseconds"),
        "camera": result.camera,
        "region": result.region,
        "label": result.label,
        "score": round(result.score, 4),
        "frame": result.frame_index,
        "latency_ms": round(result.latency_ms, 1),
    }


def wall_clock(monotonic: float) -> datetime.datetime:
    """The local date and time (with UTC offset) at which time.monotonic() read `monotonic`."""
    seconds = time.time() - (time.monotonic() - monotonic)
    return datetime.datetime.fromtimestamp(seconds).astimezone()
