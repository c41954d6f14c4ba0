"""An annotated video file, encoded on its own thread so the frame loop does not wait for the encoder.

Opened at the first frame's size; written under a temporary name and moved into place when closed, so
the named file is always a complete recording. A recording never skips a frame: when the encoder falls
`queue_frames` behind, `write` waits for it.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from edge.errors import EdgerecError
from edge.result import FrameResult
from edge.sinks.base import why_unwritable

FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}
DEFAULT_FPS = 30.0


class VideoFileSink:
    wants_overlay = True

    def __init__(self, path: str | Path, fps: Callable[[], float | None], queue_frames: int = 4) -> None:
        """`fps` is asked at the first frame: a live source knows its rate only once connected."""
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in FOURCC:
            raise EdgerecError(f"--out {self.path}: unknown video type; valid endings: {' '.join(FOURCC)}")
        self.fps = DEFAULT_FPS
        self.frames = 0
        self._source_fps, self._queue_frames = fps, queue_frames
        self._partial = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self._check_writable()
        self._size = (0, 0)
        self._free: queue.Queue[np.ndarray] = queue.Queue()
        self._full: queue.Queue[np.ndarray | None] = queue.Queue()
        self._encoder: threading.Thread | None = None

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        if self._encoder is None:
            self._start(frame)
        buffer = self._next_free_buffer()
        if frame.shape == buffer.shape:
            np.copyto(buffer, frame)
        else:  # a folder of mixed sizes: fit into the first size
            cv2.resize(frame, self._size, dst=buffer, interpolation=cv2.INTER_AREA)
        self._full.put(buffer)

    def close(self) -> None:
        if self._encoder is None:
            return
        self._full.put(None)
        self._encoder.join()
        self._encoder = None
        os.replace(self._partial, self.path)

    def _check_writable(self) -> None:
        """Create and remove the partial file now: OpenCV only says that it could not open a writer."""
        try:
            with open(self._partial, "wb"):
                pass
            os.remove(self._partial)
        except OSError as error:
            raise EdgerecError(f"--out {self.path}: cannot write it: {why_unwritable(self._partial, error)}") from None

    def _next_free_buffer(self) -> np.ndarray:
        while True:
            try:
                return self._free.get(timeout=1.0)
            except queue.Empty:
                if not self._encoder.is_alive():
                    raise EdgerecError(f"--out {self.path}: the video encoder stopped") from None

    def _start(self, frame: np.ndarray) -> None:
        self._size = (frame.shape[1], frame.shape[0])
        self.fps = self._source_fps() or DEFAULT_FPS
        fourcc = cv2.VideoWriter.fourcc(*FOURCC[self.path.suffix.lower()])
        writer = cv2.VideoWriter(str(self._partial), fourcc, self.fps, self._size)
        if not writer.isOpened():
            raise EdgerecError(f"--out {self.path}: OpenCV cannot write this video type here")
        for _ in range(self._queue_frames):
            self._free.put(np.empty((frame.shape[0], frame.shape[1], 3), np.uint8))
        self._encoder = threading.Thread(target=self._encode, args=(writer,), name="edgerec-video", daemon=True)
        self._encoder.start()

    def _encode(self, writer: cv2.VideoWriter) -> None:
        try:
            while (buffer := self._full.get()) is not None:
                writer.write(buffer)
                self.frames += 1
                self._free.put(buffer)
        finally:
            writer.release()
