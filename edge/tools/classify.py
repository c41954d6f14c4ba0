"""Classify image files: what `edgerec classify` runs."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2

from edge.core.datasets import IMAGE_EXTENSIONS, Unreadable, image_problem
from edge.core.decode import imdecode
from edge.core.model import Model, Prediction, default_model_path
from edge.errors import EdgerecError

IMAGE_SUFFIXES = IMAGE_EXTENSIONS | {".tif", ".tiff"}  # classify also reads single TIFFs


@dataclass(frozen=True)
class FileResult:
    file: Path
    prediction: Prediction
    ms: float  # preprocessing + inference for this file, decoding excluded


def sample_photos_dir() -> Path:
    """Real photos shipped inside the package, for a first run with nothing of your own."""
    return default_model_path().parent / "samples"


def image_files(paths: Sequence[str | Path]) -> list[Path]:
    """Files named directly, plus the images found (recursively) in named folders, in a stable order."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise EdgerecError(f"{path}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise EdgerecError(f"{path}: no such file or folder")
    return files


def read_image(path: Path):
    try:
        data = path.read_bytes()
    except OSError as error:
        raise EdgerecError(f"{path}: cannot read: {error.strerror}") from None
    problem = image_problem(data)
    if problem:
        raise EdgerecError(f"{path}: not a readable image ({problem})")
    try:
        image = imdecode(data, cv2.IMREAD_UNCHANGED, path) if data else None
    except cv2.error as error:  # OpenCV asserts rather than returning None, e.g. on a decompression bomb
        raise EdgerecError(f"{path}: not a readable image ({decode_problem(error)})") from None
    if image is None:
        raise EdgerecError(f"{path}: not a readable image (supported: {', '.join(sorted(IMAGE_SUFFIXES))})")
    if image.dtype != "uint8":  # 16-bit PNG/TIFF
        image = cv2.convertScaleAbs(image, alpha=255.0 / 65535.0)
    return image


def decode_problem(error: cv2.error) -> str:
    """OpenCV's failed assertion as a few words: the size limit named, else its last line."""
    text = str(error)
    if "CV_IO_MAX_IMAGE_PIXELS" in text:
        return f"more than {os.environ.get('OPENCV_IO_MAX_IMAGE_PIXELS', '?')} pixels, OPENCV_IO_MAX_IMAGE_PIXELS"
    if "CV_IO_MAX_IMAGE_" in text:
        return "wider or taller than OpenCV reads"
    return text.strip().splitlines()[-1][:120]


def classify_files(model: Model, paths: Sequence[str | Path], top_k: int = 5, unknown_threshold: float | None = None,
                   unknown: bool = True) -> Iterator[FileResult | Unreadable]:
    """Classify each image under ``paths`` one at a time; yields as it goes so output streams. A file that cannot
    be read or decoded is yielded as Unreadable (why, in one line) and the next one is classified. A model file
    with novelty data answers `unknown` above its threshold (or `unknown_threshold`), unless `unknown` is False."""
    for path in image_files(paths):
        try:
            image = read_image(path)
        except EdgerecError as error:
            yield Unreadable(path, str(error).removeprefix(f"{path}: "))
            continue
        start = time.perf_counter()
        prediction = model.classify([image], top_k, unknown_threshold, unknown)[0]
        yield FileResult(path, prediction, (time.perf_counter() - start) * 1000)
