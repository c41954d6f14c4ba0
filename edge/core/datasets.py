"""The image-folder layout shared by training and evaluation: one subfolder per class.

A dataset is a folder with one subfolder per class (class index = position in the sorted names).
Images are .jpg/.jpeg/.png/.webp/.bmp (any case) anywhere below a class folder; files and folders whose
names start with "." are ignored. Only listing lives here (no decoding, no torch): `training/data.py`
scans and splits with it, and `edge/tools/evaluate.py` walks an evaluation folder with it on a runtime-only
install.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from edge.core.novelty import UNKNOWN
from edge.errors import EdgerecError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_START = b"\xff\xd8\xff"
NEXT_MARKER = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")  # not 0x00 stuffing, a restart marker or 0xFF fill
CUT_SHORT = "a JPEG cut short: no end-of-image marker, a partly written or truncated file"


def image_problem(data: bytes) -> str:
    """Why an image file's bytes must not reach OpenCV's decoder, or "" (a check of its structure only).

    A PNG chunk whose length is more than the file holds: OpenCV 5's PNG reader allocates the length a chunk
    claims, so a 70-byte file claiming 2^31 bytes took 2 GB (found by tests/test_fuzz_images.py).
    A JPEG cut short (a segment running past the end, or no end-of-image marker after the last scan): libjpeg
    writes `Premature end of JPEG file` to stderr itself and hands over a picture grey below the cut.
    """
    if data.startswith(JPEG_START):
        return jpeg_problem(data)
    if not data.startswith(PNG_SIGNATURE):
        return ""
    at = len(PNG_SIGNATURE)
    while at + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, at)
        if length > len(data) - at - 12:  # 12: the length, type and CRC fields around the chunk's data
            return f"a PNG chunk claims {length} bytes, more than the file holds"
        if kind == b"IEND":
            break
        at += 12 + length
    return ""


def jpeg_problem(data: bytes) -> str:
    """"" when the JPEG's segments and scans reach its end-of-image marker, else why it is cut short. Walks the
    markers as libjpeg reads them: a segment's length skips it; a scan's coded data runs to the next marker
    (0xFF followed by anything but 0x00 stuffing, a restart marker or more 0xFF fill: the last 0xFF of a fill
    starts the marker)."""
    at = 2  # past the start-of-image marker
    while True:
        found = NEXT_MARKER.search(data, at)  # libjpeg skips (and warns about) stray bytes before a marker
        if found is None:
            return CUT_SHORT
        marker, at = found.group()[-1], found.end()
        if marker == 0xD9:  # end of image
            return ""
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # no length field
            continue
        if at + 2 > len(data):
            return CUT_SHORT
        at += int.from_bytes(data[at : at + 2], "big")
        if at > len(data):
            return CUT_SHORT
        # after a start of scan (0xDA), its coded data: the search for the next marker skips it


@dataclass(frozen=True)
class Unreadable:
    """A file with an image extension that could not be read or decoded."""

    path: Path
    reason: str


def list_classes(root: Path, minimum: int = 2) -> tuple[str, ...]:
    """The sorted names of the visible subfolders of `root`: the classes, labelled in this order."""
    root = Path(root)
    if not root.is_dir():
        raise EdgerecError(f"dataset folder {root} does not exist or is not a folder")
    found = tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if UNKNOWN in found:
        raise EdgerecError(f"{root / UNKNOWN}: '{UNKNOWN}' is a reserved label (what a model answers for what it was "
                           "not taught); rename the folder, e.g. to 'none' or 'other'")
    if len(found) < minimum:
        raise EdgerecError(f"{root} needs at least {minimum} class subfolders, found {list(found)}")
    return found


def list_images(root: Path, classes: Sequence[str]) -> tuple[list[tuple[Path, int]], list[str]]:
    """(path, index in `classes`) of every image file below the class folders, sorted by relative path;
    and the relative paths of the files ignored (non-images, and files directly in `root`)."""
    root = Path(root)
    images: list[tuple[Path, int]] = []
    ignored = [p.name for p in root.iterdir() if p.is_file() and not p.name.startswith(".")]
    for label, name in enumerate(classes):
        for path in walk_visible(root / name):
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                images.append((path, label))
            else:
                ignored.append(path.relative_to(root).as_posix())
    images.sort(key=lambda item: item[0].relative_to(root).as_posix())
    return images, sorted(ignored)


def walk_visible(folder: Path) -> Iterator[Path]:
    """Files below `folder`, skipping any file or folder whose name starts with '.'."""
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath, name)
