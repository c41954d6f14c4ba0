"""`edgerec capture`: save frames of a source as JPEGs into OUT/LABEL/, the image-folder layout training reads.

    OUT/
      LABEL/20250101T120000.123-f000042.jpg      local time of capture, source frame index

One frame is kept every `every` seconds: of the clip's own time for a video file (so a file gives the same
images paced or read as fast as possible), of the clock for a camera or stream. Each JPEG is written under
a hidden temporary name and then linked to its final name, so a file under a final name is always complete
and an existing file is never replaced (a taken name gets a -2, -3, ... suffix). Training skips hidden
files, so a temporary file left by a crash is never read as an image.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.errors import EdgerecError
from edge.live.capture import Frame, Source, SourceOptions, SourceStatus, StateCallback, open_source
from edge.sinks.events import wall_clock

POLL_S = 0.1  # the longest the loop waits for a frame before looking at the stop event again


@dataclass(frozen=True)
class CaptureOptions:
    source: SourceOptions
    """What to read and how (URI, camera requests, pacing, loop, timeouts)."""
    out: Path
    """The dataset folder; images go into its subfolder `label`."""
    label: str
    """The class name: one folder name (no path separators, not hidden)."""
    every: float = 0.5
    """Seconds between kept frames (video file: of the clip's time; live source: of the clock)."""
    max_images: int | None = None
    """Stop after saving this many images; None: until the source ends or the stop event."""
    quality: int = 95
    """JPEG quality, 1-100."""

    def __post_init__(self) -> None:
        label = self.label
        if not label or label in (".", "..") or label.startswith(".") or "/" in label or os.sep in label:
            raise EdgerecError(f"label {label!r} is not a folder name; valid: a name like 'cat' or 'red_mug' "
                               "(no '/', not starting with '.')")
        if not self.every > 0:
            raise EdgerecError(f"every {self.every} is not positive; valid: seconds > 0")
        if self.max_images is not None and self.max_images < 1:
            raise EdgerecError(f"max {self.max_images} is not positive; valid: an integer >= 1")
        if not 1 <= self.quality <= 100:
            raise EdgerecError(f"JPEG quality {self.quality} is out of range; valid: 1 to 100")

    @property
    def folder(self) -> Path:
        return self.out / self.label


@dataclass(frozen=True)
class Saved:
    path: Path
    count: int
    """Images saved so far in this capture, this one included."""
    frame_index: int


@dataclass(frozen=True)
class CaptureSummary:
    folder: Path
    saved: int
    frames: int
    """Frames read from the source (kept or not)."""
    stopped_by: str
    """"end" (of a file or folder), "max" (max_images reached) or "stop" (the stop event)."""
    source: SourceStatus


def capture(
    options: CaptureOptions,
    stop: threading.Event | None = None,
    *,
    on_saved: Callable[[Saved], None] | None = None,
    on_source_state: StateCallback | None = None,
) -> CaptureSummary:
    """Save a frame of `options.source` every `options.every` seconds into `options.folder` until the source
    ends, `options.max_images` are saved or `stop` is set; the source is closed in any case."""
    stop = stop if stop is not None else threading.Event()
    folder = _make_folder(options.folder)
    source = open_source(options.source, on_source_state)
    try:
        return _capture_loop(options, folder, source, stop, on_saved)
    finally:
        source.close()


def _capture_loop(options: CaptureOptions, folder: Path, source: Source, stop: threading.Event,
                  on_saved: Callable[[Saved], None] | None) -> CaptureSummary:
    params = [cv2.IMWRITE_JPEG_QUALITY, options.quality]
    due, frames, saved, stopped_by = -math.inf, 0, 0, "stop"
    while not stop.is_set():
        frame = source.read(POLL_S)
        if frame is None:
            if source.ended:
                stopped_by = "end"
                break
            continue
        frames += 1
        moment = _frame_time(frame, source)
        if moment < due:
            continue
        due = due + options.every if moment - due < options.every else moment + options.every  # keep the grid
        path = write_new(folder / frame_name(frame), _encode(frame.image, params))
        saved += 1
        if on_saved is not None:
            on_saved(Saved(path, saved, frame.index))
        if saved == options.max_images:
            stopped_by = "max"
            break
    return CaptureSummary(folder, saved, frames, stopped_by, source.status())


def _frame_time(frame: Frame, source: Source) -> float:
    """Seconds on the clip's own time line for a video file with a frame rate, else the capture clock."""
    if not source.live and source.fps:
        return frame.index / source.fps
    return frame.captured


def frame_name(frame: Frame) -> str:
    """20250101T120000.123-f000042.jpg: local time the frame arrived and its index in the source."""
    when = wall_clock(frame.captured)
    return f"{when:%Y%m%dT%H%M%S}.{when.microsecond // 1000:03d}-f{frame.index:06d}.jpg"


def write_new(path: Path, data: bytes) -> Path:
    """Write `data` to `path`, or to `stem-2.jpg`, `stem-3.jpg`, ... if taken; never replace a file.

    The bytes go to a hidden temporary file first, which is then hard-linked under the final name (a link
    fails rather than replace an existing file), so no reader ever sees a partial image.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        for attempt in range(1, 10_000):
            target = path if attempt == 1 else path.with_name(f"{path.stem}-{attempt}{path.suffix}")
            try:
                os.link(tmp, target)
                return target
            except FileExistsError:
                continue
        raise EdgerecError(f"cannot find a free name for {path}: 9999 variants are taken")
    except OSError as error:
        raise EdgerecError(f"cannot write {path} ({error.strerror or error})") from None
    finally:
        os.unlink(tmp)


def _encode(image: np.ndarray, params: list[int]) -> bytes:
    ok, jpeg = cv2.imencode(".jpg", image, params)
    if not ok:
        raise EdgerecError(f"OpenCV could not encode a {image.shape} frame as JPEG")
    return jpeg.tobytes()


def _make_folder(folder: Path) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise EdgerecError(f"--out: cannot create {folder} ({error.strerror})") from None
    return folder


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask
