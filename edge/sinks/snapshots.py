"""JPEGs of the camera's frame (no overlay) each time a region's label changes, written atomically.

Names sort by time: 20250101T120000.123-f000042-tabby_cat.jpg (local time, frame index, label) for the
whole-frame region; for a named region the full frame and the region's crop,
20250101T120000.123-f000042-garage-door-open.jpg and ...-open.crop.jpg (camera, region, label).

When the folder cannot take a file (disk full, read-only) the run goes on: the snapshots of that moment are
skipped and counted (`lost`), the partial file removed, and the next label change after a few seconds tries
again (edge.sinks.outage); nothing is encoded meanwhile. A file under its final name is always complete.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import cv2
import numpy as np

from edge.errors import EdgerecError
from edge.live.regions import pixel_rect
from edge.live.result import FrameResult, Result
from edge.sinks.base import why_unwritable
from edge.sinks.events import wall_clock
from edge.sinks.outage import Outage
from edge.sinks.retention import FileFamily

SNAPSHOT_FILE = re.compile(r"[0-9]{8}T[0-9]{6}\.[0-9]{3}-f[0-9]{6,}-[\w.-]+\.jpg")
"""The names snapshot_name gives (the crops' .crop.jpg included)."""


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
        """Files written."""
        self.lost = 0
        """Label changes whose snapshots could not be written."""
        self.outage = Outage(f"--snapshots {self.directory}")

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        changed = [region for region in result.regions if region.changed]
        if not changed:
            return
        if not self.outage.ready():
            self.lost += len(changed)
            return
        whole = self._encode(frame)  # the full frame's JPEG, once however many regions changed
        for index, region in enumerate(changed):
            try:
                self._save_change(frame, whole, region)
            except OSError as error:
                self.lost += len(changed) - index
                self.outage.failed(error.strerror or str(error), keeping="skipping snapshots meanwhile")
                return
        self.outage.recovered(f"{self.lost} label change(s) without snapshots" if self.lost else "")

    def _save_change(self, frame: np.ndarray, whole: np.ndarray, region: Result) -> None:
        name = snapshot_name(region)
        self._save(name, whole)
        if not region.whole_frame:
            rows, cols = pixel_rect(region.box, frame.shape[0], frame.shape[1])
            self._save(name[: -len(".jpg")] + ".crop.jpg", self._encode(frame[rows, cols]))

    def _encode(self, image: np.ndarray) -> np.ndarray:
        ok, jpeg = cv2.imencode(".jpg", image, self.params)
        if not ok:
            raise EdgerecError(f"--snapshots: OpenCV could not encode a {image.shape} frame as JPEG")
        return jpeg

    def _save(self, name: str, jpeg: np.ndarray) -> None:
        path = self.directory / name
        partial = path.with_name(f".{path.name}.partial")
        try:
            partial.write_bytes(jpeg.tobytes())
            os.replace(partial, path)
        except OSError:
            with contextlib.suppress(OSError):
                partial.unlink()  # frees what it took
            raise
        self.saved += 1

    def files(self) -> FileFamily:
        """What retention may delete: the JPEGs named as `snapshot_name` names them."""
        return FileFamily("snapshots", self.directory, SNAPSHOT_FILE)

    def close(self) -> None:
        pass


def snapshot_name(result: Result) -> str:
    when = wall_clock(result.captured)
    label = re.sub(r"[^\w.-]+", "_", result.label).strip("_")[:60] or "label"
    where = "" if result.whole_frame else f"{result.camera}-{result.region}-"
    return f"{when:%Y%m%dT%H%M%S}.{when.microsecond // 1000:03d}-f{result.frame_index:06d}-{where}{label}.jpg"
