"""The photos `edgerec teach` learns from: the `DATA/<class>/*.jpg` layout `edgerec train` reads, split and
fingerprinted as training does it, each photo decoded once and turned into a few cheap views.

Same folder, same seed: the same validation photos and the same dataset fingerprint as `edgerec train`
(training/data.py), so the two commands' figures compare on the same images. (Training leaves unreadable
files out before it splits; teach splits on the file names, so a folder with unreadable files may split
differently.)
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.core.datasets import Unreadable, list_classes, list_images
from edge.core.decode import decode_bytes
from edge.core.preprocess import Geometry, fit
from edge.errors import EdgerecError
from edge.tools.corruptions import random_corruption

FINGERPRINT_VERSION = "edgerec-data-v1"  # training/data.py's, so that both name the same data alike
CROP_SIDE = 0.85  # the corner crops keep this share of each side


def _flip(image: np.ndarray) -> np.ndarray:
    return image[:, ::-1]


def _corner(image: np.ndarray, bottom_right: bool) -> np.ndarray:
    h, w = image.shape[:2]
    ch, cw = max(1, round(h * CROP_SIDE)), max(1, round(w * CROP_SIDE))
    return image[h - ch:, w - cw:] if bottom_right else image[:ch, :cw]


def _camera(image: np.ndarray) -> np.ndarray:
    """One camera corruption at a random severity (`edgerec train --augment camera`'s draw), seeded by the
    photo's own pixels: the same photo gets the same view in every run."""
    return random_corruption(image, np.random.default_rng(zlib.crc32(image[::7, ::7].tobytes())))


VIEWS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "flip": _flip,  # the mirror image
    "crop-tl": lambda image: _corner(image, False),  # the top-left 85% x 85%
    "crop-br": lambda image: _corner(image, True),  # the bottom-right 85% x 85%
    "camera": _camera,  # under one of edge.tools.corruptions' camera conditions (docs/robustness.md)
}


@dataclass(frozen=True)
class File:
    path: Path
    relpath: str  # below its dataset folder, '/'-separated: what the split and the fingerprint use
    label: int


@dataclass(frozen=True)
class Decoded:
    file: File
    digest: str  # sha256 of the file's bytes
    size_bytes: int
    readable: bool


@dataclass(frozen=True)
class Folders:
    """The classes and the files to learn from and to validate on (not yet read)."""

    classes: tuple[str, ...]
    train: list[File]
    val: list[File]
    ignored: list[str]


def find_files(data_dir: Path, val_dir: Path | None, val_fraction: float, seed: int) -> Folders:
    """List the class folders and their images; hold out a stratified share unless `val_dir` is given."""
    classes = list_classes(data_dir, minimum=1)  # one label is a model too: it answers that label or `unknown`
    files, ignored = _files(data_dir, classes)
    if val_dir is None:
        if not 0.0 < val_fraction < 1.0:
            raise EdgerecError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
        train, val = stratified_split(files, val_fraction, seed)
    else:
        found = list_classes(val_dir, minimum=0)
        missing, extra = sorted(set(classes) - set(found)), sorted(set(found) - set(classes))
        if missing or extra:
            raise EdgerecError(f"validation folder {val_dir} must have the same class subfolders as {data_dir}: "
                               f"missing {missing}, extra {extra}")
        train, (val, _) = files, _files(val_dir, classes)
    _check_counts(data_dir, classes, train, "training")
    _check_counts(val_dir or data_dir, classes, val, "validation")
    return Folders(classes, train, val, ignored)


def _files(root: Path, classes: Sequence[str]) -> tuple[list[File], list[str]]:
    found, ignored = list_images(root, classes)
    return [File(path, path.relative_to(root).as_posix(), label) for path, label in found], ignored


def stratified_split(files: Sequence[File], val_fraction: float, seed: int) -> tuple[list[File], list[File]]:
    """training.data.stratified_split on file names: round(val_fraction * n) of each class held out (at
    least 1, at most n - 1), chosen by sorting the class on sha256(seed, relpath)."""
    train: list[File] = []
    val: list[File] = []
    for label in sorted({f.label for f in files}):
        members = sorted((f for f in files if f.label == label),
                         key=lambda f: hashlib.sha256(f"{seed}\0{f.relpath}".encode()).digest())
        n = len(members)
        n_val = min(max(round(val_fraction * n), 1), n - 1) if n >= 2 else 0
        val.extend(members[:n_val])
        train.extend(members[n_val:])
    return sorted(train, key=lambda f: f.relpath), sorted(val, key=lambda f: f.relpath)


def _check_counts(root: Path, classes: Sequence[str], files: Sequence[File], role: str) -> None:
    counts = np.bincount([f.label for f in files], minlength=len(classes))
    short = [f"{name}={n}" for name, n in zip(classes, counts) if n < 1]
    if short:
        raise EdgerecError(f"{root}: every class needs at least one {role} image (at least two images per class "
                           f"without --val-dir); {', '.join(short)}")


def decode(file: File) -> tuple[Decoded, np.ndarray | None]:
    """Read and decode one file as `edgerec evaluate` and training do (cv2.IMREAD_COLOR): what the file is,
    and the uint8 HxWx3 BGR image (None when unreadable)."""
    try:
        data = file.path.read_bytes()
        image = decode_bytes(data, cv2.IMREAD_COLOR, file.path)
    except (OSError, cv2.error):
        data, image = b"", None
    return Decoded(file, hashlib.sha256(data).hexdigest(), len(data), image is not None), image


def unreadable(decoded: Sequence[Decoded]) -> list[Unreadable]:
    return [Unreadable(d.file.path, "not a readable image") for d in decoded if not d.readable]


def fitted_views(image: np.ndarray, geometry: Geometry, views: Sequence[str]) -> Iterator[np.ndarray]:
    """The image fitted to the model's input, then each named view of it, fitted."""
    yield fit(image, geometry)
    for name in views:
        yield fit(np.ascontiguousarray(VIEWS[name](image)), geometry)


def fingerprint(train: Sequence[Decoded], val: Sequence[Decoded], separate_val: bool) -> str:
    """training.data's fingerprint of the same folders: sha256 over (relpath, size, sha256) of every readable
    image of the training folder (and, with a separate validation folder, of that one)."""
    def folder(decoded: Sequence[Decoded]) -> str:
        digest = hashlib.sha256(f"{FINGERPRINT_VERSION}\n".encode())
        for d in sorted((d for d in decoded if d.readable), key=lambda d: d.file.relpath):
            digest.update(f"{d.file.relpath}\t{d.size_bytes}\t{d.digest}\n".encode())
        return digest.hexdigest()

    parts = f"train {folder(train)}\nval {folder(val)}" if separate_val else f"train {folder([*train, *val])}"
    return hashlib.sha256(parts.encode()).hexdigest()
