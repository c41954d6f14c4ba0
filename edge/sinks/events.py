"""JSON lines, one per label change of a region; written at once:
{"time", "camera", "region", "label", "score", "novelty", "frame", "latency_ms"} ("region" is "frame" for the whole
frame; "label" is "unknown" for what the model was not taught, "novelty" null when the model carries no novelty
data: docs/unknown.md).

The file is appended to, so a restarted service keeps its history; "-" writes to standard output.

The file is rotated so that retention (edge.sinks.retention) can delete old events: when its first line is
from an earlier day than the line just written, or it holds `rotate_bytes` or more, it is renamed after the
time of its first line, events.jsonl -> events-20261207-011500.jsonl (a `-2` where that name is taken), and a
new events.jsonl is started. Rotation happens only right after a write, so it costs the frame loop one
rename a day.

When the file cannot be written (disk full, a read-only folder) the run goes on: the events wait in memory
(up to MAX_PENDING, the oldest dropped and counted beyond that) and are written, in order, once the file
takes them again, tried every few seconds (edge.sinks.outage). Each attempt is one write(2) of whole
lines; a write that fails part-way is cut back to the last whole line, so the file only ever holds
complete JSON lines.
"""

from __future__ import annotations

import collections
import datetime
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

from edge.errors import EdgerecError
from edge.live.result import FrameResult, Result
from edge.sinks.base import why_unwritable
from edge.sinks.outage import LOG, Outage
from edge.sinks.retention import FileFamily, stamped, stamped_path

MAX_PENDING = 10_000
"""Events kept in memory while the file cannot be written (about 150 bytes each)."""
ROTATE_BYTES = 16 << 20
"""A file this large is rotated (about 100 000 events), and one with lines from an earlier day."""


class EventsSink:
    wants_overlay = False

    def __init__(self, path: str | Path, max_pending: int = MAX_PENDING, rotate_bytes: int = ROTATE_BYTES) -> None:
        self.path = str(path)
        self.rotate_bytes = rotate_bytes
        self.rotated: list[Path] = []
        """The parts rotated away by this sink, oldest first."""
        self.events = 0
        """Events written to the file."""
        self.lost = 0
        """Events dropped because more than `max_pending` waited for a file that could not be written."""
        self.outage = Outage(f"--events {self.path}")
        self._pending: collections.deque[bytes] = collections.deque(maxlen=max_pending)
        self._fd = -1
        self._size = 0
        self._started: datetime.datetime | None = None  # the time of the open file's first line
        self._rotate_failed = False
        if self.path == "-":
            return
        self._open()
        self._started = first_line_time(Path(self.path)) if self._size else None

    def files(self) -> FileFamily:
        """What retention may delete: the rotated parts (never the file being appended to)."""
        path = Path(self.path)
        return FileFamily("events", path.parent, stamped(path.stem, path.suffix),
                          re.compile(re.escape(path.name)))

    def _open(self) -> None:
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise EdgerecError(f"--events {self.path}: cannot write it: {why_unwritable(self.path, error)}") from None
        self._size = os.fstat(self._fd).st_size

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        for region in result.regions:
            if region.changed:
                self._append(event(region))

    @property
    def pending(self) -> int:
        """Events waiting for the file."""
        return len(self._pending)

    def _append(self, record: dict) -> None:
        if len(self._pending) == self._pending.maxlen:
            self.lost += 1  # the deque drops the oldest
        self._pending.append((json.dumps(record) + "\n").encode())
        if self.outage.ready():
            self._flush()

    def _flush(self) -> None:
        if self._fd >= 0 and self._rotation_due():
            self._rotate()
        data = b"".join(self._pending)
        try:
            self._write(data)
        except OSError as error:
            self._cut_back()
            self.outage.failed(f"{error.strerror}", keeping=f"keeping up to {self._pending.maxlen} events in memory")
            return
        if self._started is None and self._size == 0:
            self._started = datetime.datetime.fromisoformat(json.loads(self._pending[0])["time"])
        self._size += len(data)
        self.events += len(self._pending)
        self._pending.clear()
        self.outage.recovered(f"{self.lost} event(s) lost" if self.lost else "no event lost")

    def _rotation_due(self) -> bool:
        """The open file holds lines from an earlier day, or rotate_bytes or more (and rotating has not failed)."""
        if self._size == 0 or self._started is None or self._rotate_failed:
            return False
        return self._size >= self.rotate_bytes or self._started.date() != datetime.date.today()

    def _rotate(self) -> None:
        """Rename the file after its first line's time and start a new one; if that fails, go on appending."""
        path = Path(self.path)
        target = stamped_path(path, self._started)
        try:
            os.rename(path, target)
        except OSError as error:
            self._rotate_failed = True  # one line, then the file just grows: events matter more than rotation
            LOG.warning("%s: cannot rotate it to %s (%s); appending to it as it is", self.outage.what, target.name,
                        error.strerror)
            return
        os.close(self._fd)
        self._fd = -1
        self.rotated.append(target)
        self._open()
        self._started = None

    def _write(self, data: bytes) -> None:
        if self._fd < 0:
            sys.stdout.write(data.decode())
            sys.stdout.flush()
            return
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    def _cut_back(self) -> None:
        """Remove the part of a failed write that reached the file: it keeps only whole lines."""
        if self._fd >= 0:
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                pass

    def close(self) -> None:
        if self._pending:
            self._flush()  # a last try
            if self._pending:
                self.lost += len(self._pending)
                LOG.warning("%s: %d event(s) never written: the file still could not be written at the end of "
                            "the run", self.outage.what, len(self._pending))
                self._pending.clear()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def event(result: Result) -> dict:
    """A region's label change as events and MQTT give it."""
    return {
        "time": wall_clock(result.captured).isoformat(timespec="milliseconds"),
        "camera": result.camera,
        "region": result.region,
        "label": result.label,
        "score": round(result.score, 4),
        "novelty": round(result.novelty, 4) if result.novelty == result.novelty else None,  # NaN: none
        "frame": result.frame_index,
        "latency_ms": round(result.latency_ms, 1),
    }


def wall_clock(monotonic: float) -> datetime.datetime:
    """The local date and time (with UTC offset) at which time.monotonic() read `monotonic`."""
    seconds = time.time() - (time.monotonic() - monotonic)
    return datetime.datetime.fromtimestamp(seconds).astimezone()


def first_line_time(path: Path) -> datetime.datetime:
    """The "time" of the file's first line; the file's modification time where that cannot be read."""
    try:
        with open(path, "rb") as file:
            return datetime.datetime.fromisoformat(json.loads(file.readline(4096))["time"])
    except (OSError, ValueError, KeyError, TypeError):
        return datetime.datetime.fromtimestamp(os.path.getmtime(path)).astimezone()
