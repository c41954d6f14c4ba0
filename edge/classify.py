"""Classify image files: what `edgerec classify` runs."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2

from edge.datasets import IMAGE_EXTENSIONS
from edge.errors import EdgerecError
from edge.model import Model, Prediction, default_model_path

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
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise EdgerecError(f"{path}: not a readable image (supported: {', '.join(sorted(IMAGE_SUFFIXES))})")
    if image.dtype != "uint8":  # 16-bit PNG/TIFF
        image = cv2.convertScaleAbs(image, alpha=255.0 / 65535.0)
    return image


def classify_files(model: Model, paths: Sequence[str | Path], top_k: int = 5) -> Iterator[FileResult]:
    """Classify each image under ``paths`` one at a time; yields as it goes so output streams."""
    for path in image_files(paths):
        image = read_image(path)
        start = time.perf_counter()
        prediction = model.classify([image], top_k)[0]
        yield FileResult(path, prediction, (time.perf_counter() - start) * 1000)
