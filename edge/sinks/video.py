"""An annotated video file, encoded on its own thread so the frame loop does not wait for the encoder.

Opened at the first frame's size (frames of another size, e.g. after a camera changed its resolution, are
scaled into it); written under a temporary name and moved into place when closed, so the named file is
always a complete recording. A recording never skips a frame while it has room: when the encoder falls
`queue_frames` behind, `write` waits for it.

A full disk must not cost the whole recording: an MP4's index is written when the file is closed, so a
file whose disk filled up before its end cannot be played at all. Once a second the sink looks at the free
space of its folder; below a reserve (RESERVE_BYTES, plus INDEX_BYTES_PER_FRAME for each frame already in
the file) it closes the file while the index still fits, and skips frames (counted in `lost`) until twice
the reserve is free again, tried every few seconds (edge.sinks.outage). Then it starts the next part:
out.mp4, out.2.mp4, out.3.mp4, ...

In segments (`segment_s`), each segment is a file of its own, named from the path's stem and the wall-clock
time of its first frame, in the path's folder: out-20261207-011500.mp4, out-20261207-011510.mp4, ... (a
`-2` is added where a name is taken). The frame captured `segment_s` or more after a segment's first frame
starts the next one: the frame loop only queues a marker before it, and the encoder thread closes the
finished file (moving it to its name, playable) and opens the next, so no frame is lost at a boundary and
the frame loop never waits for a file to close. After a full disk the next segment starts as any other.
`on_closed(path)` is called, on the encoder's thread, with each finished file (retention sweeps then).
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from edge.errors import EdgerecError
from edge.live.result import FrameResult
from edge.sinks.base import why_unwritable
from edge.sinks.events import wall_clock
from edge.sinks.outage import Outage
from edge.sinks.retention import FileFamily, stamped, stamped_path

FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}
DEFAULT_FPS = 30.0
RESERVE_BYTES = 8 << 20
"""Free space below which the recording closes its file: room for the frames in flight and the index."""
INDEX_BYTES_PER_FRAME = 32
"""An upper bound of an MP4/AVI index's bytes per frame (sample size, offset, time): added to the reserve."""
SPACE_CHECK_S = 1.0
"""Seconds between looks at the free space while recording."""
MIN_SEGMENT_S = 1.0
"""The shortest segment: names tell segments apart to the second."""


class VideoFileSink:
    wants_overlay = True

    def __init__(self, path: str | Path, fps: Callable[[], float | None], queue_frames: int = 4,
                 segment_s: float | None = None, on_closed: Callable[[Path], None] | None = None) -> None:
        """`fps` is asked at the first frame: a live source knows its rate only once connected. `segment_s`:
        a new file every this many seconds of frames (None: one file)."""
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in FOURCC:
            raise EdgerecError(f"--out {self.path}: unknown video type; valid endings: {' '.join(FOURCC)}")
        if segment_s is not None and not segment_s >= MIN_SEGMENT_S:
            raise EdgerecError(f"--segment {segment_s}: too short; valid: seconds >= {MIN_SEGMENT_S:g}")
        self.segment_s, self.on_closed = segment_s, on_closed
        self.fps = DEFAULT_FPS
        self.frames = 0
        """Frames encoded, every part together."""
        self.lost = 0
        """Frames not recorded because the disk was (nearly) full."""
        self.parts: list[Path] = []
        """The files finished so far: `path`, then path.2.mp4, ... after a full disk."""
        self.outage = Outage(f"--out {self.path}")
        self._source_fps, self._queue_frames = fps, queue_frames
        self._partial = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self._check_writable()
        self._size = (0, 0)
        self._part_frames = 0
        self._segment_end = 0.0
        self._final = self.path
        """The name of the file the frame loop writes into now (a segment's marker may still be queued)."""
        self._writing = self.path
        """The name of the file the encoder writes now: it gets that name once closed."""
        self._check_at = 0.0
        self._free: queue.Queue[np.ndarray] = queue.Queue()
        self._full: queue.Queue[np.ndarray | Path | None] = queue.Queue()  # frames, segment markers, the end
        self._encoder: threading.Thread | None = None

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        if not self._has_room():
            self.lost += 1
            return
        if self._encoder is None:
            if not self._start(frame, result.captured):
                self.lost += 1
                return
            self.outage.recovered(f"{self.lost} frame(s) not recorded; this part is {self._final.name}")
        elif self.segment_s is not None and result.captured >= self._segment_end:
            self._cut(result.captured)
        buffer = self._next_free_buffer()
        if frame.shape == buffer.shape:
            np.copyto(buffer, frame)
        else:  # a folder of mixed sizes, a camera that changed its resolution: fit into the first size
            cv2.resize(frame, self._size, dst=buffer, interpolation=cv2.INTER_AREA)
        self._part_frames += 1
        self._full.put(buffer)

    def close(self) -> None:
        if self._encoder is not None:
            self._finish_part()

    def files(self) -> FileFamily:
        """What retention may delete: the finished segments (never the file being written, nor one part)."""
        suffix = self.path.suffix
        return FileFamily("recording", self.path.parent, stamped(self.path.stem, suffix),
                          re.compile(re.escape(self._partial.name)), grows=True)

    def _check_writable(self) -> None:
        """Create and remove the partial file now: OpenCV only says that it could not open a writer."""
        try:
            with open(self._partial, "wb"):
                pass
            os.remove(self._partial)
        except OSError as error:
            raise EdgerecError(f"--out {self.path}: cannot write it: {why_unwritable(self._partial, error)}") from None

    def _has_room(self) -> bool:
        """Cheap per frame: the free space is looked at once a second while recording, once per retry while not."""
        if self.outage.failing:
            if not self.outage.ready():
                return False
            free = free_bytes(self.path.parent)
            if free < 2 * RESERVE_BYTES:
                self.outage.failed(f"{free / 1e6:.1f} MB free")  # no new line: it only re-arms the timer
                return False
            return True  # the outage ends once the next part is open
        now = time.monotonic()
        if self._encoder is None or now < self._check_at:
            return True
        self._check_at = now + SPACE_CHECK_S
        reserve = RESERVE_BYTES + INDEX_BYTES_PER_FRAME * self._part_frames
        free = free_bytes(self.path.parent)
        if free >= reserve:
            return True
        try:
            finished = self._finish_part()
        except OSError as error:  # the folder turned read-only too: the part stays under its temporary name
            self.outage.failed(f"cannot move {self._partial.name} into place ({error.strerror})")
            return False
        self.outage.failed(f"{free / 1e6:.1f} MB left on its disk, under the {reserve / 1e6:.1f} MB it keeps free so "
                           f"that the file can be closed playable; closed {finished.name} ({self._part_frames} "
                           f"frames)", keeping=f"not recording until {2 * RESERVE_BYTES / 1e6:.0f} MB are free")
        return False

    def _part_path(self, captured: float) -> Path:
        """The next file's name: a segment's from the time of its first frame, else path, path.2, ..."""
        if self.segment_s is not None:
            return stamped_path(self.path, wall_clock(captured), taken=(self._final,))
        number = len(self.parts) + 1
        return self.path if number == 1 else self.path.with_name(f"{self.path.stem}.{number}{self.path.suffix}")

    def _cut(self, captured: float) -> None:
        """The frame captured at `captured` starts the next segment: the encoder switches files before it."""
        self._final = self._part_path(captured)  # the frame loop's view; the encoder switches when it gets there
        self._full.put(self._final)
        self._segment_end = captured + self.segment_s
        self._part_frames = 0

    def _next_free_buffer(self) -> np.ndarray:
        while True:
            try:
                return self._free.get(timeout=1.0)
            except queue.Empty:
                if not self._encoder.is_alive():
                    raise EdgerecError(f"--out {self.path}: the video encoder stopped") from None

    def _start(self, frame: np.ndarray, captured: float) -> bool:
        """Open the next part at `frame`'s size (the first part's size for every later part)."""
        if not self.parts:
            self._size = (frame.shape[1], frame.shape[0])
            self.fps = self._source_fps() or DEFAULT_FPS
        fourcc = cv2.VideoWriter.fourcc(*FOURCC[self.path.suffix.lower()])
        writer = cv2.VideoWriter(str(self._partial), fourcc, self.fps, self._size)
        if not writer.isOpened():
            if not self.parts:
                raise EdgerecError(f"--out {self.path}: OpenCV cannot write this video type here")
            self.outage.failed("OpenCV cannot open the next part")
            return False
        self._free, self._full = queue.Queue(), queue.Queue()
        for _ in range(self._queue_frames):
            self._free.put(np.empty((self._size[1], self._size[0], 3), np.uint8))
        self._part_frames = 0
        self._check_at = time.monotonic() + SPACE_CHECK_S
        self._final = self._writing = self._part_path(captured)
        self._segment_end = captured + (self.segment_s or 0.0)
        self._encoder = threading.Thread(target=self._encode, args=(writer,), name="edgerec-video", daemon=True)
        self._encoder.start()
        return True

    def _finish_part(self) -> Path:
        """Let the encoder finish the queued frames, close the file and move it to its name."""
        self._full.put(None)
        self._encoder.join()
        self._encoder = None
        return self._moved_into_place()

    def _moved_into_place(self) -> Path:
        """The closed file moved from its temporary name to the one it was opened for."""
        path = self._writing
        os.replace(self._partial, path)
        self.parts.append(path)
        if self.on_closed is not None:
            self.on_closed(path)
        return path

    def _encode(self, writer: cv2.VideoWriter | None) -> None:
        """The encoder thread: frames into the open file; at a segment's marker, the next file."""
        try:
            while (item := self._full.get()) is not None:
                if isinstance(item, Path):
                    writer = self._next_segment(writer, item)
                    continue
                if writer is not None:
                    writer.write(item)
                    self.frames += 1
                else:
                    self.lost += 1
                self._free.put(item)
        finally:
            if writer is not None:
                writer.release()

    def _next_segment(self, writer: cv2.VideoWriter | None, path: Path) -> cv2.VideoWriter | None:
        """Close the finished segment (playable, under its name) and open `path`'s under the temporary name."""
        if writer is not None:
            writer.release()
            try:
                self._moved_into_place()
            except OSError as error:
                self.outage.failed(f"cannot move {self._partial.name} into place ({error.strerror})")
        self._writing = path
        fourcc = cv2.VideoWriter.fourcc(*FOURCC[self.path.suffix.lower()])
        writer = cv2.VideoWriter(str(self._partial), fourcc, self.fps, self._size)
        if writer.isOpened():
            return writer
        self.outage.failed(f"OpenCV cannot open {path.name}", keeping="frames skipped until the next segment")
        return None



def free_bytes(folder: Path) -> int:
    """Bytes an unprivileged process may still write on `folder`'s file system (0 when it cannot be asked)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0
