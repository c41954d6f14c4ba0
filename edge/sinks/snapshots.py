"""A JPEG of the camera's frame (no overlay) each time the label changes, written atomically.

Names sort by time: 20250101T120000.123-f000042-tabby_cat.jpg (local time, frame index, label).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import cv2
import numpy as np

from edge.errors import EdgerecError
from edge.result import Result
from edge.sinks.base import why_unwritable
from edge.sinks.events import wall_clock


class SnapshotSink:
    wants_overlay = False

    def __init__(self, directory: str | Path, quality: int = 90) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise EdgerecError(f"--snapshots {self.directory}: cannot create it ({error.strerror})") from None
        probe = self.directory / ".edgerec-probe.partial"  # a folder that exists may still refuse files
        try:
            probe.touch()
            probe.unlink()
        except OSError as error:
            why = why_unwritable(probe, error)
            raise EdgerecError(f"--snapshots {self.directory}: cannot write there: {why}") from None
        self.params = [cv2.IMWRITE_JPEG_QUALITY, quality]
        self.saved = 0

    def write(self, frame: np.ndarray, result: Result) -> None:
        if not result.changed:
            return
        ok, jpeg = cv2.imencode(".jpg", frame, self.params)
        if not ok:
            return
        path = self.directory / snapshot_name(result)
        partial = path.with_name(f".{path.name}.partial")
        try:
            partial.write_bytes(jpeg.tobytes())
            os.replace(partial, path)
        except OSError as error:
            raise EdgerecError(f"--snapshots: cannot write {path} ({error.strerror})") from None
        self.saved += 1

    def close(self) -> None:
        pass


def snapshot_name(result: Result) -> str:
    when = wall_clock(result.captured)
    label = re.sub(r"[^\w.-]+", "_", result.label).strip("_")[:60] or "label"
    return f"{when:%Y%m%dT%H%M%S}.{when.microsecond // 1000:03d}-f{result.frame_index:06d}-{label}.jpg"
