"""Collect crops of a region for teaching: the frame loop hands over a copy when one is due, a thread saves it.

One session at a time: a camera's region, a label, every `every_s` seconds and (optionally) whenever motion
touches the region. Crops are JPEGs in the `DATA/<label>/*.jpg` layout `edgerec teach` reads, one DATA per
region: ROOT/<camera>/<region>/data/<label>/<time>-<n>.jpg. The frame loop only checks a clock (and, for
motion, the motion boxes) per frame; it copies the crop only when one is due, and the JPEG encoding and the
disk write happen on the collector's own thread. Names are checked against NAME (letters, digits, _ and -).
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.errors import EdgerecError
from edge.files import write_bytes_atomic
from edge.live.regions import pixel_rect
from edge.live.result import FrameResult

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
"""Camera, region and label names (the same rule as region names in the config)."""
CROP_FILE = re.compile(r"[0-9]{1,20}-[0-9]{1,9}\.jpg")
"""The collector's file names: milliseconds since the epoch, a counter."""
MOTION_GAP_S = 0.5
"""Motion-triggered crops at most this often."""
JPEG_QUALITY = 92
PAUSED = ("paused: a window or a recording draws the overlay on every frame, and crops must not show it; turn "
          "that output off while collecting")


def check_name(value: str, what: str) -> str:
    if not NAME.fullmatch(value):
        raise EdgerecError(f"{what} {value[:80]!r} is not valid; valid: 1-64 letters, digits, _ or -, starting with "
                           "a letter or digit")
    return value


def check_crop_file(value: str) -> str:
    if not CROP_FILE.fullmatch(value):
        raise EdgerecError(f"file {value[:80]!r} is not valid; valid: a collected crop's name, e.g. "
                           "1733130000000-1.jpg")
    return value


@dataclass(frozen=True)
class CollectOptions:
    camera: str
    region: str
    label: str
    every_s: float = 1.0
    """A crop every this many seconds; 0: only on motion."""
    on_motion: bool = False
    """Also a crop whenever motion touches the region (at most every MOTION_GAP_S), where the camera has a
    motion detector (a region triggered by motion)."""
    max_crops: int = 500
    """The session stops itself once the label holds this many crops."""

    def __post_init__(self) -> None:
        for value, what in ((self.camera, "camera"), (self.region, "region"), (self.label, "label")):
            check_name(value, what)
        if not (self.every_s > 0 or self.on_motion) or self.every_s < 0:
            raise EdgerecError(f"collect every {self.every_s} s without motion; valid: every_s > 0, or on_motion")
        if not 1 <= self.max_crops <= 10000:
            raise EdgerecError(f"collect max_crops {self.max_crops}; valid: 1-10000")


class Collector:
    """What the web sink calls per frame (`claim`, `take`) and what the routes call (start, stop, list, ...)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.session: CollectOptions | None = None
        self.saved = self.dropped = 0
        self.error = ""
        self._next_due = 0.0
        self._last_motion_crop = 0.0
        self._motion_touch = False
        self._claimed = False
        self._counter = 0
        self._queue: queue.Queue[tuple[Path, np.ndarray] | None] = queue.Queue(maxsize=4)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # file operations of the routes against the writer

    def data_dir(self, camera: str, region: str) -> Path:
        return self.root / check_name(camera, "camera") / check_name(region, "region") / "data"

    # --- the routes ---

    def start(self, options: CollectOptions) -> None:
        """Start a session; refused when its label already holds `max_crops` crops (the cap is per label, on
        disk, whatever the sessions)."""
        held = len(self.listing(options.camera, options.region).get(options.label, []))
        if held >= options.max_crops:
            raise EdgerecError(f"label {options.label} of {options.camera}/{options.region} holds {held} crops, the "
                               f"most kept per label ({options.max_crops}); delete some to collect more")
        if self._thread is None:
            self._thread = threading.Thread(target=self._write_loop, name="edgerec-collect", daemon=True)
            self._thread.start()
        self.saved = self.dropped = 0
        self.error = ""
        self._next_due = time.monotonic()
        self._claimed = False
        self.session = options

    def stop(self) -> None:
        self.session = None

    def close(self) -> None:
        self.session = None
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)

    def listing(self, camera: str, region: str) -> dict[str, list[str]]:
        """Every label of the region with its crops' file names, oldest first."""
        data = self.data_dir(camera, region)
        if not data.is_dir():
            return {}
        return {folder.name: sorted((f.name for f in folder.iterdir() if CROP_FILE.fullmatch(f.name)), key=_order)
                for folder in sorted(data.iterdir()) if folder.is_dir() and NAME.fullmatch(folder.name)}

    def crop_path(self, camera: str, region: str, label: str, name: str) -> Path:
        return self.data_dir(camera, region) / check_name(label, "label") / check_crop_file(name)

    def delete(self, camera: str, region: str, label: str, name: str) -> None:
        path = self.crop_path(camera, region, label, name)
        with self._lock:
            try:
                path.unlink()
            except FileNotFoundError:
                raise EdgerecError(f"no crop {label}/{name}") from None
            _remove_if_empty(path.parent)

    def relabel(self, camera: str, region: str, label: str, name: str, new_label: str) -> None:
        path = self.crop_path(camera, region, label, name)
        target = self.crop_path(camera, region, new_label, name)
        with self._lock:
            if not path.is_file():
                raise EdgerecError(f"no crop {label}/{name}")
            target.parent.mkdir(parents=True, exist_ok=True)
            path.replace(target)
            _remove_if_empty(path.parent)

    def status(self) -> dict:
        session = self.session
        return {"active": session is not None, "camera": session and session.camera,
                "region": session and session.region, "label": session and session.label,
                "every_s": session and session.every_s, "on_motion": session and session.on_motion,
                "saved": self.saved, "dropped": self.dropped, "error": self.error}  # fmt: skip

    # --- the frame loop (these must stay cheap) ---

    def claim(self, camera: str) -> bool:
        """Before the overlay is drawn (the web sink is asked whether it shows this camera's frame): True when
        this frame gives a crop, which the web sink then leaves undrawn."""
        self._claimed = self._due(camera)
        return self._claimed

    def take(self, frame: np.ndarray, result: FrameResult, asked: bool) -> bool:
        """After the overlay: copy the crop if `claim` said so for this frame. `asked`: whether the web sink was
        asked before the overlay was drawn; if not, an output before it (a window, a recording) drew on the
        frame, and no crop is taken. True when the frame went to a crop."""
        session = self.session
        if session is None or session.camera != result.camera:
            return False
        region = next((r for r in result.regions if r.region == session.region), None)
        if session.on_motion and region is not None:
            self._motion_touch = touches(result, region.box)
        claimed, self._claimed = self._claimed, False
        if not claimed:
            if not asked and self._due(result.camera):
                self.error = PAUSED
            return False
        if region is None:
            return False
        self.error = ""
        now = time.monotonic()
        if session.every_s > 0:
            self._next_due = max(self._next_due + session.every_s, now)
        self._last_motion_crop = now
        rows, cols = pixel_rect(region.box, frame.shape[0], frame.shape[1])
        crop = frame[rows, cols].copy()  # the only allocation, and only when a crop is due
        self._counter += 1
        path = self.data_dir(session.camera, session.region) / session.label / \
            f"{time.time_ns() // 1_000_000}-{self._counter}.jpg"
        try:
            self._queue.put_nowait((path, crop))
        except queue.Full:
            self.dropped += 1
        return True

    def _due(self, camera: str) -> bool:
        session = self.session
        if session is None or session.camera != camera:
            return False
        now = time.monotonic()
        return (session.every_s > 0 and now >= self._next_due) or (
            self._motion_touch and now - self._last_motion_crop >= MOTION_GAP_S)

    # --- the collector's thread ---

    def _write_loop(self) -> None:
        while (item := self._queue.get()) is not None:
            path, crop = item
            session = self.session
            try:
                ok, jpeg = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                with self._lock:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    write_bytes_atomic(path, jpeg.tobytes())
                    count = sum(1 for f in path.parent.iterdir() if CROP_FILE.fullmatch(f.name))
                self.saved += 1
                if session is not None and count >= session.max_crops and self.session is session:
                    self.session = None
                    self.error = f"stopped: {path.parent.name} holds {count} crops (max_crops)"
            except OSError as error:
                self.session = None
                self.error = f"stopped: cannot write {path}: {error.strerror or error}"


def touches(result: FrameResult, box: Sequence[float]) -> bool:
    """Whether any moving blob of the camera's newest frame overlaps `box` (fractions x, y, w, h)."""
    motion = result.motion
    if motion is None or not motion.moving:
        return False
    x, y, w, h = box
    return any(bx < x + w and x < bx + bw and by < y + h and y < by + bh for bx, by, bw, bh in motion.boxes)


def _order(name: str) -> tuple[int, int]:
    stamp, _, counter = name[:-4].partition("-")
    return int(stamp), int(counter)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass

