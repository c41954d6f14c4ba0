"""Image bytes to pixels with cv2.imdecode, keeping the decoders' own lines out of the journal.

libjpeg writes its warnings straight to the process's stderr from C (`Corrupt JPEG data: 14 extraneous bytes
before marker 0xd9`, `Premature end of JPEG file`, once per damaged file), beside edgerec's own line about
the file; OpenCV's log level does not reach them. Two things keep them out:

- a file cut short (no end-of-image marker after its last scan) never reaches the decoder:
  `edge.core.datasets.image_problem` names it, and the caller skips the file with its own line;
- a complete file with damaged data is decoded (libjpeg conceals the damage) while file descriptor 2 points
  at an in-memory file, and what the decoder said is logged at debug level instead. That is done only while
  this is the process's one Python thread: a redirected fd 2 is process-wide, so a line another thread (or a
  child process started meanwhile) wrote would be held back or lost. Anything captured that is not a
  decoder's warning is written back to stderr. With other threads running (the service's frame loop, the web
  teach page), decoding is left alone and a damaged file's libjpeg line still reaches stderr.

With EDGEREC_DEBUG=1 nothing is captured: the decoders speak as they always did.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from edge.core.datasets import image_problem
from edge.logs import debug_requested

log = logging.getLogger("edgerec.decode")

DECODER_LINES = ("Corrupt JPEG data", "Premature end of JPEG file", "Invalid SOS parameters",
                 "Inconsistent progression sequence", "Unknown Adobe color transform", "Warning: unknown JFIF",
                 "Application transferred too many scanlines", "libpng warning", "libpng error")  # fmt: skip
"""How libjpeg's warnings (jerror.h, JWRN_*) and libpng's begin: captured lines that begin otherwise go
back to stderr."""


def imdecode(data: bytes, flags: int, name: str | Path = "") -> np.ndarray | None:
    """cv2.imdecode of `data` (not empty), its decoder's own stderr lines logged at debug level as `name`'s
    where that is safe (see the module's docstring)."""
    buffer = np.frombuffer(data, np.uint8)
    if debug_requested() or threading.active_count() > 1 or not hasattr(os, "memfd_create"):
        return cv2.imdecode(buffer, flags)
    with stderr_captured() as said:
        image = cv2.imdecode(buffer, flags)
    pass_on(said, name)
    return image


@contextmanager
def stderr_captured() -> Iterator[list[str]]:
    """File descriptor 2 points at an in-memory file inside the block; the lines written there are in the
    list yielded, once the block ends."""
    said: list[str] = []
    saved = os.dup(2)
    sink = os.memfd_create("edgerec-stderr", os.MFD_CLOEXEC)
    try:
        os.dup2(sink, 2)
        try:
            yield said
        finally:
            os.dup2(saved, 2)
        written = os.lseek(sink, 0, os.SEEK_END)
        if written:
            said += os.pread(sink, written, 0).decode("utf-8", "replace").splitlines()
    finally:
        os.close(sink)
        os.close(saved)


def pass_on(said: list[str], name: str | Path) -> None:
    """A decoder's lines to the debug log; anything else back to stderr as it was."""
    other = []
    for line in said:
        if line.startswith(DECODER_LINES):
            log.debug("%s: the decoder said: %s", name or "image", line)
        else:
            other.append(line)
    if other:
        os.write(2, ("\n".join(other) + "\n").encode())


def decode_bytes(data: bytes, flags: int = cv2.IMREAD_COLOR, name: str | Path = "") -> np.ndarray | None:
    """The image in `data`, or None when it is empty, cut short or a hostile PNG (`image_problem`: what the
    decoder must not see) or does not decode. cv2.error (OpenCV asserts on some files) is the caller's."""
    if not data or image_problem(data):
        return None
    return imdecode(data, flags, name)


def imread(path: str | Path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray | None:
    """The image in the file at `path`, or None when it cannot be read, is cut short or does not decode
    (cv2.imread's contract, without libjpeg's lines)."""
    try:
        return decode_bytes(Path(path).read_bytes(), flags, path)
    except (OSError, cv2.error):  # OpenCV asserts rather than returning None on some files (over its limit)
        return None
