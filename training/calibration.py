"""Real images for calibration and checks: photos and sampled video frames, fitted like at run time."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from edge.core.datasets import IMAGE_EXTENSIONS
from edge.core.decode import imread
from edge.core.preprocess import Geometry, fit
from edge.errors import EdgerecError

VIDEO_SUFFIXES = {".avi", ".mp4", ".mkv", ".mov", ".webm"}


def media_files(paths: Sequence[str | Path]) -> list[Path]:
    """Image and video files named directly or found (non-recursively) in the named folders, sorted."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS | VIDEO_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise EdgerecError(f"{path}: no such file or folder")
    return files


def read_frames(path: Path, every: int) -> Iterator[np.ndarray]:
    """One frame every ``every`` frames of a video, or the single image of an image file."""
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        image = imread(path)
        if image is not None:
            yield image
        return
    capture = cv2.VideoCapture(str(path))
    try:
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            if index % every == 0:
                yield frame
            index += 1
    finally:
        capture.release()


def load_images(paths: Sequence[str | Path], geometry: Geometry, video_every: int = 25,
                min_side: int = 0, min_contrast: float = 0.0) -> np.ndarray:
    """uint8 [N, H, W, 3] of every usable photo and sampled video frame under ``paths``.

    ``min_side`` and ``min_contrast`` (pixel standard deviation) drop icons and blank test patterns.
    """
    fitted = [fit(frame, geometry) for path in media_files(paths) for frame in read_frames(path, video_every)
              if min(frame.shape[:2]) >= min_side and float(frame.std()) >= min_contrast]
    if not fitted:
        raise EdgerecError(f"no usable images or video frames in {', '.join(map(str, paths))}")
    return np.stack(fitted)
