"""An annotated video file: opened at the first frame's size, written under a temporary name and moved
into place when closed, so the named file is always a complete recording."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from edge.errors import EdgerecError
from edge.result import Result

FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}
DEFAULT_FPS = 30.0


class VideoFileSink:
    wants_overlay = True

    def __init__(self, path: str | Path, fps: Callable[[], float | None]) -> None:
        """`fps` is asked at the first frame: a live source knows its rate only once connected."""
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in FOURCC:
            raise EdgerecError(f"--out {self.path}: unknown video type; valid endings: {' '.join(FOURCC)}")
        if not self.path.parent.is_dir():
            raise EdgerecError(f"--out {self.path}: folder {self.path.parent} does not exist")
        self.fps = DEFAULT_FPS
        self._source_fps = fps
        self.frames = 0
        self._fourcc = cv2.VideoWriter.fourcc(*FOURCC[suffix])
        self._partial = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] = (0, 0)
        self._resized: np.ndarray | None = None

    def write(self, frame: np.ndarray, result: Result) -> None:
        if self._writer is None:
            self._open(frame)
        if frame.shape[1::-1] != self._size:  # a folder of mixed sizes: fit into the first size
            frame = cv2.resize(frame, self._size, dst=self._resized, interpolation=cv2.INTER_AREA)
            self._resized = frame
        self._writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        os.replace(self._partial, self.path)

    def _open(self, frame: np.ndarray) -> None:
        self._size = (frame.shape[1], frame.shape[0])
        self.fps = self._source_fps() or DEFAULT_FPS
        writer = cv2.VideoWriter(str(self._partial), self._fourcc, self.fps, self._size)
        if not writer.isOpened():
            raise EdgerecError(f"--out {self.path}: OpenCV cannot write this video type here")
        self._writer = writer
